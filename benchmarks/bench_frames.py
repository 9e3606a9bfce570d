"""The endpoint's hot frame packers (packetlab.endpoint.frames): calls per second of each,
optionally side by side with another version of frames.py (e.g. the hand-written layouts
they replaced: ``git show dcdfbdb:packetlab/endpoint/frames.py > /tmp/old_frames.py``).

Each figure is the median of several repeats of a timed loop, and the versions are
interleaved repeat by repeat, so a machine that slows down mid-run slows both alike.

Run from the repository root:
``python -m benchmarks.bench_frames [--baseline /tmp/old_frames.py] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

from benchmarks.common import environment, markdown_table, median, write_json
from packetlab.endpoint import frames

T = 1_700_000_000_000_000_000
ADDR = bytes([192, 0, 2, 53])
PAYLOAD = bytes(64)
CHUNK = bytes(65536)

# (name, function name in frames.py, arguments); ntag's error form is ntag_error now,
# ntag(sktid, tag, time, errid) in the hand-written version.
CASES: list[tuple[str, str, tuple[Any, ...]]] = [
    ("ntag", "ntag", (1, 7, T)),
    ("ndata UDP v4 64 B", "ndata_udp", (1, 4, 17, T, ADDR, 53, PAYLOAD)),
    ("ndata TCP 64 KiB", "ndata_tcp", (1, 4, 6, T, CHUNK)),
    ("mdata 8 B", "mdata", (0x10010000, bytes(8))),
    ("nstat code", "nstat_code", (1, 4, 6, T, 3)),
    ("ndrop", "ndrop", (1, 4, 17, T, T + 5, 3, 300)),
]


def load(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("baseline_frames", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rate(fn: Callable[..., bytes], args: tuple[Any, ...], n: int) -> float:
    loop = range(n)
    t0 = time.perf_counter()
    for _ in loop:
        fn(*args)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--baseline", help="another frames.py to compare with")
    ap.add_argument("-n", type=int, default=200_000, help="calls per timed loop")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    versions: dict[str, ModuleType] = {"generated": frames}
    if args.baseline:
        versions["baseline"] = load(args.baseline)
    results: dict[str, dict[str, float]] = {}
    for name, fname, fargs in CASES:
        runs: dict[str, list[float]] = {v: [] for v in versions}
        for _ in range(args.repeats):
            for v, module in versions.items():
                fn = getattr(module, fname)
                assert fn(*fargs) == frames.__dict__[fname](*fargs), (v, name)
                runs[v].append(rate(fn, fargs, args.n))
        results[name] = {v: median(r) for v, r in runs.items()}
    header = ["frame", *(f"{v} calls/s" for v in versions)]
    if args.baseline:
        header.append("generated / baseline")
    rows = []
    for name, r in results.items():
        row = [name, *(f"{r[v] / 1e3:.0f}k" for v in versions)]
        if args.baseline:
            row.append(f"{r['generated'] / r['baseline']:.2f}x")
        rows.append(row)
    print(markdown_table(header, rows))
    if args.json:
        write_json(args.json, {"environment": environment(), "results": results})


if __name__ == "__main__":
    main()
