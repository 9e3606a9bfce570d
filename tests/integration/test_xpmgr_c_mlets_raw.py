"""The raw-socket example mlets in C (examples/mlets/test_icmp_echo, test_pktif_traceroute,
built with the system compiler by their Makefile) under a real `pktlab xpmgr` against a real
`twistd pktendpoint` (NoSub, TLS, raw sockets allowed), both inside the ep namespace of a
testbed chain (root): echo replies counted and their RTTs set beside native `ping`'s in the
same namespace; traceroute hops identical to native `traceroute -n -q 1` on the same path
(both outputs read by the same parser, packetlab.measure.native); the same mlets under -s
(through test_single_mlet) and in active mode through `twistd pktproxy`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import twistd
from pxworld import ENV, Proc, ProxyProc, active_conf, built_mlets
from tls_world import home_fixture

from packetlab.measure import native
from packetlab.testbed import Testbed

pytest_plugins = ["packetlab.testbed.pytest_fixtures"]
pytestmark = pytest.mark.root

MLETS = ("test_icmp_echo", "test_pktif_traceroute", "test_single_mlet")


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: network namespaces, raw sockets, eBPF")
    monkeypatch.setenv("PKTLAB_TESTBED_DIR", str(tmp_path))
    monkeypatch.setenv("PKTLAB_TESTBED_PREFIX", f"cml{os.getpid() % 100000}-")


@pytest.fixture(scope="module")
def mlets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # C99 + POSIX, -Wall -Wextra clean, as the brief of these mlets says
    flags = "-std=c99 -D_POSIX_C_SOURCE=200809L -O2 -Wall -Wextra -Werror"
    return built_mlets(tmp_path_factory.mktemp("mlets"), flags)


home = home_fixture(root=True)


def in_ns(tb: Testbed, node: str, argv: Sequence[str], log: Path, cwd: Path) -> Proc:
    return Proc(native.netns_argv(argv, tb.netns_name(node)), log, cwd, env=ENV)


def endpoint(tb: Testbed, tmp: Path, home: Path, address: str, *args: str) -> Proc:
    """`twistd pktendpoint` in ep with raw sockets on its testbed address."""
    ep = tb.interfaces("ep")[0]
    argv = [*twistd(), "-n", "--pidfile=", "--logfile=-", "pktendpoint", "-c",
            str(home / "endpt.conf"), "--set", "TransprotoSup=raw,tcp,udp",
            "--set", f"VMemLocalAddrStrIPv4={ep.ipv4}", "--reconnect-delay", "0.1",
            *args, address]  # fmt: skip
    return in_ns(tb, "ep", argv, tmp / f"pktendpoint-{os.urandom(3).hex()}.log", tmp)


def xpmgr(tb: Testbed, tmp: Path, conf: Path, addr: str, *args: str) -> tuple[Proc, Path]:
    results = tmp / f"results-{os.urandom(3).hex()}.jsonl"
    argv = [sys.executable, "-m", "packetlab", "xpmgr", "-c", str(conf), "-a", addr,
            "--results", str(results), *args]  # fmt: skip
    return in_ns(tb, "ep", argv, tmp / f"xpmgr-{os.urandom(3).hex()}.log", tmp), results


def results_of(xp: Proc, results: Path, timeout: float = 90.0) -> list[dict[str, Any]]:
    import json

    try:
        code = xp.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"xpmgr still running:\n{xp.text()[-4000:]}") from None
    lines = [json.loads(line) for line in results.read_text().splitlines() if line]
    # every endpoint failed: exit status 3 (session 31; was 0); -s: the singleton's status
    failed = not any(r["status"] == "done" or r.get("singleton") for r in lines)
    assert code == (3 if failed else 0), xp.text()[-4000:]
    return lines


def run_passive(
    tb: Testbed, tmp: Path, home: Path, procs: list[Proc], mlet: Sequence[str], *opts: str
) -> list[dict[str, Any]]:
    """One session of `mlet` under xpmgr in passive mode, its results lines."""
    xp, results = xpmgr(tb, tmp, home / "xpmgr.conf", "127.0.0.1:0", "-n", "1", *opts, *mlet)
    procs.append(xp)
    port = xp.wait_log(r"listening on 127\.0\.0\.1:(\d+)").group(1)
    procs.append(endpoint(tb, tmp, home, f"127.0.0.1:{port}", "--sessions", "1"))
    return results_of(xp, results)


def test_icmp_echo_replies_counted_rtts_beside_native_ping(
    testbed_factory: Callable[..., Testbed], tmp_path: Path, home: Path, mlets: Path,
    procs: list[Proc],
) -> None:  # fmt: skip
    tb = testbed_factory(hops=2)
    tg = str(tb.addr("tg"))
    ping = native.run_ping(tg, netns=tb.netns_name("ep"), count=5, interval=0.2, timeout=30)
    [r] = run_passive(tb, tmp_path, home, procs, [str(mlets / "test_icmp_echo"), tg, "5", "200"])
    assert r["status"] == "done", r
    ours = native.parse_ping(r["output"])  # printed as ping prints, read by ping's parser
    assert (ours.dst, ours.sent, len(ours.replies)) == (tg, 5, 5), r["output"]
    assert [x.seq for x in ours.replies] == [1, 2, 3, 4, 5]
    assert {x.addr for x in ours.replies} == {tg} == {x.addr for x in ping.replies}
    assert {x.ttl for x in ours.replies} == {x.ttl for x in ping.replies} == {62}
    assert {x.size for x in ours.replies} == {x.size for x in ping.replies} == {64}
    assert "rtt min/avg/max/mdev = " in r["output"]
    # Endpoint kernel stamps on both ends (ntag = TX stamp, ndata = RX stamp): positive,
    # and not above what ping measures from user space around the same path (+1 ms).
    rtts = [x.rtt_us for x in ours.replies if x.rtt_us is not None]
    native_rtts = [x.rtt_us for x in ping.replies if x.rtt_us is not None]
    print(f"RTT us: ours {rtts}, ping {native_rtts}")
    assert len(rtts) == 5 and all(0 < x < max(native_rtts) + 1000 for x in rtts), (
        rtts,
        native_rtts,
    )


def test_icmp_echo_to_a_silent_address_is_a_failed_result(
    testbed_factory: Callable[..., Testbed], tmp_path: Path, home: Path, mlets: Path,
    procs: list[Proc],
) -> None:  # fmt: skip
    tb = testbed_factory(hops=1)
    silent = "10.77.2.99"  # on tg's subnet; nobody answers its ARP
    [r] = run_passive(
        tb, tmp_path, home, procs, [str(mlets / "test_icmp_echo"), silent, "2", "100"]
    )
    assert r["status"] == "failed" and "exited with status 1" in r["error"], r
    ours = native.parse_ping(r["output"])
    assert (ours.sent, ours.replies) == (2, ())
    assert "2 packets transmitted, 0 received, 100% packet loss" in r["output"]


@pytest.mark.parametrize(("hops", "icmp"), [(2, False), (3, False), (3, True)])
def test_traceroute_hops_identical_to_native_traceroute(
    testbed_factory: Callable[..., Testbed], tmp_path: Path, home: Path, mlets: Path,
    procs: list[Proc], hops: int, icmp: bool,
) -> None:  # fmt: skip
    """UDP probes, and ICMP echo probes (-I, beside `traceroute -I`)."""
    tb = testbed_factory(hops=hops)
    tg = str(tb.addr("tg"))
    method = "icmp" if icmp else "udp"
    argv = native.traceroute_argv(tg, max_ttl=10, wait=2)
    if icmp:
        argv.insert(1, "-I")
    done = subprocess.run(native.netns_argv(argv, tb.netns_name("ep")), capture_output=True,
                          text=True, timeout=60, check=True)  # fmt: skip
    tr = native.parse_traceroute(done.stdout, method=method)
    mlet = [str(mlets / "test_pktif_traceroute"), *(["-I"] if icmp else []), tg, "10"]
    [r] = run_passive(tb, tmp_path, home, procs, mlet)
    assert r["status"] == "done", r
    ours = native.parse_traceroute(r["output"], method=method)  # traceroute's own format
    assert ours.path() == tr.path(), (r["output"], tr)
    assert [addr for _, addr in ours.path()][-1] == tg and len(ours.path()) == hops + 1
    assert (ours.max_ttl, ours.probe_size) == (10, 60)  # traceroute's 60-byte probes
    assert all(h.rtt_us is not None and h.rtt_us > 0 for h in ours.hops), r["output"]


def test_traceroute_stopped_by_max_ttl_is_a_failed_result(
    testbed_factory: Callable[..., Testbed], tmp_path: Path, home: Path, mlets: Path,
    procs: list[Proc],
) -> None:  # fmt: skip
    tb = testbed_factory(hops=3)
    tg = str(tb.addr("tg"))
    [r] = run_passive(tb, tmp_path, home, procs, [str(mlets / "test_pktif_traceroute"), tg, "2"])
    assert r["status"] == "failed", r
    ours = native.parse_traceroute(r["output"])
    assert [ttl for ttl, _ in ours.path()] == [1, 2] and tg not in r["output"].split("\n", 1)[1]


def test_raw_mlets_under_singleton_mode(
    testbed_factory: Callable[..., Testbed], tmp_path: Path, home: Path, mlets: Path,
    procs: list[Proc],
) -> None:  # fmt: skip
    """-s: one test_single_mlet gets each endpoint's fd (SCM_RIGHTS) and runs the C mlet
    on it with EPADDR, as the reference's test_single_mlet."""
    tb = testbed_factory(hops=2)
    tg = str(tb.addr("tg"))
    mlet = [str(mlets / "test_single_mlet"), str(mlets / "test_pktif_traceroute"), tg, "5"]
    xp, results = xpmgr(tb, tmp_path, home / "xpmgr.conf", "127.0.0.1:0", "-s", "-n", "2", *mlet)
    procs.append(xp)
    port = xp.wait_log(r"listening on 127\.0\.0\.1:(\d+)").group(1)
    procs.append(endpoint(tb, tmp_path, home, f"127.0.0.1:{port}", "--sessions", "2"))
    *rs, single = results_of(xp, results)  # the singleton's own line last (session 25)
    assert [r["status"] for r in rs] == ["done", "done"], rs
    assert single["singleton"] is True and single["status"] == "done", single
    assert [e["status"] for e in single["endpoints"]] == ["done", "done"], single
    out = xp.text()
    assert out.count(f"traceroute to {tg} ({tg}), 5 hops max, 60 byte packets") == 2, out
    assert out.count(f" 3  {tg}  ") == 2, out
    assert "singleton mlet exited (code 0)" in out


