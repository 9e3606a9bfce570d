"""`pktlab testbed` as an operator uses it, over fakes (session 24, testbed24): interrupts,
an idempotent `down`, the commands `status` suggests, what `--help` says. The real
namespaces are tests/integration/test_testbed.py's."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest

from packetlab.cli import testbed as cli_testbed
from packetlab.cli.interrupt import quit_on_interrupt

tbmod = importlib.import_module("packetlab.testbed.testbed")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PKTLAB_TESTBED_PREFIX", "ut-")
    monkeypatch.setenv("PKTLAB_TESTBED_DIR", str(tmp_path))
    monkeypatch.setattr(cli_testbed, "missing_capabilities", lambda status="": [])


def _run(args: argparse.Namespace) -> int:
    try:
        return cli_testbed.run(args)
    except KeyboardInterrupt:  # would end pytest itself
        pytest.fail("KeyboardInterrupt escaped pktlab testbed")


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pktlab testbed")
    cli_testbed.add_arguments(parser)
    return parser.parse_args(argv)


class _Interrupted:
    """A Testbed whose up() is interrupted half-way, as by a Ctrl-C."""

    handler: object = None

    def __init__(self, topology: object, name: str | None = None) -> None:
        self.name = name

    def up(self, persist: bool = False) -> _Interrupted:
        _Interrupted.handler = signal.getsignal(signal.SIGINT)
        raise KeyboardInterrupt


def test_an_interrupted_up_says_what_is_left(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """During `up`, Ctrl-C raises KeyboardInterrupt (so that Testbed.up undoes what it
    made) instead of `pktlab`'s start-up handler, which ended the process at once."""
    saved = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    quit_on_interrupt()  # as `pktlab` installs it before parsing
    try:
        monkeypatch.setattr(cli_testbed, "Testbed", _Interrupted)
        assert _run(_parse("up", "--name", "x")) == 130
        during = _Interrupted.handler
        assert callable(during)
        with pytest.raises(KeyboardInterrupt):
            during(signal.SIGINT, None)
        assert capsys.readouterr().err == (
            "\npktlab testbed: up interrupted; what it had made is removed\n"
        )
        assert signal.getsignal(signal.SIGINT) is not during  # put back afterwards
    finally:
        signal.signal(signal.SIGINT, saved[0])
        signal.signal(signal.SIGTERM, saved[1])


