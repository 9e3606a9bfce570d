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
from packetlab.cli.campaign_run import Spares, Tally
from packetlab.cli.run import RunError
from packetlab.cli.run_command import Progress, measure
from packetlab.controller import EndpointSession
from packetlab.controller.stop import StopSignal
from packetlab.measure.pool import SessionPool


def parse(*argv: str) -> argparse.Namespace:
    return build_parser("campaign").parse_args(["campaign", *argv])


class Two:
    """Two (or `n`) endpoint sessions (scripted endpoints) on one task.Clock."""

    def __init__(self, n: int = 2) -> None:
        self.clock = Clock()
        self.sessions: list[EndpointSession] = []
        self.endpoints: list[FakeEndpoint] = []
        self.pumps: list[Any] = []
        for _ in range(n):
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


def refused_at_once(args: argparse.Namespace) -> str:
    """The RunError a campaign of `args` fails with before it needs a reactor."""
    d = Deferred.fromCoroutine(campaign(None, args, lambda r: None, Progress()))
    failures: list[Any] = []
    d.addErrback(failures.append)
    assert failures and failures[0].check(RunError), failures
    return str(failures[0].value)


def _campaign(two: Two, args: argparse.Namespace, stop: StopSignal) -> tuple[Deferred[int], Any]:
    """`pktlab campaign` (its printing: run_command.measure) over the two sessions."""
    out = io.StringIO()
    tally = Tally(asked=2)
    shown = argparse.Namespace(**vars(args))
    shown._command = campaign_command(args._command, tally)

    async def link(reactor: Any, _a: Any, emit: Any, progress: Progress) -> None:
        runs = [(name, args, s) for name, s in zip(("epA", "epB"), two.sessions, strict=True)]
        progress.begin()
        await measure_on(reactor, args._command, runs, emit, progress, args.sync_start,
                         tally=tally)  # fmt: skip

    d = Deferred.fromCoroutine(measure(two.clock, shown, stop, out, run=link))
    return d, out


def test_the_http_table_names_its_columns_once_as_pktlab_run_http_does() -> None:
    cmd = campaign_command(parse("http", "--endpoints", "2", "--listen", "1", "http://a/")
                           ._command, Tally(asked=2))  # fmt: skip
    out, stop = io.StringIO(), StopSignal()
    shown = parse("http", "--endpoints", "2", "--listen", "1", "http://a/")
    shown._command = cmd
    gone = {"type": "error", "endpoint": "c", "error": "connection lost"}
    rows = [gone] + [{"type": "http", "endpoint": e, "status": 200, "body_len": 5,
                      "connect_us": 400, "first_byte_us": 900, "total_us": 1000,
                      "url": "http://a/"} for e in ("a", "b")]  # fmt: skip

    async def two_rows(_r: Any, _a: Any, emit: Any, _p: Progress) -> None:
        for r in rows:
            emit(r)

    assert result_of(Deferred.fromCoroutine(measure(Clock(), shown, stop, out, run=two_rows))) == 1
    lines = out.getvalue().splitlines()
    assert lines[0] == "[c] error: connection lost"  # no header over an endpoint's loss
    assert lines[1].split() == ["[endpoint]", "code", "bytes", "conn", "ms", "tls", "ms",
                                "ttfb", "ms", "total", "ms", "url"]  # fmt: skip
    assert [x.split()[:2] for x in lines[2:4]] == [["[a]", "200"], ["[b]", "200"]]
    assert sum("code" in x for x in lines) == 1


def test_with_w_the_http_rows_are_curl_s_and_no_header_comes() -> None:
    args = parse("http", "--endpoints", "1", "--listen", "1", "-w", "%{http_code}", "http://a/")
    cmd = campaign_command(args._command, Tally(asked=1))
    assert cmd.row({"type": "error", "endpoint": "c", "error": "x"}) == "[c] error: x"
    assert cmd.row({"type": "http", "endpoint": "a", "_quiet": True, "url": "http://a/"}) is None
    assert cmd.header is None


