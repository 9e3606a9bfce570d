"""The manager's exit status from its endpoints' outcomes (xpmgrexit.py, session 31), and
which Python mlets have a `check(args)` the manager runs before listening."""

from __future__ import annotations

from pathlib import Path

from packetlab.controller.mlet import MletProcess
from packetlab.controller.pymletcheck import defines_check, precheck
from packetlab.controller.xpmgrexit import usage_refusal, verdict


def test_verdict_signals_and_own_failures_first_then_usage_then_all_failed() -> None:
    assert verdict(0, 0, 0, False) == 0  # no endpoint came
    assert verdict(0, 1, 5, False) == 0  # it ran somewhere
    assert verdict(0, 0, 5, False) == 3
    assert verdict(0, 0, 1, True) == 2
    assert verdict(1, 0, 5, True) == 1
    assert verdict(130, 0, 5, True) == 130


def ended(code: int | None, sig: int | None = None, err: bytes = b"") -> MletProcess:
    p = MletProcess("127.0.0.1", lambda _: None)
    p.exit_code, p.signal, p.errors = code, sig, bytearray(err)
    return p


def test_a_usage_refusal_is_the_first_mlet_to_end_with_status_2_quoting_its_last_line() -> None:
    line = usage_refusal(ended(2, err=b"warming up\nusage: m ARG\n\n"), 0, 0)
    assert line is not None and "at the first endpoint: usage: m ARG; its arguments" in line
    assert usage_refusal(ended(2), 1, 0) is None  # another mlet ended before it
    assert usage_refusal(ended(1), 0, 0) is None
    assert usage_refusal(ended(None, sig=2), 0, 0) is None  # killed by SIGINT, not exit 2
    assert usage_refusal(None, 0, 0) is None  # its setup failed: no mlet ran
    # it spoke to its endpoint first: status 2 for that endpoint's reason (session 32)
    assert usage_refusal(ended(2, err=b"endpoint refused nopen\n"), 0, 11) is None


def test_a_check_is_found_in_the_source_without_importing(tmp_path: Path) -> None:
    (tmp_path / "with.py").write_text("raise SystemExit(9)\ndef check(args): pass\n")
    (tmp_path / "nested.py").write_text("class A:\n    def check(self, args): pass\n")
    assert defines_check(str(tmp_path / "with.py"))
    assert defines_check(str(tmp_path / "with.py") + ":mlet")
    assert not defines_check(str(tmp_path / "nested.py"))
    assert defines_check("packetlab.cli.campaign_mlet")
    assert not defines_check("packetlab.cli.no_such_module")


def test_an_executable_script_is_a_program_and_not_checked(tmp_path: Path) -> None:
    """The manager runs it with execve, not pymlet: its `check` is not ours to call (it
    was loaded as a Python mlet, which a file without `.py` is not: a false refusal)."""
    script = tmp_path / "mlet"
    script.write_text("#!/usr/bin/env python3\ndef check(args):\n    raise SystemExit(2)\n")
    script.chmod(0o755)
    assert precheck(str(script), ["x"]) is None
    refusing = tmp_path / "exp.py"
    refusing.write_text(
        "import sys\nasync def mlet(session, args): pass\n"
        "def check(args):\n    sys.exit('no: ' + args[0])\n"
    )
    assert precheck(str(refusing), ["x"]) == "no: x"
