"""A stalled server's intervals shown as they pass (session 26, iperf26b), against the
scripted iperf3 server of test_throughput_timed: iperf3 3.12 prints `0.00 Bytes` lines
on its timer while a server is stopped (SIGSTOP); until session 26 ours showed an
interval only once a stamp at or past its end came, so those lines came when the data
resumed, at the end or before --rcv-timeout's error. The totals are not changed."""

from __future__ import annotations

from typing import Any

from test_throughput_timed import SERVER, TimedIperf3, rig_with_server

from packetlab.measure.throughput_streams import CLOCK_CLOSE_S
from packetlab.measure.throughput_timed import TimedSpec, timed_test


def stall(rig: Any, server: TimedIperf3, start: float, end: float) -> None:
    """The server sends nothing from `start` to `end` (controller s from now), then
    sends on (its process stopped, then continued)."""

    def stop() -> None:
        server._send = lambda i: None  # type: ignore[method-assign]

    def resume() -> None:
        del server._send
        for i in range(len(server.data)):
            server._send(i)

    rig.clock.callLater(start, stop)
    rig.clock.callLater(end, resume)


def hold_sends(rig: Any, start: float, end: float) -> None:
    """The endpoint's data sends (not the control connection's) leave nothing from
    `start` to `end`: a server that stopped reading, its window full."""
    ep = rig.endpoint
    sent = ep._sent
    t0 = rig.clock.seconds()

    def held(msg: Any, when: int) -> None:
        now = rig.clock.seconds() - t0
        if msg.sktid != 0 and start <= now < end:
            rig.clock.callLater(end - now, lambda: sent(msg, ep.now()))
            return
        sent(msg, when)

    ep._sent = held


T0 = [0.0]  # the controller's time the last `timed` began


def timed(rig: Any, spec: TimedSpec) -> tuple[dict[str, Any], list[tuple[float, Any]]]:
    seen: list[tuple[float, Any]] = []
    t0 = T0[0] = rig.clock.seconds()

    def shown(rec: Any) -> None:
        seen.append((rig.clock.seconds() - t0, rec))

    r = rig.run(timed_test(rig.session, SERVER[0], spec=spec, on_interval=shown))
    return r.to_dict(), seen


def test_a_stalled_download_shows_its_empty_intervals_as_they_pass() -> None:
    """-R -t 5 -i 1, the server stopped from 1.2 s to 3.7 s: 2.00-3.00 comes with 0
    bytes before the data resumes (not at 3.7 s), each interval at most CLOCK_CLOSE_S
    and a poll after its end; the intervals still add up to the total."""
    rig, server = rig_with_server()
    stall(rig, server, 1.2, 3.7)
    d, seen = timed(rig, TimedSpec(direction="download", seconds=5, interval=1))
    assert "error" not in d, d
    spans = [(rec["start"], rec["end"]) for _, rec in seen]
    assert spans == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]
    empty = seen[2]
    assert empty[1]["sum"]["bytes"] == 0 and empty[1]["sum"]["bits_per_second"] == 0
    assert empty[0] < 3.7  # was: 3.7 s and later, when the data came again
    # shown CLOCK_CLOSE_S after its end on the test's clock and a poll (0.1 s) at most
    assert empty[0] - (server.started - T0[0]) < 3 + CLOCK_CLOSE_S + 0.15
    assert sum(rec["sum"]["bytes"] for _, rec in seen) == d["bytes"]
    assert seen[3][1]["sum"]["bytes"] > 0  # the data resumed within 3.00-4.00


def test_a_stalled_counted_download_too() -> None:
    """-R -n: the wait for the count closes the empty intervals on the clock too."""
    rig, server = rig_with_server()
    stall(rig, server, 0.5, 3.0)
    d, seen = timed(rig, TimedSpec(direction="download", nbytes=8 << 20, interval=1))
    assert "error" not in d, d
    assert seen[1][1]["sum"]["bytes"] == 0 and seen[1][0] < 3.0
    assert sum(rec["sum"]["bytes"] for _, rec in seen) == d["bytes"]


def test_a_stalled_upload_shows_its_empty_intervals_as_they_pass() -> None:
    """-t 4 -i 1 upload, nothing leaving the endpoint from 1.3 s to 3.6 s: 2.00-3.00
    comes empty before the sends go on; the sender's total is every ntag by T."""
    rig, _ = rig_with_server()
    rig.endpoint.rate = 10e6  # bytes/s a stream: the link, not the fake's instant sends
    hold_sends(rig, 1.3, 3.6)
    d, seen = timed(rig, TimedSpec(direction="upload", seconds=4, interval=1))
    assert "error" not in d, d
    spans = [(rec["start"], rec["end"]) for _, rec in seen]
    assert spans == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert seen[2][1]["sum"]["bytes"] == 0 and seen[2][0] < 3.6
    assert sum(rec["sum"]["bytes"] for _, rec in seen) == d["streams"][0]["sender"]["bytes"]