def test_an_endpoint_gone_mid_campaign_is_reported_once_and_the_others_go_on() -> None:
    two = Two()
    args = parse("clocksync", "--endpoints", "2", "--listen", "20556", "--rounds", "6",
                 "--interval", "0.5", "--json")  # fmt: skip
    d, out = _campaign(two, args, StopSignal())
    while two.clock.seconds() < 1.2:  # a few rounds each, then epB's connection drops
        two.step()
    two.endpoints[1].transport.loseConnection()  # type: ignore[union-attr]
    code = two.until(d)
    records = [json.loads(x) for x in out.getvalue().splitlines()]
    (gone,) = [r for r in records if "error" in r]  # told once, not once per round left
    assert gone["type"] == "lost" and gone["endpoint"] == "epB", gone
    assert gone["when"] == "mid-campaign" and "closed the connection" in gone["error"]
    assert (gone["records"], gone["partial"], gone["address"]) == (4, True, two.sessions[1].peer)
    a = [r["type"] for r in records if r.get("endpoint") == "epA"]
    assert a == ["clocksync"] * 6 + ["clockmodel"]  # epA measured to the end
    b = [r for r in records if r.get("endpoint") == "epB"]
    assert [r["type"] for r in b] == ["clocksync"] * 3 + ["clockmodel", "lost"]
    assert b[3]["rounds"] == 3  # epB's rounds before it went: their model kept
    summary = records[-1]
    assert summary["type"] == "summary" and summary["stop_reason"] == "COMPLETED"
    assert (summary["endpoints"], summary["errors"], summary["partial"]) == (2, 1, ["epB"])
    assert (summary["asked"], summary["used"], summary["lost"], summary["replaced"]) == (2, 2, 1, 0)
    assert summary["per_endpoint"]["epA"] == 7
    assert code == 1  # an endpoint lost mid-campaign (docs/campaign.md)


def test_the_text_summary_counts_in_words() -> None:
    cmd = campaign_command(parse("clocksync", "--endpoints", "1", "--listen", "1")._command,
                           Tally(asked=1))  # fmt: skip
    row = cmd.row({"type": "summary", "asked": 1, "used": 1, "lost": 0, "replaced": 0,
                   "records": 1, "errors": 1})  # fmt: skip
    assert row == "# 1 endpoint asked, 1 used, 0 lost, 0 replaced; 1 record, 1 error"
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
    assert (
        lines[-1]
        == "# 2 endpoints asked, 2 used, 0 lost, 0 replaced; 10 records, 0 errors (cut short)"
    )


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
    assert refused_at_once(args) == "--rounds must be 2..100000, got 1"


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
    assert refused_at_once(args) == (
        f"--pcap {tmp_path}/no/gaps.pcap: cannot write there ({tmp_path}/no is not a "
        "writable directory)"
    )


def _with_spares(
    two: Two, args: argparse.Namespace, spares: int, arrive: int
) -> tuple[Deferred[int], Any, SessionPool]:
    """The campaign over `two`'s first two sessions from a real SessionPool with `spares`;
    the next `arrive` sessions join the pool at once (the others: by the test)."""
    out = io.StringIO()
    tally = Tally(asked=2)
    shown = argparse.Namespace(**vars(args))
    shown._command = campaign_command(args._command, tally)
    pool = SessionPool(2, two.clock, spares=spares, watch=True)
    for s in two.sessions[: 2 + arrive]:
        Deferred.fromCoroutine(pool.experiment(s))
    names = iter(["epC", "epD"])

    async def link(reactor: Any, _a: Any, emit: Any, progress: Progress) -> None:
        sessions = await pool.wait()
        runs = [(name, args, s) for name, s in zip(("epA", "epB"), sessions, strict=True)]
        spare = Spares(take=pool.take, name=lambda s: next(names), hostid=lambda s: "h")
        progress.begin()
        try:
            await measure_on(reactor, args._command, runs, emit, progress, None,
                             spares=spare, tally=tally)  # fmt: skip
        finally:
            pool.release()

    d = Deferred.fromCoroutine(measure(two.clock, shown, StopSignal(), out, run=link))
    return d, out, pool


CLOCKSYNC6 = ("clocksync", "--endpoints", "2", "--listen", "20556", "--rounds", "6",
              "--interval", "0.5", "--json")  # fmt: skip


