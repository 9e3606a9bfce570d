"""Namespace testbeds: the plan (no root needed) and real topologies (root)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from packetlab.cli import testbed as cli
from packetlab.testbed import (
    NetNS,
    Shape,
    Testbed,
    TestbedError,
    Topology,
    TopologyError,
    chain,
    list_netns,
    list_testbeds,
)
from packetlab.testbed.probe import icmp_echo, traceroute

pytest_plugins = ["packetlab.testbed.pytest_fixtures"]


@pytest.fixture(autouse=True)
def _isolated(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Own state directory and namespace prefix, so `down --all` touches only this test's."""
    if request.node.get_closest_marker("root") and os.geteuid() != 0:
        pytest.skip("needs root: creates network namespaces")
    monkeypatch.setenv("PKTLAB_TESTBED_DIR", str(tmp_path))
    monkeypatch.setenv("PKTLAB_TESTBED_PREFIX", f"plt{os.getpid() % 100000}-")


# --- the plan ------------------------------------------------------------------------------


def test_chain_plan() -> None:
    topo = chain(2)
    assert list(topo.nodes) == ["ep", "r1", "r2", "tg"]
    assert [n.router for n in topo.nodes.values()] == [False, True, True, False]
    assert [(lk.number, lk.a, lk.b) for lk in topo.links] == [
        (1, "ep", "r1"),
        (2, "r1", "r2"),
        (3, "r2", "tg"),
    ]
    r1 = topo.interfaces("r1")
    assert [(i.name, str(i.ipv4), str(i.ipv6)) for i in r1] == [
        ("to-ep", "10.77.1.2/24", "fd00:77:1::2/64"),
        ("to-r2", "10.77.2.1/24", "fd00:77:2::1/64"),
    ]
    assert topo.address("ep") == ipaddress.ip_address("10.77.1.1")
    assert topo.address("tg", 6) == ipaddress.ip_address("fd00:77:3::2")
    for node in topo.nodes:
        assert all(len(i.name) <= 15 for i in topo.interfaces(node))


def test_routes() -> None:
    topo = chain(2)
    assert [r.ip_command() for r in topo.routes("ep")] == [
        "route replace 0.0.0.0/0 via 10.77.1.2 dev to-r1",
        "route replace ::/0 via fd00:77:1::2 dev to-r1",
    ]
    assert [r.ip_command() for r in topo.routes("r1")] == [
        "route replace 10.77.3.0/24 via 10.77.2.2 dev to-r2",
        "route replace fd00:77:3::/64 via fd00:77:2::2 dev to-r2",
    ]
    assert [r.ip_command() for r in topo.routes("r2")] == [
        "route replace 10.77.1.0/24 via 10.77.2.1 dev to-r1",
        "route replace fd00:77:1::/64 via fd00:77:2::1 dev to-r1",
    ]
    # A node with several links routes along shortest paths (here: a ring of four routers).
    ring = Topology(base=5)
    for n in ("a", "b", "c", "d"):
        ring.add_node(n, router=True)
    for x, y in (("a", "b"), ("b", "c"), ("c", "d"), ("d", "a")):
        ring.add_link(x, y)
    via = {str(r.dest): (str(r.via), r.dev) for r in ring.routes("a")}
    assert via["10.5.2.0/24"] == ("10.5.1.2", "to-b")  # b-c, next to b
    assert via["10.5.3.0/24"] == ("10.5.4.1", "to-d")  # c-d, next to d
    assert ring.routes("a") == Topology.from_dict(ring.to_dict()).routes("a")


def test_chain_zero_hops_and_shapes() -> None:
    topo = chain(0, shape={1: Shape.parse("2mbit")})
    assert list(topo.nodes) == ["ep", "tg"]
    assert topo.link(1).shape == Shape(2_000_000)
    everywhere = chain(3, shape=Shape(10**6))
    assert all(lk.shape == Shape(10**6) for lk in everywhere.links)
    assert Topology.from_dict(everywhere.to_dict()).to_dict() == everywhere.to_dict()


