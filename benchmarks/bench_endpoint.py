"""The endpoint under load: a real ``twistd pktendpoint`` process on loopback, over its
real link (TLS 1.3 with the PPKS chains of ``pktlab init``) and over plain TCP
(``--insecure-plaintext``) in the same run, driven by a controller written with raw frames
in this process (one TLS record per request). Goals over TLS, from issue 14 (the reference
1.1.0 endpoint's figures as measured there):

* ``udp``: immediate UDP nsends (64-byte payload, a tag each, 64 outstanding: a new nsend
  goes out when an ntag comes back) per second. Goal ≥ 1.5x the reference.
* ``tcp``: a TCP download delivered as ndata, MB/s, next to a plain Twisted client reading
  the same bytes from the same source in the same run. Goal ≥ 1.2x the reference.
* ``mread``: round trip of ``mread(TIME, 8)``, one at a time; p50 goal ≤ 50 µs.
* ``rss``: resident memory of the endpoint process after ``start``, idle. Goal ≤ a bare
  Twisted reactor with TLS loaded (measured in the same run) + 8 MB.

The same measures against a do-nothing endpoint (``benchmarks/null_endpoint.py``) show the
controller's own ceiling; it must be ≥ 3x what it measures (the table says whether it is).
The ``udp`` and ``tcp`` loops time only I/O (``RawFlow``, ``benchmarks/raw_flow.py``): the
nsend requests are sealed before the clock starts, the endpoint's answers are kept as
they arrive and counted by their TLS record headers (frame headers on plain TCP; a
download's headers are walked only when its tail looks like its last record, and its
reads wake the controller once per MiB queued), and after the clock stops every answer
is opened and checked (result, ntag socket and tag,
every download byte, the PEERCLOSED); a wrong answer raises ``FlowMismatch``.

The data source (and the plain Twisted client) run in their own processes, so the three
parties of a transfer each have a process, as in real use.

Run from the repository root: ``python -m benchmarks.bench_endpoint --help``.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from benchmarks.common import (
    environment,
    markdown_table,
    median,
    percentile,
    vcpu_ns,
    write_json,
)
from benchmarks.raw_flow import (
    NSTAT_CODE_BODY,
    NTAG_BODY,
    Arrivals,
    DownloadCheck,
    FlowMismatch,
    FrameSplitter,
    RecordOpener,
    Walk,
    check_nsend_answers,
    ends_with_unit,
    last_unit,
    nsend_tags,
    record_size,
    seal_frames,
    walk_units,
)
from packetlab import wire
from packetlab.wire import vmem

REPO = Path(__file__).resolve().parent.parent
HDR = struct.Struct(">I")
T_RESULT, T_MDATA, T_NTAG, T_NSTAT, T_NDATA = 0x40, 0x41, 0x60, 0x61, 0x62
LO4 = b"\x7f\x00\x00\x01"

CONFIG = """\
BufMax 16777216
TransprotoSup tcp,udp
VMemLocalAddrStrIPv4 127.0.0.1/8
NoSubMode 1
"""


# Certificate limits for `limits=True`: far above what a run spends, but present, so every
# send and receive is metered and debited in the accounting database (SQLite, fsync).
LIMITS = "max_send_pkt=1000000000;max_send_byte=1000000000000;max_recv_pkt=1000000000;"
LIMITS += "max_recv_byte=1000000000000;max_exp_period=100000000000000;"


def tls_world(workdir: Path, limits: bool = False) -> tuple[str, ssl.SSLContext]:
    """The endpoint's TLS lines for endpt.conf, and the controller's server context: the
    demo world of the real `pktlab init` (subcmd chain for the endpoint; pubcmd + exppriv
    with k_xc for the controller), TLS 1.3, no session tickets, as the reference runs.
    With `limits`, the exppriv is reissued with `LIMITS` (accounting on)."""
    home = workdir / "home"
    subprocess.run(
        [sys.executable, "-m", "packetlab", "init", "--home", str(home)],
        check=True,
        capture_output=True,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    conf = "".join(
        line + "\n"
        for line in (home / "endpt.conf").read_text().splitlines()
        if line.split(" ", 1)[0] in ("ControllerCertChainPath", "EndpointPrivKey",
                                     "EndpointOpPubKeyPath", "RLimDBPath")
    )  # fmt: skip
    exppriv = (home / "certs/exppriv_eop_exper.cert").read_bytes()
    if limits:
        from packetlab.ppks import issue_certificate, read_private_key

        keys = {k: read_private_key(home / "keys" / k) for k in ("k_eop", "k_exper")}
        cert = issue_certificate(
            "exppriv", keys["k_eop"], keys["k_exper"], 0, 2**31 - 1, limits=LIMITS
        )
        exppriv = cert.to_pem()
    bundle = workdir / "controller-chain.pem"
    bundle.write_bytes((home / "certs/pubcmd_exper_xc.cert").read_bytes() + exppriv)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(str(bundle), str(home / "keys/k_xc"))
    ctx.verify_mode = ssl.CERT_NONE  # an empty TRUSTEDEOP: no client certificate asked
    ctx.num_tickets = 0
    return conf, ctx


class TLSSocket:
    """The controller's end of the TLS link, as lean as a Python controller gets: stdlib
    `ssl.SSLObject` over memory BIOs on a blocking socket. `sendall` seals every frame of
    its argument into its own record (as a PacketLab controller must: the reference
    endpoint reads one message per record) and sends them all with one `sendall`;
    `recv_into` reads the socket once and decrypts every whole record it brought. Only
    whole records go into OpenSSL (a partial one waits in `_raw`), so between reads the
    link is at a record boundary: `RawFlow` can take the raw stream over and give it back."""

    RECV = 1 << 18

    def __init__(self, sock: socket.socket, ctx: ssl.SSLContext, server_side: bool) -> None:
        self.sock = sock
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_side=server_side)
        self._buf = bytearray(self.RECV)
        self._raw = memoryview(self._buf)
        self._have = 0  # bytes of a partial record at the front of `_raw`
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._push()
                n = self.sock.recv_into(self._raw)
                if not n:
                    raise ConnectionError("the endpoint closed during the TLS handshake") from None
                self.incoming.write(self._raw[:n])
        self._push()
        self.unread(self.incoming.read())  # records sent right after the handshake

    def settimeout(self, timeout: float | None) -> None:
        self.sock.settimeout(timeout)  # as a plain socket's: bounds each read and send

    def _push(self) -> None:
        if self.outgoing.pending:
            self.sock.sendall(self.outgoing.read())

    def _pump(self) -> bool:
        self._push()
        n = self.sock.recv_into(self._raw[self._have :])  # a reused buffer: no mmap per read
        if not n:
            self.incoming.write_eof()
            return False
        end = self._have + n
        buf = self._buf
        if end == n and end >= 5 and 5 + (buf[3] << 8 | buf[4]) == end:
            self.incoming.write(self._raw[:end])  # one whole record: the round-trip case
            return True
        pos = walk_units(buf, 0, end, True).pos
        if pos:
            self.incoming.write(self._raw[:pos])
            self._buf[: end - pos] = bytes(self._raw[pos:end])
        self._have = end - pos
        return True

    def take_raw(self) -> bytes:
        """The raw bytes received but not yet opened (a partial record), the link handed to
        a `RawFlow`: OpenSSL must hold no record and no plaintext."""
        if self.incoming.pending or self.obj.pending():
            raise RuntimeError("TLS link not at a record boundary (unread plaintext)")
        raw, self._have = bytes(self._raw[: self._have]), 0
        return raw

    def unread(self, raw: bytes) -> None:
        """Give back raw bytes (received after everything already opened) to be opened first."""
        if len(raw) + self._have > self.RECV // 2:
            raise RuntimeError(f"{len(raw)} raw bytes given back: more than a record")
        self._buf[len(raw) : len(raw) + self._have] = bytes(self._raw[: self._have])
        self._buf[: len(raw)] = raw
        self._have += len(raw)

    def sendall(self, data: bytes) -> None:
        write, pos, end = self.obj.write, 0, len(data)
        while pos < end:
            stop = pos + 4 + (HDR.unpack_from(data, pos)[0] & 0xFFFFFF)
            write(data[pos:stop])
            pos = stop
        self._push()

    def recv_into(self, view: memoryview) -> int:
        read, total, room = self.obj.read, 0, len(view)
        while True:
            try:
                while total < room:
                    total += cast(int, read(room - total, view[total:]))
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:
                return total
            if total or not self._pump():
                return total

    def setsockopt(self, *args: Any) -> None:
        self.sock.setsockopt(*args)

    def close(self) -> None:
        self.sock.close()


class Endpoint:
    """A twistd pktendpoint child connected to a listener we hold; `ctl` is the socket
    (a `TLSSocket` over TLS 1.3 when `tls`, the real link; else plain TCP).

    `extra_conf` is appended to endpt.conf; `null` runs the do-nothing endpoint
    (`benchmarks.null_endpoint`) instead, to measure the controller's own ceiling;
    `limits` gives the controller's chain certificate limits (accounting on, TLS only);
    `repo` is the checkout whose packetlab the endpoint runs (a baseline, for before and
    after in one run)."""

    def __init__(
        self,
        workdir: Path,
        profile: str | None = None,
        *,
        tls: bool = True,
        extra_conf: str = "",
        null: bool = False,
        limits: bool = False,
        repo: Path = REPO,
        env: dict[str, str] | None = None,
    ) -> None:
        self.tls = tls
        self.listener = socket.create_server(("127.0.0.1", 0))
        port = self.listener.getsockname()[1]
        conf = workdir / "endpt.conf"
        ctx = None
        text = CONFIG + extra_conf
        if tls:
            lines, ctx = tls_world(workdir, limits)
            text += lines
        conf.write_text(text)
        twistd = Path(sys.executable).with_name("twistd")
        argv = [str(twistd), "-n", "--pidfile=", f"--logfile={workdir / 'endpoint.log'}"]
        if profile:
            argv += ["--profile", profile, "--profiler", "cprofile", "--savestats"]
        argv += ["pktendpoint", "-c", str(conf)]
        if not tls:
            argv.append("--insecure-plaintext")
        argv.append(f"127.0.0.1:{port}")
        if null:
            argv = [sys.executable, "-m", "benchmarks.null_endpoint", f"127.0.0.1:{port}"]
            argv += ["--tls"] if tls else []
        self.null = null
        self.proc = subprocess.Popen(
            argv,
            env=dict(os.environ, PYTHONPATH=str(repo), **(env or {})),
            cwd=workdir,
            stdin=subprocess.PIPE if null else None,
        )
        self.listener.settimeout(20)
        ctl, _ = self.listener.accept()
        ctl.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ctl.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.ctl: Any = TLSSocket(ctl, ctx, True) if ctx is not None else ctl
        self.reader = FrameReader(self.ctl)
        self.request(wire.Start())

    def request(self, msg: wire.Message) -> tuple[int, bytes]:
        self.ctl.sendall(wire.encode(msg))
        while True:
            kind, body = self.reader.next()
            if kind in (T_RESULT, T_MDATA):
                return kind, body

    def plan(self, line: str) -> None:
        """Tell the do-nothing endpoint what the next flow is (`null_endpoint.py`: it
        pre-seals its answers); real endpoints are told nothing."""
        if self.null and self.proc.stdin is not None:
            self.proc.stdin.write(line.encode() + b"\n")
            self.proc.stdin.flush()

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        self.ctl.close()
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.listener.close()


class FrameReader:
    """Splits the endpoint's stream into frames with as little work as possible: one
    recv_into a big buffer, headers parsed in place (the controller must not be the
    bottleneck of a 1 GB/s measurement)."""

    SIZE = 8 << 20

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.buf = bytearray(self.SIZE)
        self.view = memoryview(self.buf)
        self.start = 0
        self.end = 0

    def fill(self) -> None:
        if self.start == self.end:
            self.start = self.end = 0
        elif self.end > self.SIZE // 2:  # keep the partial frame, make room
            n = self.end - self.start
            self.buf[:n] = self.buf[self.start : self.end]
            self.start, self.end = 0, n
        got = self.sock.recv_into(self.view[self.end :])
        if not got:
            raise EOFError("endpoint closed")
        self.end += got

    def next(self) -> tuple[int, bytes]:
        while True:
            pos = self.start
            if self.end - pos >= 4:
                (word,) = HDR.unpack_from(self.buf, pos)
                stop = pos + 4 + (word & 0xFFFFFF)
                if stop <= self.end:
                    self.start = stop
                    return word >> 24, bytes(self.buf[pos + 4 : stop])
            self.fill()

    def take(self) -> bytes:
        """Everything buffered and not yet returned (a `RawFlow` takes the stream over)."""
        data = bytes(self.buf[self.start : self.end])
        self.start = self.end = 0
        return data

    def unread(self, data: bytes) -> None:
        """Put `data` back in front of what is buffered."""
        rest = bytes(self.buf[self.start : self.end])
        self.buf[: len(data) + len(rest)] = data + rest
        self.start, self.end = 0, len(data) + len(rest)


# ------------------------------------------------------------------- the raw flow


class RawFlow:
    """The controller's side of one measured flow, timed as I/O only (`raw_flow.py`):
    requests sealed before the clock starts (`seal`), the endpoint's bytes kept as they
    arrive (`recv`, with the arrival time of every read) and counted by their headers
    (`walk`), opened and checked after the clock stops (`frames`), then the link given
    back to the endpoint's `TLSSocket`/`FrameReader` in step (`finish`). The same code for
    TLS (units are records) and plain TCP (units are frames)."""

    IDLE_S = 0.2  # a read that waits this long returns nothing (`recv` -> 0)

    def __init__(self, ep: Any, capacity: int) -> None:
        self.ep = ep
        ctl = ep.ctl
        self.tls = isinstance(ctl, TLSSocket)
        self.sock: socket.socket = ctl.sock if self.tls else ctl
        lead = ep.reader.take()
        if self.tls:
            if lead:
                raise RuntimeError(f"{len(lead)} bytes of answers not read before the flow")
            lead = ctl.take_raw()
            self.opener: RecordOpener | None = RecordOpener(ctl.obj, ctl.incoming)
        else:
            self.opener = None
        self.buf = self._buffer(max(capacity, 2 * len(lead), 1 << 20))
        self.buf[: len(lead)] = lead
        self.end = len(lead)
        self.pos = 0  # walked up to here
        self.opened = 0  # opened and split into frames up to here
        self.last = -1  # the key (record size or frame type) of the last whole unit
        self.arrivals = Arrivals()
        self.arrivals.add(self.end, time.perf_counter())
        self.splitter = FrameSplitter()
        self._lowat = 1
        self.sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, int(self.IDLE_S * 1e6))
        )

    _spare = bytearray()

    @classmethod
    def _buffer(cls, size: int) -> bytearray:
        """A buffer of at least `size` bytes, every page already touched (a page fault per
        4 KiB inside the timed loop cost the download ceiling a third); the last flow's if
        big enough."""
        buf, cls._spare = cls._spare, bytearray()
        if len(buf) < size:
            buf = bytearray(size)
            buf[::4096] = bytes(len(range(0, size, 4096)))
        return buf

    def seal(self, frames: list[bytes]) -> bytes:
        """The bytes a live controller would send for `frames`, one record per frame."""
        if not self.tls:
            return b"".join(frames)
        ctl = self.ep.ctl
        if ctl.outgoing.pending:
            raise RuntimeError("TLS records not yet sent before sealing a flow")
        return seal_frames(ctl.obj, ctl.outgoing, frames)

    def recv(self) -> int:
        """One read into the flow's buffer (grown when full): the bytes it brought, 0 if
        nothing came for `IDLE_S` seconds."""
        if len(self.buf) - self.end < 1 << 16:
            self.buf += bytes(len(self.buf))
        try:
            n = self.sock.recv_into(memoryview(self.buf)[self.end : self.end + (1 << 22)])
        except BlockingIOError:  # SO_RCVTIMEO
            return 0
        if not n:
            raise FlowMismatch("the endpoint closed the link during the flow")
        self.end += n
        self.arrivals.add(self.end, time.perf_counter())
        return n

    def lowat(self, size: int) -> None:
        """Let a read wake this process only once `size` bytes are queued (at least 1):
        fewer wake-ups and bigger copies per read; `size` must never exceed what is still
        to come, or the last read would wait for its `IDLE_S` (and be timed late)."""
        size = max(size, 1)
        if size != self._lowat:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, size)
            self._lowat = size

    def walk(self, match: int) -> Walk:
        """The whole units received since the last walk; `match` is a record size (TLS) or
        a frame type (plain TCP)."""
        w = walk_units(self.buf, self.pos, self.end, self.tls, match)
        self.pos = w.pos
        if w.count:
            self.last = w.last
        return w

    def frames(self) -> Iterator[tuple[int, bytes, int]]:
        """The frames of everything walked and not yet opened: opened now (after the clock),
        each with the raw offset it completed at."""
        view = memoryview(self.buf)[self.opened : self.pos]
        base, self.opened = self.opened, self.pos
        if self.opener is not None:
            return self.splitter.feed_all(self.opener.open(view, base))
        return self.splitter.feed(bytes(view), base, own_ends=True)  # whole frames

    def finish(self) -> None:
        """Give the link back: what was received but not walked to its reader again."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 0))
        self.lowat(1)
        rest = bytes(self.buf[self.pos : self.end])
        if self.opener is not None:
            self.ep.ctl.unread(self.opener.tail + rest)
            self.ep.reader.unread(self.splitter.rest)
        else:
            self.ep.reader.unread(self.splitter.rest + rest)
        RawFlow._spare, self.buf = self.buf, bytearray()


