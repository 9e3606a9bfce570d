"""The last interval as iperf3 3.12's client shows it (session 17, iperf17b): printed
after the results exchange, so over a -R test's only line the header is a sender's with
`Retr  Cwnd` when the server's results say `sender_has_retransmits`; -i 0 shows one
interval, the whole test; UDP receiver lines end in two spaces and --bidir's UDP sending
lines sit under the Jitter column, as native's (docs/usability.md, session 17 iperf17b).
Scripted endpoint and iperf3 server (test_throughput_timed's)."""

from __future__ import annotations

from typing import Any

from test_throughput_timed import SERVER, rig_with_server, run

from packetlab.cli import run_throughput
from packetlab.measure import iperf3
from packetlab.measure.throughput_timed import TimedSpec, timed_test


def _reverse(spec: TimedSpec, has: int | None = 1) -> tuple[dict[str, Any], list[Any]]:
    rig, server = rig_with_server()
    if has is not None:
        server.extra_results["sender_has_retransmits"] = has
    shown: list[tuple[dict[str, Any], bool]] = []  # each interval, and the results came

    def on_interval(rec: dict[str, Any]) -> None:
        shown.append((rec, bool(server.client_results)))

    r = rig.run(timed_test(rig.session, SERVER[0], spec=spec, on_interval=on_interval))
    return r.to_dict(), shown


def test_reverse_only_interval_is_shown_after_the_results_with_retr_header() -> None:
    """-R -t 0.2 -i 1: the one interval comes after the results exchange, marked with the
    server's sender_has_retransmits, and its header is `Retr  Cwnd` (native's -R -t 1 and
    -R -n 1M); was: the receiver's header, shown before the exchange."""
    d, shown = _reverse(TimedSpec(direction="download", seconds=0.2, interval=1.0))
    assert "error" not in d, d
    ((rec, after_results),) = shown
    assert after_results and rec["sender_has_retransmits"] == 1
    assert run_throughput.interval_rows(rec).splitlines()[0] == iperf3.TCP_HEADER
    assert "sender_has_retransmits" not in d.get("server_info", {})


def test_reverse_header_of_a_longer_test_is_the_receivers() -> None:
    """-R -t 0.2 -i 0.1: the first interval is shown as it completes, under the receiver's
    header; the last after the exchange (no header then)."""
    d, shown = _reverse(TimedSpec(direction="download", seconds=0.2, interval=0.1))
    assert "error" not in d, d
    assert [(r["start"], after) for r, after in shown] == [(0.0, False), (0.1, True)]
    first = run_throughput.interval_rows(shown[0][0]).splitlines()
    assert first[0] == iperf3.HEADER and "sender_has_retransmits" not in shown[0][0]
    assert not run_throughput.interval_rows(shown[1][0]).startswith("[ ID]")


def test_reverse_byte_count_only_interval_without_server_retransmits() -> None:
    """-R -n 1M: the interval closed at the test's end is held too; a server that says it
    has no retransmits (-1, not Linux) leaves the receiver's header."""
    d, shown = _reverse(TimedSpec(direction="download", nbytes=1 << 20, interval=1.0), has=-1)
    assert "error" not in d, d
    ((rec, after_results),) = shown
    assert after_results and rec["sender_has_retransmits"] == -1
    assert run_throughput.interval_rows(rec).splitlines()[0] == iperf3.HEADER


def test_interval_zero_is_one_interval_of_the_whole_test() -> None:
    """-i 0: iperf3 3.12 still reports one interval, the whole test, at its end (its
    last stats callback; -J's intervals has it); was: none."""
    rig, _server = rig_with_server()
    rig.endpoint.rate = 10e6
    d, intervals = run(rig, TimedSpec(direction="upload", seconds=0.3, interval=0))
    assert "error" not in d, d
    ((rec,),) = [intervals]
    assert (rec["start"], rec["end"]) == (0.0, 0.3)
    assert rec["sum"]["bytes"] == d["sum"]["sender"]["bytes"]
    d, shown = _reverse(TimedSpec(direction="download", seconds=0.2, omit=1, interval=0))
    assert "error" not in d, d
    ((rec, _after),) = shown  # -O with -i 0: no "(omitted)" line, and the header shown
    assert rec["start"] == 0.0 and "omitted" not in rec and "after_omit" not in rec
    assert run_throughput.interval_rows(rec).startswith("[ ID]")


UDP = {"type": "interval", "protocol": "udp", "start": 0.0, "end": 1.0, "seconds": 1.0}


def test_udp_receiver_lines_end_in_two_spaces_and_bidir_senders_under_jitter() -> None:
    """`iperf3 -c 127.0.0.1 -R -u -b 10M -t 2 -P 2` and `--bidir -u -b 10M -t 1 -P 2` on
    this machine (3.12): a receiving line ends `(0%)  `, the [SUM] too; --bidir's
    sending lines put their count 10 columns right, under `Lost/Total`."""
    rx = [{"id": i, "bytes": 1_280_000, "packets": 39, "jitter_ms": 0.112, "lost": 0,
           "total": 39} for i in (5, 7)]  # fmt: skip
    text = run_throughput.interval_rows({**UDP, "direction": "download", "sender": False,
                                         "streams": rx, "sum": {}})  # fmt: skip
    assert text.splitlines()[1:4] == [
        "[  5]   0.00-1.00   sec  1.22 MBytes  10.2 Mbits/sec  0.112 ms  0/39 (0%)  ",
        "[  7]   0.00-1.00   sec  1.22 MBytes  10.2 Mbits/sec  0.112 ms  0/39 (0%)  ",
        "[SUM]   0.00-1.00   sec  2.44 MBytes  20.5 Mbits/sec  0.112 ms  0/78 (0%)  ",
    ]
    tx = [{"id": i, "bytes": 1_280_000, "packets": 39, "role": "TX-C"} for i in (5, 7)]
    text = run_throughput.interval_rows({**UDP, "direction": "bidir", "sender": None,
                                         "streams": tx, "sum": {}})  # fmt: skip
    assert text.splitlines()[1:4] == [
        "[  5][TX-C]   0.00-1.00   sec  1.22 MBytes  10.2 Mbits/sec            39  ",
        "[  7][TX-C]   0.00-1.00   sec  1.22 MBytes  10.2 Mbits/sec            39  ",
        "[SUM][TX-C]   0.00-1.00   sec  2.44 MBytes  20.5 Mbits/sec            78  ",
    ]
