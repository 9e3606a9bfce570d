"""A `pktlab run` measurement as an mlet of the experiment manager (`pktlab xpmgr`), so a
campaign can run on whatever endpoints the manager reaches (broker, proxy, backlog)::

    pktlab xpmgr -c xpmgr.conf packetlab.cli.campaign_mlet dns example.com --type AAAA

Each endpoint's session runs the measurement with the options of ``pktlab run NAME``;
every record is one JSON line on stdout (the manager passes mlet output through line by
line) tagged with ``"endpoint"`` (the endpoint's HOSTID, else its address), then the
endpoint's summary record. `pktlab campaign` is the same for endpoints that connect to it
directly (``--listen``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from packetlab.cli.campaign import MEASUREMENTS, check_options, command_of
from packetlab.cli.campaign_run import pcap_file
from packetlab.cli.linkargs import RunError
from packetlab.cli.run_command import Command, Progress, Record

__all__ = ["check", "mlet", "parser"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="packetlab.cli.campaign_mlet",
        description="a pktlab run measurement as an xpmgr mlet (JSON lines on stdout)",
    )
    sub = p.add_subparsers(dest="measurement", metavar="MEASUREMENT", required=True)
    for name in MEASUREMENTS:
        cmd = command_of(name)
        sp = sub.add_parser(name, help=cmd.help, description=cmd.description)
        cmd.configure(sp)
        sp.set_defaults(_command=cmd, json=True)
    return p


def check(argv: list[str]) -> argparse.Namespace:
    """The arguments, checked as `pktlab campaign` checks them before it listens (the
    manager runs this once at start: pymletcheck.py). A bad one is one line on stderr and
    exit status 2 (argparse's usage error; the manager's sign that every endpoint would
    fail alike)."""
    args = parser().parse_args(argv)  # (exits 2 with argparse's line)
    try:
        check_options(args._command, args)
    except RunError as e:
        print(f"packetlab.cli.campaign_mlet {args.measurement}: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    return args


async def mlet(session: Any, argv: list[str]) -> None:
    """Run the measurement `argv` names on `session` (called by pymlet per endpoint)."""
    from packetlab.controller import read_system_info

    args = check(argv)
    cmd: Command = args._command
    info = await read_system_info(session)
    name = info.hostid or str(session.peer)
    # As pktlab campaign's records: where each was measured from (endpoints sharing a
    # HOSTID, all at the default `pktendpt`, were one "endpoint" in the output)
    tags = {"endpoint": name, "hostid": info.hostid, "address": str(session.peer)}
    records: list[Record] = []

    def emit(record: Record) -> None:
        records.append(record)
        print(json.dumps({**record, **tags}, sort_keys=True), flush=True)

    if getattr(args, "pcap", None):  # one file per endpoint, as pktlab campaign
        args.pcap = pcap_file(str(args.pcap), name, exclusive=True)
    await cmd.experiment(args, emit, Progress())(session)
    summary: Record = {"type": "summary", "measurement": cmd.name, **cmd.summary(records)}
    summary.setdefault("errors", sum(1 for r in records if "error" in r))
    if getattr(args, "pcap", None):
        summary["pcap"] = args.pcap  # (FILE-NAME-2.pcap when another had the name)
    print(json.dumps({**summary, **tags}, sort_keys=True), file=sys.stdout, flush=True)
