"""Helpers over a scripted endpoint: clock estimation, system/socket info, TCP and UDP
exchanges, scheduled trains."""

from __future__ import annotations

import gc
import ipaddress
import itertools
import struct
from typing import Any

import pytest
from ctl_fakes import BASE_NS, FakeEndpoint, Rig, SchedulingEndpoint, result_of
from testkit.logs import captured_events
from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock

from packetlab.controller import (
    ClockSample,
    ConnectFailed,
    StopSignal,
    estimate_clock,
    read_socket_info,
    read_system_info,
    read_time,
    send_train,
    set_notifmask,
    tcp_exchange,
    udp_exchange,
    wait_connected,
)
from packetlab.controller.clock import estimate_from
from packetlab.wire import (
    Mwrite,
    Nclose,
    Nopen,
    NotifMask,
    Nsend,
    Nstat,
    NstatCode,
    Ntag,
    Proto,
    SocketState,
    TransSup,
    vmem,
)


def test_estimate_picks_the_min_rtt_sample() -> None:
    samples = [
        ClockSample(sent=0, endpoint=1_000_500, received=1_000),  # rtt 1000, offset 1_000_000
        ClockSample(sent=2_000, endpoint=1_002_300, received=2_200),  # rtt 200, offset 1_000_200
        ClockSample(sent=5_000, endpoint=1_009_000, received=9_000),  # rtt 4000
    ]
    est = estimate_from(samples)
    assert (est.offset, est.rtt, est.error) == (1_000_200, 200, 100)
    assert est.to_local(est.to_endpoint(123)) == 123
    with pytest.raises(ValueError):
        estimate_from([])


def test_estimate_clock_against_an_offset_endpoint() -> None:
    rig = Rig(offset_ns=-3_000_000)  # endpoint 3 ms behind
    rig.run(rig.session.ready)
    est = rig.run(estimate_clock(rig.session, samples=5))
    assert rig.endpoint.time_reads == 5
    assert len(est.samples) == 5
    assert abs(est.offset + 3_000_000) <= est.error
    t = rig.run(read_time(rig.session))
    assert t == BASE_NS - 3_000_000 + int(rig.clock.seconds() * 1e9)


def test_read_system_info_parses_the_block() -> None:
    rig = Rig()
    mem = rig.endpoint.memory
    mem.extend(bytes(vmem.SYS_SPAN))

    def put(region: vmem.Region, data: bytes, at: int = 0) -> None:
        off = region.addr - vmem.SYS_BASE + at
        mem[off : off + len(data)] = data

    put(vmem.IP4NO, b"\x02")
    put(vmem.IP6NO, b"\x01")
    put(vmem.TRANSSUP, struct.pack(">I", 0b110))
    put(vmem.IP4LS, bytes([127, 0, 0, 1, 255, 0, 0, 0, 10, 1, 2, 3, 255, 255, 255, 0]))
    put(vmem.IP6LS, ipaddress.ip_address("::1").packed)
    put(vmem.BUFMAX, struct.pack(">II", 8 << 20, 1234))
    put(vmem.IP4DNSNO, b"\x01\x00")
    put(vmem.IP4DNSLS, bytes([9, 9, 9, 9]))
    put(vmem.HOSTID, b"probe-7\0junk")
    info = rig.run(read_system_info(rig.session))
    assert [str(i) for i in info.ip4] == ["127.0.0.1/8", "10.1.2.3/24"]
    assert info.ip6 == (ipaddress.ip_address("::1"),)
    assert info.dns4 == (ipaddress.ip_address("9.9.9.9"),) and info.dns6 == ()
    assert info.transsup == TransSup.TCP | TransSup.UDP
    assert (info.bufmax, info.bufused, info.hostid) == (8 << 20, 1234, "probe-7")
    assert [str(a) for a in info.addresses] == ["127.0.0.1", "10.1.2.3", "::1"]


def test_socket_info_and_notifmask() -> None:
    rig = Rig()
    rig.run(rig.session.nopen_udp(3))
    info = rig.run(read_socket_info(rig.session, 3))
    assert (info.sktid, info.family, info.proto, info.state) == (3, 4, 17, SocketState.OPEN)
    free = rig.run(read_socket_info(rig.session, 4))
    assert free.state == SocketState.FREE and free.laddr is None
    rig.run(set_notifmask(rig.session, 3, NotifMask.NDATA | NotifMask.NTAG))
    assert rig.endpoint.received[-1] == Mwrite(vmem.skt_addr(3, vmem.SKT_NOTIFMASK), b"\x00\x0a")


