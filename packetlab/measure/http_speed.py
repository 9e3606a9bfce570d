"""curl's -Y/--speed-limit and -y/--speed-time for `packetlab.measure.http`: a transfer
whose speed stays under LIMIT bytes/s for TIME seconds ends with curl's (28) "Operation
too slow. Less than LIMIT bytes/sec transferred the last TIME seconds".

As libcurl 7.88's speedcheck.c over progress.c's current speed: the speed is the body's
bytes (received and sent) over the last 5 s (less at the start: from the request), taken
at each read and once a second from the request on; the first time it is under LIMIT
starts the count, any time at LIMIT or over ends it. At the request the speed is 0, so a
server that never answers ends after TIME s, as curl's. curl takes its samples at wall
clock seconds, ours at whole seconds from the request: the end may come up to a second
apart from curl's (`test_http_curl28.py` pins the outcome, not the millisecond)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

WINDOW = 5  # s: curl's CURR_TIME - 1, the span its current speed is averaged over


class TooSlow(Exception):
    """The speed stayed under the limit for the time: curl's (28)."""

    def __init__(self, limit: int, time: int) -> None:
        self.limit, self.time = limit, time
        self.said = (f"Operation too slow. Less than {limit} bytes/sec transferred the "
                     f"last {time} seconds")  # fmt: skip
        super().__init__(self.said)


@dataclass(slots=True)
class LowSpeed:
    """One hop's speed check from its first read (the request sent); `count` gives the
    body's bytes so far (both ways)."""

    limit: int
    time: int
    count: Callable[[], int]
    start: float | None = None  # (reactor s) the first check's
    samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=WINDOW + 1))
    below: float | None = None  # when the speed went under the limit (curl's keeps_speed)

    def check(self, now: float) -> None:
        """Raise TooSlow when the speed was under the limit for the time."""
        count = self.count()
        if self.start is None:
            self.start = now
        if not self.samples:
            self.samples.append((now, count))
        if now - self.samples[-1][0] >= 1:  # (a sample a second at most, as curl's)
            self.samples.append((now, count))
        since, then = next(s for s in self.samples if s[0] >= now - WINDOW)
        speed = (count - then) / (now - since) if now > since else 0.0
        if speed >= self.limit:
            self.below = None
            return
        if self.below is None:
            self.below = now
        if now - self.below >= self.time:
            raise TooSlow(self.limit, self.time)

    def next_check(self, now: float) -> float:
        """When to look again if nothing comes: the next whole second from the request,
        or the end of the time when the speed is under the limit already."""
        start = now if self.start is None else self.start
        tick = start + int(now - start) + 1
        return tick if self.below is None else min(tick, self.below + self.time)
