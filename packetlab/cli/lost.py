"""An endpoint lost before or during a run, as campaigns and `run_command`'s pools
report it: once, with its hostid and address (`lost_record`, `lost_row`), and why
(`why_closed`); `Arrivals`, the endpoints coming to either's pool, each read for its
HOSTID, one lost before the start told once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Record = dict[str, Any]  # as run_command's


def lost_record(name: str, hostid: str, peer: str, when: str, why: str, kept: int) -> Record:
    """The one report of a lost endpoint: mid-run it is an error (its records partial);
    before the start, only a note (another endpoint is waited for)."""
    r: Record = {"type": "lost", "endpoint": name, "hostid": hostid, "address": peer,
                 "when": when, "records": kept}  # fmt: skip
    if when == "before the start":
        r["reason"] = why
    else:
        r.update(error=why, partial=kept > 0)
    return r


def why_closed(session: Any, otherwise: str | None = None) -> str:
    """Why an endpoint's session ended, in words (its close reason: the watchdog's, a
    connection lost, ...)."""
    reason = getattr(session, "close_reason", None)
    if reason is not None:
        return str(reason)
    return otherwise or "the endpoint closed the connection"


def lost_row(r: Record) -> str:
    who = ", ".join(x for x in (f"hostid {r['hostid']}" if r["hostid"] else "", r["address"]) if x)
    if r["when"] == "before the start":
        return f"lost before the start ({who}): {r['reason']}"
    kept = r["records"]
    said = f"its {kept} record{'s' if kept != 1 else ''} kept (partial)" if kept else "no record"
    return f"lost mid-campaign ({who}): {r['error']}; {said}"


class Arrivals:
    """The endpoints connecting for `count` places (`pktlab campaign`, `pktlab run
    --listen --endpoints N`; `spares`: a campaign's --replace): each is read for its
    HOSTID, then waits in `pool` (a watching `SessionPool`). One lost before the start,
    before its HOSTID came or while it waited, is one `lost` record given to `told`, its
    place left for another; `here(latest)` hears of each arrival and loss then (the
    campaign's progress line). Once `started`, a loss is the runs' to tell (and a spare
    gone before its HOSTID is not one); nor is one cut by the reactor's own shutdown
    (Ctrl-C or SIGTERM while waiting: the command quit, the endpoint did not go).
    `hostids` keeps only those the pool holds."""

    def __init__(
        self,
        count: int,
        reactor: Any,
        told: Callable[[Record], object],
        *,
        spares: int = 0,
        here: Callable[[str], object] | None = None,
    ) -> None:
        from packetlab.measure.pool import SessionPool  # (the controller: not at start-up)

        self.pool = SessionPool(count, reactor, spares=spares, on_lost=self._left, watch=True)
        self.hostids: dict[Any, str] = {}
        self.started = False
        self._told, self._here = told, here
        self._quitting = False
        # The shutdown's "during" phase cuts every connection before the command's own
        # teardown runs: those are not endpoints lost (each was a `lost` record)
        reactor.addSystemEventTrigger("before", "shutdown", self._quit)

    def _quit(self) -> None:
        self._quitting = True

    async def arrive(self, session: Any) -> None:
        """The `Controller`'s experiment: who the endpoint is, then into the pool."""
        from twisted.internet.defer import Deferred

        from packetlab.controller import read_system_info

        try:
            self.hostids[session] = (await read_system_info(session)).hostid
        except Exception:  # gone (or silent past the watchdog) before saying who it is
            self._lost(session, "")
            return
        held = Deferred.fromCoroutine(self.pool.experiment(session))
        self._heard(self.hostids[session] or str(session.peer))
        try:
            await held
        finally:  # one turned away or lost waiting: forgotten (endpoints come back)
            if session not in self.pool.sessions:
                self.hostids.pop(session, None)

    def _left(self, session: Any) -> None:
        self._lost(session, self.hostids.pop(session, ""))

    def _lost(self, session: Any, hostid: str) -> None:
        if self.started or self._quitting:
            return
        peer = str(session.peer)
        self._told(lost_record(hostid or peer, hostid, peer, "before the start",
                               why_closed(session), 0))  # fmt: skip
        self._heard(f"{hostid or peer} lost")

    def _heard(self, latest: str) -> None:
        if self._here is not None and not (self.started or self._quitting):
            self._here(latest)
