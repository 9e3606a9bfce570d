"""Raw sockets in the session over fakes: nopen address rules, nsend checks, ncap, TX
times and receive budgets (PROTOCOL.md §3.1, §3.3-§3.5). The kernel side runs in
tests/integration/test_endpoint_raw.py."""

from __future__ import annotations

import ipaddress
from typing import Any

from ep_fakes import T0, FakeIO, FakeNetwork, Rig, errids, names, udp_open

from packetlab import wire
from packetlab.endpoint.budget import RECV_BUF_OVERHEAD
from packetlab.endpoint.memory import system_image
from packetlab.endpoint.sockets import CaptureRejected, OpenError, PendingSend, Skt, SocketEvents
from packetlab.wire import vmem
from packetlab.wire.constants import SocketState, Status, TransSup

S = Status
A4 = ipaddress.IPv4Address("192.0.2.10").packed
B4 = ipaddress.IPv4Address("192.0.2.11").packed
A6 = ipaddress.IPv6Address("2001:db8::10").packed
DST4 = ipaddress.IPv4Address("198.51.100.1").packed
DST6 = ipaddress.IPv6Address("2001:db8::99").packed


class FakeRawIO(FakeIO):
    def __init__(self, skt: Skt, events: SocketEvents) -> None:
        super().__init__(skt, events)
        self.captures: list[tuple[bytes, int]] = []
        self.reject: str | None = None
        self.stamps: dict[int, int] = {}  # tag -> TX time

    def capture(self, program: bytes, endtime: int) -> None:
        if self.reject is not None:
            raise CaptureRejected(S.ESKTBADFILT, self.reject)
        self.captures.append((program, endtime))

    def tx_time(self, pending: PendingSend, not_before: int) -> int | None:
        return self.stamps.get(pending.tag)


class RawNetwork(FakeNetwork):
    def __init__(self) -> None:
        super().__init__()
        self.raw_laddrs: list[bytes] = []

    def open_raw(self, skt: Skt, laddr: bytes, events: SocketEvents) -> FakeRawIO:
        if self.fail is not None:
            raise self.fail
        self.raw_laddrs.append(laddr)
        skt.laddr = laddr
        io = self.ios[skt.sktid] = FakeRawIO(skt, events)
        return io


def raw_net(r: Rig) -> RawNetwork:
    assert isinstance(r.net, RawNetwork)
    return r.net


def raw_io(r: Rig, sktid: int) -> FakeRawIO:
    io = r.io(sktid)
    assert isinstance(io, FakeRawIO)
    return io


def rig(**cfg: Any) -> Rig:
    cfg.setdefault("transproto_sup", frozenset({"raw", "tcp", "udp"}))
    cfg.setdefault("ipv4", [ipaddress.IPv4Interface("192.0.2.10/24"),
                            ipaddress.IPv4Interface("192.0.2.11/24")])  # fmt: skip
    cfg.setdefault("ipv6", [ipaddress.IPv6Address("2001:db8::10")])
    r = Rig(**cfg)
    r.net = RawNetwork()
    r.session.network = r.net
    return r.started()


def raw_open(sktid: int = 1, family: int = 4, laddr: bytes | None = None,
             rbufsz: int = 1 << 20) -> wire.Nopen:  # fmt: skip
    la = laddr if laddr is not None else bytes(4 if family == 4 else 16)
    return wire.Nopen(sktid=sktid, family=family, proto=0, rbufsz=rbufsz, laddr=la)


def ipv4(src: bytes = A4, dst: bytes = DST4, ihl: int = 5) -> bytes:
    return bytes([0x40 | ihl, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0]) + src + dst + bytes(8)


def ipv6(src: bytes = A6, dst: bytes = DST6) -> bytes:
    return bytes([0x60, 0, 0, 0, 0, 8, 17, 64]) + src + dst + bytes(8)


def raw_send(data: bytes, sktid: int = 1, family: int = 4, tag: int = 0) -> wire.Nsend:
    return wire.Nsend(sktid=sktid, family=family, proto=0, time=0, tag=tag, data=data)


