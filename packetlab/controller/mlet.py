"""Mlets: experiment programs that speak PacketLab unencrypted on fd 0 (PROTOCOL.md §7.3).

`EndpointWorker` is the manager's end of one endpoint connection (the application
protocol under TLS): it submits the monitor programs (`cdata`), sends `start`, reads the
endpoint's HostID, then hands the session to an mlet over a Unix socketpair and relays
whole messages both ways: each message toward the endpoint is one write (one TLS record,
INTEROP.md), `linfo` from the endpoint is logged and not forwarded, and each direction
pauses the other's source when its buffer is full. EOF on either side ends the session.

`MletProcess` runs one mlet: ``execve(MLET, ARGS)`` with the socket on fd 0 and only
``EPADDR`` in the environment (default mode), or once for all endpoints (``-s``), each
endpoint's socket then passed over fd 0 with SCM_RIGHTS and the NUL-terminated address.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ProcessDone, ProcessTerminated
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from packetlab import wire
from packetlab.controller import deathsig, outstream
from packetlab.controller.errors import status_name
from packetlab.wire import vmem
from packetlab.wire.constants import BODY_MAX, HEADER_LEN, LINFO_INFO_MAX, MsgType

__all__ = [
    "EndpointWorker",
    "FrameSplitter",
    "MletProcess",
    "TurnedAway",
    "python_mlet_argv",
    "python_mlet_problem",
]

OUTPUT_KEEP = 65536  # bytes of each mlet's stdout kept for its result line
#: The longest partial stdout line held back (so that mlets do not interleave mid-line):
#: an mlet writing MBs without a newline grew the held line without bound (session 28).
LINE_HOLD_MAX = 65536
#: Seconds an exited mlet's output may still come before its endpoint is reported: a
#: process it started that holds its stdout or stderr (a background child) delayed the
#: result until that process exited too, and a SIGTERMed manager never exited (session
#: 28). Such a process's output is still passed on afterwards, as the reference's mlets
#: write to its own terminal and it neither waits for nor kills what they leave (session
#: 29: from session 28 the pipes were closed, and the process died of SIGPIPE at its next
#: line, which was lost).
PIPE_GRACE = 1.0
#: A busy manager (fifty endpoints at once, load 12) may not have read an exited mlet's
#: last output, or the EOF behind it, within PIPE_GRACE: the mlet was then reported as
#: lingering and its output missed its result (session 29). While its pipes still hold
#: unread bytes or an unread EOF, the grace is extended, up to this many seconds in all
#: (a lingering child that writes without pause keeps its pipe readable too).
PIPE_GRACE_MAX = 10.0
#: Seconds an mlet may run on after its session ended (the endpoint closed, or the mlet
#: closed its fd 0) before SIGTERM, then `KILL_GRACE` more before SIGKILL: one that
#: ignored the EOF held its endpoint's result, `-n`'s exit and the wrap-up for ever
#: (session 29). Long enough for an mlet's own work after the session (writing its
#: results); the reference waits for ever.
EOF_GRACE = 5.0
#: Seconds between that SIGTERM and the SIGKILL.
KILL_GRACE = 2.0
#: Seconds the endpoint gets to answer the whole setup (cdata, start, the HostID read);
#: the reference endpoint itself gives up after 10 s (PROTOCOL.md §1.4 step 3).
SETUP_TIMEOUT = 30.0
#: The largest frame body taken from an endpoint (its largest messages are 64 KiB ndata,
#: linfo and mdata; `EndpointSession` has the same bound); the mlet may send up to 16 MiB.
ENDPOINT_FRAME_MAX = 1 << 20
#: linfo entries kept per endpoint (the reference sends one per monitor: at most 116).
MAX_LINFO = 128
#: Bytes of linfo kept per endpoint (name, aux and info of the entries kept): the
#: reference's are a few bytes each; a hostile endpoint sent 128 of 1 MB (+128 MB of
#: memory, log and results file per connection).
MAX_LINFO_BYTES = 1 << 20
#: The longest linfo name or aux taken (the reference's are "monitor" and 2 bytes).
LINFO_FIELD_MAX = 256
#: Characters of a linfo's info in its log line (the results file has all of it).
LINFO_LOG_CHARS = 200


class TurnedAway(RuntimeError):
    """`launch` refused the endpoint and the manager has said why in a line of its own
    (the singleton's full queue): the endpoint fails without a line of its own, as a flood
    of them would be one line each."""


class FrameSplitter:
    """Cuts a byte stream into whole PacketLab frames (type, frame bytes), sans-IO."""

    def __init__(self, max_body: int = BODY_MAX) -> None:
        self._buf = bytearray()
        self.max_body = max_body

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buf += data
        out = []
        pos = 0
        buf = self._buf
        while len(buf) - pos >= HEADER_LEN:
            (word,) = struct.unpack_from(">I", buf, pos)
            length = word & 0xFFFFFF
            if length > self.max_body:
                raise wire.FrameTooLarge(pos, length, self.max_body)
            end = pos + HEADER_LEN + length
            if end > len(buf):
                break
            out.append((word >> 24, bytes(buf[pos:end])))
            pos = end
        if pos:
            del buf[:pos]
        return out


def python_mlet_argv(mlet: str, args: Sequence[str]) -> list[str] | None:
    """The command that runs `mlet` as a Python experiment (a ``.py`` file or a module
    path such as ``examples.http_get`` or ``pkg.mod:function``), or None when it is a
    program to execute as it is."""
    is_file = os.path.isfile(mlet)
    if is_file and os.access(mlet, os.X_OK) and not mlet.endswith(".py"):
        return None
    name = mlet.split(":", 1)[0]
    looks_like_module = all(p.isidentifier() for p in name.split("."))
    if mlet.endswith(".py") or (not is_file and looks_like_module):
        return [sys.executable, "-m", "packetlab.controller.pymlet", mlet, *args]
    return None


def python_mlet_problem(mlet: str) -> str | None:
    """Why the Python experiment `mlet` cannot run (a ``.py`` file that is not there or
    does not compile, a module path with no such module from here), else None. Nothing is
    imported: the manager must not run the experiment's code. Checked at start, since
    otherwise every endpoint's mlet fails the same way (`FileNotFoundError`,
    `SyntaxError`, `ModuleNotFoundError`)."""
    name = mlet if os.path.isfile(mlet) else mlet.split(":", 1)[0]  # as pymlet.load_mlet
    if name.endswith(".py") or os.path.isfile(name):
        if not os.path.isfile(name):
            return f"no such file: {name}"
        try:  # compiled, not run: a syntax error failed every endpoint's mlet
            with open(name, "rb") as f:
                compile(f.read(), name, "exec", dont_inherit=True)
        except (SyntaxError, ValueError) as e:
            return f"{type(e).__name__}: {e}"
        except OSError as e:
            return f"cannot read {name}: {e.strerror}"
        return None
    if _module_spec(name) is not None:
        return None
    return f"no file or Python module {name} (in {os.getcwd()} or the installed packages)"


def python_mlet_source(mlet: str) -> str | None:
    """The source file of the Python experiment `mlet` (found as `python_mlet_problem`
    finds it, nothing imported), or None."""
    name = mlet if os.path.isfile(mlet) else mlet.split(":", 1)[0]
    if name.endswith(".py") or os.path.isfile(name):
        return name if os.path.isfile(name) else None
    spec = _module_spec(name)
    origin = spec.origin if spec is not None else None
    return origin if origin and origin.endswith(".py") else None


def _module_spec(name: str) -> Any:
    """The module `name`'s spec as `python -m` in the child finds it, or None."""
    import importlib.machinery
    import importlib.util

    parts = name.split(".")
    try:  # the child runs `python -m`: the current directory first, then sys.path
        spec = importlib.util.find_spec(parts[0])
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        spec = importlib.machinery.PathFinder.find_spec(parts[0], [os.getcwd()])
    for i in range(1, len(parts)):
        where = spec.submodule_search_locations if spec is not None else None
        if not where:
            return None
        spec = importlib.machinery.PathFinder.find_spec(".".join(parts[: i + 1]), list(where))
    return spec


