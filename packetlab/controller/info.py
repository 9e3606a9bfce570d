"""Reading the endpoint's system and socket blocks, and writing the socket controls (§2.2).

The reads of one call are pipelined (sent together, answered in order), so a whole
`read_system_info` costs one round trip.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred, fail

from packetlab.controller._deferred import deferred_api
from packetlab.controller.addresses import IPAddress, unpack_address
from packetlab.wire import Family, NotifMask, NsendErr, Result, SocketState, TransSup, vmem
from packetlab.wire.constants import MAX_SKT_CNT

if TYPE_CHECKING:
    from packetlab.controller.session import EndpointSession


def _enum(cls: type[SocketState] | type[NsendErr], value: int) -> SocketState | NsendErr | int:
    try:
        return cls(value)
    except ValueError:
        return value


def _iface(addr: bytes, mask: bytes) -> ipaddress.IPv4Interface:
    try:
        return ipaddress.IPv4Interface((addr, str(ipaddress.IPv4Address(mask))))
    except ValueError:  # not a contiguous netmask: keep the address alone
        return ipaddress.IPv4Interface(addr)


def _cstring(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class SystemInfo:
    """The endpoint's system block: exported addresses, DNS servers, transports, buffers."""

    ip4: tuple[ipaddress.IPv4Interface, ...]  # address/netmask
    ip6: tuple[ipaddress.IPv6Address, ...]
    dns4: tuple[ipaddress.IPv4Address, ...]
    dns6: tuple[ipaddress.IPv6Address, ...]
    transsup: TransSup
    bufmax: int
    bufused: int
    hostid: str

    @property
    def addresses(self) -> tuple[IPAddress, ...]:
        return tuple(i.ip for i in self.ip4) + self.ip6


_DNS_SPAN = vmem.IP6DNSLS.addr + vmem.IP6DNSLS.size - vmem.IP4DNSNO.addr
_SYS_READS = [  # (addr, len): the head (counts, TRANSSUP), address lists, buffers, DNS, HOSTID
    (vmem.SYS_BASE, vmem.BUFMAXDUP.addr + vmem.BUFMAXDUP.size - vmem.SYS_BASE),
    (vmem.IP4LS.addr, vmem.IP4LS.size),
    (vmem.IP6LS.addr, vmem.IP6LS.size),
    (vmem.BUFMAX.addr, 8),
    (vmem.IP4DNSNO.addr, _DNS_SPAN),
    (vmem.HOSTID.addr, vmem.HOSTID.size),
]


@deferred_api
async def read_system_info(session: EndpointSession) -> SystemInfo:
    reads = [session.mread(addr, n) for addr, n in _SYS_READS]
    sizes = [len_ for _, len_ in _SYS_READS]
    try:
        head, ip4ls, ip6ls, bufs, dns, hostid = [
            (await d).ljust(n, b"\0") for d, n in zip(reads, sizes, strict=True)
        ]
    except BaseException:  # the session ended: the reads not awaited fail too, unseen
        for d in reads:  # (each was an "Unhandled error in Deferred" with its traceback)
            d.addErrback(lambda _: None)
        raise
    ip4no, ip6no, transsup, _bufmaxdup = struct.unpack_from(">BBII", head)
    bufmax, bufused = struct.unpack_from(">II", bufs)
    ip4 = tuple(
        _iface(ip4ls[i * 8 : i * 8 + 4], ip4ls[i * 8 + 4 : i * 8 + 8]) for i in range(ip4no)
    )
    ip6 = tuple(ipaddress.IPv6Address(ip6ls[i * 16 : i * 16 + 16]) for i in range(ip6no))
    d4off = vmem.IP4DNSLS.addr - vmem.IP4DNSNO.addr
    d6off = vmem.IP6DNSLS.addr - vmem.IP4DNSNO.addr
    n4, n6 = min(dns[0], 16), min(dns[1], 16)
    dns4 = tuple(ipaddress.IPv4Address(dns[d4off + 4 * i : d4off + 4 * i + 4]) for i in range(n4))
    dns6 = tuple(
        ipaddress.IPv6Address(dns[d6off + 16 * i : d6off + 16 * i + 16]) for i in range(n6)
    )
    return SystemInfo(ip4, ip6, dns4, dns6, TransSup(transsup), bufmax, bufused, _cstring(hostid))


@dataclass(frozen=True, slots=True)
class SocketInfo:
    """A socket block (§2.2): state, addresses, buffer use, drop counters, send error."""

    sktid: int
    family: int
    proto: int
    state: SocketState | int
    laddr: IPAddress | None
    raddr: IPAddress | None
    lport: int
    rport: int
    rbufsz: int
    rbufused: int
    drop_bytes: int
    drop_packets: int
    nsenderr: NsendErr | int
    nsenderrtag: int
    notifmask: NotifMask


_SKT_SPAN = vmem.SKT_NOTIFMASK.addr + vmem.SKT_NOTIFMASK.size
_SKT = struct.Struct(">BBb13x16s16sHH12xII8xII8xbH13xH")
assert _SKT.size == _SKT_SPAN


