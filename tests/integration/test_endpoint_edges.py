"""The endpoint's edge values against a real ``twistd pktendpoint`` (session 23's audit,
docs/conformance-endpoint.md "Session 23").

Each test sends well-formed requests at the edges PROTOCOL.md allows (a send time of 1 ns
or 2^64 - 1, empty payloads, socket id 255, a receive budget of 0 or one that ends inside
a datagram, BufMax filled to the byte, a socket in an error state, nctl commands that do
not exist) and checks the exact frames the spec names: the reply bytes are built here by
hand from §1.2's layouts, not by our encoder.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import DEFAULT_CONFIG, EndpointProcess, RawController
from tls_world import TLSController, TLSEndpoint, controller_chain, pktlab_init

from packetlab import wire
from packetlab.wire import vmem

LO = b"\x7f\x00\x00\x01"
OVERHEAD = 116  # RECV_BUF_OVERHEAD and SEND_BUF_OVERHEAD (docs/endpoint.md, §3.5)
U64_MAX = (1 << 64) - 1


def frame(msgtype: int, body: bytes) -> bytes:
    """A frame as §1.1 lays it out: type u8, body length u24 BE, body."""
    return bytes([msgtype]) + len(body).to_bytes(3, "big") + body


def result(errid: int) -> bytes:
    return frame(0x40, b"" if errid == 0 else errid.to_bytes(2, "big"))


OK = result(0)
ECTLBADMSG = result(0x10)
ESYSNOBUFS = result(0x30)
ESKTINUSE = result(0x32)
ESKTNOTOPEN = result(0x33)


def u16(n: int) -> bytes:
    return n.to_bytes(2, "big")


def u32(n: int) -> bytes:
    return n.to_bytes(4, "big")


def u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


def udp_open(sktid: int, rbufsz: int = 1 << 20) -> wire.Nopen:
    return wire.Nopen(sktid=sktid, family=4, proto=17, rbufsz=rbufsz, laddr=LO, lport=0)


def udp_send(sktid: int, port: int, data: bytes, tag: int = 0, when: int = 0) -> wire.Nsend:
    return wire.Nsend(
        sktid=sktid, family=4, proto=17, time=when, tag=tag, data=data, raddr=LO, rport=port
    )


def tcp_send(sktid: int, data: bytes, tag: int = 0) -> wire.Nsend:
    return wire.Nsend(sktid=sktid, family=4, proto=6, time=0, tag=tag, data=data)


def fin(sktid: int, command: int = 1) -> wire.Nctl:
    return wire.Nctl(sktid=sktid, family=4, proto=6, time=0, command=command)


def reply(c: RawController, msg: wire.Message | bytes) -> bytes:
    """The response to `msg`, as the bytes that came."""
    return wire.encode(c.request(msg))


def field(c: RawController, sktid: int, region: vmem.Region) -> int:
    return int.from_bytes(c.mread(vmem.skt_addr(sktid, region), region.size), "big")


def wait_for(check: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.01)


@pytest.fixture
def peer() -> Iterator[socket.socket]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(5)
    yield s
    s.close()


@pytest.fixture
def server() -> Iterator[socket.socket]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(4)
    s.settimeout(5)
    yield s
    s.close()


def nothing_arrives(s: socket.socket, seconds: float = 0.3) -> bool:
    s.settimeout(seconds)
    try:
        s.recv(1 << 16)
    except TimeoutError:
        return True
    finally:
        s.settimeout(5)
    return False


def test_a_send_time_in_the_past_goes_at_once_and_the_far_future_never(
    controller: RawController, peer: socket.socket
) -> None:
    """§3.3: nsend.time is absolute; a past time sends at once, and the ntag carries the
    actual send time. A time of 2^63 or 2^64 - 1 ns is answered SUCCESS (queued), is
    never sent, and holds its charge (payload + 116) in BUFUSED until nclose frees it
    silently (§3.1: no ntag)."""
    c = controller
    port = peer.getsockname()[1]
    assert reply(c, udp_open(1)) == OK
    before = time.time_ns()
    assert reply(c, udp_send(1, port, b"p", tag=1, when=1)) == OK
    assert peer.recv(100) == b"p"
    ntag = c.notification(wire.Ntag)
    after = time.time_ns()
    assert wire.encode(ntag) == frame(0x60, b"\x01" + u16(1) + u64(ntag.time))
    assert before - 10**6 <= ntag.time <= after + 10**6, (before, ntag.time, after)
    for far in (1 << 63, U64_MAX):
        assert reply(c, udp_send(1, port, b"f", tag=2, when=far)) == OK
    assert nothing_arrives(peer)
    assert c.quiet(0.2) == []
    assert int.from_bytes(c.mread(vmem.BUFUSED.addr, 4), "big") == 2 * (1 + OVERHEAD)
    assert reply(c, wire.Nclose(sktid=1)) == OK
    assert c.quiet(0.2) == []  # no ntag for the sends nclose freed
    assert c.mread(vmem.BUFUSED.addr, 4) == bytes(4)


def test_empty_payloads_are_sent_and_tagged(
    controller: RawController, peer: socket.socket, server: socket.socket
) -> None:
    """§1.2: nsend is 13 bytes or more, its data may be empty. An empty UDP nsend is an
    empty datagram; an empty TCP nsend puts nothing on the stream; both get their ntag
    (§3.3) and the socket goes on."""
    c = controller
    port = peer.getsockname()[1]
    assert reply(c, udp_open(1)) == OK
    assert reply(c, udp_send(1, port, b"", tag=7)) == OK
    assert peer.recvfrom(100)[0] == b""
    ntag = c.notification(wire.Ntag)
    assert wire.encode(ntag) == frame(0x60, b"\x01" + u16(7) + u64(ntag.time))
    tcp = wire.Nopen(sktid=2, family=4, proto=6, rbufsz=1 << 16, laddr=bytes(4), lport=0,
                     raddr=LO, rport=server.getsockname()[1])  # fmt: skip
    assert reply(c, tcp) == OK
    conn, _ = server.accept()
    try:
        c.notification(wire.Nstat, lambda m: m.sktid == 2)
        assert reply(c, tcp_send(2, b"", tag=8)) == OK
        ntag = c.notification(wire.Ntag, lambda m: m.tag == 8)
        assert wire.encode(ntag) == frame(0x60, b"\x02" + u16(8) + u64(ntag.time))
        assert reply(c, tcp_send(2, b"after", tag=0)) == OK
        conn.settimeout(5)
        got = b""
        while len(got) < 5:
            got += conn.recv(100)
        assert got == b"after"
    finally:
        conn.close()


def test_socket_id_255_end_to_end(controller: RawController, peer: socket.socket) -> None:
    """§3.1: socket ids are 0..255. Socket 255's block is the last (0x2003FC00); its
    ndata (an empty datagram, the largest one), ntag and nclose carry sktid 0xFF. (Its
    LPORT is the bound port, ours: docs/endpoint.md "Differences".)"""
    c = controller
    assert reply(c, udp_open(255)) == OK
    block = vmem.SKT_BASE + 255 * vmem.SKT_STRIDE
    assert block == 0x2003FC00
    assert c.mread(block, 3) == b"\x04\x11\x02"  # FAMILY, PROTO, STAT OPEN
    lport = c.mread(block + 0x30, 2)
    src = u16(peer.getsockname()[1])
    for data in (b"", b"z" * 65507):
        peer.sendto(data, ("127.0.0.1", int.from_bytes(lport, "big")))
        nd = c.notification(wire.Ndata, timeout=5)
        assert wire.encode(nd) == frame(0x62, b"\xff\x04\x11" + u64(nd.time) + LO + src + data)
    assert reply(c, udp_send(255, peer.getsockname()[1], b"q", tag=0xFFFF)) == OK
    assert peer.recv(10) == b"q"
    ntag = c.notification(wire.Ntag)
    assert wire.encode(ntag) == frame(0x60, b"\xff\xff\xff" + u64(ntag.time))
    assert reply(c, wire.Nclose(sktid=255)) == OK
    assert c.mread(block, vmem.SKT_STRIDE) == bytes(vmem.SKT_STRIDE)
    assert reply(c, wire.Nclose(sktid=255)) == ESKTNOTOPEN


def test_a_receive_budget_of_zero_drops_and_counts_every_datagram(
    controller: RawController, peer: socket.socket
) -> None:
    """§3.5: with rbufsz 0 no datagram fits: each is dropped, DROPSTAT counts it (the
    empty one as a packet of 0 bytes) and no ndata goes out."""
    c = controller
    assert reply(c, udp_open(3, rbufsz=0)) == OK
    lport = field(c, 3, vmem.SKT_LPORT)
    for data in (b"abc", b"", b"x" * 100):
        peer.sendto(data, ("127.0.0.1", lport))
    wait_for(lambda: field(c, 3, vmem.SKT_DROPPKTS) == 3, "three drops counted")
    assert c.mread(vmem.skt_addr(3, vmem.SKT_DROPSTAT), 8) == u32(103) + u32(3)
    assert field(c, 3, vmem.SKT_RBUFUSED) == 0
    assert not [m for m in c.quiet(0.2) if isinstance(m, wire.Ndata)]


def test_a_receive_budget_ends_inside_a_datagram_to_the_byte(
    controller: RawController, peer: socket.socket
) -> None:
    """§3.5: each ndata costs its payload + 116 + address and port (6 for IPv4 UDP); a
    datagram is truncated to the room left, or dropped when none is left, and the lost
    bytes are counted. Held ndata (NDATA masked, §2.4) keep their charge until the mask
    is cleared, then go out in order."""
    c = controller
    per = OVERHEAD + 6
    rbufsz = 2 * per + 10 + 5
    assert reply(c, udp_open(4, rbufsz=rbufsz)) == OK
    c.mwrite(vmem.skt_addr(4, vmem.SKT_NOTIFMASK), u16(0x08))  # hold NDATA
    lport = field(c, 4, vmem.SKT_LPORT)
    peer.sendto(b"0123456789", ("127.0.0.1", lport))  # fits: 10 + 122
    wait_for(lambda: field(c, 4, vmem.SKT_RBUFUSED) == per + 10, "the first charged")
    peer.sendto(b"abcdefghij", ("127.0.0.1", lport))  # 5 bytes of room: cut to 5
    wait_for(lambda: field(c, 4, vmem.SKT_RBUFUSED) == rbufsz, "the second charged")
    assert c.mread(vmem.skt_addr(4, vmem.SKT_DROPSTAT), 8) == u32(5) + u32(1)
    peer.sendto(b"!", ("127.0.0.1", lport))  # no room: dropped
    wait_for(lambda: field(c, 4, vmem.SKT_DROPPKTS) == 2, "the third dropped")
    assert c.mread(vmem.skt_addr(4, vmem.SKT_DROPSTAT), 8) == u32(6) + u32(2)
    assert not [m for m in c.quiet(0.1) if isinstance(m, wire.Ndata)]
    c.mwrite(vmem.skt_addr(4, vmem.SKT_NOTIFMASK), u16(0))
    src = LO + u16(peer.getsockname()[1])
    got = [c.notification(wire.Ndata), c.notification(wire.Ndata)]
    assert [wire.encode(m) for m in got] == [
        frame(0x62, b"\x04\x04\x11" + u64(m.time) + src + data)
        for m, data in zip(got, (b"0123456789", b"abcde"), strict=True)
    ]
    wait_for(lambda: field(c, 4, vmem.SKT_RBUFUSED) == 0, "the charges given back")


def test_bufmax_is_filled_to_the_byte_and_not_one_past(
    endpoint_factory: Callable[..., EndpointProcess],
) -> None:
    """§1.3 ESYSNOBUFS: an nsend that would push the global buffer use *over* BufMax.
    One that fills it exactly is taken; one byte more is refused, as is any send while
    it is full."""
    c = endpoint_factory(DEFAULT_CONFIG.replace("BufMax 8388608", "BufMax 4096")).accept()
    c.start()
    far = time.time_ns() + 60 * 10**9
    assert reply(c, udp_open(1)) == OK
    assert reply(c, udp_send(1, 9, bytes(4096 - OVERHEAD + 1), when=far)) == ESYSNOBUFS
    assert reply(c, udp_send(1, 9, bytes(4096 - OVERHEAD), when=far)) == OK
    assert c.mread(vmem.BUFUSED.addr, 4) == u32(4096)
    assert reply(c, udp_send(1, 9, b"", when=far)) == ESYSNOBUFS
    assert reply(c, wire.Nclose(sktid=1)) == OK
    assert c.mread(vmem.BUFUSED.addr, 4) == bytes(4)


def test_a_failed_socket_stays_allocated_until_nclose(
    controller: RawController, server: socket.socket
) -> None:
    """§3.1: a socket stays allocated after an error until nclose; §3.2: a refused
    connect is STAT -1 (0xFF), FAMILY and PROTO kept; §1.3: nopen on it is ESKTINUSE
    (error states included), nsend and nctl ESKTNOTOPEN (unusable); §2.2: writes to its
    block are dropped (state < OPENING) though answered SUCCESS; nclose frees it (its
    block reads zeros) and a second nclose is ESKTNOTOPEN."""
    c = controller
    dead = server.getsockname()[1]
    server.close()  # nothing listens there now: the connect is refused
    nopen = wire.Nopen(sktid=5, family=4, proto=6, rbufsz=1 << 16, laddr=bytes(4), lport=0,
                       raddr=LO, rport=dead)  # fmt: skip
    assert reply(c, nopen) == OK
    wait_for(lambda: field(c, 5, vmem.SKT_STAT) == 0xFF, "STAT REFUSED")
    block = vmem.SKT_BASE + 5 * vmem.SKT_STRIDE
    assert c.mread(block, 3) == b"\x04\x06\xff"
    assert c.mread(block + 0x40, 4) == u32(1 << 16)  # RBUFSZ
    assert reply(c, nopen) == ESKTINUSE
    assert reply(c, tcp_send(5, b"x", tag=1)) == ESKTNOTOPEN
    assert reply(c, fin(5)) == ESKTNOTOPEN
    assert reply(c, wire.Mwrite(addr=block + 0x40, data=u32(7))) == OK
    assert reply(c, wire.Mwrite(addr=block + 0x70, data=u16(0x3E))) == OK
    assert c.mread(block + 0x40, 4) == u32(1 << 16)
    assert c.mread(block + 0x70, 2) == bytes(2)
    assert reply(c, wire.Nclose(sktid=5)) == OK
    assert c.mread(block, vmem.SKT_STRIDE) == bytes(vmem.SKT_STRIDE)
    assert reply(c, wire.Nclose(sktid=5)) == ESKTNOTOPEN
    assert [m for m in c.quiet(0.1) if isinstance(m, wire.Ntag)] == []  # nothing was sent


def test_an_unknown_nctl_command_is_badmsg_and_the_session_goes_on(
    controller: RawController, server: socket.socket
) -> None:
    """§1.3 ECTLBADMSG "unknown nctl command", §2.3 only PKTLAB_NCTL_TCP_FIN (1): every
    other command is answered `40 000002 0010`, the frame itself being well formed, so
    the session and the socket go on (the disconnect of §1.1 is for malformed frames).
    FIN twice: SUCCESS both times, the first one's time wins, the socket is WFIN."""
    c = controller
    nopen = wire.Nopen(sktid=6, family=4, proto=6, rbufsz=1 << 16, laddr=bytes(4), lport=0,
                       raddr=LO, rport=server.getsockname()[1])  # fmt: skip
    assert reply(c, nopen) == OK
    conn, _ = server.accept()
    try:
        c.notification(wire.Nstat, lambda m: m.sktid == 6)
        for command in (0, 2, 0x7F, 0xFF):
            assert reply(c, fin(6, command)) == ECTLBADMSG, command
        assert field(c, 6, vmem.SKT_STAT) == 2  # still OPEN
        assert reply(c, tcp_send(6, b"on")) == OK
        conn.settimeout(5)
        assert conn.recv(10) == b"on"
        assert reply(c, fin(6)) == OK
        assert reply(c, fin(6)) == OK
        assert conn.recv(10) == b""  # the FIN
        assert field(c, 6, vmem.SKT_STAT) == 4  # WFIN
    finally:
        conn.close()