class MletProcess(ProcessProtocol):
    """One mlet child. stdout passes through to ours line by line, stderr as it comes;
    the last `OUTPUT_KEEP` bytes of each are kept (`output`, `errors`: the results)."""

    log = Logger()

    def __init__(self, label: str, on_exit: Callable[[MletProcess], None]) -> None:
        self.label = label
        self.on_exit = on_exit
        self.output = bytearray()
        self.errors = bytearray()
        self._line = bytearray()
        self._mid_line = False  # a long line was passed on before its end
        self.started = time.time()
        self.finished: float | None = None
        self.exit_code: int | None = None
        self.signal: int | None = None
        self.running = False
        self.pid: int | None = None
        self.ended: Deferred[None] = Deferred()  # fires once the process has exited
        self._tree: dict[int, str] = {}  # descendants signalled by `kill`: pid -> start time
        self.reactor: Any = None  # set by `spawn`: the pipes' grace after the exit
        self._pipe_timer: Any = None
        self._pipe_waited = 0.0  # seconds of PIPE_GRACE and its extensions so far
        self._exit_reason: Failure | None = None
        #: Exited and reported while a process it started still holds its output (read on).
        self.lingering = False
        #: Signalled for running on `EOF_GRACE` after its session ended (`overdue_after`).
        self.overdue: float | None = None
        self._overdue_timer: Any = None

    @classmethod
    def spawn(
        cls,
        reactor: Any,
        argv: Sequence[str],
        fd0: int,
        env: dict[str, str],
        label: str,
        on_exit: Callable[[MletProcess], None],
    ) -> MletProcess:
        proto = cls(label, on_exit)
        proto.reactor = reactor
        # tied to us: a manager killed outright (SIGKILL, OOM) left it running (deathsig)
        proc = deathsig.spawn(
            reactor, proto, argv[0], argv, env=env, childFDs={0: fd0, 1: "r", 2: "r"}
        )
        proto.pid = proc.pid
        proto.running = True
        return proto

    def outReceived(self, data: bytes) -> None:
        self.output += data
        if len(self.output) > OUTPUT_KEEP:
            del self.output[: len(self.output) - OUTPUT_KEEP]
        self._line += data
        cut = self._line.rfind(b"\n") + 1
        if len(self._line) - cut > LINE_HOLD_MAX:  # no newline for long: pass it all on
            cut = len(self._line)
            self._mid_line = True
        elif cut:
            self._mid_line = False
        if cut:  # whole lines only, so that mlets running at once do not interleave mid-line
            outstream.write(sys.stdout, bytes(self._line[:cut]))
            del self._line[:cut]

    def errReceived(self, data: bytes) -> None:
        self.errors += data
        if len(self.errors) > OUTPUT_KEEP:
            del self.errors[: len(self.errors) - OUTPUT_KEEP]
        outstream.write(sys.stderr, data)

    def processExited(self, reason: Failure) -> None:
        self._exit_reason = reason
        if self.reactor is not None:  # its output, if still held open, gets PIPE_GRACE
            self._pipe_waited = PIPE_GRACE
            self._pipe_timer = self.reactor.callLater(PIPE_GRACE, self._linger)

    def _unread_pipes(self) -> bool:
        """Whether stdout or stderr has bytes or an EOF the reactor has not read yet."""
        pipes = getattr(self.transport, "pipes", None) or {}
        for child_fd in (1, 2):
            fd = getattr(pipes.get(child_fd), "fd", None)
            if isinstance(fd, int) and fd >= 0:
                try:
                    if select.select([fd], [], [], 0)[0]:  # data, or EOF: either is unread
                        return True
                except (OSError, ValueError):
                    continue
        return False

    def _linger(self) -> None:
        """PIPE_GRACE after the exit, its stdout or stderr still open: the mlet is
        reported as exited, and what holds them is still read (processEnded comes once
        that process has closed them, or with the manager's own exit)."""
        self._pipe_timer = None
        if not self.running or self._exit_reason is None:
            return
        if self._pipe_waited < PIPE_GRACE_MAX and self._unread_pipes():
            step = min(0.25, PIPE_GRACE_MAX - self._pipe_waited)  # the reactor is behind
            self._pipe_waited += step
            self._pipe_timer = self.reactor.callLater(step, self._linger)
            return
        self.lingering = True
        self.log.warn(
            "mlet {label} exited; a process it started still holds its stdout or stderr: "
            "its output is still passed on (not in the results), and it is not waited for",
            label=self.label,
        )
        self._exited(self._exit_reason)

    def processEnded(self, reason: Failure) -> None:
        timer, self._pipe_timer = self._pipe_timer, None
        if timer is not None and timer.active():
            timer.cancel()
        if self._line or self._mid_line:  # the next output starts on a line of its own
            outstream.write(sys.stdout, bytes(self._line) + b"\n")
            self._line.clear()
            self._mid_line = False
        if self.lingering:  # reported at the end of PIPE_GRACE already
            self.lingering = False
            return
        self._exited(reason)

    def _exited(self, reason: Failure) -> None:
        timer, self._overdue_timer = self._overdue_timer, None
        if timer is not None and timer.active():
            timer.cancel()
        self.running = False
        self.finished = time.time()
        if reason.check(ProcessDone):
            self.exit_code = 0
        elif isinstance(reason.value, ProcessTerminated):
            self.exit_code = reason.value.exitCode
            self.signal = reason.value.signal
        try:
            self.on_exit(self)
        finally:  # the second SIGINT's wait for the mlets must not hang on a failure here
            self.ended.callback(None)

    def overdue_after(self, grace: float = EOF_GRACE) -> None:
        """Its session is over (EOF on its fd 0) and it runs on: SIGTERM after `grace`,
        SIGKILL `KILL_GRACE` after that, each said in a line."""
        if self.running and self.reactor is not None and self._overdue_timer is None:
            self._overdue_timer = self.reactor.callLater(grace, self._overdue, grace)

    def _overdue(self, grace: float) -> None:
        self._overdue_timer = None
        if not self.running:
            return
        self.overdue = grace
        self.log.warn(
            "mlet {label} still running {grace:g} s after its session ended: SIGTERM",
            label=self.label,
            grace=grace,
        )
        self.kill("TERM")
        self._overdue_timer = self.reactor.callLater(KILL_GRACE, self._overdue_kill)

    def _overdue_kill(self) -> None:
        self._overdue_timer = None
        if self.running:
            self.log.warn(
                "mlet {label} still running {s:g} s after SIGTERM: SIGKILL",
                label=self.label,
                s=KILL_GRACE,
            )
            self.kill("KILL")

    def kill(self, sig: str = "TERM") -> None:
        """Signal the mlet and every process it started (a shell script's `sleep`, a
        child holding fd 0): the manager's SIGKILL after SIGTERM killed the mlet alone
        and its children ran on, orphaned (session 28). The descendants found are kept,
        so that those orphaned by the mlet's own exit are still reached by a later kill."""
        import signal as _signal

        if self.running and self.pid is not None:
            for pid in _descendants(self.pid):
                born = _start_time(pid)
                if born is not None:
                    self._tree[pid] = born
        t: Any = self.transport
        if self.running and t is not None:
            try:
                t.signalProcess(sig)
            except Exception:  # exited in between
                pass
        number = getattr(_signal, f"SIG{sig}")
        for pid, born in list(self._tree.items()):
            if _start_time(pid) != born:  # gone (or its pid reused: not ours)
                del self._tree[pid]
                continue
            try:
                os.kill(pid, number)
            except OSError:
                del self._tree[pid]

    def leftovers(self) -> bool:
        """Whether a process the mlet started, found by `kill`, still runs."""
        return any(_start_time(pid) == born for pid, born in self._tree.items())


