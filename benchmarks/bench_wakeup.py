"""The floor under every round-trip figure of bench_endpoint: two Python processes that do
nothing but bounce 16 bytes over loopback TCP, one at a time, as the benchmark's
controller and an endpoint bounce an mread and its mdata.

Each round trip wakes the other process twice (once each way). On a VM whose idle vCPUs
halt (cpuidle ``haltpoll`` with ``guest_halt_poll_ns = 0`` here), waking a process that
sleeps on the *other* vCPU costs an inter-processor interrupt and a halt exit through the
hypervisor; on the *same* vCPU it is a local context switch; and a receiver that spins on
a non-blocking socket never sleeps at all. The modes:

* ``split``: both block, on different CPUs (what bench_endpoint does by default);
* ``pinned``: both block, on one CPU;
* ``spin``: both on different CPUs, the "controller" spins on its socket instead of
  blocking (the "endpoint" still blocks, as a Twisted reactor in epoll does);
* ``free``: both block, placed by the scheduler (no affinity set), which may keep them on
  one CPU or on two.

``--tls`` bounces each message as one TLS 1.3 record instead (stdlib ``SSLObject`` on
memory BIOs on both sides, as the benchmark's controller and the do-nothing endpoint do):
what TLS alone adds to a round trip in each placement.

Run from the repository root: ``python -m benchmarks.bench_wakeup [--count N]``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import socket
import ssl
import sys
import tempfile
import time
from typing import Any

from benchmarks.common import environment, markdown_table, percentile, write_json

MSG = bytes(16)


class _Records:
    """One TLS record per message over a blocking or non-blocking socket (memory BIOs);
    `recv` returns b"" only at the end of the stream, raises BlockingIOError like a socket."""

    def __init__(self, sock: socket.socket, ctx: ssl.SSLContext, server: bool) -> None:
        self.sock = sock
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_side=server)
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._push()
                self.inc.write(sock.recv(65536))
        self._push()

    def _push(self) -> None:
        if self.out.pending:
            self.sock.sendall(self.out.read())

    def send(self, data: bytes) -> int:
        self.obj.write(data)
        self._push()
        return len(data)

    def recv(self, size: int) -> bytes:
        while True:
            try:
                return self.obj.read(size)
            except ssl.SSLWantReadError:
                data = self.sock.recv(65536)
                if not data:
                    return b""
                self.inc.write(data)


def _contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server and a client context, TLS 1.3, a throwaway self-signed P-256 certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wakeup")])
    now = datetime.datetime.now(datetime.UTC)
    later = now + datetime.timedelta(days=1)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(later).sign(key, hashes.SHA256()))  # fmt: skip
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.NamedTemporaryFile() as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))  # fmt: skip
        f.flush()
        server.load_cert_chain(f.name)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    for ctx in (server, client):
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return server, client


def _echo(sock: Any) -> None:
    while True:
        data = sock.recv(64)
        if not data:
            return
        sock.send(data)


def run(mode: str, count: int, tls: bool = False) -> dict[str, Any]:
    cpus = sorted(os.sched_getaffinity(0))
    ctxs = _contexts() if tls else None
    ls = socket.create_server(("127.0.0.1", 0))
    port = ls.getsockname()[1]
    pid = os.fork()
    if pid == 0:  # the "endpoint": blocks in recv, answers at once
        try:
            if mode != "free":
                os.sched_setaffinity(0, {cpus[0]} if mode == "pinned" else {cpus[-1]})
            conn = socket.create_connection(("127.0.0.1", port))
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _echo(_Records(conn, ctxs[1], False) if ctxs else conn)
        finally:
            os._exit(0)
    mine = os.sched_getaffinity(0)
    try:
        if mode != "free":
            os.sched_setaffinity(0, {cpus[0]})
        raw, _ = ls.accept()
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock: Any = _Records(raw, ctxs[0], True) if ctxs else raw
        spin = mode == "spin"
        raw.setblocking(not spin)
        recv, send, clock = sock.recv, sock.send, time.perf_counter_ns
        rtts: list[int] = []
        for i in range(count + 200):  # the first 200: warm-up
            t0 = clock()
            send(MSG)
            while True:
                try:
                    if recv(64):
                        break
                except BlockingIOError:
                    continue
            if i >= 200:
                rtts.append(clock() - t0)
        raw.close()
    finally:
        os.sched_setaffinity(0, mine)
        os.waitpid(pid, 0)
        ls.close()
    return {"count": count, **{f"p{q}_us": percentile(rtts, q) / 1e3 for q in (10, 50, 90, 99)}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3, help="modes interleaved, this many times")
    ap.add_argument("--tls", action="store_true", help="one TLS 1.3 record per message")
    ap.add_argument("--mode", action="append", choices=["split", "pinned", "spin", "free"],
                    help="the placements to run (default: split, pinned, spin)")  # fmt: skip
    ap.add_argument("--json")
    args = ap.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        print("needs 2 CPUs", file=sys.stderr)
        return 2
    modes = tuple(args.mode or ("split", "pinned", "spin"))
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    for _ in range(args.rounds):
        for m in modes:
            runs[m].append(run(m, args.count, args.tls))
    rows = []
    for m in modes:
        p50s = sorted(r["p50_us"] for r in runs[m])
        mid = next(r for r in runs[m] if r["p50_us"] == p50s[len(p50s) // 2])
        rows.append([m, f"{mid['p50_us']:.1f}", f"{p50s[0]:.1f}-{p50s[-1]:.1f}",
                     f"{mid['p90_us']:.1f}", f"{mid['p99_us']:.1f}"])  # fmt: skip
    print(markdown_table(["mode", "round trip p50 µs", "p50 range", "p90", "p99"], rows))
    env = environment()
    print(f"\nload {env['loadavg_1min']} → {round(os.getloadavg()[0], 2)}")
    if args.json:
        write_json(args.json, {"environment": env, "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
