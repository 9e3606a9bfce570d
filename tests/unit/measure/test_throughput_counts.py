"""Issue 13, `pktlab run throughput` beside iperf3 3.12: -k (block count), -n and -k
with --bidir (a budget per direction, the first to reach it ends the test, as iperf3's
client), Retr and Cwnd of --bidir's sending streams, and -J's sender statistics from the
endpoint's TCP_INFO (max_snd_cwnd, max_snd_wnd, max_rtt, min_rtt, mean_rtt). Scripted
endpoint and iperf3 server (test_throughput_timed's)."""

from __future__ import annotations

import argparse
import struct
from typing import Any

import pytest
from stream_fakes import StreamRig
from test_throughput_tcp_info import TcpInfoEndpoint
from test_throughput_timed import (
    PIECE,
    RATE,
    SERVER,
    TimedIperf3,
    UdpFakeEndpoint,
    rig_with_server,
    run,
)

from packetlab.cli import run_throughput
from packetlab.cli.run import RunError
from packetlab.measure import iperf3
from packetlab.measure.iperf3 import State
from packetlab.measure.throughput_timed import TimedSpec, timed_test
from packetlab.wire import Nsend, vmem


def test_end_events(rig: StreamRig) -> list[Nsend]:
    return [m for m in rig.endpoint.received if isinstance(m, Nsend) and m.sktid == 0
            and m.data == struct.pack("b", State.TEST_END)]  # fmt: skip


test_end_events.__test__ = False  # type: ignore[attr-defined]


def test_blockcount_upload_sends_that_many_blocks() -> None:
    """-k 5 -P 2 -l 10000: iperf3's `blockcount` in the parameters; five blocks in all
    (its blocks_sent counts every stream's), then TEST_END."""
    rig, server = rig_with_server()
    rig.endpoint.rate = RATE
    d, _ = run(rig, TimedSpec(direction="upload", blocks=5, streams=2, length=10_000))
    assert "error" not in d, d
    assert server.params["blockcount"] == 5 and server.params["num"] == 0
    assert "time" in server.params and server.params["time"] == 0
    assert sum(server.got) == 50_000 and d["bytes"] == 50_000 and d["blocks"] == 5
    assert len(test_end_events(rig)) == 1 and server.done


def test_blockcount_download_ends_after_that_many_reads() -> None:
    """-R -k 10: ten blocks of -l bytes in (iperf3's client counts its reads of up to -l
    bytes, blocks_received; the endpoint's recv()s are smaller, 64 KiB here): TEST_END
    once 10 x 128 KiB came."""
    rig, server = rig_with_server()
    d, _ = run(rig, TimedSpec(direction="download", blocks=10))
    assert "error" not in d, d
    assert server.params["blockcount"] == 10 and server.params["reverse"] is True
    assert d["bytes"] == 10 * iperf3.BLOCK == 20 * PIECE
    assert len(test_end_events(rig)) == 1
    assert server.got[0] < 24 * PIECE  # the server stopped soon after


@pytest.mark.parametrize("first", ["sent", "received"])
def test_bidir_bytes_per_direction_the_first_ends_the_test(first: str) -> None:
    """--bidir -n N: each direction's budget is N (iperf3: bytes_sent >= N or
    bytes_received >= N); whichever is reached first ends the test, as iperf3's client."""
    rig, server = rig_with_server()
    n = 2 << 20
    # the server sends RATE bytes/s; the endpoint's link 10x faster or 10x slower
    rig.endpoint.rate = RATE * 10 if first == "sent" else RATE / 10
    d, _ = run(rig, TimedSpec(bidir=True, nbytes=n, length=64 << 10))
    assert "error" not in d, d
    assert server.params["bidirectional"] is True and server.params["num"] == n
    assert len(test_end_events(rig)) == 1 and server.done
    sent, received = d["sum"]["sender"]["bytes"], d["sum_reverse"]["receiver"]["bytes"]
    if first == "sent":
        assert sent == n == server.got[0] and received < n / 2
    else:
        assert received >= n and sent < n / 2
        assert server.got[0] < n  # the blocks still queued were not waited for
        # what left is counted, as a sender counts its writes: at least what the server
        # got (was: only what left before the download reached its budget, "0.00 Bytes"
        # sent while the server had received 2 MB)
        assert sent >= server.got[0] > 0
    assert d["seconds"] > 0 and d["mbit_s_reverse"] and d["mbit_s"]


