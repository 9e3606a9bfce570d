"""Two reflexes written from docs/reflexes.md, side by side with the native responder the
same probes meet, on loopback, timed on the kernel's stamps of one packet capture.

* **Rate-limited echo** (`examples/reflexes/rate_echo.c`, a token bucket its timer
  refills) on a UDP socket of a real ``twistd pktendpoint`` over TLS, beside the same
  bucket in a plain Python echo server (a process of its own). Bursts of ``burst + 2``
  datagrams, then a pause long enough to refill: replies per burst, the bytes of each
  reply, and the reaction (probe's capture stamp -> reply's capture stamp).
* **TCP RST responder** (`examples/reflexes/tcp_rst.c`) on a raw socket capturing SYNs
  to a closed port, where the kernel answers each SYN with its own RST: per SYN, both
  RSTs, the bytes in which they differ, and each one's delay after the SYN.

The capture is ``AF_PACKET`` on ``lo`` (outgoing copies only: each loopback packet once)
with ``SO_TIMESTAMPNS``. Needs root (the capture, raw sockets). Run from the repository
root: ``python -m benchmarks.bench_reflex_native [--rounds N] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
ECHO = REPO / "examples" / "reflexes" / "rate_echo.c"
RST = REPO / "examples" / "reflexes" / "tcp_rst.c"
PACKET_OUTGOING = 4
SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33
SO_ATTACH_FILTER = 26
#: `tcpdump -i lo -dd 'outbound and less 200'`: in the kernel, so the bulk traffic of
#: others on lo neither fills the buffer nor keeps the reader busy.
SMALL_OUTGOING = [
    (0x28, 0, 0, 0xFFFFF004), (0x15, 0, 3, 4), (0x80, 0, 0, 0), (0x25, 1, 0, 200),
    (0x6, 0, 0, 0x40000), (0x6, 0, 0, 0),
]  # fmt: skip
MAX_DRAIN = 10_000  # packets read per drain (the reactor goes on between)
#: The same token bucket as rate_echo.c: starts full, one token back per interval.
NATIVE_ECHO = """
import socket, sys, time
burst, interval = int(sys.argv[1]), int(sys.argv[2]) * 1000
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
tokens, last = burst, None
while True:
    data, peer = s.recvfrom(65535)
    now = time.monotonic_ns()
    if last is not None:
        k = (now - last) // interval
        tokens, last = min(burst, tokens + k), last + k * interval
        if tokens == burst:
            last = None
    if tokens:
        s.sendto(data, peer)
        tokens -= 1
        if last is None:
            last = now
"""


def _die_with_parent() -> None:
    """The native echo ends with the benchmark, however the benchmark ends."""
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Capture:
    """Every outgoing packet on lo from now on, with its kernel stamp (ns)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(3))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        code = b"".join(struct.pack("HBBI", *op) for op in SMALL_OUTGOING)
        self._code = ctypes.create_string_buffer(code)
        prog = struct.pack("HL", len(SMALL_OUTGOING), ctypes.addressof(self._code))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, prog)
        self.sock.bind(("lo", 0))
        self.sock.setblocking(False)
        self.packets: list[tuple[int, bytes]] = []

    def drain(self) -> list[tuple[int, bytes]]:
        for _ in range(MAX_DRAIN):
            try:
                data, anc, _f, addr = self.sock.recvmsg(65535, 64)
            except BlockingIOError:
                return self.packets
            if addr[2] != PACKET_OUTGOING or not 0 < len(data) <= 200 or data[0] >> 4 != 4:
                continue  # only the small IPv4 packets: the probes, replies, SYNs, RSTs
            stamp = 0
            for level, kind, raw in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", raw[:16])
                    stamp = sec * 10**9 + nsec
            self.packets.append((stamp, data))
        return self.packets

    def close(self) -> None:
        self.sock.close()


def ports(ip: bytes) -> tuple[int, int, int]:
    """(protocol, source port, destination port) of an IPv4 packet."""
    ihl = (ip[0] & 15) * 4
    sport, dport = struct.unpack_from(">HH", ip, ihl)
    return ip[9], sport, dport


