"""Session 28 (iperf28): a --server name without an address (of -4/-6's family) in
iperf3's test fails the test as native 3.12's connect does: `error - unable to connect to
server: Name or service not known` (or `Address family for hostname not supported`),
-J's document with that `error`, the line in --logfile's file, exit 1. Was a usage error:
one line of ours, exit 2, and nothing on stdout for a script reading -J (native prints
its document). The paper's fixed-size transfer keeps the usage error. No endpoint is
touched: the failure comes before any request, as native's before any packet."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
from test_run_throughput_output import args_of, lines

from packetlab.cli import run_throughput
from packetlab.cli.run import RunError
from packetlab.cli.run_command import Progress


@pytest.fixture
def no_such_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """getaddrinfo as glibc answers a name nobody has (no DNS needed here)."""

    def gai(host: str, *_: Any, **__: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", gai)


def test_a_name_without_an_address_is_a_failed_test(no_such_name: None) -> None:
    args = args_of("-t", "1")
    args.server = "nosuch.invalid"
    assert run_throughput.COMMAND.target is not None
    assert run_throughput.COMMAND.target(args) is None  # the in-process endpoint's default
    out: list[dict[str, Any]] = []
    import asyncio

    asyncio.run(run_throughput.experiment(args, out.append, Progress())(None))
    (r,) = out
    assert r["iperf3_error"] == "unable to connect to server: Name or service not known"
    assert r["error"] == "cannot resolve 'nosuch.invalid': Name or service not known"
    assert r["host"] == "nosuch.invalid" and r["port"] == 15216


def test_json_prints_the_failed_document(
    no_such_name: None, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    args = args_of("-J")
    args.server = "nosuch.invalid"
    out: list[dict[str, Any]] = []
    asyncio.run(run_throughput.experiment(args, out.append, Progress())(None))
    doc = json.loads("\n".join(lines(args, *out)))
    assert doc["error"] == "unable to connect to server: Name or service not known"
    assert doc["start"]["connected"] == [] and doc["intervals"] == []
    assert capsys.readouterr().err == ""


def test_text_says_iperf3s_line(no_such_name: None, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    args = args_of("-t", "1", "--runs", "2")
    args.server = "nosuch.invalid"
    out: list[dict[str, Any]] = []
    asyncio.run(run_throughput.experiment(args, out.append, Progress())(None))
    assert len(out) == 2  # every run fails the same, as a refused connect's
    assert lines(args, *out) == []
    line = "error - unable to connect to server: Name or service not known"
    assert capsys.readouterr().err == f"pktlab run throughput: {line}\n" * 2


def test_an_address_of_the_other_family_is_a_failed_test() -> None:
    import asyncio

    args = args_of("-t", "1", "-4")
    args.server = "::1"
    out: list[dict[str, Any]] = []
    asyncio.run(run_throughput.experiment(args, out.append, Progress())(None))
    (r,) = out
    assert r["iperf3_error"] == (
        "unable to connect to server: Address family for hostname not supported"
    )


def test_the_papers_transfer_and_a_bad_port_stay_usage_errors(no_such_name: None) -> None:
    args = args_of()
    args.server = "nosuch.invalid"
    with pytest.raises(RunError, match=r"cannot resolve 'nosuch\.invalid'"):
        run_throughput.experiment(args, lambda r: None, Progress())
    with pytest.raises(RunError, match="cannot resolve"):
        run_throughput.COMMAND.target(args)
    args = args_of("-t", "1")
    args.server, args.port = "nosuch.invalid", 0
    with pytest.raises(RunError, match="bad port"):  # iperf3's parameter error, first
        run_throughput.experiment(args, lambda r: None, Progress())