def _cpu_share(before: resource.struct_rusage, elapsed: float) -> dict[str, float]:
    """This process's CPU in the timed loop, as shares of one CPU over `elapsed`: `user`
    (the controller's Python) and `system` (the kernel, mostly copying socket bytes)."""
    now = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "user": (now.ru_utime - before.ru_utime) / elapsed,
        "system": (now.ru_stime - before.ru_stime) / elapsed,
    }


def _wait(flow: RawFlow, idle_s: float = 30.0) -> None:
    """Read until something comes; FlowMismatch after `idle_s` seconds of nothing."""
    waited = 0.0
    while not flow.recv():
        waited += flow.IDLE_S
        if waited >= idle_s:
            raise FlowMismatch(f"nothing from the endpoint for {idle_s:.0f} s during the flow")


# --------------------------------------------------------------------------- UDP sends


REFUSAL_HINT = (
    "a chain without burst limits keeps the built-in send window of 12.5 MB per 10 s "
    "per endpoint: about 195,000 nsends of 64 B; take a smaller --udp-count"
)


def nsend_frames(sktid: int, port: int, tags: list[int], size: int = 64) -> list[bytes]:
    """The flow's nsend frames: one encoded, the tag patched in for each (bytes 15-16)."""
    one = wire.encode(
        wire.Nsend(sktid=sktid, family=4, proto=17, time=0, tag=0, data=bytes(size),
                   raddr=LO4, rport=port)
    )  # fmt: skip
    head, tail = one[:15], one[17:]
    return [head + tag.to_bytes(2, "big") + tail for tag in tags]