def test_bidir_blockcount() -> None:
    rig, server = rig_with_server()
    rig.endpoint.rate = RATE * 10
    d, _ = run(rig, TimedSpec(bidir=True, blocks=8, length=10_000))
    assert "error" not in d, d
    assert server.params["blockcount"] == 8 and d["sum"]["sender"]["bytes"] == 80_000


class VaryingTcpInfo(TcpInfoEndpoint):
    """TCP_INFO whose RTT, window and send window grow with every read (rtt 900, 1000,
    ... µs; cwnd 10, 11, ... segments of 1448 bytes; snd_wnd 65535 + 1000 k)."""

    def read(self, addr: int, n: int) -> bytes:
        sktid, off = divmod(addr - vmem.SKT_BASE, vmem.SKT_STRIDE)
        if addr < vmem.SKT_BASE or off != vmem.SKT_TCPINFO.addr or sktid == 0:
            return super().read(addr, n)
        k = self.retrans[sktid] = self.retrans.get(sktid, -1) + 1
        return struct.pack(vmem.TCPINFO_STRUCT, vmem.TCPINFO_VERSION, 1, 0, k, 10 + k, 1448,
                           900 + 100 * k, 100, 1500, 65535 + 1000 * k, 0)[:n]  # fmt: skip


def tcp_info_rig() -> tuple[StreamRig, TimedIperf3, VaryingTcpInfo]:
    rig = StreamRig(VaryingTcpInfo)
    server = TimedIperf3(rig)
    rig.endpoint.peers[SERVER] = server.connect
    rig.endpoint.rate = RATE
    assert isinstance(rig.endpoint, VaryingTcpInfo)
    return rig, server, rig.endpoint


def test_upload_sender_has_iperf3s_tcp_statistics() -> None:
    """-J's end.streams[].sender: max_snd_cwnd, max_snd_wnd, max_rtt, min_rtt, mean_rtt
    over the samples (one per interval, the last the one taken as the test ended: since
    session 19 the last of those read from 0.25 s before the end that came before it,
    k of them here; the first interval's is read k = 0)."""
    rig, _server, endpoint = tcp_info_rig()
    d, intervals = run(rig, TimedSpec(direction="upload", seconds=0.5, interval=0.25))
    assert "error" not in d, d
    first, last = (i["streams"][0]["rtt"] for i in intervals)
    k = (last - 900) // 100
    assert first == 900 and 1 <= k < endpoint.retrans[1]  # not the one after the end
    sender = d["streams"][0]["sender"]
    assert sender["max_snd_cwnd"] == (10 + k) * 1448 and sender["max_snd_wnd"] == 65535 + 1000 * k
    assert (sender["max_rtt"], sender["min_rtt"], sender["mean_rtt"]) == (
        last,
        900,
        (900 + last) // 2,
    )
    assert "max_rtt" not in d["streams"][0]["receiver"]


def test_stats_with_no_intervals_from_the_last_sample() -> None:
    rig, _server, _endpoint = tcp_info_rig()
    d, intervals = run(rig, TimedSpec(direction="upload", seconds=0.3, interval=0))
    assert "error" not in d, d and not intervals
    sender = d["streams"][0]["sender"]  # one sample: the last before the end (k > 0)
    k = (sender["max_rtt"] - 900) // 100
    assert k > 0 and sender["min_rtt"] == sender["mean_rtt"] == sender["max_rtt"]
    assert sender["max_snd_cwnd"] == (10 + k) * 1448


