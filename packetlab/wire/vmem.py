"""The endpoint virtual memory map (PROTOCOL.md §2.2) as named addresses and sizes."""

from __future__ import annotations

import struct
from typing import NamedTuple


class Region(NamedTuple):
    addr: int
    size: int


# Current packet (visible to monitors only).
CURPKT_DATA = Region(0x00000000, 0x1000000)
CURPKT_LEN = Region(0x01000000, 4)
CURPKT_SKTID = Region(0x01000010, 1)

# System parameters (read-only).
SYS_BASE = 0x10000000
SYS_SPAN = 0x30400
IP4NO = Region(0x10000000, 1)
IP6NO = Region(0x10000001, 1)
TRANSSUP = Region(0x10000002, 4)
BUFMAXDUP = Region(0x10000006, 4)
IP4LS = Region(0x10000100, 256 * 8)
IP4LS_ENTRY = 8
IP6LS = Region(0x10001000, 256 * 16)
IP6LS_ENTRY = 16
TIME = Region(0x10010000, 8)
BUFMAX = Region(0x10010010, 4)
BUFUSED = Region(0x10010014, 4)
IP4DNSNO = Region(0x10020000, 1)
IP6DNSNO = Region(0x10020001, 1)
IP4DNSLS = Region(0x10020010, 16 * 4)
IP6DNSLS = Region(0x10020100, 16 * 16)
IP4HDRMOD = Region(0x10020200, 12)
IP6HDRMOD = Region(0x10020210, 8)
HOSTID = Region(0x10030000, 256)
LATLONG = Region(0x10030100, 64)
OSINFO = Region(0x10030200, 512)

# Socket blocks: base + sktid * SKT_STRIDE, offsets below.
SKT_BASE = 0x20000000
SKT_STRIDE = 0x400
SKT_COUNT = 256
SKT_SPAN = SKT_STRIDE * SKT_COUNT
SKT_FAMILY = Region(0x00, 1)
SKT_PROTO = Region(0x01, 1)
SKT_STAT = Region(0x02, 1)
SKT_LADDR = Region(0x10, 16)
SKT_RADDR = Region(0x20, 16)
SKT_LPORT = Region(0x30, 2)
SKT_RPORT = Region(0x32, 2)
SKT_RBUFSZ = Region(0x40, 4)  # RW
SKT_RBUFUSED = Region(0x44, 4)
SKT_DROPSTAT = Region(0x50, 8)  # bytecnt u32, then pktcnt u32
SKT_DROPBYTES = Region(0x50, 4)
SKT_DROPPKTS = Region(0x54, 4)
SKT_NSENDERR = Region(0x60, 1)  # RW
SKT_NSENDERRTAG = Region(0x61, 2)  # RW
SKT_NOTIFMASK = Region(0x70, 2)  # RW
SKT_CTFL = Region(0x100, 128)  # RW, stored, unused
SKT_WRITABLE = (SKT_RBUFSZ, SKT_NSENDERR, SKT_NSENDERRTAG, SKT_NOTIFMASK, SKT_CTFL)

# Ours, beyond the reference (which maps nothing past CTFL, 0x180, in a socket block): a
# read-only sample of the kernel's TCP_INFO for the socket, taken when it is read. All zero
# (TCPINFO_VERSION 0) for a UDP/raw/closed socket, an endpoint without it (the reference)
# or when the kernel would not say. One declaration for both sides: the endpoint packs
# TCPINFO_STRUCT, the controller unpacks it (packetlab.controller.info.read_tcp_info).
SKT_TCPINFO = Region(0x200, 36)
TCPINFO_VERSION = 1
#: version (0: not available), tcpi_state, tcpi_ca_state, pad, then u32 big-endian:
#: tcpi_total_retrans, tcpi_snd_cwnd (segments), tcpi_snd_mss (bytes), tcpi_rtt (µs),
#: tcpi_rttvar (µs), tcpi_pmtu (bytes), tcpi_snd_wnd (bytes; 0 on a kernel without it),
#: tcpi_unacked (segments).
TCPINFO_FIELDS = (
    "version", "state", "ca_state",
    "total_retrans", "snd_cwnd", "snd_mss", "rtt", "rttvar", "pmtu", "snd_wnd", "unacked",
)  # fmt: skip
TCPINFO_STRUCT = ">BBBx8I"
assert struct.calcsize(TCPINFO_STRUCT) == SKT_TCPINFO.size

NSENDTSTP = Region(0x30000000, 0x10000 * 8)
MONSCRATCH = Region(0x40000000, 0x10000000)
MONPERSIST = Region(0x50000000, 0x10000000)


def skt_addr(sktid: int, field: Region) -> int:
    """Absolute address of a field in socket `sktid`'s block."""
    return SKT_BASE + sktid * SKT_STRIDE + field.addr
