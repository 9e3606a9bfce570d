"""A TCP download through a monitor whose ndata check is slow (a few ms a chunk, well
under its deadline), on a real `twistd pktendpoint` (docs/monitors.md, "Monitor time").

The check takes more than MonitorTimeMillsec (100 ms a second here) of the reactor while the
data comes as fast as loopback gives it, so the session's monitor time runs out. Before
(session 33, review33A): each chunk read meanwhile was dropped and counted, holes in the
middle of the stream; now the socket stops reading until the time is back (§3.5: flow
control) and every byte arrives, in order."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import DEFAULT_CONFIG
from test_monitors import ALLOW, LO, module, started

from packetlab import wire
from packetlab.wire import vmem

pytestmark = pytest.mark.serial

# 5 million steps of a counter in memory a check: a few ms (JIT), far below the deadline.
SLOW_NDATA = {
    "ndata": "(i32.store (i32.const 200) (i32.const 0))"
    " (loop (i32.store (i32.const 200) (i32.add (i32.load (i32.const 200)) (i32.const 1)))"
    " (br_if 0 (i32.lt_u (i32.load (i32.const 200)) (i32.const 5000000))))"
    " (i32.const 0)"
}
SIZE = 16 << 20
DROPSTAT = vmem.SKT_BASE + 2 * vmem.SKT_STRIDE + vmem.SKT_DROPSTAT.addr  # socket 2's


def test_a_slow_check_paces_a_tcp_download_and_loses_nothing(
    endpoint_factory: Any, tmp_path: Path
) -> None:
    mon = module(tmp_path, "slow_ndata", ALLOW | SLOW_NDATA)
    # 100 ms a second, 600 ms saved up; a deadline a loaded machine cannot reach (a call
    # past it is a crash, and a crashed check drops its chunk: not what is tested here)
    config = DEFAULT_CONFIG + (
        f"MonitorPersistentPath {tmp_path / 'pm.sqlite3'}\n"
        "MonitorDeadlineMillsec 300\nMonitorTimeMillsec 100\n"
    )
    ep = endpoint_factory(config, args=["-m", str(mon)])
    c = ep.accept()
    started(c, 1)
    data = bytes(range(256)) * (SIZE // 256)
    with socket.socket() as lsn:
        lsn.bind(("127.0.0.1", 0))
        lsn.listen(1)

        def serve() -> None:
            conn, _ = lsn.accept()
            with conn:
                conn.sendall(data)

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        c.ok(wire.Nopen(sktid=2, family=4, proto=6, rbufsz=1 << 20, laddr=bytes(4), lport=0,
                        raddr=LO, rport=lsn.getsockname()[1]))  # fmt: skip
        got = bytearray()
        end = time.monotonic() + 120
        while len(got) < SIZE:
            try:  # (before: the holes' bytes never came, and nothing after them)
                m = c.next(timeout=20)
            except TimeoutError:
                pytest.fail(f"{len(got)} of {SIZE} bytes, then nothing for 20 s")
            if isinstance(m, wire.Ndata) and m.sktid == 2:
                got += m.data
            elif isinstance(m, wire.Ndrop):
                pytest.fail(f"dropped: {m!r} after {len(got)} bytes")
            assert time.monotonic() < end, f"{len(got)} of {SIZE} bytes in 120 s"
        server.join(10)
    assert len(got) == SIZE and got == data
    stats = c.mread(DROPSTAT, 8)
    assert stats == bytes(8), stats.hex()  # bytecnt, pktcnt
    c.close()
    end = time.monotonic() + 30  # the episode's end line is written at the session's end
    while True:
        lines = [ln for ln in ep.output().splitlines() if "monitor time" in ln]
        if len(lines) >= 2 or time.monotonic() > end:
            break
        time.sleep(0.1)
    assert lines and "TCP sockets stop reading" in lines[0], "never spent: nothing tested"
    assert "refilled" in lines[-1] and "0 received chunk(s) dropped" in lines[-1], lines
