"""Send precision of scheduled UDP trains, measured with kernel receive timestamps.

One run, one process tree. The parent owns a loopback UDP receiver with SO_TIMESTAMPNS and
an 8+ MiB buffer; each train is sent by a child process (fresh interpreter, fresh reactor)
running one *sender under test*:

* ``native``: plain Python sleep-then-spin loop (``time.sleep`` to 150 µs before, then spin
  on ``time.time_ns``) calling ``sendto``: the best a Python loop without a reactor does.
* ``scheduler``: `packetlab.endpoint.sender.PreciseScheduler` inside a real Twisted epoll
  reactor (timerfd + spin), with a 1 ms `LoopingCall` running to show the reactor stays live.
* ``scheduler-lead``: the same, with ``lead_ns`` calibrated from kernel TX timestamps so the
  packet (not the ``sendto`` call) leaves at the scheduled time; reports TX timestamps.
* ``endpoint``: a real ``twistd -n pktendpoint`` process over TLS (a child of
  this one, kept for the whole run), driven by a raw-frame controller in this process: one
  UDP nopen, then the whole train as nsends with absolute endpoint times (start = the
  endpoint's TIME, read with mread, plus `ENDPOINT_START_DELAY_NS`, so every nsend is queued
  before the first is due) and a tag each; the reported send times are the ntag times.
* ``endpoint-tcp``: the same over plain TCP (``--insecure-plaintext``).
* ``endpoint-limits``: the same over TLS, the controller's chain carrying certificate
  limits, so every send is metered and debited in the accounting database.

Each packet carries (train, seq, scheduled time). The kernel stamps it when the loopback
device takes it in, inside the sender's ``sendto``, so receiver scheduling does not matter.

Add a sender under test by subclassing `TrainSender` (implement `TrainSender.send_train`:
send the `TrainSpec` schedule, return the reported send times) and listing it in `SENDERS`.

Run from the repository root: ``python -m benchmarks.bench_send_precision --help``.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from benchmarks.common import environment, fmt, markdown_table, median, percentile, write_json

REPO = Path(__file__).resolve().parent.parent
HEADER = struct.Struct("!IIQ")  # train id, sequence number, scheduled time (ns)
SO_RCVBUFFORCE = 33
START_DELAY_NS = 60_000_000  # first packet this long after the sender is ready


@dataclass
class TrainSpec:
    dest: tuple[str, int]
    train_id: int
    count: int
    gap_ns: int
    size: int
    rt_priority: int = 0  # >0: the sender runs under SCHED_FIFO at this priority


@dataclass
class TrainResult:
    scheduled: list[int]  # scheduled time of packet i
    reported: list[int | None]  # send time the sender reported for packet i (ntag)
    extra: dict[str, Any] = field(default_factory=dict)


def payloads(spec: TrainSpec, start_ns: int) -> list[tuple[int, bytes]]:
    out = []
    for i in range(spec.count):
        when = start_ns + i * spec.gap_ns
        head = HEADER.pack(spec.train_id, i, when)
        out.append((when, head + b"\0" * max(0, spec.size - len(head))))
    return out


# -- senders under test (parent side) -------------------------------------------------------


class TrainSender:
    """A sender under test. Subclasses implement `send_train`."""

    name = "abstract"
    description = ""

    def send_train(self, spec: TrainSpec) -> TrainResult:
        raise NotImplementedError

    def close(self) -> None:
        """Stop whatever the sender keeps between trains (default: nothing)."""


class ChildSender(TrainSender):
    """Runs the train in a fresh child interpreter (``--child NAME``), JSON in and out."""

    def send_train(self, spec: TrainSpec) -> TrainResult:
        env = dict(
            os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
        )
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_send_precision", "--child", self.name],
            input=json.dumps(asdict(spec)),
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
            timeout=120,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{self.name} child failed:\n{proc.stderr}")
        data = json.loads(proc.stdout)
        return TrainResult(data["scheduled"], data["reported"], data.get("extra", {}))


class NativeSender(ChildSender):
    name = "native"
    description = "Python sleep-then-spin loop, no reactor"


class SchedulerSender(ChildSender):
    name = "scheduler"
    description = "PreciseScheduler in a Twisted reactor, lead 0, reports midpoint"


class SchedulerLeadSender(ChildSender):
    name = "scheduler-lead"
    description = "PreciseScheduler, lead learned from TX timestamps, reports TX timestamps"


ENDPOINT_START_DELAY_NS = 150_000_000  # first nsend due this long after the endpoint's TIME
_NTAG = struct.Struct("!BHQ")  # ntag body: sktid, tag, time (errid follows if not SUCCESS)
_T_RESULT, _T_MDATA, _T_NTAG = 0x40, 0x41, 0x60


class EndpointSender(TrainSender):
    """(c): the train through a real pktendpoint process, as a controller would send it:
    over TLS 1.3 (the real link, one record per nsend), plain TCP, or TLS with certificate
    limits (every send metered and debited in the accounting database)."""

    name = "endpoint"
    description = (
        "real twistd pktendpoint process over TLS driven by a raw-frame controller; nsends "
        "with absolute times, reports ntag times"
    )

    def __init__(self, *, tls: bool = True, limits: bool = False) -> None:
        self._ep: Any = None
        self._workdir: Any = None
        self._rt = 0
        self.tls = tls
        self.limits = limits
        self.repo = REPO  # the code the endpoint runs (`--base` for endpoint-base)

    def _endpoint(self, rt_priority: int) -> Any:
        if self._ep is None:
            import tempfile

            from benchmarks.bench_endpoint import Endpoint

            self._workdir = tempfile.TemporaryDirectory(prefix="bench-send-ep-")
            self._ep = Endpoint(
                Path(self._workdir.name), tls=self.tls, limits=self.limits, repo=self.repo
            )
            self._warm_up()
        if rt_priority != self._rt:
            # As an operator would: chrt -f PRIO twistd pktendpoint ...
            os.sched_setscheduler(self._ep.proc.pid, os.SCHED_FIFO, os.sched_param(rt_priority))
            self._rt = rt_priority
        return self._ep

    def _warm_up(self) -> None:
        # As in the scheduler modes: 128 sends at 300 µs so the wake-up margin is learned.
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.bind(("127.0.0.1", 0))
        try:
            self._train(sink.getsockname(), 0, 128, 300_000, HEADER.size)
        finally:
            sink.close()

    def _request(self, msg: Any) -> tuple[int, bytes]:

        kind, body = self._ep.request(msg)
        if kind == _T_RESULT and body:
            raise RuntimeError(f"endpoint refused {type(msg).__name__}: result {body.hex()}")
        return kind, body

    def _train(
        self, dest: tuple[str, int], train_id: int, count: int, gap: int, size: int
    ) -> TrainResult:
        from packetlab import wire
        from packetlab.wire import vmem

        ep = self._ep
        self._request(
            wire.Nopen(sktid=1, family=4, proto=17, rbufsz=1 << 16, laddr=bytes(4), lport=0)
        )
        _, now = self._request(wire.Mread(addr=vmem.TIME.addr, len=8))
        endpoint_now = struct.unpack("!Q", now[-8:])[0]
        start = endpoint_now + ENDPOINT_START_DELAY_NS
        spec = TrainSpec(dest, train_id, count, gap, size)
        items = payloads(spec, start)
        raddr = socket.inet_aton(dest[0])
        blob = b"".join(
            wire.encode(
                wire.Nsend(
                    sktid=1,
                    family=4,
                    proto=17,
                    time=when,
                    tag=i + 1,
                    data=data,
                    raddr=raddr,
                    rport=dest[1],
                )
            )
            for i, (when, data) in enumerate(items)
        )
        switches_before = _sched_counters(ep.proc.pid)
        wall_before = time.monotonic_ns()
        ep.ctl.sendall(blob)
        reported: list[int | None] = [None] * count
        results = tags = errors = refused = 0
        first_refusal = b""
        last_result_ns = 0
        deadline = time.monotonic() + 30 + count * gap / 1e9
        # A refused nsend (e.g. the endpoint's burst window under limits) is answered with
        # an error result and never tagged: before session 34 this loop then waited for
        # its ntag for ever. The socket's timeout bounds a silent endpoint too.
        ep.ctl.settimeout(max(1.0, deadline - time.monotonic()))
        try:
            while (results < count or tags < count - refused) and time.monotonic() < deadline:
                kind, body = ep.reader.next()
                if kind == _T_RESULT:
                    results += 1
                    errors += body != b""
                    if body:
                        refused += 1
                        first_refusal = first_refusal or body
                    last_result_ns = time.time_ns()
                elif kind == _T_NTAG:
                    _sktid, tag, when = _NTAG.unpack_from(body)
                    tags += 1
                    if len(body) == _NTAG.size:  # no errid: sent
                        reported[tag - 1] = when
                    else:
                        errors += 1
        except TimeoutError:
            pass  # said below with the counts
        finally:
            ep.ctl.settimeout(None)
        switches = {
            k: v - switches_before.get(k, 0) for k, v in _sched_counters(ep.proc.pid).items()
        }
        switches["wall_ns"] = time.monotonic_ns() - wall_before
        if refused:
            raise RuntimeError(
                f"endpoint train: the endpoint refused {refused} of {count} nsends (first: "
                f"result {first_refusal.hex()}); under limits, see the chain's burst window"
            )
        self._request(wire.Nclose(sktid=1))
        if results < count or tags < count:
            raise RuntimeError(f"endpoint train: {results} results, {tags} ntags of {count}")
        return TrainResult(
            [w for w, _ in items],
            reported,
            {
                "errors": errors,
                # > 0: every nsend was queued before the first was due (same host clock)
                "queued_ahead_ns": start - last_result_ns,
                # the endpoint's reactor thread over the train (queueing to last ntag):
                # involuntary = taken off the CPU while runnable (the holes of a spin)
                **switches,
            },
        )

    def send_train(self, spec: TrainSpec) -> TrainResult:
        self._endpoint(spec.rt_priority)
        host, port = spec.dest
        return self._train((host, port), spec.train_id, spec.count, spec.gap_ns, spec.size)

    def close(self) -> None:
        if self._ep is not None:
            self._ep.stop()
            self._ep = None
            self._workdir.cleanup()


class EndpointTCPSender(EndpointSender):
    name = "endpoint-tcp"
    description = "the same over plain TCP (--insecure-plaintext)"


class EndpointBaseSender(EndpointSender):
    name = "endpoint-base"
    description = "the same over TLS, running the code at --base PATH (before/after in one run)"


class EndpointLimitsSender(EndpointSender):
    name = "endpoint-limits"
    description = "the same over TLS with certificate limits (every send debited, SQLite)"


class EndpointLimitsBaseSender(EndpointSender):
    name = "endpoint-limits-base"
    description = "endpoint-limits running the code at --base PATH (accounting before/after)"


SENDERS: dict[str, TrainSender] = {
    s.name: s
    for s in (
        NativeSender(),
        SchedulerSender(),
        SchedulerLeadSender(),
        EndpointSender(),
        EndpointTCPSender(tls=False),
        EndpointLimitsSender(limits=True),
        EndpointBaseSender(),
        EndpointLimitsBaseSender(limits=True),
    )
}


def _sched_counters(pid: int) -> dict[str, int]:
    """Scheduler counters of `pid`'s main thread (the reactor's), from /proc ({} elsewhere):
    voluntary/nonvoluntary context switches (a sleep / taken off the CPU while runnable),
    run_ns on the CPU and wait_ns runnable but waiting for it (schedstat)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
                    out[name.split("_")[0]] = int(value)
        with open(f"/proc/{pid}/schedstat") as f:
            run_ns, wait_ns, _slices = f.read().split()
        out.update(run_ns=int(run_ns), wait_ns=int(wait_ns))
    except (OSError, ValueError):
        return {}
    return out


