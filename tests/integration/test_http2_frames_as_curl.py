"""`pktlab run http` beside curl 7.88.1 (nghttp2 1.52) over HTTP/2, frame by frame: a TLS
server (ALPN h2; the `h2` library answers) records every frame each connection brings,
decoded (hyperframe, hpack): the preface, SETTINGS ids and values in order,
WINDOW_UPDATE increments, HEADERS as the decoded field list (case kept), DATA sizes and
END_STREAM, PRIORITY, RST_STREAM and GOAWAY codes. The same arguments must give the same
sequences, the User-Agent masked (ours names itself)."""

from __future__ import annotations

import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack
import pytest
from hyperframe import frame as hf
from test_http_curl_side_by_side import REPO, make_pki, pytestmark  # noqa: F401

# frames written after an answer (/PATH) or before it (/firstPATH), past h2: a PING, a
# WINDOW_UPDATE of 0 (a connection error), DATA on a stream never opened (another)
RAW = {
    "/ping": b"\x00\x00\x08\x06\x00\x00\x00\x00\x00" + b"12345678",
    "/zero": b"\x00\x00\x04\x08\x00\x00\x00\x00\x00" + b"\x00\x00\x00\x00",
    "/even": b"\x00\x00\x01\x00\x00\x00\x00\x00\x02" + b"x",
}
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
Frames = list[tuple[Any, ...]]


