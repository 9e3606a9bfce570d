"""The broker's state: live publications, subscribers, matching and the delivery record
(PROTOCOL.md §5.5; BROKER-PROXY-OBSERVED.md §2.3, §5). Sans-IO: no Twisted, no sockets.

* Subscribers are indexed by channel, publications by channel; a new publication is
  matched against the subscribers of its channels, a new subscriber against the live
  publications of its channels (late subscribers get what is live).
* Matching is `dattr_match` (glob, AND over the dattr pairs); the xdescr is parsed once
  per publication.
* The delivery record keeps, per xdescr *bytes*, the agent keys that already got them,
  for as long as some live publication carries those bytes, and `linger` seconds more
  (an hour). A reference endpoint crashes when it receives bytes it still holds, and it
  keeps its pool across reconnects, so an endpoint (known by its agent key) never gets
  the same bytes twice while they live. It still holds them after the publication ends:
  pktxpmgr ends it at `-n`, when the endpoints have just started, and a pending xdescr
  stays in an endpoint's pool whatever happens to its publication (OBSERVED §2.3, §3.4).
  So the same bytes published again soon after (a publisher that reconnects and
  republishes) go only to endpoints that did not get them. The records of ended
  xdescrs are kept by digest, in at most `max_lingering` bytes (16 MiB, estimated;
  oldest dropped first, logged).
* Delivery itself belongs to the subscriber's link: the registry calls `sub.offer(pub,
  channel)`; the link writes when its transport takes more and calls `claim()` just before
  writing, so a notification that never left is not recorded as delivered.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from twisted.logger import Logger

from packetlab.addrshare import SITE_MULTIPLE, site_of, source_of
from packetlab.wire.codec import encode
from packetlab.wire.messages import Xnotify
from packetlab.wire.nvlist import NVPair, dattr_match

__all__ = [
    "DELIVERY_LINGER",
    "FRAME_CACHE",
    "MAX_LINGERING",
    "MAX_LIVE_PUBLICATIONS",
    "MAX_PER_ADDRESS",
    "MAX_PER_KEY",
    "RESERVE_FRACTION",
    "SMALL_SOURCE",
    "Publication",
    "Registry",
    "Subscriber",
    "SubscriberLink",
    "channel_label",
    "source_of",
]

# Live publications at once, all links together: each may hold a 4 KB xdescr (and its
# parsed pairs and frames), and links are free (self-signed agent certificates).
MAX_LIVE_PUBLICATIONS = 10_000
# Shares of that table: public channels need no proof and agent keys are free, so one
# publisher could fill it (157 links of 64) and every real one got EPUBBADXD. One key may
# hold a tenth, one source address half (publishers behind one NAT share an address).
MAX_PER_KEY = 1_000
MAX_PER_ADDRESS = 5_000
# Those two shares still let two addresses (5,000 each, keys being free) fill the table
# and deny every other publisher. So the last tenth of the table is kept for sources
# holding fewer than SMALL_SOURCE publications: filling it takes RESERVE / SMALL_SOURCE
# more sources (63 at the defaults), and a publisher with a few experiments still gets
# in past a flood from a handful of addresses. An IPv6 source is its /64 (one host
# holds a whole /64 of addresses), an IPv4 one its address, a link-local one itself and
# its zone. A site (an IPv6 /48, one link's link-local peers: addrshare.py) holds at most
# SITE_MULTIPLE addresses' shares, and "small" for the reserve is the site's count: else
# one /48 (65,536 /64s) filled the reserve too, 15 a /64.
RESERVE_FRACTION = 10
SMALL_SOURCE = 16
FRAME_CACHE = 4  # xnotify frames kept per publication (one per channel used)
# Seconds the delivery record of an xdescr outlives its last publication: its endpoints
# may still hold it (running, or pending in their pool) and crash on a second copy.
DELIVERY_LINGER = 3600.0
# Bytes the records of ended xdescrs may take, all together, by the estimate below
# (measured with tracemalloc: ~235 bytes for a record with one endpoint, ~33 more per
# endpoint in a larger one): 64,000 one-endpoint records, or 500,000 pairs in big ones.
MAX_LINGERING = 16 * 1024 * 1024
_RECORD_COST = 256
_PAIR_COST = 32


K = TypeVar("K")


class SharedStore(Protocol):
    """Where several brokers share publications and delivery records (`redis_store`)."""

    def published(self, pub: Publication) -> None: ...

    def withdrawn(self, pub: Publication) -> None: ...

    def claim(self, pub: Publication, agent_key: bytes) -> Any:
        """A Deferred firing True if no broker sent `pub`'s bytes to `agent_key` yet."""