def test_tcp_exchange_reads_until_peer_close() -> None:
    rig = Rig()
    rig.endpoint.tcp_servers[("127.0.0.1", 80)] = lambda req: [b"HTTP/1.0 200 OK\r\n", b"\r\nhi"]
    got = rig.run(tcp_exchange(rig.session, "127.0.0.1", 80, b"GET / HTTP/1.0\r\n\r\n"))
    assert got.data == b"HTTP/1.0 200 OK\r\n\r\nhi"
    assert got.end == "peer closed" and got.chunks == 2
    assert got.sent_at is not None and got.first_data_at is not None
    assert got.started_at <= got.established_at <= got.sent_at <= got.first_data_at
    # pipelined TIME read before the nopen; the socket is closed at the end
    assert rig.endpoint.requests()[1:3] == ["mread", "nopen"]
    assert rig.endpoint.requests()[-1] == "nclose" and not rig.endpoint.sockets


@pytest.mark.parametrize("delay", [0.0, 0.003, 0.12])
def test_tcp_exchange_with_a_connect_that_takes_time(delay: float) -> None:
    """The ESTABLISHED nstat arriving while wait_connected sleeps or polls STAT."""
    rig = Rig()
    rig.endpoint.connect_delay = delay
    rig.endpoint.tcp_servers[("127.0.0.1", 80)] = lambda req: [b"ok"]
    got = rig.run(tcp_exchange(rig.session, "127.0.0.1", 80, b"x"))
    assert got.data == b"ok" and got.connect_ns >= int(delay * 1e9) - 1


def test_connect_reset_by_nstat_while_waiting() -> None:
    rig = Rig()
    rig.endpoint.connect_delay = 0.02
    rig.endpoint.tcp_reset.add(("127.0.0.1", 80))
    with pytest.raises(ConnectFailed, match="RESET"):
        rig.run(tcp_exchange(rig.session, "127.0.0.1", 80, b"x"))


def test_tcp_exchange_limit() -> None:
    rig = Rig()
    rig.endpoint.tcp_servers[("127.0.0.1", 80)] = lambda req: [b"a" * 10, b"b" * 10]
    got = rig.run(tcp_exchange(rig.session, "127.0.0.1", 80, b"x", limit=15))
    assert got.data == b"a" * 10 + b"b" * 5 and got.end == "limit"


def test_refused_connect_is_found_by_polling_stat() -> None:
    rig = Rig()
    with pytest.raises(ConnectFailed, match="REFUSED"):
        rig.run(tcp_exchange(rig.session, "127.0.0.1", 81, b"x"))
    assert "mread" in rig.endpoint.requests()[3:]  # STAT polled
    assert not rig.endpoint.sockets  # closed anyway


def test_wait_connected_times_out() -> None:
    rig = Rig()
    rig.endpoint.tcp_silent.add(("127.0.0.1", 80))
    rig.run(rig.session.nopen_tcp_connect(1, "127.0.0.1", 80))
    with pytest.raises(ConnectFailed, match=r"not established within 0\.2 s"):
        rig.run(wait_connected(rig.session, 1, timeout=0.2, poll=0.05))
    assert 3 <= rig.endpoint.requests().count("mread") <= 5


def test_udp_exchange_collects_replies_with_times() -> None:
    rig = Rig()
    rig.endpoint.udp_servers[("127.0.0.1", 53)] = lambda q: [b"re:" + q]
    got = rig.run(udp_exchange(rig.session, "127.0.0.1", 53, [b"q1", b"q2"]))
    assert [r.data for r in got.replies] == [b"re:q1", b"re:q2"]
    assert all(str(r.addr) == "127.0.0.1" and r.port == 53 for r in got.replies)
    assert [s.size for s in got.sent] == [2, 2] and all(s.time for s in got.sent)
    assert got.end == "expected replies"
    assert len(got.rtts()) == 2