def _skt_addr(sktid: int, field: vmem.Region, what: str) -> int:
    """The field's address in socket `sktid`'s block; ValueError for an sktid that has no
    block (300 read the memory after the table, and set_rbufsz wrote there, up to
    session 31)."""
    if not isinstance(sktid, int) or isinstance(sktid, bool) or not 0 <= sktid < MAX_SKT_CNT:
        raise ValueError(f"{what}: sktid must be 0..{MAX_SKT_CNT - 1}, got {sktid!r}")
    return vmem.skt_addr(sktid, field)


def _check_uint(value: int, bits: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << bits:
        raise ValueError(f"{what} must be 0..{(1 << bits) - 1}, got {value!r}")
    return value


@deferred_api
async def read_socket_info(session: EndpointSession, sktid: int) -> SocketInfo:
    addr = _skt_addr(sktid, vmem.SKT_FAMILY, "read_socket_info")
    raw = await session.mread(addr, _SKT_SPAN)
    raw = raw.ljust(_SKT_SPAN, b"\0")
    (fam, proto, stat, la, ra, lport, rport, rbufsz, rbufused, dbytes, dpkts, nerr, ntag, mask) = (
        _SKT.unpack(raw)
    )
    known = fam in (Family.IP4, Family.IP6)
    return SocketInfo(
        sktid,
        fam,
        proto,
        _enum(SocketState, stat),
        unpack_address(fam, la) if known else None,
        unpack_address(fam, ra) if known else None,
        lport,
        rport,
        rbufsz,
        rbufused,
        dbytes,
        dpkts,
        _enum(NsendErr, nerr),
        ntag,
        NotifMask(mask),
    )


@deferred_api
async def read_socket_state(session: EndpointSession, sktid: int) -> SocketState | int:
    """STAT alone (one byte): what a TCP connect came to when no nstat says (§3.1)."""
    raw = await session.mread(_skt_addr(sktid, vmem.SKT_STAT, "read_socket_state"), 1)
    return _enum(SocketState, struct.unpack(">b", raw[:1].ljust(1, b"\0"))[0])


@dataclass(frozen=True, slots=True)
class TcpInfo:
    """A TCP socket's SKT_TCPINFO (ours, beyond the reference; vmem.TCPINFO_FIELDS): the
    kernel's TCP_INFO as the endpoint sampled it when the mread came. rtt/rttvar in µs."""

    version: int
    state: int
    ca_state: int
    total_retrans: int  # segments retransmitted over the connection's life
    snd_cwnd: int  # segments
    snd_mss: int  # bytes
    rtt: int
    rttvar: int
    pmtu: int
    snd_wnd: int  # bytes (0 from a kernel without it)
    unacked: int

    @property
    def cwnd_bytes(self) -> int:
        """The congestion window in bytes, as iperf3's `snd_cwnd` (segments times MSS)."""
        return self.snd_cwnd * self.snd_mss


assert TcpInfo.__match_args__ == vmem.TCPINFO_FIELDS
_TCPINFO = struct.Struct(vmem.TCPINFO_STRUCT)


def decode_tcp_info(raw: bytes) -> TcpInfo | None:
    """SKT_TCPINFO's bytes decoded; None when the endpoint has none for the socket (not
    TCP, closed, or an endpoint without the extension, such as the reference: zeros)."""
    fields = _TCPINFO.unpack(raw[: _TCPINFO.size].ljust(_TCPINFO.size, b"\0"))
    if fields[0] != vmem.TCPINFO_VERSION:
        return None
    return TcpInfo(*fields)


@deferred_api
async def read_tcp_info(session: EndpointSession, sktid: int) -> TcpInfo | None:
    """Socket `sktid`'s TCP_INFO sample (one mread); None if the endpoint has none."""
    addr = _skt_addr(sktid, vmem.SKT_TCPINFO, "read_tcp_info")
    return decode_tcp_info(await session.mread(addr, vmem.SKT_TCPINFO.size))


def set_notifmask(session: EndpointSession, sktid: int, mask: NotifMask | int) -> Deferred[Result]:
    """Hold back (set bits) or release (clear bits) notification types of a socket (§2.4)."""
    try:  # a bad argument fails the Deferred (struct.error was raised out of the call)
        addr = _skt_addr(sktid, vmem.SKT_NOTIFMASK, "set_notifmask")
        data = struct.pack(">H", _check_uint(int(mask), 16, "set_notifmask: mask"))
    except ValueError as e:
        return fail(e)
    return session.mwrite(addr, data)


def set_rbufsz(session: EndpointSession, sktid: int, size: int) -> Deferred[Result]:
    """Change a socket's receive budget (RBUFSZ)."""
    try:
        addr = _skt_addr(sktid, vmem.SKT_RBUFSZ, "set_rbufsz")
        data = struct.pack(">I", _check_uint(size, 32, "set_rbufsz: size"))
    except ValueError as e:
        return fail(e)
    return session.mwrite(addr, data)
