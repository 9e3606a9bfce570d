"""The vmem map (PROTOCOL.md §2.2): system block image, socket blocks, gaps, writes."""

from __future__ import annotations

import ipaddress
import struct

from packetlab.controller.info import decode_tcp_info
from packetlab.endpoint.budget import Budget
from packetlab.endpoint.config import EndpointConfig
from packetlab.endpoint.memory import (
    SKT_BLOCK_USED,
    VirtualMemory,
    render_block,
    system_image,
    tcp_info_region,
)
from packetlab.endpoint.sockets import Skt
from packetlab.wire import vmem
from packetlab.wire.constants import SocketState

NOW = 1_700_000_000_123_456_789


def config() -> EndpointConfig:
    cfg = EndpointConfig()
    cfg.ipv4 = [ipaddress.IPv4Interface("192.0.2.1/24"), ipaddress.IPv4Interface("127.0.0.1/8")]
    cfg.ipv6 = [ipaddress.IPv6Address("2001:db8::1")]
    cfg.dns4 = [ipaddress.IPv4Address("9.9.9.9")]
    cfg.dns6 = [ipaddress.IPv6Address("2001:db8::53")]
    cfg.host_id = "probe-7"
    cfg.buf_max = 123456
    return cfg


class Mem:
    def __init__(self) -> None:
        self.sockets: list[Skt | None] = [None] * 256
        self.budget = Budget(123456)
        self.budget.used = 4321
        self.rbufsz: list[tuple[int, int]] = []
        self.masks: list[tuple[int, int]] = []
        self.vm = VirtualMemory(
            system_image(config()),
            self.sockets,
            self.budget,
            lambda: NOW,
            lambda s, v: self.rbufsz.append((s.sktid, v)),
            lambda s, v: self.masks.append((s.sktid, v)),
        )

    def read(self, region: vmem.Region) -> bytes:
        return self.vm.read(region.addr, region.size)


def test_system_block() -> None:
    m = Mem()
    assert m.read(vmem.IP4NO) == b"\x02"
    assert m.read(vmem.IP6NO) == b"\x01"
    assert m.read(vmem.TRANSSUP) == (0b110).to_bytes(4, "big")
    assert m.read(vmem.BUFMAXDUP) == (123456).to_bytes(4, "big")
    assert m.vm.read(vmem.IP4LS.addr, 16) == bytes(
        [192, 0, 2, 1, 255, 255, 255, 0, 127, 0, 0, 1, 255, 0, 0, 0]
    )
    assert m.vm.read(vmem.IP6LS.addr, 16) == ipaddress.IPv6Address("2001:db8::1").packed
    assert m.read(vmem.TIME) == NOW.to_bytes(8, "big")
    assert m.read(vmem.BUFMAX) == (123456).to_bytes(4, "big")
    assert m.read(vmem.BUFUSED) == (4321).to_bytes(4, "big")
    assert m.read(vmem.IP4DNSNO) + m.read(vmem.IP6DNSNO) == b"\x01\x01"
    assert m.vm.read(vmem.IP4DNSLS.addr, 4) == bytes([9, 9, 9, 9])
    assert m.vm.read(vmem.IP6DNSLS.addr, 16) == ipaddress.IPv6Address("2001:db8::53").packed
    assert m.read(vmem.IP4HDRMOD) == bytes([0, 0, 0, 1, 2, 0, 0, 0, 0, 1, 2, 0])
    assert m.read(vmem.IP6HDRMOD) == bytes(8)
    assert m.read(vmem.HOSTID) == b"probe-7" + bytes(256 - 7)


def test_time_moves_between_reads() -> None:
    m = Mem()
    clock = iter([NOW, NOW + 1000])
    m.vm._clock = lambda: next(clock)
    assert m.read(vmem.TIME) == NOW.to_bytes(8, "big")
    assert m.read(vmem.TIME) == (NOW + 1000).to_bytes(8, "big")


def test_unmapped_bytes_read_zero_and_a_read_from_a_gap_still_sees_the_fields() -> None:
    m = Mem()
    assert m.vm.read(0x0, 16) == bytes(16)
    assert m.vm.read(0x60000000, 32) == bytes(32)
    # Starts 8 bytes before TIME, in a gap: the reference returns zeros; we return TIME.
    got = m.vm.read(vmem.TIME.addr - 8, 16)
    assert got == bytes(8) + NOW.to_bytes(8, "big")
    # A read spanning the end of the system block into the gap after it.
    end = vmem.SYS_BASE + vmem.SYS_SPAN
    assert m.vm.read(end - 4, 8) == bytes(8)


