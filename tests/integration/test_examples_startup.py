"""Every example while it starts: a Ctrl-C during its imports (~0.3 s) ends it with one
line and status 130 (`examples/_startup.py`, as `pktlab`'s start-up guard), never
Python's KeyboardInterrupt traceback; --help and a bad argument: no traceback either."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NAMES = ["dns_query.py", "http_get.py", "publish_experiment.py", "system_demo.py", "udp_train.py"]
# long enough that a Ctrl-C at the last delay still comes before the end
ARGS = {"udp_train.py": ["--count", "5000", "--gap-us", "2000"]}
# after its `_startup` import: its other imports take 0.23-0.43 s more (system_demo's
# 0.05 s: then its own KeyboardInterrupt handling, the same line and status)
DELAYS = (0.0, 0.01, 0.03, 0.06, 0.1, 0.15)


def interrupted_at(name: str, delay: float, tmp_path: Path) -> tuple[int, str]:
    """The example started (`-X importtime`: each import's line on stderr as it ends),
    SIGINT `delay` s after its `_startup` was imported (as a terminal's Ctrl-C: to the
    process group, so publish_experiment's and system_demo's children get it too), and
    again 50 ms later; its status and stderr but the import lines. Not from the start:
    Python's own start-up before the example's first line (site, ~10-30 ms) prints its
    KeyboardInterrupt whatever the program, `pktlab` too."""
    argv = [sys.executable, "-X", "importtime", str(EXAMPLES / name), *ARGS.get(name, [])]
    if name == "system_demo.py":
        argv += ["--home", str(tmp_path / f"h{delay}")]
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=EXAMPLES.parent,
        env=dict(os.environ, PKTLAB_HOME=str(tmp_path / "none")), start_new_session=True,
    )  # fmt: skip
    assert proc.stderr is not None
    lines: list[bytes] = []
    guarded = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if line.rstrip().endswith(b"| _startup"):
                guarded.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert guarded.wait(60), b"".join(lines)[-2000:]
        time.sleep(delay)
        for _ in range(2):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
            time.sleep(0.05)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        reader.join(10)
    err = b"".join(x for x in lines if not x.startswith(b"import time:"))
    return proc.returncode, err.decode(errors="replace")


@pytest.mark.parametrize("name", NAMES)
def test_ctrl_c_while_an_example_starts_is_one_line_and_130(name: str, tmp_path: Path) -> None:
    # the examples had no start-up guard: during their imports Python's
    # `KeyboardInterrupt` traceback, status 1 (or killed by SIGINT)
    for delay in DELAYS:
        code, err = interrupted_at(name, delay, tmp_path)
        assert "Traceback" not in err and "KeyboardInterrupt" not in err, (delay, err)
        assert code == 130 and err.strip().endswith(f"{name}: interrupted"), (delay, code, err)


@pytest.mark.parametrize("name", NAMES)
def test_help_and_a_bad_argument_print_no_traceback(name: str) -> None:
    for args, code in ((["--help"], 0), (["--bogus"], 2)):
        run = subprocess.run([sys.executable, str(EXAMPLES / name), *args],
                             capture_output=True, timeout=60, cwd=EXAMPLES.parent)  # fmt: skip
        assert run.returncode == code and b"Traceback" not in run.stderr, run.stderr
    assert run.stderr.decode().strip().splitlines()[-1] == (
        f"{name}: error: unrecognized arguments: --bogus"
    )


@pytest.mark.parametrize("name", ["_common.py", "_startup.py"])
def test_the_helper_modules_run_as_scripts_say_what_they_are(name: str) -> None:
    # session 20 (api20): `python examples/_common.py --help` printed nothing, status 0
    run = subprocess.run([sys.executable, str(EXAMPLES / name), "--help"],
                         capture_output=True, timeout=60, cwd=EXAMPLES.parent)  # fmt: skip
    assert run.returncode == 1 and run.stdout == b"", run
    assert run.stderr.decode().splitlines() == [
        f"{name}: a module the examples import, not an example: run examples/http_get.py, "
        "dns_query.py or udp_train.py (docs/controller.md)"
    ]


@pytest.mark.parametrize("name", NAMES)
def test_a_python_without_packetlab_is_one_line(name: str, tmp_path: Path) -> None:
    """Session 23 (doctour23): the README's `python examples/http_get.py` run by a Python
    that is not the .venv's was a ModuleNotFoundError traceback from _common.py. `-S`: no
    site-packages, so neither packetlab nor Twisted (the examples' directory is on the
    path, the checkout is not)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    got = subprocess.run(
        [sys.executable, "-S", str(EXAMPLES / name), "--help"], capture_output=True,
        text=True, timeout=60, cwd=tmp_path, env=env, check=False,
    )  # fmt: skip
    assert got.returncode == 1, got
    assert got.stdout == ""
    assert got.stderr == (
        f"{name}: packetlab is not installed in this Python ({sys.executable}): run "
        f"`bash scripts/setup.sh` once, then `.venv/bin/python examples/{name}`\n"
    )
