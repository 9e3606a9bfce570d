"""curl 7.88's --retry for `pktlab run http`: which outcomes are transient, how long to
wait, and its warning (tool_operate.c's post_per_transfer)."""

from __future__ import annotations

import email.utils
from dataclasses import dataclass

TRANSIENT_HTTP = frozenset({408, 429, 500, 502, 503, 504})  # curl's RETRY_HTTP
SLEEP_DEFAULT, SLEEP_MAX = 1.0, 600.0  # s: curl's RETRY_SLEEP_DEFAULT and RETRY_SLEEP_MAX
_WHY = {
    "all": "(retrying all errors)",
    "timeout": ": timeout",
    "refused": ": connection refused",
    "http": ": HTTP error",
}


def transient(exitcode: int, status: int | None, error: str | None, connrefused: bool,
              all_errors: bool) -> str | None:  # fmt: skip
    """Whether curl retries this outcome, and why (a key of _WHY), or None: a timeout
    (28) or a name not resolved (6) always; a refused connect (7, ECONNREFUSED) with
    --retry-connrefused; a completed transfer (or -f's 22) whose status is 408, 429,
    500, 502, 503 or 504; with --retry-all-errors any other failure."""
    if exitcode in (6, 28):
        return "timeout"
    if exitcode == 7 and connrefused:
        if "connection refused" in (error or ""):
            return "refused"
    elif exitcode in (0, 22) and status in TRANSIENT_HTTP:
        return "http"
    return "all" if exitcode and all_errors else None


def retry_after(headers: list[tuple[str, str]], now: float) -> float:
    """curl's CURLINFO_RETRY_AFTER: a Retry-After's seconds, or the time to its HTTP date
    (0: none, bad or past)."""
    value = next((v.strip() for k, v in headers if k.lower() == "retry-after"), "")
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return 0.0
    return max(0.0, float(int(when - now)))


@dataclass(slots=True)
class Retry:
    """One transfer's retries (curl's per-transfer state): `left` of --retry N, the next
    wait (doubled each time up to 10 minutes unless --retry-delay fixes it), the time
    the first attempt started (--retry-max-time counts from it)."""

    left: int
    delay: float  # --retry-delay S (0: curl's doubling from 1 s)
    max_time: float  # --retry-max-time S (0: no limit)
    started: float
    sleep: float = 0.0

    def __post_init__(self) -> None:
        self.sleep = self.delay or SLEEP_DEFAULT

    def next(self, why: str | None, after: float, now: float) -> tuple[float | None, str | None]:
        """After an attempt retried for `why` (None: not transient), the server's
        Retry-After `after` s (0: none): (the wait before the next attempt, or None:
        no more; the warning curl prints, without its "Warning: ")."""
        if why is None or self.left <= 0:
            return None, None
        if self.max_time and now - self.started >= self.max_time:
            return None, None
        wait = self.sleep
        if why == "http" and after:
            wait = after
            if self.max_time and int(now - self.started) + after > self.max_time:
                return None, ("The Retry-After: time would make this command line exceed "
                              "the maximum allowed time for retries.")  # fmt: skip
        text = (f"Problem {_WHY[why]}. Will retry in {int(wait)} seconds. "
                f"{self.left} retries left.")  # fmt: skip
        self.left -= 1
        if not self.delay:
            self.sleep = min(self.sleep * 2, SLEEP_MAX)
        return wait, text
