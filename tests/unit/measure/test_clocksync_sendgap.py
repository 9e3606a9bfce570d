"""Clock offset/drift and the send-gap trains through the scripted endpoint, and the
drift fit on exact data."""

from __future__ import annotations

import io
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "controller"))

import itertools

from ctl_fakes import Rig
from twisted.internet.defer import Deferred

from packetlab.measure.clocksync import ClockRound, clock_sync, fit_drift
from packetlab.measure.sendgap import send_gap
from packetlab.wire import Nopen, Nsend


def test_fit_recovers_offset_and_drift() -> None:
    # +250 us at t=0, drifting +20 ppm (20 us per s), sampled every 2 s with 10 us error
    rounds = [ClockRound(10**18 + i * 2 * 10**9, 250_000 + 40_000 * i, 20_000) for i in range(8)]
    m = fit_drift(rounds)
    assert m.offset_ns == pytest.approx(250_000)
    assert m.drift_ppm == pytest.approx(20.0)
    assert max(abs(x) for x in m.residuals_ns()) < 1e-6
    t = 10**18 + 5 * 10**9
    assert m.to_endpoint(t) == t + 350_000
    assert m.to_local(m.to_endpoint(t)) == pytest.approx(t, abs=1)
    d = m.to_dict()
    assert (d["rounds"], d["span_s"], d["min_rtt_us"]) == (8, 14.0, 20.0)


def test_fit_weights_tight_rounds_more() -> None:
    good = [ClockRound(i * 10**9, 1000, 2_000) for i in range(5)]
    bad = ClockRound(5 * 10**9, 500_000, 2_000_000)  # a 1 ms error bound
    m = fit_drift([*good, bad])
    assert abs(m.offset_ns - 1000) < 100 and abs(m.drift_ppm) < 0.1
    with pytest.raises(ValueError):
        fit_drift([])
    single = fit_drift(good[:1])
    assert single.offset_ns == pytest.approx(1000) and single.drift_ppm == 0.0


def test_clock_sync_sees_the_endpoint_offset() -> None:
    rig = Rig(offset_ns=3_000_000)  # the endpoint's clock is 3 ms ahead
    seen: list[ClockRound] = []
    m = rig.run(clock_sync(rig.session, rounds=4, interval=0.5, samples=3, on_round=seen.append))
    assert len(seen) == 4 and len(m.rounds) == 4
    assert all(abs(r.offset_ns - 3_000_000) <= r.error_ns for r in seen)
    assert m.drift_ppm == pytest.approx(0.0, abs=1.0)
    assert seen[1].local_ns - seen[0].local_ns >= 500_000_000  # rounds `interval` apart
    with pytest.raises(ValueError):
        rig.run(clock_sync(rig.session, rounds=0))


def test_clock_sync_stopped_fits_the_rounds_so_far() -> None:
    # `pktlab run clocksync` and Ctrl-C: no further round, the model of those done, at
    # once (not after the interval in progress)
    from packetlab.controller.stop import StopSignal

    rig = Rig(offset_ns=3_000_000)
    stop = StopSignal()
    seen: list[ClockRound] = []
    stopped_at: list[float] = []

    def request() -> None:
        stopped_at.append(rig.clock.seconds())
        stop.request("interrupted")

    def one(r: ClockRound) -> None:
        seen.append(r)
        if len(seen) == 2:
            rig.clock.callLater(1.0, request)  # 1 s into a 10 s wait

    d = clock_sync(rig.session, rounds=20, interval=10.0, samples=3, on_round=one, stop=stop)
    m = rig.run(d)
    assert len(seen) == 2 and len(m.rounds) == 2
    assert abs(m.offset_ns - 3_000_000) <= max(r.error_ns for r in seen)
    assert rig.clock.seconds() - stopped_at[0] < 0.1  # not the 9 s left of the interval
    # the interval's timer is gone (the session's answer watchdog disarms on its own turn)
    assert [
        c for c in rig.clock.getDelayedCalls() if getattr(c, "func", None) != rig.session._watch
    ] == []


def test_send_gap_train() -> None:
    rig = Rig()
    r = rig.run(send_gap(rig.session, "127.0.0.1", 9, count=20, gap_ns=1_000_000, lead_ns=10**8))
    sends = [m for m in rig.endpoint.received if isinstance(m, Nsend)]
    assert len(sends) == 20
    assert [b.time - a.time for a, b in itertools.pairwise(sends)] == [1_000_000] * 19
    d = r.to_dict()
    assert (d["type"], d["count"], d["sent"], d["gap_us"], d["dst"]) == (
        "sendgap", 20, 20, 1000.0, "127.0.0.1:9",
    )  # fmt: skip
    # the fake sends at the scheduled instant: no error at all
    assert d["abs_offset_us"]["max"] == 0 and d["abs_gap_error_us"]["max"] == 0
    pkts = r.packets()
    assert len(pkts) == 20 and pkts[3]["offset_us"] == 0 and pkts[3]["type"] == "sendgap-packet"


