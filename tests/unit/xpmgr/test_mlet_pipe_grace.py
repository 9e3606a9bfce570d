"""PIPE_GRACE after an mlet's exit: a busy manager that has not yet read the mlet's last
output (or the EOF behind it) must not report the mlet as lingering, which left its
output out of its result (session 29: `test_fifty_endpoints_at_once...[proxy]` under load
11-12); a pipe that holds nothing unread still lingers at PIPE_GRACE, as before."""

from __future__ import annotations

import os
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from twisted.internet.error import ProcessDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from packetlab.controller.mlet import PIPE_GRACE, PIPE_GRACE_MAX, MletProcess


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


def exited(read_fd: int) -> tuple[MletProcess, Clock, list[MletProcess]]:
    reported: list[MletProcess] = []
    proc = MletProcess("m", on_exit=reported.append)
    clock = Clock()
    proc.reactor = clock
    proc.running = True
    proc.transport = SimpleNamespace(pipes={1: SimpleNamespace(fd=read_fd)})  # type: ignore[assignment]
    proc.processExited(Failure(ProcessDone(0)))
    return proc, clock, reported


def test_unread_output_extends_the_grace_until_it_is_read(pipe: tuple[int, int]) -> None:
    r, w = pipe
    os.write(w, b"ok 127.0.0.1\n")
    proc, clock, reported = exited(r)
    clock.advance(PIPE_GRACE)
    assert not proc.lingering and not reported  # was: lingering, the output not in results
    clock.advance(0.5)
    assert not proc.lingering
    proc.outReceived(os.read(r, 100))  # the reactor catches up: the output, then the EOF
    os.close(w)
    proc.processEnded(Failure(ProcessDone(0)))
    assert reported == [proc] and proc.output == b"ok 127.0.0.1\n" and not proc.lingering
    assert not clock.getDelayedCalls()


def test_an_unread_eof_extends_the_grace_too(pipe: tuple[int, int]) -> None:
    r, w = pipe
    os.close(w)
    proc, clock, reported = exited(r)
    clock.advance(PIPE_GRACE)
    assert not proc.lingering and not reported


def test_a_held_pipe_with_nothing_unread_lingers_at_pipe_grace(pipe: tuple[int, int]) -> None:
    r, _w = pipe  # a child of the mlet holds the write end, silent
    proc, clock, reported = exited(r)
    clock.advance(PIPE_GRACE)
    assert proc.lingering and reported == [proc]


def test_a_chatty_child_lingers_at_the_latest_after_pipe_grace_max(pipe: tuple[int, int]) -> None:
    r, w = pipe
    os.write(w, b"x")  # never read: stays readable, as a child writing without pause
    proc, clock, reported = exited(r)
    for _ in range(int(PIPE_GRACE_MAX / 0.25) + 8):
        clock.advance(0.25)
    assert proc.lingering and reported == [proc]
    assert not clock.getDelayedCalls()
