"""A bounded slice of the fuzzing campaign (stress/fuzz.py runs 10^6 inputs per target
with atheris): random bytes and mutated valid inputs through the framer, the endpoint's
session dispatch and the PPKS certificate parser. The invariants are in fuzz_targets."""

from __future__ import annotations

import fuzz_targets
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# Budget per target: enough to reach deep states from the seeds, a few seconds in CI.
EXAMPLES = {"framer": 1500, "session": 600, "cert": 1500}


@st.composite
def mutated(draw: st.DrawFn, target: str) -> bytes:
    """A seed with a few bytes overwritten, inserted or cut, or plain random bytes."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=512))
    data = bytearray(draw(st.sampled_from(fuzz_targets.SEEDS[target])))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.integers(0, 2))
        at = draw(st.integers(0, len(data)))
        if op == 0 and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif op == 1:
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[at : at + draw(st.integers(1, 8))]
    return bytes(data)


def _run(target: str) -> None:
    @settings(
        max_examples=EXAMPLES[target],
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(mutated(target))
    def check(data: bytes) -> None:
        fuzz_targets.TARGETS[target](data)

    check()


@pytest.mark.parametrize("target", sorted(fuzz_targets.TARGETS))
def test_seeds_pass(target: str) -> None:
    for seed in fuzz_targets.SEEDS[target]:
        fuzz_targets.TARGETS[target](seed)


@pytest.mark.parametrize("target", sorted(fuzz_targets.TARGETS))
def test_fuzz_slice(target: str) -> None:
    _run(target)
