"""`pktlab xpmgr` on a terminal (a pty, as a user's shell gives it): the counts are one
line redrawn in place on stderr, erased before each mlet's output line, and what stays on
the screen is the mlets' lines and the final counts. Before, each change of the counts
was a line of its own (2 per endpoint)."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from pxworld import ENV, Proc, stop_process
from tls_world import home_fixture

N = 5


home = home_fixture(root=True)


class Terminal:
    """The master side of a pty, read by a thread until the last writer is gone."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.data = bytearray()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:  # EIO: every slave descriptor closed
                return
            if not chunk:
                return
            with self.lock:
                self.data += chunk

    def wait(self, pattern: bytes, timeout: float = 30.0) -> re.Match[bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                m = re.search(pattern, bytes(self.data))
            if m:
                return m
            time.sleep(0.05)
        raise AssertionError(f"no {pattern!r} on the terminal: {bytes(self.data)[-2000:]!r}")

    def text(self) -> bytes:
        self.thread.join(10)
        return bytes(self.data)


def screen_lines(data: bytes) -> list[str]:
    """What the user sees: `\\r` returns the cursor, `ESC[K` erases to the line's end,
    `\\n` ends the line."""
    lines, line, col = [], "", 0
    for token in re.findall(r"\x1b\[K|\r|\n|[^\r\n\x1b]+|\x1b", data.decode()):
        if token == "\r":
            col = 0
        elif token == "\n":
            lines.append(line)
            line, col = "", 0
        elif token == "\x1b[K":
            line = line[:col]
        else:
            line = line[:col] + token + line[col + len(token) :]
            col += len(token)
    return [*lines, line] if line else lines


def test_the_counts_are_one_line_redrawn_in_place(
    tmp_path: Path, home: Path, procs: list[object]
) -> None:
    mlet = tmp_path / "slow"
    mlet.write_text('#!/bin/sh\nsleep 1.5\necho "ok $EPADDR"\n')  # a run over a second
    mlet.chmod(0o755)
    results = tmp_path / "results.jsonl"
    master, slave = pty.openpty()
    argv = [sys.executable, "-m", "packetlab", "xpmgr", "-c", str(home / "xpmgr.conf"),
            "-a", "127.0.0.1:0", "--results", str(results), "-n", str(N), str(mlet)]  # fmt: skip
    xp = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
                          cwd=tmp_path, env=ENV)  # fmt: skip
    os.close(slave)
    term = Terminal(master)
    try:
        port = int(term.wait(rb"listening on 127\.0\.0\.1:(\d+)").group(1))
        many = Path(__file__).parent / "many_endpoints.py"
        eps = [sys.executable, str(many), str(home / "endpt.conf"), f"127.0.0.1:{port}", str(N)]
        procs.append(Proc(eps, tmp_path / "many.log", tmp_path))
        assert xp.wait(120) == 0, term.text()[-3000:]
        data = term.text()
    finally:
        stop_process(xp)
        os.close(master)
    seen = screen_lines(data)
    counts = [line for line in seen if "endpoints seen" in line]
    assert counts == [f"xpmgr: endpoints seen {N}, running 0, done {N}, failed 0"], seen
    assert [line for line in seen if line.startswith("ok ")] == ["ok 127.0.0.1"] * N, seen
    # it was drawn while the mlets ran (and erased before each of their lines)
    assert re.search(rb"\r\x1b\[Kxpmgr: endpoints seen \d+, running [1-9]", data), data
    assert len(results.read_text().splitlines()) == N
