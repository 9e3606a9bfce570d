"""What counting one link in its address's share costs (`packetlab.addrshare`): a
`refusal` check, an `add` and a `remove`, as the broker and the proxy do per link, for
the same address each time (a reconnecting client) and for distinct addresses of one
/48 (a flood; 20,000 addresses, more than the parse cache holds). And what choosing the
connection to close for a new one costs when 1,024 wait (`oldest_of_busiest`, once per
new connection past a pending cap): a flood from one address ("evict one"), and from 256
/64s of one /48 after a real client's two ("evict /48").

A/B in one run: ``--baseline FILE`` is another tree's addrshare.py (for instance
``git show e1b95db9:packetlab/addrshare.py > /tmp/old_addrshare.py``), loaded beside
this tree's; the rounds interleave them. Figures are medians of the rounds, in µs per
link.

Run from the repository root:
``python -m benchmarks.bench_addrshare [--baseline FILE] [--rounds 5] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import timeit
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from benchmarks.common import environment, markdown_table, median, write_json

FLOOD = [f"2001:db8:33:{i % 200:x}::{i:x}" for i in range(20_000)]


def _load(path: str, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _evict(module: ModuleType, kind: str) -> Callable[[], None]:
    counts = module.AddressShare(lambda: 0.0)
    if kind == "evict one":
        pending = ["192.0.2.1"] + ["198.51.100.7"] * 1023
    else:
        pending = ["2001:db8:1:1::1", "2001:db8:1:1::2"]
        pending += [f"2001:db8:2:{i % 256:x}::{i:x}" for i in range(1022)]
    for p in pending:
        counts.add(p)

    def one() -> None:
        module.oldest_of_busiest(pending, counts, str)

    return one


def _case(module: ModuleType, kind: str) -> Callable[[], None]:
    if kind.startswith("evict"):
        return _evict(module, kind)
    share = module.AddressShare(lambda: 0.0)
    addresses = iter(FLOOD * 100) if kind == "distinct" else None

    def one() -> None:
        a = "2001:db8:33:1::5" if addresses is None else next(addresses)
        share.refusal(a, 336, "links")
        share.add(a)
        share.remove(a)

    return one


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", help="another tree's addrshare.py, measured beside")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--number", type=int, default=5000, help="links per round and case")
    ap.add_argument("--json", help="write the figures here too")
    args = ap.parse_args(argv)
    from packetlab import addrshare

    trees: dict[str, ModuleType] = {"this tree": addrshare}
    if args.baseline:
        trees = {"baseline": _load(args.baseline, "baseline_addrshare"), **trees}
    got: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for name, module in trees.items():
            for kind in ("same", "distinct", "evict one", "evict /48"):
                number = args.number // 10 if kind.startswith("evict") else args.number
                t = timeit.timeit(_case(module, kind), number=number)
                got.setdefault((name, kind), []).append(t / number * 1e6)
    rows = [
        [name, kind, f"{median(v):.1f}", " ".join(f"{x:.1f}" for x in v)]
        for (name, kind), v in got.items()
    ]
    print(markdown_table(["tree", "case", "µs per link or choice (median)", "rounds"], rows))
    if args.json:
        out: dict[str, Any] = {"environment": environment(), "us_per_link": {}}
        for (name, kind), v in got.items():
            out["us_per_link"][f"{name}/{kind}"] = v
        write_json(args.json, out)


if __name__ == "__main__":
    main()
