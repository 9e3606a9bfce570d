"""Small active probes for checking a testbed from inside a namespace (no ping binary needed).

Run them in a node with ``tb.call("ep", icmp_echo, tb.addr("tg"))``. They use raw sockets,
so they need root, and they are bounded by their ``timeout``.
"""

from __future__ import annotations

import ipaddress
import os
import select
import socket
import struct
import time
from dataclasses import dataclass

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

ICMP_ECHO_REPLY, ICMP_DEST_UNREACH, ICMP_ECHO, ICMP_TIME_EXCEEDED = 0, 3, 8, 11
ICMP6_DEST_UNREACH, ICMP6_TIME_EXCEEDED, ICMP6_ECHO, ICMP6_ECHO_REPLY = 1, 3, 128, 129


def inet_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _icmp_socket(v6: bool) -> socket.socket:
    if v6:
        return socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    return socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)


def _icmp_payload(raw: bytes, v6: bool) -> bytes:
    # IPv4 raw sockets deliver the IP header; IPv6 ones start at the ICMPv6 header.
    return raw if v6 else raw[(raw[0] & 0x0F) * 4 :]


def icmp_echo(
    dst: str | Address, *, timeout: float = 2.0, ident: int | None = None
) -> float | None:
    """Send one ICMP(v6) echo request; the round-trip time in seconds, or None on timeout."""
    addr = ipaddress.ip_address(dst)
    v6 = addr.version == 6
    ident = (os.getpid() if ident is None else ident) & 0xFFFF
    seq = int(time.monotonic_ns() // 1000) & 0xFFFF
    kind = ICMP6_ECHO if v6 else ICMP_ECHO
    body = struct.pack("!HH", ident, seq) + b"packetlab-testbed"
    packet = struct.pack("!BBH", kind, 0, 0) + body
    if not v6:  # the kernel fills the ICMPv6 checksum itself
        packet = struct.pack("!BBH", kind, 0, inet_checksum(packet)) + body
    with _icmp_socket(v6) as sock:
        start = time.monotonic()
        sock.sendto(packet, (str(addr), 0))
        while (left := start + timeout - time.monotonic()) > 0:
            if not select.select([sock], [], [], left)[0]:
                break
            raw, src = sock.recvfrom(65535)
            icmp = _icmp_payload(raw, v6)
            want = ICMP6_ECHO_REPLY if v6 else ICMP_ECHO_REPLY
            if (
                len(icmp) >= 8
                and icmp[0] == want
                and struct.unpack_from("!HH", icmp, 4) == (ident, seq)
                and ipaddress.ip_address(src[0].split("%")[0]) == addr
            ):
                return time.monotonic() - start
    return None


@dataclass(frozen=True, slots=True)
class Hop:
    ttl: int
    address: Address | None  # who answered, None if nobody did in time
    icmp_type: int | None
    icmp_code: int | None

    @property
    def reached(self) -> bool:
        """True when the answer is a destination unreachable (the target's closed port)."""
        if self.address is None:
            return False
        unreach = ICMP6_DEST_UNREACH if self.address.version == 6 else ICMP_DEST_UNREACH
        return self.icmp_type == unreach


def udp_probe(dst: str | Address, ttl: int, *, port: int = 33434, timeout: float = 2.0) -> Hop:
    """One traceroute probe: a UDP datagram with hop limit ``ttl``; who answers with ICMP."""
    addr = ipaddress.ip_address(dst)
    v6 = addr.version == 6
    family = socket.AF_INET6 if v6 else socket.AF_INET
    with _icmp_socket(v6) as icmp, socket.socket(family, socket.SOCK_DGRAM) as udp:
        if v6:
            udp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, ttl)
        else:
            udp.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        udp.bind(("::" if v6 else "0.0.0.0", 0))
        sport = udp.getsockname()[1]
        start = time.monotonic()
        udp.sendto(b"packetlab-probe", (str(addr), port))
        while (left := start + timeout - time.monotonic()) > 0:
            if not select.select([icmp], [], [], left)[0]:
                break
            raw, src = icmp.recvfrom(65535)
            msg = _icmp_payload(raw, v6)
            if len(msg) < 8 or msg[0] not in (
                (ICMP6_TIME_EXCEEDED, ICMP6_DEST_UNREACH)
                if v6
                else (ICMP_TIME_EXCEEDED, ICMP_DEST_UNREACH)
            ):
                continue
            quoted = msg[8:]
            qdst: Address
            if v6:
                if len(quoted) < 48 or quoted[6] != socket.IPPROTO_UDP:
                    continue
                qdst, udp_hdr = ipaddress.IPv6Address(quoted[24:40]), quoted[40:48]
            else:
                ihl = (quoted[0] & 0x0F) * 4 if quoted else 0
                if len(quoted) < ihl + 8 or quoted[9] != socket.IPPROTO_UDP:
                    continue
                qdst, udp_hdr = ipaddress.IPv4Address(quoted[16:20]), quoted[ihl : ihl + 8]
            if qdst != addr or struct.unpack_from("!HH", udp_hdr) != (sport, port):
                continue
            return Hop(ttl, ipaddress.ip_address(src[0].split("%")[0]), msg[0], msg[1])
    return Hop(ttl, None, None, None)


def traceroute(
    dst: str | Address, *, max_ttl: int = 16, timeout: float = 2.0, port: int = 33434
) -> list[Hop]:
    """UDP traceroute: one probe per TTL until the destination answers or ``max_ttl``."""
    hops = []
    for ttl in range(1, max_ttl + 1):
        hop = udp_probe(dst, ttl, port=port, timeout=timeout)
        hops.append(hop)
        if hop.reached:
            break
    return hops
