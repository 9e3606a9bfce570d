"""`pktlab run dns` side by side with dig 9.18 against dns_odd_server.py (session 26,
dns26): EDNS options BIND refuses or names, RCODEs dig names in its own words, DNSSEC
text where dnspython's differs from BIND's (RSAMD5's key tag, an RRSIG more than 68
years ahead, SIG), NID, L64, GPOS and SVCB keys BIND 9.18 does not name, records as
they came (a duplicate, an RRset interleaved, two TTLs in one, the question in upper
case). The same
bytes but for what differs by nature (test_dns_dig's `normal`) and the message ID in a
bad packet's hex dump."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from childserver import serve_child
from test_dns_dig import both, normal, pytestmark  # noqa: F401  (skip without dig)
from test_dns_options_dig import YAML_NATURE

HERE = Path(__file__).resolve().parent
ANY_ID = re.compile(r"(->>HEADER<<- opcode: \w+, status: \S+, id: )\d+")  # status ?17 too
DUMP_ID = re.compile(r"^[0-9a-f]{2} [0-9a-f]{2} (85 .{48})..", re.M)  # a dump's first line


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with serve_child(str(HERE / "dns_odd_server.py"), "127.0.0.1") as number:
        yield number


OPTIONS = ["x1-none", "x1-000100010000112233445566778800000e10", "x8-000100", "x8-00000000",
           "x8-000121000a0b0c0d0e", "x8-000117000a0b0d", "x9-0001", "x10-010203040506070809",
           "x11-00", "x14-000102", "x15-00", "x15-0001ff", "x15-0001e282ac41", "x15-0001007f",
           "x16-0001", "x17-000102", "x18-03666f6f"]  # fmt: skip
CASES = [
    ["+nocookie", *(f"{o}.odd" for o in OPTIONS)],
    ["+nocookie", "+yaml", "x1-000100010000112233445566778800000e10.odd", "x16-0001.odd",
     "x15-0001e282ac41.odd", "x11-00.odd"],
    ["+nocookie", *(f"rc{n}.odd" for n in (11, 12, 17, 22, 23, 24, 4095))],
    ["+nocookie", "+yaml", *(f"rc{n}.odd" for n in (11, 17, 4095))],
    ["keys.odd", "DNSKEY", "far.odd", "RRSIG", "sig.odd", "SIG"],
    ["+multiline", "keys.odd", "DNSKEY", "far.odd", "RRSIG", "sig.odd", "SIG"],
    ["+nocrypto", "keys.odd", "DNSKEY", "far.odd", "RRSIG", "sig.odd", "SIG"],
    ["nid.odd", "NID", "l64.odd", "L64", "gpos.odd", "GPOS", "svc.odd", "HTTPS"],
    ["+multiline", "svc.odd", "HTTPS", "+short", "nid.odd", "NID"],
    ["+nocookie", "dup.odd", "interleave.odd", "ttls.odd", "upperq.odd"],
    ["+nocookie", "+short", "dup.odd", "interleave.odd", "+yaml", "ttls.odd", "upperq.odd"],
    # session 28 (dns28): dig prints no statistics for a REFUSED or SERVFAIL under a
    # search domain, and twice for an absolute name's NXDOMAIN (the root's too) when
    # it has as many dots as ndots
    ["+nocookie", "+domain=odd", "rc5", "rc2", "zz.odd.", ".", "keys.odd.", "rc5.odd."],
    ["+nocookie", "+domain=odd", "+ndots=2", "rc5.", "a.zz.odd.", "zz.", "+showsearch", "zz"],
    ["+nocookie", "+domain=odd", "+identify", "+nostats", "rc5", "zz.odd."],
    # session 28 (dns28): a record's data cut short within its RDLENGTH (BIND's best
    # effort: the records before it, "N extra bytes at end"), or too long for its type
    ["+nocookie", "r16-056162.odd", "r6-000000000000.odd", "r1-010203.odd", "r28-00.odd",
     "r15-0001.odd", "r1-0102030405.odd", "r16-0361626303.odd", "r2-03616263.odd",
     "r64-00010000.odd", "r257-.odd", "r108-0000000000.odd", "r44-0101ab.odd",
     "r47-01610000.odd", "r2-01610000.odd"],
    ["+nocookie", "+nobesteffort", "r16-056162.odd", "+short", "r6-000000000000.odd"],
    # session 29 (dig29): a name compressed in any type's data (BIND reads it), a TLSA or
    # SMIMEA of another length than its matching type's, an empty OPENPGPKEY/NSAP/DHCID
    # (cut short), a WKS without a port or with a zero byte last (FORMERR), MD/MB/MINFO
    ["+nocookie", "r36-0001c00c.odd", "r39-c00c.odd", "r23-c00c.odd", "r64-0001c00c.odd",
     "r107-0001c00c.odd", "r260-0a03c00c.odd", "r47-c00c000140.odd",
     "r46-0001080200000e1000000000000000001234c00cab.odd",
     "r52-030101abababababababababababababababababab.odd", "r52-03010100.odd",
     "r53-030102abab.odd", "r61-.odd", "r22-.odd", "r49-.odd", "r11-c000020106.odd",
     "r11-c00002010600.odd", "r3-c00c.odd", "r7-016100.odd", "r14-c00cc00c.odd"],
    ["+nocookie", "+short", "r36-0001c00c.odd", "r52-03010100.odd", "r11-c000020106.odd",
     "+multiline", "+noshort", "r14-c00cc00c.odd"],
    ["+nocookie", "-c", "CH", "r1-c00c002a.odd", "r1-016100002a.odd", "r1-c00c00.odd",
     "r1-4000002a.odd"],
    ["+nocookie", "-c", "HS", "r1-c0000201.odd", "+unknownformat", "r1-c0000201.odd"],
    ["+nocookie", "r104-000a00144fffff20ee.odd", "r104-.odd", "r105-000a0a0102.odd",
     "r106-000a20010db81140100000.odd", "r260-00030161.odd", "r260-000301610000.odd",
     "r260-000101020304ff.odd", "r55-01020001aabb0161.odd", "r55-01020005aabb.odd"],
    # session 29 (dig29): +yaml's IPv6 ending in `::` (a 0), +unknownformat of NID, L64, MB
    ["+nocookie", "+yaml", "+noall", "+answer", "v6.odd", "AAAA", "v6.odd", "APL"],
    ["+nocookie", "+yaml", "+short", "v6.odd", "AAAA"],  # (+short's lines: not YAML's)
    ["+nocookie", "+unknownformat", "nid.odd", "NID", "l64.odd", "L64", "r7-016100.odd",
     "r14-016100016200.odd"],
    # session 29 (dig29): +nocrypto omits OPENPGPKEY's key and ZONEMD's digest
    ["+nocookie", "+nocrypto", "pgp.odd", "OPENPGPKEY", "zmd.odd", "ZONEMD"],
    ["+nocookie", "+nocrypto", "+multiline", "pgp.odd", "OPENPGPKEY", "zmd.odd", "ZONEMD"],
    ["+nocookie", "+yaml", "+short", "+identify", "dup.odd"],  # (session 29: where)
    # session 29 (dig29): an NSEC3 whose owner is no base32hex hash: BIND's check-names
    [*(w for n in ("2t7b4g4vsa5smi47k61mv5bv1a22bojr", "nsec3", "nsec3w", "c0", "c1", "c000",
                   "c001", "c0000", "c0001", "c000000", "c000004", "c00", "cccccccc")
       for w in (f"{n}.odd", "NSEC3"))],
    # session 30 (dig30): an NSEC3 of SHA-1 whose hash is not 20 bytes: BIND's FORMERR
    # (before its owner's check); other algorithms: any length (then the owner's check)
    ["+nocookie", *(f"r50-{h}.odd" for h in (
        "0101000c0001aa", "0101000c0008aabbccddeeff00110006400000000002",
        "0101000c0013174eb2409fe28bcb4887a1836f957f0a8425e2",
        "0101000c0015174eb2409fe28bcb4887a1836f957f0a8425e27baa",
        "0101000c0014174eb2409fe28bcb4887a1836f957f0a8425e27b",
        "0201000c0008aabbccddeeff0011", "0001000c0001aa"))],
]  # fmt: skip


@pytest.mark.parametrize("words", CASES, ids=[str(i) for i in range(len(CASES))])
def test_odd_answers_as_dig(port: int, words: list[str]) -> None:
    at = ["@127.0.0.1", "-p", str(port)]
    a, b = both([*at, *words], [*at, *words])
    assert "Traceback" not in a.stderr, a.stderr
    ours, theirs = (ANY_ID.sub(r"\1ID", DUMP_ID.sub(r"ID ID \1ID", normal(t.stdout)))
                    for t in (a, b))  # fmt: skip
    for pattern, repl in YAML_NATURE:  # (+yaml's times and IDs)
        ours, theirs = pattern.sub(repl, ours), pattern.sub(repl, theirs)
    assert ours == theirs, (words, a.stderr)
    assert b.returncode == 0  # ours: 1 when a reply was a bad packet (dig 0; documented)
    assert a.returncode == (1 if "Got bad packet" in a.stdout else 0)


#: session 29 (dig29): a -f line's +showsearch, +search, +ndots stay for the later
#: lines (dig's globals); a later line's +domain changes nothing (dig makes its search
#: list after the first line); the first line's is the run's
BATCHES = [
    "zz\n+showsearch zz\nzz\n+noshowsearch zz\n+search +ndots=2 a.zz\na.zz\n+domain=x zz\n"
    "+showsearch zz\n",
    "+domain=odd a.zz\nzz\n+showsearch zz\n+ndots=1 +domain=x a.zz\n",
]


@pytest.mark.parametrize("batch", BATCHES, ids=["globals", "first-line-domain"])
@pytest.mark.parametrize("before", [[], ["+domain=odd"], ["zz"]], ids=["alone", "domain", "name"])
def test_batch_search_globals_as_dig(
    port: int, batch: str, before: list[str], tmp_path: Path
) -> None:
    lines = tmp_path / "q"
    lines.write_text(batch)
    words = ["@127.0.0.1", "-p", str(port), "+nocookie", *before, "-f", str(lines)]
    a, b = both(words, words)
    assert "Traceback" not in a.stderr, a.stderr
    assert normal(a.stdout) == normal(b.stdout), a.stderr
    assert a.returncode == b.returncode == 0
