"""Broker mode (``NoSubMode 0``): the endpoint's subscription link (PROTOCOL.md §5.3;
BROKER-PROXY-OBSERVED.md §1).

TLS 1.3 in agent mode to `BrokerAddr` (default port 20557): we present
`EndpointAgentCertPath` with `EndpointPrivKey`, send no SNI, and accept only a broker agent
certificate signed by a `BrokerChainRootPath` key. The xcerts and the xsub go out
pipelined, each message its own TLS record; then every xnotify is handed to the runner.

Unlike the reference (which reconnects at once, forever, after any error), every
failure waits: `backoff_base` doubling up to `backoff_cap` (5 s, the reference's pause
after a refused connect), with jitter. A subscription that lasted `STABLE` seconds resets
it; one lost sooner is one more failure of the same outage (session 33: a broker that
confirmed the xsub and then dropped the link, as one in a crash loop does, had every
endpoint back at it every 0.2-0.25 s, with two log lines each time). So a restarted
broker has every endpoint back within `backoff_cap` plus a handshake.

Logged per state change, not per attempt: the link lost (or the first refusal), a new
reason during the outage (at most `NEW_REASONS` of them), one reminder every
`OUTAGE_REMINDER` s, and the subscription again with how long the outage was.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.application import service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from packetlab.clockstep import steady, steady_clock
from packetlab.endpoint.config import ConfigError, EndpointConfig
from packetlab.endpoint.outage import Outage, Say
from packetlab.endpoint.service import ControllerAddress, PlaintextLink
from packetlab.endpoint.subscription import (
    BrokerReader,
    Event,
    SubscriptionPlan,
    plan_subscription,
)
from packetlab.logbudget import LogBudget
from packetlab.loglevel import START_STOP
from packetlab.ppks import (
    Certificate,
    PPKSError,
    load_certificates,
    raw_public_key,
    read_public_key,
)
from packetlab.tls import (
    AuthMode,
    Credentials,
    PPKSClientCreator,
    PPKSClientEndpoint,
    TLSConfigError,
    agent_leaf_error,
    chain_validity,
)
from packetlab.wire.constants import DEFAULT_SUB_PORT
from packetlab.wire.framer import Framer
from packetlab.wire.messages import Xnotify

__all__ = ["BrokerSettings", "BrokerSubscriber"]

MAX_FRAME = 65536  # an xnotify is a channel and an xdescr of a few hundred bytes
STABLE = 10.0  # s a subscription must last for its loss to start a new outage
NEW_REASONS = 4  # distinct reasons logged per outage beyond its first line
FLAPS_SAID = 2  # subscriptions logged per outage when each is lost before STABLE
CLOSE_WAIT = 2.0  # s a stopping endpoint waits for its broker link to close, then aborts

OnNotify = Callable[[bytes, bytes], None]  # (channel, xdescr)


class _BrokerLink(Protocol):
    log = Logger(namespace="pktendpoint")

    def __init__(self, owner: BrokerSubscriber) -> None:
        self.owner = owner
        self.framer = Framer(MAX_FRAME)
        self.reader = BrokerReader(owner.plan.results_expected)

    def connectionMade(self) -> None:
        tcp = getattr(self.transport, "transport", None)  # below TLS
        if tcp is not None and hasattr(tcp, "setTcpKeepAlive"):
            tcp.setTcpKeepAlive(True)  # the reference's only liveness check
        self.owner.link = self
        for frame in self.owner.plan.frames():
            self.transport.write(frame)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        if self.owner.stopping:  # its close awaited: no experiment started now
            return
        try:
            items = list(self.framer.feed(data))
        except Exception as e:  # FrameTooLarge: the stream is lost
            self._reset(str(e))
            return
        for item in items:
            event, detail = self.reader.feed(item)
            if event is Event.SUBSCRIBED:
                self.owner.subscribed()
            elif event is Event.NOTIFY:
                assert isinstance(detail, Xnotify)
                self.owner.on_notify(detail.channel, detail.xdescr)
            elif event is Event.IGNORE:  # as often as the broker likes: a log budget
                more = self.owner.ignored_log.allow()
                if more is not None:
                    self.log.warn("broker: {why}; ignored{more}", why=detail, more=more)
            elif event is Event.RESET:
                self._reset(str(detail))
                return

    def _reset(self, why: str) -> None:
        self.log.warn("broker {addr}: {why}; resetting", addr=self.owner.address, why=why)
        self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.owner.lost(self, reason)


# The daemon's own lines, as the tap's (``[pktendpoint#info]``): not the subscriber's.
_daemon_log = Logger(namespace="pktendpoint")


class BrokerSubscriber(service.Service):
    log = Logger(namespace="pktendpoint")

    def __init__(
        self,
        reactor: Any,
        address: str,
        endpoint: Callable[[], Any],
        plan: SubscriptionPlan,
        on_notify: OnNotify,
        *,
        backoff_base: float = 0.25,
        backoff_cap: float = 5.0,
    ) -> None:
        self.reactor = reactor
        self.address = address
        self._endpoint = endpoint  # a fresh client endpoint (TLS to the broker) per try
        self.plan = plan
        self.on_notify = on_notify
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.failures = 0
        self.subscriptions = 0
        self.link: _BrokerLink | None = None
        self._timer: IDelayedCall | None = None
        self._connecting: Any = None
        # The outage's first failure, then one line every OUTAGE_REMINDER s: a broker down
        # for a day logged a line every ~5 s (~17,000 lines); a restart of a few seconds,
        # one line per attempt (session 33: one when lost, one when back).
        self._outage = Outage(loud=1)
        self._reasons: set[str] = set()  # said in this outage
        self._subscribed_at: float | None = None  # the current subscription's start
        self._flaps = 0  # subscriptions made during this outage (each lost before STABLE)
        self._lasting: IDelayedCall | None = None  # says a subscription not said, if it lasts
        self._closed: Deferred[None] | None = None  # fired when the link closed at stop
        self.stopping = False  # stopService called
        # Frames ignored (an empty xnotify): a line each was a log as fast as a broker sent.
        self.ignored_log = LogBudget(steady_clock(reactor))

    def startService(self) -> None:
        super().startService()
        self.stopping = False
        # The line that says the endpoint is up and where it goes (kept at warn: loglevel)
        _daemon_log.info(
            "pktendpoint: broker mode, subscribing to broker {addr}",
            addr=self.address,
            **START_STOP,
        )
        self._connect()

    def _connect(self) -> None:
        self._timer = None
        if not self.running:
            return
        factory = Factory.forProtocol(lambda: _BrokerLink(self))
        factory.noisy = False
        d = self._endpoint().connect(factory)
        self._connecting = d
        d.addErrback(self._connect_failed)

    def _connect_failed(self, failure: Failure) -> None:
        self._connecting = None
        if not self.running:
            return
        self._retry(f"cannot connect: {failure.getErrorMessage()}")

    def subscribed(self) -> None:
        # The backoff and the outage end once this subscription has lasted STABLE s
        # (`_retry`): a broker that drops each one at once stays an outage.
        now = steady(self.reactor)
        self._subscribed_at = now
        self.subscriptions += 1
        back = ""
        if self._outage.failures:
            back = (
                f"; back after {self._outage.failures} failed attempt(s) over "
                f"{self._outage.elapsed(now):.1f} s"
            )
            self._flaps += 1
            if self._flaps > FLAPS_SAID:  # lost each time before STABLE: said if this lasts
                self._lasting = self.reactor.callLater(STABLE, self._lasted, back)
                return
        self.log.info(
            "Broker subscription finished: {addr}, {n} channel(s), dattr {dattr!r}{back}",
            addr=self.address,
            n=len(self.plan.chlist),
            dattr=self.plan.dattr.decode("ascii", "replace"),
            back=back,
        )

    def _lasted(self, back: str) -> None:
        self._lasting = None
        self.log.info(
            "Broker subscription finished and lasted {stable:g} s: {addr}, {n} channel(s), "
            "dattr {dattr!r}{back}",
            stable=STABLE,
            addr=self.address,
            n=len(self.plan.chlist),
            dattr=self.plan.dattr.decode("ascii", "replace"),
            back=back,
        )

    def _cancel_lasting(self) -> None:
        if self._lasting is not None and self._lasting.active():
            self._lasting.cancel()
        self._lasting = None

    def lost(self, link: _BrokerLink, reason: Failure) -> None:
        self._connecting = None
        if self.link is link:
            self.link = None
            closed, self._closed = self._closed, None
            if closed is not None:  # stopService waits for this
                closed.callback(None)
        if self.running:
            self._retry(f"link lost: {reason.getErrorMessage()}")

    def _retry(self, why: str) -> None:
        now = steady(self.reactor)
        since, self._subscribed_at = self._subscribed_at, None
        self._cancel_lasting()
        # it lasted: a new outage (also when the clock, the wall's, was stepped back
        # under it: how long it lasted is not known; the old outage kept had the backoff
        # at its cap and "back after" counting the attempts before the subscription)
        if since is not None and not 0 <= now - since < STABLE:
            self.failures = 0
            self._outage.reached()
            self._reasons.clear()
            self._flaps = 0
        delay = min(self.backoff_cap, self.backoff_base * 2 ** min(self.failures, 16))
        delay *= random.uniform(0.8, 1.0)  # spread a crowd of endpoints after a restart
        self.failures += 1
        say = self._outage.failed(now)
        reason = _reason(why)
        if reason not in self._reasons and len(self._reasons) <= NEW_REASONS:
            self._reasons.add(reason)  # (bounded: a reason may vary at every attempt)
            if say is Say.NOTHING:  # a new state: refused -> TLS refused
                say = Say.EACH
        if say is Say.EACH:
            self.log.info(
                "broker {addr}: {why}; reconnecting in {d:.2f} s{then}",
                addr=self.address,
                why=why,
                d=delay,
                then=""
                if not self._outage.quiet
                else f" (and so on, logged every {self._outage.reminder:g} s)",
            )
        elif say is Say.REMINDER:
            self.log.warn(
                "broker {addr}: still unreachable ({why}) after {n} attempts over {t:.0f} s; "
                "reconnecting in {d:.2f} s",
                addr=self.address,
                why=why,
                n=self._outage.failures,
                t=self._outage.elapsed(now),
                d=delay,
            )
        self._timer = self.reactor.callLater(delay, self._connect)

    def stopService(self) -> Deferred[None] | None:
        """Close the broker link and wait (at most `CLOSE_WAIT` s) for it to be closed:
        the reactor stopped right after loseConnection, before the TLS close_notify and
        the FIN went out, and the broker logged every endpoint stopped (a restart, an
        upgrade) as `unsubscribe ... reason=Connection to the other side was lost in a
        non-clean fashion`."""
        super().stopService()
        self.stopping = True
        self._cancel_lasting()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
        link = self.link
        if link is None or link.transport is None:
            return None
        closed: Deferred[None] = Deferred()
        self._closed = closed
        link.transport.loseConnection()
        if closed.called:
            return None
        abort = getattr(link.transport, "abortConnection", link.transport.loseConnection)
        late = self.reactor.callLater(CLOSE_WAIT, abort)  # a broker that does not answer
        return closed.addBoth(lambda _: late.cancel() if late.active() else None)


BROKER = "broker mode: "  # what its start-up errors begin with


@dataclass(frozen=True)
class BrokerSettings:
    """Broker mode, loaded and checked from endpt.conf: where, with what, and the plan."""

    address: ControllerAddress
    creator: PPKSClientCreator
    plan: SubscriptionPlan

    @classmethod
    def from_config(cls, cfg: EndpointConfig) -> BrokerSettings:
        """`ConfigError` names the key that is missing or wrong."""
        if not cfg.broker_addr:
            raise ConfigError("broker mode (NoSubMode 0) needs BrokerAddr (HOST[:PORT])")
        try:
            address = ControllerAddress.parse(cfg.broker_addr, DEFAULT_SUB_PORT, what="broker")
        except ValueError as e:  # said where it was set: `--broker` or `FILE:LINE`
            where = cfg.origins.get("BrokerAddr")
            raise ConfigError(f"{where + ': ' if where else ''}BrokerAddr: {e}") from None
        if not cfg.broker_roots:
            raise ConfigError(
                "broker mode needs BrokerChainRootPath: the broker-operator key(s) whose "
                "signature on the broker's agent certificate we trust"
            )
        if not cfg.agent_cert or not cfg.private_key:
            raise ConfigError(
                "broker mode needs EndpointAgentCertPath (our agent certificate) and "
                "EndpointPrivKey (its key)"
            )
        try:
            creds = Credentials.load([cfg.agent_cert], cfg.private_key)
        except TLSConfigError as e:
            where = cfg.credentials_fault(e.part, "EndpointAgentCertPath")
            raise ConfigError(f"broker mode: {where}: {e}") from None
        # The broker takes our link in agent mode only (it refuses any other certificate
        # in the handshake, and the endpoint would reconnect for ever).
        wrong = agent_leaf_error(
            creds.leaf, cfg.named("EndpointAgentCertPath"), "broker checks the endpoint's link"
        )
        if wrong is not None:
            raise ConfigError(f"broker mode: {wrong}")
        read = cfg.read_files
        roots = read("BrokerChainRootPath", cfg.broker_roots, read_public_key, BROKER)
        eops = [
            raw_public_key(k)
            for k in read("EndpointOpPubKeyPath", cfg.eop_pubkeys, read_public_key, BROKER)
        ]
        files = read("SubPrivCertChainPath", cfg.subpriv_chain, _certificates, BROKER)
        chain = [c for certs in files for c in certs]
        try:
            plan = plan_subscription(
                chain, eops, cfg.broker_channels, cfg.auto_extract_channel, cfg.endpoint_attr
            )
        except (PPKSError, ValueError) as e:
            raise ConfigError(f"broker mode: {e}") from None
        # Expired: the broker refuses the link (agent cert) or the subscription (chain), and
        # the endpoint would retry for ever with nothing at its end saying why.
        now = time.time()
        for key, certs in (("EndpointAgentCertPath", creds.chain), ("SubPrivCertChainPath", chain)):
            if not certs:
                continue
            error, warning, _ = chain_validity(certs, cfg.named(key), now)
            if error is not None:
                raise ConfigError(f"broker mode: {error}")
            if warning is not None:
                Logger(namespace="pktendpoint").warn("broker mode: {w}", w=warning)
        return cls(address, PPKSClientCreator(creds, AuthMode.AGENT, roots), plan)

    def endpoint(self, reactor: Any) -> Any:
        from packetlab.endpoint.tlslink import HANDSHAKE_TIMEOUT

        return PPKSClientEndpoint(
            PlaintextLink().endpoint(reactor, self.address),
            self.creator,
            handshake_timeout=(HANDSHAKE_TIMEOUT, reactor),  # a silent broker: retried
        )


def _reason(why: str) -> str:
    """`why` without what varies between attempts of one state (a port, a number)."""
    return "".join(c for c in why if not c.isdigit())


def _certificates(path: str) -> list[Certificate]:
    return load_certificates(_read(path))


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()