@pytest.mark.parametrize(
    ("text", "rate"),
    [("10mbit", 10**7), ("500kbit", 500_000), ("1.5Mbit", 1_500_000), ("9000", 9000)],
)
def test_shape_parse(text: str, rate: int) -> None:
    shape = Shape.parse(text)
    assert shape.rate_bit == rate
    assert shape.tbf_args()[:3] == ["tbf", "rate", f"{rate}bit"]


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: chain(21), "hops 21 outside"),
        (lambda: chain(1, shape={5: Shape(10**6)}), "no link 5"),
        (lambda: Shape.parse("fast"), "bad rate"),
        (lambda: Shape.parse("10mbps"), "bad rate"),
        (lambda: Shape(100), "below 8 kbit/s"),
        (lambda: Shape(10**6, burst_bytes=10), "below one packet"),
        (lambda: Shape(10**6, latency_ms=0), "must be positive"),
        (lambda: Topology().add_node("Bad-Name"), "node name"),
        (lambda: Topology().add_node("waytoolongname"), "node name"),
        (lambda: Topology(base=300), "base 300"),
        (lambda: chain(1).add_node("r1"), "exists already"),
        (lambda: chain(1).add_link("ep", "nope"), "unknown node"),
        (lambda: chain(1).add_link("ep", "ep"), "itself"),
        (lambda: chain(1).add_link("r1", "ep"), "exists already"),
        (lambda: chain(1).address("zz"), "unknown node"),
        (lambda: chain(1).address("ep", 5), "family must be 4 or 6"),
        (lambda: chain(1).link_between("ep", "tg"), "no link between"),
    ],
)
def test_plan_errors(make: Callable[[], object], words: str) -> None:
    with pytest.raises(TopologyError, match=words):
        make()


def test_names() -> None:
    tb = Testbed(chain(1), name="demo")
    pre = os.environ["PKTLAB_TESTBED_PREFIX"]
    assert tb.name == f"{pre}demo" and tb.netns_name("r1") == f"{pre}demo-r1"
    assert Testbed(chain(1)).name != Testbed(chain(1)).name
    with pytest.raises(TestbedError, match="testbed name"):
        Testbed(chain(1), name="Not OK")
    with pytest.raises(TopologyError):
        tb.netns_name("nope")


# --- real testbeds ---------------------------------------------------------------------


def _root_links() -> set[str]:
    return {name for _, name in socket.if_nameindex()}


@pytest.mark.root
def test_ping_end_to_end(chain_testbed: Testbed) -> None:
    tb = chain_testbed
    for family in (4, 6):
        assert tb.call("ep", icmp_echo, tb.addr("tg", family)) is not None
        assert tb.call("tg", icmp_echo, tb.addr("ep", family)) is not None
    # Nothing leaks out: no route from the endpoint to the root namespace's networks.
    assert tb.run("ep", ["ip", "route", "get", "10.77.3.2"]).stdout.split()[2] == "10.77.1.2"


@pytest.mark.root
@pytest.mark.parametrize("family", [4, 6])
def test_ttl_expiry_is_answered_by_each_router(chain_testbed: Testbed, family: int) -> None:
    tb = chain_testbed
    hops = tb.call("ep", traceroute, tb.addr("tg", family), max_ttl=5, timeout=2.0)
    assert [h.address for h in hops] == [
        tb.topology.interfaces("r1")[0].ipv4.ip
        if family == 4
        else tb.topology.interfaces("r1")[0].ipv6.ip,
        tb.topology.interfaces("r2")[0].ipv4.ip
        if family == 4
        else tb.topology.interfaces("r2")[0].ipv6.ip,
        tb.addr("tg", family),
    ]
    assert [h.reached for h in hops] == [False, False, True]
    assert hops[0].icmp_type == (11 if family == 4 else 3)


def _burst_of_probes(dst: str, count: int, timeout: float) -> int:
    """Send ``count`` TTL-1 UDP probes at once; how many ICMP time-exceeded come back."""
    v6 = ":" in dst
    fam = socket.AF_INET6 if v6 else socket.AF_INET
    proto = socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP
    with (
        socket.socket(fam, socket.SOCK_RAW, proto) as icmp,
        socket.socket(fam, socket.SOCK_DGRAM) as udp,
    ):
        if v6:
            udp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 1)
        else:
            udp.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 1)
        for i in range(count):
            udp.sendto(struct.pack("!H", i), (dst, 33434 + i))
        icmp.settimeout(0.1)
        answers, deadline = 0, time.monotonic() + timeout
        while answers < count and time.monotonic() < deadline:
            try:
                msg = icmp.recv(2048)
            except TimeoutError:
                continue
            kind = msg[0] if v6 else msg[(msg[0] & 0x0F) * 4]
            answers += kind == (3 if v6 else 11)
        return answers


