"""A spinning ndata check under a long deadline (`MonitorDeadlineMillsec 60000`) on a real
`twistd pktendpoint` (docs/monitors.md, "Monitor time"): no call runs past the most
monitor time a session saves up (1 s by default, whatever the deadline), and none comes
back while the monitors run.

Before session 34 a call ran to its deadline and two deadlines were saved up: the first
"s" datagram held the reactor, and so every session on the endpoint, 60 s (and a second
one 60 s more). Timing-based: marked serial; the bound is a tenth of one deadline (a
loaded machine makes the 1 s longer, not 60 s)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from test_monitor_time_flood import flood_and_mread, ok_once_time_is_back, spinning_udp_session

pytestmark = pytest.mark.serial

DEADLINE = 60.0  # MonitorDeadlineMillsec 60000, its maximum


def test_a_long_deadline_does_not_let_a_spinning_monitor_hold_the_reactor(
    endpoint_factory: Any, tmp_path: Path
) -> None:
    ep, c, lport = spinning_udp_session(
        endpoint_factory, tmp_path, "MonitorDeadlineMillsec 60000\n"
    )
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        # 6 "s" datagrams in 1.5 s; the controller's mreads (never checked, so never
        # refused) wait for whatever holds the reactor meanwhile.
        lat = flood_and_mread(c, peer, lport, 4, 1.5)
        assert max(lat) < DEADLINE / 10, f"mread latencies {sorted(lat)[-5:]}"
        # The same instance keeps working: "ok" is delivered once the time is back.
        assert ok_once_time_is_back(c, peer, lport).data == b"ok"
    finally:
        peer.close()
    c.close()
    out = ep.output()
    cut = "check_pktlab_message_ndata (1 crash(es) so far): ran past 1000 ms, the most"
    assert cut in out, out[-2000:]
    lines = [ln for ln in out.splitlines() if "monitor time is spent" in ln]
    assert lines and "1000 ms saved up at most" in lines[0], lines
