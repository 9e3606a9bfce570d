"""`pktlab xpmgr -s`: the singleton mlet's own line in the results (session 25).

In singleton mode one mlet serves every endpoint, so its output belongs to no one
endpoint: the endpoints' lines carry no `output` nor `exit_code`, and before session 25
what the singleton printed (its results, its errors) was only passed through to the
manager's stdout and stderr, never recorded. It is now recorded once, as the last line of
the results: the singleton's command, times and exit status, the endpoints handed to it
(in the order handed, each with its hostid, address, snikey and status) and the last
64 KiB of its stdout and stderr. A reader of the endpoints' lines tells it apart by its
`"singleton": true` (it has no `address`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from packetlab.controller.mlet import MletProcess, exit_words

__all__ = ["endpoint_entry", "singleton_record"]

#: The fields of an endpoint's own line repeated in the singleton's list.
ENTRY_FIELDS = ("hostid", "address", "snikey", "status", "error")


def endpoint_entry(result: dict[str, Any]) -> dict[str, Any]:
    """An endpoint in the singleton's list: who it was and how it ended."""
    return {k: result[k] for k in ENTRY_FIELDS if k in result}


def singleton_record(
    proc: MletProcess,
    argv: Sequence[str],
    endpoints: Sequence[dict[str, Any]],
    *,
    interrupted: bool = False,
) -> dict[str, Any]:
    """The singleton's line: `status` `done` when it exited 0 (`failed` with `error`
    otherwise: its status or signal in words, or `interrupted` by the second Ctrl-C)."""
    # (a signal leaves exit_code None: a singleton killed by one was "still running")
    ended = not proc.running and (proc.exit_code is not None or proc.signal is not None)
    ok = ended and proc.signal is None and proc.exit_code == 0 and not interrupted
    out: dict[str, Any] = {
        "singleton": True,
        "mlet": list(argv),
        "status": "done" if ok else "failed",
        "started": round(proc.started, 6),
        "finished": round(proc.finished, 6) if proc.finished is not None else None,
    }
    if interrupted:
        out["error"] = "interrupted"
    elif not ok:
        out["error"] = f"the singleton mlet {exit_words(proc)}" if ended else "still running"
        if ended and proc.overdue is not None:  # ended by the manager for running on
            out["error"] = (
                f"the singleton mlet ran on {proc.overdue:g} s after its last endpoint and "
                f"the manager's EOF, and {exit_words(proc)}"
            )
    out["exit_code"] = proc.exit_code
    if proc.signal is not None:
        out["signal"] = proc.signal
    out["endpoints"] = list(endpoints)
    out["output"] = proc.output.decode("utf-8", "replace")
    out["stderr"] = proc.errors.decode("utf-8", "replace")
    return out