def test_socket_blocks() -> None:
    m = Mem()
    skt = Skt(3, 6, 17, 65536)
    skt.state = SocketState.OPEN
    skt.laddr = bytes(15) + b"\x01"
    skt.lport = 5353
    skt.rbufused = 100
    skt.drop_bytes, skt.drop_pkts = 7, 2
    skt.nsenderr, skt.nsenderrtag, skt.notifmask = 5, 0xBEEF, 0x08
    m.sockets[3] = skt
    base = vmem.skt_addr(3, vmem.Region(0, 0))
    block = m.vm.read(base, 0x400)
    assert block[:3] == b"\x06\x11\x02"
    assert block[0x10:0x20] == skt.laddr
    assert block[0x30:0x34] == (5353).to_bytes(2, "big") + b"\x00\x00"
    assert block[0x40:0x48] == (65536).to_bytes(4, "big") + (100).to_bytes(4, "big")
    assert block[0x50:0x58] == (7).to_bytes(4, "big") + (2).to_bytes(4, "big")
    assert block[0x60:0x63] == b"\x05\xbe\xef"
    assert block[0x70:0x72] == b"\x00\x08"
    assert block[SKT_BLOCK_USED:] == bytes(0x400 - SKT_BLOCK_USED)
    # Error states are negative (i8).
    skt.state = SocketState.UNKFAULT
    assert m.vm.read(base + 2, 1) == b"\x80"
    # A read across blocks 2..4: the free ones read zero.
    got = m.vm.read(vmem.skt_addr(2, vmem.Region(0, 0)), 3 * 0x400)
    assert got[:0x400] == bytes(0x400) and got[0x800:] == bytes(0x400)
    assert got[0x400:0x800] == render_block(skt) + bytes(0x400 - SKT_BLOCK_USED)


def test_writes_reach_only_rw_fields_of_open_sockets() -> None:
    m = Mem()
    skt = Skt(1, 4, 6, 1000)
    skt.state = SocketState.OPEN
    m.sockets[1] = skt
    base = vmem.skt_addr(1, vmem.Region(0, 0))
    # One write over the whole used block: only RBUFSZ, NSENDERR(TAG), NOTIFMASK, CTFL land.
    m.vm.write(base, bytes([0xAB]) * SKT_BLOCK_USED)
    assert skt.state == SocketState.OPEN and skt.family == 4 and skt.rbufused == 0
    assert m.rbufsz == [(1, 0xABABABAB)]
    assert m.masks == [(1, 0xABAB)]
    assert skt.nsenderr == -0x55 and skt.nsenderrtag == 0xABAB
    assert skt.ctfl == bytes([0xAB]) * 128
    # Part of a field: the second byte of NOTIFMASK only.
    m.masks.clear()
    skt.notifmask = 0xABAB
    m.vm.write(vmem.skt_addr(1, vmem.SKT_NOTIFMASK) + 1, b"\x00")
    assert m.masks == [(1, 0xAB00)]
    # Not open, FREE, system block: ignored.
    skt.state = SocketState.RESET
    m.vm.write(vmem.skt_addr(1, vmem.SKT_RBUFSZ), b"\x00\x00\x00\x01")
    m.vm.write(vmem.skt_addr(9, vmem.SKT_RBUFSZ), b"\x00\x00\x00\x01")
    m.vm.write(vmem.HOSTID.addr, b"evil")
    assert len(m.rbufsz) == 1
    assert m.read(vmem.HOSTID)[:7] == b"probe-7"


def kernel_tcp_info(**fields: int) -> bytes:
    """A struct tcp_info as Linux 6.x answers getsockopt(TCP_INFO): 232 bytes, native
    order, the named fields at their offsets (include/uapi/linux/tcp.h)."""
    offsets = {"snd_mss": 16, "unacked": 24, "pmtu": 60, "rtt": 68, "rttvar": 72,
               "snd_cwnd": 80, "total_retrans": 100, "snd_wnd": 228}  # fmt: skip
    raw = bytearray(232)
    raw[0], raw[1] = fields.pop("state", 1), fields.pop("ca_state", 0)
    for name, value in fields.items():
        struct.pack_into("=I", raw, offsets[name], value)
    return bytes(raw)


