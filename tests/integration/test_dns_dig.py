"""`pktlab run dns` side by side with dig (BIND 9.18) on the same command lines, against
dns_zone_server.py (DNSSEC records, EDNS, referrals, misbehaving names) on loopback,
through the in-process endpoint (which has raw sockets: a closed UDP port is seen).

The outputs must be the same bytes but for what differs by nature: the banner's program
name, the message ID, the query time (+trace: each step's), WHEN and the client cookie
(dig sends one by default; so do we, and the server echoes it)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from childserver import serve_child
from ports import closed_udp_port

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RUN = [sys.executable, "-m", "packetlab", "run", "dns"]

pytestmark = pytest.mark.skipif(shutil.which("dig") is None, reason="dig (dnsutils) missing")


def zone_server(addr: str) -> Iterator[int]:
    with serve_child(str(HERE / "dns_zone_server.py"), addr) as port:
        yield port


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    yield from zone_server("127.0.0.1")


@pytest.fixture(scope="module")
def port6() -> Iterator[int]:
    yield from zone_server("::1")


def ours(*words: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [*RUN, *words], capture_output=True, text=True, timeout=120, env=env, cwd=REPO
    )


def dig(*words: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["dig", *words], capture_output=True, text=True, timeout=60)


NATURE = [
    (re.compile(r"^; <<>> .*? <<>> ", re.M), "; <<>> PROGRAM <<>> "),
    (re.compile(r"(->>HEADER<<- opcode: \w+, status: \w+, id: )\d+"), r"\1ID"),
    (re.compile(r"^;; Query time: \d+ msec$", re.M), ";; Query time: T msec"),
    (re.compile(r"^;; WHEN: .*$", re.M), ";; WHEN: W"),
    (re.compile(r"^(;; Received \d+ bytes from \S+) in \d+ ms$", re.M), r"\1 in T ms"),
    (re.compile(r"( from server \S+) in \d+ ms\.$", re.M), r"\1 in T ms."),
    # the client cookie: random, dig's and ours (the server's part is fixed: compared)
    (re.compile(r"^; COOKIE: [0-9a-f]{16}", re.M), "; COOKIE: CLIENT"),
]


def normal(text: str) -> str:
    for pattern, repl in NATURE:
        text = pattern.sub(repl, text)
    return text


def both(
    mine: Sequence[str], theirs: Sequence[str]
) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    """ours(*mine) and dig(*theirs) run at the same time: the zone server answers each
    query alike whoever asks (it keeps no state between queries), and a comparison with a
    silent server then waits for one set of timeouts, not for two in turn."""
    with ThreadPoolExecutor(1) as pool:
        theirs_done = pool.submit(dig, *theirs)
        return ours(*mine), theirs_done.result()


def side_by_side(*words: str) -> str:
    a, b = both(words, words)
    assert "Traceback" not in a.stderr, a.stderr
    assert normal(a.stdout) == normal(b.stdout), (words, a.stderr)
    return a.stdout


def test_default_sections_and_dnssec_as_dig(port: int) -> None:
    at = ["@127.0.0.1", "-p", str(port)]
    out = side_by_side(
        *at, "+dnssec", "a.test", "test", "DNSKEY", "sub.test", "DS", "nope.test",
        "mx.test", "MX", "_443._tcp.www.test", "TLSA", "ssh.test", "SSHFP",
        "a-rather-long-label-for-the-columns.test", "txt.test", "TXT", "x.sub.test",
        "refused.test", "www.test", "AAAA",
    )  # fmt: skip
    for part in (";; OPT PSEUDOSECTION:\n; EDNS: version: 0, flags: do; udp: 1232",
                 "IN\tRRSIG\tDNSKEY 13 1 3600", ";; AUTHORITY SECTION:",
                 ";; ADDITIONAL SECTION:", "status: REFUSED", "status: NXDOMAIN"):  # fmt: skip
        assert part in out
    side_by_side(*at, "a.test", "v6.test", "AAAA")  # without +dnssec: no RRSIG, no do
    out = side_by_side(*at, "+tcp", "+norec", "-t", "MX", "mx.test")
    assert "(TCP)" in out and "flags: qr aa;" in out
    assert "1.2.0.192.in-addr.arpa.\t\tIN\tPTR" in side_by_side(*at, "-x", "192.0.2.1")


def test_edns_switches_as_dig(port: int) -> None:
    at = ["@127.0.0.1", "-p", str(port)]
    out = side_by_side(*at, "+noedns", "+nocmd", "v6.test", "AAAA", "big.test", "TXT")
    assert "OPT PSEUDOSECTION" not in out and ";; Truncated, retrying in TCP mode." in out
    out = side_by_side(*at, "+bufsize=512", "+dnssec", "keys.test", "DNSKEY", "a.test")
    assert out.count(";; Truncated, retrying in TCP mode.") == 1 and "(TCP)" in out
    out = side_by_side(*at, "+dnssec", "keys.test", "DNSKEY")  # 1232: no truncation
    assert "Truncated" not in out and "(UDP)" in out
    side_by_side(*at, "+edns=1", "+nocmd", "a.test")  # BADVERS, asked again with version 0
    # +ignore: the truncated answer as it came (flags tc, no answer), no TCP retry
    out = side_by_side(*at, "+ignore", "+noedns", "big.test", "TXT", "+bufsize=512",
                       "+dnssec", "keys.test", "DNSKEY")  # fmt: skip
    assert out.count("flags: qr aa tc rd;") == 2 and "Truncated" not in out and "(TCP)" not in out


def test_display_switches_as_dig(port: int) -> None:
    at = ["@127.0.0.1", "-p", str(port)]
    for switches in (["+noall", "+answer"], ["+nocomments"], ["+nostats", "+nocmd"],
                     ["+noquestion", "+noadditional"], ["+noauthority", "+nocmd"],
                     ["+noall", "+answer", "+stats"], ["+noall", "+comments"],
                     ["+short"]):  # fmt: skip
        side_by_side(*at, *switches, "+dnssec", "mx.test", "MX", "nope.test")


def test_ipv6_only(port6: int) -> None:
    out = side_by_side("-6", "@::1", "-p", str(port6), "v6.test", "AAAA")
    assert ";; SERVER: ::1#" in out
    got = ours("-4", "@::1", "-p", str(port6), "v6.test")
    assert got.returncode == 2 and got.stderr.strip().endswith(
        "-4: the server ::1 is not an IPv4 address"
    )  # fmt: skip


def test_closed_udp_port_is_connection_refused_at_once(port: int) -> None:
    """dig sees the ICMP port unreachable on its connected socket; we capture it with
    the endpoint's raw socket. Both say so at once (not after the tries' waits)."""

    free = closed_udp_port()  # a port nothing listens on
    words = ["@127.0.0.1", "-p", str(free), "+tries=1", "+time=5", "a.test"]
    t0 = time.monotonic()
    a = ours(*words)
    took = time.monotonic() - t0
    b = dig(*words)
    assert normal(a.stdout) == normal(b.stdout) and "connection refused" in a.stdout
    assert took < 5, took  # not the 5 s wait
    assert (a.returncode, b.returncode) == (1, 9)  # ours: 1 some query unanswered


def test_timeout_and_malformed_replies(port: int) -> None:
    at = ["@127.0.0.1", "-p", str(port)]
    side_by_side(*at, "+time=1", "+tries=1", "silent.test")
    # a bad packet: dig's `;; Got bad packet: REASON` and its hex dump (the ID differs)
    hexid = re.compile(r"^(\d+ bytes\n)[0-9a-f]{2} [0-9a-f]{2} (.{51})..", re.M)
    for words in (["garbage.test"], ["garbage.test", "a.test"], ["a.test", "garbage.test"],
                  ["+tcp", "+nocmd", "tcgarbage.test"], ["+nocmd", "tcgarbage.test"]):  # fmt: skip
        a, b = both([*at, *words], [*at, *words])
        assert a.returncode == 1 and "Traceback" not in a.stderr, a.stderr
        assert hexid.sub(r"\1ID \2ID", normal(a.stdout)) == hexid.sub(
            r"\1ID \2ID", normal(b.stdout)
        )
        assert ";; Got bad packet: b" in a.stdout and " bytes\n" in a.stdout
    for words in (["badptr.test"], ["+tcp", "badptr.test"]):  # in the answer section
        a, b = both([*at, *words], [*at, *words])
        assert hexid.sub(r"\1ID \2ID", normal(a.stdout)) == hexid.sub(
            r"\1ID \2ID", normal(b.stdout)
        )
    # cut short past the question, or with bytes after it: what parsed, as dig (BIND's best
    # effort: `Warning: Message parser reports malformed message packet.`, the extra bytes)
    for name in ("badopt.test", "cut.test", "cutname.test", "cutfixed.test", "cutdata.test",
                 "junk.test", "counts.test"):  # fmt: skip
        for words in ([name], ["+tcp", "+nocmd", name]):
            out = side_by_side(*at, *words)
            assert " extra bytes at end\n" in out or name == "counts.test"
    assert "Warning: Message parser reports malformed" not in side_by_side(*at, "junk.test")


def test_trace_as_dig(port: int) -> None:
    """+trace from @SERVER: the server's root zone names localhost. as the root server
    (dig finds its address on this host, we in the glue), which answers for test. itself."""
    at = ["-4", "+trace", "@127.0.0.1", "-p", str(port)]
    for words in (["a.test"], ["nope.test"], ["www.test", "AAAA"], ["test", "DNSKEY"],
                  ["+nodnssec", "a.test"]):  # fmt: skip
        out = side_by_side(*at, *words)
        assert out.count(";; Received ") == 2 and "(localhost) in " in out
    out = side_by_side(*at, "+short", "www.test", "AAAA")
    assert "CNAME v6.test. from server 127.0.0.1 in " in out
    out = side_by_side(*at, "+tcp", "a.test")  # every step over TCP (refused before session 12)
    assert out.count(";; Received ") == 2 and ";; Received 94 bytes from" in out
    # sub.test.'s server is ns.sub.test. at 127.0.0.1 (glue), this same server: it refers
    # to sub.test. again. dig cannot find ns.sub.test on this host; we stop at the loop,
    # the step shown as dig shows a horizontal referral (its `BAD (HORIZONTAL) REFERRAL`)
    got = ours(*at, "x.sub.test")
    assert got.returncode == 1 and got.stdout.count(";; Received ") == 3
    assert normal(got.stdout).endswith(
        "sub.test.\t\t3600\tIN\tNS\tns.sub.test.\n;; BAD (HORIZONTAL) REFERRAL\n"
        f";; Received 100 bytes from 127.0.0.1#{port}(ns.sub.test) in T ms\n\n"
        ";; referral to sub.test. from sub.test. goes no deeper (a lame delegation)\n"
    )


@pytest.mark.skipif(
    shutil.which("capsh") is None or os.geteuid() != 0, reason="needs root and capsh"
)
def test_without_raw_sockets_a_closed_port_is_no_answer_saying_why() -> None:
    """The in-process endpoint without CAP_NET_RAW: the query still works, a closed port
    is `timed out` after the try, and the line after says why it cannot tell."""
    import shlex

    free = closed_udp_port()
    cmd = shlex.join([*RUN, "@127.0.0.1", "-p", str(free), "+tries=1", "+time=1", "a.test"])
    env = dict(os.environ, PYTHONPATH=str(REPO))
    got = subprocess.run(
        ["capsh", "--drop=cap_net_raw", "--", "-c", cmd],
        capture_output=True, text=True, timeout=60, env=env, cwd=REPO,
    )  # fmt: skip
    assert got.returncode == 1 and "Traceback" not in got.stderr, got.stderr
    assert got.stdout.startswith(f";; communications error to 127.0.0.1#{free}: timed out\n")
    assert got.stdout.rstrip().endswith(
        "a closed port cannot be told from a silent server: the endpoint's UDP sockets report "
        "no ICMP port unreachable, and none could be captured: nopen failed: EUNKFAULT "
        "(0xffff): failure on the endpoint (e.g. a raw socket could not be opened))"
    )


def test_hostile_servers_through_the_cli(port: int) -> None:
    """TC over UDP, then 64 KiB of garbage over TCP: one line naming the server, exit 1.
    An endless referral chain (each answer one label deeper, to the same server): +trace
    gives up after its step limit, one line, exit 1, in bounded time."""
    at = ["@127.0.0.1", "-p", str(port)]
    got = ours(*at, "+nocmd", "tcgarbage.test")
    assert got.returncode == 1 and "Traceback" not in got.stderr, got.stderr
    lines = got.stdout.splitlines()  # dig's hex dump of it: 4096 lines of 16 bytes
    assert lines[:3] == [
        ";; Truncated, retrying in TCP mode.", ";; Got bad packet: bad label type", "65535 bytes"
    ]  # fmt: skip
    assert len(lines) == 3 + 4096
    deep = ".".join(["x"] * 40) + ".deep.test"
    t0 = time.monotonic()
    got = ours("-4", "+trace", *at, deep)
    assert got.returncode == 1 and "Traceback" not in got.stderr, got.stderr
    assert got.stdout.count(";; Received ") == 17  # the root's NS, then the 16 referrals
    assert got.stdout.rstrip().splitlines()[-1] == (
        ";; gave up after 16 referrals (the last to " + ".".join(["x"] * 15)
        + ".deep.test. from 127.0.0.1): too deep a delegation or a referral loop"
    )  # fmt: skip
    assert time.monotonic() - t0 < 60


def test_multiline_and_split_as_dig(port: int) -> None:
    """+multiline: BIND's columns and multi-line records (SOA's timer comments, DNSKEY's
    key comments, RRSIG, DS, TLSA, SSHFP, NSEC3, CERT, IPSECKEY, OPENPGPKEY, DHCID with its
    comment, ZONEMD in parentheses; CAA, HTTPS, SVCB, HINFO, LOC on one line), in every section;
    +split=N (dig's warning for N not a multiple of 4 on stderr, as dig)."""
    at = ["@127.0.0.1", "-p", str(port), "+dnssec"]
    n3 = "2t7b4g4vsa5smi47k61mv5bv1a22bojr.test"
    out = side_by_side(
        *at, "+multiline", "test", "SOA", "soa2.test", "SOA", "test", "DNSKEY", "rev.test",
        "DNSKEY", "sub.test", "DS", "a.test", "nope.test", "_443._tcp.www.test", "TLSA",
        "ssh.test", "SSHFP", n3, "NSEC3", n3, "NSEC3PARAM", "mx.test", "MX",
        "a-rather-long-label-for-the-columns.test", "txt.test", "TXT",
    )  # fmt: skip
    for part in (
        "90061      ; retry (1 day 1 hour 1 minute 1 second)\n",
        ") ; KSK; alg = ECDSAP256SHA256 ; key id = ",
        ") ; revoked KSK; alg = ED25519 ; key id = 17069\n",
        ";test.\t\t\tIN SOA\n",
    ):
        assert part in out  # fmt: skip
    more = ["pgp.test", "OPENPGPKEY", "cert.test", "CERT", "ipsec.test", "IPSECKEY", "dhcid.test",
            "DHCID", "test", "ZONEMD", "caa.test", "CAA", "https.test", "HTTPS", "https2.test",
            "HTTPS", "svcb.test", "SVCB", "hinfo.test", "HINFO", "loc.test", "LOC"]  # fmt: skip
    for switches in ([], ["+multiline"], ["+split=12"], ["+split=0", "+multiline"]):
        out = side_by_side(*at, "+nocmd", *switches, *more)
    assert ") ; 21242 179 32\n" in out and "ipv4hint=192.0.2.1,192.0.2.2 " in out
    for switches in (["+split=8"], ["+split=22", "+multiline"], ["+nosplit"], ["+split=0"],
                     ["+multiline", "+short"], ["+split=60", "+short"]):  # fmt: skip
        a, b = (
            ours(*at, *switches, "test", "DNSKEY", "sub.test", "DS"),
            dig(*at, *switches, "test", "DNSKEY", "sub.test", "DS"),
        )
        assert normal(a.stdout) == normal(b.stdout), switches
        assert a.stderr == b.stderr, switches  # the warning for 22, nothing else


def test_nsid_cookie_and_class_as_dig(port: int) -> None:
    """+nsid: the server's NSID as dig shows it; cookies: dig sends a client cookie by
    default (+nocookie: none, +cookie=HEX: that one), the server's echo is `(good)`;
    -c CLASS and a class among the names (CH TXT version.bind, as a BIND server)."""
    at = ["@127.0.0.1", "-p", str(port)]
    out = side_by_side(*at, "+nsid", "a.test")
    assert '; NSID: 6e 73 31 2e 74 65 73 74 ("ns1.test")\n; COOKIE: ' in out
    assert "0100000069a5c3d20123456789abcdef (good)\n" in out
    out = side_by_side(*at, "+cookie=0011223344556677", "a.test")
    assert "; COOKIE: 00112233445566770100000069a5c3d20123456789abcdef (good)\n" in out
    for words in (["+nocookie", "+nsid", "a.test"], ["+noedns", "+nsid", "a.test"],
                  ["+tcp", "+nsid", "a.test"]):  # fmt: skip
        side_by_side(*at, *words)
    assert "COOKIE" not in side_by_side(*at, "+nocookie", "a.test")
    out = side_by_side(*at, "-c", "CH", "-t", "TXT", "version.bind", "id.server")
    assert 'version.bind.\t\t0\tCH\tTXT\t"9.18-pktlab-test"' in out
    side_by_side(*at, "version.bind", "CH", "TXT", "a.test", "id.server", "TXT", "CLASS3")
    side_by_side(*at, "+multiline", "version.bind", "chaos", "TXT", "nope.bind", "CH")


def test_batch_file_as_dig(port: int, tmp_path: Path) -> None:
    """-f FILE: one query line per line, each with its own words (+short, +[no]cmd and
    +split stay for the lines after, as dig's globals); a banner line per batch line."""
    f = tmp_path / "queries"
    f.write_text(
        "a.test\nmx.test MX +noall +answer\nversion.bind CH TXT +short\n"
        "www.test AAAA +multiline\n-x 192.0.2.1 +nocmd\n-t TXT txt.test +tcp\n"
    )
    at = ["@127.0.0.1", "-p", str(port)]
    for words in (["-f", str(f)], ["+noall", "+answer", "-f", str(f)],
                  ["+dnssec", "+multiline", "-f", str(f)]):  # fmt: skip
        side_by_side(*at, *words)
    f.write_text("a.test +dnssec +multiline\ntest DNSKEY +split=8\nsub.test DS +dnssec\n"
                 "a.test +noall +answer\nmx.test MX\n")  # fmt: skip
    out = side_by_side(*at, "-f", str(f))
    assert out.count("; <<>> ") == 3 and "<<>> a.test +dnssec +multiline\n" in out
    # -t, -x and @SERVER after a name in a line: that name's, as on the command line
    f.write_text("a.test -t MX mx.test\n@127.0.0.1 nope.test\nmx.test MX @::1 +tries=1\n"
                 "-x 192.0.2.1 a.test\n")  # fmt: skip
    side_by_side(*at, "-f", str(f))
    big = tmp_path / "big"  # a million lines: refused at once, read a line at a time
    with big.open("w") as w:
        for i in range(1_000_000):
            w.write(f"n{i}.test\n")
    t0 = time.monotonic()
    got = ours(*at, "-f", str(big))
    assert got.returncode == 2 and "Traceback" not in got.stderr
    assert got.stderr.strip().endswith(
        f"-f {big}: more than 10000 lines (the cap: each answer is kept for the summary; "
        "split the file)"
    )
    assert time.monotonic() - t0 < 30 and got.stdout == ""


def test_options_after_a_name_are_its_own_as_dig(port: int) -> None:
    """dig: a + option after a name is that name's query's (before any name: every
    query's), but for its global switches (+short, +[no]cmd, +split, +time)."""
    at = ["@127.0.0.1", "-p", str(port)]
    for words in (["a.test", "+dnssec", "nope.test", "a.test"],
                  ["+dnssec", "a.test", "a.test", "+nodnssec", "a.test"],
                  ["a.test", "+nocmd"], ["a.test", "+short", "a.test"],
                  ["a.test", "+noall", "+answer", "a.test"],
                  ["mx.test", "MX", "+noall", "+answer", "+authority", "a.test", "+nostats"],
                  ["a.test", "+multiline", "+dnssec", "test", "SOA"],
                  ["a.test", "+tcp", "+nsid", "a.test"],
                  ["a.test", "+split=8", "+dnssec", "test", "DNSKEY"]):  # fmt: skip
        side_by_side(*at, *words)


def test_dash_t_c_x_and_servers_after_a_name_as_dig(port: int) -> None:
    """dig applies -t, -c and @SERVER written after a name to that name's query only; -x
    is a name where it stands; after a -t, -c or -x a type or class word is a name; a
    type word before any name is every name's. Several servers: tried in order, each
    failure a `communications error` line (::1: nothing listens, refused at once)."""
    at = ["@127.0.0.1", "-p", str(port)]
    for words in (["a.test", "-t", "MX", "mx.test"], ["a.test", "-t", "MX", "mx.test", "MX"],
                  ["a.test", "-c", "CH", "version.bind", "TXT"], ["MX", "mx.test", "a.test"],
                  ["-t", "MX", "a.test", "mx.test", "-t", "TXT", "txt.test"],
                  ["-x", "192.0.2.1", "-t", "A", "a.test"], ["a.test", "-x", "192.0.2.1"],
                  ["-t", "MX", "-x", "192.0.2.1", "+noall", "+question"]):  # fmt: skip
        side_by_side(*at, *words)
    p = ["-p", str(port), "+tries=1"]  # ::1: nothing listens there (the server is IPv4)
    out = side_by_side(*p, "@::1", "@127.0.0.1", "a.test", "nope.test")
    assert out.count(f";; communications error to ::1#{port}: connection refused") == 2
    out = side_by_side(*p, "a.test", "@::1", "@127.0.0.1", "nope.test", "@127.0.0.1")
    assert out.count(";; communications error") == 1 and "server found" not in out
    side_by_side(*p, "@127.0.0.1", "a.test", "@::1", "b.test", "@::1")
    side_by_side(*p, "+nocmd", "a.test", "@::1")  # its only server: no servers reached


@pytest.fixture(scope="module")
def hierarchy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """dns_hierarchy_server.py on 127.0.0.11-14 (root, tld., example.tld., other.tld.)
    and an /etc/hosts naming its servers (dig +trace resolves them on its host)."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare (a mount namespace for dig's /etc/hosts)")
    server = HERE / "dns_hierarchy_server.py"
    names = subprocess.run([sys.executable, str(server), "127.0.0", "--hosts"],
                           capture_output=True, text=True, check=True).stdout  # fmt: skip
    hosts = tmp_path_factory.mktemp("hierarchy") / "hosts"
    hosts.write_text(Path("/etc/hosts").read_text() + names)
    with serve_child(str(server), "127.0.0") as port:
        yield port, hosts


def with_hosts(hosts: Path, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """`argv` in a mount namespace of its own where /etc/hosts is `hosts` (both tools)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"', str(hosts),
         *argv], capture_output=True, text=True, timeout=120, env=env, cwd=REPO,
    )  # fmt: skip


