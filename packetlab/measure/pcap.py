"""Packets an endpoint sent and received, as a pcap file Wireshark opens, with the
endpoint's timestamps (nanosecond pcap, LINKTYPE_RAW: IPv4/IPv6 packets, snapshot length
262144 as `tcpdump -w` writes; docs/wire.md "The pcap files").

A PacketLab endpoint reports payloads and times, not the packets its kernel built, so a
`PcapRecorder` writes what each side of a flow saw: UDP datagrams as sent (ntag time) and
received (ndata time), and a TCP connection as a synthetic flow (SYN, SYN-ACK, ACK at the
connect's times, then one segment per nsend and per ndata with sequence numbers counting
the stream's bytes, FINs at the end), so Wireshark reassembles it and decodes DNS, TLS or
HTTP as usual. Segment sizes follow the endpoint's nsends and recv()s, not the wire's MSS;
window, options and ACK timing are not the kernel's.
"""

from __future__ import annotations

import os
import random
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from packetlab.controller import AddressLike as Remote
from packetlab.controller import EndpointSession, parse_address, read_system_info
from packetlab.measure.packets import (
    PROTO_UDP,
    AddressLike,
    as_address,
    ip_packet,
    ipv4_header,
    ipv6_header,
)
from packetlab.measure.packets_transport import tcp_segment, udp_segment

__all__ = [
    "LINKTYPE_RAW",
    "SNAPLEN",
    "PcapRecorder",
    "TcpFlow",
    "local_udp_end",
    "pcap_header",
    "pcap_records",
    "read_pcap",
]

LINKTYPE_RAW = 101
# tcpdump's (libpcap's MAXIMUM_SNAPLEN): above any record we write, also an IPv6 UDP
# datagram of 65,527 bytes (a 65,575-byte packet; with 65535 here libpcap cut it short).
SNAPLEN = 262144
_MAGIC_US, _MAGIC_NS = 0xA1B2C3D4, 0xA1B23C4D
_MAX_SEC = 0xFFFF_FFFF  # the record's u32 seconds: an endpoint time past 2106 is clamped
_HEADER = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")
SYN, FIN, ACK, PSH = 0x02, 0x01, 0x10, 0x08
PROTO_TCP = 6
_MAX_SEG = 65535 - 60 - 20  # payload per synthetic segment (IPv6 + TCP headers fit)
_UDP_HEAD = struct.Struct("!HHHH")


def _ip_header(src: AddressLike, dst: AddressLike, proto: int, length: int) -> bytes:
    if as_address(src).version == 4:
        return ipv4_header(src, dst, proto, length)
    return ipv6_header(src, dst, proto, length)


def _ip_length(packet: bytes) -> int:
    """The length an IP packet's header gives (0: none to read). A packet captured cut
    short and written with its cut length as its length made `tcpdump -r` say
    `truncated-ip - 20 bytes missing!` and tshark show the cut length as the frame's."""
    if len(packet) >= 4 and packet[0] >> 4 == 4:
        return int.from_bytes(packet[2:4], "big")
    if len(packet) >= 6 and packet[0] >> 4 == 6:
        payload = int.from_bytes(packet[4:6], "big")
        return 40 + payload if payload else 0  # (0: a jumbogram's, RFC 2675)
    return 0


