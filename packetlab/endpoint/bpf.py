"""Kernel side of ncap (PROTOCOL.md §3.4): load eBPF socket filters, raw capture sockets.

A capture socket is ``AF_PACKET/SOCK_DGRAM/ETH_P_ALL`` bound to one interface, so a
filter sees the packet from the IP header on (offset 0). Until the first ncap it carries a
classic ``ret 0`` filter and receives nothing. An ncap filter is a PacketLab eBPF program,
translated to Linux ``struct bpf_insn``, loaded as ``BPF_PROG_TYPE_SOCKET_FILTER`` (license
"proprietary": no GPL helpers) and attached with ``SO_ATTACH_BPF``, which replaces the
previous filter atomically.

Linux only; loading needs CAP_BPF (or root) and CAP_NET_RAW for the socket.
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import os
import platform
import select
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from packetlab.endpoint.netif import all_interface_addresses
from packetlab.wire.program import MAX_FILTER_LEN, Insn, ProgramError, ebpf_insns

__all__ = [
    "BadFilterEncoding",
    "BpfLoadError",
    "BpfProgram",
    "CaptureSocket",
    "CapturedPacket",
    "FilterRejected",
    "VerifierError",
    "attach_bpf",
    "attach_drop_all",
    "interface_addresses",
    "interface_for_address",
    "load_ncap_filter",
    "load_socket_filter",
    "to_linux_insns",
]

_NR_BPF = {"x86_64": 321, "aarch64": 280, "i686": 357, "armv7l": 386, "riscv64": 280}
BPF_PROG_LOAD = 5
BPF_PROG_TYPE_SOCKET_FILTER = 1
SO_ATTACH_FILTER = 26
SO_DETACH_FILTER = 27  # also SO_DETACH_BPF
SO_TIMESTAMPNS = 35  # SO_TIMESTAMPNS_OLD: struct timespec with 64-bit fields on 64-bit hosts
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
SO_ATTACH_BPF = 50
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_STATISTICS = 6  # struct tpacket_stats {tp_packets, tp_drops}; reading resets it
PACKET_IGNORE_OUTGOING = 23  # Linux 4.20
LICENSE = b"proprietary\0"
# Verifier log: first size tried, and the most we grow it to when the kernel says ENOSPC.
_LOG_START, _LOG_MAX = 1 << 16, 1 << 24
_STAT_PREFIXES = ("processed ", "verification time", "stack depth")


class FilterRejected(Exception):
    """The filter cannot be installed: the endpoint answers ncap with ESKTBADFILT."""


class BadFilterEncoding(FilterRejected):
    """Too long, undecodable, empty, or not eBPF."""


class BpfLoadError(FilterRejected):
    """bpf(BPF_PROG_LOAD) failed; ``errno`` is the error, ``log`` the verifier's text."""

    def __init__(self, message: str, err: int, log: str = "") -> None:
        super().__init__(message)
        self.errno = err
        self.log = log


class VerifierError(BpfLoadError):
    """The kernel verifier refused the program; ``reason`` is its last verdict line."""

    def __init__(self, err: int, log: str) -> None:
        lines = [ln for ln in log.splitlines() if ln.strip()]
        verdict = [ln for ln in lines if not ln.startswith(_STAT_PREFIXES)]
        self.reason = verdict[-1] if verdict else (lines[-1] if lines else "")
        name = errno.errorcode.get(err, str(err))
        super().__init__(f"kernel verifier rejected the filter ({name}): {self.reason}", err, log)


def to_linux_insns(insns: Sequence[Insn]) -> bytes:
    """Linux ``struct bpf_insn`` array (host little-endian, dst in the LOW nibble)."""
    return b"".join(struct.pack("<BBhi", i.opcode, i.src << 4 | i.dst, i.off, i.imm) for i in insns)


class _ProgLoadAttr(ctypes.Structure):
    # The BPF_PROG_LOAD part of union bpf_attr up to prog_name; the kernel zero-fills the rest.
    _fields_ = [
        ("prog_type", ctypes.c_uint32),
        ("insn_cnt", ctypes.c_uint32),
        ("insns", ctypes.c_uint64),
        ("license", ctypes.c_uint64),
        ("log_level", ctypes.c_uint32),
        ("log_size", ctypes.c_uint32),
        ("log_buf", ctypes.c_uint64),
        ("kern_version", ctypes.c_uint32),
        ("prog_flags", ctypes.c_uint32),
        ("prog_name", ctypes.c_char * 16),
    ]


_libc: Any = None


def _syscall() -> Any:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    return _libc.syscall


def _nr_bpf() -> int:
    try:
        return _NR_BPF[platform.machine()]
    except KeyError:
        raise BpfLoadError(
            f"bpf(2) syscall number unknown on {platform.machine()}", errno.ENOSYS
        ) from None


