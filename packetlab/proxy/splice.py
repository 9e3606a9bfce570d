"""The socket relays, once an endpoint is routed (`RelayEnd` is the portable path).

Both TCP sockets leave Twisted's transports and are driven directly through duplicated
descriptors registered with the reactor; the transports are closed when the relay ends.
Per direction, in one of two modes:

* copy (the default): `recv_into` one buffer shared by every relay, then `send` from it;
  what the destination does not take is kept (at most one read) and the source is not
  read until it has gone;
* splice: splice(2) socket → pipe → socket (a pipe grown to `PIPE_SIZE`), the bytes
  never enter Python; while the pipe cannot be emptied the source is not read.

Backpressure is the kernel's either way: a blocked direction watches its destination
for writability instead of its source for input. EOF is forwarded as a write shutdown
once nothing of that direction is held (per-direction half-close).
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

__all__ = ["COPY_CHUNK", "NEAR_RCVBUF", "NEAR_RTT_US", "PIPE_SIZE", "RELAY_MODES", "SpliceRelay",
           "available", "near_rcvbuf"]  # fmt: skip

RELAY_MODES = ("copy", "splice")  # SpliceRelay's; "python" is RelayEnd (portable)

PIPE_SIZE = 1 << 20
COPY_CHUNK = 256 * 1024  # bytes per recv_into of the copy relay
# A read shorter than this ends the turn: it was a message, not a stream, so the socket
# is empty and another read would only say EAGAIN (level-triggered epoll calls again when
# more comes). After a longer read more is likely on its way: read on.
SMALL_READ = 16 * 1024
_COPY_ROUNDS = 16  # recv/send pairs per readiness event before other connections' turn
_SCRATCH = bytearray(COPY_CHUNK)
_SCRATCH_VIEW = memoryview(_SCRATCH)
# A relayed socket whose peer is this near (the kernel's smoothed round trip, from the
# handshake, at most NEAR_RTT_US) gets a fixed receive buffer of NEAR_RCVBUF. Otherwise
# Linux's autotuning, seeing the relay read fast, grows it to many MiB (8 MiB measured,
# up to tcp_rmem's maximum) and a sender on the same host keeps megabytes queued there,
# which makes its own sending dearer (likely: its TCP cannot reuse the pages they hold):
# the benchmark's source spent 20-70 % more CPU per GiB through the proxy than directly,
# and the same as directly with this (docs/performance.md, Proxy, session 6).
# The window left (~half the 2x that Linux books) still carries > 2.5 GB/s at 100 us,
# more than the relay moves per core (~2 GiB/s), so no throughput is lost; a farther
# peer (a real endpoint or manager) keeps autotuning and its full window.
NEAR_RTT_US = 100
NEAR_RCVBUF = 256 * 1024
_TCPI_RTT = 68  # offset of tcpi_rtt (u32, microseconds) in struct tcp_info
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)


def available() -> bool:
    return hasattr(os, "splice")


def _nodelay(sock: socket.socket) -> None:
    # Relay each piece at once: with Nagle a small message (PacketLab's are mostly small)
    # could wait for the ACK of the previous one, adding a delayed-ACK stall per hop.
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:  # not TCP (tests use socketpairs)
        pass


def near_rcvbuf(sock: Any) -> bool:
    """Give `sock` the NEAR_RCVBUF receive buffer if its peer is near; True if it did."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCPI_RTT + 4)
    except (OSError, AttributeError):  # not TCP (tests use socketpairs), not Linux
        return False
    if len(info) < _TCPI_RTT + 4:
        return False
    (rtt,) = struct.unpack_from("I", info, _TCPI_RTT)
    if not 0 < rtt <= NEAR_RTT_US:  # 0: no round trip measured yet
        return False
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, NEAR_RCVBUF)
    return True


class _End:
    """One TCP socket in the reactor: readable feeds `out`, writable drains `into`."""

    def __init__(self, relay: SpliceRelay, transport: Any, name: str) -> None:
        self.relay = relay
        self.transport = transport
        self.name = name
        self.sock = socket.socket(fileno=os.dup(transport.fileno()))
        self.sock.setblocking(False)
        _nodelay(self.sock)
        self.near = near_rcvbuf(self.sock)
        self.fd = self.sock.fileno()
        self.out: _Direction | None = None
        self.into: _Direction | None = None
        self.reading = self.writing = False

    def fileno(self) -> int:
        return self.fd

    def logPrefix(self) -> str:
        return f"splice-{self.name}"

    def doRead(self) -> None:
        if self.out is not None:
            self.out.pump()

    def doWrite(self) -> None:
        if self.into is not None:
            self.into.pump()

    def connectionLost(self, reason: Any) -> None:
        self.relay.fail(f"{self.name}: {reason.getErrorMessage()}")

    def want(self, read: bool, write: bool) -> None:
        r = self.relay.reactor
        if read != self.reading:
            (r.addReader if read else r.removeReader)(self)
            self.reading = read
        if write != self.writing:
            (r.addWriter if write else r.removeWriter)(self)
            self.writing = write


