"""One end of a splice: bytes in on one TCP connection go out on the other.

Backpressure as Twisted's `protocols/portforward`: each transport is registered as the
streaming producer of the other, so a slow reader pauses the fast writer's source. A FIN
is forwarded as a write shutdown (per-direction half-close); a side whose read and write
directions are both done is closed; an abort on one side closes the other after its
pending bytes are flushed.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = ["NOTSENT_LOWAT", "RelayEnd", "tune"]

# Unsent bytes a relayed socket may hold in the kernel (TCP_NOTSENT_LOWAT). Left alone,
# Linux lets a relay queue up to the whole send buffer (tcp_wmem's maximum, 4 MiB) of bytes
# its peer's window has no room for yet; those are then pushed out later by the *peer's*
# window-update ACKs, i.e. in the reading process's own system calls (the sink of a bulk
# transfer pays the proxy's transmit work), and cost kernel memory per splice. Bytes in
# flight (sent, not yet acknowledged) do not count, so a long fast path keeps its window;
# at 1 MiB a 10 Gbit/s link has ~0.8 ms of bytes queued for the relay's next wake-up.
NOTSENT_LOWAT = 1 << 20
_TCP_OPTIONS = [(socket.TCP_NODELAY, 1)]  # a small message goes at once (no Nagle wait)
if hasattr(socket, "TCP_NOTSENT_LOWAT"):  # Linux, macOS
    _TCP_OPTIONS.append((socket.TCP_NOTSENT_LOWAT, NOTSENT_LOWAT))


def tune(sock: Any) -> None:
    """The TCP options of every relayed socket (`_TCP_OPTIONS`); a socket that is not TCP
    (tests relay over socketpairs) is left as it is."""
    for opt, value in _TCP_OPTIONS:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, opt, value)
        except OSError:
            return


@implementer(IHalfCloseableProtocol)
class RelayEnd(Protocol):
    """Subclasses call `splice(other)` once both connections are up; until then they
    handle `dataReceived` etc. themselves and call the `relay_*` methods once spliced."""

    peer: RelayEnd | None = None
    spliced = False
    _read_eof = False
    _write_closed = False
    _gone = False

    def splice(self, other: RelayEnd) -> None:
        self.peer, other.peer = other, self
        self.spliced = other.spliced = True
        mine, theirs = self._t(), other._t()
        for t in (mine, theirs):
            handle = getattr(t, "getHandle", None)
            if handle is not None:
                tune(handle())
        mine.registerProducer(theirs, True)
        theirs.registerProducer(mine, True)

    def count(self, n: int) -> None:
        """Called with the size of every chunk relayed from this side (for counters)."""

    def unspliced(self, reason: str) -> None:
        """Called once when this end is gone (for counters and logs)."""

    # -- relaying --

    def relay_data(self, data: bytes) -> None:
        if self.peer is not None and not self.peer._gone:
            self.count(len(data))
            self.peer._t().write(data)

    def relay_eof(self) -> None:
        self._read_eof = True
        peer = self.peer
        if peer is not None and not peer._gone:
            peer._t().unregisterProducer()  # nothing more comes from us
            peer._t().loseWriteConnection()
        self._maybe_close()

    def relay_lost(self, reason: Failure) -> None:
        self._gone = True
        peer = self.peer
        if peer is not None and not peer._gone:
            peer._t().unregisterProducer()
            peer._t().loseConnection()
        self.unspliced(reason.getErrorMessage())

    # -- IHalfCloseableProtocol (spliced) --

    def writeConnectionLost(self) -> None:
        self._write_closed = True
        self._maybe_close()

    def _maybe_close(self) -> None:
        if self._read_eof and self._write_closed:
            self._t().loseConnection()

    def _t(self) -> Any:
        return self.transport

    # Default behaviour when spliced; subclasses route here.
    def dataReceived(self, data: bytes) -> None:
        self.relay_data(data)

    def readConnectionLost(self) -> None:
        self.relay_eof()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.relay_lost(reason)