def udp_payload(ip: bytes) -> bytes:
    return ip[(ip[0] & 15) * 4 + 8 :]


async def sleep(reactor: Any, seconds: float, cap: Capture | None = None) -> None:
    """Wait; the capture drained every 10 ms meanwhile (other traffic on lo fills it)."""
    from twisted.internet import task

    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        await task.deferLater(reactor, min(left, 0.01))
        if cap is not None:
            cap.drain()


def echo_rows(cap: list[tuple[int, bytes]], client: int, server: int) -> dict[str, Any]:
    """Probes from `client` to `server` and the replies back, matched by payload."""
    probes: dict[bytes, int] = {}
    reactions, firsts, replies, same = [], [], 0, 0
    for stamp, ip in cap:
        proto, sport, dport = ports(ip)
        if proto != 17:
            continue
        if (sport, dport) == (client, server):
            probes.setdefault(udp_payload(ip), stamp)
        elif (sport, dport) == (server, client):
            replies += 1
            sent = probes.get(udp_payload(ip))
            if sent is not None:
                same += 1
                reactions.append((stamp - sent) / 1000)
                if udp_payload(ip).endswith(b" 0"):  # a burst's first: no queue before it
                    firsts.append(reactions[-1])
    return {"probes": len(probes), "replies": replies, "replies_equal_to_probe": same,
            "reaction_us": reactions, "first_reaction_us": firsts}  # fmt: skip


async def echo_burst(reactor: Any, client: socket.socket, to: tuple[str, int], tag: str,
                     args: argparse.Namespace, cap: Capture) -> None:  # fmt: skip
    """`rounds` bursts of burst + 2 datagrams, a refill's pause after each."""
    pause = (args.burst + 2) * args.interval_us / 1e6
    for r in range(args.rounds):
        for i in range(args.burst + 2):
            client.sendto(f"{tag} {r} {i}".encode(), to)
        await sleep(reactor, pause, cap)
    await sleep(reactor, 0.2, cap)


async def experiment(session: Any, reactor: Any, args: argparse.Namespace) -> dict[str, Any]:
    from packetlab.controller.filters import tcpdump_filter
    from packetlab.monitor.build import build

    out: dict[str, Any] = {}
    echo_wasm, rst_wasm = build(ECHO), build(RST)
    native = subprocess.Popen(
        [sys.executable, "-c", NATIVE_ECHO, str(args.burst), str(args.interval_us)],
        stdout=subprocess.PIPE, text=True, preexec_fn=_die_with_parent,
    )  # fmt: skip
    cap = Capture()
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        assert native.stdout is not None
        native_port = int(native.stdout.readline())
        sock = await session.nopen_udp(1, laddr="127.0.0.1")
        ep_port = int.from_bytes(await session.mread(0x20000000 + 1 * 0x400 + 0x30, 2), "big")
        params = struct.pack(">II", args.burst, args.interval_us)
        reflex = await session.attach_reflex(sock, echo_wasm, params)
        client.bind(("127.0.0.1", 0))
        cport = client.getsockname()[1]
        await echo_burst(reactor, client, ("127.0.0.1", ep_port), "reflex", args, cap)
        await echo_burst(reactor, client, ("127.0.0.1", native_port), "native", args, cap)
        st = await reflex.status()
        state = await reflex.state(0, 13)
        await reflex.detach()
        cap.drain()
        out["echo"] = {
            "reflex": echo_rows(cap.packets, cport, ep_port),
            "native": echo_rows(cap.packets, cport, native_port),
            "reflex_status": {"runs": st.runs, "sent": st.sent, "denied": st.denied,
                              "refused": st.refused, "state": state.hex()},
        }  # fmt: skip
        cap.packets.clear()
        # RST: a closed port (bound, then closed), SYNs from connect()s the kernel refuses
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
        probe.close()
        raw = await session.nopen_raw(2, laddr="127.0.0.1")
        expr = f"tcp[tcpflags] == tcp-syn and dst port {closed}"
        await session.ncap(2, tcpdump_filter(expr), endtime=time.time_ns() + 600 * 10**9)
        rreflex = await session.attach_reflex(raw, rst_wasm)
        for _ in range(args.syns):
            c = socket.socket()
            c.setblocking(False)
            try:
                c.connect(("127.0.0.1", closed))
            except (BlockingIOError, ConnectionRefusedError):
                pass
            await sleep(reactor, args.interval_us / 1e6 * 5, cap)
            c.close()
        await sleep(reactor, 0.3, cap)
        rst = await rreflex.status()
        await rreflex.detach()
        cap.drain()
        out["rst"] = rst_rows(cap.packets, closed) | {
            "reflex_status": {"runs": rst.runs, "sent": rst.sent, "denied": rst.denied,
                              "refused": rst.refused, "lasterr": rst.lasterr_text},
        }  # fmt: skip
    finally:
        client.close()
        cap.close()
        native.kill()
        native.wait()
    return out


