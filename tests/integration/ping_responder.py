"""A raw ICMP echo responder for side-by-side tests of `pktlab run ping` (session 25):
run inside a network namespace whose kernel ignores echo requests
(net.ipv4.icmp_echo_ignore_all=1), it answers each request itself, crafted as MODE says,
so that both pings meet answers a kernel never sends. Prints "ready" once its socket is
open; runs until killed.

Modes (IPv4): echo (a plain reply), corrupt (data byte #20 of the payload flipped),
short:N (only the first N bytes of the payload), dup (each reply twice), badsum (a wrong
ICMP checksum), ttl:N (the reply's TTL N), otherid (the reply's identifier + 1, then the
right one), seq:N (first a reply to seq + N, then the right one), stamp (the payload's
first 16 bytes, the sender's timeval, zeroed),
error:TYPE:CODE[:WORD] (an ICMP error quoting the request, its 4 bytes after the checksum
WORD, an integer: a redirect's gateway, a "frag needed"'s MTU, a parameter problem's
pointer), from:ADDR (the reply from ADDR instead), delay:S (each reply S seconds late;
IPv4 and IPv6).
"""

from __future__ import annotations

import socket
import struct
import sys
import threading

from packetlab.testbed.probe import inet_checksum as checksum


def reply(ident: int, seq: int, payload: bytes, *, good_sum: bool = True) -> bytes:
    head = struct.pack("!BBHHH", 0, 0, 0, ident, seq)
    s = checksum(head + payload)
    if not good_sum:
        s ^= 0x00FF
    return struct.pack("!BBHHH", 0, 0, s, ident, seq) + payload


def main(mode: str, family: str = "4") -> None:
    if family == "6":
        main6(mode)
        return
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    print("ready", flush=True)
    while True:
        packet, (src, _) = sock.recvfrom(65535)
        ihl = (packet[0] & 0x0F) * 4
        icmp = packet[ihl:]
        if len(icmp) < 8 or icmp[0] != 8:
            continue
        ident, seq = struct.unpack("!HH", icmp[4:8])
        payload = icmp[8:]
        name, _, arg = mode.partition(":")
        ttl = int(arg) if name == "ttl" else 64
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        answers = [reply(ident, seq, payload)]
        if name == "corrupt" and len(payload) > 20:
            bad = bytearray(payload)
            bad[20] ^= 0xFF
            answers = [reply(ident, seq, bytes(bad))]
        elif name == "short":
            answers = [reply(ident, seq, payload[: int(arg)])]
        elif name == "dup":
            answers = answers * 2
        elif name == "badsum":
            answers = [reply(ident, seq, payload, good_sum=False)]
        elif name == "otherid":
            answers = [reply((ident + 1) & 0xFFFF, seq, payload), *answers]
        elif name == "seq":  # first a reply to a request never sent (seq + N)
            answers = [reply(ident, (seq + int(arg)) & 0xFFFF, payload), *answers]
        elif name == "stamp":
            answers = [reply(ident, seq, bytes(16) + payload[16:])]
        if name == "error":
            kind, _, rest = arg.partition(":")
            code, _, word = rest.partition(":")
            answers = [icmp_error(int(kind), int(code), int(word or 0), packet[: ihl + 8])]
        if name == "from":  # the reply from another address (IP_HDRINCL)
            raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
            head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(answers[0]), 0, 0, 64, 1,
                               0, socket.inet_aton(arg), socket.inet_aton(src))  # fmt: skip
            raw.sendto(head + answers[0], (src, 0))
            raw.close()
            continue
        for a in answers:
            if name == "delay":  # (a timer each: the next request is answered on time)
                threading.Timer(float(arg), sock.sendto, (a, (src, 0))).start()
                continue
            sock.sendto(a, (src, 0))


def icmp_error(kind: int, code: int, word: int, quoted: bytes) -> bytes:
    head = struct.pack("!BBHI", kind, code, 0, word)
    s = checksum(head + quoted)
    return struct.pack("!BBHI", kind, code, s, word) + quoted


def main6(mode: str) -> None:
    """IPv6 (the kernel fills in ICMPv6 checksums): echo, corrupt, short:N, dup, delay:S and
    error:TYPE:CODE[:WORD] quoting as much of the request as fits 1280 bytes. A raw
    ICMPv6 socket has no IPv6 header, so the quote is rebuilt from what it tells."""
    sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
    print("ready", flush=True)
    while True:
        icmp, anc, _, addr = sock.recvmsg(65535, 256)
        if len(icmp) < 8 or icmp[0] != 128:
            continue
        dst = next(d[:16] for lvl, kind, d in anc if kind == socket.IPV6_PKTINFO)
        ident, seq = struct.unpack("!HH", icmp[4:8])
        payload = icmp[8:]
        name, _, arg = mode.partition(":")
        answers = [struct.pack("!BBHHH", 129, 0, 0, ident, seq) + payload]
        if name == "corrupt" and len(payload) > 20:
            bad = bytearray(payload)
            bad[20] ^= 0xFF
            answers = [struct.pack("!BBHHH", 129, 0, 0, ident, seq) + bytes(bad)]
        elif name == "short":
            answers = [answers[0][: 8 + int(arg)]]
        elif name == "dup":
            answers = answers * 2
        elif name == "error":
            kind, _, rest = arg.partition(":")
            code, _, word = rest.partition(":")
            src = socket.inet_pton(socket.AF_INET6, addr[0])
            head = struct.pack("!IHBB", 6 << 28, len(icmp), 58, 64) + src + dst
            quoted = (head + icmp)[: 1280 - 48]
            answers = [struct.pack("!BBHI", int(kind), int(code), 0, int(word or 0)) + quoted]
        for a in answers:
            if name == "delay":
                threading.Timer(float(arg), sock.sendto, (a, addr)).start()
                continue
            sock.sendto(a, addr)


if __name__ == "__main__":
    main(*sys.argv[1:3]) if len(sys.argv) > 1 else main("echo")
