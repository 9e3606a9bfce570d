"""`pktlab run http` beside curl 7.88.1 where they differed before session 28 (http28):
--proto and --proto-redir (unknown options before), and an option's value that starts
with a dash (argparse's `expected one argument` before). Each command line run by
/usr/bin/curl and by ours (`-A x`, `--curl-exit-codes` for ours) against the same raw
loopback server, which records each request's head; the requests, stdout (-w), stderr's
warnings and the exit status compared."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from http_keepalive import serve_keepalive
from test_http_curl_side_by_side import REPO, pytestmark  # noqa: F401

ANSWERS = {
    b"/rel": b"HTTP/1.1 302 Found\r\nLocation: /ok\r\nContent-Length: 0\r\n\r\n",
    b"/ok": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
}


class Recorder:
    """Answers /rel (a 302 to /ok) and /ok (keep-alive), every request head kept."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        threading.Thread(
            target=serve_keepalive, args=(self.sock, self._answer), daemon=True
        ).start()

    def _answer(self, conn: socket.socket, head: bytes) -> bool:
        self.heads.append(head)
        path = head.split(b" ", 2)[1] if head.count(b" ") > 1 else b""
        conn.sendall(ANSWERS.get(path, ANSWERS[b"/ok"]))
        return True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"


@pytest.fixture(scope="module")
def server() -> Iterator[Recorder]:
    s = Recorder()
    yield s
    s.sock.close()


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
        mine = ("Warning: ", "* Protocol", "* Closing connection -1")
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
