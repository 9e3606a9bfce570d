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
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_http_curl_side_by_side import REPO, pytestmark  # noqa: F401
from web_pki import make_pki

ANSWERS = {
    b"/404": b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nnope\n",
    b"/big": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 100,
    # (closed after each answer, said so: curl 7.88.1, when its reuse of a closed one
    # meets a reset, keeps "Recv failure: ..." as the 47's errormsg)
    b"/loop": b"HTTP/1.1 302 Found\r\nLocation: /loop\r\nConnection: close\r\n"
    b"Content-Length: 0\r\n\r\n",
    b"/empty": b"",  # closed without an answer
    b"/reset": b"",  # (reset: `_record`)
    b"/bad": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"/gz": b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 5\r\n\r\nabcde",
}


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
            head = self._head(conn)
            self.heads.append((conn.getpeername()[1], head))
            path = head.split(b" ", 2)[1] if head.count(b" ") > 1 else b""
            if path == b"/reset":  # an RST in answer
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            conn.sendall(ANSWERS.get(path, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))

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
    return re.sub(rb"after \d+ ?(ms|milliseconds)", rb"after N \1", text)


def test_errormsg_as_curl(servers: Servers) -> None:
    # curl 7.88.1's words for each failure; ours were our own (`connect to A:P: connection
    # refused (...)`), and -m 1 against an unanswered SYN waited --connect-timeout's 10 s
    full, silent = servers.port(servers.full), servers.port(servers.silent)
    rec = f"http://127.0.0.1:{servers.port(servers.rec)}"
    tls, partial = servers.port(servers.tls), servers.port(servers.partial)
    cases = [
        ["http://127.0.0.1:1/"],
        ["-f", f"{rec}/404"],  # ours: "the server answered 404 Not Found (--fail)"
        ["--fail-with-body", f"{rec}/404"],
        ["--max-filesize", "50", f"{rec}/big"],  # ours: with the sizes and the server
        ["-L", "--max-redirs", "3", f"{rec}/loop"],  # ours: with where the next went
        [f"{rec}/empty"],  # ours: "the server A:P closed the connection without a response"
        [f"{rec}/reset"],  # ours: "connection to A:P: RESET"
        [f"{rec}/bad"],  # ours: h11's "illegal chunk header: ..."
        ["--compressed", f"{rec}/gz"],  # ours: "Content-Encoding gzip: bad data (...)"
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
    assert tails[0] == tails[1] and tails[0][0] == b"* ipv4 connect timeout after N ms, move on!"
    servers.heads.clear()


CHALLENGES = {
    b"/digest": b'Digest realm="r@h", qop="auth,auth-int", nonce="dcd98b", opaque="5ccc"',
    b"/sha": b'Digest realm="r", nonce="abc", qop="auth", algorithm=SHA-256',
    b"/nq": b'Digest realm="r", nonce="abc", algorithm=MD5',
    b"/basic": b'Basic realm="b"',
}


class H2Auth:
    """An HTTP/2 server (TLS, ALPN h2, or h2c with prior knowledge) that answers a path
    of CHALLENGES with a 401 and its challenge unless the request has an Authorization,
    then a 200; each request's header list kept as it came."""

    def __init__(self, ctx: ssl.SSLContext | None) -> None:
        self.ctx = ctx
        self.requests: list[list[tuple[bytes, bytes]]] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        import h2.config
        import h2.connection
        import h2.events

        raw.settimeout(10)
        try:
            conn = raw if self.ctx is None else self.ctx.wrap_socket(raw, server_side=True)
            c = h2.connection.H2Connection(
                h2.config.H2Configuration(client_side=False, header_encoding=None)
            )
            c.initiate_connection()
            conn.sendall(c.data_to_send())
            heads: dict[int, list[tuple[bytes, bytes]]] = {}
            while data := conn.recv(65536):
                for ev in c.receive_data(data):
                    if isinstance(ev, h2.events.RequestReceived):
                        heads[ev.stream_id] = list(ev.headers)
                        self.requests.append(heads[ev.stream_id])
                    elif isinstance(ev, h2.events.DataReceived):
                        c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded):
                        got = dict(heads[ev.stream_id])
                        offer = CHALLENGES.get(got[b":path"].split(b"?")[0])
                        if offer is None or b"authorization" in got:
                            status, fields, body = b"200", [], b"ok\n"
                        else:
                            status, fields, body = b"401", [(b"www-authenticate", offer)], b"nope\n"
                        length = (b"content-length", str(len(body)).encode())
                        c.send_headers(ev.stream_id, [(b":status", status), *fields, length])
                        c.send_data(ev.stream_id, body, end_stream=True)
                conn.sendall(c.data_to_send())
        except (OSError, ssl.SSLError):
            pass
        finally:
            raw.close()

    def take(self) -> list[list[tuple[bytes, bytes]]]:
        out, self.requests = self.requests, []
        return [[(k, re.sub(rb'cnonce="[^"]*"', b"cnonce=C", v)) for k, v in r] for r in out]