def test_intervals_with_data_still_close_on_their_stamps() -> None:
    """No stall: each interval closes on the first stamp past its end (well within
    CLOCK_CLOSE_S), with the bytes of its own stamps, as before."""
    rig, _ = rig_with_server()
    d, seen = timed(rig, TimedSpec(direction="download", seconds=3, interval=1))
    assert "error" not in d, d
    assert [rec["sum"]["bytes"] > 0 for _, rec in seen] == [True] * 3
    assert sum(rec["sum"]["bytes"] for _, rec in seen) == d["bytes"]


def test_a_udp_intervals_datagram_total_matches_its_bytes() -> None:
    """-R -u, a datagram every 0.3 s, -i 1: each interval's Lost/Total counts the
    datagrams whose bytes it has (native 3.12: `1.95 KBytes ... 0/2`); the datagram that
    closed an interval was counted in its total and the next's bytes (ours: `1.95 KBytes
    ... 0/3`, then `0/2` for three datagrams' bytes; found by iperf26b)."""
    rig, _ = rig_with_server(udp_gap=0.3)
    d, seen = timed(rig, TimedSpec(direction="download", seconds=3, udp=True, bitrate=8e3,
                                   length=1000, interval=1))  # fmt: skip
    assert "error" not in d, d
    for _, rec in seen:
        st = rec["streams"][0]
        assert st["total"] - st["lost"] == st["bytes"] // 1000, rec


def test_a_stalled_bidir_shows_both_directions_empty_intervals_as_they_pass() -> None:
    """--bidir -t 5 -i 1, a server stopped from 1.2 s to 3.7 s: it sends nothing and
    the endpoint's sends leave nothing (its window full). 2.00-3.00 comes with 0 bytes
    on both roles before the data resumes, as native 3.12's timer prints it (until
    session 27 --bidir was left out of the clock: the lines came at 3.7 s and later);
    each role's intervals still add up to its total."""
    rig, server = rig_with_server()
    rig.endpoint.rate = 10e6  # bytes/s a stream: the link, not the fake's instant sends
    stall(rig, server, 1.2, 3.7)
    hold_sends(rig, 1.2, 3.7)
    d, seen = timed(rig, TimedSpec(direction="download", bidir=True, seconds=5, interval=1))
    assert "error" not in d, d
    spans = [(rec["start"], rec["end"]) for _, rec in seen]
    assert spans == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]
    at, empty = seen[2]
    assert empty["sum"]["bytes"] == 0 and empty["sum_reverse"]["bytes"] == 0, empty
    assert at < 3.7  # was: when the data came again
    assert at - (server.started - T0[0]) < 3 + CLOCK_CLOSE_S + 0.15
    assert seen[3][1]["sum_reverse"]["bytes"] > 0  # the server's data resumed in 3.00-4.00
    rx = sum(rec["sum_reverse"]["bytes"] for _, rec in seen)
    tx = sum(rec["sum"]["bytes"] for _, rec in seen)
    assert (tx, rx) == (d["sum"]["sender"]["bytes"], d["sum_reverse"]["receiver"]["bytes"]), d


def test_a_stalled_counted_bidir_too() -> None:
    """--bidir -n: the wait for the count closes both roles' empty intervals on the
    clock too (session 27)."""
    rig, server = rig_with_server()
    rig.endpoint.rate = 10e6
    stall(rig, server, 0.5, 3.0)
    hold_sends(rig, 0.5, 3.0)
    d, seen = timed(rig, TimedSpec(direction="download", bidir=True, nbytes=30 << 20,
                                   interval=1))  # fmt: skip
    assert "error" not in d, d
    at, empty = seen[1]
    assert (empty["start"], empty["sum"]["bytes"], empty["sum_reverse"]["bytes"]) == (1, 0, 0)
    assert at < 3.0, seen  # was: when the data came again
    rx = sum(rec["sum_reverse"]["bytes"] for _, rec in seen)
    tx = sum(rec["sum"]["bytes"] for _, rec in seen)
    assert (tx, rx) == (d["sum"]["sender"]["bytes"], d["sum_reverse"]["receiver"]["bytes"]), d