# `iperf3 -c 127.0.0.1 -t 1 --bidir -P 2`, iperf3 3.12 on this machine (`|`: end of a
# line that ends in spaces)
BIDIR = """\
[ ID][Role] Interval           Transfer     Bitrate         Retr  Cwnd
[  5][TX-C]   0.00-1.00   sec   369 MBytes  3.09 Gbits/sec    0   1023 KBytes       |
[  7][TX-C]   0.00-1.00   sec   368 MBytes  3.08 Gbits/sec    0   1023 KBytes       |
[SUM][TX-C]   0.00-1.00   sec   736 MBytes  6.18 Gbits/sec    0             |
[  9][RX-C]   0.00-1.00   sec  1.17 GBytes  10.0 Gbits/sec                  |
[ 12][RX-C]   0.00-1.00   sec  1.16 GBytes  9.96 Gbits/sec                  |
[SUM][RX-C]   0.00-1.00   sec  2.33 GBytes  20.0 Gbits/sec                  |
- - - - - - - - - - - - - - - - - - - - - - - - -""".replace("|", "")
BIDIR_TOTALS = """\
[ ID][Role] Interval           Transfer     Bitrate         Retr
[  5][TX-C]   0.00-1.00   sec   369 MBytes  3.09 Gbits/sec    0             sender
[  5][TX-C]   0.00-1.00   sec   364 MBytes  3.05 Gbits/sec                  receiver
[  7][TX-C]   0.00-1.00   sec   368 MBytes  3.08 Gbits/sec    0             sender
[  7][TX-C]   0.00-1.00   sec   363 MBytes  3.04 Gbits/sec                  receiver
[SUM][TX-C]   0.00-1.00   sec   736 MBytes  6.18 Gbits/sec    0             sender
[SUM][TX-C]   0.00-1.00   sec   727 MBytes  6.09 Gbits/sec                  receiver
[  9][RX-C]   0.00-1.00   sec  1.17 GBytes  10.0 Gbits/sec    6             sender
[  9][RX-C]   0.00-1.00   sec  1.17 GBytes  10.0 Gbits/sec                  receiver
[ 12][RX-C]   0.00-1.00   sec  1.16 GBytes  9.97 Gbits/sec    0             sender
[ 12][RX-C]   0.00-1.00   sec  1.16 GBytes  9.96 Gbits/sec                  receiver
[SUM][RX-C]   0.00-1.00   sec  2.33 GBytes  20.0 Gbits/sec    6             sender
[SUM][RX-C]   0.00-1.00   sec  2.33 GBytes  20.0 Gbits/sec                  receiver"""
MB, GB = 1 << 20, 1 << 30


def test_bidir_retr_and_cwnd_lines_as_iperf3_3_12() -> None:
    interval = {
        "type": "interval", "protocol": "tcp", "direction": "bidir", "sender": None,
        "start": 0.0, "end": 1.0, "seconds": 1.0, "sum": {"bytes": 0},
        "streams": [
            {"id": 5, "role": "TX-C", "bytes": int(368.6 * MB), "retransmits": 0,
             "snd_cwnd": 1023 << 10},
            {"id": 7, "role": "TX-C", "bytes": int(367.6 * MB), "retransmits": 0,
             "snd_cwnd": 1023 << 10},
            {"id": 9, "role": "RX-C", "bytes": int(1.166 * GB)},
            {"id": 12, "role": "RX-C", "bytes": int(1.16 * GB)},
        ],
    }  # fmt: skip
    assert run_throughput.interval_rows(interval) == BIDIR

    def side(nbytes: float, **kw: Any) -> dict[str, Any]:
        return {"bytes": int(nbytes), "seconds": 1.0, **kw}

    total = {
        "type": "throughput", "protocol": "tcp", "direction": "bidir", "bidir": True,
        "interval": 1.0, "parallel": 2, "seconds": 1.0,
        "streams": [
            {"id": 5, "role": "TX-C", "sender": side(368.6 * MB, retransmits=0),
             "receiver": side(364 * MB)},
            {"id": 7, "role": "TX-C", "sender": side(367.6 * MB, retransmits=0),
             "receiver": side(362.6 * MB)},
            {"id": 9, "role": "RX-C", "sender": side(1.166 * GB, retransmits=6),
             "receiver": side(1.166 * GB)},
            {"id": 12, "role": "RX-C", "sender": side(1.161 * GB, retransmits=0),
             "receiver": side(1.16 * GB)},
        ],
        "sum": {"sender": {**side(736 * MB, retransmits=0), "seconds": 0.9995},
                "receiver": {**side(727 * MB), "seconds": 1.0014}},
        "sum_reverse": {"sender": side(2.327 * GB, retransmits=6),
                        "receiver": side(2.326 * GB)},
    }  # fmt: skip
    text = (run_throughput.row(total) or "").splitlines()
    assert "\n".join(text[:13]) == BIDIR_TOTALS


