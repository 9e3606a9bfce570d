"""A real ``twistd pktendpoint``'s log for sessions it ends for a malformed request
(session 32, odds32): the reason once, on one line with the controller and the answer.

fuzz32 measured the reason 3 times in 5 lines per such session (`malformed request,
ending the session: R`, `session ending: malformed request: R`, `session over:
malformed request: R`, beside `session started`, `next connection` and a debug line
`reflex digests the chain lists: any`): 1,193 sessions, 1,005 of them refused, 6,862 lines.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from conftest import EndpointProcess

from packetlab import wire

SESSIONS = 5
# start, a private-use frame (the reflex hook's: its gate is made), then an mread whose
# body is 2 bytes (it has 6): malformed, ECTLBADMSG
BAD = wire.encode(wire.Start()) + bytes([0xF0, 0, 0, 0]) + bytes([0x28, 0, 0, 2, 1, 2])


def test_a_malformed_request_is_logged_once_per_session(
    endpoint_factory: Callable[..., EndpointProcess],
) -> None:
    ep = endpoint_factory(args=["--reconnect-delay", "0"])
    for _ in range(SESSIONS):
        c = ep.accept()
        c.sock.sendall(BAD)
        c.sock.shutdown(socket.SHUT_WR)
        assert c.recv() == wire.Result(0)
        c.recv()  # the private-use frame's answer
        assert c.recv() == wire.Result(wire.Status.ECTLBADMSG)
        assert c.closed_by_peer()
        c.close()
    c = ep.accept()  # a healthy one: every line of the refused ones is written by now
    c.start()
    c.close()
    deadline = time.monotonic() + 15
    while ep.output().count("session over") < SESSIONS + 1:
        assert time.monotonic() < deadline, ep.output()
        time.sleep(0.05)
    lines = ep.logfile.read_text().splitlines()
    reason = [line for line in lines if "malformed message type 0x28" in line]
    port = ep.address.rsplit(":", 1)[1]
    assert len(reason) == SESSIONS, "\n".join(reason)  # was 15: three per session
    for line in reason:
        assert "#warn] session over: malformed request: malformed message type 0x28 " in line
        assert line.endswith(f" (controller 127.0.0.1:{port}, answered ECTLBADMSG)"), line
    # a debug line a session (twistd writes them), with a chain that lists no reflexes
    assert not [line for line in lines if "reflex digests the chain lists: any" in line]
    # (the endpoint dials the next session at once: it may have started already)
    assert sum("controller session started" in line for line in lines) >= SESSIONS + 1
