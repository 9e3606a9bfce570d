"""`pktlab run dns` side by side with dig (BIND 9.18) on command lines whose banner is over
dig's 1,023 bytes, against dns_zone_server.py on loopback: dig cuts its banner there (a
buffer of 1,024 bytes) and what follows runs on from the cut line; and batch files' long
lines, which dig reads 1,023 bytes and 13 words (split at blanks) at a time (session 30,
dig30).

The cut falls at the same byte of each program's banner; the banners' program names are
not of one length, so each cuts its words elsewhere: compared are the banners' words (the
shorter a prefix of the longer) and the output after the 1,023rd byte."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from ports import closed_udp_port
from test_dns_dig import both, normal, pytestmark, side_by_side, zone_server  # noqa: F401  (dig missing)

CUT = 1023
PROGRAM = re.compile(r"^\n?; <<>> .*? <<>>")


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    yield from zone_server("127.0.0.1")


def cut_alike(mine: list[str], theirs: list[str]) -> tuple[str, str]:
    """Ours (`mine`) and dig's (`theirs`) outputs, each banner cut at 1,023 bytes with the
    same words before its cut, the same after it; their texts after the cut."""
    a, b = both(mine, theirs)
    assert "Traceback" not in a.stderr, a.stderr
    heads, tails, before = [], [], []
    for p in (a, b):
        raw = p.stdout.encode()
        start = raw.index(b"\n; <<>> ")  # the run's first banner: its line end counts
        banner = raw[start : start + CUT].decode()
        assert PROGRAM.match(banner), p.stdout[:200]
        heads.append(PROGRAM.sub("", banner, count=1))
        tails.append(raw[start + CUT :].decode())
        before.append(raw[:start].decode())
    assert normal(before[0]) == normal(before[1])
    short, long = sorted(heads, key=len)
    assert long.startswith(short) and "\n" not in long[-1:], heads
    assert normal(tails[0]) == normal(tails[1]), (mine, a.stderr)
    return tails[0], tails[1]


def test_a_long_banner_is_cut_as_digs(port: int, tmp_path: Path) -> None:
    at = ["@127.0.0.1", "-p", str(port)]
    pad = ["+norec"] * 150
    mine, theirs = cut_alike([*at, "a.test", *pad], [*at, "a.test", *pad])
    assert theirs.startswith(";; Got answer:\n") and mine.startswith(";; Got answer:\n")
    tail = cut_alike([*at, "a.test", "+nocomments", *pad], [*at, "a.test", "+nocomments", *pad])
    assert tail[1].startswith(";a.test.\t\t\t\tIN\tA\na.test.")
    tail = cut_alike([*at, "mx.test", "MX", "+qr", *pad], [*at, "mx.test", "MX", "+qr", *pad])
    assert tail[1].startswith(";; Sending:\n")
    # a batch file's first line: dig reads 13 words of it (the banner's; the rest ignored)
    batch = tmp_path / "names"
    batch.write_text("a.test +norec " + "+noad " * 20 + "MX\nmx.test MX\n")
    side_by_side(*at, "-f", str(batch))
    # a line over 1,023 bytes: dig reads the rest as a line of its own (`b.test +norec`)
    batch.write_text("a.test" + " " * 1017 + "b.test +norec\nmx.test MX\n")
    out = side_by_side(*at, "-f", str(batch))
    assert out.count("; <<>> ") == 3 and ";b.test.\t\t\t\tIN\tA" in out
    # words split at blanks alone: a backslash and quotes are the name's own
    batch.write_text('a\\.b.test\n"a.test" +short\nmx.test\tMX +nocmd\n')
    out = side_by_side(*at, "+nocomments", "+nostats", "-f", str(batch))
    assert ";a\\.b.test.\t\t\tIN\tA" in out and "\n192.0.2.1\n" not in out
    # a closed port: what follows the cut banner is `no servers could be reached`
    closed = str(closed_udp_port())  # a UDP port nobody reads
    words = ["@127.0.0.1", "-p", closed, "a.test", "+tries=1", *pad]
    tail = cut_alike(words, words)
    assert tail[1] == ";; no servers could be reached\n"


def test_a_character_cut_at_the_1023rd_byte_keeps_its_first_byte_as_digs() -> None:
    """Words of `é` (2 bytes) to a closed port: where the cut falls inside one, dig
    9.18.49 writes its first byte, then what follows (`...\\xc3;; no servers could be
    reached`); ours dropped it (the cut 1,022 bytes in: session 30's leftover, fixed in
    session 31, odds31). The programs' names differ in length: lead words of 4 lengths
    move each program's cut into a character; ours under a strict UTF-8 stdout too."""
    import os
    import subprocess

    from test_dns_dig import REPO, RUN

    closed = str(closed_udp_port())  # a UDP port nobody reads
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONIOENCODING="utf-8:strict")
    split = {}
    for name in ("a.test", "ab.test", "abc.test", "abcd.test"):  # (the cut: 4 places)
        words = ["@127.0.0.1", "-p", closed, "+tries=1", name, *["\u00e9" * 10] * 60]
        for who, argv in (("ours", [*RUN, *words]), ("dig", ["dig", *words])):
            p = subprocess.run(argv, capture_output=True, timeout=120, env=env, cwd=REPO)
            raw = p.stdout
            start = raw.index(b"\n; <<>> ")
            after = raw[start + CUT :]
            assert after.startswith(b";; no servers could be reached\n"), (who, name, p.stderr)
            if raw[start + CUT - 1] == 0xC3:  # the first byte of a cut character
                split[who] = name
    assert set(split) == {"ours", "dig"}, split
