"""NoSub mode: the endpoint connects out to one controller, runs a session, and connects
again for the next one (PROTOCOL.md §1.4.1, §5.6 ``NoSubMode``).

Connect cycle as the reference worker: TCP connect timeout 3 s, retried every 1 s, given
up 5 s after the cycle started. The reference worker then exits; a daemon keeps going, so
we start a new cycle after `retry_delay` and log each give-up. After a session ends we
connect again after `reconnect_delay` (after a ``yield``, not before its resume hint), so
a long-running controller can run experiment after experiment. Twisted's `ClientService`
runs the connections; `ConnectCycle` is its retry policy (on the service's clock).

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
from typing import Any, Protocol, cast

from twisted.application import service
from twisted.application.internet import ClientService
from twisted.internet import defer
from twisted.internet.interfaces import (
    IProtocolFactory,
    IReactorCore,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory
from twisted.logger import ILogObserver, Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from packetlab.clockstep import steady
from packetlab.endpoint.outage import Outage, Say
from packetlab.endpoint.protocol import ControllerProtocol
from packetlab.endpoint.session import Session, SessionEnd
from packetlab.endpoint.tcpclient import TCPClientEndpoint
from packetlab.hostport import HostPortError, port_number, split_host_port, zone_problem
from packetlab.loglevel import START_STOP
from packetlab.tls import peer_of
from packetlab.wire.constants import DEFAULT_CONTROLLER_PORT

__all__ = [
    "CONNECT_GIVE_UP",
    "CONNECT_RETRY",
    "CONNECT_TIMEOUT",
    "ConnectCycle",
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
    def parse(
        cls, text: str, default_port: int = DEFAULT_CONTROLLER_PORT, what: str = "controller"
    ) -> ControllerAddress:
        """``HOST[:PORT]``, split on the last ':' as the reference does; ``[v6]:PORT`` and a
        bare IPv6 address (``::1``, default port) are accepted too. Raises ValueError, whose
        text names `what` the address is of (a broker's said `bad controller address`)."""
        text = text.strip()
        bad = f"bad {what} address {text!r}"
        if not text:
            raise ValueError(f"empty {what} address")
        address = cls._split(text, default_port, bad)
        problem = zone_problem(address.host)
        if problem is not None:  # else retried for ever: `Invalid argument`
            raise ValueError(f"{bad}: {problem}")
        return address

    @classmethod
    def _split(cls, text: str, default_port: int, bad: str) -> ControllerAddress:
        try:
            host, port = split_host_port(text, reference=True)
        except HostPortError as e:
            raise ValueError(f"{bad}: {e}") from None
        if ":" in host:
            _ip(host, bad)
        elif not host:  # `:20556`: was the bare `bad controller address ':20556'`
            raise ValueError(f"{bad}: no host before the port")
        elif not _valid_host(host):
            raise ValueError(f"{bad}: {host!r} is neither an IP address nor a host name")
        return cls(host, default_port if port is None else _port(port, bad))

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


def _ip(host: str, bad: str) -> None:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        raise ValueError(f"{bad}: {host!r} is not an IPv6 address") from None


def _port(port: str, bad: str) -> int:
    number = port_number(port)
    if number is None:  # `²` said `invalid literal for int() with base 10`
        raise ValueError(f"{bad}: port must be 1..65535, got {port!r}")
    return number


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
            ipaddress.ip_address(address.host)
        except ValueError:
            # Imported for a host name only: twisted.internet.endpoints costs an endpoint
            # ~0.38 MiB of RSS (docs/performance.md, Memory); an address needs none of it.
            from twisted.internet.endpoints import HostnameEndpoint

            return HostnameEndpoint(reactor, address.host, address.port, timeout=CONNECT_TIMEOUT)
        return TCPClientEndpoint(reactor, address.host, address.port, timeout=CONNECT_TIMEOUT)


class _Admission(Protocol):
    def gate_for(self, peer: Any) -> Any: ...

    def watch(self, gate: Any, proto: ControllerProtocol, reactor: Any) -> None: ...


class _Scheduler(Protocol):
    def start(self) -> None: ...

    def stop(self) -> object: ...


class ConnectCycle:
    """The retry policy of the connect cycle, for `ClientService` (which asks it how long
    to wait after each failed attempt or ended session). Attempts are retried every
    `CONNECT_RETRY` until `CONNECT_GIVE_UP` after the cycle's first attempt started; then
    a new cycle starts after `retry_delay`. After a session the wait is the one
    `session_over` set."""

    log = Logger()

    def __init__(self, clock: IReactorTime, address: ControllerAddress, retry_delay: float) -> None:
        self.clock = clock
        self.address = address
        self.retry_delay = retry_delay
        self._cycle_start: float | None = None
        self._after_session: float | None = None
        self._why = ""
        # The outage (cycles given up since the last session, or since the start): its
        # first cycle is logged attempt by attempt, then one line every OUTAGE_REMINDER s
        # (a controller down for a day logged ~5 lines every 9 s: ~48,000 lines).
        self._outage = Outage(loud=1)

    def attempt_started(self) -> None:
        if self._cycle_start is None:
            self._cycle_start = steady(self.clock)

    def attempt_failed(self, failure: Failure) -> Failure:
        self._why = failure.getErrorMessage()
        return failure

    def session_over(self, delay: float) -> None:
        self._after_session = delay
        self._cycle_start = None
        self._outage.reached()

    def __call__(self, attempt: int) -> float:
        if self._after_session is not None:
            delay, self._after_session = self._after_session, None
            self.log.info("next connection to {addr} in {d:.3f} s", addr=str(self.address), d=delay)
            return delay
        now = steady(self.clock)
        start = self._cycle_start if self._cycle_start is not None else now
        elapsed = now - start
        if elapsed + CONNECT_RETRY < CONNECT_GIVE_UP:
            if not self._outage.quiet:  # the outage's first cycle
                self.log.info(
                    "cannot reach controller {addr}: {why}; retrying in {d} s",
                    addr=str(self.address),
                    why=self._why,
                    d=CONNECT_RETRY,
                )
            return CONNECT_RETRY
        self._cycle_start = None
        say = self._outage.failed(now, since=start)
        if say is Say.EACH:
            self.log.warn(
                "gave up reaching controller {addr} after {t:.1f} s ({why}); next attempt in "
                "{d} s (and so on, logged every {r:g} s until it is reached)",
                addr=str(self.address),
                t=elapsed,
                why=self._why,
                d=self.retry_delay,
                r=self._outage.reminder,
            )
        elif say is Say.REMINDER:
            self.log.warn(
                "still cannot reach controller {addr} ({why}): {n} connect cycles over "
                "{t:.0f} s; next attempt in {d} s",
                addr=str(self.address),
                why=self._why,
                n=self._outage.failures,
                t=self._outage.elapsed(now),
                d=self.retry_delay,
            )
        return self.retry_delay


def _discard(event: Any) -> None:
    pass


class _QuietClientService(ClientService):
    """`ClientService` without its line per failed attempt ("Scheduling retry 3 to connect
    <packetlab.endpoint.service._CycleEndpoint object at 0x7f...> in 1.0 seconds."):
    `ConnectCycle` says the same in words, and less often."""

    _log = Logger(observer=cast(ILogObserver, _discard))


@implementer(IStreamClientEndpoint)
class _CycleEndpoint:
    """The link's endpoint, made anew for each attempt, telling the cycle about it."""

    def __init__(
        self, reactor: object, link: ControllerLink, address: ControllerAddress, cycle: ConnectCycle
    ) -> None:
        self._reactor = reactor
        self._link = link
        self._address = address
        self._cycle = cycle

    def connect(self, factory: IProtocolFactory) -> defer.Deferred[Any]:
        self._cycle.attempt_started()
        d = self._link.endpoint(self._reactor, self._address).connect(factory)
        return d.addErrback(self._cycle.attempt_failed)


# The daemon's own lines, as the tap's (``[pktendpoint#info]``): not the service's.
_daemon_log = Logger(namespace="pktendpoint")


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
        self.reconnect_delay = reconnect_delay
        self.max_sessions = max_sessions
        self.admission = admission
        self.sessions = 0
        self.protocol: ControllerProtocol | None = None
        clock: Any = reactor
        self.cycle = ConnectCycle(clock, address, retry_delay)

        def build() -> ControllerProtocol:
            proto = ControllerProtocol(lambda: self._session_for(proto), clock)
            return proto

        factory = Factory.forProtocol(build)
        factory.noisy = False  # one "Starting factory" line per connection is noise
        self._client = _QuietClientService(
            _CycleEndpoint(reactor, link, address, self.cycle),
            factory,
            retryPolicy=self.cycle,
            clock=clock,
            prepareConnection=self._connected,
        )

    def startService(self) -> None:
        super().startService()
        # The line that says the endpoint is up and where it goes (kept at warn: loglevel)
        _daemon_log.info(
            "pktendpoint: NoSub mode, connecting to controller {addr} over {how}",
            addr=str(self.address),
            how="plain TCP" if isinstance(self.link, PlaintextLink) else "TLS",
            **START_STOP,
        )
        if self.scheduler is not None:
            self.scheduler.start()
        self._client.startService()

    def _session_for(self, proto: ControllerProtocol) -> Session:
        if self.admission is None:
            return self.make_session()
        # By the transport: the application protocol the TLS gate knows is ClientService's
        # proxy of `proto`, not `proto` itself.
        gate = self.admission.gate_for(peer_of(proto.transport))  # may raise SessionRefused
        if gate is None:
            return self.make_session()
        session: Session = self.make_session(gate)  # type: ignore[call-arg]
        self.admission.watch(gate, proto, self.reactor)
        return session

    def _connected(self, proto: Any) -> None:
        # `proto` is ClientService's proxy of our ControllerProtocol (same attributes).
        self.protocol = proto
        self.sessions += 1
        proto.done.addCallback(self._session_over)

    def _session_over(self, end: SessionEnd) -> None:
        # Runs inside the connection's connectionLost, before ClientService asks the
        # cycle how long to wait.
        self.protocol = None
        if not self.running:
            return
        if self.max_sessions and self.sessions >= self.max_sessions:
            self.log.info("ran {n} session(s) as asked; stopping", n=self.sessions, **START_STOP)
            self._client.stopService()
            self.reactor.stop()
            return
        delay = self.reconnect_delay
        if end.rhint is not None:
            wait = (end.rhint - time.time_ns()) / 1e9
            delay = max(delay, min(wait, MAX_YIELD_WAIT))
        self.cycle.session_over(delay)

    def stopService(self) -> defer.Deferred[None] | None:
        super().stopService()
        proto, self.protocol = self.protocol, None
        if proto is not None:
            proto.end_session()  # abort: a stopping endpoint sends nothing more
        stopped = self._client.stopService()
        if stopped.called:
            self._stop_scheduler()
            return None

        def done(_: object) -> None:
            self._stop_scheduler()

        return stopped.addBoth(done)

    def _stop_scheduler(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()
