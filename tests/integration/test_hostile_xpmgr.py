"""Hostile endpoints against a real `pktlab xpmgr` (passive mode), session 18.

An endpoint with a valid certificate chain is still untrusted input to the manager: it
can answer the setup with anything and send anything while its mlet runs. Each case
here is a TLS client with the demo endpoint's chain that misbehaves, then behaves: the
manager's log grows by a bounded number of lines, its memory and results file stay
small, no traceback is logged, and the next (well-behaved) endpoint is served.
"""

from __future__ import annotations

import json
import socket
import ssl
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from procstat import open_fds, rss_kib
from pxworld import XpmgrProc
from test_hostile_fd_exhaustion import NOFILE, SILENT, low_nofile
from tls_world import pktlab_init

from packetlab import wire
from packetlab.wire import vmem

RSS_BOUND_KIB = 16 * 1024


@pytest.fixture(scope="module")
def xpmgr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[XpmgrProc, Path]]:
    tmp = tmp_path_factory.mktemp("xphostile")
    home = pktlab_init(tmp / "home").root
    mlet = tmp / "mlet.py"
    mlet.write_text("import sys, time\nprint('mlet ran')\nsys.stdin.buffer.read()\n")
    xp = XpmgrProc(tmp, home / "xpmgr.conf", [sys.executable, str(mlet)])
    yield xp, home
    xp.stop()


class Endpoint:
    """A TLS client presenting the demo endpoint's chain (k_ep, subcmd_eop_ep)."""

    def __init__(self, port: int, home: Path) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the manager's chain is PPKS, checked elsewhere
        ctx.load_cert_chain(str(home / "certs/subcmd_eop_ep.cert"), str(home / "keys/k_ep"))
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock = ctx.wrap_socket(raw)
        self.framer = wire.Framer()
        got: list[wire.Item] = []
        while len(got) < 2:  # start, then the HostID mread
            got += self.framer.feed(self.sock.recv(65536))
        assert got == [wire.Start(), wire.Mread(vmem.HOSTID.addr, vmem.HOSTID.size)], got

    def answer_setup(self, hostid: bytes = b"ep18\0") -> None:
        self.sock.sendall(
            wire.encode(wire.Result()) + wire.encode(wire.Mdata(vmem.HOSTID.addr, hostid))
        )

    def close(self) -> None:
        self.sock.close()


def results(xp: XpmgrProc, n: int) -> list[dict[str, object]]:
    deadline = time.monotonic() + 15
    while len(lines := xp.result_lines()) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(lines) >= n, xp.text()[-3000:]
    return lines


def behaved(xp: XpmgrProc, home: Path) -> None:
    """A well-behaved endpoint is served: its mlet runs and its result is done."""
    n = len(xp.result_lines())
    ep = Endpoint(xp.port(), home)
    ep.answer_setup()
    time.sleep(0.3)
    ep.close()
    last = results(xp, n + 1)[-1]
    assert last["status"] == "done" and last["hostid"] == "ep18", last


def test_frames_a_manager_ignores_cost_one_log_line_per_kind(
    xpmgr: tuple[XpmgrProc, Path],
) -> None:
    """20,000 unknown frames during the setup and 20,000 malformed linfo while the mlet
    runs (160 KB from the endpoint): were 40,000 log lines (5.8 MB); now 3."""
    xp, home = xpmgr
    before = len(xp.text().splitlines())
    n = len(xp.result_lines())
    ep = Endpoint(xp.port(), home)
    ep.sock.sendall(b"\x00\x00\x00\x00" * 20000)
    ep.answer_setup()
    ep.sock.sendall(b"\x65\x00\x00\x00" * 20000)
    time.sleep(0.5)
    ep.close()
    assert results(xp, n + 1)[-1]["status"] == "done"
    text = xp.text()
    new = text.splitlines()[before:]
    ignored = [line for line in new if "ignored" in line]
    assert len(ignored) == 3, ignored[:5]
    assert "39998 more frames ignored" in ignored[-1], ignored
    assert "Traceback" not in text
    behaved(xp, home)


def test_linfo_and_hostid_of_absurd_sizes_are_bounded(xpmgr: tuple[XpmgrProc, Path]) -> None:
    """140 linfo of ~1 MB and a 300 KB HostID: were +128 MB of the manager's memory, of
    its log and of the results file for one connection; now the HostID is cut to its
    256-byte field and linfo to 1 MiB kept, 200 characters logged each."""
    xp, home = xpmgr
    pid = xp.proc.pid
    behaved(xp, home)
    rss = rss_kib(pid)
    log_size = len(xp.text())
    n = len(xp.result_lines())
    ep = Endpoint(xp.port(), home)
    ep.answer_setup(hostid=b"h" * 300 + b"\nFAKE LINE\xff" + b"A" * 300_000)
    too_big = wire.encode(wire.Linfo(b"monitor" * 1000, b"x" * 100_000, b"i" * 900_000))
    fine = wire.encode(wire.Linfo(b"monitor", b"\0\0", b"i" * 0x10000))
    for _ in range(70):
        ep.sock.sendall(too_big + fine)
    time.sleep(0.5)
    ep.close()
    last = results(xp, n + 1)[-1]
    assert last["hostid"] == "h" * 256, str(last["hostid"])[:300]
    assert len(json.dumps(last)) < 1_200_000
    assert len(xp.text()) - log_size < 16_000
    grew = rss_kib(pid) - rss
    assert grew < RSS_BOUND_KIB, f"RSS grew by {grew} KiB"
    behaved(xp, home)


def test_endpoints_silent_after_tls_cannot_take_every_descriptor(tmp_path: Path) -> None:
    """300 endpoints that finish TLS and then answer nothing, against a manager with 256
    descriptors: each held one for the 30 s setup timeout, so the 256th and every later
    endpoint (a real one too) were closed at accept. Now at most 1/8 of the limit (32)
    wait in the setup, the oldest closed for each new one, and a real one is served."""
    home = pktlab_init(tmp_path / "home").root
    mlet = tmp_path / "mlet.py"
    mlet.write_text("print('mlet ran')\n")
    with low_nofile():
        xp = XpmgrProc(tmp_path, home / "xpmgr.conf", [sys.executable, str(mlet)])
    silent: list[Endpoint] = []
    try:
        port = xp.port()
        for _ in range(SILENT):
            silent.append(Endpoint(port, home))
        assert open_fds(xp.proc.pid) < NOFILE // 2, open_fds(xp.proc.pid)
        behaved(xp, home)
        out = xp.text()
        assert "endpoints in the setup (cap 32)" in out, out[-3000:]
        assert out.count("in the setup (cap") == 1
        assert "EMFILE" not in out and "Traceback" not in out, out[-3000:]
    finally:
        for s in silent:
            s.close()
        xp.stop()
