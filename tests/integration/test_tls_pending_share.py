"""At the cap on TLS handshakes in progress, which one a new connection closes, against a
real `twistd pktbroker` (the TLS factory is every TLS server's: endpoint listen mode,
broker, proxy setup port, passive controller / xpmgr).

The cap (`PPKSTLSFactory.pending_max`, 1/8 of the descriptor limit) closed the oldest
handshake of all for each new connection: a flood of silent TCP connections from one
address (127.0.0.2) closed a real client's handshake from 127.0.0.1 that began before
it. Now the one closed is the oldest of the address holding the most.
"""

from __future__ import annotations

import select
import socket
import ssl
from pathlib import Path

from broker_world import BrokerProcess, Identity
from test_hostile_fd_exhaustion import NOFILE, low_nofile
from testkit.net import paced
from testkit.poll import accept_queue, poll_until
from tls_world import pktlab_init

from packetlab import wire

FLOOD = 200  # silent connections from 127.0.0.2: past the cap (NOFILE // 8 = 32)


def begin_handshake(port: int, ident: Identity) -> ssl.SSLSocket:
    """A TLS client from 127.0.0.1 whose ClientHello the broker has answered: its
    handshake is in progress there until this client sends its certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the broker's agent cert is PPKS, checked elsewhere
    ctx.load_cert_chain(str(ident.cert_path), str(ident.key_path))
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    tls = ctx.wrap_socket(raw, do_handshake_on_connect=False)
    tls.setblocking(False)
    try:
        tls.do_handshake()  # sends the ClientHello
    except ssl.SSLWantReadError:
        pass
    readable, _, _ = select.select([tls], [], [], 15)
    assert readable, "no ServerHello in 15 s"
    tls.settimeout(10)
    return tls


def test_a_flood_from_one_address_closes_its_own_handshakes_not_an_earlier_real_one(
    tmp_path: Path,
) -> None:
    home = pktlab_init(tmp_path / "home")
    with low_nofile():
        broker = BrokerProcess(home, tmp_path, error_delay=0)
    real = Identity(home, tmp_path, "real")
    flood: list[socket.socket] = []
    tls = None
    try:
        port = broker.sub_port
        tls = begin_handshake(port, real)

        def silent(_: int) -> socket.socket:
            s = socket.socket()
            s.bind(("127.0.0.2", 0))
            s.settimeout(5)
            s.connect(("127.0.0.1", port))
            flood.append(s)
            return s

        paced(silent, port, FLOOD)
        poll_until(lambda: accept_queue(port) == 0, what=f"all {FLOOD} accepted")
        poll_until(
            lambda: "connections in the handshake (cap" in broker.output(),
            timeout=10,
            what="the broker at its cap on handshakes",
        )
        # The real client ends its handshake and subscribes: served, not closed (before:
        # `broker closed the connection` / a reset, its handshake the first evicted).
        tls.do_handshake()
        data = wire.encode(wire.Xcert(real.subcmd.der)) + wire.encode(
            wire.Xsub([real.channel], real.eopkey, b"")
        )
        tls.sendall(data)
        framer, got = wire.Framer(), list[wire.Item]()
        while len(got) < 2:
            chunk = tls.recv(65536)
            assert chunk, f"broker closed the connection after {got}"
            got.extend(framer.feed(chunk))
        assert got[:2] == [wire.Result(0), wire.Result(0)]
        out = broker.output()
        assert (
            f"(cap {NOFILE // 8}): closing the oldest one of the address holding the most "
            "(127.0.0.2)" in out
        ), out[-3000:]
        assert "Traceback" not in out, out[-3000:]
    finally:
        if tls is not None:
            tls.close()
        for s in flood:
            s.close()
        broker.stop()
