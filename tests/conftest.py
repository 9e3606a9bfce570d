"""Settings for the whole suite.

Hypothesis's default 200 ms deadline per example is a timed assert, and a loaded 2-core
CI box breaks it (`test_fuzz_mutated_replies` failed once that way while 60,000 examples
run here without a deadline found nothing). The suite has no timed asserts in unit tests,
so the fuzz tests check behaviour only; a slow parser shows in the benchmarks.

Under CI (`CI` set: `.ci/run` sets it) the examples are derandomized: a fresh clone has no
example database, and a new random draw each run made CI fail now and then on an example
no one had seen (session 15: seed 1014 found a real bug 1 run in ~18). Runs elsewhere
draw new examples each time, which is how such bugs are found; `--hypothesis-seed=N`
replays one (docs/testing.md).
"""

import os

from hypothesis import settings

settings.register_profile("packetlab", deadline=None, print_blob=True)
settings.register_profile(
    "packetlab-ci", parent=settings.get_profile("packetlab"), derandomize=True
)
settings.load_profile("packetlab-ci" if os.environ.get("CI") else "packetlab")
