"""The proxy's setup port against hand-built frames, on a real ``twistd pktproxy``
(session 36, spec36).

BROKER-PROXY-OBSERVED.md §4.1: after TLS a manager sends one ``xreg(snikey)`` (P §4.6:
1..63 of ``[a-z0-9]``), reads its ``result``, sends close_notify and echoes ``PKTLAB``.
Each frame that is not that one xreg is refused with a line naming what was wrong, and
the connection closed with no ``result`` and no preamble: a malformed xreg (upper case,
64 characters, empty), an unknown type, an xreg sent twice in one record (taken as one
registration before: the second was never read), and an xreg cut at each byte before
the manager leaves. A manager registering properly is then served, and an endpoint
spliced to it.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

import broker_world
import pytest
from pxworld import ProxyProc, client_hello, closed_by_peer, receive_hello, register
from test_hostile_proxy import _tls_setup as _after_tls  # (a manager after TLS, no xreg)

from packetlab import wire
from packetlab.ppks import PktlabHome
from packetlab.tls.handoff import TLSHandoff

home, proxy = broker_world.home, broker_world.proxy  # fixtures

XREG = wire.encode(wire.Xreg(b"spec36good"))


def wait_for(ok: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.05)


def _answers(tls: TLSHandoff, raw: bytes) -> list[wire.Item]:
    """The frames inside what the proxy sent before closing (session tickets aside)."""
    try:
        step = tls.receive(raw)
    except Exception:  # an alert or a cut record: no frame in it
        return []
    return list(wire.Framer().feed(step.data)) if step.data else []


BAD = {
    "upper-case snikey": (b"\x80\x00\x00\x03ABC", "got a malformed xreg: xreg snikey must be"),
    "64-character snikey": (b"\x80\x00\x00\x40" + b"a" * 64, "got a malformed xreg: xreg snikey"),
    "empty snikey": (b"\x80\x00\x00\x00", "got a malformed xreg: xreg snikey must be 1..63"),
    "unknown type": (b"\x99\x00\x00\x02hi", "got an unknown message type 0x99"),
    "xreg twice in one record": (XREG + XREG, "expected one xreg, got 2 messages at once"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_frame_that_is_not_one_good_xreg_is_refused_naming_it(
    proxy: ProxyProc, case: str
) -> None:
    frame, said = BAD[case]
    before = len(proxy.text())
    s, tls = _after_tls(proxy.setup)
    try:
        s.sendall(tls.send(frame))
        rest = closed_by_peer(s, timeout=10)
    finally:
        s.close()
    assert b"PKTLAB" not in rest
    assert _answers(tls, rest) == [], case  # no result: nothing was registered
    wait_for(lambda: said in proxy.text()[before:], what=said)
    assert "Traceback" not in proxy.text()


def test_an_xreg_cut_at_each_byte_is_one_line_and_the_proxy_serves_on(
    home: PktlabHome, tmp_path: Path
) -> None:
    """A proxy of its own: its 14 lines and the cases above together would pass the
    setup port's log budget (20 lines a minute)."""
    proxy = ProxyProc(tmp_path, home.root)
    try:
        _cut_at_each_byte(proxy)
    finally:
        proxy.stop()


def _cut_at_each_byte(proxy: ProxyProc) -> None:
    before = len(proxy.text())
    for cut in range(len(XREG)):
        s, tls = _after_tls(proxy.setup)
        if cut:
            s.sendall(tls.send(XREG[:cut]))
        s.shutdown(socket.SHUT_WR)
        closed_by_peer(s, timeout=10)
        s.close()
    n = len(XREG)
    wait_for(
        lambda: proxy.text()[before:].count("closed by the manager before its xreg") >= n,
        what=f"{n} lines 'closed by the manager before its xreg'",
    )
    backlog = register(proxy.setup, "spec36good")
    wait_for(lambda: "registered for snikey spec36good" in proxy.text(), what="registration")
    hello = client_hello("spec36good")
    ep = socket.create_connection(("127.0.0.1", proxy.endpoints), timeout=10)
    try:
        ep.sendall(hello)
        receive_hello(backlog, hello)  # forwarded unchanged
    finally:
        ep.close()
        backlog.close()
    assert "Traceback" not in proxy.text()
