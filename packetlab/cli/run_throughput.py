"""``pktlab run throughput --server HOST[:PORT]``: TCP pipe saturation against a stock
iperf3 server (packetlab.measure.throughput)."""

from __future__ import annotations

import argparse
from typing import Any

from packetlab.cli import pcapout
from packetlab.cli.run import RunError
from packetlab.cli.run_command import Command, Emit, Experiment, Progress, Record

EPILOG = """\
examples:
  iperf3 -s &                                     # any stock iperf3 3.x server
  pktlab run throughput --server 127.0.0.1 --direction download
  pktlab run throughput --server 10.77.3.2:5201 --direction upload --bytes 8M --runs 5
  pktlab run throughput --server 10.77.3.2 --json --runs 10
  pktlab run throughput -c iperf.example -p 5202 -n 8M --direction upload   # iperf3's names

Download: the data socket's ndata are masked during the transfer; the rate comes from the
endpoint's receive stamps with the first 1 MiB ignored (the Marionette paper, §5.2).
Upload: sends scheduled ahead with ntags masked; the rate is the iperf3 server's receiver
figure (sender_mbit_s: the endpoint's ntag stamps, first 1 MiB ignored).
mbit_s is 10^6 bit/s. See docs/throughput.md.
"""


def size(text: str) -> int:
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = t[-1:] if t[-1:] in units else ""
    try:
        value = float(t[: len(t) - len(unit)])
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size like 25M, got {text!r}") from None
    n = int(value * units[unit])
    if not 2 << 20 <= n <= 1 << 32:
        raise argparse.ArgumentTypeError(f"size must be 2M..4G, got {text}")
    return n


def split_host_port(text: str, default: int, port_option: int | None = None) -> tuple[str, int]:
    """HOST, HOST:PORT or [V6]:PORT (`port_option`, iperf3's -p, wins). A host name is
    resolved here, as iperf3 -c does (and ping/traceroute with the in-process endpoint)."""
    import ipaddress

    from packetlab.cli.run import resolve_target

    host, port = text, default
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":"):
            port = int(rest[1:]) if rest[1:].isdigit() else -1
    elif text.count(":") == 1:
        host, p = text.split(":")
        port = int(p) if p.isdigit() else -1
    if port_option is not None:
        port = port_option
    if not host:
        raise RunError(f"--server {text}: no host")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        try:
            host = str(resolve_target(host, None))
        except RunError as e:
            raise RunError(f"--server {text}: {e}") from None
    if not 1 <= port <= 65535:
        raise RunError(f"--server {text}: bad port")
    return host, port


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-c", "--server", required=True, metavar="HOST[:PORT]",
        help="iperf3 server, address or name (port 5201), as iperf3 -c",
    )  # fmt: skip
    p.add_argument("-p", "--port", type=int, metavar="PORT", help="server port, as iperf3 -p")
    p.add_argument(
        "--direction",
        choices=("download", "upload"),
        default="download",
        help="download: server to endpoint (iperf3 -R); upload: endpoint to server (iperf3's "
        "default) [default: download]",
    )
    p.add_argument("-R", dest="direction", action="store_const", const="download",
                   help="--direction download, as iperf3 -R (the server sends)")  # fmt: skip
    p.add_argument("-n", "--bytes", type=size, default=25 << 20, metavar="N",
                   help="bytes per transfer, e.g. 25M, as iperf3 -n [default: 25M, the "
                   "paper's]")  # fmt: skip
    p.add_argument("--runs", type=int, default=1, metavar="N", help="transfers [default: 1]")
    p.add_argument(
        "--max-time", type=float, default=60.0, metavar="S", help="seconds per transfer [60]"
    )
    p.add_argument(
        "--lead",
        type=float,
        default=None,
        metavar="S",
        help="upload: schedule the sends S s ahead [0.5 s + the data at 20 MB/s]",
    )
    pcapout.add_option(p)


def experiment(args: argparse.Namespace, emit: Emit, progress: Progress) -> Experiment:
    from packetlab.measure.throughput import throughput

    host, port = split_host_port(args.server, 5201, args.port)
    if not 1 <= args.runs <= 10_000:
        raise RunError("--runs must be 1..10000")
    recorder = pcapout.recorder_for(args)  # all runs in one file (every byte: mind the size)

    async def run(session: Any) -> None:
        for i in range(args.runs):
            if progress.stopping:  # Ctrl-C: no new transfer
                return

            def show(done: int, total: int, i: int = i) -> None:
                progress(f"{args.direction} {i + 1}/{args.runs}: {done >> 20}/{total >> 20} MiB")

            r = await throughput(
                session,
                host,
                port,
                direction=args.direction,
                nbytes=args.bytes,
                timeout=args.max_time,
                lead=args.lead,
                progress=show,
                recorder=recorder,
            )
            emit(r.to_dict())

    return pcapout.recording(args, recorder, run)


def row(r: Record) -> str | None:
    if r["type"] == "summary":
        mean = r.get("mbit_s_mean")
        return (
            f"# {r['ok']} of {r['runs']} runs, mean {mean:.1f} Mbit/s"
            if mean
            else f"# {r['ok']} of {r['runs']} runs"
        )
    if "error" in r:
        return f"{r['direction']:<9} {r['bytes']:>10}  error: {r['error']}"
    extra = f"  (sender {r['sender_mbit_s']:.1f})" if r.get("sender_mbit_s") else ""
    return (
        f"{r['direction']:<9} {r['bytes']:>10}  {r['seconds']:>8.4f} s  "
        f"{r['mbit_s']:>10.1f} Mbit/s  [{r['method']}; "
        f"iperf3 server {r['server_mbit_s']:.1f}]{extra}"
    )


def summary(records: list[Record]) -> Record:
    got = [r for r in records if r["type"] == "throughput"]
    rates = [r["mbit_s"] for r in got if r.get("mbit_s") is not None]
    return {
        "runs": len(got),
        "ok": len(rates),
        "mbit_s_mean": sum(rates) / len(rates) if rates else None,
        "mbit_s_min": min(rates) if rates else None,
        "mbit_s_max": max(rates) if rates else None,
    }


def budget(args: argparse.Namespace) -> float:
    return args.runs * (args.max_time + 20)


COMMAND = Command(
    name="throughput",
    help="TCP throughput against an iperf3 server (paper §5.2)",
    description="Download or upload N bytes over one TCP connection between the endpoint "
    "and a stock iperf3 server, timed with endpoint stamps, notifications held back "
    "during the transfer.",
    configure=configure,
    experiment=experiment,
    row=row,
    summary=summary,
    budget=budget,
    epilog=EPILOG,
    target=lambda args: split_host_port(args.server, 5201, args.port)[0],
)


def add_parser(sub: Any) -> None:
    from packetlab.cli.run_command import add_command

    add_command(sub, COMMAND)
