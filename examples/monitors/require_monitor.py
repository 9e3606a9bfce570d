#!/usr/bin/env python3
"""An experiment on an endpoint whose certificates require a monitor (docs/monitors.md).

The controller sends the monitor (``cdata``, hint "monitor") before ``start``; the
endpoint checks its digest against the chain, loads it, and from then on asks it about
every request. Here the experiment opens a TCP socket (allowed by tcp_only.c) and a UDP
socket (refused by it: ECTLMONREJ, monitor 0, reason 1).

    pktlab monitor build examples/monitors/tcp_only.c -o tcp_only.wasm
    pktlab init --home /tmp/demo --monitor tcp_only.wasm
    python examples/monitors/require_monitor.py --home /tmp/demo tcp_only.wasm
    python examples/monitors/require_monitor.py --home /tmp/demo   # no monitor: refused
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from packetlab.cli.interrupt import run_reactor
from packetlab.controller import ControllerError, EndpointSession, RequestFailed
from packetlab.controller.local import run_with_local_endpoint
from packetlab.monitor.abi import encode


async def experiment(session: EndpointSession) -> list[str]:
    out = []
    for proto, opening in (
        ("tcp", lambda: session.nopen_tcp_connect(2, "127.0.0.1", 9)),
        ("udp", lambda: session.nopen_udp(1)),
    ):
        try:
            await opening()
            out.append(f"{proto} socket: opened")
        except RequestFailed as e:
            out.append(f"{proto} socket: {e}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("monitors", nargs="*", type=Path, help=".wasm monitors to send")
    p.add_argument("--home", required=True, help="a pktlab init directory")
    args = p.parse_args(argv)
    programs = [encode(m.read_bytes()) for m in args.monitors]

    async def run(reactor: Any, stop: Any) -> int:
        try:
            lines = await run_with_local_endpoint(
                reactor, experiment, home=args.home, programs=programs
            )
        except ControllerError as e:
            print(f"experiment refused: {e}")
            return 1  # a refused experiment is a failure (it exited 0)
        print("\n".join(lines))
        return 0

    # run_reactor, as the other examples: a Ctrl-C is one line and status 130 (with
    # task.react it was status 0 and nothing said)
    return run_reactor(run, prog=Path(sys.argv[0]).name)


if __name__ == "__main__":
    sys.exit(main())
