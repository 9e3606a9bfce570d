"""`pktlab run http` beside curl 7.88.1 (nghttp2 1.52) over HTTP/2, frame by frame: a TLS
server (ALPN h2; the `h2` library answers) records every frame each connection brings,
decoded (hyperframe, hpack): the preface, SETTINGS ids and values in order,
WINDOW_UPDATE increments, HEADERS as the decoded field list (case kept), DATA sizes and
END_STREAM, PRIORITY, RST_STREAM and GOAWAY codes. The same arguments must give the same
sequences, the User-Agent masked (ours names itself)."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_http_curl_side_by_side import REPO, make_pki, pytestmark  # noqa: F401

h2 = pytest.importorskip("h2")
import h2.config  # noqa: E402
import h2.connection  # noqa: E402
import h2.events  # noqa: E402
import hpack  # noqa: E402
from hyperframe import frame as hf  # noqa: E402

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
Frames = list[tuple[Any, ...]]


class Recorder:
    """A TLS HTTP/2 server on 127.0.0.1: each connection's frames as they came (a list a
    connection, in `conns`). Answers each request when its stream ended: /r/CODE?to=X a
    redirect, anything else 200 with a small body; a HEAD without one."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(cert), str(key))
        self.ctx.set_alpn_protocols(["h2"])
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns: list[Frames] = []
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
            conn = self.ctx.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        config = h2.config.H2Configuration(
            client_side=False, validate_inbound_headers=False, normalize_inbound_headers=False
        )
        server = h2.connection.H2Connection(config=config)
        server.initiate_connection()
        conn.settimeout(20)
        buf = b""
        decoder = hpack.Decoder()
        block: list[Any] = []  # a header block's frames until END_HEADERS
        paths: dict[int, str] = {}
        try:
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
                for ev in server.receive_data(got):
                    if isinstance(ev, h2.events.RequestReceived):
                        paths[ev.stream_id] = dict(ev.headers).get(b":path", b"/").decode()
                        if dict(ev.headers).get(b":method") == b"HEAD":
                            paths[ev.stream_id] = "HEAD " + paths[ev.stream_id]
                    elif isinstance(ev, h2.events.DataReceived):
                        server.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded):
                        self._answer(server, ev.stream_id, paths.get(ev.stream_id, "/"))
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
                                   "END_STREAM" in set(first.flags), prio))  # fmt: skip
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
    def _answer(server: Any, sid: int, path: str) -> None:
        head = path.startswith("HEAD ")
        path = path.removeprefix("HEAD ")
        body = b"fine\n"
        headers = [(":status", "200")]
        if path.startswith("/r/"):
            code, _, to = path[3:].partition("?to=")
            headers = [(":status", code), ("location", to)]
            body = b"moved"
        headers.append(("content-length", str(len(body))))
        server.send_headers(sid, headers, end_stream=head)
        if not head:
            server.send_data(sid, body, end_stream=True)

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


def _run(who: str, rec: tuple[Recorder, Path], *args: str, cwd: Path) -> list[Frames]:
    r, ca = rec
    env = dict(os.environ, PYTHONPATH=str(REPO))
    argv = ["curl"] if who == "curl" else [sys.executable, "-m", "packetlab", "run", "http"]
    common = ["-s", "-o", os.devnull, "--cacert", str(ca), "--resolve",
              f"localhost:{r.port}:127.0.0.1"]  # fmt: skip
    done = subprocess.run([*argv, *common, *args], capture_output=True, timeout=60, env=env,
                          cwd=cwd)  # fmt: skip
    assert done.returncode == 0, (who, done.stderr)
    return _masked(r.take())


def _masked(conns: list[Frames]) -> list[Frames]:
    """The User-Agent's value masked (ours names itself), --compressed's Accept-Encoding
    as ours (curl's asks for br and zstd too, documented in docs/http.md); what timing moves summed up:
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
                # Debian's curl has brotli and zstd, we decode neither (docs/http.md)
                fields = [(k, b"deflate, gzip" if v == b"deflate, gzip, br, zstd" else v)
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


def _compare(rec: tuple[Recorder, Path], tmp_path: Path, *args: str) -> list[Frames]:
    url = f"https://localhost:{rec[0].port}"
    argv = [a.replace("URL", url) for a in args]
    curl = _run("curl", rec, *argv, cwd=tmp_path)
    ours = _run("ours", rec, *argv, cwd=tmp_path)
    assert ours == curl, _diff(curl, ours)
    return ours


def _diff(curl: list[Frames], ours: list[Frames]) -> str:
    lines = []
    for who, conns in (("curl", curl), ("ours", ours)):
        for i, c in enumerate(conns):
            lines.append(f"{who} connection {i}:")
            lines += [f"    {f}" for f in c]
    return "\n".join(lines)


def test_probe(rec: tuple[Recorder, Path], tmp_path: Path) -> None:
    url = f"https://localhost:{rec[0].port}"
    for who in ("curl", "ours"):
        for c in _run(who, rec, f"{url}/a", cwd=tmp_path):
            print(who)
            for f in c:
                print("  ", f)


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
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_frames_as_curl(rec: tuple[Recorder, Path], tmp_path: Path, case: str) -> None:
    (tmp_path / "small").write_bytes(b"hello\n")
    (tmp_path / "big").write_bytes(bytes(range(256)) * 400)  # 102,400 bytes
    _compare(rec, tmp_path, *CASES[case])


def test_probe2(rec: tuple[Recorder, Path], tmp_path: Path) -> None:
    url = f"https://localhost:{rec[0].port}"
    for args, stdin in ((["-T", "-", f"{url}/u"], b"x" * 70000), (["-d", "", f"{url}/e"], b""),
                        (["-F", "a=1", f"{url}/f"], b""), (["-T", "-", f"{url}/u"], b"")):
        for who in ("curl", "ours"):
            r, ca = rec
            env = dict(os.environ, PYTHONPATH=str(REPO))
            argv = ["curl"] if who == "curl" else [sys.executable, "-m", "packetlab", "run", "http"]
            subprocess.run([*argv, "-s", "-o", os.devnull, "--cacert", str(ca), "--resolve",
                            f"localhost:{r.port}:127.0.0.1", *args], input=stdin, env=env, timeout=60)
            for c in r.take():
                print(who, args)
                for f in c:
                    if f[0] == "DATA" or f[0] == "HEADERS":
                        print("  ", f)
