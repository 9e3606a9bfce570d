"""`pktlab run http` beside curl 7.88 where fields and URLs are not ASCII: a -H, -A or -e
value with UTF-8 bytes, a Set-Cookie with bytes that are not UTF-8 sent back and written
to -c's file, an internationalised host. A raw server records each request's bytes;
ours must send curl's (but the User-Agent when -A is not given), write curl's cookie
file, and print curl's %{url_effective}. Before session 24 the non-ASCII fields ended the
run (exit 2, a codec's message) and url_effective showed the ASCII form of the host."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_http_curl_side_by_side import REPO, pytestmark  # noqa: F401

SET_COOKIE = b"Set-Cookie: a=\xc3\xbc\xff; Path=/\r\n"  # UTF-8, then a byte that is not


ANSWERS = {
    b"/first": b"HTTP/1.1 302 Found\r\nLocation: /second\r\n" + SET_COOKIE
    + b"Content-Length: 0\r\n\r\n",
    # a status line, fields and a cookie with bytes above 127, UTF-8 or not
    b"/weird": b"HTTP/1.1 200 \xc3\x9c\xff Fine\r\nX-Odd: a\xffb \xc3\xa4\r\nx-odd: 2\r\n"
    b'Content-Type: text/\xc3\xa4; q="\\"\r\nSet-Cookie: s=\xe2\x82\xac\r\n'
    b"Content-Length: 3\r\n\r\nok\n",
    # Locations curl encodes its way (lower-case hex; a space + in the query), or not
    b"/loc": b"HTTP/1.1 302 Found\r\nLocation: /t\xc3\xa4rget?q=\xc3\xbc x\r\n"
    b"Content-Length: 0\r\n\r\n",
    b"/abs": b"HTTP/1.1 302 Found\r\nLocation: http://b\xc3\xbccher.example/p\xc3\xa4 th\r\n"
    b"Content-Length: 0\r\n\r\n",
    b"/odd": b'HTTP/1.1 302 Found\r\nLocation: /a{b}|c"d<e>^f`g\\h%zz\r\n'
    b"Content-Length: 0\r\n\r\n",
    # a redirect with an empty body, and one whose connection closes: curl reads neither
    b"/l0": b"HTTP/1.1 302 Found\r\nLocation: /t\r\nContent-Length: 0\r\n\r\n",
    b"/l5c": b"HTTP/1.1 302 Found\r\nLocation: /t\r\nContent-Length: 5\r\n"
    b"Connection: close\r\n\r\nmoved",
    # HTTP/1.0 answers, and a field given twice
    b"/v10": b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"/v10nolen": b"HTTP/1.0 200 OK\r\n\r\nbody until close",
    b"/dup": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
    b"/fold": b"HTTP/1.1 200 OK\r\nX-Fold: a\r\n  b\r\nContent-Length: 0\r\n\r\n",
    # an informational answer before the final one; a chunked body with a trailer field
    b"/103": b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"/trailer": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"2;ext=1\r\nok\r\n0\r\nX-Trailer: t\r\n\r\n",
    # what curl reads and h11 refused
    b"/lower": b"http/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"/colon": b"HTTP/1.1 200 OK\r\nX-A : b\r\nContent-Length: 2\r\n\r\nok",
    b"/lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok",
    # heads curl refuses part way: the lines before the bad one are its head
    b"/nul": b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok",
    b"/neg": b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nok",
    b"/noline": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nbadline\r\n\r\nok",
    b"/http09": b"ok just a body",
}  # fmt: skip


class Recorder:
    """Answers /first with a redirect to /second that sets the cookie, anything else 200;
    keeps each request head as it came."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.heads: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                data = b""
                while b"\r\n\r\n" not in data:
                    got = conn.recv(65536)
                    if not got:
                        break
                    data += got
                self.heads.append(data)
                path = data.split(b" ", 2)[1] if b" " in data else b""
                conn.sendall(ANSWERS.get(path, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))

    def take(self) -> list[bytes]:
        heads, self.heads = self.heads, []
        return heads


@pytest.fixture(scope="module")
def server() -> Iterator[Recorder]:
    r = Recorder()
    yield r
    r.sock.close()


