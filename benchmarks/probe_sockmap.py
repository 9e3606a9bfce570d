"""What a plain BPF sockmap relay does on this kernel (session 28; Linux, root).

Not a relay mode of the proxy: a standalone probe that answers the three questions a
`--relay sockmap` would have to pass first (docs/performance.md, Proxy, session 28):

* ``memory``: a sink that reads nothing for ``--seconds`` while the source sends as fast
  as it can. Samples, each second: what the source got rid of, /proc/net/sockstat's
  ``TCP mem``, /proc/meminfo's ``Slab`` and ``MemAvailable``, this process's RSS (the
  "proxy"). Stops early if MemAvailable fell by ``--mem-cap-mib`` (the machine is shared).
* ``bulk``: ``--mib`` MiB one way (or ``--both``: each way at once), SHA-256 of what each
  side sent against what the other received, and the CPU seconds of source, sink, this
  process and every kworker/ksoftirqd thread (the kernel's redirect work runs there)
  per GiB; ``--relay direct`` for the same transfer without a proxy, ``--relay copy``
  through a plain user-space copy (a thread per direction) in the same harness.

The proxy side: accept the source, read its 517-byte "ClientHello" in user space, connect
to the sink, put both sockets in a SOCKHASH (each under its peer's socket cookie), then
forward the hello; the sink answers 1 byte (redirected by the kernel) and only then does
the source send its bulk (as a TLS client waits for the ServerHello), so no byte is queued
before the pairing. The verdict program (16 instructions): drop a 0-byte skb (a FIN:
redirected it makes the peer's psock report EPIPE, session 5), else redirect it to the
egress of the socket stored under its own cookie, or pass it if there is none.

    .venv/bin/python -m benchmarks.probe_sockmap memory --seconds 30
    .venv/bin/python -m benchmarks.probe_sockmap bulk --mib 512 --relay direct,sockmap
    .venv/bin/python -m benchmarks.probe_sockmap bulk --mib 512 --both --relay sockmap
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import hashlib
import os
import platform
import resource
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from typing import Any

_NR_BPF = {"x86_64": 321, "aarch64": 280}
_MAP_CREATE, _MAP_UPDATE, _MAP_DELETE, _PROG_LOAD, _PROG_ATTACH = 0, 2, 3, 5, 8
_MAP_SOCKHASH = 18
_PROG_SK_SKB = 14
_SK_SKB_STREAM_PARSER, _SK_SKB_STREAM_VERDICT = 4, 5
_SK_SKB_VERDICT = 38  # BPF_SK_SKB_VERDICT: no strparser (Linux 5.13+)
_FN_COOKIE, _FN_REDIRECT_HASH = 46, 72
SO_COOKIE = 57
HELLO = 517
CHUNK = 1 << 20
IDLE = 30.0  # an end that moves nothing for this long gives up (a relay that lost bytes)


def _ins(op: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", op, src << 4 | dst, off, imm)


def verdict_program(socks_fd: int) -> bytes:
    """r6 = skb; if skb->len == 0: drop; fp-8 = cookie(skb); redirect_hash(skb, socks,
    fp-8, 0 = egress) or pass."""
    ldx_w, stx_dw, mov_x, mov_k = 0x61, 0x7B, 0xBF, 0xB7
    return b"".join([
        _ins(mov_x, 6, 1),                     # r6 = skb
        _ins(ldx_w, 2, 1, 0),                  # r2 = skb->len
        _ins(0x15, 2, 0, 12, 0),               # if r2 == 0 goto drop (+12)
        _ins(0x85, imm=_FN_COOKIE),            # r0 = bpf_get_socket_cookie(skb)
        _ins(stx_dw, 10, 0, -8),               # *(u64 *)(fp - 8) = r0
        _ins(mov_x, 1, 6),                     # r1 = skb
        _ins(0x18, 2, 1, 0, socks_fd), _ins(0),  # r2 = &socks (ld_imm64, pseudo map fd)
        _ins(mov_x, 3, 10), _ins(0x07, 3, imm=-8),  # r3 = fp - 8
        _ins(mov_k, 4, imm=0),                 # r4 = 0: the peer's egress
        _ins(0x85, imm=_FN_REDIRECT_HASH),     # r0 = SK_PASS (redirected) or SK_DROP
        _ins(0x55, 0, 0, 1, 0),                # if r0 != 0 goto exit (+1)
        _ins(mov_k, 0, imm=1),                 # no peer in the map: SK_PASS to own queue
        _ins(0x95),                            # exit
        _ins(mov_k, 0, imm=0), _ins(0x95),     # drop: SK_DROP
    ])  # fmt: skip


_libc: Any = None


def _bpf(cmd: int, attr: bytes) -> int:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    buf = ctypes.create_string_buffer(attr, 128)
    nr = _NR_BPF[platform.machine()]
    r = _libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), buf, ctypes.c_uint(128))
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return int(r)


class Sockmap:
    """`attach`: "verdict" (BPF_SK_SKB_VERDICT, each skb as it comes) or "stream" (a
    strparser whose parser program takes each skb whole as one message, then
    BPF_SK_SKB_STREAM_VERDICT)."""

    def __init__(self, attach: str = "verdict") -> None:
        self.socks = _bpf(_MAP_CREATE, struct.pack("<IIIII", _MAP_SOCKHASH, 8, 8, 1024, 0))
        if attach == "stream":
            parser = _ins(0x61, 0, 1, 0) + _ins(0x95)  # r0 = skb->len: the whole skb
            _bpf(_PROG_ATTACH, struct.pack("<IIII", self.socks, self._load(parser, 0),
                                           _SK_SKB_STREAM_PARSER, 0))  # fmt: skip
            verdict_attach, expected = _SK_SKB_STREAM_VERDICT, 0
        else:
            verdict_attach = expected = _SK_SKB_VERDICT
        self.prog = self._load(verdict_program(self.socks), expected)
        _bpf(_PROG_ATTACH, struct.pack("<IIII", self.socks, self.prog, verdict_attach, 0))

    @staticmethod
    def _load(code: bytes, expected_attach: int) -> int:
        lic = ctypes.create_string_buffer(b"GPL\0")
        log = ctypes.create_string_buffer(1 << 16)
        insns = ctypes.create_string_buffer(code, len(code))
        attr = struct.pack("<IIQQIIQII16sIII", _PROG_SK_SKB, len(code) // 8,
                           ctypes.addressof(insns), ctypes.addressof(lic), 1, len(log),
                           ctypes.addressof(log), 0, 0, b"probe_relay", 0, 0,
                           expected_attach)  # fmt: skip
        try:
            return _bpf(_PROG_LOAD, attr)
        except OSError as e:
            raise OSError(e.errno, f"{e.strerror}: {log.value.decode()[-400:]}") from None

    def _elem(self, cmd: int, key: bytes, value: bytes | None) -> None:
        k = ctypes.create_string_buffer(key, 8)
        v = ctypes.create_string_buffer(value or b"\0" * 8, 8)
        vp = ctypes.addressof(v) if value is not None else 0
        _bpf(cmd, struct.pack("<IIQQQ", self.socks, 0, ctypes.addressof(k), vp, 0))

    def pair(self, a: socket.socket, b: socket.socket) -> None:
        ca = a.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8)
        cb = b.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8)
        self._elem(_MAP_UPDATE, ca, struct.pack("<Q", b.fileno()))
        self._elem(_MAP_UPDATE, cb, struct.pack("<Q", a.fileno()))

    def unpair(self, *socks: socket.socket) -> None:
        for s in socks:
            try:
                self._elem(_MAP_DELETE, s.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8), None)
            except OSError:
                pass


# -- the two ends, run as child processes (`python -m benchmarks.probe_sockmap end ...`) --


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        got = s.recv(n - len(buf))
        if not got:
            raise EOFError(f"EOF after {len(buf)} of {n} bytes")
        buf += got
    return bytes(buf)


def _pattern(seed: int) -> bytes:
    return hashlib.shake_256(seed.to_bytes(4, "big")).digest(CHUNK)


def _send_bulk(s: socket.socket, total: int, seed: int, deadline: float) -> tuple[int, str]:
    data, h, sent = _pattern(seed), hashlib.sha256(), 0
    view = memoryview(data)
    while sent < total and time.monotonic() < deadline:
        n = s.send(view[: min(CHUNK, total - sent)])
        h.update(view[:n])
        sent += n
        view = view[n:] or memoryview(data)
    return sent, h.hexdigest()


def _recv_bulk(s: socket.socket, total: int) -> str:
    h, got, buf = hashlib.sha256(), 0, bytearray(CHUNK)
    while got < total:
        n = s.recv_into(buf, min(CHUNK, total - got))
        if n == 0:
            raise EOFError(f"EOF after {got} of {total} bytes")
        h.update(memoryview(buf)[:n])
        got += n
    return h.hexdigest()


def end_main(argv: list[str]) -> None:
    """role host port total both seconds: prints `sent sha_sent sha_received cpu`."""
    role, host, port, total, both, seconds = argv[0], argv[1], int(argv[2]), int(argv[3]), \
        argv[4] == "1", float(argv[5])  # fmt: skip
    if role == "sink":
        ls = socket.socket()
        ls.bind((host, 0))
        ls.listen(1)
        ls.settimeout(IDLE)
        print(ls.getsockname()[1], flush=True)
        s, _ = ls.accept()
        s.settimeout(IDLE)
        _recv_exact(s, HELLO)
        s.sendall(b"S")
    else:
        s = socket.create_connection((host, port), timeout=IDLE)
        s.sendall(bytes(HELLO))
        _recv_exact(s, 1)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    seed = 1 if role == "source" else 2
    sent, sha_sent, sha_recv = 0, "-", "-"
    if total == 0:  # memory: the source sends until the deadline, the sink reads nothing
        if role == "source":
            s.settimeout(0.5)
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                try:
                    n, _ = _send_bulk(s, 1 << 62, seed, min(deadline, time.monotonic() + 0.5))
                    sent += n
                except TimeoutError:
                    pass
                print(f"sent {sent}", flush=True)
        else:
            time.sleep(seconds + 2)
    elif both:
        result: list[str] = []
        t = threading.Thread(target=lambda: result.append(_recv_bulk(s, total)))
        t.start()
        sent, sha_sent = _send_bulk(s, total, seed, float("inf"))
        t.join()
        sha_recv = result[0]
    elif role == "source":
        sent, sha_sent = _send_bulk(s, total, seed, float("inf"))
        _recv_exact(s, 1)  # the sink's "done": the bytes are through before we close
    else:
        sha_recv = _recv_bulk(s, total)
        s.sendall(b"D")
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(f"result {sent} {sha_sent} {sha_recv} {ru.ru_utime + ru.ru_stime:.3f}", flush=True)
    s.close()


# -- the proxy and the measurements --


def _meminfo() -> dict[str, int]:
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":")
            out[k] = int(v.split()[0])  # kB
    return out


def _tcp_mem_pages() -> int:
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                w = line.split()
                return int(w[w.index("mem") + 1])
    return -1


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def _kernel_threads_cpu() -> float:
    """CPU seconds of every kworker and ksoftirqd thread (the redirect work runs there)."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        if comm.startswith(("kworker", "ksoftirqd")):
            fields = stat[stat.rindex(")") + 2 :].split()
            total += int(fields[11]) + int(fields[12])
    return total / tick