class _Direction:
    """src → dst. Subclasses move the bytes (`_move`, `_flush`, `blocked`); the pending
    bytes (the buffered ClientHello, or what dst did not take) go first."""

    def __init__(self, relay: SpliceRelay, src: _End, dst: _End, pending: bytes,
                 count: Callable[[int], None]) -> None:  # fmt: skip
        self.relay = relay
        self.src, self.dst = src, dst
        src.out, dst.into = self, self
        # A view: what dst takes is dropped by slicing it, without copying the rest.
        self.pending = memoryview(pending)
        self.count = count
        self.eof = False
        self.shut = False

    def pump(self) -> None:
        """Move what can move now; then say which events this direction waits for."""
        try:
            self._move()
        except BlockingIOError:
            pass
        except OSError as e:
            self.relay.fail(f"{self.src.name} -> {self.dst.name}: {e.strerror}")
            return
        if self.eof and not self.blocked and not self.shut:
            self.shut = True
            try:
                self.dst.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        self.relay.update()

    def _move(self) -> None:
        raise NotImplementedError

    def _drain(self) -> bool:
        """Empty the pending bytes, then what the subclass holds, into dst; False if dst
        is full."""
        while self.pending:
            try:
                n = self.dst.sock.send(self.pending)
            except BlockingIOError:
                return False
            self.count(n)
            self.pending = self.pending[n:]
        return self._flush()

    def _flush(self) -> bool:
        return True

    @property
    def blocked(self) -> bool:
        return bool(self.pending)

    def close(self) -> None:
        pass


class _SpliceDirection(_Direction):
    """socket → pipe → socket with splice(2): the bytes never enter Python."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.pipe_r, self.pipe_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            self.cap = fcntl.fcntl(self.pipe_w, _F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:  # above /proc/sys/fs/pipe-max-size: keep the default
            self.cap = 65536
        self.inpipe = 0

    def _move(self) -> None:
        while self._drain() and not self.eof and self.inpipe < self.cap:
            room = self.cap - self.inpipe
            n = os.splice(self.src.fd, self.pipe_w, room, flags=_FLAGS)
            if n == 0:
                self.eof = True
            else:
                self.inpipe += n
                if n < SMALL_READ:  # src is empty: no splice that only says EAGAIN
                    self._drain()
                    return

    def _flush(self) -> bool:
        while self.inpipe:
            try:
                n = os.splice(self.pipe_r, self.dst.fd, self.inpipe, flags=_FLAGS)
            except BlockingIOError:
                return False
            self.inpipe -= n
            self.count(n)
        return True

    @property
    def blocked(self) -> bool:
        return bool(self.pending or self.inpipe)

    def close(self) -> None:
        for fd in (self.pipe_r, self.pipe_w):
            try:
                os.close(fd)
            except OSError:
                pass


class _CopyDirection(_Direction):
    """recv_into one buffer shared by every relay (the reactor runs one pump at a time),
    then send from it; only what dst does not take is kept (as `pending`), and src is
    not read again until it has gone (and a `SMALL_READ` ends the turn). Copies twice,
    but through a cache-hot buffer, and the sender's pages are freed at once (spliced
    pages stay referenced until the far side has read them, so the sender's kernel
    allocates fresh, cold ones)."""

    def _move(self) -> None:
        view = _SCRATCH_VIEW
        for _ in range(_COPY_ROUNDS):  # then let other connections have the reactor
            if not self._drain() or self.eof:
                return
            n = self.src.sock.recv_into(_SCRATCH)
            if n == 0:
                self.eof = True
                return
            try:
                sent = self.dst.sock.send(view[:n])
            except BlockingIOError:
                sent = 0
            if sent:
                self.count(sent)
            if sent < n:
                self.pending = memoryview(_SCRATCH[sent:n])  # copied: the buffer is shared
                return
            if n < SMALL_READ:  # src is empty: skip the recv that would only say EAGAIN
                return


class SpliceRelay:
    """Relays between the TCP transports `a` and `b`; `a_to_b` is written to b first (the
    buffered ClientHello). `count_ab`/`count_ba` get the bytes moved; `done(error)` once."""

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        a: Any,
        b: Any,
        *,
        a_to_b: bytes = b"",
        count_ab: Callable[[int], None] = lambda n: None,
        count_ba: Callable[[int], None] = lambda n: None,
        done: Callable[[str | None], None] = lambda error: None,
        mode: str = "splice",
    ) -> None:
        if mode not in RELAY_MODES:
            raise ValueError(f"relay mode {mode!r}: not one of {', '.join(RELAY_MODES)}")
        direction = _SpliceDirection if mode == "splice" else _CopyDirection
        self.reactor = reactor
        self._done = done
        self.finished = False
        for t in (a, b):  # the transports leave the reactor; our descriptors take over
            t.stopReading()
            t.stopWriting()
        self.a, self.b = _End(self, a, "endpoint"), _End(self, b, "manager")
        self.ab: _Direction = direction(self, self.a, self.b, a_to_b, count_ab)
        self.ba: _Direction = direction(self, self.b, self.a, b"", count_ba)
        self.ab.pump()
        self.ba.pump()

    def update(self) -> None:
        if self.finished:
            return
        if self.ab.shut and self.ba.shut:
            self._end(None)
            return
        for end, out, into in ((self.a, self.ab, self.ba), (self.b, self.ba, self.ab)):
            end.want(read=not out.eof and not out.blocked, write=into.blocked)

    def fail(self, why: str) -> None:
        if not self.finished:
            self._end(why)

    def _end(self, error: str | None) -> None:
        self.finished = True
        for end in (self.a, self.b):
            end.want(read=False, write=False)
            end.sock.close()
            # The original descriptor: an orderly close after a clean end (abort would
            # reset the connection and drop bytes still in the kernel's send buffer).
            if error is None:
                end.transport.loseConnection()
            else:
                end.transport.abortConnection()
        for d in (self.ab, self.ba):
            d.close()
        self._done(error)
