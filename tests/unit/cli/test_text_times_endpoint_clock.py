"""The times a native tool prints from its host's clock, on the endpoint's (the vantage
point's) in ours: dig's `;; WHEN:` and +yaml's times, iperf3's -J `start.timestamp` and
--timestamps, curl's --trace-time (session 35, clock35). Each is the run's RunClock's
`now` (ours + the offset of its first TIME read); before, each was our clock's, 600 s off
with our clock 10 min behind the endpoint's."""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "controller"))

from ctl_fakes import BASE_NS, Rig

from packetlab.cli import curl_trace, run_dns, run_dns_words, run_http, run_throughput
from packetlab.cli.curl_trace import PLAIN, CurlTrace
from packetlab.cli.run_command import Command, Progress, begun, clock_reads, parse_args
from packetlab.cli.runclock import RunClock, now_of
from packetlab.measure.http_trace import TEXT

OURS_NS = 1_796_659_200 * 10**9  # Mon Dec  7 16:00:00 UTC 2026, our clock
AHEAD_NS = 600 * 10**9  # the endpoint's clock minus ours
ENDPOINT_S = (OURS_NS + AHEAD_NS) / 1e9  # 16:10:00 UTC, 17:10:00 CET


@pytest.fixture
def cet(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The local zone CET (a POSIX rule: no tz database needed), then back."""
    monkeypatch.setenv("TZ", "CET-1CEST,M3.5.0,M10.5.0/3")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def ahead() -> RunClock:
    """A run's clock whose first TIME read saw the endpoint 600 s ahead of our clock,
    which stands still at OURS_NS (a read answered at once: no error)."""
    clock = RunClock(now_ns=lambda: OURS_NS)
    clock.first = (OURS_NS, OURS_NS + AHEAD_NS, OURS_NS)
    return clock


def test_now_is_ours_plus_the_offset_once_read() -> None:
    ours = [OURS_NS]
    clock = RunClock(now_ns=lambda: ours[0])
    assert clock.offset_ns is None and clock.now() == OURS_NS / 1e9  # no read: ours
    clock.first = (OURS_NS, OURS_NS + AHEAD_NS + 500, OURS_NS + 1000)  # (t0, te, t1)
    assert clock.offset_ns == AHEAD_NS
    ours[0] += 2 * 10**9
    assert clock.now() == ENDPOINT_S + 2
    args = argparse.Namespace()
    assert abs(now_of(args) - time.time()) < 60  # outside a run: ours
    args._clock = clock
    assert now_of(args) == ENDPOINT_S + 2


def test_a_first_read_is_answered_before_the_experiment_and_made_once() -> None:
    # (the first line may carry a time: iperf3's `Connecting to host`, curl's `Trying`)
    rig = Rig(AHEAD_NS, start=1.0)
    progress = Progress()
    progress.clock = RunClock(now_ns=rig.session.clock_ns)
    seen: list[float] = []

    async def experiment(session: Any) -> None:
        seen.append(progress.clock.now())

    run = begun(experiment, progress, True, first=True, last=False)
    rig.run(Deferred.fromCoroutine(run(rig.session)))
    assert seen[0] == pytest.approx((BASE_NS + AHEAD_NS) / 1e9 + 1.0, abs=0.01)
    assert rig.endpoint.time_reads == 1  # no last read: no summary to bound


def test_digs_when_line_is_the_endpoints_time_in_digs_format(cet: None) -> None:
    args = _dig("@127.0.0.1", "-p", "53029", "a.test")
    args._clock = ahead()
    text = str(run_dns.COMMAND.row_for(args)(REPLY))  # type: ignore[misc]
    # dig 9.18's strftime: "%a %b %d %H:%M:%S %Z %Y" (was our clock's: 17:00:00)
    assert ";; WHEN: Mon Dec 07 17:10:00 CET 2026\n" in text


def test_digs_yaml_times_are_the_endpoints(cet: None) -> None:
    args = _dig("@127.0.0.1", "-p", "53029", "a.test", "+yaml")
    args._clock = ahead()
    text = str(run_dns.COMMAND.row_for(args)(REPLY))  # type: ignore[misc]
    # the reply's time, and the query's its round trip (312 µs) before it; UTC, as BIND's
    assert "    query_time: !!timestamp 2026-12-07T16:09:59.999Z\n" in text
    assert "    response_time: !!timestamp 2026-12-07T16:10:00.000Z\n" in text


@pytest.mark.parametrize(
    ("argv", "reads"),
    [
        ([], True),  # ;; WHEN:
        (["+yaml"], True),
        (["+short"], False),
        (["+short", "+yaml"], True),
        (["+nostats"], False),
        (["--compact"], False),
        (["--json"], False),  # (the summary's reads: begun's `last`)
    ],
)
def test_dns_reads_the_clock_when_its_text_prints_a_time(argv: list[str], reads: bool) -> None:
    assert run_dns.prints_times(_dig("a.test", *argv)) is reads


def test_iperf3_timestamps_and_json_start_are_the_endpoints(cet: None) -> None:
    args = parse_args(run_throughput.COMMAND, ["-c", "127.0.0.1", "--timestamps"])
    args._clock = ahead()
    line = run_throughput.renderer(args)(CONNECTED)
    assert line is not None and line.startswith("Mon Dec  7 17:10:00 2026 Connecting to host")
    args = parse_args(run_throughput.COMMAND, ["-c", "127.0.0.1", "-J"])
    args._clock = ahead()
    render = run_throughput.renderer(args)
    assert render(CONNECTED) is None
    doc = json.loads(render(RESULT) or "")
    assert doc["start"]["timestamp"] == {"time": "Mon, 07 Dec 2026 16:10:00 GMT",
                                         "timesecs": 1796659800}  # fmt: skip


@pytest.mark.parametrize(
    ("cmd", "argv", "reads"),
    [
        (run_throughput.COMMAND, ["-c", "h", "-J"], True),
        (run_throughput.COMMAND, ["-c", "h", "--timestamps=%T "], True),
        (run_throughput.COMMAND, ["-c", "h", "-T", "x"], False),
        (run_throughput.COMMAND, ["-c", "h", "--username", "u"], True),  # (each test's token)
        (run_http.COMMAND, ["--trace-time", "-v", "http://h/"], True),
        (run_http.COMMAND, ["--trace-time", "--trace-ascii", "t", "http://h/"], True),
        (run_http.COMMAND, ["--trace-time", "http://h/"], False),  # (curl: no trace drawn)
        (run_http.COMMAND, ["-v", "http://h/"], False),
    ],
)
def test_throughput_and_http_read_the_clock_for_their_times(
    cmd: Command, argv: list[str], reads: bool
) -> None:
    assert clock_reads(cmd, parse_args(cmd, argv))[0] is reads  # (review35: or clock_read)


def test_curls_trace_time_is_the_endpoints(cet: None) -> None:
    out = io.BytesIO()
    CurlTrace(PLAIN, out, stamp=True, now=lambda: ENDPOINT_S + 0.25)(TEXT, b"Trying\n")
    assert out.getvalue() == b"17:10:00.250000 * Trying\n"
    args = parse_args(run_http.COMMAND, ["--trace-time", "--trace-ascii", "-", "http://h/"])
    trace = curl_trace.tracer(args, out, None, print, False, now=ahead().now)
    assert trace is not None and trace.now() == ENDPOINT_S


def _dig(*argv: str) -> argparse.Namespace:
    """What `pktlab run dns ARGV` runs, dig's words read."""
    import packetlab.cli as cli

    args = cli.parse(["run", "dns", *argv])
    run_dns_words.dig_style(args)
    return args


REPLY = {
    "type": "dns", "qname": "a.test.", "qtype": "A", "server": "127.0.0.1", "port": 53029,
    "proto": "udp", "tries": 1, "rcode": "NOERROR", "rtt_us": 312.0, "truncated": False,
    "flags": ["QR", "AA", "RD"], "size": 167, "id": 44758, "opcode": "QUERY",
    "counts": [1, 1, 0, 0], "authority": [], "additional": [],
    "answers": [{"name": "a.test.", "type": "A", "ttl": 300, "data": "192.0.2.1"}],
}  # fmt: skip
CONNECTED = {
    "type": "connected", "server": "127.0.0.1", "port": 5201, "direction": "upload",
    "protocol": "tcp", "cookie": "s5uthllc6eut5d3ku7n4b7gqdamzghvhdkrp", "tcp_mss": 32768,
    "parallel": 1, "length": 131072, "omit": 0, "time": 1.0, "bytes_limit": None,
    "blocks": None, "bitrate": None,
    "streams": [{"id": 5, "local_host": "127.0.0.1", "local_port": 45150,
                 "remote_host": "127.0.0.1", "remote_port": 5201}],
}  # fmt: skip
SIDE = {"bytes": 1000, "seconds": 1.0, "mbit_s": 0.008}
RESULT = {
    "type": "throughput", "direction": "upload", "server": "127.0.0.1", "port": 5201,
    "protocol": "tcp", "parallel": 1, "time": 1.0, "bytes": 1000, "interval": 1.0,
    "length": 131072, "seconds": 1.0, "endpoint": "sender",
    "streams": [{"id": 5, "sender": {**SIDE, "retransmits": 0}, "receiver": dict(SIDE)}],
    "sum": {"sender": {**SIDE, "retransmits": 0}, "receiver": dict(SIDE)},
}  # fmt: skip


def test_each_iperf3_test_sends_its_own_token_on_the_endpoints_clock(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """--username: iperf3 stamps its token with its host's clock as it sends its
    parameters; the server refuses one 10 s off its own. Each test makes its own, on the
    endpoint's clock. Before: one token at the start, on our clock (a second run of -t
    12 and every run with our clock 600 s off: `test authorization failed`)."""
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    from packetlab.measure import throughput_timed

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = tmp_path / "k.pub"
    public.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))  # fmt: skip
    monkeypatch.setenv("IPERF3_PASSWORD", "s3cret")
    ours = [OURS_NS]
    progress = Progress()
    progress.clock = RunClock(now_ns=lambda: ours[0])
    progress.clock.first = (OURS_NS, OURS_NS + AHEAD_NS, OURS_NS)
    stamps: list[int] = []

    async def test(session: Any, host: str, port: int, *, spec: Any, **_: Any) -> Any:
        text = key.decrypt(base64.b64decode(spec.authtoken), padding.PKCS1v15()).decode()
        stamps.append(int(text.rsplit(" ", 1)[1]))
        ours[0] += 12 * 10**9  # (a test of -t 12)
        return throughput_timed.TimedResult(spec, host, port)

    monkeypatch.setattr(throughput_timed, "timed_test", test)
    args = parse_args(run_throughput.COMMAND, ["-c", "127.0.0.1", "-t", "12", "--runs", "2",
                                               "--username", "alice", "--rsa-public-key-path",
                                               str(public)])  # fmt: skip
    run = run_throughput.experiment(args, lambda r: None, progress)
    result = Deferred.fromCoroutine(run(object()))
    assert result.called  # (nothing waited for)
    assert stamps == [int(ENDPOINT_S), int(ENDPOINT_S) + 12]
