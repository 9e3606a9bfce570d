"""`run_with_local_endpoint` when the reactor stops under the run (a SIGINT or SIGTERM
to the controller alone, as `timeout` or a supervisor sends it): its `twistd
pktendpoint` child goes too. Before session 30 (eyes30) the child was left running,
orphaned, and examples/monitors/require_monitor.py exited 0 without a word."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
REPO = EXAMPLES.parent

HANGS = """
import sys
from twisted.internet import defer, task
from packetlab.controller.local import run_with_local_endpoint

async def experiment(session):
    print("connected", flush=True)
    await defer.Deferred()  # never ends: the run is cut by the signal

task.react(lambda reactor: defer.ensureDeferred(
    run_with_local_endpoint(reactor, experiment, plaintext=True, timeout=60)))
"""


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            out.append(int(entry.name))
    return out


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def wait_for(predicate: object, what: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def interrupt_once_the_endpoint_runs(argv: list[str], sig: int) -> tuple[int, str, int]:
    """`argv` started; `sig` to it alone once its endpoint child exists: its status, its
    output and the child's pid."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=REPO
    )
    child = 0
    try:
        wait_for(lambda: bool(children(proc.pid)) or proc.poll() is not None, "no child")
        assert proc.poll() is None, "ended before its endpoint started"
        child = children(proc.pid)[0]
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=60)
        wait_for(lambda: not alive(child), f"endpoint {child} left running", 20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if child and alive(child):
            os.kill(child, signal.SIGKILL)
    return proc.returncode, out.decode(errors="replace"), child


def test_a_stopped_reactor_stops_the_local_endpoint(tmp_path: Path) -> None:
    script = tmp_path / "hangs.py"
    script.write_text(HANGS)
    _, out, _ = interrupt_once_the_endpoint_runs([sys.executable, str(script)], signal.SIGTERM)
    assert "Traceback" not in out, out


def test_ctrl_c_on_require_monitor_is_one_line_and_130(tmp_path: Path) -> None:
    home = tmp_path / "home"  # a home whose chain requires no monitor: the run is short
    subprocess.run(
        [sys.executable, "-m", "packetlab", "init", "--home", str(home)],
        check=True, capture_output=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    argv = [sys.executable, str(EXAMPLES / "monitors" / "require_monitor.py"), "--home", str(home)]
    code, out, _ = interrupt_once_the_endpoint_runs(argv, signal.SIGINT)
    assert code == 130 and out.strip() == "require_monitor.py: interrupted", (code, out)


def test_a_killed_controller_takes_the_local_endpoint_with_it(tmp_path: Path) -> None:
    """SIGKILL (the OOM killer, a crash): no shutdown trigger runs. Before session 34
    (xpkill34) the `twistd pktendpoint` child ran on, reconnecting to a controller that was
    gone; now the kernel sends it SIGTERM (PR_SET_PDEATHSIG, controller/deathsig.py). The
    kill comes as soon as the child exists: also between its fork and its exec."""
    script = tmp_path / "hangs.py"
    script.write_text(HANGS)
    code, _, _ = interrupt_once_the_endpoint_runs([sys.executable, str(script)], signal.SIGKILL)
    assert code == -signal.SIGKILL
