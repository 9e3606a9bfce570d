"""curl's -Y/--speed-limit and -y/--speed-time for `packetlab.measure.http`: a transfer
whose speed stays under LIMIT bytes/s for TIME seconds ends with curl's (28) "Operation
too slow. Less than LIMIT bytes/sec transferred the last TIME seconds".

As libcurl 7.88.1's progress.c and speedcheck.c under the curl tool's loop: the speed
(curl's current_speed) is recomputed only when a check falls in a new second of curl's
clock (CLOCK_MONOTONIC, whose whole seconds are the same for every process on the host,
`clock_phase`): the body's bytes, received and sent, since the oldest of the last six
such samples (about 5 s) over the milliseconds between, in whole bytes/s; the first
sample's is the average from the start. A check happens at each read or send and at
curl's timer: a second after the first check, then each second after that timer's last
wake (a read between does not move it), and once at a new connection's happy eyeballs
timeout (0.2 s after its connect began: `wake`), which sets the cadence when it comes
after the request (measured: `-y 2` against a silent server ends 2.2 s after the
request on a new connection, 2.0 on a reused one, 2.5 with
--happy-eyeballs-timeout-ms 500). The first check under the limit starts the count,
one at the limit or over ends it, and a check `time` s or more after the count's start
ends the transfer: the same moment as curl's, within the timers' lateness
(`test_http_curl29.py`)."""

from __future__ import annotations

import math
import time as _time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.python import runtime

from packetlab.clockstep import steady

SAMPLES = 6  # curl's CURR_TIME: the speed spans the last 5 of them (about 5 s)


class TooSlow(Exception):
    """The speed stayed under the limit for the time: curl's (28)."""

    def __init__(self, limit: int, time: int) -> None:
        self.limit, self.time = limit, time
        self.said = (f"Operation too slow. Less than {limit} bytes/sec transferred the "
                     f"last {time} seconds")  # fmt: skip
        super().__init__(self.said)


def clock_phase(clock: Any) -> float:
    """What added to `clock`'s time gives curl's clock, CLOCK_MONOTONIC (its samples
    follow that clock's whole seconds; measured: curl 7.88.1 on Linux reads clock id 1,
    not CLOCK_MONOTONIC_RAW, whose seconds may fall 0.25 s apart). 0 for a fake clock
    (tests): its whole seconds are the samples'."""
    if getattr(clock, "seconds", None) is not runtime.seconds:
        return 0.0
    return _time.monotonic() - steady(clock)


@dataclass(slots=True)
class LowSpeed:
    """One hop's speed check from its first check (the request sent); `count` gives the
    body's bytes so far (both ways), `phase` is `clock_phase` of the times checked,
    `wake` when a new connection's happy eyeballs timer fires (None: reused)."""

    limit: int
    time: int
    count: Callable[[], int]
    phase: float = 0.0
    start: float | None = None  # (reactor s) the first check's: the first speed's start
    samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=SAMPLES))
    second: int | None = None  # curl's lastshow: the clock second of the last sample
    speed: int = 0  # curl's current_speed, as of the last sample (bytes/s)
    wake: float | None = None  # a new connection's happy eyeballs timeout (reactor s)
    below: float | None = None  # when the speed went under the limit (curl's keeps_speed)
    timer: float | None = None  # curl's next timer check

    def check(self, now: float) -> None:
        """Raise TooSlow when the speed was under the limit for the time."""
        if self.start is None:
            self.start = now
            woken = self.wake is not None and self.wake > now  # (else it came before)
            self.timer = self.wake if woken else now + 1
        elif self.timer is not None and now >= self.timer:  # the timer's wake: the next
            self.timer = now + 1  # a second after it (curl's: from when it ran)
        second = math.floor(now + self.phase)
        if second != self.second:  # (curl: at most one sample a second of its clock)
            self.second = second
            count = self.count()
            self.samples.append((now, count))
            since, then = self.samples[0]
            if len(self.samples) == 1:  # the first: the average from the start
                since, then = self.start, 0
            span = max(int((now - since) * 1000), 1)  # (ms, as curl's: at least 1)
            self.speed = (count - then) * 1000 // span
        if self.speed < 0:  # (curl skips the check; a count never goes down here)
            return
        if self.speed >= self.limit:
            self.below = None
            return
        if self.below is None:
            self.below = now
        elif now - self.below >= self.time:
            raise TooSlow(self.limit, self.time)

    def next_check(self, now: float) -> float:
        """When to look again if nothing comes: curl's timer (a second from now before
        the first check)."""
        return now + 1 if self.timer is None else max(self.timer, now)