_TCPI_BYTES_ACKED = 120  # offsetof(struct tcp_info, tcpi_bytes_acked); bytes_received follows


def in_kernel(a: socket.socket, b: socket.socket) -> int:
    """Bytes a has received that b has not yet taken into its socket: what waits on b's
    psock queue (both counts include the hello, read and written by user space)."""
    _, received = struct.unpack_from("<QQ", a.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256),
                                     _TCPI_BYTES_ACKED)  # fmt: skip
    acked = struct.unpack_from("<Q", b.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256),
                               _TCPI_BYTES_ACKED)[0]  # fmt: skip
    queued = struct.unpack("i", fcntl.ioctl(b.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    return int(received - acked - queued)


def _spawn(*args: object) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "benchmarks.probe_sockmap", "end",
                             *map(str, args)], stdout=subprocess.PIPE, text=True)  # fmt: skip


def _result(p: subprocess.Popen[str]) -> list[str]:
    out, _ = p.communicate(timeout=600)
    lines = [ln for ln in out.splitlines() if ln.startswith("result ")]
    if p.returncode or not lines:
        raise RuntimeError(f"end exited {p.returncode}: {out[-500:]}")
    return lines[-1].split()[1:]


def _copy(src: socket.socket, dst: socket.socket) -> None:
    buf = bytearray(256 * 1024)
    view = memoryview(buf)
    try:
        while n := src.recv_into(buf):
            dst.sendall(view[:n])
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


