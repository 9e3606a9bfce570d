"""Parse captured replies (whole IP packets, as raw-socket ndata carries them) into `Reply`.

`parse_reply` understands what answers a probe from `packetlab.measure.probes`:

* ICMP/ICMPv6 time exceeded, destination unreachable, packet too big, parameter problem:
  the quoted probe header gives the key;
* an ICMPv6 error of a type no one assigned (below 128): `ReplyKind.OTHER_ERROR`, keyed
  as the others (IPv4's unassigned types are not: Linux's icmp_rcv tells no socket of them);
* ICMP/ICMPv6 echo reply: identifier and sequence give the key;
* TCP SYN-ACK or RST from the target of a SYN probe: ports and ``ack - 1`` give the key;
  a RST without ACK (the answer to an ACK probe): ports and its ``seq``.

Anything else raises `NotAReply`, and malformed bytes raise `ParseError` (its base class),
which is the only exception `parse_reply` raises for any input.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

from packetlab.measure.icmpext import EXTENSION_OFFSET
from packetlab.measure.packets import (
    ICMP6_DEST_UNREACH,
    ICMP6_ECHO_REPLY,
    ICMP6_PACKET_TOO_BIG,
    ICMP6_PARAM_PROBLEM,
    ICMP6_TIME_EXCEEDED,
    ICMP_DEST_UNREACH,
    ICMP_ECHO_REPLY,
    ICMP_PARAM_PROBLEM,
    ICMP_TIME_EXCEEDED,
    IPV4_HEADER_LEN,
    IPV6_HEADER_LEN,
    PROTO_DCCP,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    TCP_ACK,
    TCP_RST,
    TCP_SYN,
    Address,
    ParseError,
    inet_checksum,
    ipv4_header_fields,
    parse_ipv6_header,
    pseudo_header,
    skip_ipv6_extensions,
)
from packetlab.measure.probes import ProbeKey, probe_key, quoted_checksum

__all__ = ["NotAReply", "ParseError", "Reply", "ReplyKind", "parse_reply"]

# ICMP destination unreachable codes for "the probe reached its destination host".
ICMP_PORT_UNREACH = 3
ICMP_FRAG_NEEDED = 4
ICMP6_PORT_UNREACH = 4


class NotAReply(ParseError):
    """A well-formed packet that is not a reply to a probe (e.g. an echo request, NDP)."""


class ReplyKind(enum.StrEnum):
    TIME_EXCEEDED = "time-exceeded"
    DEST_UNREACHABLE = "dest-unreachable"
    PACKET_TOO_BIG = "packet-too-big"  # ICMPv6 type 2 (IPv4 uses unreachable code 4)
    PARAM_PROBLEM = "param-problem"
    ECHO_REPLY = "echo-reply"
    TCP_SYNACK = "tcp-synack"
    TCP_RST = "tcp-rst"
    DCCP = "dccp"  # the target's DCCP packet (a Reset, or a Response) to a DCCP-Request
    # An ICMPv6 error of a type no one assigned (0, 5..127; `icmp_type` tells which):
    # Linux's icmpv6_rcv passes any type below 128 to the socket it quotes, as an error,
    # so traceroute prints `!<TYPE-CODE>` and ping6 `unknown icmp type: TYPE` for it
    OTHER_ERROR = "other-error"


_ICMP4_ERRORS = {
    ICMP_TIME_EXCEEDED: ReplyKind.TIME_EXCEEDED,
    ICMP_DEST_UNREACH: ReplyKind.DEST_UNREACHABLE,
    ICMP_PARAM_PROBLEM: ReplyKind.PARAM_PROBLEM,
}
_ICMP6_ERRORS = {
    ICMP6_TIME_EXCEEDED: ReplyKind.TIME_EXCEEDED,
    ICMP6_DEST_UNREACH: ReplyKind.DEST_UNREACHABLE,
    ICMP6_PACKET_TOO_BIG: ReplyKind.PACKET_TOO_BIG,
    ICMP6_PARAM_PROBLEM: ReplyKind.PARAM_PROBLEM,
}
# ICMPv6 types from 128 on are informational (RFC 4443 2.1), those below errors
_ICMP6_INFO_TYPES = 128
# The errors traceroute -e looks for extensions in (RFC 4884 names these, not "too big").
_EXT4_TYPES = (ICMP_TIME_EXCEEDED, ICMP_DEST_UNREACH, ICMP_PARAM_PROBLEM)
_EXT6_TYPES = (ICMP6_TIME_EXCEEDED, ICMP6_DEST_UNREACH)


@dataclass(frozen=True, slots=True)
class Reply:
    """One captured reply and the key of the probe it answers."""

    kind: ReplyKind
    src: Address  # who answered: the router (errors) or the target (echo reply, TCP)
    dst: Address
    key: ProbeKey
    ttl: int  # TTL / hop limit of the reply as it arrived
    size: int  # IP length of the reply
    icmp_type: int | None = None  # None for TCP replies
    icmp_code: int | None = None
    ip_id: int | None = None  # IPv4 ID of the reply (alias resolution); None for IPv6
    quoted_ttl: int | None = None  # TTL the probe had left when it reached the replier
    quoted_ip_id: int | None = None  # the probe's IPv4 ID as quoted
    mtu: int | None = None  # next-hop MTU of "fragmentation needed" / "packet too big"
    quoted_sum: int | None = None  # the probe's UDP/ICMP checksum as quoted (Paris probes)
    # RFC 4884: an error's bytes from 128 into its quote, where an extension structure
    # (MPLS labels, `packetlab.measure.icmpext`) sits, when there are 8 or more of them
    # and the error is one that may carry one (traceroute -e's types)
    extension: bytes | None = None
    tcp_flags: int | None = None  # the flags of a TCP reply (traceroute -T -O info)

    @property
    def is_error(self) -> bool:
        """An ICMP error, i.e. the reply carries a quote of the probe."""
        return self.quoted_ttl is not None

    @property
    def from_destination(self) -> bool:
        """The reply says the probe reached its destination host.

        Port unreachable (UDP probes), echo reply, or TCP SYN-ACK/RST; also any reply whose
        source is the probe's destination.
        """
        if self.kind in (
            ReplyKind.ECHO_REPLY,
            ReplyKind.TCP_SYNACK,
            ReplyKind.TCP_RST,
            ReplyKind.DCCP,
        ):
            return True
        if self.kind is ReplyKind.DEST_UNREACHABLE:
            port = ICMP_PORT_UNREACH if self.src.version == 4 else ICMP6_PORT_UNREACH
            if self.icmp_code == port:
                return True
        return self.src == self.key.dst


def parse_reply(packet: bytes, *, verify_checksums: bool = False) -> Reply:
    """Parse an IPv4 or IPv6 packet (starting at the IP header) as a reply to a probe.

    Trailing bytes beyond the IP length (link-layer padding) are ignored; a capture cut
    short is fine as long as the headers and quote needed are there. With
    ``verify_checksums`` a wrong IPv4 header, ICMP or TCP checksum raises ParseError.
    """
    if not isinstance(packet, bytes | bytearray | memoryview):
        raise ParseError(f"expected bytes, got {type(packet).__name__}")
    data = bytes(packet)
    if not data:
        raise ParseError("empty packet")
    version = data[0] >> 4
    if version == 4:
        return _parse_v4(data, verify_checksums)
    if version == 6:
        return _parse_v6(data, verify_checksums)
    raise ParseError(f"IP version {version}, expected 4 or 6")


def _parse_v4(data: bytes, verify: bool) -> Reply:
    hlen, _tos, total, ident, frag, ttl, proto, _sum, s, d = ipv4_header_fields(data)
    if total < hlen:
        raise ParseError(f"IPv4 total length {total} is shorter than its header ({hlen})")
    if verify and inet_checksum(data[:hlen]) != 0:
        raise ParseError("bad IPv4 header checksum")
    if frag & 0x1FFF:
        raise NotAReply("a non-first IPv4 fragment (no ICMP or TCP header)")
    # The first fragment of a long reply (an echo reply to a long request, sent in
    # fragments): its header identifies it; its checksum covers bytes not here.
    whole = not frag & 0x2000  # MF clear
    src, dst = IPv4Address(s), IPv4Address(d)
    body = data[hlen:total]
    # Parse first, so that a malformed packet is reported as such rather than as a bad sum.
    if proto == PROTO_ICMP:
        reply = _parse_icmp(body, src, dst, ttl, total, ident, v6=False)
        if verify and whole and len(body) == total - hlen and inet_checksum(body) != 0:
            raise ParseError("bad ICMP checksum")
        return reply
    if proto == PROTO_TCP:
        reply = _parse_tcp(body, src, dst, ttl, total, ident)
        if verify and whole:
            _verify_transport(src, dst, PROTO_TCP, body, total - hlen)
        return reply
    if proto == PROTO_DCCP:
        return _parse_dccp(body, src, dst, ttl, total, ident)
    raise NotAReply(f"IPv4 protocol {proto} is not ICMP, TCP or DCCP")


def _parse_v6(data: bytes, verify: bool) -> Reply:
    ip = parse_ipv6_header(data)
    end = IPV6_HEADER_LEN + ip.payload_length if ip.payload_length else len(data)
    data = data[:end]
    proto, offset, frag = skip_ipv6_extensions(data, ip.next_header)
    body = data[offset:]
    full = end - offset if frag is None else -1  # (a first fragment: its sum is not here)
    if proto == PROTO_ICMPV6:
        reply = _parse_icmp(body, ip.src, ip.dst, ip.hop_limit, ip.total_length, None, v6=True)
    elif proto == PROTO_TCP:
        reply = _parse_tcp(body, ip.src, ip.dst, ip.hop_limit, ip.total_length, None)
    elif proto == PROTO_DCCP:
        return _parse_dccp(body, ip.src, ip.dst, ip.hop_limit, ip.total_length, None)
    else:
        raise NotAReply(f"IPv6 next header {proto} is not ICMPv6, TCP or DCCP")
    if verify:
        _verify_transport(ip.src, ip.dst, proto, body, full)
    return reply


def _verify_transport(src: Address, dst: Address, proto: int, body: bytes, full: int) -> None:
    if len(body) != full:
        return  # cut short by the capture: nothing to check against
    if inet_checksum(pseudo_header(src, dst, proto, len(body)) + body) != 0:
        raise ParseError(f"bad {'TCP' if proto == PROTO_TCP else 'ICMPv6'} checksum")


def _parse_icmp(
    body: bytes,
    src: Address,
    dst: Address,
    ttl: int,
    size: int,
    ip_id: int | None,
    *,
    v6: bool,
) -> Reply:
    if len(body) < 8:
        raise ParseError(f"ICMP message truncated to {len(body)} bytes (need 8)")
    icmp_type, code = body[0], body[1]
    echo_reply = ICMP6_ECHO_REPLY if v6 else ICMP_ECHO_REPLY
    if icmp_type == echo_reply:
        ident, seq = struct.unpack_from("!HH", body, 4)
        proto = PROTO_ICMPV6 if v6 else PROTO_ICMP
        key = ProbeKey(proto, src, ident, 0, seq)
        return Reply(ReplyKind.ECHO_REPLY, src, dst, key, ttl, size, icmp_type, code, ip_id=ip_id)
    kind = (_ICMP6_ERRORS if v6 else _ICMP4_ERRORS).get(icmp_type)
    if kind is None and v6 and icmp_type < _ICMP6_INFO_TYPES:
        kind = ReplyKind.OTHER_ERROR
    if kind is None:
        raise NotAReply(f"ICMP{'v6' if v6 else ''} type {icmp_type} is not a reply to a probe")
    mtu: int | None = None
    if v6 and icmp_type == ICMP6_PACKET_TOO_BIG:
        (mtu,) = struct.unpack_from("!I", body, 4)
    elif not v6 and icmp_type == ICMP_DEST_UNREACH and code == ICMP_FRAG_NEEDED:
        (mtu,) = struct.unpack_from("!H", body, 6)
    quote = body[8:]
    if not quote:
        raise ParseError("ICMP error without a quoted packet")
    quoted_version = quote[0] >> 4
    if quoted_version != (6 if v6 else 4):
        raise ParseError(f"ICMP{'v6' if v6 else ''} error quotes an IPv{quoted_version} packet")
    key = probe_key(quote)
    quoted_sum = quoted_checksum(quote)
    extension: bytes | None = None
    if icmp_type in (_EXT6_TYPES if v6 else _EXT4_TYPES) and len(quote) >= EXTENSION_OFFSET + 8:
        extension = quote[EXTENSION_OFFSET:]
    if v6:
        quoted_ttl, quoted_id = parse_ipv6_header(quote).hop_limit, None
    else:
        _hl, _tos, _len, quoted_id, _frag, quoted_ttl, *_rest = ipv4_header_fields(quote)
    return Reply(
        kind,
        src,
        dst,
        key,
        ttl,
        size,
        icmp_type,
        code,
        ip_id=ip_id,
        quoted_ttl=quoted_ttl,
        quoted_ip_id=quoted_id,
        mtu=mtu,
        quoted_sum=quoted_sum,
        extension=extension,
    )


def _parse_dccp(
    body: bytes, src: Address, dst: Address, ttl: int, size: int, ip_id: int | None
) -> Reply:
    """The target's DCCP packet, read as traceroute's dccp module reads it: any packet of
    8 bytes or more whose ports, swapped, are a probe's (the half-open technique: a
    closed port answers Reset, an open one Response)."""
    if len(body) < 8:
        raise ParseError(f"DCCP header truncated to {len(body)} bytes (need 8)")
    sport, dport = struct.unpack_from("!HH", body)
    key = ProbeKey(PROTO_DCCP, src, dport, sport)
    return Reply(ReplyKind.DCCP, src, dst, key, ttl, size, ip_id=ip_id)


def _parse_tcp(
    body: bytes, src: Address, dst: Address, ttl: int, size: int, ip_id: int | None
) -> Reply:
    if len(body) < IPV4_HEADER_LEN:  # a TCP header is 20 bytes as well
        raise ParseError(f"TCP header truncated to {len(body)} bytes (need 20)")
    sport, dport, seq, ack, _off, flags = struct.unpack_from("!HHIIBB", body)
    if flags & TCP_RST and not flags & TCP_ACK:  # answers an ACK probe: its seq is our ack
        key = ProbeKey(PROTO_TCP, src, dport, sport, seq)
        return Reply(ReplyKind.TCP_RST, src, dst, key, ttl, size, ip_id=ip_id, tcp_flags=flags)
    if not flags & TCP_ACK:
        raise NotAReply("TCP segment without ACK or RST cannot answer a SYN or ACK probe")
    if flags & TCP_RST:
        kind = ReplyKind.TCP_RST
    elif flags & TCP_SYN:
        kind = ReplyKind.TCP_SYNACK
    else:
        raise NotAReply(f"TCP segment with flags {flags:#04x} is not a SYN-ACK or RST")
    key = ProbeKey(PROTO_TCP, src, dport, sport, (ack - 1) & 0xFFFFFFFF)
    return Reply(kind, src, dst, key, ttl, size, ip_id=ip_id, tcp_flags=flags)