def _prog_load(code: bytes, count: int, name: bytes, log: ctypes.Array[Any] | None) -> int:
    insns = ctypes.create_string_buffer(code, len(code))
    lic = ctypes.create_string_buffer(LICENSE, len(LICENSE))
    attr = _ProgLoadAttr(
        prog_type=BPF_PROG_TYPE_SOCKET_FILTER,
        insn_cnt=count,
        insns=ctypes.addressof(insns),
        license=ctypes.addressof(lic),
        prog_name=name[:15],
    )
    if log is not None:
        attr.log_level = 1
        attr.log_size = len(log)
        attr.log_buf = ctypes.addressof(log)
    fd: int = _syscall()(
        ctypes.c_long(_nr_bpf()),
        ctypes.c_int(BPF_PROG_LOAD),
        ctypes.byref(attr),
        ctypes.c_uint(ctypes.sizeof(attr)),
    )
    return fd if fd >= 0 else -ctypes.get_errno()


class BpfProgram:
    """A loaded socket-filter program (owns its fd; attaching keeps the kernel's reference)."""

    def __init__(self, fd: int, insn_count: int) -> None:
        self.fd = fd
        self.insn_count = insn_count

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> BpfProgram:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def load_socket_filter(program: Sequence[Insn] | bytes, *, name: str = "pktlab_ncap") -> BpfProgram:
    """Load PacketLab eBPF instructions (or an encoded eBPF program) as a socket filter.

    The first attempt runs without a verifier log (cheaper); on failure the load is
    repeated with a log so that the exception carries the verifier's reason.
    """
    try:
        insns = ebpf_insns(program)
    except ProgramError as exc:
        raise BadFilterEncoding(str(exc)) from exc
    if not insns:
        raise BadFilterEncoding("empty eBPF program: no instructions")
    code = to_linux_insns(insns)
    bname = name.encode("ascii", "replace")
    fd = _prog_load(code, len(insns), bname, None)
    if fd >= 0:
        return BpfProgram(fd, len(insns))
    err = -fd
    if err not in (errno.EACCES, errno.EINVAL, errno.E2BIG, errno.ERANGE):
        raise BpfLoadError(f"bpf(BPF_PROG_LOAD) failed: {os.strerror(err)}", err)
    size = _LOG_START
    while True:
        log = ctypes.create_string_buffer(size)
        fd = _prog_load(code, len(insns), bname, log)
        if fd >= 0:  # passed with the log on: the first failure was transient
            return BpfProgram(fd, len(insns))
        if -fd == errno.ENOSPC and size < _LOG_MAX:
            size *= 4
            continue
        text = log.value.decode("utf-8", "replace")
        if not text.strip():
            raise BpfLoadError(f"bpf(BPF_PROG_LOAD) failed: {os.strerror(err)}", err)
        raise VerifierError(err if -fd == errno.ENOSPC else -fd, text)


def load_ncap_filter(encoded: bytes) -> BpfProgram:
    """Check and load an ncap ``filter`` field: an encoded eBPF program of ≤ 0x10000 bytes."""
    if len(encoded) > MAX_FILTER_LEN:
        raise BadFilterEncoding(
            f"filter is {len(encoded)} bytes, more than the {MAX_FILTER_LEN} allowed"
        )
    return load_socket_filter(bytes(encoded))


def attach_bpf(sock: socket.socket, program: BpfProgram) -> None:
    """Attach (or replace) the socket's filter; ``program`` may be closed afterwards."""
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_BPF, struct.pack("i", program.fd))


def attach_drop_all(sock: socket.socket) -> None:
    """Attach the classic filter ``ret #0``: the socket queues nothing from now on."""
    insn = ctypes.create_string_buffer(struct.pack("HBBI", 0x06, 0, 0, 0), 8)  # BPF_RET|BPF_K
    fprog = struct.pack("@HP", 1, ctypes.addressof(insn))  # struct sock_fprog
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


# --- interfaces and addresses ----------------------------------------------------------

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _all_addresses() -> list[tuple[str, IPAddress]]:
    """(interface, address) pairs of the calling thread's network namespace (getifaddrs)."""
    return [(a.name, a.address) for a in all_interface_addresses()]


def interface_addresses(ifname: str) -> list[IPAddress]:
    """IPv4 and IPv6 addresses assigned to ``ifname``."""
    return [a for name, a in _all_addresses() if name == ifname]


def interface_for_address(address: str | IPAddress) -> str:
    """The interface that holds ``address``; ValueError if none does. Any of 127.0.0.0/8
    is the loopback interface's, as Linux's local route makes it (127.0.0.2 is bound and
    answered on `lo`, though only 127.0.0.1 is listed)."""
    addr = ipaddress.ip_address(address)
    pairs = _all_addresses()
    for name, a in pairs:
        if a == addr:
            return name
    if addr.version == 4 and addr.is_loopback:
        for name, a in pairs:
            if a.version == 4 and a.is_loopback:
                return name
    raise ValueError(f"no interface has address {addr}")


def _resolve_interface(interface: str | int | IPAddress) -> str:
    if isinstance(interface, int):
        return socket.if_indextoname(interface)
    if isinstance(interface, str):
        try:
            ipaddress.ip_address(interface)
        except ValueError:
            socket.if_nametoindex(interface)  # OSError(ENODEV) if there is none
            return interface
    return interface_for_address(interface)


