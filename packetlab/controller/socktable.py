"""A controller session's sockets and tracked ntag tags, by id: the `Socket` of each
sktid (made on first use so callbacks can wait for an nopen), the ids being opened, and
the tags whose ntag fires a Deferred. Mixed into `EndpointSession`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from packetlab.controller.addresses import unpack_address
from packetlab.controller.errors import ControllerError, SessionClosed, SocketClosed
from packetlab.controller.sockets import Socket
from packetlab.wire import Nopen, Ntag
from packetlab.wire.constants import MAX_SKT_CNT


class SocketTable:
    """The session's `_sockets`, `_opening` and `_tags`; `EndpointSession` owns the state
    (made in its `__init__`) and the backpressure these report to."""

    if TYPE_CHECKING:
        reactor: Any
        max_notes: int
        max_bytes: int
        close_reason: ControllerError | None
        _dead: bool
        _sockets: dict[int, Socket]
        _opening: dict[int, tuple[int, int]]
        _tags: dict[int, tuple[int, Deferred[Ntag]]]
        _next_tag: int
        _full: set[Socket]

        def _closed_error(self) -> SessionClosed: ...
        def _pressure(self, sock: Socket, full: bool) -> None: ...
        def _update_pause(self) -> None: ...

    def socket(self, sktid: int) -> Socket:
        """The live `Socket` for `sktid`; made now (buffering, unknown family) if none is
        open, so callbacks can be attached before an nopen sent with `request()`. Once
        the session has ended it is an ended one (its `get()` gives None or the error)."""
        sock = self._sockets.get(sktid)
        if sock is None:
            if not 0 <= sktid < MAX_SKT_CNT:
                raise ValueError(f"sktid must be 0..255, got {sktid!r}")
            sock = self._new_socket(sktid, None, None, True)
            if self._dead:  # nothing more will come: its readers must not wait
                del self._sockets[sktid]
                reason = self.close_reason
                sock.end(None if reason is None else Failure(self._closed_error()))
        return sock

    def find_socket(self, sktid: int) -> Socket | None:
        """The live `Socket` for `sktid`, or None."""
        return self._sockets.get(sktid)

    def free_sktid(self) -> int:
        """The lowest sktid with no open or opening socket."""
        for sktid in range(MAX_SKT_CNT):
            if sktid not in self._opening and (
                sktid not in self._sockets or self._sockets[sktid].family is None
            ):
                return sktid
        raise ControllerError("all 256 socket ids are in use")

    def _new_socket(self, sktid: int, family: int | None, proto: int | None, buf: bool) -> Socket:
        sock = Socket(
            sktid,
            family,
            proto,
            self.reactor,
            buffering=buf,
            max_notes=self.max_notes,
            max_bytes=self.max_bytes,
            on_pressure=self._pressure,
        )
        self._sockets[sktid] = sock
        return sock

    def _kind_of(self, sktid: int) -> tuple[int | None, int | None]:
        """(family, proto) of socket `sktid`: open, or with its nopen still unanswered
        (requests pipelined behind an nopen need them); (None, None) if neither."""
        sock = self._sockets.get(sktid)
        if sock is not None and sock.family is not None:
            return sock.family, sock.proto
        return self._opening.get(sktid, (None, None))

    def _opened(self, msg: Nopen, buffering: bool) -> Socket:
        self._opening.pop(msg.sktid, None)
        sock = self._sockets.get(msg.sktid)
        if sock is not None and sock.family is None and not sock.ended:
            sock.family, sock.proto, sock.buffering = msg.family, msg.proto, buffering
        else:
            if sock is not None:
                sock.end()
            sock = self._new_socket(msg.sktid, msg.family, msg.proto, buffering)
        if msg.raddr is not None and msg.rport is not None:
            try:
                addr = unpack_address(msg.family, msg.raddr)
            except ValueError:
                pass
            else:
                host = f"[{addr}]" if addr.version == 6 else str(addr)
                sock.remote = f"{host}:{msg.rport}"
        return sock

    def _nopen_sent(self, msg: Nopen) -> None:
        self._opening[msg.sktid] = (msg.family, msg.proto)

    def _nopen_done(self, sktid: int) -> None:
        self._opening.pop(sktid, None)

    def _closed_socket(self, sktid: int) -> None:
        sock = self._sockets.pop(sktid, None)
        if sock is not None:
            sock.end()
            self._full.discard(sock)
            self._update_pause()
        for tag, (tsk, d) in list(self._tags.items()):
            if tsk == sktid:
                del self._tags[tag]
                d.errback(SocketClosed(sktid, f"ntag {tag}"))

    def _track_tag(self, sktid: int, tag: int | None = None) -> tuple[int, Deferred[Ntag]]:
        if tag is not None:
            if tag in self._tags:
                raise ValueError(f"tag {tag} is already waiting for its ntag")
        elif len(self._tags) >= 0xFFFF:
            raise ValueError("all 65535 ntag tags are waiting for their ntag")
        else:
            tag = self._next_tag
            while True:
                tag = tag % 0xFFFF + 1
                if tag not in self._tags:
                    break
            self._next_tag = tag
        # Cancelling (a timeout) forgets the tag, so a late ntag goes to the socket's queue.
        d: Deferred[Ntag] = Deferred(lambda _: self._untrack_tag(tag))
        self._tags[tag] = (sktid, d)
        return tag, d

    def _untrack_tag(self, tag: int) -> None:
        self._tags.pop(tag, None)
