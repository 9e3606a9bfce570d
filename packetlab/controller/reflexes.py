"""The controller's reflex API (docs/reflexes.md): attach, configure, read, detach.

Mixed into `EndpointSession`. The first call reads the endpoint's CAPS record with an
ordinary ``mread``; a reference endpoint answers zeros and the call fails with
`ReflexUnsupported` before anything private was sent. Reports (``rreport``) and
detach notices (``rdetached``) of a reflex come to its `Reflex` handle.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger

from packetlab.controller.errors import ControllerError, RequestFailed, status_text
from packetlab.reflex import abi
from packetlab.reflex.region import BLOCK_HEAD as _HEAD
from packetlab.wire import Message, Result
from packetlab.wire.constants import MsgType

if TYPE_CHECKING:
    from packetlab.controller.sockets import Socket
    from packetlab.reflex import wire as rw
    from packetlab.wire.framer import Unknown

__all__ = [
    "Reflex",
    "ReflexMethods",
    "ReflexRefused",
    "ReflexStatus",
    "ReflexUnsupported",
    "private_frame",
]

MAX_REPORTS = 100_000  # kept per reflex until taken (older ones are dropped)
#: Bytes of report data kept per reflex until taken (older ones dropped, counted): a
#: report is at most `abi.MAX_REPORT` (1 KiB) from a real endpoint; one sending 1 MiB
#: reports nobody took held up to 100,000 of them.
MAX_REPORT_BYTES = 16 << 20


class ReflexUnsupported(ControllerError):
    """The endpoint does not run reflexes (a reference endpoint, or ReflexEnable 0)."""


class ReflexRefused(RequestFailed):
    """An `rattach` the endpoint refused, said in the reflex's terms (the generic texts
    spoke of "bad eBPF" and raw sockets)."""

    def __init__(self, failed: RequestFailed, sktid: int, text: str | None = None) -> None:
        super().__init__(failed.request, int(failed.status), failed.monindx, failed.monerrid)
        if text is None:
            why = _REFUSALS.get(failed.name, str(failed))
            text = f"reflex on socket {sktid} refused: {why}"
        Exception.__init__(self, f"{text} ({failed.name})")


_REFUSALS = {
    "ECRTBADHDAT": "the endpoint did not accept the module: not a wasm module that passes "
    "the load checks, over 1 MiB, or its digest is not listed in the certificate chain "
    "(reflex=)",
    "ECRTNOHDAT": "no module with this digest was sent at setup (cdata hint=reflex)",
    "EUNKFAULT": "reflex_init returned non-zero or crashed (a crash: the reflex's "
    "deadline or a trap)",
    "ESKTINUSE": "a reflex is attached to this socket already",
    "ESKTNOTOPEN": "no such socket is open",
    "ECTLNOTSUP": "reflexes are not allowed now (the operator forbids them, or the session "
    "is not in IDLE)",
}


class PrivateRequest(Message):
    """A request of the reflex extension: its own frame, answered by `result`."""

    def __init__(self, name: str, frame: bytes) -> None:
        self.NAME = name  # type: ignore[misc]
        self.frame = frame

    def __repr__(self) -> str:
        return f"{self.NAME}({len(self.frame)} bytes)"


PrivateRequest.TYPE = MsgType.RESULT  # never used: the frame is sent as it is


def private_frame(msg: Message) -> bytes | None:
    """The frame of a private request, None for a PacketLab message (reflex hook)."""
    return msg.frame if isinstance(msg, PrivateRequest) else None


@dataclass(frozen=True)
class ReflexStatus:
    """A reflex's vmem block header: state (reflex.wire STAT_*) and counters."""

    stat: int
    runs: int
    sent: int
    denied: int
    passed: int
    reports: int
    lasterr: int
    digest: bytes
    #: Sends and reports the reflex was answered -1 for (past 64 sends or 16 reports in
    #: one call, bad arguments): neither sent nor denied (0 from an endpoint before
    #: session 32, which counted them nowhere).
    refused: int = 0

    @property
    def running(self) -> bool:
        return self.stat == _rw().STAT_RUNNING

    @property
    def lasterr_text(self) -> str:
        """The last refused send's errid as an nsend of the controller's would be told it
        (`lasterr` alone is a bare number, 57 for the send window); "" when none was."""
        return status_text(self.lasterr) if self.lasterr else ""