def ncap(sktid: int = 1, family: int = 4, proto: int = 0, endtime: int = T0 + 10**9,
         prog: bytes = b"\x00prog") -> wire.Ncap:  # fmt: skip
    return wire.Ncap(sktid=sktid, family=family, proto=proto, endtime=endtime, filter=prog)


# ---------------------------------------------------------------------------- nopen


def test_raw_is_offered_only_when_configured() -> None:
    r = rig(transproto_sup=frozenset({"udp"}))
    assert errids(r.send(raw_open())) == [S.ESKTNOPROTO]
    sup = int.from_bytes(system_image(r.config)[2:6], "big")
    assert not sup & TransSup.RAW
    r = rig()
    sup = int.from_bytes(r.session.memory.read(vmem.TRANSSUP.addr, 4), "big")
    assert sup & TransSup.RAW and sup & TransSup.TCP and sup & TransSup.UDP


def test_zero_laddr_means_the_first_exported_address() -> None:
    r = rig()
    assert errids(r.send(raw_open(1), raw_open(2, 6))) == [0, 0]
    assert raw_net(r).raw_laddrs == [A4, A6]
    assert r.skt(1).state == SocketState.OPEN
    laddr = r.session.memory.read(vmem.skt_addr(1, vmem.SKT_LADDR), 4)
    assert laddr == A4


def test_laddr_must_be_exported() -> None:
    r = rig()
    assert errids(r.send(raw_open(1, laddr=B4))) == [0]
    assert errids(r.send(raw_open(2, laddr=DST4))) == [S.ESKTNOADDR]
    assert errids(r.send(raw_open(3, 6, laddr=DST6))) == [S.ESKTNOADDR]
    assert errids(r.send(raw_open(4, laddr=bytes(16)))) == [S.ESKTNOADDR]  # wrong length
    assert r.session.sockets[2] is None and r.session.sockets[3] is None


def test_no_exported_address_of_the_family() -> None:
    r = rig(ipv6=[])
    assert errids(r.send(raw_open(1, 6))) == [S.ESKTNOPRFAM]


def test_network_refusal_is_the_answer() -> None:
    r = rig()
    r.net.fail = OpenError(S.ESKTINUSE, "interface has a raw socket")
    assert errids(r.send(raw_open(1))) == [S.ESKTINUSE]
    r.net.fail = OpenError(S.EUNKFAULT, "needs CAP_NET_RAW")
    assert errids(r.send(raw_open(1))) == [S.EUNKFAULT]
    assert r.session.sockets[1] is None


# ---------------------------------------------------------------------------- nsend


def test_raw_send_goes_to_the_packet_destination() -> None:
    r = rig()
    r.send(raw_open(1), raw_open(2, 6))
    assert errids(r.send(raw_send(ipv4(), tag=0))) == [0]
    assert errids(r.send(raw_send(ipv6(), sktid=2, family=6))) == [0]
    assert r.io(1).sent[0].dest == ("198.51.100.1", 0)
    assert r.io(2).sent[0].dest == ("2001:db8::99", 0, 0, 0)


def test_zero_ipv4_source_is_filled_by_the_kernel_so_allowed() -> None:
    r = rig()
    r.send(raw_open(1))
    assert errids(r.send(raw_send(ipv4(src=bytes(4))))) == [0]


def test_raw_send_denied() -> None:
    r = rig()
    r.send(raw_open(1), raw_open(2, 6))
    denied = [
        raw_send(ipv4(src=DST4)),  # spoofed
        raw_send(ipv4()[:19]),  # too short
        raw_send(ipv6()),  # IPv6 on an IPv4 socket
        raw_send(ipv4(ihl=4)),  # header length below 20
        raw_send(ipv4(ihl=15)),  # header longer than the packet
        raw_send(ipv6(src=DST6), sktid=2, family=6),
        raw_send(ipv6(src=bytes(16)), sktid=2, family=6),  # no zero fill for IPv6
        raw_send(ipv4(), sktid=2, family=6),
    ]
    assert errids(r.send(*denied)) == [S.ESKTPKTDENY] * len(denied)
    assert r.io(1).sent == [] and r.io(2).sent == []
    assert r.session.budget.used == 0


