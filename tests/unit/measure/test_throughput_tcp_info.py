"""iperf3's TCP sender columns, Retr and Cwnd (issue 13): the endpoint's SKT_TCPINFO
sample read by `timed_test` for a TCP upload (scripted endpoint and iperf3 server), and
the lines laid out as iperf3 3.12 printed them on this machine (docs/throughput.md)."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from stream_fakes import StreamRig
from test_throughput_timed import (
    RATE,
    SERVER,
    TimedIperf3,
    UdpFakeEndpoint,
    rig_with_server,
    run,
)

from packetlab.cli import run_throughput
from packetlab.measure import iperf3
from packetlab.measure.iperf3 import Iperf3Error
from packetlab.measure.throughput_timed import TimedSpec
from packetlab.wire import vmem


class TcpInfoEndpoint(UdpFakeEndpoint):
    """Answers SKT_TCPINFO for its data sockets: one more retransmit at every read, the
    window 10 segments of 1448 bytes (14,480 bytes: `14.1 KBytes`)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.retrans: dict[int, int] = {}

    def read(self, addr: int, n: int) -> bytes:
        sktid, off = divmod(addr - vmem.SKT_BASE, vmem.SKT_STRIDE)
        if addr < vmem.SKT_BASE or off != vmem.SKT_TCPINFO.addr or sktid == 0:
            return super().read(addr, n)
        self.retrans[sktid] = self.retrans.get(sktid, -1) + 1
        return struct.pack(vmem.TCPINFO_STRUCT, vmem.TCPINFO_VERSION, 1, 0,
                           self.retrans[sktid], 10, 1448, 900, 100, 1500, 65535, 0)[:n]  # fmt: skip


def tcp_info_rig() -> tuple[StreamRig, TcpInfoEndpoint]:
    rig = StreamRig(TcpInfoEndpoint)
    server = TimedIperf3(rig)
    rig.endpoint.peers[SERVER] = server.connect
    rig.endpoint.rate = RATE
    assert isinstance(rig.endpoint, TcpInfoEndpoint)
    return rig, rig.endpoint


def test_upload_intervals_carry_retransmits_and_cwnd_from_the_endpoint() -> None:
    rig, endpoint = tcp_info_rig()
    d, intervals = run(rig, TimedSpec(direction="upload", seconds=0.5, interval=0.25,
                                      streams=2))  # fmt: skip
    assert "error" not in d, d
    assert [(i["start"], i["end"]) for i in intervals] == [(0.0, 0.25), (0.25, 0.5)]
    # one more retransmit at every read: the first interval's sample is read 0; the
    # last's is the last read before the end (since session 19 the test's last samples
    # are read from 0.25 s before it, TEST_END queued at the endpoint for the end)
    last = intervals[1]["streams"][0]["retransmits"]
    assert 0 < last < endpoint.retrans[1]  # not the one read after the end
    for i in intervals:
        for s in i["streams"]:
            assert s["retransmits"] == (last if i["start"] else 0)
            assert s["snd_cwnd"] == 14480 and s["rtt"] == 900 and s["pmtu"] == 1500
        assert i["sum"]["retransmits"] == sum(s["retransmits"] for s in i["streams"])
    # the totals: the sample taken as the test ended (before TEST_END), which the last
    # interval (closed after it) shares: the intervals add up to the totals, as iperf3's
    assert [s["sender"]["retransmits"] for s in d["streams"]] == [last, last]
    assert (
        d["sum"]["sender"]["retransmits"]
        == 2 * last
        == sum(i["sum"]["retransmits"] for i in intervals)
    )
    assert endpoint.retrans[1] == endpoint.retrans[2]  # each stream's region, as often
    assert "retransmits" not in d["streams"][0]["receiver"]  # iperf3's receiver has none
    text = run_throughput.interval_rows({**intervals[1]})
    assert text.splitlines()[0].endswith(f"sec {last:>4}   14.1 KBytes       ")


def test_without_the_region_there_are_no_columns() -> None:
    """An endpoint without SKT_TCPINFO (the reference; zeros): no Retr or Cwnd, as iperf3
    on a system without TCP_INFO."""
    rig, _server = rig_with_server()
    rig.endpoint.rate = RATE
    d, intervals = run(rig, TimedSpec(direction="upload", seconds=0.3, interval=0.1))
    assert "error" not in d, d
    assert intervals and all("retransmits" not in s for i in intervals for s in i["streams"])
    assert "retransmits" not in d["streams"][0]["sender"]
    text = run_throughput.interval_rows(intervals[0])
    assert text.splitlines()[0] == iperf3.HEADER
    assert "Retr" not in (run_throughput.row(d) or "")


def test_download_takes_the_servers_retransmits() -> None:
    """-R: the iperf3 server sends; its results carry its retransmits (the sender line)."""
    rig, _server = rig_with_server()
    d, _ = run(rig, TimedSpec(direction="download", seconds=0.2, interval=0))
    assert "error" not in d, d
    assert "retransmits" not in d["streams"][0]["sender"]  # the fake server says -1
    assert (
        iperf3.server_streams({"streams": [{"id": 1, "bytes": 5, "retransmits": 7}]})[1][
            "retransmits"
        ]
        == 7
    )