@pytest.mark.root
@pytest.mark.parametrize("family", [4, 6])
def test_icmp_rate_limits_are_off(chain_testbed: Testbed, family: int) -> None:
    # With the kernel defaults only a handful of 100 back-to-back probes would be answered.
    tb = chain_testbed
    assert tb.call("ep", _burst_of_probes, str(tb.addr("tg", family)), 100, 3.0) == 100
    assert tb.ns("r1").get_sysctl("net.ipv4.icmp_ratelimit") == "0"
    assert tb.ns("r1").get_sysctl("net.ipv4.ip_forward") == "1"
    assert tb.ns("ep").get_sysctl("net.ipv4.ip_forward") == "0"


def _blast(dst: str, port: int, seconds: float) -> int:
    """Send 1200-byte datagrams as fast as possible for ``seconds``; bytes sent."""
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for _ in range(50):
                try:
                    sent += sock.sendto(bytes(1200), (dst, port))
                except OSError:  # ENOBUFS while the qdisc is full: keep offering
                    pass
    return sent


def _receive(sock: socket.socket, until: float) -> tuple[int, list[int]]:
    total, stamps = 0, []
    while (left := until - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(2048)
        except TimeoutError:
            break
        total += len(data)
        stamps.append(time.monotonic_ns())
    return total, stamps


@pytest.mark.root
def test_tbf_shaping_limits_the_rate(testbed_factory: Callable[..., Testbed]) -> None:
    rate = 2_000_000
    tb = testbed_factory(chain(1, shape={2: Shape(rate)}))
    with tb.enter("tg"):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with rx:
        rx.bind((str(tb.addr("tg")), 9999))
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        start = time.monotonic()
        sent = tb.call("ep", _blast, str(tb.addr("tg")), 9999, 1.0)
        got, stamps = _receive(rx, time.monotonic() + 0.5)
        elapsed = time.monotonic() - start
    qdisc = tb.run("r1", ["tc", "-s", "qdisc", "show", "dev", "to-tg"]).stdout
    assert "tbf" in qdisc and "rate 2Mbit" in qdisc
    # What got through is bounded by the rate over the whole time, plus the bucket and the
    # 50 ms queue; what was offered was far more.
    bound = rate / 8 * elapsed + Shape(rate).burst + rate / 8 * 0.05
    assert 0 < got <= bound * 1.2, (got, bound)
    assert sent > 4 * got
    assert len(stamps) > 10


@pytest.mark.root
def test_shape_changes_on_a_live_testbed(testbed_factory: Callable[..., Testbed]) -> None:
    tb = testbed_factory(chain(1))
    tb.shape("ep", "r1", Shape(10**6))
    for node, dev in (("ep", "to-r1"), ("r1", "to-ep")):
        assert "tbf" in tb.run(node, ["tc", "qdisc", "show", "dev", dev]).stdout
    tb.shape("ep", "r1", None)
    assert "tbf" not in tb.run("ep", ["tc", "qdisc", "show", "dev", "to-r1"]).stdout


@pytest.mark.root
def test_teardown_leaves_nothing_behind() -> None:
    links_before = _root_links()
    tb = Testbed(chain(2))
    names = [ns.name for ns in tb.namespaces()]
    with tb:
        assert set(names) <= set(list_netns())
        assert [i.name for i in list_testbeds()] == [tb.name]
        sleeper = tb.popen("tg", ["sleep", "60"])
        stray = subprocess.Popen(tb.ns("r1").exec_argv(["sleep", "60"]))
    assert not set(names) & set(list_netns())
    assert _root_links() == links_before
    assert sleeper.poll() is not None
    assert stray.wait(5) is not None  # processes left inside the namespace are ended too
    assert list_testbeds() == []


@pytest.mark.root
def test_cleanup_when_the_body_raises() -> None:
    tb = Testbed(chain(1))
    with pytest.raises(RuntimeError, match="boom"), tb:
        assert all(ns.exists() for ns in tb.namespaces())
        raise RuntimeError("boom")
    assert not any(ns.exists() for ns in tb.namespaces())


@pytest.mark.root
def test_a_clash_fails_without_touching_the_other_namespace() -> None:
    tb = Testbed(chain(1), name="clash")
    other = NetNS(tb.netns_name("r1"))
    other.create()
    try:
        with pytest.raises(TestbedError, match="exist already"):
            tb.up()
        assert other.exists()
        assert not NetNS(tb.netns_name("ep")).exists()
        tb.down()  # as testbed_factory's teardown does: it deleted the other namespace
        assert other.exists()
    finally:
        other.delete()


@pytest.mark.root
def test_two_ups_of_one_name_at_once_leave_the_winner_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another `up` of the same name makes r1 between our check and our making it: ours
    fails, and removes only what it made (it deleted every namespace of the name, the
    other's too, which then died on a setns traceback; session 24)."""
    tb = Testbed(chain(1), name="race")
    theirs = NetNS(tb.netns_name("r1"))
    real = NetNS.create

    def create(ns: NetNS) -> None:
        if ns.name == theirs.name:
            real(theirs)  # the other process wins this one
        real(ns)

    monkeypatch.setattr(NetNS, "create", create)
    try:
        with pytest.raises(TestbedError, match=f"namespace {theirs.name} was made meanwhile"):
            tb.up()
        assert theirs.exists()
        assert not NetNS(tb.netns_name("ep")).exists()  # ours, removed
        tb.down()
        assert theirs.exists()
    finally:
        theirs.delete()


@pytest.mark.root
def test_a_failed_up_is_undone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("PKTLAB_TESTBED_DIR", str(blocker))
    tb = Testbed(chain(1))
    with pytest.raises(TestbedError, match="cannot write the state file"):
        tb.up()
    assert not any(ns.exists() for ns in tb.namespaces())


@pytest.mark.root
def test_run_enter_and_call(chain_testbed: Testbed) -> None:
    tb = chain_testbed
    assert "10.77.2.1/24" in tb.run("r1", ["ip", "-o", "addr", "show", "dev", "to-r2"]).stdout
    with pytest.raises(TestbedError, match="failed"):
        tb.run("ep", ["ip", "link", "show", "dev", "nosuchdev"])
    with tb.enter("ep"):
        inside = {name for _, name in socket.if_nameindex()}
    assert inside == {"lo", "to-r1"}
    assert _root_links() != inside  # the thread came back to the root namespace
    assert tb.call("tg", lambda: {n for _, n in socket.if_nameindex()}) == {"lo", "to-r2"}

    def fail() -> None:
        raise ValueError("inside")

    with pytest.raises(ValueError, match="inside"):
        tb.call("tg", fail)


# --- the command line ------------------------------------------------------------------


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="pktlab testbed")
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(argv))


