"""iperf3 3.12's --rcv-timeout, --snd-timeout, --bind-dev, --sctp and the closing lines'
spans (session 26, iperf26), against the scripted iperf3 server of
test_throughput_timed. Until session 26 --rcv-timeout, --snd-timeout, --bind-dev and
--sctp were unrecognized arguments, and a closing line ended at the test's span whatever
the side's own (a server stalled past T: `0.00-4.00 sec 588 MBytes 515 Mbits/sec`, the
rate over its 9.1 s)."""

from __future__ import annotations

import argparse
from typing import Any

import pytest
from test_throughput_timed import TimedIperf3, rig_with_server, run

from packetlab.measure.iperf3 import State
from packetlab.measure.throughput_timed import TimedSpec


def stall_at(rig: Any, server: TimedIperf3, when: float) -> None:
    """The server stops sending at `when` (a stopped process: its sockets stay open)."""
    rig.clock.callLater(when, setattr, server, "_send", lambda i: None)
    rig.clock.callLater(when, setattr, server, "_datagram", lambda i, count: None)


def test_an_idle_download_fails_with_iperf3s_words() -> None:
    """-R -t 5 --rcv-timeout 1000, the server silent from 1.2 s: the test fails about a
    second later (not at 5 s, nor after --max-time), `idle timeout for receiving data`
    as native's, after the intervals that passed (1.00-2.00 with what came in it)."""
    rig, server = rig_with_server()
    stall_at(rig, server, 1.2)
    start = rig.clock.seconds()
    d, intervals = run(rig, TimedSpec(direction="download", seconds=5, interval=1,
                                     rcv_timeout=1.0))  # fmt: skip
    assert d["iperf3_error"] == "idle timeout for receiving data", d
    assert "--rcv-timeout 1000 ms" in d["error"], d
    assert rig.clock.seconds() - start < 3
    assert server.end_time == 0  # TEST_END never sent: the test failed while running
    assert [(i["start"], i["end"]) for i in intervals] == [(0, 1), (1, 2)]
    assert intervals[1]["streams"][0]["bytes"] > 0


def test_idle_counted_download_and_udp_fail_too() -> None:
    """-R -n (no time to wait for: the count's wait is watched) and -R -u -t."""
    rig, server = rig_with_server()
    stall_at(rig, server, 0.3)
    d, _ = run(rig, TimedSpec(direction="download", nbytes=100 << 20, interval=0,
                              rcv_timeout=0.5))  # fmt: skip
    assert d["iperf3_error"] == "idle timeout for receiving data", d
    rig, server = rig_with_server()
    stall_at(rig, server, 0.3)
    d, _ = run(rig, TimedSpec(direction="download", seconds=3, udp=True, bitrate=8e6,
                              length=1000, interval=0, rcv_timeout=0.5))  # fmt: skip
    assert d["iperf3_error"] == "idle timeout for receiving data", d


def test_a_busy_download_is_not_idle() -> None:
    """Data all along: --rcv-timeout 100 does not fire, the test runs to its end."""
    rig, _ = rig_with_server()
    d, _ = run(rig, TimedSpec(direction="download", seconds=1, interval=0, rcv_timeout=0.1))
    assert "error" not in d, d
    assert d["streams"][0]["receiver"]["bytes"] > 0


def test_rcv_timeout_bounds_and_mode_as_iperf3() -> None:
    with pytest.raises(ValueError, match="receive timeout value is incorrect or not in range"):
        TimedSpec(rcv_timeout=0.099).check()
    with pytest.raises(ValueError, match="valid only in receiving mode"):
        TimedSpec(direction="upload", rcv_timeout=1.0).check()
    TimedSpec(direction="upload", bidir=True, rcv_timeout=1.0).check()  # --bidir receives


def _parser() -> argparse.ArgumentParser:
    from packetlab.cli import run_throughput

    p = argparse.ArgumentParser(exit_on_error=False)
    run_throughput.configure(p)
    return p


