"""Session 21 (curl21): `pktlab run http` beside curl 7.88.1 against one raw loopback
server (IPv4 and IPv6) that lies: a Content-Length the body never reaches and a chunked
body cut short (curl's 18, its http_code and bytes kept), a header line of 100 KiB (27),
header bytes over 300 KiB (56) and endless 1xx responses; then IPv6 URLs, localhost,
USER:PASSWORD@ in %{url_effective}, %{json} and curl's other variables, and
--curl-exit-codes. The same stdout and (with --curl-exit-codes) the same exit status."""

from __future__ import annotations

import json
import socket
import socketserver
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from test_http_curl_side_by_side import pytestmark  # noqa: F401
from test_http_options16_curl_side_by_side import tool

UA = ("-A", "side-by-side", "-s")


class Liar(socketserver.StreamRequestHandler):
    """/lie (100 promised, 10 sent), /chunklie, /trickle and /headslow (3 body bytes,
    a head without its end; then silence), /badenc (a coding nobody knows), /huge?n=N
    (a header line of N + 9 bytes), /many?n=N (N lines of 88 bytes), /flood1xx (13,000
    100 Continue blocks), /redir?to= (a 302), /fail (404); any other: the request line
    and fields read."""

    def handle(self) -> None:
        while True:
            line = self.rfile.readline()
            if not line:
                return
            fields = []
            while (h := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
                fields.append(h.decode("latin-1").rstrip("\r\n"))
            u = urlsplit(line.split()[1].decode())
            n = int(parse_qs(u.query).get("n", ["0"])[0])
            head = b"HTTP/1.1 200 OK\r\n"
            if u.path == "/lie":
                self.wfile.write(head + b"Content-Length: 100\r\n\r\n0123456789")
                return
            if u.path in ("/trickle", "/headslow"):  # then nothing until the client goes
                more = b"Content-Length: 100\r\n\r\nabc" if u.path == "/trickle" else b""
                self.wfile.write(head + b"X-A: 1\r\n" + more)
                self.rfile.read(1)
                return
            if u.path == "/badenc":
                self.wfile.write(
                    head + b"Content-Encoding: xyz\r\nContent-Length: 8\r\n\r\nzzzzzzzz"
                )
                continue
            if u.path == "/chunklie":
                self.wfile.write(head + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n wo")
                return
            if u.path == "/huge":
                head += b"X-Big: " + b"a" * n + b"\r\n"
            elif u.path == "/many":
                head += b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 80) for i in range(n))
            elif u.path == "/flood1xx":
                head = b"HTTP/1.1 100 Continue\r\n\r\n" * 13000 + head
            elif u.path == "/redir":
                to = parse_qs(u.query)["to"][0]
                head = b"HTTP/1.1 302 Found\r\nLocation: " + to.encode() + b"\r\n"
            elif u.path == "/fail":
                head = b"HTTP/1.1 404 Not Found\r\n"
            body = "".join(f"{f}\n" for f in [line.decode().strip(), *fields]).encode()
            self.wfile.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)


class _V6(socketserver.ThreadingTCPServer):
    address_family = socket.AF_INET6


@pytest.fixture(scope="module")
def ports() -> Iterator[tuple[int, int]]:
    servers = [socketserver.ThreadingTCPServer(("127.0.0.1", 0), Liar), _V6(("::1", 0), Liar)]
    threads = []
    for s in servers:
        s.daemon_threads = True
        threads.append(threading.Thread(target=s.serve_forever, daemon=True))
        threads[-1].start()
    try:
        yield servers[0].server_address[1], servers[1].server_address[1]
    finally:
        for s, t in zip(servers, threads, strict=True):
            s.shutdown()
            s.server_close()
            t.join(10)


def both(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess[bytes], ...]:
    """curl, and ours with --curl-exit-codes (its own endpoint resolving and connecting:
    no --connect-to, the URLs name [::1] and localhost)."""
    curl = tool("curl", *UA, *args, cwd=cwd)
    ours = tool("ours", "--curl-exit-codes", *UA, *args, cwd=cwd, direct=False)
    return curl, ours


def test_lies_and_limits_as_curl(ports: tuple[int, int], tmp_path: Path) -> None:
    # before: 18 with http_code 000, size_download 0 and h11's words; a header line of
    # 200,000 bytes taken (curl: 27); 3,600 lines of headers taken, 4,000 refused with 8
    # (curl: 56 at the line that passes 307,200 bytes); exit 1 for all of them
    base = f"http://127.0.0.1:{ports[0]}"
    w = "|%{exitcode} %{http_code} %{size_download} %{size_header} %{errormsg}\\n"
    urls = ["/lie", "/chunklie", "/huge?n=102390", "/many?n=3387", "/many?n=3388", "/flood1xx"]
    curl, ours = both("-w", w, *[base + u for u in urls], cwd=tmp_path)
    assert (ours.returncode, ours.stdout) == (curl.returncode, curl.stdout) == (56, curl.stdout)
    assert (
        b"0123456789|18 200 10 40 transfer closed with 90 bytes remaining to read\n" in curl.stdout
    )
    # a line of 102,400 bytes: curl's 27 (its words are "Out of memory"; ours say more)
    w = "|%{exitcode} %{http_code} %{size_header}\\n"
    curl, ours = both("-w", w, base + "/huge?n=102391", cwd=tmp_path)
    assert (ours.returncode, ours.stdout) == (curl.returncode, curl.stdout) == (27, b"|27 200 17\n")


