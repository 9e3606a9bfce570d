"""`pktlab run clocksync` against a real `twistd -n pktendpoint` whose clock is off by a
known amount: libfaketime (LD_PRELOAD with FAKETIME=SPEC, as `faketime -f SPEC` runs a
program, without that wrapper between us and the endpoint) shifts or speeds up what the
endpoint process reads from CLOCK_REALTIME, which is where its TIME comes from (§2.2;
`time.time_ns`). Same host, no faketime: offset 0 within each round's +- delay/2.

libfaketime shifts user-space clock reads only: the kernel's packet timestamps and the
endpoint's CLOCK_REALTIME timerfd stay on the real clock, so only TIME-based results of a
faketime'd endpoint are meaningful (clocksync reads nothing else)."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest
from conftest import readline
from faketime_pair import Pair, libfaketime, needs_faketime


def clocksync(*argv: str, fake: dict[str, str] | None = None, json_lines: bool = True) -> Pair:
    """`pktlab run clocksync ARGV` and one endpoint, under libfaketime's `fake` (none:
    the host's own clock)."""
    more = ["--timeout", "60", *(["--json"] if json_lines else [])]
    return Pair("clocksync", *argv, *more, fake=fake)


def rounds_and_model(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    (model,) = [r for r in records if r["type"] == "clockmodel"]
    return [r for r in records if r["type"] == "clocksync"], model


def test_an_endpoint_on_this_host_is_level_with_us() -> None:
    rounds, model = rounds_and_model(clocksync("-c", "4", "-i", "0.2").records())
    assert [r["round"] for r in rounds] == [1, 2, 3, 4]
    assert all(abs(r["offset_us"]) <= r["error_us"] for r in rounds), rounds
    assert abs(model["offset_last_us"]) <= max(r["error_us"] for r in rounds)


@needs_faketime
@pytest.mark.parametrize("shift_s", [1.5, -0.75])
def test_a_shifted_endpoint_clock_is_found_with_its_sign(shift_s: float) -> None:
    # endpoint - controller: +1.5 s when the endpoint's clock is 1.5 s ahead
    rounds, model = rounds_and_model(
        clocksync("-c", "4", "-i", "0.2", fake=libfaketime(f"{shift_s:+}s")).records()
    )
    truth_us = shift_s * 1e6
    assert all(abs(r["offset_us"] - truth_us) <= r["error_us"] for r in rounds), rounds
    assert abs(model["offset_last_us"] - truth_us) <= max(r["error_us"] for r in rounds), model


@needs_faketime
def test_a_drifting_endpoint_clock_is_reported_as_drift() -> None:
    # x1.0001: the endpoint's clock gains 100 us a second (+100 ppm); measured +99.7 +- 9.8
    # and +101.3 +- 9.5 ppm over 10 rounds 0.5 s apart (session 24)
    rounds, model = rounds_and_model(
        clocksync("-c", "8", "-i", "0.3", fake=libfaketime("+0 x1.0001")).records()
    )
    assert abs(model["drift_ppm"] - 100) <= model["drift_error_ppm"], model
    assert model["drift_ppm"] > model["drift_error_ppm"]  # a drift, not noise
    # the offset grows over the run: the last round's is the one to correct by
    assert model["offset_last_us"] - model["offset_us"] == pytest.approx(
        model["drift_ppm"] * model["span_s"]
    )
    assert rounds[-1]["offset_us"] > rounds[0]["offset_us"]


@needs_faketime
def test_a_clock_stepped_mid_run_is_said_and_left_out_of_the_model(tmp_path: Path) -> None:
    # The endpoint's clock steps +2 ms after round 3 (libfaketime reads the file at every
    # clock read): once fitted through as "+1056 +- 26 ppm (the endpoint's clock runs fast)"
    stamp = tmp_path / "faketime"
    stamp.write_text("+0\n")
    fake = libfaketime(FAKETIME_TIMESTAMP_FILE=str(stamp), FAKETIME_NO_CACHE="1")
    run = clocksync("-c", "8", "-i", "0.2", fake=fake)
    assert run.ctl.stdout is not None
    before = [json.loads(readline(run.ctl.stdout)) for _ in range(3)]
    stamp.write_text("+0.002\n")
    after = [json.loads(x) for x in run.finish()[1].splitlines()]
    rounds, model = rounds_and_model([*before, *after])
    (step,) = model["steps"]
    edge = rounds[step["round"] - 2]["error_us"] + rounds[step["round"] - 1]["error_us"]
    assert step["round"] >= 4 and abs(step["step_us"] - 2000) <= edge, model
    assert model["first_round"] == step["round"]
    assert model["rounds"] == 8  # measured; fitted from first_round on
    assert abs(model["drift_ppm"]) <= model["drift_error_ppm"], model  # no drift
    bound = max(r["error_us"] for r in rounds[step["round"] - 1 :])
    assert abs(model["offset_last_us"] - 2000) <= bound, model
    assert all(abs(r["offset_us"]) <= r["error_us"] for r in before)


@needs_faketime
def test_ctrl_c_prints_the_model_in_words_and_exits_130() -> None:
    run = clocksync("-c", "100", "-i", "0.2", fake=libfaketime("+1.5s"), json_lines=False)
    assert run.ctl.stdout is not None
    first = readline(run.ctl.stdout)
    readline(run.ctl.stdout)
    run.ctl.send_signal(signal.SIGINT)
    rc, out, err = run.finish()
    assert rc == 130, err
    # +1.5 s, read within 1 ms: printed to the microsecond, it is +1.499999 about as often
    # as +1.500014 (a prefix "+1.50" failed CI in session 25)
    assert first.startswith("offset    +") and "(offset = endpoint - controller)" in first
    assert abs(float(first.split()[1]) - 1.5) < 1e-3, first
    model = [x for x in out.splitlines() if x.startswith("# ")]
    assert len(model) == 3, out
    assert model[0].startswith("# offset +") and "(endpoint - controller)" in model[0]
    assert abs(float(model[0].split()[2]) - 1.5) < 1e-3, model[0]
    assert model[0].endswith("the endpoint's clock is ahead of ours")
    assert "Traceback" not in err


def test_an_endpoint_gone_mid_run_is_one_error_line_after_the_model() -> None:
    run = clocksync("-c", "100", "-i", "0.2", json_lines=False)
    assert run.ctl.stdout is not None and run.ep is not None
    readline(run.ctl.stdout)
    run.ep.kill()
    rc, out, err = run.finish()
    assert rc == 2, err
    assert any(x.startswith("# offset ") for x in out.splitlines()), out
    (line,) = err.splitlines()
    assert line.startswith("pktlab run clocksync: "), err
