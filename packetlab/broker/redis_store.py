"""Several brokers, one community: shared state in Redis (``--store redis://HOST:PORT/N``).

Each broker keeps serving its own connections from its in-memory `Registry`; Redis carries
what the others must know (docs/broker.md, "Scale-out"):

* **Publications.** A publication made here is written as a hash ``pktlab:pub:<broker>:<id>``
  (channels, xdescr, priority, pub_end) with a TTL that this broker keeps refreshing, listed
  in the set ``pktlab:pubs``, and announced on the pub/sub channel ``pktlab:<db>:events``
  (``add KEY`` / ``del KEY``). Every other broker mirrors it into its registry, so its own
  subscribers are notified within one Redis round trip. When the publisher's connection
  closes the publication is deleted and ``del`` is announced: it ends everywhere. If a
  broker dies without saying so, its hashes expire (`TTL`) and the sweep of the survivors
  ends its publications within `TTL` + `SWEEP` seconds.
* **Delivery record.** ``SADD pktlab:delivered:<sha256(xdescr)> <agent key>`` is the
  atomic "has this endpoint got these bytes?" across brokers (an endpoint behind one DNS
  name may reconnect to another broker). When the last live publication with those
  bytes ends (``pktlab:xref:<sha256>`` counts them) the set expires after the registry's
  `linger` (its endpoints may still hold the bytes, `registry`); a new publication of
  the same bytes meanwhile keeps it (``PERSIST``).

Client: txredisapi, the maintained Twisted-native Redis client (Deferreds, pub/sub,
reconnects), so no thread pool sits between the reactor and Redis.
"""

from __future__ import annotations

import hashlib
import math
import os
from typing import Any
from urllib.parse import urlparse

import txredisapi
from twisted.internet import defer, task
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.logger import Logger

from packetlab.clockstep import steady
from packetlab.wire.nvlist import parse_nvlist

from .registry import Publication, Registry

__all__ = ["RedisStore", "parse_redis_url"]

TTL = 10  # s a broker's publication outlives the broker's last refresh
CLAIM_BATCH = 2000  # agents per delivery-record script call
# SADD each agent to KEYS[1]; 1 where it was not there yet (atomic: Redis runs it alone).
_CLAIM_SCRIPT = """
local out = {}
for i, agent in ipairs(ARGV) do out[i] = redis.call('SADD', KEYS[1], agent) end
return out
"""
REFRESH = 3.0  # s between TTL refreshes
SWEEP = 2.0  # s between sweeps for publications of dead brokers
# s after Redis came back during which a mirror missing from it is kept: its broker puts
# it back once its own command connection is back (txredisapi retries at most every 10 s,
# with jitter), then at once; twice the TTL covers that with room to spare.
REGRACE = 2 * TTL
P = "pktlab:"


def parse_redis_url(url: str) -> tuple[str, int, int]:
    """``redis://HOST[:PORT][/N]`` -> (host, port, db); ValueError says what is wrong."""
    u = urlparse(url)
    if u.scheme != "redis" or not u.hostname:
        raise ValueError(f"{url!r}: expected redis://HOST[:PORT][/N]")
    path = u.path.strip("/")
    if path and not path.isdigit():
        raise ValueError(f"{url!r}: the database /N must be a number")
    return u.hostname, u.port or 6379, int(path or 0)


def _passing(f: Any, *args: Any) -> Any:
    """A callback that calls `f(*args)` and passes the result (or failure) on."""

    def call(result: Any) -> Any:
        f(*args)
        return result

    return call


def _h(xdescr: bytes) -> str:
    return hashlib.sha256(xdescr).hexdigest()


class _Events(txredisapi.SubscriberProtocol):
    store: RedisStore

    def connectionMade(self) -> None:
        super().connectionMade()
        self.subscribe(self.factory.store.events)
        self.factory.store._connected()
        self.factory.store._resync()

    def connectionLost(self, why: Any) -> None:
        super().connectionLost(why)
        self.factory.store._lost(why)

    def messageReceived(self, pattern: Any, channel: Any, message: Any) -> None:
        self.factory.store._event(str(message))