class Recorder:
    """A TLS HTTP/2 server on 127.0.0.1: each connection's frames as they came (a list a
    connection, in `conns`). Answers each request when its stream ended: /r/CODE?to=X a
    redirect, anything else 200 with a small body; a HEAD without one."""

    def __init__(self, cert: Path, key: Path, plain: bool = False) -> None:
        self.plain = plain  # h2c with prior knowledge: no TLS
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(cert), str(key))
        self.ctx.set_alpn_protocols(["h2"])
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns: list[Frames] = []
        self.settings: dict[int, int] = {}  # the server's SETTINGS beyond h2's
        self.hold = False  # its SETTINGS only with its first answer (one read)
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            frames: Frames = []
            with self.lock:
                self.conns.append(frames)
            threading.Thread(target=self._serve, args=(raw, frames), daemon=True).start()

    def _serve(self, raw: socket.socket, frames: Frames) -> None:
        try:
            conn = raw if self.plain else self.ctx.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        config = h2.config.H2Configuration(
            client_side=False, validate_inbound_headers=False, normalize_inbound_headers=False
        )
        server = h2.connection.H2Connection(config=config)
        server.initiate_connection()
        if self.settings:
            server.update_settings(self.settings)
        conn.settimeout(20)
        buf = b""
        decoder = hpack.Decoder()
        block: list[Any] = []  # a header block's frames until END_HEADERS
        paths: dict[int, str] = {}
        out: dict[int, int] = {}  # body bytes still to send a stream (flow-controlled)
        gone = False  # the GOAWAY sent
        early: set[int] = set()  # /early streams answered
        try:
            if not self.hold:
                conn.sendall(server.data_to_send())
            while True:
                got = conn.recv(65536)
                if not got:
                    frames.append(("EOF",))
                    break
                buf += got
                if buf.startswith(PREFACE):
                    frames.append(("PREFACE",))
                    buf = buf[len(PREFACE) :]
                buf = self._frames(buf, frames, decoder, block)
                for ev in [] if gone else server.receive_data(got):
                    if isinstance(ev, h2.events.RequestReceived):
                        paths[ev.stream_id] = dict(ev.headers).get(b":path", b"/").decode()
                        if dict(ev.headers).get(b":method") == b"HEAD":
                            paths[ev.stream_id] = "HEAD " + paths[ev.stream_id]
                        if paths[ev.stream_id].startswith("/early"):
                            # (the body may end short: not h2's protocol error)
                            server.streams[ev.stream_id]._expected_content_length = None
                    elif isinstance(ev, h2.events.DataReceived):
                        sid = ev.stream_id
                        if not paths.get(sid, "").startswith("/early"):
                            server.acknowledge_received_data(ev.flow_controlled_length, sid)
                        elif sid not in out and sid not in early:  # its first DATA: the
                            early.add(sid)  # answer, the body's window never opened
                            out[sid] = self._answer(server, sid, "/r/413")
                    elif isinstance(ev, h2.events.StreamEnded):
                        if paths.get(ev.stream_id, "").startswith("/early"):
                            continue
                        out[ev.stream_id] = self._answer(server, ev.stream_id,
                                                         paths.get(ev.stream_id, "/"))  # fmt: skip
                    elif isinstance(ev, h2.events.StreamReset):
                        out.pop(ev.stream_id, None)
                self._pump(server, out)
                for sid, path in list(paths.items()):
                    if path in RAW and sid not in early:  # after the answer
                        early.add(sid)
                        conn.sendall(server.data_to_send() + RAW[path])
                    elif path.startswith("/first") and sid not in early:  # before it
                        early.add(sid)
                        conn.sendall(server.data_to_send() + RAW[path[6:]])
                if "/goaway" in paths.values() and not out and not gone:
                    server.close_connection()  # after its answer: GOAWAY
                    gone = True
                conn.sendall(server.data_to_send())
        except (OSError, ssl.SSLError, h2.exceptions.ProtocolError) as e:
            frames.append(("ERROR", type(e).__name__))
        finally:
            conn.close()

    @staticmethod
    def _frames(buf: bytes, frames: Frames, decoder: Any, block: list[Any]) -> bytes:
        while len(buf) >= 9:
            f, length = hf.Frame.parse_frame_header(memoryview(buf[:9]))
            if len(buf) < 9 + length:
                break
            f.parse_body(memoryview(buf[9 : 9 + length]))
            buf = buf[9 + length :]
            flags = set(f.flags)
            if isinstance(f, hf.SettingsFrame):
                frames.append(("SETTINGS", "ACK" in flags, list(f.settings.items())))
            elif isinstance(f, hf.WindowUpdateFrame):
                frames.append(("WINDOW_UPDATE", f.stream_id, f.window_increment))
            elif isinstance(f, hf.HeadersFrame | hf.ContinuationFrame):
                block.append(f)
                if "END_HEADERS" in flags:
                    first = block[0]
                    fields = decoder.decode(b"".join(x.data for x in block), raw=True)
                    prio = None
                    if "PRIORITY" in set(first.flags):
                        prio = (first.depends_on, first.stream_weight, first.exclusive)
                    frames.append(("HEADERS", first.stream_id, fields,
                                   "END_STREAM" in set(first.flags), prio,
                                   len(block)))  # fmt: skip
                    block.clear()
            elif isinstance(f, hf.DataFrame):
                frames.append(("DATA", f.stream_id, len(f.data), "END_STREAM" in flags))
            elif isinstance(f, hf.PriorityFrame):
                frames.append(("PRIORITY", f.stream_id, f.depends_on, f.stream_weight,
                               f.exclusive))  # fmt: skip
            elif isinstance(f, hf.RstStreamFrame):
                frames.append(("RST_STREAM", f.stream_id, f.error_code))
            elif isinstance(f, hf.GoAwayFrame):
                frames.append(("GOAWAY", f.last_stream_id, f.error_code))
            elif isinstance(f, hf.PingFrame):
                frames.append(("PING", "ACK" in flags))
            else:
                frames.append((type(f).__name__, f.stream_id))
        return buf

    @staticmethod
    def _answer(server: Any, sid: int, path: str) -> int:
        """The response's header block; the body's bytes ("x" each) left to `_pump`:
        /n/BYTES that many, /r/CODE?to=X a redirect (5), else 5."""
        head = path.startswith("HEAD ")
        path = path.removeprefix("HEAD ")
        size = 5
        headers = [(":status", "200")]
        if path.startswith("/r/"):
            code, _, to = path[3:].partition("?to=")
            headers = [(":status", code), ("location", to)]
        elif path.startswith("/n/"):
            size = int(path[3:])
        headers.append(("content-length", str(size)))
        server.send_headers(sid, headers, end_stream=head)
        return 0 if head else size

    @staticmethod
    def _pump(server: Any, out: dict[int, int]) -> None:
        for sid, left in list(out.items()):
            while left:
                n = min(left, server.local_flow_control_window(sid),
                        server.max_outbound_frame_size)  # fmt: skip
                if n <= 0:
                    break
                left -= n
                server.send_data(sid, b"x" * n, end_stream=not left)
            out[sid] = left
            if not left:
                del out[sid]

    def take(self) -> list[Frames]:
        """The connections since the last call, each once it ended (polled)."""
        for _ in range(200):
            with self.lock:
                if all(c and c[-1][0] in ("EOF", "ERROR") for c in self.conns):
                    break
            time.sleep(0.05)
        with self.lock:
            conns, self.conns = self.conns, []
        return conns


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Recorder, Path]]:
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    r = Recorder(pki["server"], pki["key"])
    yield r, pki["ca"]
    r.sock.close()


