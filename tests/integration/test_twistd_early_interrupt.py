"""A Ctrl-C while twistd loads its plugins, before our tap is imported (session 25).

Twisted's `getPlugins` catches whatever a plugin module's import raises (`except
BaseException: log.err()`), KeyboardInterrupt included: a SIGINT that came while it
imported one of Twisted's own plugins (`twisted_web`, `twisted_conch`, ...) was logged
into the buffer kept until logging begins, and the daemon went on and ran, the Ctrl-C
lost (1 of 40 `twistd -n pktendpoint` at 120 ms after spawn; session 23 saw one too and
took it for a hang). The tap, when it arms, finds that swallowed KeyboardInterrupt and
ends as a Ctrl-C while starting does: its line, 130. Twisted has printed the traceback
it logged by then (its start-up log observer prints critical events on stderr), before
any code of ours ran. The SIGINT comes at a fixed point here: a `sitecustomize` sends it
when `twisted.plugins.twisted_web` is imported."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from tls_world import home_fixture

from packetlab.controller.local import twistd_command

KILL_AT = (
    "import importlib.abc, os, signal, sys\n"
    "class Kill(importlib.abc.MetaPathFinder):\n"
    "    def find_spec(self, name, path, target=None):\n"
    "        if name == 'twisted.plugins.twisted_web':\n"
    "            os.kill(os.getpid(), signal.SIGINT)\n"
    "        return None\n"
    "sys.meta_path.insert(0, Kill())\n"
)
ARGS = {
    "pktendpoint": ["--insecure-plaintext", "--config", os.devnull, "127.0.0.1:1"],
    "pktbroker": ["--config", os.devnull, "--publish", "tcp:0:interface=127.0.0.1",
                  "--subscribe", "tcp:0:interface=127.0.0.1"],
    "pktproxy": ["--setup", "tcp:0:interface=127.0.0.1", "--endpoints",
                 "tcp:0:interface=127.0.0.1", "--stats-interval", "0"],
}  # fmt: skip


home = home_fixture(root=True, command=False)


@pytest.mark.parametrize("tap", list(ARGS))
def test_ctrl_c_swallowed_by_twisteds_plugin_scan_still_ends_it(
    tmp_path: Path, home: Path, tap: str
) -> None:
    (tmp_path / "sitecustomize.py").write_text(KILL_AT)
    env = dict(os.environ, PKTLAB_HOME=str(home), PYTHONPATH=str(tmp_path))
    proc = subprocess.Popen(
        [*twistd_command(), "-n", tap, *ARGS[tap]], cwd=tmp_path, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"twistd {tap} ran on after the Ctrl-C:\n{out[-2000:]}") from None
    assert proc.returncode == 130, (proc.returncode, err, out)
    assert err.startswith("Unhandled Error\nTraceback") and "KeyboardInterrupt" in err, err
    assert err.endswith(f"\ntwistd {tap}: interrupted while starting\n"), err
    assert out == "", out