class RedisStore:
    log = Logger(namespace="pktbroker")

    def __init__(self, reactor: Any, url: str, registry: Registry) -> None:
        self.reactor = reactor
        self.host, self.port, self.db = parse_redis_url(url)
        self.url = url
        self.registry = registry
        self.broker_id = os.urandom(6).hex()
        self.events = f"{P}{self.db}:events"
        self.redis: Any = None
        self._local: dict[int, str] = {}  # our pub_id -> key
        self._shared: dict[str, tuple[dict[str, str], str]] = {}  # key -> (fields, hash)
        # delivery-record claims answered locally while Redis was down, written when back
        self._offline_claims: dict[str, set[str]] = {}
        self._putting_back: set[str] = set()  # keys whose put-back is in flight
        self._mirrors: dict[str, Publication] = {}  # other brokers' publications
        self._loops: list[task.LoopingCall] = []
        self._sub_factory: Any = None
        self._claims: dict[str, list[tuple[str, defer.Deferred[bool]]]] = {}
        self._claim_flush: Any = None
        self._down_since: float | None = None  # the pub/sub link to Redis is down since
        # Until then a mirror missing from a Redis that came back is not ended (`REGRACE`)
        self._regrace_until = 0.0
        self._stopping = False

    async def start(self) -> None:
        self.redis = await txredisapi.Connection(
            self.host, self.port, self.db, reconnect=True, convertNumbers=False
        )
        factory = txredisapi.SubscriberFactory()
        factory.protocol = _Events
        factory.store = self
        factory.startConnecting(TCP4ClientEndpoint(self.reactor, self.host, self.port))
        self._sub_factory = factory
        self.registry.store = self
        for period, f in ((REFRESH, self._refresh), (SWEEP, self._sweep)):
            loop = task.LoopingCall(f)
            loop.clock = self.reactor
            loop.start(period, now=False).addErrback(self._failed, f.__name__)
            self._loops.append(loop)
        self.log.info("shared state in {url} (broker id {id})", url=self.url, id=self.broker_id)

    def stop(self) -> defer.Deferred[None]:
        self._stopping = True
        for loop in self._loops:
            if loop.running:
                loop.stop()
        ds = [self._delete(key, pub=None) for key in list(self._local.values())]
        if self._sub_factory is not None:
            ds.append(self._sub_factory.disconnect())
        d = defer.DeferredList(ds)
        if self.redis is not None:
            d.addCallback(lambda _: self.redis.disconnect())
        return d.addCallback(lambda _: None)

    def _connected(self) -> None:
        if self._down_since is not None:
            self.log.info(
                "shared state: Redis at {host}:{port} is back after {t:.0f} s; "
                "publications are shared again",
                host=self.host,
                port=self.port,
                t=steady(self.reactor) - self._down_since,
            )
            self._regrace_until = steady(self.reactor) + REGRACE
        self._down_since = None
        self._write_offline_claims()
        # A restarted Redis holds none of our publications: put them back now (the
        # refresh does it for each one that is gone), not a refresh period later.
        self._refresh().addErrback(self._failed, "refreshing after the reconnect")

    def _lost(self, why: Any) -> None:
        """The pub/sub link to Redis went (Redis stopped, the network): said once, in words
        (its client only logged "Scheduling retry N to connect <TCP4ClientEndpoint object
        at 0x...>")."""
        if self._down_since is not None or self._stopping:
            return
        self._down_since = steady(self.reactor)
        reason = why.getErrorMessage() if hasattr(why, "getErrorMessage") else why
        self.log.warn(
            "shared state: lost Redis at {host}:{port} ({why}): until it is back, "
            "publications made here reach only this broker's subscribers and other brokers' "
            "do not reach them; reconnecting",
            host=self.host,
            port=self.port,
            why=reason,
        )

    def _failed(self, failure: Any, what: str) -> None:
        self.log.failure("redis store: {what} failed", failure, what=what)

    # ------------------------------------------------------------ local -> shared

    def published(self, pub: Publication) -> None:
        key = f"{P}pub:{self.broker_id}:{pub.pub_id}"
        self._local[pub.pub_id] = key
        fields = {
            "channels": ",".join(c.hex() for c in pub.channels),
            "xdescr": pub.xdescr.decode("ascii"),
            "priority": str(pub.priority),
            "pub_end": "" if pub.pub_end_ns is None else str(pub.pub_end_ns),
            "peer": pub.peer,
        }
        self._shared[key] = (fields, _h(pub.xdescr))
        d = defer.ensureDeferred(self._add(key, fields, _h(pub.xdescr)))
        d.addErrback(self._failed, "publishing to redis")

    async def _add(self, key: str, fields: dict[str, str], h: str) -> None:
        r = self.redis
        # One connection executes in order: send all six, then wait once (the others
        # see the "add" only after the hash exists).
        await defer.gatherResults(
            [
                r.hmset(key, fields),
                r.expire(key, TTL),
                r.sadd(f"{P}pubs", key),
                r.incr(f"{P}xref:{h}"),
                r.persist(f"{P}delivered:{h}"),  # live again: no longer expiring
                r.publish(self.events, f"add {key}"),
            ],
            consumeErrors=True,
        )

    def withdrawn(self, pub: Publication) -> None:
        key = self._local.pop(pub.pub_id, None)
        if key is not None:
            self._shared.pop(key, None)
            self._delete(key, pub).addErrback(self._failed, "withdrawing from redis")

    def _delete(self, key: str, pub: Publication | None) -> defer.Deferred[None]:
        return defer.ensureDeferred(self._del(key, None if pub is None else _h(pub.xdescr)))

    async def _del(self, key: str, h: str | None) -> None:
        r = self.redis
        if h is None:
            xdescr = await r.hget(key, "xdescr")
            h = _h(xdescr.encode("ascii")) if xdescr else None
        await r.delete(key)
        await r.srem(f"{P}pubs", key)
        if h is not None:
            left = int(await r.decr(f"{P}xref:{h}"))
            if left <= 0:
                await r.delete(f"{P}xref:{h}")
                linger = math.ceil(self.registry.linger)
                if linger > 0:  # who got them may still hold them (registry.py)
                    await r.expire(f"{P}delivered:{h}", linger)
                else:
                    await r.delete(f"{P}delivered:{h}")
        await r.publish(self.events, f"del {key}")

    def _refresh(self) -> defer.Deferred[Any]:
        """Keep our publications alive in Redis; put back any that is gone (Redis
        restarted empty, or we were cut off past the TTL): only refreshed, they stayed
        out, and the other brokers ended them for good."""

        def check(done: Any, key: str) -> Any:
            entry = self._shared.get(key)
            # Once: the refresh after a reconnect and a periodic one, both queued while
            # Redis was away, both find it gone (a second add would count it twice).
            if int(done) == 0 and entry is not None and key not in self._putting_back:
                self.log.info(
                    "shared state: publication {key} was gone from Redis; put back", key=key
                )
                self._putting_back.add(key)
                d = defer.ensureDeferred(self._add(key, *entry))
                return d.addBoth(_passing(self._putting_back.discard, key))
            return None

        return defer.DeferredList(
            [self.redis.expire(k, TTL).addCallback(check, k) for k in self._local.values()]
        )

    # ------------------------------------------------------------ shared -> local

    def _event(self, message: str) -> None:
        verb, _, key = message.partition(" ")
        if key.startswith(f"{P}pub:{self.broker_id}:"):
            return
        if verb == "add":
            defer.ensureDeferred(self._mirror(key)).addErrback(self._failed, "mirroring")
        elif verb == "del":
            self._unmirror(key, "publisher gone at another broker")

    async def _mirror(self, key: str) -> None:
        if key in self._mirrors:
            return
        fields = await self.redis.hgetall(key)
        if not fields or key in self._mirrors:
            return
        xdescr = fields["xdescr"].encode("ascii")
        channels = tuple(bytes.fromhex(c) for c in fields["channels"].split(",") if c)
        pairs = tuple(parse_nvlist(xdescr, allow_duplicates=True, allow_glob=True))
        end = fields.get("pub_end") or ""
        pub, offered = self.registry.publish(
            channels,
            xdescr,
            pairs,
            priority=int(fields.get("priority") or 0),
            pub_end_ns=int(end) if end else None,
            peer=fields.get("peer", "?"),
            origin=key,
        )
        self._mirrors[key] = pub
        self.log.info(
            "publish id={id} from another broker key={key} xdescr={xdescr!r} offered={n}",
            id=pub.pub_id,
            key=key,
            xdescr=fields["xdescr"],
            n=offered,
        )

    def _unmirror(self, key: str, why: str) -> None:
        pub = self._mirrors.pop(key, None)
        if pub is not None:
            self.registry.withdraw(pub)
            self.log.info(
                "publication end id={id} key={key} delivered={n} reason={why}",
                id=pub.pub_id,
                key=key,
                n=pub.delivered,
                why=why,
            )

    def _resync(self) -> None:
        """(Re)connected to the event channel: catch up with what we may have missed."""
        defer.ensureDeferred(self._sweep_now()).addErrback(self._failed, "resync")

    def _sweep(self) -> defer.Deferred[None]:
        return defer.ensureDeferred(self._sweep_now())

    async def _sweep_now(self) -> None:
        keys = set(await self.redis.smembers(f"{P}pubs"))
        for key in keys:
            if key.startswith(f"{P}pub:{self.broker_id}:"):
                continue
            if not await self.redis.exists(key):  # its broker died: expired
                await self.redis.srem(f"{P}pubs", key)
                await self.redis.publish(self.events, f"del {key}")
                self._unmirror(key, "its broker stopped refreshing it")
            elif key not in self._mirrors:
                await self._mirror(key)
        # Redis away or just back (maybe empty; our command connection can be back before
        # the event link says so): a missing mirror's broker has until then to put it back
        if self._down_since is not None or steady(self.reactor) < self._regrace_until:
            return
        for key in list(self._mirrors):
            if key not in keys:
                self._unmirror(key, "gone from the shared store")

    # ------------------------------------------------------------ delivery record

    def claim(self, pub: Publication, agent_key: bytes) -> defer.Deferred[bool]:
        """True if no broker has sent these xdescr bytes to this endpoint yet (recorded).

        Claims made in one reactor turn go to Redis together, one script call per xdescr
        (SADD for each agent, the ones newly added come back): a fan-out to 10,000
        endpoints costs one round trip, not 10,000."""
        key = f"{P}delivered:{_h(pub.xdescr)}"
        if self._down_since is not None:
            # Redis is gone: the commands would wait for it, and the endpoints with them.
            # This broker's own record (Registry.claim) already keeps it from sending
            # these bytes twice; the claim is written when Redis is back.
            self._offline_claims.setdefault(key, set()).add(agent_key.hex())
            return defer.succeed(True)
        d: defer.Deferred[bool] = defer.Deferred()
        self._claims.setdefault(key, []).append((agent_key.hex(), d))
        if self._claim_flush is None:
            self._claim_flush = self.reactor.callLater(0, self._flush_claims)
        return d

    def _write_offline_claims(self) -> None:
        claims, self._offline_claims = self._offline_claims, {}
        for key, agents in claims.items():
            d = self.redis.eval(_CLAIM_SCRIPT, keys=[key], args=sorted(agents))
            d.addErrback(self._failed, "writing the delivery record kept while Redis was down")

    def _flush_claims(self) -> None:
        self._claim_flush = None
        claims, self._claims = self._claims, {}
        for key, items in claims.items():
            for i in range(0, len(items), CLAIM_BATCH):
                batch = items[i : i + CLAIM_BATCH]
                d = self.redis.eval(_CLAIM_SCRIPT, keys=[key], args=[a for a, _ in batch])
                d.addCallbacks(self._claimed, self._claim_failed, (batch,), None, (batch,))

    @staticmethod
    def _claimed(flags: list[Any], batch: list[tuple[str, defer.Deferred[bool]]]) -> None:
        for (_, d), flag in zip(batch, flags, strict=True):
            d.callback(int(flag) == 1)

    def _claim_failed(self, failure: Any, batch: list[tuple[str, defer.Deferred[bool]]]) -> None:
        self.log.failure("redis store: delivery record", failure)
        for _, d in batch:  # unknown: do not risk a duplicate (it crashes the reference)
            d.callback(False)
