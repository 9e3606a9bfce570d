"""One way to run a helper script beside a test (`icmp_responder.py`, `ping_responder.py`,
`dccp_responder.py`, `whois_server.py`): started with this Python, in a namespace if
given, waited for until it prints its ready line, stopped (SIGTERM, then SIGKILL after
5 s) when the block ends, passed or failed. The like-native tests each had a copy of
this (the duplicates check flagged them in session 25)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def helper_script(
    argv: list[str], netns: str | None = None, ready: str = "listening"
) -> Iterator[subprocess.Popen[str]]:
    """`argv` (a script and its arguments) run by this Python until the block ends; the
    block starts once the script has printed `ready` (its stderr in the failure if it
    printed anything else or died first)."""
    cmd = [sys.executable, *argv]
    if netns is not None:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline().strip()
        # (its stderr only once it is done with: a live script's would block the read)
        done = not line or proc.poll() is not None
        assert line == ready, (line, proc.stderr.read() if done else "")
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
