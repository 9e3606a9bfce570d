"""The kernel relays the bytes: a BPF sockmap with an sk_skb verdict program (Linux, root).

Both TCP sockets of a splice go into one sockhash, each under its *peer's* socket cookie;
the verdict program, run for every skb a socket receives, redirects it to the egress of
the socket stored under its own cookie (`bpf_sk_redirect_hash`): no copy into user space,
no wake-up of the proxy per read.

Plain redirection has no backpressure: the skb leaves the source's receive queue (its
window opens again) and waits, uncharged, on the peer's psock queue, so a manager that
never reads lets an endpoint fill the proxy's memory (measured: 814 MiB in 3 s). Hence
the program bounds what is in flight per direction: redirected bytes not yet acked by
the destination's peer (psock queue + send queue) over `INFLIGHT_LIMIT`, the skb is
passed to the source socket's own receive queue instead, where it is charged to that
socket, closes its window, and waits for user space (the copy relay) to move it. Order
is kept by counters: once one skb is passed, every later one is passed too until user
space has moved all passed bytes (`ustate.consumed == kstate.passed`), and user space
writes passed bytes only once the destination's psock queue has drained (its socket's
written bytes, TCP_INFO + SIOCOUTQ, cover everything redirected).

Maps, by slot (each socket of a splice has one; `kstate`/`ustate` describe the direction
*from* that socket):
  slots  HASH   socket cookie -> slot (u32)
  socks  SOCKHASH  socket cookie -> the peer socket
  kstate ARRAY  slot -> {redirected, passed}: u64 each, written only by the program
  ustate ARRAY  slot -> {consumed, outbase}: u64 each, written only by user space
            (outbase: the destination's written bytes at the start + what user space wrote)
The program is assembled here (no compiler at run time) and loaded with bpf(2).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import platform
import socket
import struct
import termios
from typing import Any

from packetlab.wire.program import (
    BPF_ADD,
    BPF_ALU,
    BPF_ALU64,
    BPF_CALL,
    BPF_DW,
    BPF_EXIT,
    BPF_IMM,
    BPF_JEQ,
    BPF_JMP,
    BPF_JNE,
    BPF_JSGT,
    BPF_K,
    BPF_LD,
    BPF_LDX,
    BPF_MEM,
    BPF_MOV,
    BPF_STX,
    BPF_SUB,
    BPF_W,
    BPF_X,
    REG_FP,
)

__all__ = ["INFLIGHT_LIMIT", "Sockmap", "SockmapUnavailable", "shared", "tcp_counts"]

INFLIGHT_LIMIT = 4 << 20  # redirected bytes per direction waiting on the peer's psock queue
MAX_SLOTS = 1 << 16  # two per splice
CONSUMED_HOLD = (1 << 63) - 1  # ustate.consumed at the start: pass until user space flips

_NR_BPF = {"x86_64": 321, "aarch64": 280}
_MAP_CREATE, _MAP_LOOKUP, _MAP_UPDATE, _MAP_DELETE, _PROG_LOAD, _PROG_ATTACH = 0, 1, 2, 3, 5, 8
_MAP_HASH, _MAP_ARRAY, _MAP_SOCKHASH = 1, 2, 18
_PROG_SK_SKB = 14
_SK_SKB_VERDICT = 38  # BPF_SK_SKB_VERDICT: no strparser (Linux 5.13+)
_FN_LOOKUP, _FN_COOKIE, _FN_REDIRECT_HASH, _FN_SK_RELEASE, _FN_SKC_TO_TCP_SOCK = 1, 46, 72, 86, 137
_PSEUDO_MAP_FD = 1
_VMLINUX_BTF = "/sys/kernel/btf/vmlinux"
_BTF_EXTRA = {1: 4, 3: 12, 14: 4, 17: 4}  # bytes after a type's header, by kind
_BTF_PER_ITEM = {4: 12, 5: 12, 6: 8, 13: 8, 15: 12, 19: 12}  # and per vlen item
SO_COOKIE = 57
_TCPI_BYTES_ACKED = 120  # offsetof(struct tcp_info, tcpi_bytes_acked); bytes_received follows


class SockmapUnavailable(Exception):
    """BPF sockmaps cannot be used here (not Linux, not root, kernel too old)."""


def _ins(op: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", op, src << 4 | dst, off, imm)


def _ld_map(dst: int, fd: int) -> bytes:
    return _ins(BPF_LD | BPF_IMM | BPF_DW, dst, _PSEUDO_MAP_FD, 0, fd) + _ins(0)


def _mov(dst: int, src: int) -> bytes:
    return _ins(BPF_ALU64 | BPF_MOV | BPF_X, dst, src)


def _movi(dst: int, imm: int) -> bytes:
    return _ins(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm)


def _call(fn: int) -> bytes:
    return _ins(BPF_JMP | BPF_CALL, imm=fn)


def _lookup(map_fd: int, key_off: int) -> list[bytes]:
    """r0 = bpf_map_lookup_elem(map, fp + key_off)"""
    return [_ld_map(1, map_fd), _mov(2, REG_FP), _ins(BPF_ALU64 | BPF_ADD | BPF_K, 2, imm=key_off),
            _call(_FN_LOOKUP)]  # fmt: skip


def btf_member_offset(struct_name: str, member: str, path: str = _VMLINUX_BTF) -> int:
    """Byte offset of a struct member in this kernel, from its BTF (bpf_tcp_sock, the stable
    view, is not offered to sk_skb programs; bpf_skc_to_tcp_sock gives the kernel's own)."""
    with open(path, "rb") as f:
        data = f.read()
    magic, _, _, hdr, type_off, type_len, str_off, _ = struct.unpack_from("<HBBIIIII", data)
    if magic != 0xEB9F:
        raise OSError(errno.EINVAL, f"{path}: not BTF")
    strings = hdr + str_off

    def name(off: int) -> bytes:
        return data[strings + off : data.index(b"\0", strings + off)]

    pos, end = hdr + type_off, hdr + type_off + type_len
    while pos < end:
        name_off, info, _ = struct.unpack_from("<III", data, pos)
        kind, vlen, bitfields = (info >> 24) & 0x1F, info & 0xFFFF, info >> 31
        pos += 12
        if kind == 4 and name(name_off) == struct_name.encode():
            for i in range(vlen):
                m_name, _, off = struct.unpack_from("<III", data, pos + 12 * i)
                if name(m_name) == member.encode():
                    return (off & 0xFFFFFF if bitfields else off) // 8
        pos += _BTF_EXTRA.get(kind, 0) + _BTF_PER_ITEM.get(kind, 0) * vlen
    raise OSError(errno.ENOENT, f"{path}: no struct {struct_name} member {member}")


def verdict_program(
    slots: int, socks: int, kstate: int, ustate: int, offsets: tuple[int, int, int],
    limit: int = INFLIGHT_LIMIT,
) -> bytes:  # fmt: skip
    """The sk_skb verdict program (see the module docstring), as struct bpf_insn bytes.
    Registers: r6 skb, r7 scratch, r8 &kstate[slot], r9 &ustate[slot]; stack: fp-8 the
    cookie, fp-12 the slot, fp-24 the bytes written into the peer socket. `offsets`: of
    bytes_acked, write_seq and snd_una in the kernel's struct tcp_sock."""
    ldx_dw = BPF_LDX | BPF_MEM | BPF_DW
    stx_dw = BPF_STX | BPF_MEM | BPF_DW
    a: list[bytes | tuple[str, int, int, int]] = []  # tuples: jumps to labels, fixed below
    labels: dict[str, int] = {}

    def emit(*items: bytes | list[bytes]) -> None:
        for item in items:
            a.extend(item if isinstance(item, list) else [item])

    def jump(label: str, op: int, reg: int = 0, imm: int = 0) -> None:
        a.append((label, op, reg, imm))

    def label(name: str) -> None:
        labels[name] = sum(len(x) // 8 if isinstance(x, bytes) else 1 for x in a)

    emit(_mov(6, 1), _ins(BPF_LDX | BPF_MEM | BPF_W, 1, 1, 0))
    # A FIN-only skb (no bytes) is dropped: the socket already knows its peer's FIN, and
    # queued behind redirected skbs (redirected, or passed while some wait), the psock
    # would take its 0 bytes for a hard error, report EPIPE and drop everything after.
    jump("drop", BPF_JMP | BPF_JEQ | BPF_K, 1, 0)
    emit(_mov(1, 6), _call(_FN_COOKIE), _ins(stx_dw, REG_FP, 0, -8, 0))
    emit(_lookup(slots, -8))
    jump("pass", BPF_JMP | BPF_JEQ | BPF_K, 0, 0)  # not a relayed socket (or leaving)
    emit(_ins(BPF_LDX | BPF_MEM | BPF_W, 7, 0, 0), _ins(BPF_STX | BPF_MEM | BPF_W, REG_FP, 7, -12))
    emit(_lookup(kstate, -12))
    jump("pass", BPF_JMP | BPF_JEQ | BPF_K, 0, 0)
    emit(_mov(8, 0), _lookup(ustate, -12))
    jump("pass", BPF_JMP | BPF_JEQ | BPF_K, 0, 0)
    emit(_mov(9, 0))
    # passing already (user space holds passed bytes not yet moved): keep passing, in order
    emit(_ins(ldx_dw, 1, 8, 8), _ins(ldx_dw, 2, 9, 0))
    jump("count_pass", BPF_JMP | BPF_JNE | BPF_X, 1, 2)
    # on the peer's psock queue = redirected + outbase - what the peer's socket has taken
    emit(_lookup(socks, -8))
    jump("count_pass", BPF_JMP | BPF_JEQ | BPF_K, 0, 0)
    emit(_mov(7, 0), _mov(1, 0), _call(_FN_SKC_TO_TCP_SOCK))
    jump("release_pass", BPF_JMP | BPF_JEQ | BPF_K, 0, 0)
    # written into the peer = bytes_acked + (write_seq - snd_una), the last two u32
    emit(_ins(ldx_dw, 2, 0, offsets[0]), _ins(BPF_LDX | BPF_MEM | BPF_W, 3, 0, offsets[1]),
         _ins(BPF_LDX | BPF_MEM | BPF_W, 4, 0, offsets[2]), _ins(BPF_ALU | BPF_SUB | BPF_X, 3, 4),
         _ins(BPF_ALU64 | BPF_ADD | BPF_X, 2, 3), _ins(stx_dw, REG_FP, 2, -24))  # fmt: skip
    emit(_mov(1, 7), _call(_FN_SK_RELEASE))
    emit(_ins(ldx_dw, 1, 8, 0), _ins(ldx_dw, 2, 9, 8), _ins(BPF_ALU64 | BPF_ADD | BPF_X, 1, 2),
         _ins(ldx_dw, 2, REG_FP, -24), _ins(BPF_ALU64 | BPF_SUB | BPF_X, 1, 2))  # fmt: skip
    emit(_ins(BPF_LD | BPF_IMM | BPF_DW, 2, 0, 0, limit & 0xFFFFFFFF), _ins(0, imm=limit >> 32))
    jump("count_pass", BPF_JMP | BPF_JSGT | BPF_X, 1, 2)
    emit(
        _mov(1, 6),
        _ld_map(2, socks),
        _mov(3, REG_FP),
        _ins(BPF_ALU64 | BPF_ADD | BPF_K, 3, imm=-8),
        _movi(4, 0),
        _call(_FN_REDIRECT_HASH),
    )
    jump("count_pass", BPF_JMP | BPF_JEQ | BPF_K, 0, 0)  # the peer left the map: pass
    emit(_ins(BPF_LDX | BPF_MEM | BPF_W, 1, 6, 0), _ins(ldx_dw, 2, 8, 0),
         _ins(BPF_ALU64 | BPF_ADD | BPF_X, 2, 1), _ins(stx_dw, 8, 2, 0), _movi(0, 1),
         _ins(BPF_JMP | BPF_EXIT))  # fmt: skip
    label("release_pass")
    emit(_mov(1, 7), _call(_FN_SK_RELEASE))
    label("count_pass")
    emit(_ins(BPF_LDX | BPF_MEM | BPF_W, 1, 6, 0), _ins(ldx_dw, 2, 8, 8),
         _ins(BPF_ALU64 | BPF_ADD | BPF_X, 2, 1), _ins(stx_dw, 8, 2, 8))  # fmt: skip
    label("pass")
    emit(_movi(0, 1), _ins(BPF_JMP | BPF_EXIT))  # SK_PASS: to this socket's own queue
    label("drop")
    emit(_movi(0, 0), _ins(BPF_JMP | BPF_EXIT))  # SK_DROP
    out = b""
    for item in a:
        if isinstance(item, tuple):
            name, op, reg, imm = item
            here = len(out) // 8
            src = imm if op & BPF_X else 0
            out += _ins(op, reg, src, labels[name] - here - 1, 0 if op & BPF_X else imm)
        else:
            out += item
    return out


_libc: Any = None


def _bpf(cmd: int, attr: bytes) -> int:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    nr = _NR_BPF.get(platform.machine())
    if nr is None:
        raise OSError(errno.ENOSYS, f"bpf(2) number unknown on {platform.machine()}")
    buf = ctypes.create_string_buffer(attr, 128)
    r = _libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), buf, ctypes.c_uint(128))
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return int(r)


