"""`pktlab run dns --dig-exit-codes` (cli/run_dns_exits.py): dig 9.18's statuses from the
records (the last lookup's), from an error (usage 1, 8, 10; the run's 10) and from a
command line argparse refuses (1); without the option ours, unchanged. The cases were
each checked against dig 9.18.49 (tests/integration/test_dns_exits_dig.py)."""

from __future__ import annotations

import argparse
import io
import signal
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from packetlab.cli import run_dns_exits as exits
from packetlab.cli.run import RunError
from packetlab.cli.run_command import Progress, measure
from packetlab.controller.errors import ControllerError
from packetlab.controller.stop import StopSignal

ANSWER = {"type": "dns", "qname": "a.test.", "rcode": "NOERROR", "answers": []}
NXDOMAIN = {**ANSWER, "rcode": "NXDOMAIN"}
TIMEOUT = {"type": "dns", "error": "timed out", "error_kind": "timeout"}
REFUSED = {"type": "dns", "error": "connection refused", "error_kind": "refused"}
BAD = {"type": "dns", "error": "bad compression pointer", "error_kind": "malformed"}
TLS = {"type": "dns", "error": "self-signed certificate", "error_kind": "tls"}
XFR_FAILED = {"type": "xfr", "rcode": "REFUSED", "failed": "Transfer failed.", "error_kind": None}
XFR_CUT = {"type": "xfr", "error": "closed", "error_kind": "eof"}
XFR_ID = {"type": "xfr", "error": "ID mismatch", "error_kind": "mismatch"}
XFR_CAP = {"type": "xfr", "error": "past --xfr-max", "error_kind": "limit"}
NS_WARNED = {**ANSWER, "nssearch": True, "nssearch_error": "connection refused"}
NS_NONE = {**REFUSED, "nssearch": True, "nssearch_failed": True}
LAME = {**ANSWER, "error": "goes no deeper", "error_kind": "lame"}
SUMMARY = {"type": "summary"}


def dig_args(on: bool = True) -> argparse.Namespace:
    return argparse.Namespace(dig_exit_codes=on)


@pytest.mark.parametrize(
    ("records", "status"),
    [
        ([], 0), ([ANSWER], 0), ([NXDOMAIN], 0), ([BAD], 0), ([TIMEOUT], 9), ([REFUSED], 9),
        ([TIMEOUT, ANSWER], 0), ([ANSWER, TIMEOUT], 9), ([TIMEOUT, BAD], 0),  # the last's
        ([TLS], 0), ([TIMEOUT, TLS], 9), ([ANSWER, TLS, SUMMARY], 0),  # TLS: unchanged
        ([XFR_FAILED], 0), ([XFR_ID], 0), ([XFR_CUT], 9), ([XFR_CAP], 10),
        ([NS_WARNED, ANSWER], 0), ([NS_WARNED, NS_NONE], 9), ([LAME], 1),
    ],
)  # fmt: skip
def test_the_last_lookup_s_status_as_dig(records: list[dict[str, Any]], status: int) -> None:
    assert exits.status(dig_args(), records, 1 if any("error" in r for r in records) else 0) == (
        status
    )


def test_without_the_option_the_status_is_ours() -> None:
    assert exits.status(dig_args(False), [ANSWER, TIMEOUT], 1) == 1
    assert exits.status(argparse.Namespace(), [BAD], 1) == 1
    assert exits.error_status(dig_args(False), RunError("x")) is None
    assert exits.usage_status(["a.test", "-Z"]) == 2


def test_errors_as_dig() -> None:
    assert exits.error_status(dig_args(), RunError("+bogus: dig option not supported")) == 1
    assert exits.error_status(dig_args(), exits.dig_error("+bufsize=99999", 10)) == 10
    assert exits.error_status(dig_args(), exits.dig_error("-f x: cannot open", 8)) == 8
    assert exits.error_status(dig_args(), ControllerError("the endpoint went away")) == 10
    assert exits.usage_status(["--dig-exit-codes", "-Z"]) == 1
    assert exits.usage_status(["--dig-exit", "-Z"]) == 1  # argparse's abbreviation


