"""TCP through a real endpoint: connect, data both ways, peer close, refusal, reset,
nctl FIN, flow control under a small budget, and passive open (TCP listen)."""

from __future__ import annotations

import hashlib
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest
from conftest import RawController

from packetlab import wire
from packetlab.wire import vmem
from packetlab.wire.constants import NotifMask, NsendErr, NstatCode, SocketState, Status

S = Status
LO4 = socket.inet_pton(socket.AF_INET, "127.0.0.1")
LO6 = socket.inet_pton(socket.AF_INET6, "::1")


def connect(sktid: int, port: int, family: int = 4, rbufsz: int = 1 << 20,
            lport: int = 0) -> wire.Nopen:  # fmt: skip
    alen = 4 if family == 4 else 16
    laddr = bytes(alen) if not lport else (LO4 if family == 4 else LO6)
    return wire.Nopen(
        sktid=sktid, family=family, proto=6, rbufsz=rbufsz, laddr=laddr, lport=lport,
        raddr=LO4 if family == 4 else LO6, rport=port,
    )  # fmt: skip


def send(sktid: int, data: bytes, tag: int = 0, time: int = 0, family: int = 4) -> wire.Nsend:
    return wire.Nsend(sktid=sktid, family=family, proto=6, time=time, tag=tag, data=data)


def stat(c: RawController, sktid: int) -> int:
    return struct.unpack("b", c.mread(vmem.skt_addr(sktid, vmem.SKT_STAT), 1))[0]


@pytest.fixture
def server() -> Iterator[socket.socket]:
    ls = socket.create_server(("127.0.0.1", 0))
    ls.settimeout(5)
    yield ls
    ls.close()


def test_tcp_exchange_and_peer_close(controller: RawController, server: socket.socket) -> None:
    c = controller
    port = server.getsockname()[1]
    c.ok(connect(2, port))
    # Sent while still connecting: queued and written once the connection is up.
    c.ok(send(2, b"GET / HTTP/1.0\r\n\r\n", tag=1))
    conn, peer = server.accept()
    est = c.notification(wire.Nstat)
    assert (est.code, est.raddr, est.rport) == (0, LO4, port)
    assert c.notification(wire.Ntag).tag == 1
    assert conn.recv(100) == b"GET / HTTP/1.0\r\n\r\n"
    block = c.mread(vmem.skt_addr(2, vmem.Region(0, 0)), 0x34)
    assert block[:3] == b"\x04\x06\x02"
    assert block[0x10:0x14] == LO4 and block[0x20:0x24] == LO4
    assert struct.unpack(">HH", block[0x30:0x34]) == (peer[1], port)
    conn.sendall(b"HTTP/1.0 200 OK\r\n\r\nhello")
    conn.close()
    got = b""
    while len(got) < 24:
        got += c.notification(wire.Ndata).data
    assert got == b"HTTP/1.0 200 OK\r\n\r\nhello"
    assert c.notification(wire.Nstat).code == NstatCode.PEERCLOSED
    assert stat(c, 2) == SocketState.EOF
    c.ok(wire.Nclose(sktid=2))


def test_ipv6_connect(controller: RawController) -> None:
    ls = socket.create_server(("::1", 0), family=socket.AF_INET6)
    c = controller
    c.ok(connect(3, ls.getsockname()[1], family=6))
    conn, _ = ls.accept()
    est = c.notification(wire.Nstat)
    assert est.family == 6 and est.raddr == LO6
    c.ok(send(3, b"six", family=6))
    assert conn.recv(10) == b"six"
    conn.close()
    ls.close()


def test_refused_connect_sends_nstat_and_sets_stat(controller: RawController) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    c = controller
    c.ok(connect(4, holder.getsockname()[1]))
    assert c.notification(wire.Nstat).code == NstatCode.RESET
    assert stat(c, 4) == SocketState.REFUSED
    assert c.status(send(4, b"x")) == S.ESKTNOTOPEN
    assert c.status(connect(4, 9)) == S.ESKTINUSE  # stays allocated until nclose
    c.ok(wire.Nclose(sktid=4))
    holder.close()


