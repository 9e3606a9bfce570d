"""A scripted endpoint with raw sockets and a simulated path, for the traceroute and ping
unit tests (imported by them; the checks at the bottom test the simulation itself).

`RawFakeEndpoint` extends the controller tests' `FakeEndpoint`: raw nopen, ncap (records
the filter), and raw nsend answered like a chain of routers would: time exceeded from
`path[ttl-1]` after `delays[ttl]` seconds, port unreachable (or an echo reply) from the
target. ntag times are the task.Clock's send time and ndata times the delivery time, so
the expected RTT of a hop is exactly its delay.
"""

from __future__ import annotations

import ipaddress
import struct
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "controller"))

from ctl_fakes import FakeEndpoint, Rig

from packetlab.endpoint.config import parse_config
from packetlab.endpoint.memory import system_image
from packetlab.measure.packets import (
    PROTO_DCCP,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    TCP_ACK,
    TCP_RST,
    TCP_SYN,
    as_address,
    inet_checksum,
    ip_packet,
    pseudo_header,
)
from packetlab.measure.packets_transport import tcp_segment
from packetlab.wire import Ncap, Ndata, Nopen, Nsend, Ntag, Proto, Status

T = TypeVar("T")
EP4, R14, R24, TG4 = "10.77.1.1", "10.77.1.2", "10.77.2.2", "10.77.3.2"
EP6, R16, R26, TG6 = "fd00:77:1::1", "fd00:77:1::2", "fd00:77:2::2", "fd00:77:3::2"
CONFIG = f"""\
TransprotoSup raw,tcp,udp
VMemLocalAddrStrIPv4 127.0.0.1/8,{EP4}/24
VMemLocalAddrStrIPv6 ::1,{EP6}
"""


def icmp_packet(src: str, dst: str, icmp_type: int, code: int, rest: bytes, body: bytes) -> bytes:
    v6 = ":" in src
    msg = struct.pack("!BBH", icmp_type, code, 0) + rest + body
    ph = pseudo_header(as_address(src), as_address(dst), PROTO_ICMPV6, len(msg)) if v6 else b""
    msg = msg[:2] + struct.pack("!H", inet_checksum(ph + msg)) + msg[4:]
    return ip_packet(src, dst, PROTO_ICMPV6 if v6 else PROTO_ICMP, msg, ttl=63)


