"""`pktlab run clocksync`'s summary as a researcher reads it (session 24): the offset at
the end of the run with its error, the jitter, the samples used, the sign convention in
words, `-c`/`-i`, and an endpoint clock decades off fitted in exact nanoseconds."""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "controller"))

from ctl_fakes import Rig
from twisted.internet.defer import Deferred

from packetlab.cli import run_clocksync
from packetlab.cli.run_command import Progress
from packetlab.measure.clocksync import ClockRound, fit_drift

T0 = 1_796_546_223_123_456_789  # a local time, ns since 1970


def four_rounds(base: int = 0) -> list[ClockRound]:
    """1 s apart, each +- 10 us (rtt 20 us), 8 samples; offsets base + 1000, 2100, 2900,
    4000 ns: the line 1030 + 980 t (ns, t in s), residuals -30, +90, -90, +30 ns."""
    offsets = (1000, 2100, 2900, 4000)
    return [ClockRound(T0 + i * 10**9, base + o, 20_000, 8) for i, o in enumerate(offsets)]


def test_the_summary_gives_the_offset_at_the_last_round_with_its_error_and_the_jitter() -> None:
    # The summary's only offset was the fit at the first round: with a drift, stale by the
    # end (100 ppm over 4.5 s: +58 us said, +517 us true at the end); no jitter, nothing
    # said of the samples behind it.
    d = fit_drift(four_rounds()).to_dict()
    assert d["offset_us"] == pytest.approx(1.030)
    assert d["offset_last_us"] == pytest.approx(3.970)  # 1030 + 980 x 3
    # weights 1/(10 us)^2: sqrt(1/sum w + (3 - 1.5)^2 / sxx) = sqrt(2.5e7 + 4.5e7) ns
    assert d["offset_last_error_us"] == pytest.approx(math.sqrt(7e7) / 1000)
    assert d["drift_ppm"] == pytest.approx(0.980)
    assert d["drift_error_ppm"] == pytest.approx(1 / math.sqrt(5e-8) / 1000)
    assert d["jitter_us"] == pytest.approx(math.sqrt((30**2 + 90**2 + 90**2 + 30**2) / 4) / 1000)
    assert d["max_residual_us"] == pytest.approx(0.090)
    assert (d["rounds"], d["samples"], d["span_s"], d["min_rtt_us"]) == (4, 32, 3.0, 20.0)
    # two rounds: a line through them fits exactly, which is no jitter of 0
    two = fit_drift(four_rounds()[:2]).to_dict()
    assert two["jitter_us"] is None and two["max_residual_us"] == 0
    line = run_clocksync.row({"type": "clockmodel", **two})
    assert line is not None and "jitter" not in line


def test_an_endpoint_clock_decades_off_is_fitted_in_exact_ns() -> None:
    # An endpoint with no RTC reads 1970: its offset, -1.8e18 ns, held in a float is
    # rounded to 256 ns, and the fit had rounded every round's offset so: the residuals
    # were 0 or 256 ns, the jitter 0.256 us, the drift 0, to_endpoint 256 ns off.
    far = -T0
    near, off = fit_drift(four_rounds()), fit_drift(four_rounds(far))
    assert off.residuals_ns() == pytest.approx(near.residuals_ns(), abs=1e-6)
    assert off.drift_ppm == pytest.approx(near.drift_ppm)
    assert off.to_dict()["jitter_us"] == pytest.approx(near.to_dict()["jitter_us"])
    t = T0 + 3 * 10**9
    assert off.to_endpoint(t) == t + far + 3970
    assert off.to_local(off.to_endpoint(t)) == t


def model_row(**over: float) -> str:
    rec = {"type": "clockmodel", **fit_drift(four_rounds()).to_dict(), **over}
    line = run_clocksync.row(rec)
    assert line is not None
    return line


def test_the_text_says_which_way_the_offset_and_the_drift_go() -> None:
    # "offset 1500006.319 us" alone is read both ways (chronyc sources: ours minus the
    # source's; ntpdate -q: the source's minus ours), and a drift of -4 +- 120 ppm was a
    # bare number.
    ahead = model_row(offset_last_us=1_500_000.25, offset_last_error_us=35.1,
                      drift_ppm=101.3, drift_error_ppm=9.5)  # fmt: skip
    offset, drift, stats = ahead.splitlines()
    assert offset.startswith("# offset +1.500000 s +- 35.100 us (endpoint - controller) at")
    assert offset.endswith("the endpoint's clock is ahead of ours")
    assert drift == "# drift +101.300 +- 9.500 ppm over 3.0 s (the endpoint's clock runs fast)"
    assert stats == (
        "# 4 rounds x 8 samples, min delay 20.0 us, jitter 0.067 us, max residual 0.090 us"
    )
    behind = model_row(offset_last_us=-172_799_999_999.0, drift_ppm=-50.0, drift_error_ppm=9.5)
    assert "# offset -172799.999999 s +- " in behind
    assert "the endpoint's clock is behind ours" in behind and "runs slow)" in behind
    level = model_row(offset_last_us=2.1, offset_last_error_us=29.0, drift_ppm=-4.0,
                      drift_error_ppm=120.0)  # fmt: skip
    assert "is level with ours within the error" in level
    assert "(no drift within the error)" in level


