"""`pktlab run dns` side by side with dig 9.18 where session 18 (dig18) found them apart,
and the command lines a dig user types daily, against tests/integration's servers
(dns_zone_server.py on 127.0.0.1 and ::1, the DoT server of test_dns_tls_dig.py): the
same stdout but for what differs by nature (test_dns_dig's `normal`, and -u's times) and
the same exit status (ours with --dig-exit-codes)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_dns_dig import REPO, both, dig, normal, ours, pytestmark, zone_server  # noqa: F401

USEC = [(re.compile(r"^;; Query time: \d+ usec$", re.M), ";; Query time: T usec"),
        (re.compile(r" in \d+ us(\.?)$", re.M), r" in T us\1"),
        # a banner without words (a blank -f line): dig's ends with `<<>>`
        (re.compile(r"^; <<>> [^<\n]*? <<>>$", re.M), "; <<>> PROGRAM <<>>")]  # fmt: skip


def same(text: str) -> str:
    text = normal(text)
    for pattern, repl in USEC:
        text = pattern.sub(repl, text)
    return text


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    yield from zone_server("127.0.0.1")


@pytest.fixture(scope="module")
def port6() -> Iterator[int]:
    yield from zone_server("::1")


def apart(*words: str) -> str | None:
    """What differs between ours (with --dig-exit-codes) and dig for WORDS: None when
    stdout (as `same` makes it) and the exit status are the same."""
    a, b = both(["--dig-exit-codes", *words], [*words])
    assert "Traceback" not in a.stderr, a.stderr
    mine = a.stdout.replace(" --dig-exit-codes", "", 1)  # (dig's banner repeats the words)
    if same(mine) == same(b.stdout) and a.returncode == b.returncode:
        return None
    return f"{words}: ours {a.returncode} dig {b.returncode}\n{mine}\n---\n{b.stdout}"


def all_same(*lines: list[str]) -> None:
    found = [d for d in (apart(*w) for w in lines) if d is not None]
    assert not found, "\n\n".join(found)


def test_what_session_18_made_as_dig(port: int, port6: int, tmp_path: Path) -> None:
    """Each difference this session found (each was apart before it)."""
    at = ["@127.0.0.1", "-p", str(port)]
    batch = tmp_path / "batch"
    batch.write_text("\n# a comment\n; another\na.test\n\n#x\nmx.test MX +short\n")
    empty = tmp_path / "empty"
    empty.write_text("\n# nothing\n")
    all_same(
        [*at, "+tries=0", "+time=0", "a.test"], [*at, "+timeout=0", "+noall", "+answer", "a.test"],
        [*at, "+short", "+noshort", "a.test"], [*at, "+short", "+noshort", "+comments", "a.test"],
        [*at, "a.test", "ANY"], [*at, "-t", "any", "a.test", "b.test"],
        [*at, "+notcp", "a.test", "ANY"],
        ["-6", "@127.0.0.1", "@::1", "-p", str(port6), "a.test"],
        ["-6", "@127.0.0.1", "@::1", "-p", str(port6), "+short", "a.test", "b.test"],
        ["-6", "@127.0.0.1", "-p", str(port6), "a.test"],
        [*at, "-q", "a.test", "-q", "mx.test", "MX"], [*at, "-q", "MX", "+short"],
        [*at, "-u", "a.test"], [*at, "-u", "+short", "+identify", "a.test"],
        [*at, "-u", "+noall", "+identify", "a.test"], [*at, "-r", "-m", "-i", "a.test"],
        [*at, "-x", "192.0.2.300"], [*at, "-x", "foo.bar", "+noall", "+question"],
        [*at, "-f", str(batch)], [*at, "-f", str(empty)], [*at, "a.test", "-f", str(batch)],
        [*at, "+short", "big.test", "TXT"], [*at, "+noall", "+answer", "big.test", "TXT"],
        [*at, "+nocomments", "+edns=1", "a.test"],
        [*at, "+nofail", "+short", "servfail.test", "@127.0.0.1"],
        [*at, "+qr", "big.test", "TXT"], [*at, "+qr", "+nocomments", "+edns=1", "a.test"],
        [*at, "+qr", "+cookie=0123456789abcdef", "big.test", "TXT"],
        ["@127.0.0.1", "+tries=1", "+time=1", "+tls", "+https", "a.test"],
        ["@127.0.0.1", "+tries=1", "+time=1", "+https", "+notls", "a.test"],
        ["@127.0.0.1", "+tries=1", "+time=1", "+https", "+tcp", "+notls", "a.test"],
        ["@127.0.0.1", "+tries=1", "+time=1", "+tls", "+notcp", "a.test"],
        ["@127.0.0.1", "+tries=1", "+time=1", "+notcp", "+https", "a.test"],
    )  # fmt: skip


def test_a_dig_users_day_as_dig(port: int, port6: int, tmp_path: Path) -> None:
    """The command lines a researcher types daily (these were already as dig's)."""
    at = ["@127.0.0.1", "-p", str(port)]
    batch = tmp_path / "batch"
    batch.write_text("a.test\nwww.test AAAA\n-x 192.0.2.1\nmx.test MX +short\nnope.test\n")
    all_same(
        [*at, "-x", "192.0.2.1"], [*at, "-x", "2001:db8::1", "+short"],
        [*at, "+short", "a.test", "mx.test", "MX", "www.test", "AAAA"],
        [*at, "-f", str(batch)], [*at, "+noall", "+answer", "www.test"],
        [*at, "+noall", "+answer", "+stats", "a.test"], [*at, "+nostats", "a.test"],
        [*at, "-4", "a.test"], ["@::1", "-p", str(port6), "-6", "+short", "a.test"],
        [*at, "www.test."], [*at, "WWW.Test", "AAAA"], [*at, "+norec", "sub.test"],
        [*at, "nope.test"], [*at, "+short", "nope.test"], [*at, "test", "SOA", "+multiline"],
        [*at, "+tcp", "a.test"], [*at, "+tcp", "+tries=1", "-p", "1", "a.test"],
        [*at, "+trace", "a.test"], [*at, "+dnssec", "a.test"], [*at, "."],
        [*at, "-c", "CH", "version.bind", "TXT"], [*at, "+bufsize=512", "keys.test", "DNSKEY"],
        [*at, "+tries=1", "+time=1", "silent.test"],
    )  # fmt: skip


def test_an_unusable_client_certificate_as_dig(tmp_path: Path) -> None:
    """dig 9.18.49: `;; TLS context cannot be created` for each TLS lookup, exit 0 (the
    status as it was); ours without --dig-exit-codes: our error, 2."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl missing (the certificates are made with it)")
    from test_dns_tls_dig import DotServer, make_cert

    cert, key = tmp_path / "dot.crt", tmp_path / "dot.key"
    make_cert(key, cert, "dot.test")
    server = DotServer(cert, key)
    try:
        at = ["@127.0.0.1", "-p", str(server.port), "+tries=1"]
        swapped = [f"+tls-certfile={key}", f"+tls-keyfile={cert}"]
        all_same(
            [*at, *swapped, "a.test"], [*at, "+tls", "+noall", "a.test", *swapped, "b.test"],
            [*at, "+tls", "+https", "+noall", "+answer", "a.test"],  # DoT: +tls wins
        )  # fmt: skip
        mine = ours(*at, *swapped, "a.test")
        assert mine.returncode == 2 and "cannot be used: PEM lib" in mine.stderr
    finally:
        server.sock.close()


def test_a_port_alone_asks_resolv_confs_servers_as_dig(port: int, tmp_path: Path) -> None:
    """-p PORT without a server: resolv.conf's servers at that port. Ours reads the
    resolv.conf that PKTLAB_RESOLV_CONF names; dig reads /etc/resolv.conf, here in a
    mount namespace of its own whose /etc/resolv.conf is that file."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare (a mount namespace for dig's /etc/resolv.conf)")
    conf = tmp_path / "resolv.conf"
    for text in ("nameserver 127.0.0.1\n", "nameserver 127.0.0.2\nnameserver 127.0.0.1\n",
                 "# none: ::1, then 127.0.0.1\n"):  # fmt: skip
        conf.write_text(text)
        for words in (["a.test"], ["+short", "+identify", "a.test", "mx.test", "MX"],
                      ["-4", "+short", "a.test"]):  # fmt: skip
            argv = ["-p", str(port), "+tries=1", "+time=1", *words]
            env = dict(os.environ, PYTHONPATH=str(REPO), PKTLAB_RESOLV_CONF=str(conf))
            a = subprocess.run(
                [sys.executable, "-m", "packetlab", "run", "dns", *argv],
                capture_output=True, text=True, timeout=120, env=env, cwd=REPO,
            )  # fmt: skip
            b = subprocess.run(
                ["unshare", "-m", "sh", "-c", 'mount --bind "$0" /etc/resolv.conf && exec "$@"',
                 str(conf), "dig", *argv], capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert "Traceback" not in a.stderr, a.stderr
            assert same(a.stdout) == same(b.stdout), (text, words, a.stdout, b.stdout)
            assert a.returncode == b.returncode == 0