@pytest.fixture
def cleanup_cli() -> Iterator[None]:
    yield
    _cli("down", "--all")


@pytest.mark.root
@pytest.mark.usefixtures("cleanup_cli")
def test_cli_up_status_down(capsys: pytest.CaptureFixture[str]) -> None:
    pre = os.environ["PKTLAB_TESTBED_PREFIX"]
    assert _cli("up", "--hops", "1", "--name", "clitest", "--shape", "1=5mbit") == 0
    out = capsys.readouterr().out
    assert f"netns {pre}clitest-ep" in out and "10.77.2.2/24" in out and "tbf 5000000" in out
    assert f"ip netns exec {pre}clitest-ep" in out
    assert NetNS(f"{pre}clitest-r1").exists()
    assert _cli("status") == 0
    assert f"{pre}clitest  chain  live" in capsys.readouterr().out
    assert _cli("up", "--name", "clitest") == 1
    err = capsys.readouterr().err
    assert "exist already" in err
    assert err.endswith(f"(testbed {pre}clitest is up: `pktlab testbed down clitest` removes it)\n")
    assert _cli("down", "clitest") == 0
    assert f"removed {pre}clitest: {pre}clitest-ep" in capsys.readouterr().out
    assert not NetNS(f"{pre}clitest-r1").exists()
    # idempotent (session 24): a second down was exit 1, "no testbed named ..."
    assert _cli("down", "clitest") == 0
    assert capsys.readouterr().out == f"no testbed {pre}clitest: nothing to remove\n"
    assert _cli("up", "--shape", "7=1mbit") == 1
    assert "no link 7" in capsys.readouterr().err
    assert list_testbeds() == []