QUEUED = [0, 0]  # now, at most: bytes on the destination's psock queue


def run(relay: str, total: int, both: bool, seconds: float, sm: Sockmap | None,
        sample: Any = None) -> dict[str, Any]:  # fmt: skip
    host = "127.0.0.1"
    sink = _spawn("sink", host, 0, total, int(both), seconds)
    assert sink.stdout is not None
    sink_port = int(sink.stdout.readline())
    if relay == "direct":
        k0, t0 = _kernel_threads_cpu(), time.monotonic()
        source = _spawn("source", host, sink_port, total, int(both), seconds)
        pair: tuple[socket.socket, socket.socket] | None = None
    else:
        ls = socket.socket()
        ls.bind((host, 0))
        ls.listen(1)
        k0, t0 = _kernel_threads_cpu(), time.monotonic()
        source = _spawn("source", host, ls.getsockname()[1], total, int(both), seconds)
        a, _ = ls.accept()
        ls.close()
        hello = _recv_exact(a, HELLO)
        b = socket.create_connection((host, sink_port))
        for s in (a, b):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if relay == "sockmap":
            assert sm is not None
            sm.pair(a, b)
            b.sendall(hello)
        else:  # copy: a thread per direction, blocking recv_into/sendall (for comparison)
            b.sendall(hello)
            for src, dst in ((a, b), (b, a)):
                threading.Thread(target=_copy, args=(src, dst), daemon=True).start()
        pair = (a, b)
    p0 = resource.getrusage(resource.RUSAGE_SELF)
    stop = threading.Event()

    def watch() -> None:  # what waits in the kernel, a 20 ms poll (not in the CPU figures)
        while pair is not None and not stop.wait(0.02):
            try:
                QUEUED[0] = in_kernel(pair[0], pair[1])
                QUEUED[1] = max(QUEUED[1], QUEUED[0])
                if both:
                    QUEUED[1] = max(QUEUED[1], in_kernel(pair[1], pair[0]))
            except OSError:
                return

    QUEUED[:] = [0, 0]
    w = threading.Thread(target=watch)
    w.start()
    try:
        rs = sample(source, t0) if sample is not None else None
        if rs is None:
            rs = _result(source)
        else:
            source.wait(timeout=60)
        rk = _result(sink)
    finally:  # a failed run leaves no child behind
        for child in (source, sink):
            if child.poll() is None:
                child.kill()
                child.wait()
        stop.set()
        w.join()
    elapsed = time.monotonic() - t0
    kthreads = _kernel_threads_cpu() - k0
    p1 = resource.getrusage(resource.RUSAGE_SELF)
    if pair is not None:
        if sm is not None:
            sm.unpair(*pair)
        for s in pair:
            s.close()
    ok = total == 0 or (rs[1] == rk[2] and (not both or rk[1] == rs[2]))
    return {"relay": relay, "elapsed": elapsed, "ok": ok, "source_cpu": float(rs[3]),
            "sink_cpu": float(rk[3]), "kthreads_cpu": kthreads,
            "proxy_cpu": p1.ru_utime + p1.ru_stime - p0.ru_utime - p0.ru_stime,
            "sha": (rs[1], rk[2], rk[1], rs[2]), "queued_max": QUEUED[1]}  # fmt: skip


