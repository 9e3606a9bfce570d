"""Hand a link's outgoing bytes to the kernel in as few `send`s as possible.

Twisted's `write()` only buffers: the bytes go out when epoll next reports the socket
writable, which costs one more reactor turn and two `epoll_ctl` calls (register for
EPOLLOUT, then unregister) per write. A control link's socket is nearly always writable,
so:

* `DirectWriter.send(data)` sends at once with `socket.send` when Twisted holds nothing
  for the socket, and leaves only what does not fit to Twisted's `write()` (so its
  buffer limit still pauses the producer: backpressure is unchanged);
* `Corked` collects the frames written while *corked* (during one read of the link, or
  until the end of the reactor turn) and emits them with one `send`: plain TCP joins
  them, TLS seals each into its own record (`packetlab.tls.protocol.PPKSTLSProtocol`).

`DirectWriter` relies on private attributes of `twisted.internet.abstract.FileDescriptor`
(`dataBuffer`, `offset`, `_tempDataLen`, `socket`); `tests/unit/test_directwrite.py` pins
them, so a Twisted release that changes them fails that test instead of silently
reordering bytes.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp

__all__ = [
    "CORK_LIMIT",
    "Corked",
    "DirectWriter",
    "PlainFrameWriter",
    "frame_writer",
    "socket_connection",
    "unsent",
]

# Bytes collected while corked before they are emitted anyway: bounds the memory a long
# read (or a busy turn) holds outside the transport, whose own limit drives backpressure.
CORK_LIMIT = 64 * 1024


def socket_connection(transport: Any, kind: type = tcp.Connection) -> Any:
    """The TCP connection (or other `kind` of descriptor) under `transport`: itself, or
    below TLS/wrapping protocols; None if there is none."""
    for _ in range(4):
        if isinstance(transport, kind):
            return transport
        transport = getattr(transport, "transport", None)
    return None


def unsent(conn: Any) -> int:
    """Bytes Twisted holds for the socket of `conn` (a `tcp.Connection`; 0 for None)."""
    if conn is None:
        return 0
    return len(conn.dataBuffer) - conn.offset + conn._tempDataLen


class DirectWriter:
    """Writes to one `tcp.Connection`: directly when its buffer is empty, else through it."""

    __slots__ = ("conn",)

    def __init__(self, conn: tcp.Connection) -> None:
        self.conn = conn

    def idle(self) -> bool:
        """True when Twisted holds no bytes for the socket and it is open for writing."""
        c: Any = self.conn
        return bool(
            c.connected
            and not c.disconnecting
            and not c._tempDataLen
            and len(c.dataBuffer) == c.offset
        )

    def send(self, data: bytes) -> None:
        c: Any = self.conn
        if self.idle():
            try:
                sent = c.socket.send(data)
            except OSError:  # full (EAGAIN), or an error Twisted's own doWrite will report
                sent = 0
            if sent == len(data):
                return
            if sent:
                data = data[sent:]
        c.write(data)


class Corked:
    """Cork/uncork for a writer of whole frames: while corked, `write(frame)` collects;
    the last `uncork()` (or `CORK_LIMIT` bytes) emits the collected frames in one go
    through `_emit`. With `batch_turns(reactor)`, a write while uncorked collects until
    the end of the reactor turn (`callLater(0)`), so frames written by timers and socket
    events of one turn also leave together; a read's answers still leave at the end of
    that read, not of the turn."""

    _cork_depth = 0
    _cork_frames: list[bytes] | None = None
    _cork_bytes = 0
    _cork_reactor: Any = None
    _cork_turn: Any = None  # the pending end-of-turn flush

    def batch_turns(self, reactor: Any) -> None:
        self._cork_reactor = reactor

    def cork(self) -> None:
        self._cork_depth += 1

    def uncork(self) -> None:
        self._cork_depth -= 1
        if not self._cork_depth:
            self.flush()

    def flush(self) -> None:
        """Emit what is collected now (the corks stay as they are)."""
        frames = self._cork_frames
        if frames:
            self._cork_frames = None
            self._cork_bytes = 0
            self._emit(frames)

    def discard(self) -> None:
        """Forget what is collected (the link is gone) and any pending end-of-turn."""
        self._cork_frames = None
        self._cork_bytes = 0
        turn, self._cork_turn = self._cork_turn, None
        if turn is not None and turn.active():
            turn.cancel()

    def write(self, frame: bytes) -> None:
        """Collect `frame` if corked (or in a turn's batch), else `_write_now` it."""
        frames = self._cork_frames
        if frames is None:  # the first frame of a batch, or none is open
            if not self._cork_depth and self._cork_turn is None:
                if self._cork_reactor is None:
                    self._write_now(frame)
                    return
                self._cork_turn = self._cork_reactor.callLater(0, self._end_turn)
            self._cork_frames = frames = []
        # A batch is open (only a cork or a turn opens one, and the flush that ends them
        # closes it): the hot path of a link, one list append per frame.
        frames.append(frame)
        n = self._cork_bytes + len(frame)
        self._cork_bytes = n
        if n >= CORK_LIMIT:
            self.flush()

    def _write_now(self, frame: bytes) -> None:
        raise NotImplementedError

    def _end_turn(self) -> None:
        self._cork_turn = None
        if not self._cork_depth:
            self.flush()

    def _emit(self, frames: list[bytes]) -> None:
        raise NotImplementedError


class PlainFrameWriter(Corked):
    """Frames over plain TCP (or any transport): collected frames are joined and sent
    directly when the socket takes them (`DirectWriter`), else written to the transport."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        conn = socket_connection(transport)
        self._direct = DirectWriter(conn) if conn is transport else None

    def _write_now(self, frame: bytes) -> None:
        self._emit([frame])

    def _emit(self, frames: list[bytes]) -> None:
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        if self._direct is not None:
            self._direct.send(data)
        else:
            self.transport.write(data)


def frame_writer(transport: Any) -> Any:
    """The corkable frame writer of a link: the TLS protocol itself when it is ours
    (one record per frame), else a `PlainFrameWriter` over the transport."""
    if isinstance(transport, Corked):
        return transport
    return PlainFrameWriter(transport)
