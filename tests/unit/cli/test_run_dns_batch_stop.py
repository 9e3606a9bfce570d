"""dig 9.18 -f FILE reads a line when the one before is done: a line it cannot read (an
option it does not know, a number it cannot parse) ends the run there, after the lines
before it were asked, with its error and status (1 for `Invalid option`, 10 for
`Couldn't parse`); a name that is not legal ends it at that name's lookup (the names
before it on the line asked), status 10 (session 26, odds26: ours refused the whole
file before any query, exit 2; dig 9.18.49 checked beside it, see docs/dns.md)."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import dns.message
import dns.rrset
import pytest
from twisted.internet.defer import Deferred

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "controller"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ctl_fakes import Rig
from test_cli_dns import parse

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

    def server(query: bytes) -> list[bytes]:
        q = dns.message.from_wire(query)
        asked.append(q.question[0].name.to_text())
        r = dns.message.make_response(q)
        r.answer.append(dns.rrset.from_text(q.question[0].name, 300, "IN", "A", "192.0.2.1"))
        return [r.to_wire()]

    rig.endpoint.udp_servers[("192.0.2.53", 53)] = server
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


def test_a_line_with_an_option_dig_does_not_know_ends_the_run_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, e = _run(tmp_path, monkeypatch, "a.test\nb.test +bogus c.test\nd.test\n")
    assert out == "192.0.2.1\n[a.test.]"  # b.test and c.test (its line), d.test not asked
    assert str(e).startswith("+bogus: dig option not supported here")
    assert e.status == 1  # type: ignore[attr-defined]  # dig's usage()


def test_a_bad_number_prints_digs_line_in_its_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, e = _run(tmp_path, monkeypatch, "a.test\nb.test +time=x\nc.test\n")
    assert out == "192.0.2.1\ninvalid timeout 'x': not a valid number\n[a.test.]"
    assert str(e) == "+time=x: Couldn't parse timeout (not a valid number)"
    assert e.status == 10  # type: ignore[attr-defined]


def test_a_name_not_legal_ends_the_run_at_its_lookup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, e = _run(tmp_path, monkeypatch, "a.test\nb.test c..test d.test\ne.test\n")
    assert out == "192.0.2.1\n192.0.2.1\n[a.test.][b.test.]"  # dig asks b.test, then stops
    assert str(e) == "'c..test' is not a legal name (empty label)"
    assert e.status == 10  # type: ignore[attr-defined]


def test_a_dashed_option_not_taken_ends_the_run_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, e = _run(tmp_path, monkeypatch, "a.test\nb.test -z\n")
    assert out == "192.0.2.1\n[a.test.]"
    assert "-z: option not supported in a batch line" in str(e)


def test_a_later_line_s_y_without_a_secret_ends_the_run_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dig 9.18.49 reads a later line's -y (no key made from it: the first line's is the
    run's) and a word without name and secret is its usage(), exit 1, at that line; ours
    did not look at it and asked every line."""
    out, e = _run(tmp_path, monkeypatch, "a.test\nb.test -y nosecret\nc.test\n")
    assert out == "192.0.2.1\n[a.test.]"
    assert str(e).startswith("-y nosecret: give [hmac:]name:secret")
    assert e.status == 1  # type: ignore[attr-defined]


def test_on_the_command_line_a_name_not_legal_is_an_error_in_its_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dig 9.18.49 `dig a.test b..test c.test`: a.test asked, then `'b..test' is not a
    legal name (empty label)`, exit 10 (ours: the error before anything was asked)."""
    out, e = _run(tmp_path, monkeypatch, "", "a.test", "b..test", "c.test")
    assert out == "192.0.2.1\n[a.test.]"
    assert str(e) == "'b..test' is not a legal name (empty label)"
    assert e.status == 10  # type: ignore[attr-defined]


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