def test_a_spare_waiting_replaces_an_endpoint_lost_mid_campaign() -> None:
    # An endpoint lost mid-campaign was reported, never replaced: the campaign ended with
    # one vantage point fewer than asked, though another endpoint was there.
    two = Two(3)
    d, out, _pool = _with_spares(two, parse(*CLOCKSYNC6), spares=1, arrive=1)
    while two.clock.seconds() < 1.2:
        two.step()
    two.endpoints[1].transport.loseConnection()  # type: ignore[union-attr]
    code = two.until(d)
    records = [json.loads(x) for x in out.getvalue().splitlines()]
    (lost,) = [r for r in records if r["type"] == "lost"]
    (took,) = [r for r in records if r["type"] == "replaced"]
    assert (lost["endpoint"], took["endpoint"], took["replaces"]) == ("epB", "epC", "epB")
    c = [r["type"] for r in records if r.get("endpoint") == "epC"]
    assert c == ["replaced"] + ["clocksync"] * 6 + ["clockmodel"]  # its run from the start
    summary = records[-1]
    assert (summary["asked"], summary["used"], summary["lost"], summary["replaced"]) == (2, 3, 1, 1)
    assert summary["partial"] == ["epB"] and code == 1


def test_a_spare_arriving_while_the_others_measure_replaces_the_lost_one() -> None:
    two = Two(3)
    d, out, pool = _with_spares(two, parse(*CLOCKSYNC6), spares=2, arrive=0)
    while two.clock.seconds() < 1.2:
        two.step()
    two.endpoints[1].transport.loseConnection()  # type: ignore[union-attr]
    while two.clock.seconds() < 2.0:  # epB's place waits while epA measures
        two.step()
    assert not d.called
    Deferred.fromCoroutine(pool.experiment(two.sessions[2]))
    two.until(d)
    records = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [r["replaces"] for r in records if r["type"] == "replaced"] == ["epB"]
    assert records[-1]["used"] == 3 and records[-1]["per_endpoint"]["epC"] == 8


def test_no_spare_the_lost_one_is_not_waited_for_past_the_others() -> None:
    two = Two(2)
    d, out, _pool = _with_spares(two, parse(*CLOCKSYNC6), spares=2, arrive=0)
    while two.clock.seconds() < 1.2:
        two.step()
    two.endpoints[1].transport.loseConnection()  # type: ignore[union-attr]
    code = two.until(d)  # ends when epA is done, with no spare come
    assert two.clock.seconds() < 4.0
    summary = json.loads(out.getvalue().splitlines()[-1])
    assert (summary["used"], summary["lost"], summary["replaced"]) == (2, 1, 0) and code == 1


def test_replace_0_leaves_the_lost_place_empty() -> None:
    two = Two(3)
    d, out, _pool = _with_spares(two, parse(*CLOCKSYNC6), spares=0, arrive=1)
    while two.clock.seconds() < 1.2:
        two.step()
    two.endpoints[1].transport.loseConnection()  # type: ignore[union-attr]
    two.until(d)
    records = [json.loads(x) for x in out.getvalue().splitlines()]
    assert not [r for r in records if r["type"] == "replaced"]
    assert (records[-1]["used"], records[-1]["lost"]) == (2, 1)


def test_the_lost_and_replaced_rows() -> None:
    cmd = campaign_command(parse("dns", "--endpoints", "2", "--listen", "1")._command,
                           Tally(asked=2))  # fmt: skip
    lost = {"type": "lost", "endpoint": "lab-2", "hostid": "lab-2", "address": "10.0.0.2:4000",
            "when": "mid-campaign", "records": 3, "partial": True,
            "error": "the endpoint closed the connection"}  # fmt: skip
    assert cmd.row(lost) == (
        "[lab-2] lost mid-campaign (hostid lab-2, 10.0.0.2:4000): the "
        "endpoint closed the connection; its 3 records kept (partial)"
    )
    early = {"type": "lost", "endpoint": "10.0.0.3:4000", "hostid": "", "when": "before the start",
             "address": "10.0.0.3:4000", "records": 0, "reason": "session closed"}  # fmt: skip
    assert cmd.row(early) == "[10.0.0.3:4000] lost before the start (10.0.0.3:4000): session closed"
    took = {"type": "replaced", "endpoint": "lab-5", "replaces": "lab-2", "address": "10.0.0.5:1"}
    assert cmd.row(took) == "[lab-5] replaces lab-2 (10.0.0.5:1)"
    summary = {"type": "summary", "asked": 2, "used": 3, "lost": 1, "replaced": 1,
               "records": 9, "errors": 1, "partial": ["lab-2"]}  # fmt: skip
    assert cmd.row(summary) == ("# 2 endpoints asked, 3 used, 1 lost, 1 replaced; 9 records, "
                                "1 error; partial: lab-2")  # fmt: skip


