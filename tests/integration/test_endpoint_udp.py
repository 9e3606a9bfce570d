"""UDP through a real endpoint: IPv4 and IPv6, timed sends, errors, masks, drops."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import pytest
from conftest import DEFAULT_CONFIG, EndpointProcess, RawController
from testkit.poll import poll_until

from packetlab import wire
from packetlab.endpoint.budget import RECV_BUF_OVERHEAD
from packetlab.wire import vmem
from packetlab.wire.constants import NotifMask, NsendErr, Status

S = Status
LO4 = socket.inet_pton(socket.AF_INET, "127.0.0.1")
LO6 = socket.inet_pton(socket.AF_INET6, "::1")


def nopen(sktid: int, family: int = 4, lport: int = 0, rbufsz: int = 1 << 16,
          laddr: bytes | None = None) -> wire.Nopen:  # fmt: skip
    if laddr is None:
        laddr = bytes(4 if family == 4 else 16)
    return wire.Nopen(sktid=sktid, family=family, proto=17, rbufsz=rbufsz, laddr=laddr, lport=lport)


def nsend(
    sktid: int, port: int, data: bytes, tag: int = 0, family: int = 4, time: int = 0
) -> wire.Nsend:
    return wire.Nsend(
        sktid=sktid, family=family, proto=17, time=time, tag=tag, data=data,
        raddr=LO4 if family == 4 else LO6, rport=port,
    )  # fmt: skip


@pytest.fixture(params=[4, 6], ids=["ipv4", "ipv6"])
def peer(request: pytest.FixtureRequest) -> Iterator[tuple[int, socket.socket]]:
    family = request.param
    s = socket.socket(socket.AF_INET if family == 4 else socket.AF_INET6, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1" if family == 4 else "::1", 0))
    s.settimeout(5)
    yield family, s
    s.close()


def local_port(c: RawController, sktid: int) -> int:
    return int.from_bytes(c.mread(vmem.skt_addr(sktid, vmem.SKT_LPORT), 2), "big")


def test_udp_round_trip(controller: RawController, peer: tuple[int, socket.socket]) -> None:
    family, s = peer
    c = controller
    c.ok(nopen(1, family))
    port = s.getsockname()[1]
    c.ok(nsend(1, port, b"hello", tag=3, family=family))
    ntag = c.notification(wire.Ntag)
    data, src = s.recvfrom(100)
    assert data == b"hello" and ntag.tag == 3 and ntag.errid == 0
    assert src[1] == local_port(c, 1)
    before = time.time_ns()
    s.sendto(b"back", src)
    nd = c.notification(wire.Ndata)
    assert nd.data == b"back" and nd.family == family and nd.proto == 17
    assert nd.raddr == (LO4 if family == 4 else LO6) and nd.rport == port
    assert before <= nd.time <= time.time_ns()  # the kernel's receive time
    assert c.mread(vmem.skt_addr(1, vmem.SKT_STAT), 1) == b"\x02"


def test_udp_nopen_carrying_a_peer_is_taken_and_the_peer_ignored(
    controller: RawController, peer: tuple[int, socket.socket]
) -> None:
    """§3.1 "UDP binds laddr:lport (raddr ignored)": the TCP-connect form of a UDP nopen
    (19/43 bytes) is answered SUCCESS and the socket works; it was ECTLBADMSG and a
    close. The datagram goes where the nsend says, not to the nopen's peer."""
    family, s = peer
    c = controller
    alen = 4 if family == 4 else 16
    head = bytes([1, family, 17]) + (1 << 16).to_bytes(4, "big") + bytes(alen) + bytes(2)
    body = head + bytes(alen - 1) + b"\x09" + (9).to_bytes(2, "big")  # peer ...9 port 9
    c.ok(bytes([0x2A]) + len(body).to_bytes(3, "big") + body)
    port = s.getsockname()[1]
    c.ok(nsend(1, port, b"hi", family=family))
    assert s.recvfrom(100)[0] == b"hi"
    assert c.mread(vmem.skt_addr(1, vmem.SKT_RADDR), alen) == bytes(alen)


