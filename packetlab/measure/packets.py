"""IPv4/IPv6, UDP, ICMP(v6) echo and TCP SYN headers: build and parse, sans-IO, stdlib only.

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
from collections.abc import Callable, Iterator, Sequence
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
_UDP = struct.Struct("!HHHH")
_ICMP_ECHO = struct.Struct("!BBHHH")
_TCP = struct.Struct("!HHIIBBHHH")


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


def _check_range(name: str, value: int, bits: int) -> None:
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
    for name, value, bits in (
        ("proto", proto, 8),
        ("ttl", ttl, 8),
        ("tos", tos, 8),
        ("ident", ident, 16),
        ("flags", flags, 3),
        ("frag_offset", frag_offset, 13),
    ):
        _check_range(name, value, bits)
    if len(options) % 4 or len(options) > 40:
        raise ValueError(f"IPv4 options are whole words, at most 40 bytes, not {len(options)}")
    total = IPV4_HEADER_LEN + len(options) + payload_length
    if not 0 <= payload_length or total > 0xFFFF:
        raise ValueError(f"IPv4 packet of {total} bytes does not fit the 16-bit total length")
    vihl = 0x40 | (5 + len(options) // 4)
    fields = (vihl, tos, total, ident, flags << 13 | frag_offset, ttl, proto, 0, s.packed, d.packed)
    checksum = inet_checksum(_IPV4.pack(*fields) + options)
    return _IPV4.pack(*fields[:7], checksum, s.packed, d.packed) + options


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
        _check_range(name, value, bits)
    first = 6 << 28 | traffic_class << 20 | flow_label
    return _IPV6.pack(first, payload_length, next_header, hop_limit, s.packed, d.packed)


def parse_ipv4_header(data: bytes) -> IPv4Header:
    """The IPv4 header at the start of ``data`` (which may be a truncated quote).

    The total length is not checked against ``data``: quotes are cut short, and some routers
    quote a mangled total length.
    """
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


# -- transport headers ----------------------------------------------------------------------


def udp_segment(
    src: AddressLike,
    dst: AddressLike,
    sport: int,
    dport: int,
    payload: bytes = b"",
    *,
    coverage: int | None = None,
) -> bytes:
    """A UDP header plus payload, with the pseudo-header checksum for IPv4 or IPv6.

    With `coverage` a UDP-Lite datagram (RFC 3828) instead, as Linux sends one whose
    socket has UDPLITE_SEND_CSCOV = `coverage` (traceroute -UL -O coverage=NUM): less
    than 8 is 8; the checksum covers the first `coverage` bytes, the header's Checksum
    Coverage field says so, and when it reaches the end of the datagram the field is the
    whole length (the pseudo-header always carries the whole length)."""
    s, d = as_address(src), as_address(dst)
    _check_range("sport", sport, 16)
    _check_range("dport", dport, 16)
    length = 8 + len(payload)
    if length > 0xFFFF:
        raise ValueError(f"UDP datagram of {length} bytes does not fit the 16-bit length")
    if coverage is None:
        segment = _UDP.pack(sport, dport, length, 0) + payload
        csum = transport_checksum(s, d, PROTO_UDP, segment)
        return _UDP.pack(sport, dport, length, csum) + payload
    if coverage < 0:
        raise ValueError(f"UDP-Lite coverage must be 0 or more, not {coverage}")
    cover = min(max(coverage, 8), length)
    segment = _UDP.pack(sport, dport, cover, 0) + payload
    csum = inet_checksum(pseudo_header(s, d, PROTO_UDPLITE, length) + segment[:cover])
    return _UDP.pack(sport, dport, cover, csum or 0xFFFF) + payload


DCCP_REQUEST = 0
DCCP_RESPONSE = 1
DCCP_RESET = 7
# Butskoy traceroute's DCCP service code ("ping" in ASCII)
DCCP_SERVICE_CODE = 1885957735


def dccp_request(
    src: AddressLike,
    dst: AddressLike,
    sport: int,
    dport: int,
    seq: int,
    service: int = DCCP_SERVICE_CODE,
) -> bytes:
    """A DCCP-Request (RFC 4340 §5.1, 5.5) as traceroute's dccp module builds it: 48-bit
    sequence number `seq` (X = 1), no options, no data (20 bytes, Data Offset 5), CCVal
    and CsCov 0 (the checksum covers it all), the service code `service`."""
    s, d = as_address(src), as_address(dst)
    _check_range("sport", sport, 16)
    _check_range("dport", dport, 16)
    _check_range("seq", seq, 48)
    _check_range("service", service, 32)
    tail = struct.pack("!BBHIL", DCCP_REQUEST << 1 | 1, 0, seq >> 32, seq & 0xFFFFFFFF, service)
    head = struct.pack("!HHBB", sport, dport, 5, 0)
    csum = inet_checksum(pseudo_header(s, d, PROTO_DCCP, 20) + head + b"\0\0" + tail)
    return head + struct.pack("!H", csum) + tail


def icmp_echo(ident: int, seq: int, payload: bytes = b"") -> bytes:
    """An ICMPv4 echo request (type 8) with its checksum; ICMPv4 has no pseudo-header."""
    _check_range("ident", ident, 16)
    _check_range("seq", seq, 16)
    body = _ICMP_ECHO.pack(ICMP_ECHO, 0, 0, ident, seq) + payload
    return _ICMP_ECHO.pack(ICMP_ECHO, 0, inet_checksum(body), ident, seq) + payload


def icmpv6_echo(
    src: AddressLike, dst: AddressLike, ident: int, seq: int, payload: bytes = b""
) -> bytes:
    """An ICMPv6 echo request (type 128); its checksum covers the IPv6 pseudo-header."""
    s, d = as_address(src), as_address(dst)
    _check_range("ident", ident, 16)
    _check_range("seq", seq, 16)
    body = _ICMP_ECHO.pack(ICMP6_ECHO, 0, 0, ident, seq) + payload
    csum = inet_checksum(pseudo_header(s, d, PROTO_ICMPV6, len(body)) + body)
    return _ICMP_ECHO.pack(ICMP6_ECHO, 0, csum, ident, seq) + payload


def tcp_segment(
    src: AddressLike,
    dst: AddressLike,
    sport: int,
    dport: int,
    *,
    seq: int,
    ack: int = 0,
    flags: int = TCP_SYN,
    window: int = 65535,
    options: bytes = b"",
    payload: bytes = b"",
) -> bytes:
    """A TCP segment with its checksum; ``options`` is padded with NOPs to 4 bytes."""
    s, d = as_address(src), as_address(dst)
    _check_range("sport", sport, 16)
    _check_range("dport", dport, 16)
    _check_range("seq", seq, 32)
    _check_range("ack", ack, 32)
    _check_range("flags", flags, 8)
    _check_range("window", window, 16)
    if len(options) % 4:
        options += b"\x01" * (4 - len(options) % 4)
    offset = (20 + len(options)) // 4
    if offset > 15:
        raise ValueError(f"TCP options of {len(options)} bytes exceed 40")
    fields = (sport, dport, seq, ack, offset << 4, flags, window)
    csum = transport_checksum(s, d, PROTO_TCP, _TCP.pack(*fields, 0, 0) + options + payload)
    return _TCP.pack(*fields, csum, 0) + options + payload


def tcp_mss_option(mss: int) -> bytes:
    """The TCP maximum segment size option (kind 2)."""
    _check_range("mss", mss, 16)
    return struct.pack("!BBH", 2, 4, mss)


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
# ping -T's kinds of timestamp option (RFC 791's flags)
TS_TSONLY, TS_TSANDADDR, TS_PRESPEC = 0, 1, 3
TIMESTAMP_KINDS = {"tsonly": TS_TSONLY, "tsandaddr": TS_TSANDADDR, "tsprespec": TS_PRESPEC}
MAX_PRESPEC = 4  # ping -T tsprespec: at most 4 addresses (iputils' limit)
MAX_GATEWAYS = 8  # traceroute -g over IPv4: at most 8 (Butskoy's)
MAX_PING_ROUTE = 9  # ping HOST... TARGET: at most 9 hosts before the target (iputils')


def record_route_option(src: AddressLike | None = None) -> bytes:
    """ping -R's IPv4 options: a NOP and a record route option with room for nine
    addresses (40 bytes, all the header has); with `src` the first holds it, as the
    sender's kernel records its own address when it sends the option (a raw packet
    handed over whole gets no such entry)."""
    if src is None:
        return bytes([IPOPT_NOP, IPOPT_RR, 39, 4]) + bytes(36)
    return bytes([IPOPT_NOP, IPOPT_RR, 39, 8]) + as_address(src).packed + bytes(32)


def ms_of_day(ns: int) -> int:
    """An IP timestamp (RFC 791): milliseconds since midnight UT of a time in ns since the
    epoch, as Linux's inet_current_timestamp."""
    return ns // 1_000_000 % 86_400_000


