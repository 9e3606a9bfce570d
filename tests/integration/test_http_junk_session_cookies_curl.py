"""`pktlab run http -j/--junk-session-cookies` beside curl 7.88's: a loopback server
answers with the Cookie field it read and sets a session cookie; both tools read the same
cookie file (one session cookie, one that expires in 2100) and must send the same Cookie
and write the same cookie jar."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from httpserve import serve_http
from test_http_curl_side_by_side import REPO, pytestmark  # noqa: F401

FILE = (
    "# Netscape HTTP Cookie File\n"
    "127.0.0.1\tFALSE\t/\tFALSE\t0\tsess\t1\n"
    "127.0.0.1\tFALSE\t/\tFALSE\t4102444800\tkeep\t2\n"
)


class Cookies(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        out = f"cookie={self.headers.get('Cookie')}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.send_header("Set-Cookie", "new=3")
        self.end_headers()
        self.wfile.write(out)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve_http(Cookies) as port:
        yield f"http://127.0.0.1:{port}/"


def _run(who: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    argv = ["curl"] if who == "curl" else [sys.executable, "-m", "packetlab", "run", "http"]
    return subprocess.run([*argv, "-s", "-w", "", *args], capture_output=True, timeout=60,
                          env=env, cwd=cwd)  # fmt: skip


def test_junk_session_cookies_as_curl(url: str, tmp_path: Path) -> None:
    (tmp_path / "cj").write_text(FILE)
    for argv in (["-b", "cj"], ["-j", "-b", "cj"], ["--junk-session-cookies", "-b", "a=1",
                 "-b", "cj"], ["-j"], ["-j", "-b", "cj", "-c", "-"]):  # fmt: skip
        theirs, ours = _run("curl", *argv, url, cwd=tmp_path), _run("ours", *argv, url,
                                                                    cwd=tmp_path)  # fmt: skip
        assert theirs.returncode == ours.returncode == 0, ours.stderr
        assert ours.stdout == theirs.stdout, argv
    assert b"sess" not in ours.stdout and b"\tnew\t3" in ours.stdout
