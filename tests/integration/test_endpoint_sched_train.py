"""A scheduled UDP train through a real twistd pktendpoint: every packet arrives, in order,
and the ntag times are in send order and near the kernel receive times.

Functional only: the precision goals are measured by benchmarks/bench_send_precision.py
(mode ``endpoint``), never asserted here.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest
from conftest import RawController

from packetlab import wire
from packetlab.endpoint.timestamps import enable_rx_timestamps, recv_with_timestamp
from packetlab.wire import vmem

LO4 = socket.inet_aton("127.0.0.1")
COUNT = 300
GAP_NS = 100_000
START_DELAY_NS = 200_000_000  # all nsends are queued long before the first is due
BOUND_NS = 50_000_000  # "sane": an ntag this far from the wire time would be a bug


@pytest.fixture
def receiver() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    enable_rx_timestamps(sock)
    sock.settimeout(5)
    yield sock
    sock.close()


@pytest.mark.parametrize("gap_ns", [GAP_NS, 7_300])
def test_scheduled_train_arrives_complete_in_order_with_honest_ntags(
    controller: RawController, receiver: socket.socket, gap_ns: int
) -> None:
    c = controller
    c.ok(wire.Nopen(sktid=3, family=4, proto=17, rbufsz=1 << 16, laddr=bytes(4), lport=0))
    (now,) = struct.unpack("!Q", c.mread(vmem.TIME.addr, 8))
    start = now + START_DELAY_NS
    port = receiver.getsockname()[1]
    c.send(
        *(
            wire.Nsend(
                sktid=3,
                family=4,
                proto=17,
                time=start + i * gap_ns,
                tag=i + 1,
                data=struct.pack("!I", i) + bytes(28),
                raddr=LO4,
                rport=port,
            )
            for i in range(COUNT)
        )
    )
    for _ in range(COUNT):
        assert c.response() == wire.Result(0)

    arrivals: list[tuple[int, int]] = []  # (sequence number, kernel rx time)
    for _ in range(COUNT):
        data, _addr, ts = recv_with_timestamp(receiver, 2048)
        assert ts is not None
        arrivals.append((struct.unpack_from("!I", data)[0], ts))
    assert [seq for seq, _ in arrivals] == list(range(COUNT))  # complete, in order

    ntags = [c.notification(wire.Ntag, timeout=5) for _ in range(COUNT)]
    assert all(n.sktid == 3 and n.errid == 0 for n in ntags)
    assert [n.tag for n in ntags] == list(range(1, COUNT + 1))
    times = [n.time for n in ntags]
    assert times == sorted(times)  # non-decreasing, like the sends
    assert times[0] >= start - 1_000_000  # none went out (much) before its time
    for n, (_seq, rx) in zip(ntags, arrivals, strict=True):
        assert abs(n.time - rx) < BOUND_NS, (n.tag, n.time - rx)
    c.ok(wire.Nclose(sktid=3))
