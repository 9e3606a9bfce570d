"""The `pktlab` dispatcher: every registered command imports and answers --help."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from packetlab.cli import COMMANDS, main


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_has_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    mod = importlib.import_module(COMMANDS[name][0])
    assert callable(mod.add_arguments) and callable(mod.run)
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    assert f"pktlab {name}" in capsys.readouterr().out


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    assert "COMMAND" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "last_line"),
    [
        # A mistyped option is named by the command that does not know it, with its
        # usage, and the option meant (was: `pktlab: error: unrecognized arguments:
        # --cout`, under the top-level usage).
        (
            ["run", "ping", "--cout", "3", "127.0.0.1"],
            "pktlab run ping: error: unrecognized arguments: --cout (did you mean --count?)",
        ),
        (
            ["run", "ping", "--cout=3", "--jsn", "127.0.0.1"],
            "pktlab run ping: error: unrecognized arguments: --cout=3 --jsn"
            " (did you mean --count for --cout, --json for --jsn?)",
        ),
        (
            ["init", "--hme", "x"],
            "pktlab init: error: unrecognized arguments: --hme (did you mean --home?)",
        ),
        (
            ["run", "ping", "--zzzz", "127.0.0.1"],
            "pktlab run ping: error: unrecognized arguments: --zzzz",
        ),
        # An unknown option is named even when an operand is missing too (argparse
        # checks the operands first: "the following arguments are required: TARGET").
        (["run", "ping", "--bogus"], "pktlab run ping: error: unrecognized arguments: --bogus"),
        (
            ["run", "ping", "--cout=3"],
            "pktlab run ping: error: unrecognized arguments: --cout=3 (did you mean --count?)",
        ),
        (["xpmgr", "--bogus"], "pktlab xpmgr: error: unrecognized arguments: --bogus"),
        # MLET_ARGS may be empty: only MLET is required.
        (["xpmgr"], "pktlab xpmgr: error: the following arguments are required: MLET"),
        (["run", "ping"], "pktlab run ping: error: the following arguments are required: TARGET"),
        # A mistyped choice, at every level.
        (["rn"], "(did you mean 'run'?)"),
        (["run", "pign", "127.0.0.1"], "(did you mean 'ping'?)"),
        (["run", "traceroute", "-P", "udp-pars", "127.0.0.1"], "(did you mean 'udp-paris'?)"),
    ],
)
def test_a_typo_is_named_with_what_was_meant(
    argv: list[str], last_line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1].endswith(last_line), err[-1]
    assert err[0].startswith(f"usage: pktlab {argv[0] if argv[0] != 'rn' else ''}".rstrip())


def test_runs_help_line_names_every_measurement() -> None:
    from packetlab.cli.run import MEASUREMENTS

    for name in MEASUREMENTS:
        assert name in COMMANDS["run"][1]


def test_init_home_with_an_unknown_user_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`pktlab init --home '~nosuchuser/x'` made a directory named `~nosuchuser` here."""
    monkeypatch.chdir(tmp_path)
    assert main(["init", "--home", "~nosuchuser9/x"]) == 2
    assert capsys.readouterr().err == (
        "error: --home '~nosuchuser9/x': cannot expand '~nosuchuser9': there is no user "
        "'nosuchuser9'\n"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["reflex", "monitor"])
def test_init_refuses_a_source_file_for_a_module(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`pktlab init --reflex prog.c` listed the digest of the C text: a certificate that
    never matches the built module (the attach then fails ECRTBADHDAT)."""
    src = tmp_path / "prog.c"
    src.write_text("int reflex_packet(void) { return 0; }\n")
    home = tmp_path / "home"
    assert main(["init", "--home", str(home), f"--{kind}", str(src)]) == 1
    err = capsys.readouterr().err
    assert "not a WebAssembly module" in err and f"pktlab {kind} build" in err
    assert not home.exists()