def test_trace_down_a_delegation_hierarchy_as_dig(hierarchy: tuple[int, Path]) -> None:
    """+trace from @127.0.0.11 (the root) down to tld. and example.tld. (glue), other.tld.
    (no glue: ours asks @SERVER for its NS's address, dig its host's /etc/hosts), over
    UDP and TCP, with DNSSEC's DS and RRSIG in the referrals: the same lines as dig's but
    for the times. A lame delegation: dig's first `BAD (HORIZONTAL) REFERRAL` step, then
    we stop (dig goes round until `too many lookups`)."""
    port, hosts = hierarchy
    at = ["-4", "+trace", "@127.0.0.11", "-p", str(port)]
    for words in (["www.example.tld"], ["a.other.tld"], ["nope.example.tld"],
                  ["host.example.tld", "TXT"], ["+tcp", "mx.example.tld", "MX"],
                  ["+nodnssec", "host.example.tld", "AAAA"], ["+short", "www.example.tld"],
                  ["+nocookie", "+nodnssec", "+multiline", "example.tld", "SOA"]):  # fmt: skip
        a, b = with_hosts(hosts, [*RUN, *at, *words]), with_hosts(hosts, ["dig", *at, *words])
        assert "Traceback" not in a.stderr and (a.returncode, b.returncode) == (0, 0), a.stderr
        assert normal(a.stdout) == normal(b.stdout), words
    assert a.stdout.count(";; Received ") == 4
    assert "(ns.example.tld) in " in a.stdout and "tld.\t\t\t86400\tIN\tDS\t4242 13 2 " in (
        with_hosts(hosts, [*RUN, *at, "www.example.tld"]).stdout
    )
    a, b = (
        with_hosts(hosts, [*RUN, *at, "x.loop.tld"]),
        with_hosts(hosts, ["dig", *at, "x.loop.tld"]),
    )
    assert (a.returncode, b.returncode, b.stderr) == (1, 1, "dig: too many lookups\n")
    ours_lines = normal(a.stdout).splitlines()
    assert (
        ours_lines[-1]
        == ";; referral to loop.tld. from loop.tld. goes no deeper (a lame delegation)"
    )
    assert normal(b.stdout).startswith("\n".join(ours_lines[:-1]) + "\n")
    assert ours_lines[-4:-2] == [
        ";; BAD (HORIZONTAL) REFERRAL",
        f";; Received 101 bytes from 127.0.0.12#{port}(ns1.tld) in T ms",
    ]


