"""A router that extends its time exceeded with an MPLS label stack (RFC 4884/4950), for
traceroute -e testbeds.

Run it in a router's namespace with IPv4 forwarding off (then the kernel drops what it
would forward, silently), reading the probes that arrive on the interface towards the
tracing host:

    python -m packetlab.testbed.mpls_responder --iface to-ep --router 10.77.1.2 \\
        --target 10.77.3.2 --labels 16:0:0:1,24000:5:1:255 --target-ttl 62

A probe (UDP, or ICMP echo) to the target that arrives with TTL 1 is answered with a
time exceeded from the router whose quote is padded to 128 bytes and followed by an
extension structure holding one MPLS label stack object (`--labels`: label:exp:s:ttl
entries, top first), as an MPLS router extends it; a probe with more TTL left is
answered as the target would (port unreachable to UDP, echo reply to an echo request)
with the target's TTL `--target-ttl` as it reaches the tracer (traceroute --back reads
the hops back from it). IPv4 only.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import struct
import sys

from packetlab.testbed.probe import inet_checksum as checksum

_ETH_P_IP = 0x0800
_PACKET_OUTGOING = 4
_ICMP_ECHO_REPLY, _ICMP_UNREACH, _ICMP_ECHO, _ICMP_TIMXCEED = 0, 3, 8, 11


def extension(labels: list[tuple[int, int, int, int]]) -> bytes:
    """An RFC 4884 extension structure with one RFC 4950 label stack object."""
    words = b"".join(struct.pack("!I", lb << 12 | e << 9 | s << 8 | t) for lb, e, s, t in labels)
    body = struct.pack("!BBH", 0x20, 0, 0) + struct.pack("!HBB", 4 + len(words), 1, 1) + words
    return body[:2] + struct.pack("!H", checksum(body)) + body[4:]


def _ip(src: bytes, dst: bytes, ttl: int, body: bytes) -> bytes:
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 0, 0, ttl,
                       socket.IPPROTO_ICMP, 0, src, dst)  # fmt: skip
    return head[:10] + struct.pack("!H", checksum(head)) + head[12:] + body


def _icmp(icmp_type: int, code: int, rest: bytes, body: bytes) -> bytes:
    msg = struct.pack("!BBH", icmp_type, code, 0) + rest + body
    return msg[:2] + struct.pack("!H", checksum(msg)) + msg[4:]


def answer(
    packet: bytes, router: bytes, target: bytes, ext: bytes, target_ttl: int
) -> bytes | None:
    """The answer to an IPv4 probe for `target`, or None."""
    if len(packet) < 28 or packet[0] >> 4 != 4 or packet[16:20] != target:
        return None
    ihl = (packet[0] & 0x0F) * 4
    total = struct.unpack_from("!H", packet, 2)[0]
    packet = packet[:total]
    src, proto, ttl = packet[12:16], packet[9], packet[8]
    echo = proto == socket.IPPROTO_ICMP and packet[ihl] == _ICMP_ECHO
    if not echo and proto != socket.IPPROTO_UDP:
        return None
    if ttl <= 1:
        quote = packet[:128]
        quote += bytes(128 - len(quote))
        rest = struct.pack("!BBH", 0, len(quote) // 4, 0)  # RFC 4884: the quote's length
        return _ip(router, src, 64, _icmp(_ICMP_TIMXCEED, 0, rest, quote + ext))
    if echo:
        return _ip(target, src, target_ttl, _icmp(_ICMP_ECHO_REPLY, 0, b"", packet[ihl + 4 :]))
    return _ip(target, src, target_ttl, _icmp(_ICMP_UNREACH, 3, bytes(4), packet[: ihl + 8]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iface", required=True, help="the interface towards the tracer")
    ap.add_argument("--router", required=True, help="this router's address on it")
    ap.add_argument("--target", required=True, help="the address traced to")
    ap.add_argument("--labels", default="16:0:1:1", help="label:exp:s:ttl,... [16:0:1:1]")
    ap.add_argument("--target-ttl", type=int, default=63, help="TTL of the target's replies")
    args = ap.parse_args(argv)
    labels = [
        (int(a), int(b), int(c), int(d))
        for a, b, c, d in (x.split(":") for x in args.labels.split(","))
    ]
    ext = extension(labels)
    router = ipaddress.IPv4Address(args.router).packed
    target = ipaddress.IPv4Address(args.target).packed
    rx = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(_ETH_P_IP))
    rx.bind((args.iface, _ETH_P_IP))
    tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    print("ready", flush=True)
    while True:
        packet, addr = rx.recvfrom(65535)
        if addr[2] == _PACKET_OUTGOING:
            continue
        out = answer(packet, router, target, ext, args.target_ttl)
        if out is not None:
            tx.sendto(out, (socket.inet_ntoa(packet[12:16]), 0))


if __name__ == "__main__":
    sys.exit(main())