class Contention:
    """`n` busy-loop processes (``while 1: pass``) competing for the CPUs, as other work on
    a shared machine does; started and killed by PID, never by name."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Contention:
        try:
            for _ in range(self.n):
                self.procs.append(subprocess.Popen([sys.executable, "-S", "-c", "while 1: pass"]))
            # Spinning before the train starts: each has used CPU time (poll, deadline).
            deadline = time.monotonic() + 10
            for proc in self.procs:
                while _cpu_ticks(proc.pid) == 0 and time.monotonic() < deadline:
                    time.sleep(0.01)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            proc.wait()
        self.procs.clear()


def _cpu_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


# -- child side ------------------------------------------------------------------------------


def _udp_sender() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    return sock


def child_native(spec: TrainSpec) -> dict[str, Any]:
    sock = _udp_sender()
    dest = tuple(spec.dest)
    now = time.time_ns
    spin_ns = 150_000
    train = payloads(spec, now() + START_DELAY_NS)
    reported: list[int | None] = []
    for when, data in train:
        delay = when - now() - spin_ns
        if delay > 0:
            time.sleep(delay / 1e9)
        before = now()
        while before < when:
            before = now()
        try:
            sock.sendto(data, dest)
        except OSError:
            reported.append(None)
            continue
        reported.append((before + now()) // 2)
    return {"scheduled": [w for w, _ in train], "reported": reported, "extra": {}}


def child_scheduler(spec: TrainSpec, use_lead: bool) -> dict[str, Any]:
    from twisted.internet import reactor as _reactor
    from twisted.internet.task import LoopingCall

    from packetlab.endpoint.sender import PreciseScheduler, ScheduledSend
    from packetlab.endpoint.timestamps import TxStampMatcher

    reactor: Any = _reactor
    sock = _udp_sender()
    dest = tuple(spec.dest)
    sched = PreciseScheduler(reactor)
    out: dict[str, Any] = {"extra": {}}
    ticks: list[int] = []
    ticker = LoopingCall(lambda: ticks.append(time.time_ns()))
    stamps = TxStampMatcher(sock) if use_lead else None

    def action(data: bytes) -> Callable[[], object]:
        if stamps is not None:
            return functools.partial(stamps.sendto, data, dest)
        return functools.partial(sock.sendto, data, dest)

    def report(send: ScheduledSend) -> int | None:
        """The send time an endpoint would put in ntag; learns the lead from TX stamps."""
        if send.error is not None:
            return None
        if stamps is not None:
            assert isinstance(send.result, int)
            ts = stamps.take(send.result, send.sent_before_ns)
            if ts is not None:
                sched.observe_send_latency(ts - send.sent_before_ns)
                return ts
        return send.sent_ns

    def warm_up() -> None:
        # Let the wake-up estimator (and lead) learn this machine before the measured train.
        calib = HEADER.pack(0, 0, 0)
        base = time.time_ns() + 1_000_000
        for i in range(128):
            sched.schedule(base + i * 300_000, action(calib), report)
        sched.schedule(
            base + 128 * 300_000,
            action(calib),
            lambda _send: reactor.callLater(0, train),
        )

    def train() -> None:
        out["extra"]["lead_before_ns"] = sched.lead_ns
        stats_before = {k: getattr(sched.stats, k) for k in ("yields", "late")}
        sched.stats.max_busy_ns = 0
        items = payloads(spec, time.time_ns() + START_DELAY_NS)
        reported: list[int | None] = [None] * len(items)

        def done(i: int, send: ScheduledSend) -> None:
            reported[i] = report(send)
            if i == len(items) - 1:
                out["scheduled"] = [w for w, _ in items]
                out["reported"] = reported
                out["extra"].update(
                    lead_after_ns=sched.lead_ns,
                    margin_ns=sched.wakeup.margin_ns,
                    max_busy_ns=sched.stats.max_busy_ns,
                    yields=sched.stats.yields - stats_before["yields"],
                    late=sched.stats.late - stats_before["late"],
                    tick_late_ns=_tick_lateness(ticks, items[0][0], items[-1][0]),
                )
                reactor.callLater(0, reactor.stop)

        ticker.start(0.001)
        for i, (when, data) in enumerate(items):
            sched.schedule(when, action(data), functools.partial(done, i))

    def begin() -> None:
        sched.start()
        warm_up()

    reactor.callWhenRunning(begin)
    reactor.run()
    return out


def _tick_lateness(ticks: list[int], start: int, end: int) -> dict[str, float]:
    """Gaps between 1 ms LoopingCall ticks during the train, minus 1 ms (reactor liveness)."""
    inside = [t for t in ticks if start <= t <= end + 1_000_000]
    gaps = [b - a - 1_000_000 for a, b in itertools.pairwise(inside)]
    if not gaps:
        return {}
    return {"p50": percentile(gaps, 50), "p99": percentile(gaps, 99), "max": max(gaps)}


def child_main(mode: str) -> None:
    raw = json.loads(sys.stdin.read())
    raw["dest"] = tuple(raw["dest"])
    spec = TrainSpec(**raw)
    if spec.rt_priority:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(spec.rt_priority))
    if mode == "native":
        result = child_native(spec)
    elif mode in ("scheduler", "scheduler-lead"):
        result = child_scheduler(spec, use_lead=mode == "scheduler-lead")
    else:
        raise SystemExit(f"unknown child mode {mode!r}")
    json.dump(result, sys.stdout)


# -- receiver and analysis (parent side) -----------------------------------------------------


class Receiver:
    """Loopback UDP socket with kernel rx timestamps and a buffer large enough for a train."""

    def __init__(self, bufsize: int = 16 << 20) -> None:
        from packetlab.endpoint.timestamps import enable_rx_timestamps

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, bufsize)
        except PermissionError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, bufsize)
        enable_rx_timestamps(self.sock)
        self.sock.settimeout(2.0)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()
        return host, port

    def collect(self, train_id: int, count: int) -> dict[int, int]:
        """seq -> kernel rx time for the train's packets (waits up to 2 s for stragglers)."""
        from packetlab.endpoint.timestamps import recv_with_timestamp

        got: dict[int, int] = {}
        while len(got) < count:
            try:
                data, _addr, ts = recv_with_timestamp(self.sock, 2048)
            except TimeoutError:
                break
            if len(data) >= HEADER.size and ts is not None:
                tid, seq, _when = HEADER.unpack_from(data)
                if tid == train_id:
                    got[seq] = ts
        return got


