"""WASI preview 1 for monitors: an empty context (PROTOCOL.md §8.2).

The reference links ``wasi_snapshot_preview1`` with nothing configured: the calls exist
but do nothing. Doing nothing is still answering as an empty WASI context does, or C
code built with wasi-libc goes wrong: a ``printf`` whose ``fd_write`` "succeeds" without
saying how much it wrote retries with whatever the stack held (and spins to the deadline),
and a preopen scan whose ``fd_prestat_get`` always succeeds never ends. So:

* stdout and stderr are sinks (``fd_write`` on fd 1 and 2 writes everything, nowhere);
  stdin is empty (``fd_read`` on fd 0 reads 0 bytes);
* no arguments, no environment, no preopened directory: every other descriptor is EBADF;
* clocks and ``random_get`` work; ``sched_yield`` does nothing; ``poll_oneoff`` and
  ``proc_raise`` are ENOSYS; ``proc_exit`` ends the call (a crash, as a trap);
* a function that preview 1 does not define, or imported with another type, fails the
  load (the reference's linker cannot resolve it).
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable
from typing import Any, Final

from packetlab.monitor.abi import I32, I64, Sig

__all__ = ["FUNCS", "errno_only", "make"]

_R = (I32,)
#: Every function of wasi_snapshot_preview1 and its type.
FUNCS: Final[dict[str, Sig]] = {
    "args_get": ((I32, I32), _R),
    "args_sizes_get": ((I32, I32), _R),
    "environ_get": ((I32, I32), _R),
    "environ_sizes_get": ((I32, I32), _R),
    "clock_res_get": ((I32, I32), _R),
    "clock_time_get": ((I32, I64, I32), _R),
    "fd_advise": ((I32, I64, I64, I32), _R),
    "fd_allocate": ((I32, I64, I64), _R),
    "fd_close": ((I32,), _R),
    "fd_datasync": ((I32,), _R),
    "fd_fdstat_get": ((I32, I32), _R),
    "fd_fdstat_set_flags": ((I32, I32), _R),
    "fd_fdstat_set_rights": ((I32, I64, I64), _R),
    "fd_filestat_get": ((I32, I32), _R),
    "fd_filestat_set_size": ((I32, I64), _R),
    "fd_filestat_set_times": ((I32, I64, I64, I32), _R),
    "fd_pread": ((I32, I32, I32, I64, I32), _R),
    "fd_prestat_get": ((I32, I32), _R),
    "fd_prestat_dir_name": ((I32, I32, I32), _R),
    "fd_pwrite": ((I32, I32, I32, I64, I32), _R),
    "fd_read": ((I32, I32, I32, I32), _R),
    "fd_readdir": ((I32, I32, I32, I64, I32), _R),
    "fd_renumber": ((I32, I32), _R),
    "fd_seek": ((I32, I64, I32, I32), _R),
    "fd_sync": ((I32,), _R),
    "fd_tell": ((I32, I32), _R),
    "fd_write": ((I32, I32, I32, I32), _R),
    "path_create_directory": ((I32, I32, I32), _R),
    "path_filestat_get": ((I32, I32, I32, I32, I32), _R),
    "path_filestat_set_times": ((I32, I32, I32, I32, I64, I64, I32), _R),
    "path_link": ((I32, I32, I32, I32, I32, I32, I32), _R),
    "path_open": ((I32, I32, I32, I32, I32, I64, I64, I32, I32), _R),
    "path_readlink": ((I32, I32, I32, I32, I32, I32), _R),
    "path_remove_directory": ((I32, I32, I32), _R),
    "path_rename": ((I32, I32, I32, I32, I32, I32), _R),
    "path_symlink": ((I32, I32, I32, I32, I32), _R),
    "path_unlink_file": ((I32, I32, I32), _R),
    "poll_oneoff": ((I32, I32, I32, I32), _R),
    "proc_exit": ((I32,), ()),
    "proc_raise": ((I32,), _R),
    "sched_yield": ((), _R),
    "random_get": ((I32, I32), _R),
    "sock_accept": ((I32, I32, I32), _R),
    "sock_recv": ((I32, I32, I32, I32, I32, I32), _R),
    "sock_send": ((I32, I32, I32, I32, I32), _R),
    "sock_shutdown": ((I32, I32), _R),
}

SUCCESS, EBADF, EFAULT, EINVAL, ENOSYS = 0, 8, 21, 28, 52
_STDIO = (0, 1, 2)
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_CLOCKS = {0: time.CLOCK_REALTIME, 1: time.CLOCK_MONOTONIC}
_CLOCKS.update({2: time.CLOCK_PROCESS_CPUTIME_ID, 3: time.CLOCK_THREAD_CPUTIME_ID})


class Exit(Exception):
    """proc_exit(code): the call ends here."""


class Memory:
    """The bytes of one monitor's memory, as the WASI functions need them."""

    def __init__(self, read: Callable[[int, int], bytes], write: Callable[[int, bytes], None],
                 size: Callable[[], int]) -> None:  # fmt: skip
        self.read, self._write, self.size = read, write, size

    def write(self, ptr: int, data: bytes) -> bool:
        if ptr + len(data) > self.size():
            return False
        self._write(ptr, data)
        return True


