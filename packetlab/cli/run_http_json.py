"""curl 7.82's `--json DATA` in `pktlab run http`, where `--json` is also every `run`
command's JSON-lines output flag: which one a `--json` on the command line is.

The rule (docs/http.md, `--help`): the word after `--json` is curl's DATA when it starts
with `@` (a file, `@-` stdin) or is JSON (an object, an array, a string in quotes, a
number, true, false, null); otherwise `--json` is the output flag and the word is read
as usual (a URL, an option). `--json=DATA` is always curl's DATA, sent as is (so data
that is not JSON can still be sent, as curl sends it). A word starting with `{` or `[`
that is not JSON and has no `://` (no URL) is refused: it was meant as data.

The words are rewritten before argparse reads them: curl's `--json DATA` becomes
`--data-binary` with DATA marked (`JSON_MARK`: a NUL, which no real argument holds), so
that it keeps its place among the -d options (curl joins a --json to what is before it
without `&`)."""

from __future__ import annotations

import json
from collections.abc import Sequence

JSON_MARK = "\0json:"  # a --data-binary value that is curl's --json DATA
BAD_MARK = "\0json-bad:"  # one that looked like data and is not JSON: refused by the run

HELP = (
    "print JSON lines instead of a table; or curl's --json DATA (7.82): a POST of DATA "
    "with Content-Type and Accept application/json, when the word after --json starts "
    'with @ (@FILE, @-) or is JSON ({...}, [...], "text", a number, true, false, '
    "null); --json=DATA always curl's DATA (sent as is); several joined as curl's"
)


def is_json(word: str) -> bool:
    """JSON text as RFC 8259 has it (not Python's NaN and Infinity)."""

    def refuse(name: str) -> object:
        raise ValueError(name)

    try:
        json.loads(word, parse_constant=refuse)
    except ValueError:
        return False
    return True


def data_word(word: str) -> bool:
    """The word after `--json` is curl's DATA."""
    return word.startswith("@") or is_json(word)


def rewrite(words: Sequence[str]) -> list[str]:
    """`words` with each curl `--json DATA` (and `--json=DATA`) made `--data-binary`
    with DATA marked; `--` ends the options, as argparse's."""
    out: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        nxt = words[i + 1] if i + 1 < len(words) else None
        if word == "--":
            out += words[i:]
            break
        if word.startswith("--json="):
            out += ["--data-binary", JSON_MARK + word[len("--json=") :]]
        elif word == "--json" and nxt is not None and data_word(nxt):
            out += ["--data-binary", JSON_MARK + nxt]
            i += 1
        elif word == "--json" and nxt is not None and _meant_as_data(nxt):
            out += ["--data-binary", BAD_MARK + nxt]
            i += 1
        else:
            out.append(word)
        i += 1
    return out


def _meant_as_data(word: str) -> bool:
    return word.lstrip()[:1] in ("{", "[") and "://" not in word


def bad_json(word: str) -> str:
    """The one line for a `--json WORD` that starts like JSON and is not."""
    try:
        json.loads(word)
        why = "not JSON"
    except ValueError as e:
        why = f"not JSON ({e})"
    return (f"--json {word!r}: {why}, and no URL; --json={word} sends it as is, as curl "
            "would")  # fmt: skip
