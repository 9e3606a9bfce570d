"""`pktlab run http --limit-rate` beside curl 7.88's against one loopback server that
notes, for each request, how long it took to write its answer or read the request's
body: the server's view of the rate (its writes wait once the receiver's TCP window
closes). The bounds are tolerant (at least 0.8 of N/R where the rate is the receiver's
or the sender's), and each fails when the limit is ignored (unlimited, the same transfer
takes a few ms on loopback). curl is run beside for the figures of docs/http.md; curl
7.88.1 reads a download's socket as long as it has data, so on loopback it goes over its
rate (no bound on it here)."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from httpserve import serve_http
from test_http_curl_side_by_side import REPO, pytestmark  # noqa: F401
from web_pki import make_pki

TOOK: dict[str, float] = {}  # ?k=KEY: seconds the server spent writing or reading the body
LOCK = threading.Lock()
CHUNK = b"x" * 65536


class Timed(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _key(self) -> tuple[str, int]:
        q = parse_qs(urlsplit(self.path).query)
        return q["k"][0], int(q.get("n", ["0"])[0])

    def do_GET(self) -> None:
        key, n = self._key()
        self.send_response(200)
        self.send_header("Content-Length", str(n))
        self.end_headers()
        t0, left = time.monotonic(), n
        while left:
            self.wfile.write(CHUNK[: min(left, len(CHUNK))])
            left -= min(left, len(CHUNK))
        self.wfile.flush()
        with LOCK:
            TOOK[key] = time.monotonic() - t0

    def do_PUT(self) -> None:
        key, _ = self._key()
        n, got, t0 = int(self.headers["Content-Length"]), 0, time.monotonic()
        while got < n:
            got += len(self.rfile.read(min(65536, n - got)))
        with LOCK:
            TOOK[key] = time.monotonic() - t0
        self.send_response(200)
        self.send_header("Content-Length", str(got))
        self.end_headers()
        self.wfile.write(b"x" * got)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve_http(Timed) as port:
        yield f"http://127.0.0.1:{port}"


def _run(who: str, *args: str) -> tuple[float, list[str]]:
    """(wall seconds, the -w fields) of curl or ours with `args`."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    argv = ["curl"] if who == "curl" else [sys.executable, "-m", "packetlab", "run", "http"]
    w = "%{time_total} %{size_download} %{size_upload} %{exitcode}"
    t0 = time.monotonic()
    out = subprocess.run([*argv, "-s", "-o", "/dev/null", "-w", w, *args], capture_output=True,
                         timeout=120, env=env)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return time.monotonic() - t0, out.stdout.decode().split()


def test_download_at_the_rate(url: str) -> None:
    n, rate = 2 << 20, 1 << 20  # 2 MiB at --limit-rate 1M: 2 s
    wall, (total, size, _, _) = _run("ours", "--limit-rate", "1M", f"{url}/d?k=o1&n={n}")
    assert int(size) == n
    assert float(total) >= 0.8 * n / rate and wall >= 0.8 * n / rate
    assert float(total) <= 1.5 * n / rate  # not held far below it either
    _run("curl", "--limit-rate", "1M", f"{url}/d?k=c1&n={n}")  # (its figure: docs)


def test_the_server_sees_the_window_close(url: str) -> None:
    # 24 MiB at 8M (3 s): the loopback buffers (a few MiB) take the start at once, then
    # the server's writes wait for the endpoint, which reads at the rate
    n, rate = 24 << 20, 8 << 20
    _, (_, size, _, _) = _run("ours", "--limit-rate", "8M", f"{url}/d?k=o2&n={n}")
    assert int(size) == n
    assert TOOK["o2"] >= 0.3 * n / rate  # unlimited: well under 0.1 s
    _run("curl", "--limit-rate", "8M", f"{url}/d?k=c2&n={n}")


def test_upload_at_the_rate(url: str, tmp_path: Path) -> None:
    n, rate = 2 << 20, 1 << 20
    f = tmp_path / "up"
    f.write_bytes(b"u" * n)
    _, (total, _, up, _) = _run("ours", "--limit-rate", "1M", "-T", str(f),
                                   f"{url}/u?k=o3")  # fmt: skip
    assert int(up) == n
    assert TOOK["o3"] >= 0.8 * n / rate and float(total) >= 0.8 * n / rate
    _, (_, _, theirs, _) = _run("curl", "--limit-rate", "1M", "-T", str(f), f"{url}/u?k=c3")
    assert int(theirs) == n and TOOK["c3"] >= 0.8 * n / rate


def test_https_at_the_rate_through_connect_to(tmp_path: Path) -> None:
    # TLS at the controller, paced at the endpoint; curl's --connect-to: the certificate
    # is www.test's and so are SNI and the check, the connection goes to 127.0.0.1
    pki = make_pki(tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki["server"], pki["key"])
    n, rate = 2 << 20, 1 << 20
    with serve_http(Timed, tls=ctx) as port:
        url = f"https://www.test:{port}/d?n={n}&k="
        tls = ("--cacert", str(pki["ca"]), "--connect-to", f"www.test:{port}:127.0.0.1:")
        _, (total, size, _, _) = _run("ours", *tls, "--limit-rate", "1M", url + "o4")
        assert int(size) == n and 0.8 * n / rate <= float(total) <= 1.5 * n / rate
        _, (_, theirs, _, _) = _run("curl", *tls, "--limit-rate", "1M", url + "c4")
        assert int(theirs) == n