def test_rcv_timeout_on_the_command_line() -> None:
    from packetlab.cli import run_throughput

    p = _parser()
    args = p.parse_args(["-c", "192.0.2.5", "--rcv-timeout", "1000"])
    assert args.rcv_timeout == 1000 and run_throughput.timed(args)
    for bad in ("99", "86400001", "1.5K", "abc"):  # native: this line for each
        with pytest.raises(argparse.ArgumentError, match="receive timeout value is incorrect"):
            p.parse_args(["-c", "192.0.2.5", "--rcv-timeout", bad])


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["--snd-timeout", "5000"], "--snd-timeout 5000: not supported: iperf3 sets "
         "TCP_USER_TIMEOUT on its sockets"),
        (["--bind-dev", "eth0"], "--bind-dev eth0: not supported: iperf3 sets "
         "SO_BINDTODEVICE on its sockets"),
        (["--sctp"], "--sctp: not supported: PacketLab's nopen opens TCP and UDP sockets "
         "only"),
    ],
    ids=["snd-timeout", "bind-dev", "sctp"],
)  # fmt: skip
def test_socket_options_of_3_12_refused_in_one_line(argv: list[str], line: str) -> None:
    """Were argparse's `unrecognized arguments` (with a `did you mean --bind?`)."""
    from packetlab.cli import run_throughput
    from packetlab.cli.run import RunError

    args = _parser().parse_args(["-c", "192.0.2.5", "-t", "1", *argv])
    with pytest.raises(RunError) as e:
        run_throughput.experiment(args, lambda r: None, None)  # type: ignore[arg-type]
    assert str(e.value).startswith(line) and "\n" not in str(e.value)


def test_closing_lines_end_at_each_sides_own_span() -> None:
    """iperf3 3.12 ends each closing line at its side's time (sender_time, receiver_time:
    the server's `end_time` for its side): a -R test whose server stalled and answered
    TEST_END late shows `0.00-9.52 sec` on the sender line and the rate over it, as
    native printed (`0.00-9.52 sec 1.62 GBytes 1.46 Gbits/sec 13 sender` beside
    `0.00-4.00 ... receiver`); was 0.00-4.00 on both with the sender's rate over 9.52."""
    from packetlab.cli.run_throughput_rows import timed_rows

    rig, _ = rig_with_server()
    d, _ = run(rig, TimedSpec(direction="download", seconds=4, interval=0))
    assert "error" not in d, d
    sender = d["streams"][0]["sender"]
    sender.update(bytes=1_740_000_000, seconds=9.52)
    lines = timed_rows(d).splitlines()
    line = next(x for x in lines if x.endswith("sender"))
    assert line.startswith("[  5]   0.00-9.52   sec  1.62 GBytes  1.46 Gbits/sec"), line
    line = next(x for x in lines if x.endswith("receiver"))
    assert line.startswith("[  5]   0.00-4.00   sec"), line


def test_server_output_prefixed_once_as_iperf3() -> None:
    """-T and --timestamps with --get-server-output: iperf3 3.12 prints the server's report
    with one printf and prefixes once per printf, so the empty line before `Server
    output:` has the prefix and the report's lines do not (native `-T ttl
    --timestamps=%H: --get-server-output`, below); ours had every line prefixed."""
    from packetlab.cli import run_throughput
    from packetlab.cli.run_command import parse_args

    args = parse_args(run_throughput.COMMAND, ["-c", "127.0.0.1", "-t", "1", "-T", "ttl",
                                               "--get-server-output"])  # fmt: skip
    rig, _ = rig_with_server()
    d, _ = run(rig, TimedSpec(direction="download", seconds=1, interval=0))
    d["server_output_text"] = "-----\nServer listening on 5201 (test #60)\n[  5] sender\n"
    got = run_throughput.renderer(args)(d).split("\n")
    at = got.index("Server output:")
    assert got[at - 2].startswith("ttl:  [  5]") and got[at - 2].endswith("receiver")
    assert got[at - 1 :] == [
        "ttl:  ", "Server output:", "-----", "Server listening on 5201 (test #60)",
        "[  5] sender", "", "ttl:  # receiver: the endpoint's stamps; sender: the iperf3 "
        "server's",
    ]  # fmt: skip


