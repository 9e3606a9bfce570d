"""`pktlab campaign` over two scripted endpoints on one clock: an endpoint that goes away
mid-campaign is its error record while the other finishes; the first Ctrl-C wraps every
endpoint's run up with what it gathered and the summary; a bad option of the measurement
is refused before waiting for endpoints; --help says where the endpoints come from."""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.test import iosim

sys.path.insert(0, str(Path(__file__).resolve().parent / "controller"))
from ctl_fakes import BASE_NS, FakeEndpoint, result_of

from packetlab.cli import build_parser
from packetlab.cli.campaign import campaign, campaign_command, measure_on
from packetlab.cli.run import RunError
from packetlab.cli.run_command import Progress, measure
from packetlab.controller import EndpointSession
from packetlab.controller.stop import StopSignal


def parse(*argv: str) -> argparse.Namespace:
    return build_parser("campaign").parse_args(["campaign", *argv])


class Two:
    """Two endpoint sessions (scripted endpoints) on one task.Clock."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.sessions: list[EndpointSession] = []
        self.endpoints: list[FakeEndpoint] = []
        self.pumps: list[Any] = []
        for _ in range(2):
            s = EndpointSession(
                reactor=self.clock, clock_ns=lambda: BASE_NS + int(self.clock.seconds() * 1e9)
            )
            ep = FakeEndpoint(self.clock)
            pump = iosim.connect(s, iosim.makeFakeServer(s), ep, iosim.makeFakeClient(ep),
                                 clock=self.clock)  # fmt: skip
            self.pumps.append(pump)
            self.sessions.append(s)
            self.endpoints.append(ep)

    def step(self) -> None:
        for p in self.pumps:
            p.flush()
        self.clock.advance(0.001)

    def until(self, d: Deferred[Any], limit: float = 60.0) -> Any:
        while not d.called and self.clock.seconds() < limit:
            self.step()
        return result_of(d)


def _campaign(two: Two, args: argparse.Namespace, stop: StopSignal) -> tuple[Deferred[int], Any]:
    """`pktlab campaign` (its printing: run_command.measure) over the two sessions."""
    out = io.StringIO()
    endpoints = [0]
    shown = argparse.Namespace(**vars(args))
    shown._command = campaign_command(args._command, endpoints)

    async def link(reactor: Any, _a: Any, emit: Any, progress: Progress) -> None:
        runs = [(name, args, s) for name, s in zip(("epA", "epB"), two.sessions, strict=True)]
        endpoints[0] = len(runs)
        progress.begin()
        await measure_on(reactor, args._command, runs, emit, progress, args.sync_start)

    d = Deferred.fromCoroutine(measure(two.clock, shown, stop, out, run=link))
    return d, out


def test_an_endpoint_gone_mid_campaign_is_its_error_record_and_the_others_go_on() -> None:
    two = Two()
    args = parse("clocksync", "--endpoints", "2", "--listen", "20556", "--rounds", "6",
                 "--interval", "0.5", "--json")  # fmt: skip
    d, out = _campaign(two, args, StopSignal())
    while two.clock.seconds() < 1.2:  # a few rounds each, then epB's connection drops
        two.step()
    two.endpoints[1].transport.loseConnection()  # type: ignore[union-attr]
    code = two.until(d)
    records = [json.loads(x) for x in out.getvalue().splitlines()]
    (gone,) = [r for r in records if r["type"] == "error"]
    assert gone["endpoint"] == "epB" and "closed the connection" in gone["error"]
    a = [r["type"] for r in records if r.get("endpoint") == "epA"]
    assert a == ["clocksync"] * 6 + ["clockmodel"]  # epA measured to the end
    b = [r for r in records if r.get("endpoint") == "epB"]
    assert [r["type"] for r in b] == ["clocksync"] * 3 + ["clockmodel", "error"]
    assert b[3]["rounds"] == 3  # epB's rounds before it went: their model kept
    summary = records[-1]
    assert summary["type"] == "summary" and summary["stop_reason"] == "COMPLETED"
    assert (summary["endpoints"], summary["errors"]) == (2, 1)
    assert summary["per_endpoint"]["epA"] == 7
    assert code == 1  # a record has an error (docs/campaign.md)


def test_the_text_summary_counts_in_words() -> None:
    cmd = campaign_command(parse("clocksync", "--endpoints", "1", "--listen", "1")._command, [1])
    row = cmd.row({"type": "summary", "endpoints": 1, "records": 1, "errors": 1})
    assert row == "# 1 endpoint, 1 record, 1 error"  # was "1 endpoints, ..., 1 errors"
    gone = cmd.row({"type": "error", "endpoint": "ep2", "error": "connection lost"})
    assert gone == "[ep2] error: connection lost"


def test_ctrl_c_wraps_every_endpoint_up_with_what_it_gathered() -> None:
    two = Two()
    args = parse("clocksync", "--endpoints", "2", "--listen", "20556", "--rounds", "100",
                 "--interval", "0.5")  # fmt: skip
    stop = StopSignal()
    d, out = _campaign(two, args, stop)
    while two.clock.seconds() < 1.7:
        two.step()
    stopped = two.clock.seconds()
    stop.request("interrupted")
    two.until(d)
    assert two.clock.seconds() - stopped < 0.1  # the pause between rounds ends at once
    lines = out.getvalue().splitlines()
    for ep in ("epA", "epB"):
        rounds = [x for x in lines if x.startswith(f"[{ep}] offset")]
        assert len(rounds) == 4, lines  # t = 0, 0.5, 1.0, 1.5
        assert any(x.startswith(f"[{ep}] # offset") for x in lines)  # the model fitted
    assert lines[-1] == "# 2 endpoints, 10 records, 0 errors (cut short)"


def test_the_progress_line_says_which_endpoint() -> None:
    # two endpoints' "clocksync round 3/6" once overwrote each other with no name
    two = Two()
    args = parse("clocksync", "--endpoints", "2", "--listen", "20556", "--rounds", "6",
                 "--interval", "0.5")  # fmt: skip
    seen: list[str] = []

    class Recording(Progress):
        def __call__(self, text: str) -> None:
            super().__call__(text)
            seen.append(text)

    progress = Recording()
    runs = [(name, args, s) for name, s in zip(("epA", "epB"), two.sessions, strict=True)]
    d = Deferred.fromCoroutine(measure_on(two.clock, args._command, runs, lambda r: None,
                                          progress))  # fmt: skip
    while not d.called:
        two.step()
    for name in ("epA", "epB"):
        assert any(x.startswith(f"[{name}] clocksync round ") for x in seen), seen
    assert progress.text.endswith("clocksync round 6/6")


def test_ctrl_c_during_the_sync_start_wait_ends_it_cleanly() -> None:
    # Ctrl-C before the synchronised start: no record, the summary, the timer cancelled
    two = Two()
    args = parse("clocksync", "--endpoints", "2", "--listen", "20556", "--sync-start", "10",
                 "--json")  # fmt: skip
    stop = StopSignal()
    d, out = _campaign(two, args, stop)
    while two.clock.seconds() < 1.0:
        two.step()
    stop.request("interrupted")
    two.until(d)
    (summary,) = [json.loads(x) for x in out.getvalue().splitlines()]
    assert (summary["stop_reason"], summary["records"]) == ("INTERRUPTED", 0)
    for _ in range(10_000):  # past the 10 s the wait was for: nothing of it fires
        two.step()


def test_a_bad_option_is_refused_before_waiting_for_endpoints() -> None:
    args = parse("clocksync", "--endpoints", "2", "--listen", "127.0.0.1:0", "--rounds", "1",
                 "--insecure-plaintext")  # fmt: skip
    # no reactor at all: listening would need one, so the error must come first
    d = Deferred.fromCoroutine(campaign(None, args, lambda r: None, Progress()))
    failures: list[Any] = []
    d.addErrback(failures.append)
    assert failures and failures[0].check(RunError), failures
    assert str(failures[0].value) == "--rounds must be 2..100000, got 1"


def test_help_says_the_endpoints_connect_to_listen(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("dns", "--help")
    text = " ".join(capsys.readouterr().out.split())
    assert "The endpoints connect to --listen ADDR (required)" in text
    assert "for the --endpoints N endpoints (required)" in text
    assert "runs in this process" not in text and "the first endpoint that connects" not in text
    with pytest.raises(SystemExit):
        parse("--help")
    head = capsys.readouterr().out.split("\n\n")[1]
    assert head.startswith("One measurement over many endpoints at once. The controller")


def test_a_pcap_file_that_cannot_be_written_is_refused_before_waiting(tmp_path: Path) -> None:
    args = parse("sendgap", "--endpoints", "2", "--listen", "127.0.0.1:0", "--pcap",
                 str(tmp_path / "no" / "gaps.pcap"), "--insecure-plaintext")  # fmt: skip
    d = Deferred.fromCoroutine(campaign(None, args, lambda r: None, Progress()))
    failures: list[Any] = []
    d.addErrback(failures.append)
    assert failures and failures[0].check(RunError), failures
    assert str(failures[0].value) == (
        f"--pcap {tmp_path}/no/gaps.pcap: cannot write there ({tmp_path}/no is not a "
        "writable directory)"
    )
