"""`pktlab xpmgr`'s result when the endpoint ended the session first (session 32, odds32).

fuzz32: a hostile mlet wrote a malformed frame, the endpoint answered ECTLBADMSG and closed
(its log said so), the mlet exited 0, and the manager counted the run `done`. It relays
frames without decoding them, but it sees a result's code in 2 bytes and the endpoint's
close before the mlet's: such a run is `failed`, its result naming the answer. A real TLS
``twistd pktendpoint`` and a real manager; then a well-behaved mlet on the next session,
`done` with no `endpoint_closed`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from pxworld import EndpointProc, XpmgrProc
from tls_world import pktlab_init

MLET = """\
import socket, sys, time
from packetlab import wire
from packetlab.wire import vmem

state = sys.argv[1]
with open(state) as f:
    n = int(f.read() or 0)
with open(state, "w") as f:
    f.write(str(n + 1))
sock = socket.socket(fileno=0)
if n == 0:  # an mread whose body is 2 bytes (it has 6): malformed
    sock.sendall(bytes([0x28, 0, 0, 2, 1, 2]))
else:
    sock.sendall(wire.encode(wire.Mread(vmem.HOSTID.addr, 4)))
framer, deadline, got = wire.Framer(), time.monotonic() + 10, []
while time.monotonic() < deadline and not (n and got):  # the healthy one: its answer
    sock.settimeout(max(0.01, deadline - time.monotonic()))
    try:
        data = sock.recv(65536)
    except (TimeoutError, OSError):
        break
    if not data:
        break
    got += list(framer.feed(data))
print("mlet", n, "got", [type(m).__name__ for m in got])
sys.exit(0)
"""


def test_a_session_the_endpoint_ended_for_a_bad_frame_is_failed(tmp_path: Path) -> None:
    home = pktlab_init(tmp_path / "home").root
    mlet = tmp_path / "mlet.py"
    mlet.write_text(MLET)
    state = tmp_path / "round"
    state.write_text("0")
    xp = XpmgrProc(tmp_path, home / "xpmgr.conf", [sys.executable, str(mlet), str(state)],
                   "-n", "2")  # fmt: skip
    ep = None
    try:
        ep = EndpointProc(tmp_path, home, f"127.0.0.1:{xp.port()}")
        code = xp.wait_exit(60)
        bad, good = xp.result_lines()
        assert "mlet 0 got ['Result']" in bad["output"], bad  # it read the ECTLBADMSG
        assert bad["exit_code"] == 0
        assert bad["status"] == "failed", bad  # was "done"
        assert bad["error"].startswith("the endpoint ended the session after answering "
                                       "ECTLBADMSG"), bad  # fmt: skip
        assert (bad["endpoint_closed"], bad["endpoint_last_result"]) == ("closed", "ECTLBADMSG")
        assert good["status"] == "done" and "endpoint_closed" not in good, good
        assert code == 0  # one endpoint's mlet succeeded
        assert "xpmgr: endpoints seen 2, running 0, done 1, failed 1" in xp.text()
        # the endpoint said it on one line (test_endpoint_refused_log.py)
        deadline = time.monotonic() + 10
        while "answered ECTLBADMSG" not in ep.text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "session over: malformed request: malformed message type 0x28" in ep.text()
    finally:
        if ep is not None:
            ep.stop()
        xp.stop()
