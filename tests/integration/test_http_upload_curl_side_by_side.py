"""`pktlab run http` and curl 7.88 side by side on a loopback HTTP/1.1 server (the
standard library's, which answers `Expect: 100-continue` with a 100) for what they
upload: -F multipart bodies (the same bytes but the random boundary), -T files (small,
over 1 MiB with the Expect, to a URL ending in /, from stdin chunked), each checked on
the server side (length, SHA-256, the request's framing headers); and -Z/--parallel:
the transfers at the same time, each write-out when its URL ends."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from test_http_curl_side_by_side import REPO, Handler, both, pytestmark  # noqa: F401

W = ("%{http_code} %{method} %{url_effective} %{size_upload} %{size_request} "
     "%{size_header} %{size_download} %{exitcode}\\n")  # fmt: skip
UA = ("-H", "User-Agent: curl/7.88.1")  # so that size_request compares too


class Upload(Handler):
    """Reads a Content-Length or chunked body; answers what it got as JSON (method, path,
    length, SHA-256, the body when short, framing headers). /d/S answers after S s."""

    def answer(self) -> None:
        if self.path.startswith("/d/"):
            time.sleep(float(self.path[3:].split("/")[0]))
        body = bytearray()
        if self.headers.get("Transfer-Encoding") == "chunked":
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        else:
            body += self.rfile.read(int(self.headers.get("Content-Length") or 0))
        seen = {
            "method": self.command, "path": self.path, "len": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
            "body": body.decode("latin-1") if len(body) < 2000 else None,
            **{h: self.headers.get(h) for h in ("Content-Type", "Content-Length", "Expect",
                                                "Transfer-Encoding")},
        }  # fmt: skip
        out = json.dumps(seen).encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = answer


@pytest.fixture(scope="module")
def http() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upload)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def same_but_boundary(out: bytes) -> bytes:
    """The output with the random boundary and the body hashes (over it) taken out."""
    out = re.sub(rb'"sha256": "[0-9a-f]{64}"', b'"sha256": ""', out)
    return re.sub(rb"-{24}[0-9a-f]{16}", b"BOUNDARY", out)


def test_forms_as_curl(http: str, tmp_path: Path) -> None:
    (tmp_path / "small.txt").write_bytes(b"hello\n")
    (tmp_path / "s.JPG").write_bytes(b"\xff\xd8jpeg")
    (tmp_path / "big.bin").write_bytes(bytes(range(256)) * 4200)  # 1,075,200: Expect
    for args in (
        ["-F", "a=b", "-F", "f=@small.txt;type=text/foo;filename=z.txt", "-F", "g=<small.txt",
         "-F", "h=@small.txt", "-F", "j=@s.JPG", "-F", 'q="x\\"y;z";type=text/q'],
        ["-F", "f=@big.bin", "-F", "n=1"],
    ):  # fmt: skip
        curl, ours = both("-s", *UA, "-w", W, *args, f"{http}/form", f"{http}/form2",
                          cwd=tmp_path)  # fmt: skip
        assert curl.returncode == ours.returncode == 0, ours.stderr
        assert same_but_boundary(ours.stdout) == same_but_boundary(curl.stdout), args
    assert b'"Expect": "100-continue"' in ours.stdout and b'"len": 1075' in ours.stdout


def test_put_files_as_curl(http: str, tmp_path: Path) -> None:
    (tmp_path / "small.txt").write_bytes(b"hello\n")
    big = bytes(range(256)) * 8200  # 2,099,200 bytes
    (tmp_path / "big.bin").write_bytes(big)
    (tmp_path / "empty").write_bytes(b"")
    for args in (
        ["-T", "small.txt", f"{http}/up/"],  # the name appended
        ["-T", "big.bin", f"{http}/up/x?y=1", f"{http}/next"],  # then a GET
        ["-T", "empty", f"{http}"],
        ["-T", "small.txt", "-T", "big.bin", f"{http}/a/", f"{http}/b/"],
    ):
        curl, ours = both("-s", *UA, "-w", W, *args, cwd=tmp_path)
        assert curl.returncode == ours.returncode == 0, ours.stderr
        assert ours.stdout == curl.stdout, args
    sha = hashlib.sha256(big).hexdigest().encode()
    got = b'"method": "PUT", "path": "/b/big.bin", "len": 2099200, "sha256": "' + sha
    assert got in ours.stdout  # the server got every byte
    # -T - : stdin, chunked, as curl
    env_input = b"from stdin\n" * 10000
    curl = subprocess.run(["curl", "-s", *UA, "-w", W, "-T", "-", f"{http}/in/"],
                          input=env_input, capture_output=True, timeout=60)  # fmt: skip
    ours = subprocess.run(
        [sys.executable, "-m", "packetlab", "run", "http", "--connect-to", "127.0.0.1", "-s",
         *UA, "-w", W, "-T", "-", f"{http}/in/"],
        input=env_input, capture_output=True, timeout=120,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )  # fmt: skip
    assert curl.returncode == ours.returncode == 0, ours.stderr
    # size_upload counts the chunks' framing, and curl's chunks are what each read() of
    # the pipe gave (at most 65,524 bytes): it differs from run to run, so not compared
    fields = [out.rsplit(b"\n", 2)[-2].split() for out in (ours.stdout, curl.stdout)]
    assert ours.stdout.split(b"\n")[0] == curl.stdout.split(b"\n")[0]
    assert fields[0][:3] + fields[0][4:] == fields[1][:3] + fields[1][4:]
    assert 110000 + 5 < int(fields[0][3]) < 110000 + 100
    assert b'"Transfer-Encoding": "chunked"' in ours.stdout and b'"len": 110000' in ours.stdout
    # a file that is not there: one line, before anything is sent (curl: 26 after)
    _, ours = both("-T", "nosuch", f"{http}/up/", cwd=tmp_path)
    assert ours.returncode == 2 and ours.stderr.strip().splitlines() == [
        b"pktlab run http: -T/--upload-file nosuch: No such file or directory"
    ]  # fmt: skip


def test_parallel_as_curl(http: str, tmp_path: Path) -> None:
    urls = [f"{http}/d/0.9", f"{http}/d/0.1", f"{http}/d/0.5"]
    null = ["-o", "/dev/null"] * 3
    w = "%{url} %{http_code} %{num_connects}\n"
    # curl 7.88 -Z waits for a first connection to a host to learn whether it multiplexes
    # (pipewait): at its first answer (HTTP/1.1) one transfer reuses it, the others
    # connect at once; so 0.9 first, then 0.1 (num_connects 0), then 0.5
    curl, ours = both("-s", "-Z", "-w", w, *null, *urls, cwd=tmp_path)
    assert curl.returncode == ours.returncode == 0, ours.stderr
    assert ours.stdout == curl.stdout
    assert [line.split()[-1] for line in ours.stdout.splitlines()] == [b"1", b"0", b"1"]
    # --parallel-immediate: all at once, each its own connection, in the order they end
    curl, ours = both("-s", "-Z", "--parallel-immediate", "-w", w, *null, *urls, cwd=tmp_path)
    assert curl.returncode == ours.returncode == 0, ours.stderr
    assert ours.stdout == curl.stdout  # 0.1, 0.5, 0.9
    assert ours.stdout.splitlines()[0].startswith(urls[1].encode())
    started = time.monotonic()
    _, ours = both("-s", "-Z", "--parallel-immediate", "-w", w, *null, *null, *urls, *urls,
                   cwd=tmp_path)  # fmt: skip
    took = time.monotonic() - started
    assert ours.returncode == 0 and len(ours.stdout.splitlines()) == 6
    assert took < 0.9 * 2 + 0.5 + 0.1 + 3  # not one after the other (3 s: start-up)
    curl, ours = both("-s", "-Z", "--parallel-max", "1", "-w", w, *null, *urls, cwd=tmp_path)
    assert ours.stdout == curl.stdout  # one at a time: in URL order
