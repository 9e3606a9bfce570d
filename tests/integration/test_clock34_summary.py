"""A `pktlab run --json` summary is on the endpoint's clock, as its records' stamps: with
the clocks 10 min apart (either way), start_time <= the first stamp <= the last <=
stop_time, and the summary says whose clock and the offset seen.

Our clock is the one shifted (libfaketime preloaded into `pktlab run`): the endpoint,
on the real clock, is a whole host 10 min ahead or behind (see faketime_pair)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from faketime_pair import RAW_CONF, Pair, libfaketime, needs_faketime

pytestmark = needs_faketime
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the endpoint's raw socket needs root")


def run_skewed(tmp_path: Path, shift_s: int, *argv: str) -> list[dict[str, Any]]:
    """`pktlab run ARGV --json` with our clock `shift_s` off the endpoint's; its records."""
    conf = tmp_path / "endpt.conf"
    conf.write_text(RAW_CONF)
    fake = libfaketime(f"{shift_s:+d}s", FAKETIME_DONT_FAKE_MONOTONIC="1")
    return Pair(*argv, "--json", fake=fake, faked="controller", config=conf).records()


def assert_brackets(summary: dict[str, Any], stamps: list[int], shift_s: int) -> None:
    """The summary's times around `stamps` (ns, the endpoint's clock), its offset
    (endpoint - controller) -shift_s within its error."""
    assert stamps, summary
    # (the JSON seconds are floats: 0.24 µs apart at 1.8e9 s; 1 µs to spare)
    start, stop = summary["start_time"] * 1e9 - 1e3, summary["stop_time"] * 1e9 + 1e3
    assert start <= min(stamps) <= max(stamps) <= stop, (summary, min(stamps), max(stamps))
    assert summary["clock"] == "endpoint", summary
    # faked reads of our clock take a few µs more than a real one: 1 ms to spare
    off_us, err_us = summary["clock_offset_us"], summary["clock_error_us"]
    assert abs(off_us + shift_s * 1e6) <= err_us + 1e3, summary


@needs_root
@pytest.mark.parametrize("shift_s", [-600, 600])
def test_a_ping_summary_brackets_its_replies(tmp_path: Path, shift_s: int) -> None:
    # Before (our clock 600 s behind): the last reply at 1796659928.500 (endpoint), the
    # summary's stop_time 1796659328.502 (ours): it stopped 600 s before its last reply.
    records = run_skewed(tmp_path, shift_s, "ping", "-c", "3", "-i", "0.2", "127.0.0.1")
    replies = [r for r in records if r["type"] == "reply"]
    assert len(replies) == 3, records
    (summary,) = [r for r in records if r["type"] == "summary"]
    stamps = [r[k] for r in replies for k in ("probe_send_ns", "reply_recv_ns")]
    assert_brackets(summary, stamps, shift_s)


@needs_root
@pytest.mark.parametrize("shift_s", [-600, 600])
def test_a_traceroute_summary_brackets_its_probes(tmp_path: Path, shift_s: int) -> None:
    records = run_skewed(tmp_path, shift_s, "traceroute", "-q", "2", "-m", "3", "127.0.0.1")
    hops = [r for r in records if r["type"] == "hop"]
    assert hops and all(h["reply_recv_ns"] for h in hops), records
    (summary,) = [r for r in records if r["type"] == "summary"]
    stamps = [h[k] for h in hops for k in ("probe_send_ns", "reply_recv_ns")]
    assert_brackets(summary, stamps, shift_s)


def test_a_sendgap_summary_brackets_its_packets(tmp_path: Path) -> None:
    # a run_command sub-command (dns, http, throughput, ... share its summary)
    records = run_skewed(tmp_path, -600, "sendgap", "--trains", "1", "--count", "5",
                         "--gap-us", "1000", "--packets")  # fmt: skip
    sent = [r["sent_ns"] for r in records if r["type"] == "sendgap-packet"]
    assert len(sent) == 5, records
    (summary,) = [r for r in records if r["type"] == "summary"]
    assert_brackets(summary, sent, -600)