def _map(kind: int, key: int, value: int, n: int) -> int:
    return _bpf(_MAP_CREATE, struct.pack("<IIIII", kind, key, value, n, 0))


def _elem(cmd: int, fd: int, key: bytes, value: bytes | None = None, out: int = 0) -> bytes:
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(value or b"", max(out, len(value or b""), 1))
    vp = ctypes.addressof(v) if value is not None or out else 0
    _bpf(cmd, struct.pack("<IIQQQ", fd, 0, ctypes.addressof(k), vp, 0))
    return v.raw[:out]


def _cookie(sock: socket.socket) -> bytes:
    return sock.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8)


def tcp_counts(sock: socket.socket) -> tuple[int, int]:
    """(bytes written into the socket so far, bytes received), from TCP_INFO and SIOCOUTQ:
    written = bytes acked + still queued (not yet acked), both counted since the SYN."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    acked, received = struct.unpack_from("<QQ", info, _TCPI_BYTES_ACKED)
    queued = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    return acked + queued, received


def unread(sock: socket.socket) -> int:
    return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0])


class Sockmap:
    """The maps and the verdict program of one process (`shared()`); slots for splices."""

    def __init__(self, limit: int = INFLIGHT_LIMIT) -> None:
        fds: list[int] = []
        try:
            for kind, key, value in ((_MAP_HASH, 8, 4), (_MAP_SOCKHASH, 8, 8),
                                     (_MAP_ARRAY, 4, 16), (_MAP_ARRAY, 4, 16)):  # fmt: skip
                fds.append(_map(kind, key, value, MAX_SLOTS))
            self.slots, self.socks, self.kstate, self.ustate = fds
            offsets = tuple(btf_member_offset("tcp_sock", m)
                            for m in ("bytes_acked", "write_seq", "snd_una"))  # fmt: skip
            self.prog = self._load(verdict_program(self.slots, self.socks, self.kstate,
                                                   self.ustate, offsets, limit))  # type: ignore[arg-type]  # fmt: skip
            fds.append(self.prog)
            _bpf(_PROG_ATTACH, struct.pack("<IIII", self.socks, self.prog, _SK_SKB_VERDICT, 0))
        except OSError as e:
            for fd in fds:
                os.close(fd)
            raise SockmapUnavailable(f"BPF sockmap: {e.strerror or e}") from None
        self.free = list(range(MAX_SLOTS - 1, -1, -1))

    @staticmethod
    def _load(code: bytes) -> int:
        lic = ctypes.create_string_buffer(b"GPL\0")  # the sockmap helpers are GPL-only
        log = ctypes.create_string_buffer(1 << 16)
        insns = ctypes.create_string_buffer(code, len(code))
        attr = struct.pack("<IIQQIIQII16sIII", _PROG_SK_SKB, len(code) // 8,
                           ctypes.addressof(insns), ctypes.addressof(lic), 1, len(log),
                           ctypes.addressof(log), 0, 0, b"pktproxy_relay", 0, 0,
                           _SK_SKB_VERDICT)  # fmt: skip
        try:
            return _bpf(_PROG_LOAD, attr)
        except OSError as e:
            why = log.value.decode(errors="replace").strip().splitlines()[-1:] or [""]
            raise OSError(e.errno, f"{e.strerror} {why[0]}".strip()) from None

    def pair(self, a: socket.socket, b: socket.socket, outbase_ab: int,
             outbase_ba: int) -> tuple[int, int]:  # fmt: skip
        """Relay a <-> b in the kernel from now on; both directions start held (passing to
        user space) until `release`. Returns the slots of a and b."""
        if len(self.free) < 2:
            raise OSError(errno.ENOSPC, "all sockmap slots in use")
        sa, sb = self.free.pop(), self.free.pop()
        ca, cb = _cookie(a), _cookie(b)
        try:
            for slot, outbase in ((sa, outbase_ab), (sb, outbase_ba)):
                _elem(_MAP_UPDATE, self.kstate, struct.pack("<I", slot), bytes(16))
                self.release(slot, CONSUMED_HOLD, outbase)
            _elem(_MAP_UPDATE, self.socks, ca, struct.pack("<Q", b.fileno()))
            _elem(_MAP_UPDATE, self.socks, cb, struct.pack("<Q", a.fileno()))
            _elem(_MAP_UPDATE, self.slots, ca, struct.pack("<I", sa))
            _elem(_MAP_UPDATE, self.slots, cb, struct.pack("<I", sb))
        except OSError:
            self.unpair(a, b, sa, sb)
            raise
        return sa, sb

    def unpair(self, a: socket.socket, b: socket.socket, sa: int, sb: int) -> None:
        for m in (self.slots, self.socks):
            for s in (a, b):
                try:
                    _elem(_MAP_DELETE, m, _cookie(s))
                except OSError:
                    pass
        self.free += [sa, sb]

    def counters(self, slot: int) -> tuple[int, int]:
        """(redirected, passed) bytes from this slot's socket."""
        raw = _elem(_MAP_LOOKUP, self.kstate, struct.pack("<I", slot), out=16)
        red, passed = struct.unpack("<QQ", raw)
        return red, passed

    def release(self, slot: int, consumed: int, outbase: int) -> None:
        value = struct.pack("<QQ", consumed, outbase)
        _elem(_MAP_UPDATE, self.ustate, struct.pack("<I", slot), value)


_shared: Sockmap | None = None
_failure: str | None = None


def shared() -> Sockmap:
    """This process's Sockmap, made on first use; `SockmapUnavailable` with the reason
    (the same every time) where it cannot be."""
    global _shared, _failure
    if _shared is None:
        if _failure is not None:
            raise SockmapUnavailable(_failure)
        try:
            _shared = Sockmap()
        except SockmapUnavailable as e:
            _failure = str(e)
            raise
    return _shared


def available() -> str | None:
    """None if sockmap relaying works here, else why not."""
    try:
        shared()
    except SockmapUnavailable as e:
        return str(e)
    return None