def memory(args: argparse.Namespace, sm: Sockmap | None) -> None:
    base_mem, base_tcp = _meminfo(), _tcp_mem_pages()
    print(
        "s  source sent MiB  on psock queue MiB  TCP mem MiB  Slab MiB  MemAvailable -MiB"
        "  proxy RSS MiB"
    )

    def sample(source: subprocess.Popen[str], t0: float) -> list[str] | None:
        assert source.stdout is not None
        sent = 0
        next_t = t0 + 1
        for line in source.stdout:
            if line.startswith("sent "):
                sent = int(line.split()[1])
            elif line.startswith("result "):
                return line.split()[1:]
            if time.monotonic() >= next_t:
                next_t += 1
                m = _meminfo()
                drop = (base_mem["MemAvailable"] - m["MemAvailable"]) / 1024
                print(f"{time.monotonic() - t0:4.0f} {sent / 2**20:10.0f} "
                      f"{QUEUED[0] / 2**20:10.0f} "
                      f"{(_tcp_mem_pages() - base_tcp) * 4 / 1024:10.0f} "
                      f"{(m['Slab'] - base_mem['Slab']) / 1024:9.0f} {drop:12.0f} "
                      f"{_rss_kib() / 1024:10.0f}", flush=True)  # fmt: skip
                if drop > args.mem_cap_mib:
                    print(f"MemAvailable fell by {drop:.0f} MiB: stopping the source")
                    source.kill()
                    return ["0", "-", "-", "0"]
        return None

    r = run(args.relay, 0, False, args.seconds, sm, sample)
    time.sleep(5)
    m = _meminfo()
    drop = (base_mem["MemAvailable"] - m["MemAvailable"]) / 1024
    tcp = (_tcp_mem_pages() - base_tcp) * 4 / 1024
    print(f"after both closed (+5 s): MemAvailable {-drop:+.0f} MiB, TCP mem {tcp:+.0f} MiB; {r}")