def test_udp_exchange_timeout_without_replies() -> None:
    rig = Rig()
    got = rig.run(udp_exchange(rig.session, "127.0.0.1", 9, b"void", timeout=0.5))
    assert got.replies == [] and got.end == "timeout"
    assert got.sent[0].time is not None
    assert rig.clock.seconds() >= 0.5


def unhandled_errors(run: Any) -> list[str]:
    """The failures logged (as "Unhandled error in Deferred") while `run()` and a
    collection ran."""
    # the events with a failure (Twisted logs the words, then the failure alone)
    with captured_events(has="log_failure") as failed:
        run()
        gc.collect()
    return [e["log_failure"].getErrorMessage() for e in failed]


def test_udp_exchange_of_a_str_is_one_type_error_and_sends_nothing() -> None:
    # session 30 (eyes30): udp_exchange(s, h, p, "hello") sent one nsend per character,
    # raised the first's TypeError and logged four "Unhandled error in Deferred" tracebacks
    requests: list[str] = []

    def run() -> None:  # the rig is dropped with it: an unhandled failure is logged then
        rig = Rig()
        with pytest.raises(TypeError, match=r"payloads must be bytes, got str \(encode it"):
            rig.run(udp_exchange(rig.session, "127.0.0.1", 9, "hello"))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"udp_exchange payloads\[1\] must be bytes, got str"):
            rig.run(udp_exchange(rig.session, "127.0.0.1", 9, [b"ok", "no"]))  # type: ignore[list-item]
        requests.extend(rig.endpoint.requests())

    assert unhandled_errors(run) == []
    assert "nsend" not in requests and "nopen" not in requests


def test_send_train_reports_intended_and_sent_times() -> None:
    rig = Rig()
    report = rig.run(send_train(rig.session, "127.0.0.1", 9000, 10, 1_000_000))
    nsends = [m for m in rig.endpoint.received if getattr(m, "NAME", "") == "nsend"]
    assert len(nsends) == 10
    assert [m.time for m in nsends] == report.intended
    assert struct.unpack(">I", nsends[3].data[:4])[0] == 3 and len(nsends[3].data) == 64
    assert report.intended[1] - report.intended[0] == 1_000_000
    assert report.sent_count == 10 and report.offsets() == [0] * 10
    assert report.gaps() == [1_000_000] * 9
    summary = report.summary()
    assert summary["abs_gap_error"] == {"min": 0, "p50": 0, "p90": 0, "p99": 0, "max": 0}


def test_send_train_records_refused_sends() -> None:
    rig = Rig()
    real = rig.endpoint.nsend
    count = [0]

    def flaky(msg):  # type: ignore[no-untyped-def]
        count[0] += 1
        if count[0] == 2:
            rig.endpoint.result(0x30)  # ESYSNOBUFS
            return
        real(msg)

    rig.endpoint.nsend = flaky  # type: ignore[method-assign]
    report = rig.run(send_train(rig.session, "127.0.0.1", 9000, 3, 1000, start=BASE_NS + 10**9))
    assert report.errors == [None, "ESYSNOBUFS", None]
    assert report.sent[1] is None and report.sent_count == 2
    assert report.intended[0] == BASE_NS + 10**9
    assert result_of(rig.session.when_closed()) is None if rig.session.close_reason else True


