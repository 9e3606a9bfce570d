"""Raw IP sockets and ncap through a real ``twistd pktendpoint`` inside a namespace testbed.

The endpoint runs in the ``ep`` namespace of ``ep — r1 — r2 — tg`` and exports ep's
addresses; the test-side controller listens on 127.0.0.1 *inside* that namespace (the
listening socket is made while this thread is in it) and speaks raw frames.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import REPO, RawController, twistd

from packetlab import wire
from packetlab.controller.filters import tcpdump_filter
from packetlab.endpoint.bpf import CaptureSocket
from packetlab.endpoint.budget import RECV_BUF_OVERHEAD
from packetlab.measure.packets import ip_packet
from packetlab.measure.packets_transport import udp_segment
from packetlab.measure.probes import echo_probe, traceroute_probe
from packetlab.measure.replies import ReplyKind, parse_reply
from packetlab.testbed import Testbed
from packetlab.wire import program as P
from packetlab.wire import vmem
from packetlab.wire.constants import Status

pytest_plugins = ["packetlab.testbed.pytest_fixtures"]
pytestmark = pytest.mark.root

S = Status
SEC = 1_000_000_000
SPOOF = {4: "10.77.1.99", 6: "fd00:77:1::99"}


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: creates network namespaces and raw sockets")
    monkeypatch.setenv("PKTLAB_TESTBED_DIR", str(tmp_path))
    monkeypatch.setenv("PKTLAB_TESTBED_PREFIX", f"plr{os.getpid() % 100000}-")


class RawEndpoint:
    """A pktendpoint in ``ep`` connected to a listener in the same namespace."""

    def __init__(self, tb: Testbed, workdir: Path, config: str, wrap: list[str]) -> None:
        self.tb = tb
        with tb.enter("ep"):
            self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        port = self.listener.getsockname()[1]
        conf = workdir / "endpt.conf"
        conf.write_text(config)
        self.logfile = workdir / "pktendpoint.log"
        argv = [*wrap, *twistd(), "-n", "--pidfile=", f"--logfile={self.logfile}"]
        argv += ["pktendpoint", "-c", str(conf), "--insecure-plaintext", f"127.0.0.1:{port}"]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        self.proc = tb.popen(
            "ep", argv, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        self.controllers: list[RawController] = []

    def accept(self, timeout: float = 15.0) -> RawController:
        self.listener.settimeout(timeout)
        try:
            sock, _ = self.listener.accept()
        except TimeoutError:
            raise TimeoutError(f"endpoint did not connect:\n{self.log()}") from None
        ctl = RawController(sock)
        self.controllers.append(ctl)
        ctl.start()
        return ctl

    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def stop(self) -> None:
        for c in self.controllers:
            c.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.listener.close()


@pytest.fixture
def tb(testbed_factory: Callable[..., Testbed]) -> Testbed:
    return testbed_factory(hops=2)


def ep_config(tb: Testbed, *, extra4: str = "") -> str:
    ep = tb.interfaces("ep")[0]
    return (
        "TransprotoSup raw,tcp,udp\n"
        f"VMemLocalAddrStrIPv4 {ep.ipv4}{extra4}\n"
        f"VMemLocalAddrStrIPv6 {ep.ipv6.ip}\n"
        "HostID raw-test\nNoSubMode 1\n"
    )


@pytest.fixture
def endpoint(
    tb: Testbed, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., RawEndpoint]]:
    made: list[RawEndpoint] = []

    def start(config: str | None = None, wrap: list[str] | None = None) -> RawEndpoint:
        ep = RawEndpoint(tb, tmp_path, config or ep_config(tb), wrap or [])
        made.append(ep)
        return ep

    yield start
    for ep in made:
        ep.stop()
        if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
            print(f"--- endpoint log ---\n{ep.log()[-6000:]}")


@pytest.fixture
def ctl(endpoint: Callable[..., RawEndpoint]) -> RawController:
    return endpoint().accept()


def raw_open(sktid: int, family: int, laddr: bytes | None = None, rbufsz: int = 1 << 20):  # type: ignore[no-untyped-def]
    la = laddr if laddr is not None else bytes(4 if family == 4 else 16)
    return wire.Nopen(sktid=sktid, family=family, proto=0, rbufsz=rbufsz, laddr=la)


def raw_send(sktid: int, family: int, data: bytes, tag: int = 0, at: int = 0) -> wire.Nsend:
    return wire.Nsend(sktid=sktid, family=family, proto=0, time=at, tag=tag, data=data)


def ncap(sktid: int, family: int, expr: str | bytes, endtime: int) -> wire.Ncap:
    prog = tcpdump_filter(expr) if isinstance(expr, str) else expr
    return wire.Ncap(sktid=sktid, family=family, proto=0, endtime=endtime, filter=prog)


def icmp_expr(family: int, icmp6_type: int = 129) -> str:
    """ICMP (IPv4), or one ICMPv6 type (not the neighbour discovery around it)."""
    return "icmp" if family == 4 else f"icmp6 and ip6[40] == {icmp6_type}"


def ep_addr(tb: Testbed, family: int) -> str:
    return str(tb.addr("ep", family))


# ------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("family", [4, 6])
def test_ping_through_raw_socket(tb: Testbed, ctl: RawController, family: int) -> None:
    assert ctl.mread(vmem.TRANSSUP.addr, 4) == (0b111).to_bytes(4, "big")
    ctl.ok(raw_open(1, family))  # all-zero laddr: the first exported address
    laddr = ctl.mread(vmem.skt_addr(1, vmem.SKT_LADDR), 16)[: 4 if family == 4 else 16]
    assert ipaddress.ip_address(laddr) == tb.addr("ep", family)
    assert ctl.mread(vmem.skt_addr(1, vmem.SKT_STAT), 1) == b"\x02"
    ctl.ok(ncap(1, family, icmp_expr(family), time.time_ns() + 10 * SEC))
    # IPv4 with a zero source: the kernel fills in the socket's address (IP4HDRMOD 0FILL).
    src = "0.0.0.0" if family == 4 else ep_addr(tb, family)
    probe = echo_probe(src, tb.addr("tg", family), ident=0x1234, seq=7)
    before = time.time_ns()
    ctl.ok(raw_send(1, family, probe.packet, tag=5))
    tag = ctl.notification(wire.Ntag)
    assert tag.tag == 5 and tag.errid == 0 and before <= tag.time <= time.time_ns()
    nd = ctl.notification(wire.Ndata, timeout=5)
    assert nd.sktid == 1 and nd.family == family and nd.proto == 0 and nd.raddr is None
    reply = parse_reply(nd.data, verify_checksums=True)
    assert reply.kind is ReplyKind.ECHO_REPLY
    assert reply.key == probe.key and reply.src == tb.addr("tg", family)
    assert reply.dst == tb.addr("ep", family)
    # Kernel receive time: after the send left, before we read it here.
    assert tag.time < nd.time <= time.time_ns()
    assert nd.time - tag.time < SEC
    # Our own echo request is not captured (outgoing, not addressed to the interface).
    assert [m for m in ctl.quiet(0.2) if isinstance(m, wire.Ndata)] == []


@pytest.mark.parametrize("family", [4, 6])
def test_ttl1_udp_probe_gets_time_exceeded_from_r1(
    tb: Testbed, ctl: RawController, family: int
) -> None:
    ctl.ok(raw_open(2, family))
    ctl.ok(ncap(2, family, icmp_expr(family, 3), time.time_ns() + 10 * SEC))
    probe = traceroute_probe(ep_addr(tb, family), tb.addr("tg", family), 1, sport=40001)
    ctl.ok(raw_send(2, family, probe.packet))
    nd = ctl.notification(wire.Ndata, timeout=5)
    reply = parse_reply(nd.data, verify_checksums=True)
    r1 = next(i for i in tb.interfaces("r1") if i.peer == "ep")
    assert reply.kind is ReplyKind.TIME_EXCEEDED and reply.key == probe.key
    assert reply.src == (r1.ipv4.ip if family == 4 else r1.ipv6.ip)
    assert reply.quoted_ttl == 1


def test_scheduled_raw_send_goes_at_its_time(tb: Testbed, ctl: RawController) -> None:
    ctl.ok(raw_open(1, 4))
    ctl.ok(ncap(1, 4, "icmp", time.time_ns() + 10 * SEC))
    at = time.time_ns() + 200_000_000
    probe = echo_probe(ep_addr(tb, 4), tb.addr("tg", 4), ident=9, seq=1)
    ctl.ok(raw_send(1, 4, probe.packet, tag=3, at=at))
    tag = ctl.notification(wire.Ntag, timeout=3)
    assert at <= tag.time < at + 50_000_000
    nd = ctl.notification(wire.Ndata, timeout=3)
    assert parse_reply(nd.data).key == probe.key and nd.time > tag.time


def _capture_on_r1(tb: Testbed, family: int) -> CaptureSocket:
    iface = next(i.name for i in tb.interfaces("r1") if i.peer == "ep")
    with tb.enter("r1"):
        cap = CaptureSocket(iface)
    expr = "udp port 33999"
    cap.set_filter(tcpdump_filter(expr if family == 4 else f"ip6 and {expr}"))
    return cap


@pytest.mark.parametrize("family", [4, 6])
def test_ntag_is_the_kernel_tx_time(tb: Testbed, ctl: RawController, family: int) -> None:
    # The TX stamp is taken before the veth hands the packet to r1, so it can never be later
    # than r1's receive time; a clock reading after sendto usually is (docs/raw.md).
    ctl.ok(raw_open(1, family))
    src, dst = ipaddress.ip_address(ep_addr(tb, family)), tb.addr("tg", family)
    with _capture_on_r1(tb, family) as cap:
        for i in range(20):
            seg = udp_segment(src, dst, 40000 + i, 33999, b"stamp")
            before = time.time_ns()
            ctl.ok(raw_send(1, family, ip_packet(src, dst, 17, seg, ident=i + 1), tag=i + 1))
            tag = ctl.notification(wire.Ntag)
            got = cap.wait(3)
            assert got is not None and tag.tag == i + 1
            assert before <= tag.time <= got.time_ns


def test_ipv4_header_rewrites_match_ip4hdrmod(tb: Testbed, ctl: RawController) -> None:
    hdrmod = ctl.mread(vmem.IP4HDRMOD.addr, 12)
    assert list(hdrmod) == [0, 0, 0, 1, 2, 0, 0, 0, 0, 1, 2, 0]
    ctl.ok(raw_open(1, 4))
    src, dst = ipaddress.IPv4Address(ep_addr(tb, 4)), tb.addr("tg", 4)
    seg = udp_segment(src, dst, 40000, 33999, b"hdrmod")
    pkt = bytearray(ip_packet(src, dst, 17, seg, ttl=9, tos=0x28, ident=0))
    pkt[2:4] = b"\x01\x23"  # a wrong tot_len
    pkt[10:12] = b"\xde\xad"  # a wrong checksum
    pkt[12:16] = bytes(4)  # zero source
    with _capture_on_r1(tb, 4) as cap:
        ctl.ok(raw_send(1, 4, bytes(pkt)))
        got = cap.wait(3)
    assert got is not None
    out = got.data
    assert out[2:4] == len(pkt).to_bytes(2, "big")  # [3] tot_len CHG
    assert out[4:6] != b"\0\0"  # [4] ident 0FILL
    assert out[12:16] == src.packed  # [10] src 0FILL
    assert _ip_checksum(out[:20]) == 0  # [9] checksum CHG
    same = [0, 1, 6, 7, 8, 9, *range(16, len(pkt))]  # version/ihl, tos, frag, ttl, proto, dst
    assert [out[i] for i in same] == [pkt[i] for i in same]


def test_ipv6_header_goes_out_unchanged(tb: Testbed, ctl: RawController) -> None:
    assert ctl.mread(vmem.IP6HDRMOD.addr, 8) == bytes(8)
    ctl.ok(raw_open(1, 6))
    src, dst = ipaddress.IPv6Address(ep_addr(tb, 6)), tb.addr("tg", 6)
    seg = udp_segment(src, dst, 40000, 33999, b"hdrmod6")
    pkt = ip_packet(src, dst, 17, seg, ttl=9, tos=0x28, flow_label=0xABCDE)
    with _capture_on_r1(tb, 6) as cap:
        ctl.ok(raw_send(1, 6, pkt))
        got = cap.wait(3)
    assert got is not None and got.data == pkt


def test_raw_errors(tb: Testbed, endpoint: Callable[..., RawEndpoint]) -> None:
    ep = endpoint(ep_config(tb, extra4=",192.0.2.7/32,127.0.0.1/8"))
    c = ep.accept()
    # laddr not exported; exported but on no interface
    assert c.status(raw_open(1, 4, ipaddress.IPv4Address(SPOOF[4]).packed)) == S.ESKTNOADDR
    assert c.status(raw_open(1, 4, ipaddress.IPv4Address("192.0.2.7").packed)) == S.ESKTNOADDR
    assert c.status(raw_open(1, 6, ipaddress.IPv6Address(SPOOF[6]).packed)) == S.ESKTNOADDR
    c.ok(raw_open(1, 4))
    # one raw socket per interface and family; another interface (lo) or family is fine
    assert c.status(raw_open(2, 4)) == S.ESKTINUSE
    c.ok(raw_open(3, 4, ipaddress.IPv4Address("127.0.0.1").packed))
    c.ok(raw_open(4, 6))
    # ncap: FREE socket, family/proto mismatch, a UDP socket, a verifier-rejected program
    assert c.status(ncap(9, 4, "icmp", time.time_ns() + SEC)) == S.ESKTNOTOPEN
    assert c.status(ncap(1, 6, "icmp6", time.time_ns() + SEC)) == S.ESKTNOMATCH
    udp = wire.Nopen(sktid=5, family=4, proto=17, rbufsz=1 << 16, laddr=bytes(4), lport=0)
    c.ok(udp)
    cap_udp = wire.Ncap(sktid=5, family=4, proto=17, endtime=0, filter=tcpdump_filter("icmp"))
    assert c.status(cap_udp) == S.ECTLNOTSUP
    bad = P.encode_ebpf(
        [P.Insn(P.BPF_ALU64 | P.BPF_MOV | P.BPF_X, 0, 2, 0, 0), P.Insn(P.BPF_JMP | P.BPF_EXIT)]
    )  # r0 = r2 (never written)
    assert c.status(ncap(1, 4, bad, time.time_ns() + SEC)) == S.ESKTBADFILT
    assert c.status(ncap(1, 4, b"\x01wasm", time.time_ns() + SEC)) == S.ESKTBADFILT
    # nsend: spoofed source, zero IPv6 source, not an IP packet of the family
    dst4, dst6 = tb.addr("tg", 4), tb.addr("tg", 6)
    spoof4 = echo_probe(SPOOF[4], dst4, ident=1, seq=1).packet
    spoof6 = echo_probe(SPOOF[6], dst6, ident=1, seq=1).packet
    zero6 = bytearray(echo_probe(ep_addr(tb, 6), dst6, ident=1, seq=1).packet)
    zero6[8:24] = bytes(16)
    assert c.status(raw_send(1, 4, spoof4)) == S.ESKTPKTDENY
    assert c.status(raw_send(4, 6, spoof6)) == S.ESKTPKTDENY
    assert c.status(raw_send(4, 6, bytes(zero6))) == S.ESKTPKTDENY
    assert c.status(raw_send(1, 4, spoof6)) == S.ESKTPKTDENY
    assert c.status(raw_send(1, 4, b"\x45\x00")) == S.ESKTPKTDENY
    # nclose frees the interface for another raw socket
    c.ok(wire.Nclose(sktid=1))
    c.ok(raw_open(2, 4))
    log = ep.log()
    assert "R2 !read_ok" in log  # the verifier's reason reaches the operator's log
    assert "is not exported" in log


def test_capture_stops_at_endtime(tb: Testbed, ctl: RawController) -> None:
    ctl.ok(raw_open(1, 4))
    dst = tb.addr("tg", 4)
    src = ep_addr(tb, 4)
    # endtime 0 (or past): the filter is checked, nothing is captured
    ctl.ok(ncap(1, 4, "icmp", 0))
    ctl.ok(raw_send(1, 4, echo_probe(src, dst, ident=5, seq=1).packet))
    assert [m for m in ctl.quiet(0.3) if isinstance(m, wire.Ndata)] == []
    end = time.time_ns() + 300_000_000
    ctl.ok(ncap(1, 4, "icmp", end))
    ctl.ok(raw_send(1, 4, echo_probe(src, dst, ident=5, seq=2).packet))
    nd = ctl.notification(wire.Ndata, timeout=3)
    assert parse_reply(nd.data).key.seq == 2 and nd.time < end
    time.sleep(max(0, end - time.time_ns()) / SEC + 0.05)
    ctl.ok(raw_send(1, 4, echo_probe(src, dst, ident=5, seq=3).packet))
    assert [m for m in ctl.quiet(0.3) if isinstance(m, wire.Ndata)] == []


def test_far_future_endtime_captures(tb: Testbed, ctl: RawController) -> None:
    ctl.ok(raw_open(1, 4))
    ctl.ok(ncap(1, 4, "icmp", 2**63))
    probe = echo_probe(ep_addr(tb, 4), tb.addr("tg", 4), ident=8, seq=1)
    ctl.ok(raw_send(1, 4, probe.packet))
    assert parse_reply(ctl.notification(wire.Ndata, timeout=3).data).key == probe.key
    assert ctl.mread(vmem.TIME.addr, 8)  # the endpoint's reactor is still alive


def test_loopback_packets_are_captured_once(
    tb: Testbed, endpoint: Callable[..., RawEndpoint]
) -> None:
    c = endpoint(ep_config(tb, extra4=",127.0.0.1/8")).accept()
    c.ok(raw_open(1, 4, ipaddress.IPv4Address("127.0.0.1").packed))
    c.ok(ncap(1, 4, "icmp", time.time_ns() + 10 * SEC))
    probe = echo_probe("127.0.0.1", "127.0.0.1", ident=3, seq=1)
    c.ok(raw_send(1, 4, probe.packet))
    # Our request (addressed to the interface, so reported, §3.4) and the reply, once each:
    # the two awaited (a loaded machine may take more than a fixed window), then none more.
    got = [c.notification(wire.Ndata) for _ in range(2)]
    got += [m for m in c.quiet(0.5) if isinstance(m, wire.Ndata)]
    assert [d.data[20] for d in got] == [8, 0]
    assert got[0].data[20:] == probe.packet[20:]


def test_budget_truncates_and_counts(tb: Testbed, ctl: RawController) -> None:
    rbufsz = RECV_BUF_OVERHEAD + 40
    ctl.ok(raw_open(1, 4, rbufsz=rbufsz))
    ctl.ok(ncap(1, 4, "icmp", time.time_ns() + 10 * SEC))
    probe = echo_probe(ep_addr(tb, 4), tb.addr("tg", 4), ident=6, seq=1)
    ctl.ok(raw_send(1, 4, probe.packet))
    nd = ctl.notification(wire.Ndata, timeout=3)
    assert len(nd.data) == 40 and nd.data[0] == 0x45 and nd.data[16:20] == probe.packet[12:16]
    lost = len(probe.packet) - 40  # the echo reply is as long as the request
    drop = ctl.notification(wire.Ndrop, timeout=1)  # the truncation, before the ndata
    assert (drop.unitcnt, drop.bytecnt) == (1, lost)
    stat = ctl.mread(vmem.skt_addr(1, vmem.SKT_DROPSTAT), 8)
    assert stat == lost.to_bytes(4, "big") + (1).to_bytes(4, "big")


def test_without_cap_net_raw_a_clear_error(
    tb: Testbed, endpoint: Callable[..., RawEndpoint]
) -> None:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("needs setpriv (util-linux) to drop CAP_NET_RAW")
    drop = "-net_raw"
    ep = endpoint(wrap=[setpriv, f"--bounding-set={drop}", f"--inh-caps={drop}", "--"])
    c = ep.accept()
    assert c.status(raw_open(1, 4)) == S.EUNKFAULT
    assert "needs CAP_NET_RAW" in ep.log() or "raw sockets need CAP_NET_RAW" in ep.log()


def _ip_checksum(header: bytes) -> int:
    total = sum(int.from_bytes(header[i : i + 2], "big") for i in range(0, len(header), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def test_a_capture_flood_is_delivered_or_counted(
    tb: Testbed, endpoint: Callable[..., RawEndpoint]
) -> None:
    """A capture flood while the controller reads nothing, then it reads (session 20,
    ep20): every packet sent is an ndata or a drop in DROPSTAT and the ndrops, the
    endpoint's (budget) and the kernel's at the full capture queue (PACKET_STATISTICS),
    with no packet after the flood to carry them. Before, the kernel's were counted
    nowhere."""
    c = endpoint(ep_config(tb, extra4=",127.0.0.1/8")).accept()
    c.ok(raw_open(1, 4, ipaddress.IPv4Address("127.0.0.1").packed, rbufsz=64 << 20))
    with tb.enter("ep"):
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # no ICMP unreachables
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    port = sink.getsockname()[1]
    c.ok(ncap(1, 4, f"udp dst port {port}", time.time_ns() + 120 * SEC))
    payload = b"r" * 1000
    sent = 0
    try:
        for _ in range(20_000):  # 20 MB, more than twice BufMax
            try:
                tx.sendto(payload, ("127.0.0.1", port))
                sent += 1
            except OSError:  # ENOBUFS
                time.sleep(0.001)
        time.sleep(0.5)  # the endpoint has read what the kernel kept
    finally:
        tx.close()
        sink.close()
    full = units = 0
    while True:
        try:
            m = c.recv(2.0)
        except TimeoutError:
            break
        if isinstance(m, wire.Ndata) and len(m.data) == 28 + len(payload):
            full += 1
        elif isinstance(m, wire.Ndrop):
            units += m.unitcnt
    stat = c.mread(vmem.skt_addr(1, vmem.SKT_DROPSTAT), 8)
    drop_pkts = int.from_bytes(stat[4:], "big")
    print(f"sent {sent}: {full} ndata, {drop_pkts} drops")
    assert units == drop_pkts > 0
    assert full + drop_pkts == sent, (full, drop_pkts, sent)  # a truncated one: a drop
