"""Measurement probes (whole IP packets for a raw socket) and the keys that match replies.

Every probe carries an identity in fields that come back in the reply, so that a reply can
be matched to the probe that caused it, whatever order replies arrive in:

* UDP (traceroute): the source port names the measurement, and the destination port is
  ``base_port + index`` (33434 + n by default, like Butskoy's traceroute and classic
  traceroute). ICMP errors quote the IP header and at least the first 8 bytes of UDP, so
  both ports come back.
* UDP-Lite (traceroute -UL) and DCCP Requests (traceroute -D): as traceroute -U, one
  destination port and each probe its own source port; errors quote both ports, and the
  target's DCCP Reset or Response carries them swapped.
* ICMP(v6) echo (ping, ICMP traceroute): identifier = measurement, sequence = index. Echo
  replies carry both, and ICMP errors quote them.
* TCP SYN: source port = measurement, sequence number = index (the destination port is
  usually fixed, e.g. 80). ICMP errors quote the sequence number (bytes 4..7), and a SYN-ACK
  or RST from the target acknowledges ``seq + 1``.
* TCP ACK (scamper's tcp-ack): the same, with the index in the acknowledgment number too:
  a host answers a stray ACK with a RST whose sequence number is that acknowledgment
  number (RFC 9293 §3.10.7.1), and ICMP errors quote the sequence number.

Paris traceroute (Augustin et al., IMC 2006; scamper's udp-paris and icmp-paris) keeps
every field a per-flow load balancer hashes constant across the probes of a trace, so all
of them follow one path: the ports (UDP; the first 4 bytes of the transport header) or the
ICMP type, code and checksum. The UDP probe's index then goes in its checksum, which ICMP
errors quote (key ``seq``); the echo probe's index stays in its sequence number. Two
payload bytes are chosen to make each checksum come out as wanted (`paris_udp_probe`,
`paris_echo_probe`).

The key deliberately leaves out the probe's source address: Linux fills in a zero source of
a raw IPv4 send (IP4HDRMOD), and a NAT may rewrite it, but the destination and the ports or
identifiers survive.
"""

from __future__ import annotations

import dataclasses
import random
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Generic, TypeVar

from packetlab.measure.packets import (
    ICMP6_ECHO,
    ICMP_ECHO,
    IP_DF,
    PROTO_DCCP,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    PROTO_UDPLITE,
    TCP_ACK,
    TCP_FIN,
    TCP_SYN,
    Address,
    AddressLike,
    ParseError,
    as_address,
    fragment,
    ip_packet,
    ipv4_header_fields,
    parse_ipv6_header,
    skip_ipv6_extensions,
)
from packetlab.measure.packets_transport import (
    DCCP_SERVICE_CODE,
    dccp_request,
    icmp_echo,
    icmpv6_echo,
    tcp_mss_option,
    tcp_segment,
    udp_segment,
)

TRACEROUTE_BASE_PORT = 33434
# Butskoy traceroute's default UDP payload: 32 bytes counting up from '@' (60-byte IPv4 and
# 80-byte IPv6 probes), so PacketLab probes can match the native ones byte for byte.
TRACEROUTE_PAYLOAD = bytes(range(0x40, 0x60))


def traceroute_payload(size: int) -> bytes:
    """Butskoy traceroute's payload of `size` bytes (its `packetlen` argument less the
    headers): 0x40, 0x41, ... 0x7f, then again from 0x40."""
    return bytes(0x40 + (i & 0x3F) for i in range(size))


# iputils ping's 56-byte payload after its 8-byte timestamp, here as plain counting bytes.
PING_PAYLOAD = bytes(range(56))
# A DF probe or -M do request longer than this that the endpoint refused, its MTU not
# known to the controller (--listen), is taken as over that MTU (no usual path has a
# smaller one: IPv6's least); a shorter one's refusal is something else (session 29)
REFUSABLE = 1280
_SUM = struct.Struct("!H")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ProbeKey:
    """What identifies a probe in its replies.

    ``sport``/``dport`` are the UDP or TCP ports; for ICMP echo ``sport`` is the identifier
    and ``dport`` is 0. ``seq`` is the ICMP sequence number or the TCP sequence number
    (0 for UDP, whose index is in ``dport``).
    """

    proto: int
    dst: Address
    sport: int
    dport: int
    seq: int = 0

    def __hash__(self) -> int:
        # the generated hash went through IPv4Address.__hash__ (hash(hex(int(ip))), Python
        # code) and a key is hashed ~5 times per request; equal keys have equal `_ip`
        return hash((self.proto, self.dst._ip, self.sport, self.dport, self.seq))  # type: ignore[union-attr]


