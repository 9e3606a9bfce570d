"""Seeded mutation fuzzing of a real ``twistd pktbroker`` on its publish and subscribe
ports, after a valid TLS handshake (session 32, fuzz32).

The inputs are the valid xcert/xpub/xsub frames a reference client sends (seen in
BROKER-PROXY-OBSERVED.md §1.2, §3.2) mutated by `fuzz32.mutate`, half of the connections
first sending a valid prefix (xcerts, or all up to a live subscription or publication:
the mutations meet a later state); then frames of the broker's types with every body
size 0..23 and of every other type with sizes 0 and 1, one link after another (a link
ends at its first error). Every answer must be a result with a known code, every refusal
logged on one line with its code and reason; afterwards the broker serves a fresh
subscriber and publisher end to end, holds no more descriptors than before and at most
`RSS_BOUND_KIB` more memory, and its log has no traceback.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import broker_world
import pytest
from broker_world import BrokerProcess
from fuzz32 import every_type_and_size, log_alarms, mutate, rng_for
from test_hostile_broker import STATUSES, Port, baseline, check
from tls_world import home_fixture

from packetlab import wire
from packetlab.ppks import PktlabHome

pytestmark = pytest.mark.slow

home = home_fixture()
broker = broker_world.broker  # fixture: ErrorDelay 0, one per module

CONNECTIONS = 40  # per port: each the valid prefix or not, then BATCH mutated frames
BATCH = 24
SIZES = 24
#: The types a broker port reads or writes, swept with every body size 0..SIZES-1; the
#: other types with sizes 0 and 1 (the broker refuses them by type).
BROKER_TYPES = {
    int(wire.MsgType[n]) for n in ("XCERT", "XPUB", "XSUB", "XNOTIFY", "XREG", "RESULT")
}


@pytest.mark.parametrize("role", ["pub", "sub"])
def test_fuzz_broker_port(
    home: PktlabHome, broker: BrokerProcess, role: str, tmp_path: Path
) -> None:
    port = Port(home, broker, role, tmp_path)
    rng, seed = rng_for(f"broker-{role}")
    before = baseline(home, broker, tmp_path)
    seeds = port.seeds()
    mark = len(broker.output())
    batches = []
    for i in range(CONNECTIONS):
        prefix = seeds[: rng.randrange(1, len(seeds) + 1)] if i % 2 else []
        batches.append(prefix + [mutate(rng, rng.choice(seeds)) for _ in range(BATCH)])
    # The broker closes a link at its first error: the sweep resumes after the frames
    # a link answered (at least one per link).
    sweep = [f for f in every_type_and_size(rng, SIZES) if f[0] in BROKER_TYPES]
    sweep += [f for f in every_type_and_size(rng, 2) if f[0] not in BROKER_TYPES]
    inputs = answers = errors = 0
    links = 0
    while batches or sweep:
        if batches:
            frames = batches.pop(0)
        else:
            frames, sweep = sweep[:64], sweep[64:]
        c = port.client()
        links += 1
        inputs += len(frames)
        got = 0
        try:
            c.send(b"".join(frames), split=False)
        except (OSError, ssl.SSLError):
            pass  # closed after a frame it cannot answer
        for item in c.quiet(0.3):
            assert isinstance(item, wire.Result), f"answer {item!r} (seed {seed})"
            assert item.errid in STATUSES, f"unknown code {item.errid} (seed {seed})"
            answers += 1
            got += 1
            errors += item.errid != 0
        c.close()
        if not batches and got < len(frames):  # a sweep link: resend what it did not read
            inputs -= len(frames) - max(1, got)
            sweep = frames[max(1, got) :] + sweep
    out = broker.output()[mark:]
    assert not log_alarms(out), log_alarms(out)[:5]
    refusals = [line for line in out.splitlines() if " refuse " in line]
    assert errors > 0 and len(refusals) >= errors, (errors, len(refusals), out[-2000:])
    for line in refusals:
        assert "code=0x" in line and "reason=" in line, line
    check(f"fuzz32 {role}", home, broker, tmp_path, before)
    print(f"broker {role}: seed {seed!r}, {inputs} inputs on {links} links, {answers} answers, "
          f"{errors} errors")  # fmt: skip
