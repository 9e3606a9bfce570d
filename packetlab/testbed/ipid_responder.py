"""A responder with chosen IP-ID counters, for alias-resolution testbeds.

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

A group may name the probes it answers (alias resolution's probe methods), e.g.
``--group 10.77.3.20,10.77.3.21@tcp-ack,udp`` (default ``icmp-echo``): ``tcp-ack``
answers a bare TCP ACK with a RST (its sequence number the ACK's acknowledgment number),
``udp`` a datagram to `--udp-port` with an ICMP port unreachable, both from the group's
counter; ``tcp-syn`` (session 27: scamper's tcp-syn-sport) a SYN with a RST-ACK
acknowledging it, as a closed port does (a group with ``tcp-syn`` and not ``tcp-ack`` is
a router behind a stateful firewall that drops stray ACKs). `--udp-ports N` answers UDP
to N ports from `--udp-port` on (scamper's udp-dport: one up per probe). The kernel's own
answers must be kept out: for UDP the responder binds the port
on those addresses (so the kernel has a socket and sends no port unreachable); the
kernel's RSTs carry IP-ID 0 (DF, no connected destination), so the test drops RSTs with
ID 0 on the way out (a tc filter), and the responder never numbers a reply 0.

``--ttl-exceeded DST=ADDR`` plays a router ADDR one hop before DST for indirect probing
(MIDAR's, scamper's probe definitions with a TTL): an echo request to DST (an address of
this node) that arrives with TTL 1 is answered with an ICMP time exceeded from ADDR
quoting it, numbered from ADDR's group's counter. ADDR need not be an address of any
node (then nothing answers it directly: only indirect probing reads its counter).
``DST=ADDR,ADDR2,...`` plays a per-flow load balancer's next hops one TTL before DST:
each probe's flow (an echo request's ICMP checksum, as Paris traceroute's ICMP flows; a
UDP datagram's or TCP segment's source port, as its UDP flows, answered with TTL 1
too) picks one of the
addresses by a hash, so a multipath trace finds them all at one hop, each numbering its
time exceeded from its own group's counter (two of one group: one router's two
interfaces). ``--mpls ADDR=LABEL[/LABEL...]`` extends ADDR's time exceeded with that MPLS
label stack (RFC 4884/4950: the quote padded to 128 bytes, then the extension structure,
as `packetlab.testbed.mpls_responder` builds it), as a label switching router quotes the
label the probes arrived with (Multilevel MDA-Lite's MPLS fingerprint).

The routers no IP-ID test can resolve (session 24, beside scamper's dealias): a group
``ADDR,...:zero`` numbers every reply 0, ``ADDR,...:random`` each with a random ID (a
counter is ``:counter``, the default). ``--errors-from ADDR=SRC`` sends ADDR's port
unreachable from SRC, as a router that answers from one common address (Mercator's
alias: the probed address and the reply's source are one router's).
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
import zlib
from collections.abc import Mapping, Sequence

from packetlab.testbed.probe import inet_checksum as checksum

_ICMP_ECHO, _ICMP_REPLY, _ICMP_UNREACH, _PORT_UNREACH, _ICMP_TIMXCEED = 8, 0, 3, 3, 11
_TCP_SYN, _TCP_RST, _TCP_ACK = 0x02, 0x04, 0x10
METHODS = ("icmp-echo", "tcp-ack", "udp", "tcp-syn")


KINDS = ("counter", "zero", "random", "swapped")  # how a group numbers its replies


class Counter:
    """A group's IP-IDs: a shared counter (`kind` "counter"), or the two kinds of router
    whose IDs no test can use: every reply 0 ("zero"), a fresh random ID each ("random",
    never 0); "swapped": a counter written in little-endian byte order (a host that
    stores the ID without htons: on the wire it moves 256 a step)."""

    def __init__(self, velocity: float, start: int | None = None, kind: str = "counter") -> None:
        self.value = random.randrange(1 << 16) if start is None else start
        self.velocity = velocity
        self.last = time.monotonic()
        self.kind = kind

    def next(self) -> int:
        if self.kind == "zero":
            return 0
        if self.kind == "random":
            return random.randrange(1, 1 << 16)
        now = time.monotonic()
        self.value = (self.value + 1 + int(self.velocity * (now - self.last))) & 0xFFFF
        self.value = self.value or 1  # never 0: the kernel's RSTs are told apart by it
        self.last = now
        if self.kind == "swapped":
            return ((self.value & 0xFF) << 8) | (self.value >> 8) or 1
        return self.value


class Odd:
    """How the responder misbehaves for some addresses (session 30, the odd responders
    beside scamper's dealias): `every[ADDR] = N` sends only every N-th reply for ADDR
    (a router that answers some probes only), `rate[ADDR] = N` at most N a second (a
    token bucket holding N, as a router rate-limiting its ICMP), `duplicate`: each reply
    sent twice (a duplicating link: the same packet, one IP-ID). A reply not sent was
    numbered all the same (as one lost on the way back: its counter moved one on)."""

    def __init__(self, every: Mapping[bytes, int] | None = None,
                 rate: Mapping[bytes, float] | None = None,
                 duplicate: set[bytes] | None = None) -> None:  # fmt: skip
        self.every, self.rate = dict(every or {}), dict(rate or {})
        self.duplicate = set(duplicate or ())
        self.seen: dict[bytes, int] = {}
        self.tokens: dict[bytes, tuple[float, float]] = {}  # addr -> (tokens, at)

    def copies(self, dst: bytes, now: float) -> int:
        """How many times to send the reply to a probe for `dst` (0: none)."""
        n = self.seen[dst] = self.seen.get(dst, 0) + 1
        if dst in self.every and n % self.every[dst] != 0:
            return 0
        if dst in self.rate:
            per_s = self.rate[dst]
            tokens, at = self.tokens.get(dst, (per_s, now))
            tokens = min(per_s, tokens + (now - at) * per_s)
            if tokens < 1:
                self.tokens[dst] = (tokens, now)
                return 0
            self.tokens[dst] = (tokens - 1, now)
        return 2 if dst in self.duplicate else 1


def _df(ident: int) -> int:
    """The fragment field: DF with an IP-ID of 0, as Linux numbers its DF replies 0 (and
    a raw socket's header with ID 0 and no DF gets an ID from the kernel, not 0)."""
    return 0x4000 if ident == 0 else 0


def _ip(src: bytes, dst: bytes, proto: int, ident: int, body: bytes) -> bytes:
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), ident, _df(ident), 64, proto,
                       0, src, dst)  # fmt: skip
    return head[:10] + struct.pack("!H", checksum(head)) + head[12:] + body