def test_send_train_bounds_the_packets_waiting_for_their_ntag(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ntag tags are 16 bits: a train longer than that (100,000 packets) must not have them
    all waiting at once. The fake endpoint sends each ntag at the packet's time, like a
    real one."""
    from packetlab.controller import train

    monkeypatch.setattr(train, "MAX_PENDING", 16)
    rig = Rig()
    ep = rig.endpoint

    def scheduled(msg):  # type: ignore[no-untyped-def]
        ep.result()
        when = max(msg.time, ep.now())
        ep.clock.callLater((when - ep.now()) / 1e9, ep.send, Ntag(msg.sktid, msg.tag, when))

    ep.nsend = scheduled  # type: ignore[method-assign]
    most = [0]
    track = rig.session._track_tag

    def counting(sktid, tag=None):  # type: ignore[no-untyped-def]
        got = track(sktid, tag)
        most[0] = max(most[0], len(rig.session._tags))
        return got

    rig.session._track_tag = counting  # type: ignore[method-assign]
    report = rig.run(send_train(rig.session, "127.0.0.1", 9000, 200, 10_000_000))
    assert report.sent_count == 200 and report.errors == [None] * 200
    assert report.offsets() == [0] * 200
    assert 8 <= most[0] <= 16


def test_a_packet_whose_ntag_never_came_says_no_ntag() -> None:
    """The close after the train errs the ntags still awaited (SocketClosed): that is not
    news, the report keeps "no ntag" (it said "socket 0 was closed before its ntag 1")."""
    rig = Rig()
    ep = rig.endpoint
    ep.nsend = lambda msg: ep.result()  # type: ignore[method-assign]
    report = rig.run(send_train(rig.session, "127.0.0.1", 9000, 3, 1000, ntag_timeout=0.1))
    assert report.errors == ["no ntag"] * 3 and not report.stopped


def test_a_stopped_train_ends_early_with_what_was_sent() -> None:
    """A stop half-way through a 100-packet, 1 s train: no wait for the rest of it; the
    packets sent keep their times, the later ones say "stopped" (the close dropped them
    at the endpoint), and the report says it was stopped."""
    rig = Rig(endpoint=SchedulingEndpoint)
    ep = rig.endpoint
    assert isinstance(ep, SchedulingEndpoint)
    stop = StopSignal()
    start = BASE_NS + 100_000_000  # 0.1 s from now; packet i at 0.1 + i/100 s
    d = send_train(rig.session, "127.0.0.1", 9000, 100, 10_000_000, start=start, stop=stop)
    rig.clock.callLater(0.405, stop.request)  # between packets 30 and 31
    report = rig.run(d)
    assert rig.clock.seconds() < 0.5  # not 1.1 s: the rest of the train was not awaited
    assert report.stopped
    assert ep.sent == list(range(31))  # the close dropped the others at the endpoint
    assert report.sent_count == 31 and report.offsets() == [0] * 31
    assert report.errors == [None] * 31 + ["stopped"] * 69
    assert ep.requests()[-1] == "nclose"


def test_a_cancelled_train_fires_at_once_with_what_was_sent() -> None:
    """`pktlab run sendgap` cancels the train in flight when its Ctrl-C grace (1 s) runs
    out: send_train failed with CancelledError, and the run said "0 trains" though 31
    datagrams had gone out. Now the cancel fires the train's Deferred at once (no wait
    for the close's answer) with the report so far, stopped and cancelled."""
    rig = Rig(endpoint=SchedulingEndpoint)
    ep = rig.endpoint
    assert isinstance(ep, SchedulingEndpoint)
    start = BASE_NS + 100_000_000  # 0.1 s from now; packet i at 0.1 + i/100 s
    d = send_train(rig.session, "127.0.0.1", 9000, 100, 10_000_000, start=start)
    while rig.clock.seconds() < 0.405:  # packets 0..30 go out
        rig.pump.flush()
        rig.clock.advance(0.001)
    assert not d.called
    d.cancel()
    assert d.called  # synchronously: the caller's own deadline is up
    report = result_of(d)
    assert report.stopped and report.cancelled
    assert report.sent_count == 31 and report.offsets() == [0] * 31
    assert report.errors == [None] * 31 + ["stopped"] * 69
    rig.pump.flush()
    assert ep.requests()[-1] == "nclose"  # closed (not waited for): the rest dropped
    rig.clock.advance(2.0)
    rig.pump.flush()
    assert ep.sent == list(range(31))
    assert report.sent_count == 31  # later ntags or closes do not change the report


def test_a_train_cancelled_before_its_first_nsend_fails_as_before() -> None:
    rig = Rig(endpoint=SchedulingEndpoint)
    d = send_train(rig.session, "127.0.0.1", 9000, 10, 1_000_000)
    d.cancel()  # still reading the endpoint's clock: nothing sent, nothing to report
    with pytest.raises(CancelledError):
        result_of(d)


class _SlowCloseEndpoint(SchedulingEndpoint):
    """Takes an nclose 25 ms after it came: the packets due meanwhile still go out."""

    def handle(self, msg: Any) -> None:
        if isinstance(msg, Nclose):
            self.clock.callLater(0.025, super().handle, msg)
            return
        super().handle(msg)


def test_a_stopped_train_counts_the_packets_that_left_before_the_close() -> None:
    # session 30 (eyes30): udp_train.py stopped by Ctrl-C said "sent 2066 ... 2934 not
    # sent" while its sink had 2072: the ntags of packets that left after the stop's wait,
    # before the endpoint took the nclose, came after the report was written
    rig = Rig(endpoint=_SlowCloseEndpoint)
    ep = rig.endpoint
    assert isinstance(ep, _SlowCloseEndpoint)
    stop = StopSignal()
    start = BASE_NS + 100_000_000
    d = send_train(rig.session, "127.0.0.1", 9000, 100, 10_000_000, start=start, stop=stop)
    rig.clock.callLater(0.405, stop.request)
    report = rig.run(d)
    assert report.stopped and 31 < len(ep.sent) < 100
    assert report.sent_count == len(ep.sent) and report.offsets() == [0] * len(ep.sent)
    assert report.errors == [None] * len(ep.sent) + ["stopped"] * (100 - len(ep.sent))


def test_a_stop_while_the_train_is_queued_queues_no_more(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A train waiting for room among the tags (MAX_PENDING) stops queuing at once."""
    from packetlab.controller import train

    monkeypatch.setattr(train, "MAX_PENDING", 16)
    rig = Rig(endpoint=SchedulingEndpoint)
    ep = rig.endpoint
    stop = StopSignal()
    start = BASE_NS + 100_000_000
    d = send_train(rig.session, "127.0.0.1", 9000, 1000, 10_000_000, start=start, stop=stop)
    rig.clock.callLater(0.05, stop.request)  # before the first packet is due
    report = rig.run(d)
    assert rig.clock.seconds() < 0.1
    nsends = [m for m in ep.received if isinstance(m, Nsend)]
    assert len(nsends) == 16  # then it waited for room, and stopped
    assert report.stopped and report.sent_count == 0
    assert report.errors == ["stopped"] * 1000
    assert not stop._waiters  # nothing left watching the signal


def test_an_unstopped_train_with_a_stop_signal_is_a_whole_train() -> None:
    rig = Rig(endpoint=SchedulingEndpoint)
    stop = StopSignal()
    report = rig.run(send_train(rig.session, "127.0.0.1", 9000, 20, 1_000_000, stop=stop))
    assert not report.stopped and report.sent_count == 20
    assert stop.watched and not stop._waiters
    stop.request()  # (too late: the train is over, not stopped early)
    again = rig.run(send_train(rig.session, "127.0.0.1", 9000, 20, 1_000_000, stop=stop))
    assert again.stopped and again.errors == ["stopped"] * 20  # already requested: none sent


class _NstatThenStat(FakeEndpoint):
    """Our endpoint's way of failing a connect: an nstat code (RESET for a refusal,
    UNKNOWN for EHOSTUNREACH) and the socket's STAT set to what really happened."""

    def __init__(self, clock: Clock, code: int, stat: SocketState) -> None:
        super().__init__(clock)
        self.code, self.stat = code, stat

    def nopen(self, msg: Nopen) -> None:
        super().nopen(msg)
        if msg.proto == Proto.TCP and msg.raddr is not None:
            self.sockets[msg.sktid]["state"] = self.stat
            nstat = Nstat(msg.sktid, msg.family, msg.proto, 0, self.code)
            self.clock.callLater(0.0, self.late_nstat, nstat)


@pytest.mark.parametrize(
    "code, stat, words",
    [
        (NstatCode.UNKNOWN, SocketState.UNREACH, "UNREACH (host or network unreachable"),
        (NstatCode.RESET, SocketState.REFUSED, "REFUSED (connection refused"),
    ],
)
def test_a_connect_failure_is_named_by_stat_with_its_peer_and_meaning(
    code: int, stat: SocketState, words: str
) -> None:
    # Was "TCP connect on socket 0 failed: UNKNOWN" for a host that does not answer ARP,
    # and "... failed: RESET" for a closed port: no peer, no meaning, UNKNOWN and RESET
    # where the socket's STAT says UNREACH and REFUSED.
    rig = Rig(endpoint=lambda clock: _NstatThenStat(clock, code, stat))
    with pytest.raises(ConnectFailed) as e:
        rig.run(tcp_exchange(rig.session, "192.0.2.80", 80, b"x"))
    assert e.value.state == stat.name and e.value.to == "192.0.2.80:80"
    assert str(e.value).startswith(f"TCP connect on socket 0 to 192.0.2.80:80 failed: {words}")
    with pytest.raises(ConnectFailed, match=rf"to \[2001:db8::1\]:443 failed: {stat.name} "):
        rig.run(tcp_exchange(rig.session, "2001:db8::1", 443, b"x"))


def test_send_train_takes_a_gap_written_as_a_float() -> None:
    # send_train(..., 3, 1e6) (Python writes a million as a float) failed with
    # "EncodeError: Nsend: required argument is not an integer".
    rig = Rig()
    r = rig.run(send_train(rig.session, "127.0.0.1", 9, 3, 1e6, lead=2e7))
    assert r.gap == 1_000_000 and all(type(t) is int for t in r.intended)
    assert [b - a for a, b in itertools.pairwise(r.intended)] == [1_000_000] * 2
    with pytest.raises(TypeError, match="start must be an int of ns since the epoch"):
        rig.run(send_train(rig.session, "127.0.0.1", 9, 3, 1000, start=1.7e18))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="gap must be a number of ns"):
        rig.run(send_train(rig.session, "127.0.0.1", 9, 3, "1ms"))  # type: ignore[arg-type]