class _MletSide(Protocol):
    """Our end of the socketpair toward the mlet."""

    def __init__(self, worker: EndpointWorker) -> None:
        self.worker = worker
        self.splitter = FrameSplitter()

    def connectionMade(self) -> None:
        self.worker.mlet_connected(self)

    def dataReceived(self, data: bytes) -> None:
        try:
            frames = self.splitter.feed(data)
        except wire.WireError as e:
            self.worker.finish(f"mlet sent a bad frame: {e}")
            return
        self.worker.mlet_bytes += len(data)
        for _, frame in frames:
            self.worker.to_endpoint(frame)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.worker.mlet_gone()


class EndpointWorker(Protocol):
    """The manager's end of one endpoint connection; see the module docstring.

    `setup_for(worker)` gives the encoded programs to submit; `launch(worker, fd)` starts
    (or hands the fd to) the mlet; `done(worker)` is called once at the end."""

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        *,
        setup_for: Callable[[EndpointWorker], list[bytes]],
        launch: Callable[[EndpointWorker, socket.socket], None],
        done: Callable[[EndpointWorker], None],
        read_hostid: bool = True,
        setup_timeout: float | None = SETUP_TIMEOUT,
    ) -> None:
        self.reactor = reactor
        self._setup_for = setup_for
        self._launch = launch
        self._done = done
        self.read_hostid = read_hostid
        self.address = "?"
        self.hostid: str | None = None
        self.snikey: str | None = None
        self.state = "setup"  # setup -> relay -> closed
        self.error: str | None = None
        self.linfo: list[dict[str, str]] = []
        self.started = time.time()
        self.finished: float | None = None
        self.mlet: _MletSide | None = None
        self.process: MletProcess | None = None
        # Bytes the mlet wrote on its fd 0: an exit 2 before any is a usage error (xpmgrexit)
        self.mlet_bytes = 0
        self._splitter = FrameSplitter(ENDPOINT_FRAME_MAX)
        self._awaiting: list[str] = []  # what each pending setup answer is for
        self._held: list[bytes] = []  # endpoint frames that came before the mlet
        self._ended = False
        self.setup_timeout = setup_timeout
        self._setup_timer: Any = None
        self.linfo_dropped = 0
        self.linfo_bytes = 0
        # Frames ignored (unknown during the setup, bad linfo): the first of each kind is
        # logged, the rest counted (one line each was a log flood at the endpoint's will).
        self.ignored = 0
        self._ignored_kinds: set[str] = set()
        # The endpoint's last frame toward the mlet, if a result: its errid (read from the
        # header's length and 2 bytes; the relay decodes nothing else).
        self.last_result: int | None = None
        #: Set when the endpoint closed the session while the mlet still had it: how.
        self.endpoint_closed: str | None = None

    # ---------------------------------------------------------------- endpoint side

    def connectionMade(self) -> None:
        peer: Any = self.transport.getPeer()  # type: ignore[union-attr]
        self.address = _unmapped(str(getattr(peer, "host", peer)))
        try:
            programs = self._setup_for(self)
        except Exception as e:
            self.fail(f"setup: {e}")
            return
        for p in programs:
            self._send(wire.Cdata(b"monitor", p), "cdata")
        self._send(wire.Start(), "start")
        if self.read_hostid:
            self._send(wire.Mread(vmem.HOSTID.addr, vmem.HOSTID.size), "hostid")
        if self.setup_timeout is not None:
            self._setup_timer = self.reactor.callLater(self.setup_timeout, self._setup_expired)

    def _setup_expired(self) -> None:
        self._setup_timer = None
        if self.state == "setup":
            what = self._awaiting[0] if self._awaiting else "setup"
            self.fail(f"endpoint did not answer {what} within {self.setup_timeout:g} s")
            t: Any = self.transport
            if t is not None:
                t.abortConnection()  # it answers nothing: do not wait for its close either

    def _cancel_setup_timer(self) -> None:
        timer, self._setup_timer = self._setup_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _send(self, msg: wire.Message, what: str) -> None:
        self._awaiting.append(what)
        self.transport.write(wire.encode(msg))  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        if self.state == "closed":
            return
        try:
            frames = self._splitter.feed(data)
        except wire.WireError as e:
            self.fail(f"endpoint sent a bad frame: {e}")
            return
        for mtype, frame in frames:
            if mtype == MsgType.LINFO:
                self._linfo(frame)
            elif self.state == "setup" and self._awaiting:
                self._setup_answer(frame)
            elif self.mlet is not None and self.mlet.transport is not None:
                self.last_result = _errid(frame) if mtype == MsgType.RESULT else None
                self.mlet.transport.write(frame)
            else:
                self.last_result = _errid(frame) if mtype == MsgType.RESULT else None
                self._held.append(frame)
            if self.state == "closed":
                return

    def _setup_answer(self, frame: bytes) -> None:
        what = self._awaiting[0]
        try:
            msg = wire.decode_frame(frame)
        except wire.UnknownType as e:  # not an answer: ignored, as a session does (§1.1)
            self._ignore("unknown", f"{e} during the setup; ignored")
            return
        except wire.WireError as e:
            self.fail(f"bad answer to {what}: {e}")
            return
        self._awaiting.pop(0)
        if what == "hostid":
            if isinstance(msg, wire.Mdata):  # no more than the field asked for
                hostid = msg.data[: vmem.HOSTID.size].split(b"\0", 1)[0]
                self.hostid = hostid.decode("utf-8", "replace")
        elif not isinstance(msg, wire.Result) or msg.errid != 0:
            self.fail(f"endpoint refused {what}: {_describe(msg)}")
            return
        if not self._awaiting:
            self._cancel_setup_timer()
            self._start_mlet()

    def _linfo(self, frame: bytes) -> None:
        try:
            msg = wire.decode_frame(frame)
        except wire.WireError as e:
            self._ignore("linfo", f"bad linfo ignored: {e}")
            return
        if isinstance(msg, wire.Linfo):
            if len(msg.info) > LINFO_INFO_MAX or max(len(msg.name), len(msg.aux)) > LINFO_FIELD_MAX:
                self._ignore(
                    "linfo",
                    f"bad linfo ignored: name of {len(msg.name)} bytes, aux of {len(msg.aux)}, "
                    f"info of {len(msg.info)} (at most {LINFO_FIELD_MAX}, {LINFO_FIELD_MAX}, "
                    f"{LINFO_INFO_MAX})",
                )
                return
            size = len(msg.name) + len(msg.aux) + len(msg.info)
            if len(self.linfo) >= MAX_LINFO or self.linfo_bytes + size > MAX_LINFO_BYTES:
                self.linfo_dropped += 1  # a flood: keep memory and the log bounded
                if self.linfo_dropped == 1:
                    self.log.warn(
                        "endpoint {addr} sent more than {n} linfo or {b} bytes of them; "
                        "dropping the rest",
                        addr=self.address,
                        n=MAX_LINFO,
                        b=MAX_LINFO_BYTES,
                    )
                return
            self.linfo_bytes += size
            entry = {k: getattr(msg, k).decode("utf-8", "replace") for k in ("name", "aux", "info")}
            self.linfo.append(entry)
            info = entry["info"]
            if len(info) > LINFO_LOG_CHARS:
                info = f"{info[:LINFO_LOG_CHARS]}... ({len(msg.info)} bytes)"
            self.log.info(
                "endpoint {addr} linfo {name} ({aux}): {info}",
                addr=self.address,
                name=entry["name"],
                aux=entry["aux"],
                info=info,
            )

    def _ignore(self, kind: str, why: str) -> None:
        self.ignored += 1
        if kind not in self._ignored_kinds:
            self._ignored_kinds.add(kind)
            self.log.warn(
                "endpoint {addr}: {why} (more such frames are counted, not logged)",
                addr=self.address,
                why=why,
            )

    def _start_mlet(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._launch(self, theirs)
        except Exception as e:
            ours.close()
            theirs.close()
            why = f"cannot start the mlet: {e}"
            if isinstance(e, TurnedAway):
                self.finish(why)
            else:
                self.fail(why)
            return
        finally:
            if theirs.fileno() != -1:
                theirs.close()
        ours.setblocking(False)
        side = _MletSide(self)
        factory = Factory.forProtocol(lambda: side)
        self.reactor.adoptStreamConnection(ours.fileno(), socket.AF_UNIX, factory)
        ours.close()  # adoptStreamConnection dup()s the descriptor
        self.mlet = side
        self.state = "relay"

    def mlet_connected(self, side: _MletSide) -> None:
        # Backpressure: a full endpoint link pauses reading from the mlet and back.
        tcp = getattr(self.transport, "transport", self.transport)
        mt: Any = side.transport
        self.transport.registerProducer(mt, True)  # type: ignore[union-attr]
        mt.registerProducer(tcp, True)
        held, self._held = self._held, []
        for frame in held:
            mt.write(frame)

    def to_endpoint(self, frame: bytes) -> None:
        if self.state == "relay" and self.transport is not None:
            self.transport.write(frame)  # one message, one TLS record

    def mlet_gone(self) -> None:
        self.mlet = None
        if self.state == "relay":
            self.finish(None)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.state == "setup":
            self.error = self.error or self._setup_closed(reason)
        elif self.state == "relay":  # the endpoint ended it: the mlet had not
            self._endpoint_ended(reason)
        self._end()

    def _endpoint_ended(self, reason: Failure) -> None:
        """The endpoint closed first, which the reference's sessions end with only when
        the endpoint stops (PROTOCOL.md §7.3: the mlet's exit closes the connection).
        After an ECTLBADMSG it ended the session for a malformed message of the mlet's:
        the mlet may still exit 0 (a hostile one did, and was counted done), so the run
        failed whatever its status. Any other close is said in the result, the status the
        mlet's (the experiment's end time also closes it so; the mlet may expect it)."""
        clean = reason.check(ConnectionDone) is not None
        self.endpoint_closed = "closed" if clean else f"lost: {reason.getErrorMessage()}"
        if self.last_result == wire.Status.ECTLBADMSG:
            self.fail(
                "the endpoint ended the session after answering ECTLBADMSG: a message "
                "from the mlet was malformed (the endpoint's log says which)"
            )
        if self.mlet is not None and self.mlet.transport is not None:
            self.mlet.transport.loseConnection()

    def _setup_closed(self, reason: Failure) -> str:
        text = f"endpoint closed during setup: {reason.getErrorMessage()}"
        if reason.check(ConnectionDone) and self._awaiting:
            # A clean close before the answer: how an endpoint refuses the session after
            # the handshake (the reference's close_notify and FIN; no message says why).
            text += (
                f" (before answering {self._awaiting[0]}: an endpoint that refuses the "
                "session closes so, e.g. the chain's limits used up, a priority above its "
                "max_num_priority or its accounting database unable to record; its log "
                "says which)"
            )
        return text

    # ---------------------------------------------------------------- ending

    def evict(self, why: str) -> None:
        """End it for a newer endpoint: no log line (the manager says it once), no wait for
        a peer that answers nothing."""
        self.finish(why)
        t: Any = self.transport
        if t is not None:
            t.abortConnection()

    def fail(self, why: str) -> None:
        self.log.warn("endpoint {addr}: {why}", addr=self.address, why=why)
        self.finish(why)

    def finish(self, error: str | None) -> None:
        if error and not self.error:
            self.error = error
        if self.state != "closed":
            self.state = "closed"
            if self.transport is not None:
                try:
                    cast(Any, self.transport).unregisterProducer()
                except Exception:
                    pass
                self.transport.loseConnection()
        if self.mlet is not None and self.mlet.transport is not None:
            self.mlet.transport.loseConnection()
        self._end()

    def _end(self) -> None:
        self.state = "closed"
        self._cancel_setup_timer()
        if self._ended:
            return
        self._ended = True
        self.finished = time.time()
        hidden = self.ignored - len(self._ignored_kinds)
        if hidden > 0:
            self.log.warn(
                "endpoint {addr}: {n} more frames ignored (not logged)", addr=self.address, n=hidden
            )
        self._done(self)

    def result(self, singleton: MletProcess | None = None) -> dict[str, Any]:
        """The endpoint's record. `singleton` (-s): the one mlet all endpoints share; its
        failure is this endpoint's if it had ended by the time this one did."""
        ok = self.error is None and (self.process is None or (self.process.exit_code == 0))
        out: dict[str, Any] = {
            "hostid": self.hostid,
            "address": self.address,
            "snikey": self.snikey,
            "status": "done" if ok else "failed",
            "started": round(self.started, 6),
            "finished": round(self.finished or time.time(), 6),
        }
        if self.error:
            out["error"] = self.error
        elif not ok and self.process is not None:  # the mlet's own failure, in words
            out["error"] = f"the mlet {exit_words(self.process)}"
            if self.process.overdue is not None:  # it was ended for running on
                out["error"] = (
                    f"the mlet ran on {self.process.overdue:g} s after its session ended "
                    f"and {exit_words(self.process)}"
                )
        elif ok and singleton is not None and not singleton.running and _failed(singleton):
            out["status"] = "failed"
            out["error"] = f"the singleton mlet {exit_words(singleton)} with this endpoint open"
        if self.process is not None:
            out["exit_code"] = self.process.exit_code
            if self.process.signal is not None:
                out["signal"] = self.process.signal
            out["output"] = self.process.output.decode("utf-8", "replace")
        if self.endpoint_closed is not None:  # before the mlet ended its session
            out["endpoint_closed"] = self.endpoint_closed
            if self.last_result is not None:
                out["endpoint_last_result"] = status_name(self.last_result)
        if self.linfo:
            out["linfo"] = self.linfo
        return out


def _errid(frame: bytes) -> int:
    """A result frame's errid (an empty body: SUCCESS), without decoding it."""
    return int.from_bytes(frame[HEADER_LEN : HEADER_LEN + 2], "big") if len(frame) > 5 else 0


def _descendants(pid: int) -> list[int]:
    """The processes `pid` started, theirs too (Linux /proc; none elsewhere)."""
    found: list[int] = []
    todo = [pid]
    while todo and len(found) < 4096:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{parent}/task/{tid}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except (OSError, ValueError):
                continue
            found += kids
            todo += kids
    return found


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks (/proc/PID/stat field 22): a pid and its
    start time name one process, a reused pid another. None: no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if len(fields) < 20 or fields[0] == "Z":  # a zombie is gone already
        return None
    return fields[19]


def _failed(p: MletProcess) -> bool:
    return p.signal is not None or bool(p.exit_code)


def exit_words(p: MletProcess) -> str:
    if p.signal is not None:
        return f"was killed by signal {p.signal} ({_signame(p.signal)})"
    return f"exited with status {p.exit_code}"


def _describe(msg: object) -> str:
    if isinstance(msg, wire.Result):
        try:
            return wire.Status(msg.errid).name
        except ValueError:
            return f"error 0x{msg.errid:04x}"
    name = getattr(msg, "NAME", type(msg).__name__)
    return f"it answered with {name}, not a result"


def _signame(number: int) -> str:
    """`SIGSEGV` for 11: what a shell user reads in `Segmentation fault`."""
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown signal"


def _unmapped(host: str) -> str:
    """`192.0.2.7` for `::ffff:192.0.2.7`: an IPv4 endpoint reaching a dual-stack listener
    (`-a [::]:PORT`) is the IPv4 endpoint it is, in EPADDR and the results."""
    import ipaddress

    try:
        mapped = ipaddress.IPv6Address(host.split("%", 1)[0]).ipv4_mapped
    except ValueError:
        return host
    return str(mapped) if mapped is not None else host
