"""How a real endpoint closes the controller connection (issue 15, defect 3).

After ECTLBADMSG or `end` every answer queued before it must reach the controller, then a
clean end of stream (FIN; over TLS a close_notify first), never a reset, even while the
controller keeps sending (PROTOCOL.md §1.4: answer, then disconnect). A reset would make
the controller's kernel throw away answers it had received but not yet read.
"""

from __future__ import annotations

import select
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import EndpointProcess, RawController
from testkit.poll import poll_until
from tls_world import TLSController, TLSEndpoint, controller_chain, pktlab_init

from packetlab import wire
from packetlab.wire import vmem

BAD_NCLOSE = b"\x2b\x00\x00\x00"  # nclose with an empty body: malformed
MREAD = wire.Mread(addr=vmem.SYS_BASE, len=65535)


def read_to_end(sock: socket.socket, timeout: float = 10.0) -> tuple[list[wire.Item], str]:
    """Every frame until the stream ends; and how it ended ("eof", "reset", "timeout")."""
    framer = wire.Framer()
    items: list[wire.Item] = []
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(1 << 20)
        except ConnectionResetError:
            return items, "reset"
        except ssl.SSLEOFError:  # TCP FIN without close_notify (ragged EOFs not suppressed)
            return items, "eof without close_notify"
        except TimeoutError:
            break
        if not data:
            return items, "eof"
        items.extend(framer.feed(data))
    return items, "timeout"


def answering(sock: socket.socket) -> None:
    """Return once the endpoint's answers are arriving (peeked, not read: the controller
    has not seen them yet), i.e. it has handled what was sent so far."""
    poll_until(lambda: select.select([sock], [], [], 0)[0], what="the endpoint's answers")


def misbehave(c: RawController) -> tuple[list[wire.Item], str]:
    """Two 64 KiB mreads and a malformed nclose in one write; 8 more bytes once answers
    arrive (the controller has not read them yet); then read everything."""
    c.start()
    c.send(wire.encode(MREAD) * 2 + BAD_NCLOSE)
    answering(c.sock)
    try:
        c.sock.sendall(b"\x00" * 8)
    except OSError:
        pass  # already reset: read_to_end reports it
    return read_to_end(c.sock)


def expected() -> list[type]:
    return [wire.Mdata, wire.Mdata, wire.Result]


def check(items: list[wire.Item], how: str) -> None:
    assert [type(i) for i in items] == expected(), items
    assert items[2] == wire.Result(wire.Status.ECTLBADMSG)
    assert how == "eof", f"the stream ended with {how}, not a clean close"


def test_answers_before_a_malformed_frame_arrive_then_a_clean_close(
    endpoint_factory: Callable[..., EndpointProcess],
) -> None:
    ep = endpoint_factory(args=["--reconnect-delay", "0.05"])
    c = ep.accept()
    check(*misbehave(c))
    c.close()
    # The endpoint is healthy and takes the next session.
    c2 = ep.accept()
    c2.start()
    assert c2.mread(vmem.IP4NO.addr, 1) == b"\x01"


def test_yield_after_pipelined_requests_flushes_everything_then_closes(
    endpoint_factory: Callable[..., EndpointProcess],
) -> None:
    ep = endpoint_factory()
    c = ep.accept()
    c.start()
    c.send(wire.encode(MREAD) * 8 + wire.encode(wire.Yield(rhint=0)) + wire.encode(MREAD) * 4)
    answering(c.sock)
    c.sock.sendall(wire.encode(MREAD) * 4)  # the controller is still talking: discarded
    items, how = read_to_end(c.sock)
    assert [type(i) for i in items] == [wire.Mdata] * 8 + [wire.Result], items
    assert items[-1] == wire.Result(0)
    assert how == "eof", how


def test_endpoint_closes_within_a_bound_while_the_controller_keeps_talking(
    endpoint_factory: Callable[..., EndpointProcess],
) -> None:
    """A controller that never stops sending cannot hold the connection open."""
    ep = endpoint_factory()
    c = ep.accept()
    c.start()
    c.send(wire.Yield(rhint=0))
    assert c.response() == wire.Result(0)
    c.sock.settimeout(0.05)
    deadline = time.monotonic() + 20
    ended = None
    while time.monotonic() < deadline:
        try:
            c.sock.sendall(wire.encode(MREAD))
            time.sleep(0.05)
        except OSError as e:  # EPIPE or a reset: the endpoint has let go
            ended = e
            break
    assert ended is not None, "the endpoint kept the connection open for 20 s"
    assert ep.proc.poll() is None


@pytest.fixture
def tls_pair(tmp_path: Path) -> Iterator[tuple[TLSController, TLSEndpoint]]:
    home = pktlab_init(tmp_path / "home")
    chain = controller_chain(home, tmp_path / "chain")
    ctl = TLSController(chain, home.key_path("k_xc"), tmp_path)
    ep = TLSEndpoint(home, ctl.address, tmp_path)
    yield ctl, ep
    ep.stop()
    ctl.close()


def test_over_tls_too(tls_pair: tuple[TLSController, TLSEndpoint]) -> None:
    ctl, _ = tls_pair
    ctl.listener.settimeout(15)
    sock, _ = ctl.listener.accept()
    sock.settimeout(15)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # Ragged EOFs not suppressed: a FIN without close_notify shows up as SSLEOFError.
    tls = ctl.ctx.wrap_socket(sock, server_side=True, suppress_ragged_eofs=False)
    c = RawController(tls)
    try:
        check(*misbehave(c))
    finally:
        c.close()


def test_a_half_close_after_pipelined_requests_gets_every_answer(
    endpoint_factory: Callable[..., EndpointProcess],
) -> None:
    """2,000 mreads of 64 KiB, then `shutdown(SHUT_WR)`, then the controller reads: every
    answer, then a clean close (session 20: 1,912 of 2,000; the EOF dropped what was
    still queued)."""
    ep = endpoint_factory(args=["--reconnect-delay", "0.05"])
    c = ep.accept()
    c.start()
    c.send(wire.encode(MREAD) * 2000)
    c.sock.shutdown(socket.SHUT_WR)
    answering(c.sock)
    time.sleep(0.5)  # the endpoint reads the EOF while its answers wait (not a sync point)
    frame = len(wire.encode(wire.Mdata(addr=MREAD.addr, data=bytes(MREAD.len))))
    total = 0
    c.sock.settimeout(10)
    while data := c.sock.recv(1 << 20):
        total += len(data)
    assert total == 2000 * frame, (total // frame, total % frame)
    c.close()
    c2 = ep.accept()
    c2.start()
    assert c2.mread(vmem.IP4NO.addr, 1) == b"\x01"
    assert "Traceback" not in ep.output()