@dataclass(frozen=True, slots=True)
class Probe:
    """A ready-to-send IP packet and how to recognise its replies."""

    packet: bytes
    key: ProbeKey
    src: Address
    dst: Address
    ttl: int
    ip_id: int | None  # IPv4 identification; None for IPv6
    # the fragments after the first (`packet`) when the probe was fragmented
    # (`fragmented`): sent right after it
    more: tuple[bytes, ...] = ()

    @property
    def proto(self) -> int:
        return self.key.proto

    @property
    def version(self) -> int:
        return self.dst.version

    def __len__(self) -> int:
        return len(self.packet)


def fragmented(probe: Probe, mtu: int) -> Probe:
    """`probe` cut into IP fragments of at most `mtu` bytes, as the kernel of a host
    fragments a long datagram (traceroute's packetlen over the link's MTU): `packet` is
    the first (which ICMP errors quote), `more` the rest. Unchanged when it fits."""
    frags = fragment(probe.packet, mtu, ident=random.randrange(1, 1 << 32))
    return dataclasses.replace(probe, packet=frags[0], more=tuple(frags[1:]))


def _addresses(src: AddressLike, dst: AddressLike, *, need_src: bool) -> tuple[Address, Address]:
    s, d = as_address(src), as_address(dst)
    if s.version != d.version:
        raise ValueError(f"source {s} and destination {d} are different IP versions")
    if need_src and s.is_unspecified:
        # The UDP/TCP/ICMPv6 checksum covers the source address, so it must be the real one.
        raise ValueError(
            f"source address {s} must be the endpoint's address: the checksum depends on it"
        )
    return s, d


def _ip_id(ip_id: int | None, version: int) -> int | None:
    if version == 6:
        return None
    if ip_id is None:
        # Like the kernel for unconnected sockets (and the Marionette paper): uniformly random,
        # but never 0, which Linux would overwrite on a raw send.
        return random.randrange(1, 0x10000)
    if not 0 <= ip_id <= 0xFFFF:
        raise ValueError(f"ip_id must be in 0..65535, not {ip_id}")
    return ip_id


def _probe(
    s: Address, d: Address, key: ProbeKey, segment: bytes, ttl: int, ident: int | None, *,
    tos: int, dont_fragment: bool, flow_label: int, options: bytes = b"",
) -> Probe:  # fmt: skip
    """The probe of `segment` (of protocol `key.proto`) in its IP packet."""
    packet = ip_packet(
        s, d, key.proto, segment, ttl=ttl, tos=tos, ident=ident or 0,
        flags=IP_DF if dont_fragment else 0, flow_label=flow_label, options=options,
    )  # fmt: skip
    return Probe(packet, key, s, d, ttl, ident)


def udp_probe(
    src: AddressLike,
    dst: AddressLike,
    *,
    sport: int,
    dport: int,
    ttl: int = 64,
    payload: bytes = b"",
    ip_id: int | None = None,
    tos: int = 0,
    flow_label: int = 0,
    dont_fragment: bool = False,
    coverage: int | None = None,
) -> Probe:
    """A UDP datagram in an IPv4/IPv6 packet; matched by (dst, sport, dport). With
    `coverage` a UDP-Lite one (traceroute -UL; `udp_segment`), matched the same way."""
    s, d = _addresses(src, dst, need_src=True)
    ident = _ip_id(ip_id, d.version)
    segment = udp_segment(s, d, sport, dport, payload, coverage=coverage)
    proto = PROTO_UDP if coverage is None else PROTO_UDPLITE
    return _probe(s, d, ProbeKey(proto, d, sport, dport), segment, ttl, ident, tos=tos,
                  dont_fragment=dont_fragment, flow_label=flow_label)  # fmt: skip


def dccp_probe(
    src: AddressLike,
    dst: AddressLike,
    *,
    sport: int,
    dport: int,
    ttl: int = 64,
    seq: int | None = None,
    service: int = DCCP_SERVICE_CODE,
    ip_id: int | None = None,
    tos: int = 0,
    flow_label: int = 0,
    dont_fragment: bool = False,
) -> Probe:
    """A DCCP-Request as traceroute -D sends it (`dccp_request`; the sequence number
    random, in 32 bits, as its `random_seq`); matched by (dst, sport, dport): ICMP errors
    quote the ports, and the target's Reset or Response carries them swapped."""
    s, d = _addresses(src, dst, need_src=True)
    ident = _ip_id(ip_id, d.version)
    if seq is None:
        seq = random.getrandbits(32)
    segment = dccp_request(s, d, sport, dport, seq, service)
    return _probe(s, d, ProbeKey(PROTO_DCCP, d, sport, dport), segment, ttl, ident, tos=tos,
                  dont_fragment=dont_fragment, flow_label=flow_label)  # fmt: skip


