"""Our controller drives an endpoint that reads one message per TLS record, as the reference
endpoint does (INTEROP.md: it handles one message per socket wake-up and ignores what
OpenSSL already decrypted, so a record holding several requests stalls it).

The test-side endpoint is a thread with a blocking stdlib TLS socket: each `recv` returns at
most one record; it answers exactly one message per `recv` and keeps the rest for later.
With our controller (one record per message) the experiment completes; with Twisted's
default TLS factory (which joins the writes of one reactor turn into one record) the same
experiment stalls, which shows the fake is as strict as the reference.
"""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path
from typing import Any

import pytest_twisted
from testkit.net import port_of
from tls_world import pktlab_init
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.protocols.tls import TLSMemoryBIOFactory

from packetlab import wire
from packetlab.controller import Controller, EndpointSession
from packetlab.controller.local import tls_server
from packetlab.ppks import PktlabHome
from packetlab.wire import Mdata, Mread, Result, Start

PIPELINED = 20
HEADER = 4  # type u8, length u24


class OneRecordEndpoint(threading.Thread):
    """Connects to `port`, then per wake-up: one record in, at most one message handled."""

    def __init__(self, home: PktlabHome, port: int, snikey: str) -> None:
        super().__init__(daemon=True)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the PPKS check is not what this test is about
        ctx.load_cert_chain(str(home.cert_path("subcmd_eop_ep")), str(home.key_path("k_ep")))
        self.ctx, self.port, self.snikey = ctx, port, snikey
        self.frames_per_record: list[int] = []
        self.handled: list[wire.Message] = []
        self.error: BaseException | None = None
        self.tls: ssl.SSLSocket

    def run(self) -> None:
        buf = b""
        try:
            # In this thread: the handshake needs the reactor (main thread) running.
            raw = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.tls = self.ctx.wrap_socket(raw, server_hostname=self.snikey)
            while True:
                try:
                    data = self.tls.recv(1 << 16)  # SSL_read: never more than one record
                except (TimeoutError, ssl.SSLError, OSError):
                    return
                if not data:
                    return
                self.frames_per_record.append(_count_frames(data))
                buf += data
                frame, buf = _take_one(buf)
                if frame is not None:
                    self._answer(wire.decode_frame(frame))
        except BaseException as e:  # reported by the test
            self.error = e
        finally:
            tls = getattr(self, "tls", None)
            if tls is not None:
                tls.close()

    def _answer(self, msg: Any) -> None:
        self.handled.append(msg)
        if isinstance(msg, Mread):
            reply: wire.Message = Mdata(msg.addr, bytes(msg.len))
        else:
            reply = Result(0)
        self.tls.sendall(wire.encode(reply))


def _take_one(buf: bytes) -> tuple[bytes | None, bytes]:
    if len(buf) < HEADER:
        return None, buf
    n = HEADER + int.from_bytes(buf[1:4], "big")
    if len(buf) < n:
        return None, buf
    return buf[:n], buf[n:]


def _count_frames(data: bytes) -> int:
    count = 0
    while True:
        frame, data = _take_one(data)
        if frame is None:
            return count
        count += 1


async def _run(home: PktlabHome, server: Any, snikey: str, wait: float) -> tuple[Any, Any]:
    async def experiment(session: EndpointSession) -> int:
        reads = [session.mread(0x10010000, 8) for _ in range(PIPELINED)]  # one reactor turn
        for d in reads:
            await d
        return len(reads)

    ctl: Controller[int] = Controller(experiment, reactor=reactor, limit=1)
    port = await ctl.listen(server)
    ep = OneRecordEndpoint(home, port_of(port), snikey)
    ep.start()
    try:
        outcome = await ctl.next_outcome().addTimeout(wait, reactor)
    except defer.TimeoutError:
        outcome = None
    finally:
        await ctl.stop()
        ep.join(10)
    return outcome, ep


@pytest_twisted.ensureDeferred
async def test_controller_runs_experiment_on_one_record_endpoint(tmp_path: Path) -> None:
    home = pktlab_init(tmp_path / "home")
    server = tls_server(reactor, "tcp:0:interface=127.0.0.1", home, "exp1")
    outcome, ep = await _run(home, server, "exp1", wait=20.0)
    assert ep.error is None, ep.error
    assert outcome is not None, f"stalled; endpoint handled {ep.handled}"
    assert outcome.unwrap() == PIPELINED
    assert isinstance(ep.handled[0], Start)
    assert sum(isinstance(m, Mread) for m in ep.handled) == PIPELINED
    # Every record held exactly one message.
    assert set(ep.frames_per_record) == {1}, ep.frames_per_record


@pytest_twisted.ensureDeferred
async def test_a_packing_controller_stalls_the_same_endpoint(tmp_path: Path) -> None:
    """The control: the same experiment through Twisted's write-joining TLS factory."""
    home = pktlab_init(tmp_path / "home")
    ppks = tls_server(reactor, "tcp:0:interface=127.0.0.1", home, "exp1")
    options = ppks._options  # the same certificates and SNI map, without PPKSTLSFactory

    class Packing:
        def listen(self, factory: Any) -> Any:
            wrapped = TLSMemoryBIOFactory(options, False, factory)
            return TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(wrapped)

    outcome, ep = await _run(home, Packing(), "exp1", wait=3.0)
    assert outcome is None  # stalled: several requests arrived in one record
    assert max(ep.frames_per_record) > 1
