"""`pktlab run http` beside curl 7.88.1 where session 25 (curl25) found them apart: a -H
line as typed, status lines curl reads or refuses, ... A raw server records each
request's bytes and answers each path with bytes of its own (`ANSWERS`); the helpers
of test_http_bytes_as_given_curl compare stdout, exit and the requests."""

from __future__ import annotations

import gzip
import os
import re
import socket
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import brotli
import pytest
import test_http_bytes_as_given_curl as given
import zstandard
from http_keepalive import serve_keepalive
from test_http_bytes_as_given_curl import _answers_as_curl, _run
from test_http_curl_side_by_side import pytestmark  # noqa: F401

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
TEXT = b"hello compressed world\n" * 40


def _coded(codings: str, body: bytes) -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n"
            % (codings.encode(), len(body)) + body)  # fmt: skip


def _gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


_SEEN = {"/drop2": 0}


def _drop_second(head: bytes) -> bytes:
    """OK but for every third request from the second on: no answer, the connection
    closed (an idle keep-alive connection the server dropped as the request came)."""
    _SEEN["/drop2"] += 1
    return b"" if _SEEN["/drop2"] % 3 == 2 else OK


ANSWERS: dict[bytes, bytes | Callable[[bytes], bytes]] = {
    b"/drop2": _drop_second,
    # status lines: curl reads these (HTTP/2 over HTTP/1.1: %{http_version} 2) ...
    b"/v2": b"HTTP/2 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"/v2b": b"HTTP/2 200\r\nContent-Length: 2\r\n\r\nok",
    b"/v20": b"HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"/sp2": b"HTTP/1.1  200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"/nosp": b"HTTP/1.1 200OK\r\nContent-Length: 2\r\n\r\nok",
    # ... and refuses (1): a version it does not speak
    b"/v12": b"HTTP/1.2 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"/v3": b"HTTP/3 200 OK\r\nContent-Length: 2\r\n\r\nok",
    # Content-Encoding as curl 7.88.1 (zlib, brotli, zstd) decodes it, stacked or not
    b"/br": _coded("br", brotli.compress(TEXT)),
    b"/zstd": _coded("zstd", zstandard.ZstdCompressor().compress(TEXT)),
    b"/br-gzip": _coded("br, gzip", _gz(brotli.compress(TEXT))),
    b"/zstd-deflate": _coded("zstd, deflate", zlib.compress(zstandard.compress(TEXT))),
    b"/gzip5": _coded("gzip, gzip, gzip, gzip, gzip", _gz(_gz(_gz(_gz(_gz(TEXT)))))),
    # ... and refuses (61): six codings (at the head: no body read), an unknown one
    b"/gzip6": _coded("gzip, gzip, gzip, gzip, gzip, gzip", _gz(_gz(_gz(_gz(_gz(_gz(TEXT))))))),
    b"/xyz": _coded("xyz", TEXT),
    b"/gzip-bad": _coded("gzip", b"not gzip!!"),
    b"/br-bad": _coded("br", b"not brotli at all"),
    # heads curl reads and h11 refused: Content-Lengths that differ (the last), no name
    b"/2cl": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nokk",
    b"/noname": b"HTTP/1.1 200 OK\r\n: v\r\nContent-Length: 2\r\n\r\nok",
    # ... and a code below 100 curl refuses (1, nothing written; ours: 8 and the head)
    b"/code099": b"HTTP/1.1 099 Odd\r\nContent-Length: 2\r\n\r\nok",
    b"/code20": b"HTTP/1.1 20 OK\r\nContent-Length: 2\r\n\r\nok",
    # bytes past the body: curl drops them after a zero-length one (the connection kept)
    b"/204": b"HTTP/1.1 204 No Content\r\nContent-Length: 4\r\n\r\nbody",
    b"/304": b"HTTP/1.1 304 Not Modified\r\n\r\nbody",
    b"/long": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA",
    # a gzip Transfer-Encoding: curl 7.88 decodes it, --tr-encoding or not
    b"/te": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"
    % (len(_gz(TEXT)), _gz(TEXT)),
    b"/te-close": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nConnection: close\r\n\r\n"
    + _gz(TEXT),
}


class Recorder(given.Recorder):
    """Keeps each request head as it came; answers its path from ANSWERS (a callable
    is given the head), keeping the connection unless the path has `close` in it."""

    def _serve(self) -> None:  # (the accept loop given.Recorder starts)
        serve_keepalive(self.sock, self._answer)

    def _answer(self, conn: socket.socket, head: bytes) -> bool:
        self.heads.append(head + b"\r\n\r\n")
        path = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b""
        answer = ANSWERS.get(path, OK)
        given = answer(head) if callable(answer) else answer
        if not given:  # (a callable's b"": closed without an answer)
            return False
        conn.sendall(given)
        return b"close" not in path


