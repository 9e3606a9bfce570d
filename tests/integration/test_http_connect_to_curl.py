"""`pktlab run http --connect-to` beside curl 7.88's: two loopback servers each answer
with their own port and the Host field they read, so stdout says which one was connected
and what Host went on the wire; curl and ours must print the same bytes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest
from httpserve import serve_http
from test_http_curl_side_by_side import REPO, pytestmark  # noqa: F401


class Where(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        port = self.server.server_address[1]  # type: ignore[index]
        out = f"{port} {self.headers.get('Host')} {self.path}\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out.encode())


@pytest.fixture(scope="module")
def ports() -> Iterator[tuple[int, int]]:
    with serve_http(Where) as a, serve_http(Where) as b:
        yield a, b


def _run(who: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    argv = ["curl"] if who == "curl" else [sys.executable, "-m", "packetlab", "run", "http"]
    return subprocess.run([*argv, "-s", "-w", "", *args], capture_output=True, timeout=60,
                          env=env)  # fmt: skip


def test_connect_to_as_curl(ports: tuple[int, int]) -> None:
    a, b = ports
    cases = [
        # HOST1:PORT1 matched: HOST2:PORT2 connected, Host the URL's
        (f"a.test:80:127.0.0.1:{b}", "http://a.test/x"),
        # an entry that does not match is passed over; empty PORT1 matches any
        (f"b.test:80:127.0.0.1:{a}", f"a.test::127.0.0.1:{b}", "http://a.test/y"),
        # the first that matches wins
        (f":80:127.0.0.1:{a}", f"a.test:80:127.0.0.1:{b}", "http://a.test/z"),
        # empty HOST2: the URL's host, another port
        (f"127.0.0.1:{a}::{b}", f"http://127.0.0.1:{a}/k"),
        # empty PORT2: the URL's port, another host (and a Host field with the port)
        ("a.test::127.0.0.1:", f"http://a.test:{a}/p"),
    ]
    for *entries, url in cases:
        argv = [x for e in entries for x in ("--connect-to", e)] + [url]
        theirs, ours = _run("curl", *argv), _run("ours", *argv)
        assert theirs.returncode == 0, theirs.stderr
        assert (ours.returncode, ours.stdout) == (0, theirs.stdout), (argv, ours.stderr)
    # ours before curl's form: an address alone, every host and port to it
    ours = _run("ours", "--connect-to", "127.0.0.1", f"http://a.test:{b}/q")
    theirs = _run("curl", "--connect-to", "::127.0.0.1:", f"http://a.test:{b}/q")
    assert ours.stdout == theirs.stdout == f"{b} a.test:{b} /q\n".encode()