def test_a_status_line_is_kept_as_curl(ports: tuple[int, int], tmp_path: Path) -> None:
    # before: %{http_code} 000 and size_download 0 after a timeout in the body or the
    # head, and after a coding --compressed refuses (curl: 200, the bytes that came);
    # -i wrote no line of a head that never ended
    base = f"http://127.0.0.1:{ports[0]}"
    w = "|%{exitcode} %{http_code} %{size_download} %{size_header}\\n"
    urls = [f"{base}/trickle", f"{base}/headslow", f"{base}/badenc"]
    curl, ours = both("-i", "-m", "1", "--compressed", "-w", w, *urls, cwd=tmp_path)
    assert (ours.returncode, ours.stdout) == (curl.returncode, curl.stdout) == (61, curl.stdout)
    # -i: the head's lines as far as they came (before: none for /headslow)
    assert b"abc|28 200 3 48\nHTTP/1.1 200 OK\r\nX-A: 1\r\n|28 200 0 25\n" in curl.stdout


def test_ipv6_localhost_and_credentials_as_curl(ports: tuple[int, int], tmp_path: Path) -> None:
    # before: [::1] was ESKTNOPRFAM (the endpoint had no IPv6), localhost NXDOMAIN (6), é
    # an "'ascii' codec" error,
    # %{url_effective} without USER:PASSWORD@, the variables below unknown (nothing)
    v4, v6 = ports
    w = ("%{url_effective} %{http_code} %{remote_ip} %{urlnum} %{num_headers} [%{referer}] "
         "%{ssl_verify_result}\\n")  # fmt: skip
    urls = [
        f"http://u%40x:p%3Aw@[::1]:{v6}/a%20b/c?q=%2F#frag",
        f"http://localhost:{v4}/e",
        f"http://a.localhost:{v4}/redir?to=/x",
        f"http://127.0.0.1:{v4}/redir?to=/y",
        f"http://0x7F.1:{v4}/e",  # curl's IPv4 numbers (were names: NXDOMAIN)
    ]
    outs = [a for u in urls for a in ("-o", "/dev/null", u)]
    outs.append(f"http://LocalHost:{v4}/é?q=ü")  # (echoed: was an error, and host: localhost)
    curl, ours = both("-L", "-e", "http://r.test/", "-u", "me:pw", "-w", w, *outs, cwd=tmp_path)
    # curl writes -u's credentials into %{url_effective} after a redirect; ours keeps a
    # password given apart from the URL out of its output and records
    assert b"\nhttp://me:pw@127.0.0.1:" in curl.stdout
    expected = curl.stdout.replace(b"me:pw@", b"")
    assert (ours.returncode, ours.stdout) == (curl.returncode, expected) == (0, expected)
    assert b"#frag 200 ::1 0 1 [http://r.test/] 0\n" in curl.stdout
    assert f"GET /%c3%a9?q=ü HTTP/1.1\nHost: LocalHost:{v4}\n".encode() in curl.stdout
    # %{json}: curl's line (but for what ours has not: certs, curl_version; the local
    # port, each its own socket's, since session 26) and the times
    curl, ours = both("-w", "%{json}", "-o", "/dev/null", f"http://[::1]:{v6}/j", cwd=tmp_path)
    mine, theirs = json.loads(ours.stdout), json.loads(curl.stdout)
    for k in ("certs", "curl_version"):
        del theirs[k]
    assert mine.pop("local_port") > 0 and theirs.pop("local_port") > 0
    for k in [k for k in theirs if k.startswith(("time_", "speed_"))]:
        assert isinstance(mine.pop(k), type(theirs.pop(k))), k
    assert mine == theirs and b": " not in ours.stdout and b'"time_total":0.' in ours.stdout


def test_exit_codes_as_curl(ports: tuple[int, int], tmp_path: Path) -> None:
    # before: 1 for each (ours without --curl-exit-codes still is)
    base = f"http://127.0.0.1:{ports[0]}"
    for args, code in ((["-f", f"{base}/fail"], 22),
                       (["-L", "--max-redirs", "1", f"{base}/redir?to=/redir%3Fto%3D/e"], 47),
                       (["http://127.0.0.1:9/", f"{base}/e"], 0),
                       ([f"{base}/e", "http://127.0.0.1:9/"], 7)):  # fmt: skip
        outs = [w for a in args for w in (["-o", "/dev/null", a] if "://" in a else [a])]
        curl, ours = both(*outs, cwd=tmp_path)
        assert (curl.returncode, ours.returncode) == (code, code), (args, ours.stderr)