def test_ntag_carries_the_kernel_tx_time_when_there_is_one() -> None:
    r = rig()
    r.send(raw_open(1))
    raw_io(r, 1).stamps[5] = T0 + 12345
    got = r.send(raw_send(ipv4(), tag=5), raw_send(ipv4(), tag=6))
    tags = [m for m in got if isinstance(m, wire.Ntag)]
    assert [t.tag for t in tags] == [5, 6]
    assert tags[0].time == T0 + 12345
    assert tags[1].time != T0 + 12345 and tags[1].time >= T0  # no stamp: the clock reading


def test_failed_raw_send_ntags_epktnotsent() -> None:
    r = rig()
    r.send(raw_open(1))
    r.io(1).error = 105  # ENOBUFS
    got = r.send(raw_send(ipv4(), tag=8))
    assert got[0] == wire.Result(0)
    assert isinstance(got[1], wire.Ntag) and got[1].errid == S.EPKTNOTSENT


# ----------------------------------------------------------------------------- ncap


def test_ncap_checks_in_order() -> None:
    r = rig()
    r.send(raw_open(1), udp_open(2))
    assert errids(r.send(ncap(sktid=9))) == [S.ESKTNOTOPEN]
    assert errids(r.send(ncap(family=6))) == [S.ESKTNOMATCH]
    assert errids(r.send(ncap(sktid=2))) == [S.ESKTNOMATCH]  # proto raw on a UDP socket
    assert errids(r.send(ncap(sktid=2, proto=17))) == [S.ECTLNOTSUP]  # capture is raw only
    raw_io(r, 1).reject = "kernel verifier rejected the filter: R2 !read_ok"
    assert errids(r.send(ncap())) == [S.ESKTBADFILT]
    raw_io(r, 1).reject = None
    assert errids(r.send(ncap(endtime=T0 + 5))) == [0]
    assert raw_io(r, 1).captures == [(b"\x00prog", T0 + 5)]


def test_ncap_after_close_is_not_open() -> None:
    r = rig()
    r.send(raw_open(1), wire.Nclose(sktid=1))
    assert errids(r.send(ncap())) == [S.ESKTNOTOPEN]
    assert r.io(1).closed


# -------------------------------------------------------------------------- receive


def test_captured_packets_are_ndata_without_an_address() -> None:
    r = rig()
    r.send(raw_open(1))
    r.session.raw_received(r.skt(1), ipv4(), T0 + 7)
    assert r.new() == [wire.Ndata(sktid=1, family=4, proto=0, time=T0 + 7, data=ipv4())]


def test_raw_budget_truncates_then_drops_and_counts() -> None:
    r = rig()
    r.send(raw_open(1, rbufsz=2 * RECV_BUF_OVERHEAD + 150))
    skt = r.skt(1)
    r.session.outbox.pause()
    r.session.raw_received(skt, bytes(100), T0 + 1)  # fits
    r.session.raw_received(skt, bytes(100), T0 + 2)  # truncated to 50
    r.session.raw_received(skt, bytes(30), T0 + 3)  # dropped
    assert (skt.drop_pkts, skt.drop_bytes) == (2, 80)
    r.session.outbox.resume()
    got = r.new()
    assert names(got) == ["ndata", "ndrop", "ndata", "ndrop"]
    assert len(got[2].data) == 50
    # Room again once the ndata left: the second episode ends without another packet.
    assert got[3] == wire.Ndrop(
        sktid=1, family=4, proto=0, tfirst=T0 + 3, tlast=T0 + 3, unitcnt=1, bytecnt=30
    )
    r.session.raw_received(skt, b"ok", T0 + 4)
    assert names(r.new()) == ["ndata"]
    assert r.session.budget.used == 0