@dataclass
class TcpFlow:
    """One connection's state in a recorder: addresses, ports, next sequence numbers."""

    recorder: PcapRecorder
    local: AddressLike
    lport: int
    remote: AddressLike
    rport: int
    seq: int = 1000  # ours
    ack: int = 5000  # theirs

    def _seg(self, time: int, outgoing: bool, flags: int, data: bytes = b"") -> list[int]:
        """Record one segment (several if `data` is large); their indexes in the recorder."""
        done: list[int] = []
        while len(data) > _MAX_SEG:  # an IP packet holds at most 65535 bytes
            done += self._seg(time, outgoing, ACK, data[:_MAX_SEG])
            data = data[_MAX_SEG:]
        src, sport, dst, dport, seq, ack = self._ends(outgoing)
        seg = tcp_segment(src, dst, sport, dport, seq=seq, ack=ack if flags & ACK else 0,
                          flags=flags, payload=data)  # fmt: skip
        done.append(self.recorder.add(time, ip_packet(src, dst, PROTO_TCP, seg)))
        self._advance(outgoing, len(data) + (1 if flags & (SYN | FIN) else 0))
        return done

    def _ends(self, outgoing: bool) -> tuple[AddressLike, int, AddressLike, int, int, int]:
        """(src, sport, dst, dport, seq, ack) of a segment in that direction."""
        if outgoing:
            return self.local, self.lport, self.remote, self.rport, self.seq, self.ack
        return self.remote, self.rport, self.local, self.lport, self.ack, self.seq

    def _advance(self, outgoing: bool, step: int) -> None:
        if outgoing:
            self.seq = (self.seq + step) & 0xFFFFFFFF
        else:
            self.ack = (self.ack + step) & 0xFFFFFFFF

    def connected(self, started: int, established: int) -> None:
        self._seg(started, True, SYN)
        self._seg(established, False, SYN | ACK)
        self._seg(established, True, ACK)

    def sent(self, time: int, data: bytes) -> list[int]:
        """Record an nsend when it is queued (stream order); `PcapRecorder.retime` puts in
        its ntag time once known."""
        return self._seg(time, True, PSH | ACK, data)

    def received(self, time: int, data: bytes) -> None:
        self._seg(time, False, PSH | ACK, data)

    def truncated(self, time: int, outgoing: bool, length: int, head: bytes) -> None:
        """`length` bytes of data of which only `head` is kept (a capture's snap length:
        the headers say `length`, the record holds the headers and `head`; the checksum
        covers what is kept)."""
        while length > 0:
            n = min(length, _MAX_SEG)
            kept = head[:n]
            src, sport, dst, dport, seq, ack = self._ends(outgoing)
            seg = tcp_segment(src, dst, sport, dport, seq=seq, ack=ack, flags=PSH | ACK,
                              payload=kept)  # fmt: skip
            whole = len(seg) - len(kept) + n
            ip = _ip_header(src, dst, PROTO_TCP, whole)
            self.recorder.add(time, ip + seg, len(ip) + whole)
            self._advance(outgoing, n)
            head, length = head[n:], length - n

    def closed(self, time: int, *, by_peer: bool) -> None:
        self._seg(time, not by_peer, FIN | ACK)
        self._seg(time, by_peer, FIN | ACK)


@dataclass
class PcapRecorder:
    """Collects (endpoint ns, IP packet) and writes them, sorted by time, as pcap.
    `lengths`: the original length of a packet kept truncated (by its index)."""

    packets: list[tuple[int, bytes]] = field(default_factory=list)
    lengths: dict[int, int] = field(default_factory=dict)

    def add(self, time: int, packet: bytes, length: int | None = None) -> int:
        """`packet` sent or received at `time`; `length` its whole length when cut short
        (by default its IP header's: a capture cut by the endpoint's CaptureSnaplen)."""
        if length is None:
            length = max(len(packet), _ip_length(packet))
        self.packets.append((time, packet))
        if length is not None and length != len(packet):
            self.lengths[len(self.packets) - 1] = length
        return len(self.packets) - 1

    def retime(self, indexes: list[int], time: int) -> None:
        for i in indexes:
            self.packets[i] = (time, self.packets[i][1])

    def udp(self, time: int, src: AddressLike, sport: int, dst: AddressLike, dport: int,
            data: bytes) -> None:  # fmt: skip
        seg = udp_segment(src, dst, sport, dport, data)
        self.add(time, ip_packet(src, dst, PROTO_UDP, seg))

    def udp_truncated(self, time: int, src: AddressLike, sport: int, dst: AddressLike,
                      dport: int, length: int, head: bytes) -> None:  # fmt: skip
        """A datagram of `length` bytes of which only `head` is kept. Kept whole, it has
        its checksum; cut short, none over IPv4 (0, as a capture cut short cannot check
        it) and over IPv6, where 0 is not allowed (RFC 8200 §8.1: tcpdump said `bad udp
        cksum 0x0000`), the checksum of the kept bytes, as `TcpFlow.truncated`'s."""
        if len(head) >= length:
            self.udp(time, src, sport, dst, dport, head[:length])
            return
        csum = 0
        if as_address(src).version == 6:
            csum = _UDP_HEAD.unpack_from(udp_segment(src, dst, sport, dport, head))[3]
        ip = _ip_header(src, dst, PROTO_UDP, 8 + length)
        udp = _UDP_HEAD.pack(sport, dport, 8 + length, csum) + head
        self.add(time, ip + udp, len(ip) + 8 + length)

    def tcp(self, local: AddressLike, lport: int, remote: AddressLike, rport: int) -> TcpFlow:
        as_address(local), as_address(remote)  # validate now
        return TcpFlow(self, local, lport, remote, rport)

    def write(self, out: BinaryIO, *, header: bool = True) -> int:
        """The file (`header=False`: its records alone, after a header written before)."""
        if header:
            out.write(pcap_header())
        lengths = self.lengths
        for i in sorted(range(len(self.packets)), key=lambda i: self.packets[i][0]):
            time, pkt = self.packets[i]
            sec, nsec = divmod(time, 1_000_000_000)
            if not 0 <= sec <= _MAX_SEC:  # a bogus endpoint clock: kept, at an edge
                sec, nsec = (0, 0) if sec < 0 else (_MAX_SEC, 999_999_999)
            out.write(_RECORD.pack(sec, nsec, len(pkt), lengths.get(i, len(pkt))) + pkt)
        return len(self.packets)

    def save(self, path: str | Path) -> int:
        """Write the file whole or not at all: into a temporary file beside `path`,
        renamed over it when complete, so that a run killed while writing (a second
        Ctrl-C is `os._exit`) leaves the valid file `pcapout` made at the start, never
        half a record. Written in place when `path` is not a regular file (/dev/stdout,
        a FIFO, a symbolic link: written through, as tcpdump -w) or its directory takes
        no new file."""
        try:
            st: os.stat_result | None = os.lstat(path)
        except FileNotFoundError:
            st = None
        if st is None or stat.S_ISREG(st.st_mode):
            import tempfile  # (here: it imports shutil, which a run without --pcap never needs)

            where, name = os.path.split(os.fspath(path))
            try:
                fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=where or ".")
            except OSError:
                pass
            else:
                try:
                    with os.fdopen(fd, "wb") as f:
                        n = self.write(f)
                    os.chmod(tmp, stat.S_IMODE(st.st_mode) if st else 0o666 & ~_umask())
                    os.replace(tmp, path)
                except BaseException:
                    os.unlink(tmp)
                    raise
                return n
        with open(path, "wb") as f:
            return self.write(f)