def records(*argv: str, offset_ns: int = 0) -> list[dict[str, object]]:
    """`pktlab run clocksync ARGV`'s records, on an in-memory endpoint `offset_ns` ahead."""
    p = argparse.ArgumentParser()
    run_clocksync.configure(p)
    got: list[dict[str, object]] = []
    experiment = run_clocksync.experiment(p.parse_args(argv), got.append, Progress())
    rig = Rig(offset_ns=offset_ns)
    rig.run(rig.session.ready)
    rig.run(Deferred.fromCoroutine(experiment(rig.session)))
    return got


def test_ping_like_count_and_interval_and_numbered_rounds() -> None:
    # -c/-i as ping's and `pktlab compare`'s; rounds numbered as ping's icmp_seq, and the
    # first row says the sign before any summary does
    got = records("-c", "3", "-i", "0.2", "--samples", "2", offset_ns=1_500_000_000)
    rounds = [r for r in got if r["type"] == "clocksync"]
    assert [r["round"] for r in rounds] == [1, 2, 3]
    assert all(abs(r["offset_us"] - 1.5e6) <= r["error_us"] for r in rounds)  # type: ignore[operator]
    local = [int(r["local_ns"]) for r in rounds]  # type: ignore[call-overload]
    assert all(0.2e9 <= b - a < 0.3e9 for a, b in itertools.pairwise(local))
    (model,) = [r for r in got if r["type"] == "clockmodel"]
    assert (model["rounds"], model["samples"]) == (3, 6)
    first = run_clocksync.row(rounds[0])
    assert first is not None and first.startswith("offset    +1.500000 s  +- ")
    assert first.endswith(" us  round 1 (offset = endpoint - controller)")
    second = run_clocksync.row(rounds[1])
    assert second is not None and "endpoint - controller" not in second
    assert [r["rounds"] for r in records("--count", "2", "-i", "0") if "rounds" in r] == [2]


def rounds_1s(offsets_us: list[float], rtt_us: int = 80) -> list[ClockRound]:
    """Rounds 1 s apart, each +- rtt/2, at the given offsets."""
    return [
        ClockRound(T0 + i * 10**9, round(o * 1000), rtt_us * 1000, 8)
        for i, o in enumerate(offsets_us)
    ]


def test_a_clock_step_is_said_and_the_model_is_of_the_rounds_after_it() -> None:
    # A 2 ms step of the endpoint's clock (libfaketime's timestamp file rewritten mid-run)
    # amid 10 rounds 0.3 s apart was fitted as one line: "drift +1056.265 +- 25.957 ppm
    # (the endpoint's clock runs fast)", the first round's offset -695 us for a measured
    # +13 +- 92, the last's +2209 +- 39 for +2016.
    from packetlab.measure.clocksync import ClockStep, find_steps, fit_clock

    rounds = rounds_1s([0, 100, 200, 2200, 2300, 2400])  # 100 ppm, +2 ms before round 4
    assert find_steps(rounds) == [ClockStep(4, T0 + 3 * 10**9, 2_000_000)]
    m = fit_clock(rounds)
    assert (m.first_round, len(m.rounds), m.drift_ppm) == (4, 3, pytest.approx(100.0))
    d = m.to_dict()
    assert (d["offset_us"], d["offset_last_us"]) == (pytest.approx(2200), pytest.approx(2400))
    assert d["steps"] == [{"round": 4, "local_ns": T0 + 3 * 10**9, "step_us": 2000.0}]
    assert (d["rounds"], d["first_round"], d["samples"]) == (6, 4, 48)  # all measured
    line = run_clocksync.row({"type": "clockmodel", **d})
    assert line is not None
    jumped, model, offset, *_ = line.splitlines()
    assert jumped == (
        "# the offset jumped +2000.000 us at round 4 (a clock was stepped or slewed past 500 ppm: "
        "the endpoint's or ours)"
    )
    assert model == "# the model is of rounds 4-6, after the step"
    assert " at round 6, +2200.000 us at round 4: " in offset
    # a drift is no step: 400 ppm (beyond any quartz, within ntpd's 500 ppm) at 1 s gaps,
    # 100 ppm at 5 s gaps with +- 40 us; 600 ppm is beyond ntpd's 500 and a step each round
    assert find_steps(rounds_1s([0, 400, 800, 1200])) == []
    five = [ClockRound(T0 + i * 5 * 10**9, i * 500_000, 80_000) for i in range(4)]
    assert find_steps(five) == []
    assert [s.round for s in find_steps(rounds_1s([0, 700, 1400]))] == [2, 3]
    assert fit_clock(rounds[:3]).steps == () and fit_clock(rounds[:3]).first_round == 1


def test_a_round_off_the_line_beyond_its_bound_is_said() -> None:
    # A steady clock puts the truth within every round's +- rtt/2, so a round over twice
    # that off the fitted line is a clock that wanders: the text says so.
    from packetlab.measure.clocksync import fit_clock

    d = fit_clock(rounds_1s([0, 0, 0, 100, 0, 0])).to_dict()  # +- 40 us; 100 us: no step
    assert d["steps"] == [] and d["stray_rounds"] == [4]  # 81.9 us off the line
    line = run_clocksync.row({"type": "clockmodel", **d})
    assert line is not None and line.splitlines()[-1] == (
        "# round 4 off the line by over twice the +-: a clock that does not run at a steady "
        "rate; offset and drift are rough"
    )
    assert fit_clock(rounds_1s([0, 0, 0, 70, 0, 0])).to_dict()["stray_rounds"] == []
