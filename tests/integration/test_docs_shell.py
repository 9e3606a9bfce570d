"""The shell commands of the docs (README.md and docs/*.md but performance.md's
benchmarks), as a new user runs them (session 23, doctour23; test_docs_code.py does the
Python blocks):

* every `pktlab ...` command line of an `sh`/`console` block must parse: its command,
  sub-command and options exist (what `pktlab` would say `unrecognized arguments` or
  `invalid choice` to);
* every option of a documented `twistd pktendpoint|pktbroker|pktproxy` line must be one
  that daemon's `--help` lists;
* the cheap commands that end at once (`pktlab decode|encode|monitor|reflex|ppks|init`,
  `tcpdump -r FILE`, the daemons' error examples, and the `echo`/`printf` pipelines into
  them) are run, block
  by block in a fresh directory with a `pktlab init` home as `~`, and where the block
  shows their output, that output must be what they print (stdout, then stderr). In the
  shown output a line `...` stands for any lines, `…` for any text, a hex prefix ending in
  `…` or `...` for any hex digits, and `/home/me` for the home; lines may be wrapped.

So a doc's command line or shown output cannot drift from the code without a failure."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md"] + [
    p for p in sorted((REPO / "docs").glob("*.md")) if p.name != "performance.md"
]
BLOCK = re.compile(r"^[ \t]*```(sh|console|bash|shell)\n(.*?)^[ \t]*```", re.S | re.M)
SEPARATORS = {"|", "&&", ";", "&", "||"}
PREFIXES = {"sudo", "nohup", "time", "env"}
VENV_BIN = Path(sys.executable).parent


@dataclass
class Command:
    where: str  # page:line
    line: str  # as written (continuations joined)
    segments: list[list[str]]  # the words of each part of a pipeline or list
    shown: list[str] = field(default_factory=list)  # the output lines the doc shows


def _segments(line: str) -> list[list[str]] | None:
    text = re.sub(r"\$\([^)]*\)", "SUBST", line)  # $(...) stands for one word
    try:
        lexer = shlex.shlex(text, posix=True, punctuation_chars="|&;")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words = list(lexer)
    except ValueError:
        return None
    out: list[list[str]] = [[]]
    for w in words:
        if w in SEPARATORS:
            out.append([])
        else:
            out[-1].append(w)
    cleaned = []
    for seg in out:
        while seg and (seg[0] in PREFIXES or re.fullmatch(r"[A-Z_]+=.*", seg[0])):
            seg = seg[1:]
        if seg[:3] == ["ip", "netns", "exec"]:
            seg = seg[4:]
        if seg and seg[0] == "nice":
            seg = seg[3:] if seg[1:2] == ["-n"] else seg[1:]
        if seg:
            cleaned.append([("pktlab" if seg[0].endswith("bin/pktlab") else seg[0]), *seg[1:]])
    return cleaned


def block_commands(where_page: str, first_line: int, lang: str, text: str) -> list[Command]:
    """The commands of one block. With prompts (`$ `, and `# ` in a console block) only
    the prompted lines are commands and the others their output; without, every line
    that is not a comment."""
    lines = text.splitlines()
    prompts = ("$ ", "# ") if lang == "console" else ("$ ",)
    prompted = any(ln.lstrip().startswith(prompts) for ln in lines)
    cmds: list[Command] = []
    i = 0
    while i < len(lines):
        raw, start = lines[i].strip(), i
        i += 1
        if prompted and not raw.startswith(prompts):
            if cmds:
                cmds[-1].shown.append(lines[start])
            continue
        if not prompted and (not raw or raw.startswith("#")):
            continue
        line = raw[2:] if prompted else raw
        while line.endswith("\\") and i < len(lines):
            line = line[:-1] + " " + lines[i].strip()
            i += 1
        segments = _segments(line)
        while segments is None and i < len(lines):  # a quoted string over lines
            line += "\n" + lines[i]
            i += 1
            segments = _segments(line)
        if segments:
            cmds.append(Command(f"{where_page}:{first_line + start}", line, segments))
    for c in cmds:  # blank lines around the output are none of it
        while c.shown and not c.shown[-1].strip():
            c.shown.pop()
        while c.shown and not c.shown[0].strip():
            c.shown.pop(0)
    return cmds


def documented() -> list[list[Command]]:
    """Every block's commands, block by block."""
    blocks = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for m in BLOCK.finditer(text):
            first = text[: m.start()].count("\n") + 2
            cmds = block_commands(page.name, first, m.group(1), m.group(2))
            if cmds:
                blocks.append(cmds)
    return blocks


