"""`pktlab run http` and curl 7.88 side by side on the same loopback servers (HTTP and
HTTPS with a test CA, started here): the same options (-L, --max-redirs, --post302, -X,
-d, --data-binary, -I, -o, -w) give the same bytes on stdout and in the -o files for every
field that does not depend on the clock (status, redirects, effective URL, method, body,
sizes, content type, remote address, curl's exit code); the times are checked for order."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import ssl
import subprocess
import sys
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from httpserve import serve_http

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "unit" / "measure"))

from web_pki import make_pki  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl missing")

# every field of -w that does not depend on the clock
FIELDS = (
    "%{http_code} %{response_code} %{num_redirects} %{url_effective} %{method} "
    "%{size_download} %{size_header} %{size_upload} [%{content_type}] %{remote_ip} "
    "%{remote_port} %{exitcode} [%{redirect_url}] %{scheme} %{http_version} "
    "%header{content-type}\\n"
)
TIMES = (
    "%{time_namelookup} %{time_connect} %{time_appconnect} %{time_pretransfer} "
    "%{time_starttransfer} %{time_total} %{time_redirect} %{speed_download}\\n"
)


class Handler(BaseHTTPRequestHandler):
    """/r/CODE?to=WHERE redirects, /loop redirects to itself, /chunked, /echo (and any
    other path) answers the request it saw as JSON. Fixed Server and Date headers, so that
    header sizes and -I output do not depend on the clock."""

    protocol_version = "HTTP/1.1"
    connections = 0  # TCP connections accepted (both servers)

    def setup(self) -> None:
        type(self).connections += 1
        super().setup()

    def log_message(self, *args: object) -> None:
        pass

    def version_string(self) -> str:
        return "test/1"

    def date_time_string(self, timestamp: float | None = None) -> str:
        return "Thu, 01 Jan 2026 00:00:00 GMT"

    def answer(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        u = urlsplit(self.path)
        if u.path.startswith("/r/") or u.path == "/loop":
            code = 302 if u.path == "/loop" else int(u.path.split("/")[2])
            where = "/loop" if u.path == "/loop" else parse_qs(u.query)["to"][0]
            self.send_response(code)
            self.send_header("Location", where)
            self.send_header("Content-Length", "5")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(b"moved")
            return
        if u.path in ("/gzip", "/deflate", "/br"):  # the body in that coding if asked for it
            text = b"hello hello hello hello\n" * 20
            asked = self.headers.get("Accept-Encoding") or ""
            coded = {"gzip": gzip.compress, "deflate": zlib.compress,
                     "br": lambda b: b"\x0b\x02\x80hello"}[u.path[1:]]  # fmt: skip
            out = coded(text) if u.path[1:] in asked or u.path == "/br" else text
            self.send_response(200)
            if out != text:
                self.send_header("Content-Encoding", u.path[1:])
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)
            return
        if u.path in ("/set", "/show"):  # /set?c=SET-COOKIE...&to=WHERE; /show: the Cookie
            out = ("cookie=" + (self.headers.get("Cookie") or "-") + "\n").encode()
            q = parse_qs(u.query)
            self.send_response(302 if u.path == "/set" else 200)
            if u.path == "/set":
                self.send_header("Location", q.get("to", ["/show"])[0])
            for c in q.get("c", []):
                self.send_header("Set-Cookie", c)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)
            return
        if u.path == "/auth":
            out = (self.headers.get("Authorization") or "none").encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)
            return
        if u.path == "/close":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
            return
        if u.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.end_headers()
            self.wfile.write(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
            return
        seen = {"method": self.command, "path": self.path, "body": body.decode("latin-1"),
                "ct": self.headers.get("Content-Type")}  # fmt: skip
        out = json.dumps(seen).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = do_PATCH = answer


def serve(tls: ssl.SSLContext | None) -> Iterator[int]:
    with serve_http(Handler, tls) as port:
        yield port


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def http() -> Iterator[str]:
    for port in serve(None):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def https(pki: dict[str, Path]) -> Iterator[str]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pki["server"]), str(pki["key"]))
    for port in serve(ctx):
        yield f"https://localhost:{port}"


def both(*args: str, cwd: Path, curl_only: tuple[str, ...] = ()) -> tuple[
    subprocess.CompletedProcess[bytes], subprocess.CompletedProcess[bytes]
]:  # fmt: skip
    """(curl, pktlab run http) with the same arguments, in `cwd` (for -o files)."""
    curl = subprocess.run(["curl", *curl_only, *args], capture_output=True, timeout=60, cwd=cwd)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    ours = subprocess.run(
        [sys.executable, "-m", "packetlab", "run", "http", "--connect-to", "127.0.0.1", *args],
        capture_output=True, timeout=180, env=env, cwd=cwd,
    )  # fmt: skip
    return curl, ours


def test_redirects_methods_and_bodies_as_curl(http: str, tmp_path: Path) -> None:
    urls = [
        *(f"{http}/r/{code}?to=/echo%3Fx" for code in (301, 302, 303, 307, 308)),
        f"{http}/r/302?to=../a/b",  # relative
        f"{http}/r/302?to=/r/301%3Fto%3D/chunked",  # two hops
    ]
    curl, ours = both("-s", "-L", "-d", "a=1", "-w", FIELDS, *urls, cwd=tmp_path)
    assert curl.returncode == 0 and ours.returncode == 0, ours.stderr
    assert ours.stdout.decode().splitlines() == curl.stdout.decode().splitlines()
    assert b'"method": "POST", "path": "/echo?x", "body": "a=1"' in ours.stdout  # 307, 308
    # -X sticks over a 303, --post302 keeps the POST, --data-binary, no -L: not followed
    for args in (["-L", "-X", "PUT", "-d", "a=1"], ["-L", "--post302", "-d", "a=1"],
                 ["--data-binary", "x\ny"], ["-X", "DELETE"]):  # fmt: skip
        curl, ours = both("-s", *args, "-w", FIELDS, f"{http}/r/303?to=/echo",
                          f"{http}/r/302?to=/echo", cwd=tmp_path)  # fmt: skip
        assert ours.stdout == curl.stdout, args


def test_redirect_across_scheme_and_host_verified(
    http: str, https: str, pki: dict[str, Path], tmp_path: Path
) -> None:
    port = https.rsplit(":", 1)[1]
    resolve = ("--resolve", f"localhost:{port}:127.0.0.1")  # ours: --connect-to
    url = f"{http}/r/302?to={https}/echo"
    back = f"{https}/r/307?to={http}/chunked"
    curl, ours = both("-s", "-L", "--cacert", str(pki["ca"]), "-w", FIELDS + TIMES, url, back,
                      cwd=tmp_path, curl_only=resolve)  # fmt: skip
    assert curl.returncode == ours.returncode == 0, ours.stderr
    fields = [line for i, line in enumerate(ours.stdout.splitlines()) if i % 2 == 0]
    assert fields == [line for i, line in enumerate(curl.stdout.splitlines()) if i % 2 == 0]
    for line in ours.stdout.splitlines()[1::2]:  # the times: curl's order
        dns, conn, app, pre, start, total, redirect, _speed = (float(x) for x in line.split())
        assert dns <= conn and pre <= start <= total and redirect <= total and app <= start
        assert len(line.split()[0].split(b".")[1]) == 6  # six decimals, as curl
    # the second hop's certificate is checked again: an untrusted CA fails it
    curl, ours = both("-s", "-L", "--cacert", str(pki["other-ca"]), "-w", FIELDS, url,
                      cwd=tmp_path, curl_only=resolve)  # fmt: skip
    assert curl.returncode == 60 and ours.returncode == 1
    assert ours.stdout == curl.stdout  # http_code 302, exitcode 60


def test_failures_as_curl(http: str, tmp_path: Path) -> None:
    w = FIELDS.replace("\\n", " [%{onerror}failed]\\n")
    curl, ours = both("-s", "-L", "--max-redirs", "3", "-w", w, f"{http}/loop",
                      f"{http}/r/302?to=http://%5B::1/x", f"{http}/r/302?to=/echo",
                      cwd=tmp_path)  # fmt: skip
    assert (curl.returncode, ours.returncode) == (0, 1)  # curl: the last URL's status
    assert ours.stdout == curl.stdout  # 302 47, 302 3, then the echo
    assert ours.stderr == b""  # -s: the reasons are in %{errormsg} only
    # -w with an unknown variable, from a file: warned on stderr, nothing printed for it
    fmt = tmp_path / "fmt"
    fmt.write_text("%{bogus}code=%{http_code}\\n")
    curl, ours = both("-s", "-o", "/dev/null", "-w", f"@{fmt}", f"{http}/echo", cwd=tmp_path)
    assert ours.stdout == curl.stdout == b"code=200\n"
    assert b"unknown --write-out variable: 'bogus'" in curl.stderr
    assert b"unknown --write-out variable: 'bogus'" in ours.stderr
    # -o where nothing can be written: one line before anything is sent (curl: 23 after)
    _, ours = both("-s", "-o", "/nonexistent/dir/f", f"{http}/echo", cwd=tmp_path)
    assert ours.returncode == 2 and b"/nonexistent/dir" in ours.stderr
    assert len(ours.stderr.splitlines()) == 1


def test_output_files_and_head_as_curl(http: str, tmp_path: Path) -> None:
    a, b = tmp_path / "curl", tmp_path / "ours"
    a.mkdir()
    b.mkdir()
    urls = [f"{http}/echo?1", f"{http}/chunked", f"{http}/echo?3"]
    curl = subprocess.run(["curl", "-s", "-o", "one", "-o", "two", *urls, "-w", FIELDS],
                          capture_output=True, timeout=60, cwd=a)  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(REPO))
    ours = subprocess.run(
        [sys.executable, "-m", "packetlab", "run", "http", "-s", "-o", "one", "-o", "two", *urls,
         "-w", FIELDS],
        capture_output=True, timeout=180, env=env, cwd=b,
    )  # fmt: skip
    assert ours.stdout == curl.stdout  # the third body on stdout, as curl
    for name in ("one", "two"):
        assert (b / name).read_bytes() == (a / name).read_bytes()
    curl, ours = both("-s", "-I", "-L", "-w", FIELDS, f"{http}/r/301?to=/echo", cwd=tmp_path)
    assert ours.stdout.decode().splitlines() == curl.stdout.decode().splitlines()
    assert ours.stdout.count(b"HTTP/1.1 ") == 2  # both header blocks, as curl -I -L
    # the table stays the default; -o files are written under it
    _, ours = both("-o", "page", f"{http}/echo", cwd=b)
    assert ours.returncode == 0 and ours.stdout.startswith(b"code") and (b / "page").exists()


def test_keep_alive_as_curl(http: str, https: str, pki: dict[str, Path], tmp_path: Path) -> None:
    # a -L hop to the same origin and the next URLs on the same host:port: one connection,
    # num_connects 1 then 0, no connect or handshake time on the reused one, as curl
    w = FIELDS.replace("\\n", " %{num_connects}\\n")
    urls = [f"{http}/r/302?to=/echo", f"{http}/chunked", f"{http}/echo?3"]
    before = Handler.connections
    subprocess.run(["curl", "-s", "-L", *urls], capture_output=True, timeout=60, check=True)
    by_curl = Handler.connections - before
    before = Handler.connections
    curl, ours = both("-s", "-L", "-w", w, *urls, cwd=tmp_path)
    by_both = Handler.connections - before
    assert curl.returncode == ours.returncode == 0, ours.stderr
    assert ours.stdout == curl.stdout
    assert [line.rsplit(b" ", 1)[1] for line in ours.stdout.splitlines()[-3:]] == [
        b"1", b"0", b"0"
    ]  # fmt: skip
    assert by_curl == 1 and by_both == 2  # ours one too
    port = https.rsplit(":", 1)[1]
    resolve = ("--resolve", f"localhost:{port}:127.0.0.1")
    times = "%{num_connects} %{time_connect} %{time_appconnect}\\n"
    curl, ours = both("-s", "-o", "/dev/null", "-o", "/dev/null", "--cacert", str(pki["ca"]),
                      "-w", times, f"{https}/echo", f"{https}/echo?2", cwd=tmp_path,
                      curl_only=resolve)  # fmt: skip
    assert curl.returncode == ours.returncode == 0, ours.stderr
    for out in (curl.stdout, ours.stdout):
        first, second = out.splitlines()
        assert first.startswith(b"1 ") and b" 0.000000" not in first
        assert second == b"0 0.000000 0.000000"
    # a server that closes (Connection: close): each URL its own connection, as curl
    curl, ours = both("-s", "-o", "/dev/null", "-o", "/dev/null", "-w", "%{num_connects}\\n",
                      f"{http}/close", f"{http}/close", cwd=tmp_path)  # fmt: skip
    assert ours.stdout == curl.stdout == b"1\n1\n"


def test_include_get_user_compressed_as_curl(http: str, tmp_path: Path) -> None:
    port = http.rsplit(":", 1)[1]
    other = f"http://localhost:{port}"  # the same server under another host name
    # -i with -L: every header block, then the body; -G: -d as the query; -u: Basic
    for args in (
        ["-i", "-L", f"{http}/r/302?to=/echo"],
        ["-i", "-I", f"{http}/echo"],
        ["-G", "-d", "a=1", "-d", "b=2", f"{http}/echo?x=0", f"{http}/echo"],
        ["-G", "-I", "-d", "a=1", f"{http}/echo"],
        ["-u", "us:p:w", f"{http}/auth", f"{http}/r/302?to=/auth"],
        ["-u", "us:pw", "-L", f"{http}/r/302?to={other}/auth"],  # not to another host
        ["-L", "-H", "Authorization: Bearer t", f"{http}/r/302?to={other}/auth"],
        ["--compressed", f"{http}/gzip", f"{http}/deflate", f"{http}/echo"],
        ["-i", f"{http}/gzip"],  # not asked: not coded, not decoded
    ):
        curl, ours = both("-s", "-L", "-w", FIELDS, *args, cwd=tmp_path,
                          curl_only=("--resolve", f"localhost:{port}:127.0.0.1"))  # fmt: skip
        assert curl.returncode == ours.returncode == 0, (args, ours.stderr)
        # curl 7.88 writes -u's credentials into %{url_effective} after a redirect
        # (http://us:p%3aw@127.0.0.1:PORT/auth); ours keeps the password out of it
        expected = curl.stdout.replace(b"us:p%3aw@", b"").replace(b"us:pw@", b"")
        assert ours.stdout == expected, args
    # br (a stream cut short): decoded as curl 7.88.1 with brotli decodes it (session 25;
    # before, ours asked for deflate and gzip only and refused br by name, 61), what it
    # held written; curl takes it (0), ours refuses it, as every coding cut short (61,
    # session 34: it was taken as curl's)
    curl, ours = both("-s", "--compressed", "-w", "%{exitcode} %{errormsg}", f"{http}/br",
                      cwd=tmp_path)  # fmt: skip
    assert (curl.returncode, curl.stdout) == (0, b"hello0 ")
    cut = b"Content-Encoding br: the body ends within its compressed stream (cut short)"
    assert (ours.returncode, ours.stdout) == (1, b"hello61 " + cut)
    # -u without a password: curl asks for it on the terminal; ours: one line
    _, ours = both("-u", "alone", f"{http}/auth", cwd=tmp_path)
    assert ours.returncode == 2 and len(ours.stderr.splitlines()) == 1


def test_cookies_as_curl(http: str, tmp_path: Path) -> None:
    from urllib.parse import quote

    port = http.rsplit(":", 1)[1]
    www = f"http://a.www.test:{port}"
    sets = ["a=1", "b=2; Path=/sh", "h=3; HttpOnly", "s=5; Secure", "x=6; Path=/other",
            "e=4; Expires=Wed, 01 Jan 2031 00:00:00 GMT", "gone=1; Max-Age=0",
            "d=7; Domain=www.test", "t=8; Domain=test", "o=9; Domain=other.test"]  # fmt: skip
    first = f"{www}/set?" + "&".join("c=" + quote(c) for c in sets)
    urls = [first, f"http://b.www.test:{port}/show", f"{http}/show"]
    resolve = ("--resolve", f"a.www.test:{port}:127.0.0.1",
               "--resolve", f"b.www.test:{port}:127.0.0.1")  # fmt: skip
    # the engine on (-b ''), -L: Set-Cookie of a redirect sent on its next hop, a Domain
    # cookie to another host of the domain, not to 127.0.0.1; -c: curl's file, byte for byte
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    curl, ours = both("-s", "-L", "-b", "", "-c", "jar", "-b", "z=0", *urls,
                      cwd=tmp_path / "a", curl_only=resolve)  # fmt: skip
    _, ours = both("-s", "-L", "-b", "", "-c", "jar", "-b", "z=0", "-w", "", *urls,
                   cwd=tmp_path / "b", curl_only=resolve)  # fmt: skip
    assert curl.returncode == ours.returncode == 0, ours.stderr
    assert ours.stdout == curl.stdout
    assert ours.stdout.startswith(b"cookie=e=4; h=3; a=1; d=7; z=0\n")  # s: not secure here
    assert (tmp_path / "b" / "jar").read_text() == (tmp_path / "a" / "jar").read_text()
    # the jar read back (-b FILE) and written again (-c -)
    jar = str(tmp_path / "a" / "jar")
    curl, ours = both("-s", "-b", jar, "-c", "-", f"{www}/show", f"{www}/sh/x", cwd=tmp_path,
                      curl_only=resolve)  # fmt: skip
    _, ours = both("-s", "-b", jar, "-c", "-", "-w", "", f"{www}/show", f"{www}/sh/x",
                   cwd=tmp_path, curl_only=resolve)  # fmt: skip
    assert ours.stdout == curl.stdout  # the jar written after each URL, as curl 7.88
    assert ours.stdout.count(b"# Netscape HTTP Cookie File") == 2
    # -c where nothing can be written: one line before anything is sent
    _, ours = both("-c", "/nonexistent/dir/jar", f"{http}/show", cwd=tmp_path)
    assert ours.returncode == 2 and len(ours.stderr.splitlines()) == 1