#: Where the udp measure puts the two processes (`--place`): "free" (the scheduler
#: decides, as in use), "split" (endpoint on the first CPU, controller on the second),
#: "shared" (both on the first CPU).
PLACES = ("free", "split", "shared")
#: A run whose calibration moved this much between rounds says so (docs/performance.md,
#: session 30: 95-103 ns in three rounds, 150-154 ns in the next three of one run).
VCPU_MOVED = 1.2


def _placed(pid: int, place: str) -> tuple[set[int], set[int]] | None:
    """Pin this process and the endpoint (every thread) for `place`; what to restore."""
    if place == "free":
        return None
    mine, theirs = os.sched_getaffinity(0), os.sched_getaffinity(pid)
    first, *rest = sorted(mine)
    _pin(pid, {first})
    os.sched_setaffinity(0, {rest[0] if place == "split" and rest else first})
    return mine, theirs


def _pin(pid: int, cpus: set[int]) -> None:
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except OSError:  # a thread that ended meanwhile
            pass


def vcpu_line(speeds: list[float]) -> str:
    """The rounds' calibrations (`vcpu_ns`), and a warning when they moved: the medians of
    such a run mix rounds of a fast and a slow vCPU."""
    line = "vCPU speed per round (calibration loop, ns per iteration; higher is slower): "
    line += ", ".join(f"{ns:.0f}" for ns in speeds)
    moved = max(speeds) / min(speeds)
    if moved >= VCPU_MOVED:
        line += f": it moved {moved:.2f}x during the run, so compare rounds of the same speed"
        line += ", not the medians"
    return line


def switches(pid: int) -> tuple[int, int]:
    """A process's (voluntary, involuntary) context switches so far, all threads."""
    vol = invol = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            vol = int(line.split()[1])
        elif line.startswith("nonvoluntary_ctxt_switches:"):
            invol = int(line.split()[1])
    return vol, invol