def _stamps(address: Address, local: Callable[[Address], bool]) -> bool:
    """Whether a host stamps a tsprespec slot naming `address`: Linux stamps it unless it
    is another host's unicast address (inet_addr_type != RTN_UNICAST)."""
    a = ipaddress.IPv4Address(address)
    broadcast = a.packed[0] == 0 or a == ipaddress.IPv4Address("255.255.255.255")
    return local(a) or a.is_loopback or a.is_multicast or broadcast


def timestamp_option(
    kind: int,
    prespec: Sequence[AddressLike] = (),
    *,
    src: AddressLike | None = None,
    sent_ns: int | None = None,
) -> bytes:
    """ping -T's IPv4 timestamp option as iputils asks its kernel for it, with the entry
    that kernel adds when it sends the request (a raw packet handed over whole gets none):
    `sent_ns` (ns since the epoch) as the first timestamp, `src` before it with
    tsandaddr; with tsprespec only when the first address is `src`'s host's own.
    tsonly: room for 9 timestamps (40 bytes); tsandaddr: 4 addresses and times (36, and
    4 bytes of EOL); tsprespec: the given addresses (at most 4), each with a time slot.
    Without `sent_ns` the option is as iputils gives it to setsockopt."""
    if kind == TS_TSONLY:
        option = bytearray([IPOPT_TS, 40, 5, kind]) + bytes(36)
    elif kind == TS_TSANDADDR:
        option = bytearray([IPOPT_TS, 36, 5, kind]) + bytes(32)
    elif kind == TS_PRESPEC:
        if len(prespec) > MAX_PRESPEC:
            raise ValueError(f"tsprespec takes at most {MAX_PRESPEC} addresses, not {len(prespec)}")
        option = bytearray([IPOPT_TS, 4 + 8 * len(prespec), 5, kind])
        for a in prespec:
            option += ipaddress.IPv4Address(str(a)).packed + bytes(4)
    else:
        raise ValueError(f"timestamp option kind must be 0, 1 or 3, not {kind}")
    if sent_ns is not None:
        at = src if src is None else ipaddress.IPv4Address(str(src))
        stamp_option(option, at, sent_ns, lambda a: a == at)
    return bytes(option) + bytes(-len(option) % 4)


