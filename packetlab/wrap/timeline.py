"""Per-connection timing: what the endpoint saw (`ConnTiming`, one JSON line each) and
the order and moment in which endpoint events are handed to the wrapped program
(`Timeline`).

A `Timeline` pairs a program action with the endpoint's time for it (an *anchor*: the
virtual time at which the program's bytes reached the wrapper, and the ntag time at which
the endpoint sent them). An endpoint event at endpoint time `t` is then due at virtual
time `anchor_v + (t - anchor_e)`: the program sees the interval the endpoint measured,
not the controller link's delay. Without a `VirtualClock` every event is delivered at
once (plain relaying). Events are always delivered in the order they came.
"""

from __future__ import annotations

import json
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from packetlab.wrap.vclock import VirtualClock


@dataclass(slots=True)
class ConnTiming:
    """One wrapped connection or UDP association. Times are endpoint ns since the epoch
    (None: did not happen); intervals are derived from them."""

    id: int
    proto: str  # "tcp" or "udp"
    host: str  # as the program asked (name or address)
    port: int
    addr: str | None = None  # the address the endpoint used
    dns_sent: int | None = None  # the endpoint's DNS query (ntag)
    dns_answered: int | None = None  # its answer (ndata)
    connect_start: int | None = None  # endpoint TIME just before the nopen
    connect_issued: int | None = None  # endpoint TIME just after it (connect() called)
    connected: int | None = None  # ESTABLISHED nstat
    request_sent: int | None = None  # ntag of the program's first bytes
    first_byte: int | None = None  # first ndata
    last_byte: int | None = None  # last ndata
    peer_closed: int | None = None  # PEERCLOSED nstat
    bytes_up: int = 0
    bytes_down: int = 0
    datagrams_up: int = 0
    datagrams_down: int = 0
    error: str | None = None
    hidden_ns: int = 0  # controller-link delay taken out of the program's clock (fidelity)
    extra: dict[str, Any] = field(default_factory=dict)

    def intervals(self) -> dict[str, int | None]:
        def diff(a: int | None, b: int | None) -> int | None:
            return None if a is None or b is None else a - b

        return {
            "dns_ns": diff(self.dns_answered, self.dns_sent),
            "connect_ns": diff(self.connected, self.connect_start),
            "handshake_ns": diff(self.connected, self.connect_issued),
            "first_byte_ns": diff(self.first_byte, self.request_sent),
            "transfer_ns": diff(self.last_byte, self.first_byte),
        }

    def to_json(self) -> str:
        obj = asdict(self)
        extra = obj.pop("extra")
        obj.update(self.intervals())
        obj.update(extra)
        return json.dumps(obj, sort_keys=True)


class TimingLog:
    """--timings FILE: one JSON line per finished connection, flushed as it ends."""

    def __init__(self, path: str | None) -> None:
        self._file = open(path, "w", encoding="utf-8") if path else None  # noqa: SIM115
        self._next = 0
        self.records: list[ConnTiming] = []
        self._finished: set[int] = set()  # ids: a record is one line, however it ends

    def new(self, proto: str, host: str, port: int) -> ConnTiming:
        self._next += 1
        return ConnTiming(self._next, proto, host, port)

    def finished(self, rec: ConnTiming) -> None:
        if rec.id in self._finished:
            return
        self._finished.add(rec.id)
        self.records.append(rec)
        if self._file is not None:
            self._file.write(rec.to_json() + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class Notices:
    """Lines for the user on stderr, one of each kind a run (a limit that reset or dropped
    the program's traffic: the program itself only sees a reset or silence)."""

    def __init__(self) -> None:
        self._said: set[str] = set()

    def say(self, kind: str, text: str) -> None:
        if kind not in self._said:
            self._said.add(kind)
            print(f"pktlab wrap: {text}", file=sys.stderr)


def send_now(transport: Any, data: bytes) -> None:
    """Write `data` to a TCP transport with the send() call made right now when nothing is
    buffered ahead of it, instead of at the event loop's next turn: with timing fidelity
    the program's clock was just set for this very moment. Falls back to write()."""
    sock: Any = getattr(transport, "socket", None)
    idle = (
        sock is not None
        and not transport.disconnecting
        and len(transport.dataBuffer) == transport.offset
        and not transport._tempDataBuffer
    )
    if idle:
        try:
            data = data[sock.send(data) :]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            pass  # write() meets the error again and handles it the Twisted way
    if data:
        transport.write(data)


class Timeline:
    """Delivers endpoint events to the program in order, each at its virtual due time."""

    def __init__(self, clock: VirtualClock | None, reactor: Any, rec: ConnTiming) -> None:
        self.clock = clock
        self._reactor = reactor
        self._rec = rec
        self._anchor: tuple[int, int] | None = None  # (virtual ns, endpoint ns)
        self._queue: deque[tuple[int | None, Callable[[], object]]] = deque()
        self._timer: Any = None

    def now(self) -> int:
        """The program's virtual time now (0 without a clock)."""
        return self.clock.virtual() if self.clock is not None else 0

    def acted(self, slot: int) -> int:
        """When the program did what we are handling (VirtualClock.acted; 0 without)."""
        return self.clock.acted(slot) if self.clock is not None else 0

    def anchor(self, virtual: int, endpoint: int) -> None:
        """The program acted at `virtual`; the endpoint carried it out at `endpoint`."""
        if self.clock is not None:
            self._anchor = (virtual, endpoint)

    def shift(self, endpoint_ns: int) -> None:
        """Move the anchor's virtual side later by an endpoint interval spent before the
        anchored endpoint time (a DNS lookup before the connect's TIME sample)."""
        if self._anchor is not None:
            v, e = self._anchor
            self._anchor = (v + endpoint_ns, e)

    def at(self, endpoint_time: int | None, deliver: Callable[[], object]) -> None:
        """Run `deliver` when the program's clock reaches the endpoint time (mapped
        through the anchor); at once without a clock or an anchor."""
        if self.clock is None:
            deliver()
            return
        self._queue.append((endpoint_time, deliver))
        if self._timer is None:
            self._pump()

    def _pump(self) -> None:
        self._timer = None
        assert self.clock is not None
        while self._queue:
            t, deliver = self._queue[0]
            if t is not None and self._anchor is not None:
                v, e = self._anchor
                before = self.clock.hidden
                wait = self.clock.due(v + (t - e))
                self._rec.hidden_ns += self.clock.hidden - before
                if wait > 0:
                    self._timer = self._reactor.callLater(wait / 1e9, self._pump)
                    return
            self._queue.popleft()
            deliver()

    def cancel(self) -> None:
        self._queue.clear()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