def test_local_port_in_use(controller: RawController, server: socket.socket) -> None:
    taken = server.getsockname()[1]
    assert controller.status(connect(5, taken, lport=taken)) == S.ETCPNOPORT


def test_reset_by_peer(controller: RawController, server: socket.socket) -> None:
    c = controller
    c.ok(connect(2, server.getsockname()[1]))
    conn, _ = server.accept()
    c.notification(wire.Nstat)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()  # RST
    assert c.notification(wire.Nstat).code == NstatCode.RESET
    assert stat(c, 2) == SocketState.RESET


def test_nctl_fin_after_earlier_sends(controller: RawController, server: socket.socket) -> None:
    c = controller
    c.ok(connect(2, server.getsockname()[1]))
    conn, _ = server.accept()
    c.notification(wire.Nstat)
    t = time.time_ns() + 100_000_000
    c.ok(send(2, b"before", tag=1, time=t - 1000))
    c.ok(wire.Nctl(sktid=2, family=4, proto=6, time=t, command=1))
    c.ok(send(2, b"after", tag=2, time=t + 1000))
    conn.settimeout(5)
    data = b""
    while chunk := conn.recv(100):
        data += chunk
    assert data == b"before"  # then EOF: our FIN
    tags = [c.notification(wire.Ntag), c.notification(wire.Ntag)]
    assert [(n.tag, n.errid) for n in tags] == [(1, 0), (2, S.EPKTNOTSENT)]
    assert stat(c, 2) == SocketState.WFIN
    assert c.mread(vmem.skt_addr(2, vmem.SKT_NSENDERR), 1) == bytes([NsendErr.WFIN])
    assert c.status(send(2, b"x")) == S.ESKTNOTOPEN
    conn.sendall(b"last words")
    conn.close()
    assert c.notification(wire.Ndata).data == b"last words"
    assert c.notification(wire.Nstat).code == NstatCode.PEERCLOSED
    assert stat(c, 2) == SocketState.END


