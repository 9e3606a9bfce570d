"""The paper's download figure (§5.2) from a packet capture taken at the receiver, for a
native client whose own reports are too coarse for it.

The endpoint's ndata stamps are the kernel's receive times of the data (SCM_TIMESTAMPNS
on its socket). A capture at the receiving host (tcpdump, nanosecond stamps) holds the
same kernel receive times for any client, so the paper's t0, b and t1 (the first time
1 MiB was in, the bytes in then, the time all N were in) come from the same evidence for
both tools. Native iperf3 reports no finer than 0.1 s: at 1 Gbit/s its first report past
1 MiB ends with ~12 MB of 25 MiB in, so its figure drops the first half of the transfer
rather than the first MiB.

"In" means in sequence: a segment that arrives ahead of a hole counts when the hole is
filled, as the receiving application could only read it then.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import NamedTuple

from packetlab.measure.pcap import pcap_records
from packetlab.measure.throughput_figures import SKIP, ThroughputResult, mbit, rate_after, stalls

__all__ = ["CaptureError", "Segment", "capture_result", "receive_stamps", "tcp_segments"]

# Link types: how many bytes precede the IP header (None: read the EtherType).
_ETHERNET, _RAW, _SLL, _SLL2 = 1, 101, 113, 276
_LINK_HEAD = {_ETHERNET: 14, _RAW: 0, _SLL: 16, _SLL2: 20}
_SYN = 0x02
_TCP = 6


class CaptureError(ValueError):
    """The capture cannot give the figure (not a pcap, no such flow, bytes missing)."""


class Segment(NamedTuple):
    ns: int
    sport: int
    dport: int
    seq: int
    flags: int
    length: int  # payload bytes


def tcp_segments(data: bytes) -> Iterator[Segment]:
    """The TCP segments of a classic pcap (µs or ns stamps; Ethernet, raw IP or Linux
    cooked link; IPv4 or IPv6 without extension headers). A snap length that cuts the
    payload is fine: the length comes from the IP header."""
    try:
        link, records = pcap_records(data)
    except ValueError as e:
        raise CaptureError(str(e)) from None
    if link not in _LINK_HEAD:
        raise CaptureError(f"link type {link} not supported")
    head = _LINK_HEAD[link]
    for ns, pkt in records:
        seg = _segment(pkt[head:], ns)
        if seg is not None:
            yield seg


def _segment(ip: bytes, ns: int) -> Segment | None:
    if len(ip) < 20:
        return None
    version = ip[0] >> 4
    if version == 4:
        ihl = (ip[0] & 0x0F) * 4
        if ip[9] != _TCP:
            return None
        ip_len = struct.unpack_from(">H", ip, 2)[0]
        tcp, payload_room = ip[ihl:], ip_len - ihl
    elif version == 6 and len(ip) >= 40:
        if ip[6] != _TCP:
            return None
        tcp, payload_room = ip[40:], struct.unpack_from(">H", ip, 4)[0]
    else:
        return None
    if len(tcp) < 20:
        return None
    sport, dport, seq = struct.unpack_from(">HHI", tcp)
    doff = (tcp[12] >> 4) * 4
    return Segment(ns, sport, dport, seq, tcp[13], max(0, payload_room - doff))


def receive_stamps(data: bytes, server_port: int) -> list[tuple[int, int]]:
    """(bytes in sequence, ns) each time more of the stream was in, for the connection
    from `server_port` that carried the most payload (an iperf3 test's data stream beside
    its control connection). Its SYN-ACK must be in the capture (it numbers the bytes)."""
    flows: dict[int, list[Segment]] = {}
    isn: dict[int, int] = {}
    for seg in tcp_segments(data):
        if seg.sport != server_port:
            continue
        if seg.flags & _SYN:
            isn[seg.dport] = (seg.seq + 1) & 0xFFFFFFFF
        elif seg.length:
            flows.setdefault(seg.dport, []).append(seg)
    if not flows:
        raise CaptureError(f"no data from port {server_port} in the capture")
    port = max(flows, key=lambda p: sum(s.length for s in flows[p]))
    if port not in isn:
        raise CaptureError(f"the capture lacks the SYN-ACK of the connection to port {port}")
    base = isn[port]
    got = 0  # bytes in sequence
    ahead: dict[int, int] = {}  # start -> end of segments past a hole
    out: list[tuple[int, int]] = []
    for seg in flows[port]:
        start = (seg.seq - base) & 0xFFFFFFFF  # streams under 4 GiB
        end = start + seg.length
        if end <= got:
            continue  # a retransmission of what is in
        if start > got:
            ahead[start] = max(end, ahead.get(start, 0))
            continue
        got = end
        while True:  # the hole is filled: what waited behind it is in too
            more = [e for s, e in ahead.items() if s <= got]
            if not more:
                break
            got = max(got, *more)
            ahead = {s: e for s, e in ahead.items() if e > got and s > got}
        out.append((got, seg.ns))
    return out


def capture_result(
    data: bytes, *, server: str, port: int, total: int, skip: int = SKIP
) -> ThroughputResult:
    """The paper's download figure, 8 (N - b) / (t1 - t0), from a capture at the receiver
    (`method` "capture"); the stream's stalls as for the endpoint's stamps. Raises
    CaptureError when fewer than `total` bytes are in the capture."""
    stamps = receive_stamps(data, port)
    if stamps[-1][0] < total:
        raise CaptureError(
            f"the capture holds {stamps[-1][0]} of {total} bytes (was it stopped early, or "
            "did it drop packets?)"
        )
    try:
        b, t0, t1 = rate_after(stamps, total, skip)
    except ValueError as e:
        raise CaptureError(str(e)) from None
    result = ThroughputResult("download", server, port, total, skip=skip, method="capture")
    result.seconds = (t1 - t0) / 1e9
    result.measured_bytes = total - b
    result.mbit_s = mbit(total - b, t1 - t0)
    result.start_ns = stamps[0][1]
    result.chunks = len(stamps)
    result.stalls, result.stall_ms = stalls(stamps, result.mbit_s)
    return result