BLOCKS = documented()
ALL = [c for b in BLOCKS for c in b]


def test_the_docs_have_shell_commands() -> None:
    pktlab = [c for c in ALL if any(s[0] == "pktlab" for s in c.segments)]
    assert len(pktlab) > 100, len(pktlab)
    assert any(c.shown for c in ALL)


def _pktlab_lines() -> list[tuple[str, list[str]]]:
    return [
        (c.where, seg[1:])
        for c in ALL
        for seg in c.segments
        if seg[0] == "pktlab" and "..." not in seg and "…" not in seg
    ]


def test_every_documented_pktlab_command_line_parses() -> None:
    """Parsed as `pktlab` parses it (nothing runs): an option, a sub-command or a
    command the code no longer has fails here, naming the page and line."""
    from packetlab.cli import parse

    bad = []
    for where, argv in _pktlab_lines():
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                parse(argv)
        except SystemExit as e:
            if e.code not in (0, None):
                said = err.getvalue().strip().splitlines()
                bad.append(f"{where}: pktlab {shlex.join(argv)}\n    {said[-1] if said else e}")
    assert not bad, "\n".join(bad)


@pytest.fixture(scope="module")
def tap_options() -> dict[str, set[str]]:
    """The long and short options each daemon's `--help` lists, and twistd's own (from
    real twistd processes: importing a tap in this process would run its start-up)."""
    from packetlab.controller.local import twistd_command

    option = re.compile(r"(?<![\w-])(--[a-z][\w-]*|-[a-zA-Z])\b")
    got: dict[str, set[str]] = {}
    for name in ("twistd", "pktendpoint", "pktbroker", "pktproxy"):
        argv = (
            [*twistd_command(), "--help"]
            if name == "twistd"
            else [*twistd_command(), name, "--help"]
        )
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout
        got[name] = set(option.findall(out))
    return got


def test_every_documented_daemon_option_exists(tap_options: dict[str, set[str]]) -> None:
    bad = []
    for c in ALL:
        for seg in c.segments:
            if seg[0] != "twistd":
                continue
            tap = next((w for w in seg[1:] if w in tap_options), None)
            if tap is None:
                continue
            at = seg.index(tap)
            for word in seg[1:at]:  # twistd's own options
                name = word.split("=", 1)[0]
                if name.startswith("-") and name not in tap_options["twistd"]:
                    bad.append(f"{c.where}: twistd option {name}")
            for word in seg[at + 1 :]:
                name = word.split("=", 1)[0]
                if name.startswith("-") and name != "--" and name not in tap_options[tap]:
                    bad.append(f"{c.where}: twistd {tap} has no option {name}")
    assert not bad, "\n".join(bad)


# What is run: commands that end at once, on files of the checkout or made by the block.
RUN = re.compile(r"^pktlab (decode|encode|monitor|reflex|ppks|init)\b")
HELPERS = {"echo", "printf", "head", "cut"}


def _runnable(c: Command) -> bool:
    words = [" ".join(s) for s in c.segments]
    if any("..." in s or "…" in s for s in c.segments):
        return False
    if any(w.startswith("/") and not w.startswith("/dev/") for s in c.segments for w in s):
        return False  # (broker.md's /secure/k_bop: nothing is written outside the test's)
    daemon_error = c.shown and c.segments[0][:3] == ["twistd", "-n", "pktendpoint"]
    return all(
        RUN.match(w) or w.split()[0] in HELPERS or _reads_a_pcap(w.split()) for w in words
    ) or bool(daemon_error)


def _reads_a_pcap(words: list[str]) -> bool:
    """`tcpdump -r FILE ...` (docs/wire.md's example pcap; session 24): it ends at once,
    unlike a capture (`tcpdump -i`), which is never run."""
    return words[0] == "tcpdump" and "-r" in words and "-i" not in words


def _pattern(shown: list[str], home: str) -> re.Pattern[str]:
    """The shown lines as a pattern over the output with its whitespace collapsed (the
    docs wrap long lines, and tables' columns need not be counted)."""
    pattern, first = "", True
    for line in shown:
        text = " ".join(line.replace("/home/me", home).split())
        if text in ("...", "…"):
            pattern += r"(?:.*? )?" if first else r"(?: .*?)?"
            continue
        pat = re.escape(text)
        pat = re.sub(r"([0-9a-f]+)(?:…|\\\.\\\.\\\.)", r"[0-9a-f]+(?:…|\\.\\.\\.)?", pat)
        pat = pat.replace("…", ".*?")
        pattern += pat if first or pattern.endswith("(?:.*? )?") else " " + pat
        first = False
    return re.compile(pattern, re.S)