def test_small_budget_download_arrives_whole(
    controller: RawController, server: socket.socket
) -> None:
    blob = hashlib.sha256(b"seed").digest() * (8 * 1024 * 1024 // 32)
    c = controller
    c.ok(connect(2, server.getsockname()[1], rbufsz=64 * 1024))
    conn, _ = server.accept()
    c.notification(wire.Nstat)

    def send_all() -> None:
        conn.sendall(blob)
        conn.close()

    sender = threading.Thread(target=send_all)
    sender.start()
    time.sleep(0.3)  # do not read: the endpoint must stop reading, not buffer 8 MiB
    used = int.from_bytes(c.mread(vmem.BUFUSED.addr, 4), "big")
    assert used <= 64 * 1024
    got = bytearray()
    while True:
        m = c.next(10)
        if isinstance(m, wire.Nstat):
            assert m.code == NstatCode.PEERCLOSED
            break
        assert isinstance(m, wire.Ndata) and len(m.data) <= 0x10000
        got += m.data
    sender.join()
    assert len(got) == len(blob) and hashlib.sha256(got).digest() == hashlib.sha256(blob).digest()


def test_data_held_by_the_budget_comes_before_a_failed_sends_reset(
    controller: RawController, server: socket.socket
) -> None:
    """The server sends N bytes then resets; the endpoint's reading is stopped for want
    of budget (NDATA masked), and an nsend then fails (ECONNRESET). The controller got
    the nstat(RESET) and the ntag at once, and of the N bytes only what had been read
    before the stop: the rest, in the kernel, went with the socket (session 29). Now:
    every byte as ndata, then the write error's ntag(EPKTNOTSENT) and nstat(RESET) (the
    endpoint's order for a failed socket, test_ep_session), as a read error follows
    the data before it."""
    c = controller
    c.ok(connect(2, server.getsockname()[1], rbufsz=16 * 1024))
    conn, _ = server.accept()
    c.notification(wire.Nstat)
    c.mwrite(vmem.skt_addr(2, vmem.SKT_NOTIFMASK), NotifMask.NDATA.to_bytes(2, "big"))
    blob = hashlib.sha256(b"ep29").digest() * 1600  # 51,200 bytes: 3x rbufsz
    conn.sendall(blob)

    def rbufused() -> int:
        return int.from_bytes(c.mread(vmem.skt_addr(2, vmem.SKT_RBUFUSED), 4), "big")

    deadline = time.monotonic() + 10
    while rbufused() < 8 * 1024:  # held ndata fill the socket's budget: reading stops
        assert time.monotonic() < deadline, rbufused()
        time.sleep(0.01)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()  # RST after the data
    c.ok(send(2, b"late", tag=7))  # queued; its write fails in the endpoint
    c.send(wire.Mwrite(addr=vmem.skt_addr(2, vmem.SKT_NOTIFMASK), data=b"\0\0"))
    got, order = bytearray(), list[str]()
    while "ntag" not in order or "nstat" not in order:
        m = c.next(10)
        if isinstance(m, wire.Ndata):
            got += m.data
            if not order or order[-1] != "ndata":
                order.append("ndata")
        elif isinstance(m, wire.Nstat):
            assert m.code == NstatCode.RESET
            order.append("nstat")
        elif isinstance(m, wire.Ntag):
            assert (m.tag, m.errid) == (7, S.EPKTNOTSENT)
            order.append("ntag")
    assert bytes(got) == blob
    assert order == ["ndata", "ntag", "nstat"]
    assert stat(c, 2) == SocketState.RESET


def test_masked_ndata_stops_tcp_reading(controller: RawController, server: socket.socket) -> None:
    c = controller
    c.ok(connect(2, server.getsockname()[1], rbufsz=16 * 1024))
    conn, _ = server.accept()
    c.notification(wire.Nstat)
    c.mwrite(vmem.skt_addr(2, vmem.SKT_NOTIFMASK), NotifMask.NDATA.to_bytes(2, "big"))
    conn.setblocking(False)
    sent = 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            sent += conn.send(bytes(65536))
        except BlockingIOError:
            time.sleep(0.05)
            try:
                sent += conn.send(bytes(65536))
            except BlockingIOError:
                break  # the peer's window closed: flow control reached us
    rbufused = int.from_bytes(c.mread(vmem.skt_addr(2, vmem.SKT_RBUFUSED), 4), "big")
    assert rbufused <= 16 * 1024
    c.send(wire.Mwrite(addr=vmem.skt_addr(2, vmem.SKT_NOTIFMASK), data=b"\0\0"))
    total = 0
    conn.setblocking(True)
    conn.close()
    while True:
        m = c.next(10)
        if isinstance(m, wire.Ndata):
            total += len(m.data)
        elif isinstance(m, wire.Nstat):
            break
    assert total == sent


def test_passive_open_accepts_one_connection(controller: RawController) -> None:
    c = controller
    listen = wire.Nopen(sktid=8, family=4, proto=6, rbufsz=1 << 16, laddr=LO4, lport=0)
    c.ok(listen)
    assert stat(c, 8) == SocketState.OPENING
    port = int.from_bytes(c.mread(vmem.skt_addr(8, vmem.SKT_LPORT), 2), "big")
    assert port != 0
    peer = socket.create_connection(("127.0.0.1", port), timeout=5)
    est = c.notification(wire.Nstat)
    assert (est.code, est.raddr, est.rport) == (0, LO4, peer.getsockname()[1])
    assert stat(c, 8) == SocketState.OPEN
    peer.sendall(b"ping")
    assert c.notification(wire.Ndata).data == b"ping"
    c.ok(send(8, b"pong", tag=1))
    assert peer.recv(10) == b"pong"
    # The listener is gone: a second connection is refused.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)
    peer.close()
    assert c.notification(wire.Nstat).code == NstatCode.PEERCLOSED
