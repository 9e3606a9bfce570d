"""examples/udp_train.py's report as a researcher reads it (session 32, train32)."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

import pytest

from packetlab.controller import TrainReport

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))


def train(gap: int, sent: list[int | None], errors: list[str | None] | None = None) -> TrainReport:
    n = len(sent)
    rep = TrainReport(ipaddress.ip_address("127.0.0.1"), 9, gap, [i * gap for i in range(n)])
    rep.sent = sent
    rep.errors = errors or [None] * n
    rep.lead, rep.queued_ahead = 60_000_000, 50_000_000  # every nsend queued in time
    return rep


def printed(rep: TrainReport, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from udp_train import report

    status = report(rep, 0, None)
    return status, capsys.readouterr().out


def test_a_gap_below_the_endpoints_pace_is_not_blamed_on_the_cpu(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # --count 300 --gap-us 0 against twistd pktendpoint over TLS: every packet due at
    # once, sent back to back every 5.4 µs (p50), offset p50 906 µs; the note said "the
    # endpoint lost its CPU ... `chrt -f 10` gives it priority", which cannot help.
    _, out = printed(train(0, [5_400 * i for i in range(300)]), capsys)
    assert "lost its CPU" not in out
    assert "one datagram every 5.4 µs (actual gap p50), slower than the 0 µs asked" in out


def test_a_train_that_stalled_still_says_the_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    # 100 µs gaps; a 3 ms stall, then the backlog back to back: the CPU note stays
    sent = [i * 100_000 for i in range(20)]
    sent += [5_000_000 + 5_000 * k for k in range(40)]
    _, out = printed(train(100_000, list(sent)), capsys)
    assert "the endpoint lost its CPU" in out


def test_packets_not_sent_say_why(capsys: pytest.CaptureFixture[str]) -> None:
    # An endpoint killed (SIGKILL) mid-train: "sent 2171" of 3000 and exit status 1,
    # with no word on the other 829.
    sent: list[int | None] = [0, 1_000_000, None, None, None]
    errors: list[str | None] = [None, None, "connection lost", "connection lost", "EPKTNOTSENT"]
    status, out = printed(train(1_000_000, sent, errors), capsys)
    assert status == 1
    assert "  not sent: 3 datagrams (connection lost x2; EPKTNOTSENT x1)" in out


def test_a_refusal_says_where_to_look(capsys: pytest.CaptureFixture[str]) -> None:
    # 3000 x 100 µs under a 100 kB/10 s max_burst_rate_byte (pktlab init
    # --max-burst-rate-byte): 1562 sent, 1438 refused, and nothing said so.
    sent: list[int | None] = [0, None]
    _, out = printed(train(100_000, sent, [None, "ESKTPKTDENY"]), capsys)
    assert (
        "  not sent: 1 datagram (ESKTPKTDENY x1: refused by a certificate limit, an "
        "operator's rate cap or a monitor: the endpoint's log says which)"
    ) in out


def test_the_timeout_covers_the_trains_own_length() -> None:
    # --count 10000 --gap-us 10000 is a 100 s train: with the 60 s default it ended in
    # "no result within 60 s: the experiment did not end", exit 2, nothing reported.
    from udp_train import parse_args, run_timeout

    assert run_timeout(parse_args(["--count", "10000", "--gap-us", "10000"])) == 160.0
    assert run_timeout(parse_args(["--count", "40", "--gap-us", "100000", "--timeout", "2"])) == 6.0


def test_the_chrt_advice_names_the_endpoints_command_when_it_is_another_process(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # With --listen the endpoint is `twistd -n pktendpoint`: `chrt -f 10` before
    # udp_train.py, as the note said, left 1000 x 100 µs at offset p50 0.36-14 ms; before
    # twistd, 0.3 µs (load 7-9, session 32).
    from udp_train import report

    sent = [i * 100_000 for i in range(20)] + [5_000_000 + 5_000 * k for k in range(40)]
    report(train(100_000, list(sent)), 0, None, remote=True)
    out = capsys.readouterr().out
    assert "`chrt -f 10` before the endpoint's command (`chrt -f 10 twistd -n pktendpoint" in out
    report(train(100_000, list(sent)), 0, None)
    assert "`chrt -f 10` before this command gives it priority" in capsys.readouterr().out
