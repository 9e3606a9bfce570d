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
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from httpserve import serve_http
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
            # the same but the random boundaries: compared for a long body too
            "norm": hashlib.sha256(re.sub(rb"-{24}[0-9a-f]{16}", b"B", bytes(body))).hexdigest(),
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
    with serve_http(Upload) as port:
        yield f"http://127.0.0.1:{port}"


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


QP_TEXT = (b"hello = w\xc3\xb6rld\tTab \r\nline2 with a very long line that goes on and on and on "
           b"and on past seventy-six characters for sure yes\n.\r\nend \r\n")  # fmt: skip


def test_form_parameters_as_curl(http: str, tmp_path: Path) -> None:
    """-F ;headers= (inline and @FILE), ;encoder=, NAME=@a,b and --form-string: the
    server gets the same body as from curl 7.88 (but the random boundaries)."""
    (tmp_path / "a.txt").write_bytes(b"hello\n")
    (tmp_path / "b.bin").write_bytes(bytes(range(256)))
    (tmp_path / "q.txt").write_bytes(QP_TEXT * 40)
    (tmp_path / "h.txt").write_bytes(b"# comment\nX-One: 1\n  folded\nX-Two: two\n")
    w = "%{http_code} %{method} %{size_download} %{exitcode}\\n"
    for args in (
        ["-F", "a=x;headers=X-A: 1", "-F", "b=@a.txt;headers=@h.txt", "-F", "c=@a.txt,b.bin",
         "-F", "d=@a.txt;type=text/x,b.bin;filename=z", "--form-string", "e=@a.txt;type=x/y",
         "-F", "f=  spaced  ;unknown=1", "-F", "g=<a.txt;headers=Content-Type: app/x"],
        ["-F", "b=x;encoder=base64", "-F", "d=@b.bin;encoder=base64",
         "-F", "e=@a.txt;encoder=7bit", "-F", "f=@b.bin;encoder=8bit;encoder=binary"],
        ["-F", "c=@q.txt;encoder=quoted-printable", "-F", "n=1"],  # chunked, as curl's
    ):  # fmt: skip
        curl, ours = both(*UA, "-s", "-w", w, *args, f"{http}/form", cwd=tmp_path)
        assert curl.returncode == ours.returncode == 0, ours.stderr
        assert same_but_boundary(ours.stdout) == same_but_boundary(curl.stdout), args
    assert b'"Transfer-Encoding": "chunked"' in ours.stdout
    assert b'"Expect": "100-continue"' in ours.stdout
    # 7bit over 8-bit bytes: curl sends the head and fails (26); ours fails the same way
    curl, ours = both(*UA, "-s", "-w", w + "%{errormsg}\\n", "-F", "e=@b.bin;encoder=7bit",
                      f"{http}/form", cwd=tmp_path)  # fmt: skip
    assert curl.returncode == 26 and ours.returncode == 1
    assert ours.stdout.split(b"\n")[0].split()[-1] == curl.stdout.split()[3] == b"26"
    assert b"byte 0x80 at offset 128 is not 7-bit" in ours.stdout
    # -F NAME=@- from a pipe: read whole first (Content-Length), as curl
    piped = b"from a pipe\n" * 5000
    curl = subprocess.run(["curl", *UA, "-s", "-w", w, "-F", "a=@-", f"{http}/form"],
                          input=piped, capture_output=True, timeout=60)  # fmt: skip
    ours = subprocess.run(
        [sys.executable, "-m", "packetlab", "run", "http", "--connect-to", "127.0.0.1", *UA,
         "-s", "-w", w, "-F", "a=@-", f"{http}/form"],
        input=piped, capture_output=True, timeout=120,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )  # fmt: skip
    assert curl.returncode == ours.returncode == 0, ours.stderr
    assert same_but_boundary(ours.stdout) == same_but_boundary(curl.stdout)
    assert b'"Content-Length": "60150"' in ours.stdout
    # what curl only warns about is one line and exit 2 here, before anything is sent
    for arg, why in (("f=x;headers=@nosuch", b"nosuch: No such file or directory"),
                     ("f=@a.txt;encoder=bogus", b"not one of curl's encoders")):  # fmt: skip
        curl, ours = both("-s", "-F", arg, f"{http}/form", cwd=tmp_path)
        assert ours.returncode == 2 and len(ours.stderr.strip().splitlines()) == 1
        assert why in ours.stderr and curl.returncode in (0, 43)


