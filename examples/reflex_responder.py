#!/usr/bin/env python3
"""A reflex answering UDP probes at the endpoint: attach, probe, read its counters, detach.

The reflex (a built `.wasm`, e.g. examples/reflexes/udp_responder.c) is attached to a UDP
socket of the endpoint; a local client sends it probes and prints the replies the reflex
sent back without the controller, then the reflex's status (runs, sent, denied, passed)
and its state. The certificate chain must list the reflex's digest:

    pktlab reflex build examples/reflexes/udp_responder.c -o udp_responder.wasm
    pktlab init --reflex udp_responder.wasm     # (--home DIR; --force to remake a home)
    python examples/reflex_responder.py udp_responder.wasm
    python examples/reflex_responder.py udp_responder.wasm --listen tcp:20556

With no --listen the endpoint runs in this process, with the certificates of --home
(default ~/.pktlab); --insecure-plaintext (no chain, no limits) attaches any reflex.
"""

from __future__ import annotations

import _startup  # noqa: F401  (first: a Ctrl-C while starting is one line, 130)

# isort: split
import argparse
import socket
import sys
from pathlib import Path
from typing import Any

from _common import add_link_args, number, react, run_experiment
from twisted.internet import task

from packetlab.controller import EndpointSession
from packetlab.controller.reflexes import ReflexRefused
from packetlab.wire import Status

SKTID = 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("wasm", type=Path, help="the built reflex (.wasm)")
    p.add_argument("--count", type=number(int, 1, 1000), default=5,
                   help="probes, 1..1000 (default: %(default)s)")  # fmt: skip
    p.add_argument("--params", type=bytes.fromhex, default="01", metavar="HEX",
                   help="the reflex's parameters (default: %(default)s; the responder: "
                   "01 passes each probe on to the controller too)")  # fmt: skip
    add_link_args(p, timeout=60.0)
    return p.parse_args(argv)


async def reply_to(client: socket.socket, reactor: Any) -> bytes | None:
    """The client's next datagram, or None after 2 s."""
    for _ in range(200):
        try:
            return client.recv(65535)
        except BlockingIOError:
            await task.deferLater(reactor, 0.01)
    return None


async def main(reactor: Any, args: argparse.Namespace) -> int:
    wasm = args.wasm.read_bytes()
    if wasm[:4] != b"\0asm":
        print(f"{args.wasm}: not a WebAssembly module (build it first: pktlab reflex "
              f"build SRC.c -o OUT.wasm)", file=sys.stderr)  # fmt: skip
        return 2
    params = args.params
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.setblocking(False)

    async def experiment(session: EndpointSession) -> int:
        sock = await session.nopen_udp(SKTID, laddr="127.0.0.1")
        port = int.from_bytes(await session.mread(0x20000000 + SKTID * 0x400 + 0x30, 2), "big")
        try:
            reflex = await session.attach_reflex(sock, wasm, params)
        except ReflexRefused as e:
            print(f"error: {e}", file=sys.stderr)
            if e.status == Status.ECRTBADHDAT:
                print(f"(allow it: pktlab init --reflex {args.wasm} [--home DIR], or "
                      f"`pktlab reflex test {args.wasm}` to see whether it loads)",
                      file=sys.stderr)  # fmt: skip
            return 1
        print(f"reflex {reflex.digest.hex()[:16]} attached to socket {SKTID}, port {port}")
        missing = 0
        for i in range(args.count):
            probe = bytes(4) + f"probe {i}".encode()
            client.sendto(probe, ("127.0.0.1", port))
            reply = await reply_to(client, reactor)
            if reply is None:
                missing += 1
                print(f"  probe {i}: no reply")
            else:
                print(f"  probe {i}: reply {reply.hex()}")
        st = await reflex.status()
        print(f"status: runs {st.runs}, sent {st.sent}, denied {st.denied}, "
              f"passed {st.passed}, reports {st.reports}, refused {st.refused}")  # fmt: skip
        if st.denied:
            print(f"  last refused send: {st.lasterr_text}")
        print(f"state: {(await reflex.state(0, 16)).hex()}")
        if reflex.notice is not None:
            print(f"detached by the endpoint: {reflex.notice.text}")
        else:
            await reflex.detach()
            print("detached")
        return 1 if missing else 0

    try:
        return await run_experiment(reactor, args, experiment)
    finally:
        client.close()


if __name__ == "__main__":
    react(main, parse_args())
