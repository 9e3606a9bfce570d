"""Session 29 (trace29): `pktlab run traceroute` beside traceroute 2.1.2 on a 3-router
chain whose r2-r3 link has an MTU of 1400, packetlen over it without `-F`. Traceroute's
probes leave one by one (a socket and a send each, ~50 µs apart), so its kernel has r2's
"packet too big" before the next probe and fragments it: IPv6 `3  r2  X ms !F-1400 r3  X
ms  X ms`. Ours left back to back, all answered "too big" (`!F-1400` three times); now the
ones answered so after the first go again in fragments of the MTU it named. IPv4 (no DF:
r2 fragments) was the same already and stays so.

Every node's route cache is flushed before each tool: a path MTU one run taught a kernel
would be the next run's start.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from test_pktlab_run import pktlab_run
from test_pmtu_like_native import flushed, narrow
from test_run_like_native import beside_native, masked, native

from packetlab.testbed import Testbed

pytest_plugins = ["packetlab.testbed.pytest_fixtures"]
pytestmark = [pytest.mark.root]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    beside_native(tmp_path, monkeypatch, f"mtu29{os.getpid() % 10000}-", home=False)


@pytest.mark.parametrize(
    ("family", "extra", "size"),
    [(6, [], "1450"), (6, ["-I"], "1450"), (6, [], "2000"), (4, [], "1450"), (4, ["-I"], "1450")],
    ids=["ipv6-udp-1450", "ipv6-icmp-1450", "ipv6-udp-2000", "ipv4-udp-1450", "ipv4-icmp-1450"],
)
def test_probes_over_a_narrower_link_without_df_as_traceroute(
    testbed_factory: Callable[..., Testbed], family: int, extra: list[str], size: str
) -> None:
    tb = narrow(testbed_factory)
    ns, tg = tb.netns_name("ep"), str(tb.addr("tg", family))
    argv = ["-n", f"-{family}", *extra, tg, size]
    flushed(tb)
    theirs = native("traceroute", *argv, netns=ns)
    flushed(tb)
    ours = pktlab_run("traceroute", *argv, netns=ns)
    assert ours.returncode == theirs.returncode == 0, ours.stderr
    assert ours.stderr == theirs.stderr == ""
    assert masked(ours.stdout) == masked(theirs.stdout)
    if family == 6:
        r2, r3 = tb.addr("r2", 6), tb.addr("r3", 6)
        assert masked(ours.stdout)[-1] == f" 3  {r2}  R ms !F-1400 {r3}  R ms  R ms"
    else:
        assert len(masked(ours.stdout)) == 5  # the header and 4 hops: r2 fragments