@pytest.fixture(scope="module")
def server() -> Iterator[Recorder]:
    r = Recorder()
    yield r
    r.sock.close()


def test_header_lines_go_as_typed(server: Recorder) -> None:
    # curl25: ours wrote `X: v` for -H 'X:v' (h11's form); curl sends the line as typed
    to = f"::127.0.0.1:{server.port}"
    for field in ("X:v", "X:  v", "X :v", "X:\tv", "X;", "X: v"):
        _run("curl", "-A", "x/1", "-H", field, "--connect-to", to, "http://a.example/x")
        theirs = server.take()
        got = _run("ours", "-A", "x/1", "-w", "", "-H", field, "--connect-to", to,
                   "http://a.example/x")  # fmt: skip
        assert got.returncode == 0, got.stderr
        assert server.take() == theirs, field


def test_status_lines_as_curl(server: Recorder) -> None:
    # curl25: ours refused `HTTP/2 200` over HTTP/1.1, `HTTP/1.1  200` and `200OK` (8)
    # and took HTTP/1.2 (curl: 1, "Unsupported HTTP version (1.2) in response")
    w = "|%{http_code} %{http_version} %{size_header} %{num_headers} %{exitcode}\\n"
    _answers_as_curl(server, ["-D", "-"], w, ("/v2", "/v2b", "/v20", "/sp2", "/nosp"))
    _answers_as_curl(server, ["-D", "-"], w, ("/v12", "/v3"), ok=False)


def test_compressed_bodies_as_curl(server: Recorder, tmp_path: Path) -> None:
    # curl25: ours asked for `deflate, gzip` and refused br, zstd and stacked codings (61);
    # curl 7.88.1 here asks for `deflate, gzip, br, zstd` and decodes each
    to = f"::127.0.0.1:{server.port}"
    _run("curl", "-A", "x/1", "--compressed", "--connect-to", to, "http://a.example/x")
    theirs = server.take()
    _run("ours", "-A", "x/1", "-w", "", "--compressed", "--connect-to", to, "http://a.example/x")
    assert server.take() == theirs
    w = "|%{size_download} %{exitcode}\\n"
    paths = ("/br", "/zstd", "/br-gzip", "/zstd-deflate", "/gzip5")
    _bodies_as_curl(server, tmp_path, ["--compressed"], paths)
    _answers_as_curl(server, ["--compressed"], w, ("/br", "/zstd", "/br-gzip", "/gzip5"))
    _answers_as_curl(server, ["--compressed"], w, ("/gzip6", "/xyz"), ok=False)


def _bodies_as_curl(server: Recorder, tmp_path: Path, how: list[str],
                    paths: tuple[str, ...]) -> None:  # fmt: skip
    """Each path's body as curl and ours write it (TEXT, decoded), both exiting 0."""
    to = f"::127.0.0.1:{server.port}"
    for path in paths:
        for who in ("curl", "ours"):  # (_run's -o is /dev/null: a second -o is unused)
            done = subprocess.run(
                [*_argv(who), "-s", *how, "-o", str(tmp_path / who), "-w", "",
                 "--connect-to", to, f"http://a.example{path}"],
                capture_output=True, timeout=60, env=_env(),
            )  # fmt: skip
            assert done.returncode == 0, (who, path, done.stderr)
        assert (tmp_path / "ours").read_bytes() == (tmp_path / "curl").read_bytes() == TEXT
    server.take()


def _argv(who: str) -> list[str]:
    return ["curl"] if who == "curl" else [sys.executable, "-m", "packetlab", "run", "http"]


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(given.REPO))


def _challenge(offer: bytes) -> Callable[[bytes], bytes]:
    def answer(head: bytes) -> bytes:
        if b"\r\nAuthorization: " in head:
            return OK
        return (b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: " + offer +
                b"\r\nContent-Length: 5\r\n\r\nnope\n")  # fmt: skip

    return answer