def stamp_option(
    option: bytearray,
    host: Address | None,
    ns: int,
    local: Callable[[Address], bool],
) -> None:
    """What a Linux host's IP layer does to the timestamp option `option` (in place) of a
    packet it sends or receives as `host` at `ns`: its time in the next free slot (its
    address too with tsandaddr; tsprespec: when the next slot names a local address), or,
    the option being full, one more unrecorded hop in the flags (not with tsprespec)."""
    olen, ptr, flags = option[1], option[2], option[3]
    kind = flags & 0x0F
    if ptr > olen:
        if kind != TS_PRESPEC and flags >> 4 < 15:
            option[3] = (flags + 0x10) & 0xFF
        return
    if kind == TS_TSONLY and ptr + 3 <= olen:
        option[ptr - 1 : ptr + 3] = ms_of_day(ns).to_bytes(4, "big")
        option[2] += 4
    elif kind == TS_TSANDADDR and ptr + 7 <= olen and host is not None:
        option[ptr - 1 : ptr + 3] = host.packed
        option[ptr + 3 : ptr + 7] = ms_of_day(ns).to_bytes(4, "big")
        option[2] += 8
    elif kind == TS_PRESPEC and ptr + 7 <= olen:
        named = ipaddress.IPv4Address(bytes(option[ptr - 1 : ptr + 3]))
        if _stamps(named, local):
            option[ptr + 3 : ptr + 7] = ms_of_day(ns).to_bytes(4, "big")
            option[2] += 8


