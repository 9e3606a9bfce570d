"""The monitor host ABI of the reference endpoint (PROTOCOL.md §8.2-§8.4), as data.

Every signature the host checks or calls is declared once here; the runtime derives its
load-time type checks and its raw argument layouts from these tables.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

from packetlab.wire.constants import PKTLAB_WASM

__all__ = [
    "CHECKS",
    "CHECK_PARAMS",
    "HOST_FUNCS",
    "I32",
    "I64",
    "INFO_MAX",
    "MEMORY_MIN_PAGES",
    "MONITOR_CRASH",
    "PM_LEN",
    "REQUESTS",
    "RESULT_SUFFIX",
    "MonitorCrash",
    "MonitorLoadError",
    "Settings",
    "Sig",
    "digest",
    "encode",
]


class MonitorLoadError(Exception):
    """A module the host refuses to run (bad bytes, imports or exports, failed setup).
    `decode` is True when the bytes are not a WebAssembly module at all; the other
    failures are the reference's load (link) failures (§8.5)."""

    def __init__(self, message: str, *, decode: bool = False) -> None:
        super().__init__(message)
        self.decode = decode


class MonitorCrash(Exception):
    """A call into a monitor trapped, ran past its deadline, or broke the ABI."""


#: The default burst of a session's monitor time is at most this (s; `Settings.time_burst`).
TIME_BURST_AUTO_MAX = 1.0


@dataclass(frozen=True)
class Settings:
    """The endpoint's monitor settings (§7.4)."""

    deadline_ms: int = 100  # MonitorDeadlineMillsec
    memory_max: int = 1048576  # MonitorMemoryMax (bytes per monitor memory)
    debug: bool = False  # MonitorEnableDebug
    report_crash: bool = False  # MonitorReportCrash
    #: MonitorTimeMillsec: ms of monitor time a session may use per second (0: no cap)
    #: (packetlab.endpoint.montime)
    time_ms: int = 500
    #: MonitorTimeBurstMillsec: ms of it saved up at most (0: `time_burst`'s default)
    time_burst_ms: int = 0

    @property
    def time_burst(self) -> float:
        """Seconds of monitor time a session saves up at most: the longest its monitors
        hold the reactor at once. By default twice the deadline (one call cut off at its
        deadline leaves the monitors working at once, §8.5), at most
        `TIME_BURST_AUTO_MAX` s: the deadline goes up to 60 s."""
        if self.time_burst_ms:
            return self.time_burst_ms / 1000
        return min(2 * self.deadline_ms / 1000, TIME_BURST_AUTO_MAX)


I32: Final = "i32"
I64: Final = "i64"

#: (params, results) of one function, as wasm value type names.
Sig = tuple[tuple[str, ...], tuple[str, ...]]

PM_LEN = 256  # persistent memory per monitor (§8.4)
INFO_MAX = 0x10000  # initialize() info buffer (PKTLAB_LINFO_INFO_MAX)
MEMORY_MIN_PAGES = 2  # the host memory: 2 pages, no maximum (§8.5)
MONITOR_CRASH = 0xFFFF  # any rv >= this, a trap, a timeout, a missing export (§8.3)
MEMORY_MODULE = "monitor"
MEMORY_NAME = "memory"
HOST_MODULE = "env"
WASI_MODULE = "wasi_snapshot_preview1"

# Check arguments (§8.2), by name: scalars are i32 except the times (i64); byte strings
# are wasm pointers (0 when absent); the last two are persistent_memory_ptr and _len.
_PM = ("pm", "pmlen")
CHECK_PARAMS: Final[dict[str, tuple[str, ...]]] = {
    "nopen": (
        "sktid", "family", "proto", "rbufsz", "laddrlen", "lportlen", "raddrlen",
        "rportlen", "laddr", "lport", "raddr", "rport", *_PM,
    ),
    "nclose": ("sktid", *_PM),
    "nsend": (
        "sktid", "family", "proto", "time", "tag", "raddrlen", "raddr", "rportlen",
        "rport", "len", *_PM,
    ),
    "ndata": (
        "sktid", "family", "proto", "time", "raddrlen", "raddr", "rportlen", "rport",
        "len", *_PM,
    ),
    "ncap": ("sktid", "family", "proto", "endtime", *_PM),
}  # fmt: skip
_WIDE = frozenset({"time", "endtime"})  # 64-bit times, passed whole (§8.5 QUIRK fixed)
CHECKS: Final[dict[str, tuple[str, ...]]] = {
    kind: tuple(I64 if n in _WIDE else I32 for n in names) for kind, names in CHECK_PARAMS.items()
}
CHECK_PREFIX = "check_pktlab_message_"
RESULT_PREFIX = "pktlab_message_"
RESULT_SUFFIX = "_result"
#: Requests with an optional `pktlab_message_<kind>_result(<same args>, errid)` callback.
REQUESTS: Final = ("nopen", "nclose", "nsend", "ncap")

ALLOC: Final[dict[str, Sig]] = {
    "malloc": ((I32,), (I32,)),
    "free": ((I32,), ()),
}
INITIALIZE: Final[Sig] = ((I32, I32, I32), (I32,))  # (info*, pm*, pmlen) -> info length

#: Host functions a monitor may import from module "env".
HOST_FUNCS: Final[dict[str, Sig]] = {
    "read_vmem_region": ((I32, I32, I32), (I32,)),  # (vmem addr, buf*, len) -> 0 ok
    "persistent_memory_flush": ((), (I32,)),
    "endpoint_debug_enabled": ((), (I32,)),
    "monitor_debug": ((I32,), ()),  # (const char *)
}


def check_sig(kind: str) -> Sig:
    return CHECKS[kind], (I32,)


def result_sigs(kind: str) -> tuple[Sig, ...]:
    """Accepted types of a `*_result` callback: it returns nothing (or an ignored i32)."""
    params = (*CHECKS[kind], I32)
    return (params, ()), (params, (I32,))


def encode(wasm: bytes) -> bytes:
    """The encoded program (§8.1): type byte PKTLAB_WASM, then the module."""
    return bytes([PKTLAB_WASM]) + wasm


def digest(wasm: bytes) -> bytes:
    """SHA-256(0x01 || wasm): what a certificate's ``monitor=`` limit lists (§8.1)."""
    return hashlib.sha256(encode(wasm)).digest()
