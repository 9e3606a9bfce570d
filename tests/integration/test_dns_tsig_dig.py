"""`pktlab run dns -y/-k` (TSIG) side by side with dig 9.18 against dns_zone_server.py on
loopback: the signed reply's text with its TSIG pseudosection, each way a reply's
signature fails as dig says it (`;; Couldn't verify signature: ...` and `;; WARNING --
Some TSIG could not be validated`), the server's refusals (BADKEY, BADSIG), and the
keys dig cannot make (its warnings; the query then unsigned). The same bytes but for
what differs by nature (test_dns_dig.normal) and, in a TSIG line, the time signed, the
MAC and the original ID (the query's own)."""

from __future__ import annotations

import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_dns_dig import both, dig, normal, ours, pytestmark, zone_server  # noqa: F401  (skip)


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    yield from zone_server("127.0.0.1")


SECRET = "c2VjcmV0c2VjcmV0IGtleSBmb3IgdGVzdHM="  # dns_zone_server.TSIG_KEYS["tk.test."]
MD5 = "bWQ1IHNlY3JldCBrZXkhIQ=="  # "md5.test."
TSIG_LINE = re.compile(r"(\sTSIG\s\S+) \d+ (\d+) (\d+) (\S+ )?\d+ ")


def tsig_normal(text: str) -> str:
    """`normal`, and a TSIG's time, MAC and original ID out."""
    return TSIG_LINE.sub(lambda m: f"{m.group(1)} TIME {m.group(2)} {m.group(3)} MAC ID ",
                         normal(text))  # fmt: skip


def same(*words: str) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    a, b = both(words, words)  # (at once: test_dns_dig.both)
    assert "Traceback" not in a.stderr, a.stderr
    assert tsig_normal(a.stdout) == tsig_normal(b.stdout), (words, a.stderr)
    return a, b


def test_signed_queries_as_dig(port: int) -> None:
    at = ["@127.0.0.1", "-p", str(port)]
    a, _ = same(*at, "-y", f"hmac-sha256:tk.test:{SECRET}", "a.test", "mx.test", "MX")
    assert a.stdout.count(";; TSIG PSEUDOSECTION:") == 2 and "Couldn't" not in a.stdout
    assert a.returncode == 0
    same(*at, "-y", f"hmac-sha256:tk.test:{SECRET}", "+tcp", "a.test")  # over TCP
    same(*at, "-y", f"md5.test:{MD5}", "a.test", "+nocomments")  # hmac-md5: dig's default
    # a truncated answer, asked again over TCP: signed again, checked again
    a, _ = same(*at, "-y", f"hmac-sha256:tk.test:{SECRET}", "+noedns", "big.test", "TXT")
    assert "Truncated, retrying in TCP mode." in a.stdout and "(TCP)" in a.stdout


def test_replies_that_do_not_verify_as_dig(port: int) -> None:
    """Each way of failing, in BIND's order (dns_tsig_verify): the words dig prints."""
    at = ["@127.0.0.1", "-p", str(port), "-y", f"hmac-sha256:tk.test:{SECRET}"]
    words = {
        "unsigned.sig": "expected a TSIG or SIG(0)",
        "badmac.sig": "tsig verify failure",
        "skew.sig": "clocks are unsynchronized",
        "badtime.sig": "clocks are unsynchronized",
        "badkey.sig": "tsig indicates error",
        "othername.sig": "tsig verify failure",
        "shortmac.sig": "FORMERR",
        "trunc.sig": "tsig verify failure",
    }
    a, _ = same(*at, *words)
    for name, why in words.items():
        assert f";; Couldn't verify signature: {why}\n\n; <<>>" in a.stdout or (
            f";; Couldn't verify signature: {why}\n;; Got answer:\n;; ->>HEADER<<- opcode: "
            f"QUERY, status: NOERROR, id: " in a.stdout
        ), name
    assert a.stdout.count(";; WARNING -- Some TSIG could not be validated") == len(words)
    assert a.returncode == 0  # as dig: the server answered
    same(*at, "+short", "unsigned.sig", "badmac.sig")  # the line, then the data
    same(*at, "+nostats", "badmac.sig")  # no WARNING line: it is a statistics line


def test_the_server_s_refusals_as_dig(port: int) -> None:
    """A key the server does not know (BADKEY) or whose secret is not its (BADSIG):
    NOTAUTH with an empty MAC: `tsig indicates error`, as dig."""
    at = ["@127.0.0.1", "-p", str(port)]
    a, _ = same(*at, "-y", f"hmac-sha256:nokey.test:{SECRET}", "a.test")
    assert "status: NOTAUTH" in a.stdout and " 300 0 " in a.stdout and " BADKEY 0" in a.stdout
    for style in ("+multiline", "+split=0"):  # no MAC: neither its words nor parentheses
        same(*at, "-y", f"hmac-sha256:nokey.test:{SECRET}", "a.test", style)
    a, _ = same(*at, "-y", "hmac-sha256:tk.test:c2VjcmV0c2VjcmV0", "a.test")
    assert " BADSIG 0" in a.stdout and "tsig indicates error" in a.stdout
    a, _ = same(*at, "-y", f"hmac-sha512:tk.test:{SECRET}", "a.test")  # the wrong algorithm
    assert " BADKEY 0" in a.stdout


