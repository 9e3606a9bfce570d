"""The log events while something runs, for tests that assert on what was logged.

``with captured_events() as events: ...`` adds an observer to Twisted's
`globalLogPublisher` and removes it when the block ends, also when it raises: an
observer left behind by a failing test would collect (and keep alive) every later event of
the worker. `events` is a list of the events, in order, with filters that format them::

    with captured_events() as events:
        svc.stopService()
    [line] = events.lines("pktbroker stopping;")        # formatted, filtered by text
    events.where(level=LogLevel.warn, has="rule")       # the events themselves

The filters (all optional, all given must hold): `contains`, a part of the formatted
line (`formatEvent`); `fmt`, a part of the event's ``log_format``; `level`, a `LogLevel` or
a tuple of them; `namespace`, the end of ``log_namespace`` (a class's `Logger()` is
``module.Class``), or a tuple of ends; `has`, a key the event has. Given to
`captured_events` they keep only the matching events (a fixture's live list).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import cast

from twisted.logger import ILogObserver, LogEvent, LogLevel, formatEvent, globalLogPublisher

__all__ = ["Events", "captured_events", "events_while"]


def _matches(
    event: LogEvent,
    contains: str | None,
    fmt: str | None,
    level: LogLevel | tuple[LogLevel, ...] | None,
    namespace: str | tuple[str, ...] | None,
    has: str | None,
) -> bool:
    if level is not None:
        levels = level if isinstance(level, tuple) else (level,)
        if event.get("log_level") not in levels:
            return False
    if namespace is not None and not str(event.get("log_namespace", "")).endswith(namespace):
        return False
    if has is not None and has not in event:
        return False
    if fmt is not None and fmt not in str(event.get("log_format") or ""):
        return False
    return contains is None or contains in formatEvent(event)


class Events(list[LogEvent]):
    """Log events in the order they were logged; a plain list otherwise."""

    def where(
        self,
        contains: str | None = None,
        *,
        fmt: str | None = None,
        level: LogLevel | tuple[LogLevel, ...] | None = None,
        namespace: str | tuple[str, ...] | None = None,
        has: str | None = None,
    ) -> Events:
        """The events that match every filter given."""
        return Events(e for e in self if _matches(e, contains, fmt, level, namespace, has))

    def lines(
        self,
        contains: str | None = None,
        *,
        fmt: str | None = None,
        level: LogLevel | tuple[LogLevel, ...] | None = None,
        namespace: str | tuple[str, ...] | None = None,
        has: str | None = None,
    ) -> list[str]:
        """The matching events formatted as the log file shows them (without the prefix)."""
        found = self.where(contains, fmt=fmt, level=level, namespace=namespace, has=has)
        return [formatEvent(e) for e in found]

    def text(self) -> str:
        """Every event formatted, a line each (for an assertion's message)."""
        return "\n".join(self.lines())

    def formats(self) -> list[str]:
        """Each event's ``log_format`` (the line before its fields are put in)."""
        return [str(e.get("log_format")) for e in self]


@contextmanager
def captured_events(
    *,
    fmt: str | None = None,
    level: LogLevel | tuple[LogLevel, ...] | None = None,
    namespace: str | tuple[str, ...] | None = None,
    has: str | None = None,
) -> Iterator[Events]:
    """The events logged while the block runs (only those matching the filters given)."""
    events = Events()

    def observe(event: LogEvent) -> None:
        if _matches(event, None, fmt, level, namespace, has):
            events.append(event)

    observer = cast(ILogObserver, observe)
    globalLogPublisher.addObserver(observer)
    try:
        yield events
    finally:
        globalLogPublisher.removeObserver(observer)


def events_while(run: Callable[[], object]) -> Events:
    """The events logged while `run()` ran (it may raise: the observer goes all the same)."""
    with captured_events() as events:
        run()
    return events