def test_one_type_a_name_with_digs_warning(port: int, tmp_path: Path) -> None:
    """Several types (or classes) for one name: dig asks the last, `;; Warning, extra type
    option` (`class`) on stderr for each one more, exit 0; so do we (each was asked).
    -t before -f is every batch line's type (ours asked A)."""
    at = ["@127.0.0.1", "-p", str(port)]
    f = tmp_path / "queries"
    f.write_text("a.test A\nmx.test\nmx.test A MX\n-x 192.0.2.1\n")
    for words in (["mx.test", "A", "MX"], ["-t", "A", "-t", "MX", "mx.test", "a.test"],
                  ["A", "mx.test", "MX", "TXT", "a.test"], ["txt.test", "-t", "A", "-t", "TXT"],
                  ["a.test", "A", "a.test", "MX"], ["version.bind", "IN", "CH", "TXT"],
                  ["-c", "IN", "-c", "CH", "-t", "TXT", "version.bind"],
                  ["+noall", "+answer", "-t", "MX", "-f", str(f)]):  # fmt: skip
        a, b = both([*at, *words], [*at, *words])
        assert normal(a.stdout) == normal(b.stdout), words
        assert (a.stderr, a.returncode) == (b.stderr, b.returncode), words
    assert b.stderr == ";; Warning, extra type option\n" * 3
    assert a.stdout.endswith("mx.test.\t\t60\tIN\tMX\t10 a.test.\n" * 2)
    a = ours(*at, "+short", "mx.test", "A", "MX")  # one answer: the MX's
    assert (a.stdout, a.stderr) == ("10 a.test.\n", ";; Warning, extra type option\n")