@pytest.mark.parametrize(
    "family,proto",
    [(4, 1), (4, 2), (4, 16), (4, 18), (4, 0x29), (4, 0x84), (4, 0xFF), (0, 17), (5, 17),
     (0xFF, 6)],
)  # fmt: skip
def test_nopen_of_a_family_or_protocol_outside_the_spec_is_malformed(
    shared_endpoint: EndpointProcess, family: int, proto: int
) -> None:
    """§1.2 nopen: family must be 4 or 6, proto 0, 6 or 17 (the decoder's rules): any
    other value is a malformed frame, `40 000002 0010` and a close (§1.1)."""
    c = shared_endpoint.accept()
    try:
        c.start()
        body = bytes([1, family, proto]) + u32(1 << 16) + LO + u16(0)  # a UDP-sized nopen
        c.send(frame(0x2A, body))
        assert wire.encode(c.recv()) == ECTLBADMSG
        assert c.closed_by_peer()
    finally:
        c.close()
        shared_endpoint.controllers.remove(c)


def test_nctl_naming_another_protocol_is_malformed(shared_endpoint: EndpointProcess) -> None:
    """§1.2 nctl: "proto must be TCP" is the decoder's rule, so an nctl whose proto byte
    is UDP is a malformed frame (ECTLBADMSG and a close), even for a UDP socket; an nctl
    for TCP addressed to a UDP socket is well formed and gets ECTLNOTSUP (§2.3)."""
    c = shared_endpoint.accept()
    try:
        c.start()
        assert reply(c, udp_open(1)) == OK
        assert reply(c, fin(1)) == result(0x11)
        c.send(frame(0x2E, bytes([1, 4, 17]) + u64(0) + b"\x01"))
        assert wire.encode(c.recv()) == ECTLBADMSG
        assert c.closed_by_peer()
    finally:
        c.close()
        shared_endpoint.controllers.remove(c)


