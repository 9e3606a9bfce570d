"""Native iperf3's download figure with the paper's first-MiB skip applied to its receive
reports, as our ndata-stamp figure applies it (docs/congruence.md)."""

from __future__ import annotations

import json

import pytest

from packetlab.measure.baselines import iperf3_argv, parse_iperf3_json, skip_from_intervals
from packetlab.measure.native import NativeToolError

MIB = 1 << 20


def report(intervals: list[tuple[float, int]], total: int, seconds: float) -> str:
    """iperf3 -J with (end, bytes) receive reports and end.sum_received."""
    start, out = 0.0, []
    for end, n in intervals:
        out.append({"sum": {"start": start, "end": end, "seconds": end - start, "bytes": n}})
        start = end
    bps = total * 8 / seconds
    summary = {"sum_received": {"bytes": total, "seconds": seconds, "bits_per_second": bps}}
    return json.dumps({"intervals": out, "end": summary})


def test_download_skips_the_first_mib_from_the_reports() -> None:
    # a burst in the first report (1.5 MiB in 0.1 s), then 1 MiB per 0.1 s
    reports = [(0.1, 3 * MIB // 2)] + [(0.1 * (i + 2), MIB) for i in range(8)]
    total = 3 * MIB // 2 + 8 * MIB
    r = parse_iperf3_json(report(reports, total, 0.9), direction="download",
                          server="10.0.0.1", port=5201)  # fmt: skip
    assert r.method == "iperf3-intervals" and r.skip == 3 * MIB // 2
    assert r.measured_bytes == 8 * MIB and r.seconds == pytest.approx(0.8)
    assert r.mbit_s == pytest.approx(8 * MIB * 8 / 0.8 / 1e6)
    assert r.whole_mbit_s == pytest.approx(total * 8 / 0.9 / 1e6)  # iperf3's own, kept
    assert r.mbit_s is not None and r.whole_mbit_s is not None
    assert r.mbit_s < r.whole_mbit_s  # the burst counted only in the whole figure
    assert r.to_dict()["whole_mbit_s"] == r.whole_mbit_s


def test_upload_and_short_downloads_keep_iperf3s_figure() -> None:
    text = report([(0.1, MIB), (0.2, MIB)], 2 * MIB, 0.2)
    up = parse_iperf3_json(text, direction="upload", server="h", port=1)
    assert up.method == "iperf3-native" and up.mbit_s == pytest.approx(2 * MIB * 8 / 0.2 / 1e6)
    short = report([(0.05, MIB // 2)], MIB // 2, 0.05)  # ends inside the skip
    down = parse_iperf3_json(short, direction="download", server="h", port=1)
    assert down.method == "iperf3-native" and down.skip == 0


def test_reports_without_data_past_the_skip() -> None:
    with pytest.raises(ValueError, match="past the skipped part"):
        skip_from_intervals([{"sum": {"end": 0.1, "bytes": MIB}}], MIB)
    with pytest.raises(NativeToolError, match="unparsable"):
        parse_iperf3_json("{}", direction="download", server="h", port=1)


def test_argv_reports_every_tenth_of_a_second_for_downloads_only() -> None:
    down = iperf3_argv("10.0.0.1", direction="download", nbytes=MIB)
    assert down[-3:] == ["-R", "-i", "0.1"]
    assert "-i" not in iperf3_argv("10.0.0.1", direction="upload", nbytes=MIB)
