"""`pktlab run http` beside curl 7.88.1 where they differed before session 26 (http26):
-H words that are no field, %{local_ip}/%{local_port}, and %{errormsg} of the common
failures (refused, no such host, a SYN unanswered, -m's end in the handshake and in the
body, TLS verification). Each command line run by /usr/bin/curl and by ours against the
same loopback servers; the times inside curl's words (`after N ms`) are masked."""

from __future__ import annotations

import os
import re
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_http_curl_side_by_side import REPO, pytestmark  # noqa: F401
from web_pki import make_pki


class Servers:
    """A recorder (each request head and the client's port kept), a listener whose
    backlog is full (SYNs unanswered), one that accepts and says nothing, one that
    sends 3 of 10 body bytes, and a TLS one whose certificate names `localhost` only."""

    def __init__(self, tmp: Path) -> None:
        self.heads: list[tuple[int, bytes]] = []
        self.rec = self._server(self._record)
        self.full = socket.socket()
        self.full.bind(("127.0.0.1", 0))
        self.full.listen(0)
        self.fillers: list[socket.socket] = []
        for _ in range(4):  # (Linux queues backlog + 1, a SYN more is dropped)
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(self.full.getsockname())
            self.fillers.append(c)
        self.held: list[socket.socket] = []
        self.silent = self._server(self.held.append)
        self.partial = self._server(self._partial)
        pki = make_pki(tmp, ("localhost",))
        self.ca = str(pki["ca"])
        self.tls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls_ctx.load_cert_chain(str(pki["server"]), str(pki["key"]))
        self.tls = self._server(self._tls)

    def _server(self, handle: Callable[[socket.socket], object]) -> socket.socket:
        s = socket.create_server(("127.0.0.1", 0))

        def serve() -> None:
            while True:
                try:
                    conn, _ = s.accept()
                except OSError:
                    return
                threading.Thread(target=handle, args=(conn,), daemon=True).start()

        threading.Thread(target=serve, daemon=True).start()
        return s

    @staticmethod
    def _head(conn: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            got = conn.recv(65536)
            if not got:
                break
            data += got
        return data

    def _record(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            self.heads.append((conn.getpeername()[1], self._head(conn)))
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    def _partial(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        self._head(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        self.held.append(conn)

    def _tls(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        try:
            with self.tls_ctx.wrap_socket(conn, server_side=True) as s:
                self._head(s)
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except (OSError, ssl.SSLError):
            conn.close()

    def port(self, s: socket.socket) -> int:
        return int(s.getsockname()[1])

    def close(self) -> None:
        for s in (self.rec, self.full, self.silent, self.partial, self.tls, *self.fillers,
                  *self.held):  # fmt: skip
            s.close()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    s = Servers(tmp_path_factory.mktemp("pki26"))
    yield s
    s.close()


def _run(who: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    argv = ["curl"] if who == "curl" else [sys.executable, "-m", "packetlab", "run", "http"]
    return subprocess.run([*argv, "-s", "-o", os.devnull, *args], capture_output=True,
                          timeout=60, env=env)  # fmt: skip


def test_fields_without_a_name_are_dropped_as_curl(servers: Servers) -> None:
    # curl 7.88.1 sends none of these and runs (0); ours refused the run (2)
    url = f"http://127.0.0.1:{servers.port(servers.rec)}/h"
    words = ["-H", "X", "-H", ":v", "-H", "", "-H", ":", "-H", "X y", "-H", "Y: 1"]
    sent = {}
    for who in ("curl", "ours"):
        done = _run(who, "-A", "ua", *words, url)
        assert done.returncode == 0, (who, done.stderr)
        sent[who] = [h for _, h in servers.heads]
        servers.heads.clear()
    assert sent["ours"] == sent["curl"] and len(sent["curl"]) == 1
    assert b"\r\nY: 1\r\n\r\n" in sent["curl"][0]
    # not silent without -s: one warning a word dropped (curl says nothing)
    done = subprocess.run([sys.executable, "-m", "packetlab", "run", "http", "-o", os.devnull,
                           "-w", "%{http_code}", "-H", "X", url], capture_output=True,
                          timeout=60, env=dict(os.environ, PYTHONPATH=str(REPO)))  # fmt: skip
    assert (
        done.stderr.decode() == "Warning: -H/--header 'X': no 'NAME: VALUE', not sent (as curl)\n"
    )
    servers.heads.clear()


def test_local_address_as_curl(servers: Servers) -> None:
    # curl 7.88.1: its socket's own address and port; ours: unknown variables (nothing)
    url = f"http://127.0.0.1:{servers.port(servers.rec)}/l"
    for who in ("curl", "ours"):
        done = _run(who, "-w", "%{local_ip} %{local_port}", url)
        assert done.returncode == 0, (who, done.stderr)
        ip, port = done.stdout.decode().split(" ")
        assert ip == "127.0.0.1" and [int(port)] == [p for p, _ in servers.heads], who
        servers.heads.clear()


def _masked(text: bytes) -> bytes:
    return re.sub(rb"after \d+ (ms|milliseconds)", rb"after N \1", text)


def test_errormsg_as_curl(servers: Servers) -> None:
    # curl 7.88.1's words for each failure; ours were our own (`connect to A:P: connection
    # refused (...)`), and -m 1 against an unanswered SYN waited --connect-timeout's 10 s
    full, silent = servers.port(servers.full), servers.port(servers.silent)
    tls, partial = servers.port(servers.tls), servers.port(servers.partial)
    cases = [
        ["http://127.0.0.1:1/"],
        ["http://[::1]:1/"],
        ["http://nonexistent.invalid/"],
        ["--connect-timeout", "1", f"http://127.0.0.1:{full}/"],
        ["-m", "1", f"http://127.0.0.1:{full}/"],
        ["-m", "1", f"http://127.0.0.1:{partial}/"],
        ["--connect-timeout", "1", f"https://127.0.0.1:{silent}/"],
        ["-m", "1", f"https://127.0.0.1:{silent}/"],
        [f"https://localhost:{tls}/"],  # a CA not trusted
        # the name not in it
        [
            "--cacert",
            servers.ca,
            "--resolve",
            f"a.example:{tls}:127.0.0.1",
            f"https://a.example:{tls}/",
        ],
    ]
    for case in cases:
        got = {}
        for who in ("curl", "ours"):
            done = _run(who, "-w", "%{exitcode} %{errormsg}", *case)
            got[who] = _masked(done.stdout)
        assert got["ours"] == got["curl"], case
        assert not got["curl"].startswith(b"0 "), case
    # -v: curl's last lines for --connect-timeout's end (ours had no "move on" line)
    case = ["-v", "--connect-timeout", "1", f"http://127.0.0.1:{full}/"]
    tails = [_masked(_run(who, *case).stderr).splitlines()[-3:] for who in ("curl", "ours")]
    assert tails[0] == tails[1] and tails[0][0] == b"* ipv4 connect timeout after 1000ms, move on!"