def test_hip_tkey_and_tsig_as_dig(port: int) -> None:
    """HIP in the zone; TKEY in answers (with other data, with an error and no key, an
    error BIND has no name for); replies with a TSIG (no key given, as dig without -k:
    dig's TSIG pseudosection after the additional section), a TSIG in the answer section
    (BIND's best effort: a record of it, the malformed-packet warning): one line and
    BIND's +multiline forms, +split=N, +short, the display switches, over UDP and TCP."""
    at = ["@127.0.0.1", "-p", str(port)]
    names = ["hip.test", "HIP", "hip2.test", "HIP", "tkey.test", "TKEY", "tkey2.test",
             "tkey3.test", "tkey4.test", "tkey5.test", "tkeyother.test", "tsig.test",
             "tsigtime.test", "tsigans.test", "tsigother.test"]  # fmt: skip
    for switches in ([], ["+multiline"], ["+split=12"], ["+split=0", "+multiline"], ["+short"],
                     ["+nocomments"], ["+noadditional", "+multiline"], ["+tcp", "+multiline"],
                     ["+noall", "+answer", "+additional"], ["+split=100"], ["+split=0"],
                     ["+multiline", "+split=12"]):  # fmt: skip
        a, b = both([*at, *switches, *names], [*at, *switches, *names])
        assert normal(a.stdout) == normal(b.stdout), switches
        assert (a.returncode, b.returncode) == (0, 0) and "Traceback" not in a.stderr
    out = side_by_side(*at, "+multiline", "+nocmd", *names)
    for part in (
        "hip.test.\t\t300 IN HIP ( 2 DD805812F2FD7FF1476C5ABB96D09D0D\n\t\t\t\t",
        "\t\t\t\trvs1.test.\n\t\t\t\trvs2.test. )\n",
        "\t\t\t\tFQ== ) 6 (\n\t\t\t\tAABpMtkA )\n",
        " 2 BADKEY 0 (\n\t\t\t\t ) 0\n",
        ";; TSIG PSEUDOSECTION:\nkey.test.\t\t0 ANY TSIG hmac-sha256. 1764892800 300 32 (\n",
        ";; Warning: Message parser reports malformed message packet.\n",
    ):
        assert part in out
    # a lookup with a cookie of its own (+cookie=HEX; +trace's steps after the first) and a
    # reply without OPT: dig's `;; expected opt record in response` (ours said nothing)
    out = side_by_side(*at, "+cookie=0011223344556677", "tsig.test", "cut.test", "a.test")
    assert out.count(";; expected opt record in response\n") == 2
    for words in (["-4", "+trace", "tsig.test"], ["-4", "+trace", "+nocookie", "tkey.test"]):
        out = side_by_side(*at, *words)
        assert ("expected opt" in out) == ("+nocookie" not in words)


