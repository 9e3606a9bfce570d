"""Replay the controller side of the reference sessions (../shared/spec/traces) against our
endpoint, with the servers those sessions talked to running locally (HTTP on
127.0.0.1:80, DNS on 127.0.0.1:53), and compare what comes back.

Requests are sent exactly as recorded (same bytes), one segment at a time: after each
request we read until the messages the reference endpoint sent before the next request
have arrived. The comparison is on message types in order, as the reference sessions
show them, with runs of ndata counted as one (how a TCP stream splits into reads depends
on timing); payloads, tags and status codes are compared where they are deterministic.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import EndpointProcess, RawController
from spec_traces import TRACES

from packetlab import wire

PAGE = b"<html><body><h1>hello from the pktref loopback http server</h1></body></html>\n"

pytestmark = pytest.mark.root


def load(name: str) -> list[dict[str, str]]:
    path = TRACES / f"{name}.session.json"
    if not path.exists():
        pytest.skip(f"reference trace {path} not found")
    return json.loads(path.read_text())


def need_root_port(kind: int, port: int) -> socket.socket:
    if os.geteuid() != 0:
        pytest.skip(f"binding 127.0.0.1 port {port} needs root")
    s = socket.socket(socket.AF_INET, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
    except OSError as e:
        s.close()
        pytest.skip(f"127.0.0.1 port {port} is not free: {e}")
    return s


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[None]:
    probe = need_root_port(socket.SOCK_STREAM, 80)
    probe.close()
    (tmp_path / "index.html").write_bytes(PAGE)

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = partial(Quiet, directory=str(tmp_path))
    try:
        httpd = ThreadingHTTPServer(("127.0.0.1", 80), handler)
    except OSError as e:
        pytest.skip(f"cannot serve HTTP on 127.0.0.1:80: {e}")
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def dns_server() -> Iterator[bytes]:
    """Answers every query on 127.0.0.1:53 with the response the reference session got."""
    trace = load("dns")
    answer = next(wire.decode_frame(bytes.fromhex(m["hex"])) for m in trace if m["name"] == "ndata")
    assert isinstance(answer, wire.Ndata)
    sock = need_root_port(socket.SOCK_DGRAM, 53)
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                query, peer = sock.recvfrom(2048)
            except TimeoutError:
                continue
            sock.sendto(query[:2] + answer.data[2:], peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield answer.data
    stop.set()
    thread.join()
    sock.close()


def collapse(names: list[str]) -> list[str]:
    out: list[str] = []
    for n in names:
        if not (n == "ndata" and out and out[-1] == "ndata"):
            out.append(n)
    return out


def replay(c: RawController, trace: list[dict[str, str]]) -> list[list[wire.Message]]:
    """Send each recorded request; return what came back in each segment."""
    segments: list[tuple[bytes, list[str]]] = []
    for m in trace:
        if m["dir"] == "xpmgr->endpt":
            segments.append((bytes.fromhex(m["hex"]), []))
        else:
            segments[-1][1].append(m["name"])
    got: list[list[wire.Message]] = []
    for frame, expected in segments:
        c.send(frame)
        want = collapse(expected)
        seen: list[wire.Message] = []
        while collapse([m.NAME for m in seen]) != want:
            assert len(collapse([m.NAME for m in seen])) <= len(want), (
                f"after {wire.decode_frame(frame).NAME}: reference sent {expected}, "
                f"we sent {[m.NAME for m in seen]}"
            )
            seen.append(c.recv(timeout=5))
        got.append(seen)
    return got


def test_http_get_session(
    http_server: None, endpoint_factory: Callable[..., EndpointProcess]
) -> None:
    trace = load("http_get")
    c = endpoint_factory().accept()
    got = replay(c, trace)
    flat = [m for seg in got for m in seg]
    body = b"".join(m.data for m in flat if isinstance(m, wire.Ndata))
    assert body.startswith(b"HTTP/1.0 200 OK\r\n") and body.endswith(PAGE)
    ref = [wire.decode_frame(bytes.fromhex(m["hex"])) for m in trace if m["dir"] != "xpmgr->endpt"]
    ref_tags = [(m.sktid, m.tag, m.errid) for m in ref if isinstance(m, wire.Ntag)]
    assert [(m.sktid, m.tag, m.errid) for m in flat if isinstance(m, wire.Ntag)] == ref_tags
    ref_stat = [(m.code, m.raddr, m.rport) for m in ref if isinstance(m, wire.Nstat)]
    assert [(m.code, m.raddr, m.rport) for m in flat if isinstance(m, wire.Nstat)] == ref_stat
    assert [m for m in flat if isinstance(m, wire.Result)] == [
        m for m in ref if isinstance(m, wire.Result)
    ]


def test_dns_session(dns_server: bytes, endpoint_factory: Callable[..., EndpointProcess]) -> None:
    trace = load("dns")
    c = endpoint_factory().accept()
    got = replay(c, trace)
    flat = [m for seg in got for m in seg]
    ref = [wire.decode_frame(bytes.fromhex(m["hex"])) for m in trace if m["dir"] != "xpmgr->endpt"]
    (ndata,) = [m for m in flat if isinstance(m, wire.Ndata)]
    (ref_ndata,) = [m for m in ref if isinstance(m, wire.Ndata)]
    assert (ndata.raddr, ndata.rport, ndata.data) == (
        ref_ndata.raddr,
        ref_ndata.rport,
        ref_ndata.data,
    )
    assert [m.NAME for m in flat] == [m.NAME for m in ref]
    assert [m for m in flat if isinstance(m, wire.Result)] == [
        m for m in ref if isinstance(m, wire.Result)
    ]