class RawFakeEndpoint(FakeEndpoint):
    """`path` lists the routers (by TTL) and ends with the target; None = a silent hop."""

    def __init__(self, clock: Clock, path: list[str | None], config: str = CONFIG) -> None:
        super().__init__(clock)
        self.memory = system_image(parse_config(config.splitlines()))
        self.path = path
        self.delays: dict[int, float] = {}  # ttl -> reply delay (s); default 0.001 * ttl
        self.extra: Callable[[bytes], list[tuple[float, bytes]]] = lambda probe: []
        self.ncaps: list[Ncap] = []
        self.raw_sends: list[Nsend] = []
        self.ncap_status = 0
        self.nsend_errid: int | None = None  # ntag error for every raw send
        self.unreachable_at: dict[int, int] = {}  # ttl -> ICMP code from that router
        self.dccp_reset = True  # the target answers DCCP-Requests with a Reset (else !P)

    def handle(self, msg: Any) -> None:
        if isinstance(msg, Ncap):
            self.ncaps.append(msg)
            self.result(self.ncap_status)
        elif isinstance(msg, Nsend) and msg.proto == Proto.RAW:
            self.raw_send(msg)
        else:
            super().handle(msg)

    def delay(self, ttl: int) -> float:
        return self.delays.get(ttl, 0.001 * ttl)

    def raw_send(self, msg: Nsend) -> None:
        if msg.sktid not in self.sockets:
            self.result(Status.ESKTNOTOPEN)
            return
        self.result()
        when = max(msg.time, self.now())
        self.clock.callLater((when - self.now()) / 1e9, self.transmit, msg, when)

    def transmit(self, msg: Nsend, when: int) -> None:
        # times are the scheduled ones (the Clock advances in steps): exact RTTs
        self.raw_sends.append(msg)
        if msg.tag:
            self.send(Ntag(msg.sktid, msg.tag, when, self.nsend_errid or 0))
            if self.nsend_errid is not None:
                return
        for delay, packet in self.answers(msg.data) + self.extra(msg.data):
            at = when + int(delay * 1e9)
            self.clock.callLater((at - self.now()) / 1e9, self.deliver, msg, packet, at)

    def deliver(self, msg: Nsend, packet: bytes, at: int) -> None:
        if msg.sktid in self.sockets:
            self.send(Ndata(msg.sktid, msg.family, Proto.RAW, at, packet))

    def answers(self, probe: bytes) -> list[tuple[float, bytes]]:
        v6 = probe[0] >> 4 == 6
        # a fragmented probe: answered once, for its first fragment, as if it were whole
        # (routers answer only that one; the target answers the datagram)
        if v6 and probe[6] == 44:
            if struct.unpack_from("!H", probe, 42)[0] >> 3:
                return []
            probe = probe[:6] + probe[40:41] + probe[7:40] + probe[48:]
        elif not v6 and struct.unpack_from("!H", probe, 6)[0] & 0x1FFF:
            return []
        ttl = probe[7] if v6 else probe[8]
        proto = probe[6] if v6 else probe[9]
        src = str(ipaddress.ip_address(probe[8:24] if v6 else probe[12:16]))
        target = self.path[-1]
        assert target is not None
        hop = self.path[ttl - 1] if ttl <= len(self.path) else target
        if hop is None:
            return []
        if hop != target and proto in (PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP):
            kind, code = (3, 0) if v6 else (11, 0)  # time exceeded, quoting the probe
            return [(self.delay(ttl), icmp_packet(hop, src, kind, code, bytes(4), probe))]
        if proto == PROTO_TCP:  # the target: SYN-ACK to port 80, RST elsewhere
            hdr = 40 if v6 else 20
            sport, dport, seq, their_ack = struct.unpack_from("!HHII", probe, hdr)
            if not probe[hdr + 13] & TCP_SYN:  # a stray ACK: RST, seq = its ack (RFC 9293)
                seg = tcp_segment(target, src, dport, sport, seq=their_ack, flags=TCP_RST)
                return [(self.delay(ttl), ip_packet(target, src, PROTO_TCP, seg, ttl=63))]
            flags = TCP_SYN | TCP_ACK if dport == 80 else TCP_RST | TCP_ACK
            ack = (seq + 1) & 0xFFFFFFFF
            seg = tcp_segment(target, src, dport, sport, seq=7, ack=ack, flags=flags)
            return [(self.delay(ttl), ip_packet(target, src, PROTO_TCP, seg, ttl=63))]
        if proto == PROTO_DCCP and hop == target and self.dccp_reset:  # closed port: Reset
            hdr = 40 if v6 else 20
            sport, dport = struct.unpack_from("!HH", probe, hdr)
            reset = struct.pack("!HHBBHBBHIHHIBBBB", dport, sport, 7, 0, 0, 7 << 1 | 1, 0, 0, 1,
                                0, 0, 0, 3, 0, 0, 0)  # fmt: skip
            return [(self.delay(ttl), ip_packet(target, src, PROTO_DCCP, reset, ttl=63))]
        if proto in (PROTO_ICMP, PROTO_ICMPV6):  # echo request: answer from the target
            hdr = 40 if v6 else 20
            echo = bytearray(probe[hdr:])
            echo[0] = 129 if v6 else 0
            late = self.delay(ttl if ttl <= len(self.path) else 1)  # ping: delays[1]
            return [(late, icmp_packet(target, src, echo[0], 0, bytes(echo[4:8]), bytes(echo[8:])))]
        if ttl in self.unreachable_at:
            kind, code = (1 if v6 else 3), self.unreachable_at[ttl]
        elif hop == target and proto == PROTO_DCCP:  # no DCCP there: protocol unreachable
            kind, code = (4, 1) if v6 else (3, 2)
        elif hop == target:
            kind, code = (1, 4) if v6 else (3, 3)
        else:
            kind, code = (3, 0) if v6 else (11, 0)
        return [(self.delay(ttl), icmp_packet(hop, src, kind, code, bytes(4), probe))]


