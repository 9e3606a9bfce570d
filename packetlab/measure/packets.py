"""IPv4 and IPv6 packets: their headers built and parsed (IPv6 extension headers walked,
IPv4 options found), the Internet checksum and the pseudo-header, a packet around a ready
payload (`ip_packet`) and a packet cut into fragments as a kernel cuts it (`fragment`);
the protocol numbers, ICMP types and TCP flags the other packet modules share. Sans-IO,
stdlib only. The transport headers are `packets_transport`'s, the IPv4 options ping and
traceroute send and read `packets_ip_options`'s.

A PacketLab raw socket sends whole IP packets written by the controller (PROTOCOL.md §3.3)
and captures whole IP packets (§3.4), so measurements need both directions. Everything
here works on ``bytes`` that start at the IP header; there is no I/O.

Hand-written ``struct`` code rather than a packet library: these are a handful of fixed
headers, ``struct`` packs one in about a microsecond, and scapy would cost about a second of
import time and a large dependency for no gain.

Linux rewrites some IPv4 header fields of raw sends (IP4HDRMOD, §2.2): it always sets
the total length and the checksum, and it fills in the ID and the source address when they
are zero. The builders still write correct values, so a packet is also valid when it is
sent where nothing rewrites it (an ``AF_PACKET`` socket, a pcap file).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeAlias

Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
AddressLike: TypeAlias = Address | str

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_DCCP = 33
PROTO_ICMPV6 = 58
PROTO_UDPLITE = 136

ICMP_ECHO_REPLY = 0
ICMP_DEST_UNREACH = 3
ICMP_SOURCE_QUENCH = 4
ICMP_ECHO = 8
ICMP_TIME_EXCEEDED = 11
ICMP_PARAM_PROBLEM = 12

ICMP6_DEST_UNREACH = 1
ICMP6_PACKET_TOO_BIG = 2
ICMP6_TIME_EXCEEDED = 3
ICMP6_PARAM_PROBLEM = 4
ICMP6_ECHO = 128
ICMP6_ECHO_REPLY = 129

TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK = 0x01, 0x02, 0x04, 0x08, 0x10
TCP_URG, TCP_ECE, TCP_CWR = 0x20, 0x40, 0x80

IPV4_HEADER_LEN = 20
IPV6_HEADER_LEN = 40
IP_DF = 0x2  # "don't fragment", in the 3-bit flags field
IP_MF = 0x1

_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")


class ParseError(ValueError):
    """Bytes that are not a well-formed packet of the expected kind (truncated, bad fields).

    The only exception the parsers raise for bad input, whatever the bytes are.
    """


def as_address(value: AddressLike) -> Address:
    """An IPv4Address or IPv6Address from a string or an address object."""
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value
    try:
        return ipaddress.ip_address(value)
    except ValueError as exc:
        raise ValueError(f"not an IP address: {value!r}") from exc


# -- checksums ------------------------------------------------------------------------------


def ones_complement_sum(data: bytes) -> int:
    """The 16-bit one's complement sum of ``data`` (RFC 1071), padded with a zero byte.

    Uses 2**16 ≡ 1 (mod 2**16 - 1): the sum of the 16-bit words is congruent to the whole
    buffer read as one big integer, and the end-around carry keeps a non-zero total non-zero.
    """
    if len(data) % 2:
        data += b"\0"
    total = int.from_bytes(data, "big")
    if total == 0:
        return 0
    return total % 0xFFFF or 0xFFFF


def inet_checksum(data: bytes) -> int:
    """The Internet checksum of ``data``: the complement of its one's complement sum."""
    return ~ones_complement_sum(data) & 0xFFFF


def pseudo_header(src: Address, dst: Address, proto: int, length: int) -> bytes:
    """The pseudo-header that UDP, TCP and ICMPv6 checksums cover (RFC 768, RFC 8200 §8.1)."""
    if src.version != dst.version:
        raise ValueError(f"source {src} and destination {dst} are different IP versions")
    if src.version == 4:
        return src.packed + dst.packed + struct.pack("!BBH", 0, proto, length)
    return src.packed + dst.packed + struct.pack("!IxxxB", length, proto)


def transport_checksum(src: Address, dst: Address, proto: int, segment: bytes) -> int:
    """Checksum of a UDP/TCP/ICMPv6 segment (its checksum field zeroed) with pseudo-header.

    0 is sent as 0xFFFF: for UDP a zero checksum means "none" (and is invalid over IPv6).
    """
    value = inet_checksum(pseudo_header(src, dst, proto, len(segment)) + segment)
    return value or 0xFFFF