def test_a_gap_in_the_wrong_unit_that_rounds_to_no_gap_says_the_unit() -> None:
    # session 30 (eyes30): send_train(s, h, p, 50, 0.001) (a ms written in seconds) sent
    # its 50 packets at once, a report with gap=0 and no word
    rig = Rig()
    with pytest.raises(ValueError, match=r"gap is in ns: 0\.001 ns rounds to 0 \(1 ms is 1e6"):
        rig.run(send_train(rig.session, "127.0.0.1", 9, 3, 0.001))
    with pytest.raises(ValueError, match=r"lead is in ns: 0\.02 ns rounds to 0"):
        rig.run(send_train(rig.session, "127.0.0.1", 9, 3, 1e6, lead=0.02))
    assert "nsend" not in rig.endpoint.requests()
    assert rig.run(send_train(rig.session, "127.0.0.1", 9, 2, 0.0, lead=0.0)).gap == 0


def test_wait_connected_on_a_udp_socket_says_it_is_for_tcp() -> None:
    # Was "TCP connect on socket 0 failed: not established within 5 s", 5 s later.
    rig = Rig()
    rig.run(rig.session.nopen_udp(0))
    with pytest.raises(ValueError, match="wait_connected is for TCP connects; socket 0 is UDP"):
        rig.run(wait_connected(rig.session, 0, timeout=0.2))