class RawRig(Rig):
    """An EndpointSession and a RawFakeEndpoint joined by iosim on a task.Clock."""

    endpoint: RawFakeEndpoint

    def __init__(self, path: Sequence[str | None], config: str = CONFIG) -> None:
        super().__init__(
            endpoint=lambda clock: RawFakeEndpoint(clock, list(path), config), start=1000
        )

    def run(self, d: Deferred[T], step: float = 0.0005, limit: float = 600.0) -> T:
        """As Rig.run, with `limit` counted from now."""
        return self.drive(d, step, until=self.clock.seconds() + limit)

    def nopens(self) -> list[Nopen]:
        return [m for m in self.endpoint.received if isinstance(m, Nopen)]


def narrow_link(rig: RawRig, local_mtu: int, next_mtu: int, *, learns: bool = False) -> None:
    """The endpoint cannot send more than `local_mtu` bytes (ntag EPKTNOTSENT); the first
    router forwards no more than `next_mtu` with DF ("fragmentation needed", with it;
    IPv6: "packet too big"); what it forwards with a TTL over 1 comes whole to the next.
    With `learns` the endpoint's kernel sends no more than `next_mtu` once it said so."""
    endpoint = rig.endpoint
    transmit, answers = endpoint.transmit, endpoint.answers
    limit = [local_mtu]

    def send(msg: Any, when: int) -> None:
        if len(msg.data) > limit[0]:
            endpoint.raw_sends.append(msg)
            endpoint.send(Ntag(msg.sktid, msg.tag, when, int(Status.EPKTNOTSENT)))
            return
        transmit(msg, when)

    def answer(probe: bytes) -> list[tuple[float, bytes]]:
        v6 = probe[0] >> 4 == 6
        ttl = probe[7] if v6 else probe[8]
        df = v6 or bool(probe[6] & 0x40)
        if ttl >= 2 and len(probe) > next_mtu and df:
            src = str(ipaddress.ip_address(probe[8:24] if v6 else probe[12:16]))
            kind, code = (2, 0) if v6 else (3, 4)
            rest = struct.pack("!I", next_mtu) if v6 else struct.pack("!HH", 0, next_mtu)
            hop = endpoint.path[0]
            assert hop is not None
            if learns:
                limit[0] = min(limit[0], next_mtu)
            return [(0.001, icmp_packet(hop, src, kind, code, rest, probe[:576]))]
        return answers(probe)

    endpoint.transmit = send  # type: ignore[method-assign]
    endpoint.answers = answer  # type: ignore[method-assign]


# -- the simulation itself -----------------------------------------------------------------------


def test_fake_answers_time_exceeded_then_port_unreachable() -> None:
    from packetlab.measure.probes import traceroute_probe
    from packetlab.measure.replies import ReplyKind, parse_reply

    ep = RawFakeEndpoint(Clock(), [R14, R24, TG4])
    kinds = []
    for ttl in (1, 2, 3, 4):
        probe = traceroute_probe(EP4, TG4, ttl, sport=40000)
        ((_, packet),) = ep.answers(probe.packet)
        reply = parse_reply(packet, verify_checksums=True)
        assert reply.key == probe.key
        kinds.append((str(reply.src), reply.kind))
    assert kinds == [
        (R14, ReplyKind.TIME_EXCEEDED),
        (R24, ReplyKind.TIME_EXCEEDED),
        (TG4, ReplyKind.DEST_UNREACHABLE),
        (TG4, ReplyKind.DEST_UNREACHABLE),
    ]


def test_fake_answers_echo_v6() -> None:
    from packetlab.measure.probes import echo_probe
    from packetlab.measure.replies import ReplyKind, parse_reply

    ep = RawFakeEndpoint(Clock(), [R16, TG6])
    probe = echo_probe(EP6, TG6, ident=7, seq=3)
    ((_, packet),) = ep.answers(probe.packet)
    reply = parse_reply(packet, verify_checksums=True)
    assert (reply.kind, reply.key, str(reply.src)) == (ReplyKind.ECHO_REPLY, probe.key, TG6)