def traceroute_probe(
    src: AddressLike,
    dst: AddressLike,
    ttl: int,
    *,
    sport: int,
    index: int | None = None,
    base_port: int = TRACEROUTE_BASE_PORT,
    payload: bytes = TRACEROUTE_PAYLOAD,
    ip_id: int | None = None,
    tos: int = 0,
    flow_label: int = 0,
    dont_fragment: bool = False,
) -> Probe:
    """A classic UDP traceroute probe with hop limit ``ttl`` to ``base_port + index``.

    ``index`` counts probes from 0 (default ``ttl - 1``: one probe per hop), as Butskoy's
    traceroute increments the destination port for every probe it sends.
    """
    if not 1 <= ttl <= 255:
        raise ValueError(f"ttl must be in 1..255, not {ttl}")
    n = ttl - 1 if index is None else index
    if n < 0 or base_port + n > 0xFFFF:
        raise ValueError(f"destination port {base_port} + {n} is not in 0..65535")
    return udp_probe(
        src,
        dst,
        sport=sport,
        dport=base_port + n,
        ttl=ttl,
        payload=payload,
        ip_id=ip_id,
        tos=tos,
        flow_label=flow_label,
        dont_fragment=dont_fragment,
    )


def echo_probe(
    src: AddressLike,
    dst: AddressLike,
    *,
    ident: int,
    seq: int,
    ttl: int = 64,
    payload: bytes = PING_PAYLOAD,
    ip_id: int | None = None,
    tos: int = 0,
    flow_label: int = 0,
    dont_fragment: bool = False,
    options: bytes = b"",
) -> Probe:
    """An ICMP (IPv4) or ICMPv6 echo request; matched by (dst, ident, seq). `options`:
    IPv4 options (ping -R's record route), ignored over IPv6 as ping ignores -R.

    An IPv4 source may be 0.0.0.0 (the kernel fills it in); IPv6 needs the real source
    because the ICMPv6 checksum covers it.
    """
    s = as_address(src)
    s, d = _addresses(s, dst, need_src=s.version == 6)
    ident_ip = _ip_id(ip_id, d.version)
    if d.version == 4:
        proto, message = PROTO_ICMP, icmp_echo(ident, seq, payload)
    else:
        proto, message = PROTO_ICMPV6, icmpv6_echo(s, d, ident, seq, payload)
    return _probe(s, d, ProbeKey(proto, d, ident, 0, seq), message, ttl, ident_ip, tos=tos,
                  dont_fragment=dont_fragment, flow_label=flow_label,
                  options=options if d.version == 4 else b"")  # fmt: skip


def traceroute_syn_options(mss: int = 1460, tsval: int = 1) -> bytes:
    """The options of Butskoy traceroute's TCP SYN (and Linux's): MSS, SACK permitted,
    timestamps, NOP, window scale: 20 bytes, so that a `-T` probe is its 60 (IPv4) or 80
    (IPv6) bytes."""
    sack_perm, timestamps = struct.pack("!BB", 4, 2), struct.pack("!BBII", 8, 10, tsval, 0)
    return tcp_mss_option(mss) + sack_perm + timestamps + struct.pack("!BBBB", 1, 3, 3, 7)