def test_send_gap_pcap_holds_each_datagram_at_its_send_time() -> None:
    from packetlab.measure.pcap import PcapRecorder, read_pcap

    rig = Rig()
    rec = PcapRecorder()
    rig.run(send_gap(rig.session, "127.0.0.1", 9, count=5, gap_ns=1_000_000, size=16,
                     lead_ns=10**8, recorder=rec))  # fmt: skip
    sends = [m for m in rig.endpoint.received if isinstance(m, Nsend)]
    (nopen,) = [m for m in rig.endpoint.received if isinstance(m, Nopen)]
    assert nopen.lport is not None and nopen.lport >= 49152  # bound, so the pcap can show it
    buf = io.BytesIO()
    rec.write(buf)
    pkts = read_pcap(buf.getvalue())
    assert [t for t, _ in pkts] == [s.time for s in sends]
    for i, (_, p) in enumerate(pkts):
        assert p[9] == 17 and p[16:20] == bytes([127, 0, 0, 1])  # UDP to 127.0.0.1
        assert int.from_bytes(p[20:22], "big") == nopen.lport
        assert int.from_bytes(p[22:24], "big") == 9 and p[28:] == sends[i].data


def test_send_gap_names_an_ipv6_destination_in_brackets() -> None:
    # `pktlab run sendgap --to ::1:9` sent to the address ::1:9 (a bare IPv6 address takes
    # the default port, as --server's) and its records said "dst": "::1:9:9".
    rig = Rig()
    r = rig.run(send_gap(rig.session, "::1:9", 9, count=2, gap_ns=1000, lead_ns=10**7))
    assert r.to_dict()["dst"] == "[::1:9]:9"


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--to", ""], "--to : no host"),
        (["--to", "127.0.0.1:0"], "--to 127.0.0.1:0: bad port (1..65535)"),
        (["--count", "0"], "--count must be 1..100000, got 0"),
        (["--trains", "0"], "--trains must be 1..10000, got 0"),
        (["--gap-us", "-1"], "--gap-us must be 0..10000000, got -1"),
        (["--size", "70000"], "--size must be 4..65000, got 70000"),
        (["--lead-ms", "-5"], "--lead-ms must be 0..60000, got -5"),
        (["--gap-us", "nan"], "--gap-us must be 0..10000000, got nan"),
    ],
)
def test_run_sendgap_names_the_option_that_is_wrong(argv: list[str], error: str) -> None:
    # Was "--server bogus: ..." and "--server 127.0.0.1:0: bad port" for --to (the option
    # is --to), "--gap-us must be 0..1e7 and --size 4..65000" whichever was wrong, and a
    # negative --lead-ms was taken.
    import argparse

    from packetlab.cli import run_sendgap
    from packetlab.cli.run import RunError

    p = argparse.ArgumentParser()
    run_sendgap.configure(p)
    args = p.parse_args(argv)
    with pytest.raises(RunError) as e:
        run_sendgap.experiment(args, lambda r: None, None)  # type: ignore[arg-type]
    assert str(e.value).startswith(error)


@pytest.mark.parametrize(
    ("command", "argv", "error"),
    [
        ("run_clocksync", ["--samples", "0"], "--samples must be 1..1000, got 0"),
        ("run_clocksync", ["--rounds", "1"], "--rounds must be 2..100000, got 1"),
        ("run_clocksync", ["--interval", "nan"], "--interval must be 0..3600, got nan"),
        ("run_alias", ["--spacing", "0", "127.0.0.1", "127.0.0.2"], "--spacing must be 0.05.."),
        ("run_alias", ["--wait", "-1", "127.0.0.1", "127.0.0.2"], "--wait must be 0..3600, got -1"),
        ("run_alias", ["--velocity-ratio", "0.5", "127.0.0.1", "127.0.0.2"], "--velocity-ratio"),
        (
            "run_alias",
            ["--elimination-rounds", "1", "127.0.0.1", "127.0.0.2"],
            "--elimination-rounds must be 3..10000 with 1 endpoint(s), got 1",
        ),
    ],
)
def test_run_clocksync_and_alias_name_the_option_that_is_wrong(
    command: str, argv: list[str], error: str
) -> None:
    # Was "--rounds must be 2..100000 and --samples 1..1000" for either, the three stage
    # round counts under one name, and alias's --wait -1 taken.
    import argparse
    import importlib

    from packetlab.cli.run import RunError

    module = importlib.import_module(f"packetlab.cli.{command}")
    p = argparse.ArgumentParser()
    module.configure(p)
    args = p.parse_args(argv)
    with pytest.raises(RunError) as e:
        module.experiment(args, lambda r: None, None)
    assert str(e.value).startswith(error)