ANSWERS.update({
    b"/digest": _challenge(b'Digest realm="r@h", qop="auth,auth-int", nonce="dcd98b", '
                           b'opaque="5ccc"'),
    b"/digest?q=1": _challenge(b'Digest realm="r", nonce="abc", algorithm=MD5'),
    b"/sha": _challenge(b'Digest realm="r", nonce="abc", qop="auth", algorithm=SHA-256'),
    b"/basic": _challenge(b'Basic realm="b"'),
    # answered, then a redirect: curl answers the challenge again (its cnonce, nc 2)
    b"/dr": lambda head: (b"HTTP/1.1 302 Found\r\nLocation: /dr2?x=1\r\nContent-Length: 0"
                          b"\r\n\r\n" if b"\r\nAuthorization: " in head else
                          _challenge(b'Digest realm="r", nonce="abc", qop="auth"')(head)),
    b"/dr2?x=1": _challenge(b'Digest realm="r", nonce="abc", qop="auth"'),
})  # fmt: skip


def _masked(heads: list[bytes]) -> list[bytes]:
    """cnonce (random) and the response over it masked, a -F boundary (random) too."""
    out = [re.sub(rb'cnonce="[^"]*"', b"cnonce=C", h) for h in heads]
    out = [re.sub(rb"-{10,}[0-9a-f]{16}", b"-B", h) for h in out]
    return [re.sub(rb'(cnonce=C.*response=")[^"]*"', rb'\1R"', h) for h in out]


def test_digest_and_anyauth_as_curl(server: Recorder) -> None:
    # curl25: --digest, --anyauth were unknown options (exit 2). curl: the request goes
    # without credentials (a -d body as Content-Length: 0), a 401's challenge is answered
    # once more on the same connection, counted in %{num_redirects}; -D has both heads
    to = f"::127.0.0.1:{server.port}"
    w = "|%{http_code} %{num_connects} %{num_redirects} %{size_header} %{size_request}\\n"
    cases = (
        ["--digest", "http://a.example/digest"],
        ["--digest", "-d", "a=1", "http://a.example/digest?q=1"],  # no qop: byte for byte
        ["--digest", "http://a.example/sha"],
        ["--digest", "-F", "a=b", "http://a.example/digest?q=1"],  # its probe: no type
        ["--digest", "-T", __file__, "http://a.example/digest?q=1"],
        ["--anyauth", "http://a.example/sha"],
        ["--anyauth", "http://a.example/basic"],
        ["--digest", "http://a.example/basic"],  # not offered: the 401 is the answer
        ["--digest", "--basic", "http://a.example/basic"],  # both: as --anyauth
        ["--basic", "http://a.example/basic"],  # at once: the 200 only
        ["--digest", "-L", "http://a.example/dr"],
    )
    for args in cases:
        base = ["-A", "x/1", "-u", "us:pw", "-D", "-", "-w", w, "--connect-to", to]
        want = _run("curl", *base, *args)
        theirs = server.take()
        got = _run("ours", *base, *args)
        assert got.returncode == want.returncode == 0, (args, got.stderr)
        assert got.stdout == want.stdout, args
        assert _masked(server.take()) == _masked(theirs), args
    done = _run("ours", "--ntlm", "-u", "a:b", "http://a.example/basic")
    assert done.returncode == 2 and done.stderr.count(b"\n") == 1, done.stderr
    assert b"--ntlm: NTLM authorization is not built" in done.stderr


def test_tr_encoding_as_curl(server: Recorder, tmp_path: Path) -> None:
    # curl25: --tr-encoding was unknown (exit 2), a gzip Transfer-Encoding refused (8)
    to = f"::127.0.0.1:{server.port}"
    cases = (
        ["--tr-encoding"],
        ["--tr-encoding", "--compressed", "-e", "r", "-u", "a:b", "-d", "z=1"],
        ["--tr-encoding", "-H", "Connection: keep-alive"],  # its value before TE
        ["--tr-encoding", "-H", "Connection:"],
        ["--tr-encoding", "-H", "TE: br"],  # a -H TE: no Connection: TE
        ["--tr-encoding", "-H", "TE:"],
        ["--tr-encoding", "-0"],
    )
    for args in cases:
        _run("curl", "-A", "x/1", "--connect-to", to, *args, "http://a.example/x")
        theirs = server.take()
        got = _run("ours", "-A", "x/1", "-w", "", "--connect-to", to, *args,
                   "http://a.example/x")  # fmt: skip
        assert got.returncode == 0, (args, got.stderr)
        assert server.take() == theirs, args
    w = "|%{size_download} %{size_header} %{exitcode}\\n"
    for how in ([], ["--tr-encoding"]):
        _answers_as_curl(server, ["-D", "-", *how], w, ("/te", "/te-close"))
        _bodies_as_curl(server, tmp_path, how, ("/te", "/te-close"))