def _run(who: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    argv = ["curl"] if who == "curl" else [sys.executable, "-m", "packetlab", "run", "http"]
    return subprocess.run([*argv, "-s", "-o", os.devnull, *args], capture_output=True,
                          timeout=60, env=env)  # fmt: skip


def _no_agent(heads: list[bytes]) -> list[bytes]:
    return [re.sub(rb"User-Agent: [^\r]*\r\n", b"", h) for h in heads]


def _answers_as_curl(server: Recorder, how: list[str], w: str, paths: tuple[str, ...],
                     ok: bool = True) -> None:  # fmt: skip
    """Each path fetched by curl and by ours with `how` and `-w w`: the same stdout, and
    both succeeding (`ok`) or both failing."""
    to = f"::127.0.0.1:{server.port}"
    for path in paths:
        args = [*how, "-w", w, "--connect-to", to, f"http://a.example{path}"]
        want, got = _run("curl", *args), _run("ours", *args)
        assert (got.returncode == 0) == (want.returncode == 0) == ok, (path, got.stderr)
        assert got.stdout == want.stdout, (path, how)
    server.take()


def test_fields_and_cookies_go_as_given(server: Recorder, tmp_path: Path) -> None:
    to = f"::127.0.0.1:{server.port}"
    asked = ["-H", "X-A: ü", "-A", "ü/1", "-e", "http://bücher.example/ä", "-L"]
    url = "http://bücher.example/first"
    sent = {}
    for who in ("curl", "ours"):
        jar = tmp_path / f"jar-{who}"
        done = _run(who, *asked, "-c", str(jar), "--connect-to", to, url)
        assert done.returncode == 0, (who, done.stderr)
        again = _run(who, "-b", str(jar), "--connect-to", to, "http://bücher.example/again")
        assert again.returncode == 0, (who, again.stderr)
        sent[who] = server.take()
        lines = jar.read_bytes().splitlines()
        assert lines[-1].endswith(b"\ta\t\xc3\xbc\xff"), (who, lines)
    assert sent["ours"][:2] == sent["curl"][:2]  # -A given: byte for byte
    assert (
        b"X-A: \xc3\xbc\r\n" in sent["ours"][0] and b"Cookie: a=\xc3\xbc\xff\r\n" in sent["ours"][1]
    )
    assert _no_agent(sent["ours"][2:]) == _no_agent(sent["curl"][2:])
    assert (tmp_path / "jar-ours").read_bytes().splitlines()[3:] == (
        tmp_path / "jar-curl").read_bytes().splitlines()[3:]  # fmt: skip


def test_url_effective_keeps_the_host_as_written(server: Recorder) -> None:
    to = f"::127.0.0.1:{server.port}"
    for url in ("http://BÜcher.example/x?q=ü#frä", "http://bücher.example:80/ä"):
        want = _run("curl", "-w", "%{url_effective}", "--connect-to", to, url)
        got = _run("ours", "-w", "%{url_effective}", "--connect-to", to, url)
        assert want.returncode == 0 and got.returncode == 0, got.stderr
        assert got.stdout == want.stdout, url
        heads = server.take()
        assert heads[0].split(b"\r\n")[1] == heads[1].split(b"\r\n")[1]  # the same Host


def test_credentials_in_the_url_are_sent_as_curl(server: Recorder) -> None:
    # session 24: a URL's USER:PASSWORD@ was kept in url_effective but never sent
    to = f"::127.0.0.1:{server.port}"
    cases = [
        ["http://user:pw@a.example/x"],
        ["http://us%C3%BCer:p%20w@a.example/x"],  # %XX decoded, as curl
        ["http://c@a.example/x"],  # "c:"
        ["-u", "a:b", "http://c:d@a.example/x"],  # -u wins
        ["-H", "Authorization: Bearer z", "http://c:d@a.example/x"],  # -H wins
        ["-L", "http://c:d@a.example/first"],  # a relative hop keeps them
        ["-u", "üser:pä", "http://a.example/x"],
    ]
    for args in cases:
        want = _run("curl", "-A", "x/1", "--connect-to", to, *args)
        theirs = server.take()
        got = _run("ours", "-A", "x/1", "-w", "", "--connect-to", to, *args)
        assert want.returncode == 0 and got.returncode == 0, (args, got.stderr)
        assert server.take() == theirs, args
        assert any(b"Authorization: " in h for h in theirs), args


def test_an_empty_field_and_a_resume_over_a_range_as_curl(server: Recorder) -> None:
    # session 24: -H 'NAME;' went as `NAME: ` (h11's space), curl's is `NAME:`; with -r
    # and -C both, ours sent -r's range, curl -C's
    to = f"::127.0.0.1:{server.port}"
    cases = (
        ["-H", "X-B;"],
        ["-H", "Host;"],
        ["-H", "X-B;", "-0"],
        ["-r", "0-1", "-C", "5"],
        ["-b", "a=1 ; ", "-b", " c=2", "-b", "d=3;e=4"],  # (-b's joined with ";")
        # blanks at a value's ends: h11 refused them (exit 56), -H's were cut
        ["-A", "ua  ", "-e", "http://r/  ", "-H", "X-T:  v  ", "-H", "X-U:   "],
    )
    for args in cases:
        _run("curl", "-A", "x/1", "--connect-to", to, *args, "http://a.example/x")
        theirs = server.take()
        _run("ours", "-A", "x/1", "-w", "", "--connect-to", to, *args, "http://a.example/x")
        assert server.take() == theirs, args


def test_received_bytes_in_write_out_as_curl(server: Recorder) -> None:
    # session 24: %{header_json} was unknown; %header{} and %{content_type} wrote the
    # bytes as latin-1 text in UTF-8 (mojibake); %{json} was Python's json.dumps, not
    # curl's jsonWriteString (which writes a byte above 127 as `uffffffc3`)
    to = f"::127.0.0.1:{server.port}"
    w = "%{header_json}|%header{x-odd}|%{content_type}|%{json}\\n"
    for url in ("http://a.example/weird", "http://a.example/ä?q=ü"):
        want = _run("curl", "-A", "x/1", "-w", w, "--connect-to", to, url)
        got = _run("ours", "-A", "x/1", "-w", w, "--connect-to", to, url)
        assert want.returncode == 0 and got.returncode == 0, got.stderr
        theirs, ours = want.stdout.split(b"|"), got.stdout.split(b"|")
        assert ours[:3] == theirs[:3], url
        strings = rb'"(?:url|url_effective|content_type|method|scheme)":(?:"[^"]*"|null)'
        assert re.findall(strings, ours[3]) == re.findall(strings, theirs[3]), url
        server.take()


def test_locations_are_followed_and_told_as_curl(server: Recorder) -> None:
    to = f"::127.0.0.1:{server.port}"
    w = "%{redirect_url} %{url_effective}\\n"
    for path in ("/loc", "/abs", "/odd"):
        for follow in ([], ["-L"], ["-L", "--max-redirs", "0"]):
            args = ["-A", "x/1", "--connect-to", to, *follow, f"http://a.example{path}"]
            want = _run("curl", "-w", w, *args)
            theirs = server.take()
            got = _run("ours", "-w", w, *args)
            assert got.stdout == want.stdout, (path, follow, got.stderr)
            # the request lines: ours sends the followed one again on a fresh connection
            # (curl saw the first one closed first; this server closes after each answer)
            lines = sorted({h.split(b"\r\n")[0] for h in server.take()})
            assert lines == sorted({h.split(b"\r\n")[0] for h in theirs}), (path, follow)


def test_a_redirect_body_curl_does_not_read_is_not_told(server: Recorder) -> None:
    # session 24: ours told "Ignoring the response-body" (and the body's bytes) for these
    to = f"::127.0.0.1:{server.port}"
    for path in ("/l0", "/l5c"):
        args = ["-v", "-L", "--connect-to", to, f"http://a.example{path}"]
        want, got = _run("curl", *args), _run("ours", "-w", "", *args)
        for text in (b"Ignoring the response-body", b"[5 bytes data]"):
            assert got.stderr.count(text) == want.stderr.count(text) == 0, (path, text)
        server.take()


def test_more_outputs_than_urls_is_curls_warning(server: Recorder, tmp_path: Path) -> None:
    # session 24: ours refused the run (exit 2, "2 -o/--output and -O for 1 URLs")
    to = f"::127.0.0.1:{server.port}"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for who, argv in (("curl", ["curl"]), ("ours", [sys.executable, "-m", "packetlab", "run",
                                                     "http", "-w", ""])):  # fmt: skip
        extra = tmp_path / f"extra-{who}"
        outputs = ["-o", os.devnull, "-o", str(extra)]
        done = subprocess.run([*argv, *outputs, "--connect-to", to, "http://a.example/x"],
                              capture_output=True, timeout=60, env=env)  # fmt: skip
        assert done.returncode == 0 and not extra.exists(), (who, done.stderr)
        assert done.stderr.endswith(b"Warning: Got more output options than URLs\n"), who
    server.take()


def test_write_out_of_http_1_0_and_repeated_fields_as_curl(server: Recorder) -> None:
    # session 24: %{http_version} of an HTTP/1.0 answer was 1.1 (curl's "1"), and
    # %{num_headers} counted one of two equal Content-Length fields (h11 keeps one)
    w = "%{http_code} %{http_version} %{size_header} %{num_headers} %{size_download}\\n"
    _answers_as_curl(server, ["-i"], w, ("/v10", "/v10nolen", "/dup", "/fold", "/weird"))


def test_oauth2_bearer_and_request_target_as_curl(server: Recorder) -> None:
    # session 24: neither option was known ("unrecognized arguments")
    to = f"::127.0.0.1:{server.port}"
    cases = (
        ["--oauth2-bearer", "tok"],
        ["--oauth2-bearer", "tok", "-u", "a:b"],
        ["--oauth2-bearer", "tok", "-L", "http://a.example/first"],
        ["--request-target", "*", "-X", "OPTIONS"],
        ["--request-target", "/other?q"],
    )
    for args in cases:
        url = [] if args[-1].startswith("http") else ["http://a.example/x"]
        want = _run("curl", "-A", "x/1", "-v", "--connect-to", to, *args, *url)
        theirs = server.take()
        got = _run("ours", "-A", "x/1", "-v", "-w", "", "--connect-to", to, *args, *url)
        assert got.returncode == 0, (args, got.stderr)
        assert server.take() == theirs, args
        said = [line for line in want.stderr.splitlines() if b"auth" in line.lower()]
        assert [line for line in got.stderr.splitlines() if b"auth" in line.lower()] == said


def test_a_data_file_that_cannot_be_read_is_an_empty_post(server: Recorder, tmp_path: Path) -> None:
    # session 24: ours refused the run (exit 2); curl warns and sends an empty POST
    to = f"::127.0.0.1:{server.port}"
    missing = str(tmp_path / "missing")
    for args in (["-d", f"@{missing}"], ["--data-binary", f"@{missing}", "-d", "x=1"],
                 ["-d", f"@{tmp_path}"]):  # fmt: skip
        want = _run("curl", "-A", "x/1", "-S", "--connect-to", to, *args, "http://a.example/x")
        theirs = server.take()
        got = _run("ours", "-A", "x/1", "-w", "", "-S", "--connect-to", to, *args,
                   "http://a.example/x")  # fmt: skip
        assert got.returncode == want.returncode == 0, (args, got.stderr)
        assert server.take() == theirs, args


def test_an_informational_answer_and_a_trailer_as_curl(server: Recorder) -> None:
    # session 24: %{num_headers} counted the 103's fields too; -i and -D left out a
    # chunked body's trailer fields (curl writes them after the body, not in size_header)
    w = "|%{http_code} %{size_header} %{num_headers}\\n"
    for how in (["-D", "-"], ["-i"]):  # (-i: to _run's -o, the -w line compared)
        _answers_as_curl(server, how, w, ("/103", "/trailer"))


def test_answers_curl_reads_and_h11_refused(server: Recorder) -> None:
    # session 24: each ended ours with "bad response" (exit 1); curl reads them
    w = "|%{http_code} %{size_download} %{size_header} %{num_headers}\\n"
    _answers_as_curl(server, ["-D", "-"], w, ("/lower", "/colon", "/lengths"))


def test_bad_heads_as_curl_reads_them(server: Recorder) -> None:
    # session 24: ours wrote no head, %{http_code} 000, and %{exitcode} 8 for HTTP/0.9
    # (curl: 1); curl writes the status and the lines before the one it refuses
    w = "|%{http_code} %{size_header} %{num_headers} %{exitcode}\\n"
    _answers_as_curl(server, ["-D", "-"], w, ("/nul", "/neg", "/noline", "/http09"), ok=False)