def _run(
    who: str, rec: tuple[Recorder, Path], *args: str, cwd: Path, stdin: bytes = b""
) -> tuple[int, list[Frames]]:
    r, ca = rec
    env = dict(os.environ, PYTHONPATH=str(REPO))
    argv = ["curl"] if who == "curl" else [sys.executable, "-m", "packetlab", "run", "http"]
    common = ["-s", "-o", os.devnull, "--cacert", str(ca), "--resolve",
              f"localhost:{r.port}:127.0.0.1"]  # fmt: skip
    done = subprocess.run([*argv, *common, *args], capture_output=True, timeout=60, env=env,
                          cwd=cwd, input=stdin)  # fmt: skip
    return done.returncode, _masked(r.take())


def _masked(conns: list[Frames]) -> list[Frames]:
    """The User-Agent's value masked (ours names itself), -F's boundary (random); what
    timing moves summed up:
    the SETTINGS ACK (when the server's SETTINGS came) counted at the end, a stream's
    DATA frames (how the windows and reads cut them) one entry where the first was, with
    the bytes, the largest frame and whether END_STREAM came on an empty one."""
    out = []
    for frames in conns:
        masked: Frames = []
        acks = 0
        data: dict[int, list[Any]] = {}
        for f in frames:
            if f[0] == "HEADERS":
                fields = [(k, b"*" if k == b"user-agent" else v) for k, v in f[2]]
                # -F: the boundary is random (curl's too)
                fields = [(k, re.sub(rb"boundary=-+[0-9a-f]+", b"boundary=*", v))
                          for k, v in fields]  # fmt: skip
                f = (*f[:2], fields, *f[3:])
            elif f[0] == "SETTINGS" and f[1]:
                acks += 1
                continue
            elif f[0] == "DATA":
                sid, n, end = f[1], f[2], f[3]
                if sid not in data:
                    data[sid] = ["DATA", sid, 0, 0, None]
                    masked.append(data[sid])  # type: ignore[arg-type]
                d = data[sid]
                d[2] += n
                d[3] = max(d[3], n)
                if end:
                    d[4] = "END_STREAM on an empty frame" if n == 0 else "END_STREAM"
                continue
            masked.append(f)
        masked = [tuple(f) for f in masked]
        out.append([*masked, ("SETTINGS ACKs", acks)])
    return out


def _compare(
    rec: tuple[Recorder, Path], tmp_path: Path, *args: str, stdin: bytes = b"",
    cut: bool = False,
) -> list[Frames]:  # fmt: skip
    url = f"https://localhost:{rec[0].port}"
    argv = [a.replace("URL", url).replace("PORT", str(rec[0].port)) for a in args]
    argv += ["--resolve", f"www.test:{rec[0].port}:127.0.0.1"]
    curl = _run("curl", rec, *argv, cwd=tmp_path, stdin=stdin)
    ours = _run("ours", rec, *argv, cwd=tmp_path, stdin=stdin)
    paced = ("SETTINGS", False, [(3, 100), (4, 204800), (2, 0)])  # --limit-rate 400k
    if "--limit-rate" in args and ours[1] and ours[1][0][1] == paced:
        # our stream window is the rate's lever, half a second of it (docs/http.md)
        ours[1][0][1] = ("SETTINGS", False, [(3, 100), (4, 1 << 25), (2, 0)])
    if any("/early" in a for a in args):  # how much went before the answer: timing
        for c in (*curl[1], *ours[1]):
            c[:] = [("DATA", f[1], "*", "*", f[4]) if f[0] == "DATA" else f for f in c]
    if cut:  # the largest DATA frame: whether the server's SETTINGS came before it
        for c in (*curl[1], *ours[1]):
            c[:] = [(*f[:3], "*", f[4]) if f[0] == "DATA" else f for f in c]
    # (our exit status is 1 for any failure, curl's code in %{exitcode}: docs/http.md)
    assert (ours[1], bool(ours[0])) == (curl[1], bool(curl[0])), (
        _diff(curl[1], ours[1]) + f"\nexit codes {curl[0]} {ours[0]}"
    )
    return ours[1]


