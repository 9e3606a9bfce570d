"""How often an outage is logged (sans-IO): the first failures each get their line, then
one line every `OUTAGE_REMINDER` seconds for as long as it lasts.

Both of the endpoint's outgoing links use it: NoSub mode's connect cycle to its controller
(`service.py`: a failure is a connect cycle given up; the first is logged attempt by
attempt) and broker mode's subscription link (`subscriber.py`: a failure is an attempt;
the first is logged, and a new reason; session 33: the first 8 were). A controller or
broker down for a day logged a line every few seconds (tens of thousands of lines). The
callers word the lines; this only says which failure gets one.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["OUTAGE_REMINDER", "Outage", "Say"]

OUTAGE_REMINDER = 600.0  # s between the log lines of a peer that stays unreachable


class Say(Enum):
    """What to log for a failure: nothing, its own line, or the reminder of the outage."""

    NOTHING = "nothing"
    EACH = "each"  # one of the first `loud` failures
    REMINDER = "reminder"  # `reminder` s or more since the last line


class Outage:
    """The failures since the peer was last reached. `failed(now)` counts one and says
    what to log; `reached()` ends the outage (the next failure starts a new one, logged in
    full again). Times are seconds on any clock (the reactor's)."""

    def __init__(self, loud: int, reminder: float = OUTAGE_REMINDER) -> None:
        if loud < 1:
            raise ValueError(f"loud must be >= 1, got {loud}")
        self.loud = loud
        self.reminder = reminder
        self.failures = 0  # in this outage
        self.started = 0.0  # when this outage began
        self._last_line = 0.0

    @property
    def quiet(self) -> bool:
        """Past its first `loud` failures: only reminders are logged now."""
        return self.failures >= self.loud

    def failed(self, now: float, *, since: float | None = None) -> Say:
        """Count a failure at `now`; the first of an outage began it at `since` (default
        `now`: a connect cycle began before it failed)."""
        if self.failures == 0:
            self.started = now if since is None else since
        self.failures += 1
        if self.failures <= self.loud:
            self._last_line = now
            return Say.EACH
        if now - self._last_line >= self.reminder:
            self._last_line = now
            return Say.REMINDER
        return Say.NOTHING

    def elapsed(self, now: float) -> float:
        """Seconds since the outage began."""
        return now - self.started

    def reached(self) -> None:
        self.failures = 0
