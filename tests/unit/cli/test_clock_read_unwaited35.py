"""A run whose text prints the endpoint's time only from what the endpoint answered
(dig's `;; WHEN:` and +yaml's times, iperf3's -J and --timestamps) reads TIME before its
experiment, pipelined, and does not wait for the answer: it comes before any later
request's, so the first reply already has the endpoint's clock. Since session 35
(clock35) every default `run dns` waited for it: one controller-endpoint round trip
before its first query. What is stamped before any answer (a TSIG signature, iperf3's
--username token, curl's --trace-time `Trying` line) still waits."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "controller"))

from ctl_fakes import BASE_NS, Rig

from packetlab import cli
from packetlab.cli import run_dns, run_dns_words, run_http, run_throughput
from packetlab.cli.run_command import Command, Progress, begun, clock_reads, parse_args
from packetlab.cli.runclock import RunClock
from packetlab.wire import vmem

AHEAD_NS = 600 * 10**9  # the endpoint's clock minus ours


def _dig(*argv: str) -> Any:
    args = cli.parse(["run", "dns", *argv])
    run_dns_words.dig_style(args)
    return args


@pytest.mark.parametrize(
    ("argv", "reads"),
    [
        (["a.test"], (True, False)),  # ;; WHEN: (was (True, True): a wait)
        (["a.test", "+yaml"], (True, False)),
        (["-y", "hmac-sha256:k.test:c2VjcmV0", "a.test"], (True, True)),  # signed at start
        (["a.test", "+short"], (False, False)),
    ],
)
def test_dig_reads_the_clock_and_waits_only_for_a_key(
    argv: list[str], reads: tuple[bool, bool]
) -> None:
    assert clock_reads(run_dns.COMMAND, _dig(*argv)) == reads


@pytest.mark.parametrize(
    ("cmd", "argv", "reads"),
    [
        (run_throughput.COMMAND, ["-c", "h", "-J"], (True, False)),
        (run_throughput.COMMAND, ["-c", "h", "--timestamps"], (True, False)),
        (run_throughput.COMMAND, ["-c", "h", "--username", "u"], (True, True)),
        (run_http.COMMAND, ["--trace-time", "-v", "http://h/"], (True, True)),
    ],
)
def test_throughput_waits_only_for_its_token(
    cmd: Command, argv: list[str], reads: tuple[bool, bool]
) -> None:
    assert clock_reads(cmd, parse_args(cmd, argv)) == reads


def test_an_unwaited_read_is_answered_before_the_first_reply() -> None:
    rig = Rig(AHEAD_NS, start=1.0)
    progress = Progress()
    progress.clock = RunClock(now_ns=rig.session.clock_ns)
    seen: list[tuple[str, Any]] = []

    async def experiment(session: Any) -> None:
        seen.append(("start", progress.clock.first))  # not waited for: not answered yet
        await session.mread(vmem.HOSTID.addr, vmem.HOSTID.size)
        seen.append(("reply", progress.clock.now()))  # what dig's WHEN line reads

    rig.run(Deferred.fromCoroutine(begun(experiment, progress, True, last=False)(rig.session)))
    assert seen[0] == ("start", None)
    assert seen[1][1] == pytest.approx((BASE_NS + AHEAD_NS) / 1e9 + 1.0, abs=0.01)
    assert rig.endpoint.time_reads == 1