def _diff(curl: list[Frames], ours: list[Frames]) -> str:
    lines = []
    for who, conns in (("curl", curl), ("ours", ours)):
        for i, c in enumerate(conns):
            lines.append(f"{who} connection {i}:")
            lines += [f"    {f}" for f in c]
    return "\n".join(lines)


CASES = {
    "get": ["URL/a"],
    "head": ["-I", "URL/a"],
    "post": ["-d", "a=1", "URL/p"],
    "post-big": ["--data-binary", "@big", "URL/p"],
    "upload": ["-T", "small", "URL/up"],
    "upload-big": ["-T", "big", "URL/up/"],
    "empty-field": ["-H", "X;", "URL/a"],
    "host": ["-H", "Host: h", "URL/a"],
    "upper": ["-H", "X-Upper: A", "-H", "ACCEPT: text/x", "URL/a"],
    "compressed": ["--compressed", "URL/a"],
    "range": ["-r", "0-10", "URL/a"],
    "user": ["-u", "u:p", "URL/a"],
    "cookie": ["-b", "a=1; b=2", "URL/a"],
    "referer": ["-e", "http://ref.test/x", "URL/a"],
    "follow": ["-L", "URL/r/302?to=/b"],
    "two": ["URL/a", "URL/b"],
    "parallel": ["--parallel", "URL/a", "URL/b"],
    # session 24 (h2cmp24), beyond the brief's list
    "form": ["-F", "a=1", "-F", "b=@small", "URL/f"],
    "empty-post": ["-d", "", "URL/e"],
    "stdin-pipe": ["-T", "-", "URL/u"],
    "stdin-empty": ["-T", "-", "URL/u0"],
    "post-302": ["-L", "-d", "a=1", "URL/r/302?to=/b"],
    "post-307": ["-L", "-d", "a=1", "URL/r/307?to=/b"],
    "put-x": ["-X", "PUT", "-d", "a", "URL/a", "URL/b"],
    "head-follow": ["-I", "-L", "URL/r/301?to=/b"],
    "removed": ["-H", "Accept:", "-H", "User-Agent:", "-H", "X-Gone:", "URL/a"],
    "hop-fields": [
        "-H",
        "Connection: keep-alive",
        "-H",
        "TE: trailers",
        "-H",
        "Keep-Alive: 5",
        "-H",
        "Upgrade: x",
        "-H",
        "Proxy-Connection: a",
        "-H",
        "Transfer-Encoding: chunked",
        "URL/a",
    ],
    "te-gzip": ["-H", "TE: gzip", "URL/a"],
    # (a value's trailing whitespace: curl keeps it, ours strips it; docs/http.md)
    "spaces": ["-H", "X-A:   v  w", "-H", "X-B:\tt", "URL/a"],
    "trailing": ["-A", "ua  ", "-e", "http://r.test/  ", "-b", "a=1 ", "URL/a"],
    "twice": ["-H", "X-A: 1", "-H", "x-a: 2", "-b", "c=1", "-H", "Cookie: d=2", "URL/a"],
    "big-field": ["-H", "X-Big: " + "y" * 20000, "URL/a"],
    "query": ["URL/a%20b/../c?q=1&r=%41#frag"],
    "path-as-is": ["--path-as-is", "URL/a/../b"],
    "authority": ["-H", "Host:", "URL/a"],
    "big-body": ["URL/n/40000000"],
    "max-filesize": ["--max-filesize", "10", "URL/n/100"],
    "user-follow": ["-u", "u:p", "-L", "URL/r/302?to=/b"],
    "referer-auto": ["-e", "http://x.test/;auto", "-L", "URL/r/302?to=/b"],
    "parallel-post": ["--parallel", "-d", "a=1", "URL/a", "URL/b", "URL/c"],
    "limit-up": ["--limit-rate", "400k", "-T", "big", "URL/up"],
    "early": ["-T", "big", "URL/early"],
    "early-next": ["-T", "big", "URL/early", "URL/b"],
    "other-host": ["-L", "URL/r/302?to=https://www.test:PORT/b", "URL/c"],
    "methods": ["-X", "DELETE", "URL/a", "-X", "OPTIONS", "--request-target", "*", "URL/"],
    "get-data": ["-G", "-d", "a=1", "-d", "b=2", "URL/a"],
    "json": ["--json", "{}", "URL/a"],
    "bearer": ["--oauth2-bearer", "t", "-u", "u:p", "URL/a"],
    "auth-other-host": ["-u", "u:p", "-L", "URL/r/302?to=https://www.test:PORT/b"],
    "resume": ["-C", "5", "URL/a"],
    "head-x": ["-X", "HEAD", "-I", "URL/a"],
    "ping": ["URL/ping"],
    # a broken server's connection: GOAWAY (PROTOCOL_ERROR), the next URL on a new one
    # (the failing one last: curl's exit status is the last transfer's, ours 1 if any)
    "zero-window": ["URL/zero", "URL/b", "URL/zero"],
    "even-stream": ["URL/even", "URL/b", "URL/even"],
    "zero-first": ["-w", "%{exitcode}", "URL/first/zero"],
    "parallel-three": ["--parallel", "--parallel-max", "2", "URL/a", "URL/b", "URL/c"],
}
STDIN = {"stdin-pipe": b"x" * 70000}