# --- the capture socket ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CapturedPacket:
    data: bytes  # from the IP header on
    time_ns: int  # receive time, CLOCK_REALTIME ns: the kernel's (SO_TIMESTAMPNS) if it gave one
    pkttype: int  # sll_pkttype: PACKET_HOST, PACKET_OUTGOING, ...
    protocol: int  # ethertype, host order
    truncated: bool  # larger than the receive buffer (MSG_TRUNC)
    kernel_timestamp: bool = True  # False: the kernel gave no timestamp, time_ns is ours

    @property
    def outgoing(self) -> bool:
        return self.pkttype == PACKET_OUTGOING


def ip_destination(packet: bytes) -> IPAddress | None:
    """Destination address of an IPv4/IPv6 packet, or None if too short/not IP."""
    version = packet[0] >> 4 if packet else 0
    if version == 4 and len(packet) >= 20:
        return ipaddress.IPv4Address(packet[16:20])
    if version == 6 and len(packet) >= 40:
        return ipaddress.IPv6Address(packet[24:40])
    return None


class CaptureSocket:
    """The raw capture socket of one interface (what a raw PacketLab socket listens on).

    Created with a drop-all filter *before* it is bound, so nothing is queued until
    :meth:`set_filter`. Non-blocking (for a reactor): :meth:`recv` returns None when nothing
    is queued; :meth:`wait` blocks with a timeout.
    """

    def __init__(self, interface: str | int | IPAddress, *, rcvbuf: int = 0) -> None:
        self.ifname = _resolve_interface(interface)
        self.ifindex = socket.if_nametoindex(self.ifname)
        self.local_addresses = frozenset(interface_addresses(self.ifname))
        # Protocol 0: the socket is hooked to no traffic until bind(), so the drop-all
        # filter is in place before the first packet can be queued.
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
        try:
            attach_drop_all(sock)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            if rcvbuf:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            if self.ifname == "lo":
                # Loopback shows each packet going out and coming in; the outgoing copy
                # is never reported, and queued it took room and made the kernel's drop
                # count (`drops`) count packets twice.
                try:
                    sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
                except OSError:  # before Linux 4.20: the reader skips them
                    pass
            sock.bind((self.ifname, ETH_P_ALL))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> CaptureSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set_filter(self, program: BpfProgram | Sequence[Insn] | bytes) -> None:
        """Install an eBPF filter (a loaded program, instructions or an encoded program).

        Raises FilterRejected (BadFilterEncoding / VerifierError / BpfLoadError). Packets the
        previous filter accepted stay queued; call :meth:`drain` to drop them.
        """
        if isinstance(program, BpfProgram):
            attach_bpf(self.sock, program)
            return
        if isinstance(program, bytes | bytearray | memoryview):
            loaded = load_ncap_filter(bytes(program))
        else:
            loaded = load_socket_filter(program)
        with loaded:
            attach_bpf(self.sock, loaded)

    def drop_all(self) -> None:
        """Back to the drop-all classic filter (before the first ncap, after endtime)."""
        attach_drop_all(self.sock)

    def drops(self) -> int:
        """Packets the filter accepted that the kernel dropped at the socket's full queue
        since the last call (PACKET_STATISTICS' tp_drops, which reading resets)."""
        try:
            stats = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        except OSError:
            return 0
        return int(struct.unpack("=II", stats)[1])

    def drain(self) -> int:
        """Discard whatever is queued; returns the number of packets dropped."""
        n = 0
        while True:
            try:
                self.sock.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return n
            n += 1

    def is_own_outgoing(self, packet: CapturedPacket) -> bool:
        """True for a packet this host sent out of the interface to someone else (§3.4)."""
        return packet.outgoing and ip_destination(packet.data) not in self.local_addresses

    def recv_raw(self, bufsize: int = 65535) -> CapturedPacket | None:
        """The next queued packet, own outgoing ones included; None if nothing is queued."""
        try:
            data, ancdata, flags, addr = self.sock.recvmsg(
                bufsize, socket.CMSG_SPACE(16), socket.MSG_DONTWAIT
            )
        except BlockingIOError:
            return None
        stamp = None
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS and len(payload) >= 16:
                sec, nsec = struct.unpack_from("@qq", payload)
                stamp = sec * 1_000_000_000 + nsec
        return CapturedPacket(
            data=data,
            time_ns=stamp if stamp is not None else time.time_ns(),
            pkttype=addr[2],
            protocol=addr[1],
            truncated=bool(flags & socket.MSG_TRUNC),
            kernel_timestamp=stamp is not None,
        )

    def recv(self, bufsize: int = 65535, *, skip_own: bool = True) -> CapturedPacket | None:
        """The next packet to report (own outgoing packets skipped); None if none is queued."""
        while True:
            pkt = self.recv_raw(bufsize)
            if pkt is None or not (skip_own and self.is_own_outgoing(pkt)):
                return pkt

    def wait(self, timeout: float) -> CapturedPacket | None:
        """Blocking helper for tests and tools: the next reported packet within ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            pkt = self.recv()
            if pkt is not None:
                return pkt
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            select.select([self.sock], [], [], left)
