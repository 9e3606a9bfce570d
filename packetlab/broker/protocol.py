"""The broker's connections: a thin Protocol around `BrokerSession` (PROTOCOL.md §5).

* Input: a `Framer` capped at `MAX_FRAME`; pipelined frames split across TLS records
  are just bytes. Each xcert/xsub/xpub gets one `result`, in order. An error answer is
  held back by the `Throttle` delay; meanwhile later frames wait (the transport is
  paused), so the order holds and a flood costs us nothing.
* Output to a subscriber: offered publications wait in a small per-link queue of
  references and are written while the transport takes them (we are its push
  producer). A slow subscriber only grows its own queue (one entry per live
  publication, however often it is offered); nobody else waits for it. While its
  transport is full the link is not read either, so a client that never reads cannot
  make us answer (and re-offer) without end. The delivery record is written just before
  the bytes go out (`Registry.claim`).
* A client that neither subscribes nor publishes within `IDLE_TIMEOUT` is closed; a
  subscriber or publisher then idles as long as it likes (the reference sends nothing),
  but a frame it begins must be whole within the same time (a slow loris after its
  xsub/xpub held its link and bytes for ever); a reference client sends the pieces of a
  frame within milliseconds.
* A subscription proven by a certificate chain lasts as long as the chain: when its
  first certificate expires the subscription ends and the link is closed (one timer per
  link, on the injected clock). The subscriber reconnects, sends its chain again and
  gets ESUBBADCHN for an expired one, like any new client (PROTOCOL.md §5.5). A
  publication likewise ends at its pub_end or when its experiment chain expires,
  whichever comes first.
"""

from __future__ import annotations

import socket
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from packetlab.addrshare import AddressShare, oldest_of_busiest
from packetlab.clockstep import call_at_wall, steady, steady_clock
from packetlab.hostport import shown_host
from packetlab.logbudget import LogBudget
from packetlab.tls import default_pending_max, peer_of
from packetlab.tls.directwrite import socket_connection
from packetlab.wire.codec import encode
from packetlab.wire.constants import MsgType, Status
from packetlab.wire.errors import FrameTooLarge
from packetlab.wire.framer import Framer, Item
from packetlab.wire.messages import Result

from .counters import PortCounters
from .registry import Publication, Registry, channel_label
from .session import Answer, BrokerSession, Role
from .throttle import Throttle
from .tlsmem import release_bio_buffers

__all__ = ["IDLE_TIMEOUT", "MAX_FRAME", "MAX_QUEUED", "BrokerFactory", "BrokerProtocol", "FanOut"]

MAX_FRAME = 65536  # bytes of body: an xcert is ~400, an xdescr at most 4096
IDLE_TIMEOUT = 30.0  # s from connect to the first successful xsub/xpub (IdleTimeout)
CLOSE_TIMEOUT = 5.0  # s a closing link waits for the peer's close_notify or FIN
# Notifications waiting at subscribers that do not read, all links of a port together
# (~100 bytes each: 50 MB). One such link holds at most one per live publication (10,000),
# but links are free: 1,000 that never read, offered 10,000 publications, held 1 GB
# (session 20). Past it the links holding the most are closed, down to nine tenths; a
# reference endpoint reconnects and is offered what is live and was not sent.
MAX_QUEUED = 500_000
# TCP keepalive on every link: a subscriber sends nothing after its xsub, so a peer that
# vanished without a FIN (power, NAT) is found only by probes: idle 10 min, then 5 probes
# a minute apart (the OS default, 2 h + 11 min, kept such links far longer).
KEEPALIVE = (
    (getattr(socket, "TCP_KEEPIDLE", None), 600),
    (socket.TCP_KEEPINTVL, 60),
    (socket.TCP_KEEPCNT, 5),
)

_RESULT_OK = encode(Result(0))
# a publication's end, as its counter (PortCounters.ended) names it
_ENDED = {
    "publisher closed the connection": "publisher_closed",
    "pub_end reached": "pub_end",
    "its certificate chain expired": "chain_expired",
    "broker stopping": "broker_stopping",
}


def _frame_name(code: int) -> str:
    try:
        return MsgType(code).name.lower()
    except ValueError:
        return f"type 0x{code:02x}"


