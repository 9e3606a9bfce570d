"""Our traceroute and ping through a real `twistd pktendpoint` in the testbed's ep namespace
agree with Butskoy traceroute and scamper (root; chain ep — r1 — r2 — tg, ICMP rate limits
off, TX checksum offload off).

The controller runs in this process's reactor; its listening socket is made inside ep
(`InNamespace`), so the endpoint connects to it over ep's loopback. RTT figures are in
benchmarks/bench_traceroute.py, not asserted here.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IStreamServerEndpoint
from zope.interface import implementer

from packetlab.controller import EndpointSession, run_once
from packetlab.controller.local import twistd_command
from packetlab.measure import native
from packetlab.measure.ping import ping
from packetlab.measure.records_fields import Stamp
from packetlab.measure.records_traceroute import path_jaccard
from packetlab.measure.replies import ReplyKind
from packetlab.measure.traceroute import traceroute
from packetlab.testbed import Testbed

pytest_plugins = ["packetlab.testbed.pytest_fixtures"]
pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
SPORT = 20556  # the paper's --sport, for ours and traceroute's probes alike
TIMEOUT = 60.0


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: network namespaces, raw sockets, eBPF")
    monkeypatch.setenv("PKTLAB_TESTBED_DIR", str(tmp_path))
    monkeypatch.setenv("PKTLAB_TESTBED_PREFIX", f"plt{os.getpid() % 100000}-")


@implementer(IStreamServerEndpoint)
class InNamespace:
    """Listen on 127.0.0.1 inside a testbed node (the socket keeps the namespace)."""

    def __init__(self, tb: Testbed, node: str) -> None:
        self.tb, self.node = tb, node

    def listen(self, factory: Any) -> Any:
        with self.tb.enter(self.node):
            return TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)


def endpoint_config(tb: Testbed) -> str:
    ep = tb.interfaces("ep")[0]
    return (
        "TransprotoSup raw,tcp,udp\n"
        f"VMemLocalAddrStrIPv4 {ep.ipv4}\n"
        f"VMemLocalAddrStrIPv6 {ep.ipv6.ip}\n"
        "HostID traceroute-test\nNoSubMode 1\n"
    )


async def on_ep_endpoint(tb: Testbed, workdir: Path, experiment: Callable[..., Any]) -> Any:
    """Run `experiment(session)` against a twistd pktendpoint started in ep."""
    conf = workdir / "endpt.conf"
    conf.write_text(endpoint_config(tb))
    log = workdir / "pktendpoint.log"
    procs: list[subprocess.Popen[Any]] = []

    def start(port: Any) -> None:
        argv = [*twistd_command(), "-n", "--pidfile=", f"--logfile={log}", "pktendpoint"]
        argv += ["-c", str(conf), "--insecure-plaintext", f"127.0.0.1:{port.getHost().port}"]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        procs.append(tb.popen("ep", argv, cwd=workdir, env=env))

    try:
        return await run_once(
            reactor, InNamespace(tb, "ep"), experiment, timeout=TIMEOUT, on_listening=start
        )
    except Exception:
        print(f"--- endpoint log ---\n{log.read_text(errors='replace')[-6000:]}")
        raise
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def expected_path(tb: Testbed, family: int) -> list[tuple[int, str]]:
    def addr(node: str, peer: str) -> str:
        i = next(i for i in tb.interfaces(node) if i.name == f"to-{peer}")
        return str(i.ipv4.ip if family == 4 else i.ipv6.ip)

    return [(1, addr("r1", "ep")), (2, addr("r2", "r1")), (3, str(tb.addr("tg", family)))]


@pytest.mark.parametrize("family", [4, 6])
@pytest_twisted.ensureDeferred
async def test_hop_addresses_identical_to_traceroute_and_scamper(
    testbed_factory: Callable[..., Testbed], tmp_path: Path, family: int
) -> None:
    tb = testbed_factory(hops=2)
    dst = str(tb.addr("tg", family))
    ns = tb.netns_name("ep")
    tr = native.run_traceroute(dst, netns=ns, max_ttl=10, wait=2, sport=SPORT, timeout=60)
    sc = native.run_scamper(dst, netns=ns, max_ttl=10, wait=2, timeout=60)

    async def experiment(session: EndpointSession) -> Any:
        runs = [await traceroute(session, dst, max_ttl=10, sport=SPORT) for _ in range(3)]
        runs.append(await traceroute(session, dst, max_ttl=10, sport=SPORT, pace=0.001))
        echo = await ping(session, dst, count=3, interval=0.05)
        return runs, echo

    runs, echo = await on_ep_endpoint(tb, tmp_path, experiment)
    want = expected_path(tb, family)
    assert tr.path() == want, tr
    assert sc.path() == want, sc
    for ours in runs:
        assert ours.path() == want
        assert ours.src == str(tb.addr("ep", family)) and ours.reached
        assert [h.reply_type for h in ours.hops] == [
            ReplyKind.TIME_EXCEEDED,
            ReplyKind.TIME_EXCEEDED,
            ReplyKind.DEST_UNREACHABLE,
        ]
        assert (ours.send_stamp, ours.recv_stamp) == (Stamp.KERNEL, Stamp.KERNEL)
        for h in ours.hops:  # both times are endpoint times: the reply comes after the probe
            assert h.probe_send_ns is not None and h.reply_recv_ns is not None
            assert h.reply_recv_ns > h.probe_send_ns
        assert ours.probe_size == (60 if family == 4 else 80)  # the size traceroute sends
    assert path_jaccard(runs, [tr]) == 1.0 and path_jaccard(runs, [sc]) == 1.0
    assert (echo.sent, echo.received) == (3, 3)
    assert {r.addr for r in echo.replies} == {dst}
    assert all(r.ttl == 62 for r in echo.replies)  # two routers from tg


@pytest_twisted.ensureDeferred
async def test_max_ttl_and_silent_target(
    testbed_factory: Callable[..., Testbed], tmp_path: Path
) -> None:
    tb = testbed_factory(hops=2)
    unused = "10.77.3.99"  # on tg's subnet, nobody answers ARP: r2 reports host unreachable
    # late (after ARP gives up), so within a short wait the last hops are timeouts

    async def experiment(session: EndpointSession) -> Any:
        short = await traceroute(session, str(tb.addr("tg")), max_ttl=2, wait=1.0)
        silent = await traceroute(session, unused, max_ttl=4, wait=0.3)
        return short, silent

    short, silent = await on_ep_endpoint(tb, tmp_path, experiment)
    assert short.path() == expected_path(tb, 4)[:2] and not short.reached
    assert silent.path()[:2] == expected_path(tb, 4)[:2]
    assert all(addr is None for ttl, addr in silent.path()[2:])
    assert len(silent.hops) == 4 and not silent.reached
