"""A long scheduled train's lead against what it had to cover, in process: `send_train`
over the in-process endpoint and TLS link of `examples/udp_train.py`, to a UDP sink.

Per train: the lead; the time the first min(count, 32768) nsends took to be answered
(from the first nsend to the last one's answer: what the lead had to cover), and the
process CPU of those seconds per nsend (controller and endpoint together: both run
here); the whole train's wall and CPU. Trains run one after the other on one session, so
`--trains 3` shows what a later lead learns from an earlier train. Run it from two
checkouts to compare (PYTHONPATH=CHECKOUT; only the public API and `session.nsend` are
used, so an older checkout measures the same way).

    .venv/bin/python -m benchmarks.bench_train_lead [--count 100000] [--gap-us 1]
        [--lead-ms MS] [--trains 1]
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import time
from collections import Counter
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred

from packetlab.cli.link import run_in_process
from packetlab.controller import EndpointSession, send_train

FIRST = 32768  # send_train's MAX_PENDING: the nsends queued before the first ntag


class _Answers:
    """Wraps `session.nsend`: when the first nsend went and when the FIRST-th was
    answered, with the process CPU at both."""

    def __init__(self, session: EndpointSession, first: int) -> None:
        self.first = first
        self.sent = self.answered = 0
        self.t0 = self.cpu0 = self.t1 = self.cpu1 = 0.0
        original = session.nsend

        def nsend(*args: Any, **kw: Any) -> Deferred[Any]:
            if self.sent == 0:
                self.t0, self.cpu0 = time.monotonic(), time.process_time()
            self.sent += 1
            return original(*args, **kw).addBoth(self._answer)

        session.nsend = nsend  # type: ignore[method-assign]

    def _answer(self, result: object) -> object:
        self.answered += 1
        if self.answered == self.first:
            self.t1, self.cpu1 = time.monotonic(), time.process_time()
        return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=100_000, help="datagrams per train")
    ap.add_argument("--gap-us", type=float, default=1.0, help="gap (us)")
    ap.add_argument("--lead-ms", type=float, help="a fixed lead (default: the adaptive one)")
    ap.add_argument("--trains", type=int, default=1, help="trains on one session")
    args = ap.parse_args(argv)

    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))  # never read: the kernel drops what overflows
    port = sink.getsockname()[1]
    lead = None if args.lead_ms is None else round(args.lead_ms * 1e6)

    async def experiment(session: EndpointSession) -> None:
        for t in range(args.trains):
            n = min(args.count, FIRST)
            answers = _Answers(session, n)
            t0, cpu0 = time.monotonic(), time.process_time()
            rep = await send_train(
                session, "127.0.0.1", port, args.count, round(args.gap_us * 1000), lead=lead
            )
            wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
            session.nsend = EndpointSession.nsend.__get__(session)  # type: ignore[method-assign]
            took = answers.t1 - answers.t0
            print(
                f"train {t + 1}: {rep.sent_count}/{rep.count} sent, lead {rep.lead / 1e6:.0f} ms,"
                f" first {n} nsends queued in {took * 1e3:.0f} ms ({took / n * 1e6:.1f} us"
                f" each, CPU {(answers.cpu1 - answers.cpu0) / n * 1e6:.1f} us each); "
                f"train {wall:.2f} s wall, {cpu:.2f} s CPU"
                + "".join(f"; {n} {e}" for e, n in Counter(rep.errors).items() if e is not None),
                flush=True,
            )

    async def run() -> None:
        try:
            await run_in_process(
                reactor, experiment, addresses=[ipaddress.IPv4Address("127.0.0.1")], timeout=600
            )
        finally:
            reactor.stop()

    reactor.callWhenRunning(lambda: ensureDeferred(run()))
    reactor.run()
    sink.close()


if __name__ == "__main__":
    main()
