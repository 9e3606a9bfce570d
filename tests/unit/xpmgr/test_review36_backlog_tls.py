# mypy: disable-error-code="union-attr,attr-defined"
"""What reaches `BacklogPool.tls_failed` (a manager's fatal first failure, session 36)
from a real backlog connection: a TLS error does (here: a proxy port that answers no
TLS), a handshake cut by the peer (a proxy restarting) does not, it is retried
(review36: `tls_failed`'s docstring said a cut handshake came there)."""

from __future__ import annotations

from test_xpmgr_proxy_tls_fatal import active, home
from twisted.internet.error import ConnectionLost
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from packetlab.controller.backlog import BacklogConnection
from packetlab.ppks import PktlabHome

__all__ = ["home"]  # (the fixture)


def _connection(pool: object) -> BacklogConnection:
    conn = BacklogConnection(pool)  # type: ignore[arg-type]
    pool.pending += 1  # (as `_connect` counts it)
    conn.makeConnection(StringTransport())
    return conn


def test_a_port_that_answers_no_tls_is_a_failed_tls_setup(home: PktlabHome) -> None:
    m, _reactor, progress = active(home)
    [pool] = m.pools
    _connection(pool).dataReceived(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    assert m._exit_code == 1 and m.wrapping_up
    assert "FATAL: backlog connection TLS setup with the proxy failed: not TLS" in (
        progress.getvalue()
    )


def test_a_handshake_cut_by_the_proxy_is_retried_not_fatal(home: PktlabHome) -> None:
    m, _reactor, progress = active(home)
    [pool] = m.pools
    _connection(pool).connectionLost(Failure(ConnectionLost()))
    assert not m.wrapping_up and pool.running
    assert "FATAL" not in progress.getvalue()
    m.wrap_up()