def test_nested_multiparts_as_curl(http: str, tmp_path: Path) -> None:
    """-F 'NAME=(' ... -F '=)': sub-multiparts (nested, ;type=, ;headers=, empty, without
    a name, left open at the end) the same bytes as curl 7.88's but the boundaries."""
    (tmp_path / "f1.txt").write_bytes(b"hello\n")
    (tmp_path / "f2.bin").write_bytes(b"two\x00\xff")
    w = "%{http_code} %{method} %{size_upload} %{exitcode}\\n"
    for args in (
        ["-F", "x=1", "-F", "NAME=(;type=multipart/mixed", "-F", "a=@f1.txt", "-F", "b=@f2.bin",
         "-F", "=)", "-F", "y=2"],
        ["-F", "a=(;type=multipart/form-data", "-F", "b=1", "-F",
         "c=(;headers=X-H: 1;filename=x;encoder=base64", "-F", "d=2;encoder=base64",
         "--form-string", "e=(", "-F", "=)", "-F", "f=@f1.txt,f2.bin", "-F", "=)", "-F", "g=3"],
        ["-F", "a=(", "-F", "=)", "-F", "=(;type=text/plain", "-F", "b=<f1.txt", "-F", "=)"],
        ["-F", "a=(", "-F", "b=(", "-F", "c=@f2.bin;encoder=base64"],  # left open
    ):  # fmt: skip
        curl, ours = both(*UA, "-s", "-w", w, *args, f"{http}/form", cwd=tmp_path)
        assert curl.returncode == ours.returncode == 0, ours.stderr
        assert same_but_boundary(ours.stdout) == same_but_boundary(curl.stdout), args
    # =) with none open: curl's "no multipart to terminate" and its exit 2
    curl, ours = both("-s", "-F", "a=1", "-F", "=)", f"{http}/form", cwd=tmp_path)
    assert curl.returncode == ours.returncode == 2
    assert ours.stderr.strip().splitlines() == [
        b"pktlab run http: -F/--form '=)': no multipart to terminate (curl: 2)"
    ]


def qp_edges() -> bytes:
    """Quoted-printable's edge cases: lines of 73 to 78 bytes, with a space, a tab, an
    '=' or an 8-bit byte at their end or about column 76, before a CRLF, an LF, a lone
    CR or nothing; '.' and "From " at a line's start, spaces before a CR CR LF."""
    out = bytearray()
    for n in range(73, 79):
        for last in (b"x", b" ", b"\t", b"=", b"\xe9", b"  ", b" \t"):
            for end in (b"\r\n", b"\n", b"\r", b"", b"\r\r\n", b" \r\n"):
                out += b"y" * (n - len(last)) + last + end
    return bytes(out) + b".\r\n.x\r\nFrom me\r\n. \r\n=\r\n\xff" * 3 + b"end \t"


def test_quoted_printable_as_curl(http: str, tmp_path: Path) -> None:
    """;encoder=quoted-printable (encoded a line at a time since session 14, fast):
    the same body as curl 7.88.1's over its edge cases, an empty file, random bytes,
    a long text with LF line ends (soft breaks only) and one cut into CRLF lines."""
    import random

    text = b"".join(p.read_bytes() for p in sorted((REPO / "docs").glob("*.md")))[:600_000]
    rng = random.Random(14)
    files = {"edge.txt": qp_edges() * 5, "empty.txt": b"", "text.txt": text,
             "crlf.txt": text.replace(b"\n", b"\r\n"),
             "rand.bin": bytes(rng.randrange(256) for _ in range(100_000))}  # fmt: skip
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    w = "%{http_code} %{method} %{exitcode}\\n"
    for name in files:
        args = ["-F", f"f=@{name};encoder=quoted-printable", "-F", "n=1"]
        curl, ours = both(*UA, "-s", "-w", w, *args, f"{http}/qp", cwd=tmp_path)
        assert curl.returncode == ours.returncode == 0, ours.stderr
        assert same_but_boundary(ours.stdout) == same_but_boundary(curl.stdout), name


def test_upload_globs_as_curl(http: str, tmp_path: Path) -> None:
    for name in ("a", "b", "file1", "file2", "file3", "f01", "f02", "c"):
        (tmp_path / name).write_text(name * 3)
    w = "%{http_code} %{method} %{url_effective} %{size_upload} %{exitcode}\\n"
    for args in (
        ["-T", "{a,b}", f"{http}/up/"],
        ["-T", "file[1-3]", f"{http}/up/"],
        ["-T", "{a,b}", f"{http}/same"],  # no / at the end: both to that URL
        ["-T", "f[01-02]", "-T", "{c,a}", f"{http}/1/", f"{http}/2/"],
        ["-g", "-T", "c", f"{http}/3/"],
    ):
        curl, ours = both(*UA, "-s", "-o", "/dev/null", "-w", w, *args, cwd=tmp_path)
        assert curl.returncode == ours.returncode == 0, ours.stderr
        assert ours.stdout == curl.stdout, args
    # a URL after the globbed ones without a -T: curl 7.88.1 GETs it once for each file
    # the glob before had (its infilenum not reset); ours once
    curl, ours = both(*UA, "-s", "-o", "/dev/null", "-w", w, "-T", "{a,b}", f"{http}/up/",
                      f"{http}/after", cwd=tmp_path)  # fmt: skip
    assert curl.stdout.count(b" GET ") == 2 and ours.stdout.count(b" GET ") == 1
    # curl's (3) with its column; ours one line, exit 2
    for pattern, why in (("{a,b", b"unmatched brace at position 1"),
                         ("f[3-1]", b"bad range at position 7")):  # fmt: skip
        curl, ours = both("-T", pattern, f"{http}/up/", cwd=tmp_path)
        assert curl.returncode == 3 and why.replace(b"at position", b"in URL position") in (
            curl.stderr
        )
        assert ours.returncode == 2 and ours.stderr.strip().splitlines() == [
            b"pktlab run http: -T/--upload-file '" + pattern.encode() + b"': " + why
            + b" (curl: 3)"
        ]  # fmt: skip


