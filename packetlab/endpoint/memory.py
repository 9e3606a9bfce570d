"""The endpoint virtual memory (PROTOCOL.md §2): mread/mwrite over the system block and
the 256 socket blocks.

The system block is one prebuilt image; only TIME (sampled at read) and BUFUSED change.
Socket blocks are rendered from the live `Skt` with one struct call. Unmapped bytes read
as zero, and unlike the reference a read that starts in a gap still returns the mapped
bytes after it. Writes reach only the RW fields of open sockets (state ≥ OPENING); every
other byte of a write is dropped silently (the request still succeeds).

Beyond the reference, a socket block's SKT_TCPINFO region (0x200, read-only) is sampled
from the kernel's TCP_INFO when it is read, through the `tcp_info` hook the network edge
supplies (`tcp_info_region` packs it); without the hook, or for a socket that is not TCP,
it reads as zeros.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Callable, Sequence

from packetlab.endpoint.budget import Budget
from packetlab.endpoint.config import EndpointConfig
from packetlab.endpoint.sockets import Skt
from packetlab.wire import vmem
from packetlab.wire.constants import HdrMod, TransSup

__all__ = [
    "SKT_BLOCK_USED",
    "SystemImage",
    "TcpInfoHook",
    "VirtualMemory",
    "mapped_system_image",
    "system_image",
    "tcp_info_region",
]

#: The system block's bytes (reads slice it, TIME and BUFUSED are packed into it).
SystemImage = bytearray | mmap.mmap

SYS_BASE = vmem.SYS_BASE
SYS_END = vmem.SYS_BASE + vmem.SYS_SPAN
SKT_BASE = vmem.SKT_BASE
SKT_END = vmem.SKT_BASE + vmem.SKT_SPAN
STRIDE = vmem.SKT_STRIDE
_TIME = vmem.TIME.addr - SYS_BASE
_BUFUSED = vmem.BUFUSED.addr - SYS_BASE
_DYN_LO = SYS_BASE + _TIME
_DYN_HI = SYS_BASE + _BUFUSED + 4

# The whole used part of a socket block (0x000-0x17f), laid out as in §2.2.
_BLOCK = struct.Struct(">BBb13x16s16sHH12xII8xII8xbH13xH142x128s")
SKT_BLOCK_USED = _BLOCK.size
assert SKT_BLOCK_USED == vmem.SKT_CTFL.addr + vmem.SKT_CTFL.size
_ZERO_BLOCK = bytes(SKT_BLOCK_USED)
_RW = [(r.addr, r.addr + r.size) for r in vmem.SKT_WRITABLE]
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_TCPINFO = struct.Struct(vmem.TCPINFO_STRUCT)
_TI_LO = vmem.SKT_TCPINFO.addr
_TI_HI = _TI_LO + vmem.SKT_TCPINFO.size

#: The SKT_TCPINFO bytes of a socket now, or None (not TCP, closed, not available).
TcpInfoHook = Callable[[Skt], bytes | None]

# Linux's struct tcp_info (include/uapi/linux/tcp.h), native byte order: the offsets of
# the u32 fields SKT_TCPINFO carries, in its order.
_KERNEL_U32 = (100, 80, 16, 68, 72, 60, 228, 24)  # total_retrans snd_cwnd snd_mss rtt
_KERNEL_SIZE = 232  # rttvar pmtu snd_wnd unacked; a shorter answer: zeros for the rest
_NATIVE_U32 = struct.Struct("=I")


def tcp_info_region(raw: bytes) -> bytes:
    """SKT_TCPINFO (vmem.TCPINFO_STRUCT) from the kernel's TCP_INFO answer `raw`."""
    if len(raw) < 8:
        return bytes(vmem.SKT_TCPINFO.size)
    raw = raw.ljust(_KERNEL_SIZE, b"\0")
    values = [_NATIVE_U32.unpack_from(raw, off)[0] for off in _KERNEL_U32]
    return _TCPINFO.pack(vmem.TCPINFO_VERSION, raw[0], raw[1], *values)


