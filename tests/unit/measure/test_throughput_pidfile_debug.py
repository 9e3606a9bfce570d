"""iperf3 3.12's -I (--pidfile) and -d (--debug) (session 26, iperf26b), against the
scripted iperf3 server of test_throughput_timed. Until session 26 both were argparse's
`unrecognized arguments` (exit 2)."""

from __future__ import annotations

import argparse
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from test_throughput_timed import rig_with_server, run

from packetlab.cli import run_throughput
from packetlab.cli.run import RunError
from packetlab.cli.run_throughput_pidfile import ANOTHER
from packetlab.measure.throughput_timed import TimedSpec


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(exit_on_error=False)
    run_throughput.configure(p)
    return p.parse_args(["-c", "192.0.2.5", "-t", "1", *argv])


def _experiment(args: argparse.Namespace, monkeypatch: pytest.MonkeyPatch, body: Any) -> Any:
    """The command's experiment with the test itself replaced by `body`."""
    monkeypatch.setattr(run_throughput, "_experiment", lambda *a: body)
    return run_throughput.experiment(args, lambda r: None, None)  # type: ignore[arg-type]


def _drive(coro: Any) -> None:
    """A coroutine that awaits nothing, run to its end."""
    try:
        coro.send(None)
    except StopIteration:
        pass


def test_pidfile_written_for_the_run_and_removed_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """-I FILE: our PID without a newline, mode 0600, before the test (as native 3.12's,
    `12122` in 5 bytes), and gone once the run ended, also when it failed."""
    path = tmp_path / "iperf.pid"
    seen: list[str] = []

    async def body(session: Any) -> None:
        seen.append(path.read_text())
        raise RuntimeError("the test failed")

    run = _experiment(_args("-I", str(path)), monkeypatch, body)
    assert path.read_bytes() == str(os.getpid()).encode()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(RuntimeError):
        _drive(run(None))
    assert seen == [str(os.getpid())]
    assert not path.exists()


def test_pidfile_of_a_live_process_is_iperf3s_refusal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A FILE naming a live process: 3.12's `Another instance of iperf3 appears to be
    running`, the file left as it was; a stale one (no such process) is overwritten."""
    path = tmp_path / "iperf.pid"
    path.write_text(f"{os.getppid()}\n")
    with pytest.raises(RunError, match=ANOTHER):
        _experiment(_args("-I", str(path)), monkeypatch, None)
    assert path.read_text() == f"{os.getppid()}\n"
    path.write_text("999999999")  # above any pid_max: no such process

    async def body(session: Any) -> None:
        pass

    run = _experiment(_args("-I", str(path)), monkeypatch, body)
    assert path.read_text() == str(os.getpid())
    _drive(run(None))
    assert not path.exists()


def test_pidfile_not_writable_is_iperf3s_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(RunError) as e:
        _experiment(_args("-I", str(tmp_path / "no" / "pid")), monkeypatch, None)
    assert str(e.value) == "error - unable to write PID file: No such file or directory"


def test_debug_option_taken_as_iperf3_takes_it() -> None:
    """-d, --debug and --debug=N (3.12 takes any N: `--debug=7`, `--debug=x` ran); it
    selects iperf3's test as its other options do."""
    for argv in (["-d"], ["--debug"], ["--debug=2"], ["--debug=x"]):
        args = _args(*argv)
        assert args.debug is not None
    p = argparse.ArgumentParser(exit_on_error=False)
    run_throughput.configure(p)
    args = p.parse_args(["-c", "192.0.2.5", "-d"])
    assert run_throughput.timed(args)
    assert p.parse_args(["-c", "192.0.2.5"]).debug is None


def test_debug_lines_follow_the_control_connection() -> None:
    """-d: a line per state and JSON message either way, in the order they went (the
    cookie, PARAM_EXCHANGE, the parameters, ..., TEST_END queued for T, the results both
    ways, IPERF_DONE)."""
    said: list[str] = []
    rig, _ = rig_with_server()
    d, _ = run(rig, TimedSpec(direction="download", seconds=1, interval=0, debug=said.append))
    assert "error" not in d, d
    kinds = [" ".join(line.split()[:3]) for line in said]
    assert kinds == [
        "cookie sent: " + said[0].split()[-1],
        "state PARAM_EXCHANGE (9)",
        "JSON sent " + said[2].split()[2],
        "state CREATE_STREAMS (10)",
        "state TEST_START (1)",
        "state TEST_RUNNING (2)",
        "state TEST_END (4)",
        "state EXCHANGE_RESULTS (13)",
        "JSON sent " + said[8].split()[2],
        "JSON received " + said[9].split()[2],
        "state DISPLAY_RESULTS (14)",
        "state IPERF_DONE (16)",
    ], said
    assert '"reverse":true' in said[2] and said[6].endswith(
        "queued for endpoint time " + said[6].rsplit(" ", 1)[1]
    )
    assert said[-1] == "state IPERF_DONE (16) sent"


def test_debug_line_goes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    run_throughput.debug_line("state TEST_START (1) received")
    out, err = capsys.readouterr()
    assert out == "" and err == "pktlab run throughput: debug: state TEST_START (1) received\n"


def test_a_failed_tests_document_ends_as_3_12s() -> None:
    """-J -T tt --extra-data "hello x" against a refused port: native 3.12's document
    ends `"error"`, `"title"`, `"extra_data"` (iperf_errexit adds the error, then
    iperf_json_finish the rest; a Ctrl-C's `interrupt - ...` too); ours had the title
    before the error and no extra_data (session 26, iperf26b)."""
    from packetlab.measure.throughput_json import document
    from packetlab.measure.throughput_timed import TimedResult

    result = TimedResult(TimedSpec(seconds=1, extra_data="hello x"), "127.0.0.1", 15298)
    result.error = "connect to 127.0.0.1:15298: connection refused"
    result.native_error = "unable to connect to server: Connection refused"
    r = result.to_dict()
    assert r["extra_data"] == "hello x"
    doc = document(None, [], r, 0.0, "v", title="tt")
    assert list(doc)[-3:] == ["error", "title", "extra_data"]
    assert doc["error"] == "unable to connect to server: Connection refused"
