"""An ICMP echo responder with chosen IP-ID counters, for alias-resolution testbeds.

Linux draws the IP-ID of an echo reply from a hashed per-destination counter, so two
addresses of one Linux router never look like aliases to MIDAR. This responder answers
echo requests for the addresses it is given, each group of addresses from one shared
counter (true aliases: a router that numbers every packet it sends from one counter),
different groups from independent counters starting at random values:

    python -m packetlab.testbed.ipid_responder --group 10.77.3.10,10.77.3.11 \\
        --group 10.77.3.12 --velocity 200

Run it inside a testbed namespace that holds the addresses, with the kernel's own echo
replies off (`net.ipv4.icmp_echo_ignore_all=1`: `--quiet-kernel` sets it in the
namespace). Each counter also advances `--velocity` IDs per second between replies (the
router's other traffic). IPv4 only (IPv6 has no IP-ID in its base header).
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import select
import socket
import struct
import subprocess
import sys
import time

_ICMP_ECHO, _ICMP_REPLY = 8, 0


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


class Counter:
    def __init__(self, velocity: float, start: int | None = None) -> None:
        self.value = random.randrange(1 << 16) if start is None else start
        self.velocity = velocity
        self.last = time.monotonic()

    def next(self) -> int:
        now = time.monotonic()
        self.value = (self.value + 1 + int(self.velocity * (now - self.last))) & 0xFFFF
        self.last = now
        return self.value


def reply(packet: bytes, counters: dict[bytes, Counter]) -> bytes | None:
    """The echo reply to an IPv4 echo request for one of our addresses, else None."""
    if len(packet) < 28 or packet[0] >> 4 != 4:
        return None
    ihl = (packet[0] & 0x0F) * 4
    src, dst = packet[12:16], packet[16:20]
    icmp = packet[ihl:]
    if packet[9] != socket.IPPROTO_ICMP or len(icmp) < 8 or icmp[0] != _ICMP_ECHO:
        return None
    counter = counters.get(dst)
    if counter is None:
        return None
    body = bytes([_ICMP_REPLY, 0, 0, 0]) + icmp[4:]
    body = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), counter.next(), 0, 64,
                       socket.IPPROTO_ICMP, 0, dst, src)  # fmt: skip
    head = head[:10] + struct.pack("!H", checksum(head)) + head[12:]
    return head + body


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--group", action="append", required=True, metavar="ADDR[,ADDR...]",
                    help="addresses answering from one shared counter (repeatable)")  # fmt: skip
    ap.add_argument("--velocity", type=float, default=100.0, help="IDs per second [100]")
    ap.add_argument("--quiet-kernel", action="store_true",
                    help="set net.ipv4.icmp_echo_ignore_all=1 here first")  # fmt: skip
    args = ap.parse_args(argv)
    counters: dict[bytes, Counter] = {}
    for group in args.group:
        c = Counter(args.velocity)
        for a in group.split(","):
            counters[ipaddress.IPv4Address(a.strip()).packed] = c
    if args.quiet_kernel:
        subprocess.run(["sysctl", "-q", "-w", "net.ipv4.icmp_echo_ignore_all=1"], check=True)
    rx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    print("ready", flush=True)
    while True:
        select.select([rx], [], [])
        packet = rx.recv(65535)
        out = reply(packet, counters)
        if out is not None:
            tx.sendto(out, (socket.inet_ntoa(packet[12:16]), 0))


if __name__ == "__main__":
    sys.exit(main())