def answer(
    packet: bytes,
    counters: dict[bytes, Counter],
    methods: dict[bytes, set[str]],
    udp_port: int,
    expire: Mapping[bytes, Sequence[bytes]] | None = None,
    labels: Mapping[bytes, bytes] | None = None,
    sources: Mapping[bytes, bytes] | None = None,
    udp_ports: int = 1,
    echo_from: Mapping[bytes, bytes] | None = None,
) -> bytes | None:
    """The reply to an IPv4 probe for one of our addresses by a method its group answers
    (echo reply, RST to a bare ACK, port unreachable to `udp_port`), or to an echo
    request for a DST of `expire` arriving with TTL 1 (a time exceeded from its router
    address, numbered by that address's counter; with `labels`' extension for that
    address after the quote padded to 128 bytes), else None. `sources`: the address a
    port unreachable for a probed address is sent from, when not that address itself."""
    if len(packet) < 28 or packet[0] >> 4 != 4:
        return None
    ihl = (packet[0] & 0x0F) * 4
    src, dst, proto = packet[12:16], packet[16:20], packet[9]
    routers = (expire or {}).get(dst)
    expiring = (socket.IPPROTO_ICMP, socket.IPPROTO_UDP, socket.IPPROTO_TCP)
    if routers and packet[8] <= 1 and proto in expiring:
        if proto == socket.IPPROTO_ICMP and packet[ihl] != _ICMP_ECHO:
            return None
        # the flow: the ICMP checksum, or the UDP (TCP: session 27) source port
        flow = packet[ihl + 2 : ihl + 4] if proto == socket.IPPROTO_ICMP else packet[ihl : ihl + 2]
        router = routers[zlib.crc32(flow) % len(routers)]
        icmp = bytes([_ICMP_TIMXCEED, 0, 0, 0, 0, 0, 0, 0]) + packet[: ihl + 8]
        ext = (labels or {}).get(router)
        if ext is not None:  # RFC 4884: the quote's length in words, 128 bytes of it
            icmp = icmp[:5] + bytes([32]) + icmp[6:8] + icmp[8:].ljust(128, b"\0") + ext
        icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
        return _ip(router, src, socket.IPPROTO_ICMP, counters[router].next(), icmp)
    counter, how = counters.get(dst), methods.get(dst, set())
    if counter is None:
        return None
    if proto == socket.IPPROTO_ICMP and "icmp-echo" in how:
        return reply(packet, counters, (echo_from or {}).get(dst))
    seg = packet[ihl:]
    if proto == socket.IPPROTO_TCP and how & {"tcp-ack", "tcp-syn"} and len(seg) >= 20:
        sport, dport, seq, ack, off, flags = struct.unpack_from("!HHIIBB", seg)
        if flags == _TCP_SYN and "tcp-syn" in how:  # a closed port's RST-ACK to a SYN
            size = len(packet) - ihl - (off >> 4) * 4  # (its payload is acknowledged too)
            ack_out = (seq + 1 + size) & 0xFFFFFFFF
            tcp = struct.pack("!HHIIBBHHH", dport, sport, 0, ack_out, 5 << 4,
                              _TCP_RST | _TCP_ACK, 0, 0, 0)  # fmt: skip
        elif "tcp-ack" in how and not flags & (_TCP_SYN | _TCP_RST) and flags & _TCP_ACK:
            tcp = struct.pack("!HHIIBBHHH", dport, sport, ack, 0, 5 << 4, _TCP_RST, 0, 0, 0)
        else:
            return None
        pseudo = dst + src + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
        tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
        return _ip(dst, src, socket.IPPROTO_TCP, counter.next(), tcp)
    if proto == socket.IPPROTO_UDP and "udp" in how and len(seg) >= 8:
        if not 0 <= struct.unpack_from("!H", seg, 2)[0] - udp_port < udp_ports:
            return None
        icmp = bytes([_ICMP_UNREACH, _PORT_UNREACH, 0, 0, 0, 0, 0, 0]) + packet[: ihl + 8]
        icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
        origin = (sources or {}).get(dst, dst)  # (a router's common source address)
        return _ip(origin, src, socket.IPPROTO_ICMP, counter.next(), icmp)
    return None


