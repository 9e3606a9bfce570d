"""A ctypes binding of the few libpcap calls we use (Debian package libpcap0.8).

No capture handle is ever opened: ``pcap_open_dead`` gives a handle for compiling only,
``pcap_compile`` turns a tcpdump expression into classic BPF, and ``pcap_offline_filter``
runs a compiled program on one packet in memory.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DLT_RAW",
    "PCAP_NETMASK_UNKNOWN",
    "ClassicInsn",
    "LibpcapUnavailable",
    "OfflineFilter",
    "PcapSyntaxError",
    "compile_classic",
]

DLT_RAW = 12  # packets start at the IP header (Linux libpcap's value; OpenBSD uses 14)
PCAP_NETMASK_UNKNOWN = 0xFFFF_FFFF
MAX_SNAPLEN = 262144


class LibpcapUnavailable(RuntimeError):
    """libpcap (Debian package libpcap0.8) is not installed."""


class PcapSyntaxError(ValueError):
    """libpcap refused the expression; ``pcap_message`` is its own error text."""

    def __init__(self, expression: str, pcap_message: str) -> None:
        super().__init__(f"bad filter expression {expression!r}: {pcap_message}")
        self.expression = expression
        self.pcap_message = pcap_message


@dataclass(frozen=True, slots=True)
class ClassicInsn:
    """One classic BPF instruction (struct sock_filter)."""

    code: int
    jt: int = 0
    jf: int = 0
    k: int = 0


class _Insn(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint32),
    ]


class _Program(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(_Insn))]


class _PktHdr(ctypes.Structure):
    _fields_ = [
        ("tv_sec", ctypes.c_long),
        ("tv_usec", ctypes.c_long),
        ("caplen", ctypes.c_uint32),
        ("len", ctypes.c_uint32),
    ]


_lib: Any = None
_lock = threading.Lock()  # pcap_compile is not reentrant in older libpcaps
_NAMES = ("libpcap.so.0.8", "libpcap.so.1", "libpcap.so")


def _candidates() -> Iterator[str | None]:
    """The usual sonames, `find_library`'s answer only when the first fails: it runs
    `/sbin/ldconfig -p` in a subprocess, at every `pktlab run` if asked up front."""
    yield _NAMES[0]
    yield ctypes.util.find_library("pcap")
    yield from _NAMES[1:]


def libpcap() -> Any:
    """The loaded library with argument types set (`LibpcapUnavailable` if missing)."""
    global _lib
    if _lib is not None:
        return _lib
    for name in _candidates():
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        lib.pcap_open_dead.restype = ctypes.c_void_p
        lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.pcap_compile.restype = ctypes.c_int
        lib.pcap_compile.argtypes = [
            ctypes.c_void_p, ctypes.POINTER(_Program), ctypes.c_char_p, ctypes.c_int,
            ctypes.c_uint32,
        ]  # fmt: skip
        lib.pcap_geterr.restype = ctypes.c_char_p
        lib.pcap_geterr.argtypes = [ctypes.c_void_p]
        lib.pcap_freecode.argtypes = [ctypes.POINTER(_Program)]
        lib.pcap_close.argtypes = [ctypes.c_void_p]
        lib.pcap_offline_filter.restype = ctypes.c_int
        lib.pcap_offline_filter.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p]
        _lib = lib
        return lib
    raise LibpcapUnavailable(
        f"libpcap not found (tried {', '.join(_NAMES)}); "
        "install it with: apt-get install libpcap0.8"
    )


def _compile(
    expression: str, snaplen: int, optimize: bool, linktype: int, netmask: int
) -> _Program:
    """A compiled program the caller frees with ``pcap_freecode``; `netmask` is
    pcap_compile's (a 32-bit value, 255.255.255.0 = 0xFFFFFF00; PCAP_NETMASK_UNKNOWN:
    `ip broadcast` is refused)."""
    try:
        raw = expression.encode("ascii")
    except UnicodeEncodeError:
        raise PcapSyntaxError(expression, "expression is not ASCII") from None
    if b"\0" in raw:
        raise PcapSyntaxError(expression, "expression contains a NUL byte")
    lib = libpcap()
    with _lock:
        handle = lib.pcap_open_dead(linktype, snaplen)
        if not handle:
            raise LibpcapUnavailable(f"pcap_open_dead({linktype}, {snaplen}) failed")
        try:
            prog = _Program()
            rc = lib.pcap_compile(handle, ctypes.byref(prog), raw, int(optimize), netmask)
            if rc != 0:
                message = (lib.pcap_geterr(handle) or b"unknown error").decode(errors="replace")
                raise PcapSyntaxError(expression, message)
            return prog
        finally:
            lib.pcap_close(handle)


def compile_classic(
    expression: str,
    *,
    snaplen: int = 0xFFFF,
    optimize: bool = True,
    linktype: int = DLT_RAW,
    netmask: int = PCAP_NETMASK_UNKNOWN,
) -> list[ClassicInsn]:
    """Compile a tcpdump expression with libpcap into classic BPF for ``linktype``."""
    prog = _compile(expression, snaplen, optimize, linktype, netmask)
    try:
        return [ClassicInsn(i.code, i.jt, i.jf, i.k) for i in prog.bf_insns[: prog.bf_len]]
    finally:
        libpcap().pcap_freecode(ctypes.byref(prog))


class OfflineFilter:
    """A tcpdump expression compiled once for raw IP packets, run on packets in memory."""

    def __init__(
        self, expression: str, *, linktype: int = DLT_RAW, netmask: int = PCAP_NETMASK_UNKNOWN
    ) -> None:
        self.expression = expression
        self._lib = lib = libpcap()
        self._prog = _compile(expression, MAX_SNAPLEN, True, linktype, netmask)
        self._hdr = _PktHdr()
        self._prog_addr = ctypes.addressof(self._prog)
        self._hdr_addr = ctypes.addressof(self._hdr)
        self._free = lib.pcap_freecode

    def matches(self, packet: bytes) -> bool:
        hdr = self._hdr
        hdr.caplen = hdr.len = len(packet)
        return bool(self._lib.pcap_offline_filter(self._prog_addr, self._hdr_addr, packet))

    def __del__(self) -> None:
        prog = getattr(self, "_prog", None)
        if prog is not None and prog.bf_len:
            self._free(ctypes.byref(prog))
            prog.bf_len = 0
