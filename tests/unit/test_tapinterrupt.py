"""`packetlab.tapinterrupt`: a Ctrl-C while a daemon starts is one line and status 130.
Armed only under twistd, over Python's default handler, in the main thread; disarmed by
a "before startup" trigger so that the reactor installs its own SIGINT handler as always.
The whole path (a real twistd's tap import, SIGINT, the line) is tested in
tests/integration/test_twistd_messages.py."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator

import pytest
from twisted.internet.testing import MemoryReactor

from packetlab import tapinterrupt


@pytest.fixture(autouse=True)
def default_sigint() -> Iterator[None]:
    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_not_armed_outside_twistd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "twisted.scripts.twistd", raising=False)
    tapinterrupt.arm("pktdemo")
    assert not tapinterrupt.armed()


def test_armed_under_twistd_and_disarmed_back_to_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "twisted.scripts.twistd", sys)  # any module
    tapinterrupt.arm("pktdemo")
    assert tapinterrupt.armed()
    tapinterrupt.disarm()
    # exactly Python's default: Twisted installs its own handler only over that one
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_another_handler_is_left_alone() -> None:
    def mine(signum: int, frame: object) -> None:
        pass

    signal.signal(signal.SIGINT, mine)
    tapinterrupt.arm("pktdemo", force=True)
    assert signal.getsignal(signal.SIGINT) is mine
    tapinterrupt.disarm()
    assert signal.getsignal(signal.SIGINT) is mine


def test_not_armed_from_another_thread() -> None:
    t = threading.Thread(target=tapinterrupt.arm, args=("pktdemo",), kwargs={"force": True})
    t.start()
    t.join()
    assert not tapinterrupt.armed()


def test_disarmed_before_the_reactor_starts() -> None:
    reactor = MemoryReactor()
    tapinterrupt.arm("pktdemo", force=True)
    tapinterrupt.disarm_before_reactor(reactor)
    assert tapinterrupt.armed()  # the services' start is still covered
    ((call, args, kw),) = reactor.triggers["before"]["startup"]
    call(*args, **kw)
    assert not tapinterrupt.armed()


def test_the_line_and_the_status(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    exits: list[int] = []
    monkeypatch.setattr(tapinterrupt.os, "_exit", exits.append)
    tapinterrupt.arm("pktdemo", force=True)
    tapinterrupt._interrupted(signal.SIGINT, None)
    assert exits == [130]
    assert capsys.readouterr().err == "\ntwistd pktdemo: interrupted while starting\n"
    assert not tapinterrupt.armed()


class _Beginner:
    """`twisted.logger.globalLogBeginner` as twistd has it before logging begins."""

    def __init__(self, events: list[dict[str, object]], begun: bool = False) -> None:
        from types import SimpleNamespace

        self._temporaryObserver = None if begun else object()
        self._initialBuffer = SimpleNamespace(_buffer=events)


def _failure_of(e: BaseException) -> object:
    from twisted.python.failure import Failure

    try:
        raise e
    except BaseException:
        return Failure()


@pytest.mark.parametrize(
    ("events", "begun", "expected"),
    [
        ([{"failure": _failure_of(KeyboardInterrupt()), "isError": 1}], False, True),
        ([{"log_failure": _failure_of(KeyboardInterrupt())}], False, True),
        ([{"failure": _failure_of(KeyboardInterrupt()), "isError": 1}], True, False),
        ([{"failure": _failure_of(ImportError("x")), "isError": 1}, {"log_format": "hi"}],
         False, False),
        ([], False, False),
    ],
    ids=["legacy-err", "new-style", "logging-begun", "other-errors", "empty"],
)  # fmt: skip
def test_a_ctrl_c_twisteds_plugin_scan_swallowed_is_found(
    monkeypatch: pytest.MonkeyPatch, events: list[dict[str, object]], begun: bool, expected: bool
) -> None:
    """Twisted's getPlugins logs what a plugin's import raised, KeyboardInterrupt too, into
    the buffer kept until logging begins (session 25: the daemon then ran on)."""
    from types import SimpleNamespace

    fake = SimpleNamespace(globalLogBeginner=_Beginner(events, begun))
    monkeypatch.setitem(sys.modules, "twisted.logger", fake)
    assert tapinterrupt.swallowed_interrupt() is expected