def _frame_got(held: int, length: int) -> str:
    """How much of a cut frame came (`Framer.partial`'s held and length)."""
    return f"{held} of {length} bytes" if length >= 0 else f"{held} of its 4 header bytes"


def _keepalive(transport: Any) -> None:
    tcp = socket_connection(transport)
    if tcp is None:  # a test's fake transport
        return
    try:
        tcp.setTcpKeepAlive(True)
        sock = tcp.getHandle()
        for opt, value in KEEPALIVE:
            if opt is not None:
                sock.setsockopt(socket.IPPROTO_TCP, opt, value)
    except OSError:  # the link is going already; its close will be seen
        pass


class FanOut:
    """Spreads one publication's notifications over reactor turns, `batch` per turn
    (`FanOutBatch`): with a small batch the kernel sends each batch while the next one
    is encrypted and other connections get served in between; one turn has the least
    overhead (faster here, hence the large default). Offers of one link stay in order."""

    def __init__(self, reactor: IReactorTime, batch: int = 65536) -> None:
        self.reactor = reactor
        self.batch = batch
        self.queue: deque[tuple[BrokerProtocol, Publication, bytes]] = deque()
        self._direct = 0  # sent at once in this turn
        self._turn: IDelayedCall | None = None
        self._since = 0.0  # when the current burst began
        self._count = 0

    log = Logger(namespace="pktbroker")

    def add(self, link: BrokerProtocol, pub: Publication, channel: bytes) -> None:
        if self._count == 0:
            self._since = time.perf_counter()
        self._count += 1
        if not self.queue and self._direct < self.batch:
            self._direct += 1
            self._schedule()
            link.deliver(pub, channel)
            return
        self.queue.append((link, pub, channel))
        self._schedule()

    def _schedule(self) -> None:
        if self._turn is None:
            self._turn = self.reactor.callLater(0, self._run)

    def _run(self) -> None:
        self._turn = None
        self._direct = 0
        q = self.queue
        for _ in range(min(self.batch, len(q))):
            link, pub, channel = q.popleft()
            link.deliver(pub, channel)
        if q:
            self._schedule()
        elif self._count:
            self.log.info(
                "fan-out n={n} ms={ms:.1f}",
                n=self._count,
                ms=(time.perf_counter() - self._since) * 1000,
            )
            self._count = 0


