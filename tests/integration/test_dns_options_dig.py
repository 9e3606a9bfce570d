"""dig 9.18's query and display switches that `pktlab run dns` reads since session 16
(dig16), side by side with dig against dns_zone_server.py (which echoes CLIENT-SUBNET,
answers EXPIRE, TCP-KEEPALIVE and PADDING, SERVFAIL for `servfail.test.`, FORMERR for a
query without a question): the same text but for what differs by nature (test_dns_dig's
`normal`), and the same query bytes but for the message ID."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_dns_dig import both, dig, normal, ours, side_by_side, zone_server

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("dig") is None, reason="dig (dnsutils) missing")


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    yield from zone_server("127.0.0.1")


def test_record_display_switches_as_dig(port: int) -> None:
    at = ["@127.0.0.1", "-p", str(port)]
    names = ["mx.test", "MX", "test", "SOA", "a.test"]
    for switches in (["+nottlid"], ["+noclass"], ["+nottlid", "+noclass"], ["+ttlunits"],
                     ["+ttlunits", "+multiline"], ["+unknownformat"],
                     ["+unknownformat", "+multiline"], ["+noclass", "+multiline"]):  # fmt: skip
        side_by_side(*at, *switches, *names)
    out = side_by_side(*at, "+nottlid", "+noclass", "a.test")
    assert ";a.test.\t\t\tIN A\n" in out and "a.test.\t\t\tA\t192.0.2.1" in out
    assert "\t1m\tIN\tMX" in side_by_side(*at, "+ttlunits", "mx.test", "MX")
    assert "CLASS1\tTYPE15\t\\# 10 000A0161047465737400" in side_by_side(
        *at, "+unknownformat", "mx.test", "MX"
    )  # fmt: skip
    keys = ["+dnssec", "keys.test", "DNSKEY", "a.test", "test", "DS", "sub.test", "DS",
            "test", "DNSKEY"]  # fmt: skip
    out = side_by_side(*at, "+nocrypto", *keys)
    assert "DNSKEY\t257 3 13 [key id = 3925]" in out and "4242 test. [omitted]" in out
    side_by_side(*at, "+nocrypto", "+multiline", *keys)
    side_by_side(*at, "+multiline", "+norrcomments", "test", "SOA", "test", "DNSKEY")
    out = side_by_side(*at, "+rrcomments", "+dnssec", "test", "DNSKEY", "test", "SOA")
    assert "==  ; KSK; alg = ECDSAP256SHA256 ; key id = 3925" in out
    side_by_side(*at, "+short", "+nocrypto", "+rrcomments", "keys.test", "DNSKEY")
    side_by_side(*at, "+rrcomments", "+short", "keys.test", "DNSKEY")  # +short after: none


def test_qr_header_only_header_bits_and_opcode_as_dig(port: int) -> None:
    at = ["@127.0.0.1", "-p", str(port)]
    out = side_by_side(*at, "+qr", "a.test")
    assert ";; Sending:\n" in out and ";; QUERY SIZE: 47\n\n;; Got answer:" in out
    side_by_side(*at, "+qr", "+nocookie", "+tcp", "mx.test", "MX")
    out = side_by_side(*at, "+header-only", "+qr", "a.test")
    assert "QUERY: 0, ANSWER: 0" in out and "status: FORMERR" in out
    side_by_side(*at, "+header-only", "a.test")
    out = side_by_side(*at, "+qr", "+aaflag", "+cdflag", "+raflag", "+tcflag", "+zflag",
                       "+noadflag", "a.test")  # fmt: skip
    assert ";; flags: aa tc rd ra cd; MBZ: 0x4; QUERY: 1" in out
    assert "opcode: STATUS" in side_by_side(*at, "+qr", "+opcode=status", "a.test")
    side_by_side(*at, "+opcode=3", "+tcp", "a.test", "+noopcode", "b.test")
    side_by_side(*at, "+qr", "+nostats", "+nocomments", "a.test")
    # each query sent before what came of it: tries, a TC retry, a BADVERS round, servers
    out = side_by_side(*at, "+qr", "big.test", "TXT", "+noedns")
    assert (
        out.count(";; Sending:") == 2 and ";; Truncated, retrying in TCP mode.\n;; Sending:" in out
    )
    assert side_by_side(*at, "+qr", "+time=1", "+tries=2", "silent.test").count("Sending") == 2
    side_by_side(*at, "+qr", "+edns=1", "a.test")
    side_by_side(*at[1:], "@127.0.0.2", "+qr", "+tries=2", "a.test")
    side_by_side(*at[1:], "@127.0.0.2", "@127.0.0.1", "+qr", "+tcp", "+tries=1", "a.test")
    side_by_side(*at, "@127.0.0.1", "+nofail", "+qr", "servfail.test")
    side_by_side(*at[1:], "@127.0.0.2", "+qr", "+tcp", "+tries=1", "a.test")  # nothing sent
    # +nocmd (before or after the name): no banner, as dig prints none with a query
    assert "<<>>" not in side_by_side(*at, "a.test", "+nocmd", "+qr")
    side_by_side(*at, "+qr", "silent.test", "+nocmd", "+time=1", "+tries=1")


def test_edns_options_as_dig(port: int) -> None:
    at = ["@127.0.0.1", "-p", str(port)]
    out = side_by_side(*at, "+qr", "+subnet=192.0.2.77/27", "+expire", "+keepalive",
                       "+padding=64", "a.test")  # fmt: skip
    for line in ("; CLIENT-SUBNET: 192.0.2.64/27/0\n; COOKIE:",
                 "; EXPIRE:\n; TCP KEEPALIVE:\n; PAD:\n", ";; QUERY SIZE: 128\n",
                 "; CLIENT-SUBNET: 192.0.2.64/27/27\n",
                 "; EXPIRE: 1209600 (2 weeks)\n; TCP KEEPALIVE: 30.0 secs\n",
                 "; PAD: (8 bytes)\n"):  # fmt: skip
        assert line in out
    side_by_side(*at, "+qr", "+subnet=0", "+padding=128", "+tcp", "a.test")
    out = side_by_side(*at, "+subnet=2001:db8::/33", "+noedns", "a.test")  # EDNS all the same
    assert "; CLIENT-SUBNET: 2001:db8::/33/33" in out
    side_by_side(*at, "+expire", "+nsid", "test", "SOA", "+nosubnet", "a.test")
    for words in (["+qr", "+coflag", "+ednsflags=0x80", "a.test"], ["+noednsneg", "+edns=1",
                  "a.test"], ["+qr", "+ednsopt=65001:abcd", "+ednsopt=nsid", "+qid=4242",
                  "a.test"], ["+expandaaaa", "v6.test", "AAAA"],
                  ["+expandaaaa", "+short", "v6.test", "AAAA"]):  # fmt: skip
        side_by_side(*at, *words)
    out = side_by_side(*at, "ednsopts.test")  # empty options, EDE, KEY-TAG: dig's lines
    for line in ("; NSID:\n; PAD:\n; OPT=65001:\n", "; EDE: 9 (DNSKEY Missing): (no key)\n",
                 "; EDE: 99\n", "; KEY-TAG: 20326, 20327\n"):  # fmt: skip
        assert line in out


def test_nofail_and_identify_as_dig(port: int) -> None:
    at = ["-p", str(port)]
    out = side_by_side("@127.0.0.1", "@127.0.0.1", *at, "+nofail", "servfail.test")
    assert out.startswith(";; Got SERVFAIL reply from 127.0.0.1, trying next server\n"
                          ";; Got SERVFAIL reply from 127.0.0.1\n")  # fmt: skip
    assert ";; Got SERVFAIL" not in side_by_side("@127.0.0.1", *at, "+fail", "servfail.test")
    side_by_side("@127.0.0.1", "@127.0.0.1", *at, "+nofail", "+tcp", "servfail.test")
    out = side_by_side("@127.0.0.1", *at, "+short", "+identify", "a.test", "mx.test", "MX")
    assert "192.0.2.1 from server 127.0.0.1 in " in out
    side_by_side("@127.0.0.1", *at, "+nostats", "+identify", "a.test")


def test_refusals_in_one_line(port: int) -> None:
    at = ["@127.0.0.1", "-p", str(port)]
    for word, says in (("+dns64prefix", "dig option not supported here"),  # (+tls-certfile: 17b)
                       ("+padding=600", "Couldn't parse padding (out of range)"),
                       ("+subnet=bogus", "invalid address 'bogus'"),
                       ("+opcode=bogus", "Couldn't parse opcode")):  # fmt: skip
        got = ours(*at, word, "a.test")
        assert got.returncode == 2 and says in got.stderr, (word, got.stderr)
        assert "Traceback" not in got.stderr and got.stderr.count("\n") == 1
        if "parse" in says:  # dig's parse_uint line first, on stdout (since session 21)
            assert got.stdout == dig(*at, word, "a.test").stdout, word
    got = ours(*at, "+noidnin", "+noidnout", "+besteffort", "a.test")  # dig's defaults here
    assert got.returncode == 0, got.stderr


def _capture(cmd: list[str], tcp: bool) -> bytes:
    """The first query `cmd` (PORT: a listener's) sends, over UDP or TCP."""
    kind = socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    s.settimeout(30)
    if tcp:
        s.listen(1)
    got: list[bytes] = []

    def take() -> None:
        if not tcp:
            got.append(s.recvfrom(65535)[0])
            return
        conn, _ = s.accept()
        with conn:
            data = b""
            while len(data) < 2 or len(data) < 2 + int.from_bytes(data[:2], "big"):
                chunk = conn.recv(65535)
                if not chunk:
                    break
                data += chunk
            got.append(data[2:])

    t = threading.Thread(target=take)
    t.start()
    words = [w.replace("PORT", str(s.getsockname()[1])) for w in cmd]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    subprocess.run(words, capture_output=True, timeout=60, env=env, cwd=REPO)
    t.join(30)
    s.close()
    assert got, cmd
    return got[0]


@pytest.mark.parametrize(
    "words",
    [
        ["+aaflag", "+cdflag", "+raflag", "+tcflag", "+zflag", "+noadflag", "a.test"],
        ["+opcode=notify", "a.test"],
        ["+header-only", "a.test"],
        ["+subnet=192.0.2.77/27", "+expire", "+keepalive", "+padding=64", "+nsid", "a.test"],
        ["+subnet=2001:db8::/33", "+noedns", "a.test"],
        ["+subnet=0", "a.test"],
        ["+padding=128", "+tcp", "+dnssec", "a.test", "MX"],
        ["+coflag", "+ednsflags=0xffff", "+dnssec", "a.test"],
        ["+ednsopt=65001:abcd", "+ednsopt=5", "+nsid", "+ednsopt=ecs:00010000", "a.test"],
        ["+noednsneg", "+edns=1", "a.test"],
        ["+noedns", "+ednsopt=5", "+coflag", "+expire", "a.test"],  # no OPT, as dig
        ["+noedns", "+ednsflags=0x80", "a.test"],  # an OPT, as dig
    ],
)
def test_the_query_is_digs_bytes(words: list[str]) -> None:
    """The query as sent: dig's bytes but for the ID (no cookie: random on both sides)."""
    at = ["@127.0.0.1", "-p", "PORT", "+tries=1", "+time=1", "+nocookie", *words]
    tcp = "+tcp" in words
    mine = _capture([sys.executable, "-m", "packetlab", "run", "dns", *at], tcp)
    theirs = _capture(["dig", *at], tcp)
    assert mine[2:] == theirs[2:], (mine.hex(), theirs.hex())


def in_resolv_conf(conf: Path, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """`argv` in a mount namespace of its own whose /etc/resolv.conf is `conf`."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", 'mount --bind "$0" /etc/resolv.conf && exec "$@"',
         str(conf), *argv], capture_output=True, text=True, timeout=120, env=env, cwd=REPO,
    )  # fmt: skip


def test_search_list_as_dig(port: int, tmp_path: Path) -> None:
    """+search, +showsearch, +domain, +ndots with a resolv.conf of our own (both tools
    read /etc/resolv.conf: a mount namespace gives them this one)."""
    from test_dns_dig import normal

    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare (a mount namespace for /etc/resolv.conf)")
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 127.0.0.1\nsearch nope.test test\noptions ndots:2\n")
    at = ["@127.0.0.1", "-p", str(port)]
    for words in (["+search", "www", "AAAA"], ["+search", "nothere"],
                  ["+showsearch", "nothere"], ["+showsearch", "www", "AAAA", "+nocmd"],
                  ["+domain=test", "www", "AAAA"], ["+search", "+ndots=1", "www.x"],
                  ["+search", "nothere."], ["+search", "www", "AAAA", "+short"],
                  ["+search", "+ndots=3", "www.test", "AAAA", "nothere"],
                  ["+search", "nothere.x.y", "+nostats", "+identify"],
                  ["www", "AAAA"]):  # fmt: skip
        mine = in_resolv_conf(conf, [sys.executable, "-m", "packetlab", "run", "dns", *at, *words])
        theirs = in_resolv_conf(conf, ["dig", *at, *words])
        assert "Traceback" not in mine.stderr, mine.stderr
        assert normal(mine.stdout) == normal(theirs.stdout), words
        if words == ["+search", "www", "AAAA"]:
            assert ";www.test.\t\t\tIN\tAAAA" in mine.stdout and "nope" not in mine.stdout


def test_nobesteffort_as_dig(port: int) -> None:
    """+nobesteffort: a reply BIND reads only with its best effort (cut short, a TSIG out
    of its place, records of another class) is dig's `Got bad packet: REASON` and hex
    dump instead of what parsed; bytes after a whole message are not such a reply."""
    from test_dns_dig import normal

    hexid = re.compile(r"^(\d+ bytes\n)[0-9a-f]{2} [0-9a-f]{2} (.{51})..", re.M)
    at = ["@127.0.0.1", "-p", str(port), "+nocookie", "+nobesteffort"]
    for words, why in ((["cutname.test"], "unexpected end of input"),
                       (["+tcp", "cutdata.test"], "unexpected end of input"),
                       (["tsigans.test"], "TSIG in wrong location"),
                       (["a.test", "-c", "HS"], "FORMERR"), (["counts.test"], "unexpected end"),
                       (["badopt.test"], "unexpected end of input")):  # fmt: skip
        a, b = both([*at, *words], [*at, *words])
        assert a.stdout.startswith(f";; Got bad packet: {why}"), (words, a.stdout)
        assert hexid.sub(r"\1ID \2ID", normal(a.stdout)) == hexid.sub(
            r"\1ID \2ID", normal(b.stdout)
        ), words
        assert a.returncode == 1  # our status for a reply that does not parse
    assert "Warning: Message parser" in side_by_side(*at[:3], "+besteffort", "cutname.test")
    side_by_side(*at, "junk.test")  # extra bytes only: the answer, as dig


YAML_NATURE = [
    (re.compile(r"!!timestamp \S+"), "!!timestamp T"),
    (re.compile(r"^(      id: )\d+$", re.M), r"\1ID"),
    (re.compile(r"(COOKIE: )[0-9a-f]{16}"), r"\1CLIENT"),
    (re.compile(r"( TSIG \S+) \d+ (\d+) (\d+) \S+ \d+ "), r"\1 T \2 \3 MAC ID "),
]


def test_yaml_as_dig(port: int) -> None:
    """+yaml: dig's YAML items, the same but for the times, the ID, the client cookie
    (and a TSIG's time, MAC and ID)."""

    def yaml_normal(text: str) -> str:
        for pattern, repl in YAML_NATURE:
            text = pattern.sub(repl, text)
        return text

    at = ["@127.0.0.1", "-p", str(port)]
    secret = "c2VjcmV0c2VjcmV0IGtleSBmb3IgdGVzdHM="
    for words in (["a.test", "mx.test", "MX"], ["+nsid", "+dnssec", "+expire", "nope.test", "+qr"],
                  ["+noall", "+answer", "a.test"], ["+time=1", "+tries=1", "silent.test"],
                  ["+short", "a.test"], ["-y", f"hmac-sha256:tk.test:{secret}", "a.test"],
                  ["+tcp", "a.test"], ["big.test", "TXT", "+noedns"],
                  ["+nottlid", "+noclass", "+nocrypto", "+dnssec", "a.test"],
                  ["+split=8", "test", "DNSKEY"], ["+qr", "+padding=64", "a.test"],
                  ["+qr", "+header-only", "a.test"], ["garbage.test"],
                  ["+zflag", "+qr", "a.test", "+norec"], ["ednsopts.test"],
                  ["+subnet=192.0.2.0/24", "+keepalive", "+expire", "+tcp", "+qr", "a.test"],
                  ["@127.0.0.2", "a.test"],
                  # session 29 (dig29): +qr's item for each query sent (a TC retry's UDP
                  # query, then TCP's; BADVERS's; a refused server's)
                  ["+qr", "+bufsize=512", "+dnssec", "test", "DNSKEY"],
                  ["+qr", "+edns=1", "a.test"], ["+qr", "+tries=1", "@::1", "a.test"]):  # fmt: skip
        a, b = both([*at, "+yaml", *words], [*at, "+yaml", *words])
        assert "Traceback" not in a.stderr, a.stderr
        assert yaml_normal(a.stdout) == yaml_normal(b.stdout), words
    got = ours(*at, "+yaml", "+trace", "a.test")
    assert got.returncode == 2 and "+yaml: not built for +trace" in got.stderr


def test_abbreviations_as_dig(port: int) -> None:
    at = ["@127.0.0.1", "-p", str(port)]
    out = side_by_side(*at, "+noal", "+ans", "mx.test", "MX")
    assert out.startswith("mx.test.\t\t60\tIN\tMX\t10 a.test.\n")
    for words in (["+nocm", "+nost", "+noqu", "+nocl", "+nottl", "a.test"],
                  ["+tim=1", "+tri=1", "+qr", "+aa", "+nocoo", "+nsi", "a.test"],
                  ["+mu", "+dnss", "test", "SOA"], ["+shor", "+ident", "a.test"],
                  ["+noadd", "+noauth", "+co", "+ednsf=0x80", "a.test"]):  # fmt: skip
        side_by_side(*at, *words)
    for word in ("+sh", "+a", "+n", "+ns", "+tc", "+re", "+ed", "+ke", "+f", "+m", "+u"):
        a, b = both([*at, word, "a.test"], [*at, word, "a.test"])
        assert (b.returncode, b.stderr.splitlines()[0]) == (1, f"Invalid option: {word}")
        assert a.returncode == 2 and "ambiguous dig option" in a.stderr, (word, a.stderr)
    a, b = both([*at, "+si", "+noall", "+ans", "a.test"], [*at, "+si", "+noall", "+ans", "a.test"])
    assert a.stderr == b.stderr == ";; +sigchase option is deprecated"
    assert a.stdout == b.stdout and a.stdout.startswith("a.test.\t\t\t300\tIN\tA\t192.0.2.1\n")


def test_idn_names_as_dig(port: int) -> None:
    at = ["@127.0.0.1", "-p", str(port)]
    out = side_by_side(*at, "+idnin", "Bücher.test", "xn--bcher-kva.test")
    assert out.count(";xn--bcher-kva.test.\t\tIN\tA\n") == 2
    side_by_side(*at, "+idnin", "Bücher.test", "+noidnin")  # as dig: a global switch
    out = side_by_side(*at, "+idnout", "xn--bcher-kva.test", "idn.test", "idnmx.test", "MX")
    assert "bücher.test.\t\t300\tIN\tA\t192.0.2.4" in out and "MX\t10 BüCHER.test." in out
    side_by_side(*at, "+idnin", "+idnout", "+short", "straße.test", "idn.test")
    side_by_side(*at, "+idnout", "+multiline", "+noall", "+answer", "idn.test")
    a, b = both([*at, "+idnin", "bü%cher.test"], [*at, "+idnin", "bü%cher.test"])
    assert (a.returncode, b.returncode) == (2, 1)
    assert "is not a legal IDNA2008 name" in a.stderr and "use +noidnin" in a.stderr


#: session 29 (dig29): dig's printcmd and yaml are globals: a -f line's +yaml stays for
#: the lines after it and turns the banner off for good (and the line's statistics); the
#: run's first banner made is whole, whichever line makes it (+nocmd, +short make none)
YAML_BATCHES = [
    "a.test\n+yaml a.test\na.test\n+noyaml a.test\na.test\n",
    "+yaml a.test\n+noyaml +cmd a.test\n",
    "+nocmd a.test\na.test\n+cmd a.test\n",
    "+short a.test\n+noshort a.test\n",
]


@pytest.mark.parametrize("batch", YAML_BATCHES, ids=["yaml", "yaml-cmd", "nocmd", "short"])
def test_batch_yaml_and_first_banner_as_dig(port: int, batch: str, tmp_path: Path) -> None:
    lines = tmp_path / "q"
    lines.write_text(batch)
    words = ["@127.0.0.1", "-p", str(port), "-f", str(lines)]
    a, b = both(words, words)
    ours_text, theirs = normal(a.stdout), normal(b.stdout)
    for pattern, repl in YAML_NATURE:  # (+yaml's times and IDs)
        ours_text, theirs = pattern.sub(repl, ours_text), pattern.sub(repl, theirs)
    assert "Traceback" not in a.stderr and ours_text == theirs, a.stderr


def test_yaml_then_noyaml_as_dig(port: int) -> None:
    """`+yaml +noyaml`: dig's text without the banner or statistics (+yaml turned
    printcmd and the lookup's stats off); ours printed both."""
    at = ["@127.0.0.1", "-p", str(port)]
    for words in (["+yaml", "+noyaml", "a.test"], ["+yaml", "+stats", "+noyaml", "a.test"]):
        side_by_side(*at, *words)