def test_a_type_or_class_dig_does_not_know_as_dig(port: int, tmp_path: Path) -> None:
    """dig's -t BOGUS (-c BOGUS, -t 65, -t ixfr, ixfr as a word): its warning on stderr,
    the type it had asked (exit 0; was our error); KEYDATA asked as TYPE65533. In a batch
    file each line's warnings come between the answers, as dig reads its lines (stdout
    and stderr in one pipe, `2>&1`)."""
    at = ["@127.0.0.1", "-p", str(port)]
    for words in (["-t", "BOGUS", "a.test"], ["a.test", "-t", "MX", "-t", "BOGUS"],
                  ["a.test", "-t", "65"], ["a.test", "-t", "ixfr"], ["a.test", "ixfr"],
                  ["a.test", "-c", "BOGUS"], ["a.test", "-c", "CH", "-c", "BOGUS"],
                  ["-x", "192.0.2.1", "-t", "NONE"], ["a.test", "-t", "KEYDATA"],
                  ["a.test", "KEYDATA", "NXNAME"]):  # fmt: skip
        a, b = both([*at, "+noall", "+question", *words], [*at, "+noall", "+question", *words])
        assert (a.stdout, a.stderr, a.returncode) == (b.stdout, b.stderr, b.returncode), words
        assert b.returncode == 0
    assert "ignoring invalid type BOGUS" in dig(*at, "-t", "BOGUS", "a.test").stderr
    f = tmp_path / "batch"
    f.write_text("a.test +short\nb.test -t BOGUS +short\na.test -t MX -t A +short +split=5\n"
                 "-c BOGUS a.test +short\na.test -t KEYDATA\n")  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(REPO))
    a, b = (subprocess.run([*cmd, *at, "-f", str(f)], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=120, env=env, cwd=REPO)
            for cmd in (RUN, ["dig"]))  # fmt: skip
    assert normal(a.stdout) == normal(b.stdout)
    assert b.stdout.startswith("192.0.2.1\n192.0.2.2\n;; Warning, ignoring invalid type BOGUS\n")


