"""``pktlab run clocksync``: the endpoint clock's offset and drift (packetlab.measure.clocksync)."""

from __future__ import annotations

import argparse
from typing import Any

from packetlab.cli.run import check_ranges
from packetlab.cli.run_command import Command, Emit, Experiment, Progress, Record

EPILOG = """\
examples:
  pktlab run clocksync                            # 10 rounds, 1 s apart
  pktlab run clocksync --rounds 60 --interval 5 --json
  pktlab run clocksync --listen 20556             # a remote endpoint's clock

Each round: 8 mread TIME round trips, the one with the smallest RTT kept (offset =
endpoint time - midpoint of ours, within +- rtt/2). The summary fits offset against time
(weighted least squares): offset_us at the first round and drift_ppm. See docs/clocksync.md.
"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rounds", type=int, default=10, metavar="N", help="estimates [10]")
    p.add_argument("--interval", type=float, default=1.0, metavar="S", help="between rounds [1 s]")
    p.add_argument("--samples", type=int, default=8, metavar="N", help="round trips per round [8]")


def experiment(args: argparse.Namespace, emit: Emit, progress: Progress) -> Experiment:
    from packetlab.measure.clocksync import clock_sync, fit_drift

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
            emit(r.to_dict())

        try:
            model = await clock_sync(session, rounds=args.rounds, interval=args.interval,
                                     samples=args.samples, on_round=one,
                                     stop=progress.stop)  # fmt: skip
        except Exception:
            # the endpoint gone (or --timeout) after some rounds: their model, then the
            # error (a run's error is its summary's; a campaign's, the endpoint's record)
            if done:
                emit({"type": "clockmodel", **fit_drift(done).to_dict()})
            raise
        emit({"type": "clockmodel", **model.to_dict()})

    return run


def row(r: Record) -> str | None:
    if r["type"] == "clocksync":
        return (
            f"offset {r['offset_us']:>12.3f} us  +- {r['error_us']:.3f} us "
            f"(rtt {r['rtt_us']:.1f} us)"
        )
    if r["type"] == "clockmodel":
        return (
            f"# offset {r['offset_us']:.3f} us, drift {r['drift_ppm']:.3f}{_spread(r)} ppm "
            f"over {r['span_s']:.1f} s, max residual {r['max_residual_us']:.3f} us"
        )
    return None


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
)


def add_parser(sub: Any) -> None:
    from packetlab.cli.run_command import add_command

    add_command(sub, COMMAND)