SIZE, TIME = r"[0-9. kMGTP]{5}", r"[-:0-9 dh]{8}"
METER = re.compile(  # curl 7.88's "%-3s %-3s %s %s %5d %5d  %s %s %s %s %5s"
    rf"[-0-9 ]{{3}} [-0-9 ]{{3}} {SIZE} {SIZE} [0-9 ]{{5}} [0-9 ]{{5}}  "
    rf"{TIME} {TIME} {TIME} {SIZE} {{5,6}}"
)


def meter_lines(err: bytes) -> tuple[bytes, list[str]]:
    head, _, rest = err.partition(b"\n")
    return head, [line.rstrip("\n") for line in rest.decode().split("\r") if line.strip()]


def test_parallel_progress_meter_as_curl(http: str, tmp_path: Path) -> None:
    """curl 7.88 -Z without -s draws its parallel meter on stderr (off a terminal too):
    ours with -w the same header, columns and final line (but the times)."""
    urls = [f"{http}/d/1.2", f"{http}/d/0.1"]
    w = "%{url} %{http_code}\\n"
    curl, ours = both(*UA, "-Z", "--parallel-immediate", "-w", w, "-o", "x1", "-o", "x2",
                      *urls, cwd=tmp_path)  # fmt: skip
    assert curl.returncode == ours.returncode == 0, ours.stderr
    assert ours.stdout == curl.stdout
    (ch, cl), (oh, ol) = meter_lines(curl.stderr), meter_lines(ours.stderr)
    assert oh == ch == b"DL% UL%  Dled  Uled  Xfers  Live Total     Current  Left    Speed"
    assert all(METER.fullmatch(line) for line in cl + ol), (cl, ol)
    assert len(ol) >= 3 and len(cl) >= 3  # at the start, every half second, at the end
    assert curl.stderr.endswith(b"     \n") and ours.stderr.endswith(b"     \n")
    # the last line but its times and speed: DL% UL% Dled Uled Xfers Live
    assert ol[-1].split()[:6] == cl[-1].split()[:6] == ["100", "--", *cl[-1].split()[2:4],
                                                       "2", "0"]  # fmt: skip
    # --no-progress-meter: none; -s: none from ours, while curl 7.88.1 still draws it
    curl, ours = both("--no-progress-meter", "-Z", "-w", w, "-o", "x1", "-o", "x2", *urls,
                      cwd=tmp_path)  # fmt: skip
    assert b"DL%" not in curl.stderr and b"DL%" not in ours.stderr
    curl, ours = both("-s", "-Z", "-w", w, "-o", "x1", "-o", "x2", *urls, cwd=tmp_path)
    assert b"DL%" in curl.stderr and ours.stderr == b""


def test_parallel_progress_meter_on_a_terminal(http: str, tmp_path: Path) -> None:
    """Through `script` (a pseudo-terminal): with -o for every URL both draw it; with a
    body to the terminal neither does."""
    if shutil.which("script") is None:
        pytest.skip("script (util-linux) missing: no pseudo-terminal to run them on")
    ours = f"{sys.executable} -m packetlab run http --connect-to 127.0.0.1"
    url = f"{http}/d/0.1"
    for args, drawn in ((f"-Z -w x -o x1 -o x2 {url} {url}", True),
                        (f"-Z -w x {url} {url}", False)):  # fmt: skip
        for cmd in (f"curl {args}", f"{ours} {args}"):
            run = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True,
                                 timeout=120, cwd=tmp_path,
                                 env=dict(os.environ, PYTHONPATH=str(REPO)))  # fmt: skip
            assert run.returncode == 0, run.stdout
            assert (b"DL% UL%  Dled" in run.stdout) is drawn, (cmd, run.stdout)


def test_sigterm_mid_request_ends_as_interrupted(http: str, tmp_path: Path) -> None:
    """`timeout 10 pktlab run http URL` (SIGTERM) on a slow answer: the run stops as at a
    Ctrl-C, its summary and 130 (was: the in-process endpoint's daemon handler stopped
    the reactor under it: `connection lost: ... non-clean fashion`, exit 2)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "packetlab", "run", "http", "--connect-to", "127.0.0.1",
         f"{http}/d/4/term"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )  # fmt: skip
    time.sleep(2.5)  # connected, the answer not come (it takes 4 s)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert b"connection lost" not in err
    assert out.strip().endswith(b"# interrupted (Ctrl-C): 0 URLs ended, 0 fetched, 0 body bytes")
