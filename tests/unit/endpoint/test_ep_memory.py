"""The vmem map (PROTOCOL.md §2.2): system block image, socket blocks, gaps, writes."""

from __future__ import annotations

import ipaddress

from packetlab.endpoint.budget import Budget
from packetlab.endpoint.config import EndpointConfig
from packetlab.endpoint.memory import SKT_BLOCK_USED, VirtualMemory, render_block, system_image
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
