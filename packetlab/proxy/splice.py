"""The socket relays, once an endpoint is routed (`RelayEnd` is the portable path).

Both TCP sockets leave Twisted's transports and are driven directly through duplicated
descriptors registered with the reactor; the transports are closed when the relay ends.
Per direction, in one of two modes:

* copy (the default): `recv_into` one buffer shared by every relay, then `send` from it;
  what the destination does not take is kept (at most one read) and the source is not
  read until it has gone;
* splice: splice(2) socket → pipe → socket (a pipe grown to `PIPE_SIZE`), the bytes
  never enter Python; while the pipe cannot be emptied the source is not read;
* sockmap: the kernel redirects each received skb to the peer's egress (`sockmap.py`);
  user space only moves what the program passes to it (backpressure), and forwards EOF.

Backpressure is the kernel's either way: a blocked direction watches its destination
for writability instead of its source for input. EOF is forwarded as a write shutdown
once nothing of that direction is held (per-direction half-close).
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

from . import sockmap

__all__ = ["COPY_CHUNK", "PIPE_SIZE", "RELAY_MODES", "SpliceRelay", "available"]

RELAY_MODES = ("copy", "splice", "sockmap")  # SpliceRelay's; "python" is RelayEnd (portable)

PIPE_SIZE = 1 << 20
COPY_CHUNK = 256 * 1024  # bytes per recv_into of the copy relay
# A read shorter than this ends the turn: it was a message, not a stream, so the socket
# is empty and another read would only say EAGAIN (level-triggered epoll calls again when
# more comes). After a longer read more is likely on its way: read on.
SMALL_READ = 16 * 1024
WATCH_BUSY, WATCH_IDLE = 0.002, 0.1  # sockmap: seconds between polls of the kernel's progress
_COPY_ROUNDS = 16  # recv/send pairs per readiness event before other connections' turn
_SCRATCH = bytearray(COPY_CHUNK)
_SCRATCH_VIEW = memoryview(_SCRATCH)
_TCP_NOTSENT_LOWAT = 25
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


class _End:
    """One TCP socket in the reactor: readable feeds `out`, writable drains `into`."""

    def __init__(self, relay: SpliceRelay, transport: Any, name: str) -> None:
        self.relay = relay
        self.transport = transport
        self.name = name
        self.sock = socket.socket(fileno=os.dup(transport.fileno()))
        self.sock.setblocking(False)
        _nodelay(self.sock)
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
        self.pending = pending
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

    @property
    def wants_read(self) -> bool:
        return not self.eof and not self.blocked

    @property
    def wants_write(self) -> bool:
        return self.blocked

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
                self.pending = bytes(view[sent:n])
                return
            if n < SMALL_READ:  # src is empty: skip the recv that would only say EAGAIN
                return


class _SockmapDirection(_Direction):
    """The kernel redirects src's skbs to dst (`sockmap`); what the program passes to src's
    own queue instead (dst too far behind, or not yet released) is moved here like the copy
    relay, but only once dst's psock queue has drained, so bytes keep their order. The
    counts: `read`/`wrote` by user space since the start, against TCP_INFO of both."""

    slot = -1

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        assert self.relay.sockmap is not None
        self.sm: sockmap.Sockmap = self.relay.sockmap
        self.read = self.wrote = 0
        self.full = False  # dst said EAGAIN: wait for it to be writable
        self.timer: Any = None
        # Read what src holds now first: the verdict path hands the program whole skbs, so
        # one that was partly read already (Twisted's last read ended inside it) would be
        # relayed again from its start. Exactly what is queued now (at most src's receive
        # buffer): what arrives later comes in whole skbs.
        left = sockmap.unread(self.src.sock)
        while left > 0:
            chunk = self.src.sock.recv(min(left, COPY_CHUNK))
            self.pending += chunk
            left -= len(chunk)
            if not chunk:
                self.eof = True
                break
        while True:  # bytes received but not read before the kernel takes over
            r1 = sockmap.tcp_counts(self.src.sock)[1]
            queued = sockmap.unread(self.src.sock)
            if sockmap.tcp_counts(self.src.sock)[1] == r1:
                break
        self.rcvd0 = r1 - queued
        self.outbase = self.dst_written0 = sockmap.tcp_counts(self.dst.sock)[0]
        self.released = (-1, -1)
        self.raw = -1  # bytes we read that the program never saw; -1: not known yet
        self.counted = 0  # redirected bytes given to count()
        self.last_out = -1

    def redirected_out(self) -> int:
        """Bytes the kernel has put into dst for us (not counting what user space wrote)."""
        fin = 1 if self.shut else 0  # our FIN takes a sequence number too
        return sockmap.tcp_counts(self.dst.sock)[0] - self.dst_written0 - self.wrote - fin

    def poll(self) -> bool:
        """Counts what the kernel moved since the last poll, and kicks dst's psock if it
        has stalled; True while that psock still holds bytes."""
        out = self.redirected_out()
        if out > self.counted:
            self.count(out - self.counted)
            self.counted = out
        if out == self.sm.counters(self.slot)[0]:
            self.last_out = -1
            return False
        if out == self.last_out:
            # The psock's worker stops when dst's buffer is half full and waits for write
            # space, but that is only signalled to a sender that saw EAGAIN: with dst's
            # queue drained it would wait forever. Setting TCP_NOTSENT_LOWAT (to what it
            # is) calls sk_write_space, which restarts the worker.
            lowat = self.dst.sock.getsockopt(socket.IPPROTO_TCP, _TCP_NOTSENT_LOWAT)
            self.dst.sock.setsockopt(socket.IPPROTO_TCP, _TCP_NOTSENT_LOWAT, lowat)
        self.last_out = out
        return True

    def caught_up(self) -> bool:
        return self.redirected_out() == self.sm.counters(self.slot)[0]

    def pump(self) -> None:
        try:
            self._move()
        except BlockingIOError:
            pass
        except OSError as e:
            self.relay.fail(f"{self.src.name} -> {self.dst.name}: {e.strerror}")
            return
        if self.eof and not self.pending and not self.shut:
            if self.caught_up():
                self.shut = True
                try:
                    self.dst.sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
            else:  # redirected bytes still on dst's psock queue: the FIN goes after them
                self._later()
        self.relay.update()

    def _move(self) -> None:
        for _ in range(_COPY_ROUNDS):
            if self.pending:
                if not self.caught_up():
                    self._later()
                    return
                self.full = False
                while self.pending:
                    try:
                        n = self.dst.sock.send(self.pending)
                    except BlockingIOError:
                        self.full = True
                        return
                    self.wrote += n
                    self.count(n)
                    self.pending = self.pending[n:]
            if self.eof:
                return
            try:
                n = self.src.sock.recv_into(_SCRATCH)
            except BlockingIOError:
                self._release()
                return
            if n == 0:
                self.eof = True
                return
            self.read += n
            self.pending = bytes(_SCRATCH_VIEW[:n])
        if self.pending:  # out of rounds: the other connections' turn, then ours again
            self._later(0)

    def _release(self) -> None:
        """src is empty and all we read is in dst: once we have read every passed byte,
        let the kernel redirect again (consumed := passed), what we wrote counted as dst's.
        The first time, bytes queued before the program saw src (read by us, never
        passed) are told apart by TCP_INFO: every byte received must be read or
        redirected; afterwards every byte we read was passed."""
        redirected, passed = self.sm.counters(self.slot)
        if self.raw < 0:
            received = sockmap.tcp_counts(self.src.sock)[1] - self.rcvd0
            if received - self.read - redirected != 0:  # passed bytes on their way to us
                self._later(0.01)
                return
            self.raw = self.read - passed
        elif self.read - self.raw != passed:  # on their way: src becomes readable
            return
        state = (passed, self.dst_written0 + self.wrote)
        if state != self.released:
            self.sm.release(self.slot, *state)
            self.released = state

    def _later(self, delay: float = 0.002) -> None:
        if self.timer is None and not self.relay.finished:
            self.timer = self.relay.reactor.callLater(delay, self._tick)

    def _tick(self) -> None:
        self.timer = None
        if not self.relay.finished:
            self.pump()

    @property
    def wants_write(self) -> bool:
        return bool(self.pending) and self.full

    def close(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None


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
        direction = {"splice": _SpliceDirection, "copy": _CopyDirection,
                     "sockmap": _SockmapDirection}[mode]  # fmt: skip
        self.sockmap = sockmap.shared() if mode == "sockmap" else None
        self.slots: tuple[int, int] | None = None
        self.reactor = reactor
        self._done = done
        self.finished = False
        for t in (a, b):  # the transports leave the reactor; our descriptors take over
            t.stopReading()
            t.stopWriting()
        self.a, self.b = _End(self, a, "endpoint"), _End(self, b, "manager")
        self.ab: _Direction = direction(self, self.a, self.b, a_to_b, count_ab)
        self.ba: _Direction = direction(self, self.b, self.a, b"", count_ba)
        if self.sockmap is not None:
            assert isinstance(self.ab, _SockmapDirection) and isinstance(self.ba, _SockmapDirection)
            try:
                self.slots = self.sockmap.pair(self.a.sock, self.b.sock, self.ab.outbase,
                                               self.ba.outbase)  # fmt: skip
            except OSError as e:
                # Not ESTABLISHED any more (a FIN came already: EOPNOTSUPP), or every slot
                # taken: this splice copies instead, from where the sockmap one was.
                self.log.info("sockmap: {e}; copy relay for this splice", e=e.strerror)
                self.sockmap = None
                old = (self.ab, self.ba)
                self.ab = _CopyDirection(self, self.a, self.b, old[0].pending, count_ab)
                self.ba = _CopyDirection(self, self.b, self.a, old[1].pending, count_ba)
                self.ab.eof, self.ba.eof = old[0].eof, old[1].eof
            else:
                self.ab.slot, self.ba.slot = self.slots
                self._watch()
        self.ab.pump()
        self.ba.pump()

    _watch_call: Any = None
    _watch_delay = WATCH_IDLE

    def _watch(self) -> None:
        """sockmap: poll the kernel's progress (counters, stalled psocks), often while it
        holds bytes, backing off to `WATCH_IDLE` when it holds none."""
        self._watch_call = None
        if self.finished:
            return
        try:
            busy = [d.poll() for d in (self.ab, self.ba) if isinstance(d, _SockmapDirection)]
        except OSError as e:
            self.fail(f"sockmap: {e.strerror}")
            return
        self._watch_delay = WATCH_BUSY if any(busy) else min(self._watch_delay * 2, WATCH_IDLE)
        self._watch_call = self.reactor.callLater(self._watch_delay, self._watch)

    def update(self) -> None:
        if self.finished:
            return
        if self.ab.shut and self.ba.shut:
            self._end(None)
            return
        for end, out, into in ((self.a, self.ab, self.ba), (self.b, self.ba, self.ab)):
            end.want(read=out.wants_read, write=into.wants_write)

    def fail(self, why: str) -> None:
        if not self.finished:
            self._end(why)

    def _end(self, error: str | None) -> None:
        self.finished = True
        if self.sockmap is not None and self.slots is not None:
            if self._watch_call is not None and self._watch_call.active():
                self._watch_call.cancel()
            for d in (self.ab, self.ba):  # the last of what the kernel relayed, counted
                assert isinstance(d, _SockmapDirection)
                try:
                    d.poll()
                except OSError:
                    pass
            self.sockmap.unpair(self.a.sock, self.b.sock, *self.slots)
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