def test_bidir_sending_streams_carry_retr_and_cwnd() -> None:
    """--bidir over TCP: the TX-C streams' intervals have the endpoint's TCP_INFO (Retr,
    Cwnd, rtt, ...), the RX-C ones none (iperf3's -J leaves them out); the totals: TX-C's
    sender retransmits ours, RX-C's the server's; each sender's -J statistics."""
    rig, server, endpoint = tcp_info_rig()
    spec = TimedSpec(seconds=0.5, bidir=True, interval=0.25, bitrate=8e6, length=10_000)
    d, intervals = run(rig, spec)
    assert "error" not in d, d
    assert len(intervals) == 2
    for i in intervals:
        tx, rx = i["streams"]
        assert tx["role"] == "TX-C" and "retransmits" in tx and tx["snd_cwnd"] >= 14480
        assert {"rtt", "rttvar", "pmtu", "snd_wnd"} <= set(tx)
        assert rx["role"] == "RX-C" and "retransmits" not in rx and "rtt" not in rx
        # -J's sum (TX-C, with retransmits) and sum_bidir_reverse (RX-C), apart
        assert i["sum"]["bytes"] == tx["bytes"] and i["sum_reverse"]["bytes"] == rx["bytes"]
        assert i["sum"]["retransmits"] == tx["retransmits"]
        assert "retransmits" not in i["sum_reverse"]
    text = run_throughput.interval_rows(intervals[0]).splitlines()
    assert text[0].endswith("Bitrate         Retr  Cwnd")
    assert text[1].startswith("[  5][TX-C]") and "KBytes" in text[1]
    assert text[2].startswith("[  7][RX-C]") and text[2].endswith(" " * 18)
    tx, rx = d["streams"]
    # the last sample before the end (the one read after it, by the endpoint's clock, not)
    assert tx["sender"]["retransmits"] == endpoint.retrans[1] - 1
    assert {"max_snd_cwnd", "max_snd_wnd", "max_rtt", "min_rtt", "mean_rtt"} <= set(tx["sender"])
    assert "retransmits" not in rx["sender"]  # the fake server says -1 (unknown)
    block = run_throughput.row(d) or ""
    assert block.splitlines()[1].endswith("Bitrate         Retr")
    assert server.done


def test_cli_blockcount_and_bidir_bytes() -> None:
    p = argparse.ArgumentParser(exit_on_error=False)
    run_throughput.configure(p)
    args = p.parse_args(["-c", "192.0.2.5", "-k", "1K"])
    assert args.blocks == 1024 and run_throughput.timed(args)
    assert p.parse_args(["-c", "192.0.2.5", "--blockcount", "2M"]).blocks == 2 << 20
    with pytest.raises(argparse.ArgumentError, match="expected a block count"):
        p.parse_args(["-c", "192.0.2.5", "-k", "lots"])
    for extra in (["-t", "2"], ["-n", "8M"]):
        args = p.parse_args(["-c", "192.0.2.5", "-k", "3", *extra])
        with pytest.raises(RunError, match=r"only one test end condition \(-t, -n, -k\)"):
            run_throughput.experiment(args, lambda r: None, None)  # type: ignore[arg-type]
    args = p.parse_args(["-c", "192.0.2.5", "--bidir", "-n", "8M"])
    run_throughput.experiment(args, lambda r: None, None)  # type: ignore[arg-type]
    # iperf3: "cannot be both reverse and bidirectional" (ours ran --bidir)
    args = p.parse_args(["-c", "192.0.2.5", "--bidir", "-R", "-t", "1"])
    assert args.direction == "download"
    with pytest.raises(RunError, match="cannot be both reverse and bidirectional"):
        run_throughput.experiment(args, lambda r: None, None)  # type: ignore[arg-type]
    assert p.parse_args(["-c", "192.0.2.5", "-R"]).direction == "download"
    with pytest.raises(ValueError, match="only one test end condition"):
        TimedSpec(blocks=3, seconds=1).check()
    with pytest.raises(ValueError, match="-k must be positive"):
        TimedSpec(blocks=0).check()