def rst_rows(cap: list[tuple[int, bytes]], closed: int) -> dict[str, Any]:
    """Per SYN to `closed`: the RSTs back, their delays, the bytes where they differ."""
    syns: dict[int, int] = {}
    rsts: dict[int, list[tuple[int, bytes]]] = {}
    for stamp, ip in cap:
        proto, sport, dport = ports(ip)
        if proto != 6:
            continue
        flags = ip[(ip[0] & 15) * 4 + 13]
        if dport == closed and flags & 0x12 == 0x02:
            syns.setdefault(sport, stamp)
        elif sport == closed and flags & 0x04:
            rsts.setdefault(dport, []).append((stamp, ip))
    counts, first, second, diffs = [], [], [], set()
    sample: list[str] = []
    for port, t0 in syns.items():
        got = rsts.get(port, [])
        counts.append(len(got))
        if got:
            first.append((got[0][0] - t0) / 1000)
        if len(got) >= 2:
            second.append((got[1][0] - t0) / 1000)
            a, b = got[0][1], got[1][1]
            diffs |= {i for i in range(max(len(a), len(b))) if a[i : i + 1] != b[i : i + 1]}
            if not sample:
                sample = [a.hex(), b.hex()]
    return {
        "syns": len(syns), "rsts_per_syn": counts, "first_rst_us": first,
        "second_rst_us": second, "differing_bytes": sorted(diffs), "sample": sample,
    }  # fmt: skip


def p50(xs: list[float]) -> float | None:
    return round(statistics.median(xs), 1) if xs else None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=10, help="echo bursts per responder")
    p.add_argument("--burst", type=int, default=3, help="the bucket's size")
    p.add_argument("--interval-us", type=int, default=2000, help="one token back per this")
    p.add_argument("--syns", type=int, default=20, help="SYNs to the closed port")
    p.add_argument("--json", type=Path, help="write the results here too")
    args = p.parse_args()
    from twisted.internet import defer, task

    from benchmarks.reflex_world import run_experiment

    async def go(reactor: Any) -> None:
        res = await run_experiment(
            reactor, lambda s: defer.ensureDeferred(experiment(s, reactor, args)),
            sources=[ECHO, RST], conf="TransprotoSup raw,tcp,udp\n", timeout=300,
        )  # fmt: skip
        for who in ("reflex", "native"):
            e = res["echo"][who]
            print(f"echo {who}: {e['probes']} probes, {e['replies']} replies "
                  f"({e['replies_equal_to_probe']} equal to their probe), reaction p50 "
                  f"{p50(e['reaction_us'])} us (a burst's first {p50(e['first_reaction_us'])} "
                  "us)")  # fmt: skip
        print(f"echo reflex status: {res['echo']['reflex_status']}")
        r = res["rst"]
        print(f"rst: {r['syns']} SYNs, RSTs per SYN {sorted(set(r['rsts_per_syn']))}, first "
              f"p50 {p50(r['first_rst_us'])} us, second p50 {p50(r['second_rst_us'])} us, "
              f"differing bytes {r['differing_bytes']}")  # fmt: skip
        print(f"rst sample: {r['sample']}")
        print(f"rst reflex status: {r['reflex_status']}")
        if args.json:
            args.json.write_text(json.dumps({"results": res}))

    task.react(lambda r: defer.ensureDeferred(go(r)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
