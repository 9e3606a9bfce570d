"""`pktlab xpmgr`'s counts on a terminal: one line redrawn in place, erased before a log
line, an mlet's output or a line of ours, and the final counts as the one line that stays.
Before, each change of the counts was a line of its own on stderr (100 for 50 endpoints),
terminal or not."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import cast

import pytest
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogLevel, formatEvent

from packetlab.cli.init import init_home
from packetlab.cli.progress import CLEAR, Progress
from packetlab.cli.xpmgr_screen import Screen
from packetlab.controller import outstream
from packetlab.controller.xpmgr import HostPort, Manager
from packetlab.controller.xpmgrconf import parse_xpmgr_config
from packetlab.ppks import PktlabHome


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> PktlabHome:
    h = PktlabHome.at(tmp_path_factory.mktemp("prog") / "home")
    init_home(h)
    return h


@pytest.fixture
def screen() -> Iterator[tuple[Screen, Tty, Tty, Clock]]:
    out, err, clock = Tty(), Tty(), Clock()
    s = Screen(out, err)
    yield s, out, err, clock
    s.stop()
    assert outstream.before_writes(None) is None  # stop() gave the hook back


def manager(home: PktlabHome, err: io.StringIO, *, lines: bool) -> Manager:
    r = home.root
    text = (
        f"EnableExpPublication 0\nControllerPrivkeyPath {r}/keys/k_xc\n"
        f"ExpExec 1::{r}/certs/exppriv_eop_exper.cert,{r}/certs/pubcmd_exper_xc.cert:"
        f"{r}/keys/k_eop.pub::\n"
    )
    return Manager(Clock(), parse_xpmgr_config(text), ["/bin/true"],
                   address=HostPort("127.0.0.1", 0), progress=err, lines=lines)  # fmt: skip


def arrive(m: Manager) -> None:
    m.seen += 1
    m.running += 1
    m._progress()


def leave(m: Manager, ok: bool = True) -> None:
    m.running -= 1
    if ok:
        m.done += 1
    else:
        m.failed += 1
    m._progress()


def test_fifty_endpoints_on_a_terminal_are_one_line_then_the_final_counts(
    home: PktlabHome, screen: tuple[Screen, Tty, Tty, Clock]
) -> None:
    s, _, err, clock = screen
    m = manager(home, err, lines=False)
    s.start(clock, lambda: "" if m.finished.called else m.summary())
    for i in range(50):  # 50 endpoints, a change each 50 ms (4 s in all)
        arrive(m)
        clock.advance(0.05)
        leave(m, ok=i % 10 != 0)
        clock.advance(0.05)
    m.wrap_up()  # the last one is done: the final counts
    clock.advance(5)  # no tick draws them again under themselves
    text = err.getvalue()
    final = "xpmgr: endpoints seen 50, running 0, done 45, failed 5\n"
    assert text.endswith(CLEAR + final), text[-200:]
    assert text.count("\n") == 1  # was 101: a line per change and the final counts
    draws = text.count(CLEAR + "xpmgr: endpoints seen")
    assert 2 <= draws <= 4 / 0.25 + 1  # after a second, at most 4 a second
    assert "xpmgr: endpoints seen 10, running 0, done 9, failed 1" in text  # drawn as it went


def test_off_a_terminal_a_line_per_change_as_before(home: PktlabHome) -> None:
    err = io.StringIO()
    m = manager(home, err, lines=True)
    for _ in range(3):
        arrive(m)
        leave(m)
    m.wrap_up()
    assert err.getvalue().splitlines() == [
        f"xpmgr: endpoints seen {s}, running {r}, done {d}, failed 0"
        for s, r, d in ((1, 1, 0), (1, 0, 1), (2, 1, 1), (2, 0, 2), (3, 1, 2), (3, 0, 3))
    ]  # (the last is the final counts, not said twice)


def test_log_lines_mlet_output_and_our_lines_erase_the_line_first(
    screen: tuple[Screen, Tty, Tty, Clock],
) -> None:
    s, out, err, clock = screen
    logged: list[str] = []
    observe = s.observer(
        cast(ILogObserver, lambda e: logged.append(err.getvalue() + (formatEvent(e) or "")))
    )
    s.start(clock, lambda: "xpmgr: endpoints seen 1, running 1, done 0, failed 0")
    clock.advance(1.0)
    shown = CLEAR + "xpmgr: endpoints seen 1, running 1, done 0, failed 0"
    assert err.getvalue() == shown
    outstream.write(out, b"ok 127.0.0.1\n")  # an mlet's output passed through
    assert err.getvalue() == shown + CLEAR and out.getvalue() == "ok 127.0.0.1\n"
    clock.advance(0.25)  # drawn again at the next tick
    assert err.getvalue() == (shown + CLEAR) + shown
    observe({"log_level": LogLevel.info, "log_format": "endpoint 127.0.0.1 linfo x"})
    assert logged == [(shown + CLEAR) * 2 + "endpoint 127.0.0.1 linfo x"]  # cleared first
    clock.advance(0.25)
    outstream.write(err, b"xpmgr: wrapping up (1 running); interrupt again to exit\n")
    assert err.getvalue().endswith(shown + CLEAR + "xpmgr: wrapping up (1 running); "
                                   "interrupt again to exit\n")  # fmt: skip
    results = io.StringIO()  # the results file: the line stays
    clock.advance(0.25)
    before = err.getvalue()
    outstream.write(results, b'{"status": "done"}\n')
    assert err.getvalue() == before and before.endswith(shown)


def test_an_unfinished_stderr_line_of_an_mlet_is_not_drawn_over(
    screen: tuple[Screen, Tty, Tty, Clock],
) -> None:
    s, _, err, clock = screen
    s.start(clock, lambda: "counts")
    clock.advance(1.0)
    outstream.write(err, b"mlet: working...")
    clock.advance(1.0)
    assert err.getvalue() == CLEAR + "counts" + CLEAR + "mlet: working..."
    outstream.write(err, b" done\n")
    clock.advance(0.25)
    assert err.getvalue().endswith("mlet: working... done\n" + CLEAR + "counts")


def test_an_unchanged_line_is_not_written_again() -> None:
    clock, err = Clock(), Tty()
    text = ["a"]
    p = Progress(clock, lambda: text[0], out=io.StringIO(), err=err, enabled=True)
    clock.advance(1.0)
    clock.advance(0.25 * 40)  # 10 s unchanged: nothing written
    assert err.getvalue() == CLEAR + "a"
    text[0] = ""  # nothing to say: erased, not drawn empty
    clock.advance(0.25)
    assert err.getvalue() == CLEAR + "a" + CLEAR
    p.stop()


def test_a_terminal_gone_stops_the_drawing() -> None:
    class Gone(Tty):
        def write(self, s: str) -> int:
            raise OSError(5, "Input/output error")

    clock = Clock()
    Progress(clock, lambda: "a", out=io.StringIO(), err=Gone(), enabled=True)
    clock.advance(1.0)  # was: the OSError raised inside the reactor, 4 times a second
    assert not clock.getDelayedCalls()
