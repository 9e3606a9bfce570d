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
`captured_events` (all but `contains`) they keep only the matching events: a fixture's
live list of warnings, say.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypedDict, Unpack, cast

from twisted.logger import ILogObserver, LogEvent, LogLevel, formatEvent, globalLogPublisher

__all__ = ["Events", "Filters", "captured_events", "events_while"]


class Filters(TypedDict, total=False):
    """What an event must match (each given)."""

    fmt: str  # a part of its log_format
    level: LogLevel | tuple[LogLevel, ...]
    namespace: str | tuple[str, ...]  # the end of its log_namespace
    has: str  # a key it has


def _matches(event: LogEvent, contains: str | None, filters: Filters) -> bool:
    level = filters.get("level")
    if level is not None and event.get("log_level") not in (
        level if isinstance(level, tuple) else (level,)
    ):
        return False
    namespace = filters.get("namespace")
    if namespace is not None and not str(event.get("log_namespace", "")).endswith(namespace):
        return False
    has = filters.get("has")
    if has is not None and has not in event:
        return False
    fmt = filters.get("fmt")
    if fmt is not None and fmt not in str(event.get("log_format") or ""):
        return False
    return contains is None or contains in formatEvent(event)


class Events(list[LogEvent]):
    """Log events in the order they were logged; a plain list otherwise."""

    def where(self, contains: str | None = None, **filters: Unpack[Filters]) -> Events:
        """The events that match: `contains` in the formatted line, and `filters`."""
        return Events(e for e in self if _matches(e, contains, filters))

    def lines(self, contains: str | None = None, **filters: Unpack[Filters]) -> list[str]:
        """The matching events formatted as the log file shows them (without the prefix)."""
        return [formatEvent(e) for e in self.where(contains, **filters)]

    def text(self) -> str:
        """Every event formatted, a line each (for an assertion's message)."""
        return "\n".join(self.lines())

    def formats(self) -> list[str]:
        """Each event's ``log_format`` (the line before its fields are put in)."""
        return [str(e.get("log_format")) for e in self]


@contextmanager
def captured_events(**filters: Unpack[Filters]) -> Iterator[Events]:
    """The events logged while the block runs (only those matching `filters`, if given)."""
    events = Events()

    def observe(event: LogEvent) -> None:
        if _matches(event, None, filters):
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
