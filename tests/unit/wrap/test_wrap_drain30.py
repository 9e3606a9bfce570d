"""The end of a run (runner._drain) after the program gave up on a connect (session 30,
wrap30): it does not wait for connects still pending at the endpoint."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from test_wrap_server import GREETING, connect_req, settle, setup
from twisted.internet.defer import Deferred

from packetlab.wrap.runner import _drain
from packetlab.wrap.server import ABANDONED
from packetlab.wrap.socks5 import Rep, reply


def test_the_drain_does_not_wait_for_a_connect_nobody_is_left_to_take(tmp_path: Path) -> None:
    """`wget -T 2` to a blackholed address, wrapped: its alarm ends the connect, it exits
    at 2 s, and `pktlab wrap` waited the whole drain (2 s) more, as the connection still
    waiting for the endpoint was live (its socket's close unseen: reading is paused
    until the connect is answered). Failed before: the drain was still waiting."""
    rig, factory, proto, t = setup(tmp_path)
    factory.connect_timeout = 0.05
    rig.endpoint.tcp_silent.add(("192.0.2.9", 9))
    proto.dataReceived(GREETING + connect_req(ipaddress.ip_address("192.0.2.9"), 9))
    settle(rig, 5)
    assert len(factory.live) == 1 and factory.settling() == 0
    done = Deferred.fromCoroutine(_drain(rig.clock, factory, 2.0))
    assert done.called
    settle(rig, 200)  # the connect times out: the (program's) reply, nothing left pending
    assert t.value().endswith(reply(Rep.TTL_EXPIRED))


def test_the_drain_still_waits_for_a_connection_that_was_made(tmp_path: Path) -> None:
    rig, factory, proto, t = setup(tmp_path)
    rig.endpoint.tcp_servers[("192.0.2.80", 80)] = lambda request: [b"late"]
    proto.dataReceived(GREETING + connect_req(ipaddress.ip_address("192.0.2.80"), 80))
    settle(rig)
    assert t.value().endswith(reply(Rep.SUCCEEDED))
    assert factory.settling() == 1
    done = Deferred.fromCoroutine(_drain(rig.clock, factory, 0.5))
    assert not done.called
    rig.clock.advance(0.6)  # its 0.01 s turns: at most the drain's time
    for _ in range(60):
        rig.clock.advance(0.01)
    assert done.called


def test_a_connect_the_program_gave_up_on_is_one_timings_line(tmp_path: Path) -> None:
    """It had none: it ended only with the session, after the file was closed."""
    rig, factory, proto, _t = setup(tmp_path)
    factory.connect_timeout = 0.05
    rig.endpoint.tcp_silent.add(("192.0.2.9", 9))
    proto.dataReceived(GREETING + connect_req(ipaddress.ip_address("192.0.2.9"), 9))
    settle(rig, 5)
    factory.abandon_pending()
    factory.timings.close()
    settle(rig, 200)  # the connect's own end later: no second record
    (rec,) = factory.timings.records
    assert rec.error == ABANDONED and rec.addr == "192.0.2.9"
    (line,) = (tmp_path / "t.jsonl").read_text().splitlines()
    assert '"abandoned: ' in line