@dataclass(frozen=True, slots=True)
class TcpFlavor:
    """The TCP probe of Butskoy traceroute's tcp module (-T and its -O words): the flags,
    which options follow the header (MSS with SYN; SACK permitted, timestamps, window
    scale as asked or as the sender's sysctls say) and the window (traceroute's: four
    times the path's MSS, in 16 bits)."""

    flags: int = TCP_SYN
    sack: bool = False
    timestamps: bool = False
    window_scaling: bool = False
    mss: int = 1460  # what the MSS option says (with SYN): -O mss=NUM, or the path MTU's
    window: int | None = None  # None: 4 * mss, in 16 bits, as traceroute's

    def options(self) -> bytes:
        """The options in mod-tcp.c's order and layout (the timestamp values random, as
        traceroute's; the echo reply only with ACK)."""
        out = tcp_mss_option(self.mss) if self.flags & TCP_SYN else b""
        if self.timestamps:
            out += b"\x04\x02" if self.sack else b"\x01\x01"
            ecr = random.getrandbits(32) if self.flags & TCP_ACK else 0
            out += struct.pack("!BBII", 8, 10, random.getrandbits(32), ecr)
        elif self.sack:
            out += b"\x01\x01\x04\x02"
        if self.window_scaling:
            out += b"\x01\x03\x03\x02"
        return out

    @property
    def length(self) -> int:
        """Bytes of TCP header with the options."""
        syn = 4 if self.flags & TCP_SYN else 0
        return (
            20
            + syn
            + (12 if self.timestamps else 4 if self.sack else 0)
            + (4 if self.window_scaling else 0)
        )

    @property
    def reply_shift(self) -> int:
        """What to add to ``ack - 1`` of the target's SYN-ACK or RST-ACK to get the probe's
        sequence number: a SYN or FIN counts one in the ack, other flags none."""
        return 1 - bool(self.flags & TCP_SYN) - bool(self.flags & TCP_FIN)


# Linux's SYN options (its sysctls' defaults: SACK, timestamps, window scaling on),
# which Butskoy traceroute -T copies
LINUX_SYN = TcpFlavor(TCP_SYN, sack=True, timestamps=True, window_scaling=True)
BARE_ACK = TcpFlavor(TCP_ACK, window=65535)  # scamper's tcp-ack


def tcp_probe(
    src: AddressLike,
    dst: AddressLike,
    *,
    sport: int,
    dport: int,
    seq: int,
    flavor: TcpFlavor = LINUX_SYN,
    ttl: int = 64,
    ip_id: int | None = None,
    tos: int = 0,
    flow_label: int = 0,
    dont_fragment: bool = False,
    options: bytes | None = None,
) -> Probe:
    """A TCP segment with `flavor`'s flags, options and window; matched by (dst, sport,
    dport, seq) in a quote, by ack - 1 (+ `TcpFlavor.reply_shift`) in the target's
    SYN-ACK or RST-ACK, or, with ACK among the flags, by the sequence number of the
    target's RST: the acknowledgment number is then `seq` too (traceroute's is 0).
    `options` replace the flavor's."""
    s, d = _addresses(src, dst, need_src=True)
    ident = _ip_id(ip_id, d.version)
    ack = seq if flavor.flags & TCP_ACK else 0
    window = (4 * flavor.mss) & 0xFFFF if flavor.window is None else flavor.window
    segment = tcp_segment(
        s, d, sport, dport, seq=seq, ack=ack, flags=flavor.flags, window=window,
        options=flavor.options() if options is None else options,
    )  # fmt: skip
    return _probe(s, d, ProbeKey(PROTO_TCP, d, sport, dport, seq), segment, ttl, ident,
                  tos=tos, dont_fragment=dont_fragment, flow_label=flow_label)  # fmt: skip


def tcp_syn_probe(
    src: AddressLike,
    dst: AddressLike,
    *,
    sport: int,
    dport: int,
    seq: int,
    ttl: int = 64,
    window: int = 65535,
    mss: int | None = 1460,
    ip_id: int | None = None,
    tos: int = 0,
    flow_label: int = 0,
    dont_fragment: bool = False,
    options: bytes | None = None,
) -> Probe:
    """A TCP SYN; matched by (dst, sport, dport, seq) in a quote, or ack - 1 in a SYN-ACK/RST.
    `options` replace the MSS option (`traceroute_syn_options`: traceroute's)."""
    if options is None:
        options = tcp_mss_option(mss) if mss is not None else b""
    return tcp_probe(
        src, dst, sport=sport, dport=dport, seq=seq, flavor=TcpFlavor(TCP_SYN, window=window),
        ttl=ttl, ip_id=ip_id, tos=tos, flow_label=flow_label, dont_fragment=dont_fragment,
        options=options,
    )  # fmt: skip


def tcp_ack_probe(
    src: AddressLike,
    dst: AddressLike,
    *,
    sport: int,
    dport: int,
    seq: int,
    ttl: int = 64,
    window: int = 65535,
    ip_id: int | None = None,
    tos: int = 0,
    dont_fragment: bool = False,
    flow_label: int = 0,
) -> Probe:
    """A bare TCP ACK (no connection anywhere: a firewall keeping no state lets it through,
    and the target answers RST); sequence and acknowledgment numbers are both `seq`, so a
    quote (seq) and the target's RST (its seq = our ack) give the same key."""
    return tcp_probe(
        src, dst, sport=sport, dport=dport, seq=seq, flavor=TcpFlavor(TCP_ACK, window=window),
        ttl=ttl, ip_id=ip_id, tos=tos, flow_label=flow_label, dont_fragment=dont_fragment,
    )  # fmt: skip