@pytest.mark.root
@pytest.mark.usefixtures("cleanup_cli")
def test_cli_down_all_and_orphans(capsys: pytest.CaptureFixture[str]) -> None:
    pre = os.environ["PKTLAB_TESTBED_PREFIX"]
    assert _cli("up", "--hops", "0", "--json") == 0
    assert '"namespaces"' in capsys.readouterr().out
    NetNS(f"{pre}stray-x").create()
    assert _cli("status", "--json") == 0
    assert f"{pre}stray-x" in capsys.readouterr().out
    assert _cli("down", "--all") == 0
    assert "removed 3 namespaces" in capsys.readouterr().out
    assert not [n for n in list_netns() if n.startswith(pre)]
    assert _cli("status") == 0
    assert "no testbeds" in capsys.readouterr().out


@pytest.mark.root
@pytest.mark.usefixtures("cleanup_cli")
def test_status_names_the_command_that_removes_only_the_orphans(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An `up` killed before its state file leaves PREFIX-NAME-NODE namespaces. status
    said "remove them with: pktlab testbed down --all", which removes the live testbeds
    too (session 24); `down NAME` removes those alone, and a second one is no error."""
    pre = os.environ["PKTLAB_TESTBED_PREFIX"]
    assert _cli("up", "--hops", "0", "--name", "live") == 0
    for ns in (f"{pre}killed-ep", f"{pre}killed-r1", f"{pre}odd"):
        NetNS(ns).create()
    capsys.readouterr()
    assert _cli("status") == 0
    out = capsys.readouterr().out
    assert (f"remove them with: pktlab testbed down {pre}killed; ip netns delete {pre}odd\n") in out
    assert _cli("down", "killed") == 0
    assert capsys.readouterr().out == f"removed {pre}killed: {pre}killed-ep {pre}killed-r1\n"
    assert _cli("down", "killed") == 0
    assert "nothing to remove" in capsys.readouterr().out
    assert NetNS(f"{pre}live-ep").exists() and NetNS(f"{pre}odd").exists()
    assert [i.name for i in list_testbeds()] == [f"{pre}live"]


@pytest.mark.root
def test_ctrl_c_during_up_removes_what_it_made(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the terminal's process group) while `pktlab testbed up` builds:
    `pktlab`'s start-up handler ended the process at once (os._exit), leaving all 22
    namespaces of a 20-hop chain and no state file (session 24). Now up undoes itself."""
    pre = os.environ["PKTLAB_TESTBED_PREFIX"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "packetlab", "testbed", "up", "--name", "cc", "--hops", "20"],
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not [n for n in list_netns() if n.startswith(f"{pre}cc-")]:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr
            time.sleep(0.002)
        os.killpg(proc.pid, signal.SIGINT)  # the namespaces are made first, then ~1 s more
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        _cli("down", "cc")
    assert (proc.returncode, err) == (
        130,
        "\npktlab testbed: up interrupted; what it had made is removed\n",
    ), out
    assert not [n for n in list_netns() if n.startswith(pre)]
    assert list_testbeds() == []


@pytest.mark.root
@pytest.mark.usefixtures("cleanup_cli")
def test_status_is_what_ip_shows(capsys: pytest.CaptureFixture[str]) -> None:
    """A testbed with a veth or namespaces deleted by hand was `live` (one missing
    namespace out of all: `stale`); status now compares with `ip netns list` and
    `ip -n NS link` and names what is missing (session 24)."""
    pre = os.environ["PKTLAB_TESTBED_PREFIX"]
    assert _cli("up", "--hops", "1", "--name", "veth") == 0
    assert _cli("up", "--hops", "0", "--name", "ns") == 0
    capsys.readouterr()
    assert _cli("status") == 0
    assert capsys.readouterr().out.count("  chain  live  ") == 2
    subprocess.run(["ip", "-n", f"{pre}veth-ep", "link", "del", "to-r1"], check=True)
    NetNS(f"{pre}ns-ep").delete()
    NetNS(f"{pre}ns-tg").delete()
    assert _cli("status") == 0
    out = capsys.readouterr().out
    assert (
        f"{pre}veth  chain  broken: {pre}veth-ep:to-r1 {pre}veth-r1:to-ep missing "
        f"(pktlab testbed down {pre}veth removes it)  created "
    ) in out
    assert (
        f"{pre}ns  chain  gone: none of its namespaces exist (pktlab testbed down {pre}ns "
        "forgets it)  created "
    ) in out
    assert _cli("down", "ns") == 0
    assert capsys.readouterr().out == f"removed {pre}ns (its namespaces were gone already)\n"
    assert _cli("down", "veth") == 0
    assert list_testbeds() == []
    assert not [n for n in list_netns() if n.startswith(pre)]


@pytest.mark.root
def test_up_without_tc_removes_what_it_made() -> None:
    """`tc` is run after the namespaces and veths are made (shaping): its absence is one
    line and nothing is left."""
    pre = os.environ["PKTLAB_TESTBED_PREFIX"]
    proc = subprocess.run(
        [sys.executable, "-m", "packetlab", "testbed", "up", "--name", "notc", "--shape", "1mbit"],
        env={**os.environ, "PATH": "/nonexistent"},  # `ip` is found at /usr/sbin/ip
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith(f"pktlab testbed: tc -n {pre}notc-ep qdisc replace dev to-r1")
    assert proc.stderr.endswith("No such file or directory: 'tc'\n")
    assert proc.stderr.count("\n") == 1
    assert not [n for n in list_netns() if n.startswith(pre)]
    assert list_testbeds() == []


@pytest.mark.root
def test_a_second_down_leaves_a_new_testbed_of_the_name_alone() -> None:
    """A Testbed owns its namespaces from up() to down(): a later down() of it (a
    fixture's teardown after the test's own) deleted a new testbed of the same name."""
    first = Testbed(chain(0), name="again").up()
    first.down()
    second = Testbed(chain(0), name="again").up()
    try:
        first.down()
        assert all(ns.exists() for ns in second.namespaces())
    finally:
        second.down()
    assert not any(ns.exists() for ns in second.namespaces())


@pytest.mark.root
@pytest.mark.usefixtures("cleanup_cli")
def test_a_testbed_whose_process_was_killed_is_left_behind(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A process holding a (non-persistent) testbed SIGKILLed: its namespaces, its state
    file and what it started in them stay. `status` said `live`; now `left behind`, with
    the command that removes it, and that command stops what still runs there
    (session 31)."""
    pre = os.environ["PKTLAB_TESTBED_PREFIX"]
    code = (
        "import os, sys\n"
        "from packetlab.testbed import Testbed, chain\n"
        "tb = Testbed(chain(1), name='lb').up()\n"
        "p = tb.popen('ep', ['sleep', '60'])\n"
        "print(p.pid, flush=True)\n"
        "sys.stdin.read()\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert owner.stdout is not None
        sleeper = int(owner.stdout.readline())
        owner.kill()  # SIGKILL: no atexit, no down()
        owner.wait(timeout=30)
        assert _cli("status") == 0
        line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(pre))
        assert line.startswith(
            f"{pre}lb  chain  live, left behind: process {owner.pid}, which was to remove "
            f"it, is gone (pktlab testbed down {pre}lb removes it)  created "
        ), line
        assert _cli("down", f"{pre}lb") == 0
        assert not [n for n in list_netns() if n.startswith(f"{pre}lb-")]
        assert _stopped(sleeper, within=10), f"sleep {sleeper} still runs"
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()


def _stopped(pid: int, within: float) -> bool:
    """Whether `pid` is gone or a zombie (killed; its parent, gone, cannot reap it and this
    machine's pid 1 may not) within `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(") ")[2][:1]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