def mapped_system_image(cfg: EndpointConfig) -> mmap.mmap:
    """`system_image` in an anonymous mapping, whose pages the kernel makes resident only
    where written: 5 of its 49 pages, not all 193 KiB as a bytearray's zeroing does
    (a daemon's sessions: idle RSS -0.17 MiB per session, docs/performance.md)."""
    # Private: a child forked later (a helper process) gets its own copy, not this one.
    img = mmap.mmap(-1, vmem.SYS_SPAN, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    _write_system_image(cfg, img)
    return img


def system_image(cfg: EndpointConfig) -> bytearray:
    """The system block (§2.2) as bytes at offset 0 = 0x10000000, TIME and BUFUSED zero."""
    img = bytearray(vmem.SYS_SPAN)
    _write_system_image(cfg, img)
    return img


def _write_system_image(cfg: EndpointConfig, img: SystemImage) -> None:
    """The fields of the system block into `img`, zeros of the block's size."""

    def put(region: vmem.Region, data: bytes, index: int = 0, stride: int = 0) -> None:
        at = region.addr - SYS_BASE + index * stride
        img[at : at + len(data)] = data

    sup = 0
    sup |= TransSup.TCP if "tcp" in cfg.transproto_sup else 0
    sup |= TransSup.UDP if "udp" in cfg.transproto_sup else 0
    sup |= TransSup.RAW if "raw" in cfg.transproto_sup else 0
    put(vmem.IP4NO, bytes([len(cfg.ipv4)]))
    put(vmem.IP6NO, bytes([len(cfg.ipv6)]))
    put(vmem.TRANSSUP, _U32.pack(sup))
    put(vmem.BUFMAXDUP, _U32.pack(cfg.buf_max))
    for i, iface in enumerate(cfg.ipv4):
        put(vmem.IP4LS, iface.ip.packed + iface.netmask.packed, i, vmem.IP4LS_ENTRY)
    for i, addr6 in enumerate(cfg.ipv6):
        put(vmem.IP6LS, addr6.packed, i, vmem.IP6LS_ENTRY)
    put(vmem.BUFMAX, _U32.pack(cfg.buf_max))
    put(vmem.IP4DNSNO, bytes([len(cfg.dns4)]))
    put(vmem.IP6DNSNO, bytes([len(cfg.dns6)]))
    for i, d4 in enumerate(cfg.dns4):
        put(vmem.IP4DNSLS, d4.packed, i, 4)
    for i, d6 in enumerate(cfg.dns6):
        put(vmem.IP6DNSLS, d6.packed, i, 16)
    hdrmod = [HdrMod.NOCHG] * 12
    hdrmod[3] = hdrmod[9] = HdrMod.CHG  # tot_len, checksum
    hdrmod[4] = hdrmod[10] = HdrMod.ZEROFILL  # ident, saddr
    put(vmem.IP4HDRMOD, bytes(hdrmod))
    put(vmem.IP6HDRMOD, bytes(8))
    put(vmem.HOSTID, cfg.host_id.encode("utf-8")[: vmem.HOSTID.size - 1])


def render_block(skt: Skt) -> bytes:
    return _BLOCK.pack(
        skt.family,
        skt.proto,
        int(skt.state),
        skt.laddr,
        skt.raddr,
        skt.lport,
        skt.rport,
        skt.rbufsz,
        skt.rbufused,
        min(skt.drop_bytes, 0xFFFFFFFF),
        min(skt.drop_pkts, 0xFFFFFFFF),
        skt.nsenderr,
        skt.nsenderrtag,
        skt.notifmask,
        skt.ctfl,
    )


class VirtualMemory:
    """Reads and writes of the map; side effects of RW writes go through two hooks."""

    __slots__ = (
        "_budget", "_clock", "_img", "_set_mask", "_set_rbufsz", "_sockets", "_tcp_info",
    )  # fmt: skip

    def __init__(
        self,
        image: SystemImage,
        sockets: Sequence[Skt | None],
        budget: Budget,
        clock: Callable[[], int],
        set_rbufsz: Callable[[Skt, int], None],
        set_notifmask: Callable[[Skt, int], None],
        tcp_info: TcpInfoHook | None = None,
    ) -> None:
        self._img = image
        self._sockets = sockets
        self._budget = budget
        self._clock = clock
        self._set_rbufsz = set_rbufsz
        self._set_mask = set_notifmask
        self._tcp_info = tcp_info

    def read(self, addr: int, length: int) -> bytes:
        end = addr + length
        if addr >= SYS_BASE and end <= SYS_END:  # the common case: one system field
            if addr < _DYN_HI and end > _DYN_LO:
                self._refresh()
            off = addr - SYS_BASE
            return bytes(self._img[off : off + length])
        out = bytearray(length)
        if addr < SYS_END and end > SYS_BASE:
            if addr < _DYN_HI and end > _DYN_LO:
                self._refresh()
            lo, hi = max(addr, SYS_BASE), min(end, SYS_END)
            out[lo - addr : hi - addr] = self._img[lo - SYS_BASE : hi - SYS_BASE]
        if addr < SKT_END and end > SKT_BASE:
            lo, hi = max(addr, SKT_BASE), min(end, SKT_END)
            first, last = (lo - SKT_BASE) // STRIDE, (hi - 1 - SKT_BASE) // STRIDE
            for sktid in range(first, last + 1):
                skt = self._sockets[sktid]
                if skt is None:
                    continue
                base = SKT_BASE + sktid * STRIDE
                b_lo, b_hi = max(lo, base), min(hi, base + SKT_BLOCK_USED)
                if b_lo < b_hi:
                    block = render_block(skt)
                    out[b_lo - addr : b_hi - addr] = block[b_lo - base : b_hi - base]
                if hi > base + _TI_LO and lo < base + _TI_HI and self._tcp_info is not None:
                    info = self._tcp_info(skt)  # SKT_TCPINFO sampled now
                    if info is not None:  # its part in [lo, hi)
                        t0 = base + _TI_LO
                        t_lo, t_hi = max(lo, t0), min(hi, base + _TI_HI)
                        out[t_lo - addr : t_hi - addr] = info[t_lo - t0 : t_hi - t0]
        return bytes(out)

    def _refresh(self) -> None:
        _U64.pack_into(self._img, _TIME, self._clock())
        _U32.pack_into(self._img, _BUFUSED, min(self._budget.used, 0xFFFFFFFF))

    def write(self, addr: int, data: bytes) -> None:
        end = addr + len(data)
        if not data or addr >= SKT_END or end <= SKT_BASE:
            return  # only socket blocks hold writable fields
        lo, hi = max(addr, SKT_BASE), min(end, SKT_END)
        first, last = (lo - SKT_BASE) // STRIDE, (hi - 1 - SKT_BASE) // STRIDE
        for sktid in range(first, last + 1):
            skt = self._sockets[sktid]
            if skt is None or skt.state < 1:  # FREE or an error state: ignored
                continue
            base = SKT_BASE + sktid * STRIDE
            block = bytearray(render_block(skt))
            touched = False
            for f_lo, f_hi in _RW:
                w_lo, w_hi = max(lo, base + f_lo), min(hi, base + f_hi)
                if w_lo < w_hi:
                    block[w_lo - base : w_hi - base] = data[w_lo - addr : w_hi - addr]
                    touched = True
            if touched:
                self._apply(skt, _BLOCK.unpack(block))

    def _apply(self, skt: Skt, fields: tuple[object, ...]) -> None:
        rbufsz, nsenderr, nsenderrtag, notifmask, ctfl = (
            fields[7], fields[11], fields[12], fields[13], fields[14],
        )  # fmt: skip
        assert isinstance(nsenderr, int) and isinstance(nsenderrtag, int)
        assert isinstance(ctfl, bytes) and isinstance(rbufsz, int)
        assert isinstance(notifmask, int)
        skt.nsenderr = nsenderr
        skt.nsenderrtag = nsenderrtag
        skt.ctfl = ctfl
        if rbufsz != skt.rbufsz:
            self._set_rbufsz(skt, rbufsz)
        if notifmask != skt.notifmask:
            self._set_mask(skt, notifmask)