def test_key_files_as_dig(port: int, tmp_path: Path) -> None:
    at = ["@127.0.0.1", "-p", str(port)]
    files = {
        "good": f'key "tk.test" {{\n\talgorithm hmac-sha256;\n\tsecret "{SECRET}";\n}};\n',
        "comments": f"# a key\nkey tk.test {{ algorithm HMAC-SHA256; // ours\n"
        f' secret "{SECRET}"; }};',
        "nosemi": f'key "tk.test" {{ algorithm hmac-sha256; secret "{SECRET}" }};\n',
        "garbage": "garbage\n",
        "badalg": f'key "tk.test" {{ algorithm hmac-foo; secret "{SECRET}"; }};\n',
        "badb64": 'key "tk.test" { algorithm hmac-sha256; secret "!!!"; };\n',
        "two": f'key "a" {{ algorithm hmac-sha256; secret "{SECRET}"; }};\n'
        f'key "b" {{ algorithm hmac-sha256; secret "{SECRET}"; }};\n',
        "empty": "",
    }
    for name, text in files.items():
        (tmp_path / f"{name}.key").write_text(text)
    for name in [*files, "missing"]:
        a, b = same(*at, "-k", str(tmp_path / f"{name}.key"), "a.test")
        assert a.stderr == b.stderr, name
        assert a.returncode == b.returncode == 0, name
    for text in ('key "tk.test" { secret "c2VjcmV0"; };', 'key "tk.test" { algorithm hmac-md5; };'):
        (tmp_path / "half.key").write_text(text)
        words = (*at, "-k", str(tmp_path / "half.key"), "a.test")
        a, b = ours(*words), dig(*words)
        assert b.returncode == 1 and b.stderr == "dig: key must have algorithm and secret\n"
        assert a.returncode == 2 and "key must have algorithm and secret" in a.stderr
        assert a.stdout == ""


def test_k_and_y_as_dig(port: int, tmp_path: Path) -> None:
    """-k and -y both: -k's key whatever their order (dig 9.18's setup_file_key first),
    -y's words read all the same (its algorithm warning, its usage); a -k that cannot be
    read and a -y: no key, `;; WARNING -- TSIG key was not used.` (ours signed with -y's
    key until session 30, dig30)."""
    at = ["@127.0.0.1", "-p", str(port)]
    good = tmp_path / "good.key"
    good.write_text(f'key "tk.test" {{ algorithm hmac-sha256; secret "{SECRET}"; }};\n')
    for words in (["-y", "tk.test:c2VjcmV0", "-k", str(good)],
                  ["-k", str(good), "-y", "hmac-foo:tk.test:!!!"]):  # fmt: skip
        a, b = same(*at, *words, "a.test")
        assert "Couldn't" not in a.stdout and ";; TSIG PSEUDOSECTION:" in a.stdout, words
        assert a.stderr == b.stderr and a.returncode == b.returncode == 0, words
    a, b = same(*at, "-k", str(tmp_path / "missing.key"), "-y", f"tk.test:{SECRET}", "a.test")
    assert a.stdout.count(";; WARNING -- TSIG key was not used.") == 1
    assert a.stderr == b.stderr and a.returncode == b.returncode == 0
    a, b = both([*at, "-k", str(good), "-y", "tk.test", "a.test"],
                [*at, "-k", str(good), "-y", "tk.test", "a.test"])  # fmt: skip
    assert b.returncode == 1 and a.returncode == 2 and "-y tk.test" in a.stderr


def test_bad_y_keys_as_dig(port: int) -> None:
    """What dig cannot make of a -y: its warnings on stderr, the query unsigned."""
    at = ["@127.0.0.1", "-p", str(port)]
    for y in ("hmac-sha256:tk.test:!!notb64", "hmac-foo:tk.test:c2VjcmV0c2VjcmV0",
              "a:b:c:d", "hmac-sha512:bad..name:c2VjcmV0c2VjcmV0"):  # fmt: skip
        a, b = same(*at, "-y", y, "a.test", "v6.test")
        assert a.stderr == b.stderr and a.returncode == b.returncode == 0, y
        assert "TSIG PSEUDOSECTION" not in a.stdout  # unsigned, as dig's
        assert a.stdout.count(";; WARNING -- TSIG key was not used.") == 2
    a, b = same(*at, "-y", "tk.test:c2VjcmV0", "a.test")  # a short key: BIND's log line
    assert a.stderr.endswith("the key 'tk.test' is too short to be secure\n")
    assert b.stderr.endswith("the key 'tk.test' is too short to be secure\n")
    for y in ("tk.test", "tk.test:", ":c2VjcmV0"):  # dig: its usage, exit 1
        a, b = both([*at, "-y", y, "a.test"], [*at, "-y", y, "a.test"])
        assert b.returncode == 1 and a.returncode == 2 and "-y" in a.stderr, y