@pytest.mark.parametrize("case", sorted(CASES))
def test_frames_as_curl(rec: tuple[Recorder, Path], tmp_path: Path, case: str) -> None:
    (tmp_path / "small").write_bytes(b"hello\n")
    (tmp_path / "big").write_bytes(bytes(range(256)) * 400)  # 102,400 bytes
    _compare(rec, tmp_path, *CASES[case], stdin=STDIN.get(case, b""))


def test_data_frames_of_16_kib_past_a_larger_max_frame_size(
    rec: tuple[Recorder, Path], tmp_path: Path
) -> None:
    """A server allowing frames of 1 MiB still gets DATA frames of at most 16 KiB (curl's,
    nghttp2's); before session 24 ours were the upload's 64 KiB chunks."""
    (tmp_path / "big").write_bytes(bytes(range(256)) * 400)
    rec[0].settings = {h2.settings.SettingCodes.MAX_FRAME_SIZE: 1 << 20}
    try:
        ours = _compare(rec, tmp_path, "-T", "big", "URL/up")
    finally:
        rec[0].settings = {}
    assert ("DATA", 1, 102400, 16384, "END_STREAM") in ours[0]


@pytest.mark.parametrize("host", ["Host: h", "Host:"])
def test_verbose_authority_as_curl(rec: tuple[Recorder, Path], host: str) -> None:
    """-v's `h2h3 [:authority: ...]` and `> Host:` lines name the -H Host (none when it is
    removed), as curl's; before session 24 ours named the URL's."""
    r, ca = rec
    url = f"https://localhost:{r.port}/a"
    lines = {}
    for who in ("curl", "ours"):
        env = dict(os.environ, PYTHONPATH=str(REPO))
        argv = ["curl"] if who == "curl" else [sys.executable, "-m", "packetlab", "run", "http"]
        done = subprocess.run([*argv, "-sv", "-o", os.devnull, "--cacert", str(ca), "--resolve",
                               f"localhost:{r.port}:127.0.0.1", "-H", host, url],
                              capture_output=True, timeout=60, env=env)  # fmt: skip
        assert done.returncode == 0, (who, done.stderr)
        lines[who] = [
            x
            for x in done.stderr.splitlines()
            if (b"h2h3 [" in x or x.startswith(b"> ")) and b"user-agent" not in x
        ]
    r.take()
    assert lines["ours"] == lines["curl"]
    assert (b"* h2h3 [:authority: h]" in lines["ours"]) == (host == "Host: h")


