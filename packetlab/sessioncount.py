"""What a daemon does while at least one session is open, counted in one place.

`opened()` when a session starts returns that session's close callback, which is safe
to call twice (a session may end through more than one path: connectionLost, a close
hook, an abort). Subclasses act on the count in `_opened` and `_closed`.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["SessionCount"]


class SessionCount:
    live = 0  # sessions open now

    def opened(self) -> Callable[[], None]:
        """Count a session in; returns its `closed` callback (safe to call twice)."""
        self.live += 1
        self._opened()
        done = False

        def closed() -> None:
            nonlocal done
            if not done:
                done = True
                self.live -= 1
                self._closed()

        return closed

    def _opened(self) -> None:
        """A session opened (`live` already counts it)."""

    def _closed(self) -> None:
        """A session closed (`live` no longer counts it)."""
