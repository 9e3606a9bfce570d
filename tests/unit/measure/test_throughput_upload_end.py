"""A time-limited upload's end (issue 13, session 19): TEST_END queued at the endpoint
for the test's end, as iperf3's timer sends it, not one controller round trip after the
last send's ntag (the server counted a paced test's last block or datagram late or not
at all: `-u -b 10M -t 2` 76 of 77 datagrams, native 77); Ctrl-C in a paced upload sends
TEST_END at once, not after the sends queued 0.5 s ahead (the server counted 2.12 MB of
a stop at 1.25 s, 1.50 MB sent). Scripted endpoint and iperf3 server."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from test_throughput_timed import RATE, SERVER, rig_with_server, run

from packetlab.measure.iperf3 import State
from packetlab.measure.throughput_timed import TimedSpec, timed_test
from packetlab.wire import Nsend


def test_ends(rig: Any) -> list[Nsend]:
    return [m for m in rig.endpoint.received if isinstance(m, Nsend) and m.sktid == 0
            and m.data == struct.pack("b", State.TEST_END)]  # fmt: skip


test_ends.__test__ = False  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "spec",
    [TimedSpec(direction="upload", seconds=0.5, interval=0.25),
     TimedSpec(direction="upload", seconds=0.5, bitrate=16e6, length=20_000, interval=0),
     TimedSpec(direction="upload", seconds=0.5, udp=True, bitrate=8e6, length=1000)],
    ids=["unpaced", "paced", "udp"],
)  # fmt: skip
def test_upload_test_end_is_queued_for_the_end(spec: TimedSpec) -> None:
    rig, server = rig_with_server()
    rig.endpoint.rate = RATE
    d, _ = run(rig, spec)
    assert "error" not in d, d
    (end,) = test_ends(rig)
    sends = [m for m in rig.endpoint.received if isinstance(m, Nsend) and m.sktid == 1]
    if spec.rate:  # a paced test's T s run from its first send
        assert end.time == sends[1].time + 500_000_000
        assert all(m.time < end.time for m in sends[1:])  # every send before the end
        assert sum(server.got) == d["sum"]["sender"]["bytes"]  # the server got them all
    else:
        assert end.time > 0  # at TEST_START + 0.5 s
        assert server.ended - server.started == pytest.approx(0.5, abs=0.002)
    assert 0 <= server.end_time - end.time <= 1_000_000 and server.done  # (the link's ms)


def test_paced_stop_sends_test_end_at_once() -> None:
    """Ctrl-C in `-t 10 -b 16M`: TEST_END at once (the sends queued up to 0.5 s ahead
    still go, but after it), the server's count close to ours."""
    rig, server = rig_with_server()
    rig.endpoint.rate = RATE
    spec = TimedSpec(direction="upload", seconds=10, bitrate=16e6, length=20_000, interval=0.1)
    at = rig.clock.seconds() + 0.6
    r = rig.run(timed_test(rig.session, SERVER[0], spec=spec,
                           stopping=lambda: rig.clock.seconds() >= at))  # fmt: skip
    d = r.to_dict()
    assert "error" not in d, d
    assert d["stopped"] is True and server.done
    (end,) = test_ends(rig)
    assert end.time == 0  # at once
    assert server.ended - at < 0.1  # was: after the queued sends, 0.5 s later
    sent = d["sum"]["sender"]["bytes"]
    assert sent <= server.got[0] <= sent + 0.1 * 2e6  # 0.1 s of 2 MB/s at most more


def test_logfile_labels_the_streams_as_iperf3() -> None:
    """--logfile: iperf3 3.12 labels its streams `[  6]`, `[  8]` (the log file takes a
    descriptor before its sockets); the CLI says so to the test (was: 5, 7)."""
    import asyncio

    from packetlab.cli import run_throughput
    from packetlab.cli.run_command import Progress, parse_args
    from packetlab.measure import throughput_timed

    rig, _server = rig_with_server()
    d, intervals = run(rig, TimedSpec(direction="download", seconds=0.3, streams=2,
                                      interval=0.1, fd_offset=1))  # fmt: skip
    assert "error" not in d, d
    assert [s["id"] for s in d["streams"]] == [6, 8]
    assert [s["id"] for s in intervals[0]["streams"]] == [6, 8]
    specs: list[TimedSpec] = []

    async def fake(session: Any, host: Any, port: Any, *, spec: TimedSpec, **kw: Any) -> Any:
        specs.append(spec)
        raise asyncio.CancelledError

    for words, offset in ((["--logfile", "/dev/null"], 1), ([], 0)):
        args = parse_args(run_throughput.COMMAND, ["-c", "127.0.0.1", "-t", "1", *words])
        with pytest.MonkeyPatch.context() as m:
            m.setattr(throughput_timed, "timed_test", fake)
            go = run_throughput.experiment(args, lambda r: None, Progress())
            with pytest.raises(asyncio.CancelledError):
                go(None).send(None)
        assert specs[-1].fd_offset == offset


def closing_rig() -> tuple[Any, Any]:
    """A scripted iperf3 server that closes the data connections as it reads TEST_END:
    the endpoint's sends after it fail (ntag EPKTNOTSENT), as through a real one."""
    from stream_fakes import StreamRig
    from test_throughput_timed import TimedIperf3, UdpFakeEndpoint

    from packetlab.wire import Ntag, Status

    class Closing(UdpFakeEndpoint):
        server: TimedIperf3

        def _sent(self, msg: Nsend, when: int) -> None:
            if msg.sktid != 0 and self.server.ended:  # the server closed: not sent
                self.unsent -= len(msg.data)
                if msg.tag:
                    self.send(Ntag(msg.sktid, msg.tag, when, int(Status.EPKTNOTSENT)))
                return
            super()._sent(msg, when)

    rig = StreamRig(Closing)
    server = TimedIperf3(rig)
    assert isinstance(rig.endpoint, Closing)
    rig.endpoint.server = server
    rig.endpoint.peers[SERVER] = server.connect
    rig.endpoint.rate = RATE
    return rig, server


def test_sends_failing_after_the_end_are_moot() -> None:
    """The server closes the data connection as it reads TEST_END; the blocks still queued
    at the endpoint then fail (ntag EPKTNOTSENT), possibly before the controller has seen
    the end pass: the test ends with its figures (was, on a shaped 20 Mbit/s link:
    `nsend on socket 1 tag 39 not sent`, exit 2, from the run)."""
    rig, server = closing_rig()
    d, _ = run(rig, TimedSpec(direction="upload", seconds=0.5, interval=0))
    assert "error" not in d, d
    assert server.done and d["sum"]["sender"]["bytes"] > 0


def test_bidir_paced_stop_ends_both_halves_without_an_error() -> None:
    """Ctrl-C in `--bidir -t 10 -b 16M`: the sending half stops as well whichever half saw
    the stop first, its sends queued 0.5 s ahead moot once the server closes (was: the
    sending half sent on to the old end, `error - nsend on socket 1 tag 16 not sent`)."""
    rig, server = closing_rig()
    spec = TimedSpec(bidir=True, seconds=10, bitrate=16e6, length=20_000, interval=0.1)
    at = rig.clock.seconds() + 0.6
    r = rig.run(timed_test(rig.session, SERVER[0], spec=spec,
                           stopping=lambda: rig.clock.seconds() >= at))  # fmt: skip
    d = r.to_dict()
    assert "error" not in d, d
    assert d["stopped"] is True and server.done and len(test_ends(rig)) == 1
    assert d["seconds"] < 1.0
