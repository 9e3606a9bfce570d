"""`pktlab run http --compressed` beside curl 7.88.1 on compressed bodies whose HTTP
framing is whole but whose compressed stream is cut short, has data after its end, is
two gzip members, or is empty (session 34, http34). A loopback server answers each
path; one run of each client fetches them all (-o a file each, -w each URL's code and
size). curl takes a stream cut short (exit 0, what it decoded written); ours refuses it
as 61 for every coding (before: zstd alone), the same bytes written, the record's
`truncated` naming the coding. Data after the end: curl's 23 (61 for zstd), ours 61,
the same text written (br too since session 35, clock35).
Two gzip members: curl writes the first and fails 23; ours writes both (RFC 1952)."""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import zlib
from pathlib import Path

import brotli
import zstandard
from http_keepalive import Recorder as KeepaliveRecorder
from http_keepalive import recorder_fixture
from test_http_curl_side_by_side import REPO, pytestmark  # noqa: F401

TEXT = b"".join(b"line %d of a body compressed and cut short\n" % i for i in range(400))


def _gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def _raw(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-15)
    return c.compress(data) + c.flush()


def _zstd(data: bytes) -> bytes:  # (a block a KiB: some decoded before a cut)
    c = zstandard.ZstdCompressor(write_checksum=True).compressobj()
    block = zstandard.COMPRESSOBJ_FLUSH_BLOCK
    parts = [c.compress(data[at : at + 1024]) + c.flush(block) for at in range(0, len(data), 1024)]
    return b"".join(parts) + c.flush()


def _fixed(coding: str, body: bytes) -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n"
            % (coding.encode(), len(body)) + body)  # fmt: skip


def _chunked(coding: str, body: bytes) -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"%x\r\n%s\r\n0\r\n\r\n" % (coding.encode(), len(body), body))  # fmt: skip


