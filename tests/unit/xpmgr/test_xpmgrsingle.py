"""The -s singleton's results line (xpmgrsingle.py)."""

from __future__ import annotations

import signal

from packetlab.controller.mlet import MletProcess
from packetlab.controller.xpmgrsingle import singleton_record


def ended(exit_code: int | None, sig: int | None) -> MletProcess:
    p = MletProcess("singleton", lambda _: None)
    p.running, p.exit_code, p.signal, p.finished = False, exit_code, sig, p.started + 1
    return p


def test_a_singleton_killed_by_a_signal_is_failed_in_words_not_still_running() -> None:
    """A signal leaves exit_code None: the line said `still running` (session 29)."""
    r = singleton_record(ended(None, signal.SIGSEGV), ["./single"], [])
    assert (r["status"], r["error"]) == (
        "failed",
        "the singleton mlet was killed by signal 11 (SIGSEGV)",
    )
    assert r["signal"] == signal.SIGSEGV and r["exit_code"] is None


def test_a_singleton_ended_for_running_on_says_so() -> None:
    p = ended(None, signal.SIGTERM)
    p.overdue = 5.0
    r = singleton_record(p, ["./single"], [])
    assert r["error"] == (
        "the singleton mlet ran on 5 s after its last endpoint and the manager's EOF, and "
        "was killed by signal 15 (SIGTERM)"
    )
    assert singleton_record(ended(0, None), ["./single"], [])["status"] == "done"
