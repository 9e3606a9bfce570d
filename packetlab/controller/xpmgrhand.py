"""`pktlab xpmgr -s`: handing endpoints to the singleton mlet without blocking (session 29).

Each endpoint's socket goes to the singleton over its control socket (its fd 0) with
SCM_RIGHTS, the payload being the address, NUL-terminated (PROTOCOL.md §7.3). Before
session 29 that was a blocking `send_fds` with a 5 s timeout: a singleton that stopped
reading its control socket stalled the whole manager 5 s per endpoint once the socket's
buffer was full (every other endpoint's relay, the progress, SIGINT), and with hundreds
arriving, for minutes.

Now the socket is non-blocking: what the kernel does not take waits here, in order, each
endpoint's socket a duplicated descriptor, and is written when the socket is writable
(each payload and its descriptor in one `sendmsg`, as the reference does). At most
`QUEUE_MAX` wait: the next endpoint is refused (`Full`), and its session closed by the
caller. The kernel's own buffer is kept small (`CONTROL_SNDBUF`): it holds endpoints no
one sees, about a dozen at this size (278 at the default 208 KiB).
"""

from __future__ import annotations

import errno
import os
import socket
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from twisted.python.failure import Failure

__all__ = ["CONTROL_SNDBUF", "QUEUE_MAX", "Full", "HandOver"]

#: Endpoints that may wait for a singleton that does not read its control socket.
QUEUE_MAX = 64
#: The control socket's send buffer (bytes; Linux doubles it): 11 endpoints in flight.
CONTROL_SNDBUF = 4096

K = TypeVar("K", bound=Hashable)


class Full(Exception):
    """`QUEUE_MAX` endpoints already wait for the singleton."""


class Deaf(Exception):
    """The singleton closed its end of the control socket."""


@dataclass
class _Item(Generic[K]):
    key: K
    fd: int  # our duplicate of the endpoint's socket, closed once sent or dropped
    payload: bytes


class HandOver(Generic[K]):
    """The singleton's control socket and the endpoints waiting for it. `on_sent(key)`
    is called for each waiting endpoint once the singleton's socket took it,
    `on_failed(key, error)` if sending it failed otherwise (ETOOMANYREFS: too many
    descriptors in flight), and `on_deaf()` once, when the singleton closed its end (the
    waiting ones are then the caller's: `close`)."""

    def __init__(
        self,
        reactor: Any,
        sock: socket.socket,
        on_sent: Callable[[K], None],
        on_deaf: Callable[[], None],
        on_failed: Callable[[K, OSError], None],
        cap: int = QUEUE_MAX,
    ) -> None:
        self.reactor = reactor
        self.sock = sock
        self.on_sent = on_sent
        self.on_deaf = on_deaf
        self.on_failed = on_failed
        self.cap = cap
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, CONTROL_SNDBUF)
        sock.setblocking(False)
        self._queue: deque[_Item[K]] = deque()
        self._writing = False
        self._closed = False

    def __len__(self) -> int:
        return len(self._queue)

    def __contains__(self, key: object) -> bool:
        return any(item.key == key for item in self._queue)

    def hand(self, key: K, fd: int, payload: bytes) -> bool:
        """Send `fd` with `payload` now (True), or keep a duplicate of `fd` to send when
        the socket takes it (False). Raises `Full`, `Deaf`, or OSError (this endpoint)."""
        if self._queue:  # in order: the waiting ones first
            if len(self._queue) >= self.cap:
                raise Full(f"{len(self._queue)} endpoints already wait for it")
        elif self._send(fd, payload):
            return True
        self._queue.append(_Item(key, os.dup(fd), payload))
        if not self._writing:
            self._writing = True
            self.reactor.addWriter(self)
        return False

    def _send(self, fd: int, payload: bytes) -> bool:
        """One payload and its descriptor in one `sendmsg`: True if sent, False if the
        socket is full. A Unix stream socket takes a message this small whole or not at
        all (one buffer); a short count would split the address from its descriptor."""
        try:
            sent = socket.send_fds(self.sock, [payload], [fd])
        except (BlockingIOError, InterruptedError):
            return False
        except (BrokenPipeError, ConnectionResetError):
            raise Deaf() from None
        if sent < len(payload):  # not seen on Linux; said, rather than a torn address
            raise OSError(errno.EMSGSIZE, f"the singleton's socket took {sent} of "
                          f"{len(payload)} bytes of the address")  # fmt: skip
        return True

    def drop(self, key: K) -> bool:
        """Take `key` out of the queue (its endpoint ended while waiting)."""
        for item in self._queue:
            if item.key == key:
                self._queue.remove(item)
                os.close(item.fd)
                self._idle()
                return True
        return False

    # IWriteDescriptor: the reactor calls doWrite once the socket is writable.

    def fileno(self) -> int:
        return -1 if self._closed else self.sock.fileno()

    def logPrefix(self) -> str:
        return "singleton-control"

    def doWrite(self) -> None:
        while self._queue:
            item = self._queue[0]
            error: OSError | None = None
            try:
                if not self._send(item.fd, item.payload):
                    return
            except Deaf:
                self._idle(force=True)
                self.on_deaf()
                return
            except OSError as e:  # this endpoint only: it was not taken
                error = e
            self._queue.popleft()
            os.close(item.fd)
            if error is None:
                self.on_sent(item.key)
            else:
                self.on_failed(item.key, error)
        self._idle()

    def connectionLost(self, reason: Failure) -> None:
        self._idle(force=True)

    def _idle(self, force: bool = False) -> None:
        if self._writing and (force or not self._queue):
            self._writing = False
            self.reactor.removeWriter(self)

    def close(self) -> list[K]:
        """Close the control socket (EOF to the singleton: no more endpoints); the keys
        still waiting are returned, in order, their descriptors closed."""
        self._idle(force=True)
        waiting = [item.key for item in self._queue]
        for item in self._queue:
            os.close(item.fd)
        self._queue.clear()
        if not self._closed:
            self._closed = True
            self.sock.close()
        return waiting
