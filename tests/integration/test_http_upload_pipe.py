"""`pktlab run http -T - URL` (and `-F a=@- URL`) fed by a pipe that stays silent: the
pipe is read off the reactor's thread, so the first Ctrl-C stops the run at once (what
was gathered and the summary, exit 130), and bytes that come later are sent as they come
(-F: the part read whole first, then sent with a Content-Length, as curl's)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from functools import partial
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from httpserve import serve_http
from testkit.poll import poll_until

REPO = Path(__file__).resolve().parents[2]


class Chunked(BaseHTTPRequestHandler):
    """Reads a chunked PUT to its end (after a 100 Continue), answers its bytes."""

    protocol_version = "HTTP/1.1"
    put = threading.Event()  # a PUT's headers came: the client reads its pipe now

    def do_PUT(self) -> None:
        Chunked.put.set()
        if self.headers.get("Expect") == "100-continue":
            self.send_response_only(100)
            self.end_headers()
        body = b""
        while size := self.rfile.readline().strip():
            n = int(size, 16)
            if not n:
                self.rfile.readline()
                break
            body += self.rfile.read(n)
            self.rfile.readline()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # -F: a Content-Length body; its length and framing answered
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        out = f"{self.headers.get('Content-Length')} {body.count(b'late')}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *_: object) -> None:
        pass


def reads_a_pipe(pid: int) -> bool:
    """A thread of process `pid` waits in a read of a pipe (its stdin: it writes only to
    the others), as /proc/PID/task/*/wchan says ("pipe_read", "anon_pipe_read"; before
    Linux 5.8 "pipe_wait")."""
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            wchan = (task / "wchan").read_text()
            if "pipe_read" in wchan or wchan == "pipe_wait":
                return True
        except OSError:  # the thread ended meanwhile
            continue
    return False


def put_from_pipe(tmp_path: Path, port: int, *body: str) -> tuple[subprocess.Popen[bytes], int]:
    r, w = os.pipe()
    env = dict(os.environ, PYTHONPATH=str(REPO), PKTLAB_HOME=str(tmp_path / "home"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "packetlab", "run", "http", *(body or ("-T", "-")),
         f"http://127.0.0.1:{port}/up"],
        stdin=r, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    os.close(r)
    return proc, w


@pytest.mark.parametrize("body", [("-T", "-"), ("-F", "a=@-")])
def test_ctrl_c_stops_an_upload_from_a_silent_pipe(tmp_path: Path, body: tuple[str, str]) -> None:
    # ours read the pipe with a blocking read() on the reactor's thread: Ctrl-C (and
    # SIGTERM, and the time limits) acted only once bytes came or the pipe closed (-F
    # a=@-: until session 14, while the request was built, read whole)
    with serve_http(Chunked) as port:
        Chunked.put.clear()
        proc, w = put_from_pipe(tmp_path, port, *body)
        try:  # started, (-T: connected,) its pipe read waiting: not a fixed 3 s (loaded)
            if body[0] == "-T":
                assert Chunked.put.wait(30), "no PUT within 30 s"
            poll_until(partial(reads_a_pipe, proc.pid), timeout=30, what="its read of the pipe")
            proc.send_signal(signal.SIGINT)
            sent = time.monotonic()
            try:
                out, err = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            took = time.monotonic() - sent
        finally:
            os.close(w)
            if proc.poll() is None:  # (failed before the Ctrl-C)
                proc.kill()
                proc.communicate()
    assert proc.returncode == 130, err
    limit = 2.5 if body[0] == "-F" else 5.0  # -F: within ~2 s (the run's 1 s grace)
    assert took < limit, f"Ctrl-C took {took:.1f} s"  # the grace for replies in flight: 1 s
    text = (out + err).decode()
    assert "# interrupted (Ctrl-C): 0 URLs ended" in text and "Traceback" not in text


def from_slow_pipe(tmp_path: Path, lines: tuple[bytes, bytes], *body: str) -> tuple[
    int, bytes, bytes
]:  # fmt: skip
    """`pktlab run http BODY URL` (BODY default -T -) fed by a pipe that gives the first
    of `lines` after 1.5 s, the second 0.5 s later, then ends: (status, stdout, stderr)."""
    with serve_http(Chunked) as port:
        proc, w = put_from_pipe(tmp_path, port, *body)
        try:
            for delay, line in zip((1.5, 0.5), lines, strict=True):
                time.sleep(delay)
                os.write(w, line)
        finally:
            os.close(w)
        out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


def test_what_a_slow_pipe_gives_is_sent(tmp_path: Path) -> None:
    code, out, err = from_slow_pipe(tmp_path, (b"first\n", b"second\n"))
    assert code == 0, err
    assert b" 200 " in out and b"13 body bytes" in out, out


def test_a_form_part_from_a_slow_pipe_goes_whole(tmp_path: Path) -> None:
    # -F a=@-: the pipe read to its end first (a Content-Length, as curl's), by a thread
    lines = (b"late\n", b"later\n")
    code, out, err = from_slow_pipe(tmp_path, lines, "-F", "a=@-", "-w", "%{response_code}\\n")
    assert code == 0, err
    assert out == b"161 2200\n", out  # Content-Length 161 (curl's), both lines in it