def test_scheduled_send_goes_at_its_time(controller: RawController) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    c = controller
    c.ok(nopen(1))
    at = time.time_ns() + 200_000_000
    c.ok(nsend(1, s.getsockname()[1], b"later", tag=9, time=at))
    assert c.quiet(0.1) == []
    ntag = c.notification(wire.Ntag, timeout=2)
    assert at <= ntag.time < at + 50_000_000
    s.close()


def test_udp_errors(controller: RawController) -> None:
    c = controller
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    assert c.status(nsend(1, 9, b"x")) == S.ESKTNOTOPEN
    assert c.status(nopen(1, lport=port, laddr=LO4)) == S.EUDPNOPORT
    assert c.status(nopen(1, laddr=bytes([192, 0, 2, 99]))) == S.ESKTNOADDR
    assert c.status(nopen(1, lport=80, laddr=LO4)) in (0, S.ESYSNOPERM)  # root may bind 80
    c.request(wire.Nclose(sktid=1))
    c.ok(nopen(1))
    assert c.status(nopen(1)) == S.ESKTINUSE
    tcp_shaped = wire.Nsend(sktid=1, family=4, proto=6, time=0, tag=0, data=b"x")
    assert c.status(tcp_shaped) == S.ESKTNOMATCH
    assert c.status(nsend(1, 9, b"x", family=6)) == S.ESKTNOMATCH
    assert c.status(wire.Nctl(sktid=1, family=4, proto=6, time=0, command=1)) == S.ECTLNOTSUP
    cap = wire.Ncap(sktid=1, family=4, proto=17, endtime=0, filter=b"\x00")
    assert c.status(cap) == S.ECTLNOTSUP
    assert (
        c.status(wire.Ncap(sktid=7, family=4, proto=17, endtime=0, filter=b"\0")) == S.ESKTNOTOPEN
    )
    # A send the kernel refuses: port 0 is invalid. ntag(EPKTNOTSENT), NSENDERR set.
    c.ok(nsend(1, 0, b"x", tag=77))
    ntag = c.notification(wire.Ntag)
    assert (ntag.tag, ntag.errid) == (77, S.EPKTNOTSENT)
    err = c.mread(vmem.skt_addr(1, vmem.SKT_NSENDERR), 3)
    assert err == bytes([NsendErr.BADPKT]) + (77).to_bytes(2, "big")
    assert c.status(wire.Nclose(sktid=1)) == 0
    assert c.status(wire.Nclose(sktid=1)) == S.ESKTNOTOPEN
    taken.close()


def test_family_and_protocol_support_follow_the_config(
    endpoint_factory: Callable[..., EndpointProcess],
) -> None:
    config = DEFAULT_CONFIG.replace("VMemLocalAddrStrIPv6 ::1\n", "").replace(
        "TransprotoSup tcp,udp", "TransprotoSup udp"
    )
    c = endpoint_factory(config).accept()
    c.start()
    assert c.mread(vmem.IP6NO.addr, 5) == b"\x00" + (0b100).to_bytes(4, "big")
    assert c.status(nopen(1, family=6)) == S.ESKTNOPRFAM
    tcp = wire.Nopen(sktid=2, family=4, proto=6, rbufsz=0, laddr=bytes(4), lport=0,
                     raddr=LO4, rport=80)  # fmt: skip
    assert c.status(tcp) == S.ESKTNOPROTO
    raw = wire.Nopen(sktid=3, family=4, proto=0, rbufsz=0, laddr=LO4)
    assert c.status(raw) == S.ESKTNOPROTO


