"""``pktlab run clocksync``: the endpoint clock's offset and drift (packetlab.measure.clocksync)."""

from __future__ import annotations

import argparse
from typing import Any

from packetlab.cli.run import check_ranges
from packetlab.cli.run_command import Command, Emit, Experiment, Progress, Record

EPILOG = """\
examples:
  pktlab run clocksync                            # 10 rounds, 1 s apart
  pktlab run clocksync -c 60 -i 5 --json          # --rounds 60 --interval 5
  pktlab run clocksync --listen 20556             # a remote endpoint's clock

Each round: 8 mread TIME round trips, the one with the smallest delay (round trip)
kept: offset = endpoint time - midpoint of ours, within +- delay/2. The sign is NTP's
(ntpdate -q): the endpoint's clock minus ours, positive when the endpoint is ahead.
The summary fits offset against time (weighted least squares): the offset at the last
round (and the first), the drift in ppm (positive: the endpoint's clock runs fast), the
jitter (RMS residual). A clock step (a jump beyond both rounds' +- plus 500 ppm) is
said, and the model is of the rounds after it. See docs/clocksync.md.
"""


def configure(p: argparse.ArgumentParser) -> None:
    # -c/-i as ping's and `pktlab compare`'s (a round is one offset estimate)
    p.add_argument("-c", "--rounds", "--count", dest="rounds", type=int, default=10,
                   metavar="N", help="estimates [10]")  # fmt: skip
    p.add_argument("-i", "--interval", type=float, default=1.0, metavar="S",
                   help="between rounds [1 s]")  # fmt: skip
    p.add_argument("--samples", type=int, default=8, metavar="N", help="round trips per round [8]")


def experiment(args: argparse.Namespace, emit: Emit, progress: Progress) -> Experiment:
    from packetlab.measure.clocksync import clock_sync, fit_clock

    check_ranges(
        ("--rounds", args.rounds, 2, 100_000),
        ("--samples", args.samples, 1, 1000),
        ("--interval", args.interval, 0, 3600),
    )

    async def run(session: Any) -> None:
        done: list[Any] = []

        def one(r: Any) -> None:
            done.append(r)
            progress(f"clocksync round {len(done)}/{args.rounds}")
            emit({**r.to_dict(), "round": len(done)})

        try:
            model = await clock_sync(session, rounds=args.rounds, interval=args.interval,
                                     samples=args.samples, on_round=one,
                                     stop=progress.stop)  # fmt: skip
        except Exception:
            # the endpoint gone (or --timeout) after some rounds: their model, then the
            # error (a run's error is its summary's; a campaign's, the endpoint's record)
            if done:
                emit({"type": "clockmodel", **fit_clock(done).to_dict()})
            raise
        emit({"type": "clockmodel", **model.to_dict()})

    return run


def row(r: Record) -> str | None:
    if r["type"] == "clocksync":
        line = (
            f"offset {_time(r['offset_us']):>14}  +- {r['error_us']:.3f} us  "
            f"delay {r['rtt_us']:.1f} us"
        )
        if "round" in r:
            line += f"  round {r['round']}"
        # the sign said where the reader first needs it (streamed: the summary comes last)
        return line + (" (offset = endpoint - controller)" if r.get("round") == 1 else "")
    if r["type"] == "clockmodel":
        return _model(r)
    return None


def _time(us: float) -> str:
    """Signed, in us, or in s from 1 s on (a clock a day off is not read in us)."""
    return f"{us / 1e6:+.6f} s" if abs(us) >= 1e6 else f"{us:+.3f} us"


def _model(r: Record) -> str:
    # The convention in words: "offset +X" alone is read both ways (chronyc sources'
    # offset is ours minus the source's, ntpdate's the source's minus ours). Within its
    # error an offset or a drift has no direction, and the line says so.
    last: float = r["offset_last_us"] if "offset_last_us" in r else r["offset_us"]
    err = r.get("offset_last_error_us")
    if err is not None and abs(last) <= err:
        where = "level with ours within the error"
    else:
        where = ("ahead of" if last > 0 else "behind") + " ours"
    pm = "" if err is None else f" +- {err:.3f} us"
    first = r.get("first_round", 1)
    at = f"at round {r['rounds']}, {_time(r['offset_us'])} at round {first}"  # fitted: first on
    offset = (
        f"# offset {_time(last)}{pm} (endpoint - controller) {at}: the endpoint's clock is {where}"
    )
    drift = f"# drift {r['drift_ppm']:+.3f}{_spread(r)} ppm over {r['span_s']:.1f} s"
    spread = r.get("drift_error_ppm")
    if spread is not None:
        if abs(r["drift_ppm"]) <= spread:
            drift += " (no drift within the error)"
        else:
            drift += " (the endpoint's clock runs " + ("fast)" if r["drift_ppm"] > 0 else "slow)")
    samples = f" x {r['samples'] // r['rounds']} samples" if "samples" in r else ""
    jitter = "" if r.get("jitter_us") is None else f", jitter {r['jitter_us']:.3f} us"
    stats = f"# {r['rounds']} rounds{samples}, min delay {r['min_rtt_us']:.1f} us{jitter}, "
    stats += f"max residual {r['max_residual_us']:.3f} us"
    return "\n".join((*_steps(r), offset, drift, stats, *_stray(r)))


def _steps(r: Record) -> list[str]:
    """A clock step, before the model it cut short (the model is of the rounds after)."""
    steps = r.get("steps") or []
    lines = [
        f"# the offset jumped {_time(s['step_us'])} at round {s['round']} (a clock was "
        "stepped or slewed past 500 ppm: the endpoint's or ours)"
        for s in steps
    ]
    if steps:
        lines.append(f"# the model is of rounds {r['first_round']}-{r['rounds']}, after the step")
    return lines


def _stray(r: Record) -> list[str]:
    stray = r.get("stray_rounds") or []
    if not stray:
        return []
    which = ", ".join(str(n) for n in stray)
    return [
        f"# round{'s' if len(stray) > 1 else ''} {which} off the line by over twice "
        "the +-: a clock that does not run at a steady rate; offset and drift are rough"
    ]


def _spread(r: Record) -> str:
    err = r.get("drift_error_ppm")
    return "" if err is None else f" +- {err:.3f}"


def summary(records: list[Record]) -> Record:
    model = next((r for r in records if r["type"] == "clockmodel"), None)
    if model is None:
        return {}
    return {k: v for k, v in model.items() if k != "type"}


def budget(args: argparse.Namespace) -> float:
    return args.rounds * (args.interval + 1)


COMMAND = Command(
    name="clocksync",
    help="endpoint clock offset and drift (NTP-style)",
    description="Estimate the endpoint clock's offset from the controller's clock in "
    "rounds (mread TIME, min-RTT filter) and fit the drift over the run.",
    configure=configure,
    experiment=experiment,
    row=row,
    summary=summary,
    budget=budget,
    epilog=EPILOG,
    endpoint_clock=False,  # its rounds' times (local_ns) are ours; no TIME read beside them
)


def add_parser(sub: Any) -> None:
    from packetlab.cli.run_command import add_command

    add_command(sub, COMMAND)
