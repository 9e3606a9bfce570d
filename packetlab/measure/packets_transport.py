"""Transport headers for raw probes, each with its checksum: UDP and UDP-Lite
(`udp_segment`), a DCCP-Request (`dccp_request`), ICMP and ICMPv6 echo requests
(`icmp_echo`, `icmpv6_echo`) and TCP (`tcp_segment`, `tcp_mss_option`). Sans-IO, stdlib
only; `packets.ip_packet` puts one in an IP packet."""

from __future__ import annotations

import struct

from packetlab.measure.packets import (
    ICMP6_ECHO,
    ICMP_ECHO,
    PROTO_DCCP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    PROTO_UDPLITE,
    TCP_SYN,
    AddressLike,
    as_address,
    check_range,
    inet_checksum,
    pseudo_header,
    transport_checksum,
)

_UDP = struct.Struct("!HHHH")
_ICMP_ECHO = struct.Struct("!BBHHH")
_TCP = struct.Struct("!HHIIBBHHH")


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
    check_range("sport", sport, 16)
    check_range("dport", dport, 16)
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
    check_range("sport", sport, 16)
    check_range("dport", dport, 16)
    check_range("seq", seq, 48)
    check_range("service", service, 32)
    tail = struct.pack("!BBHIL", DCCP_REQUEST << 1 | 1, 0, seq >> 32, seq & 0xFFFFFFFF, service)
    head = struct.pack("!HHBB", sport, dport, 5, 0)
    csum = inet_checksum(pseudo_header(s, d, PROTO_DCCP, 20) + head + b"\0\0" + tail)
    return head + struct.pack("!H", csum) + tail


def icmp_echo(ident: int, seq: int, payload: bytes = b"") -> bytes:
    """An ICMPv4 echo request (type 8) with its checksum; ICMPv4 has no pseudo-header."""
    if not (0 <= ident < 0x10000 and 0 <= seq < 0x10000):  # (ping's per-request path)
        check_range("ident", ident, 16)
        check_range("seq", seq, 16)
    body = _ICMP_ECHO.pack(ICMP_ECHO, 0, 0, ident, seq) + payload
    return _ICMP_ECHO.pack(ICMP_ECHO, 0, inet_checksum(body), ident, seq) + payload


def icmpv6_echo(
    src: AddressLike, dst: AddressLike, ident: int, seq: int, payload: bytes = b""
) -> bytes:
    """An ICMPv6 echo request (type 128); its checksum covers the IPv6 pseudo-header."""
    s, d = as_address(src), as_address(dst)
    check_range("ident", ident, 16)
    check_range("seq", seq, 16)
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
    check_range("sport", sport, 16)
    check_range("dport", dport, 16)
    check_range("seq", seq, 32)
    check_range("ack", ack, 32)
    check_range("flags", flags, 8)
    check_range("window", window, 16)
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
    check_range("mss", mss, 16)
    return struct.pack("!BBH", 2, 4, mss)
