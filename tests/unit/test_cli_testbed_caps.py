"""`pktlab testbed up` without root: one line naming what is missing, before anything
is made (session 23, doctour23: it was `ip -batch - failed (1): mount --make-shared
/run/netns failed: Operation not permitted`, then `Command failed -:1` on a second line)."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace

import pytest

from packetlab.cli import testbed as cli_testbed
from packetlab.testbed import TestbedError, netns

ROOT = "CapEff:\t000001ffffffffff\n"
NO_NET_ADMIN = "CapEff:\t000001ffffffefff\n"  # bit 12 cleared
NONE = "CapEff:\t0000000000000000\n"


def status(tmp_path: Path, caps: str) -> str:
    f = tmp_path / "status"
    f.write_text(f"Name:\tpython3\n{caps}CapBnd:\t000001ffffffffff\n")
    return str(f)


def test_root_has_what_a_testbed_needs(tmp_path: Path) -> None:
    assert cli_testbed.missing_capabilities(status(tmp_path, ROOT)) == []
    cli_testbed.check_capabilities("testbed up", status(tmp_path, ROOT))


def test_what_is_missing_is_named(tmp_path: Path) -> None:
    assert cli_testbed.missing_capabilities(status(tmp_path, NO_NET_ADMIN)) == ["CAP_NET_ADMIN"]
    with pytest.raises(TestbedError) as e:
        cli_testbed.check_capabilities("testbed up", status(tmp_path, NONE))
    assert str(e.value) == (
        "testbed up needs root: network namespaces need CAP_NET_ADMIN and CAP_SYS_ADMIN "
        "(run it with sudo)"
    )


def test_unknown_is_not_refused(tmp_path: Path) -> None:
    assert cli_testbed.missing_capabilities(str(tmp_path / "nope")) == []


def test_up_says_it_before_making_anything(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(
        cli_testbed, "missing_capabilities", lambda status="": ["CAP_NET_ADMIN", "CAP_SYS_ADMIN"]
    )
    made: list[object] = []
    monkeypatch.setattr(cli_testbed, "Testbed", lambda *a, **k: made.append(a))
    args = argparse.Namespace(
        testbed_command="up", hops=2, shape=[], base=77, name=None, json=False, topology="chain"
    )
    assert cli_testbed.run(args) == 1
    assert made == []
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pktlab testbed: testbed up needs root")


def test_an_ip_failure_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def failed(*args: object, **kw: object) -> SimpleNamespace:
        return SimpleNamespace(returncode=1, stdout="", stderr="bad thing\nCommand failed -:1\n")

    monkeypatch.setattr(netns.subprocess, "run", failed)
    with pytest.raises(TestbedError) as e:
        netns.run_cmd(["ip", "-batch", "-"])
    assert str(e.value) == "ip -batch - failed (1): bad thing; Command failed -:1"