def test_an_nctl_longer_than_12_bytes_is_answered_as_its_first_12(
    controller: RawController, server: socket.socket
) -> None:
    """§1.2 nctl [QUIRK]: the reference checks len >= 11 and reads the command at byte 11,
    ignoring what follows; "require 12" is a minimum. A 20-byte nctl with an unknown
    command is ECTLBADMSG and the session goes on; a 13-byte FIN is SUCCESS and the
    peer sees the FIN (both were ECTLBADMSG and a close before session 23)."""
    c = controller
    nopen = wire.Nopen(sktid=7, family=4, proto=6, rbufsz=1 << 16, laddr=bytes(4), lport=0,
                       raddr=LO, rport=server.getsockname()[1])  # fmt: skip
    assert reply(c, nopen) == OK
    conn, _ = server.accept()
    try:
        c.notification(wire.Nstat, lambda m: m.sktid == 7)
        head = bytes([7, 4, 6]) + u64(0)
        assert reply(c, frame(0x2E, head + b"\x09" + b"junk" * 2)) == ECTLBADMSG
        assert c.mread(vmem.HOSTID.addr, 4) == b"pkte"  # still served
        assert reply(c, frame(0x2E, head + b"\x01\x00")) == OK
        conn.settimeout(5)
        assert conn.recv(10) == b""  # the FIN
        assert field(c, 7, vmem.SKT_STAT) == 4  # WFIN
    finally:
        conn.close()


