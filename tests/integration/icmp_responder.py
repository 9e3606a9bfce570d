"""Answer every packet that comes in for a prefix with one ICMP error of a given type and
code, as a router would that had no other way to say it: `!S`, `!V`, `!C`, `!<num>`,
`!<type-code>` and `!F-0` cannot be had from Linux's routes (and this host has no
iptables for REJECT), so traceroute's notes for them are tested against this.

``python icmp_responder.py 4|6 PREFIX TYPE CODE SECONDS [INFO [FROM]]``, run in a router's
namespace whose route to PREFIX is a blackhole (its kernel then says nothing itself): an
AF_PACKET socket sees each packet coming in for PREFIX, a raw ICMP socket answers it to
its source, quoting it as Linux quotes (576 bytes in all over IPv4, 1280 over IPv6); INFO
is the 32-bit word after the checksum (the MTU of "fragmentation needed" in its low 16
bits; 0 by default); FROM (IPv4) the source address to answer from (IP_HDRINCL: e.g.
the probe's destination, a "time exceeded" from the target itself). Prints
``listening``; stops after SECONDS or on SIGTERM.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import sys
import time

from packetlab.testbed.probe import inet_checksum as checksum

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def main() -> None:
    version = int(sys.argv[1])
    prefix = ipaddress.ip_network(sys.argv[2])
    icmp_type, code, seconds = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    info = int(sys.argv[6]) if len(sys.argv) > 6 else 0
    forged = socket.inet_aton(sys.argv[7]) if len(sys.argv) > 7 else None
    sniff = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
    sniff.settimeout(0.5)
    if version == 4:
        out = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        room = 576 - 20 - 8
    else:  # (the kernel fills in an ICMPv6 checksum: its pseudo-header needs the source)
        out = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        room = 1280 - 40 - 8
    print("listening", flush=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            packet, (_dev, _proto, pkttype, *_) = sniff.recvfrom(65535)
        except TimeoutError:
            continue
        if pkttype == PACKET_OUTGOING or not packet or packet[0] >> 4 != version:
            continue
        if version == 4:
            src, dst = packet[12:16], packet[16:20]
            if packet[9] == socket.IPPROTO_ICMP and packet[(packet[0] & 0xF) * 4] != 8:
                continue  # (ICMP: echo requests only, never an error)
        else:
            src, dst = packet[8:24], packet[24:40]
            if packet[6] == socket.IPPROTO_ICMPV6 and packet[40] != 128:
                continue
        if ipaddress.ip_address(dst) not in prefix:
            continue
        head = struct.pack("!BBHI", icmp_type, code, 0, info) + packet[:room]
        if version == 4:
            head = head[:2] + struct.pack("!H", checksum(head)) + head[4:]
        if forged is not None:  # (the kernel fills in the IP checksum and ID)
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(head), 0, 0, 64, 1, 0,
                             forged, src)  # fmt: skip
            raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
            raw.sendto(ip + head, (str(ipaddress.ip_address(src)), 0))
            raw.close()
            continue
        out.sendto(head, (str(ipaddress.ip_address(src)), 0))


if __name__ == "__main__":
    main()