def test_digest_and_anyauth_over_http2_as_curl(tmp_path: Path) -> None:
    # curl25 compared them over HTTP/1.1 only. Over TLS with ALPN h2 ours and curl 7.88.1
    # send the same header lists (the cnonce, random, and the response over it masked)
    # and write the same -D and -w
    pki = make_pki(tmp_path, ("localhost",))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pki["server"]), str(pki["key"]))
    ctx.set_alpn_protocols(["h2"])
    server = H2Auth(ctx)
    w = "|%{http_code} %{num_connects} %{num_redirects} %{size_header} %{size_request} "
    w += "%{http_version}\\n"
    base = ["-A", "x/1", "-u", "us:pw", "-D", "-", "-w", w, "--cacert", str(pki["ca"])]
    url = f"https://localhost:{server.port}"
    cases = (
        ["--digest", f"{url}/digest"],
        ["--digest", f"{url}/sha"],
        ["--digest", "-d", "a=1", f"{url}/nq"],  # no qop: byte for byte
        ["--anyauth", f"{url}/sha"],
        ["--anyauth", f"{url}/basic"],
        ["--digest", f"{url}/basic"],  # not offered: the 401 is the answer
    )
    masked = re.compile(rb'(cnonce=C.*response=")[^"]*"')
    for args in cases:
        want = _run("curl", *base, *args)
        theirs = server.take()
        got = _run("ours", *base, *args)
        assert got.returncode == want.returncode == 0, (args, got.stderr)
        assert got.stdout == want.stdout and b"HTTP/2 401" in got.stdout, args
        mine = server.take()
        assert len(mine) == len(theirs) and [len(r) for r in mine] == [len(r) for r in theirs]
        for a, b in zip(mine, theirs, strict=True):
            assert [(k, masked.sub(rb'\1R"', v)) for k, v in a] == [
                (k, masked.sub(rb'\1R"', v)) for k, v in b
            ], args
    # h2c with prior knowledge: curl 7.88.1 reuses the connection for the answer, sends
    # nothing on it and ends with (16) after the 401 (its bug, not copied); ours answers
    h2c = H2Auth(None)
    args = ["--http2-prior-knowledge", "--digest", f"http://127.0.0.1:{h2c.port}/digest"]
    want = _run("curl", *base[:-2], *args)
    assert want.returncode == 16 and len(h2c.take()) == 1, want.stderr
    got = _run("ours", *base[:-2], *args)
    assert got.returncode == 0 and got.stdout.endswith(b"|200 1 1 158 369 2\n"), got.stdout
    assert [dict(r).get(b"authorization", b"")[:7] for r in h2c.take()] == [b"", b"Digest "]
    server.sock.close()
    h2c.sock.close()


def test_num_certs_as_curl(servers: Servers) -> None:
    # curl 7.88.1's %{num_certs}: the certificates of the transfer's handshake, 0 over a
    # reused connection, over http:// and when verification failed; ours: unknown
    tls = servers.port(servers.tls)
    w = "%{num_certs} %{num_connects} %{exitcode}\\n"
    cases = [
        ["--cacert", servers.ca, "-o", os.devnull, f"https://localhost:{tls}/a",
         f"https://localhost:{tls}/b"],
        ["-k", f"https://localhost:{tls}/"],
        [f"https://localhost:{tls}/"],
        [f"http://127.0.0.1:{servers.port(servers.rec)}/"],
    ]  # fmt: skip
    for case in cases:
        want, got = _run("curl", "-w", w, *case), _run("ours", "-w", w, *case)
        assert got.stdout == want.stdout, (case, got.stderr)
    assert want.stdout == b"0 1 0\n"
    servers.heads.clear()


def test_resolve_list_as_curl(servers: Servers) -> None:
    # curl 7.88.1 tries each address of a --resolve list in turn (a refusal, a SYN
    # unanswered: the next); ours connected to the first only (7, 28)
    rec, full = servers.port(servers.rec), servers.port(servers.full)
    w = "%{exitcode} %{remote_ip} %{num_connects} %{errormsg}\\n"
    cases = [
        ["--resolve", f"a.example:{rec}:127.0.0.2,127.0.0.1", f"http://a.example:{rec}/r"],
        ["--resolve", f"a.example:{rec}:[::1],127.0.0.1", f"http://a.example:{rec}/r"],
        ["--resolve", "a.example:1:127.0.0.2,127.0.0.1", "http://a.example:1/r"],
        ["--connect-timeout", "2", "--resolve", f"a.example:{full}:127.0.0.1,127.0.0.1",
         f"http://a.example:{full}/r"],
    ]  # fmt: skip
    for case in cases:
        want, got = _run("curl", "-v", "-w", w, *case), _run("ours", "-v", "-w", w, *case)
        assert _masked(got.stdout) == _masked(want.stdout), case
        lines = [x for x in _masked(want.stderr).splitlines() if x.startswith((b"* ", b"*  "))]
        mine = [x for x in _masked(got.stderr).splitlines() if x.startswith((b"* ", b"*  "))]
        assert mine[:6] == lines[:6], case
    servers.heads.clear()