def test_http2_streams_each_at_the_rate_as_curl(tmp_path: Path) -> None:
    # -Z, two 1 MiB transfers to one HTTP/2 origin: one connection, each stream held to
    # 500K as curl holds each transfer (curl 7.88.1: 1.4-1.95 s each, N/R 2.05 s); ours
    # held the connection's reads to it: 4 s for the two
    from test_http2_curl_side_by_side import HERE, curl_has_http2

    if not curl_has_http2():
        pytest.skip("curl without HTTP/2")
    pytest.importorskip("h2")
    pki = make_pki(tmp_path)
    server = subprocess.Popen([sys.executable, str(HERE / "h2_web_server.py"),
                               str(pki["server"]), str(pki["key"])],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert server.stdout is not None
        port = server.stdout.readline().split()[0]
        n, rate = 1 << 20, 500 << 10
        urls = [f"https://localhost:{port}/n/{n}"] * 2
        env = dict(os.environ, PYTHONPATH=str(REPO))
        for argv in (["curl", "--resolve", f"localhost:{port}:127.0.0.1"],
                     [sys.executable, "-m", "packetlab", "run", "http", "--connect-to",
                      "127.0.0.1"]):  # fmt: skip
            out = subprocess.run([*argv, "-s", "-Z", "--cacert", str(pki["ca"]), "--limit-rate",
                                  "500K", "-w", "%{http_version} %{num_connects} "
                                  "%{time_total}\\n", "-o", "/dev/null", "-o", "/dev/null",
                                  *urls], capture_output=True, timeout=120, env=env)  # fmt: skip
            assert out.returncode == 0, out.stderr
            lines = [x.split() for x in out.stdout.decode().splitlines()]
            assert sorted((v, c) for v, c, _ in lines) == [("2", "0"), ("2", "1")]  # 1 conn
            if argv[0] != "curl":
                for _, _, total in lines:  # the connection's pace: the second at 2 N/R
                    assert 0.8 * n / rate <= float(total) <= 1.5 * n / rate
    finally:
        server.kill()
        server.wait(10)


@pytest.mark.parametrize("how", ["-T", "--data-binary"])
def test_http2_uploads_each_at_the_rate_as_curl(tmp_path: Path, how: str) -> None:
    # -Z, two 1 MiB uploads to one HTTP/2 origin: one connection, each stream's body held
    # to 500K as curl holds each transfer (curl 7.88.1: 2.05 s each, the server reading
    # each body from 0 to 2.03 s; N/R 2.05 s). Ours held the connection's sends to it:
    # the two bodies together at the rate
    import json

    from test_http2_curl_side_by_side import HERE, curl_has_http2

    if not curl_has_http2():
        pytest.skip("curl without HTTP/2")
    pytest.importorskip("h2")
    pki = make_pki(tmp_path)
    n, rate = 1 << 20, 500 << 10
    f = tmp_path / "up"
    f.write_bytes(b"u" * n)
    body = ["-T", str(f), "-T", str(f)] if how == "-T" else ["--data-binary", f"@{f}"]
    server = subprocess.Popen([sys.executable, str(HERE / "h2_web_server.py"),
                               str(pki["server"]), str(pki["key"])],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert server.stdout is not None
        port = server.stdout.readline().split()[0]
        urls = [f"https://localhost:{port}/up", f"https://localhost:{port}/up?2"]
        env = dict(os.environ, PYTHONPATH=str(REPO))
        for argv in (["curl", "--resolve", f"localhost:{port}:127.0.0.1"],
                     [sys.executable, "-m", "packetlab", "run", "http", "--connect-to",
                      "127.0.0.1"]):  # fmt: skip
            outs = [tmp_path / "o1", tmp_path / "o2"]
            out = subprocess.run([*argv, "-s", "-Z", "--cacert", str(pki["ca"]), "--limit-rate",
                                  "500K", *body, "-w", "%{http_version} %{num_connects} "
                                  "%{size_upload} %{time_total}\\n", "-o", str(outs[0]),
                                  "-o", str(outs[1]), *urls], capture_output=True,
                                 timeout=120, env=env)  # fmt: skip
            assert out.returncode == 0, out.stderr
            lines = [x.split() for x in out.stdout.decode().splitlines()]
            assert sorted((v, c) for v, c, _, _ in lines) == [("2", "0"), ("2", "1")]  # 1 conn
            seen = [json.loads(o.read_text()) for o in outs]  # the server's times (s)
            why = (argv[0], lines, seen)
            for _, _, up, total in lines:  # (in the order they ended)
                assert int(up) == n and 0.6 * n / rate <= float(total) <= 1.6 * n / rate, why
            for got in seen:  # each stream from the start (not after the other), at the
                assert got["n"] == n and got["first"] <= 0.3 * n / rate, why  # rate all along
                assert 0.3 * n / rate <= got["half"] <= 0.8 * n / rate, why
                assert 0.6 * n / rate <= got["last"] <= 1.6 * n / rate, why
    finally:
        server.kill()
        server.wait(10)