@pytest.mark.parametrize(
    ("words", "status"),
    [
        (["+bogus"], 1), (["+tim"], 1), (["-p", "99999"], 1), (["+subnet=bogus"], 1),
        (["+bufsize=99999"], 10), (["+tries=abc"], 10), (["+qid=abc"], 10),
        (["+padding=9999"], 10), (["+split=abc"], 10), (["+opcode=bogus"], 10),
        (["+edns=300"], 10), (["+ndots=abc"], 10), (["a..test"], 10),
        (["-f", "/nonexistent/batch"], 8),
    ],
)  # fmt: skip
def test_usage_errors_have_digs_statuses(words: list[str], status: int) -> None:
    import packetlab.cli as cli
    from packetlab.cli import run_dns_words

    args = cli.parse(["run", "dns", "--dig-exit-codes", "@192.0.2.53", *words, "a.test"])
    with pytest.raises(RunError) as e:
        run_dns_words.dig_style(args)
        args._command.experiment(args, lambda r: None, Progress())
    assert exits.error_status(args, e.value) == status


def test_a_word_argparse_refuses_is_dig_s_usage_status(capsys: pytest.CaptureFixture[str]) -> None:
    import packetlab.cli as cli

    with pytest.raises(SystemExit) as e:
        cli.parse(["run", "dns", "--dig-exit-codes", "-p", "abc", "a.test"])
    assert e.value.code == 1 and "pktlab run dns: error: argument -p" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.parse(["run", "dns", "-p", "abc", "a.test"])
    assert e.value.code == 2  # ours, without the option


def test_measure_returns_the_command_s_status() -> None:
    import packetlab.cli as cli

    def outcome(option: list[str], records: list[dict[str, Any]]) -> int:
        args = cli.parse(["run", "dns", "--json", *option, "a.test"])  # (JSON: any record)

        async def fake(reactor: Any, a: Any, emit: Any, progress: Any) -> None:
            for r in records:
                emit({**r, "qtype": "A", "server": "192.0.2.53", "port": 53, "proto": "udp"})

        d = Deferred.fromCoroutine(measure(Clock(), args, StopSignal(), io.StringIO(), run=fake))
        got: list[int] = []
        d.addCallback(got.append)
        return got[0]

    assert outcome(["--dig-exit-codes"], [{**TIMEOUT, "qname": "b."}, ANSWER]) == 0
    assert outcome(["--dig-exit-codes"], [ANSWER, {**TIMEOUT, "qname": "b."}]) == 9
    assert outcome([], [ANSWER, {**TIMEOUT, "qname": "b."}]) == 1  # ours


def test_run_reactor_takes_an_error_s_status(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from twisted.logger import globalLogBeginner

    from packetlab.cli.interrupt import run_reactor

    # (Twisted's global log begun here would change later tests' failures: not begun)
    monkeypatch.setattr(globalLogBeginner, "beginLoggingTo", lambda *a, **k: None)

    class Reactor:
        running = False

        def __init__(self) -> None:
            self.starting: list[Any] = []

        def callWhenRunning(self, f: Any) -> None:
            self.starting.append(f)

        def stop(self) -> None:
            self.running = False

        def run(self) -> None:
            self.running = True
            for f in self.starting:
                f()

    async def main(r: Any, stop: Any) -> int:
        raise RunError("a..test: not a legal name")

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = run_reactor(main, prog="pktlab run dns", reactor=Reactor(),
                           error_status=lambda e: 10)  # fmt: skip
        plain = run_reactor(main, prog="pktlab run dns", reactor=Reactor())
    finally:
        for s, h in before.items():
            signal.signal(s, h)
    assert (code, plain) == (10, 2)
    assert capsys.readouterr().err == "pktlab run dns: a..test: not a legal name\n" * 2