class Reflex:
    """The controller's handle on one attached reflex."""

    log = Logger()

    def __init__(self, session: ReflexMethods, sktid: int, digest: bytes) -> None:
        self.session = session
        self.sktid = sktid
        self.digest = digest
        self.reports: deque[rw.Report] = deque()
        self.reports_dropped = 0  # the oldest untaken, past MAX_REPORTS or MAX_REPORT_BYTES
        self._report_bytes = 0
        self.on_report: Callable[[rw.Report], object] | None = None
        #: Fires with the `rw.Detached` notice when the endpoint detaches the reflex.
        self.detached: Deferred[rw.Detached] = Deferred()
        self.notice: rw.Detached | None = None  # that notice, once it came
        self._waiters: deque[Deferred[rw.Report]] = deque()

    def _report(self, rep: rw.Report) -> None:
        if self._waiters:
            self._waiters.popleft().callback(rep)
        elif self.on_report is not None:
            try:
                self.on_report(rep)
            except Exception:  # as a socket callback: logged, the session goes on
                self.log.failure("reflex on socket {sktid}: on_report raised", sktid=self.sktid)
        else:
            self.reports.append(rep)
            self._report_bytes += len(rep.data)
            if self._report_bytes > MAX_REPORT_BYTES:  # (recounted: `reports` is public)
                self._report_bytes = sum(len(r.data) for r in self.reports)
            while len(self.reports) > MAX_REPORTS or self._report_bytes > MAX_REPORT_BYTES:
                self._report_bytes -= len(self.reports.popleft().data)
                self.reports_dropped += 1

    def next_report(self) -> Deferred[rw.Report]:
        """The next report (at once if one is waiting)."""
        if self.reports:
            rep = self.reports.popleft()
            self._report_bytes -= len(rep.data)
            return succeed(rep)
        d: Deferred[rw.Report] = Deferred()
        self._waiters.append(d)
        return d

    def configure(self, params: bytes, offset: int = 0) -> Deferred[Result]:
        return self.session.configure_reflex(self.sktid, params, offset)

    def state(self, offset: int = 0, length: int = abi.STATE_LEN) -> Deferred[bytes]:
        return self.session.reflex_state(self.sktid, offset, length)

    def status(self) -> Deferred[ReflexStatus]:
        return self.session.reflex_status(self.sktid)

    def detach(self) -> Deferred[Result]:
        """Detach it (an `rdetach`). After the endpoint detached it (`detached` fired), a
        `ReflexRefused` that says so: there is nothing left to detach."""
        note = self.notice
        why = f"the endpoint detached it: {note.text}" if note is not None else None
        return self.session.detach_reflex(self.sktid, why=why)


def _rw() -> Any:
    """packetlab.reflex.wire, imported on first use: a session that attaches no reflex
    (every `pktlab run` measurement) does not load it (docs/performance.md, Session 10)."""
    from packetlab.reflex import wire

    return wire


def _sktid(sock: Socket | int) -> int:
    return sock if isinstance(sock, int) else sock.sktid


