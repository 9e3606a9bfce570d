"""`pktlab run dns` side by side with dig 9.18 against a server that enforces DNS cookies
(dns_requeue_server.py, session 26, dns26): BADCOOKIE asked again with the server's
cookie over UDP, then over TCP (`;; BADCOOKIE, retrying.`, `... in TCP mode.`), a
reply whose COOKIE is not ours (`;; Warning: Client COOKIE mismatch`), +nobadcookie,
+qr, +short. Before session 26 ours printed the first BADCOOKIE reply as the
answer and said nothing of a COOKIE that was not ours (but `(bad)`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from childserver import serve_child
from test_dns_dig import both, normal, ours, pytestmark  # noqa: F401  (skip without dig)

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with serve_child(str(HERE / "dns_requeue_server.py"), "127.0.0.1") as number:
        yield number


CASES = [
    ["enforce.ck"],
    ["always.ck"],
    ["everywhere.ck"],
    ["mismatch.ck"],
    ["mismatchbad.ck"],
    ["noopt.ck"],
    ["tcmismatch.ck"],
    ["tcbad.ck"],
    ["+short", "enforce.ck", "mismatch.ck"],
    ["+nocomments", "always.ck"],
    ["+noall", "+answer", "mismatch.ck"],
    ["+nobadcookie", "enforce.ck"],
    ["enforce.ck", "+nobadcookie", "always.ck"],
    ["+nocookie", "enforce.ck"],
    ["+cookie=0102030405060708", "always.ck"],
    ["+cookie=0102030405060708", "tcmismatch.ck"],
    ["+cookie=01020304", "mismatch.ck"],
    ["+tcp", "everywhere.ck"],
    ["+qr", "always.ck"],
    ["+qr", "tcbad.ck"],
    ["+edns=1", "enforce.ck"],
    ["+edns=2", "v1.ck"],
    ["+edns=1", "v1.ck"],
    ["+edns=5", "+qr", "v1.ck"],
    ["+edns=1", "liar.ck"],
    ["+edns=4", "liar.ck"],
    ["+edns=4", "+noednsneg", "liar.ck"],
    # +showbadcookie (session 26, odds26: it was refused as not built): each BADCOOKIE
    # reply printed whole before its retry's remark, as dig 9.18.49
    ["+showbadcookie", "enforce.ck", "always.ck"],
    ["+showbadcookie", "+short", "always.ck"],
    ["+showbadcookie", "+qr", "always.ck"],
    ["+showbadcookie", "+nocomments", "enforce.ck"],
    ["+showbadcookie", "+noall", "+answer", "always.ck"],
    ["+showbadcookie", "+nostats", "always.ck"],
    ["+showbadcookie", "+tcp", "everywhere.ck"],
    ["+showbadcookie", "mismatchbad.ck", "noopt.ck", "tcbad.ck"],
    ["+showbadcookie", "+nobadcookie", "enforce.ck"],
    ["+showb", "enforce.ck", "+noshowbadcookie", "always.ck"],
]


@pytest.mark.parametrize("words", CASES, ids=[" ".join(c) for c in CASES])
def test_cookies_as_dig(port: int, words: list[str]) -> None:
    at = ["@127.0.0.1", "-p", str(port)]
    a, b = both([*at, *words], [*at, *words])
    assert "Traceback" not in a.stderr, a.stderr
    assert normal(a.stdout) == normal(b.stdout), (words, a.stderr)
    assert a.returncode == b.returncode == 0


def test_the_retry_is_what_a_researcher_reads(port: int) -> None:
    """The first BADCOOKIE is not the answer (it was, before session 26)."""
    a = ours("@127.0.0.1", "-p", str(port), "always.ck")
    assert a.stdout.startswith(";; BADCOOKIE, retrying.\n;; BADCOOKIE, retrying in TCP mode.\n")
    assert "status: NOERROR" in a.stdout and "(TCP)" in a.stdout


def test_showbadcookie_in_yaml_as_dig(port: int) -> None:
    """+showbadcookie +yaml: a MESSAGE item for each BADCOOKIE reply, then the answer's
    (session 26, odds26), the same as dig but for the times, the IDs and the cookie."""
    from test_dns_options_dig import YAML_NATURE

    def yaml_normal(text: str) -> str:
        for pattern, repl in YAML_NATURE:
            text = pattern.sub(repl, text)
        return text

    words = ["@127.0.0.1", "-p", str(port), "+showbadcookie", "+yaml", "always.ck"]
    a, b = both(words, words)
    assert yaml_normal(a.stdout) == yaml_normal(b.stdout), a.stderr
    assert a.stdout.count("status: BADCOOKIE") == 2


@pytest.fixture(scope="module")
def port2() -> Iterator[int]:
    """The same server on 127.0.0.2: 127.0.0.1 at its port refuses (nothing listens)."""
    with serve_child(str(HERE / "dns_requeue_server.py"), "127.0.0.2") as number:
        yield number


REQUEUED = [
    ["+tries=1", "enforce.ck"],
    ["enforce.ck"],
    ["+tries=1", "always.ck"],
    ["always.ck"],
    ["+qr", "+tries=1", "enforce.ck"],
    ["+showbadcookie", "+tries=1", "always.ck"],
]


@pytest.mark.parametrize("words", REQUEUED, ids=[" ".join(c) for c in REQUEUED])
def test_a_badcookie_requeues_from_the_first_server_as_dig(port2: int, words: list[str]) -> None:
    """dig 9.18 requeues the lookup after a BADCOOKIE: `@A @B` where A refuses and B
    says BADCOOKIE asks A again (the tries left, B's cookie), then B; the second time in
    TCP mode (session 26, odds26: ours asked B again at once)."""
    at = ["@127.0.0.1", "@127.0.0.2", "-p", str(port2)]
    a, b = both([*at, *words], [*at, *words])
    assert "Traceback" not in a.stderr, a.stderr
    assert normal(a.stdout) == normal(b.stdout), (words, a.stderr)
    assert a.returncode == b.returncode == 0
    assert "127.0.0.1#" in a.stdout.partition("BADCOOKIE, retrying")[2]  # A asked again
