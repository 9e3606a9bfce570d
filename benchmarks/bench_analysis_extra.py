"""An endpoint install with and without the `analysis` extra (scipy, matplotlib):
install size, and `twistd -n pktendpoint`'s start-up time and RSS, the two venvs'
endpoints started in alternation (docs/install.md, docs/performance.md "Session 33
(extras33)").

    .venv/bin/python benchmarks/bench_analysis_extra.py --dir /tmp/bench_extra [--rounds 7]

Builds the wheel from a copy of the tracked files, makes DIR/core (`pip install WHEEL`)
and DIR/full (`pip install 'WHEEL[analysis]'`) with pip's index or cache (kept: a second
run reuses them). Start-up is from the process's start to the endpoint's TCP connect to a
listener here; RSS is read then and after 2 s idle (the endpoint waits in its TLS
handshake, which the listener never answers).
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def sh(*argv: str | Path, cwd: Path | None = None) -> str:
    return subprocess.run([str(a) for a in argv], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout  # fmt: skip


def venvs(top: Path) -> dict[str, Path]:
    out = {"core": top / "core", "full": top / "full"}
    if all((v / "bin" / "pktlab").exists() for v in out.values()):
        return out
    src, dist = top / "src", top / "dist"
    src.mkdir(parents=True, exist_ok=True)
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True)
    subprocess.run(["tar", "--null", "-T", "-", "-cf", str(top / "src.tar")], cwd=REPO,
                   input=files.stdout, check=True)  # fmt: skip
    sh("tar", "-xf", top / "src.tar", "-C", src)
    sh(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
       dist, src)  # fmt: skip
    wheel = next(dist.glob("packetlab-*.whl"))
    for name, req in (("core", str(wheel)), ("full", f"{wheel}[analysis]")):
        sh(sys.executable, "-m", "venv", out[name])
        sh(out[name] / "bin" / "pip", "install", "-q", req)
    return out


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def start_once(venv: Path, home: Path, work: Path) -> tuple[float, int, int]:
    """(seconds to the endpoint's connect, RSS KiB then, RSS KiB 2 s later)."""
    with socket.socket() as lsn:
        lsn.bind(("127.0.0.1", 0))
        lsn.listen(1)
        lsn.settimeout(60)
        port = lsn.getsockname()[1]
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [venv / "bin" / "twistd", "-n", "--pidfile=", f"--logfile={work / 'ep.log'}",
             "pktendpoint", "-c", home / "endpt.conf", "--ipv4", "127.0.0.1/8",
             f"127.0.0.1:{port}"],
            cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            conn, _ = lsn.accept()
            took = time.monotonic() - t0
            first = rss_kib(proc.pid)
            time.sleep(2.0)  # measuring idle, not synchronising
            idle = rss_kib(proc.pid)
            conn.close()
            return took, first, idle
        finally:
            proc.terminate()
            proc.wait(20)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    top = args.dir.resolve()
    envs = venvs(top)
    for name, v in envs.items():
        mib = int(sh("du", "-sm", v).split()[0])
        print(f"{name}: {mib} MiB ({sh('du', '-sh', v).split()[0]}), "
              f"{len(sh(v / 'bin' / 'pip', 'list').splitlines()) - 2} packages")  # fmt: skip
    home = top / "home"
    if not (home / "endpt.conf").exists():
        sh(envs["core"] / "bin" / "pktlab", "init", "--home", home)
    work = top / "work"
    work.mkdir(exist_ok=True)
    runs: dict[str, list[tuple[float, int, int]]] = {n: [] for n in envs}
    for r in range(args.rounds):
        order = list(envs) if r % 2 == 0 else list(reversed(envs))
        for name in order:
            runs[name].append(start_once(envs[name], home, work))
    for name, rs in runs.items():
        ts, firsts, idles = zip(*rs, strict=True)
        t, a, b = (statistics.median(x) for x in (ts, firsts, idles))
        print(f"{name}: start-up to connect median {t:.3f} s ({min(ts):.3f}-{max(ts):.3f}), "
              f"RSS at connect {a / 1024:.1f} MiB, after 2 s idle {b / 1024:.1f} MiB "
              f"({len(rs)} rounds)")  # fmt: skip
    print(f"load average: {Path('/proc/loadavg').read_text().split()[:3]}")


if __name__ == "__main__":
    main()
