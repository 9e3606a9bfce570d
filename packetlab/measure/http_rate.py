"""curl's --limit-rate for `packetlab.measure.http`: a hop's bytes held to an average rate
from its start, as curl averages (progress.c's Curl_pgrsLimitWaitTime).

Download: from the request on, the socket's NDATA and NSTAT notifications are masked
(PROTOCOL.md §2.4; NSTAT too, so that a peer's close stays behind the data it ends, in
one queue). The endpoint holds what it reads, up to the socket's rbufsz (small for a paced
hop: `rbufsz_for`), then stops reading: the kernel's receive buffer fills and the server
sees the TCP window close, as against curl, which stops reading its socket. Each read
first waits until the bytes so far are within the rate, then grants what is held (an
mwrite that clears the mask and one that sets it again, handled back to back: at most
rbufsz comes) once what came of the last one was read, and waits for it, granting again
now and then while nothing came (nothing was held yet, or it is on its way).
The endpoint's ndata stamps are when it read the bytes, so the times stay the server's.
Upload: each send waits until the bytes before it are within the rate.

HTTP/2 (`StreamPace`): each stream on its own, both ways, as curl paces each transfer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet.task import deferLater

from packetlab.clockstep import steady
from packetlab.controller import DEFAULT_RBUFSZ, EndpointSession, set_notifmask
from packetlab.measure.stream import Chunk, StreamTimeout, TcpStream
from packetlab.wire.constants import NotifMask

MIN_RBUFSZ = 16 << 10  # curl's own buffer (CURL_MAX_WRITE_SIZE) is 16 KiB
HELD = NotifMask.NDATA | NotifMask.NSTAT
POLL = (0.001, 0.05)  # s between grants while nothing comes: first, at most (doubling)


def rbufsz_for(rate: int) -> int:
    """The endpoint's receive budget of a connection paced at `rate` bytes/s: about a
    quarter second of it (what one grant lets through), 16 KiB to the default."""
    return DEFAULT_RBUFSZ if not rate else max(MIN_RBUFSZ, min(DEFAULT_RBUFSZ, rate // 4))


@dataclass(slots=True)
class Pace:
    """One hop's bytes against `rate` (bytes/s) from `start` (reactor seconds)."""

    stream: TcpStream
    rate: int
    start: float
    received: int = 0
    sent: int = 0
    engaged: bool = False  # the endpoint holds this socket's ndata until granted

    @property
    def session(self) -> EndpointSession:
        return self.stream.session

    def _ahead(self, count: int) -> float:
        return count / self.rate - (steady(self.session.reactor) - self.start)

    async def _sleep(self, seconds: float, deadline: float) -> None:
        clock = self.session.reactor
        left = min(seconds, deadline - steady(clock))
        if left > 0:
            await deferLater(clock, left, lambda: None)

    def _mask(self, mask: NotifMask | int) -> None:
        set_notifmask(self.session, self.stream.sktid, mask).addErrback(lambda _: None)

    def engage(self) -> None:
        """Before the request goes: the endpoint holds what the server sends from now."""
        if not self.engaged:
            self.engaged = True
            self._mask(HELD)

    def release(self) -> None:
        """The hop is over: what is held goes, nothing more is held (a later hop may
        reuse the connection unpaced)."""
        if self.engaged:
            self.engaged = False
            self._mask(0)

    async def recv(self, deadline: float) -> Chunk | None:
        """The next chunk, once the rate lets it come (raises StreamTimeout at `deadline`)."""
        clock = self.session.reactor
        began = steady(clock)
        await self._sleep(self._ahead(self.received), deadline)
        poll = POLL[0]
        while True:
            s = self.stream
            if self.engaged and not s._buffer and not s.sock.queued:
                # a grant (nothing granted before is left here): what is held goes, the
                # next reads are held again
                self._mask(0)
                self._mask(HELD)
            left = deadline - steady(clock)
            try:
                chunk = await self.stream.recv(max(min(poll, left), 0.0) if self.engaged else
                                               max(left, 0.0))  # fmt: skip
            except StreamTimeout:
                if not self.engaged:
                    raise
                if steady(clock) >= deadline:
                    raise StreamTimeout(f"nothing from {s.raddr}:{s.rport} within "
                                        f"{deadline - began:g} s") from None  # fmt: skip
                poll = min(poll * 2, POLL[1])
                continue
            if chunk is not None:
                self.received += len(chunk.data)
            return chunk

    async def send(self, n: int, deadline: float) -> None:
        """Before `n` more bytes go: wait until the bytes sent so far are within the rate."""
        await self._sleep(self._ahead(self.sent), deadline)
        self.sent += n


class StreamPace:
    """--limit-rate over HTTP/2, each stream (each transfer, as curl's) on its own: its
    body bytes taken in (a download) or framed (an upload) at most at `rate` on average
    from its start. A download's server is held by the stream's flow-control window
    (`H2Framing.grant`: opened again only for what was taken), an upload by framing the
    stream's next chunk only when `ahead` is over, not by the connection's socket, which
    the other streams share."""

    def __init__(self, clock: Any, rate: int) -> None:
        self.clock, self.rate = clock, rate
        self.start = steady(clock)
        self.count = 0  # the stream's body bytes so far

    def ahead(self) -> float:
        """Seconds until the bytes so far are within the rate (0 or less: now)."""
        return self.count / self.rate - (steady(self.clock) - self.start)

    async def wait(self, n: int, deadline: float) -> None:
        """Before `n` more bytes are taken: until the bytes so far are within the rate
        (the last chunk goes at (N - n)/rate, as curl's)."""
        left = min(self.ahead(), deadline - steady(self.clock))
        if left > 0:
            await deferLater(self.clock, left, lambda: None)
        self.count += n
