"""Why a reflex's path runs slower when not hot (docs/reflexes.md, session 5).

The same small pure-Python function (~6 µs hot: attribute reads, dict stores, a loop) is
timed after a pause of G µs, for several G. During the pause the process either spins on
the clock (no system call, no sleep: the vCPU never halts) or sleeps in ``epoll_wait``
(the vCPU halts). Then, for one pause, with a rehearsal every 100 µs of the spin: the same
code on other objects (what `packetlab.endpoint.reflexwarm` does for a reflex), or the same
code on the same objects. No sockets, no endpoint: the machine's own decay of the CPU's
caches and predictors, which neither busy-polling nor the endpoint can stop.

Run from the repository root: ``python -m benchmarks.bench_reflex_cold --help``.
"""

from __future__ import annotations

import argparse
import select
import sys
import time
from collections.abc import Callable

from benchmarks.common import markdown_table, summarize

_pc = time.perf_counter_ns


class _Obj:
    __slots__ = ("a", "b", "c")

    def __init__(self) -> None:
        self.a, self.b, self.c = 1, 2, {}


def _objects() -> list[_Obj]:
    return [_Obj() for _ in range(50)]


def work(objs: list[_Obj]) -> int:
    """The timed function: a few hundred bytecodes over 50 objects and a new dict."""
    t = 0
    for o in objs:
        t += o.a + o.b
        o.c[t & 7] = t
    d = {}
    for i in range(40):
        d[i] = str(i)
    return t


def spin(ns: int, rehearse: Callable[[], object] | None = None, every: int = 100_000) -> None:
    end = _pc() + ns
    due = _pc() + every
    while (now := _pc()) < end:
        if rehearse is not None and now >= due:
            rehearse()
            due = _pc() + every


def timed(objs: list[_Obj]) -> float:
    t0 = _pc()
    work(objs)
    return (_pc() - t0) / 1e3


Rows = list[list[str]]


def run(n: int, gaps_us: list[int], rehearse_gap_us: int) -> tuple[Rows, Rows]:
    objs, other = _objects(), _objects()
    ep = select.epoll()
    decay = []
    for gap in gaps_us:
        spun, slept = [], []
        for _ in range(n):
            spin(gap * 1000)
            spun.append(timed(objs))
            if gap:
                ep.poll(gap / 1e6)
            else:
                work(objs)
            slept.append(timed(objs))
        s, z = summarize(spun), summarize(slept)
        decay.append([str(gap), f"{s['p50']:.1f}", f"{s['p90']:.1f}", f"{z['p50']:.1f}"])
    cases: dict[str, Callable[[], object] | None] = {
        "none (spin only)": None,
        "same code, other objects": lambda: work(other),
        "same code, same objects": lambda: work(objs),
    }
    rehearsal = []
    for name, fn in cases.items():
        v = []
        for _ in range(n):
            spin(rehearse_gap_us * 1000, fn)
            v.append(timed(objs))
        st = summarize(v)
        rehearsal.append([name, f"{st['p10']:.1f}", f"{st['p50']:.1f}", f"{st['p90']:.1f}"])
    ep.close()
    return decay, rehearsal


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=100, help="samples per case [100]")
    p.add_argument(
        "--gaps-us", default="0,100,300,1000,4000,8000,16000", help="pauses, µs, comma-separated"
    )
    p.add_argument("--rehearse-gap-us", type=int, default=7500, help="pause of the rehearsal cases")
    args = p.parse_args(argv)
    gaps = [int(g) for g in args.gaps_us.split(",")]
    decay, rehearsal = run(args.n, gaps, args.rehearse_gap_us)
    print("the same function after a pause (µs):")
    print(markdown_table(["pause µs", "spinning p50", "spinning p90", "sleeping p50"], decay))
    print(f"\nafter {args.rehearse_gap_us} µs of spinning, rehearsing every 100 µs (µs):")
    print(markdown_table(["rehearsal", "p10", "p50", "p90"], rehearsal))
    return 0


if __name__ == "__main__":
    sys.exit(main())