def _watch_mem(peak: list[float], stop: threading.Event) -> None:
    """The most MemAvailable fell (MiB) until `stop`, a 20 ms poll (machine-wide: other
    processes move it too)."""
    base = _meminfo()["MemAvailable"]
    while not stop.wait(0.02):
        peak[0] = max(peak[0], (base - _meminfo()["MemAvailable"]) / 1024)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "end":
        end_main(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("memory", "bulk"))
    ap.add_argument("--relay", default="sockmap", help="comma list of direct, sockmap, copy")
    ap.add_argument("--attach", choices=("verdict", "stream"), default="verdict",
                    help="the sockmap's program: verdict only, or a strparser first")  # fmt: skip
    ap.add_argument("--mib", type=int, default=512)
    ap.add_argument("--both", action="store_true")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--mem-cap-mib", type=float, default=3072)
    args = ap.parse_args()
    relays = args.relay.split(",")
    unknown = set(relays) - {"direct", "sockmap", "copy"}
    if unknown:
        ap.error(f"--relay: {', '.join(sorted(unknown))}: not one of direct, sockmap, copy")
    try:
        sm = Sockmap(args.attach) if "sockmap" in relays else None
    except OSError as e:  # not root (CAP_BPF, CAP_NET_ADMIN), no sockmap in this kernel
        raise SystemExit(f"probe_sockmap: no BPF sockmap here: {e.strerror or e}") from None
    if args.what == "memory":
        memory(args, sm)
        return
    for i in range(args.runs):
        for relay in relays:
            peak = [0.0]
            stop = threading.Event()
            w = threading.Thread(target=_watch_mem, args=(peak, stop))
            w.start()
            try:
                r = run(relay, args.mib << 20, args.both, 0, sm)
            finally:
                stop.set()
                w.join()
            gib = (args.mib << 20) * (2 if args.both else 1) / 2**30
            print(f"run {i} {relay:8} {'OK ' if r['ok'] else 'BAD'} "
                  f"{(args.mib << 20) / r['elapsed'] / 1e6:7.0f} MB/s  CPU-s/GiB: source "
                  f"{r['source_cpu'] / gib:.2f} sink {r['sink_cpu'] / gib:.2f} proxy "
                  f"{r['proxy_cpu'] / gib:.2f} kthreads {r['kthreads_cpu'] / gib:.2f}; "
                  f"MemAvailable at most -{peak[0]:.0f} MiB; psock queue at most "
                  f"{r['queued_max'] / 2**20:.1f} MiB",
                  flush=True)  # fmt: skip
            if not r["ok"]:
                print("  sha", r["sha"])


if __name__ == "__main__":
    main()