def _umask() -> int:
    """The process's umask (the mode `open` would give a new file: mkstemp's is 0600)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def pcap_header(linktype: int = LINKTYPE_RAW) -> bytes:
    """The 24-byte file header we write: nanosecond stamps, version 2.4, `SNAPLEN`."""
    return _HEADER.pack(_MAGIC_NS, 2, 4, 0, 0, SNAPLEN, linktype)


async def local_udp_end(session: EndpointSession, remote: Remote) -> tuple[str, int]:
    """An endpoint address of `remote`'s family and a random ephemeral port to bind: a
    UDP measurement that records a pcap binds it, so the capture can show its port."""
    info = await read_system_info(session)
    mine = [a for a in info.addresses if a.version == parse_address(remote).version]
    return (str(mine[0]) if mine else "0.0.0.0", random.randrange(49152, 65536))


def pcap_records(data: bytes) -> tuple[int, Iterator[tuple[int, bytes]]]:
    """The link type and the (ns, packet) records of a classic pcap with µs or ns stamps,
    in either byte order (ours, or tcpdump's from any host). ValueError if it is none (a
    pcapng file named as such). A last record cut short (a capture killed while writing)
    is left out, as tcpdump -r leaves it."""
    if len(data) < _HEADER.size:
        raise ValueError("not a pcap file (too short)")
    order = "<"
    magic = int.from_bytes(data[:4], "little")
    if magic not in (_MAGIC_US, _MAGIC_NS):
        order, magic = ">", int.from_bytes(data[:4], "big")
    if magic not in (_MAGIC_US, _MAGIC_NS):
        if data[:4] == b"\x0a\x0d\x0d\x0a":
            raise ValueError(
                "a pcapng file, not a classic pcap (tcpdump -w writes classic pcap; "
                "editcap -F pcap converts one)"
            )
        raise ValueError(f"not a classic pcap (magic {data[:4].hex()})")
    linktype = struct.unpack_from(order + "I", data, 20)[0] & 0xFFFF  # (FCS bits above)
    scale = 1 if magic == _MAGIC_NS else 1000
    record = struct.Struct(order + "IIII")

    def records() -> Iterator[tuple[int, bytes]]:
        off = _HEADER.size
        while off + record.size <= len(data):
            sec, frac, incl, _orig = record.unpack_from(data, off)
            off += record.size
            if off + incl > len(data):
                return
            yield sec * 1_000_000_000 + frac * scale, data[off : off + incl]
            off += incl

    return linktype, records()


def read_pcap(data: bytes) -> list[tuple[int, bytes]]:
    """(ns, packet) of a file this module wrote (for tests and round trips)."""
    if data[:4] == _MAGIC_NS.to_bytes(4, "little"):
        linktype, records = pcap_records(data)
        if linktype == LINKTYPE_RAW:
            return list(records)
    raise ValueError("not a nanosecond LINKTYPE_RAW pcap")
