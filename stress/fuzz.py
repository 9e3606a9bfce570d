#!/usr/bin/env python3
"""Coverage-guided fuzzing (atheris/libFuzzer) of the framer, the endpoint's session
dispatch, the PPKS certificate parser and the other decoders hostile input reaches (the
proxy's ClientHello reader, broker links, the controller's dispatch, DNS replies, HTTP/1
heads and codings, HTTP/2 frames, iperf3 control messages, the TLS record layer, ICMP
replies, warts files, config files), 10^6 inputs per target by default.

The targets and their invariants are in tests/unit/fuzz_targets.py and the modules
tests/unit/fuzz_decoders.py lists (CI runs a bounded Hypothesis slice of the same
targets in tests/unit/test_fuzz.py). A finding stops the run
and leaves the input as OUT/crash-*; replay it with `--replay FILE`.

    .venv/bin/pip install atheris           # not a project dependency: long runs only
    .venv/bin/python stress/fuzz.py framer --runs 1000000 --out fuzz-out
    .venv/bin/python stress/fuzz.py session --runs 1000000 --out fuzz-out
    .venv/bin/python stress/fuzz.py cert --runs 1000000 --out fuzz-out

On a shared machine, split a target over processes (niced; each its own --out and
-seed, later ones also reading the first one's corpus); the inputs tried add up:

    nice -n 15 .venv/bin/python stress/fuzz.py session --runs 500000 --out f1 -seed=1 &
    nice -n 15 .venv/bin/python stress/fuzz.py session --runs 500000 --out f2 -seed=2 \
        f1/corpus-session &
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "tests" / "unit")]

# (fuzz_decoders imports nothing of packetlab at its top: its table is read before the
# code under test is imported, instrumented)
from fuzz_decoders import DECODER_INSTRUMENT, DECODER_TARGETS  # noqa: E402

INSTRUMENT = {
    "framer": ["packetlab.wire"],
    "session": ["packetlab.endpoint", "packetlab.wire"],
    "cert": ["packetlab.ppks"],
    **DECODER_INSTRUMENT,
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("target", choices=["framer", "session", "cert", *DECODER_TARGETS])
    ap.add_argument("--runs", type=int, default=1_000_000, help="inputs to try [10^6]")
    ap.add_argument(
        "--max-len",
        type=int,
        default=1024,
        help="longest input [1024: a dozen frames; the framer's cost per input grows with it]",
    )
    ap.add_argument("--out", type=Path, default=Path("fuzz-out"), help="corpus and findings")
    ap.add_argument("--replay", type=Path, help="run one saved input and exit")
    args, rest = ap.parse_known_args()

    try:
        import atheris
    except ImportError:
        print("stress/fuzz.py needs atheris: .venv/bin/pip install atheris", file=sys.stderr)
        return 2
    # Coverage feedback from the code under test only: instrumenting the harness and the
    # fakes too made every input ~5x dearer for no new paths to find.
    with atheris.instrument_imports(include=INSTRUMENT[args.target]):
        import fuzz_targets

        target = fuzz_targets.TARGETS[args.target]
        for seed in fuzz_targets.SEEDS[args.target]:
            target(seed)  # the modules a target imports when it runs, instrumented too
    if args.replay is not None:
        target(args.replay.read_bytes())
        print(f"{args.replay}: no finding")
        return 0
    corpus = args.out / f"corpus-{args.target}"
    corpus.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(fuzz_targets.SEEDS[args.target]):
        (corpus / f"seed-{i}").write_bytes(seed)
    started = time.monotonic()
    argv = [
        sys.argv[0],
        str(corpus),
        f"-runs={args.runs}",
        f"-max_len={args.max_len}",
        f"-artifact_prefix={args.out}/{args.target}-",
        "-print_final_stats=1",
        *rest,
    ]
    atheris.Setup(argv, target)
    try:
        atheris.Fuzz()  # exits the process: a finding exits non-zero
    finally:
        print(f"{args.target}: {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
