"""Sans-IO socket state (PROTOCOL.md §2.2 socket block, §3) and the seams to the I/O edge.

`Skt` is everything the protocol can see of one socket: its block fields, its budgets,
held notifications and drop episode. A new `Skt` is made for every nopen, so a stale
object held by a timer or a queued frame can never touch a later socket with the same id.

`Network` and `SocketIO` are the two interfaces the session uses to act on real sockets
(`packetlab.endpoint.netio` implements them on the reactor); `SocketEvents` is how the
I/O edge reports back. Tests may implement them with in-memory fakes.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

from packetlab.wire.constants import Proto, SocketState, Status

if TYPE_CHECKING:
    from packetlab.endpoint.sender import ScheduledSend

__all__ = [
    "CaptureRejected",
    "ConnectFailed",
    "DropEpisode",
    "Network",
    "OpenError",
    "PendingSend",
    "RawSocketIO",
    "Skt",
    "SocketEvents",
    "SocketIO",
]

TCP = int(Proto.TCP)
# Looked up once: an Enum member's attribute access costs ~0.1 µs (Python 3.11), per nsend.
_OPEN = SocketState.OPEN
_SENDS_TCP = frozenset((SocketState.OPENING, SocketState.OPEN, SocketState.EOF))
UDP = int(Proto.UDP)


class OpenError(Exception):
    """nopen cannot create the socket; `status` is the result errid to answer."""

    def __init__(self, status: Status, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class ConnectFailed(Exception):
    """A TCP connect failed synchronously; `state` is the socket state to record."""

    def __init__(self, state: SocketState, reason: str) -> None:
        super().__init__(reason)
        self.state = state


class CaptureRejected(Exception):
    """ncap cannot install the capture; `status` is the result errid (ESKTBADFILT),
    `detail` more for the log (the tail of the kernel verifier's log)."""

    def __init__(self, status: Status, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.status = status
        self.detail = detail


class PendingSend:
    """One accepted nsend, from `result(SUCCESS)` until it is sent or dropped.

    Calling it is the scheduled action: the socket's send alone. Being its own action
    (rather than a closure over it) keeps a queued send at about 500 bytes of memory:
    BufMax charges it its payload plus only `SEND_BUF_OVERHEAD` (docs/reliability.md)."""

    __slots__ = ("cost", "data", "dest", "handle", "io", "skt", "tag")

    def __init__(
        self,
        skt: Skt,
        tag: int,
        data: bytes,
        dest: tuple[Any, ...] | None,
        cost: int,
        io: SocketIO | None = None,
    ) -> None:
        self.skt = skt
        self.tag = tag
        self.data = data
        self.dest = dest  # UDP/raw sendto address as the socket module wants it; None for TCP
        self.cost = cost
        self.io = io  # the socket it goes out on
        self.handle: ScheduledSend | None = None

    def __call__(self) -> bool:
        return self.io.send(self)  # type: ignore[union-attr]  # set by the session

    def rehearse(self) -> None:
        """Warm the send path shortly before the send without sending anything (the
        scheduler calls it when it has the time; a socket without `rehearse` skips it)."""
        warm = getattr(self.io, "rehearse", None)
        if warm is not None:
            warm(self)


class DropEpisode:
    """Receive drops since the last accepted datagram (reported by one ndrop)."""

    __slots__ = ("bytes", "first", "last", "units")

    def __init__(self, time: int) -> None:
        self.first = time
        self.last = time
        self.units = 0
        self.bytes = 0


class Skt:
    """One socket's protocol-visible state (identity-hashed: used as a scheduler key)."""

    __slots__ = (
        "alen",
        "ctfl",
        "drop_bytes",
        "drop_pkts",
        "episode",
        "family",
        "fin_fired",
        "fin_handle",
        "fin_time",
        "held",
        "io",
        "laddr",
        "lport",
        "notifmask",
        "nsenderr",
        "nsenderrtag",
        "proto",
        "queued",
        "raddr",
        "rbufsz",
        "rbufused",
        "read_blocked",
        "rport",
        "sktid",
        "state",
    )

    def __init__(self, sktid: int, family: int, proto: int, rbufsz: int) -> None:
        self.sktid = sktid
        self.family = family
        self.proto = proto
        self.alen = 4 if family == 4 else 16
        self.state = SocketState.OPENING
        self.laddr = bytes(self.alen)
        self.lport = 0
        self.raddr = bytes(self.alen)
        self.rport = 0
        self.rbufsz = rbufsz
        self.rbufused = 0
        self.drop_bytes = 0
        self.drop_pkts = 0
        self.nsenderr = 0
        self.nsenderrtag = 0
        self.notifmask = 0
        self.ctfl = bytes(128)
        self.io: SocketIO | None = None
        # Held notifications (§2.4): (mask bit, frame, budget cost), in order.
        self.held: deque[tuple[int, bytes, int]] = deque()
        self.episode: DropEpisode | None = None
        self.fin_time: int | None = None  # nctl FIN time (the first one wins, §2.3)
        self.fin_handle: ScheduledSend | None = None
        self.fin_fired = False  # the FIN's time came: no more sends
        self.queued: set[PendingSend] = set()  # scheduled, not yet handed to the socket
        self.read_blocked = False  # TCP reading stopped because the budget is used up

    @property
    def sends(self) -> bool:
        """Whether the socket can take nsends now (TCP also while connecting)."""
        if self.proto == TCP:
            return not self.fin_fired and self.state in _SENDS_TCP
        return self.state == _OPEN

    def __repr__(self) -> str:
        return f"<Skt {self.sktid} family={self.family} proto={self.proto} {self.state.name}>"


class SocketIO(Protocol):
    """The I/O side of one open socket."""

    def send(self, pending: PendingSend) -> bool:
        """Send now (UDP) or append to the byte stream (TCP). True: the kernel has all of it
        now; False: the rest is reported later with `send_done`. May raise OSError."""
        ...

    def tx_time(self, pending: PendingSend, not_before: int) -> int | None:
        """The kernel TX timestamp of `pending`, which `send` took at once, or None (the
        session then uses the scheduler's reading around the send)."""
        ...

    def shutdown_write(self) -> None:
        """TCP FIN once everything handed over so far is written; report `tcp_fin_sent`."""

    def resume_reading(self) -> None:
        """Budget space is back: read again (TCP)."""

    def close(self) -> list[PendingSend]:
        """Unregister and close; return the sends handed over but not fully written.

        No event is reported afterwards."""
        ...


class RawSocketIO(SocketIO, Protocol):
    """The I/O side of a raw socket (packetlab.endpoint.raw): capture and TX times."""

    def capture(self, program: bytes, endtime: int) -> None:
        """Install the encoded eBPF `program` until endpoint time `endtime` (ns); an
        endtime not in the future stops capturing. Raises `CaptureRejected`."""


class SocketEvents(Protocol):
    """What the I/O edge reports to the session (always from the reactor thread)."""

    def recv_room(self, skt: Skt) -> int:
        """Bytes of payload one TCP ndata may carry now (≤ 0: stop reading)."""
        ...

    def tcp_blocked(self, skt: Skt) -> None: ...

    def tcp_received(self, skt: Skt, data: bytes, time: int) -> None: ...

    def udp_received(self, skt: Skt, data: bytes, time: int, raddr: bytes, rport: int) -> None: ...

    def udp_dropped(self, skt: Skt, count: int, time: int) -> None:
        """`count` datagrams the kernel dropped at the socket's full queue (SO_RXQ_OVFL),
        before the one read at `time`."""

    def raw_received(self, skt: Skt, data: bytes, time: int) -> None:
        """A captured IP packet (raw sockets)."""

    def raw_dropped(self, skt: Skt, count: int, time: int) -> None:
        """`count` packets the kernel dropped at the capture socket's full queue
        (PACKET_STATISTICS), noticed at `time`."""

    def tcp_established(
        self, skt: Skt, laddr: bytes, lport: int, raddr: bytes, rport: int
    ) -> None: ...

    def tcp_connect_failed(self, skt: Skt, state: SocketState) -> None: ...

    def tcp_eof(self, skt: Skt) -> None: ...

    def tcp_error(self, skt: Skt, state: SocketState) -> None:
        """The connection failed after it was established (read or write error)."""

    def tcp_fin_sent(self, skt: Skt) -> None: ...

    def send_done(self, pending: PendingSend, time: int, errno: int) -> None: ...


class Network(Protocol):
    """Creates sockets for nopen. Raises `OpenError` (answered as a result errid)."""

    def open_udp(self, skt: Skt, laddr: bytes, lport: int, events: SocketEvents) -> SocketIO:
        """Bind; fill ``skt.laddr``/``skt.lport`` with the bound address."""
        ...

    def open_tcp(
        self,
        skt: Skt,
        laddr: bytes,
        lport: int,
        raddr: bytes | None,
        rport: int | None,
        events: SocketEvents,
    ) -> SocketIO:
        """Connect (raddr given) or listen for one connection (raddr None).

        May raise `ConnectFailed` after the socket was created: the nopen is then a
        SUCCESS followed by an nstat with the failure.
        """
        ...

    def open_raw(self, skt: Skt, laddr: bytes, events: SocketEvents) -> RawSocketIO:
        """A raw socket on the interface holding the exported address `laddr`: sends whole
        IP packets, captures nothing until `RawSocketIO.capture`."""
        ...