@dataclass
class Samples:
    raw_err: list[int] = field(default_factory=list)  # rx - scheduled
    gap_err: list[int] = field(default_factory=list)  # |actual gap - intended gap|
    gaps: list[int] = field(default_factory=list)  # actual gaps
    report_err: list[int] = field(default_factory=list)  # |reported send time - rx|
    report_off: list[int] = field(default_factory=list)  # reported send time - rx (signed)
    sent: int = 0
    received: int = 0
    extras: list[dict[str, Any]] = field(default_factory=list)
    per_train: list[dict[str, float]] = field(default_factory=list)  # to spot stalled trains

    def add(self, spec: TrainSpec, result: TrainResult, rx: dict[int, int]) -> None:
        self.sent += spec.count
        self.received += len(rx)
        self.extras.append(result.extra)
        first = len(self.raw_err), len(self.gaps)
        for seq, ts in rx.items():
            self.raw_err.append(ts - result.scheduled[seq])
            rep = result.reported[seq]
            if rep is not None:
                self.report_err.append(abs(rep - ts))
                self.report_off.append(rep - ts)
            if seq - 1 in rx:
                gap = ts - rx[seq - 1]
                self.gaps.append(gap)
                self.gap_err.append(abs(gap - spec.gap_ns))
        raw, gaps, errs = (
            self.raw_err[first[0] :],
            self.gaps[first[1] :],
            self.gap_err[first[1] :],
        )
        if raw and gaps:
            self.per_train.append(
                {
                    "raw_err_p50_ns": percentile(raw, 50),
                    "gap_err_p50_ns": percentile(errs, 50),
                    "median_gap_ns": percentile(gaps, 50),
                    # how the train started: its first packet's raw error (None: lost)
                    "first_raw_err_ns": rx[0] - result.scheduled[0] if 0 in rx else None,
                }
            )


