"""curl 7.88's command-line words that `pktlab run http` reads before argparse does:
`-K FILE`/`--config FILE` (the file's options in its place, as curl's tool_parsecfg.c
reads them), `--url URL` (an operand in its place) and `-q`/`--disable` (curl reads no
.curlrc after it; we read none at all). curl's `--json DATA`: `run_http_json`."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from packetlab.cli.run import RunError

MAX_DEPTH = 10  # -K inside a -K file, at most this deep (curl has no limit)
_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "v": "\v"}


def _read(name: str) -> str:
    try:
        if name == "-":
            return sys.stdin.read()
        with open(name, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except OSError as e:  # curl: "Warning: error trying read config from the 'x' file"
        raise RunError(f"-K/--config {name}: {e.strerror or e} (curl: a warning, and "
                       "the options not read)") from None  # fmt: skip


def config_words(text: str, takes_value: Callable[[str], bool], name: str = "",
                 warnings: list[tuple[int, str]] | None = None) -> list[str]:  # fmt: skip
    """The words of a curl config file as curl 7.88 reads it: a line is an option (a
    leading `--` optional; `-X` short ones too) and its value after blanks, `=` or `:`
    (a dashed option's after blanks: `-:` is --next, `--data=a=1` one word);
    a value in double quotes has \\t \\n \\r \\v and \\CHAR escapes, else it ends at a
    blank; empty lines and lines starting with `#`, `/` or `*` skipped (curl's comment
    characters). A value after an option that takes none is not read (curl warns);
    `json` with a value is curl's --json DATA (`--json=DATA`), without one our
    JSON-lines flag. An unquoted value with more after it on its line: curl's warning
    (`FILE:LINE: warning: ... uses unquoted whitespace ...`) added to `warnings` with
    the number of words before it (whether a -s came before: `expand`)."""
    words: list[str] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#/*":
            continue
        end = 0  # curl's ISSEP: `=` and `:` end an option only without a leading dash
        stops = " \t" if line.startswith("-") else " \t=:"  # (`-:` is --next's)
        while end < len(line) and line[end] not in stops:
            end += 1
        option, rest = line[:end], line[end:].lstrip(" \t=:")
        if not option.startswith("-"):
            option = "--" + option
        words.append(option)
        if option == "--json" and rest:  # curl's --json DATA (ours, alone: the flag)
            words[-1] = "--json="
        elif not takes_value(option):
            continue
        if rest.startswith('"'):
            value, i = [], 1
            while i < len(rest) and rest[i] != '"':
                if rest[i] == "\\" and i + 1 < len(rest):
                    i += 1
                    value.append(_ESCAPES.get(rest[i], rest[i]))
                else:
                    value.append(rest[i])
                i += 1
            value_text = "".join(value)
        else:
            value_text = rest.split()[0] if rest.split() else ""
            after = rest[len(value_text) :].strip()
            if after and not after.startswith("#") and warnings is not None:
                warnings.append((len(words), f"{name}:{lineno}: warning: '{option_text(line)}' "
                                 "uses unquoted whitespace in the line that may cause "
                                 "side-effects!"))  # fmt: skip
        if words[-1] == "--json=":
            words[-1] += value_text
        else:
            words.append(value_text)
    return words


def option_text(line: str) -> str:
    """A config line's option as curl's warning names it: as written."""
    stops = " \t" if line.startswith("-") else " \t=:"
    end = 0
    while end < len(line) and line[end] not in stops:
        end += 1
    return line[:end]


def _silent(words: Sequence[str], takes_value: Callable[[str], bool]) -> bool:
    """Whether -s/--silent is among `words` (curl mutes its warnings from then on)."""
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--silent":
            return True
        if word.startswith("-") and not word.startswith("--") and len(word) > 1:
            for c in word[1:]:
                if c == "s":
                    return True
                if takes_value("-" + c):
                    break
        if takes_value(word):
            i += 1
        i += 1
    return False


def expand(words: Sequence[str], takes_value: Callable[[str], bool],
           read: Callable[[str], str] = _read, depth: int = 0) -> list[str]:  # fmt: skip
    """`words` with curl's -K/--config, --url and -q read: the options of a config file
    in its place, a --url's URL as an operand in its place, -q dropped. A value of an
    option that takes one is passed over (`-A -K` is the User-Agent "-K")."""
    out: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        nxt = words[i + 1] if i + 1 < len(words) else None
        name, eq, value = word.partition("=")
        if word == "--":
            out += words[i:]
            break
        if (word in ("-K", "--config") and nxt is not None) or (eq and name == "--config"):
            if depth >= MAX_DEPTH:
                raise RunError(f"-K/--config: over {MAX_DEPTH} config files inside each other")
            name = value if eq else nxt or ""
            said: list[tuple[int, str]] = []
            inner = config_words(read(name), takes_value, name, said)
            for at, text in said:  # curl's warnings as it reads the file (-s before: none)
                if not _silent([*out, *inner[:at]], takes_value):
                    from packetlab.cli.run_http_opts import curl_warning

                    print(curl_warning(text), end="", file=sys.stderr, flush=True)
            out += expand(inner, takes_value, read, depth + 1)
            i += 1 if eq else 2
            continue
        if (word == "--url" and nxt is not None) or (eq and name == "--url"):
            out.append(value if eq else nxt or "")
            i += 1 if eq else 2
            continue
        if word not in ("-q", "--disable"):
            out.append(word)
            if takes_value(word) and nxt is not None:
                out.append(nxt)
                i += 1
        i += 1
    return out
