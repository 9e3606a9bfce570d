"""`pktlab run sendgap` says why a train went out late, as examples/udp_train.py does
(session 32, odds32: under load, p50 offsets of ms and no word; train32 measured them)."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from packetlab.cli import parse as cli_parse
from packetlab.cli.run_command import Progress
from packetlab.cli.run_sendgap import experiment
from packetlab.controller import TrainReport
from packetlab.measure import sendgap


def train(gap: int, sent: list[int | None]) -> TrainReport:
    n = len(sent)
    rep = TrainReport(ipaddress.ip_address("127.0.0.1"), 9, gap, [i * gap for i in range(n)])
    rep.sent = sent
    rep.errors = [None] * n
    rep.lead, rep.queued_ahead = 60_000_000, 50_000_000  # every nsend queued in time
    return rep


def run_sendgap(
    argv: list[str], rep: TrainReport, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> str:
    async def fake_send_gap(session: Any, host: str, port: int, **kw: Any) -> Any:
        return sendgap.SendGapResult(kw["train"], rep)

    monkeypatch.setattr(sendgap, "send_gap", fake_send_gap)
    args = cli_parse(["run", "sendgap", "--trains", "2", *argv])
    records: list[dict[str, Any]] = []
    run = experiment(args, records.append, Progress())
    coro = run(None)
    with pytest.raises(StopIteration):  # the fake answers at once: no reactor needed
        coro.send(None)
    assert [r["type"] for r in records] == ["sendgap", "sendgap"]
    return str(capsys.readouterr().err)


def stalled() -> TrainReport:
    # 100 µs gaps; a 3 ms stall, then the backlog back to back (a busy machine)
    sent: list[int | None] = [i * 100_000 for i in range(20)]
    sent += [5_000_000 + 5_000 * k for k in range(40)]
    return train(100_000, sent)


def test_a_late_train_gets_the_chrt_note(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    err = run_sendgap([], stalled(), monkeypatch, capsys)
    assert err.count("pktlab run sendgap: train ") == 1, err  # once a run, not per train
    assert "train 1/2: late although every nsend was queued in time: the endpoint lost" in err
    assert "`chrt -f 10` before this command gives it priority" in err


def test_with_listen_chrt_is_for_the_endpoints_command(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    err = run_sendgap(["--listen", "tcp:0"], stalled(), monkeypatch, capsys)
    assert "`chrt -f 10` before the endpoint's command (`chrt -f 10 twistd" in err


def test_an_on_time_train_gets_no_note(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    err = run_sendgap([], train(100_000, [i * 100_000 + 2_000 for i in range(50)]), monkeypatch,
                      capsys)  # fmt: skip
    assert "late" not in err, err