def _ones_add(a: int, b: int) -> int:
    s = a + b
    return (s & 0xFFFF) + (s >> 16)


def _steer_checksum(build: Callable[[bytes], bytes], payload: bytes, at: int, want: int) -> bytes:
    """`build(payload)` (a segment with its checksum at byte `at`) with the payload's first
    two bytes chosen so that the checksum is `want` (RFC 1624's arithmetic, reversed)."""
    if len(payload) < 2:
        raise ValueError("a checksum-steered probe needs a payload of 2 bytes or more")
    rest = payload[2:]
    (natural,) = _SUM.unpack_from(build(b"\0\0" + rest), at)
    word = _ones_add(~want & 0xFFFF, natural)
    for w in (word, word ^ 0xFFFF):  # one's complement has two zeros: try the other one
        segment = build(_SUM.pack(w) + rest)
        if _SUM.unpack_from(segment, at)[0] == want:
            return segment
    raise ValueError(f"no payload word gives checksum {want:#06x}")  # pragma: no cover


def paris_udp_probe(
    src: AddressLike,
    dst: AddressLike,
    ttl: int,
    *,
    sport: int,
    dport: int = TRACEROUTE_BASE_PORT,
    index: int,
    payload: bytes = TRACEROUTE_PAYLOAD,
    ip_id: int | None = None,
    tos: int = 0,
    dont_fragment: bool = False,
    flow_label: int = 0,
) -> Probe:
    """A Paris traceroute UDP probe: fixed ports (one flow for a per-flow load balancer),
    probe ``index`` (0..65533) carried as UDP checksum ``index + 1``; key ``seq`` is that
    checksum (`Reply.quoted_sum` gives it back from an ICMP error)."""
    if not 1 <= ttl <= 255:
        raise ValueError(f"ttl must be in 1..255, not {ttl}")
    if not 0 <= index <= 0xFFFD:
        raise ValueError(f"Paris probe index must be in 0..65533, not {index}")
    s, d = _addresses(src, dst, need_src=True)
    ident = _ip_id(ip_id, d.version)
    want = index + 1  # never 0: a zero UDP checksum means "none" (IPv4) or is invalid (IPv6)
    segment = _steer_checksum(lambda p: udp_segment(s, d, sport, dport, p), payload, 6, want)
    return _probe(s, d, ProbeKey(PROTO_UDP, d, sport, dport, want), segment, ttl, ident,
                  tos=tos, dont_fragment=dont_fragment, flow_label=flow_label)  # fmt: skip


def paris_echo_probe(
    src: AddressLike,
    dst: AddressLike,
    ttl: int,
    *,
    ident: int,
    seq: int,
    checksum: int,
    payload: bytes = TRACEROUTE_PAYLOAD,
    ip_id: int | None = None,
    tos: int = 0,
    dont_fragment: bool = False,
    flow_label: int = 0,
) -> Probe:
    """A Paris traceroute ICMP(v6) echo request: identifier and ICMP checksum the same
    for every probe of a trace (one flow), sequence ``seq`` per probe; matched as
    `echo_probe`."""
    s, d = _addresses(src, dst, need_src=True)
    ip_ident = _ip_id(ip_id, d.version)
    _check_16("checksum", checksum)
    if d.version == 4:
        proto = PROTO_ICMP
        segment = _steer_checksum(lambda p: icmp_echo(ident, seq, p), payload, 2, checksum)
    else:
        proto = PROTO_ICMPV6
        segment = _steer_checksum(lambda p: icmpv6_echo(s, d, ident, seq, p), payload, 2, checksum)
    return _probe(s, d, ProbeKey(proto, d, ident, 0, seq), segment, ttl, ip_ident, tos=tos,
                  dont_fragment=dont_fragment, flow_label=flow_label)  # fmt: skip


def _check_16(name: str, value: int) -> None:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{name} must be in 0..65535, not {value}")


