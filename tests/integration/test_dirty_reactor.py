"""testkit.dirty sees what is really left on the global reactor: a listening port and a
timer (then closes them, so this test itself leaves nothing)."""

from __future__ import annotations

from typing import Any

from testkit.dirty import _calls, _selectables, clean_up, leftovers
from twisted.internet import reactor as _reactor
from twisted.internet.protocol import Factory, Protocol

reactor: Any = _reactor


def test_a_forgotten_port_and_timer_are_found() -> None:
    before = (_calls(reactor), _selectables(reactor))
    port = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
    call = reactor.callLater(60, lambda: None)
    calls, sels = leftovers(reactor, before)
    assert calls == [call] and sels == [port]
    clean_up(reactor, calls, sels)
    assert leftovers(reactor, before) == ([], [])
    assert not port.connected and getattr(port, "socket", None) is None  # closed, not forgotten