@pytest.mark.parametrize(
    ("option", "error"),
    [
        (("--timeout=-1",), "--timeout must be > 0, got -1"),  # was an internal error
        (("--timeout", "nan"), "--timeout must be > 0, got nan"),  # (an AssertionError)
        (("--sync-start=-5",), "--sync-start must be 0..86400, got -5"),  # was taken as 0
        (("--sync-start", "inf"), "--sync-start must be 0..86400, got inf"),  # never started
        (("--replace=-1",), "--replace must be 0..10000, got -1"),
        (("--endpoints", "0"), "--endpoints must be 1..10000, got 0"),
    ],
)
def test_bad_values_are_one_line_before_listening(option: tuple[str, ...], error: str) -> None:
    args = parse("dns", "--endpoints", "2", "--listen", "127.0.0.1:0", "--insecure-plaintext",
                 *option, "example.com")  # fmt: skip
    assert refused_at_once(args) == error


def _targets_command(clock: Clock) -> Any:
    """A measurement that reads the endpoint's clock once per target, 0.5 s apart, and
    says which target and which --pcap file it had."""
    import dataclasses

    from twisted.internet.task import deferLater

    from packetlab.wire import vmem

    def experiment(a: argparse.Namespace, emit: Any, progress: Progress) -> Any:
        async def run(session: EndpointSession) -> None:
            for t in a.names:
                await session.mread(vmem.TIME.addr, 8)
                emit({"type": "seen", "target": t, "pcap": a.pcap})
                await deferLater(clock, 0.5)

        return run

    cmd = parse("dns", "--endpoints", "2", "--listen", "1")._command
    return dataclasses.replace(cmd, experiment=experiment)


def test_the_replacement_runs_the_lost_ones_share_with_a_pcap_file_of_its_own() -> None:
    two = Two(3)
    cmd = _targets_command(two.clock)
    share = {n: argparse.Namespace(names=t, pcap="/tmp/q.pcap")
             for n, t in (("epA", ["a1", "a2", "a3"]), ("epB", ["b1", "b2", "b3"]))}  # fmt: skip
    pool = SessionPool(2, two.clock, spares=1, watch=True)
    for s in two.sessions:
        Deferred.fromCoroutine(pool.experiment(s))
    sessions = result_of(Deferred.fromCoroutine(pool.wait()))
    runs = [(n, share[n], s) for n, s in zip(("epA", "epB"), sessions, strict=True)]
    records: list[Any] = []
    spare = Spares(take=pool.take, name=lambda s: "epC", hostid=lambda s: "c")
    d = Deferred.fromCoroutine(measure_on(two.clock, cmd, runs, records.append, Progress(),
                                          spares=spare))  # fmt: skip
    while two.clock.seconds() < 0.7:  # epB has seen b1 and b2
        two.step()
    two.endpoints[1].transport.loseConnection()  # type: ignore[union-attr]
    two.until(d)
    seen = {(r["endpoint"], r["target"], r["pcap"]) for r in records if r["type"] == "seen"}
    assert {x for x in seen if x[0] == "epC"} == {
        ("epC", t, "/tmp/q-epC.pcap") for t in ("b1", "b2", "b3")
    }  # epB's share, from the start, in a file of its own
    (lost,) = [r for r in records if r["type"] == "lost"]
    assert lost["records"] == 2 and lost["partial"]


def _split_lost(spares: int) -> tuple[list[Any], Tally]:
    """--split over epA and epB, epB lost after two of its names; `spares` waiting."""
    two = Two(2 + spares)
    cmd = _targets_command(two.clock)
    share = {n: argparse.Namespace(names=t, pcap=None)
             for n, t in (("epA", ["a1", "a2", "a3"]), ("epB", ["b1", "b2", "b3"]))}  # fmt: skip
    pool = SessionPool(2, two.clock, spares=spares, watch=True)
    for s in two.sessions:
        Deferred.fromCoroutine(pool.experiment(s))
    sessions = result_of(Deferred.fromCoroutine(pool.wait()))
    runs = [(n, share[n], s) for n, s in zip(("epA", "epB"), sessions, strict=True)]
    records: list[Any] = []
    tally = Tally(asked=2, split="names")
    spare = Spares(take=pool.take, name=lambda s: "epC", hostid=lambda s: "c") if spares else None
    d = Deferred.fromCoroutine(measure_on(two.clock, cmd, runs, records.append, Progress(),
                                          spares=spare, tally=tally))  # fmt: skip
    while two.clock.seconds() < 0.7:  # epB has seen b1 and b2
        two.step()
    two.endpoints[1].transport.loseConnection()  # type: ignore[union-attr]
    two.until(d)
    pool.release()
    return records, tally