def _quoted_transport(packet: bytes) -> tuple[int, Address, bytes]:
    """(protocol, destination, first 8 transport bytes) of a packet or a quoted one."""
    if not packet:
        raise ParseError("empty packet")
    version = packet[0] >> 4
    dst: Address
    if version == 4:
        offset, _tos, _len, _id, frag, _ttl, proto, _sum, _s, d4 = ipv4_header_fields(packet)
        if frag & 0x1FFF:
            raise ParseError("a non-first IPv4 fragment has no transport header")
        dst = IPv4Address(d4)
    elif version == 6:
        h6 = parse_ipv6_header(packet)
        proto, offset, _frag = skip_ipv6_extensions(packet, h6.next_header)
        dst = h6.dst
    else:
        raise ParseError(f"IP version {version}, expected 4 or 6")
    head = packet[offset : offset + 8]
    if len(head) < 8:
        raise ParseError(f"transport header truncated to {len(head)} bytes (need 8)")
    return proto, dst, head


def quoted_checksum(packet: bytes) -> int | None:
    """The UDP or ICMP checksum of a probe quoted in an ICMP error (None for TCP, whose
    checksum is beyond the 8 bytes an error must quote). Raises ParseError as `probe_key`."""
    proto, _dst, head = _quoted_transport(packet)
    if proto == PROTO_UDP:
        return int(_SUM.unpack_from(head, 6)[0])
    if proto in (PROTO_ICMP, PROTO_ICMPV6):
        return int(_SUM.unpack_from(head, 2)[0])
    return None


def probe_key(packet: bytes) -> ProbeKey:
    """The key of a probe packet, or of the start of one quoted in an ICMP error.

    Needs the IP header and the first 8 bytes of the transport header, which is what an
    ICMPv4 error is required to quote (RFC 792). Raises ParseError for anything that is not
    a UDP, UDP-Lite, DCCP, TCP or echo-request packet. (A Paris UDP probe's key also has
    its checksum, in ``seq``: see `quoted_checksum`.)
    """
    proto, dst, head = _quoted_transport(packet)
    if proto in (PROTO_UDP, PROTO_UDPLITE, PROTO_DCCP):  # the ports first, as UDP's
        sport, dport = struct.unpack_from("!HH", head)
        return ProbeKey(proto, dst, sport, dport)
    if proto == PROTO_TCP:
        sport, dport, seq = struct.unpack_from("!HHI", head)
        return ProbeKey(PROTO_TCP, dst, sport, dport, seq)
    if proto in (PROTO_ICMP, PROTO_ICMPV6):
        echo = ICMP_ECHO if proto == PROTO_ICMP else ICMP6_ECHO
        if head[0] != echo:
            raise ParseError(f"ICMP type {head[0]} is not an echo request")
        ident, seq = struct.unpack_from("!HH", head, 4)
        return ProbeKey(proto, dst, ident, 0, seq)
    raise ParseError(
        f"IP protocol {proto} is not a probe protocol (UDP, UDP-Lite, DCCP, TCP, ICMP echo)"
    )


@dataclass(slots=True)
class ProbeTable(Generic[T]):
    """Outstanding probes by key; ``match`` finds what a reply's key refers to.

    Values are whatever the caller keeps per probe (the Probe, its send time...).
    """

    _by_key: dict[ProbeKey, T] = field(default_factory=dict)

    def add(self, key: ProbeKey, value: T) -> None:
        if key in self._by_key:
            raise ValueError(f"two outstanding probes with the same key {key}")
        self._by_key[key] = value

    def get(self, key: ProbeKey) -> T | None:
        return self._by_key.get(key)

    def pop(self, key: ProbeKey) -> T | None:
        return self._by_key.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def __len__(self) -> int:
        return len(self._by_key)

    def __iter__(self) -> Iterator[ProbeKey]:
        return iter(self._by_key)


def icmp_capture(target: Address, ident: int | None) -> str:
    """The ICMP(v6) part of a probing run's capture filter (traceroute's, MDA's, alias
    resolution's): every ICMP message but echo requests and echo replies, except replies
    to `ident` (the probes' echo identifier, when they are echo requests); fragments
    pass. `icmp` alone took a ping flood's messages too, and beside one on loopback the
    capture's queue overflowed (session 27)."""
    if target.version == 4:
        mine = "" if ident is None else f" or (icmp[0] = 0 and icmp[4:2] = {ident})"
        return f"icmp and (ip[6:2] & 0x1fff != 0 or (icmp[0] != 0 and icmp[0] != 8){mine})"
    mine = "" if ident is None else f" or (icmp6[0] = 129 and icmp6[4:2] = {ident})"
    return f"icmp6 and (ip6[6] = 44 or (icmp6[0] != 128 and icmp6[0] != 129){mine})"
