"""The endpoint clock (CLOCK_REALTIME in ns) and a Linux timerfd armed at absolute times.

Protocol times are ns since the Unix epoch on the endpoint's ``CLOCK_REALTIME`` (PROTOCOL.md
§1.1). ``time.time_ns`` reads exactly that clock on Linux and costs ~50 ns, against ~85 ns for
``time.clock_gettime_ns(CLOCK_REALTIME)`` (argument parsing), so it is the clock we spin on.

The timerfd gives the reactor a ns-resolution wake-up: epoll (and so Twisted) only takes
timeouts in ms, but a timerfd armed with ``TFD_TIMER_ABSTIME`` becomes readable at the
requested ``CLOCK_REALTIME`` instant and the kernel follows clock steps for us.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import sys
import time
from typing import Any, Protocol

__all__ = ["ReaderReactor", "Timer", "TimerFd", "realtime_ns"]

#: Current ``CLOCK_REALTIME`` in ns (the protocol's time base).
realtime_ns = time.time_ns

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
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class TimerFd:
    """A non-blocking ``CLOCK_REALTIME`` timerfd, armed at absolute times.

    Python 3.11 has no ``os.timerfd_create`` (3.13 has), so this uses libc through ctypes.
    Arming costs about 1-2 µs; the scheduler arms at most once per wake-up.
    """

    def __init__(self) -> None:
        self._libc = _load_libc()
        self._settime = self._libc.timerfd_settime
        fd = self._libc.timerfd_create(_CLOCK_REALTIME, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"timerfd_create failed: {os.strerror(err)}")
        self._fd: int = fd
        # Reused for every call: building ctypes objects per arm would double the cost.
        self._spec = _Itimerspec()
        self._spec_ref = ctypes.byref(self._spec)

    def fileno(self) -> int:
        if self._fd < 0:
            raise ValueError("timerfd is closed")
        return self._fd

    def arm_at(self, when_ns: int) -> None:
        # An all-zero it_value would disarm; 1 ns after the epoch is "already expired".
        sec, nsec = divmod(max(when_ns, 1), 1_000_000_000)
        self._set(sec, nsec, _TFD_TIMER_ABSTIME)

    def disarm(self) -> None:
        self._set(0, 0, 0)

    def _set(self, sec: int, nsec: int, flags: int) -> None:
        value = self._spec.it_value
        value.tv_sec = sec
        value.tv_nsec = nsec
        if self._settime(self.fileno(), flags, self._spec_ref, None) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"timerfd_settime failed: {os.strerror(err)}")

    def acknowledge(self) -> None:
        try:
            os.read(self.fileno(), 8)
        except BlockingIOError:
            pass  # re-armed or disarmed since it fired: nothing to consume

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)
