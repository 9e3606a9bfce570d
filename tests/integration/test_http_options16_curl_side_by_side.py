"""`pktlab run http` and curl 7.88 side by side for the options of session 16
(--data-urlencode, --data-ascii, --url-query, -G, -A, -e, -r, -D, -m, --retry): the
same loopback server echoes the request it read (its request line, header fields in
order, body); curl and ours must send the same bytes (both are given the same -A, so
that the User-Agent is not ours against curl's), print the same stdout, write the same
-D file, exit alike and warn alike on stderr."""

from __future__ import annotations

import os
import re
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from httpserve import serve_http
from test_http_curl_side_by_side import REPO, pytestmark  # noqa: F401
from web_pki import encrypted, make_pki

UA = ("-A", "side-by-side", "-w", "")  # -w: curl's output, no table (a later -w wins)
SEEN: dict[str, int] = {}  # /flaky?k=KEY: requests seen for KEY
LOCK = threading.Lock()
DATA = bytes(range(48, 58)) * 10  # /file's 100 bytes


class Echo(BaseHTTPRequestHandler):
    """/r: a 302 to /x#f; /flaky?k=KEY&fail=N&code=C[&ra=S][&sleep=S]: C (after S s)
    the first N times for KEY (Retry-After S), then 200; any other: the request read
    (request line, fields in order, body). Fixed Server and Date: the header blocks do
    not depend on the clock."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def version_string(self) -> str:
        return "test/1"

    def date_time_string(self, timestamp: float | None = None) -> str:
        return "Thu, 01 Jan 2026 00:00:00 GMT"

    def handle_expect_100(self) -> bool:
        if self.path.startswith("/quiet"):  # no 100 Continue: the client's wait
            return True
        return super().handle_expect_100()

    def answer(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        u = urlsplit(self.path)
        headers: list[tuple[str, str]] = []
        if u.path in ("/r", "/go"):  # /go?to=URL: there
            code, out = 302, b"moved"
            headers.append(("Location", parse_qs(u.query)["to"][0] if u.query else "/x#f"))
        elif u.path == "/flaky":
            q = parse_qs(u.query)
            with LOCK:
                tries = SEEN[q["k"][0]] = SEEN.get(q["k"][0], 0) + 1
            code, out = 200, f"ok {tries}\n".encode()
            if tries <= int(q["fail"][0]):
                time.sleep(float(q.get("sleep", ["0"])[0]))
                code, out = int(q["code"][0]), f"fail {tries}\n".encode()
                headers += [("Retry-After", v) for v in q.get("ra", [])]
        elif u.path == "/dated":  # -z: Last-Modified ?t=S, the condition fields seen
            when = int(parse_qs(u.query)["t"][0])
            code, out = 200, "".join(f"{k}: {v}\n" for k, v in self.headers.items()
                                     if k.endswith(("Since", "Modified"))).encode()  # fmt: skip
            lm = parse_qs(u.query).get("lm")  # ?lm=TEXT: that Last-Modified as is
            headers.append(("Last-Modified", lm[0] if lm else formatdate(when, usegmt=True)))
        elif u.path in ("/file", "/wrong", "/norange"):  # -C: bytes=N- answered or not
            code, out = 200, DATA
            start = (self.headers.get("Range") or "").removeprefix("bytes=").removesuffix("-")
            if u.path != "/norange" and start.isdigit():
                n = int(start) if u.path == "/file" else 0
                code, out = 206, DATA[n:]
                headers.append(("Content-Range", f"bytes {n}-{len(DATA) - 1}/{len(DATA)}"))
                if n >= len(DATA):
                    code, out = 416, b"range not satisfiable\n"
                    headers[-1] = ("Content-Range", f"bytes */{len(DATA)}")
        else:
            code = 200
            out = f"{self.requestline}\n{self.headers}".encode("latin-1") + body
        self.send_response(code)
        for k, v in [*headers, ("Content-Length", str(len(out)))]:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = answer


@pytest.fixture(scope="module")
def http() -> Iterator[str]:
    with serve_http(Echo) as port:
        yield f"http://127.0.0.1:{port}"


def tool(who: str, *args: str, cwd: Path, stdin: bytes = b"",
         direct: bool = True) -> subprocess.CompletedProcess[bytes]:  # fmt: skip
    """curl ("curl") or pktlab run http ("ours") with `args`, in `cwd`, `stdin` piped
    (ours with `direct`: --connect-to 127.0.0.1, as the URLs are curl's 127.0.0.1)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    ours = [sys.executable, "-m", "packetlab", "run", "http"]
    ours += ["--connect-to", "127.0.0.1"] if direct else []
    return subprocess.run([*(["curl"] if who == "curl" else ours), *args], capture_output=True,
                          timeout=180, env=env, cwd=cwd, input=stdin)  # fmt: skip


def both(*args: str, cwd: Path, stdin: bytes = b"") -> tuple[
    subprocess.CompletedProcess[bytes], subprocess.CompletedProcess[bytes]
]:  # fmt: skip
    """(curl, pktlab run http) with the same arguments."""
    return tool("curl", *args, cwd=cwd, stdin=stdin), tool("ours", *args, cwd=cwd, stdin=stdin)


def warnings(stderr: bytes) -> list[str]:
    """curl's warning and retry lines (not its progress meter or error lines)."""
    lines = stderr.decode().replace("\r", "\n").splitlines()
    return [x for x in lines if x.startswith(("Warning: ", "Throwing away "))]


def same(curl: subprocess.CompletedProcess[bytes], ours: subprocess.CompletedProcess[bytes],
         code: int = 0) -> None:  # fmt: skip
    assert curl.returncode == code and ours.returncode == min(code, 1), ours.stderr
    assert ours.stdout == curl.stdout
    assert warnings(ours.stderr) == warnings(curl.stderr)


def test_data_urlencode_as_curl(http: str, tmp_path: Path) -> None:
    # ours had no --data-urlencode: "unrecognized arguments", exit 2
    (tmp_path / "f1").write_bytes(b"a b&c\n\x01\xff")
    (tmp_path / "empty").write_bytes(b"")
    forms = ["a b=c d&e/~._-*", "=x y", "plain é", "@f1", "n@f1", "m@missing", "e@empty",
             "q=", "a@b=c", "s@-", "t@-"]  # fmt: skip
    argv = [x for f in forms for x in ("--data-urlencode", f)]
    curl, ours = both(*UA, "-o", "-", *argv, "-d", "@-", "--data-ascii", "@f1",
                      "--data-binary", "@f1", "--data-raw", "@f1", f"{http}/post",
                      cwd=tmp_path, stdin=b"in put\r\n")  # fmt: skip
    same(curl, ours)  # the bytes sent: the echoed request
    assert curl.stdout.endswith(b"&s=in+put%0D%0A&&&a b&c\x01\xff&a b&c\n\x01\xff&@f1")
    assert warnings(curl.stderr) == [
        "Warning: Couldn't read data from file \"m@missing\", this makes an empty POST."
    ]  # fmt: skip
    # -s: no warning, as curl's
    curl, ours = both("-s", *UA, "-o", "-", "--data-urlencode", "m@missing", f"{http}/p",
                      cwd=tmp_path)  # fmt: skip
    same(curl, ours)
    assert ours.stderr == b""


def test_get_and_url_query_as_curl(http: str, tmp_path: Path) -> None:
    (tmp_path / "f1").write_bytes(b"a b&c\n\x01")
    fields = "%{url_effective} %{method} %{http_code}\\n"
    for args in (
        ["-G", "-d", "a=1", "--data-urlencode", "b=x/y"],  # -G: %xx in lower case
        ["-G", "-d", "a=1", "--url-query", "c=d"],  # -G wins: no --url-query (7.88.1)
        ["--url-query", "c=d e", "--url-query", "+x=%4A", "--url-query", "@f1"],
        ["-d", "b=2", "--url-query", "a=1"],  # a POST's URL gets it too
        ["--url-query", "a@-"],
    ):
        for url in (f"{http}/q?w#g", f"{http}/a/../b?", http):
            curl, ours = both(*UA, "-s", "-w", fields, "-o", "-", *args, url, cwd=tmp_path,
                              stdin=b"st in\n")  # fmt: skip
            same(curl, ours)


def test_agent_referer_range_as_curl(http: str, tmp_path: Path) -> None:
    (tmp_path / "up").write_bytes(b"hi\n")
    for args in (
        ["-A", "my agent", "-e", "http://ref/x", "-L", f"{http}/r"],
        ["-e", "http://ref/x;auto", "-L", f"{http}/r"],
        ["-e", ";auto", "-L", f"{http}/r", f"{http}/r"],
        ["-A", "", "-e", "", f"{http}/p"],  # none of either
        [
            "-A",
            "x",
            "-H",
            "User-Agent: y",
            "-e",
            "a",
            "-H",
            "Referer: b",
            "-H",
            "X-Gone:",
            f"{http}/p",
        ],
        ["-r", "0-5", f"{http}/p"],
        ["-r", "5", f"{http}/p"],  # warned: 5-
        ["-r", "x-1", "-X", "DELETE", f"{http}/p"],  # warned, sent
        ["-r", "0-1,5-", "-I", f"{http}/p"],
        ["-r", "0-1", "-d", "abc", "-u", "a:b", "-b", "c=d", "-H", "X-A: 1", f"{http}/p"],
        ["-r", "0-1", "-T", "up", "-H", "Expect:", f"{http}/p"],  # Content-Range
    ):
        n = sum(a.startswith(http) for a in args)
        curl, ours = both(*UA, *["-o", "-"] * n, *args, cwd=tmp_path)
        same(curl, ours)


def test_dump_header_as_curl(http: str, tmp_path: Path) -> None:
    # ours had no -D: "unrecognized arguments", exit 2
    h = tmp_path / "h"
    for out in ("h", "-"):
        for args in (["-L", f"{http}/r", f"{http}/p"], ["-I", f"{http}/p"]):
            urls = sum(a.startswith("http") for a in args)
            argv = [*UA, "-s", *["-o", "/dev/null"] * urls, "-D", out, *args]
            runs, files = [], []
            for who in ("curl", "ours"):
                h.write_bytes(b"old")
                runs.append(tool(who, *argv, cwd=tmp_path))
                files.append(h.read_bytes())
            same(runs[0], runs[1])
            assert files[0] == files[1]
            assert (files[0] if out == "h" else runs[0].stdout).startswith(b"HTTP/1.1 ")


def test_retry_as_curl(http: str, tmp_path: Path) -> None:
    # ours had no --retry; each case: the same tries, stdout, -o file, warnings, exit
    for key, (args, code) in enumerate([
        (["--retry", "3", "-o", "out", "-w", "%{http_code}\\n", "/flaky?fail=2&code=503"], 0),
        (["--retry", "2", "-f", "-w", "%{http_code}\\n", "/flaky?fail=9&code=502"], 22),
        (["--retry", "2", "-w", "|", "/flaky?fail=1&code=404"], 0),  # not transient
        (["--retry", "1", "-w", "|", "/flaky?fail=1&code=429&ra=2"], 0),  # Retry-After
        (["--retry", "1", "--retry-all-errors", "-f", "/flaky?fail=1&code=404"], 0),
        (["--retry", "1", "-m", "1", "/flaky?fail=1&code=200&sleep=1.6"], 0),  # timeout
        (["--retry", "3", "--retry-max-time", "2", "/flaky?fail=9&code=500"], 0),
    ]):  # fmt: skip
        *opts, path = args
        runs = []
        for who in ("curl", "ours"):
            url = f"{http}{path}&k={key}{who}"
            runs.append(tool(who, *UA, *opts, url, cwd=tmp_path))
            if "out" in opts:
                runs[-1].stdout += (tmp_path / "out").read_bytes()
        curl, ours = runs
        same(curl, ours, code)
        assert SEEN[f"{key}curl"] == SEEN[f"{key}ours"], args
        assert warnings(curl.stderr) or key == 2


def test_retry_a_refused_connect_as_curl(tmp_path: Path) -> None:
    # a closed port on loopback: refused (7); retried with --retry-connrefused only
    for opts in (["--retry", "1"], ["--retry", "1", "--retry-connrefused"]):
        curl, ours = both(*UA, *opts, "-w", "|%{exitcode}", "http://127.0.0.1:9/", cwd=tmp_path)
        same(curl, ours, 7)
        assert len(warnings(ours.stderr)) == 2 * (len(opts) - 2)  # one line, cut in two
    assert re.search(rb"connection refused", ours.stderr)


def test_continue_at_as_curl(http: str, tmp_path: Path) -> None:
    # ours had no -C: "unrecognized arguments", exit 2; each case from the same partial
    # file, the same answers: stdout (-w), the file after, the exit
    part = tmp_path / "part"
    w = ("-s", "-w", "%{http_code} %{size_download} %{exitcode}")
    for start, args, code in (
        (DATA[:10], ["-C", "-", "-o", "part", f"{http}/file"], 0),  # 206: appended
        (DATA, ["-C", "-", "-o", "part", f"{http}/file"], 0),  # 416: no error, no body
        (DATA[:10], ["-C", "-", "-o", "part", f"{http}/norange"], 33),
        (DATA[:10], ["-C", "-", "-o", "part", f"{http}/wrong"], 33),
        (DATA, ["-C", "-", "-o", "part", f"{http}/norange"], 0),  # already downloaded
        (None, ["-C", "-", "-o", "part", f"{http}/file"], 0),  # no file: from 0
        (None, ["-C", "95", f"{http}/file"], 0),  # stdout
        (DATA[:10], ["-C", "20", "-i", "-D", "h", "-o", "part", f"{http}/file"], 0),
    ):
        runs, files = [], []
        for who in ("curl", "ours"):
            part.unlink(missing_ok=True)
            if start is not None:
                part.write_bytes(start)
            runs.append(tool(who, *UA, *w, *args, cwd=tmp_path))
            files.append(part.read_bytes() if part.exists() else None)
        same(runs[0], runs[1], code)
        assert files[0] == files[1], args


def test_upload_resumed_as_curl(http: str, tmp_path: Path) -> None:
    # session 17: -C with -T was refused (exit 2); now the request curl 7.88.1 sends (the
    # echo: request line, fields in order, body), -C - all of it, nothing left: 18, -F
    # ignoring -C, the -o file appended to
    (tmp_path / "ten").write_bytes(b"0123456789")
    w = ("-s", "-w", "|%{http_code} %{size_upload} %{exitcode}")
    for args, code in (
        (["-C", "4", "-T", "ten", f"{http}/put"], 0),
        (["-C", "-", "-T", "ten", f"{http}/put"], 0),
        (["-C", "10", "-T", "ten", f"{http}/put"], 18),
        (["-C", "4", "-T", "ten", "-o", "part", f"{http}/put"], 0),
    ):
        runs, files = [], []
        for who in ("curl", "ours"):
            (tmp_path / "part").write_bytes(b"EXISTING\n")
            runs.append(tool(who, *UA, *w, *args, cwd=tmp_path))
            files.append((tmp_path / "part").read_bytes())
        same(runs[0], runs[1], code)
        assert files[0] == files[1], args


def test_post_resumed_as_curl(http: str, tmp_path: Path) -> None:
    # session 17 (curl17b): -C with -d was refused (exit 2); curl 7.88.1 sends the data's
    # FIRST len-N bytes under Content-Range N-(len-1)/len (a quirk, copied: the echo is
    # the request), -C - the -o file's size, nothing left: 18 before any request; and it
    # reads N bytes of stdin (a pipe here) and drops them: fewer, 26
    (tmp_path / "ten").write_bytes(b"abcdefghij")
    w = ("-sS", "-w", "|%{http_code} %{size_upload} %{exitcode}")
    for args, stdin, code in (
        (["-C", "4", "-d", "abcdefghij", f"{http}/post"], b"1234", 0),
        (["-C", "4", "-d", "abc", "--data-binary", "@ten", "-X", "PUT", f"{http}/p"],
         b"12345678", 0),
        (["-C", "0", "-d", "abcdefghij", f"{http}/post"], b"", 0),
        (["-C", "-", "-d", "abcdefghij", "-o", "part", f"{http}/post"], b"12345", 0),
        (["-C", "10", "-d", "abcdefghij", "-o", "part", f"{http}/post"], b"x" * 10, 18),
        (["-C", "4", "-d", "abcdefghij", f"{http}/post"], b"12", 26),
        (["-C", "4", "-d", "@-", f"{http}/post"], b"abcdefghij", 26),  # stdin read: 0
    ):  # fmt: skip
        runs, files = [], []
        for who in ("curl", "ours"):
            (tmp_path / "part").write_bytes(b"EXIST")
            runs.append(tool(who, *UA, *w, *args, cwd=tmp_path, stdin=stdin))
            files.append((tmp_path / "part").read_bytes())
        same(runs[0], runs[1], code)
        assert files[0] == files[1], args


def test_max_filesize_fail_with_body_show_error_as_curl(http: str, tmp_path: Path) -> None:
    # ours had none of them ("unrecognized arguments", exit 2); -fsSL is curl's most
    # common line: stdout, exit and the (one) error line on stderr alike
    for args, code in (
        (["-s", "--max-filesize", "50", "-i", f"{http}/norange"], 63),
        (["-s", "--max-filesize", "1k", f"{http}/norange"], 0),
        (["-fsSL", f"{http}/flaky?k=fs&fail=1&code=404"], 22),
        (["-sS", "--fail-with-body", f"{http}/flaky?k=fb&fail=1&code=404"], 22),
        (["-sS", "http://127.0.0.1:9/"], 7),
    ):
        runs = []
        for who in ("curl", "ours"):
            mine = [a.replace("k=f", f"k={who}f") for a in args]  # each its own counter
            runs.append(tool(who, *UA, "-w", "[%{http_code} %{exitcode}]", *mine, cwd=tmp_path))
        same(runs[0], runs[1], code)
        shown = "-sS" in args or "-fsSL" in args  # the error line: with -S only
        assert runs[0].stderr.count(b"\n") == runs[1].stderr.count(b"\n") == shown


def test_resolve_as_curl(http: str, tmp_path: Path) -> None:
    # ours had no --resolve (only its own --connect-to ADDR); here ours gets no
    # --connect-to: the names are only in --resolve, as for curl
    port = http.rsplit(":", 1)[1]
    for args in (
        ["--resolve", f"a.test:{port}:127.0.0.1", f"http://a.test:{port}/p"],
        ["--resolve", f"*:{port}:[127.0.0.1],10.9.9.9", f"http://b.test:{port}/r", "-L"],
    ):
        runs = [tool(who, *UA, "-s", "-o", "-", "-w", "|%{remote_ip} %{url_effective}", *args,
                     cwd=tmp_path, direct=False) for who in ("curl", "ours")]  # fmt: skip
        same(runs[0], runs[1])
        assert b"Host: " in runs[0].stdout and b"|127.0.0.1 http://" in runs[0].stdout


def test_location_trusted_as_curl(http: str, tmp_path: Path) -> None:
    # -u and -H Cookie go to another host (here: port) only with --location-trusted
    with serve_http(Echo) as other:
        url = f"{http}/go?to=http://127.0.0.1:{other}/there"
        for trusted in ([], ["--location-trusted"]):
            runs = [tool(who, *UA, "-s", "-o", "-", "-L", "-u", "a:b", "-H", "Cookie: c=1",
                         *trusted, url, cwd=tmp_path) for who in ("curl", "ours")]  # fmt: skip
            same(runs[0], runs[1])
            assert (b"Authorization: Basic YTpi" in runs[0].stdout) == bool(trusted)


def test_expect100_timeout_as_curl(http: str, tmp_path: Path) -> None:
    # /quiet sends no 100 Continue: the body goes after --expect100-timeout (ours: 1 s
    # fixed, and the option unrecognized); the same request bytes; both well under 1 s
    (tmp_path / "up").write_bytes(b"hi\n")
    runs = [
        tool(
            who,
            *UA,
            "-s",
            "-o",
            "-",
            "-w",
            "|%{time_total}",
            "--expect100-timeout",
            "0.1",
            "-T",
            "up",
            f"{http}/quiet",
            cwd=tmp_path,
        )
        for who in ("curl", "ours")
    ]
    body = [r.stdout.rsplit(b"|", 1) for r in runs]
    assert body[0][0] == body[1][0] and b"Expect: 100-continue" in body[0][0]
    assert all(0.1 <= float(t) < 0.9 for _, t in body), body


class Mtls(BaseHTTPRequestHandler):
    """Answers the common name of the client certificate it was shown ("none")."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        peer = self.connection.getpeercert()
        names = dict(x[0] for x in peer["subject"]) if peer else {}
        out = f"client: {names.get('commonName', 'none')}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


def test_client_certificate_as_curl(tmp_path: Path) -> None:
    # ours had no --cert/--key: a server that asks for a client certificate (required,
    # or optional) gets the same one from both, or none; without one where it is
    # required, both fail (curl: 56, or 55 when the server's alert comes while it
    # sends; ours: the same words in %{exitcode} as its record says)
    pki = make_pki(tmp_path)
    for mode in (ssl.CERT_REQUIRED, ssl.CERT_OPTIONAL):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(pki["server"]), str(pki["key"]))
        ctx.load_verify_locations(str(pki["ca"]))
        ctx.verify_mode = mode
        with serve_http(Mtls, ctx) as port:
            url = f"https://localhost:{port}/"
            for args, fails in (
                (["--cert", str(pki["client"]), "--key", str(pki["client_key"])], False),
                ([], mode == ssl.CERT_REQUIRED),
            ):
                runs = [tool(who, *UA, "-s", "--cacert", str(pki["ca"]), "-w", "[%{http_code}]",
                             *args, url, cwd=tmp_path) for who in ("curl", "ours")]  # fmt: skip
                same(runs[0], runs[1], runs[0].returncode)
                assert runs[0].returncode in ((55, 56) if fails else (0,))
                assert (b"client: pktlab test client" in runs[0].stdout) == bool(args)


def test_client_certificate_with_a_passphrase_as_curl(tmp_path: Path) -> None:
    # session 17: --cert FILE:PASSWORD and --pass were refused (an encrypted key could not
    # be used); now the server gets the same client certificate from both, and a wrong
    # passphrase is curl's 58 (ours: its words, exit 2 before anything is sent)
    pki = make_pki(tmp_path)
    key = str(encrypted(pki["client_key"], tmp_path / "enc.key", b"s3:cret"))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pki["server"]), str(pki["key"]))
    ctx.load_verify_locations(str(pki["ca"]))
    ctx.verify_mode = ssl.CERT_REQUIRED
    with serve_http(Mtls, ctx) as port:
        url = f"https://localhost:{port}/"
        cert = str(pki["client"])
        for args in (["--cert", f"{cert}:s3:cret", "--key", key],
                     ["--cert", cert, "--key", key, "--pass", "s3:cret"]):  # fmt: skip
            runs = [tool(who, *UA, "-s", "--cacert", str(pki["ca"]), "-w", "[%{http_code}]",
                         *args, url, cwd=tmp_path) for who in ("curl", "ours")]  # fmt: skip
            same(runs[0], runs[1])
            assert b"client: pktlab test client" in runs[0].stdout
        bad = ["-s", "--cacert", str(pki["ca"]), "--cert", f"{cert}:wrong", "--key", key, url]
        theirs, ours = tool("curl", *bad, cwd=tmp_path), tool("ours", *bad, cwd=tmp_path)
        assert (theirs.returncode, ours.returncode) == (58, 2)
        assert b"unable to set private key file" in ours.stderr


def test_time_cond_as_curl(http: str, tmp_path: Path) -> None:
    # ours had no -z: each condition's field, and curl's simulated 304 (no body) for a
    # 200 whose Last-Modified fails it; a file's time; a date neither reads: the warning
    t = 1709528767  # Mon, 04 Mar 2024 05:06:07 GMT
    (tmp_path / "f").write_bytes(b"")
    os.utime(tmp_path / "f", (t, t))
    z = "Mon, 04 Mar 2024 05:06:07 GMT"
    for args in (
        ["-z", z, f"{http}/dated?t={t}"],
        ["-z", z, f"{http}/dated?t={t + 1}"],
        ["-z", f"-{z}", f"{http}/dated?t={t}"],
        ["-z", f"-{z}", f"{http}/dated?t={t - 1}"],
        ["-z", "=20240304", f"{http}/dated?t={t}"],
        ["-z", "f", "-i", f"{http}/dated?t={t}"],
        ["-z", "f", "-r", "0-", f"{http}/dated?t={t}"],
        ["-z", "garbage", f"{http}/dated?t={t}"],
    ):
        runs = [tool(who, *UA, "-o", "-", "-w", "[%{http_code} %{size_download}]", *args,
                     cwd=tmp_path) for who in ("curl", "ours")]  # fmt: skip
        same(runs[0], runs[1])


@pytest.mark.parametrize(
    "z",
    [
        "20 Jan 2024", "Jan 20 2024 10:11 CET", "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994", "20-Jan-24 10:11:12 +0530", "31 Feb 2024 10:11:60",
        "12 jan 2024 1: 2: 3 A", "2024-01-20", "January 20, 2024", "20 Jan 2024 25:00",
    ],
)  # fmt: skip
def test_time_cond_free_forms_as_curl(http: str, tmp_path: Path, z: str) -> None:
    # curl_getdate's forms: ours read RFC 1123/850, asctime and YYYYMMDD only (the rest:
    # the warning, no condition); the If-Modified-Since sent echoed in the body
    t = 1709528767
    runs = [tool(who, *UA, "-o", "-", "-w", "[%{http_code} %{size_download}]", "-z", z,
                 f"{http}/dated?t={t}", cwd=tmp_path) for who in ("curl", "ours")]  # fmt: skip
    same(runs[0], runs[1])


@pytest.mark.parametrize("lm", ["garbage", "Jan 20 2025 10:00", "Jan 20 2023 10:00"])
def test_last_modified_read_as_curl(http: str, tmp_path: Path, lm: str) -> None:
    # curl reads the response's Last-Modified with curl_getdate too: one it cannot read
    # is -1 (older than the time: no body for -z TIME), ours took it as met
    for z in ("20 Jan 2024", "-20 Jan 2024"):
        runs = [tool(who, *UA, "-o", "-", "-w", "[%{http_code} %{size_download}]", "-z", z,
                     f"{http}/dated?t=0&lm={quote(lm)}", cwd=tmp_path)
                for who in ("curl", "ours")]  # fmt: skip
        same(runs[0], runs[1])
