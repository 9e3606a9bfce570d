"""A thousand repeats of one exchange against a real ``twistd pktproxy`` and ``pktlab
xpmgr``: their memory and descriptors stay where they were (session 36, spec36).

* the proxy: a manager registers a backlog as BROKER-PROXY-OBSERVED.md §4.1 shows
  (TLS, ``xreg``, ``result``, close_notify, ``PKTLAB`` both ways) and leaves;
* the manager: an endpoint presents a chain with an expired certificate (P §4.4) and is
  refused in the handshake.

RSS is compared with what it was after the first 100 (caches and allocator arenas
warm), descriptors with before the first; sequential, bounded in count.
"""

from __future__ import annotations

import socket
import ssl
import sys
import time
from collections.abc import Callable
from pathlib import Path

import broker_world
from procstat import open_fds, rss_kib
from pxworld import ProxyProc, XpmgrProc, register

from packetlab.ppks import PktlabHome, generate_private_key, issue_certificate, write_key_pair

home, proxy = broker_world.home, broker_world.proxy  # fixtures

REPEATS = 1000
WARM = 100
RSS_GROWTH_KIB = 8 * 1024


def _repeat(pid: int, once: Callable[[int], None]) -> tuple[int, int, int, int]:
    """(fds before, fds after, RSS after WARM, RSS after REPEATS) around REPEATS calls."""
    fds0 = open_fds(pid)
    warm = 0
    for i in range(REPEATS):
        once(i)
        if i == WARM - 1:
            warm = rss_kib(pid)
    deadline = time.monotonic() + 10  # the last closes take a reactor turn or two
    while open_fds(pid) > fds0 and time.monotonic() < deadline:
        time.sleep(0.05)
    return fds0, open_fds(pid), warm, rss_kib(pid)


def test_a_thousand_registrations_that_leave_cost_the_proxy_nothing(proxy: ProxyProc) -> None:
    pid = proxy.proc.pid
    register(proxy.setup, "warmup36").close()

    def once(i: int) -> None:
        register(proxy.setup, f"rep36x{i % 50}").close()

    fds0, fds1, warm, last = _repeat(pid, once)
    print(f"proxy: RSS {warm} KiB after {WARM}, {last} after {REPEATS}; fds {fds0} -> {fds1}")
    assert fds1 <= fds0 and last - warm < RSS_GROWTH_KIB, (fds0, fds1, warm, last)
    assert "Traceback" not in proxy.text()


def test_a_thousand_refused_endpoints_cost_the_manager_nothing(
    home: PktlabHome, tmp_path: Path
) -> None:
    mlet = tmp_path / "mlet.py"
    mlet.write_text("import sys\nsys.stdin.buffer.read()\n")
    xp = XpmgrProc(tmp_path, home.root / "xpmgr.conf", [sys.executable, str(mlet)])
    try:
        port = xp.port()
        ep = generate_private_key()
        key_path = tmp_path / "ep36.key"
        write_key_pair(key_path, ep)
        expired = issue_certificate("subcmd", home.private_key("k_eop"), ep, 0, 1_000_000)
        chain = tmp_path / "ep36.chain"
        chain.write_bytes(expired.to_pem())
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the manager's chain is PPKS, checked elsewhere
        ctx.load_cert_chain(str(chain), str(key_path))

        def once(i: int) -> None:
            raw = socket.create_connection(("127.0.0.1", port), timeout=15)
            try:
                tls = ctx.wrap_socket(raw)
                assert tls.recv(1) == b"", i  # TLS 1.3: the refusal shows at the first read
            except ssl.SSLError as e:
                assert "EXPIRED" in str(e).upper(), e
            finally:
                raw.close()

        fds0, fds1, warm, last = _repeat(xp.proc.pid, once)
        print(f"xpmgr: RSS {warm} KiB after {WARM}, {last} after {REPEATS}; fds {fds0} -> {fds1}")
        assert fds1 <= fds0 and last - warm < RSS_GROWTH_KIB, (fds0, fds1, warm, last)
        text = xp.text()
        assert "Traceback" not in text and "expired: cert #0" in text
        assert xp.result_lines() == []  # a refused handshake is no endpoint seen
    finally:
        xp.stop()
