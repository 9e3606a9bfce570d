"""NoSub mode: the endpoint connects out to one controller, runs a session, and connects
again for the next one (PROTOCOL.md §1.4.1, §5.6 ``NoSubMode``).

Connect cycle as the reference worker: TCP connect timeout 3 s, retried every 1 s, given
up 5 s after the cycle started. The reference worker then exits; a daemon keeps going, so
we start a new cycle after `retry_delay` and log each give-up. After a session ends we
connect again after `reconnect_delay` (after a ``yield``, not before its resume hint), so
a long-running controller can run experiment after experiment.

`ControllerLink` is the seam for the transport: `PlaintextLink` (plain TCP, loopback
only) or `packetlab.endpoint.tlslink.TLSLink` (TLS 1.3 with PPKS chains, the default).
With a TLS link, `admission` turns the verified controller chain into the session's
limits (`make_session(gate)`), or refuses the session (§1.4 step 2).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.application import service
from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.interfaces import IDelayedCall, IReactorCore, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from packetlab.endpoint.protocol import ControllerProtocol
from packetlab.endpoint.session import Session, SessionEnd
from packetlab.tls import peer_of
from packetlab.wire.constants import DEFAULT_CONTROLLER_PORT

__all__ = [
    "CONNECT_GIVE_UP",
    "CONNECT_RETRY",
    "CONNECT_TIMEOUT",
    "ControllerAddress",
    "ControllerLink",
    "NoSubService",
    "PlaintextLink",
]

CONNECT_TIMEOUT = 3.0
CONNECT_RETRY = 1.0
CONNECT_GIVE_UP = 5.0
MAX_YIELD_WAIT = 86400.0  # a resume hint further away than a day is capped to a day


@dataclass(frozen=True)
class ControllerAddress:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str, default_port: int = DEFAULT_CONTROLLER_PORT) -> ControllerAddress:
        """``HOST[:PORT]``, split on the last ':' as the reference does; ``[v6]:PORT`` and a
        bare IPv6 address (``::1``, default port) are accepted too. Raises ValueError."""
        text = text.strip()
        if not text:
            raise ValueError("empty controller address")
        if text.startswith("["):
            host, sep, rest = text[1:].partition("]")
            if not sep or (rest and not rest.startswith(":")):
                raise ValueError(f"bad controller address {text!r}: expected [IPv6]:PORT")
            _ip(host, text)
            return cls(host, _port(rest[1:], text) if rest else default_port)
        host, sep, port = text.rpartition(":")
        if sep and _valid_host(host) and port.isdigit():
            return cls(host, _port(port, text))
        if ":" in text:
            _ip(text, text)  # a bare IPv6 address
            return cls(text, default_port)
        if not _valid_host(text):
            raise ValueError(f"bad controller address {text!r}")
        return cls(text, default_port)

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _ip(host: str, text: str) -> None:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        raise ValueError(
            f"bad controller address {text!r}: {host!r} is not an IPv6 address"
        ) from None


def _port(port: str, text: str) -> int:
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad controller address {text!r}: port must be 1..65535")
    return int(port)


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    return (
        bool(host)
        and len(host) <= 253
        and all(
            0 < len(lab) <= 63 and lab.replace("-", "").isalnum() and lab.isascii()
            for lab in labels
        )
    )


class ControllerLink(Protocol):
    """How the endpoint reaches a controller (TLS 1.3 with PPKS, or plain TCP)."""

    def endpoint(self, reactor: object, address: ControllerAddress) -> IStreamClientEndpoint: ...


class PlaintextLink:
    """Plain TCP: for tests and loopback controllers only (``--insecure-plaintext``)."""

    def endpoint(self, reactor: object, address: ControllerAddress) -> IStreamClientEndpoint:
        try:
            ip = ipaddress.ip_address(address.host)
        except ValueError:
            return HostnameEndpoint(reactor, address.host, address.port, timeout=CONNECT_TIMEOUT)
        kind = TCP4ClientEndpoint if ip.version == 4 else TCP6ClientEndpoint
        return kind(reactor, address.host, address.port, timeout=CONNECT_TIMEOUT)


class _Admission(Protocol):
    def gate_for(self, peer: Any) -> Any: ...

    def watch(self, gate: Any, proto: ControllerProtocol, reactor: Any) -> None: ...


class _Scheduler(Protocol):
    def start(self) -> None: ...

    def stop(self) -> object: ...


class NoSubService(service.Service):
    log = Logger()

    def __init__(
        self,
        reactor: IReactorCore,
        address: ControllerAddress,
        link: ControllerLink,
        make_session: Callable[[], Session],
        scheduler: _Scheduler | None = None,
        *,
        retry_delay: float = 5.0,
        reconnect_delay: float = 1.0,
        max_sessions: int = 0,
        admission: _Admission | None = None,
    ) -> None:
        self.reactor = reactor
        self.address = address
        self.link = link
        self.make_session = make_session
        self.scheduler = scheduler
        self.retry_delay = retry_delay
        self.reconnect_delay = reconnect_delay
        self.max_sessions = max_sessions
        self.admission = admission
        self.sessions = 0
        self._cycle_start = 0.0
        self._timer: IDelayedCall | None = None
        self._connecting: defer.Deferred[Any] | None = None
        self.protocol: ControllerProtocol | None = None

    def startService(self) -> None:
        super().startService()
        if self.scheduler is not None:
            self.scheduler.start()
        self._start_cycle()

    def _later(self, delay: float, f: Callable[[], None]) -> None:
        self._timer = self.reactor.callLater(delay, f)  # type: ignore[attr-defined]

    def _now(self) -> float:
        return float(self.reactor.seconds())  # type: ignore[attr-defined]

    def _start_cycle(self) -> None:
        self._timer = None
        self._cycle_start = self._now()
        self._attempt()

    def _attempt(self) -> None:
        self._timer = None
        if not self.running:
            return
        reactor = self.reactor

        def build() -> ControllerProtocol:
            proto = ControllerProtocol(lambda: self._session_for(proto), reactor)  # type: ignore[arg-type]
            return proto

        factory = Factory.forProtocol(build)
        factory.noisy = False  # one "Starting factory" line per connection is noise
        d = self.link.endpoint(reactor, self.address).connect(factory)
        self._connecting = d
        d.addCallbacks(self._connected, self._connect_failed)

    def _session_for(self, proto: ControllerProtocol) -> Session:
        if self.admission is None:
            return self.make_session()
        gate = self.admission.gate_for(peer_of(proto))  # may raise SessionRefused
        if gate is None:
            return self.make_session()
        session: Session = self.make_session(gate)  # type: ignore[call-arg]
        self.admission.watch(gate, proto, self.reactor)
        return session

    def _connect_failed(self, failure: Failure) -> None:
        self._connecting = None
        if not self.running or failure.check(defer.CancelledError):
            return
        elapsed = self._now() - self._cycle_start
        if elapsed + CONNECT_RETRY < CONNECT_GIVE_UP:
            self.log.info(
                "cannot reach controller {addr}: {why}; retrying in {d} s",
                addr=str(self.address),
                why=failure.getErrorMessage(),
                d=CONNECT_RETRY,
            )
            self._later(CONNECT_RETRY, self._attempt)
        else:
            self.log.warn(
                "gave up reaching controller {addr} after {t:.1f} s ({why}); next attempt in {d} s",
                addr=str(self.address),
                t=elapsed,
                why=failure.getErrorMessage(),
                d=self.retry_delay,
            )
            self._later(self.retry_delay, self._start_cycle)

    def _connected(self, proto: ControllerProtocol) -> None:
        self._connecting = None
        self.protocol = proto
        self.sessions += 1
        proto.done.addCallback(self._session_over)

    def _session_over(self, end: SessionEnd) -> None:
        self.protocol = None
        if not self.running:
            return
        if self.max_sessions and self.sessions >= self.max_sessions:
            self.log.info("ran {n} session(s) as asked; stopping", n=self.sessions)
            self.reactor.stop()
            return
        delay = self.reconnect_delay
        if end.rhint is not None:
            wait = (end.rhint - time.time_ns()) / 1e9
            delay = max(delay, min(wait, MAX_YIELD_WAIT))
        self.log.info("next connection to {addr} in {d:.3f} s", addr=str(self.address), d=delay)
        self._later(delay, self._start_cycle)

    def stopService(self) -> defer.Deferred[None] | None:
        super().stopService()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
        proto, self.protocol = self.protocol, None
        if proto is None:
            self._stop_scheduler()
            return None
        done = proto.done
        proto.end_session()

        def stopped(_: object) -> None:
            self._stop_scheduler()

        return done.addBoth(stopped)

    def _stop_scheduler(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()