@pytest.mark.parametrize("value", [-1, (1 << 64) - 1])
def test_server_retransmits_unknown(value: int) -> None:
    """iperf3 3.12's receiving server sends -1 as an unsigned 64-bit number."""
    got = iperf3.server_streams({"streams": [{"id": 1, "bytes": 5, "retransmits": value}]})
    assert got[1]["retransmits"] == -1


def test_server_retransmits_garbage_is_a_clear_error() -> None:
    with pytest.raises(Iperf3Error, match="retransmits"):
        iperf3.server_streams({"streams": [{"id": 1, "bytes": 5, "retransmits": "x"}]})


# Lines of `iperf3 -c 127.0.0.1 -t 2 -i 1` (-P 2, -R), iperf3 3.12 on this machine (-R:
# checked again by the lead, the header has no Retr/Cwnd, -P 1 and 2); a
# `|` marks the end of a line that ends in spaces.
UPLOAD = """\
[ ID] Interval           Transfer     Bitrate         Retr  Cwnd
[  5]   0.00-1.00   sec  1.24 GBytes  10.6 Gbits/sec    2    895 KBytes       |
[  7]   0.00-1.00   sec  1.24 GBytes  10.7 Gbits/sec    2    767 KBytes       |
[SUM]   0.00-1.00   sec  2.48 GBytes  21.3 Gbits/sec    4             |
- - - - - - - - - - - - - - - - - - - - - - - - -""".replace("|", "")
UPLOAD_TOTALS = """\
[ ID] Interval           Transfer     Bitrate         Retr
[  5]   0.00-2.00   sec  4.97 GBytes  21.3 Gbits/sec    6             sender
[  5]   0.00-2.00   sec  4.96 GBytes  21.3 Gbits/sec                  receiver"""
REVERSE = """\
[ ID] Interval           Transfer     Bitrate
[  5]   0.00-1.00   sec  2.59 GBytes  22.3 Gbits/sec                  |""".replace("|", "")
ONE = "[  5]   0.00-1.00   sec  1.25 MBytes  10.5 Mbits/sec    0   1.12 MBytes" + " " * 7
GB = 1 << 30


def test_lines_as_iperf3_3_12() -> None:
    tcp = {"type": "interval", "protocol": "tcp", "start": 0.0, "end": 1.0, "seconds": 1.0}
    streams = [
        {"id": 5, "bytes": int(1.236 * GB), "retransmits": 2, "snd_cwnd": 895 << 10},
        {"id": 7, "bytes": int(1.243 * GB), "retransmits": 2, "snd_cwnd": 767 << 10},
    ]
    rec = {**tcp, "sender": True, "streams": streams,
           "sum": {"bytes": int(2.479 * GB), "retransmits": 4}}  # fmt: skip
    assert run_throughput.interval_rows(rec) == UPLOAD
    one = {**tcp, "sender": True, "start": 0.0, "streams": [
        {"id": 5, "bytes": int(1.25 * (1 << 20)), "retransmits": 0,
         "snd_cwnd": int(1.12 * (1 << 20))}], "sum": {}}  # fmt: skip
    assert run_throughput.interval_rows(one).splitlines()[1] == ONE
    rev = {**tcp, "sender": False, "streams": [{"id": 5, "bytes": int(2.595 * GB)}], "sum": {}}
    assert run_throughput.interval_rows(rev) == REVERSE
    side = {"seconds": 2.0}
    total = {
        "type": "throughput", "protocol": "tcp", "interval": 1.0, "parallel": 1,
        "seconds": 2.0, "endpoint": "sender",
        "streams": [{"id": 5, "sender": {**side, "bytes": int(4.97 * GB), "retransmits": 6},
                     "receiver": {**side, "bytes": int(4.96 * GB)}}],
    }  # fmt: skip
    text = run_throughput.row(total) or ""
    assert "\n".join(text.splitlines()[1:4]) == UPLOAD_TOTALS
    assert iperf3.retr_tail(4) == "    4             "


class ControlMss(TcpInfoEndpoint):
    """Answers SKT_TCPINFO for the control connection too (sktid 0): MSS 1448."""

    def read(self, addr: int, n: int) -> bytes:
        if addr != vmem.SKT_BASE + vmem.SKT_TCPINFO.addr:
            return super().read(addr, n)
        return struct.pack(vmem.TCPINFO_STRUCT, vmem.TCPINFO_VERSION, 1, 0, 0, 10, 1448, 900,
                           100, 1500, 65535, 0)[:n]  # fmt: skip


@pytest.mark.parametrize(
    ("endpoint", "length", "want"),
    [(ControlMss, None, 1448), (UdpFakeEndpoint, None, iperf3.DEFAULT_UDP_BLOCK),
     (ControlMss, 1000, 1000)],
    ids=["control-mss", "no-tcp-info", "given"],
)  # fmt: skip
def test_udp_block_is_the_control_connections_mss(
    endpoint: type[UdpFakeEndpoint], length: int | None, want: int
) -> None:
    """-u without -l: iperf3 3.12's datagrams are its control connection's MSS (native on
    loopback: 32768-byte datagrams, 4 in `-u -t 1`; was always 1460 here), 1460 when it
    is not known (an endpoint without SKT_TCPINFO); -l as given."""
    rig = StreamRig(endpoint)
    server = TimedIperf3(rig)
    rig.endpoint.peers[SERVER] = server.connect
    d, _ = run(rig, TimedSpec(direction="download", udp=True, seconds=0.2, length=length))
    assert "error" not in d, d
    assert server.params["len"] == want and d["length"] == want
