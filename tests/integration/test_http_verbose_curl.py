"""`pktlab run http -v`, `--trace`, `--trace-ascii` and `--trace-time` beside curl 7.88.1
on the same loopback servers (HTTP/1.1 and HTTPS with a test CA): the same lines on
stderr (-v) and the same bytes in the trace, but for curl's pointers, the times, and
the TLS lines docs/http.md names (our OpenSSL's message sizes and its CApath)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_http2_curl_side_by_side import servers  # noqa: F401
from test_http_curl_side_by_side import REPO, http, https, pki, pytestmark  # noqa: F401

UA = ("-A", "curl/7.88.1", "-w", "%{http_code}\\n")  # curl's User-Agent: the same requests


def run(who: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    tool = ["curl"] if who == "curl" else [sys.executable, "-m", "packetlab", "run", "http"]
    return subprocess.run([*tool, *args], capture_output=True, timeout=180, env=env, cwd=cwd)


def norm(text: bytes, tls: bool = False) -> list[bytes]:
    """The lines, curl's pointers and times made alike; with `tls` the lines that tell
    what differs by nature (docs/http.md): TLS message sizes, record markers, CApath,
    the server's middlebox change cipher spec, when an HTTP/2 body is told sent, and
    the server's session tickets (told when they come: curl reads them at a close, before
    its close_notify, when they came by then)."""
    text = re.sub(rb"0x[0-9a-f]+", b"0xPTR", text)
    text = re.sub(rb"after \d+ (ms|milliseconds)", rb"after N \1", text)
    text = re.sub(rb"(?m)^\d\d:\d\d:\d\d\.\d{6} ", b"TIME ", text)
    # what came with a 101 is the read's (none: no line), curl's and ours
    out = [line for line in text.splitlines() if b"buffer after upgrade: len=" not in line]
    if tls:
        skip = re.compile(rb"^[{}] \[\d+ bytes data\]$|CApath: |\(IN\), TLS change cipher"
                          rb"|^\* We are completely uploaded and fine$"
                          rb"|Newsession Ticket|old SSL session ID is stale")  # fmt: skip
        out = [line for line in out if not skip.search(line)]
    return out


def both(*args: str, cwd: Path, tls: bool = False, code: int = 0,
         failed: bool = False) -> tuple[bytes, bytes]:  # fmt: skip
    """curl's and our stderr, their stdout the same; exit `code` (ours 1 for a failure,
    also for an earlier URL's, `failed`: curl's is the last URL's)."""
    curl, ours = run("curl", *args, cwd=cwd), run("ours", *args, cwd=cwd)
    assert curl.returncode == code and ours.returncode == min(code + failed, 1), ours.stderr
    assert ours.stdout == curl.stdout
    assert norm(ours.stderr, tls) == norm(curl.stderr, tls)
    return curl.stderr, ours.stderr


def test_verbose_as_curl(http: str, tmp_path: Path) -> None:  # noqa: F811
    # before: -v was the link's log (Twisted lines), none of curl's
    err, _ = both("-s", "-v", *UA, f"{http}/echo", f"{http}/echo", cwd=tmp_path)
    assert b"* Re-using existing connection #0 with host 127.0.0.1\n" in err
    assert b"< HTTP/1.1 200 OK\r\n" in err and b"{ [58 bytes data]\n" in err
    err, _ = both("-s", "-v", *UA, "-L", "-d", "a=1", f"{http}/r/302?to=/echo",
                  f"{http}/r/303?to=/chunked", cwd=tmp_path)  # fmt: skip
    assert b"* Issue another request to this URL: 'http://127.0.0.1:" in err
    assert b"} [3 bytes data]\n" in err and b"* Switch to GET\n" in err
    err, _ = both("-s", "-v", *UA, f"{http}/close", f"{http}/chunked", cwd=tmp_path)
    assert b"* Closing connection 0\n" in err and b"was found in DNS cache" in err
    both("-s", "-v", *UA, "-I", f"{http}/echo", cwd=tmp_path)
    err, _ = both("-s", "-v", *UA, "http://127.0.0.1:9/", cwd=tmp_path, code=7)
    assert b"* connect to 127.0.0.1 port 9 failed: Connection refused\n" in err
    # -u's line, the cookie engine's (before each Set-Cookie line, as curl parses it)
    err, _ = both("-s", "-v", *UA, "-u", "a:b", "-c", "-", "-L",
                  f"{http}/set?c=a%3Db&c=a%3Dc&c=d%3De%3B%20Path%3D/x&to=/show",
                  cwd=tmp_path)  # fmt: skip
    assert b"* Server auth using Basic with user 'a'\n" in err
    assert b'* Replaced cookie a="c" for domain 127.0.0.1, path /, expire 0\n' in err
    # a PUT's 100 Continue as it comes (no blank line), -f's end after the head
    (tmp_path / "up.txt").write_bytes(b"hello\n")
    err, _ = both("-s", "-v", *UA, "-T", "up.txt", f"{http}/echo", cwd=tmp_path)
    assert b"< HTTP/1.1 100 Continue\r\n} [6 bytes data]\n* We are completely" in err
    w = "%{http_code} %{num_connects} %{size_download} %{exitcode}\n"
    err, _ = both("-s", "-v", "-A", "curl/7.88.1", "-w", w, "-f", f"{http}/r/404?to=x",
                  cwd=tmp_path, code=22)  # fmt: skip
    assert err.endswith(b"< Content-Length: 5\r\n* The requested URL returned error: 404\n"
                        b"* Closing connection 0\n")  # fmt: skip