class ReflexMethods:
    """Mixed into EndpointSession (which provides `request` and `mread`)."""

    _reflex_caps: rw.Caps | bool | None = False  # False: not read yet
    _reflex_handles: dict[int, Reflex] | None = None

    def request(self, msg: Message, on_success: Callable[[], None] | None = None) -> Any:
        raise NotImplementedError

    def mread(self, addr: int, length: int) -> Deferred[bytes]:
        raise NotImplementedError

    def mwrite(self, addr: int, data: bytes) -> Deferred[Result]:
        raise NotImplementedError

    def reflex_caps(self) -> Deferred[rw.Caps | None]:
        """The endpoint's CAPS record (read once), or None from a reference endpoint."""
        if self._reflex_caps is not False:
            return succeed(self._reflex_caps)  # type: ignore[arg-type]

        def got(data: bytes) -> rw.Caps | None:
            caps = _rw().Caps.decode(data)
            self._reflex_caps = caps
            return caps

        return self.mread(_rw().CAPS, _rw().CAPS_LEN).addCallback(got)

    def attach_reflex(
        self, sock: Socket | int, module: bytes, params: bytes = b"", *, preloaded: bool = False
    ) -> Deferred[Reflex]:
        """Attach the reflex `module` (wasm bytes) to `sock` with `params` (at most 1024
        bytes, the start of its context). `preloaded`: the program was sent by
        ``cdata(hint="reflex")`` at setup, so only its digest goes now."""
        sktid = _sktid(sock)
        if len(params) > abi.PARAMS_LEN:
            return fail(ValueError(f"params of {len(params)} bytes (at most {abi.PARAMS_LEN})"))
        if len(module) > abi.MAX_MODULE:
            return fail(
                ValueError(f"a reflex module of {len(module)} bytes: endpoints take at most "
                           f"{abi.MAX_MODULE} (1 MiB)")
            )  # fmt: skip
        digest = abi.digest(module)
        from packetlab.monitor.abi import encode  # (here: a session without reflexes skips it)

        program = b"" if preloaded else encode(module)
        frame = _rw().Attach(sktid, digest, bytes(params), program).frame()

        def check(caps: rw.Caps | None) -> Deferred[Any]:
            if caps is None:
                raise ReflexUnsupported("the endpoint does not support reflexes (CAPS reads 0)")
            if not caps.allowed:
                raise ReflexUnsupported("the endpoint's operator forbids reflexes")
            return self.request(PrivateRequest("rattach", frame))

        def refused(failure: Any) -> Any:
            failure.trap(RequestFailed)
            if isinstance(failure.value, ReflexRefused):
                return failure
            raise ReflexRefused(failure.value, sktid)

        def attached(_: object) -> Reflex:
            handle = Reflex(self, sktid, digest)
            if self._reflex_handles is None:
                self._reflex_handles = {}
            self._reflex_handles[sktid] = handle
            return handle

        d = self.reflex_caps().addCallback(check)
        return d.addCallbacks(attached, refused)

    def detach_reflex(self, sock: Socket | int, *, why: str | None = None) -> Deferred[Result]:
        """Detach the socket's reflex. ESKTNOTOPEN (no reflex there) is a `ReflexRefused`
        saying so, with `why` (the generic text said the socket was not open)."""
        sktid = _sktid(sock)
        d: Deferred[Result] = self.request(PrivateRequest("rdetach", _rw().detach_frame(sktid)))

        def refused(failure: Any) -> Any:
            failure.trap(RequestFailed)
            if failure.value.name != "ESKTNOTOPEN":
                return failure
            text = f"no reflex is attached to socket {sktid}"
            raise ReflexRefused(failure.value, sktid, f"{text} ({why})" if why else text)

        return d.addErrback(refused)

    def configure_reflex(
        self, sock: Socket | int, params: bytes, offset: int = 0
    ) -> Deferred[Result]:
        """Write `params` at `offset` of the reflex's parameters (it gets reflex_configure)."""
        if offset < 0 or offset + len(params) > abi.PARAMS_LEN:
            return fail(ValueError(f"parameters are {abi.PARAMS_LEN} bytes"))
        return self.mwrite(_rw().block_addr(_sktid(sock), _rw().B_PARAMS + offset), params)

    def reflex_state(
        self, sock: Socket | int, offset: int = 0, length: int = abi.STATE_LEN
    ) -> Deferred[bytes]:
        """`length` bytes of the reflex's state at `offset`."""
        if offset < 0 or length < 1 or offset + length > abi.STATE_LEN:
            return fail(ValueError(f"the state is {abi.STATE_LEN} bytes"))
        return self.mread(_rw().block_addr(_sktid(sock), _rw().B_STATE + offset), length)

    def reflex_status(self, sock: Socket | int) -> Deferred[ReflexStatus]:
        def parse(data: bytes) -> ReflexStatus:
            stat, runs, sent, denied, passed, reports, err, refused, digest = _HEAD.unpack_from(
                data
            )
            return ReflexStatus(stat, runs, sent, denied, passed, reports, err, digest, refused)

        return self.mread(_rw().block_addr(_sktid(sock)), _HEAD.size).addCallback(parse)

    def reflex(self, sock: Socket | int) -> Reflex | None:
        return (self._reflex_handles or {}).get(_sktid(sock))

    def _reflex_note(self, item: Unknown) -> bool:
        """An rreport or rdetached from the endpoint; False for any other type (reflex
        hook)."""
        if not self._reflex_handles:  # (first: no reflex, no need of reflex.wire)
            return False
        w = _rw()
        if item.msgtype not in (w.RREPORT, w.RDETACHED):
            return False
        try:
            if item.msgtype == w.RREPORT:
                rep = w.Report.decode(item.body)
                if len(rep.data) > abi.MAX_REPORT:  # no reflex writes one: not a report
                    return False
                handle = self._reflex_handles.get(rep.sktid)
                if handle is not None:
                    handle._report(rep)
                return handle is not None
            det = w.Detached.decode(item.body)
        except w.BadMessage:
            return False
        handle = self._reflex_handles.pop(det.sktid, None)
        if handle is not None and not handle.detached.called:
            handle.notice = det
            handle.detached.callback(det)
        return handle is not None
