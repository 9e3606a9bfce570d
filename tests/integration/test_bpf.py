"""ncap filters in the kernel: capture sockets on a veth inside a namespace testbed (root)."""

from __future__ import annotations

import os
import select
import socket
import time
from collections.abc import Callable

import pytest

from packetlab.controller.filters import accept_all_filter, tcpdump_filter, text_filter
from packetlab.endpoint.bpf import (
    PACKET_OUTGOING,
    BadFilterEncoding,
    CapturedPacket,
    CaptureSocket,
    VerifierError,
    load_ncap_filter,
    load_socket_filter,
    to_linux_insns,
)
from packetlab.testbed import Testbed, chain
from packetlab.testbed.probe import icmp_echo
from packetlab.wire.program import Insn, encode_ebpf, encode_wasm, parse_text

pytest_plugins = ["packetlab.testbed.pytest_fixtures"]

# A quiet period long enough for a veth to deliver anything that was going to arrive.
QUIET = 0.3


@pytest.fixture(autouse=True)
def _skip_unless_root(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("root") and os.geteuid() != 0:
        pytest.skip("needs root: network namespaces, AF_PACKET sockets and bpf(2)")


@pytest.fixture
def pair(testbed_factory: Callable[..., Testbed]) -> Testbed:
    """``ep — tg`` on one veth."""
    return testbed_factory(chain(0))


def capture(tb: Testbed, node: str) -> CaptureSocket:
    with tb.enter(node):
        return CaptureSocket(tb.iface(node))


def send_udp(tb: Testbed, node: str, dst: object, port: int, payload: bytes) -> None:
    v6 = ":" in str(dst)
    with tb.enter(node):
        sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        sock.sendto(payload, (str(dst), port))


def udp_payload(pkt: CapturedPacket) -> bytes:
    ihl = (pkt.data[0] & 0x0F) * 4 if pkt.data[0] >> 4 == 4 else 40
    return pkt.data[ihl + 8 :]


def is_udp4(pkt: CapturedPacket) -> bool:
    return pkt.data[0] >> 4 == 4 and pkt.data[9] == socket.IPPROTO_UDP


def collect(cap: CaptureSocket, count: int, timeout: float = 3.0) -> list[CapturedPacket]:
    """Up to ``count`` packets, then a quiet period to catch any extra ones."""
    got: list[CapturedPacket] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and (pkt := cap.wait(max(0.0, deadline - time.monotonic()))):
        got.append(pkt)
    while pkt := cap.wait(QUIET):
        got.append(pkt)
    return got


@pytest.mark.root
def test_tcpdump_filter_passes_only_matching_packets(pair: Testbed) -> None:
    with capture(pair, "tg") as cap:
        cap.set_filter(tcpdump_filter("udp and dst port 5555"))
        before = time.time_ns()
        send_udp(pair, "ep", pair.addr("tg"), 5555, b"match-1")
        send_udp(pair, "ep", pair.addr("tg"), 5556, b"other port")
        send_udp(pair, "ep", pair.addr("tg", 6), 5555, b"match-v6")
        send_udp(pair, "ep", pair.addr("tg"), 5555, b"match-2")
        got = collect(cap, 3)
        after = time.time_ns()
    # Exactly the three matches. Across families the kernel's order is not the sending
    # order on this VM (an IPv4 packet was once stamped 0.2 ms after the IPv6 one sent
    # behind it: 2 runs in 15), so only the IPv4 pair's order is asserted.
    payloads = [udp_payload(p) for p in got]
    assert sorted(payloads) == [b"match-1", b"match-2", b"match-v6"]
    v4 = [p for p in got if p.data[0] >> 4 == 4]
    assert [udp_payload(p) for p in v4] == [b"match-1", b"match-2"]
    # The kernel's stamp is CLOCK_REALTIME as time.time_ns() is, but this VM's kernel and
    # vDSO readings were once seen 78 µs apart: 1 ms of slack still tells a realtime stamp
    # of this run from a monotonic one or a stale one.
    slack = 1_000_000
    for pkt in got:
        assert pkt.kernel_timestamp and before - slack <= pkt.time_ns <= after + slack
        assert not pkt.outgoing and not pkt.truncated
    v6 = [p for p in got if p.data[0] >> 4 == 6]  # offset 0 = IP header
    assert [udp_payload(p) for p in v6] == [b"match-v6"]
    assert v4[0].time_ns <= v4[1].time_ns


def mld_report(tb: Testbed, node: str) -> socket.socket:
    """Make ``node`` send an MLD report now, as the kernel does by itself at random times in
    the first second or so of a new veth (ff02::16, multicast: the peer's ETH_P_ALL capture
    sees it). Returns once the report has left; close the socket to leave the group."""
    ifname = tb.iface(node)
    with tb.enter(node):
        out = CaptureSocket(ifname)
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        index = socket.if_nametoindex(ifname)
    with out:
        out.set_filter(accept_all_filter())
        group = socket.inet_pton(socket.AF_INET6, "ff02::1:3")  # (LLMNR's group)
        sock.setsockopt(
            socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, group + index.to_bytes(4, "little")
        )
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            pkt = out.recv_raw()
            if pkt is not None and pkt.outgoing and pkt.data[24:26] == b"\xff\x02":
                return sock
            select.select([out], [], [], max(0.0, deadline - time.monotonic()))
    sock.close()
    raise AssertionError(f"{node} sent no MLD report in 3 s")


@pytest.mark.root
def test_drop_all_until_the_first_filter_and_after(pair: Testbed) -> None:
    with capture(pair, "tg") as cap:
        send_udp(pair, "ep", pair.addr("tg"), 5555, b"before any filter")
        assert cap.wait(QUIET) is None
        cap.set_filter(accept_all_filter())
        # Accept-all takes whatever the veth carries, also the MLD reports ep's kernel sends
        # by itself at random in the first second or so of a new veth: the first packet was
        # one of them in 3 runs of 3 with this report made at this point (ep is pinned to
        # that case here, as the ARP one below pins a MAC), so other packets are skipped.
        mld_report(pair, "ep").close()
        send_udp(pair, "ep", pair.addr("tg"), 5555, b"accepted")
        others = []
        deadline = time.monotonic() + 3.0
        while (got := cap.wait(max(0.0, deadline - time.monotonic()))) and not is_udp4(got):
            others.append(got.data[:48].hex())
        assert got is not None and udp_payload(got) == b"accepted", others
        cap.drop_all()
        cap.drain()
        send_udp(pair, "ep", pair.addr("tg"), 5555, b"after drop-all")
        assert cap.wait(QUIET) is None


@pytest.mark.root
def test_replacing_the_filter(pair: Testbed) -> None:
    with capture(pair, "tg") as cap:
        cap.set_filter(tcpdump_filter("udp dst port 5555"))
        send_udp(pair, "ep", pair.addr("tg"), 5555, b"first")
        assert [udp_payload(p) for p in collect(cap, 1)] == [b"first"]
        cap.set_filter(tcpdump_filter("udp dst port 5556"))
        send_udp(pair, "ep", pair.addr("tg"), 5555, b"old port")
        send_udp(pair, "ep", pair.addr("tg"), 5556, b"new port")
        assert [udp_payload(p) for p in collect(cap, 1)] == [b"new port"]


@pytest.mark.root
def test_verifier_refusal_carries_the_reason(pair: Testbed) -> None:
    bad = parse_text("0xbf 0 2 0 0   # r0 = r2, never written\n0x95 0 0 0 0\n")
    with pytest.raises(VerifierError) as info:
        load_socket_filter(bad)
    assert "R2 !read_ok" in info.value.reason
    assert "R2 !read_ok" in str(info.value) and "R2 !read_ok" in info.value.log
    # A refused filter leaves the socket as it was (here: still dropping everything).
    with capture(pair, "tg") as cap:
        with pytest.raises(VerifierError):
            cap.set_filter(encode_ebpf(bad))
        send_udp(pair, "ep", pair.addr("tg"), 5555, b"x")
        assert cap.wait(QUIET) is None


@pytest.mark.root
def test_verifier_refuses_a_program_without_exit() -> None:
    with pytest.raises(VerifierError) as info:
        load_socket_filter([Insn(0xB7, imm=1)])
    assert info.value.reason


@pytest.mark.root
@pytest.mark.parametrize(
    ("encoded", "words"),
    [
        (encode_wasm(b"\0asm\x01\0\0\0"), "WASM"),
        (b"", "empty program"),
        (b"\x00", "no instructions"),
        (b"\x00" + bytes(9), "not a multiple of 8"),
        (encode_ebpf([Insn(0xB7)] * 8192), "more than the 65536 allowed"),
    ],
)
def test_bad_encodings_are_refused_before_the_kernel(encoded: bytes, words: str) -> None:
    with pytest.raises(BadFilterEncoding, match=words):
        load_ncap_filter(encoded)


@pytest.mark.root
def test_the_largest_filter_within_filt_bufsz_loads() -> None:
    """§3.4: filters up to FILT_BUFSZ (0x10000 bytes, type byte included) are taken. The
    largest whole program is 8,191 instructions (65,529 bytes); one more instruction
    (65,537 bytes) is refused above, before the kernel, though the kernel would take it."""
    encoded = encode_ebpf([Insn(0xB7)] * 8190 + [Insn(0x95)])  # r0 = 0 ... exit
    assert len(encoded) == 1 + 8 * 8191 <= 0x10000
    with load_ncap_filter(encoded) as loaded:
        assert loaded.insn_count == 8191 and loaded.fd >= 0


@pytest.mark.root
def test_own_outgoing_packets_are_skipped(pair: Testbed) -> None:
    with capture(pair, "ep") as cap:
        cap.set_filter(tcpdump_filter("udp port 5555"))
        send_udp(pair, "ep", pair.addr("tg"), 5555, b"sent by ep")
        raw = _wait_raw(cap)  # recv_raw: wait()/recv() would skip it
        assert raw is not None and raw.pkttype == PACKET_OUTGOING and cap.is_own_outgoing(raw)
        send_udp(pair, "ep", pair.addr("tg"), 5555, b"sent by ep again")
        send_udp(pair, "tg", pair.addr("ep"), 5555, b"sent to ep")
        assert [udp_payload(p) for p in collect(cap, 1)] == [b"sent to ep"]


def _wait_raw(cap: CaptureSocket, timeout: float = 3.0) -> CapturedPacket | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pkt = cap.recv_raw()
        if pkt is not None:
            return pkt
        time.sleep(0.005)
    return None


@pytest.mark.root
def test_capture_socket_by_address_or_index(pair: Testbed) -> None:
    with pair.enter("tg"):
        index = socket.if_nametoindex("to-ep")
        for spec in (str(pair.addr("tg")), pair.addr("tg", 6), index, "to-ep"):
            with CaptureSocket(spec) as cap:
                assert cap.ifname == "to-ep" and cap.ifindex == index
                assert pair.addr("tg") in cap.local_addresses
        with pytest.raises(ValueError, match="no interface has address"):
            CaptureSocket("10.77.99.99")
        with pytest.raises(OSError):
            CaptureSocket("nosuchif0")


@pytest.mark.root
def test_hand_written_icmp_filter(pair: Testbed) -> None:
    # The capture socket is ETH_P_ALL, so the filter sees ARP too: byte 9 of an ARP
    # request is the second byte of the sender's MAC. A filter that tests ip[9] alone let
    # ep's ARP request through when its random MAC had 0x01 there (CI, 2026-12-07: 1 run in
    # 256). ep's MAC is pinned to that case here, and the filter checks the version first.
    pair.run("ep", ["ip", "link", "set", "dev", pair.iface("ep"), "address", "02:01:00:00:00:0e"])
    icmp_only = """
        0xbf 6 1 0 0        # r6 = ctx
        0x30 0 0 0 0        # r0 = ip[0]
        0x54 0 0 0 0xf0     # r0 &= 0xf0 (version)
        0x55 0 0 4 0x40     # if r0 != IPv4 goto drop
        0x30 0 0 0 9        # r0 = ip[9] (protocol)
        0x55 0 0 2 1        # if r0 != ICMP goto drop
        0xb7 0 0 0 0xffff
        0x95 0 0 0 0
        0xb7 0 0 0 0        # drop
        0x95 0 0 0 0
    """
    with capture(pair, "tg") as cap:
        cap.set_filter(text_filter(icmp_only))
        send_udp(pair, "ep", pair.addr("tg"), 5555, b"not icmp")
        assert pair.call("ep", icmp_echo, pair.addr("tg")) is not None
        got = collect(cap, 2)
    # The echo request in, the echo reply out (tg's own, sent to ep: skipped); not the ARP.
    assert [p.data[20] for p in got] == [8]


@pytest.mark.root
def test_snaplen_truncates(pair: Testbed) -> None:
    with capture(pair, "tg") as cap:
        cap.set_filter(tcpdump_filter("udp", snaplen=30))
        send_udp(pair, "ep", pair.addr("tg"), 5555, bytes(100))
        got = collect(cap, 1)
    assert [len(p.data) for p in got] == [30]


def test_linux_layout_puts_dst_in_the_low_nibble() -> None:
    assert to_linux_insns([Insn(0xBF, dst=6, src=1, off=-1, imm=-2)]) == bytes(
        [0xBF, 0x16, 0xFF, 0xFF, 0xFE, 0xFF, 0xFF, 0xFF]
    )