def test_an_interrupt_after_up_says_the_testbed_is_up(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Made:
        name = "ut-made"

        def __init__(self, topology: object, name: str | None = None) -> None:
            pass

        def up(self, persist: bool = False) -> Made:  # recorded, as Testbed.up does
            state = Path(os.environ["PKTLAB_TESTBED_DIR"]) / "ut-made.json"
            topo = tbmod.Topology(kind="chain").to_dict()
            state.write_text(json.dumps({"name": self.name, "pid": os.getpid(), "topology": topo}))
            return self

        def describe(self) -> str:
            raise KeyboardInterrupt  # Ctrl-C while the description is printed

        def netns_name(self, node: str) -> str:
            return f"ut-made-{node}"

        topology = tbmod.Topology()

    monkeypatch.setattr(cli_testbed, "Testbed", Made)
    monkeypatch.setattr(Made.topology, "address", lambda node: "10.77.1.2", raising=False)
    assert _run(_parse("up")) == 130
    assert capsys.readouterr().err == (
        "\npktlab testbed: interrupted; testbed ut-made is up "
        "(pktlab testbed down ut-made removes it)\n"
    )


def test_down_of_what_is_not_there_is_no_failure(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`down` is idempotent: it was exit 1, `no testbed named plab-x`."""
    monkeypatch.setattr(tbmod, "list_netns", lambda: [])
    assert cli_testbed.run(_parse("down", "gone")) == 0
    assert capsys.readouterr().out == "no testbed ut-gone: nothing to remove\n"


def test_status_suggests_removing_the_orphans_alone(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """It said `pktlab testbed down --all`, which removes the live testbeds too."""
    monkeypatch.setattr(
        cli_testbed, "orphan_namespaces", lambda: ["ut-a1-ep", "ut-a1-r1", "ut-b-tg", "ut-odd"]
    )
    assert cli_testbed.run(_parse("status")) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "remove them with: pktlab testbed down ut-a1; pktlab testbed down ut-b; "
        "ip netns delete ut-odd"
    )


def test_help_names_the_prefix_the_state_directory_and_the_defaults(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PKTLAB_TESTBED_DIR", "/run/ut")  # argparse wraps at a '-'
    for argv in (["--help"], ["up", "--help"], ["down", "--help"]):
        with pytest.raises(SystemExit):
            _parse(*argv)
    out = " ".join(capsys.readouterr().out.split())
    assert "ut-NAME-NODE ($PKTLAB_TESTBED_PREFIX replaces 'plab-')" in out
    assert "recorded in /run/ut/ut-NAME.json" in out
    assert "(ut-NAME; default: 6 random hex digits)" in out
    assert "(default: 2)" in out and "(default: 77)" in out and "(default: no shaping)" in out
    # the ranges `up` checks (session 31: `--hops 21` was refused by a help silent on it)
    assert "--hops N routers between endpoint and target, 0..20 (default: 2)" in out
    assert "--base B addresses 10.B.L.x, 0..255 (default: 77)" in out
    assert "every ut-* namespace, live testbeds too" in out


def test_down_without_root_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """It ran `ip netns delete` (failing silently), then blamed processes inside:
    `could not delete namespaces: ...`."""
    monkeypatch.setattr(cli_testbed, "missing_capabilities", lambda status="": ["CAP_SYS_ADMIN"])
    monkeypatch.setattr(cli_testbed, "down_by_name", lambda name: pytest.fail("ran"))
    assert _run(_parse("down", "x")) == 1
    assert capsys.readouterr().err == (
        "pktlab testbed: testbed down needs root: network namespaces need CAP_SYS_ADMIN "
        "(run it with sudo)\n"
    )


def test_up_without_ip_is_one_line_and_makes_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    netns = importlib.import_module("packetlab.testbed.netns")
    monkeypatch.setattr(netns.shutil, "which", lambda name: None)
    real_exists = os.path.exists
    monkeypatch.setattr(netns.os.path, "exists", lambda p: p != "/usr/sbin/ip" and real_exists(p))
    assert _run(_parse("up", "--name", "noip")) == 1
    assert capsys.readouterr().err == (
        "pktlab testbed: the 'ip' command (Debian package iproute2) is not installed\n"
    )
    assert not [n for n in tbmod.list_netns() if n.startswith("ut-")]


def test_entering_a_namespace_that_is_gone_is_a_testbed_error() -> None:
    """It was an OSError (`setns: Invalid argument` when the namespace was deleted under
    a build), which `pktlab testbed` showed as a traceback."""
    netns = importlib.import_module("packetlab.testbed.netns")
    with pytest.raises(netns.TestbedError) as e, netns.NetNS("ut-gone-x").enter():
        pass
    assert str(e.value) == "cannot enter namespace ut-gone-x: No such file or directory"


def test_json_has_the_interfaces_and_addresses_the_text_shows(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`pktlab testbed up --json` (and `status --json`) had the nodes and links but none
    of the interfaces and addresses `up`'s text lists (`to-r1 10.77.1.1/24
    fd00:77:1::1/64  tbf 10000000 bit/s`): a script had to work them out (session 31)."""

    class Made(cli_testbed.Testbed):  # a Testbed whose up() records it and makes nothing
        def up(self, persist: bool = False) -> Made:
            self.persist = persist
            self._write_state()
            return self

    monkeypatch.setattr(cli_testbed, "Testbed", Made)
    monkeypatch.setattr(tbmod, "list_netns", lambda: [])
    assert _run(_parse("up", "--name", "js", "--hops", "1", "--shape", "2=10mbit", "--json")) == 0
    up = json.loads(capsys.readouterr().out)
    ep = {"name": "to-r1", "peer": "r1", "link": 1, "ipv4": "10.77.1.1/24",
          "ipv6": "fd00:77:1::1/64", "rate_bit": None}  # fmt: skip
    tg = {"name": "to-r1", "peer": "r1", "link": 2, "ipv4": "10.77.2.2/24",
          "ipv6": "fd00:77:2::2/64", "rate_bit": 10_000_000}  # fmt: skip
    assert up["interfaces"]["ep"] == [ep] and up["interfaces"]["tg"] == [tg]
    assert [i["name"] for i in up["interfaces"]["r1"]] == ["to-ep", "to-tg"]
    assert _run(_parse("status", "--json")) == 0
    (listed,) = json.loads(capsys.readouterr().out)["testbeds"]
    assert listed["name"] == "ut-js" and listed["interfaces"] == up["interfaces"]


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--hops", "21"], "--hops must be 0..20, got 21"),
        (["--base", "300"], "--base must be 0..255, got 300"),
        (["--name", "BAD"], "--name 'BAD': 1-12 lowercase letters or digits"),
        (["--shape", "2=10qbit"], "--shape: bad rate '10qbit': use e.g. 500kbit, 10mbit, 1gbit"),
        (["--shape", "9=10mbit"], "--shape: no link 9 (links are 1..3)"),
        (["--shape", "1mbit", "--shape", "2=1mbit"],
         "--shape RATE (all links) cannot be combined with others"),
    ],
)  # fmt: skip
def test_up_names_the_option_that_is_wrong(
    argv: list[str], said: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`pktlab testbed up --hops 21` said `hops 21 outside 0..20` (`--base 300`: `address
    base 300 outside 0..255`, `--name BAD`: `testbed name 'BAD': ...`, `--shape 9=10mbit`:
    `no link 9 ...`): the option unnamed, where `pktlab run` names it (session 31)."""
    monkeypatch.setattr(cli_testbed, "Testbed", lambda *a, **kw: pytest.fail("made"))
    assert _run(_parse("up", *argv)) == 1
    assert capsys.readouterr().err == f"pktlab testbed: {said}\n"


def test_status_says_a_testbed_whose_process_died_is_left_behind(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A `with Testbed(...)` (or a fixture's) whose process was SIGKILLed leaves its
    namespaces and its state file: `status` said `live`, as of a testbed in use, though
    nothing will remove it now. `pktlab testbed up` testbeds persist: their process is
    meant to be gone (session 31)."""
    gone = 4_194_305  # a pid no process has (above the kernel's PID_MAX_LIMIT)
    done = SimpleNamespace(pid=gone)
    topo = cli_testbed.chain(1).to_dict()
    for name, pid, persist in (("ut-dead", done.pid, False), ("ut-mine", os.getpid(), False),
                               ("ut-cli", done.pid, True)):  # fmt: skip
        state = Path(os.environ["PKTLAB_TESTBED_DIR"]) / f"{name}.json"
        state.write_text(json.dumps({"name": name, "pid": pid, "persist": persist,
                                     "topology": topo}))  # fmt: skip
    monkeypatch.setattr(cli_testbed, "missing_parts", lambda info: [])
    monkeypatch.setattr(cli_testbed, "orphan_namespaces", lambda: [])
    assert cli_testbed.run(_parse("status")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split("  ")[2] for ln in lines] == [
        "live",
        f"live, left behind: process {done.pid}, which was to remove it, is gone "
        "(pktlab testbed down ut-dead removes it)",
        "live",
    ]
    assert cli_testbed.run(_parse("status", "--json")) == 0
    listed = json.loads(capsys.readouterr().out)["testbeds"]
    assert [t["left_behind"] for t in listed] == [False, True, False]