def bench_udp(ep: Endpoint, count: int, window: int = 64, place: str = "free") -> dict[str, Any]:
    """Immediate nsends, `window` outstanding: the request stream is sealed before the
    clock starts; the timed loop only reads (counting ntags by their record size, or
    frame type on plain TCP) and sends the next slice of whole records; every answer is
    opened and checked after the clock stops (FlowMismatch if one is wrong).

    Also per nsend: the endpoint's involuntary context switches (about one per answer
    batch when the controller, woken by it, runs on the endpoint's CPU; near none when
    they run on two CPUs: docs/performance.md, session 30) and the controller's reads."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))  # never read: the kernel drops what overflows
    port = sink.getsockname()[1]
    plan = getattr(ep, "plan", None)
    if plan is not None:
        plan(f"nsend {count}")
    kind, body = ep.request(
        wire.Nopen(sktid=1, family=4, proto=17, rbufsz=1 << 16, laddr=bytes(4), lport=0)
    )
    assert kind == T_RESULT and body == b"", body
    tags = nsend_tags(count)
    frames = nsend_frames(1, port, tags)
    flow = RawFlow(ep, count * (record_size(4) + record_size(4 + NTAG_BODY)))
    stream = flow.seal(frames)
    size = len(frames[0]) + (record_size(0) if flow.tls else 0)  # one unit per request
    if len(stream) != size * count:
        raise RuntimeError(f"{len(stream)} bytes sealed for {count} nsends of {size}")
    ntag = record_size(4 + NTAG_BODY) if flow.tls else T_NTAG
    view = memoryview(stream)
    send, recv, walk = flow.sock.sendall, flow.recv, flow.walk
    batch = 16
    sent = tagged = reads = 0
    restore = _placed(ep.proc.pid, place)
    try:
        vol, invol = switches(ep.proc.pid)
        cpu = cpu_seconds(ep.proc.pid)
        times = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        send(view[: window * size])
        sent = window
        while tagged < count:
            reads += 1
            if not recv():
                try:
                    _wait(flow)
                except FlowMismatch as silent:
                    # A refused nsend (an error result, no ntag) stops the window: name it.
                    try:
                        check_nsend_answers(flow.frames(), 1, tags[:sent])
                    except FlowMismatch as refused:
                        raise FlowMismatch(f"{refused} ({REFUSAL_HINT})") from silent
                    raise
            tagged += walk(ntag).matched
            free = window - (sent - tagged)
            if free >= batch and sent < count:
                n = min(free, count - sent)
                send(view[sent * size : (sent + n) * size])
                sent += n
        elapsed = time.perf_counter() - start
        mine = _cpu_share(times, elapsed)
        cpu = cpu_seconds(ep.proc.pid) - cpu
        vol_after, invol_after = switches(ep.proc.pid)
    finally:
        if restore is not None:
            os.sched_setaffinity(0, restore[0])
            _pin(ep.proc.pid, restore[1])
    check_nsend_answers(flow.frames(), 1, tags)  # after the clock: every answer
    flow.finish()
    ep.request(wire.Nclose(sktid=1))
    sink.close()
    return {
        "nsends": count,
        "seconds": elapsed,
        "per_second": count / elapsed,
        # the endpoint's own CPU per nsend: what the machine's load moves least
        "endpoint_cpu_us": cpu / count * 1e6,
        "errors": 0,  # checked: FlowMismatch otherwise
        "controller_cpu": mine,
        "window": window,
        "payload": 64,
        "place": place,
        "endpoint_sleeps_per_nsend": (vol_after - vol) / count,
        "endpoint_preempted_per_nsend": (invol_after - invol) / count,
        "controller_reads_per_nsend": reads / count,
    }


# ----------------------------------------------------------------------------- TCP


SOURCE = r"""
import socket, sys
size = int(sys.argv[1]); count = int(sys.argv[2])
ls = socket.create_server(("127.0.0.1", 0))
print(ls.getsockname()[1], flush=True)
chunk = bytes(range(256)) * 4096  # 1 MiB
for _ in range(count):
    conn, _ = ls.accept()
    left = size
    while left > 0:
        n = conn.send(chunk if left >= len(chunk) else chunk[:left])
        left -= n
    conn.close()
"""

TWISTED_CLIENT = r"""
import sys, time
from twisted.internet import protocol, reactor
port = int(sys.argv[1])
class Count(protocol.Protocol):
    n = 0
    def connectionMade(self):
        self.t0 = time.perf_counter()
    def dataReceived(self, data):
        self.n += len(data)
    def connectionLost(self, reason):
        print(self.n, time.perf_counter() - self.t0, flush=True)
        reactor.stop()
