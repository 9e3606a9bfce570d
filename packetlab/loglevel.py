"""The daemons' log level (``--log-level`` and the ``LogLevel`` config key of pktendpoint,
pktbroker and pktproxy): one of Twisted's level names, and the filter that keeps the
events at or above it. The reference ``pktendpt`` has no such option (PROTOCOL.md §7.4);
the names are Twisted's (`twisted.logger.LogLevel`). See docs/endpoint.md."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when the filter is made: the configs parse names only
    from twisted.logger import ILogObserver

__all__ = ["DEFAULT", "NAMES", "filtered", "level_name"]

NAMES = ("debug", "info", "warn", "error", "critical")
# Before the option, twistd wrote every event, the debug ones too (its observer has no
# filter): per-socket and per-session lines an operator could not quiet.
DEFAULT = "info"


def level_name(text: str) -> str:
    """`text` as one of `NAMES` (any case, blanks around); a ValueError saying them."""
    name = text.strip().lower()
    if name not in NAMES:
        raise ValueError(f"expected one of {', '.join(NAMES)}, got {text!r}")
    return name


def filtered(observer: ILogObserver, name: str) -> ILogObserver:
    """`observer` given only the events at the level `name` or above, and those without
    a level (Twisted's `LogLevelFilterPredicate` drops those, and every event without a
    namespace: an event written by hand to the publisher would be lost unseen)."""
    from twisted.logger import FilteringLogObserver, LogLevel, PredicateResult

    least = LogLevel.levelWithName(name)

    def at_least(event: dict[str, object]) -> PredicateResult:
        level = event.get("log_level")
        below = level is not None and level < least
        return PredicateResult.no if below else PredicateResult.maybe

    predicates: list[Any] = [at_least]  # (a callable is all FilteringLogObserver asks)
    return FilteringLogObserver(observer, predicates)
