"""`-F 'f=@FILE;encoder=quoted-printable'`: the encoder's throughput (MiB/s of input),
ours against another revision's, in one run (A/B on this noisy machine).

    .venv/bin/python benchmarks/bench_qp.py [--ref main] [--runs 7] [--mib 4]

The encoder (`packetlab.measure.upload_encode.QuotedPrintable`) fed 64 KiB at a time, as a
file part's chunks reach it, over four inputs of `--mib` MiB: `text` (docs/*.md, lines
ended by LF: one long quoted-printable line cut by soft breaks), `crlf` (the same text,
CRLF line ends), `code` (packetlab/**/*.py, LF), `binary` (random bytes). `--ref REV`
loads the encoder as it is at REV (git show) beside the working tree's; both must give the
same bytes. Medians of `--runs`, alternating A and B.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FEED = 64 << 10


def corpora(mib: int) -> dict[str, bytes]:
    size = mib << 20

    def fill(data: bytes) -> bytes:
        return (data * (size // len(data) + 1))[:size]

    text = b"".join(p.read_bytes() for p in sorted((REPO / "docs").glob("*.md")))
    code = b"".join(p.read_bytes() for p in sorted((REPO / "packetlab").rglob("*.py")))
    rng = random.Random(14)
    return {"text": fill(text), "crlf": fill(text.replace(b"\n", b"\r\n")), "code": fill(code),
            "binary": rng.randbytes(size)}  # fmt: skip


def load(rev: str | None) -> ModuleType:
    """The encoder's module (upload_encode.py; upload.py before session 17's split) of
    the working tree (None) or of git revision `rev`."""
    if rev is None:
        from packetlab.measure import upload_encode

        return upload_encode
    show = ["git", "-C", str(REPO), "show"]
    found = subprocess.run([*show, f"{rev}:packetlab/measure/upload_encode.py"],
                           capture_output=True)  # fmt: skip
    source = found.stdout if found.returncode == 0 else subprocess.run(
        [*show, f"{rev}:packetlab/measure/upload.py"], capture_output=True, check=True
    ).stdout  # fmt: skip
    spec = importlib.util.spec_from_loader(f"upload_{rev}", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    exec(compile(source, f"{rev}:upload.py", "exec"), module.__dict__)
    return module


def encode(module: Any, data: bytes) -> tuple[float, bytes]:
    enc = (getattr(module, "QuotedPrintable", None) or module._QuotedPrintable)()
    out = []
    start = time.perf_counter()
    for i in range(0, len(data), FEED):
        out.append(enc.feed(data[i : i + FEED], False))
    out.append(enc.feed(b"", True))
    return time.perf_counter() - start, b"".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ref", default="main", help="the revision to compare with (git)")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--mib", type=int, default=4)
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    ours, ref = load(None), load(args.ref)
    print(f"quoted-printable encoder, {args.mib} MiB fed {FEED >> 10} KiB at a time, "
          f"median of {args.runs} (MiB/s of input)")  # fmt: skip
    print(f"{'input':8} {args.ref:>10} {'ours':>10} {'ratio':>7}  output bytes")
    for name, data in corpora(args.mib).items():
        times: dict[str, list[float]] = {"ref": [], "ours": []}
        outs: dict[str, bytes] = {}
        for _ in range(args.runs):
            for key, module in (("ref", ref), ("ours", ours)):
                took, outs[key] = encode(module, data)
                times[key].append(took)
        if outs["ref"] != outs["ours"]:
            raise SystemExit(f"{name}: ours and {args.ref} encode differently")
        rate = {k: len(data) / statistics.median(v) / 2**20 for k, v in times.items()}
        print(f"{name:8} {rate['ref']:10.1f} {rate['ours']:10.1f} "
              f"{rate['ours'] / rate['ref']:6.1f}x  {len(outs['ours']):,}")  # fmt: skip


if __name__ == "__main__":
    main()
