"""The daemons' log level (``--log-level`` and the ``LogLevel`` config key of pktendpoint,
pktbroker and pktproxy): one of Twisted's level names, and the filter that keeps the
events at or above it. The reference ``pktendpt`` has no such option (PROTOCOL.md §7.4);
the names are Twisted's (`twisted.logger.LogLevel`). See docs/endpoint.md.

The lines that say a daemon starts (twistd's version line, where it listens or connects)
and stops (the signal, the last counters, twistd's ``Server Shut Down.``) are written at
`warn` and `error` too: an operator who quiets the sessions still sees that the daemon is
up and where, as redis at ``loglevel warning`` and PostgreSQL's LOG lines at
``log_min_messages = error`` show theirs. `critical` leaves them out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when the filter is made: the configs parse names only
    from twisted.logger import ILogObserver

__all__ = ["DEFAULT", "NAMES", "START_STOP", "filtered", "level_name", "start_stop"]

NAMES = ("debug", "info", "warn", "error", "critical")
# Before the option, twistd wrote every event, the debug ones too (its observer has no
# filter): per-socket and per-session lines an operator could not quiet.
DEFAULT = "info"
#: The keys of a start or stop line: ``log.info("... listening on {where}", where=w,
#: **START_STOP)`` is written at every level up to `error`.
START_STOP: dict[str, object] = {"pktlab_start_stop": True}
# Twisted's own start and stop lines (their log_format, in a twisted.* namespace).
_TWISTED_START_STOP = frozenset(
    {
        "twistd {version} ({exe} {pyVersion}) starting up.",
        "Received SIGINT, shutting down.",
        "Received SIGTERM, shutting down.",
        "Server Shut Down.",
    }
)
_START_STOP_UNTIL = "error"  # the highest level that still writes them


def level_name(text: str) -> str:
    """`text` as one of `NAMES` (any case, blanks around); a ValueError saying them."""
    name = text.strip().lower()
    if name not in NAMES:
        raise ValueError(f"expected one of {', '.join(NAMES)}, got {text!r}")
    return name


def start_stop(event: dict[str, object]) -> bool:
    """`event` says that a daemon starts or stops (`START_STOP`, or Twisted's own)."""
    if event.get("pktlab_start_stop"):
        return True
    namespace = event.get("log_namespace")
    return (
        isinstance(namespace, str)
        and namespace.startswith("twisted.")
        and event.get("log_format") in _TWISTED_START_STOP
    )


def filtered(observer: ILogObserver, name: str) -> ILogObserver:
    """`observer` given only the events at the level `name` or above, the start and
    stop lines up to `error` (`start_stop`), and the events without a level (Twisted's
    `LogLevelFilterPredicate` drops those, and every event without a namespace: an event
    written by hand to the publisher would be lost unseen)."""
    from twisted.logger import FilteringLogObserver, LogLevel, PredicateResult

    least = LogLevel.levelWithName(name)
    keep_start_stop = least <= LogLevel.levelWithName(_START_STOP_UNTIL)

    def at_least(event: dict[str, object]) -> PredicateResult:
        level = event.get("log_level")
        below = level is not None and level < least
        if below and not (keep_start_stop and start_stop(event)):
            return PredicateResult.no
        return PredicateResult.maybe

    predicates: list[Any] = [at_least]  # (a callable is all FilteringLogObserver asks)
    return FilteringLogObserver(observer, predicates)
