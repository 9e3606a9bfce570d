"""dig 9.18 -f FILE reads a line when the one before is done: a line it cannot read (an
option it does not know, a number it cannot parse) ends the run there, after the lines
before it were asked, with its error and status (1 for `Invalid option`, 10 for
`Couldn't parse`); a name that is not legal ends it at that name's lookup (the names
before it on the line asked), status 10 (session 26, odds26: ours refused the whole
file before any query, exit 2; dig 9.18.49 checked beside it, see docs/dns.md)."""

from __future__ import annotations

import argparse
import io
import re
import sys
from pathlib import Path

import pytest
from twisted.internet.defer import Deferred

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "controller"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ctl_fakes import Rig
from test_cli_dns import parse
from test_run_dns_batch_unresolved import answering

from packetlab.cli import run_dns_exits
from packetlab.cli.run import RunError
from packetlab.cli.run_command import Progress, begun, measure
from packetlab.controller.stop import StopSignal


def _run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, *words: str
) -> tuple[str, RunError]:
    """The batch `text` (none when empty: `words` alone) run against a server that
    answers every name 192.0.2.1: what `2>&1` shows (then the names asked), and the error
    the run ended with."""
    rig = Rig()
    asked: list[str] = []
    answering(rig, asked)
    f = tmp_path / "batch"
    f.write_text(text)
    both = io.StringIO()
    monkeypatch.setattr(sys, "stderr", both)
    monkeypatch.setattr(sys, "stdout", both)
    args = parse("@192.0.2.53", "+short", *words, *(("-f", str(f)) if text else ()))

    async def link(reactor: object, a: argparse.Namespace, emit: object, p: Progress) -> None:
        await begun(a._command.experiment(a, emit, p), p)(rig.session)

    with pytest.raises(RunError) as e:
        rig.run(Deferred.fromCoroutine(measure(rig.clock, args, StopSignal(), both, run=link)))
    args.dig_exit_codes = True
    e.value.status = run_dns_exits.error_status(args, e.value)  # type: ignore[attr-defined]
    return both.getvalue() + "".join(f"[{n}]" for n in asked), e.value


# (the batch, or "" and the command line's words; what 2>&1 shows then the names asked;
# the error, a regex from its start; dig 9.18.49's status with --dig-exit-codes, None:
# not checked)
CASES = {
    # b.test and c.test (its line), d.test not asked; 1: dig's usage()
    "an_option_dig_does_not_know_ends_the_run_there": (
        ("a.test\nb.test +bogus c.test\nd.test\n",), "192.0.2.1\n[a.test.]",
        re.escape("+bogus: dig option not supported here"), 1,
    ),
    "a_bad_number_prints_digs_line_in_its_turn": (
        ("a.test\nb.test +time=x\nc.test\n",),
        "192.0.2.1\ninvalid timeout 'x': not a valid number\n[a.test.]",
        re.escape("+time=x: Couldn't parse timeout (not a valid number)") + "$", 10,
    ),
    # dig asks b.test, then stops
    "a_name_not_legal_ends_the_run_at_its_lookup": (
        ("a.test\nb.test c..test d.test\ne.test\n",), "192.0.2.1\n192.0.2.1\n[a.test.][b.test.]",
        re.escape("'c..test' is not a legal name (empty label)") + "$", 10,
    ),
    "a_dashed_option_not_taken_ends_the_run_there": (
        ("a.test\nb.test -z\n",), "192.0.2.1\n[a.test.]",
        ".*" + re.escape("-z: option not supported in a batch line"), None,
    ),
    # dig 9.18.49 reads a later line's -y (no key made from it: the first line's is the
    # run's) and a word without name and secret is its usage(), exit 1, at that line;
    # ours did not look at it and asked every line
    "a_later_lines_y_without_a_secret_ends_the_run_there": (
        ("a.test\nb.test -y nosecret\nc.test\n",), "192.0.2.1\n[a.test.]",
        re.escape("-y nosecret: give [hmac:]name:secret"), 1,
    ),
    # `dig a.test b..test c.test`: a.test asked, then the error, exit 10 (ours: the error
    # before anything was asked)
    "on_the_command_line_a_name_not_legal_is_an_error_in_its_turn": (
        ("", "a.test", "b..test", "c.test"), "192.0.2.1\n[a.test.]",
        re.escape("'b..test' is not a legal name (empty label)") + "$", 10,
    ),
}  # fmt: skip


@pytest.mark.parametrize(("words", "shown", "why", "status"), CASES.values(), ids=CASES.keys())
def test_a_line_in_error_ends_the_run_in_its_turn(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    words: tuple[str, ...],
    shown: str,
    why: str,
    status: int | None,
) -> None:
    out, e = _run(tmp_path, monkeypatch, *words)
    assert out == shown
    assert re.match(why, str(e)), str(e)
    if status is not None:
        assert e.status == status  # type: ignore[attr-defined]


def test_a_first_line_in_error_is_an_error_before_anything_is_sent(tmp_path: Path) -> None:
    """Nothing to ask before it: the error at once, as a command line's (dig: its usage
    before any lookup), with the line's stdout line first."""
    from packetlab.cli import run_dns

    f = tmp_path / "batch"
    for text, why in (("a.test +bogus\nb.test\n", r"\+bogus"), ("a..test\nb.test\n", "legal"),
                      ("a.test +time=x\n", "Couldn't parse")):  # fmt: skip
        f.write_text(text)
        args = parse("@192.0.2.53", "-f", str(f))
        with pytest.raises(RunError, match=why):
            run_dns.experiment(args, lambda r: None, Progress())
