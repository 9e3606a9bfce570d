"""``pktlab run http URL...``: HTTP(S) GET from the endpoint, TLS at the controller
(packetlab.measure.http). The command: its table rows, summary and time budget; the
options are `run_http_args`'s, the run `run_http_experiment`'s (imported when it runs, so
that `--help` and a bad option do not load it)."""

from __future__ import annotations

import argparse
from typing import Any

from packetlab.cli.curl_trace import prints_times
from packetlab.cli.run_command import Command, Emit, Experiment, Progress, Record
from packetlab.cli.run_http_args import EPILOG, configure


def experiment(args: argparse.Namespace, emit: Emit, progress: Progress) -> Experiment:
    from packetlab.cli.run_http_experiment import experiment as run

    return run(args, emit, progress)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v / 1000:.3f}"


def row(r: Record) -> str | None:
    if r.get("_quiet"):  # -w: curl's output instead of the table
        return None
    if r["type"] == "summary":
        if r.get("stop_reason") == "INTERRUPTED":  # the URLs not ended are not in "urls"
            return (f"# interrupted (Ctrl-C): {r['urls']} URLs ended, {r['fetched']} "
                    f"fetched, {r['bytes']} body bytes")  # fmt: skip
        return f"# {r['fetched']} of {r['urls']} fetched, {r['bytes']} body bytes"
    if "error" in r and r.get("status") is not None:  # --fail: a response, but >= 400
        return f"{_fetched(r)}  {r['error']}"
    if "error" in r:
        return (  # the columns of a fetched URL, "-" where not reached
            f"{'ERR':>4}  {'-':>9}  {_ms(r.get('connect_us')):>8}  {_ms(r.get('tls_us')):>8}  "
            f"{'-':>8}  {'-':>8}  {r['url']}  {r['error']}"
        )
    return _fetched(r)


def _fetched(r: Record) -> str:
    return (
        f"{r['status']:>4}  {r['body_len']:>9}  {_ms(r.get('connect_us')):>8}  "
        f"{_ms(r.get('tls_us')):>8}  {_ms(r.get('first_byte_us')):>8}  "
        f"{_ms(r.get('total_us')):>8}  {r['url']}"
    )


HEADER = "  ".join(
    [f"{'code':>4}", f"{'bytes':>9}", *(f"{h:>8}" for h in ("conn ms", "tls ms", "ttfb ms")),
     f"{'total ms':>8}", "url"]
)  # fmt: skip


def summary(records: list[Record]) -> Record:
    got = [r for r in records if r["type"] == "http"]
    ok = [r for r in got if "error" not in r]
    if any(r.get("_quiet") for r in got):
        return {"_quiet": True}
    return {"urls": len(got), "fetched": len(ok), "bytes": sum(r["body_len"] for r in ok)}


def status(args: argparse.Namespace, records: list[Record], ours: int) -> int:
    """The run's exit status: ours (0, 1), or with --curl-exit-codes curl 7.88's: the
    last transfer's code (a success after a failure is 0), with -Z the code of the last
    one to fail (records come in the order the transfers end)."""
    if not getattr(args, "curl_exit_codes", False) or ours not in (0, 1):
        return ours
    codes = [int(r.get("exitcode") or 1) if "error" in r else 0
             for r in records if r.get("type") == "http"]  # fmt: skip
    if getattr(args, "parallel", False):
        codes = [c for c in codes if c]
    return codes[-1] if codes else 0


def budget(args: argparse.Namespace) -> float:
    """The worst case of the run: each -:/--next group's."""
    return sum(_budget(g) for g in [args, *getattr(args, "next_groups", [])])


def _budget(args: argparse.Namespace) -> float:
    redirs = args.max_redirs if args.max_redirs >= 0 else 5
    hops = 1 + (min(redirs, 5) if args.location or getattr(args, "location_trusted", False) else 0)
    from packetlab.measure.urlglob import MAX_NAMES, GlobError, glob_count

    def count(pattern: str) -> int:
        try:
            return 1 if getattr(args, "globoff", True) else glob_count(pattern)
        except GlobError:
            return 1  # the experiment says why

    files = [count(arg) for arg in args.upload_file]
    # one transfer for each URL a URL's glob makes, times its -T glob's files
    n = sum(count(url) * (files[i] if i < len(files) else 1) for i, url in enumerate(args.urls))
    # --retry: each try, and curl's waits between them (a Retry-After not foreseen)
    retries = getattr(args, "retry", 0)
    delay = getattr(args, "retry_delay", 0)
    doubled = sum(2**k for k in range(min(retries, 10))) + 600 * max(0, retries - 10)
    waits = delay * retries if delay else doubled  # curl: 1, 2, ... 512, then 600 s
    if getattr(args, "retry_max_time", 0):
        waits = min(waits, args.retry_max_time)
    return min(n, MAX_NAMES) * (hops * (args.max_time + 15) * (1 + retries) + waits)


COMMAND = Command(
    name="http",
    help="HTTP and HTTPS requests, curl-like (TLS at the controller)",
    description="Fetch each URL (GET, or -X/-d/-I) through an endpoint TCP socket, "
    "redirects followed with -L. HTTPS runs TLS at the "
    "controller over that socket, with certificate and name verification (system store, "
    "or --cacert) and SNI. Prints status, body size and endpoint-stamped timings "
    "(with -w: curl's output instead).",
    configure=configure,
    experiment=experiment,
    row=row,
    summary=summary,
    budget=budget,
    epilog=EPILOG,
    split="urls",
    header=HEADER,
    both_families=True,
    status=status,
    clock_first=prints_times,  # --trace-time
)


def add_parser(sub: Any) -> None:
    from packetlab.cli.run_command import add_command

    add_command(sub, COMMAND)
