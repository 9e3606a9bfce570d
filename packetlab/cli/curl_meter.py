"""curl 7.88's parallel progress meter (src/tool_progress.c), for `pktlab run http -Z`
with -w: a header line, then one line redrawn in place (`\\r`) at most every half
second, its last form ended by a newline, on stderr, as curl draws it with -Z (also
off a terminal; not with -s or --no-progress-meter, nor when a body goes to stdout on
a terminal)::

    DL% UL%  Dled  Uled  Xfers  Live Total     Current  Left    Speed
    100 --   390k     0     2     0   0:00:03  0:00:03 --:--:--   99k

DL%/UL%: the bytes so far of all the sizes known (-- while one transfer's is not);
Dled/Uled: bytes (k, M, G as curl's max5data); Xfers: transfers started; Live: running;
Total/Left: the estimate from the speed (curl's: the higher of download and upload,
over the last ten draws); Current: seconds since the start.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from packetlab.clockstep import steady

__all__ = ["HEADER", "Meter", "Transfer", "max5data", "time2str"]

HEADER = "DL% UL%  Dled  Uled  Xfers  Live Total     Current  Left    Speed\n"
EVERY = 0.5  # s: curl draws when more than 500 ms passed since the last line
SPEEDCNT = 10  # curl's speed samples


def max5data(n: int) -> str:
    """curl's max5data: `n` bytes in at most 5 columns."""
    k, m, g, t = 1 << 10, 1 << 20, 1 << 30, 1 << 40
    if n < 100000:
        return f"{n:5d}"
    if n < 10000 * k:
        return f"{n // k:4d}k"
    if n < 100 * m:
        return f"{n // m:2d}.{(n % m) // (m // 10)}M"
    if n < 10000 * m:
        return f"{n // m:4d}M"
    if n < 100 * g:
        return f"{n // g:2d}.{(n % g) // (g // 10)}G"
    if n < 10000 * g:
        return f"{n // g:4d}G"
    if n < 10000 * t:
        return f"{n // t:4d}T"
    return f"{n // (1 << 50):4d}P"


def time2str(seconds: int) -> str:
    """curl's time2str: 8 columns, `--:--:--` for none."""
    if seconds <= 0:
        return "--:--:--"
    h = seconds // 3600
    if h <= 99:
        m = (seconds - h * 3600) // 60
        return f"{h:2d}:{m:02d}:{seconds - h * 3600 - m * 60:02d}"
    d = seconds // 86400
    if d <= 999:
        return f"{d:3d}d {(seconds - d * 86400) // 3600:02d}h"
    return f"{d:7d}d"


@dataclass(eq=False)
class Transfer:
    """One transfer's counters as curl's xferinfo callback gives them (0: not known);
    `hop` is the request in flight (packetlab.measure.http's, through `on_hop`: its
    `body_len`, `uploaded`, `headers` read at each line), `ultotal` its upload's size."""

    ultotal: int = 0
    hop: Any = None
    dltotal_added: bool = False
    ultotal_added: bool = False

    def follow(self, hop: Any) -> None:
        self.hop = hop

    def dlnow(self) -> int:
        return int(getattr(self.hop, "body_len", 0))

    def ulnow(self) -> int:
        return int(getattr(self.hop, "uploaded", 0))

    def ultotal_now(self) -> int:
        """The upload's size as curl's xferinfo callback gives it: 0 (not known) until
        the request went out (curl sets it when it sends the request), so that a first
        line drawn while connecting says `--` as curl's."""
        return self.ultotal if getattr(self.hop, "sent", None) is not None else 0

    def dltotal(self) -> int:
        """The response's Content-Length (0 before its head, or without one)."""
        headers = getattr(self.hop, "headers", None) or []
        value = next((v for k, v in headers if k.lower() == "content-length"), "").strip()
        return int(value) if value.isdigit() else 0