protocol.ClientCreator(reactor, Count).connectTCP("127.0.0.1", port)
reactor.run()
"""


def bench_tcp(ep: Endpoint, size: int, rbufsz: int, *, plain_client: bool = True) -> dict[str, Any]:
    src = subprocess.Popen(
        [sys.executable, "-c", SOURCE, str(size), "2" if plain_client else "1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert src.stdout is not None
    port = int(src.stdout.readline())
    plain_bytes, plain_s = 0, float("nan")
    try:
        # 1. plain Twisted client, same source, same size
        if plain_client:
            out = subprocess.run(
                [sys.executable, "-c", TWISTED_CLIENT, str(port)],
                capture_output=True,
                text=True,
                check=True,
                timeout=300,
            ).stdout.split()
            plain_bytes, plain_s = int(out[0]), float(out[1])
        # 2. through the endpoint, as ndata: the nopen is sealed and sent by the flow,
        # which keeps everything from its answer on; the clock runs from the arrival of
        # the first ndata to that of the PEERCLOSED (times of the reads that brought them)
        nopen = wire.Nopen(sktid=2, family=4, proto=6, rbufsz=rbufsz, laddr=bytes(4),
                           lport=0, raddr=LO4, rport=port)  # fmt: skip
        flow = RawFlow(ep, size + size // 64 + (4 << 20))
        flow.sock.sendall(flow.seal([wire.encode(nopen)]))
        check = DownloadCheck(2, size)
        need = size + 4 + NSTAT_CODE_BODY  # plaintext before which it cannot be over
        nstat = record_size(4 + NSTAT_CODE_BODY) if flow.tls else T_NSTAT
        # The PEERCLOSED is the last unit: the loop looks for its header at the end of
        # what came and walks the headers only then (or when nothing comes).
        last = last_unit(flow.tls)
        first = flow.end  # raw bytes before the answers: every byte after carries >= 1
        plain = idle = 0
        usage = resource.getrusage
        times, t0 = usage(resource.RUSAGE_SELF), 0.0  # from the first MiB on
        mine: dict[str, float] = {}
        recv, lowat = flow.recv, flow.lowat
        while check.done_at is None:
            if recv():
                idle = 0
                if not t0 and flow.end - first >= 1 << 20:
                    times, t0 = usage(resource.RUSAGE_SELF), time.perf_counter()
                if t0:  # never more than the plaintext still owed: the end is not read late
                    lowat(min(LOWAT, need - (flow.end - first)))
                if not ends_with_unit(flow.buf, flow.pos, flow.end, last):
                    continue
                plain += flow.walk(nstat).plain
                if not (plain >= need and flow.pos == flow.end and flow.last == nstat):
                    continue
            else:
                idle += 1
                plain += flow.walk(nstat).plain
                if idle * flow.IDLE_S > 30:
                    raise FlowMismatch(f"download stalled after {plain} of {size} bytes")
                if plain < need:
                    continue
            if t0 and not mine:  # the receiving, not the check below
                mine = _cpu_share(times, time.perf_counter() - t0)
            check.feed(flow.frames())  # it may be over: open and check what came
        assert check.first_at is not None
        elapsed = flow.arrivals.span(check.first_at, check.done_at)
        got, frames = check.got, check.frames
        flow.finish()
        ep.request(wire.Nclose(sktid=2))
    finally:
        src.wait(30)
    return {
        "bytes": got,
        "expected": size,
        "seconds": elapsed,
        "mb_per_s": got / elapsed / 1e6,
        "ndata_frames": frames,
        "controller_cpu": mine,
        "plain_twisted_mb_per_s": plain_bytes / plain_s / 1e6,
        "rbufsz": rbufsz,
    }


# A download read wakes the controller once this much is queued (SO_RCVLOWAT; the default
# is every segment): a quarter of the receive buffer, so the sender never waits for it.
LOWAT = 1 << 20


SINK = r"""
import socket, sys
size = int(sys.argv[2])
data = b"\x01" * size  # every page written before the clock, as the null endpoint's
conn = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
conn.sendall(data)
"""


def bench_loopback(size: int) -> dict[str, Any]:
    """The kernel's floor under every download figure: `size` bytes over one loopback TCP
    stream, one process `sendall`ing a ready buffer, this one `recv_into` a pre-touched
    one (no TLS, no frames, no checks), waking as the controller's reads do (`LOWAT`):
    what the do-nothing endpoint's ceiling is bounded by."""
    ls = socket.create_server(("127.0.0.1", 0))
    src = subprocess.Popen([sys.executable, "-c", SINK, str(ls.getsockname()[1]), str(size)])
    try:
        conn, _ = ls.accept()
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        buf = RawFlow._buffer(size + (4 << 20))
        view, got, start = memoryview(buf), 0, 0.0
        while n := conn.recv_into(view[got : got + (1 << 22)]):
            if not got:
                start = time.perf_counter()
            got += n
            if got >= 1 << 20:  # the controller's reads (`bench_tcp`)
                conn.setsockopt(
                    socket.SOL_SOCKET, socket.SO_RCVLOWAT, max(min(LOWAT, size - got), 1)
                )
        elapsed = time.perf_counter() - start
        del view
        RawFlow._spare = buf
        conn.close()
    finally:
        ls.close()
        src.wait(30)
    return {"bytes": got, "expected": size, "seconds": elapsed, "mb_per_s": got / elapsed / 1e6}


# ---------------------------------------------------------------------------- mread


def bench_mread(ep: Endpoint, count: int, wake: str = "split") -> dict[str, Any]:
    """`wake`: "split" (controller and endpoint block, each on its CPU), "pinned" (both on
    CPU 0: no cross-CPU wake-up) or "spin" (the controller polls its socket instead of
    sleeping). See bench_wakeup: on this VM a cross-CPU wake-up is the largest cost."""
    frame = wire.encode(wire.Mread(addr=vmem.TIME.addr, len=8))
    ctl, reader = ep.ctl, ep.reader
    raw: socket.socket = ctl.sock if isinstance(ctl, TLSSocket) else ctl
    mine = os.sched_getaffinity(0)
    theirs = os.sched_getaffinity(ep.proc.pid)
    if wake == "pinned":
        cpu = {min(mine)}
        os.sched_setaffinity(0, cpu)
        os.sched_setaffinity(ep.proc.pid, cpu)  # the reactor's thread
    elif wake == "spin":
        raw.setblocking(False)
    try:
        rtts: list[int] = []
        for _ in range(200):  # warm-up
            ctl.sendall(frame)
            _spin(reader.next)
        clock = time.perf_counter_ns
        for _ in range(count):
            t0 = clock()
            ctl.sendall(frame)
            kind, _ = _spin(reader.next)
            rtts.append(clock() - t0)
            assert kind == T_MDATA
    finally:
        raw.setblocking(True)
        os.sched_setaffinity(0, mine)
        os.sched_setaffinity(ep.proc.pid, theirs)
    return {
        "wake": wake,
        "count": count,
        "p10_us": percentile(rtts, 10) / 1e3,
        "p50_us": percentile(rtts, 50) / 1e3,
        "p90_us": percentile(rtts, 90) / 1e3,
        "p99_us": percentile(rtts, 99) / 1e3,
    }


def _spin(read: Any) -> Any:
    """`read()`, retried while a non-blocking socket has nothing (the "spin" mode)."""
    while True:
        try:
            return read()
        except BlockingIOError:
            continue


# Goals over TLS (issue 14): the reference 1.1.0 endpoint's figures over TLS 1.3, measured
# by the issue (not here: the reference binaries are not on this machine).
REFERENCE = {
    "udp": (23_400, 35_500),  # nsend/s
    "tcp": (267, 449),  # MB/s
    "mread": (44_000, 44_000),  # µs p50 (Nagle)
}
GOALS = {"udp": 1.5 * 35_500, "tcp": 1.2 * 449, "mread": 50.0}
RSS_ALLOWANCE_MIB = 8.0
CEILING_RATIO = 3.0  # the controller's ceiling over what it measures (issue 14)

BARE_REACTOR = r"""
import sys, time
from twisted.internet import reactor
import twisted.protocols.tls, OpenSSL.SSL
from twisted.internet import ssl
def rss():
    for line in open("/proc/self/smaps_rollup"):
        if line.startswith(("Rss:", "Anonymous:")):
            print(int(line.split()[1]), flush=True)
    reactor.stop()
reactor.callLater(1.0, rss)
reactor.run()
"""


def smaps_kib(pid: int) -> tuple[int, int]:
    """(resident, anonymous) KiB of process `pid` (/proc/PID/smaps_rollup); resident minus
    anonymous is file-backed (shared libraries, mostly)."""
    rss = anon = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Rss:"):
            rss = int(line.split()[1])
        elif line.startswith("Anonymous:"):
            anon = int(line.split()[1])
    return rss, anon


def bare_reactor_smaps_kib() -> tuple[int, int]:
    """(resident, anonymous) KiB of a bare Twisted reactor with TLS loaded, idle for 1 s
    (the memory goal's base)."""
    out = subprocess.run(
        [sys.executable, "-c", BARE_REACTOR], capture_output=True, text=True, check=True
    )
    rss, anon = (int(x) for x in out.stdout.split()[-2:])
    return rss, anon


def bare_reactor_rss_kib() -> int:
    """RSS of a bare Twisted reactor with TLS loaded, idle for 1 s (the memory goal's base)."""
    return bare_reactor_smaps_kib()[0]


