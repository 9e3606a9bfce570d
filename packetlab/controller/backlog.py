"""Active mode: backlog connections to a proxy (PROTOCOL.md §6, BROKER-PROXY-OBSERVED.md §4).

Each `BacklogConnection` registers with the proxy (TLS 1.3 agent client, no SNI,
`xreg(snikey)` → `result`, our close_notify, then the raw `PKTLAB` preamble from the proxy
and our echo) and then waits, idle, for an endpoint. The first bytes after that are the
endpoint's ClientHello: from there the connection is an ordinary accepted one, and the
server-side TLS of the manager (SNI map, PPKS check) runs over it.

`BacklogPool` keeps `target` connections ready per snikey, replenishes one as soon as one
is claimed by an endpoint, stops at the `-n` cap, and backs off on failures.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from packetlab import wire
from packetlab.clockstep import steady
from packetlab.hostport import client_endpoint, join_host_port
from packetlab.tls import PPKSClientCreator
from packetlab.tls.handoff import HandoffError, TLSHandoff

__all__ = ["PREAMBLE", "BacklogConnection", "BacklogPool", "backoff"]

PREAMBLE = b"PKTLAB"
_PREAMBLE_SCAN_CAP = 4096  # bytes read while looking for the preamble
RECOVER_S = 60.0  # after a backlog last worked: a proxy gone now is likely restarting
RECOVER_RETRY_S = 1.0  # ... and is tried this often meanwhile


def backoff(n: int) -> float:
    """The wait after the n-th failure in a row: 0.5 s doubling, at most 30 s."""
    return min(30.0, 0.25 * 2 ** min(n, 8))


class BacklogConnection(Protocol):
    log = Logger()

    def __init__(self, pool: BacklogPool) -> None:
        self.pool = pool
        self.state = "tls"  # tls -> preamble -> idle -> endpoint | closed
        self.handoff = TLSHandoff(pool.creator.clientConnectionForTLS(None), is_client=True)  # type: ignore[arg-type]
        self.framer = wire.Framer(max_body=1024)
        self.tls: Any = None  # the endpoint's TLS protocol, once claimed
        self._scan = b""
        self._timer: IDelayedCall | None = None
        self.established = False  # counted by the pool (after the preamble echo)
        self.since = 0.0  # when it was registered (reactor seconds)

    def connectionMade(self) -> None:
        self._arm()
        self.transport.write(self.handoff.start())  # type: ignore[union-attr]

    def _arm(self) -> None:
        self._disarm()
        self._timer = self.pool.reactor.callLater(self.pool.step_timeout, self._timeout)

    def _disarm(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _timeout(self) -> None:
        self._timer = None
        self._fail(f"no progress in {self.pool.step_timeout:g} s while in state {self.state}")

    def _fail(self, why: str) -> None:
        self.log.warn("backlog to {proxy}: {why}", proxy=self.pool.where, why=why)
        self.state = "closed"
        self._disarm()
        if self.transport is not None:
            self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        if self.state == "endpoint":
            self.tls.dataReceived(data)
        elif self.state == "tls":
            self._tls(data)
        elif self.state == "preamble":
            self._preamble(data)
        elif self.state == "idle":
            self._claim(data)

    def _tls(self, data: bytes) -> None:
        # Record by record: a proxy may write its `PKTLAB` right behind the result, in
        # the same segment and before our close_notify (OBSERVED §4.1 "eager preamble");
        # those bytes are raw, not TLS.
        try:
            step = self.handoff.receive(data, until_data=True)
            out = step.out
            if step.handshake_done:
                out += self.handoff.send(wire.encode(wire.Xreg(self.pool.snikey.encode())))
            items = list(self.framer.feed(step.data)) if step.data else []
            while step.data and not items:  # a result split over records
                step = self.handoff.receive(b"", until_data=True)
                out += step.out
                items = list(self.framer.feed(step.data)) if step.data else []
        except HandoffError as e:
            self._fail(f"TLS setup with the proxy failed: {e}")
            self.pool.tls_failed(str(e))
            return
        except wire.WireError as e:
            self._fail(f"bad answer to xreg: {e}")
            return
        if out:
            self.transport.write(out)  # type: ignore[union-attr]
        if not items:
            return
        item = items[0]
        if not isinstance(item, wire.Result):
            self._fail(f"expected a result to xreg, got {type(item).__name__}")
            return
        # TLS is shut down but the TCP connection is kept (§6.2 step 4)
        self.transport.write(self.handoff.close())  # type: ignore[union-attr]
        rest = self.handoff.detach()
        if item.errid != 0:  # a soft failure: warn, the pool tries again
            self._fail(f"xreg response received errid: {item.errid}")
            return
        self.state = "preamble"
        self._arm()
        if rest:
            self._preamble(rest)

    def _preamble(self, data: bytes) -> None:
        # The proxy may send its own close_notify first; scan for the preamble itself
        # (correctly for overlapping prefixes, unlike the reference: "PKPKTLAB").
        self._scan += data
        i = self._scan.find(PREAMBLE)
        if i < 0:
            if len(self._scan) > _PREAMBLE_SCAN_CAP:
                self._fail(f"no {PREAMBLE!r} preamble in {len(self._scan)} bytes")
            return
        rest = self._scan[i + len(PREAMBLE) :]
        self._scan = b""
        self.transport.write(PREAMBLE)  # type: ignore[union-attr]
        self._disarm()
        self.state = "idle"
        self.pool.established(self)
        if rest:
            self._claim(rest)

    def _claim(self, data: bytes) -> None:
        """An endpoint is spliced to us: run the manager's TLS server over this socket."""
        self.state = "endpoint"
        self.pool.claimed(self)
        self.tls = self.pool.server_factory.buildProtocol(self.transport.getPeer())  # type: ignore[union-attr]
        self.tls.makeConnection(self.transport)
        self.tls.dataReceived(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._disarm()
        if self.state == "endpoint":
            self.tls.connectionLost(reason)
            if getattr(self.tls, "peer", None) is None:
                # Its TLS setup never completed: not an attempt (-n counts those, as
                # the reference does), so the slot it took is given back.
                self.pool.unclaim()
            return
        state, self.state = self.state, "closed"
        self.pool.lost(self, state)


class BacklogPool:
    """`target` backlog connections for one snikey at `host:port` (the proxy's setup port).

    `max_claims` (the `-n` cap) bounds how many endpoints may be taken in all; `unclaim`
    gives one back (its endpoint failed before becoming an attempt)."""

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        host: str,
        port: int,
        snikey: str,
        creator: PPKSClientCreator,
        server_factory: Any,
        *,
        target: int = 2,
        step_timeout: float = 2.0,
        max_claims: int | None = None,
        on_change: Callable[[], None] = lambda: None,
        on_tls_failure: Callable[[str], None] = lambda why: None,
    ) -> None:
        self.reactor = reactor
        self.host, self.port = host, port
        self.where = join_host_port(host, port)
        self.snikey = snikey
        self.creator = creator
        self.server_factory = server_factory
        self.target = target
        self.step_timeout = step_timeout
        self.max_claims = max_claims
        self.on_change = on_change
        self.on_tls_failure = on_tls_failure
        self.pending = 0
        self.idle: set[BacklogConnection] = set()
        self.claims = 0
        self.registered = 0  # backlogs ever established
        self.failures = 0  # consecutive
        # Backlogs the proxy closed within `step_timeout` of their registration, in a row:
        # replacing each at once was a registration loop as fast as the proxy answers.
        self.quick_closes = 0
        self.hard_failure: str | None = None
        self.running = False
        self._retry: IDelayedCall | None = None
        # When a backlog last worked (registered, or lived until the proxy closed it): a
        # proxy that goes away after that is most likely restarting, and until this pool
        # registers again its endpoints are refused (`unknown_snikey`), so it is tried
        # every RECOVER_RETRY_S for RECOVER_S, not on the back-off (which left a proxy
        # restarted after 10 s without backlogs for 5.5 s more, up to 30 s).
        self.last_working: float | None = None

    @property
    def wanted(self) -> int:
        if not self.running:
            return 0
        if self.max_claims is None:
            return self.target
        return max(0, min(self.target, self.max_claims - self.claims))

    def start(self) -> None:
        self.running = True
        self.fill()

    def stop(self) -> None:
        """No new backlogs; the idle ones are closed (the manager's EOF to the proxy)."""
        self.running = False
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        for conn in list(self.idle):
            conn.state = "closed"
            if conn.transport is not None:
                conn.transport.loseConnection()
        self.idle.clear()

    def fill(self) -> None:
        self._retry = None
        while self.running and self.pending + len(self.idle) < self.wanted:
            self._connect()

    def _connect(self) -> None:
        self.pending += 1
        factory = Factory.forProtocol(lambda: BacklogConnection(self))
        factory.noisy = False
        ep = client_endpoint(self.reactor, self.host, self.port, self.step_timeout)
        ep.connect(factory).addErrback(self._connect_failed)

    def _connect_failed(self, f: Failure) -> None:
        self.pending -= 1
        delay = self._again()
        n = self.failures
        if n & (n - 1) == 0:  # the 1st, 2nd, 4th, 8th ... in a row: a bounded log
            self.log.warn(
                "backlog to {proxy}: cannot connect: {why} ({n} in a row{next})",
                proxy=self.where,
                why=f.getErrorMessage(),
                n=n,
                next="" if delay is None else f"; the next try in {delay:g} s",
            )

    def _again(self) -> float | None:
        """Count a failure and schedule the next fill; its delay (None: none scheduled)."""
        self.failures += 1
        if not self.running or self._retry is not None:
            return None
        delay = backoff(self.failures)
        since = self.last_working
        if since is not None and steady(self.reactor) - since < RECOVER_S:
            delay = min(delay, RECOVER_RETRY_S)
        self._retry = self.reactor.callLater(delay, self.fill)
        return delay

    def tls_failed(self, why: str) -> None:
        """A backlog's TLS setup with the proxy failed (its certificate refused, an alert,
        not TLS at all): kept as the reason a bootstrap would fail with, and told. A
        handshake cut by the peer (a proxy restarting) is a lost connection: retried."""
        self.hard_failure = why
        self.on_tls_failure(why)

    def established(self, conn: BacklogConnection) -> None:
        self.pending -= 1
        self.failures = 0
        self.registered += 1
        conn.established = True
        conn.since = self.last_working = steady(self.reactor)
        if not self.running:
            conn.transport.loseConnection()  # type: ignore[union-attr]
            return
        self.idle.add(conn)
        self.log.info("backlog to {proxy} ready for snikey {snikey} ({n} idle)",
                      proxy=self.where, snikey=self.snikey, n=len(self.idle))  # fmt: skip
        self.on_change()

    def claimed(self, conn: BacklogConnection) -> None:
        self.idle.discard(conn)
        self.claims += 1
        self.fill()  # replenish at once
        self.on_change()

    def unclaim(self) -> None:
        self.claims -= 1
        self.fill()

    def lost(self, conn: BacklogConnection, state: str) -> None:
        if conn.established:
            self.idle.discard(conn)
            if self.running and state == "idle":
                lived = steady(self.reactor) - conn.since
                if lived >= self.step_timeout:
                    self.quick_closes = 0
                    self.last_working = steady(self.reactor)
                    self.log.info("idle backlog to {proxy} closed by the proxy", proxy=self.where)
                    self.fill()
                    return
                self.quick_closes += 1
                delay = backoff(self.quick_closes)
                self.log.warn(
                    "idle backlog to {proxy} closed by the proxy {t:.1f} s after its "
                    "registration ({n} in a row); the next one in {d:g} s",
                    proxy=self.where,
                    t=lived,
                    n=self.quick_closes,
                    d=delay,
                )
                if self._retry is None:
                    self._retry = self.reactor.callLater(delay, self.fill)
            return
        self.pending -= 1
        self._again()