class SubscriberLink(Protocol):
    """What the registry needs of a subscriber's connection."""

    def offer(self, pub: Publication, channel: bytes) -> None:
        """Queue `pub` for this subscriber, to be sent on `channel`."""


@dataclass(eq=False, slots=True)
class Subscriber:
    agent_key: bytes
    channels: tuple[bytes, ...]
    dattr: tuple[NVPair, ...]
    link: SubscriberLink
    peer: str = "?"
    valid_until: int | None = None  # its chain's earliest not_after (s); None: no chain


@dataclass(eq=False)
class Publication:
    pub_id: int
    channels: tuple[bytes, ...]
    xdescr: bytes
    pairs: tuple[NVPair, ...]
    priority: int = 0
    pub_end_ns: int | None = None
    publisher: bytes = b""  # agent key of the publisher
    peer: str = "?"
    address: str = ""  # the publisher's source address (its share of the table)
    live: bool = True
    delivered: int = 0
    origin: str | None = None  # shared-store key of a publication made at another broker
    valid_until: int | None = None  # its experiment chain's earliest not_after (s)
    _frames: dict[bytes, bytes] = field(default_factory=dict)

    def frame(self, channel: bytes) -> bytes:
        """The xnotify frame for `channel`, encoded once and shared by every subscriber for
        the first `FRAME_CACHE` channels used; past those, encoded per send (a publication
        on 64 channels would otherwise keep 64 copies of its xdescr)."""
        f = self._frames.get(channel)
        if f is None:
            f = encode(Xnotify(channel, self.xdescr))
            if len(self._frames) < FRAME_CACHE:
                self._frames[channel] = f
        return f


def _digest(xdescr: bytes) -> bytes:
    return hashlib.sha256(xdescr).digest()[:16]  # 128 bits: no collision among 100,000


# The agent keys of an ended xdescr: the key itself when there is one (most records: a
# set costs ~200 bytes more), else the set.
_Agents = bytes | set[bytes]


def _agents(got: set[bytes]) -> _Agents:
    return next(iter(got)) if len(got) == 1 else got


def _cost(agents: _Agents) -> int:
    return _RECORD_COST + _PAIR_COST * (1 if isinstance(agents, bytes) else len(agents))


def _has(agents: _Agents, key: bytes) -> bool:
    return agents == key if isinstance(agents, bytes) else key in agents