def test_the_drift_comes_with_its_standard_error() -> None:
    # `pktlab run clocksync --rounds 3 --interval 0.1` on the in-process endpoint (the
    # same clock: drift 0) printed "drift -20.147 ppm over 0.2 s" with nothing to say that
    # ±46 us per round over 0.2 s cannot tell a drift from 0.
    rounds = [
        ClockRound(10**18 + i * 10**8, off, 92_000) for i, off in enumerate((6460, 4682, 2430))
    ]
    m = fit_drift(rounds)
    # three rounds 0.1 s apart, each ±46 us: 1/sqrt(2 x 0.01 s² / (46 us)²) = 325 ppm
    assert m.drift_error_ppm == pytest.approx(46_000 / math.sqrt(0.02) / 1000)
    assert m.drift_error_ppm is not None and abs(m.drift_ppm) < m.drift_error_ppm
    assert m.to_dict()["drift_error_ppm"] == m.drift_error_ppm
    assert fit_drift(rounds[:1]).drift_error_ppm is None
    from packetlab.cli.run_clocksync import row

    line = row({"type": "clockmodel", **m.to_dict()})
    assert line is not None
    assert f"{m.drift_ppm:.3f} +- {m.drift_error_ppm:.3f} ppm over 0.2 s" in line


def run_sendgap_records(*argv: str) -> list[dict[str, object]]:
    """`pktlab run sendgap ARGV`'s records, run on an in-memory endpoint."""
    import argparse

    from packetlab.cli import run_sendgap
    from packetlab.cli.run_command import Progress

    p = argparse.ArgumentParser()
    run_sendgap.configure(p)
    records: list[dict[str, object]] = []
    experiment = run_sendgap.experiment(p.parse_args(argv), records.append, Progress())
    rig = Rig()
    rig.run(rig.session.ready)
    rig.run(Deferred.fromCoroutine(experiment(rig.session)))
    return records