def test_tcp_info_region_from_the_kernels_struct() -> None:
    raw = kernel_tcp_info(state=1, ca_state=4, total_retrans=17, snd_cwnd=10, snd_mss=1448,
                          rtt=2500, rttvar=300, pmtu=1500, snd_wnd=65535, unacked=3)  # fmt: skip
    region = tcp_info_region(raw)
    assert len(region) == vmem.SKT_TCPINFO.size
    assert region == struct.pack(">BBBx8I", 1, 1, 4, 17, 10, 1448, 2500, 300, 1500, 65535, 3)
    info = decode_tcp_info(region)
    assert info is not None and info.total_retrans == 17 and info.cwnd_bytes == 14480
    # An older kernel's shorter struct: the fields it lacks (snd_wnd) read zero.
    short = decode_tcp_info(tcp_info_region(raw[:104]))
    assert short is not None and short.snd_wnd == 0 and short.total_retrans == 17
    assert tcp_info_region(b"\x01") == bytes(vmem.SKT_TCPINFO.size)  # nothing usable
    assert decode_tcp_info(bytes(vmem.SKT_TCPINFO.size)) is None  # version 0: none


def test_tcp_info_region_is_sampled_on_read_and_read_only() -> None:
    """SKT_TCPINFO (0x200, ours) comes from the network's hook when read; zeros without
    the hook, for a socket the hook has nothing for, and for a free socket; writes to it
    change nothing."""
    m = Mem()
    samples = iter(range(5, 100))
    asked: list[int] = []

    def hook(skt: Skt) -> bytes | None:
        asked.append(skt.sktid)
        if skt.proto != 6:
            return None
        return tcp_info_region(kernel_tcp_info(total_retrans=next(samples), snd_cwnd=10,
                                               snd_mss=1000))  # fmt: skip

    tcp, udp = Skt(3, 4, 6, 65536), Skt(4, 4, 17, 65536)
    tcp.state = udp.state = SocketState.OPEN
    m.sockets[3], m.sockets[4] = tcp, udp
    at = vmem.skt_addr(3, vmem.SKT_TCPINFO)
    assert m.vm.read(at, vmem.SKT_TCPINFO.size) == bytes(vmem.SKT_TCPINFO.size)  # no hook
    m.vm._tcp_info = hook
    first = decode_tcp_info(m.vm.read(at, vmem.SKT_TCPINFO.size))
    again = decode_tcp_info(m.vm.read(at, vmem.SKT_TCPINFO.size))
    assert first is not None and again is not None
    assert (first.total_retrans, again.total_retrans) == (5, 6)  # sampled at each read
    assert first.cwnd_bytes == 10_000
    # a part of the region, and a read of the whole block
    assert m.vm.read(at + 4, 4) == (7).to_bytes(4, "big")
    block = m.vm.read(vmem.skt_addr(3, vmem.Region(0, 0)), 0x400)
    assert block[:SKT_BLOCK_USED] == render_block(tcp)
    assert block[0x200 : 0x200 + 8] == b"\x01\x01\x00\x00" + (8).to_bytes(4, "big")
    assert block[0x200 + vmem.SKT_TCPINFO.size :] == bytes(0x400 - 0x224)
    assert block[SKT_BLOCK_USED:0x200] == bytes(0x200 - SKT_BLOCK_USED)
    # UDP: the hook has nothing; a free socket is not asked
    asked.clear()
    assert m.vm.read(vmem.skt_addr(4, vmem.SKT_TCPINFO), 36) == bytes(36)
    assert m.vm.read(vmem.skt_addr(5, vmem.SKT_TCPINFO), 36) == bytes(36)
    assert asked == [4]
    # a read that does not reach the region does not sample
    m.vm.read(vmem.skt_addr(3, vmem.SKT_STAT), 1)
    assert asked == [4]
    # read-only: a write over it changes nothing and reaches no hook
    m.vm.write(at, b"\xff" * 36)
    assert m.rbufsz == [] and m.masks == []
    assert m.vm.read(at, 1) == b"\x01"
