"""Issue 13, session 19: the errors of iperf3's test as iperf3 3.12 places and words them
(records only, no endpoint; the live comparison is tests/integration/
test_throughput_iperf3_errors.py): a failed test's line on stderr (or in --logfile's
file) as `error - ` and native's words, nothing of it on stdout; -J's `error` those
words; Ctrl-C's `interrupt - the client has terminated` after the totals; the paper's
fixed-size transfer keeps its row. And the words: `native_error` of the failures."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_run_throughput_output import CONNECTED, INTERVAL, RESULT, args_of, lines

from packetlab.cli.run_throughput import renderer
from packetlab.controller import ConnectFailed
from packetlab.measure.iperf3 import BUSY, Iperf3Error
from packetlab.measure.throughput_control import ThroughputError, native_error

REFUSED = {
    "type": "throughput", "direction": "upload", "server": "127.0.0.1", "port": 15216,
    "protocol": "tcp", "parallel": 1, "time": 1.0, "bytes": None, "interval": 1.0,
    "length": 131072,
    "error": "connect to 127.0.0.1:15216: connection refused (the host answered the SYN "
    "with a reset: nothing listens on that port)",
    "iperf3_error": "unable to connect to server: Connection refused",
}  # fmt: skip
SUMMARY = {"type": "summary", "runs": 1, "ok": 0, "mbit_s_mean": None}
NATIVE = "error - unable to connect to server: Connection refused"  # after `iperf3: `


def test_failed_test_goes_to_stderr_in_iperf3s_words(capsys: pytest.CaptureFixture[str]) -> None:
    """Was: `upload  1 s  error: connect to ... (...)` on stdout."""
    assert lines(args_of("-t", "1"), REFUSED, SUMMARY) == ["# 0 of 1 runs"]
    assert capsys.readouterr().err == f"pktlab run throughput: {NATIVE}\n"


def test_json_document_error_in_iperf3s_words(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    (doc,) = [json.loads("\n".join(lines(args_of("-J"), REFUSED)))]
    assert doc["error"] == "unable to connect to server: Connection refused"
    assert capsys.readouterr().err == ""


def test_logfile_takes_the_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "log"
    assert lines(args_of("-t", "1", "--logfile", str(log)), REFUSED, SUMMARY) == []
    assert log.read_text() == f"pktlab run throughput: {NATIVE}\n# 0 of 1 runs\n"
    assert capsys.readouterr() == ("", "")


def test_error_line_stamped_in_iperf3s_default_format(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--timestamps=FORMAT: 3.12 stamps its error lines with `%c ` all the same; -T is not
    put before them."""
    import time

    monkeypatch.setattr(time, "strftime", lambda fmt, *_: f"<{fmt}>")
    lines(args_of("-t", "1", "--timestamps=%Y ", "-T", "x"), REFUSED)
    assert capsys.readouterr().err == f"<%c >pktlab run throughput: {NATIVE}\n"


def test_ctrl_c_line_after_the_totals(capsys: pytest.CaptureFixture[str]) -> None:
    """A test stopped by Ctrl-C: its totals (stdout), then, with the summary after them,
    the interrupt line on stderr, as iperf3 3.12 ends."""
    stopped = {k: v for k, v in RESULT.items() if k != "server_output_text"}
    stopped["stopped"] = True
    render = renderer(args_of("-t", "1"))
    assert render(CONNECTED) and render(INTERVAL)
    assert "receiver\n# sender" in (render(stopped) or "")
    assert capsys.readouterr().err == ""
    assert render({**SUMMARY, "ok": 1, "mbit_s_mean": 19591.1}) is not None
    assert capsys.readouterr().err == (
        "pktlab run throughput: interrupt - the client has terminated\n"
    )


def test_ctrl_c_json_document_error() -> None:
    import json

    doc = json.loads(
        "\n".join(lines(args_of("-J"), CONNECTED, INTERVAL, {**RESULT, "stopped": True}))
    )
    assert doc["error"] == "interrupt - the client has terminated"
    assert doc["end"]["sum_sent"]["bytes"] == RESULT["sum"]["sender"]["bytes"]  # type: ignore[index]


def test_paper_transfer_keeps_its_row(capsys: pytest.CaptureFixture[str]) -> None:
    """The fixed-size transfer (no `protocol`): its row, as before."""
    row = {"type": "throughput", "direction": "upload", "bytes": 26214400,
           "error": "connect to 127.0.0.1:1: connection refused (...)"}  # fmt: skip
    assert lines(args_of(), row) == [
        "upload      26214400  error: connect to 127.0.0.1:1: connection refused (...)"
    ]
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (ConnectFailed(3, "REFUSED"), "unable to connect to server: Connection refused"),
        (ConnectFailed(3, "RESET"), "unable to connect to server: Connection refused"),
        (ConnectFailed(3, "TIMEDOUT"), "unable to connect to server: Connection timed out"),
        (ConnectFailed(3, "not established within 0.3 s"),
         "unable to connect to server: Connection timed out"),
        (ConnectFailed(3, "UNREACH"), "unable to connect to server: No route to host"),
        (ConnectFailed(3, "UNKNOWN"), "ours"),
        (Iperf3Error("the iperf3 server is busy (access denied)", native=BUSY), BUSY),
        (Iperf3Error("the iperf3 server failed (i_errno 5, errno 0)"), "ours"),
        (ThroughputError("the endpoint refused the sends (ESKTPKTDENY)"), "ours"),
    ],
)  # fmt: skip
def test_native_words(error: Exception, words: str) -> None:
    assert native_error(error, "ours") == words


@pytest.mark.parametrize("where", ["nodir/log", "."])
def test_logfile_that_cannot_be_opened_is_iperf3s_one_line(tmp_path: Path, where: str) -> None:
    """eyes19b: was `[Errno 2] No such file or directory: '...'` after the test had begun
    (the file opened at its first line), or after a refused connect."""
    from packetlab.cli.run import RunError
    from packetlab.cli.run_throughput import experiment

    args = args_of("-t", "1", "--logfile", str(tmp_path / where))
    with pytest.raises(RunError) as e:
        experiment(args, lambda r: None, None)  # type: ignore[arg-type]
    why = "No such file or directory" if where != "." else "Is a directory"
    assert str(e.value) == f"error - unable to open log file: {why}"