class Registry:
    log = Logger(namespace="pktbroker")

    def __init__(
        self,
        max_publications: int = MAX_LIVE_PUBLICATIONS,
        *,
        linger: float = DELIVERY_LINGER,
        max_lingering: int = MAX_LINGERING,
        clock: Callable[[], float] = time.monotonic,
        max_per_key: int = MAX_PER_KEY,
        max_per_address: int = MAX_PER_ADDRESS,
    ) -> None:
        self.max_publications = max_publications  # live, broker-wide (xpub refused past it)
        self.max_per_key = max_per_key  # live publications of one agent key
        self.max_per_address = max_per_address  # live publications from one address
        self.small_source = SMALL_SOURCE  # "small": holding fewer than this many
        self._per_key: dict[bytes, int] = {}  # this broker's own publications only
        self._per_address: dict[str, int] = {}
        self._per_site: dict[str, int] = {}  # (`site_of`: an IPv4 address is its own)
        self.linger = linger
        self.max_lingering = max_lingering
        self.clock = clock
        # sha256(xdescr) -> (when its last publication ended, agent keys), oldest first
        self._ended: OrderedDict[bytes, tuple[float, _Agents]] = OrderedDict()
        self._lingering = 0  # estimated bytes of _ended
        self._trimming = False  # dropping records for room (logged once per episode)
        self.publications: dict[int, Publication] = {}
        self._pubs_by_channel: dict[bytes, dict[int, Publication]] = {}
        self._subs_by_channel: dict[bytes, set[Subscriber]] = {}
        self.subscribers: set[Subscriber] = set()
        self._delivered: dict[bytes, set[bytes]] = {}  # xdescr bytes -> agent keys
        self._xdescr_refs: dict[bytes, int] = {}  # xdescr bytes -> live publications
        self._ids = itertools.count(1)
        self.notified = 0
        self.store: SharedStore | None = None

    # ---------------------------------------------------------------- subscribers

    def subscribe(self, sub: Subscriber) -> int:
        """Add `sub` and offer it every live matching publication; returns how many."""
        self.subscribers.add(sub)
        for ch in sub.channels:
            self._subs_by_channel.setdefault(ch, set()).add(sub)
        offered = 0
        seen: set[int] = set()
        for ch in sub.channels:
            for pub in self._pubs_by_channel.get(ch, {}).values():
                if pub.pub_id in seen or not self._wants(sub, pub):
                    continue
                seen.add(pub.pub_id)
                sub.link.offer(pub, ch)
                offered += 1
        return offered

    def unsubscribe(self, sub: Subscriber) -> None:
        if sub not in self.subscribers:
            return
        self.subscribers.discard(sub)
        for ch in sub.channels:
            subs = self._subs_by_channel.get(ch)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs_by_channel[ch]

    def _wants(self, sub: Subscriber, pub: Publication) -> bool:
        got = self._delivered.get(pub.xdescr)
        if got is not None and sub.agent_key in got:
            return False
        return dattr_match(pub.pairs, sub.dattr)

    # ---------------------------------------------------------------- publications

    @property
    def reserve(self) -> int:
        """Places at the end of the table kept for sources holding fewer than
        `small_source` publications."""
        return self.max_publications // RESERVE_FRACTION

    def refusal(self, publisher: bytes, address: str) -> str | None:
        """Why a new publication of `publisher` from `address` may not be taken (the table
        is full, or the key or the address holds its share), or None."""
        if len(self.publications) >= self.max_publications:
            return f"the broker holds {self.max_publications} live publications, its limit"
        held = self._per_key.get(publisher, 0)
        if held >= self.max_per_key:
            return (
                f"agent key {publisher.hex()[:16]} holds {held} live publications, "
                f"its share (MaxPublicationsPerKey {self.max_per_key})"
            )
        source = source_of(address)
        held = self._per_address.get(source, 0)
        if held >= self.max_per_address:
            return (
                f"address {source} holds {held} live publications, "
                f"its share (MaxPublicationsPerAddress {self.max_per_address})"
            )
        site = site_of(address)
        held = self._per_site.get(site, 0)
        most = min(self.max_publications, SITE_MULTIPLE * self.max_per_address)
        if site != source and held >= most:
            return (
                f"address {site} holds {held} live publications, its share (a site's: "
                f"{SITE_MULTIPLE} addresses' of MaxPublicationsPerAddress {self.max_per_address})"
            )
        if held >= self.small_source and len(self.publications) >= (
            self.max_publications - self.reserve
        ):
            return (
                f"address {site} holds {held} live publications and the broker "
                f"{len(self.publications)}: its last {self.reserve} places are kept for "
                f"addresses holding fewer than {self.small_source}"
            )
        return None

    def _count(self, pub: Publication, step: int) -> None:
        if pub.origin is not None:  # another broker's: counted there
            return
        _bump(self._per_key, pub.publisher, step)
        _bump(self._per_address, source_of(pub.address), step)
        _bump(self._per_site, site_of(pub.address), step)

    def publish(
        self,
        channels: tuple[bytes, ...],
        xdescr: bytes,
        pairs: tuple[NVPair, ...],
        *,
        priority: int = 0,
        pub_end_ns: int | None = None,
        publisher: bytes = b"",
        peer: str = "?",
        origin: str | None = None,
        address: str = "",
    ) -> tuple[Publication, int]:
        """Add a publication and offer it to every matching subscriber; returns it and
        the number of subscribers it was offered to."""
        pub = Publication(
            next(self._ids), channels, xdescr, pairs, priority, pub_end_ns, publisher, peer
        )
        pub.origin = origin
        pub.address = address
        self.publications[pub.pub_id] = pub
        self._count(pub, 1)
        if self.store is not None and origin is None:
            self.store.published(pub)
        refs = self._xdescr_refs.get(xdescr, 0)
        if not refs and self._ended:  # published again: who still holds it?
            self._trim()
            rec = self._ended.pop(_digest(xdescr), None)
            if rec is not None:
                self._lingering -= _cost(rec[1])
                self._delivered[xdescr] = {rec[1]} if isinstance(rec[1], bytes) else rec[1]
        self._xdescr_refs[xdescr] = refs + 1
        for ch in channels:
            self._pubs_by_channel.setdefault(ch, {})[pub.pub_id] = pub
        offered = 0
        seen: set[Subscriber] = set()
        for ch in channels:
            for sub in self._subs_by_channel.get(ch, ()):
                if sub in seen or not self._wants(sub, pub):
                    continue
                seen.add(sub)
                sub.link.offer(pub, ch)
                offered += 1
        return pub, offered

    def withdraw(self, pub: Publication) -> None:
        """End `pub` (publisher gone, or pub_end reached); queued offers are dropped."""
        if not pub.live:
            return
        pub.live = False
        del self.publications[pub.pub_id]
        self._count(pub, -1)
        if self.store is not None and pub.origin is None:
            self.store.withdrawn(pub)
        for ch in pub.channels:
            pubs = self._pubs_by_channel.get(ch)
            if pubs is not None:
                pubs.pop(pub.pub_id, None)
                if not pubs:
                    del self._pubs_by_channel[ch]
        n = self._xdescr_refs[pub.xdescr] - 1
        if n:
            self._xdescr_refs[pub.xdescr] = n
            return
        del self._xdescr_refs[pub.xdescr]
        got = self._delivered.pop(pub.xdescr, None)
        if got and self.linger > 0 and self.max_lingering > 0:
            agents = _agents(got)
            self._ended[_digest(pub.xdescr)] = (self.clock(), agents)
            self._lingering += _cost(agents)
        self._trim()

    def _trim(self) -> None:
        """Drop the records of ended xdescrs past `linger`, and the oldest ones while
        they take more than `max_lingering` bytes."""
        ended = self._ended
        too_old = self.clock() - self.linger
        dropped = 0
        while ended:
            digest, (when, got) = next(iter(ended.items()))
            if when > too_old and self._lingering <= self.max_lingering:
                break
            del ended[digest]
            self._lingering -= _cost(got)
            if when > too_old:
                dropped += 1
        if dropped and not self._trimming:  # once until it is back under half the cap
            self._trimming = True
            self.log.warn(
                "delivery record: the records of ended publications take more than {n} "
                "KiB; dropping the oldest before their {t:.0f} s (their bytes, published "
                "again, may reach an endpoint that still holds them)",
                n=self.max_lingering // 1024,
                t=self.linger,
            )
        elif self._trimming and self._lingering <= self.max_lingering // 2:
            self._trimming = False

    def expired(self, now_ns: int) -> list[Publication]:
        """Live publications whose pub_end has passed."""
        return [
            p
            for p in self.publications.values()
            if p.pub_end_ns is not None and p.pub_end_ns <= now_ns
        ]

    # ---------------------------------------------------------------- delivery

    def claim(self, pub: Publication, agent_key: bytes) -> bool:
        """True if `pub` may be sent to `agent_key` now (and record that it was): the
        publication is live and that endpoint does not hold its xdescr bytes yet."""
        if not pub.live:
            return False
        got = self._delivered.setdefault(pub.xdescr, set())
        if agent_key in got:
            return False
        got.add(agent_key)
        pub.delivered += 1
        self.notified += 1
        return True

    def holds(self, xdescr: bytes, agent_key: bytes) -> bool:
        """True if `agent_key` got these bytes and they live, or ended within `linger`."""
        if agent_key in self._delivered.get(xdescr, ()):
            return True
        rec = self._ended.get(_digest(xdescr)) if self._ended else None
        return rec is not None and rec[0] > self.clock() - self.linger and _has(rec[1], agent_key)

    # ---------------------------------------------------------------- status

    def channels(self) -> Iterator[bytes]:
        return iter(set(self._subs_by_channel) | set(self._pubs_by_channel))

    def status(self) -> dict[str, object]:
        """A JSON-able summary: channels with their subscriber and publication counts,
        and every live publication."""
        chans = []
        for ch in sorted(self.channels()):
            chans.append(
                {
                    "channel": channel_label(ch),
                    "private": len(ch) == 32,
                    "subscribers": len(self._subs_by_channel.get(ch, ())),
                    "publications": len(self._pubs_by_channel.get(ch, ())),
                }
            )
        pubs = [
            {
                "id": p.pub_id,
                "channels": [channel_label(c) for c in p.channels],
                "xdescr": p.xdescr.decode("ascii", "replace"),
                "priority": p.priority,
                "pub_end_ns": p.pub_end_ns,
                "publisher": p.peer if p.origin is None else f"another broker ({p.origin})",
                "delivered": p.delivered,
            }
            for p in self.publications.values()
        ]
        return {
            "subscribers": len(self.subscribers),
            "endpoints": len({s.agent_key for s in self.subscribers}),
            "publications": pubs,
            "channels": chans,
            "notified": self.notified,
        }


def _bump(counts: dict[K, int], key: K, step: int) -> None:
    n = counts.get(key, 0) + step
    if n > 0:
        counts[key] = n
    else:
        counts.pop(key, None)


def channel_label(channel: bytes) -> str:
    """Private channels as hex keyids, public ones as text where printable."""
    if len(channel) != 32 and all(0x20 < b < 0x7F for b in channel):
        return channel.decode("ascii")
    return channel.hex()