# -- --pcap with -t/-P/-u/-b/-i -----------------------------------------------------------


def _records(recorder: Any) -> list[tuple[int, bytes, int]]:
    """(ns, kept bytes, original length) of every packet, as the file has them."""
    import io

    from packetlab.measure.pcap import pcap_records

    buf = io.BytesIO()
    recorder.write(buf)
    data = buf.getvalue()
    _link, records = pcap_records(data)
    lengths = []
    off = 24
    while off < len(data):
        _s, _n, incl, orig = struct.unpack_from("<IIII", data, off)
        lengths.append(orig)
        off += 16 + incl
    return [(t, p, n) for (t, p), n in zip(records, lengths, strict=True)]


def _flow(pkt: bytes) -> tuple[int, int, int]:
    """(protocol, source port, destination port) of an IPv4 packet."""
    ihl = (pkt[0] & 15) * 4
    sport, dport = struct.unpack_from("!HH", pkt, ihl)
    return pkt[9], sport, dport


def test_pcap_of_a_timed_download_keeps_every_packet_cut_short() -> None:
    """-R -t 0.3 -P 2 --pcap: the control connection whole, each data stream's SYN, cookie
    and every ndata at its receive stamp, payloads cut to 64 bytes with their whole length
    in the headers and the record; the streams' received bytes add up."""
    from packetlab.measure.pcap import PcapRecorder
    from packetlab.measure.throughput_pcap import SNAP

    rig, server = rig_with_server()
    recorder = PcapRecorder()
    spec = TimedSpec(direction="download", seconds=0.3, streams=2, interval=0.1)
    r = rig.run(timed_test(rig.session, SERVER[0], spec=spec, recorder=recorder))
    d = r.to_dict()
    assert "error" not in d, d
    records = _records(recorder)
    assert [t for t, _, _ in records] == sorted(t for t, _, _ in records)
    syns = [p for _, p, _ in records if p[33] == 0x02]  # TCP flags: SYN
    assert len(syns) == 3  # the control connection and two data streams
    cut = 0
    for _t, pkt, whole in records:
        proto, sport, _dport = _flow(pkt)
        assert proto == 6 and struct.unpack_from("!H", pkt, 2)[0] == whole
        if len(pkt) < whole:  # data (the control connection's are whole)
            assert sport == SERVER[1] and len(pkt) in (40 + SNAP, 40)  # a 2nd segment: none
            cut += whole - 40
    assert cut == sum(server.got)  # every byte the streams received
    assert "pcap_dropped" not in d


def test_pcap_of_a_paced_udp_upload_at_the_send_times() -> None:
    """-u -b --pcap: each datagram at the time the endpoint sent it (its ntag: every send
    has one at 125 a second), with iperf3's header (its number) kept; the connect datagram
    and the server's reply. It was the time the endpoint was told to send it: on a loaded
    in-process endpoint up to 18.7 ms before tcpdump saw the datagram (session 24)."""
    from packetlab.measure.pcap import PcapRecorder

    rig, server = rig_with_server()
    assert isinstance(rig.endpoint, UdpFakeEndpoint)
    rig.endpoint.udp_late = 3_000_000  # each leaves 3 ms after its time
    recorder = PcapRecorder()
    spec = TimedSpec(direction="upload", seconds=0.2, udp=True, bitrate=1e6, length=1000)
    r = rig.run(timed_test(rig.session, SERVER[0], spec=spec, recorder=recorder))
    assert r.error is None, r.error
    udp = [(t, p, n) for t, p, n in _records(recorder) if _flow(p)[0] == 17]
    assert [n - 28 for _, _, n in udp[:2]] == [4, 4]  # connect, reply
    sent = [(t, p) for t, p, n in udp[2:] if _flow(p)[2] == SERVER[1]]
    assert len(sent) == len(server.datagrams)
    for (t, pkt), (_i, when, data) in zip(sent, server.datagrams, strict=True):
        assert t == when and pkt[28:40] == data[:12]  # iperf3's header: time, number
        sec, usec = struct.unpack_from("!II", pkt, 28)  # the time it was due
        assert t - (sec * 10**9 + usec * 1000) >= 3_000_000 - 1000