# path: (the answer, curl's exit code, ours', ours' `truncated`)
CASES: dict[str, tuple[bytes, int, int, str | None]] = {
    "/gzip": (_fixed("gzip", _gz(TEXT)), 0, 0, None),
    "/gzip-cut": (_fixed("gzip", _gz(TEXT)[:-4]), 0, 61, "gzip"),
    "/x-gzip-cut": (_fixed("x-gzip", _gz(TEXT)[: len(_gz(TEXT)) // 2]), 0, 61, "x-gzip"),
    "/deflate-cut": (_fixed("deflate", zlib.compress(TEXT)[:-9]), 0, 61, "deflate"),
    "/raw-cut": (_fixed("deflate", _raw(TEXT)[:-3]), 0, 61, "deflate"),
    "/br-cut": (_fixed("br", brotli.compress(TEXT)[:-1]), 0, 61, "br"),
    "/zstd-cut": (_fixed("zstd", _zstd(TEXT)[:-300]), 0, 61, "zstd"),
    "/gzip-br-cut": (_fixed("gzip, br", brotli.compress(_gz(TEXT)[:-4])), 0, 61, "gzip"),
    "/gzip-chunked-cut": (_chunked("gzip", _gz(TEXT)[:-4]), 0, 61, "gzip"),
    "/gzip-after": (_fixed("gzip", _gz(TEXT) + b"GARBAGE!"), 23, 61, None),
    # (session 35: in one write, so in the read that ends the stream: br was `bad data`
    # and wrote nothing; now the text, as curl)
    "/br-after": (_fixed("br", brotli.compress(TEXT) + b"GARBAGE!"), 23, 61, None),
    "/deflate-after": (_fixed("deflate", zlib.compress(TEXT) + b"GARBAGE!"), 23, 61, None),
    "/zstd-after": (_fixed("zstd", _zstd(TEXT) + b"GARBAGE!"), 61, 61, None),
    "/gzip-members": (_fixed("gzip", _gz(TEXT) + _gz(b"member two\n")), 23, 0, None),
    "/gzip-empty": (_fixed("gzip", b""), 0, 0, None),
    # the framing cut short too (the connection closed): curl's 18 for both
    "/gzip-close": (_fixed("gzip", _gz(TEXT))[:-20], 18, 18, None),
}


class Recorder(KeepaliveRecorder):
    def answer(self, conn: socket.socket, head: bytes, path: bytes) -> bool:
        conn.sendall(CASES[path.decode()][0])
        return path != b"/gzip-close"


server = recorder_fixture(Recorder)


def _fetch(who: str, url: str, out: Path, *more: str) -> subprocess.CompletedProcess[bytes]:
    """Every case's path in one run, each to its own file under `out`."""
    argv = ["curl"] if who == "curl" else [sys.executable, "-m", "packetlab", "run", "http"]
    w = [] if "--json" in more else ["-w", "%{exitcode} %{size_download}\\n"]
    args = ["-s", "--compressed", *w, *more]
    for i, path in enumerate(CASES):
        args += ["-o", str(out / str(i)), url + path]
    return subprocess.run([*argv, *args], capture_output=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))  # fmt: skip


def test_compressed_bodies_cut_short_beside_curl(server: Recorder, tmp_path: Path) -> None:
    got = {}
    for who in ("curl", "ours"):
        (tmp_path / who).mkdir()
        got[who] = _fetch(who, server.url, tmp_path / who)
    rows = {who: got[who].stdout.decode().splitlines() for who in got}
    assert len(rows["curl"]) == len(rows["ours"]) == len(CASES), got["ours"].stderr
    for i, (path, (_, theirs, ours, _)) in enumerate(CASES.items()):
        codes = [int(rows[who][i].split()[0]) for who in ("curl", "ours")]
        assert codes == [theirs, ours], path
        assert rows["curl"][i].split()[1] == rows["ours"][i].split()[1], path  # size_download
        written = {}
        for who in ("curl", "ours"):  # (none when nothing was written and it failed)
            f = tmp_path / who / str(i)
            written[who] = f.read_bytes() if f.exists() else None
        if path == "/gzip-members":  # curl: the first member; ours: both (RFC 1952)
            assert (written["curl"], written["ours"]) == (TEXT, TEXT + b"member two\n")
        elif path == "/br-cut":  # (curl's libbrotli 1.0.9 holds back more than 1.2's)
            assert TEXT.startswith(written["ours"] or b"-")
            assert len(written["ours"] or b"") >= len(written["curl"] or b"-")
        else:
            assert written["ours"] == written["curl"], path
        assert (written["curl"] or b"") == TEXT[: len(written["curl"] or b"")], path
    # what each cut wrote: all the text when only the trailer or checksum is cut, a part
    # of it when the stream's data is
    sizes = {p: len((tmp_path / "ours" / str(i)).read_bytes()) for i, p in enumerate(CASES)}
    assert sizes["/gzip-cut"] == sizes["/gzip-after"] == sizes["/br-after"] == len(TEXT)
    assert 0 < sizes["/raw-cut"] < len(TEXT) and 0 < sizes["/zstd-cut"] < len(TEXT)


def test_the_record_says_which_coding_was_cut(server: Recorder, tmp_path: Path) -> None:
    """--json: a body cut short's record has exitcode 61, the error and `truncated`;
    --curl-exit-codes makes 61 the exit status of a run whose last URL was cut."""
    done = _fetch("ours", server.url, tmp_path, "--json")
    records = [json.loads(line) for line in done.stdout.splitlines()]
    by_url = {r["url"].rsplit("/", 1)[1]: r for r in records if r["type"] == "http"}
    for path, (_, _, ours, truncated) in CASES.items():
        record = by_url[path[1:]]
        assert record.get("exitcode", 0) == ours, path
        assert record.get("truncated") == truncated, path
        if truncated is not None:
            assert record["error"] == (f"Content-Encoding {truncated}: the body ends within "
                                       "its compressed stream (cut short)"), path  # fmt: skip
    argv = [sys.executable, "-m", "packetlab", "run", "http", "-s", "--compressed",
            "--curl-exit-codes", "-o", str(tmp_path / "one"), server.url + "/br-cut"]  # fmt: skip
    one = subprocess.run(argv, capture_output=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))  # fmt: skip
    assert one.returncode == 61, one.stderr
    assert TEXT.startswith((tmp_path / "one").read_bytes())