def test_the_signed_query_is_digs_bytes() -> None:
    """dig's and our signed queries to a listener: the same bytes but for the ID, the
    client cookie, the time signed and so the MAC; the MAC checked with the key."""
    from packetlab.measure import dnstsig

    got: list[bytes] = []
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(30)

    def take() -> None:
        for _ in range(2):
            got.append(s.recvfrom(65535)[0])

    t = threading.Thread(target=take)
    t.start()
    at = ["@127.0.0.1", "-p", str(s.getsockname()[1]), "+tries=1", "+time=1"]
    for run in (ours, dig):
        run(*at, "-y", f"hmac-sha512:tk.test:{SECRET}", "+nocookie", "a.test", "MX")
    t.join(30)
    s.close()
    mine, theirs = got
    assert len(mine) == len(theirs)
    key = dnstsig.key_from_y(f"hmac-sha512:tk.test:{SECRET}").key
    assert key is not None
    fields: list[tuple[int, bytes]] = []
    for wire in (mine, theirs):  # each one's MAC is its own message's, dig's way
        found = dnstsig._tsig_at(wire)
        assert found is not None
        start, t = found
        assert (t["fudge"], len(t["mac"]), t["orig"], t["error"], t["other"]) == (
            300, 64, int.from_bytes(wire[:2], "big"), 0, b"")  # fmt: skip
        head = bytearray(wire[:12])
        head[11] -= 1  # ARCOUNT without the TSIG
        signed = t["time"].to_bytes(6, "big") + b"\x01\x2c\x00\x00\x00\x00"
        data = bytes(head) + wire[12:start] + b"\x02tk\x04test\x00\x00\xff\x00\x00\x00\x00"
        data += b"\x0bhmac-sha512\x00" + signed
        assert key.mac(data) == t["mac"]
        fields.append((start, wire[start : start + 10 + 8 + 13]))  # owner, type..rdlen, algorithm
    # the same bytes to the time signed (owner written whole, as BIND), the same length
    assert fields[0] == fields[1] and mine[2 : fields[0][0]] == theirs[2 : fields[1][0]]


@pytest.fixture(scope="module")
def xfr_port() -> Iterator[int]:
    from childserver import serve_child

    here = Path(__file__).resolve().parent
    with serve_child(str(here / "dns_xfr_server.py"), "127.0.0.1") as number:
        yield number


def test_signed_transfers_as_dig(xfr_port: int) -> None:
    """AXFR and IXFR signed: each message's TSIG shown after its records and checked with
    RFC 8945's chaining (dns_xfr_server.py signs as the key's name says); a message that
    does not verify gets dig's line before its records, the transfer goes on, and the
    statistics end with dig's WARNING. As dig 9.18: the last message unsigned, or 300
    unsigned in a row, is no failure."""
    at = ["@127.0.0.1", "-p", str(xfr_port), "+tries=1"]

    def y(mode: str, secret: str = SECRET) -> list[str]:
        return ["-y", f"hmac-sha256:{mode}.test:{secret}"]

    a, _ = same(*at, *y("tk"), "test", "AXFR")
    assert a.stdout.count("\ttk.test.\t") == 0 and "Couldn't" not in a.stdout
    assert a.stdout.count("ANY\tTSIG") > 5 and a.returncode == 0
    same(*at, *y("tk"), "ixfr.xfr", "IXFR=1")
    a, _ = same(*at, *y("sparse"), "test", "AXFR")
    assert "Couldn't" not in a.stdout
    for mode, zone in (("lastbare", "test"), ("gap", "big.xfr")):
        a, _ = same(*at, *y(mode), zone, "AXFR", "+noall", "+answer", "+stats")
        assert "Couldn't" not in a.stdout and "WARNING" not in a.stdout, mode
    a, _ = same(*at, *y("badmid"), "test", "AXFR")
    assert a.stdout.count(";; Couldn't verify signature: tsig verify failure\n") == 1
    assert a.stdout.endswith(";; WARNING -- Some TSIG could not be validated\n\n")
    a, _ = same(*at, *y("nokey"), "test", "AXFR")  # NOTAUTH, BADKEY: Transfer failed.
    assert "tsig indicates error" in a.stdout and "; Transfer failed." in a.stdout
    same(*at, *y("tk", "c2VjcmV0c2VjcmV0"), "test", "AXFR", "+comments")  # BADSIG
    for zone in ("refused.xfr", "cut.xfr"):  # unsigned answers
        a, _ = same(*at, *y("tk"), zone, "AXFR")
        assert "expected a TSIG or SIG(0)" in a.stdout


