"""`pktlab run throughput` with several receiving TCP streams (-R -P N, --bidir -P N):
the receive budgets asked of the endpoint, and a --bidir test whose upload half the
endpoint refuses (measure/throughput_timed.py), over the scripted endpoint and server of
test_throughput_timed."""

from __future__ import annotations

import pytest
from test_throughput_timed import RATE, UdpFakeEndpoint, rig_with_server, run

from packetlab.measure.throughput_timed import TimedSpec
from packetlab.wire import Nopen
from packetlab.wire.constants import NDATA_MAX

#: An endpoint stops reading requests while 100 frames wait for the controller
#: (PROTOCOL.md §1.4 step 4).
MAX_MSGQ_LEN = 100


@pytest.mark.parametrize(
    ("spec", "receiving"),
    [
        (TimedSpec(direction="download", seconds=0.3, streams=2), 2),
        (TimedSpec(seconds=0.3, streams=2, bidir=True, bitrate=8e6, length=10_000), 2),
        (TimedSpec(direction="download", seconds=0.3, streams=8), 8),
        (TimedSpec(direction="download", seconds=0.3), 1),
    ],
    ids=["R-P2", "bidir-P2", "R-P8", "R-P1"],
)
def test_receive_budgets_cannot_fill_the_endpoints_queue(spec: TimedSpec, receiving: int) -> None:
    """The receiving streams' rbufsz together hold under MAX_MSGQ_LEN ndata of NDATA_MAX
    bytes: with more, a download faster than the controller keeps 100 frames queued at the
    endpoint, which then reads no request (the sends, TEST_END, nclose) until the server
    gives up (was 4 MiB a stream: 128 ndata with -P 2; --bidir -P 2 -t 1 took 40 s)."""
    rig, server = rig_with_server()
    rig.endpoint.rate = RATE
    d, _ = run(rig, spec)
    assert "error" not in d, d
    opens = [m for m in rig.endpoint.received if isinstance(m, Nopen)][1:]  # not the control
    assert len(opens) == spec.sockets
    rx = opens[-receiving:]  # --bidir: the second half receives
    assert sum(m.rbufsz for m in rx) < MAX_MSGQ_LEN * NDATA_MAX * 0.6
    assert all(m.rbufsz >= NDATA_MAX for m in rx)  # each still takes whole reads
    assert server.done


@pytest.mark.parametrize("streams", [1, 2, 4])
def test_a_refused_bidir_upload_ends_the_test_and_nothing_follows(streams: int) -> None:
    """--bidir -P N -t 2 over an endpoint that refuses the sends past 2 MiB: the test ends
    with the ESKTPKTDENY line long before T, and the receiving half is stopped with it: the
    endpoint hears nothing more of the test (the old half went on: its TCP_INFO reads just
    before T, then TEST_END on the closed control connection's socket id, which the next
    run may have opened again)."""
    rig, server = rig_with_server()
    assert isinstance(rig.endpoint, UdpFakeEndpoint)
    rig.endpoint.rate = RATE
    rig.endpoint.window = 2 << 20
    spec = TimedSpec(seconds=2, streams=streams, bidir=True, interval=0)
    d, _ = run(rig, spec)
    assert d["error"].startswith("the endpoint refused the sends (ESKTPKTDENY)"), d
    assert "use -b below it" in d["error"]
    assert rig.clock.seconds() - server.started < 1.0  # refused after 2 MiB at 10 MB/s
    seen = len(rig.endpoint.received)
    until = rig.clock.seconds() + 3.0  # past T: what the test still does after it returned
    while rig.clock.seconds() < until:
        rig.pump.flush()
        rig.clock.advance(0.001)
    late = rig.endpoint.received[seen:]
    assert not late and not server.ended, late
