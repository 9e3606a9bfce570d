"""Persistent accounting survives a `kill -9` of the endpoint mid-experiment (§4.5): a real
twistd endpoint over TLS, a certificate with max_send_byte, part of the quota spent, the
endpoint killed and restarted; the next session can send only what is left, never more."""

from __future__ import annotations

from pathlib import Path

from test_endpoint_tls import LO, _udp_send
from tls_world import drain, send_world

from packetlab.endpoint.limits import QUOTA_CHUNK
from packetlab.ppks import Accounting, CertLimits, Counter, load_certificates
from packetlab.wire.constants import Status

QUOTA = 1_000_000
PKT = 1000
FIRST = 300  # packets sent before the kill


def remaining(db: Path, chain: list[Path]) -> int | None:
    certs = [load_certificates(p.read_bytes())[0] for p in chain]
    with Accounting(db) as acct:
        return acct.budget(certs).remaining(Counter.SEND_BYTE)


def send_until_denied(c: object, port: int, limit: int) -> int:
    sent = 0
    for _ in range(limit):
        status = _udp_send(c, 1, LO, port, b"x" * PKT)  # type: ignore[arg-type]
        if status == Status.ESKTPKTDENY:
            return sent
        assert status == 0, status
        sent += 1
    return sent


def test_kill9_mid_experiment_never_overspends(tmp_path: Path) -> None:
    with send_world(tmp_path, CertLimits(max_send_byte=QUOTA)) as w:
        # Session 1: spend FIRST packets, then kill -9 the endpoint with the session open.
        ep = w.endpoint()
        c = w.udp_session()
        for _ in range(FIRST):
            assert _udp_send(c, 1, LO, w.port, b"x" * PKT) == 0
        c.mread(0x10000000, 8)  # every send before this was handed to the kernel
        ep.kill9()
        c.close()
        left = remaining(w.db, w.chain)
        assert left is not None
        # Debited before use: the spent bytes and at most one unspent reservation.
        assert QUOTA - FIRST * PKT - QUOTA_CHUNK <= left <= QUOTA - FIRST * PKT

        # Session 2 on a restarted endpoint: exactly what is left, never more.
        ep2 = w.endpoint()
        c = w.udp_session()
        second = send_until_denied(c, w.port, QUOTA // PKT + 10)
        c.close()
        assert second == left // PKT
        assert (FIRST + second) * PKT <= QUOTA
        received = drain(w.sink)
        assert received <= FIRST + second
        # After a clean end, the unspent reservation is refunded: what is left is below
        # one packet.
        ep2.wait_log("session over")
        after = remaining(w.db, w.chain)
        assert after is not None and after < PKT


def test_quota_carries_over_between_clean_sessions(tmp_path: Path) -> None:
    with send_world(tmp_path, CertLimits(max_send_byte=5 * PKT)) as w:
        w.endpoint()
        c = w.udp_session()
        for _ in range(3):
            assert _udp_send(c, 1, LO, w.port, b"x" * PKT) == 0
        c.close()
        c = w.udp_session()  # the endpoint reconnects for the next session
        assert send_until_denied(c, w.port, 10) == 2
        c.close()
