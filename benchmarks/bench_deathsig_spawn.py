"""What tying a child to the manager costs the manager: one spawn by Twisted's
`reactor.spawnProcess` (posix_spawnp: no Python in the child) against one by
`packetlab.controller.deathsig.spawn` (Twisted's fork path with the prctl before exec),
the time the reactor thread spends in the call. Rounds alternate the two, in one process
that has imported what `pktlab xpmgr` imports; each round spawns N `/bin/true` with the
mlets' descriptors (fd 0 given, 1 and 2 read) and waits for them all to end.

    .venv/bin/python benchmarks/bench_deathsig_spawn.py --rounds 10 --n 30
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

from twisted.internet import defer, task
from twisted.internet.protocol import ProcessProtocol

import packetlab.cli.xpmgr  # noqa: F401 (a manager's imports: its heap is what fork copies)
from packetlab.controller import deathsig


class _Ended(ProcessProtocol):
    def __init__(self) -> None:
        self.ended: defer.Deferred[None] = defer.Deferred()

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(None)


async def _round(reactor: Any, tied: bool, n: int, fd0: int) -> tuple[float, float]:
    """Milliseconds per spawn call, wall and this process's CPU; waits until the n
    children have ended."""
    ends = []
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        p = _Ended()
        ends.append(p.ended)
        fds = {0: fd0, 1: "r", 2: "r"}
        if tied:
            deathsig.spawn(reactor, p, "/bin/true", ["true"], env={}, childFDs=fds)
        else:
            reactor.spawnProcess(p, "/bin/true", ["true"], env={}, childFDs=fds)
    took = ((time.perf_counter() - t0) / n * 1e3, (time.process_time() - c0) / n * 1e3)
    await defer.DeferredList(ends)
    return took


async def _main(reactor: Any, rounds: int, n: int) -> None:
    assert deathsig.supported(reactor), "not Linux with Twisted's POSIX reactor"
    fd0 = os.open(os.devnull, os.O_RDONLY)
    got: dict[str, list[tuple[float, float]]] = {"posix_spawnp": [], "deathsig": []}
    for r in range(rounds):
        for name in list(got) if r % 2 else list(got)[::-1]:
            got[name].append(await _round(reactor, name == "deathsig", n, fd0))
    os.close(fd0)
    print(f"load {os.getloadavg()[0]:.1f}; {rounds} rounds of {n} spawns each")
    for name, ms in got.items():
        wall, cpu = [x[0] for x in ms], [x[1] for x in ms]
        med, cpu_med = statistics.median(wall), statistics.median(cpu)
        print(f"{name:13} median {med:6.2f} ms per spawn (min {min(wall):.2f}, "
              f"max {max(wall):.2f}), CPU {cpu_med:.2f} ms")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--n", type=int, default=30)
    args = ap.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(_main(reactor, args.rounds, args.n)))


if __name__ == "__main__":
    main()
