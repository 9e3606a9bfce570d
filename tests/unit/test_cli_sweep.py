"""Every `pktlab` sub-command, as an outside tester meets it: its --help documents each
option (and the default of each that has one), and a misuse (an unknown option, an
operand or option left out) is one `error:` line naming the problem, the documented exit
status, no traceback (docs/usability.md, session 20 (cli20))."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from packetlab.cli import build_parser, main

# The exit status of a usage error where it is not argparse's 2: `wrap` says its own
# failures as env(1) and timeout(1) do, so that CMD's own 2 stays CMD's (docs/wrap.md).
USAGE_STATUS = {"wrap": 125}


def _leaves() -> Iterator[tuple[list[str], argparse.ArgumentParser]]:
    todo: list[tuple[list[str], argparse.ArgumentParser]] = [([], build_parser())]
    while todo:
        path, parser = todo.pop()
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if path and not subs:
            yield path, parser
        for sub in subs:
            todo.extend(([*path, name], p) for name, p in sub.choices.items())


LEAVES = sorted(_leaves(), key=lambda leaf: leaf[0])
IDS = [" ".join(path) for path, _ in LEAVES]


def _needs_something(parser: argparse.ArgumentParser) -> bool:
    """Whether the command given nothing is a usage error (rather than a run)."""
    groups = parser._mutually_exclusive_groups
    return any(g.required for g in groups) or any(
        a.required and a.nargs not in ("*", "?", argparse.REMAINDER)
        for a in parser._actions
        if not isinstance(a, argparse._SubParsersAction)
    )


def _undocumented_default(action: argparse.Action) -> bool:
    if not action.option_strings or action.nargs == 0 or action.help == argparse.SUPPRESS:
        return False
    if action.default in (None, False, "", [], argparse.SUPPRESS):
        return False
    said = action.help or ""
    return not ("[" in said or "default" in said.lower() or "%(default)" in said)


@pytest.mark.parametrize(("path", "parser"), LEAVES, ids=IDS)
def test_help_documents_every_option_and_its_default(
    path: list[str], parser: argparse.ArgumentParser
) -> None:
    undocumented = [
        "/".join(a.option_strings) or a.dest
        for a in parser._actions
        if not isinstance(a, argparse._HelpAction) and not a.help
    ]
    assert not undocumented, f"pktlab {' '.join(path)}: no help for {undocumented}"
    silent = ["/".join(a.option_strings) for a in parser._actions if _undocumented_default(a)]
    assert not silent, f"pktlab {' '.join(path)}: default not stated for {silent}"


@pytest.mark.parametrize(("path", "parser"), LEAVES, ids=IDS)
def test_an_unknown_option_is_one_line_naming_it(
    path: list[str], parser: argparse.ArgumentParser, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*path, "--bogus-opt"])
    assert exc.value.code == USAGE_STATUS.get(path[0], 2)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if path == ["run", "traceroute"]:  # traceroute 2.1.2's own words (session 25, trace25)
        assert err == "pktlab run traceroute: Bad option `--bogus-opt' (argc 1)\n"
        return
    # The usage in one line, not argparse's list of every option (`run http`: 31 lines).
    usage, last = err.splitlines()
    assert usage.startswith(f"usage: pktlab {' '.join(path)} ")
    assert last.startswith(f"pktlab {' '.join(path)}: error: unrecognized arguments: --bogus-opt")


NEEDY = [leaf for leaf in LEAVES if _needs_something(leaf[1])]


@pytest.mark.parametrize(("path", "parser"), NEEDY, ids=[" ".join(p) for p, _ in NEEDY])
def test_a_missing_argument_is_one_line_naming_it(
    path: list[str], parser: argparse.ArgumentParser, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(path)
    assert exc.value.code == USAGE_STATUS.get(path[0], 2)
    usage, last = capsys.readouterr().err.splitlines()
    assert usage.startswith(f"usage: pktlab {' '.join(path)} ")
    assert last.startswith(f"pktlab {' '.join(path)}: error: ")
    assert "required" in last


@pytest.mark.parametrize(
    ("argv", "status", "last"),
    [
        (["--version"], 0, None),
        ([], 2, "pktlab: error: the following arguments are required: COMMAND"),
        (["bogus"], 2, "pktlab: error: argument COMMAND: invalid choice: 'bogus'"),
        (["--bogus-opt"], 2, "pktlab: error: unrecognized arguments: --bogus-opt"),
        # An option `wrap` does not know, before its CMD: was a TypeError traceback
        # (its operands' dest was the dispatcher's own `command`), status 1.
        (["wrap", "--bogus-opt", "--", "true"], 125, "pktlab wrap: error: unrecognized"),
        (["wrap", "--dns", "xyz", "--", "true"], 125, "pktlab wrap: error: argument --dns"),
        # A required choice between an operand and an option (`testbed down NAME|--all`)
        # no longer hides the unknown option.
        (["testbed", "down", "--bogus"], 2, "unrecognized arguments: --bogus"),
        (["run", "ping", "-c", "xyz", "h"], 1, "pktlab run ping: invalid argument: 'xyz'"),
        (["run", "sendgap", "--count", "xyz"], 2, "argument --count: invalid int value"),
    ],
)
def test_top_level_and_odd_misuses(
    argv: list[str], status: int, last: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == status
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    if last is None:
        assert out.out.startswith("pktlab ")
    else:
        assert last in out.err.splitlines()[-1]
