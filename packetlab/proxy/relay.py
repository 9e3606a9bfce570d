"""One end of a splice: bytes in on one TCP connection go out on the other.

Backpressure as Twisted's `protocols/portforward`: each transport is registered as the
streaming producer of the other, so a slow reader pauses the fast writer's source. A FIN
is forwarded as a write shutdown (per-direction half-close); a side whose read and write
directions are both done is closed; an abort on one side closes the other after its
pending bytes are flushed.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from .splice import near_rcvbuf

__all__ = ["RelayEnd"]


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
        for t in (mine, theirs):  # no Nagle delay on a relayed small message
            set_nodelay = getattr(t, "setTcpNoDelay", None)
            if set_nodelay is not None:
                try:
                    set_nodelay(True)
                except OSError:
                    pass
            handle = getattr(t, "getHandle", None)
            if handle is not None:  # a near peer: a fixed receive buffer (see splice.py)
                near_rcvbuf(handle())
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