def test_nsend_over_bufmax(endpoint_factory: Callable[..., EndpointProcess]) -> None:
    c = endpoint_factory(DEFAULT_CONFIG.replace("BufMax 8388608", "BufMax 4096")).accept()
    c.start()
    c.ok(nopen(1))
    assert c.status(nsend(1, 9, bytes(5000))) == S.ESYSNOBUFS
    far = time.time_ns() + 10**10
    c.ok(nsend(1, 9, bytes(1000), time=far))
    c.ok(nsend(1, 9, bytes(1000), time=far))
    assert c.status(nsend(1, 9, bytes(2000), time=far)) == S.ESYSNOBUFS
    used = int.from_bytes(c.mread(vmem.BUFUSED.addr, 4), "big")
    assert used == 2 * (1000 + 116)
    c.ok(wire.Nclose(sktid=1))
    assert c.mread(vmem.BUFUSED.addr, 4) == bytes(4)


def test_masked_ndata_is_held_then_flushed(controller: RawController) -> None:
    c = controller
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.ok(nopen(1, laddr=LO4))
    dest = ("127.0.0.1", local_port(c, 1))
    c.mwrite(vmem.skt_addr(1, vmem.SKT_NOTIFMASK), NotifMask.NDATA.to_bytes(2, "big"))
    for i in range(5):
        s.sendto(b"%d" % i, dest)
    assert c.quiet(0.3) == []
    used = int.from_bytes(c.mread(vmem.skt_addr(1, vmem.SKT_RBUFUSED), 4), "big")
    assert used == 5 * (1 + RECV_BUF_OVERHEAD + 6)
    c.send(wire.Mwrite(addr=vmem.skt_addr(1, vmem.SKT_NOTIFMASK), data=b"\0\0"))
    got = [c.next() for _ in range(6)]
    assert [m.NAME for m in got] == ["ndata"] * 5 + ["result"]
    assert [m.data for m in got[:5]] == [b"0", b"1", b"2", b"3", b"4"]  # type: ignore[attr-defined]
    s.close()


def test_exhausted_budget_drops_counts_and_sends_one_ndrop(controller: RawController) -> None:
    c = controller
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    per = 100 + RECV_BUF_OVERHEAD + 6
    c.ok(nopen(1, laddr=LO4, rbufsz=2 * per))
    dest = ("127.0.0.1", local_port(c, 1))
    c.mwrite(vmem.skt_addr(1, vmem.SKT_NOTIFMASK), NotifMask.NDATA.to_bytes(2, "big"))
    for _ in range(6):
        s.sendto(bytes(100), dest)
    dropped = (400).to_bytes(4, "big") + (4).to_bytes(4, "big")  # 4 datagrams, 400 bytes
    poll_until(
        lambda: c.mread(vmem.skt_addr(1, vmem.SKT_DROPSTAT), 8) == dropped,
        what=lambda: f"dropstat {c.mread(vmem.skt_addr(1, vmem.SKT_DROPSTAT), 8).hex()}",
    )
    c.mwrite(vmem.skt_addr(1, vmem.SKT_NOTIFMASK), b"\0\0")
    assert [c.notification(wire.Ndata).data for _ in range(2)] == [bytes(100)] * 2
    assert c.quiet(0.2) == []  # no ndrop until a datagram is accepted again
    s.sendto(b"again", dest)
    ndrop = c.notification(wire.Ndrop)
    assert (ndrop.unitcnt, ndrop.bytecnt) == (4, 400) and ndrop.tfirst <= ndrop.tlast
    assert c.notification(wire.Ndata).data == b"again"
    s.close()


def test_out_of_descriptors_answers_enores(
    endpoint_factory: Callable[..., EndpointProcess],
) -> None:
    ep = endpoint_factory(nofile=40)
    c = ep.accept()
    c.start()
    answers = [c.status(nopen(i)) for i in range(40)]
    assert answers[0] == 0 and S.ENORES in answers
    assert set(answers) == {0, S.ENORES}
    assert c.mread(vmem.IP4NO.addr, 1) == b"\x01"  # the session carries on
    c.ok(wire.Nclose(sktid=0))
    assert c.status(nopen(200)) == 0  # a freed descriptor is usable again