class BrokerFactory(Factory):
    """Builds the protocol of one port; shares the registry, throttle and reactor."""

    noisy = False
    log = Logger(namespace="pktbroker")

    def __init__(
        self,
        role: Role,
        registry: Registry,
        throttle: Throttle,
        reactor: IReactorTime,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        self.role = role
        self.idle_timeout = idle_timeout
        self.registry = registry
        self.throttle = throttle
        self.reactor = reactor
        self.connections: set[BrokerProtocol] = set()
        self.fanout = FanOut(reactor)
        # Links past TLS without an xsub/xpub yet, oldest first. Anyone can make an agent
        # certificate: such links, silent, held a descriptor each for IDLE_TIMEOUT,
        # uncapped, until none was left for real clients. Past the cap (as the handshake's)
        # the oldest is closed for each new one.
        self.unproven: dict[BrokerProtocol, None] = {}
        # those per source address: the one closed is the oldest of the address holding
        # the most, so a flood from one address closes its own (`oldest_of_busiest`)
        self.unproven_by = AddressShare(steady_clock(reactor))
        self.unproven_max = default_pending_max()
        self.evicted = 0
        self._saturated = False
        # refusals a peer causes at will (a full table, a key's or address's share)
        self.refusal_log = LogBudget(steady_clock(reactor))
        # links closed by their peer in the middle of a frame (as often as it connects)
        self.cut_log = LogBudget(steady_clock(reactor))
        self.max_queued = MAX_QUEUED
        self.counters = PortCounters()  # since start (some log lines are budgeted)
        self.stopping = False  # the service closes every link: not the peers' doing
        self.queued = 0  # notifications queued at links since the last count (an estimate)
        # Subscribed (publishing) links of this port at most (None: no cap): what the
        # descriptor limit leaves after the handshake's and the unproven links' caps
        # (BrokerService). Without it 115 subscriptions under `ulimit -n 128` took every
        # descriptor, and Twisted then closed every new connection at accept (EMFILE), a
        # real publisher's too.
        self.link_max: int | None = None
        # One source address's share of `link_max` (addrshare.py says why and how much):
        # else one stranger's subscriptions took them all and real endpoints were refused.
        self.share = AddressShare(steady_clock(reactor))

    def buildProtocol(self, addr: Any) -> BrokerProtocol:
        return BrokerProtocol(self)

    def queued_one(self) -> None:
        """A link that does not read queued one more notification: past `max_queued`
        (counted exactly then), close the links holding the most."""
        self.queued += 1
        if self.queued < self.max_queued:
            return
        slow = sorted(
            (c for c in self.connections if c._queue),
            key=lambda c: len(c._queue or ()),
            reverse=True,
        )
        total = sum(len(c._queue or ()) for c in slow)
        floor = self.max_queued * 9 // 10
        closed = []
        for c in slow:
            if total < floor:
                break
            total -= len(c._queue or ())
            closed.append((c, len(c._queue or ())))
        self.queued = total
        if not closed:
            return
        self.log.warn(
            "closing {n} subscriber(s) that do not read, {peer} first ({most} notifications "
            "waiting): the links of this port held {held}, at most {cap}; each is offered "
            "what is live and was not sent when it subscribes again",
            n=len(closed),
            peer=closed[0][0].peer,
            most=closed[0][1],
            held=total + sum(n for _, n in closed),
            cap=self.max_queued,
        )
        for c, _ in closed:
            c.drop_unread()

    def links_full(self) -> str | None:
        """Why one more link may not subscribe (publish) here, or None."""
        n = len(self.connections) - len(self.unproven)
        if self.link_max is None or n < self.link_max:
            return None
        verb = "subscribed" if self.role is Role.SUBSCRIBE else "publishing"
        return (
            f"{n} {verb} links (cap {self.link_max}, from the descriptor limit: raise `ulimit -n`)"
        )

    def admit(self, link: BrokerProtocol) -> None:
        waiting, by = self.unproven, self.unproven_by
        while len(waiting) >= self.unproven_max:
            oldest = oldest_of_busiest(waiting, by, lambda c: c.peer)
            del waiting[oldest]
            by.remove(oldest.peer)
            if not self._saturated:
                self._saturated = True
                BrokerProtocol.log.warn(
                    "{role} port: {n} links without an xsub/xpub (cap {cap}): closing the "
                    "oldest one of the address holding the most ({host}) for each new one",
                    role=self.role.value,
                    n=len(waiting) + 1,
                    cap=self.unproven_max,
                    host=oldest.peer,
                )
            self.evicted += 1
            oldest.evict()
        waiting[link] = None
        by.add(link.peer)

    def settled(self, link: BrokerProtocol) -> None:
        """`link` subscribed, published or ended: it no longer counts."""
        if link not in self.unproven:
            return
        del self.unproven[link]
        self.unproven_by.remove(link.peer)
        if self._saturated and len(self.unproven) < self.unproven_max * 3 // 4:
            self._saturated = False
            BrokerProtocol.log.info(
                "{role} port: {n} links without an xsub/xpub, under the cap again "
                "(closed so far for newer ones: {evicted})",
                role=self.role.value,
                n=len(self.unproven),
                evicted=self.evicted,
            )


@implementer(IPushProducer)
class BrokerProtocol(Protocol):
    log = Logger(namespace="pktbroker")
    # One per connection: our attributes in slots (Twisted's own still use a dict).
    __slots__ = (
        "_closing",
        "_consuming",
        "_expiry",
        "_held",
        "_idle",
        "_in_share",
        "_items",
        "_lean",
        "_paused",
        "_queue",
        "_reread",
        "_stall",
        "_sub_expiry",
        "_subscribed",
        "_unread",
        "f",
        "framer",
        "peer",
        "session",
        "who",
    )  # fmt: skip

    def __init__(self, factory: BrokerFactory) -> None:
        self.f = factory
        self.session: BrokerSession | None = None
        self.framer = Framer(MAX_FRAME)
        self._items: Iterator[Item] = iter(())
        self._held: IDelayedCall | None = None  # an error answer waiting for its delay
        self._idle: IDelayedCall | None = None
        self._abort: IDelayedCall | None = None
        self._closing = False
        # pub_id -> (publication, channel), in offer order: a re-offer (a second xsub on
        # the link) takes no second entry
        self._queue: dict[int, tuple[Publication, bytes]] | None = None
        self._paused = False
        self._unread = False  # we stopped reading the peer because our writes wait
        self._consuming = False  # in _consume (it does not nest)
        self._subscribed = False  # an xsub was taken on this link
        self._reread: IDelayedCall | None = None  # _consume again after a resume
        self._expiry: dict[int, IDelayedCall] = {}
        self._sub_expiry: IDelayedCall | None = None  # the subscription's chain ends
        self._stall: IDelayedCall | None = None  # a frame begun after the xsub/xpub
        self._lean: IDelayedCall | None = None
        self._in_share = False  # counted in the factory's AddressShare (subscribed/published)
        self.peer = "?"
        self.who: bytes | str = "?"

    @property
    def _t(self) -> Any:
        return self.transport

    # ------------------------------------------------------------------ lifecycle

    def connectionMade(self) -> None:
        _keepalive(self.transport)
        verified = peer_of(self)
        try:
            self.peer = shown_host(str(self._t.getPeer().host))
        except Exception:
            pass
        key = verified.public_key if verified is not None else None
        if key is None:  # AGENT mode requires a cert; a plain link in tests has none
            key = b""
        self.who = key or self.peer
        self.session = BrokerSession(
            self.f.role,
            key,
            self.f.registry,
            link=self if self.f.role is Role.SUBSCRIBE else None,
            peer=f"{self.peer} agent={key.hex()[:16]}",
            address=self.peer,
            clock=self.f.reactor.seconds,  # chains are checked on the clock of the timers
        )
        self.f.connections.add(self)
        self.f.counters.links += 1
        self._t.registerProducer(self, True)
        self._idle = self.f.reactor.callLater(self.f.idle_timeout, self._idle_expired)
        self.f.admit(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        # No more notifications: a fan-out turn still queued for this link wrote to the
        # lost connection and counted the publication as delivered to the endpoint key,
        # so the endpoint, subscribed again, was never offered it.
        ours, self._closing = self._closing, True
        self.f.connections.discard(self)
        self.f.settled(self)
        if self._in_share:
            self._in_share = False
            self.f.share.remove(self.peer)
        timers = (self._held, self._idle, self._lean, self._reread, self._sub_expiry, self._stall)
        for timer in (*timers, *self._expiry.values()):
            if timer is not None and timer.active():
                timer.cancel()
        self._held = self._idle = self._lean = self._reread = self._sub_expiry = None
        self._stall = None
        self._expiry.clear()
        self._queue = None
        if self._abort is not None and self._abort.active():
            self._abort.cancel()
        self._abort = None
        if self.session is None:
            return
        if not ours:
            self._log_cut_frame()
        why = "broker stopping" if self.f.stopping else "publisher closed the connection"
        for pub in self.session.close():
            self._log_end(pub, why)
        if self.session.subscriber is not None and not self.f.stopping:
            self.log.info(
                "unsubscribe peer={peer} reason={why}",
                peer=self.session.peer,
                why=reason.getErrorMessage(),
            )

    def _log_cut_frame(self) -> None:
        """The peer closed with part of a frame sent (a publisher gone mid-xpub): that
        frame is dropped unanswered, so say so (within the factory's budget)."""
        cut = self.framer.partial
        if cut is None:
            return
        code, held, length = cut
        if 0 <= length <= held:  # whole frames waiting (backpressure), not a cut one
            return
        self.f.counters.cut_frames += 1
        more = self.f.cut_log.allow()
        if more is None:
            return
        name, got = _frame_name(code), _frame_got(held, length)
        self.log.warn(
            "{role} link peer={peer} closed in the middle of a frame ({name}, {got}): "
            "dropped unanswered{more}",
            role=self.f.role.value,
            peer=self.session.peer if self.session else self.peer,
            name=name,
            got=got,
            more=more,
        )

    def drop_unread(self) -> None:
        """Close a subscriber that does not read (`BrokerFactory.queued_one`): at once,
        its transport is full and would never drain."""
        self._queue = None
        self._cancel_idle()
        self._closing = True
        self.f.counters.closed["unread"] += 1
        self._t.abortConnection()

    def evict(self) -> None:
        """Closed for a newer link (the factory says so once): no close_notify wait."""
        self._cancel_idle()
        self._closing = True
        self.f.counters.closed["for_newer"] += 1
        self._t.abortConnection()

    def _idle_expired(self) -> None:
        self._idle = None
        self.f.settled(self)
        self.f.counters.closed["idle"] += 1
        self.log.info(
            "closing idle {role} client peer={peer}: no xsub/xpub within {t} s",
            role=self.f.role.value,
            peer=self.peer,
            t=f"{self.f.idle_timeout:g}",
        )
        self._close()

    def _close(self) -> None:
        if self._closing:
            return
        self._closing = True
        try:
            self._t.unregisterProducer()
        except RuntimeError:
            pass
        # TLS closes once the peer's close_notify (or FIN) is read: read again (an error
        # answer paused reading, and the link stayed open for good), and cut off a peer
        # that sends neither.
        self._t.resumeProducing()
        self._t.loseConnection()
        self._abort = self.f.reactor.callLater(CLOSE_TIMEOUT, self._cut_off)

    def _cut_off(self) -> None:
        self._abort = None
        self.f.counters.closed["aborted"] += 1
        self.log.info(
            "aborting {role} link peer={peer}: no close_notify or FIN within {t} s of closing",
            role=self.f.role.value,
            peer=self.peer,
            t=CLOSE_TIMEOUT,
        )
        self._t.abortConnection()

    def close(self) -> None:
        """Service stopping: close the link (its publications end with it)."""
        self._close()

    # ------------------------------------------------------------------ input

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        close = getattr(self._items, "close", None)
        if close is not None:
            close()
        self._items = self.framer.feed(data)
        # While an error answer is held or our writes wait, frames stay in the framer.
        if self._held is None and not self._unread:
            self._consume()

    def _consume(self) -> None:
        session = self.session
        if session is None or self._consuming:
            return
        self._consuming = True
        try:
            self._consume_items(session)
        finally:
            self._consuming = False
        self._watch_frame()

    def _watch_frame(self) -> None:
        """After its first xsub/xpub (the idle deadline gone) a link may idle for ever,
        but a frame it has begun must be whole within `idle_timeout` of our seeing it cut
        (a reference client sends a frame's pieces within ms): else `_frame_stalled`
        closes it. Only time we read counts (`_unwatch_frame`)."""
        if self._closing or self._idle is not None or self._stall is not None:
            return
        if self._held is not None or self._unread:  # (our resume watches again)
            return
        cut = self.framer.partial
        if cut is not None and not 0 <= cut[2] <= cut[1]:
            self._stall = self.f.reactor.callLater(
                self.f.idle_timeout, self._frame_stalled, self.framer.offset
            )

    def _unwatch_frame(self) -> None:
        """We stop reading the link (an error answer held, our writes waiting): the rest
        of a cut frame then waits in the kernel, or behind the full receive window of a
        slow link, and is not the peer's stall. The frame gets its whole `idle_timeout`
        once we read again (`_consume` watches it): a deadline run on while we did not
        read closed a healthy link whose rest came a round trip after our resume."""
        if self._stall is not None:
            if self._stall.active():
                self._stall.cancel()
            self._stall = None

    def _frame_stalled(self, offset: int) -> None:
        self._stall = None
        if self._closing:
            return
        cut = self.framer.partial
        if (
            self._held is not None  # we were not reading: not the peer's stall
            or self._unread
            or cut is None
            or 0 <= cut[2] <= cut[1]
            or self.framer.offset != offset  # that frame came whole; this is a later one
        ):
            self._watch_frame()
            return
        code, held, length = cut
        self.f.counters.closed["stalled_frame"] += 1
        more = self.f.cut_log.allow()
        if more is not None:
            self.log.warn(
                "closing {role} link peer={peer}: a frame ({name}, {got}) not finished "
                "within {t} s{more}",
                role=self.f.role.value,
                peer=self.session.peer if self.session else self.peer,
                name=_frame_name(code),
                got=_frame_got(held, length),
                t=f"{self.f.idle_timeout:g}",
                more=more,
            )
        self._close()

    def _consume_items(self, session: BrokerSession) -> None:
        try:
            # Entered only while reading and no answer is held (the callers check); a pause
            # that comes with one of our writes stops the loop after that item.
            for item in self._items:
                answer = self._over_budget(item) or session.handle(item)
                if not answer.ok or (answer.what == "xsub" and self._subscribed):
                    self._hold(answer)  # an error, or a repeated xsub: after the delay
                    return
                self._t.write(_RESULT_OK)
                self._accepted(answer)
                if self._closing or self._held is not None or self._unread:
                    return
        except FrameTooLarge as e:
            self._hold(
                Answer(Status.ECTLBADMSG, "frame", str(e), close=True),
                send=False,
            )

    def _over_budget(self, item: Item) -> Answer | None:
        """The refusal of a first xsub/xpub past the link budget (then the link closes,
        giving its descriptor back), or None."""
        kind = getattr(item, "TYPE", None)
        if kind not in (MsgType.XSUB, MsgType.XPUB) or self not in self.f.unproven:
            return None
        verb = "subscribed links" if kind is MsgType.XSUB else "publishing links"
        source = None
        full = self.f.links_full()
        if full is None:  # room on the port, maybe not for this address
            full = self.f.share.refusal(self.peer, self.f.link_max, verb)
            if full is None:
                return None
            self.f.counters.refused_share += 1
            source = self.peer
        if kind is MsgType.XSUB:  # the codes a table full of publications gets
            return Answer(Status.ESUBBADCHN, "xsub", full, close=True, budgeted=True, source=source)
        return Answer(Status.EPUBBADXD, "xpub", full, close=True, budgeted=True, source=source)

    def _accepted(self, answer: Answer) -> None:
        session = self.session
        assert session is not None
        self.f.counters.taken[answer.what] += 1
        if answer.what in ("xsub", "xpub") and not self._in_share:
            self._in_share = True
            self.f.share.add(self.peer)
        if answer.what == "xsub":
            self._cancel_idle()
            if not self._subscribed:  # repeated xsubs wait longer and longer
                self.f.throttle.forget(self.who)
            self._subscribed = True
            n = session.activate()
            sub = session.subscriber
            assert sub is not None
            self.log.info(
                "subscribe peer={peer} channels={channels} dattr={dattr!r} live_offered={n}",
                peer=session.peer,
                channels=",".join(channel_label(c) for c in sub.channels),
                dattr=";".join(f"{p.name}={p.value}" for p in sub.dattr),
                n=n,
            )
            self._arm_sub_expiry(sub.valid_until)
        elif answer.what == "xpub":
            self._cancel_idle()
            self.f.throttle.forget(self.who)
            made = session.publish_pending()
            if made is None:
                return
            pub, offered = made
            self.log.info(
                "publish id={id} peer={peer} channels={channels} priority={prio} "
                "xdescr={xdescr!r} offered={n}",
                id=pub.pub_id,
                peer=session.peer,
                channels=",".join(channel_label(c) for c in pub.channels),
                prio=pub.priority,
                xdescr=pub.xdescr.decode("ascii", "replace"),
                n=offered,
            )
            # It ends at its pub_end, or when its experiment chain expires (an xpub with
            # that chain would then get EPUBBADCHN, and endpoints refuse the controller).
            ends = []
            if pub.pub_end_ns is not None:
                ends.append((pub.pub_end_ns / 1e9, "pub_end reached"))
            if pub.valid_until is not None:
                ends.append((float(pub.valid_until), "its certificate chain expired"))
            if ends:
                end, why = min(ends)
                self._expiry[pub.pub_id] = call_at_wall(self.f.reactor, end, self._expire, pub, why)

    def _arm_sub_expiry(self, valid_until: int | None) -> None:
        """One timer per link: a later xsub replaces the subscription and its timer."""
        if self._sub_expiry is not None and self._sub_expiry.active():
            self._sub_expiry.cancel()
        self._sub_expiry = None
        if valid_until is not None:
            self._sub_expiry = call_at_wall(
                self.f.reactor, valid_until, self._subscription_expired, valid_until
            )

    def _subscription_expired(self, valid_until: int) -> None:
        """The chain that proved the private channels has expired: a new xsub with it
        would get ESUBBADCHN, so this one ends. The link is closed (nothing else tells a
        subscriber, which sends nothing after its xsub, that it no longer gets anything):
        the endpoint reconnects and sends its chain again, renewed or refused."""
        self._sub_expiry = None
        if self.session is None or self._closing:
            return
        sub = self.session.end_subscription()
        if sub is None:
            return
        self._queue = None  # what waited for it is not sent now
        self.f.counters.closed["subscription_expired"] += 1
        self.log.warn(
            "subscription expired peer={peer} channels={channels}: its certificate chain "
            "expired at {until} ({when}); closing the link",
            peer=sub.peer,
            channels=",".join(channel_label(c) for c in sub.channels),
            until=valid_until,
            when=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(valid_until)),
        )
        self._close()

    def _cancel_idle(self) -> None:
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._idle = None
        self.f.settled(self)
        # The link now idles, maybe for days: after this turn (the result has gone out)
        # give back the handshake's BIO buffers (packetlab.broker.tlsmem).
        if self._lean is None:
            self._lean = self.f.reactor.callLater(0, self._release_tls_buffers)

    def _release_tls_buffers(self) -> None:
        self._lean = None
        if self._closing:
            return
        # With the Python record layer the whole OpenSSL connection goes (~30 KB); on the
        # pyOpenSSL path, at least the handshake's BIO buffers.
        release = getattr(self._t, "release_openssl", None)
        if release is not None and release():
            return
        conn = getattr(self._t, "_tlsConnection", None)  # TLSMemoryBIOProtocol's
        if conn is not None:
            release_bio_buffers(conn)

    def _expire(self, pub: Publication, why: str = "pub_end reached") -> None:
        self._expiry.pop(pub.pub_id, None)
        if self.session is not None and pub.live:
            self.session.end_publication(pub)
            self._log_end(pub, why)

    def _log_end(self, pub: Publication, why: str) -> None:
        self.f.counters.ended[_ENDED.get(why, why.replace(" ", "_"))] += 1
        self.log.info(
            "publication end id={id} peer={peer} delivered={n} reason={why}",
            id=pub.pub_id,
            peer=pub.peer,
            n=pub.delivered,
            why=why,
        )

    def _hold(self, answer: Answer, *, send: bool = True) -> None:
        """Answer an error (or take a repeated xsub) after the throttle's delay; nothing
        else is read meanwhile."""
        delay = self.f.throttle.delay(self.who, steady(self.f.reactor))
        self._t.pauseProducing()
        self._unwatch_frame()
        self._held = self.f.reactor.callLater(delay, self._release, answer, send)
        if answer.ok:
            self.log.info(
                "hold repeated xsub peer={peer}: it replaces the subscription in {delay:.1f}s",
                peer=self.session.peer if self.session else self.peer,
                delay=delay,
            )
            return
        self.f.counters.refused[answer.status.name] += 1
        more = ""
        if answer.source is not None:  # a flood of one address: one line a minute
            allowed = self.f.share.log_line(answer.source, self.f.refusal_log)
            if allowed is None:
                return
            more = allowed
        elif answer.budgeted:
            allowed = self.f.refusal_log.allow()
            if allowed is None:
                return
            more = allowed
        self.log.warn(
            "refuse {what} peer={peer} code=0x{code:04x} ({name}) reason={reason} "
            "delay={delay:.1f}s{closing}{more}",
            what=answer.what,
            peer=self.session.peer if self.session else self.peer,
            code=int(answer.status),
            name=answer.status.name,
            reason=answer.reason,
            delay=delay,
            closing=" then close" if answer.close else "",
            more=more,
        )

    def _release(self, answer: Answer, send: bool) -> None:
        self._held = None
        if self._closing:
            return
        if send:
            self._t.write(encode(Result(int(answer.status))))
        if answer.ok:
            self._accepted(answer)
            if self._closing:
                return
        if answer.close:
            self._close()
            return
        if not self._unread:  # else resumeProducing carries on
            self._t.resumeProducing()
            self._consume()

    # ------------------------------------------------------------------ output

    def offer(self, pub: Publication, channel: bytes) -> None:
        """Registry: `pub` matches this subscriber; send it when the transport takes it."""
        if not self._closing:
            self.f.fanout.add(self, pub, channel)

    def deliver(self, pub: Publication, channel: bytes) -> None:
        """The fan-out's turn for this link: write now, or queue while paused."""
        if self._closing:
            return
        if self._queue is None:
            if not self._paused:
                self._send(pub, channel)
                return
            self._queue = {}
            self.log.info(
                "subscriber peer={peer} does not read: its transport is full, so it is not "
                "read either and its notifications wait (one per live publication)",
                peer=self.session.peer if self.session else self.peer,
            )
        queue = self._queue
        if len(queue) >= 2 * len(self.f.registry.publications) + 64:
            # Ended publications go now, not when it reads again (it may never):
            # publications come and go, and each entry keeps its xdescr alive.
            self._queue = queue = {k: v for k, v in queue.items() if v[0].live}
        if pub.pub_id not in queue:
            queue[pub.pub_id] = (pub, channel)
            self.f.queued_one()

    def _send(self, pub: Publication, channel: bytes) -> None:
        session = self.session
        registry = self.f.registry
        if session is None or not registry.claim(pub, session.agent_key):
            return
        if registry.store is None:
            self._write_notify(pub, channel)
            return

        # Shared record: another broker may have sent these bytes to this endpoint.
        def claimed(first: bool) -> None:
            if first:
                self._write_notify(pub, channel)

        d = registry.store.claim(pub, session.agent_key)
        d.addCallback(claimed)
        d.addErrback(lambda f: self.log.failure("shared delivery record", f))

    def _write_notify(self, pub: Publication, channel: bytes) -> None:
        if self._closing or not pub.live or self.transport is None:
            return
        # No log line per notification: at 10,000 subscribers it would cost more than the
        # write (the publish line has the count, the status page the per-pub total).
        self._t.write(pub.frame(channel))
        # Push it to the socket now: waiting for the reactor to report 10,000 sockets
        # writable costs more than the sends (the socket is nearly always writable).
        tcp = getattr(self._t, "transport", None)
        if tcp is not None and getattr(tcp, "connected", False) and not tcp.disconnecting:
            tcp.doWrite()

    def pauseProducing(self) -> None:
        """The transport is full (the peer does not read): queue what we would write, and
        stop reading the peer (its requests would only add answers and offers)."""
        if self._paused:
            return
        self._paused = True
        # Not when TLS itself buffers our write until it has read something (OpenSSL's
        # WANT_READ, TLSMemoryBIOProtocol._bufferedWrite): it must go on reading.
        if self._closing or getattr(self._t, "_appSendBuffer", None):
            return
        self._unread = True
        self._unwatch_frame()
        if self._held is None:  # else the held answer paused it already
            self._t.pauseProducing()

    def resumeProducing(self) -> None:
        if not self._paused:
            return
        self._paused = False
        queue = self._queue
        while queue and not self._paused and not self._closing:
            self._send(*queue.pop(next(iter(queue))))
        if not queue:
            self._queue = None
        if self._paused or not self._unread:
            return
        self._unread = False
        if self._closing or self._held is not None:
            return
        self._t.resumeProducing()
        # The frames already read go on in a turn of their own: this resume may come from
        # inside one of our writes (the socket took the buffer meanwhile), in the middle of
        # handling a frame, a held answer or a fan-out.
        if self._reread is None:
            self._reread = self.f.reactor.callLater(0, self._read_again)

    def _read_again(self) -> None:
        self._reread = None
        if not self._closing and self._held is None and not self._unread:
            self._consume()

    def stopProducing(self) -> None:
        self._queue = None
