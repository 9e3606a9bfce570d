"""A copy of a checkout with the immediate nsend's modules compiled by mypyc, to A/B against
the pure-Python checkout (issue 14; docs/performance.md, "Session 31 (mypyc31)").

Nothing of packetlab is changed: the listed modules are compiled from the same source
into extension modules beside it (`build_ext --inplace`), which Python imports before
the `.py`. The copy is for benchmarks only; the project does not build it (the measured
gain was at the bar and the build is not ready: 50 unit tests fail against it, see the
docs).

    .venv/bin/python -m benchmarks.mypyc_tree /tmp/compiled
    .venv/bin/python -m benchmarks.bench_endpoint --only udp --no-null --baseline /tmp/compiled
    (cd /tmp/compiled && $OLDPWD/.venv/bin/python -m benchmarks.bench_nsend_cpu)

Left out, and why (mypy 2.4's mypyc): `tls/directwrite` (`Corked` is a mixin of an
interpreted Twisted class: "interpreted classes cannot inherit from compiled"),
`tls/protocol` (compiled, its calls of the interpreted mixin's methods fail: "missing 1
required positional argument"), `endpoint/netio` (its `@implementer` classes cannot
inherit from a compiled `_SockIO`; with `_SockIO` made non-native it built, and gained
nothing), `wire/messages` (the subclasses' `TYPE = ...` need `ClassVar`: "attribute
'TYPE' is read-only"), the generated decoders (built with `exec`, untyped).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The modules an immediate UDP nsend over TLS runs through (cProfile of bench_nsend_cpu
# and py-spy of the endpoint), less those mypyc cannot compile unchanged (docstring).
MODULES = [
    "packetlab/endpoint/protocol.py",
    "packetlab/endpoint/session.py",
    "packetlab/endpoint/sendpath.py",
    "packetlab/endpoint/recvpath.py",
    "packetlab/endpoint/sender.py",
    "packetlab/endpoint/timestamps.py",
    "packetlab/endpoint/sockets.py",
    "packetlab/endpoint/outbox.py",
    "packetlab/endpoint/frames.py",
    "packetlab/endpoint/limits.py",
    "packetlab/endpoint/checks.py",
    "packetlab/wire/framer.py",
    "packetlab/tls/records.py",
]

SETUP = """\
import sys
from mypyc.build import mypycify
from setuptools import setup

setup(name="packetlab-mypyc-ab", ext_modules=mypycify(sys.argv.pop().split(","), opt_level="3"))
"""


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dest", type=Path, help="directory to make (replaced if it exists)")
    ap.add_argument("--modules", default=",".join(MODULES), help="comma-separated .py paths")
    args = ap.parse_args(argv)
    dest: Path = args.dest.resolve()
    if dest == REPO:
        ap.error("dest must not be the checkout itself")
    shutil.rmtree(dest, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.so", ".venv", ".git", "build")
    for part in ("packetlab", "benchmarks", "twisted", "tests"):
        shutil.copytree(REPO / part, dest / part, ignore=ignore)
    shutil.copy(REPO / "pyproject.toml", dest)  # mypy's settings, which mypyc reads
    (dest / "setup_mypyc.py").write_text(SETUP)
    cmd = [sys.executable, "setup_mypyc.py", "build_ext", "--inplace", args.modules]
    subprocess.run(cmd, cwd=dest, check=True, stdout=subprocess.DEVNULL)
    built = sorted(str(p.relative_to(dest)) for p in (dest / "packetlab").rglob("*.so"))
    print("\n".join(built))


if __name__ == "__main__":
    main()