# Files a block's commands expect that an earlier block of the page made.
SETUP = {
    # docs/monitors.md, "Writing a monitor": my_monitor.c is tcp_only.c (the C block above)
    "monitors.md": lambda cwd: shutil.copy(
        REPO / "examples/monitors/tcp_only.c", cwd / "my_monitor.c"
    ),
    # docs/endpoint.md's bad.conf: its line 7 an address that is none
    "endpoint.md": lambda cwd: (cwd / "bad.conf").write_text(
        "# endpt.conf\n" * 6 + "VMemLocalAddrStrIPv4 10.0.0.300\n"
    ),
}

RUN_BLOCKS = [b for b in BLOCKS if any(_runnable(c) for c in b)]


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from packetlab.cli.init import init_home
    from packetlab.ppks import PktlabHome

    home = tmp_path_factory.mktemp("docs-shell") / "home"
    init_home(PktlabHome.at(home / ".pktlab"))
    return home


@pytest.mark.parametrize("block", RUN_BLOCKS, ids=[b[0].where for b in RUN_BLOCKS])
def test_the_shown_output(block: list[Command], tmp_path: Path, demo_home: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(demo_home, home)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "examples").symlink_to(REPO / "examples")
    (cwd / ".venv").symlink_to(VENV_BIN.parent)
    page = block[0].where.split(":")[0]
    if page in SETUP:
        SETUP[page](cwd)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PKTLAB_")}
    env.update(HOME=str(home), PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    ran = 0
    for c in block:
        if not _runnable(c):
            continue
        got = subprocess.run(
            ["bash", "-c", c.line], capture_output=True, text=True, timeout=60, cwd=cwd,
            env=env, check=False,
        )  # fmt: skip
        ran += 1
        out = got.stdout + got.stderr
        assert "Traceback" not in out, f"{c.where}: {c.line}\n{out}"
        if c.shown:
            pattern = _pattern(c.shown, str(home))
            assert pattern.fullmatch(" ".join(out.split())), (
                f"{c.where}: {c.line}\n--- the doc shows:\n"
                + "\n".join(c.shown)
                + f"\n--- it prints (status {got.returncode}):\n{out}"
            )
    assert ran


def _command_paths() -> list[list[str]]:
    """Every `pktlab` command and sub-command (`run http`, `ppks sign`, ...)."""
    import argparse

    from packetlab.cli import build_parser

    def subs(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                return dict(a.choices)
        return {}

    out: list[list[str]] = []
    for name, p in subs(build_parser()).items():
        out.append([name])
        out += [[name, s] for s in subs(p)]
    return out


def test_every_command_s_help_is_there() -> None:
    """`pktlab X --help` and `pktlab X Y --help` for every command: status 0, a usage line
    naming it, no traceback (the brief's first-day check; the text itself is the
    parser's, so it cannot drift from the options)."""
    from packetlab.cli import parse

    paths = _command_paths()
    assert ["run", "http"] in paths and ["ppks", "sign"] in paths and len(paths) > 40
    for path in paths:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as e:
            parse([*path, "--help"])
        assert e.value.code in (0, None), path
        assert out.getvalue().startswith(f"usage: pktlab {' '.join(path)}"), path


def test_every_documented_file_of_the_checkout_exists() -> None:
    """The test files, scripts and examples the docs' command lines name (a renamed test
    file made `pytest tests/...` collect nothing, or fail). `examples/mlets/NAME` without a
    suffix is what `make -C examples/mlets` builds."""
    roots = ("tests/", "stress/", "examples/", "scripts/", "benchmarks/", "docs/")
    bad = []
    for c in ALL:
        for seg in c.segments:
            for w in seg:
                path = w.split("::")[0].split("=")[-1]
                if not path.startswith(roots) or any(ch in path for ch in "*?[{$"):
                    continue
                if path.startswith("examples/mlets/") and "." not in Path(path).name:
                    continue
                if not (REPO / path).exists():
                    bad.append(f"{c.where}: {path}")
    assert not bad, "\n".join(bad)
