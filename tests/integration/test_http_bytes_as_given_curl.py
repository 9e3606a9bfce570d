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
                if data.startswith(b"GET /first "):
                    conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: /second\r\n" + SET_COOKIE
                                 + b"Content-Length: 0\r\n\r\n")  # fmt: skip
                else:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

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
    for args in (["-H", "X-B;"], ["-H", "Host;"], ["-H", "X-B;", "-0"], ["-r", "0-1", "-C", "5"]):
        _run("curl", "-A", "x/1", "--connect-to", to, *args, "http://a.example/x")
        theirs = server.take()
        _run("ours", "-A", "x/1", "-w", "", "--connect-to", to, *args, "http://a.example/x")
        assert server.take() == theirs, args
