"""``pktlab run sendgap``: scheduled-send precision trains (packetlab.measure.sendgap)."""

from __future__ import annotations

import argparse
from typing import Any

from packetlab.cli import pcapout
from packetlab.cli.run import check_ranges
from packetlab.cli.run_command import Command, Emit, Experiment, Progress, Record

EPILOG = """\
examples:
  pktlab run sendgap                              # 5 trains of 100 x 100 us to 127.0.0.1:9
  pktlab run sendgap --gap-us 10 --count 1000 --trains 20 --json
  pktlab run sendgap --to 10.77.2.2:9 --packets --json   # one record per datagram too

Each datagram is an nsend with its own endpoint time (start + i * gap); the actual send
time is its ntag (a kernel TX stamp on this project's endpoint). Reported: |actual -
intended| and |actual gap - gap| quantiles in us, with each train's lead: long enough
for every nsend to be queued before its datagram is due (measured; a later long train
counts what the earlier one's nsends took). A Ctrl-C stops the train in flight: it is
printed as partial (what went out, with its times), exit 130. See docs/clocksync.md.
"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--to", default="127.0.0.1:9", metavar="ADDR:PORT",
                   help="where the datagrams go [default: 127.0.0.1:9, discard]")  # fmt: skip
    p.add_argument("--count", type=int, default=100, metavar="N", help="datagrams per train [100]")
    p.add_argument("--gap-us", type=float, default=100.0, metavar="US", help="gap [100 us]")
    p.add_argument("--size", type=int, default=64, metavar="B", help="payload bytes [64]")
    p.add_argument("--trains", type=int, default=5, metavar="N", help="trains [5]")
    p.add_argument("--lead-ms", type=float, default=None, metavar="MS",
                   help="first send this long after the endpoint's clock read [default: "
                   "adapts to the measured cost of a request and the gap, so that every "
                   "nsend is queued before its datagram is due; a wait over 1 s is said on "
                   "stderr]")  # fmt: skip
    p.add_argument("--packets", action="store_true", help="also one record per datagram")
    pcapout.add_option(p)


def _to(args: argparse.Namespace) -> tuple[str, int]:
    """--to's address (a name resolved) and port. The in-process endpoint's route target
    once split the text at its last colon: `--to ::1` or `--to fd00:77:2::2` (a bare IPv6
    address, port 9) failed with `':' does not appear to be an IPv4 or IPv6 address`, and
    `--to localhost:9` likewise though the experiment resolves names."""
    from packetlab.cli.run_throughput import split_host_port

    return split_host_port(args.to, 9, option="--to")


def experiment(args: argparse.Namespace, emit: Emit, progress: Progress) -> Experiment:
    from packetlab.cli.run_command import GRACE_S
    from packetlab.controller.train import ENDPOINT_COMMAND, HERE, late_note, lead_note
    from packetlab.measure.sendgap import send_gap

    host, port = _to(args)
    check_ranges(
        ("--count", args.count, 1, 100_000),
        ("--trains", args.trains, 1, 10_000),
        ("--gap-us", args.gap_us, 0, 10_000_000),
        ("--size", args.size, 4, 65000),
    )
    if args.lead_ms is not None:
        check_ranges(("--lead-ms", args.lead_ms, 0, 60_000))
    recorder = pcapout.recorder_for(args)

    # (campaign and the tests build these args without the link options)
    where = ENDPOINT_COMMAND if getattr(args, "listen", None) else HERE
    said_late: list[int] = []

    async def run(session: Any) -> None:
        for t in range(args.trains):
            if progress.stopping:  # Ctrl-C: no new train
                return
            progress(f"sendgap train {t + 1}/{args.trains}")

            def on_lead(lead: int, t: int = t) -> None:  # a long wait gets a word
                note = lead_note(lead, args.count)
                if note is not None:
                    progress.note(f"pktlab run sendgap: train {t + 1}/{args.trains}: {note}")

            r = await send_gap(session, host, port, count=args.count,
                               gap_ns=int(args.gap_us * 1000), size=args.size, train=t,
                               lead_ns=None if args.lead_ms is None else int(args.lead_ms * 1e6),
                               recorder=recorder, on_lead=on_lead,
                               # Ctrl-C: the train ends within the run's grace, the part
                               # sent reported (cut at its end: still reported, partial)
                               stop=progress.stop, stop_wait=GRACE_S / 2)  # fmt: skip
            if args.packets:
                for rec in r.packets():
                    emit(rec)
            emit(r.to_dict())
            # As examples/udp_train.py: offsets of ms at load said nothing of why. Once a
            # run: every train of a busy machine is late (20 trains, 20 lines of it).
            late = None if said_late else late_note(r.report, where=where)
            if late is not None:
                said_late.append(t)
                progress.note(f"pktlab run sendgap: train {t + 1}/{args.trains}: {late}")

    return pcapout.recording(args, recorder, run)


def _q(q: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.2f}" for k, v in q.items()) if q else "-"


def row(r: Record) -> str | None:
    if r["type"] == "summary":
        trains = f"{r['trains']} train{'s' if r['trains'] != 1 else ''}"
        p50 = r.get("abs_gap_error_us_p50_median")
        gap = "" if p50 is None else f", |gap error| p50 {p50:.2f} us (median of trains)"
        cut = {"INTERRUPTED": " (interrupted)", "ERROR": " (stopped by an error)"}
        cut_short = cut.get(r.get("stop_reason", ""), "")
        return f"# {trains}, {r['sent']} of {r['count']} sent{gap}{cut_short}"
    if r["type"] != "sendgap":
        return None
    ahead = r.get("queued_ahead_ms")
    late = f" (nsends queued up to {-ahead:.1f} ms late)" if ahead is not None and ahead < 0 else ""
    partial = " (partial: stopped)" if r.get("partial") else ""
    return (
        f"train {r['train']}: {r['sent']}/{r['count']} sent{partial}, gap {r['gap_us']:g} us, "
        f"lead {r.get('lead_ms', 0):.1f} ms{late} | "
        f"|offset| us {_q(r['abs_offset_us'])} | |gap error| us {_q(r['abs_gap_error_us'])}"
    )


def summary(records: list[Record]) -> Record:
    got = [r for r in records if r["type"] == "sendgap"]
    p50s = sorted(r["abs_gap_error_us"]["p50"] for r in got if r["abs_gap_error_us"])
    return {
        "trains": len(got),
        "count": sum(r["count"] for r in got),
        "sent": sum(r["sent"] for r in got),
        "abs_gap_error_us_p50_median": p50s[len(p50s) // 2] if p50s else None,
        "errors": sum(r["count"] - r["sent"] for r in got),
    }


def status(args: argparse.Namespace, records: list[Record], code: int) -> int:
    """1 when a datagram was not sent (the summary's `errors`), else 0: the same with
    --packets, whose per-datagram records carry `"error": null` (run_command's default
    counted those as failures: exit 1 with `errors: 0`)."""
    from packetlab.cli.exits import EXIT_NO_REPLY, EXIT_OK

    unsent = any(r["type"] == "sendgap" and r["sent"] < r["count"] for r in records)
    return EXIT_NO_REPLY if unsent else EXIT_OK


# The adaptive lead's budget per nsend queued before the first datagram: an nsend takes
# ~30 us in-process, the lead counts 2-10x that (docs/controller.md); 0.5 ms is 16 s for
# the 32,768 of a 100,000-datagram train.
BUDGET_NSEND_S = 0.5e-3


def budget(args: argparse.Namespace) -> float:
    from packetlab.controller.train import MAX_PENDING

    lead = (
        min(args.count, MAX_PENDING) * BUDGET_NSEND_S
        if args.lead_ms is None
        else args.lead_ms / 1e3
    )
    return args.trains * (args.count * args.gap_us / 1e6 + lead + 6)


COMMAND = Command(
    name="sendgap",
    help="scheduled-send precision (paper's send-gap microbenchmark)",
    description="Send trains of UDP datagrams scheduled at fixed gaps on the endpoint's "
    "clock and report how far the actual send times (ntag) are from the plan.",
    configure=configure,
    experiment=experiment,
    row=row,
    summary=summary,
    budget=budget,
    status=status,
    answers_cancel=True,  # a train cut at the grace's end: the part that went out
    epilog=EPILOG,
    target=lambda args: _to(args)[0],
)


def add_parser(sub: Any) -> None:
    from packetlab.cli.run_command import add_command

    add_command(sub, COMMAND)