def test_verbose_over_tls_as_curl(https: str, pki: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    port = https.rsplit(":", 1)[1]
    err, _ = both("-s", "-v", *UA, "--cacert", str(pki["ca"]), "--resolve",
                  f"localhost:{port}:127.0.0.1", f"{https}/echo", f"{https}/echo",
                  cwd=tmp_path, tls=True)  # fmt: skip
    for line in (b"* SSL connection using TLSv1.3 / ", b"*  subject: CN=localhost\n",
                 b'*  subjectAltName: host "localhost" matched cert\'s "localhost"\n',
                 b"* TLSv1.3 (OUT), TLS handshake, Client hello (1):\n",
                 b"* Added localhost:"):  # fmt: skip
        assert line in err
    # an untrusted CA, a name the certificate does not have: curl's words
    for ca, host, code, said in (
        ("other-ca", "localhost", 60, b"* SSL certificate problem: unable to get local issuer"),
        ("ca", "wrong.test", 60, b"* SSL: no alternative certificate subject name matches"),
    ):  # fmt: skip
        err, _ = both("-s", "-v", *UA, "--cacert", str(pki[ca]), "--resolve",
                      f"{host}:{port}:127.0.0.1", f"https://{host}:{port}/echo",
                      cwd=tmp_path, tls=True, code=code)  # fmt: skip
        assert said in err and err.endswith(b"* Closing connection 0\n") == (ca != "ca")


def test_verbose_over_http2_as_curl(servers: tuple[str, str, Path], tmp_path: Path) -> None:  # noqa: F811
    h2, _, ca = servers
    port = h2.rsplit(":", 1)[1]
    err, _ = both("-s", "-v", *UA, "--cacert", str(ca), "--resolve",
                  f"localhost:{port}:127.0.0.1", "-d", "x=1", f"{h2}/echo", f"{h2}/echo",
                  cwd=tmp_path, tls=True)  # fmt: skip
    for line in (b"* ALPN: server accepted h2\n", b"* using HTTP/2\n",
                 b"* h2h3 [:authority: localhost:", b"> POST /echo HTTP/2\r\n",
                 b"< HTTP/2 200 \r\n", b"* Found bundle for host: 0x",
                 b"* Using Stream ID: 3 (easy handle 0x"):  # fmt: skip
        assert line in err
    # -f over HTTP/2: the stream's end, the connection kept for the next URL (as curl's)
    w = "%{http_code} %{num_connects} %{size_download} %{exitcode}\\n"
    err, _ = both("-s", "-v", "-A", "curl/7.88.1", "-w", w, "--cacert", str(ca), "--resolve",
                  f"localhost:{port}:127.0.0.1", "-f", f"{h2}/r/404?to=x", f"{h2}/echo",
                  cwd=tmp_path, tls=True, failed=True)  # fmt: skip
    assert b"* The requested URL returned error: 404\n" in err
    assert b"Closing connection" not in err
    # -Z: the transfers that wait for the first connection, then multiplex on it (curl's
    # lines; they resume before the first's stream where curl's resume after it)
    urls = [f"{h2}/d/0.2", f"{h2}/d/0.1", f"{h2}/echo"]
    for who in ("curl", "ours"):
        out = run(who, "-Z", "-s", "-v", "--cacert", str(ca), "--resolve",
                  f"localhost:{port}:127.0.0.1", *UA, *urls, cwd=tmp_path)  # fmt: skip
        assert out.returncode == 0, out.stderr
        for line in (b"* Server doesn't support multiplex yet, wait\n",
                     b"* Multiplexed connection found\n",
                     b"* Transfer was pending, now try another\n"):  # fmt: skip
            assert line in out.stderr, (who, line)
        assert out.stderr.count(b"left intact") == 1  # the last on the connection only
    # a timeout (the HTTP/1.1 port: an answer after 3 s)
    late, _ = both("-s", "-v", *UA, "-m", "1", f"{servers[1]}/d/3", cwd=tmp_path, code=28)
    assert b"* Operation timed out after " in late


def test_trace_and_trace_ascii_as_curl(http: str, tmp_path: Path) -> None:  # noqa: F811
    for option in ("--trace", "--trace-ascii"):
        args = ("-s", option, "-", "-A", "curl/7.88.1", "-w", "", "-o", "/dev/null")
        curl = run("curl", *args, "-d", "a=1&b=2", f"{http}/echo", f"{http}/chunked",
                   cwd=tmp_path)  # fmt: skip
        ours = run("ours", *args, "-d", "a=1&b=2", f"{http}/echo", f"{http}/chunked",
                   cwd=tmp_path)  # fmt: skip
        assert curl.returncode == ours.returncode == 0, ours.stderr
        assert norm(ours.stdout) == norm(curl.stdout)  # byte for byte but curl's pointer
        assert len(ours.stdout) == len(curl.stdout)
        assert b"<= Recv data, 26 bytes (0x1a)\n" in ours.stdout  # the chunked framing
    # --trace-time, to a file; -v after --trace-ascii, --trace after -v: curl's warnings
    for who in ("curl", "ours"):
        out = run(who, "--no-progress-meter", "--trace-time", "--trace-ascii", f"{who}.txt",
                  "-v", "--trace", f"{who}.txt", *UA, f"{http}/echo", cwd=tmp_path)  # fmt: skip
        assert out.stderr.count(b"overrides an earlier trace/verbose option") == 2
    theirs, mine = ((tmp_path / f"{w}.txt").read_bytes() for w in ("curl", "ours"))
    assert norm(mine) == norm(theirs)
    assert norm(theirs)[0].startswith(b"TIME == Info:   Trying 127.0.0.1:")


def test_next_as_curl(http: str, tmp_path: Path) -> None:  # noqa: F811
    # before: -: and --next were unknown options (exit 2)
    w = "%{url} %{method} %{num_connects}\\n"
    for args in (
        [
            "-w",
            w,
            "-o",
            "/dev/null",
            "-d",
            "x=1",
            f"{http}/a",
            "-:",
            f"{http}/b",
            "-:",
            "-w",
            f"third {w}",
            "-I",
            f"{http}/c",
        ],
        ["-w", w, "-o", "/dev/null", "--next", "--next", f"{http}/a"],  # passed over
        [
            "-w",
            w,
            "-o",
            "/dev/null",
            f"{http}/echo",
            "--next",
            "-v",
            "-o",
            "/dev/null",
            "-A",
            "curl/7.88.1",
            "-L",
            f"{http}/r/302?to=/echo",
        ],  # -v global: both
    ):
        err, _ = both("-s", "-A", "curl/7.88.1", *args, cwd=tmp_path)
        assert (b"Re-using existing connection #0" in err) == ("-v" in args)
    for args in ([f"{http}/a", "--next"], [f"{http}/a", "-:", "-o", "f"]):  # no URL
        curl, ours = run("curl", *args, cwd=tmp_path), run("ours", *args, cwd=tmp_path)
        assert curl.returncode == ours.returncode == 2
        assert b"no URL specified!" in curl.stderr and b"no URL specified!" in ours.stderr


def test_verbose_h2c_upgrade_as_curl(tmp_path: Path) -> None:
    # before: the 101's blank line, and no "Received 101, Switching to HTTP/2"
    from test_http2_curl_side_by_side import curl_has_http2
    from test_http_curl_side_by_side import HERE

    if not curl_has_http2():
        pytest.skip("curl without HTTP/2")
    proc = subprocess.Popen([sys.executable, str(HERE / "h2c_upgrade_server.py")],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        base = f"http://127.0.0.1:{proc.stdout.readline().strip()}"
        err, _ = both("-s", "-v", *UA, "--http2", f"{base}/u", f"{base}/v", cwd=tmp_path)
        assert b"< Upgrade: h2c\r\n* Received 101, Switching to HTTP/2\n" in err
    finally:
        proc.kill()
        proc.wait(10)


def test_a_redirect_to_https_on_the_same_port_tells_curls_bundle(
    http: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    # -L from http://127.0.0.1:P to https://127.0.0.1:P (a plain server: the handshake
    # fails, each its own words, not compared): curl looks at its bundle for the host and
    # port, holding the http connection, and connects anew. Ours wrote no bundle lines
    # (session 30's leftover; session 31, odds31)
    to = http.replace("http://", "https://") + "/"
    for how in ([], ["--http1.1"]):
        told = []
        for who in ("curl", "ours"):
            p = run(who, "-s", "-v", "-L", "-m", "5", *how, *UA, f"{http}/r/302?to={to}",
                    cwd=tmp_path)  # fmt: skip
            lines = norm(p.stderr)
            at = lines.index(f"* Issue another request to this URL: '{to}'".encode())
            told.append(lines[at : at + 5])
        assert told[0] == told[1], told
        assert (b"* Can not multiplex, even if we wanted to" in told[0]) == (not how)
        assert told[0][1] == b"* Found bundle for host: 0xPTR [serially]"
