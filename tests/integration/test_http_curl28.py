"""`pktlab run http` beside curl 7.88.1 where they differed before session 28 (http28):
--proto, --proto-redir, -Y/--speed-limit and -y/--speed-time (unknown options before),
and an option's value that starts with a dash (argparse's `expected one argument`
before). Each command line run by
/usr/bin/curl and by ours (`-A x`, `--curl-exit-codes` for ours) against the same raw
loopback server, which records each request's head; the requests, stdout (-w), stderr's
warnings and the exit status compared."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
from http_keepalive import Recorder as KeepaliveRecorder
from http_keepalive import recorder_fixture
from test_http_curl_side_by_side import REPO, pytestmark  # noqa: F401

ANSWERS = {
    b"/rel": b"HTTP/1.1 302 Found\r\nLocation: /ok\r\nContent-Length: 0\r\n\r\n",
    b"/ok": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
}


class Recorder(KeepaliveRecorder):
    """Answers /rel (a 302 to /ok) and /ok (keep-alive), every request head kept."""

    def answer(self, conn: socket.socket, head: bytes, path: bytes) -> bool:
        if path == b"/silent":  # no answer (until the client goes)
            conn.settimeout(15)
            conn.recv(1)
            return False
        if path == b"/trickle":  # a byte every 0.25 s: 4 B/s for 2.5 s
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
            for _ in range(10):
                time.sleep(0.25)
                try:
                    conn.sendall(b"x")
                except OSError:
                    return False
            return True
        if path == b"/stream":  # 100 bytes every 0.1 s: 1,000 B/s for 2 s
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n")
            for _ in range(20):
                time.sleep(0.1)
                try:
                    conn.sendall(b"x" * 100)
                except OSError:
                    return False
            return True
        conn.sendall(ANSWERS.get(path, ANSWERS[b"/ok"]))
        return True


server = recorder_fixture(Recorder)


def _both(server: Recorder, *args: str) -> list[tuple[int, bytes, list[str], list[bytes]]]:
    """(exit status, stdout, stderr's curl lines, the requests) of curl and of ours."""
    seen = []
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for argv in (["curl"], [sys.executable, "-m", "packetlab", "run", "http",
                            "--curl-exit-codes"]):  # fmt: skip
        server.heads.clear()
        words = [a.replace("URL", server.url) for a in args]
        p = subprocess.run([*argv, "-A", "x", "--no-progress-meter", *words],
                           capture_output=True, timeout=60, env=env)  # fmt: skip
        # curl's own lines: its warnings and -v's; ours adds a line in its words
        mine = ("Warning: ", "* Protocol", "* Closing connection -1", "* Operation too")
        told = [line for line in p.stderr.decode().splitlines() if line.startswith(mine)]
        seen.append((p.returncode, p.stdout, told, list(server.heads)))
    return seen


W = "%{http_code} %{exitcode} %{num_redirects} %{url_effective} %{errormsg}\\n"


@pytest.mark.parametrize(
    "args",
    [
        ("--proto", "=https", "URL/ok"),
        ("--proto", "-http", "URL/ok"),
        ("--proto", "-all,http", "URL/ok"),
        ("--proto", "-all,+HTTPS", "URL/ok"),
        ("--proto", "bogus", "URL/ok"),
        ("--proto", "=http,bogus", "URL/ok"),
        ("--proto", "=ws", "URL/ok"),
        ("--proto", "-=http", "URL/ok"),
        ("--proto", "http,,https", "URL/ok"),
        ("--proto", "=https", "--proto", "=http", "URL/ok"),
        ("--proto", "=https", "URL/ok", "URL/ok"),
        ("-L", "--proto-redir", "=https", "URL/rel"),
        ("-L", "--proto-redir", "-http", "URL/rel"),
        ("-L", "--proto-redir", "=http", "URL/rel"),
        ("-L", "--proto-redir", "=ftp", "URL/rel"),
        ("-L", "--proto", "=http", "--proto-redir", "=https", "URL/rel"),
        ("-L", "--proto", "=https", "--proto-redir", "=http", "URL/rel"),
        ("--proto-redir", "=https", "URL/rel"),  # (no -L: no redirect to refuse)
        ("-v", "--proto", "=https", "URL/ok"),
        ("-v", "-L", "--proto-redir", "=https", "URL/rel"),
        ("-s", "--proto", "bogus", "URL/ok"),
        ("-d", "-x", "URL/ok"),
    ],
    ids=lambda a: " ".join(a),
)
def test_proto_and_proto_redir_as_curl(server: Recorder, args: tuple[str, ...]) -> None:
    curl, ours = _both(server, "-w", W, *args)
    assert ours == curl


@pytest.mark.parametrize("value", ["=", "+", "http,-"])
def test_proto_badly_used_as_curl(server: Recorder, value: str) -> None:
    curl, ours = _both(server, "--proto", value, "URL/ok")
    assert curl[0] == ours[0] == 2
    assert curl[3] == ours[3] == []


@pytest.mark.parametrize(
    "args",
    [
        ("-Y", "1", "-y", "1", "URL/silent"),
        # far over the limit (1,000 B/s): at 4 B/s curl itself tripped now and then
        ("-Y", "1", "-y", "1", "URL/stream"),
        ("-Y", "100", "-y", "1", "URL/trickle"),
        ("-Y", "100", "-y", "1", "-L", "URL/rel"),
        ("-y", "1", "URL/silent"),  # -y alone: 1 byte/s (curl's tool sets -Y 1)
        ("-Y", "1k", "URL/ok"),
        ("-y", "-1", "URL/ok"),
        ("-v", "-Y", "100", "-y", "1", "URL/trickle"),
    ],
    ids=lambda a: " ".join(a),
)
def test_speed_limit_as_curl(server: Recorder, args: tuple[str, ...]) -> None:
    # the outcome and curl's words, not the moment (curl samples at wall-clock seconds)
    curl, ours = _both(server, "-w", "%{http_code} %{exitcode} %{errormsg}\\n", *args)
    assert ours[0] == curl[0] and ours[3] == curl[3]
    assert ours[1].lstrip(b"xok") == curl[1].lstrip(b"xok")  # (how many body bytes: not)
    assert ours[2] == curl[2]


@pytest.mark.parametrize(
    "args",
    [("-m", "1", "URL/silent"), ("-m", "1", "URL/trickle"), ("-Y", "1", "-y", "1", "URL/silent")],
    ids=lambda a: " ".join(a),
)
def test_time_total_of_a_timeout_as_curl(server: Recorder, args: tuple[str, ...]) -> None:
    # curl: the time to the give-up (1 s, -Y's up to a second later); ours was 0 for the
    # silent server and the last byte's time (0.25 s) for the trickle
    curl, ours = _both(server, "-s", "-w", "\\n%{exitcode} %{time_total}", *args)
    for seen in (curl, ours):
        exitcode, total = seen[1].split(b"\n")[-1].split()
        assert exitcode == b"28"
        assert 0.9 <= float(total) < 2.5  # (ours: the endpoint's stamps, from its start)