def errno_only(errno: int) -> Callable[..., int]:
    return lambda *args: errno


def make(name: str, mem: Memory) -> Callable[..., Any]:
    """The function `name` (a key of FUNCS) of an empty WASI context over `mem`."""
    impl = _IMPL.get(name)
    if impl is not None:
        return lambda *args: impl(mem, *args)
    if name.startswith("fd_") and name != "fd_renumber":
        # fd_* on stdio: as a sink or an empty pipe, nothing to seek, sync or stat
        return lambda fd, *args: SUCCESS if fd in _STDIO and name == "fd_close" else EBADF
    if name in ("poll_oneoff", "proc_raise"):
        return errno_only(ENOSYS)
    return errno_only(EBADF)  # paths (no preopens), sockets, fd_renumber


def _fd_write(mem: Memory, fd: int, iovs: int, n: int, out: int) -> int:
    if fd not in (1, 2):
        return EBADF
    if iovs + 8 * n > mem.size():
        return EFAULT
    raw = mem.read(iovs, 8 * n)
    total = sum(struct.unpack_from("<I", raw, 8 * i + 4)[0] for i in range(n)) & 0xFFFFFFFF
    return SUCCESS if mem.write(out, _U32.pack(total)) else EFAULT


def _fd_read(mem: Memory, fd: int, iovs: int, n: int, out: int) -> int:
    if fd != 0:
        return EBADF
    return SUCCESS if mem.write(out, _U32.pack(0)) else EFAULT


def _fd_fdstat_get(mem: Memory, fd: int, buf: int) -> int:
    if fd not in _STDIO:
        return EBADF
    return SUCCESS if mem.write(buf, bytes(24)) else EFAULT  # filetype unknown: no tty


def _sizes(mem: Memory, count: int, size: int) -> int:
    ok = mem.write(count, _U32.pack(0)) and mem.write(size, _U32.pack(0))
    return SUCCESS if ok else EFAULT


def _clock_res_get(mem: Memory, clock: int, out: int) -> int:
    if clock not in _CLOCKS:
        return EINVAL
    return SUCCESS if mem.write(out, _U64.pack(1)) else EFAULT


def _clock_time_get(mem: Memory, clock: int, precision: int, out: int) -> int:
    if clock not in _CLOCKS:
        return EINVAL
    now = time.clock_gettime_ns(_CLOCKS[clock])
    return SUCCESS if mem.write(out, _U64.pack(now)) else EFAULT


def _random_get(mem: Memory, buf: int, n: int) -> int:
    if buf + n > mem.size():
        return EFAULT
    return SUCCESS if mem.write(buf, os.urandom(n)) else EFAULT


def _proc_exit(mem: Memory, code: int) -> None:
    raise Exit(f"proc_exit({code})")


_IMPL: dict[str, Callable[..., Any]] = {
    "fd_write": _fd_write,
    "fd_read": _fd_read,
    "fd_fdstat_get": _fd_fdstat_get,
    "args_sizes_get": _sizes,
    "environ_sizes_get": _sizes,
    "args_get": lambda mem, a, b: SUCCESS,
    "environ_get": lambda mem, a, b: SUCCESS,
    "clock_res_get": _clock_res_get,
    "clock_time_get": _clock_time_get,
    "random_get": _random_get,
    "sched_yield": lambda mem: SUCCESS,
    "proc_exit": _proc_exit,
}
