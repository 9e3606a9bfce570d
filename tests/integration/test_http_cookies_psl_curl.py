"""Cookies for a public suffix beside curl 7.88.1 with libpsl: a loopback server sends
the Set-Cookie headers its path names, reached by `--resolve` names (www.example.co.uk,
a.github.io, ...); curl's cookie jar (`-c -`) and ours must be the same bytes: the
cookies whose Domain is a public suffix of the host dropped by both."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from urllib.parse import quote, unquote

import pytest
from httpserve import serve_http
from test_http_curl_side_by_side import REPO, pytestmark  # noqa: F401

from packetlab.measure.publicsuffix import LIST

COOKIES = [
    "a=1; Domain=co.uk", "b=2; Domain=example.co.uk", "c=3", "d=4; Domain=.co.uk",
    "e=5; Domain=uk", "f=6; Domain=kawasaki.jp", "g=7; Domain=city.kawasaki.jp",
    "h=8; Domain=github.io", "i=9; Domain=b.kawasaki.jp", "k=11; Domain=example.test",
]  # fmt: skip
HOSTS = ["www.example.co.uk", "co.uk", "a.b.kawasaki.jp", "www.city.kawasaki.jp",
         "a.github.io", "www.example.test"]  # fmt: skip


class SetCookies(BaseHTTPRequestHandler):
    """/A|B|...: a 200 with one Set-Cookie for each (URL-quoted) value."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        for value in unquote(self.path[1:]).split("|"):
            self.send_header("Set-Cookie", value)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with serve_http(SetCookies) as p:
        yield p


def _jar(who: str, host: str, port: int, cookies: list[str]) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    argv = ["curl"] if who == "curl" else [sys.executable, "-m", "packetlab", "run", "http"]
    url = f"http://{host}:{port}/{quote('|'.join(cookies))}"
    return subprocess.run([*argv, "-s", "-w", "", "-o", os.devnull, "-c", "-", "--resolve",
                           f"{host}:{port}:127.0.0.1", url], capture_output=True, text=True,
                          timeout=60, env=env)  # fmt: skip


@pytest.mark.skipif(not LIST.exists(), reason="the publicsuffix package is not installed")
@pytest.mark.parametrize("host", HOSTS)
def test_public_suffix_cookies_dropped_as_curl(port: int, host: str) -> None:
    cookies = [*COOKIES, f"j=10; Domain={host}"]
    theirs, ours = _jar("curl", host, port, cookies), _jar("ours", host, port, cookies)
    assert theirs.returncode == 0 and ours.returncode == 0, ours.stderr
    assert ours.stdout == theirs.stdout
    assert "\tc\t3\n" in ours.stdout  # the host's own cookie is kept