@dataclass
class Meter:
    """The meter of one -Z run: `add` a transfer when it starts, `done` when it ends,
    `draw(now)` from a timer (the first call prints the header), `draw(now, final=True)`
    at the end."""

    out: TextIO
    start: float
    live: list[Transfer] = field(default_factory=list)
    xfers: int = 0
    dlalready: int = 0
    ulalready: int = 0
    dltotal: int = 0
    ultotal: int = 0
    header: bool = False
    stamp: float | None = None
    speeds: list[tuple[int, int, float]] = field(default_factory=lambda: [(0, 0, 0.0)] * SPEEDCNT)
    index: int = 0
    wrapped: bool = False

    def add(self, t: Transfer) -> None:
        self.live.append(t)
        self.xfers += 1

    def done(self, t: Transfer) -> None:
        # its sizes counted even if it ended between two lines (curl adds them only when
        # it draws: its last line could say -- or over 100% after a short transfer)
        if not t.dltotal_added and t.dltotal():
            self.dltotal += t.dltotal()
        if not t.ultotal_added and t.ultotal:
            self.ultotal += t.ultotal
        self.dlalready += t.dlnow()
        self.ulalready += t.ulnow()
        self.live.remove(t)

    def line(self, now: float, final: bool = False) -> str:
        """curl 7.88's progress_meter line (its state, the speed samples, advance)."""
        dlnow, ulnow = self.dlalready, self.ulalready
        dlknown = ulknown = True
        for t in self.live:
            dlnow += t.dlnow()
            ulnow += t.ulnow()
            total = t.dltotal()
            if not total:
                dlknown = False
            elif not t.dltotal_added:
                self.dltotal += total
                t.dltotal_added = True
            if not t.ultotal_now():
                ulknown = False
            elif not t.ultotal_added:
                self.ultotal += t.ultotal
                t.ultotal_added = True
        dlpct = f"{dlnow * 100 // self.dltotal:3d}" if dlknown and self.dltotal else "--"
        ulpct = f"{ulnow * 100 // self.ultotal:3d}" if ulknown and self.ultotal else "--"
        self.speeds[self.index] = (dlnow, ulnow, now)
        self.index += 1
        if self.index >= SPEEDCNT:
            self.wrapped, self.index = True, 0
        # the oldest sample once ten were taken, else the start
        base = self.speeds[self.index] if self.wrapped else (0, 0, self.start)
        ms = round((now - base[2]) * 1000)
        dls = int((dlnow - base[0]) / (ms / 1000)) if ms > 0 else 0
        uls = int((ulnow - base[1]) / (ms / 1000)) if ms > 0 else 0
        speed = max(dls, uls)
        if dlknown and speed:
            left, total_t = (self.dltotal - dlnow) // speed, self.dltotal // speed
        else:
            left = total_t = 0
        spent = round((now - self.start) * 1000) // 1000
        return (
            f"\r{dlpct:<3s} {ulpct:<3s} {max5data(dlnow)} {max5data(ulnow)} "
            f"{self.xfers:5d} {len(self.live):5d}  {time2str(total_t)} {time2str(spent)} "
            f"{time2str(left)} {max5data(speed)} {chr(10) if final else '':>5s}"
        )

    def draw(self, now: float, final: bool = False) -> None:
        if not self.header:
            self.header = True
            self.out.write(HEADER)
        if final or self.stamp is None or now - self.stamp > EVERY:
            self.stamp = now
            self.out.write(self.line(now, final))
        self.out.flush()


def start(reactor: Any, out: TextIO) -> tuple[Meter, Callable[[], None]]:
    """A meter drawn at once (once the transfers added so far started) and every half
    second on `reactor`; the function returned ends it (the final line)."""
    meter = Meter(out, steady(reactor))
    call: list[Any] = [None]

    def tick() -> None:
        meter.draw(steady(reactor))
        call[0] = reactor.callLater(EVERY + 0.001, tick)

    def stop() -> None:
        if call[0] is not None and call[0].active():
            call[0].cancel()
        meter.draw(steady(reactor), final=True)

    # the first line once the transfers started (curl: after its first poll)
    call[0] = reactor.callLater(0, tick)
    return meter, stop