def test_pcap_keeps_at_most_its_bound() -> None:
    from packetlab.measure.pcap import PcapRecorder
    from packetlab.measure.throughput_pcap import TimedCapture

    recorder = PcapRecorder()
    cap = TimedCapture(recorder, limit=3)
    cap.udp(5, "192.0.2.1", 4000, "192.0.2.5", 5201)
    for k in range(5):
        cap.sent(5, 1000 + k, 1400, b"x" * 100)
    cap.received(9, 2000, b"not a stream")  # unknown: ignored
    cap.write()
    assert cap.dropped == 2 and len(recorder.packets) == 3
    assert all(len(p) == 28 + 64 for _, p in recorder.packets)
    assert recorder.lengths == {0: 1428, 1: 1428, 2: 1428}


def test_cli_pcap_with_the_timed_options() -> None:
    p = argparse.ArgumentParser(exit_on_error=False)
    run_throughput.configure(p)
    args = p.parse_args(["-c", "192.0.2.5", "-t", "1", "-u", "--pcap", "/dev/null"])
    run_throughput.experiment(args, lambda r: None, None)  # type: ignore[arg-type]
    args = p.parse_args(["-c", "192.0.2.5", "-t", "1", "--lead", "1"])
    with pytest.raises(RunError, match="--lead is not used with -t"):
        run_throughput.experiment(args, lambda r: None, None)  # type: ignore[arg-type]


def test_a_stop_ends_a_bidir_bytes_test_with_both_halves() -> None:
    """Ctrl-C in --bidir -n 64M: both halves stop at once, one TEST_END, the figures of
    what ran."""
    rig, server = rig_with_server()
    rig.endpoint.rate = RATE
    spec = TimedSpec(bidir=True, nbytes=64 << 20, bitrate=8e6, length=10_000)
    at = rig.clock.seconds() + 0.35
    r = rig.run(timed_test(rig.session, SERVER[0], spec=spec,
                           stopping=lambda: rig.clock.seconds() >= at))  # fmt: skip
    d = r.to_dict()
    assert "error" not in d, d
    assert d["stopped"] is True and server.done and 0.2 < d["seconds"] < 0.6
    assert len(test_end_events(rig)) == 1
    assert d["sum"]["sender"]["mbit_s"] == pytest.approx(8, rel=0.2)
    assert d["sum_reverse"]["receiver"]["bytes"] > 0


@pytest.mark.parametrize(
    ("spec", "blocks"),
    [(TimedSpec(direction="upload", blocks=10, streams=3, bitrate=8e6, length=10_000), 12),
     (TimedSpec(direction="upload", nbytes=95_000, streams=3, bitrate=8e6, length=10_000), 12),
     (TimedSpec(direction="upload", blocks=10, streams=3, length=10_000), 10)],
    ids=["k-paced", "n-paced", "k-unpaced"],
)  # fmt: skip
def test_paced_counts_round_up_to_a_block_on_every_stream(spec: TimedSpec, blocks: int) -> None:
    """Paced (-b), iperf3 sends a block on every stream in a round and counts after it:
    `-k 10 -P 3 -b 20M` sent 12 blocks (native 3.12; was 10 here), `-n 3000000 -P 3 -b
    20M` 24 of 128 KiB; unpaced it counts before every block (10)."""
    rig, server = rig_with_server()
    rig.endpoint.rate = RATE
    d, _ = run(rig, spec)
    assert "error" not in d, d
    assert d["sum"]["sender"]["bytes"] == blocks * 10_000 == sum(server.got)
    if spec.rate:  # whole rounds
        assert [st["sender"]["bytes"] for st in d["streams"]] == [blocks // 3 * 10_000] * 3
