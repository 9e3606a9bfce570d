"""`packetlab.cli.campaign_mlet` (a measurement as an xpmgr mlet), its measurement
faked: what each endpoint's run writes, as two endpoints sharing a HOSTID meet it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred

from packetlab.cli import campaign_mlet
from packetlab.cli.campaign_run import per_endpoint


class Info:
    def __init__(self, hostid: str) -> None:
        self.hostid = hostid


class Session:
    def __init__(self, hostid: str, peer: str) -> None:
        self.hostid, self.peer = hostid, peer


def fake_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """The measurement: one record, and its --pcap file written as pcapout does."""
    from packetlab.cli import run_command

    def experiment(args: argparse.Namespace, emit: Any, progress: Any) -> Any:
        async def run(session: Any) -> None:
            emit({"type": "gap", "sent": 1})
            if args.pcap:
                Path(args.pcap).write_bytes(session.hostid.encode() + session.peer.encode())

        return run

    real = campaign_mlet.parser

    def parser() -> argparse.ArgumentParser:
        p = real()
        import dataclasses

        cmd: run_command.Command = campaign_mlet.command_of("sendgap")
        fake = dataclasses.replace(cmd, experiment=experiment)
        for action in p._subparsers._group_actions:  # type: ignore[union-attr]
            action.choices["sendgap"].set_defaults(_command=fake)  # type: ignore[index]
        return p

    async def read_system_info(session: Any) -> Info:
        return Info(session.hostid)

    monkeypatch.setattr(campaign_mlet, "parser", parser)
    monkeypatch.setattr("packetlab.controller.read_system_info", read_system_info)


def run_mlet(session: Session, *argv: str) -> None:
    d = Deferred.fromCoroutine(campaign_mlet.mlet(session, ["sendgap", *argv]))
    assert d.called, "the fake measurement is synchronous"
    d.result  # noqa: B018  (raises its error)


def test_endpoints_sharing_a_hostid_get_a_pcap_file_each_and_say_where_they_are(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Two endpoints at the default HostID through `pktlab xpmgr -n 2 ... sendgap --pcap
    # gaps.pcap` (measured): both wrote gaps-pktendpt.pcap, one over the other, and
    # their records both said only "endpoint": "pktendpt"
    fake_run(monkeypatch)
    pcap = tmp_path / "gaps.pcap"
    run_mlet(Session("pktendpt", "10.0.0.1"), "--pcap", str(pcap))
    run_mlet(Session("pktendpt", "10.0.0.2"), "--pcap", str(pcap))
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["gaps-pktendpt-2.pcap", "gaps-pktendpt.pcap"]
    assert {(tmp_path / f).read_bytes() for f in files} == {b"pktendpt10.0.0.1",
                                                            b"pktendpt10.0.0.2"}  # fmt: skip
    records = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    where = [(r["type"], r["endpoint"], r["hostid"], r["address"]) for r in records]
    assert where == [
        ("gap", "pktendpt", "pktendpt", "10.0.0.1"),
        ("summary", "pktendpt", "pktendpt", "10.0.0.1"),
        ("gap", "pktendpt", "pktendpt", "10.0.0.2"),
        ("summary", "pktendpt", "pktendpt", "10.0.0.2"),
    ]
    assert [r.get("pcap") for r in records[1::2]] == [str(tmp_path / f) for f in reversed(files)]


def test_a_hostid_with_a_slash_keeps_the_pcap_file_in_its_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The HOSTID is the endpoint's to choose: `x/../../y` put the controller's file
    # outside the directory given (pktlab campaign and the mlet alike)
    (tmp_path / "in").mkdir()
    (tmp_path / "gaps-x").mkdir()
    given = str(tmp_path / "in" / "gaps.pcap")
    made = per_endpoint(argparse.Namespace(pcap=given), "x/../../gaps-x/y").pcap
    assert made == str(tmp_path / "in" / "gaps-x_.._.._gaps-x_y.pcap")
    fake_run(monkeypatch)
    run_mlet(Session("x/../../gaps-x/y", "10.0.0.1"), "--pcap", given)
    assert [p.name for p in (tmp_path / "in").iterdir()] == ["gaps-x_.._.._gaps-x_y.pcap"]
    assert not list((tmp_path / "gaps-x").iterdir())