def killed_at(rig: Any, server: TimedIperf3, when: float) -> None:
    """The server dies at `when`: its control connection closes, its streams stop."""

    def gone() -> None:
        server.ended = rig.clock.seconds()
        server.ctl.close()

    rig.clock.callLater(when, gone)


@pytest.mark.parametrize(
    "spec",
    [
        TimedSpec(direction="upload", seconds=5, udp=True, bitrate=1e6, length=1000,
                  interval=0),
        TimedSpec(direction="download", seconds=5, interval=0),
        TimedSpec(direction="download", seconds=5, udp=True, bitrate=1e6, length=1000,
                  interval=0),
        TimedSpec(direction="download", nbytes=200 << 20, interval=0),
        TimedSpec(bidir=True, seconds=5, bitrate=1e6, length=1000, interval=0),
    ],
    ids=["udp-upload", "download", "udp-download", "download-n", "bidir"],
)  # fmt: skip
def test_a_server_gone_mid_test_fails_it_at_once(spec: TimedSpec) -> None:
    """The control connection closes 1 s into a 5 s test: the test fails then, with
    iperf3's `control socket has closed unexpectedly`, as native 3.12's client (it
    selects on it); a UDP upload sent on until T before (its sends do not fail) and a
    -R test waited for T."""
    rig, server = rig_with_server()
    killed_at(rig, server, 1.0)
    start = rig.clock.seconds()
    d, _ = run(rig, spec)
    assert d.get("iperf3_error") == "control socket has closed unexpectedly", d
    assert "closed the control connection during the test" in d["error"], d
    assert rig.clock.seconds() - start < 2


def test_server_terminate_mid_test_fails_it_at_once() -> None:
    """A server stopped with SIGTERM sends SERVER_TERMINATE: `the server has terminated`
    at once (was: at T)."""
    rig, server = rig_with_server()
    rig.clock.callLater(1.0, server.state, State.SERVER_TERMINATE)
    start = rig.clock.seconds()
    d, _ = run(rig, TimedSpec(direction="upload", seconds=5, udp=True, bitrate=1e6,
                              length=1000, interval=0))  # fmt: skip
    assert d.get("iperf3_error") == "the server has terminated", d
    assert rig.clock.seconds() - start < 2


def test_the_servers_answer_to_test_end_is_no_alarm() -> None:
    """EXCHANGE_RESULTS after TEST_END, and the close after IPERF_DONE: the test ends
    well (the watch stops once TEST_END is queued or sent)."""
    for spec in (TimedSpec(direction="upload", seconds=1, udp=True, bitrate=1e6,
                           length=1000, interval=0),
                 TimedSpec(direction="download", nbytes=1 << 20, interval=0)):  # fmt: skip
        rig, _ = rig_with_server()
        d, _ = run(rig, spec)
        assert "error" not in d, d


def test_idle_is_confirmed_after_the_notifications_are_read() -> None:
    """A controller busy for longer than --rcv-timeout runs its timers before the
    notifications it has not read (Twisted's reactor: timers first): idle seen once is
    checked again after them, so data that came meanwhile is no idle server."""
    from types import SimpleNamespace

    from twisted.internet.task import Clock

    from packetlab.measure.iperf3 import Iperf3Error
    from packetlab.measure.throughput_receive import Receiving

    clock = Clock()
    clock.advance(10.0)
    r = Receiving.__new__(Receiving)
    r.spec = TimedSpec(direction="download", seconds=5, rcv_timeout=0.5)
    r.session = SimpleNamespace(reactor=clock)  # type: ignore[assignment]
    r.t0, r.idle_from, r.heard, r.idle_seen, r.intervals = 1, 9.0, 9.2, False, None
    r._check_idle()  # 0.8 s since the last data: seen, not yet an error
    r.heard = 10.0  # the notifications the busy controller had not read, read now
    r._check_idle()
    clock.advance(1.0)
    r._check_idle()
    with pytest.raises(Iperf3Error, match=r"no data from the server for 1\.0 s"):
        r._check_idle()  # still nothing after the reading: the server is idle
