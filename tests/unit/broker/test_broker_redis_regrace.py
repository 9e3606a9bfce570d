"""A Redis restart does not end the other brokers' publications before they are put back
(session 35: CI saw B's sweep, run the moment Redis was back and empty, end A's
publication as "gone from the shared store" a moment before A put it back; B's
subscribers lost it and B no longer tracked it).

Sans-IO over a small in-memory stand-in for the txredisapi connection (the real
redis-server runs in tests/integration/test_broker_redis.py)."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock

from packetlab.broker.redis_store import REGRACE, TTL, RedisStore
from packetlab.broker.registry import Registry

KEY = "pktlab:pub:aaaaaaaaaaaa:1"  # another broker's publication


class FakeRedis:
    """The commands the sweep and the mirror use, answered at once."""

    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, str]] = {}
        self.pubs: set[str] = set()
        self.published: list[str] = []

    def smembers(self, key: str) -> defer.Deferred[set[str]]:
        return defer.succeed(set(self.pubs))

    def exists(self, key: str) -> defer.Deferred[int]:
        return defer.succeed(int(key in self.hashes))

    def srem(self, key: str, member: str) -> defer.Deferred[int]:
        self.pubs.discard(member)
        return defer.succeed(1)

    def publish(self, channel: str, message: str) -> defer.Deferred[int]:
        self.published.append(message)
        return defer.succeed(0)

    def hgetall(self, key: str) -> defer.Deferred[dict[str, str]]:
        return defer.succeed(dict(self.hashes.get(key, {})))

    def put(self) -> None:
        self.hashes[KEY] = {
            "channels": "",
            "xdescr": "controller_addr=127.0.0.1:20605;sni_key=sweep;",
            "priority": "0",
            "pub_end": "",
            "peer": "127.0.0.1:1",
        }
        self.pubs.add(KEY)

    def wipe(self) -> None:
        """Redis restarted without persistence."""
        self.hashes.clear()
        self.pubs.clear()


def _store() -> tuple[RedisStore, FakeRedis, Clock]:
    clock = Clock()
    clock.advance(1000)
    store = RedisStore(clock, "redis://127.0.0.1:6379/3", Registry(clock=clock.seconds))
    fake = FakeRedis()
    store.redis = fake
    fake.put()
    _sweep(store)
    assert KEY in store._mirrors
    return store, fake, clock


def _sweep(store: RedisStore) -> None:
    d = store._sweep()
    failures: list[Any] = []
    d.addErrback(failures.append)
    assert not failures


def _restart(store: RedisStore, fake: FakeRedis, clock: Clock) -> None:
    store._lost("Connection was closed cleanly.")
    clock.advance(4)
    fake.wipe()
    store._connected()


def test_a_mirror_outlives_an_empty_redis_until_its_broker_puts_it_back() -> None:
    store, fake, clock = _store()
    pub = store._mirrors[KEY]
    _restart(store, fake, clock)
    _sweep(store)  # the resync sweep, before the other broker is back: keep it
    clock.advance(REGRACE - 1)
    _sweep(store)
    assert store._mirrors.get(KEY) is pub and pub.live
    fake.put()  # its broker's command connection is back: put back (same key)
    clock.advance(2)
    _sweep(store)
    assert store._mirrors.get(KEY) is pub
    # its broker dies now: the key expires, the sweep ends it with the usual reason
    del fake.hashes[KEY]
    _sweep(store)
    assert KEY not in store._mirrors and not pub.live and f"del {KEY}" in fake.published


def test_a_sweep_on_the_empty_redis_before_the_event_link_is_back_keeps_it() -> None:
    """The command connection reconnects on its own: a sweep can read the empty Redis
    before the event link's reconnect starts the grace (session 35's CI, after the first
    fix: "gone from the shared store" logged before "is back")."""
    store, fake, clock = _store()
    store._lost("Connection was closed cleanly.")
    clock.advance(4)
    fake.wipe()
    _sweep(store)  # its commands were held until the command connection was back
    assert KEY in store._mirrors
    store._connected()
    fake.put()
    clock.advance(REGRACE + 1)
    _sweep(store)
    assert KEY in store._mirrors


def test_a_mirror_never_put_back_ends_after_the_grace() -> None:
    store, fake, clock = _store()
    _restart(store, fake, clock)
    clock.advance(REGRACE - 0.5)
    _sweep(store)
    assert KEY in store._mirrors
    clock.advance(1)
    _sweep(store)
    assert KEY not in store._mirrors


def test_without_an_outage_a_vanished_mirror_ends_at_the_next_sweep() -> None:
    """The grace is for a Redis that came back, not a licence to keep stale mirrors."""
    store, fake, clock = _store()
    fake.wipe()
    clock.advance(TTL)
    _sweep(store)
    assert KEY not in store._mirrors