def test_the_edges_over_the_tls_link(
    tmp_path: Path, peer: socket.socket, server: socket.socket
) -> None:
    """The same edges over the real TLS 1.3 link (§4.6; the Python record layer since
    session 17): frames larger than a TLS record both ways (the largest mread at the top
    of the address space, a 0xFFFFFF-byte mwrite, the largest UDP datagram as ndata on
    socket 255) arrive whole and byte for byte, and a 13-byte nctl FIN is answered as
    its first 12 bytes."""
    home = pktlab_init(tmp_path / "home")
    ctl = TLSController(controller_chain(home, tmp_path / "chain"), home.key_path("k_xc"), tmp_path)
    ep = TLSEndpoint(home, ctl.address, tmp_path)
    try:
        c = ctl.accept(timeout=30)
        c.start()
        top = (1 << 32) - 0xFFFF
        assert reply(c, wire.Mread(addr=top, len=0xFFFF)) == frame(0x41, u32(top) + bytes(0xFFFF))
        big = frame(0x29, u32(0x10000000) + bytes(0xFFFFFF - 4))
        assert reply(c, big) == OK
        assert reply(c, udp_open(255)) == OK
        lport = field(c, 255, vmem.SKT_LPORT)
        data = bytes(range(256)) * 255 + b"z" * (65507 - 256 * 255)
        peer.sendto(data, ("127.0.0.1", lport))
        nd = c.notification(wire.Ndata)
        src = LO + u16(peer.getsockname()[1])
        assert wire.encode(nd) == frame(0x62, b"\xff\x04\x11" + u64(nd.time) + src + data)
        nopen = wire.Nopen(sktid=1, family=4, proto=6, rbufsz=1 << 16, laddr=bytes(4), lport=0,
                           raddr=LO, rport=server.getsockname()[1])  # fmt: skip
        assert reply(c, nopen) == OK
        conn, _ = server.accept()
        try:
            c.notification(wire.Nstat, lambda m: m.sktid == 1)
            assert reply(c, frame(0x2E, bytes([1, 4, 6]) + u64(0) + b"\x01\xff")) == OK
            conn.settimeout(5)
            assert conn.recv(10) == b""  # the FIN
        finally:
            conn.close()
    finally:
        ep.stop()
        ctl.close()