def reply(
    packet: bytes, counters: dict[bytes, Counter], source: bytes | None = None
) -> bytes | None:
    """The echo reply to an IPv4 echo request for one of our addresses, else None; from
    `source` when given (a host answering from another address)."""
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
    ident = counter.next()
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), ident, _df(ident), 64,
                       socket.IPPROTO_ICMP, 0, source or dst, src)  # fmt: skip
    head = head[:10] + struct.pack("!H", checksum(head)) + head[12:]
    return head + body


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--group", action="append", required=True,
                    metavar="ADDR[,ADDR...][@METHOD,...][:KIND]",
                    help="addresses answering from one shared counter (repeatable); the "
                    "probes they answer: icmp-echo (default), tcp-ack, udp, tcp-syn; KIND: counter "
                    "(default), zero (every IP-ID 0), random (a random IP-ID each), swapped "
                    "(a counter in little-endian byte order)")  # fmt: skip
    ap.add_argument("--errors-from", action="append", default=[], metavar="ADDR=SRC",
                    help="the port unreachable for a UDP probe to ADDR comes from SRC (a "
                    "router's common source address: Mercator's alias), repeatable")  # fmt: skip
    ap.add_argument("--udp-port", type=int, default=33435, help="UDP port answered [33435]")
    ap.add_argument("--udp-ports", type=int, default=1, metavar="N",
                    help="answer UDP to N ports from --udp-port on [1]")  # fmt: skip
    ap.add_argument("--ttl-exceeded", action="append", default=[],
                    metavar="DST=ADDR[,ADDR...]",
                    help="echo requests to DST arriving with TTL 1: a time exceeded from "
                    "ADDR (an address of a --group: its counter), repeatable; several: "
                    "one per flow (ICMP checksum, UDP source port; UDP too)")  # fmt: skip
    ap.add_argument("--mpls", action="append", default=[], metavar="ADDR=LABEL[/LABEL...]",
                    help="ADDR's time exceeded (--ttl-exceeded) carries this MPLS label "
                    "stack, top first (repeatable)")  # fmt: skip
    ap.add_argument("--echo-from", action="append", default=[], metavar="ADDR=SRC",
                    help="the echo reply for ADDR comes from SRC (repeatable)")  # fmt: skip
    ap.add_argument("--answer-every", action="append", default=[], metavar="ADDR=N",
                    help="answer only every N-th probe to ADDR (repeatable)")  # fmt: skip
    ap.add_argument("--rate-limit", action="append", default=[], metavar="ADDR=N",
                    help="answer at most N probes to ADDR a second (repeatable)")  # fmt: skip
    ap.add_argument("--duplicate", action="append", default=[], metavar="ADDR",
                    help="send each reply to a probe of ADDR twice (repeatable)")  # fmt: skip
    ap.add_argument("--velocity", type=float, default=100.0, help="IDs per second [100]")
    ap.add_argument("--quiet-kernel", action="store_true",
                    help="set net.ipv4.icmp_echo_ignore_all=1 here first")  # fmt: skip
    args = ap.parse_args(argv)
    counters: dict[bytes, Counter] = {}
    methods: dict[bytes, set[str]] = {}
    for group in args.group:
        spec, _, kind = group.partition(":")
        addrs, _, how = spec.partition("@")
        wanted = {m.strip() for m in (how or "icmp-echo").split(",")}
        if not wanted <= set(METHODS):
            ap.error(f"--group {group}: methods are {', '.join(METHODS)}")
        if kind and kind not in KINDS:
            ap.error(f"--group {group}: kinds are {', '.join(KINDS)}")
        c = Counter(args.velocity, kind=kind or "counter")
        for a in addrs.split(","):
            counters[ipaddress.IPv4Address(a.strip()).packed] = c
            methods[ipaddress.IPv4Address(a.strip()).packed] = wanted
    expire: dict[bytes, tuple[bytes, ...]] = {}
    for spec in args.ttl_exceeded:
        dst, _, routers = spec.partition("=")
        rs = tuple(ipaddress.IPv4Address(r.strip()).packed for r in routers.split(","))
        for router, r in zip(routers.split(","), rs, strict=True):
            if r not in counters:
                ap.error(f"--ttl-exceeded {spec}: {router} is in no --group")
        expire[ipaddress.IPv4Address(dst.strip()).packed] = rs
    labels: dict[bytes, bytes] = {}
    for spec in args.mpls:
        addr, _, stack = spec.partition("=")
        try:
            words = [int(x) for x in stack.split("/")]
        except ValueError:
            ap.error(f"--mpls {spec}: labels are numbers, e.g. 10.0.0.1=24001/16")
        if any(not 0 <= w < 1 << 20 for w in words):
            ap.error(f"--mpls {spec}: labels are 0..1048575")
        from packetlab.testbed.mpls_responder import extension

        labels[ipaddress.IPv4Address(addr.strip()).packed] = extension(
            [(w, 0, int(i == len(words) - 1), 1) for i, w in enumerate(words)]
        )
    sources: dict[bytes, bytes] = {}
    for spec in args.errors_from:
        addr, _, origin = spec.partition("=")
        a, o = ipaddress.IPv4Address(addr.strip()).packed, ipaddress.IPv4Address(origin).packed
        if a not in counters:
            ap.error(f"--errors-from {spec}: {addr} is in no --group")
        sources[a] = o

    echo_from = {ipaddress.IPv4Address(a.strip()).packed: ipaddress.IPv4Address(o.strip()).packed
                 for a, _, o in (x.partition("=") for x in args.echo_from)}  # fmt: skip

    def addr_n(spec: str) -> tuple[bytes, float]:
        addr, _, n = spec.partition("=")
        return ipaddress.IPv4Address(addr.strip()).packed, float(n)

    odd = Odd({a: int(n) for a, n in map(addr_n, args.answer_every)},
              dict(map(addr_n, args.rate_limit)),
              {ipaddress.IPv4Address(a).packed for a in args.duplicate})  # fmt: skip
    if args.quiet_kernel:
        subprocess.run(["sysctl", "-q", "-w", "net.ipv4.icmp_echo_ignore_all=1"], check=True)
    rxs = [socket.socket(socket.AF_INET, socket.SOCK_RAW, p)
           for p in (socket.IPPROTO_ICMP, socket.IPPROTO_TCP, socket.IPPROTO_UDP)]  # fmt: skip
    bound = []  # a socket on the UDP port: the kernel sends no port unreachable of its own
    for a, how in methods.items():
        if "udp" in how:
            for port in range(args.udp_port, args.udp_port + args.udp_ports):
                u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                u.bind((socket.inet_ntoa(a), port))
                bound.append(u)
    tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    print("ready", flush=True)
    while True:
        ready, _, _ = select.select([*rxs, *bound], [], [])
        for rx in ready:
            packet = rx.recv(65535)
            if rx in bound:
                continue  # the datagram itself, answered from its raw copy
            out = answer(packet, counters, methods, args.udp_port, expire, labels, sources,
                         args.udp_ports, echo_from)  # fmt: skip
            if out is not None:
                for _ in range(odd.copies(packet[16:20], time.monotonic())):
                    tx.sendto(out, (socket.inet_ntoa(packet[12:16]), 0))


if __name__ == "__main__":
    sys.exit(main())
