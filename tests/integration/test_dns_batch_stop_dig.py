"""`pktlab run dns -f FILE` beside dig 9.18 when a line of the file cannot be read (an
option dig does not know, a number it cannot parse, a dashed option, a later line's
`-y` without a secret) or holds a name that is not legal: dig asks the lines before it,
then stops with its error and status (1, or 10 for `Couldn't parse` and a name); ours
refused the whole file before any query, exit 2 (session 26, odds26). The standard
output is compared and the status with --dig-exit-codes."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_dns_dig import both, normal, port, pytestmark  # noqa: F401  (fixture; skip without dig)

FILES = {
    "option": ("a.test\nwww.test +bogusopt a.test\na.test\n", 1),
    "number": ("a.test\nwww.test +time=x\na.test\n", 10),
    "name": ("a.test\nwww.test b..test a.test\na.test\n", 10),
    "dash": ("a.test\nwww.test -z\na.test\n", 1),
    "later -y": ("a.test\nwww.test -y nosecret\na.test\n", 1),
}


@pytest.mark.parametrize("case", list(FILES))
def test_a_line_in_error_ends_the_run_in_its_turn_as_dig(
    port: int,  # noqa: F811
    case: str,
    tmp_path: Path,
) -> None:
    text, status = FILES[case]
    f = tmp_path / "batch"
    f.write_text(text)
    words = ["@127.0.0.1", "-p", str(port), "-f", str(f)]
    a, b = both(["--dig-exit-codes", *words], words)
    assert "Traceback" not in a.stderr, a.stderr
    assert normal(a.stdout) == normal(b.stdout), a.stderr
    assert a.stdout.count("ANSWER SECTION") >= 1  # the lines before it were asked
    assert a.returncode == b.returncode == status, (a.stderr, b.stderr)


def test_a_name_not_legal_on_the_command_line_as_dig(port: int) -> None:  # noqa: F811
    """dig asks the names before it, then stops at its lookup, exit 10 (ours refused
    the command line before any query)."""
    words = ["@127.0.0.1", "-p", str(port), "a.test", "b..test", "www.test"]
    a, b = both(["--dig-exit-codes", *words], words)
    mine = a.stdout.replace("<<>> --dig-exit-codes ", "<<>> ")  # ours in its banner
    assert normal(mine) == normal(b.stdout), a.stderr
    assert "ANSWER SECTION" in a.stdout
    assert a.returncode == b.returncode == 10
    assert a.stderr.endswith("'b..test' is not a legal name (empty label)\n")