@dataclass(frozen=True, slots=True)
class IpTimestamps:
    """A reply's IPv4 timestamp option as iputils ping reads it: the entries up to its
    pointer, each (address or None with tsonly, ms since midnight UT or None for an
    address whose time did not fit), the option's kind and its unrecorded hops."""

    kind: int
    entries: tuple[tuple[str | None, int | None], ...]
    unrecorded: int = 0


def _option_spans(options: bytes | bytearray) -> Iterator[tuple[int, int]]:
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


def _find_option(options: bytes, want: int) -> bytes | None:
    """The option of kind `want` among IPv4 `options` (None without one)."""
    for at, olen in _option_spans(options):
        if options[at] == want:
            return options[at : at + olen]
    return None


def received_timestamps(
    options: bytes,
    received_by: AddressLike,
    recv_ns: int,
    local: Callable[[Address], bool] | None = None,
) -> bytes:
    """IPv4 `options` as the receiving host's IP layer leaves them (a capture taken before
    it has their raw form): a timestamp option gets its time (`stamp_option`; `local`:
    whether an address is that host's, default: it is `received_by`)."""
    out = bytearray(options)
    host = ipaddress.IPv4Address(str(received_by))
    for at, olen in _option_spans(options):
        if out[at] == IPOPT_TS and olen >= 4:
            option = out[at : at + olen]
            stamp_option(option, host, recv_ns, local or (lambda a: a == host))
            out[at : at + olen] = option
    return bytes(out)


def ip_timestamps(options: bytes) -> IpTimestamps | None:
    """The timestamp option among IPv4 `options` as iputils' pr_options reads it (None
    without one, or when it holds nothing: ping prints no `TS:` line then)."""
    option = _find_option(options, IPOPT_TS)
    if option is None or len(option) < 4:
        return None
    olen, ptr, flags = option[1], option[2], option[3]
    left = min(ptr, olen) - 5
    if left <= 0:
        return None
    entries: list[tuple[str | None, int | None]] = []
    at = 4
    while left > 0:
        addr = None
        if flags & 0x0F != TS_TSONLY:
            addr = str(ipaddress.IPv4Address(option[at : at + 4].ljust(4, b"\0")))
            at += 4
            left -= 4
            if left <= 0:
                entries.append((addr, None))
                break
        entries.append((addr, int.from_bytes(option[at : at + 4].ljust(4, b"\0"), "big")))
        at += 4
        left -= 4
    return IpTimestamps(flags & 0x0F, tuple(entries), flags >> 4)


def loose_source_route(
    gateways: Sequence[AddressLike],
    dst: AddressLike,
    *,
    target_listed: bool = True,
    most: int = MAX_GATEWAYS,
) -> tuple[Address, bytes]:
    """A loose source route through `gateways` to `dst` as the sender's kernel sends it:
    the first gateway (the packet's destination address) and the options (a NOP and a
    loose source route option). The tool gives its kernel a route (IP_OPTIONS): Butskoy's
    traceroute -g the gateways then `dst` (`target_listed`), iputils ping's HOST...
    TARGET the hosts only; the kernel moves the route's first address into the header,
    the others up one slot, and writes the final destination in the last slot. So
    traceroute's option holds the other gateways and `dst` twice, ping's the other hosts
    and `dst` once. At most `most` gateways (traceroute's 8, ping's 9: `MAX_PING_ROUTE`)."""
    if not 1 <= len(gateways) <= most:
        raise ValueError(f"1..{most} gateways over IPv4, not {len(gateways)}")
    hops = [ipaddress.IPv4Address(str(g)) for g in gateways]
    final = ipaddress.IPv4Address(str(dst))
    given = [*hops, final] if target_listed else hops  # what the tool hands its kernel
    route = [*given[1:], final]
    option = bytes([IPOPT_NOP, IPOPT_LSRR, 3 + 4 * len(route), 4])
    return hops[0], option + b"".join(a.packed for a in route)