def timestamp_accuracy(dest: tuple[str, int], receiver: Receiver, count: int) -> dict[str, Any]:
    """Where do clock readings around sendto and the TX software timestamp fall vs rx?"""
    from packetlab.endpoint.timestamps import (
        SCM_TSTAMP_SND,
        enable_tx_timestamps,
        read_tx_timestamps,
    )

    sock = _udp_sender()
    enable_tx_timestamps(sock)
    now = time.time_ns
    train_id = 999_999
    rows: dict[int, tuple[int, int, int | None]] = {}
    for seq in range(count):
        data = HEADER.pack(train_id, seq, 0) + b"\0" * 48
        before = now()
        sock.sendto(data, dest)
        after = now()
        stamps = [s.ts_ns for s in read_tx_timestamps(sock) if s.kind == SCM_TSTAMP_SND]
        rows[seq] = (before, after, stamps[-1] if stamps else None)
        time.sleep(0.0001)
    rx = receiver.collect(train_id, count)
    sock.close()
    offsets: dict[str, list[int]] = {"before": [], "after": [], "midpoint": [], "tx_software": []}
    for seq, ts in rx.items():
        before, after, tx = rows[seq]
        offsets["before"].append(before - ts)
        offsets["after"].append(after - ts)
        offsets["midpoint"].append((before + after) // 2 - ts)
        if tx is not None:
            offsets["tx_software"].append(tx - ts)
    return {
        name: {
            "p10": percentile(v, 10),
            "p50": percentile(v, 50),
            "p90": percentile(v, 90),
            "abs_p50": median([abs(x) for x in v]),
        }
        for name, v in offsets.items()
        if v
    }


def immediate_rate(count: int) -> dict[str, float]:
    """Immediate (past-due) sends per second: raw sendto vs PreciseScheduler.schedule."""
    code = f"""
import functools, json, socket, time
from twisted.internet import reactor
from packetlab.endpoint.sender import PreciseScheduler
sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); sink.bind(("127.0.0.1", 0))
dest = sink.getsockname()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setblocking(False)
data = b"x" * 64
out = {{}}
def send():
    try:
        s.sendto(data, dest)
    except BlockingIOError:
        pass
def run():
    sched = PreciseScheduler(reactor); sched.start()
    for name, fn in (("sendto", None), ("schedule", sched.schedule)):
        best = 0.0
        for _ in range(3):
            t0 = time.perf_counter()
            if fn is None:
                for _ in range({count}):
                    send()
            else:
                done = lambda snd: None
                for _ in range({count}):
                    fn(0, functools.partial(s.sendto, data, dest), done)
            best = max(best, {count} / (time.perf_counter() - t0))
        out[name] = best
    reactor.stop()
reactor.callWhenRunning(run)
reactor.run()
print(json.dumps(out))
"""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env, timeout=120
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    result: dict[str, float] = json.loads(proc.stdout)
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    receiver = Receiver()
    gaps_ns = [round(float(g) * 1000) for g in args.gaps.split(",")]
    modes = args.modes.split(",")
    unknown = [m for m in modes if m not in SENDERS]
    if unknown:
        raise SystemExit(f"unknown mode(s) {unknown}; choose from {sorted(SENDERS)}")
    for based in ("endpoint-base", "endpoint-limits-base"):
        if based in modes:
            if not args.base:
                raise SystemExit(f"mode {based} needs --base PATH (a checkout to compare)")
            cast(EndpointSender, SENDERS[based]).repo = Path(args.base).resolve()
    contends = [int(n) for n in str(args.contend).split(",")]
    samples: dict[tuple[str, int, int], Samples] = {
        (m, g, c): Samples() for c in contends for m in modes for g in gaps_ns
    }
    train_id = 1
    try:
        for rep in range(args.repeats):
            for contend in contends:
                with Contention(contend):
                    for gap in gaps_ns:
                        for mode in modes:  # interleaved: every mode sees the same machine
                            spec = TrainSpec(
                                receiver.address, train_id, args.packets, gap, args.size, args.rt
                            )
                            result = SENDERS[mode].send_train(spec)
                            rx = receiver.collect(train_id, args.packets)
                            samples[(mode, gap, contend)].add(spec, result, rx)
                            train_id += 1
                            print(
                                f"repeat {rep + 1}/{args.repeats} contend {contend} "
                                f"gap {gap} ns {mode}: done",
                                file=sys.stderr,
                            )
    finally:
        for mode in modes:
            SENDERS[mode].close()
    report: dict[str, Any] = {"environment": environment(), "args": vars(args), "trains": []}
    for (mode, gap, contend), s in samples.items():
        if not s.raw_err:
            report["trains"].append(
                {
                    "mode": mode,
                    "gap_ns": gap,
                    "contend": contend,
                    "sent": s.sent,
                    "received": 0,
                }
            )
            continue
        row = {
            "mode": mode,
            "gap_ns": gap,
            "contend": contend,
            "sent": s.sent,
            "received": s.received,
            "raw_err_p10_ns": percentile(s.raw_err, 10),
            "raw_err_p50_ns": percentile(s.raw_err, 50),
            "raw_err_p90_ns": percentile(s.raw_err, 90),
            "raw_err_p99_ns": percentile(s.raw_err, 99),
            "raw_err_min_ns": min(s.raw_err),
            "early_fraction": sum(1 for e in s.raw_err if e < 0) / len(s.raw_err),
            "gap_err_p50_ns": percentile(s.gap_err, 50),
            "gap_err_p90_ns": percentile(s.gap_err, 90),
            "gap_err_p99_ns": percentile(s.gap_err, 99),
            "median_gap_ns": percentile(s.gaps, 50),
            "burst_fraction": sum(1 for g in s.gaps if g < gap / 2) / len(s.gaps),
            "report_err_p50_ns": percentile(s.report_err, 50) if s.report_err else None,
            "report_off_p50_ns": percentile(s.report_off, 50) if s.report_off else None,
            "extras": s.extras,
            "per_train": s.per_train,
        }
        report["trains"].append(row)
    native = {(r["gap_ns"], r["contend"]): r for r in report["trains"] if r["mode"] == "native"}
    for r in report["trains"]:
        base = native.get((r["gap_ns"], r["contend"]))
        if base and base.get("gap_err_p50_ns") and "gap_err_p50_ns" in r:
            r["gap_err_ratio_to_native"] = r["gap_err_p50_ns"] / base["gap_err_p50_ns"]
    if not args.no_extra:
        report["timestamp_accuracy"] = timestamp_accuracy(receiver.address, receiver, args.packets)
        report["immediate_rate"] = immediate_rate(20_000)
    return report


def render_per_train(report: dict[str, Any]) -> str:
    """Medians over trains of each train's p50s: a train hit by a machine stall (a late
    start it never catches up) moves one sample here, not the pooled percentiles."""
    us = 1000.0
    rows = []
    for r in report["trains"]:
        pt = r.get("per_train") or []
        if not pt:
            continue
        late = sum(1 for t in pt if t["raw_err_p50_ns"] > 100_000)
        first = [t["first_raw_err_ns"] for t in pt if t.get("first_raw_err_ns") is not None]
        preempted = [e["nonvoluntary"] for e in r.get("extras", []) if "nonvoluntary" in e]
        rows.append(
            [
                r["mode"],
                fmt(r["gap_ns"], us),
                r.get("contend", 0),
                len(pt),
                fmt(median(t["raw_err_p50_ns"] for t in pt), us),
                fmt(median(t["gap_err_p50_ns"] for t in pt), us, 3),
                fmt(median(t["median_gap_ns"] for t in pt), us, 3),
                late,
                ", ".join(fmt(f, us) for f in first) or "-",
                ", ".join(str(n) for n in preempted) or "-",
            ]
        )
    return markdown_table(
        [
            "mode",
            "gap µs",
            "busy loops",
            "trains",
            "raw err p50 µs (median of trains)",
            "gap err p50 µs (median of trains)",
            "median gap µs (median of trains)",
            "trains with raw err p50 > 100 µs",
            "first packet raw err µs (each train)",
            "endpoint preempted (involuntary switches, each train)",
        ],
        rows,
    )


def render(report: dict[str, Any]) -> str:
    us = 1000.0
    rows = []
    for r in report["trains"]:
        if "raw_err_p50_ns" not in r:
            rows.append(
                [r["mode"], fmt(r["gap_ns"], us), r.get("contend", 0)]
                + [f"{r['received']}/{r['sent']}"]
                + ["-"] * 14
            )
            continue
        busy = [e["max_busy_ns"] for e in r["extras"] if "max_busy_ns" in e]
        rows.append(
            [
                r["mode"],
                fmt(r["gap_ns"], us),
                r.get("contend", 0),
                f"{r['received']}/{r['sent']}",
                fmt(r["raw_err_p10_ns"], us),
                fmt(r["raw_err_p50_ns"], us),
                fmt(r["raw_err_p90_ns"], us),
                fmt(r["raw_err_p99_ns"], us),
                f"{r['early_fraction']:.3f}",
                fmt(r["gap_err_p50_ns"], us, 3),
                fmt(r["gap_err_p90_ns"], us),
                fmt(r["gap_err_p99_ns"], us),
                fmt(r["median_gap_ns"], us, 3),
                f"{r['burst_fraction']:.3f}",
                fmt(r["report_err_p50_ns"], us, 3),
                fmt(r["report_off_p50_ns"], us, 3),
                fmt(r.get("gap_err_ratio_to_native"), 1.0),
                f"{fmt(median(busy), us, 0)} / {fmt(max(busy), us, 0)}" if busy else "-",
            ]
        )
    out = [
        markdown_table(
            [
                "mode",
                "gap µs",
                "busy loops",
                "rx/sent",
                "raw err p10 µs",
                "raw err p50 µs",
                "raw err p90 µs",
                "raw err p99 µs",
                "early (raw err < 0)",
                "gap err p50 µs",
                "gap err p90 µs",
                "gap err p99 µs",
                "median gap µs",
                "bursts",
                "|reported - rx| p50 µs",
                "reported minus rx p50 µs",
                "gap err / native",
                "busiest slice µs (median train / worst)",
            ],
            rows,
        )
    ]
    out.append("")
    out.append(render_per_train(report))
    acc = report.get("timestamp_accuracy")
    if acc:
        out.append("")
        out.append(
            markdown_table(
                [
                    "send time taken as",
                    "minus kernel rx p10 µs",
                    "p50 µs",
                    "p90 µs",
                    "|offset| p50 µs",
                ],
                [
                    [
                        k,
                        fmt(v["p10"], us, 3),
                        fmt(v["p50"], us, 3),
                        fmt(v["p90"], us, 3),
                        fmt(v["abs_p50"], us, 3),
                    ]
                    for k, v in acc.items()
                ],
            )
        )
    rate = report.get("immediate_rate")
    if rate:
        out.append("")
        out.append(
            markdown_table(
                ["immediate path", "sends/s", "µs/send"],
                [[k, f"{v:,.0f}", fmt(1e6 / v, 1.0)] for k, v in rate.items()],
            )
        )
    lines = [f"- {k}: {v}" for k, v in report["environment"].items()]
    return "\n".join(out) + "\n\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Send precision of scheduled UDP trains on loopback, measured with kernel "
        "receive timestamps (SO_TIMESTAMPNS). Modes: "
        + "; ".join(f"{n}: {s.description}" for n, s in SENDERS.items()),
    )
    parser.add_argument("--packets", type=int, default=2000, help="packets per train (2000)")
    parser.add_argument("--gaps", default="100,7.3", help="comma-separated gaps in µs (100,7.3)")
    parser.add_argument("--repeats", type=int, default=3, help="trains per mode and gap (3)")
    parser.add_argument("--size", type=int, default=64, help="UDP payload bytes (64, min 16)")
    parser.add_argument(
        "--modes",
        default=",".join(n for n in SENDERS if not n.endswith("-base")),
        help="comma-separated senders (default: all but the -base ones)",
    )
    parser.add_argument(
        "--rt",
        type=int,
        default=0,
        metavar="PRIO",
        help="run every sender under SCHED_FIFO at this priority (needs root; for a shared, "
        "busy machine; default 0 = normal scheduling)",
    )
    parser.add_argument(
        "--contend",
        default="0",
        metavar="N[,N...]",
        help="run every train beside N busy-loop processes (`while 1: pass`, killed by PID "
        "after the trains of that level); a list measures each level in every repeat "
        "(e.g. 0,2,4; default 0 = none of ours)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the full results as JSON")
    parser.add_argument(
        "--base",
        metavar="PATH",
        help="for modes endpoint-base, endpoint-limits-base: a tree holding another "
        "version's packetlab/ and twisted/plugins/ (e.g. `git archive main packetlab "
        "twisted | tar -x -C PATH`)",
    )
    parser.add_argument(
        "--no-extra",
        action="store_true",
        help="skip the timestamp-accuracy and immediate-rate sections",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_main(args.child)
        return
    try:
        bad = any(int(n) < 0 for n in args.contend.split(","))
    except ValueError:
        bad = True
    if bad:
        parser.error(f"--contend takes counts >= 0 separated by commas, got {args.contend!r}")
    if args.packets < 2 or args.repeats < 1 or args.size < HEADER.size:
        parser.error(f"need --packets >= 2, --repeats >= 1, --size >= {HEADER.size}")
    report = run(args)
    print(render(report))
    if args.json:
        write_json(args.json, report)


if __name__ == "__main__":
    main()
