"""The endpoint clock (CLOCK_REALTIME in ns) and a Linux timerfd armed at absolute times.

Protocol times are ns since the Unix epoch on the endpoint's ``CLOCK_REALTIME`` (PROTOCOL.md
§1.1). ``time.time_ns`` reads exactly that clock on Linux and costs ~50 ns, against ~85 ns for
``time.clock_gettime_ns(CLOCK_REALTIME)`` (argument parsing), so it is the clock we spin on.

The timerfd gives the reactor a ns-resolution wake-up: epoll (and so Twisted) only takes
timeouts in ms, but a timerfd armed with ``TFD_TIMER_ABSTIME`` becomes readable at the
requested ``CLOCK_REALTIME`` instant and the kernel follows clock steps for us. Wake-ups
"as soon as possible" go through an eventfd instead (see `TimerFd`).
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import sys
import time
from typing import Any, Protocol

__all__ = ["MAX_SEND_SPAN_NS", "ReaderReactor", "Timer", "TimerFd", "realtime_ns", "send_time"]

#: Current ``CLOCK_REALTIME`` in ns (the protocol's time base).
realtime_ns = time.time_ns

#: Readings around a send further apart than this mean the endpoint was preempted
#: around the system call (a send itself takes a few µs), so their midpoint may be long
#: after the packet left: a loaded loopback showed a TCP request's ntag 0.4-0.9 ms *after*
#: the kernel's receive stamp of the server's answer to it.
MAX_SEND_SPAN_NS = 20_000


def send_time(before_ns: int, after_ns: int) -> int:
    """The send time from clock readings taken just before and after the send call when
    no kernel TX timestamp is at hand: their midpoint (within ~0.3 µs of the kernel's
    software TX stamp here, docs/sending.md), or `before_ns` when they are more than
    MAX_SEND_SPAN_NS apart: the packet went between them, so an answer to it can never be
    stamped before `before_ns`, while it can before a late midpoint."""
    if after_ns - before_ns > MAX_SEND_SPAN_NS:
        return before_ns
    return (before_ns + after_ns) // 2


_CLOCK_REALTIME = 0
_TFD_TIMER_ABSTIME = 1
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = os.O_CLOEXEC


class ReaderReactor(Protocol):
    """The part of Twisted's ``IReactorFDSet`` the timer and socket watchers use.

    A structural type, so mypy checks callers without the mypy-zope plugin; the global
    reactor and ``MemoryReactor`` both fit.
    """

    def addReader(self, reader: Any) -> None: ...

    def removeReader(self, reader: Any) -> None: ...


class Timer(Protocol):
    """A one-shot wake-up source a reactor can watch for readability.

    `PreciseScheduler` takes any object with this shape, so tests can inject a fake.
    """

    def fileno(self) -> int: ...

    def arm_at(self, when_ns: int) -> None:
        """Become readable at absolute ``CLOCK_REALTIME`` time ``when_ns`` (past: at once)."""

    def disarm(self) -> None: ...

    def acknowledge(self) -> None:
        """Consume the expiry so the descriptor is no longer readable."""

    def close(self) -> None: ...


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _load_libc() -> ctypes.CDLL:
    if not sys.platform.startswith("linux"):
        raise OSError(errno.ENOSYS, "timerfd needs Linux")
    # The soname first: find_library runs an ldconfig process (tens of ms at start-up).
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        from ctypes.util import find_library  # only here: idle RSS (docs/performance.md)

        return ctypes.CDLL(find_library("c"), use_errno=True)


class TimerFd:
    """A wake-up source for the reactor: a ``CLOCK_REALTIME`` timerfd plus an eventfd.

    `arm_at` a future time arms the timerfd (absolute, so clock steps are followed).
    `arm_at` a time already past writes the eventfd instead: a timerfd armed in the past
    still waits for a timer interrupt, 21 µs (median) from arming to epoll returning in
    this VM, against 1.8 µs for an eventfd. Both live in a private epoll whose descriptor
    is what the reactor watches.

    Python 3.11 has no ``os.timerfd_create`` (3.13 has), so the timerfd uses libc through
    ctypes. Arming costs about 1-2 µs; the scheduler arms at most once per wake-up.
    """

    def __init__(self) -> None:
        self._libc = _load_libc()
        self._settime = self._libc.timerfd_settime
        fd = self._libc.timerfd_create(_CLOCK_REALTIME, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"timerfd_create failed: {os.strerror(err)}")
        self._tfd: int = fd
        self._efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._epoll: select.epoll | None = select.epoll()
        self._epoll.register(self._tfd, select.EPOLLIN)
        self._epoll.register(self._efd, select.EPOLLIN)
        self._kicked = False  # eventfd written and not yet consumed
        self._timer_at = 0  # timerfd deadline (0: disarmed), to skip reading it when idle
        # Reused for every call: building ctypes objects per arm would double the cost.
        self._spec = _Itimerspec()
        self._spec_ref = ctypes.byref(self._spec)

    def fileno(self) -> int:
        if self._epoll is None:
            raise ValueError("timer is closed")
        return self._epoll.fileno()

    def arm_at(self, when_ns: int) -> None:
        if self._epoll is None:
            raise ValueError("timer is closed")
        if when_ns <= realtime_ns():
            if not self._kicked:
                os.eventfd_write(self._efd, 1)
                self._kicked = True
            return
        sec, nsec = divmod(when_ns, 1_000_000_000)
        self._set(sec, nsec, _TFD_TIMER_ABSTIME)
        self._timer_at = when_ns

    def disarm(self) -> None:
        if self._timer_at:
            self._set(0, 0, 0)
            self._timer_at = 0

    def _set(self, sec: int, nsec: int, flags: int) -> None:
        value = self._spec.it_value
        value.tv_sec = sec
        value.tv_nsec = nsec
        if self._settime(self._tfd, flags, self._spec_ref, None) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"timerfd_settime failed: {os.strerror(err)}")

    def acknowledge(self) -> None:
        if self._epoll is None:
            raise ValueError("timer is closed")
        if self._kicked:
            self._kicked = False
            try:
                os.eventfd_read(self._efd)
            except BlockingIOError:
                pass
        if self._timer_at and self._timer_at <= realtime_ns():
            self._timer_at = 0
            try:
                os.read(self._tfd, 8)
            except BlockingIOError:
                pass  # re-armed since it fired: nothing to consume

    def close(self) -> None:
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
            os.close(self._tfd)
            os.close(self._efd)
