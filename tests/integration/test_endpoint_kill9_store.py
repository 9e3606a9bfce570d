"""kill -9 of the endpoint at arbitrary moments of an experiment, again and again (issue 15).

A real endpoint over TLS with a send quota takes a burst of pipelined nsends and is
killed while it works through them, three times; each restart must find the accounting
store intact (SQLite integrity check) and debited for at least every byte that reached
the wire, and the sessions together can never send more than the quota.
"""

from __future__ import annotations

import random
import socket
import sqlite3
import time
from pathlib import Path

from test_accounting_kill9 import remaining, send_until_denied
from test_endpoint_tls import LO, _udp_open
from tls_world import TLSController, TLSEndpoint, controller_chain, drain, pktlab_init, udp_sink

from packetlab import wire
from packetlab.ppks import CertLimits
from packetlab.wire.constants import Proto

QUOTA = 2_000_000
PKT = 1000
KILLS = 3


def integrity(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def test_repeated_kill9_never_corrupts_or_overspends(tmp_path: Path) -> None:
    home = pktlab_init(tmp_path / "home")
    db = home.root / "endpt.rlim.sqlite3"
    chain = controller_chain(home, tmp_path / "c", limits=CertLimits(max_send_byte=QUOTA))
    sink, port = udp_sink()
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)  # count every datagram
    ctl = TLSController(chain, home.key_path("k_xc"), tmp_path)
    rng = random.Random(15)
    received = 0
    endpoints: list[TLSEndpoint] = []
    try:
        for _ in range(KILLS):
            ep = TLSEndpoint(home, ctl.address, tmp_path)
            endpoints.append(ep)
            c = ctl.accept()
            c.start()
            _udp_open(c, 1)
            burst = wire.encode(wire.Nsend(1, 4, int(Proto.UDP), 0, 0, b"k" * PKT, LO, port))
            c.send(burst * 300)  # 300 KB of sends in flight
            time.sleep(rng.uniform(0.0, 0.15))  # somewhere in the middle of them
            ep.kill9()
            c.close()
            got = drain(sink)
            print(f"killed after {got} of 300 sends reached the wire")
            received += got
            assert integrity(db) == "ok"
            left = remaining(db, chain)
            assert left is not None
            # Debited before sending: what reached the wire is covered by the debit.
            assert received * PKT <= QUOTA - left, (received, left)

        # A last, clean session spends exactly what is left, never more.
        ep = TLSEndpoint(home, ctl.address, tmp_path)
        endpoints.append(ep)
        c = ctl.accept()
        c.start()
        _udp_open(c, 1)
        left = remaining(db, chain)
        assert left is not None
        last = send_until_denied(c, port, QUOTA // PKT + 10)
        assert last == left // PKT
        c.close()
        received += drain(sink)
        assert received * PKT <= QUOTA
        assert integrity(db) == "ok"
    finally:
        for e in endpoints:
            e.stop()
        ctl.close()
        sink.close()
