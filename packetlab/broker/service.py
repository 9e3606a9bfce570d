"""`BrokerService`: the publish and subscribe ports (PROTOCOL.md §5.1) over TLS 1.3 in
agent mode (§4.6), sharing one registry; optionally an HTTP/JSON status page.

The broker presents its agent certificate (signed by the broker-operator key that clients
list as their broker root) and requires the client's agent certificate, checked for form
only (agent certs are self-signed, BROKER-PROXY-OBSERVED.md §1.1, §3.1): its key is the
client's identity, which the xsub/xpub chains must then lead to.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from packetlab.addrshare import DEFAULT_SHARE
from packetlab.clockstep import steady, steady_clock
from packetlab.fdcap import link_budget, nofile_limit
from packetlab.hostport import host_port
from packetlab.loglevel import START_STOP
from packetlab.tapoptions import listen_failure, stop_daemon
from packetlab.tls import (
    AuthMode,
    Credentials,
    PPKSServerEndpoint,
    PPKSServerOptions,
    ServerEntry,
    default_pending_max,
)

from .protocol import IDLE_TIMEOUT, BrokerFactory
from .registry import (
    DELIVERY_LINGER,
    MAX_LIVE_PUBLICATIONS,
    MAX_PER_ADDRESS,
    MAX_PER_KEY,
    Registry,
)
from .session import Role
from .throttle import Throttle

__all__ = ["BrokerService", "server_options"]


STORE_TIMEOUT = 10.0  # s for Redis to accept the first connection at start


class StoreUnreachable(Exception):
    """The Redis of `--store` did not answer at start."""


class _PortFailed(Exception):
    """A port that cannot be bound, said as `listen_failure` says it."""


def server_options(credentials: Credentials) -> PPKSServerOptions:
    """TLS for both ports: our agent chain to every client (they send no SNI), client
    agent certificate required, any root (agent certs are self-signed)."""
    entry = ServerEntry(credentials, AuthMode.AGENT, (), require_client_cert=True)
    return PPKSServerOptions(default=entry, release_buffers=True)


class BrokerService(service.Service):
    log = Logger(namespace="pktbroker")

    def __init__(
        self,
        reactor: Any,
        credentials: Credentials,
        *,
        publish: str,
        subscribe: str,
        status: str | None = None,
        registry: Registry | None = None,
        throttle: Throttle | None = None,
        store: str = "memory:",
        fanout_batch: int = 65536,
        delivery_linger: float = DELIVERY_LINGER,
        max_publications: int = MAX_LIVE_PUBLICATIONS,
        max_per_key: int = MAX_PER_KEY,
        max_per_address: int = MAX_PER_ADDRESS,
        idle_timeout: float = IDLE_TIMEOUT,
        stats_interval: float = 0.0,
        per_address_share: float = DEFAULT_SHARE,
    ) -> None:
        self.reactor = reactor
        self.stats_interval = stats_interval
        self._stats: Any = None  # the LoopingCall of the counters line
        self.options = server_options(credentials)
        self.registry = registry or Registry(
            max_publications,
            linger=delivery_linger,
            clock=steady_clock(reactor),  # (the linger: a duration)
            max_per_key=max_per_key,
            max_per_address=max_per_address,
        )
        # Not `throttle or Throttle()`: an empty Throttle is falsy (it has __len__), so the
        # configured ErrorDelay/ErrorDelayMax were silently replaced by the defaults.
        self.throttle = throttle if throttle is not None else Throttle()
        self.where = {Role.PUBLISH: publish, Role.SUBSCRIBE: subscribe}
        self.status_where = status
        self.factories = {
            role: BrokerFactory(role, self.registry, self.throttle, reactor, idle_timeout)
            for role in Role
        }
        # Each port's handshakes and unproven links are capped (default_pending_max);
        # the subscribed and publishing links share what descriptors are left, a quarter
        # for the publishers: a flood of subscriptions must not lock experimenters out.
        self.nofile = nofile_limit()
        links = link_budget(self.nofile, 4 * default_pending_max(self.nofile), 1)
        if links is not None:
            self.factories[Role.PUBLISH].link_max = max(1, links // 4)
            self.factories[Role.SUBSCRIBE].link_max = max(1, links - links // 4)
        for f in self.factories.values():
            f.fanout.batch = fanout_batch
            f.share.fraction = per_address_share
        self.idle_timeout = idle_timeout
        self.ports: dict[str, Any] = {}
        self.store_url = store
        self.store: Any = None
        self._listen_called = False
        self.started = _utc_now()  # (again at startService) when the counters began

    def privilegedStartService(self) -> None:
        """Listen here, before twistd's `-u`/`-g` drops privileges (as Twisted's own
        servers do): in startService a port below 1024 failed with `Permission denied`.
        With a Redis store the ports open once Redis answered, after the drop."""
        super().privilegedStartService()
        if self.store_url == "memory:":
            self._start_listening()

    def _start_listening(self) -> None:
        if self._listen_called:
            return
        self._listen_called = True
        d = defer.ensureDeferred(self._listen())
        d.addErrback(self._listen_failed)

    def startService(self) -> None:
        super().startService()
        self.started = _utc_now()
        if self.stats_interval > 0:  # a week's history in the log (StatusListen is optional)
            from twisted.internet.task import LoopingCall

            self._stats = LoopingCall(self._log_counters)
            self._stats.clock = self.reactor
            self._stats.start(self.stats_interval, now=False)
        self._start_listening()

    def _log_counters(self) -> None:
        self.log.info("counters since {since}: {counters}", since=self.started,
                      counters=self.counters_line())  # fmt: skip

    def _listen_failed(self, failure: Any) -> None:
        if failure.check(StoreUnreachable):
            self.log.critical("pktbroker {why}; stopping", why=failure.value)
            stop_daemon(self.reactor, str(failure.value))
            return
        e = failure.value
        if isinstance(e, _PortFailed):  # a port in use: its address as we write it
            why = str(e)
        else:
            why = f"cannot listen: {failure.getErrorMessage()}"
        if failure.check(_PortFailed, ValueError):  # a port in use, a bad address
            self.log.critical("pktbroker {why}; stopping", why=why)
        else:
            self.log.failure("pktbroker cannot listen; stopping", failure)
        # Under twistd: that line on stderr too, and exit status 1.
        stop_daemon(self.reactor, why)

    async def _listen(self) -> None:
        if self.store_url.startswith("redis://"):
            from .redis_store import RedisStore

            self.store = RedisStore(self.reactor, self.store_url, self.registry)
            await self._probe_store(self.store.host, self.store.port)
            await self.store.start()
        for role, where in self.where.items():
            # The idle deadline covers the handshake too: a client that never finishes it
            # (silent, or a ClientHello one byte at a time) must not keep its descriptor.
            # A client whose certificate is refused is cut off after the throttle's delay,
            # as an error result is answered: closing at once only makes it spin.
            ep = PPKSServerEndpoint(
                serverFromString(self.reactor, where),
                self.options,
                handshake_timeout=(self.idle_timeout, self.reactor),
                refusal_delay=(self._refusal_delay, self.reactor),
                # a flood of silent connections must not take every descriptor (EMFILE:
                # then Twisted closes each new connection at accept, real ones too)
                pending_max=default_pending_max(),
            )
            try:
                port = await ep.listen(self.factories[role])
            except CannotListenError as e:
                raise _PortFailed(listen_failure(role.value, e)) from e
            self.ports[role.value] = port
            self.log.info(
                "pktbroker {role} port listening on {host}",
                role=role.value,
                host=host_port(port.getHost()),
                **START_STOP,
            )
        sub, pub = (self.factories[r] for r in (Role.SUBSCRIBE, Role.PUBLISH))
        if sub.link_max is not None:
            self.log.info(
                "pktbroker: descriptor limit {nofile}: at most {sub} subscribed and {pub} "
                "publishing links at once, {sub_share} and {pub_share} from one address "
                "(--per-address-share {share:g}), {sub_site} and {pub_site} from one IPv6 /48; "
                "past it an xsub or xpub is refused. Raise `ulimit -n` for more",
                nofile=self.nofile,
                sub=sub.link_max,
                pub=pub.link_max,
                sub_share=sub.share.cap(sub.link_max),
                pub_share=pub.share.cap(pub.link_max),
                sub_site=sub.share.site_cap(sub.link_max),
                pub_site=pub.share.site_cap(pub.link_max),
                share=sub.share.fraction,
            )
        if self.status_where is not None:
            from .status import status_site

            try:
                port = await serverFromString(self.reactor, self.status_where).listen(
                    status_site(self.status)
                )
            except Exception as e:  # the broker matters more than its status page
                self.log.warn(
                    "no status page: cannot listen on {where}: {e}", where=self.status_where, e=e
                )
                return
            self.ports["status"] = port
            self.log.info(
                "pktbroker status page on http://{host}/",
                host=host_port(port.getHost()),
                **START_STOP,
            )

    async def _probe_store(self, host: str, port: int) -> None:
        """Redis must answer at start. Its client retries for ever, and the ports open
        only after it connects: with Redis down the broker sat there listening on nothing,
        its log saying only "Scheduling retry 3 to connect <HostnameEndpoint ...>". Once
        it has started, a Redis that goes away is retried as before."""
        import ipaddress

        from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint
        from twisted.internet.protocol import Factory, Protocol

        try:
            ipaddress.IPv4Address(host)
            ep: Any = TCP4ClientEndpoint(self.reactor, host, port, timeout=STORE_TIMEOUT)
        except ValueError:
            ep = HostnameEndpoint(self.reactor, host, port, timeout=STORE_TIMEOUT)
        factory = Factory.forProtocol(Protocol)
        factory.noisy = False
        try:
            proto = await ep.connect(factory)
        except Exception as e:
            raise StoreUnreachable(
                f"cannot reach Redis at {host}:{port} ({self.store_url}): {e} Start "
                "redis-server there, or use Store memory: (one broker)"
            ) from None
        proto.transport.loseConnection()

    def _refusal_delay(self, host: str) -> float:
        return self.throttle.delay(host, steady(self.reactor))

    def status(self) -> dict[str, object]:
        out = self.registry.status()
        out["connections"] = {r.value: len(f.connections) for r, f in self.factories.items()}
        # (from the descriptor limit; None: no cap)
        out["link_max"] = {r.value: f.link_max for r, f in self.factories.items()}
        # of those, one source address's share (counters.refused_share: refusals for it)
        out["address_share"] = {r.value: f.share.cap(f.link_max) for r, f in self.factories.items()}
        # and one site's (an IPv6 /48, one interface's link-local peers; session 33)
        out["site_share"] = {
            r.value: f.share.site_cap(f.link_max) for r, f in self.factories.items()
        }
        out["listening"] = {k: host_port(p.getHost()) for k, p in self.ports.items()}
        out["since"] = self.started
        out["counters"] = {r.value: f.counters.as_dict() for r, f in self.factories.items()}
        return out

    def counters_line(self) -> str:
        return "; ".join(f"{r.value}: {f.counters.line()}" for r, f in self.factories.items())

    def status_json(self) -> bytes:
        return json.dumps(self.status(), indent=2).encode() + b"\n"

    def stopService(self) -> defer.Deferred[None] | None:
        super().stopService()
        if self._stats is not None and self._stats.running:
            self._stats.stop()
        # what a week of churn added up to (some refusal lines are budgeted)
        self.log.info("pktbroker stopping; since {since}: {counters}", since=self.started,
                      counters=self.counters_line(), **START_STOP)  # fmt: skip
        ports, self.ports = self.ports, {}
        ds = [defer.maybeDeferred(p.stopListening) for p in ports.values()]
        links = {r.value: len(f.connections) for r, f in self.factories.items()}
        # one line for all the links we close, not an `unsubscribe ... reason=Connection
        # lost` line each (10,000 lines for 10,000 subscribers, blaming the peers)
        self.log.info("pktbroker stopping: closing {sub} subscribe and {pub} publish link(s)",
                      sub=links["subscribe"], pub=links["publish"])  # fmt: skip
        for f in self.factories.values():
            f.stopping = True
            for conn in list(f.connections):
                conn.close()
        if self.store is not None:
            ds.append(self.store.stop())
        return defer.DeferredList(ds).addCallback(lambda _: None)


def _utc_now() -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
