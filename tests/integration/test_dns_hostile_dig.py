"""`pktlab run dns` side by side with dig 9.18 against dns_hostile_server.py (one process,
on `::`, so both families reach it): replies with another ID, question or source port,
a header cut short, compression pointers that loop, counts that lie, a 64 KB answer over
TCP. Both run at once (each waits out the same silences once); stdout must be the same
but for what differs by nature (test_dns_dig.normal, and the ID in a hex dump), and the
status dig's (ours with --dig-exit-codes)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from childserver import serve_child
from test_dns_dig import both, normal, pytestmark  # noqa: F401  (the skip without dig)

HERE = Path(__file__).resolve().parent
# the first line of `Got bad packet`'s hex dump: the message ID, in hex and as text
DUMP_ID = re.compile(r"^[0-9a-f]{2} [0-9a-f]{2}((?: [0-9a-f]{2}){14} {10})..", re.M)
IDS = re.compile(r"(ID mismatch: expected ID )\d+, got \d+")


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with serve_child(str(HERE / "dns_hostile_server.py"), "::") as number:
        yield number


def same(*words: str) -> str:
    a, b = both(["--dig-exit-codes", *words], words)
    assert "Traceback" not in a.stderr, a.stderr
    mine, theirs = (IDS.sub(r"\1Q, got Q+1", DUMP_ID.sub(r"ID ID\1ID", normal(x.stdout)))
                    for x in (a, b))  # fmt: skip
    mine = mine.replace("<<>> --dig-exit-codes ", "<<>> ")
    assert mine == theirs, (words, a.stderr)
    assert a.returncode == b.returncode, (words, a.stderr, b.stderr)
    return a.stdout


def test_what_is_not_the_reply_as_dig(port: int) -> None:
    """dig's warnings as the wrong messages come (another ID, another question, a short
    header), each try that timed out said, a reply from another port never seen (dig's
    socket is connected), over UDP on both families; over TCP dig's ERROR and the lookup
    over; pointer loops a bad packet, counts that lie its best effort."""
    names = ["wrongid.test", "wrongq.test", "wrongsrc.test", "onlywrongid.test",
             "onlywrongq.test", "onlywrongsrc.test", "short.test", "dropfirst.test",
             "loop.test", "loop2.test", "counts.test"]  # fmt: skip
    out = same("@127.0.0.1", "-p", str(port), "+tries=2", "+time=1", *names)
    assert out.count(";; Warning: ID mismatch: expected ID ") == 3
    assert out.count(";; ;; Question section mismatch: got other.test/A/IN") == 3
    assert ";; Warning: short (< header size) message received" in out
    assert out.count(";; Got bad packet: bad compression pointer") == 2
    assert "192.0.2.1" in out  # wrongsrc.test's right reply taken after the other
    out = same("@::1", "-p", str(port), "+tries=2", "+time=1", "+short", "wrongsrc.test",
               "onlywrongsrc.test", "wrongq.test", "AAAA")  # fmt: skip
    assert out.endswith("2001:db8::1\n") and "#" in out  # a timeout said, then the answer
    out = same(
        "@127.0.0.1", "@::1", "-p", str(port), "+tries=1", "+time=1", "onlywrongid.test", "a.test"
    )  # fmt: skip  (the next server: the other family)
    assert out.count(";; Warning: ID mismatch: expected ID ") == 2
    out = same("@127.0.0.1", "-p", str(port), "+tcp", "wrongid.test", "onlywrongq.test",
               "short.test", "a.test")  # fmt: skip
    assert ";; ERROR: ID mismatch: expected ID " in out
    assert ";; ERROR: short (< header size) message" in out


def test_a_64_kb_answer_over_tcp_as_dig(port: int) -> None:
    """TC over UDP, then ~65.35 KB of TXT over TCP (and +tcp at once)."""
    out = same("@127.0.0.1", "-p", str(port), "big.test", "TXT", "+tcp", "big.test", "TXT")
    assert out.count("MSG SIZE  rcvd: 653") == 2 and ";; Truncated, retrying in TCP mode." in out