def test_a_body_cut_by_its_answer_frees_the_stream(
    rec: tuple[Recorder, Path], tmp_path: Path
) -> None:
    """The server answers an upload after its first DATA frame and allows one stream at a
    time: the stream is reset (STREAM_CLOSED, curl's) before the next URL's request on
    the connection. Before session 24 ours left it open: the next request failed (h2's
    TooManyStreamsError, exit 1)."""
    (tmp_path / "big").write_bytes(bytes(range(256)) * 400)
    rec[0].settings = {h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1}
    try:
        ours = _compare(rec, tmp_path, "-T", "big", "URL/early", "URL/b")
    finally:
        rec[0].settings = {}
    assert [f[0] for f in ours[0][3:7]] == ["HEADERS", "DATA", "RST_STREAM", "HEADERS"]
    assert ours[0][5] == ("RST_STREAM", 1, 5)


@pytest.mark.parametrize("hold", [False, True])
def test_goaway_after_the_answer(rec: tuple[Recorder, Path], tmp_path: Path, hold: bool) -> None:
    """The server answers, then GOAWAY: the next URL on a new connection, and the
    server's SETTINGS acknowledged even when they came in the same read as the GOAWAY
    (`hold`), as curl's; before session 24 h2 dropped that ACK (h2 clears what it had to
    send on a GOAWAY)."""
    rec[0].hold = hold
    try:
        ours = _compare(rec, tmp_path, "URL/goaway", "URL/b")
    finally:
        rec[0].hold = False
    assert len(ours) == 2 and ours[0][-1] == ("SETTINGS ACKs", 1)


def test_h2c_prior_knowledge_frames_as_curl(rec: tuple[Recorder, Path], tmp_path: Path) -> None:
    """--http2-prior-knowledge on http:// (h2c from the first byte): the same frames, a
    GET, a POST and -T (one URL at a time: curl 7.88.1's second request on a reused
    prior-knowledge connection fails, exit 16, docs/http.md)."""
    (tmp_path / "pki").mkdir()
    pki = make_pki(tmp_path / "pki")
    plain = Recorder(pki["server"], pki["key"], plain=True)
    (tmp_path / "big").write_bytes(bytes(range(256)) * 400)
    try:
        for args in (["URL/a"], ["-d", "a=1", "URL/p"], ["-T", "big", "URL/up"]):
            url = f"http://127.0.0.1:{plain.port}"
            argv = ["--http2-prior-knowledge", *[a.replace("URL", url) for a in args]]
            curl = _run("curl", (plain, rec[1]), *argv, cwd=tmp_path)
            ours = _run("ours", (plain, rec[1]), *argv, cwd=tmp_path)
            assert ours == curl, _diff(curl[1], ours[1])
    finally:
        plain.sock.close()


# (a stream window the server makes small in a second SETTINGS: curl on loopback reads it
# before its body's first DATA, ours sends the default window's first: timing, `cut`)
# (not compared: --parallel past a server's MAX_CONCURRENT_STREAMS, docs/http.md)
SERVER_SETTINGS = {
    "small-window-upload": ({4: 1000}, ["-T", "big", "URL/up"]),
    "small-window-parallel": ({4: 1000}, ["--parallel", "-T", "big", "URL/u1", "URL/u2"]),
}


@pytest.mark.parametrize("case", sorted(SERVER_SETTINGS))
def test_frames_as_curl_under_server_settings(
    rec: tuple[Recorder, Path], tmp_path: Path, case: str
) -> None:
    """The server's SETTINGS: a stream window of 1000 bytes."""
    (tmp_path / "big").write_bytes(bytes(range(256)) * 400)
    settings, args = SERVER_SETTINGS[case]
    rec[0].settings = settings
    try:
        _compare(rec, tmp_path, *args, cut="window" in case)
    finally:
        rec[0].settings = {}