def _verbose(who: str, *args: str, ok: bool = True) -> list[bytes]:
    """-v's lines of curl's own (`*`), the pointers masked; the run succeeding (`ok`)
    or not."""
    done = _run(who, "-v", *args) if who == "curl" else _run(who, "-w", "", "-v", *args)
    assert (done.returncode == 0) == ok, (who, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.startswith(b"* ")]
    return [re.sub(rb"0x[0-9a-f]+", b"0xX", line) for line in lines]


def test_connect_to_lines_over_a_dropped_connection_as_curl(server: Recorder) -> None:
    # curl25: ours told --connect-to's lines after the cache was looked in (after "Closing
    # connection 0" of a dead one; none for a reused one), its own error where curl says
    # "Connection died, retrying a fresh connect", no "Issue another request", and the
    # host name where curl 7.88.1 prints "(nil)" (conn_to_host.dispname, never set)
    resolve = ["--resolve", f"a.example:{server.port}:127.0.0.1"]  # (a port alone: the host's)
    for to in (f"::127.0.0.1:{server.port}", f"a.example:80:127.0.0.1:{server.port}",
               f"a.example:80::{server.port}"):  # fmt: skip
        for path in ("/x", "/drop2"):
            urls = [*resolve, "-o", os.devnull, f"http://a.example{path}",
                    f"http://a.example{path}"]  # fmt: skip
            _SEEN["/drop2"] = 0
            want = _verbose("curl", "--connect-to", to, *urls)
            _SEEN["/drop2"] = 0
            got = _verbose("ours", "--connect-to", to, *urls)
            assert got == want, (to, path)
    server.take()


def test_more_heads_as_curl(server: Recorder) -> None:
    # curl25: Content-Lengths that differ and a field without a name ended ours (8);
    # a status code below 100 was taken (curl: 1, "Unsupported response code")
    w = "|%{http_code} %{size_header} %{num_headers} %{size_download} %{exitcode}\\n"
    _answers_as_curl(server, ["-D", "-"], w, ("/2cl", "/noname", "/204", "/304", "/long"))
    _answers_as_curl(server, ["-D", "-"], w, ("/code099", "/code20"), ok=False)


def test_excess_bytes_as_curl(server: Recorder) -> None:
    # curl25: bytes after a HEAD's, a 204's or a 304's head closed ours' connection (curl:
    # "Excess found ... (zero-length body)", dropped, the connection kept); past a
    # Content-Length, curl's "Excess found in a read" line was missing
    to = f"::127.0.0.1:{server.port}"
    for how, path in (([], "/204"), ([], "/304"), (["-I"], "/x?q=1"), ([], "/long")):
        urls = ["-o", os.devnull, f"http://a.example{path}", f"http://a.example{path}"]
        want = _verbose("curl", "--connect-to", to, *how, *urls)
        got = _verbose("ours", "--connect-to", to, *how, *urls)
        assert got == want, (how, path)
        assert any(b"Excess found" in line for line in got), path
    server.take()


def test_custom_request_notes_as_curl(server: Recorder) -> None:
    # curl25: curl's "Note: Unnecessary use of -X" (-v) and its -X HEAD warning were missing
    to = f"::127.0.0.1:{server.port}"
    cases = (["-X", "GET"], ["-X", "head"], ["-d", "a=1", "-X", "post"],
             ["-I", "-X", "HEAD"], ["-T", __file__, "-X", "PUT"], ["-v", "-X", "GET"],
             ["-v", "-X", "DELETE"])  # fmt: skip
    for args in cases:
        told = []
        for argv in (["curl"], [*_argv("ours"), "-w", ""]):
            done = subprocess.run(
                [*argv, *args, "-o", os.devnull, "-o", os.devnull, "--connect-to", to,
                 "http://a.example/x", "http://a.example/y"],
                capture_output=True, timeout=60, env=_env(),
            )  # fmt: skip
            assert done.returncode == 0, (argv, done.stderr)
            told.append([line for line in done.stderr.splitlines()
                         if line.startswith((b"Note: ", b"Warning: "))])  # fmt: skip
        assert told[1] == told[0], args
    server.take()


def test_undecodable_bodies_told_as_curl(server: Recorder) -> None:
    # curl25: -v told our error ("Content-Encoding gzip: bad data (...)"); curl's words
    # ("Error while processing content unencoding: ...", none for br)
    to = f"::127.0.0.1:{server.port}"
    for path in ("/gzip-bad", "/br-bad", "/xyz", "/gzip6"):
        args = ["--compressed", "--connect-to", to, f"http://a.example{path}"]
        assert _verbose("ours", *args, ok=False) == _verbose("curl", *args, ok=False), path
    server.take()
