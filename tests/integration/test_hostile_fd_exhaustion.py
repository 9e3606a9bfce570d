"""Silent connections until the descriptors run out, against a real `twistd pktbroker`
and a real `pktlab xpmgr` (passive mode), each started under a 256-descriptor limit.

300 TCP connections that never send a byte: each held a descriptor (and an OpenSSL
session) until the 30 s handshake deadline, the limit was reached, and Twisted then
closed every new connection at accept ("EMFILE recovery: Closed socket"), a real
subscriber's or endpoint's too: it was served only after 22-24 s, when the first deadlines
freed descriptors (and never, had the flood gone on). Now at most 1/8 of the limit (32)
are in the handshake at once, each new one past it closes the oldest (one log line per
episode), and the real peer is served at once.
"""

from __future__ import annotations

import resource
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from broker_world import BrokerProcess, Identity, RawClient
from procstat import open_fds
from pxworld import EndpointProc, XpmgrProc
from testkit.net import paced
from testkit.poll import accept_queue, poll_until
from tls_world import pktlab_init

NOFILE = 256
SILENT = 300


@contextmanager
def low_nofile() -> Iterator[None]:
    """Children started inside get a soft descriptor limit of NOFILE."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@contextmanager
def silent_flood(port: int, pid: int) -> Iterator[list[socket.socket]]:
    """SILENT silent connections to `port`, once the server (`pid`) has accepted them all
    and holds fewer than NOFILE / 2 descriptors (before the fix: it held them all for the
    handshake deadline, 30 s)."""
    socks = paced(lambda _: socket.create_connection(("127.0.0.1", port), timeout=5), port, SILENT)
    try:
        poll_until(lambda: accept_queue(port) == 0, what=f"all {SILENT} accepted")
        # (the oldest past the cap are closed as new ones come: a few reactor turns)
        poll_until(
            lambda: open_fds(pid) < NOFILE // 2,
            timeout=2,
            what=lambda: f"fewer than {NOFILE // 2} descriptors (holds {open_fds(pid)})",
        )
        yield socks
    finally:
        for s in socks:
            s.close()


def test_broker_serves_a_subscriber_through_a_flood_of_silent_connections(
    tmp_path: Path,
) -> None:
    home = pktlab_init(tmp_path / "home")
    with low_nofile():
        broker = BrokerProcess(home, tmp_path, error_delay=0)
    try:
        pid = broker.proc.pid  # type: ignore[union-attr]
        with silent_flood(broker.sub_port, pid):
            ident = Identity(home, tmp_path, "real")
            started = time.monotonic()
            sub = ident.subscribe(broker.sub_port)  # TLS handshake, xcert, xsub answered
            took = time.monotonic() - started
            sub.close()
            assert took < 10, f"served after {took:.1f} s"
        out = broker.output()
        assert "connections in the handshake (cap 32)" in out, out[-3000:]
        assert "EMFILE" not in out, out[-3000:]
        assert "Traceback" not in out
    finally:
        broker.stop()


def test_xpmgr_serves_an_endpoint_through_a_flood_of_silent_connections(
    tmp_path: Path,
) -> None:
    home = pktlab_init(tmp_path / "home").root
    mlet = tmp_path / "mlet.py"
    mlet.write_text("print('mlet ran')\n")
    with low_nofile():
        xp = XpmgrProc(tmp_path, home / "xpmgr.conf", [sys.executable, str(mlet)])
    ep = None
    try:
        port = xp.port()
        with silent_flood(port, xp.proc.pid):
            ep = EndpointProc(tmp_path, home, f"127.0.0.1:{port}", "--sessions", "1")
            xp.wait_log("mlet ran", timeout=15)  # was: ~22 s (the flood's deadlines)
        out = xp.text()
        assert "connections in the handshake (cap 32)" in out, out[-3000:]
        assert "EMFILE" not in out, out[-3000:]
    finally:
        if ep is not None:
            ep.stop()
        xp.stop()


def test_broker_serves_a_subscriber_through_a_flood_of_silent_tls_links(tmp_path: Path) -> None:
    """Anyone can make an agent certificate: 300 links that finish TLS and then send
    nothing. Each held a descriptor for the 30 s idle timeout; the 243rd and every later
    client (a real subscriber too) were closed at accept. Now at most 1/8 of the limit
    wait for their xsub/xpub per port, the oldest closed for each new one."""
    home = pktlab_init(tmp_path / "home")
    with low_nofile():
        broker = BrokerProcess(home, tmp_path, error_delay=0)
    silent = Identity(home, tmp_path, "silent")
    links: list[RawClient] = []
    try:
        pid = broker.proc.pid  # type: ignore[union-attr]
        for _ in range(SILENT):
            links.append(RawClient(broker.sub_port, silent.cert_path, silent.key_path))
        assert open_fds(pid) < NOFILE // 2, open_fds(pid)
        sub = Identity(home, tmp_path, "real").subscribe(broker.sub_port)
        sub.close()
        out = broker.output()
        assert "links without an xsub/xpub (cap 32)" in out, out[-3000:]
        assert "EMFILE" not in out and "Traceback" not in out, out[-3000:]
    finally:
        for c in links:
            c.close()
        broker.stop()
