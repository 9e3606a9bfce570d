"""The paper's download figure from a capture at the receiver (throughput_capture) and the
stall lists both it and the endpoint's stamps give (throughput.stalls): pcap files built
here, byte by byte."""

from __future__ import annotations

import io
import struct

import pytest

from packetlab.measure.packets import ip_packet
from packetlab.measure.packets_transport import tcp_segment
from packetlab.measure.pcap import PcapRecorder
from packetlab.measure.throughput_capture import (
    CaptureError,
    capture_result,
    receive_stamps,
    tcp_segments,
)
from packetlab.measure.throughput_figures import MIB, ThroughputResult, rate_after, stalls

SERVER, CLIENT = "192.0.2.5", "198.51.100.7"
SYN, ACK = 0x02, 0x10
MSS = 1448


def pcap(packets: list[tuple[int, bytes]], *, ethernet: bool = False) -> bytes:
    """A µs pcap (Ethernet) or, by default, the ns LINKTYPE_RAW one PcapRecorder writes."""
    if not ethernet:
        rec = PcapRecorder(packets)
        out = io.BytesIO()
        rec.write(out)
        return out.getvalue()
    body = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for ns, ip in packets:
        frame = b"\x02" * 12 + b"\x08\x00" + ip
        sec, us = divmod(ns // 1000, 1_000_000)
        body.append(struct.pack("<IIII", sec, us, len(frame), len(frame)) + frame)
    return b"".join(body)


def seg(ns: int, seq: int, payload: bytes = b"", *, flags: int = ACK, dport: int = 40000,
        sport: int = 5201) -> tuple[int, bytes]:  # fmt: skip
    tcp = tcp_segment(SERVER, CLIENT, sport, dport, seq=seq, ack=1, flags=flags, payload=payload)
    return ns, ip_packet(SERVER, CLIENT, 6, tcp)


def stream(total: int, ns_per_seg: int, *, isn: int = 7000, dport: int = 40000,
           start: int = 1_000_000_000) -> list[tuple[int, bytes]]:  # fmt: skip
    """SYN-ACK, then `total` bytes in MSS segments, one every `ns_per_seg`."""
    out = [seg(start, isn, flags=SYN | ACK, dport=dport)]
    for i, off in enumerate(range(0, total, MSS)):
        n = min(MSS, total - off)
        out.append(seg(start + (i + 1) * ns_per_seg, isn + 1 + off, b"x" * n, dport=dport))
    return out


def test_segments_from_raw_and_ethernet_captures() -> None:
    pkts = stream(3 * MSS, 1000)
    for data in (pcap(pkts), pcap(pkts, ethernet=True)):
        got = list(tcp_segments(data))
        assert [s.length for s in got] == [0, MSS, MSS, MSS]
        assert got[0].flags & SYN and got[1].seq == 7001 and got[1].sport == 5201
    assert list(tcp_segments(pcap(pkts, ethernet=True)))[1].ns == 1_000_001_000  # µs stamps


def test_receive_stamps_pick_the_data_stream_and_count_in_sequence() -> None:
    control = stream(3 * MSS, 1000, dport=39999)  # iperf3's control connection: smaller
    data = stream(10 * MSS, 1000)
    stamps = receive_stamps(pcap(control + data), 5201)
    assert stamps[0] == (MSS, 1_000_001_000)
    assert stamps[-1] == (10 * MSS, 1_000_010_000)
    # a segment ahead of a hole counts once the hole is filled; a duplicate not at all
    first, second, third = (seg(t, 7001 + i * MSS, b"y" * MSS) for i, t in
                            enumerate((1_000_100_000, 1_000_200_000, 1_000_300_000)))  # fmt: skip
    syn = seg(1_000_000_000, 7000, flags=SYN | ACK)
    in_order = receive_stamps(pcap([syn, first, second, third], ethernet=True), 5201)
    assert [c for c, _ in in_order] == [MSS, 2 * MSS, 3 * MSS]
    late = pcap([syn, first, third, second, second], ethernet=True)  # as captured, unsorted
    assert receive_stamps(late, 5201) == [(MSS, 1_000_100_000), (3 * MSS, 1_000_200_000)]


def test_receive_stamps_errors() -> None:
    with pytest.raises(CaptureError, match="not a"):
        receive_stamps(b"\0" * 40, 5201)
    with pytest.raises(CaptureError, match="no data from port 5202"):
        receive_stamps(pcap(stream(MSS, 1000, dport=40000)), 5202)
    with pytest.raises(CaptureError, match="lacks the SYN-ACK"):
        receive_stamps(pcap(stream(3 * MSS, 1000)[1:]), 5201)


def test_capture_result_is_the_papers_figure() -> None:
    total = 2 * MIB
    data = pcap(stream(total, 11_584))  # 1448 bytes per 11.584 µs: 1000 Mbit/s
    r = capture_result(data, server=SERVER, port=5201, total=total)
    b, t0, t1 = rate_after(receive_stamps(data, 5201), total, MIB)
    assert (r.method, r.measured_bytes, r.seconds) == ("capture", total - b, (t1 - t0) / 1e9)
    assert r.mbit_s == pytest.approx(1000.0, rel=1e-3)
    assert r.stalls == [] and r.stall_ms == 0
    with pytest.raises(CaptureError, match=f"holds {total} of {total + 1} bytes"):
        capture_result(data, server=SERVER, port=5201, total=total + 1)


def test_stalls_find_where_the_data_stopped() -> None:
    rate = 100.0  # Mbit/s: 80 ns per byte
    steady = [(i * 10_000, i * 800_000) for i in range(1, 101)]  # 10 kB every 0.8 ms
    assert stalls(steady, rate) == ([], 0.0)
    cum, t = steady[-1]
    paused = [*steady, (cum + 10_000, t + 20_800_000)]  # 20 ms more than 10 kB take
    found, total = stalls(paused, rate)
    assert found == [{"at_ms": 79.2, "at_bytes": cum, "gap_ms": 20.8, "excess_ms": 20.0}]
    assert total == 20.0
    # a tbf bucket's burst stamped packet by packet, then the wait its bytes explain: none
    bursts = [(k * 64_000 + j * 1_000, k * 5_120_000 + j * 1_000) for k in range(20)
              for j in range(1, 65)]  # fmt: skip
    assert stalls(bursts, rate) == ([], 0.0)
    # the largest `keep`, in time order
    many = [(0, 0)]
    for i in range(1, 6):
        many.append((i * 1000, many[-1][1] + 80_000 + i * 1_000_000))
    found, total = stalls(many, rate, keep=2)
    assert [s["excess_ms"] for s in found] == [4.0, 5.0] and total == 15.0
    assert stalls([], rate) == ([], 0.0)


def test_stalls_are_in_the_record() -> None:
    r = ThroughputResult("download", SERVER, 5201, MIB, mbit_s=1.0, seconds=1.0)
    assert "stalls" not in r.to_dict()
    r.stalls, r.stall_ms = [{"at_ms": 1.0, "at_bytes": 5, "gap_ms": 3.0, "excess_ms": 2.0}], 2.0
    assert r.to_dict()["stalls"][0]["excess_ms"] == 2.0 and r.to_dict()["stall_ms"] == 2.0