def start_endpoints(tmp: Path, links: list[str], args: Any) -> dict[str, Endpoint]:
    """Every endpoint of the run, kept for all rounds: ours over each link, the baseline
    checkout's and the do-nothing one over each link; with --busy-poll-us, ours again
    with BusyPollUs."""
    plan: list[tuple[str, bool, bool, Path, str]] = [
        (f"ours-{link}", link == "tls", False, REPO, "") for link in links
    ]
    if args.busy_poll_us:
        conf = f"BusyPollUs {args.busy_poll_us}\n"
        plan += [(f"busy-{link}", link == "tls", False, REPO, conf) for link in links]
    if args.baseline:
        base = Path(args.baseline).resolve()
        plan += [(f"base-{link}", link == "tls", False, base, "") for link in links]
    elif args.openssl_records:
        plan.append(("base-tls", True, False, REPO, ""))
    if not args.no_null:
        plan += [(f"null-{link}", link == "tls", True, REPO, "") for link in links]
    eps: dict[str, Endpoint] = {}
    for name, tls, null, repo, conf in plan:
        env = (
            {"PACKETLAB_TLS_RECORDS": "openssl"}
            if name == "base-tls" and not args.baseline
            else None
        )
        workdir = tmp / name
        workdir.mkdir()
        profile = None
        if args.profile and not null:
            profile = str(Path(args.profile).resolve()) + f".{name}"
        eps[name] = Endpoint(
            workdir, profile, tls=tls, null=null, repo=repo, extra_conf=conf, env=env
        )
    return eps