@pytest.mark.parametrize(
    "family,proto,addrs",
    [
        (4, 17, bytes(16) + u16(0)),  # IPv4 UDP with an IPv6-sized laddr
        (6, 17, LO + u16(0)),  # IPv6 UDP with an IPv4 laddr
        (4, 6, bytes(16) + u16(0) + bytes(15) + b"\x01" + u16(80)),  # IPv4 TCP, IPv6 peer
        (6, 6, bytes(16) + u16(0) + LO + u16(80)),  # IPv6 TCP, IPv4 peer
    ],
)
def test_addresses_of_the_other_family_are_esktnoaddr(
    controller: RawController, family: int, proto: int, addrs: bytes
) -> None:
    """§1.3 ESKTNOADDR "bad addr/port length": an nopen whose addresses are the other
    family's size fits none of its family's forms; the endpoint answers ESKTNOADDR,
    opens nothing, and goes on (§1.2 len >= 7; docs/wire.md)."""
    c = controller
    body = bytes([9, family, proto]) + u32(1 << 16) + addrs
    assert reply(c, frame(0x2A, body)) == result(0x36)
    assert c.mread(vmem.SKT_BASE + 9 * vmem.SKT_STRIDE, 4) == bytes(4)  # still FREE
    assert c.mread(vmem.HOSTID.addr, 4) == b"pkte"