@dataclass(frozen=True, slots=True)
class SourceRoute:
    """A reply's loose (or strict) source route option: its pointer and the addresses
    it holds (a Linux host answering a source-routed echo request sends its reply back
    along the route reversed, the option's pointer past the end)."""

    strict: bool
    pointer: int
    addresses: tuple[str, ...]

    def as_iputils_prints(self) -> tuple[str, ...]:
        """The words iputils ping (20221126) prints on its `LSRR:` lines: its pr_options
        reads them from the option's pointer byte on, two bytes before the addresses
        (`10.77.3.2` after a pointer of 12 reads `12.10.77.3`), one word for every four
        bytes of the option past its first four, rounded up."""
        body = bytes([self.pointer]) + b"".join(
            ipaddress.IPv4Address(a).packed for a in self.addresses
        )
        olen = 3 + 4 * len(self.addresses)
        words = range(0, 4 * -(-(olen - 4) // 4), 4) if olen > 4 else range(0)
        return tuple(str(ipaddress.IPv4Address(body[w : w + 4].ljust(4, b"\0"))) for w in words)


def source_route(options: bytes) -> SourceRoute | None:
    """The loose or strict source route option among IPv4 `options` (None without one):
    its pointer and its whole words of addresses."""
    for at, olen in _option_spans(options):
        if options[at] in (IPOPT_LSRR, IPOPT_SSRR) and olen >= 3:
            words = options[at + 3 : at + olen]
            return SourceRoute(
                options[at] == IPOPT_SSRR,
                options[at + 2],
                tuple(
                    str(ipaddress.IPv4Address(words[w : w + 4]))
                    for w in range(0, len(words) - 3, 4)
                ),
            )
    return None


def with_ip_options(packet: bytes, options: bytes, dst: AddressLike | None = None) -> bytes:
    """The IPv4 `packet` with `options` (padded with EOL to whole words) in its header,
    and `dst` as its destination address if given: what a kernel sends for a socket with
    IP_OPTIONS (a source route's first gateway in the header: `loose_source_route`)."""
    h = parse_ipv4_header(packet)
    body = packet[h.header_length : h.total_length]
    head = ipv4_header(
        h.src, h.dst if dst is None else dst, h.proto, len(body), ttl=h.ttl, tos=h.tos,
        ident=h.ident, flags=h.flags, frag_offset=h.frag_offset,
        options=options + bytes(-len(options) % 4),
    )  # fmt: skip
    return head + body


def recorded_route(
    options: bytes, received_by: AddressLike | None = None
) -> tuple[str, ...] | None:
    """The addresses a record route option among IPv4 `options` holds, as iputils ping
    reads them (up to its pointer; 0.0.0.0 for an empty slot), or None without one. With
    `received_by`, that address is added when the option has room, as the receiving
    host's kernel records it (a capture taken before the IP layer has no such entry)."""
    found = _find_option(options, IPOPT_RR)
    if found is None or len(found) < 3:
        return None
    option, olen = bytearray(found), len(found)
    if received_by is not None and option[2] + 3 <= olen:
        option[option[2] - 1 : option[2] + 3] = as_address(received_by).packed
        option[2] += 4
    used = min(option[2], olen) - 4
    if used <= 0:
        return None
    words = (bytes(option[off : off + 4]).ljust(4, b"\0") for off in range(3, 3 + used, 4))
    return tuple(str(ipaddress.IPv4Address(w)) for w in words)


def _nop_uncopied(head: bytearray) -> None:
    """Overwrite with NOPs the options of an IPv4 header that later fragments do not
    carry (record route, timestamps), as Linux's ip_options_fragment."""
    for at, olen in list(_option_spans(head[IPV4_HEADER_LEN:])):
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