# -- IP headers -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IPv4Header:
    src: ipaddress.IPv4Address
    dst: ipaddress.IPv4Address
    proto: int
    total_length: int
    ttl: int = 64
    tos: int = 0
    ident: int = 0
    flags: int = 0  # 3 bits: reserved, DF, MF
    frag_offset: int = 0  # in 8-byte units
    checksum: int = 0
    header_length: int = IPV4_HEADER_LEN  # IHL * 4; > 20 means options follow

    version = 4

    @property
    def payload_length(self) -> int:
        return self.total_length - self.header_length


@dataclass(frozen=True, slots=True)
class IPv6Header:
    src: ipaddress.IPv6Address
    dst: ipaddress.IPv6Address
    next_header: int
    payload_length: int
    hop_limit: int = 64
    traffic_class: int = 0
    flow_label: int = 0

    version = 6
    header_length = IPV6_HEADER_LEN

    @property
    def total_length(self) -> int:
        return IPV6_HEADER_LEN + self.payload_length


def check_range(name: str, value: int, bits: int) -> None:
    """ValueError unless `value` fits `bits` bits (a header field's width)."""
    if not 0 <= value < 1 << bits:
        raise ValueError(f"{name} must be in 0..{(1 << bits) - 1}, not {value}")


def ipv4_header(
    src: AddressLike,
    dst: AddressLike,
    proto: int,
    payload_length: int,
    *,
    ttl: int = 64,
    tos: int = 0,
    ident: int = 0,
    flags: int = 0,
    frag_offset: int = 0,
    options: bytes = b"",
) -> bytes:
    """An IPv4 header with a correct header checksum: 20 bytes, and `options` (whole
    32-bit words, at most 40 bytes) after them."""
    s, d = as_address(src), as_address(dst)
    if s.version != 4 or d.version != 4:
        raise ValueError(f"IPv4 header needs IPv4 addresses, not {s} -> {d}")
    # one chained test first (a probe per request: the loop below cost ~1 us each time);
    # the loop only to name the first field out of range, as before
    if not (
        0 <= proto < 0x100 and 0 <= ttl < 0x100 and 0 <= tos < 0x100
        and 0 <= ident < 0x10000 and 0 <= flags < 8 and 0 <= frag_offset < 0x2000
    ):  # fmt: skip
        for name, value, bits in (
            ("proto", proto, 8),
            ("ttl", ttl, 8),
            ("tos", tos, 8),
            ("ident", ident, 16),
            ("flags", flags, 3),
            ("frag_offset", frag_offset, 13),
        ):
            check_range(name, value, bits)
    if len(options) % 4 or len(options) > 40:
        raise ValueError(f"IPv4 options are whole words, at most 40 bytes, not {len(options)}")
    total = IPV4_HEADER_LEN + len(options) + payload_length
    if not 0 <= payload_length or total > 0xFFFF:
        raise ValueError(f"IPv4 packet of {total} bytes does not fit the 16-bit total length")
    vihl = 0x40 | (5 + len(options) // 4)
    sp, dp = s.packed, d.packed  # (properties in Python: once each)
    fields = (vihl, tos, total, ident, flags << 13 | frag_offset, ttl, proto)
    checksum = inet_checksum(_IPV4.pack(*fields, 0, sp, dp) + options)
    return _IPV4.pack(*fields, checksum, sp, dp) + options


def ipv6_header(
    src: AddressLike,
    dst: AddressLike,
    next_header: int,
    payload_length: int,
    *,
    hop_limit: int = 64,
    traffic_class: int = 0,
    flow_label: int = 0,
) -> bytes:
    """A 40-byte IPv6 header."""
    s, d = as_address(src), as_address(dst)
    if s.version != 6 or d.version != 6:
        raise ValueError(f"IPv6 header needs IPv6 addresses, not {s} -> {d}")
    for name, value, bits in (
        ("next_header", next_header, 8),
        ("payload_length", payload_length, 16),
        ("hop_limit", hop_limit, 8),
        ("traffic_class", traffic_class, 8),
        ("flow_label", flow_label, 20),
    ):
        check_range(name, value, bits)
    first = 6 << 28 | traffic_class << 20 | flow_label
    return _IPV6.pack(first, payload_length, next_header, hop_limit, s.packed, d.packed)


IPv4Fields: TypeAlias = tuple[int, int, int, int, int, int, int, int, bytes, bytes]


def ipv4_header_fields(data: bytes) -> IPv4Fields:
    """The IPv4 header at the start of ``data`` as a tuple, checked as `parse_ipv4_header`
    checks it: (header length in bytes, tos, total length, ident, flags << 13 | fragment
    offset, ttl, proto, checksum, packed source, packed destination). For the per-reply
    paths (`parse_reply`, `probe_key`), which need a few fields and not the 11-field
    frozen `IPv4Header` (~1.5 us to build)."""
    if len(data) < IPV4_HEADER_LEN:
        raise ParseError(f"IPv4 header needs 20 bytes, got {len(data)}")
    vihl, tos, total, ident, frag, ttl, proto, csum, s, d = _IPV4.unpack_from(data)
    if vihl >> 4 != 4:
        raise ParseError(f"IP version {vihl >> 4}, expected 4")
    ihl = (vihl & 0x0F) * 4
    if ihl < IPV4_HEADER_LEN:
        raise ParseError(f"IPv4 header length {ihl} is below 20")
    if len(data) < ihl:
        raise ParseError(f"IPv4 header with options needs {ihl} bytes, got {len(data)}")
    return ihl, tos, total, ident, frag, ttl, proto, csum, s, d


def parse_ipv4_header(data: bytes) -> IPv4Header:
    """The IPv4 header at the start of ``data`` (which may be a truncated quote).

    The total length is not checked against ``data``: quotes are cut short, and some routers
    quote a mangled total length.
    """
    ihl, tos, total, ident, frag, ttl, proto, csum, s, d = ipv4_header_fields(data)
    return IPv4Header(
        src=ipaddress.IPv4Address(s),
        dst=ipaddress.IPv4Address(d),
        proto=proto,
        total_length=total,
        ttl=ttl,
        tos=tos,
        ident=ident,
        flags=frag >> 13,
        frag_offset=frag & 0x1FFF,
        checksum=csum,
        header_length=ihl,
    )


def parse_ipv6_header(data: bytes) -> IPv6Header:
    """The fixed IPv6 header at the start of ``data``."""
    if len(data) < IPV6_HEADER_LEN:
        raise ParseError(f"IPv6 header needs 40 bytes, got {len(data)}")
    first, plen, nh, hlim, s, d = _IPV6.unpack_from(data)
    if first >> 28 != 6:
        raise ParseError(f"IP version {first >> 28}, expected 6")
    return IPv6Header(
        src=ipaddress.IPv6Address(s),
        dst=ipaddress.IPv6Address(d),
        next_header=nh,
        payload_length=plen,
        hop_limit=hlim,
        traffic_class=(first >> 20) & 0xFF,
        flow_label=first & 0xFFFFF,
    )


# Extension headers a reply or a quoted probe may carry.
_IPV6_EXTENSIONS = {0, 43, 60}  # hop-by-hop, routing, destination options
_IPV6_FRAGMENT = 44
_IPV6_NO_NEXT = 59


def skip_ipv6_extensions(data: bytes, next_header: int) -> tuple[int, int, int | None]:
    """Walk extension headers after a fixed IPv6 header.

    Returns ``(upper-layer protocol, its offset in data, fragment ID or None)``. A
    non-first fragment has no upper-layer header and raises ParseError.
    """
    offset = IPV6_HEADER_LEN
    frag_id: int | None = None
    for _ in range(8):  # a bound, so that a loop of options cannot spin
        if next_header in _IPV6_EXTENSIONS:
            if len(data) < offset + 2:
                raise ParseError("truncated IPv6 extension header")
            next_header, ext_len = data[offset], (data[offset + 1] + 1) * 8
            offset += ext_len
        elif next_header == _IPV6_FRAGMENT:
            if len(data) < offset + 8:
                raise ParseError("truncated IPv6 fragment header")
            nh, _res, frag, ident = struct.unpack_from("!BBHI", data, offset)
            if frag >> 3:
                raise ParseError("a non-first IPv6 fragment has no upper-layer header")
            next_header, frag_id = nh, ident
            offset += 8
        elif next_header == _IPV6_NO_NEXT:
            raise ParseError("IPv6 packet has no upper-layer header")
        else:
            return next_header, offset, frag_id
    raise ParseError("too many IPv6 extension headers")


def ip_packet(
    src: AddressLike,
    dst: AddressLike,
    proto: int,
    payload: bytes,
    *,
    ttl: int = 64,
    tos: int = 0,
    ident: int = 0,
    flags: int = 0,
    flow_label: int = 0,
    options: bytes = b"",
) -> bytes:
    """An IPv4 or IPv6 packet (chosen by the addresses) around a ready transport payload.

    For IPv6, ``tos`` is the traffic class and ``ident``/``flags``/``options`` are unused.
    """
    s, d = as_address(src), as_address(dst)
    if s.version == 4:
        head = ipv4_header(
            s, d, proto, len(payload), ttl=ttl, tos=tos, ident=ident, flags=flags, options=options
        )
        return head + payload
    return (
        ipv6_header(
            s, d, proto, len(payload), hop_limit=ttl, traffic_class=tos, flow_label=flow_label
        )
        + payload
    )


IPOPT_EOL, IPOPT_NOP, IPOPT_RR, IPOPT_TS, IPOPT_LSRR, IPOPT_SSRR = 0, 1, 7, 0x44, 0x83, 0x89
IPOPT_COPIED = 0x80  # an option every fragment carries (the others: the first only)


def option_spans(options: bytes | bytearray) -> Iterator[tuple[int, int]]:
    """(offset, length) of each option among IPv4 `options` but NOPs, walked as Linux and
    iputils' pr_options walk them: to an EOL, a length below 2 or past the end."""
    at = 0
    while at < len(options):
        if options[at] == IPOPT_EOL:
            return
        if options[at] == IPOPT_NOP:
            at += 1
            continue
        if at + 1 >= len(options) or not 2 <= options[at + 1] <= len(options) - at:
            return
        yield at, options[at + 1]
        at += options[at + 1]


def _nop_uncopied(head: bytearray) -> None:
    """Overwrite with NOPs the options of an IPv4 header that later fragments do not
    carry (record route, timestamps), as Linux's ip_options_fragment."""
    for at, olen in list(option_spans(head[IPV4_HEADER_LEN:])):
        at += IPV4_HEADER_LEN
        if not head[at] & IPOPT_COPIED:
            head[at : at + olen] = bytes([IPOPT_NOP]) * olen


def fragment(packet: bytes, mtu: int, ident: int = 0) -> list[bytes]:
    """`packet` as IP fragments of at most `mtu` bytes each, as a host's kernel fragments
    a datagram too long for its link (RFC 791; RFC 8200 §4.5 with a Fragment header of
    identification `ident`); `[packet]` when it fits. An IPv4 packet with DF cannot be
    fragmented (ValueError), nor one with IPv6 extension headers (only plain probes are)."""
    if len(packet) <= mtu:
        return [packet]
    if packet[0] >> 4 == 4:
        h = parse_ipv4_header(packet)
        hl = h.header_length
        if h.flags & IP_DF:
            raise ValueError(f"a {len(packet)} byte packet with DF does not fit {mtu} bytes")
        step = (mtu - hl) // 8 * 8
        if step <= 0:
            raise ValueError(f"an MTU of {mtu} leaves no room for a fragment")
        body, out = packet[hl : h.total_length], []
        for off in range(0, len(body), step):
            chunk = body[off : off + step]
            more = off + step < len(body) or bool(h.flags & IP_MF)
            head = bytearray(packet[:hl])
            if off:  # options not marked "copied" go in the first fragment only
                _nop_uncopied(head)
            frag = (h.flags & ~IP_MF | (IP_MF if more else 0)) << 13 | (h.frag_offset + off // 8)
            struct.pack_into("!HHH", head, 2, hl + len(chunk), h.ident, frag)
            struct.pack_into("!BBH", head, 8, h.ttl, h.proto, 0)
            struct.pack_into("!H", head, 10, inet_checksum(bytes(head)))
            out.append(bytes(head) + chunk)
        return out
    h6 = parse_ipv6_header(packet)
    if h6.next_header in _IPV6_EXTENSIONS or h6.next_header == _IPV6_FRAGMENT:
        raise ValueError("only an IPv6 packet without extension headers is fragmented here")
    step = (mtu - 48) // 8 * 8
    if step <= 0:
        raise ValueError(f"an MTU of {mtu} leaves no room for a fragment")
    body, out = packet[40 : 40 + h6.payload_length], []
    for off in range(0, len(body), step):
        chunk = body[off : off + step]
        last = int(off + step >= len(body))
        head = bytearray(packet[:40])
        struct.pack_into("!HB", head, 4, 8 + len(chunk), _IPV6_FRAGMENT)
        out.append(
            bytes(head) + struct.pack("!BBHI", h6.next_header, 0, off | (1 - last), ident) + chunk
        )
    return out
