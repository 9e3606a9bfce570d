"""Session 29 (trace29): `pktlab run ping` beside iputils ping 20221126 where timing
shows. `-T tsonly|tsandaddr`: ping's kernel stamps a request as it sends it, so its first
difference is 0 or 1 ms; ours was the time the request was due at, and the endpoint sends
a little after it (0.3-9 ms on a loaded machine), so ours read up to 9. Now the first
entry is the time the request left (its ntag), as ping's kernel writes it."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from test_pktlab_run import pktlab_run
from test_run_like_native import beside_native, native

from packetlab.measure.packets_ip_options import ms_of_day
from packetlab.testbed import Testbed

pytest_plugins = ["packetlab.testbed.pytest_fixtures"]
pytestmark = [pytest.mark.root]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    beside_native(tmp_path, monkeypatch, f"png29{os.getpid() % 10000}-", home=False)


def first_differences(text: str) -> list[int]:
    """Each reply's first `TS:` difference (the line after `absolute`)."""
    return [int(d) for d in re.findall(r"TS: \t(?:\S+\t)?\d+ absolute\n\t(?:\S+\t)?(-?\d+)", text)]


@pytest.mark.parametrize("kind", ["tsonly", "tsandaddr"])
@pytest.mark.parametrize("where", ["loopback", "testbed"])
def test_the_first_timestamp_difference_as_iputils(
    testbed_factory: Callable[..., Testbed], kind: str, where: str
) -> None:
    ns, dst = None, "127.0.0.1"
    if where == "testbed":
        tb = testbed_factory(hops=1)
        ns, dst = tb.netns_name("ep"), str(tb.addr("tg", 4))
    argv = ["-n", "-c", "6", "-i", "0.2", "-T", kind, dst]
    theirs = native("ping", *argv, netns=ns)
    ours = pktlab_run("ping", *argv, netns=ns)
    assert ours.returncode == theirs.returncode == 0, ours.stderr
    mine, its = first_differences(ours.stdout), first_differences(theirs.stdout)
    assert len(mine) == len(its) == 6, (ours.stdout, theirs.stdout)
    assert set(its) <= {0, 1} and set(mine) <= {0, 1}, (mine, its)
    # and the entry is the time the request left, to the millisecond (the ntag's time)
    got = pktlab_run("ping", "--json", *argv, netns=ns)
    replies = [r for r in map(json.loads, got.stdout.splitlines()) if r["type"] == "reply"]
    assert len(replies) == 6, got.stderr
    for r in replies:
        assert r["ip_timestamps"]["entries"][0][1] == ms_of_day(r["probe_send_ns"]), r


def test_adaptive_keeps_one_request_in_flight_as_iputils(
    testbed_factory: Callable[..., Testbed],
) -> None:
    """`ping -A -w 1` over a namespace path of ~10 µs RTT: iputils' interval rounds to 0
    and it sends the next request as the reply comes (or 10 ms after), one in flight.
    Ours freed the place after the smoothed RTT, so the controller sent as fast as it
    could: `pipe 115`, 3.5 % of the requests unanswered at the deadline (session 29)."""
    tb = testbed_factory(hops=1)
    ns, dst = tb.netns_name("ep"), str(tb.addr("tg", 4))
    argv = ["-n", "-A", "-q", "-w", "1", dst]
    for got in (native("ping", *argv, netns=ns), pktlab_run("ping", *argv, netns=ns)):
        assert got.returncode == 0, got.stderr
        counts = re.search(r"(\d+) packets transmitted, (\d+) received", got.stdout)
        assert counts is not None, got.stdout
        sent, received = map(int, counts.groups())
        assert sent - received <= 1, got.stdout  # (one may be in flight at the deadline)
        pipe = re.search(r"pipe (\d+)", got.stdout)
        assert pipe is None or int(pipe[1]) <= 2, got.stdout
