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
        if not 0.001 <= got[0] <= 60 or any(x > 1000 for x in got[1:]):
            raise argparse.ArgumentTypeError(
                f"must be 0.001..60 s (HERE, NEAR 0..1000), got {text}"
            )
        return tuple(got)

    return parse


def sendwait(parser: argparse.ArgumentParser, flags: Sequence[str]) -> Callable[[str], float]:
    """-z: seconds, or milliseconds when more than 10; a negative one `bad sendtime`."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise cannot_handle(parser, flags, text) from None
        if value < 0:
            raise NativeValueError(f"bad sendtime `{value:g}' specified", USAGE)
        if value > 10_000:
            raise argparse.ArgumentTypeError(f"must be 0..10000, got {text}")
        return value / 1000 if value > 10 else value

    return parse