def test_the_system_block_byte_for_byte(controller: RawController) -> None:
    """§2.2 system parameters, the whole span 0x10000000-0x100303FF of the real daemon
    (its image is built at start-up, in an anonymous mapping since session 22), against
    the spec's table filled in by hand from the test config: every other byte is zero,
    and so are the bytes either side of the span. TIME is the clock at the read."""
    c = controller
    base, span = 0x10000000, 0x30400
    want = bytearray(span)

    def put(addr: int, data: bytes) -> None:
        want[addr - base : addr - base + len(data)] = data

    put(0x10000000, b"\x01\x01")  # IP4NO, IP6NO
    put(0x10000002, u32(0b110))  # TRANSSUP: tcp (bit 1), udp (bit 2)
    put(0x10000006, u32(8388608))  # BUFMAXDUP
    put(0x10000100, LO + b"\xff\x00\x00\x00")  # IP4LS[0]: 127.0.0.1/8
    put(0x10001000, bytes(15) + b"\x01")  # IP6LS[0]: ::1
    put(0x10010010, u32(8388608))  # BUFMAX; BUFUSED (0x10010014) stays 0
    put(0x10020000, b"\x01\x00")  # IP4DNSNO, IP6DNSNO
    put(0x10020010, b"\x7f\x00\x00\x35")  # IP4DNSLS[0]: 127.0.0.53
    put(0x10020200, bytes([0, 0, 0, 1, 2, 0, 0, 0, 0, 1, 2, 0]))  # IP4HDRMOD (Linux)
    put(0x10030000, b"pktendpoint-test")  # HOSTID
    got = bytearray()
    before = time.time_ns()
    for at in range(base, base + span, 0xFFFF):
        got += c.mread(at, min(0xFFFF, base + span - at))
    after = time.time_ns()
    stamp = int.from_bytes(got[0x10000:0x10008], "big")
    assert before - 10**6 <= stamp <= after + 10**6, (before, stamp, after)
    put(0x10010000, u64(stamp))
    diff = [hex(base + i) for i in range(span) if got[i] != want[i]]
    assert not diff, diff[:20]
    assert c.mread(base - 8, 8) == bytes(8)
    assert c.mread(base + span, 8) == bytes(8)