def test_a_tsig_error_above_4095_as_dig(port: int) -> None:
    """A TSIG whose 16-bit error is above 4095 (dnspython reads errors as RCODEs, up to
    4095): dig shows the reply and the number; ours was `Got bad packet: rcode must be an
    int between >= 0 and <= 4095`, exit 1. In place, and out of place (BADTSIG)."""
    at = ["@127.0.0.1", "-p", str(port)]
    for name in ("tsigbig.test", "tsigmax.test", "tsigbigans.test"):
        for style in ([], ["+multiline"], ["+split=8"], ["+short"]):
            out = side_by_side(*at, *style, name)
            assert "Got bad packet" not in out, out
    assert " 4242 65535 0 " in side_by_side(*at, "tsigmax.test")


def test_keydata_and_unknown_types_as_dig(port: int) -> None:
    """KEYDATA (65533; dnspython has no such type) and an empty TYPE65280: dig 9.18
    writes them in RFC 3597's form (KEYDATA's own text is for named's key files): `\\# N`,
    the hex in upper case and dig's words (ours was dnspython's lower case, one word)."""
    at = ["@127.0.0.1", "-p", str(port)]
    for style in ([], ["+multiline"], ["+short"], ["+split=8"], ["+nosplit"]):
        out = side_by_side(*at, *style, "keydata.test", "KEYDATA", "empty.test", "TYPE65280")
        assert "TYPE65533" in out or "+short" in style
        assert "\\# 48 " in out and "69320080" in out and "\\# 0" in out


