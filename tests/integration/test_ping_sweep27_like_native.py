"""Session 27's sweep (icmp27): ping options earlier passes did not compare with iputils
ping 20221126, side by side on loopback (root): `-e ID` (the requests' identifier; was
`unrecognized arguments: -e`), `-B` (sticky source; was refused as not needed) and `-A`
(adaptive; was unrecognized too).
Lines (RTTs masked), status, and with tcpdump the identifier on the wire; `-l N`'s
`pipe N` (none here on loopback)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from lone_loopback import lone_loopback, ping_floods
from test_pktlab_run import pktlab_run
from test_run_like_native import beside_native, masked, native, tcpdump_while

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("tcpdump") is None, reason="needs tcpdump"),
]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    beside_native(tmp_path, monkeypatch, f"ping27s{os.getpid() % 10000}-")


def requests_of(
    argv: list[str], ours: bool, ident: int, netns: str
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """The tool's result and the tcpdump lines of the echo requests with `ident` on
    `netns`'s `lo` while it ran."""
    expr = f"icmp[icmptype] = icmp-echo and icmp[4:2] = {ident}"
    run = pktlab_run if ours else native
    count = int(argv[argv.index("-c") + 1])  # (the requests: tcpdump's lines)
    done, lines = tcpdump_while(
        netns, "lo", expr, lambda: run("ping", *argv, netns=netns), lines=count
    )
    return done, [x for x in lines if "echo request" in x]


@pytest.mark.parametrize("ident", [77, 0, 65535])
def test_identifier_as_iputils_sends_and_prints_it(ident: int, lone_lo: str) -> None:
    """`-e ID -v`: both send the requests with identifier ID and print `ident=ID` (in a
    namespace of its own: another test's ping on the host's `lo` may use ID too)."""
    argv = ["-c", "2", "-i", "0.2", "-v", "-e", str(ident), "127.0.0.1"]
    theirs, sent_theirs = requests_of(argv, False, ident, lone_lo)
    ours, sent_ours = requests_of(argv, True, ident, lone_lo)
    assert ours.returncode == theirs.returncode == 0, ours.stderr
    assert f"icmp_seq=1 ident={ident} ttl=64" in ours.stdout
    assert ours.stdout.count(f" ident={ident} ") == theirs.stdout.count(f" ident={ident} ") == 2
    assert masked(ours.stdout)[1:] == masked(theirs.stdout)[1:]
    assert len(sent_ours) == len(sent_theirs) == 2, (sent_ours, sent_theirs)
    assert all(f"id {ident}, seq" in x for x in sent_ours + sent_theirs)


@pytest.mark.parametrize("args", [["-B"], ["-B", "-n"], ["-6", "-B"], ["-B", "-I", "lo"]])
def test_sticky_source_as_iputils(args: list[str]) -> None:
    """`-B`: the header's `from SRC :` (with -I lo: `from SRC lo:`), the rest as before."""
    argv = ["-c", "1", *args, "::1" if "-6" in args else "127.0.0.1"]
    ours, theirs = pktlab_run("ping", *argv), native("ping", *argv)
    assert ours.returncode == theirs.returncode == 0, ours.stderr
    assert " from " in theirs.stdout.splitlines()[0]
    assert masked(ours.stdout) == masked(theirs.stdout)


@pytest.mark.parametrize(
    "args", [["-c", "3", "-l", "3"], ["-c", "4", "-i", "0.2", "-l", "2"]], ids=["l3", "l2"]
)
def test_preload_pipe_as_iputils(args: list[str]) -> None:
    """`-l N`: iputils' statistics end `pipe N` (it sends the N requests before it reads
    a reply); ours printed none on loopback (each reply back before the next request
    left by the endpoint kernel's times)."""
    argv = [*args, "127.0.0.1"]
    ours, theirs = pktlab_run("ping", *argv), native("ping", *argv)
    assert ours.returncode == theirs.returncode == 0, ours.stderr
    assert masked(ours.stdout) == masked(theirs.stdout)  # (masked: pipe not compared)
    pipe = f", pipe {args[-1]}"
    assert ours.stdout.splitlines()[-1].endswith(pipe), ours.stdout
    assert theirs.stdout.splitlines()[-1].endswith(pipe), theirs.stdout


@pytest.mark.parametrize(
    "args", [["-c", "5"], ["-c", "5", "-l", "2"], ["-c", "3", "-q"]], ids=["c5", "l2", "q"]
)
def test_adaptive_as_iputils(args: list[str]) -> None:
    """`-A`: each request as the reply before it comes (at most -l unanswered), the
    statistics with `ipg/ewma` (its figures masked: ours' gap is a controller round
    trip, ~1 ms here, iputils' ~0.02 ms) and `time` well under -i's 1 s a request; it
    was `unrecognized arguments: -A`."""
    argv = ["-A", *args, "127.0.0.1"]
    ours, theirs = pktlab_run("ping", *argv), native("ping", *argv)
    assert ours.returncode == theirs.returncode == 0, ours.stderr
    assert masked(ours.stdout) == masked(theirs.stdout)
    for out in (ours.stdout, theirs.stdout):
        last = out.splitlines()[-1]
        assert " ipg/ewma " in last, out
    stats = ours.stdout.splitlines()[-2]
    assert int(stats.rsplit("time ", 1)[1].removesuffix("ms")) < 500, stats


@pytest.fixture
def lone_lo() -> Iterator[str]:
    """A namespace with only `lo`, up: loopback traffic of this test alone."""
    with lone_loopback("ping27s") as name:
        yield name


@pytest.mark.parametrize("target", ["127.0.0.1", "::1"])
def test_every_reply_counted_beside_a_ping_flood(lone_lo: str, target: str) -> None:
    """Beside two `ping -f` on the same loopback, ours lost 20-100% of its replies in each
    of 5 runs (the capture took in every ICMP message, the flood's replies and requests
    too, and its queue overflowed); iputils, whose socket filter drops other pings'
    replies, none. Now ours' capture filters as iputils' (session 27)."""
    argv = ["-c", "5", "-i", "0.2", "-q", target]
    theirs = native("ping", *argv, netns=lone_lo)  # (iputils beside the flood: the same)
    assert theirs.returncode == 0 and " 0% packet loss" in theirs.stdout, theirs.stdout
    with ping_floods(lone_lo, target):
        # 2 runs a case: the defect failed every run (10 of 10 and 5 of 5); 4 took 2x the
        # serial pass's time with the floods holding both cores (suite34)
        for _ in range(2):
            ours = pktlab_run("ping", *argv, netns=lone_lo)
            assert ours.returncode == 0, ours.stderr
            assert masked(ours.stdout) == masked(theirs.stdout)