def test_exchanges_cut_by_the_sessions_end_say_so() -> None:
    # session 20 (api20): a session closed mid-exchange ended a tcp_exchange as "socket
    # closed" and a udp_exchange as "timeout" (long before its timeout)
    rig = Rig()
    rig.endpoint.tcp_servers[("127.0.0.1", 80)] = lambda req: []
    rig.clock.callLater(0.5, rig.session.close)
    got = rig.run(tcp_exchange(rig.session, "127.0.0.1", 80, timeout=5))
    assert got.end == "session closed" and rig.clock.seconds() < 1
    assert rig.session.ended
    rig = Rig()
    rig.clock.callLater(0.5, rig.session.close)
    udp = rig.run(udp_exchange(rig.session, "127.0.0.1", 9, b"void", timeout=5))
    assert udp.end == "session closed" and rig.clock.seconds() < 1


def test_a_train_cut_by_the_sessions_end_gives_one_short_reason() -> None:
    rig = Rig()
    start = BASE_NS + 10**10  # long after the close: no packet goes out
    rig.clock.callLater(0.5, rig.session.close)
    real = rig.endpoint.nsend
    rig.endpoint.nsend = lambda msg: rig.endpoint.result()  # type: ignore[method-assign]
    report = rig.run(send_train(rig.session, "127.0.0.1", 9000, 5, 1000, start=start))
    rig.endpoint.nsend = real  # type: ignore[method-assign]
    assert report.errors == ["session closed"] * 5