def test_records_of_another_class_than_the_question_s_as_dig(port: int) -> None:
    """The zone server answers in class IN whatever the question's: for HS, NONE, CLASS9
    dig warns (BIND's FORMERR, best effort: `;; Warning: Message parser reports malformed
    message packet.`); for ANY and CH's version.bind it does not. Ours said nothing."""
    at = ["@127.0.0.1", "-p", str(port)]
    for words in (["a.test", "-c", "HS"], ["a.test", "NONE"], ["a.test", "-c", "CLASS9"],
                  ["nope.test", "-c", "HS"], ["a.test", "-c", "ANY"],
                  ["version.bind", "CH", "TXT"]):  # fmt: skip
        out = side_by_side(*at, *words)
        assert ("malformed" in out) == (words[-1] not in ("ANY", "TXT")), words


def test_tcp_to_a_closed_port_is_digs_connect_failure(port: int) -> None:
    """+tcp to a port nothing listens on: dig's `;; Connection to ... failed: connection
    refused.` and `;; no servers could be reached` each try, no banner (session 14:
    was one `communications error` line, the banner, one try); with a server after
    it, the next server's answer after the first's tries, as dig."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    for words in (["+tries=2"], ["+tries=1", "+short"], ["+tries=3", "+nocmd"]):
        out = side_by_side("@127.0.0.1", "-p", str(closed), "a.test", "+tcp", *words)
        assert "failed: connection refused." in out and "<<>>" not in out
    got = ours("@127.0.0.1", "-p", str(closed), "+tcp", "a.test")
    assert got.returncode == 1
    # 127.0.0.2: nothing listens there; then the zone server's answer
    out = side_by_side("@127.0.0.2", "@127.0.0.1", "-p", str(port), "+tcp", "+tries=2", "a.test")
    assert out.count("failed: connection refused.") == 2 and "status: NOERROR" in out
    # a silent server: dig's `timed out` over TCP too, and its banner with +short
    at = ["@127.0.0.1", "-p", str(port), "silent.test", "+time=1"]
    for words in (
        ["+tcp", "+tries=2"],
        ["+tcp", "+tries=1", "+short"],
        ["+tries=1", "+short"],
        ["+tries=1", "+nocmd"],
    ):  # after the name: dig's banner all the same
        out = side_by_side(*at, *words)
        assert "timed out" in out and out.endswith(";; no servers could be reached\n")
    out = side_by_side("+short", *at, "+tries=1")  # before it: none
    assert "<<>>" not in out