def test_split_a_lost_endpoints_share_is_named_until_a_replacement_measures_it() -> None:
    """Session 30 left an unmeasured share unnamed (`--split`): the lost record carries
    the endpoint's share; the summary's `incomplete` keeps it unless a spare measured it."""
    records, tally = _split_lost(spares=0)
    (lost,) = [r for r in records if r["type"] == "lost"]
    assert lost["share"] == ["b1", "b2", "b3"] and lost["records"] == 2
    assert tally.incomplete == {"epB": ["b1", "b2", "b3"]}
    records, tally = _split_lost(spares=1)
    (lost,) = [r for r in records if r["type"] == "lost"]
    assert lost["share"] == ["b1", "b2", "b3"]
    assert tally.incomplete == {}  # epC measured b1..b3 from the start


def test_split_the_text_names_the_share_left_and_says_the_split_is_incomplete() -> None:
    cmd = campaign_command(parse("dns", "--endpoints", "3", "--listen", "1")._command,
                           Tally(asked=3, split="names"))  # fmt: skip
    refused = cmd.row({"type": "error", "endpoint": "lab-3", "error": "nopen failed",
                       "share": ["ns1.test", "c.test"], "records": 0})  # fmt: skip
    assert refused == "[lab-3] error: nopen failed; its share not measured: ns1.test, c.test"
    cut = cmd.row({"type": "error", "endpoint": "lab-3", "error": "x", "share": ["n"],
                   "records": 2})  # fmt: skip
    assert cut == "[lab-3] error: x; its share not measured to the end: n"
    lost = cmd.row({"type": "lost", "endpoint": "lab-2", "hostid": "lab-2", "address": "a:1",
                    "when": "mid-campaign", "records": 1, "error": "gone",
                    "share": ["m", "n"]})  # fmt: skip
    assert lost == ("[lab-2] lost mid-campaign (hostid lab-2, a:1): gone; its 1 record kept "
                    "(partial); its share: m, n")  # (a spare may measure it yet)  # fmt: skip
    row = cmd.row({"type": "summary", "asked": 3, "used": 3, "lost": 0, "replaced": 0,
                   "records": 5, "errors": 1,
                   "incomplete": {"lab-3": ["ns1.test", "c.test"]}})  # fmt: skip
    assert row == ("# 3 endpoints asked, 3 used, 0 lost, 0 replaced; 5 records, 1 error; "
                   "split incomplete: lab-3 (ns1.test, c.test)")  # fmt: skip


def test_ctrl_c_ends_the_wait_for_a_spare_at_once() -> None:
    # (epA here takes no notice of Ctrl-C: the wait must end by itself, not with epA)
    two = Two(2)
    stop = StopSignal()
    progress = Progress()
    progress.stop = stop
    pool = SessionPool(2, two.clock, spares=1, watch=True)
    for s in two.sessions:
        Deferred.fromCoroutine(pool.experiment(s))
    sessions = result_of(Deferred.fromCoroutine(pool.wait()))
    many = argparse.Namespace(names=[str(i) for i in range(100)], pcap=None)
    runs = [(n, many, s) for n, s in zip(("epA", "epB"), sessions, strict=True)]
    spare = Spares(take=pool.take, name=lambda s: "epC", hostid=lambda s: "c")
    d = Deferred.fromCoroutine(measure_on(two.clock, _targets_command(two.clock), runs,
                                          lambda r: None, progress, spares=spare))  # fmt: skip
    while two.clock.seconds() < 1.2:
        two.step()
    two.endpoints[1].transport.loseConnection()  # type: ignore[union-attr]
    while not pool._takers and two.clock.seconds() < 3.0:  # epB sees it at its next read
        two.step()
    assert pool._takers  # epB's place waits for a spare while epA measures
    stop.request("interrupted")
    two.step()
    assert not pool._takers and not d.called  # the wait given up; epA still at it
    pool.release()


def test_pcap_dash_is_refused_before_waiting(tmp_path: Path) -> None:
    """`--pcap -` (standard output for `pktlab run`) made a file named `--HOSTID` per
    endpoint in a campaign, whose pcap files are one per endpoint."""
    args = parse("sendgap", "--endpoints", "2", "--listen", "127.0.0.1:0", "--pcap", "-",
                 "--insecure-plaintext")  # fmt: skip
    assert refused_at_once(args) == (
        "--pcap -: a campaign writes one file per endpoint (FILE-HOSTID.pcap); give a file name"
    )
