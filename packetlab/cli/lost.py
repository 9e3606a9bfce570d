"""An endpoint lost before or during a run, as campaigns and `run_command`'s pools
report it: once, with its hostid and address (`lost_record`, `lost_row`), and why
(`why_closed`)."""

from __future__ import annotations

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
