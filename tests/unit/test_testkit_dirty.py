"""testkit.dirty finds what a test added to a reactor, names it, and cleans it up."""

from __future__ import annotations

from testkit.clock import FakeClock
from testkit.dirty import _calls, _selectables, clean_up, describe, leftovers
from twisted.internet.abstract import FileDescriptor


class Conn(FileDescriptor):
    def __init__(self) -> None:
        super().__init__()
        self.lost = False

    def connectionLost(self, reason: object) -> None:
        self.lost = True

    def __repr__(self) -> str:
        return "<Conn to 192.0.2.1:80>"


def test_what_was_there_before_is_not_blamed() -> None:
    reactor = FakeClock()
    old_call = reactor.callLater(5, lambda: None)
    old_conn = Conn()
    reactor.addReader(old_conn)
    before = (_calls(reactor), _selectables(reactor))
    assert leftovers(reactor, before) == ([], [])
    old_call.cancel()
    reactor.removeReader(old_conn)
    assert leftovers(reactor, before) == ([], [])


def test_new_calls_and_connections_are_named_then_cleaned_up() -> None:
    reactor = FakeClock()
    before = (_calls(reactor), _selectables(reactor))
    call = reactor.callLater(30, print, "timeout")
    conn = Conn()
    reactor.addWriter(conn)
    calls, sels = leftovers(reactor, before)
    assert calls == [call] and sels == [conn]
    text = describe(calls, sels)
    assert "pending call:" in text and "print" in text and "open: <Conn to 192.0.2.1:80>" in text
    clean_up(reactor, calls, sels)
    assert not call.active() and conn.lost
    assert leftovers(reactor, before) == ([], [])