def test_pktlab_run_sendgap_says_when_a_train_waits_over_a_second(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A lead over a second (here --lead-ms 1500) is a wait the user hears about: one line
    on stderr per train, in `pktlab run`'s form; the default (adaptive) short one is not."""

    def run(*argv: str) -> tuple[list[dict[str, object]], str]:
        return run_sendgap_records(*argv), capsys.readouterr().err

    records, err = run("--count", "3", "--trains", "2", "--lead-ms", "1500")
    assert [r["sent"] for r in records] == [3, 3]
    said = "queueing 3 nsends at the endpoint: first packet in 1.5 s"
    assert err.splitlines() == [f"pktlab run sendgap: train {t}/2: {said}" for t in (1, 2)]
    records, err = run("--count", "3", "--trains", "1")
    assert [r["sent"] for r in records] == [3] and err == ""


def test_pktlab_run_sendgap_takes_send_trains_adaptive_lead() -> None:
    """`run sendgap` waited a fixed 200 ms before each train: too long for a short one, too
    short for 10,000 x 10 us (queued up to 104 ms late, |offset| p50 3.2-6.2 ms; adaptive:
    on time, 0.8-3.8 ms; session 20). The default is send_train's lead now, and the records
    say the lead, the margin and what an nsend took to queue; --lead-ms still fixes it."""
    from packetlab.cli import run_sendgap

    run = run_sendgap_records

    (adaptive,) = run("--count", "5", "--trains", "1")
    assert isinstance(adaptive["lead_ms"], float) and 20 <= adaptive["lead_ms"] < 100
    assert isinstance(adaptive["queued_ahead_ms"], float) and adaptive["queued_ahead_ms"] > 0
    assert adaptive["queue_cost_us"] is not None
    (fixed,) = run("--count", "5", "--trains", "1", "--lead-ms", "200")
    assert fixed["lead_ms"] == 200.0
    line = run_sendgap.row(fixed)
    assert line is not None and "gap 100 us, lead 200.0 ms |" in line
    late = run_sendgap.row({**fixed, "queued_ahead_ms": -85.1})
    assert late is not None and "lead 200.0 ms (nsends queued up to 85.1 ms late) |" in late


def test_pktlab_run_sendgaps_budget_covers_the_adaptive_lead() -> None:
    import argparse

    from packetlab.cli import run_sendgap

    p = argparse.ArgumentParser()
    run_sendgap.configure(p)
    long = p.parse_args(["--count", "100000", "--gap-us", "1", "--trains", "2"])
    # 32,768 nsends at up to 0.5 ms each before each train's first packet
    assert run_sendgap.budget(long) > 2 * 16
    fixed = p.parse_args(["--count", "100", "--trains", "1", "--lead-ms", "200"])
    assert run_sendgap.budget(fixed) == 100 * 100 / 1e6 + 0.2 + 6


def _exit_status(argv: list[str], records: list[dict[str, object]]) -> int:
    """What `pktlab run sendgap ARGV` exits with when its run emits `records`."""
    import io
    from typing import Any

    from twisted.internet.task import Clock

    import packetlab.cli as cli
    from packetlab.cli.run_command import measure
    from packetlab.controller.stop import StopSignal

    args = cli.parse(["run", "sendgap", *argv])

    async def fake(reactor: Any, a: Any, emit: Any, progress: Any) -> None:
        for r in records:
            emit(r)

    got: list[int] = []
    out = io.StringIO()
    Deferred.fromCoroutine(measure(Clock(), args, StopSignal(), out, run=fake)).addCallback(
        got.append
    )
    return got[0]


def test_run_sendgap_s_exit_status_does_not_depend_on_packets() -> None:
    """`pktlab run sendgap --packets` exited 1 with every datagram sent and `errors: 0` in
    its summary (each per-datagram record has `"error": null`, which run_command counted as
    a failure); without --packets 0. Now 0 both ways, and 1 both ways when a datagram was
    not sent (session 31: `--to 10.77.2.2:9 --packets --json` in a testbed, exit 1)."""
    argv = ["--count", "3", "--trains", "2", "--packets"]
    records = run_sendgap_records(*argv)
    assert {r["type"] for r in records} == {"sendgap", "sendgap-packet"}
    assert all(r["error"] is None for r in records if r["type"] == "sendgap-packet")
    trains = [r for r in records if r["type"] == "sendgap"]
    assert _exit_status(["--json", *argv], records) == 0
    assert _exit_status(["--json", *argv[:-1]], trains) == 0
    unsent = [{**trains[0], "sent": 2, "errors": ["ESYSNOBUFS"]}, trains[1]]
    packets = [{**records[0], "sent_ns": None, "offset_us": None, "error": "ESYSNOBUFS"}]
    assert _exit_status(["--json", *argv], packets + unsent) == 1
    assert _exit_status(["--json", *argv[:-1]], unsent) == 1


def test_run_sendgap_s_text_summary_says_what_the_json_has_and_a_cut() -> None:
    """The text summary was `# 1 trains, 20000 of 20000 sent` after a Ctrl-C (3 planned):
    no word that the run was cut, nor of the median gap error the JSON summary has."""
    from packetlab.cli import run_sendgap

    summary = {"type": "summary", "trains": 1, "count": 20000, "sent": 20000, "errors": 0,
               "abs_gap_error_us_p50_median": 0.452, "stop_reason": "INTERRUPTED"}  # fmt: skip
    assert run_sendgap.row(summary) == (
        "# 1 train, 20000 of 20000 sent, |gap error| p50 0.45 us (median of trains) (interrupted)"
    )
    done = {**summary, "trains": 5, "stop_reason": "COMPLETED"}
    assert run_sendgap.row(done) == (
        "# 5 trains, 20000 of 20000 sent, |gap error| p50 0.45 us (median of trains)"
    )


@pytest.mark.parametrize(
    ("to", "target"),
    [("127.0.0.1:9", "127.0.0.1"), ("10.77.2.2", "10.77.2.2"), ("::1", "::1"),
     ("fd00:77:2::2", "fd00:77:2::2"), ("[fd00:77:2::2]:9", "fd00:77:2::2"),
     ("localhost:9", "127.0.0.1")],
)  # fmt: skip
def test_run_sendgap_routes_from_where_to_says(to: str, target: str) -> None:
    """The in-process endpoint's address is chosen by a route to --to's host, which was
    --to split at its last colon: `--to ::1`, `--to fd00:77:2::2` (a bare IPv6 address:
    port 9, as the experiment reads it) and `--to localhost:9` failed before anything was
    sent, `':' does not appear to be an IPv4 or IPv6 address`, exit 2 (session 31)."""
    import argparse

    from packetlab.cli import run_sendgap

    p = argparse.ArgumentParser()
    run_sendgap.configure(p)
    assert run_sendgap.COMMAND.target(p.parse_args(["--to", to])) == target
