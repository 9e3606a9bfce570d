"""A hostile mlet under a real `pktlab xpmgr` (passive mode) and a real TLS
``twistd pktendpoint`` (session 32, fuzz32).

The mlet (a Python program) writes on its fd 0 what `fuzz32` makes, seeded by its round
number: the reference sessions' frames mutated, every type with every body size, raw
garbage, headers that announce up to 16 MiB and stop. It reads what comes back for a
moment (every frame must be well formed) and exits. The endpoint reconnects for the next
round; the last round is a well-behaved mlet that reads the HostID. Afterwards: one
result line per round, the manager and the endpoint alive with no traceback in their
logs, the manager's memory within `RSS_BOUND_KIB` of what it held after the first round.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest
from fuzz32 import log_alarms, rng_for
from procstat import rss_kib
from pxworld import EndpointProc, XpmgrProc
from tls_world import pktlab_init

pytestmark = pytest.mark.slow

ROUNDS = 30  # hostile mlet runs; then one well-behaved
RSS_BOUND_KIB = 24 * 1024  # a hostile header may make the manager hold 16 MiB for a while
HERE = Path(__file__).resolve().parent

MLET = """\
import os, random, socket, sys, time
sys.path.insert(0, {here!r})
from fuzz32 import every_type_and_size, mutate, trace_frames, wire_safe
from packetlab import wire
from packetlab.wire import vmem

state, rounds, seed = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(state) as f:
    n = int(f.read() or 0)
with open(state, "w") as f:
    f.write(str(n + 1))
sock = socket.socket(fileno=0)
framer = wire.Framer()

def answers(seconds):
    got, deadline = 0, time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except (TimeoutError, OSError):
            break
        if not data:
            break
        for item in framer.feed(data):
            assert isinstance(item, wire.Message), item
            got += 1
    return got

if n >= rounds:  # the well-behaved one
    sock.sendall(wire.encode(wire.Mread(vmem.HOSTID.addr, 4)))
    answers(2.0)
    print("healthy mlet", n)
    sys.exit(0)
rng = random.Random(f"{{seed}}-{{n}}")
kind = n % 4
if kind == 0:
    seeds = trace_frames()
    data = b"".join(mutate(rng, rng.choice(seeds)) for _ in range(32))
elif kind == 1:
    sweep = list(every_type_and_size(rng, 24))
    at = rng.randrange(0, len(sweep) - 128)
    data = b"".join(sweep[at : at + 128])
elif kind == 2:
    data = rng.randbytes(rng.randint(1, 4096))
else:  # a header that announces more than will come (up to 16 MiB), then EOF
    data = bytes([rng.randrange(256)]) + rng.randint(1, 0xFFFFFF).to_bytes(3, "big")
    data += rng.randbytes(rng.randint(0, 2048))
try:
    sock.sendall(wire_safe(data))
except OSError:
    pass
print("hostile mlet", n, kind, len(data), "answers", answers(0.5))
"""


def test_fuzz_xpmgr_from_a_hostile_mlet(tmp_path: Path) -> None:
    home = pktlab_init(tmp_path / "home").root
    mlet = tmp_path / "mlet.py"
    mlet.write_text(MLET.format(here=str(HERE)))
    state = tmp_path / "round"
    state.write_text("0")
    # the mlet's environment is EPADDR alone (docs/xpmgr.md): its seed comes as argument
    _, seed = rng_for("xpmgr-mlet")
    argv = [sys.executable, str(mlet), str(state), str(ROUNDS), seed]
    xp = XpmgrProc(tmp_path, home / "xpmgr.conf", argv, "-n", str(ROUNDS + 1))
    ep = None
    try:
        port = xp.port()
        ep = EndpointProc(tmp_path, home, f"127.0.0.1:{port}", "--reconnect-delay", "0")
        deadline = time.monotonic() + 120
        rss0 = None
        while len(xp.result_lines()) < ROUNDS + 1 and time.monotonic() < deadline:
            if rss0 is None and xp.result_lines():
                rss0 = rss_kib(xp.proc.pid)
            assert ep.proc.poll() is None, ep.text()[-3000:]
            time.sleep(0.1)
        results = xp.result_lines()
        assert len(results) == ROUNDS + 1, xp.text()[-3000:]
        assert rss0 is not None
        grew = rss_kib(xp.proc.pid) - rss0 if xp.proc.poll() is None else 0
        assert grew <= RSS_BOUND_KIB, f"manager RSS grew by {grew} KiB"
        assert results[-1]["status"] == "done", results[-1]
        assert "healthy mlet" in xp.text()
        code = xp.wait_exit(30)
        assert code in (0, 3), code
        alarms = log_alarms(xp.text()) + log_alarms(ep.text())
        assert not alarms, alarms[:5]
        assert ep.proc.poll() is None
        statuses = [r["status"] for r in results]
        print(f"xpmgr: seed {seed!r}-ROUND, {ROUNDS} hostile mlets; {statuses}")
    finally:
        if ep is not None:
            ep.proc.send_signal(signal.SIGTERM)
            ep.stop()
        xp.stop()
