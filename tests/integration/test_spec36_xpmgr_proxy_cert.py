"""``pktlab xpmgr`` in active mode meeting a proxy whose certificate is of the wrong role
or out of its validity (session 36, spec36).

P §4.6: the manager → proxy link is AUTH_AGENT, the proxy's roots optional
(``ProxyCertRootPath``); P §4.4: AGENT is ``agent x1``, every certificate inside its
validity, also when no root is given (only the form is checked then). O §4.1: a proxy
certificate pktxpmgr refuses is fatal (exit 1), not a soft failure. The fake proxy here is
a TLS 1.3 server presenting, in turn, a subcmd certificate (an endpoint's role), an agent
certificate that expired and one not yet valid; the manager must give up with exit 1 and
one line naming the rule, having sent no ``xreg``, at the first refusal as pktxpmgr (it
retried until BootstrapBacklogTimeout before: here 20 s, so the exit within 10 s pins it).
"""

from __future__ import annotations

import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import broker_world
import pytest
from pxworld import XpmgrProc, active_conf

from packetlab.ppks import PktlabHome, generate_private_key, issue_certificate, write_key_pair

home = broker_world.home  # fixture

FOREVER = 2**31 - 1


@contextmanager
def fake_proxy(cert_pem: bytes, key_path: Path) -> Iterator[tuple[int, list[bytes]]]:
    """A TLS 1.3 server on 127.0.0.1 presenting `cert_pem`; yields its port and the
    application bytes any client sent after a handshake (expected: none)."""
    chain = key_path.with_suffix(".pem")
    chain.write_bytes(cert_pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(str(chain), str(key_path))
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.2)
    got: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            conn.settimeout(5)
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    data = tls.recv(65536)
                    if data:
                        got.append(data)
            except (OSError, ssl.SSLError):
                pass  # the manager refuses our certificate: the expected end
            finally:
                conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1], got
    finally:
        stop.set()
        t.join(5)
        srv.close()


CASES = {
    "a subcmd certificate": ("subcmd", 0, FOREVER, "wrong_cert_type"),
    "an agent certificate that expired": ("agent", 0, 1_000_000, "expired: cert #0"),
    "an agent certificate not yet valid": ("agent", FOREVER - 10, FOREVER, "not_yet_valid"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_proxy_certificate_the_manager_must_refuse_ends_it_with_exit_1(
    home: PktlabHome, tmp_path: Path, case: str
) -> None:
    kind, nb, na, rule = CASES[case]
    prx = generate_private_key()
    key_path = tmp_path / "fakeprx.key"
    write_key_pair(key_path, prx)
    signer = home.private_key("k_eop") if kind == "subcmd" else prx
    cert = issue_certificate(kind, signer, prx, nb, na)
    conf = active_conf(
        home.root, tmp_path / "active.conf", "spec36prx", "BootstrapBacklogTimeout 20000000000"
    )
    mlet = tmp_path / "mlet.py"
    mlet.write_text("import sys\nsys.stdin.buffer.read()\n")
    with fake_proxy(cert.to_pem(), key_path) as (port, got):
        xp = XpmgrProc(tmp_path, conf, [sys.executable, str(mlet)], addr=f"127.0.0.1:{port}")
        try:
            t0 = time.monotonic()
            code = xp.wait_exit(timeout=30)
            took = time.monotonic() - t0
        finally:
            xp.stop()
    text = xp.text()
    assert code == 1, text[-2000:]
    assert rule in text, text[-2000:]
    assert got == [], got  # no xreg ever went to a proxy it refuses
    assert "Traceback" not in text
    assert took < 10, f"exit after {took:.1f} s: not at the first refusal"
    print(f"{case}: exit {code} after {took:.1f} s")