def cpu_latency_phase(tmp: Path, args: Any, rounds: dict[str, Any], only: set[str]) -> None:
    """mread (and nsend-rate) rounds with our endpoint holding CpuLatencyUs (its session,
    open for the phase, holds the machine-wide limit) and the do-nothing endpoint under
    the same limit:
    `rounds["cpulat-tls"]`, `rounds["cpulatnull-tls"]`."""
    plan = [("cpulat-tls", False, f"CpuLatencyUs {args.cpu_latency_us}\n")]
    if not args.no_null:
        plan.append(("cpulatnull-tls", True, ""))
    eps: dict[str, Endpoint] = {}
    try:
        for name, null, conf in plan:
            (tmp / name).mkdir()
            eps[name] = Endpoint(tmp / name, tls=True, null=null, extra_conf=conf)
        keys = [k for k in ("mread", "udp") if k in only]
        for rnd in range(args.rounds):
            for key in keys:
                for name, ep in eps.items():
                    if key == "mread":
                        r = bench_mread(ep, args.mread_count, (args.wake or ["split"])[0])
                    else:
                        r = bench_udp(ep, args.udp_count)
                    rounds.setdefault(name, {}).setdefault(key, []).append(r)
            print(f"CpuLatencyUs round {rnd + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        for ep in eps.values():
            ep.stop()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_cpu(eps: dict[str, Endpoint], seconds: float = 2.0) -> dict[str, float]:
    """The share of a CPU each endpoint uses while nothing is asked of it (busy-poll must
    go back to blocking)."""
    time.sleep(0.5)  # past any busy-poll window of the last request
    before = {name: cpu_seconds(ep.proc.pid) for name, ep in eps.items()}
    time.sleep(seconds)
    return {name: (cpu_seconds(eps[name].proc.pid) - t) / seconds for name, t in before.items()}


def summarize_runs(samples: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The median round (by the measure's main figure), with the range over rounds."""
    main = {"per_second": max, "mb_per_s": max, "p50_us": min}[key]
    values = sorted(r[key] for r in samples)
    mid = values[len(values) // 2]
    out = dict(next(r for r in samples if r[key] == mid))
    out["rounds"] = len(samples)
    out["range"] = [values[0], values[-1]]
    out["best"] = main(values)
    return out


def soak(seconds: float, tcp_bytes: int) -> dict[str, Any]:
    """Our endpoint over TLS under mixed load (mreads, nsend bursts, TCP downloads, in turn)
    for `seconds`, its RSS sampled after every step: is it flat?"""
    samples: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        ep = Endpoint(Path(tmp), tls=True)
        try:
            time.sleep(1.0)
            start = time.monotonic()
            idle = ep.rss_kib() / 1024
            steps = 0
            while time.monotonic() - start < seconds:
                bench_mread(ep, 500)
                bench_udp(ep, 5000)
                bench_tcp(ep, tcp_bytes, 4 << 20, plain_client=False)
                steps += 1
                samples.append((time.monotonic() - start, ep.rss_kib() / 1024))
        finally:
            ep.stop()
    # Least-squares slope over the second half (after warm-up), MiB per minute.
    half = samples[len(samples) // 2 :] or samples
    n = len(half)
    mt = sum(t for t, _ in half) / n
    mr = sum(r for _, r in half) / n
    var = sum((t - mt) ** 2 for t, _ in half) or 1.0
    slope = sum((t - mt) * (r - mr) for t, r in half) / var * 60
    return {
        "seconds": seconds,
        "steps": steps,
        "idle_rss_mib": idle,
        "first_rss_mib": samples[0][1] if samples else None,
        "last_rss_mib": samples[-1][1] if samples else None,
        "max_rss_mib": max(r for _, r in samples) if samples else None,
        "slope_second_half_mib_per_min": slope,
        "samples": samples,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--udp-count",
        type=int,
        default=50_000,
        help="nsends per flow [50000]; each endpoint sends at most ~195,000 per 10 s "
        "(the built-in send window)",
    )
    ap.add_argument("--tcp-bytes", type=int, default=2 << 30)
    ap.add_argument("--rbufsz", type=int, default=4 << 20)
    ap.add_argument("--mread-count", type=int, default=20_000)
    ap.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="times every endpoint takes every measure, interleaved (3); medians reported",
    )
    ap.add_argument("--only", choices=["udp", "tcp", "mread", "rss"], action="append")
    ap.add_argument(
        "--wake",
        choices=["split", "pinned", "spin"],
        action="append",
        help="mread: how controller and endpoint wake (default split; more than one: each, "
        "reported as mread-MODE); see benchmarks/bench_wakeup.py",
    )
    ap.add_argument(
        "--place",
        choices=PLACES,
        action="append",
        help="udp: where the controller and the endpoint run: free (default: the scheduler "
        "decides), split (one CPU each), shared (both on one CPU); more than one: each, "
        "reported as udp-PLACE",
    )
    ap.add_argument(
        "--link",
        choices=["tls", "tcp"],
        action="append",
        help="link(s) to the endpoint (default: both, TLS first)",
    )
    ap.add_argument(
        "--no-null",
        action="store_true",
        help="skip the do-nothing endpoint runs that show the controller's own ceiling",
    )
    ap.add_argument(
        "--baseline",
        metavar="CHECKOUT",
        help="also run the endpoint of another checkout over each link (e.g. a `git "
        "worktree` of the commit before a change): before and after in one run",
    )
    ap.add_argument(
        "--openssl-records",
        action="store_true",
        help="also run our endpoint over TLS with pyOpenSSL sealing and opening the records "
        "(PACKETLAB_TLS_RECORDS=openssl; ours-tls uses the Python record layer), in the "
        "base-tls column: both record paths in one run",
    )
    ap.add_argument(
        "--soak",
        type=float,
        metavar="SECONDS",
        help="instead: mixed load (mread, nsend bursts, TCP downloads of --tcp-bytes) on our "
        "endpoint over TLS for SECONDS, and its RSS over time (is it flat?)",
    )
    ap.add_argument(
        "--busy-poll-us",
        type=int,
        default=0,
        metavar="N",
        help="also run our endpoint with BusyPollUs N (reported as busy-LINK, with its CPU "
        "use at idle): busy-poll on vs off in one run",
    )
    ap.add_argument(
        "--cpu-latency-us",
        type=int,
        metavar="N",
        help="then a phase of mread (and nsend-rate) rounds with our endpoint (TLS) set to "
        "CpuLatencyUs N and the do-nothing endpoint beside it (the kernel's limit is "
        "machine-wide while that endpoint's session is open, so it gets a phase of its own; "
        "needs root)",
    )
    ap.add_argument("--profile", help="write the endpoint's cProfile stats to FILE.ours-LINK")
    ap.add_argument("--json", help="write all results to this JSON file")
    args = ap.parse_args(argv)
    if args.soak:
        r = soak(args.soak, args.tcp_bytes)
        print(
            f"TLS endpoint under mixed load for {r['seconds']:.0f} s ({r['steps']} steps): RSS "
            f"idle {r['idle_rss_mib']:.1f}, after the first step {r['first_rss_mib']:.1f}, "
            f"last {r['last_rss_mib']:.1f}, max {r['max_rss_mib']:.1f} MiB; slope over the "
            f"second half {r['slope_second_half_mib_per_min']:+.3f} MiB/min"
        )
        if args.json:
            write_json(args.json, {"environment": environment(), "soak": r})
        return 0
    only = set(args.only or ["udp", "tcp", "mread", "rss"])
    links = args.link or ["tls", "tcp"]
    results: dict[str, Any] = {"environment": environment(), "runs": {}, "rounds": {}}
    runs, rounds = results["runs"], results["rounds"]
    figure = {"udp": "per_second", "tcp": "mb_per_s", "mread": "p50_us"}
    with tempfile.TemporaryDirectory() as tmp:
        eps = start_endpoints(Path(tmp), links, args)
        try:
            if "rss" in only:
                time.sleep(1.0)
                for name, ep in eps.items():
                    if not name.startswith("null"):
                        runs.setdefault(name, {})["rss"] = {"idle_rss_mib": ep.rss_kib() / 1024}
            # Rounds: every endpoint takes each measure in turn, so all of them see the
            # same machine (which other jobs load); medians and ranges over rounds.
            wakes = args.wake or ["split"]
            places = args.place or ["free"]
            udp_keys = [f"udp-{p}" if len(places) > 1 else "udp" for p in places]
            keys = [f"mread-{w}" if len(wakes) > 1 else "mread" for w in wakes]
            keys += [*udp_keys, "tcp"]
            for rnd in range(args.rounds):
                results.setdefault("vcpu_ns", []).append(vcpu_ns())
                for key in keys:
                    if key.split("-")[0] not in only:
                        continue
                    for name, ep in eps.items():
                        if key.startswith("mread"):
                            wake = key.split("-")[1] if "-" in key else wakes[0]
                            r = bench_mread(ep, args.mread_count, wake)
                        elif key.startswith("udp"):
                            place = key.split("-")[1] if "-" in key else places[0]
                            r = bench_udp(ep, args.udp_count, place=place)
                        else:
                            plain = name == "ours-tls"
                            r = bench_tcp(ep, args.tcp_bytes, args.rbufsz, plain_client=plain)
                        rounds.setdefault(name, {}).setdefault(key, []).append(r)
                    if key == "tcp" and not args.no_null:
                        r = bench_loopback(args.tcp_bytes)
                        rounds.setdefault("loopback", {}).setdefault(key, []).append(r)
                print(f"round {rnd + 1}/{args.rounds} done", file=sys.stderr)
            if "rss" in only:
                for name, ep in eps.items():
                    if name in runs and "rss" in runs[name]:
                        runs[name]["rss"]["after_rss_mib"] = ep.rss_kib() / 1024
            if args.busy_poll_us:
                results["idle_cpu"] = idle_cpu(eps)
        finally:
            for ep in eps.values():
                ep.stop()
        if args.cpu_latency_us is not None and only & {"mread", "udp"}:
            cpu_latency_phase(Path(tmp), args, rounds, only)
    for name, per_key in rounds.items():
        for key, samples in per_key.items():
            runs.setdefault(name, {})[key] = summarize_runs(samples, figure[key.split("-")[0]])
    if "rss" in only:
        results["bare_reactor_rss_mib"] = bare_reactor_rss_kib() / 1024
    results["environment"]["loadavg_1min_after"] = round(os.getloadavg()[0], 2)
    rows: list[list[str]] = []
    ok = True

    def cell(run: str, key: str) -> str:
        r = runs.get(run, {}).get(key)
        if r is None:
            return "-"
        lo, hi = r["range"]
        if key.startswith("udp"):
            return (
                f"{r['per_second']:,.0f}/s ({lo / 1e3:.1f}k-{hi / 1e3:.1f}k), "
                f"{r['endpoint_cpu_us']:.1f} µs CPU/nsend"
            )
        if key == "tcp":
            return f"{r['mb_per_s']:,.0f} MB/s ({lo:.0f}-{hi:.0f})"
        return f"{r['p50_us']:.1f} / {r['p99_us']:.1f} µs ({lo:.0f}-{hi:.0f})"

    def ceiling(key: str, link: str) -> str:
        ours, null = runs.get(f"ours-{link}", {}).get(key), runs.get(f"null-{link}", {}).get(key)
        if ours is None or null is None:
            return "-"
        value = {"udp": "per_second", "tcp": "mb_per_s"}.get(key.split("-")[0])
        if value is None:  # latency: the controller's share of the round trip
            return f"{null['p50_us']:.1f} µs ({null['p50_us'] / ours['p50_us']:.0%} of ours)"
        ratio = null[value] / ours[value]
        entry = results.setdefault("ceiling", {}).setdefault(link, {})[key] = {
            "ratio": ratio, "at_least_3x": ratio >= CEILING_RATIO
        }  # fmt: skip
        holds = "yes" if ratio >= CEILING_RATIO else "**no**"
        busy = null.get("controller_cpu")
        spent = ""
        if busy:
            # What the controller itself costs, which the machine's load moves least: the
            # rate at which its own CPU (Python and the kernel's copies) would fill one
            # CPU. Context for the measured ratio above, which is the goal's figure.
            share = busy["user"] + busy["system"]
            full = null[value] / share if share > 0 else float("inf")
            entry["controller_cpu_share"] = share
            entry["one_cpu_rate"] = full
            unit = "/s" if value == "per_second" else " MB/s"
            spent = (
                f"; controller CPU {busy['user']:.0%} + {busy['system']:.0%} kernel: one CPU "
                f"at {full:,.0f}{unit}, {full / ours[value]:.1f}x ours"
            )
        return (
            f"{cell(f'null-{link}', key)} ({ratio:.2f}x ours: ≥ {CEILING_RATIO:g}x {holds}{spent})"
        )

    names = {
        "udp": "immediate UDP nsend/s (64 B, 64 outstanding)",
        "tcp": "TCP download delivered as ndata",
        "mread": "mread(TIME, 8) round trip p50 / p99",
    }
    for key in (*udp_keys, "tcp", *(k for k in keys if k.startswith("mread"))):
        base = key.split("-")[0]
        if base not in only:
            continue
        lo, hi = REFERENCE[base]
        ref = {"udp": f"{lo / 1e3:.1f}k - {hi / 1e3:.1f}k", "tcp": f"{lo} - {hi} MB/s",
               "mread": "44 ms (Nagle)"}[base]  # fmt: skip
        tls = runs.get("ours-tls", {}).get(key)
        good: bool | None = None
        if tls is not None:
            if base == "udp":
                good = tls["per_second"] >= GOALS["udp"] and not tls["errors"]
                goal = f"≥ {GOALS['udp']:,.0f}/s (1.5x ref)"
            elif key == "tcp":
                good = tls["mb_per_s"] >= GOALS["tcp"] and tls["bytes"] == tls["expected"]
                goal = f"≥ {GOALS['tcp']:.0f} MB/s (1.2x ref)"
            else:
                good = tls["p50_us"] <= GOALS["mread"]
                goal = "p50 ≤ 50 µs"
        else:
            goal = "(over TLS)"
        ok &= good is not False
        rows.append([
            names[base] + (f" ({key.split('-', 1)[1]})" if "-" in key else ""), ref,
            cell("ours-tls", key), cell("ours-tcp", key),
            cell("base-tls", key), ceiling(key, "tls"), goal,
            "" if good is None else "yes" if good else "**no**",
        ])  # fmt: skip
    if "rss" in only:
        bare = results["bare_reactor_rss_mib"]
        for link in links:
            r = runs[f"ours-{link}"]["rss"]
            good = r["idle_rss_mib"] <= bare + RSS_ALLOWANCE_MIB
            ok &= good or link != "tls"
            base_rss = runs.get("base-tls", {}).get("rss") if link == "tls" else None
            rows.append([
                f"idle RSS after start ({link.upper()})", "22.9 MB (C, 3 processes)",
                f"{r['idle_rss_mib']:.1f} MiB" if link == "tls" else "-",
                f"{r['idle_rss_mib']:.1f} MiB" if link == "tcp" else "-",
                f"{base_rss['idle_rss_mib']:.1f} MiB" if base_rss else "-",
                f"bare reactor + TLS: {bare:.1f} MiB",
                f"≤ {bare + RSS_ALLOWANCE_MIB:.1f} MiB", "yes" if good else "**no**",
            ])  # fmt: skip
    if "tcp" in only and "ours-tls" in runs:
        plain_mb = median(r["plain_twisted_mb_per_s"] for r in rounds["ours-tls"]["tcp"])
        rows.append(["  plain Twisted client, same source", "", f"{plain_mb:,.0f} MB/s",
                     "", "", "", "(context)", ""])  # fmt: skip
    print(
        markdown_table(
            [
                "measure",
                "reference 1.1.0 (TLS, issue 14)",
                "ours TLS",
                "ours plain TCP",
                "baseline TLS (--baseline)",
                "controller ceiling (do-nothing endpoint, TLS)",
                "goal (TLS)",
                "met",
            ],
            rows,
        )
    )
    extra = {
        "busy": f"BusyPollUs {args.busy_poll_us}",
        "base": "baseline",
        "cpulat": f"ours with CpuLatencyUs {args.cpu_latency_us} (its own phase)",
        "cpulatnull": "do-nothing endpoint under the same CPU latency limit",
    }
    for name in (n for n in runs if n.startswith(("busy-", "cpulat")) or n == "base-tcp"):
        figures = [f"{key} {cell(name, key)}" for key in runs[name] if key != "rss"]
        kind, link = name.split("-")
        print(f"\n{extra[kind]}, {link.upper()}: " + "; ".join(figures))
    if "mread" in runs.get("cpulat-tls", {}):
        p50 = runs["cpulat-tls"]["mread"]["p50_us"]
        verdict = "met" if p50 <= GOALS["mread"] else f"missed by {p50 - GOALS['mread']:.1f} µs"
        print(f"mread p50 with CpuLatencyUs {args.cpu_latency_us}: {p50:.1f} µs, goal "
              f"≤ {GOALS['mread']:.0f} µs: {verdict}")  # fmt: skip
    if results.get("vcpu_ns"):
        print("\n" + vcpu_line(results["vcpu_ns"]))
    for key in udp_keys:
        # Per round: a rate that moves with the CPU per nsend is the endpoint's work (and
        # the vCPU's speed, above); one that moves with the preemptions is where the
        # scheduler put the controller.
        for name in ("ours-tls", "base-tls"):
            samples = rounds.get(name, {}).get(key)
            if samples:
                print(f"\n{key} rounds, {name} (nsend/s, endpoint CPU µs/nsend, endpoint "
                      "preempted / controller reads per 100 nsends): " + "; ".join(
                    f"{r['per_second'] / 1e3:.1f}k {r['endpoint_cpu_us']:.1f} "
                    f"{100 * r['endpoint_preempted_per_nsend']:.1f}/"
                    f"{100 * r['controller_reads_per_nsend']:.1f}" for r in samples))  # fmt: skip
    if "loopback" in runs:
        floor = runs["loopback"]["tcp"]
        lo, hi = floor["range"]
        share = {
            link: f"{runs[f'null-{link}']['tcp']['mb_per_s'] / floor['mb_per_s']:.0%}"
            for link in links
            if f"null-{link}" in runs
        }
        reach = ", ".join(f"{v} of it over {k.upper()}" for k, v in share.items())
        print(f"\nkernel loopback floor (one TCP stream, sendall -> recv_into per MiB, no TLS): "
              f"{floor['mb_per_s']:,.0f} MB/s ({lo:.0f}-{hi:.0f}); the do-nothing endpoint's "
              f"download reaches {reach}")  # fmt: skip
    if "null-tcp" in runs and "ours-tcp" in runs:
        figures = [f"{key} {ceiling(key, 'tcp')}" for key in runs["null-tcp"] if key != "rss"]
        print("\ncontroller ceiling, plain TCP: " + "; ".join(figures))
    if "idle_cpu" in results:
        print("CPU use at idle (share of one CPU): " + ", ".join(
            f"{name} {share:.1%}" for name, share in results["idle_cpu"].items()))  # fmt: skip
    env = results["environment"]
    print(f"\nPython {env['python']}, {env['cpus']} CPUs, kernel {env['kernel']}, "
          f"commit {env['commit']} ({env['utc']}), load {env['loadavg_1min']} → "
          f"{env['loadavg_1min_after']}")  # fmt: skip
    if args.json:
        write_json(args.json, results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
