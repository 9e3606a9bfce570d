"""traceroute 2.1.2's own words for a bad number on its command line (its option parser's
`Cannot handle ...` and its range checks), for `pktlab run traceroute`'s -q, -m, -f, -w
and -z: one line after `pktlab run traceroute: `, exit 2, no usage line
(`cli.NativeValueError`). Checked against traceroute itself (docs/usability.md,
session 25). Our own limits beyond traceroute's (-w at most 60 s, -z 10,000 ms) keep
their words."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from packetlab.cli import NativeValueError

USAGE = 2  # traceroute's status for a bad command line


def value_argc(seen: Sequence[str], flags: Sequence[str], text: str) -> tuple[str, int]:
    """The flag as typed and traceroute's `argc` of an option's value: the place of the
    word holding it on the command line (1: the first word after the command's name),
    as its parser counts (`-q abc`: the value's word; `-qabc`, `--sport=abc`: the one)."""
    for i, word in enumerate(seen):
        if word in flags and i + 1 < len(seen) and seen[i + 1] == text:
            return word, i + 2
        for flag in flags:
            if word in (flag + text, f"{flag}={text}"):
                return flag, i + 1
    return flags[0], 0


def cannot_handle(parser: argparse.ArgumentParser, flags: Sequence[str], text: str) -> Exception:
    seen: Sequence[str] = getattr(parser, "_seen", ())
    flag, argc = value_argc(seen, flags, text)
    return NativeValueError(f"Cannot handle `{flag}' option with arg `{text}' (argc {argc})", USAGE)


def count(
    parser: argparse.ArgumentParser, flags: Sequence[str], lo: int, hi: int, words: str
) -> Callable[[str], int]:
    """An integer option: a word that is no number in the parser's words, one outside
    lo..hi in traceroute's `words` for it."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise cannot_handle(parser, flags, text) from None
        if not lo <= value <= hi:
            raise NativeValueError(words, USAGE)
        return value

    return parse


def max_ttl(parser: argparse.ArgumentParser, flags: Sequence[str]) -> Callable[[str], int]:
    """-m: above 255 `max hops cannot be more than 255`; below 1 the first hop (1) is
    past it: `first hop out of range`, as traceroute says."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise cannot_handle(parser, flags, text) from None
        if value > 255:
            raise NativeValueError("max hops cannot be more than 255", USAGE)
        if value < 1:
            raise NativeValueError("first hop out of range", USAGE)
        return value

    return parse


def wait_spec(
    parser: argparse.ArgumentParser, flags: Sequence[str]
) -> Callable[[str], tuple[float, ...]]:
    """-w MAX[,HERE[,NEAR]] as numbers; HERE and NEAR 0 when not given (traceroute sets
    both to 0 before it reads the word: `-w 2` waits 2 s for every probe)."""

    def parse(text: str) -> tuple[float, ...]:
        parts = text.split(",")
        try:
            got = [float(x) for x in parts]
        except ValueError:
            raise cannot_handle(parser, flags, text) from None
        if len(got) > 3:
            raise cannot_handle(parser, flags, text)
        got += [0.0] * (3 - len(got))
        if any(x < 0 for x in got):
            shown = ",".join(f"{x:g}" for x in got)
            raise NativeValueError(f"bad wait specifications `{shown}' used", USAGE)
        if not got[0] <= 60 or any(x > 1000 for x in got[1:]):  # (0: traceroute's too)
            raise argparse.ArgumentTypeError(f"must be 0..60 s (HERE, NEAR 0..1000), got {text}")
        return tuple(got)

    return parse


def sendwait(parser: argparse.ArgumentParser, flags: Sequence[str]) -> Callable[[str], float]:
    """-z: seconds, or milliseconds from 10 on (traceroute's `send_secs >= 10`: its man
    page says "more than 10", but `-z 10` is 10 ms); a negative one `bad sendtime`."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise cannot_handle(parser, flags, text) from None
        if value < 0:
            raise NativeValueError(f"bad sendtime `{value:g}' specified", USAGE)
        if value > 10_000:
            raise argparse.ArgumentTypeError(f"must be 0..10000, got {text}")
        return value / 1000 if value >= 10 else value

    return parse


# traceroute 2.1.2's names of its options' values (its --help), for `requires an
# argument`: `-q nqueries`, `--sport=num`
VALUE_NAMES = {
    "-f": "first_ttl", "-g": "gate,...", "-i": "device", "-m": "max_ttl", "-N": "squeries",
    "-p": "port", "-t": "tos", "-l": "flow_label", "-w": "MAX,HERE,NEAR", "-q": "nqueries",
    "-s": "src_addr", "-z": "sendwait", "-M": "name", "-O": "OPTS,...",
    "--first": "first_ttl", "--gateway": "gate,...", "--interface": "device",
    "--max-hops": "max_ttl", "--sim-queries": "squeries", "--port": "port", "--tos": "tos",
    "--flowlabel": "flow_label", "--wait": "MAX,HERE,NEAR", "--queries": "nqueries",
    "--source": "src_addr", "--sendwait": "sendwait", "--module": "name",
    "--options": "OPTS,...", "--sport": "num", "--fwmark": "num",
}  # fmt: skip


class CommandLineError(Exception):
    """traceroute's line for a command line its parser refuses."""


def _asks_help(parser: argparse.ArgumentParser, word: str) -> bool:
    """--help, --version or a prefix of either (argparse prints them)."""
    found = parser._parse_optional(word) if word.startswith("--") and word != "--" else None
    action = found[0] if found is not None else None
    return isinstance(action, argparse._HelpAction | argparse._VersionAction)


def _takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0


def _option(parser: argparse.ArgumentParser, word: str, argc: int) -> str | None:
    """The flag of `word` (an option, or short ones run together) that takes the next
    word as its value, None when none does; CommandLineError for an unknown one."""
    if word.startswith("--"):
        found = parser._parse_optional(word)
        action = found[0] if found else None
        if action is None:
            _, eq, value = word.partition("=")
            arg = f" (with arg `{value}')" if eq else ""
            raise CommandLineError(f"Bad option `{word}'{arg} (argc {argc})")
        return word if _takes_value(action) and "=" not in word else None
    actions = parser._option_string_actions
    if word in actions:  # (-UL, -4...)
        return word if _takes_value(actions[word]) else None
    for at, char in enumerate(word[1:], start=2):
        action = actions.get(f"-{char}")
        if action is None:
            raise CommandLineError(f"Bad option `-{char}' (argc {argc})")
        if _takes_value(action):  # (-q3: the value in the word; -q, -nq: the next one)
            return f"-{char}" if at == len(word) else None
    return None


def host_not_handled(error: Exception, host: str, argc: int | None) -> str:
    """traceroute's two lines for a host it cannot resolve: the resolver's, then
    ``Cannot handle "host" cmdline arg `HOST' on position 1 (argc N)``."""
    if argc is None:  # (parsed without `check_words`: the resolver's line alone)
        return str(error)
    return f'{error}\nCannot handle "host" cmdline arg `{host}\' on position 1 (argc {argc})'


def check_words(parser: argparse.ArgumentParser, words: list[str]) -> list[str]:
    """traceroute's words for a command line its parser refuses, before argparse reads
    it (a `cli._Parser`'s `read_words`): an unknown option (``Bad option `-x' (argc
    2)``), one without its value at the end (``Option `-q' (argc 1) requires an argument:
    `-q nqueries'``), a third operand (``Extra arg `7' (position 3, argc 3)``) and none
    (`Specify "host" missing argument.`); one line after `pktlab run traceroute: `, exit
    2. Anything else is argparse's to judge; `words` come back as they were."""
    operands, i = 0, 0
    if not words:  # (traceroute prints its usage: so does argparse)
        return words
    try:
        while i < len(words):
            word, argc = words[i], i + 1
            if word in ("-h", "-V") or _asks_help(parser, word):
                return words
            if word == "--":
                rest = words[i + 1 :]
                if operands == 0 and rest:
                    parser.set_defaults(_host_argc=i + 2)
                if operands + len(rest) > 2:
                    at = 2 - operands
                    raise CommandLineError(
                        f"Extra arg `{rest[at]}' (position 3, argc {i + 2 + at})"
                    )
                operands += len(rest)
                break
            if word.startswith("-") and len(word) > 1:  # (-5 too: traceroute's Bad option)
                flag = _option(parser, word, argc)
                if flag is not None:
                    if i + 1 == len(words):
                        name = VALUE_NAMES.get(flag)
                        if name is None:
                            return words  # (one of ours: argparse's words)
                        shown = f"{flag}={name}" if flag.startswith("--") else f"{flag} {name}"
                        raise CommandLineError(
                            f"Option `{flag}' (argc {argc}) requires an argument: `{shown}'"
                        )
                    i += 1
            else:
                operands += 1
                if operands == 1:  # (the host's place, for `Cannot handle "host" ...`)
                    parser.set_defaults(_host_argc=argc)
                if operands > 2:
                    raise CommandLineError(f"Extra arg `{word}' (position {operands}, argc {argc})")
            i += 1
        if operands == 0:
            raise CommandLineError('Specify "host" missing argument.')
    except CommandLineError as e:
        parser.exit(USAGE, f"{parser.prog}: {e}\n")
    return words
