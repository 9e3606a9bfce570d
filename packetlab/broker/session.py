"""One client connection to the broker, sans-IO (PROTOCOL.md §5.3 to §5.5).

A client sends xcerts, then one xsub (subscribe port) or xpubs (publish port); each of
those gets exactly one `result`, in order (BROKER-PROXY-OBSERVED.md §5). `handle(item)`
takes one framed item and returns the `Answer` to send; the Protocol owns the timing
(errors are answered late: see `Throttle`).

The xcerts of a connection are the chain for the next xsub/xpub and are used up by it
(pktxpmgr sends a fresh chain before each xpub). A second xsub replaces the subscription
(the Protocol takes it only after the throttle's delay: it offers every live publication
again).
Frames that a broker never receives (xnotify, result, session messages) or a message for
the other port are protocol errors: answered with ECTLNOTSUP, then the link is closed.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from packetlab.ppks import PPKSError, parse_certificate
from packetlab.ppks.verify import MAX_CHAIN_CERTS
from packetlab.wire.constants import Status
from packetlab.wire.framer import Item, Malformed, Unknown
from packetlab.wire.messages import Xcert, Xpub, Xsub

from .auth import PubGrant, Refusal, check_publication, check_subscription
from .registry import Publication, Registry, Subscriber, SubscriberLink

__all__ = ["MAX_PUBLICATIONS", "MAX_XCERT_BYTES", "Answer", "BrokerSession", "Role"]

MAX_PUBLICATIONS = 64  # live publications per publisher connection
# Bytes of the xcerts waiting for one xsub/xpub: a chain is a few ~400-byte certificates
# (an exppriv listing 100 monitor digests is ~7 KB); 32 frames of 64 KiB were 2 MiB per link.
MAX_XCERT_BYTES = 64 * 1024


class Role(enum.Enum):
    PUBLISH = "publish"
    SUBSCRIBE = "subscribe"


@dataclass(frozen=True)
class Answer:
    """The result to send for one item. `reason` says why for a refusal (logged);
    `close` ends the link after the answer (the stream cannot be trusted any more)."""

    status: Status
    what: str  # "xcert", "xsub", "xpub", or the frame's kind
    reason: str = ""
    close: bool = False
    budgeted: bool = False  # logged within the link factory's LogBudget
    # a refusal for this source address's share of the links: logged once per address
    # per interval (AddressShare.log_line) instead
    source: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is Status.SUCCESS


_OK_XCERT = Answer(Status.SUCCESS, "xcert")


class BrokerSession:
    # One per connection (10,000s on a busy broker): no per-instance dict.
    __slots__ = (
        "_pending_pub",
        "address",
        "agent_key",
        "clock",
        "closed",
        "link",
        "peer",
        "publications",
        "registry",
        "role",
        "subscriber",
        "xcerts",
    )  # fmt: skip

    def __init__(
        self,
        role: Role,
        agent_key: bytes,
        registry: Registry,
        *,
        link: SubscriberLink | None = None,
        peer: str = "?",
        address: str = "",
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.role = role
        self.address = address
        self.agent_key = agent_key
        self.registry = registry
        self.link = link
        self.peer = peer
        self.clock = clock
        self.xcerts: list[bytes] = []
        self.subscriber: Subscriber | None = None
        self.publications: list[Publication] = []
        self._pending_pub: tuple[PubGrant, bytes] | None = None
        self.closed = False

    @property
    def _chain_error(self) -> Status:
        return Status.ESUBBADCHN if self.role is Role.SUBSCRIBE else Status.EPUBBADCHN

    def _now(self) -> float | None:
        return None if self.clock is None else self.clock()

    def handle(self, item: Item) -> Answer:
        if isinstance(item, Xcert):
            return self._xcert(item)
        if isinstance(item, Xsub) and self.role is Role.SUBSCRIBE:
            return self._xsub(item)
        if isinstance(item, Xpub) and self.role is Role.PUBLISH:
            return self._xpub(item)
        if isinstance(item, Malformed):
            kind = {0x30: "xcert", 0x38: "xsub", 0x31: "xpub"}.get(item.msgtype)
            if kind == "xcert":
                return Answer(self._chain_error, kind, f"malformed xcert: {item.error}")
            if kind == "xsub" and self.role is Role.SUBSCRIBE:
                return Answer(Status.ESUBBADCHL, kind, f"malformed xsub: {item.error}")
            if kind == "xpub" and self.role is Role.PUBLISH:
                return Answer(Status.EPUBBADCHL, kind, f"malformed xpub: {item.error}")
            return Answer(
                Status.ECTLNOTSUP,
                f"type 0x{item.msgtype:02x}",
                f"malformed frame of type 0x{item.msgtype:02x}: {item.error}",
                close=True,
            )
        if isinstance(item, Unknown):
            kind = f"type 0x{item.msgtype:02x}"
            return Answer(Status.ECTLNOTSUP, kind, f"unknown message {kind}", close=True)
        kind = type(item).__name__.lower()
        return Answer(
            Status.ECTLNOTSUP,
            kind,
            f"{kind} is not accepted on the {self.role.value} port",
            close=True,
        )

    def _xcert(self, msg: Xcert) -> Answer:
        if len(self.xcerts) >= MAX_CHAIN_CERTS:
            return Answer(
                self._chain_error, "xcert", f"more than {MAX_CHAIN_CERTS} xcerts", close=True
            )
        if sum(map(len, self.xcerts)) + len(msg.cert) > MAX_XCERT_BYTES:
            return Answer(
                self._chain_error,
                "xcert",
                f"xcerts of more than {MAX_XCERT_BYTES} bytes for one chain",
                close=True,
            )
        try:
            parse_certificate(msg.cert)
        except PPKSError as e:
            return Answer(self._chain_error, "xcert", f"xcert is no PPKS certificate: {e}")
        self.xcerts.append(msg.cert)
        return _OK_XCERT

    def _refused(self, what: str, r: Refusal) -> Answer:
        return Answer(r.status, what, r.reason)

    def _xsub(self, msg: Xsub) -> Answer:
        certs, self.xcerts = self.xcerts, []
        grant = check_subscription(
            certs, self.agent_key, msg.chlist, msg.eopkey, msg.dattr, self._now()
        )
        if isinstance(grant, Refusal):
            return self._refused("xsub", grant)
        assert self.link is not None, "a subscriber session needs a link to deliver on"
        if self.subscriber is not None:
            self.registry.unsubscribe(self.subscriber)
        self.subscriber = Subscriber(
            self.agent_key, grant.channels, grant.dattr, self.link, self.peer, grant.valid_until
        )
        return Answer(Status.SUCCESS, "xsub")

    def activate(self) -> int:
        """Register the subscription once its result went out (so xnotify follow it);
        returns how many live publications were offered."""
        if self.subscriber is None or self.closed:
            return 0
        if self.subscriber in self.registry.subscribers:
            return 0
        return self.registry.subscribe(self.subscriber)

    def _xpub(self, msg: Xpub) -> Answer:
        certs, self.xcerts = self.xcerts, []
        if len(self.publications) >= MAX_PUBLICATIONS:
            return Answer(
                Status.EPUBBADXD, "xpub", f"more than {MAX_PUBLICATIONS} publications on one link"
            )
        full = self.registry.refusal(self.agent_key, self.address)
        if full is not None:  # a peer can cause these at will: their lines are budgeted
            return Answer(Status.EPUBBADXD, "xpub", full, budgeted=True)
        grant = check_publication(
            certs, self.agent_key, msg.chlist, msg.eopkey, msg.xdescr, self._now()
        )
        if isinstance(grant, Refusal):
            return self._refused("xpub", grant)
        self._pending_pub = (grant, msg.xdescr)
        return Answer(Status.SUCCESS, "xpub")

    def publish_pending(self) -> tuple[Publication, int] | None:
        """Make the publication accepted by the last xpub live (after its result went out);
        returns it and how many subscribers it was offered to."""
        pending, self._pending_pub = self._pending_pub, None
        if pending is None or self.closed:
            return None
        grant, xdescr = pending
        pub, offered = self.registry.publish(
            grant.channels,
            xdescr,
            grant.pairs,
            priority=grant.priority,
            pub_end_ns=grant.pub_end_ns,
            publisher=self.agent_key,
            peer=self.peer,
            address=self.address,
        )
        pub.valid_until = grant.valid_until
        self.publications.append(pub)
        return pub, offered

    def end_subscription(self) -> Subscriber | None:
        """The subscription's chain expired: no more deliveries (returns what it was)."""
        sub, self.subscriber = self.subscriber, None
        if sub is not None:
            self.registry.unsubscribe(sub)
        return sub

    def end_publication(self, pub: Publication) -> None:
        self.registry.withdraw(pub)
        if pub in self.publications:
            self.publications.remove(pub)

    def close(self) -> list[Publication]:
        """The link is gone: unsubscribe, and end every publication it made (returned)."""
        if self.closed:
            return []
        self.closed = True
        if self.subscriber is not None:
            self.registry.unsubscribe(self.subscriber)
        ended = list(self.publications)
        for pub in ended:
            self.registry.withdraw(pub)
        self.publications.clear()
        return ended
