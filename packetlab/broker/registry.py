"""The broker's state: live publications, subscribers, matching and the delivery record
(PROTOCOL.md §5.5; BROKER-PROXY-OBSERVED.md §2.3, §5). Sans-IO: no Twisted, no sockets.

* Subscribers are indexed by channel, publications by channel; a new publication is
  matched against the subscribers of its channels, a new subscriber against the live
  publications of its channels (late subscribers get what is live).
* Matching is `dattr_match` (glob, AND over the dattr pairs); the xdescr is parsed once
  per publication.
* The delivery record keeps, per xdescr *bytes*, the agent keys that already got them,
  for as long as some live publication carries those bytes. A reference endpoint crashes
  when it receives bytes it still holds, and it keeps its pool across reconnects, so an
  endpoint (known by its agent key) never gets the same bytes twice while they live. The
  record goes when the last publication with those bytes ends.
* Delivery itself belongs to the subscriber's link: the registry calls `sub.offer(pub,
  channel)`; the link writes when its transport takes more and calls `claim()` just before
  writing, so a notification that never left is not recorded as delivered.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from packetlab.wire.codec import encode
from packetlab.wire.messages import Xnotify
from packetlab.wire.nvlist import NVPair, dattr_match

__all__ = [
    "FRAME_CACHE",
    "MAX_LIVE_PUBLICATIONS",
    "Publication",
    "Registry",
    "Subscriber",
    "SubscriberLink",
    "channel_label",
]

# Live publications at once, all links together: each may hold a 4 KB xdescr (and its
# parsed pairs and frames), and links are free (self-signed agent certificates).
MAX_LIVE_PUBLICATIONS = 10_000
FRAME_CACHE = 4  # xnotify frames kept per publication (one per channel used)


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


class Registry:
    def __init__(self, max_publications: int = MAX_LIVE_PUBLICATIONS) -> None:
        self.max_publications = max_publications  # live, broker-wide (xpub refused past it)
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
    ) -> tuple[Publication, int]:
        """Add a publication and offer it to every matching subscriber; returns it and
        the number of subscribers it was offered to."""
        pub = Publication(
            next(self._ids), channels, xdescr, pairs, priority, pub_end_ns, publisher, peer
        )
        pub.origin = origin
        self.publications[pub.pub_id] = pub
        if self.store is not None and origin is None:
            self.store.published(pub)
        self._xdescr_refs[xdescr] = self._xdescr_refs.get(xdescr, 0) + 1
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
        else:
            del self._xdescr_refs[pub.xdescr]
            self._delivered.pop(pub.xdescr, None)

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
        return agent_key in self._delivered.get(xdescr, ())

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


def channel_label(channel: bytes) -> str:
    """Private channels as hex keyids, public ones as text where printable."""
    if len(channel) != 32 and all(0x20 < b < 0x7F for b in channel):
        return channel.decode("ascii")
    return channel.hex()