def test_truncated_macs_as_dig(port: int, tmp_path: Path) -> None:
    """dig 9.18's `hmac-sha256-128` (-y and a key file): the query's MAC cut to those
    bits (the server reads it), a reply's as short verifies, one shorter than the key's
    bits does not (BIND's BADTRUNC); out of range: an error (dig: exit 1)."""
    at = ["@127.0.0.1", "-p", str(port)]
    names = ["a.test", "trunc.sig", "shortmac.sig"]
    a, _ = same(*at, "-y", f"hmac-sha256-128:tk.test:{SECRET}", *names)
    assert "300 16 " in a.stdout and a.stdout.count("Couldn't verify signature") == 1
    for alg in ("hmac-sha256-80", "hmac-sha256-256", "hmac-sha256-0", "HMAC-SHA256-130"):
        same(*at, "-y", f"{alg}:tk.test:{SECRET}", *names)
    same(*at, "-y", f"hmac-sha256-128:tk.test:{SECRET}", "+tcp", "a.test")
    conf = tmp_path / "k"
    conf.write_text(f'key "tk.test" {{ algorithm hmac-sha256-128; secret "{SECRET}"; }};\n')
    same(*at, "-k", str(conf), *names[:2])
    got = ours(*at, "-y", f"hmac-sha256-300:tk.test:{SECRET}", "a.test")
    assert got.returncode == 2 and "invalid digest-bits [0..256] '300': out of range" in (
        got.stderr
    )  # fmt: skip


def test_batch_line_keys_as_dig(port: int, tmp_path: Path) -> None:
    """-y/-k on a -f line, as dig 9.18 takes them: the first line's signs every line; a
    later -y signs none and says `TSIG key was not used` from there on; a later -k
    does nothing."""
    at = ["@127.0.0.1", "-p", str(port)]
    y = f"hmac-sha256:tk.test:{SECRET}"
    conf = tmp_path / "k"
    conf.write_text(f'key "tk.test" {{ algorithm hmac-sha256; secret "{SECRET}"; }};\n')
    batch = tmp_path / "q"
    cases = (([f"-y {y} a.test", "b.test"], 2, 0), (["a.test", f"-y {y} b.test", "c.test"], 0, 2),
             (["a.test", f"-k {conf} b.test", "c.test"], 0, 0),
             ([f"-k {conf} a.test", "b.test +noall +answer"], 1, 0))  # fmt: skip
    for lines, signed, unused in cases:
        batch.write_text("\n".join(lines) + "\n")
        a, _ = same(*at, "-f", str(batch))
        assert a.stdout.count(";; TSIG PSEUDOSECTION:") == signed, lines
        assert a.stdout.count(";; WARNING -- TSIG key was not used.") == unused, lines
    same(*at, "-y", y, "-f", str(batch))  # the command line's key, then the first line's


def test_signed_trace_as_dig(port: int) -> None:
    """+trace with -y: each step signed and checked, as dig (the root's NS is this
    server: dns_zone_server.py's root zone)."""
    at = ["@127.0.0.1", "-p", str(port)]
    a, _ = same(*at, "-y", f"hmac-sha256:tk.test:{SECRET}", "+trace", "a.test")
    assert "Couldn't" not in a.stdout and a.stdout.count(";; Received ") == 2
    a, _ = same(*at, "-y", f"hmac-sha256:tk.test:{SECRET}", "+trace", "badmac.sig")
    assert ";; Couldn't verify signature: tsig verify failure" in a.stdout
    same(*at, "-y", f"hmac-sha256:other.key:{SECRET}", "+trace", "a.test")  # BADKEY: stops


def test_a_signed_query_with_qr_as_dig(port: int) -> None:
    """+qr -y: the query's TSIG pseudosection in its `;; Sending:` block, as dig; the
    TSIG warning after a failure, as dig's."""
    at = ["@127.0.0.1", "-p", str(port), "-y", f"hmac-sha256:tk.test:{SECRET}", "+qr"]
    a, _ = same(*at, "badmac.sig", "a.test")
    assert a.stdout.count(";; TSIG PSEUDOSECTION:") == 4
    # dig's `validated` is a global: after a reply that did not verify, every later
    # lookup's statistics say so too (a.test's verified)
    a, _ = same(*at[:-1], "a.test", "badmac.sig", "a.test")
    assert a.stdout.count(";; WARNING -- Some TSIG could not be validated") == 2
