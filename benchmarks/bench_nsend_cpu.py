"""The endpoint's CPU time per immediate UDP nsend, in process: a real `Session` on a real
UDP socket (`ReactorNetwork`, `PreciseScheduler`; an immediate send runs synchronously),
fed through `ControllerProtocol` over a `StringTransport` in reads of 64 nsends. No TLS,
no controller socket and no other process, so it isolates the session's send path
(request checks, the send, the TX stamp, ntag, outbox) and is far less moved by a loaded
machine than a rate. Run it from two checkouts to compare (PYTHONPATH=CHECKOUT).

    .venv/bin/python -m benchmarks.bench_nsend_cpu [--reads 100] [--repeats 15] [--profile FILE]
"""

from __future__ import annotations

import argparse
import cProfile
import socket
import time

from twisted.internet import reactor
from twisted.internet.testing import StringTransport

from packetlab import wire
from packetlab.endpoint.checks import OpenGate
from packetlab.endpoint.clock import realtime_ns
from packetlab.endpoint.config import EndpointConfig
from packetlab.endpoint.memory import system_image
from packetlab.endpoint.netio import ReactorNetwork
from packetlab.endpoint.protocol import ControllerProtocol
from packetlab.endpoint.sender import PreciseScheduler
from packetlab.endpoint.session import Session

WINDOW = 64  # nsends per read, as bench_endpoint's controller keeps outstanding


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reads", type=int, default=100, help="reads of 64 nsends per sample")
    ap.add_argument("--repeats", type=int, default=15, help="samples (min and quartiles shown)")
    ap.add_argument("--profile", metavar="FILE", help="also write a cProfile of one sample")
    args = ap.parse_args(argv)

    cfg = EndpointConfig()
    scheduler = PreciseScheduler(reactor)
    scheduler.start()
    network = ReactorNetwork(reactor)
    image = bytearray(system_image(cfg))
    proto = ControllerProtocol(
        lambda: Session(cfg, network, scheduler, realtime_ns, gate=OpenGate(), image=image),
        reactor,
    )
    transport = StringTransport()
    proto.makeConnection(transport)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))  # never read: the kernel drops what overflows
    try:
        proto.dataReceived(wire.encode(wire.Start()))
        opened = wire.Nopen(sktid=1, family=4, proto=17, rbufsz=1 << 16, laddr=bytes(4), lport=0)
        proto.dataReceived(wire.encode(opened))
        port = sink.getsockname()[1]
        read = b"".join(
            wire.encode(
                wire.Nsend(sktid=1, family=4, proto=17, time=0, tag=1 + i, data=bytes(64),
                           raddr=bytes([127, 0, 0, 1]), rport=port)
            )
            for i in range(WINDOW)
        )  # fmt: skip

        def sample() -> None:
            for _ in range(args.reads):
                proto.dataReceived(read)
                transport.clear()

        sample()  # warm up
        per_nsend = []
        for _ in range(args.repeats):
            cpu = time.process_time()
            sample()
            per_nsend.append((time.process_time() - cpu) / (args.reads * WINDOW) * 1e6)
        per_nsend.sort()
        q = len(per_nsend) // 4
        print(
            f"endpoint CPU per immediate UDP nsend: min {per_nsend[0]:.2f} µs, "
            f"p25 {per_nsend[q]:.2f}, median {per_nsend[len(per_nsend) // 2]:.2f} "
            f"({args.repeats} samples of {args.reads * WINDOW} nsends)"
        )
        if args.profile:
            cProfile.runctx("sample()", globals(), {"sample": sample}, args.profile)
    finally:
        sink.close()
        proto.connectionLost()
        scheduler.stop()


if __name__ == "__main__":
    main()
