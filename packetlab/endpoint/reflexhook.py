"""Reflexes loaded on a session's first use of them (docs/reflexes.md; idle RSS,
docs/performance.md, Memory).

Importing `packetlab.endpoint.reflexes` (its gate, the extension's messages) cost the
idle endpoint ~0.1 MiB of RSS, and most sessions never use a reflex.
`Reflexes.install(session)` puts a `_Dormant` stand-in in front of the session's gate and
vmem instead, which does what the real `ReflexGate` and `ReflexMemory` do while no reflex
was ever asked for: every request
passes straight to the inner gate, and mread shows the CAPS record (so a controller finds
the extension as before). The first reflex request of the session (a ``cdata`` with the
"reflex" hint, or any private-use frame) loads the extension, takes the stand-in out
and installs the real gate and vmem, which answer that request and all that follow. Once
loaded (or with busy-poll reflex warming, which needs it from the start), sessions get the
real gate at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from packetlab.endpoint.checks import NDATA_DELIVER
from packetlab.reflex import abi
from packetlab.reflex.region import (
    CAPS,
    CAPS_ALLOWED,
    CAPS_LEN,
    CAPS_MAGIC,
    CAPS_RECORD,
    CAPS_VERSION,
)

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from packetlab.endpoint.config import EndpointConfig
    from packetlab.endpoint.reflexes import ReflexGate, ReflexService
    from packetlab.endpoint.session import Session
    from packetlab.endpoint.sockets import Skt
    from packetlab.monitor.worker import CompileWorker
    from packetlab.wire.constants import Status
    from packetlab.wire.framer import Unknown
    from packetlab.wire.messages import Message, Result

__all__ = ["Reflexes", "caps_record"]

_HINT = b"reflex"  # packetlab.reflex.wire.CDATA_HINT_REFLEX


def caps_record(enabled: bool) -> bytes:
    """The CAPS record an endpoint shows (as `ReflexGate.caps`)."""
    flags = CAPS_ALLOWED if enabled else 0
    return CAPS_RECORD.pack(
        CAPS_MAGIC, CAPS_VERSION, flags, abi.PARAMS_LEN, abi.STATE_LEN, abi.MAX_EMITS, 0
    )


class Reflexes:
    """The endpoint's reflexes: `ReflexService` of the config, made when first needed."""

    def __init__(self, cfg: EndpointConfig, worker: CompileWorker | None = None) -> None:
        self._cfg = cfg
        self._worker = worker  # the endpoint's compile worker, shared with the monitors
        self._service: ReflexService | None = None
        self.caps = caps_record(cfg.reflex_enable)

    @property
    def loaded(self) -> bool:
        return self._service is not None

    @property
    def service(self) -> ReflexService:
        if self._service is None:
            from packetlab.endpoint.reflexes import ReflexService

            self._service = ReflexService.from_config(self._cfg, self._worker)
        return self._service

    def warm_on(self, spinner: Any, every_us: int) -> None:
        """`ReflexService.warm_on`: with a busy-poll spinner the service is made now."""
        if spinner is not None:
            self.service.warm_on(spinner, every_us)

    def install(self, session: Session) -> None:
        """Reflexes on `session` (# reflex hook): the real gate once loaded, else the
        stand-in that loads it on the session's first reflex request."""
        if self._service is not None:
            self._service.install(session)
        else:
            _Dormant(self, session)


class _Dormant:
    """The session's gate, vmem and extension hook until its first reflex request."""

    def __init__(self, reflexes: Reflexes, session: Session) -> None:
        self.reflexes = reflexes
        self.session = session
        self.inner = inner = session.gate
        self.checks_ndata = inner.checks_ndata
        # check and done only pass through (as ReflexGate's): the inner gate's own.
        self.check = inner.check  # type: ignore[method-assign]
        self.done = inner.done  # type: ignore[method-assign]
        self.memory = _CapsMemory(session.memory, reflexes.caps)
        session.gate = session.receiving.gate = self
        session.memory = self.memory  # type: ignore[assignment]
        session.extension = self.request

    def wake(self) -> ReflexGate:
        """Take the stand-in out, install the real gate (loading it) and return it."""
        session = self.session
        session.gate = session.receiving.gate = self.inner
        session.memory = self.memory.inner
        return self.reflexes.service.install(session)

    # -- RequestGate ---------------------------------------------------------------------

    def program(self, hint: bytes, data: bytes) -> Status | Deferred[Status]:
        if hint != _HINT:
            return self.inner.program(hint, data)
        return self.wake().program(hint, data)

    def start(self) -> tuple[Result | None, list[bytes]]:
        verdict = self.inner.start()
        self.checks_ndata = self.inner.checks_ndata
        return verdict

    def check(self, msg: Message) -> Result | None:  # replaced by the inner's in __init__
        return self.inner.check(msg)

    def done(self, msg: Message, errid: int) -> None:  # replaced by the inner's in __init__
        self.inner.done(msg, errid)

    def check_ndata(
        self, skt: Skt, data: bytes, time: int, raddr: bytes | None, rport: int | None
    ) -> int:
        if self.inner.checks_ndata:
            return self.inner.check_ndata(skt, data, time, raddr, rport)
        return NDATA_DELIVER

    def close(self) -> None:
        self.inner.close()

    # -- private requests ----------------------------------------------------------------

    def request(self, item: Unknown) -> None:
        self.wake().request(item)


class _CapsMemory:
    """The session's vmem with the CAPS record mapped (what `ReflexMemory` shows while no
    reflex was ever attached: no socket has a block)."""

    __slots__ = ("caps", "inner")

    def __init__(self, inner: Any, caps: bytes) -> None:
        self.inner = inner
        self.caps = caps

    def read(self, addr: int, length: int) -> bytes:
        end = addr + length
        if end <= CAPS or addr >= CAPS + CAPS_LEN:
            return bytes(self.inner.read(addr, length))
        out = bytearray(self.inner.read(addr, length))
        lo, hi = max(addr, CAPS), min(end, CAPS + CAPS_LEN)
        out[lo - addr : hi - addr] = self.caps[lo - CAPS : hi - CAPS]
        return bytes(out)

    def write(self, addr: int, data: bytes) -> None:
        self.inner.write(addr, data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