def test_icmp_echo_in_active_mode_through_pktproxy(
    testbed_factory: Callable[..., Testbed], tmp_path: Path, home: Path, mlets: Path,
    procs: list[Proc],
) -> None:  # fmt: skip
    tb = testbed_factory(hops=1)
    tg = str(tb.addr("tg"))
    with tb.enter("ep"):  # the proxy's ports on ep's loopback, where the others run
        proxy = ProxyProc(tmp_path, home)
    procs.append(proxy)
    conf = active_conf(home, tmp_path / "active.conf", "rawsni1")
    xp, results = xpmgr(tb, tmp_path, conf, f"127.0.0.1:{proxy.setup}", "-n", "1",
                        str(mlets / "test_icmp_echo"), tg, "3", "50")  # fmt: skip
    procs.append(xp)
    proxy.counters("backlog >= 1")
    procs.append(endpoint(tb, tmp_path, home, f"127.0.0.1:{proxy.endpoints}", "--snikey",
                          "rawsni1", "--sessions", "1"))  # fmt: skip
    [r] = results_of(xp, results)
    assert r["status"] == "done" and r["snikey"] == "rawsni1", r
    ours = native.parse_ping(r["output"])
    assert (ours.sent, len(ours.replies)) == (3, 3), r["output"]
    assert proxy.counters("splices == 1")["splices"] == 1