def test_a_socket_block_byte_for_byte_and_a_write_over_all_of_it(
    controller: RawController,
) -> None:
    """§2.2 socket info of an open UDP socket, all 0x400 bytes, against the spec's table
    filled in by hand; then one mwrite of 0xAB over the whole block changes exactly the
    RW fields (RBUFSZ, NSENDERR, NSENDERRTAG, NOTIFMASK, CTFL) and no other byte (§2.1:
    the rest of the write is dropped, the answer still SUCCESS)."""
    c = controller
    assert reply(c, udp_open(8, rbufsz=0x12345)) == OK
    block = vmem.SKT_BASE + 8 * vmem.SKT_STRIDE
    got = c.mread(block, 0x400)
    want = bytearray(0x400)
    want[0:3] = b"\x04\x11\x02"  # FAMILY, PROTO, STAT OPEN
    want[0x10:0x14] = LO  # LADDR (v4 in the first 4 bytes)
    want[0x30:0x32] = got[0x30:0x32]  # LPORT: the bound port (ours), checked below
    want[0x40:0x44] = u32(0x12345)  # RBUFSZ = the nopen's rbufsz
    assert got == bytes(want)
    assert int.from_bytes(got[0x30:0x32], "big") != 0
    assert reply(c, wire.Mwrite(addr=block, data=b"\xab" * 0x400)) == OK
    want[0x40:0x44] = b"\xab" * 4  # RBUFSZ
    want[0x60:0x63] = b"\xab" * 3  # NSENDERR, NSENDERRTAG
    want[0x70:0x72] = b"\xab" * 2  # NOTIFMASK
    want[0x100:0x180] = b"\xab" * 128  # CTFL
    assert c.mread(block, 0x400) == bytes(want)
    assert reply(c, wire.Nclose(sktid=8)) == OK
