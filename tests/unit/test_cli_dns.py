"""`pktlab run dns` as dig: its switches (+dnssec, +bufsize, +[no]edns, -4/-6, the
+[no]SECTION display switches, refused ones) and its output, byte for byte against text
dig 9.18 printed for the same replies (tests/integration/test_dns_dig.py runs both)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from packetlab.cli import (
    run_dns,
    run_dns_ask,
    run_dns_dig,
    run_dns_switches,
    run_dns_text,
    run_dns_words,
)
from packetlab.cli.run import RunError


def parse(*argv: str) -> argparse.Namespace:
    """What `pktlab run dns ARGV` runs, dig's words read."""
    import packetlab.cli as cli

    a = cli.parse(["run", "dns", *argv])
    run_dns_words.dig_style(a)
    return a


SIG = ("A 13 2 300 20270101000000 20261201000000 4242 test. ThGV3wIN5Z4NZaM6QnnxGD565OXZgOMJ"
       "+LVa3/LmHD6kIHaXcNeEwXnx MXquEiYgTTx8sUWts87pJ9MzEmgyPw==")  # fmt: skip
A_DNSSEC = {
    "type": "dns", "qname": "a.test.", "qtype": "A", "server": "127.0.0.1", "port": 53029,
    "proto": "udp", "tries": 1, "rcode": "NOERROR", "rtt_us": 312.0, "truncated": False,
    "flags": ["QR", "AA", "RD"], "size": 167, "id": 44758, "opcode": "QUERY",
    "counts": [1, 3, 0, 1], "authority": [], "additional": [],
    "answers": [{"name": "a.test.", "type": "A", "ttl": 300, "data": "192.0.2.2"},
                {"name": "a.test.", "type": "A", "ttl": 300, "data": "192.0.2.1"},
                {"name": "a.test.", "type": "RRSIG", "ttl": 300, "data": SIG}],
    "edns": {"version": 0, "flags": ["do"], "mbz": 0, "udp": 1232, "options": []},
}  # fmt: skip
# `dig @127.0.0.1 -p 53029 +dnssec a.test` (BIND 9.18.49) against tests/integration's
# dns_zone_server.py; WHEN is the only line that differs by nature (and the banner's name).
DIG_A_DNSSEC = (
    """
; <<>> DiG 9.18.49-1~deb12u3-Debian <<>> @127.0.0.1 -p 53029 +dnssec a.test
; (1 server found)
;; global options: +cmd
;; Got answer:
;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 44758
;; flags: qr aa rd; QUERY: 1, ANSWER: 3, AUTHORITY: 0, ADDITIONAL: 1
;; WARNING: recursion requested but not available

;; OPT PSEUDOSECTION:
; EDNS: version: 0, flags: do; udp: 1232
;; QUESTION SECTION:
;a.test.\t\t\t\tIN\tA

;; ANSWER SECTION:
a.test.\t\t\t300\tIN\tA\t192.0.2.2
a.test.\t\t\t300\tIN\tA\t192.0.2.1
a.test.\t\t\t300\tIN\tRRSIG\t"""
    + SIG
    + """

;; Query time: 0 msec
;; SERVER: 127.0.0.1#53029(127.0.0.1) (UDP)
;; WHEN: Fri Dec 04 16:16:04 UTC 2026
;; MSG SIZE  rcvd: 167

"""
)


def text_of(args: argparse.Namespace, *records: dict[str, object]) -> str:
    """What `pktlab run` prints: each shown record and a line end."""
    rows = run_dns.COMMAND.row_for(args)  # type: ignore[misc]
    out = ""
    for r in records:
        line = rows(r)
        if line is not None:
            out += line + "\n"
    return out


def same(ours: str, dig: str) -> None:
    when = re.compile(r"^;; WHEN: .*$", re.M)
    banner = re.compile(r"^; <<>> .* <<>> ", re.M)
    assert banner.sub("; <<>> ", when.sub(";; WHEN:", ours)) == banner.sub(
        "; <<>> ", when.sub(";; WHEN:", dig)
    )


def test_default_output_is_digs_byte_for_byte() -> None:
    a = parse("@127.0.0.1", "-p", "53029", "+dnssec", "a.test")
    a.cmdline = ["@127.0.0.1", "-p", "53029", "+dnssec", "a.test"]
    same(text_of(a, A_DNSSEC, {"type": "summary", "queries": 1}), DIG_A_DNSSEC)
    assert a.dnssec and a.user_server == "127.0.0.1"


def _padding(n: int) -> list[str]:
    """Words that make `n` bytes of a banner (each after a space): +norec, +noad."""
    sevens = next(k for k in range(n // 7, -1, -1) if (n - 7 * k) % 6 == 0)
    return ["+norec"] * sevens + ["+noad"] * ((n - 7 * sevens) // 6)


def test_a_banner_over_1023_bytes_is_cut_and_runs_on_as_digs() -> None:
    """dig makes its banner in a 1,024-byte buffer: cut at 1,023 bytes, no line end, the
    next line runs on from it (`dig @127.0.0.1 -p 53029 +dnssec a.test +norec ...`,
    9.18.49: `...+norec +no;; Got answer:`); its last lines cut too (`; (1 server
    foun;; Got answer:`); a banner that fits: whole (ours printed it whole; session 30,
    dig30)."""
    from packetlab import __version__

    start = f"\n; <<>> pktlab {__version__} <<>> @127.0.0.1 -p 53029 +dnssec a.test"
    found, options = "\n; (1 server found)\n", ";; global options: +cmd\n"
    rest = DIG_A_DNSSEC.split(";; global options: +cmd\n", 1)[1]
    for n, tail in ((1100, None), (1023 - len(start) - len(found) - 7, "\n;; glob"),
                    (1023 - len(start) - 17, "\n; (1 server foun"),
                    (1023 - len(start) - len(found) - len(options), "+cmd\n")):  # fmt: skip
        words = ["@127.0.0.1", "-p", "53029", "+dnssec", "a.test", *_padding(n)]
        a = parse(*words)
        a.cmdline = words
        out = text_of(a, A_DNSSEC)
        whole = start + "".join(f" {w}" for w in words[5:]) + found + options
        head = whole[:1023]
        assert out.startswith(head) and out[len(head) :].startswith(";; Got answer:\n"), n
        assert tail is None or head.endswith(tail), n
        same(out[len(head) :], rest)
    # a character cut in two: its first byte kept, as dig prints it (`...\xc3;; no
    # servers could be reached`; it was dropped: session 31, odds31)
    cut = ["", "a" + "\u00e9" * 510 + "\udcc3" + run_dns_dig.GLUE]
    assert run_dns_dig._cut(["", "a" + "\u00e9" * 600]) == cut
    assert run_dns_dig._cut(["", "\u00e9" * 600]) == ["", "\u00e9" * 511 + run_dns_dig.GLUE]
    assert run_dns_dig._cut(["", "a" * 1021]) == ["", "a" * 1021]


def test_the_banner_comes_once_and_display_switches_cut_as_dig() -> None:
    a = parse("@127.0.0.1", "-p", "53029", "a.test", "b.test")
    out = text_of(a, A_DNSSEC, A_DNSSEC)
    assert out.count("; <<>> pktlab") == 1 and out.count(";; Got answer:") == 2
    # +noall +answer: the answer lines alone (dig's `+noall +answer`)
    a = parse("+noall", "+answer", "a.test")
    assert text_of(a, A_DNSSEC) == (
        f"a.test.\t\t\t300\tIN\tA\t192.0.2.2\na.test.\t\t\t300\tIN\tA\t192.0.2.1\n"
        f"a.test.\t\t\t300\tIN\tRRSIG\t{SIG}\n"
    )
    # +nocomments: no header, no section titles, no blank lines but the stats' last one
    out = text_of(parse("+nocomments", "+nocmd", "a.test"), A_DNSSEC)
    assert out.startswith(";a.test.\t\t\t\tIN\tA\na.test.\t\t\t300\tIN\tA\t192.0.2.2\n")
    assert out.endswith(";; MSG SIZE  rcvd: 167\n\n") and "\n\n" not in out[:-2]
    # +nostats +noquestion: the header, OPT, then the answer section ending in a blank line
    out = text_of(parse("+nostats", "+noquestion", "+nocmd", "a.test"), A_DNSSEC)
    assert "QUESTION" not in out and "Query time" not in out and out.endswith(SIG + "\n\n")
    assert "; EDNS: version: 0, flags: do; udp: 1232\n;; ANSWER SECTION:\n" in out


def test_sections_errors_and_notes_as_dig() -> None:
    nx = {**A_DNSSEC, "rcode": "NXDOMAIN", "answers": [], "counts": [1, 0, 1, 0], "edns": None,
          "authority": [{"name": "test.", "type": "SOA", "ttl": 3600,
                         "data": "ns.test. h.test. 1 7200 3600 1209600 300"}],
          "notes": ["Truncated, retrying in TCP mode."], "proto": "tcp"}  # fmt: skip
    out = text_of(parse("+nocmd", "+nostats", "nope.test"), nx)
    assert out == (
        ";; Truncated, retrying in TCP mode.\n;; Got answer:\n"
        ";; ->>HEADER<<- opcode: QUERY, status: NXDOMAIN, id: 44758\n"
        ";; flags: qr aa rd; QUERY: 1, ANSWER: 0, AUTHORITY: 1, ADDITIONAL: 0\n"
        ";; WARNING: recursion requested but not available\n\n"
        ";; QUESTION SECTION:\n;a.test.\t\t\t\tIN\tA\n\n"
        ";; AUTHORITY SECTION:\n"
        "test.\t\t\t3600\tIN\tSOA\tns.test. h.test. 1 7200 3600 1209600 300\n\n"
    )
    lost = {"type": "dns", "qname": "a.test.", "qtype": "A", "server": "127.0.0.1",
            "port": 9, "proto": "udp", "tries": 3, "error": "connection refused: ...",
            "error_kind": "refused"}  # fmt: skip
    a = parse("@127.0.0.1", "-p", "9", "a.test")
    a.cmdline = ["@127.0.0.1", "-p", "9", "a.test"]
    # dig 9.18's words for a closed port (its banner after the errors, as dig prints it)
    same(text_of(a, lost), (
        ";; communications error to 127.0.0.1#9: connection refused\n" * 3
        + "\n; <<>> DiG 9.18.49-1~deb12u3-Debian <<>> @127.0.0.1 -p 9 a.test\n"
        "; (1 server found)\n;; global options: +cmd\n;; no servers could be reached\n"
    ))  # fmt: skip
    bad = {**lost, "error_kind": "malformed", "error": "malformed reply from 127.0.0.1#9: x"}
    assert (
        text_of(parse("a.test"), bad) == ";; Got bad packet: malformed reply from 127.0.0.1#9: x\n"
    )


# `dig @127.0.0.1 -p P garbage.test` and `dig +tcp ... tcgarbage.test` (BIND 9.18.49) against
# tests/integration's dns_zone_server.py: the bad packet's reason and dig's hex dump
DIG_BAD_PACKET = """\
;; Got bad packet: bad compression pointer
21 bytes
96 9d 84 00 00 01 00 01 00 00 00 00 ff ff ff ff          ................
ff ff ff ff ff                                           .....
"""
DIG_BAD_TCP_LINES = [
    "65535 bytes",
    "8c d9 84 00 01 02 03 04 05 06 07 08 09 0a 0b 0c          ................",
    "5d 5e 5f 60 61 62 63 64 65 66 67 68 69 6a 6b 6c          ]^_`abcdefghijkl",
    "6d 6e 6f 70 71 72 73 74 75 76 77 78 79 7a 7b 7c          mnopqrstuvwxyz{|",
    "7d 7e 7f 80 81 82 83 84 85 86 87 88 89 8a 8b 8c          }...............",
]


def test_a_bad_packet_is_digs_hex_dump() -> None:
    """dig prints a reply that does not parse as `;; Got bad packet: REASON`, its length
    and a hex dump (16 bytes a line, '!'..'}' as text); no banner before it."""
    packet = bytes.fromhex("969d84000001000100000000") + b"\xff" * 9
    bad = {"type": "dns", "qname": "garbage.test.", "qtype": "A", "server": "127.0.0.1",
           "port": 53, "proto": "udp", "tries": 1, "error_kind": "malformed",
           "error": "malformed reply from 127.0.0.1#53: bad compression pointer (21 bytes)",
           "reason": "bad compression pointer", "packet": packet.hex()}  # fmt: skip
    assert text_of(parse("garbage.test"), bad) == DIG_BAD_PACKET
    wire = b"\x8c\xd9\x84" + bytes(range(256)) * 255 + b"\0" * 252
    tcp = {**bad, "reason": "bad label type", "packet": wire.hex(), "proto": "tcp"}
    lines = text_of(parse("+tcp", "tcgarbage.test"), tcp).splitlines()
    assert lines[0] == ";; Got bad packet: bad label type" and len(lines) == 2 + 4096
    assert lines[1:3] + lines[8:11] == DIG_BAD_TCP_LINES
    assert lines[-1] == "00 00 00 00 00 00 00 00 00 00 00 00 00 00 00             ..............."


def test_columns_follow_binds_indent() -> None:
    rr = {"name": "a-rather-long-label-for-the-columns.test.", "ttl": 2147483647,
          "type": "A", "data": "192.0.2.3"}  # fmt: skip
    # past a column: one space (a tab when that reaches a tab stop), as dig prints it
    assert run_dns_text.rr_line(rr) == (
        "a-rather-long-label-for-the-columns.test. 2147483647 IN\tA 192.0.2.3"
    )
    assert run_dns_text.rr_line(
        {**rr, "name": "_443._tcp.www.test.", "ttl": 300, "type": "TLSA"}
    ) == ("_443._tcp.www.test.\t300\tIN\tTLSA\t192.0.2.3")
    assert run_dns_text.question_line("www.test.", "AAAA") == ";www.test.\t\t\tIN\tAAAA"


def test_compact_form_is_kept_under_its_switch() -> None:
    out = text_of(parse("--compact", "a.test"), A_DNSSEC, {
        "type": "summary", "queries": 1, "answered": 1, "answers": 3})  # fmt: skip
    assert out.splitlines()[0] == ";; a.test. A @127.0.0.1#53029 (udp): NOERROR, 312 us"
    assert out.splitlines()[1] == "a.test.\t300\tIN\tA\t192.0.2.2"
    assert out.splitlines()[-1] == ";; 1 queries, 1 answered, 3 answers"


def test_edns_switches_and_families() -> None:
    a = parse("+dnssec", "+bufsize=4096", "a.test")
    assert (a.dnssec, a.bufsize, a.edns) == (True, 4096, 0)
    assert parse("+noedns", "a.test").edns == -1
    assert parse("+noedns", "+edns", "a.test").edns == 0
    assert parse("+edns=1", "a.test").edns == 1
    assert parse("--no-edns", "--dnssec", "--bufsize", "512", "a.test").edns == -1
    assert parse("-6", "a.test").family == 6 and parse("-4", "a.test").family == 4
    show = parse("+noall", "+answer", "+stats", "a.test").show
    assert [k for k, on in show.items() if on] == ["answer", "stats"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["+dns64prefix", "a.test"], r"\+dns64prefix: dig option not supported here"),
        (["+split=x", "a.test"], r"\+split=x: expected a number 0..1023"),
        (["+split=1024", "a.test"], r"\+split=1024: expected a number 0..1023"),
        (["+cookie=zz", "a.test"], r"\+cookie=zz: expected hex digits"),
        # (was +cookie=0011 refused: dig 9.18 sends 1..40 bytes as given; session 24)
        (["+cookie=" + "00" * 41, "a.test"], r"=0{82}: COOKIE data too large"),
        (
            ["--class", "XX", "a.test"],
            r"--class: unknown class .XX. \(IN, CH, HS, NONE, ANY or CLASSnnn\)",
        ),
        (["+bogus", "a.test"], r"\+bogus: dig option not supported here \(dig-style"),
        (["+bufsize=70000", "a.test"], r"\+bufsize=70000: Couldn.t parse buffer size \(out"),
        (["+bufsize=-1", "a.test"], r"\+bufsize=-1: Couldn.t parse buffer size \(not a"),
        (["+edns=256", "a.test"], r"\+edns=256: Couldn't parse edns \(out of range"),
        (["+edns=x", "a.test"], r"\+edns=x: Couldn't parse edns \(not a valid number"),
    ],
)
def test_bad_switches_are_one_line_errors(argv: list[str], message: str) -> None:
    with pytest.raises(RunError, match=message):
        parse(*argv)


def test_a_server_of_the_other_family_is_an_early_error() -> None:
    from packetlab.cli.run_command import Progress

    a = parse("-4", "@::1", "a.test")
    with pytest.raises(RunError, match="-4: the server ::1 is not an IPv4 address"):
        run_dns.experiment(a, lambda r: None, Progress())


def test_trace_steps_as_dig() -> None:
    """`dig -4 +trace @127.0.0.1 -p 53974 a.test` against dns_zone_server.py (its root
    zone names localhost as the root server)."""
    a = parse("-4", "+trace", "@127.0.0.1", "-p", "53974", "a.test")
    a.cmdline = ["-4", "+trace", "@127.0.0.1", "-p", "53974", "a.test"]
    assert a.trace and a.family == 4
    root = {**A_DNSSEC, "qname": ".", "qtype": "NS", "size": 66, "rtt_us": 7100.0, "answers": [
        {"name": ".", "type": "NS", "ttl": 86400, "data": "localhost."}]}  # fmt: skip
    leaf = {**A_DNSSEC, "server_name": "localhost", "rtt_us": 10.0}
    dig = (
        "\n; <<>> DiG 9.18.49-1~deb12u3-Debian <<>> -4 +trace @127.0.0.1 -p 53974 a.test\n"
        "; (1 server found)\n;; global options: +cmd\n"
        ".\t\t\t86400\tIN\tNS\tlocalhost.\n"
        ";; Received 66 bytes from 127.0.0.1#53029(127.0.0.1) in 7 ms\n\n"
        "a.test.\t\t\t300\tIN\tA\t192.0.2.2\na.test.\t\t\t300\tIN\tA\t192.0.2.1\n"
        f"a.test.\t\t\t300\tIN\tRRSIG\t{SIG}\n"
        ";; Received 167 bytes from 127.0.0.1#53029(localhost) in 0 ms\n\n"
    )
    same(text_of(a, root, leaf, {"type": "summary"}), dig)
    short = parse("-4", "+trace", "+short", "a.test")  # dig +trace +short's lines
    assert text_of(short, root, leaf) == (
        "NS localhost. from server 127.0.0.1 in 7 ms.\n"
        "A 192.0.2.2 from server 127.0.0.1 in 0 ms.\nA 192.0.2.1 from server 127.0.0.1 in 0 ms.\n"
        f"RRSIG {SIG} from server 127.0.0.1 in 0 ms.\n"
    )
    import packetlab.cli as cli
    from packetlab.cli.run_command import Progress

    # +trace +tcp (dig's too; refused before session 12) and +ignore are taken

    a = cli.parse(["run", "dns", "+trace", "+tcp", "+ignore", "a.test", "b.test", "+noignore"])
    run_dns.experiment(a, lambda r: None, Progress())  # was: +trace over TCP is not built
    assert a.trace and a.tcp and a.ignore and not a.plan[1][3].ignore


DIG_MULTILINE = (  # dig @127.0.0.1 -p PORT +multiline +noall +answer +dnssec soa2.test SOA
    # rev.test DNSKEY sub.test DS a.test N3.test NSEC3 (dns_zone_server.py), dig 9.18.49
    "soa2.test.\t\t60 IN SOA ns.test. h.test. (\n"
    "\t\t\t\t4294967295 ; serial\n"
    "\t\t\t\t0          ; refresh (0 seconds)\n"
    "\t\t\t\t90061      ; retry (1 day 1 hour 1 minute 1 second)\n"
    "\t\t\t\t604800     ; expire (1 week)\n"
    "\t\t\t\t86399      ; minimum (23 hours 59 minutes 59 seconds)\n"
    "\t\t\t\t)\n"
    "rev.test.\t\t300 IN DNSKEY 385 3 15 (\n"
    "\t\t\t\t/Oz8xnb/8fXRW5MF6O843K0JZLXztHYwtiCzBlJNHi0=\n"
    "\t\t\t\t) ; revoked KSK; alg = ED25519 ; key id = 17069\n"
    "rev.test.\t\t300 IN DNSKEY 256 3 5 (\n"
    "\t\t\t\tSCCXpF3dx/7TkUjXQfYjYXsWbk0OKDxxcQBfrc3Fac3R\n"
    "\t\t\t\tn1Hk/6F1mFkzPo/Yo85eTCU6qdBdhfJ8ZXja3NZzwmJc\n"
    "\t\t\t\tm3eNpK1fx1FGB08Zg+w+vv456hvZNR0s0qSUTVQ/t6bH\n"
    "\t\t\t\tgu47ePg9OD7gurDU9Dx3BXlFmJvFAQV2Hizc3rYuhZfR\n"
    "\t\t\t\t) ; ZSK; alg = RSASHA1 ; key id = 4727\n"
    "sub.test.\t\t3600 IN\tDS 4242 13 2 (\n"
    "\t\t\t\tF9C7AF7EBCBF098B9F5F37361D1B168BB2E5B98D930C\n"
    "\t\t\t\tEEF0F055377A8C94DB61 )\n"
    "sub.test.\t\t3600 IN\tRRSIG DS 13 2 3600 (\n"
    "\t\t\t\t20270101000000 20261201000000 4242 test.\n"
    "\t\t\t\tKSzG11O8R8Py6JDtr4TvJbChDiX+VPM34+URIAmjudbV\n"
    "\t\t\t\tL9PUSTfeF2cI8n0kT5i/IejMpI53/pSDZjs0Z6vVLg== )\n"
    "a.test.\t\t\t300 IN A 192.0.2.1\n"
    "a.test.\t\t\t300 IN A 192.0.2.2\n"
    "a.test.\t\t\t300 IN RRSIG A 13 2 300 (\n"
    "\t\t\t\t20270101000000 20261201000000 4242 test.\n"
    "\t\t\t\tThGV3wIN5Z4NZaM6QnnxGD565OXZgOMJ+LVa3/LmHD6k\n"
    "\t\t\t\tIHaXcNeEwXnxMXquEiYgTTx8sUWts87pJ9MzEmgyPw== )\n"
    "2t7b4g4vsa5smi47k61mv5bv1a22bojr.test. 300 IN NSEC3 1 1 12 AABBCCDD (\n"
    "\t\t\t\t2T7B4G4VSA5SMI47K61MV5BV1A22BOJR\n"
    "\t\t\t\tA RRSIG )\n"
)


def records_of(text: str) -> list[dict[str, object]]:
    """The records of dig's text (+multiline's parentheses and comments included), each
    as `pktlab run dns` keeps it: its data in presentation()'s one-line form."""
    import dns.rdata

    from packetlab.measure.dns import presentation

    chunks: list[str] = []
    for line in text.splitlines():
        if line.startswith("\t") and chunks:
            chunks[-1] += "\n" + line
        else:
            chunks.append(line)
    out: list[dict[str, object]] = []
    for chunk in chunks:
        name, ttl, cls, rtype, data = chunk.split(None, 4)
        rd = dns.rdata.from_text(cls, rtype, data)
        out.append({"name": name, "type": rtype, "ttl": int(ttl), "data": presentation(rd)})
    return out


def reply(answers: list[dict[str, object]], **extra: object) -> dict[str, object]:
    return {**A_DNSSEC, "answers": answers, "counts": [1, len(answers), 0, 1], **extra}


def test_multiline_is_bind_s_byte_for_byte() -> None:
    """+multiline: BIND's columns, SOA's timer comments, DNSKEY's key comments, the
    parenthesised RRSIG/DS/NSEC3 (dig's text from dns_zone_server.py)."""
    answers = records_of(DIG_MULTILINE)
    assert answers[0]["data"] == "ns.test. h.test. 4294967295 0 90061 604800 86399"
    a = parse("+multiline", "+noall", "+answer", "a.test")
    assert text_of(a, reply(answers)) == DIG_MULTILINE
    # the same records, one a line again without +multiline (the data kept as it was)
    plain = text_of(parse("+noall", "+answer", "a.test"), reply(answers))
    assert plain.count("\n") == len(answers) and "(" not in plain
    # the question line at +multiline's columns; +short keeps one line (as dig)
    out = text_of(parse("+multiline", "+nocmd", "+nostats", "a.test"), reply(answers[:1]))
    assert ";a.test.\t\t\tIN A\n" in out
    short = text_of(parse("+multiline", "+short", "a.test"), reply(answers[:1]))
    assert short == "ns.test. h.test. 4294967295 0 90061 604800 86399\n"


def test_split_cuts_base64_and_hex_as_dig(capsys: pytest.CaptureFixture[str]) -> None:
    ds = records_of(DIG_MULTILINE)[3:4]
    assert ds[0]["type"] == "DS"
    out = text_of(parse("+split=8", "+noall", "+answer", "a.test"), reply(ds))
    assert out == ("sub.test.\t\t3600\tIN\tDS\t4242 13 2 F9C7AF7E BCBF098B 9F5F3736 1D1B168B "
                   "B2E5B98D 930CEEF0 F055377A 8C94DB61\n")  # fmt: skip
    a = parse("+split=22", "+multiline", "+noall", "+answer", "a.test")
    assert capsys.readouterr().err == ";; Warning, split must be a multiple of 4; adjusting to 24\n"
    assert text_of(a, reply(ds)) == (
        "sub.test.\t\t3600 IN\tDS 4242 13 2 (\n\t\t\t\tF9C7AF7EBCBF098B9F5F3736\n"
        "\t\t\t\t1D1B168BB2E5B98D930CEEF0\n\t\t\t\tF055377A8C94DB61 )\n"
    )
    out = text_of(parse("+nosplit", "+noall", "+answer", "a.test"), reply(ds))
    assert "F9C7AF7EBCBF098B9F5F37361D1B168BB2E5B98D930CEEF0F055377A8C94DB61\n" in out


def test_nsid_and_cookie_lines_as_dig() -> None:
    """dig's OPT lines: NSID in hex words and text; COOKIE in hex, `(good)` when the
    reply starts with our client cookie, `(bad)` when not, nothing when none was sent."""
    cookie = "9536e10d5fc9675f0100000069a5c3d20123456789abcdef"
    options = [{"code": 3, "data": b"ns1.test".hex()},
               {"code": 10, "data": cookie, "cookie": "good"}]  # fmt: skip
    edns = {"version": 0, "flags": [], "mbz": 0, "udp": 1232, "options": options}
    out = text_of(parse("+nsid", "+nocmd", "a.test"), reply([], edns=edns))
    assert (
        "; EDNS: version: 0, flags:; udp: 1232\n"
        '; NSID: 6e 73 31 2e 74 65 73 74 ("ns1.test")\n'
        f"; COOKIE: {cookie} (good)\n;; QUESTION SECTION:\n"
    ) in out
    options[1] = {"code": 10, "data": cookie}
    assert f"; COOKIE: {cookie}\n" in text_of(parse("+nocmd", "a.test"), reply([], edns=edns))
    a = parse("+nsid", "+cookie=0011223344556677", "a.test")
    assert a.nsid and a.cookie == bytes.fromhex("0011223344556677")
    assert parse("a.test").cookie is True and parse("+nocookie", "a.test").cookie is False


def test_class_words_and_dash_c_as_dig() -> None:
    a = parse("version.bind", "CH", "TXT", "a.test")
    assert [(n, t, c) for n, t, c, _ in a.plan] == [("version.bind", ["TXT"], "CH"),
                                                     ("a.test", None, None)]  # fmt: skip
    # as dig: -c before any name is every name's, and after a -c or -t a class word is a name
    a = parse("-c", "chaos", "-t", "TXT", "version.bind", "id.server", "IN")
    assert [(n, c) for n, _, c, _ in a.plan] == [
        ("version.bind", "chaos"), ("id.server", "chaos"), ("IN", "chaos")
    ]  # fmt: skip
    ch = {**A_DNSSEC, "qname": "version.bind.", "qtype": "TXT", "qclass": "CH", "answers": [
        {"name": "version.bind.", "type": "TXT", "ttl": 0, "data": '"9.18-pktlab-test"',
         "class": "CH"}]}  # fmt: skip
    # `dig -c CH -t TXT version.bind +noall +question +answer`
    assert (run_dns.compact_row(ch) or "").endswith('version.bind.\t0\tCH\tTXT\t"9.18-pktlab-test"')
    assert text_of(parse("+noall", "+question", "+answer", "x"), ch) == (
        ';version.bind.\t\t\tCH\tTXT\nversion.bind.\t\t0\tCH\tTXT\t"9.18-pktlab-test"\n'
    )


def test_batch_file_lines_and_caps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """-f FILE: a query line per line (its options its own, but for dig's globals),
    blank, `#` and `;` lines before the first query line skipped, as dig 9.18 reads the
    file (a blank line after it is the root's NS: below); too many lines or too long a
    line refused up front."""
    f = tmp_path / "batch"
    f.write_text("\n# x\n; y\na.test\nmx.test MX +noall +answer\n-x 192.0.2.1 +tcp\n"
                 "-t TXT -c CH v.b\n")  # fmt: skip
    a = parse("@127.0.0.1", "-p", "53", "-f", str(f))
    got = [(n, t, c, o.tcp, o.show["stats"], o.show["cmd"], o.server, o.port)
           for n, t, c, o in a.plan]  # fmt: skip
    assert got == [  # +noall's cmd stays for the lines after (dig's global printcmd), not stats
        ("a.test", None, None, False, True, True, "127.0.0.1", 53),
        ("mx.test", ["MX"], None, False, False, False, "127.0.0.1", 53),
        # a line's +tcp: ignored, as dig 9.18 (is_batchfile; was True, dig asked over UDP)
        ("1.2.0.192.in-addr.arpa.", ["PTR"], None, False, True, False, "127.0.0.1", 53),
        ("v.b", ["TXT"], "CH", False, True, False, "127.0.0.1", 53),
    ]
    assert a.plan[0][3].batch_words == ["a.test"]  # dig's banner for the line shows it
    monkeypatch.setattr(run_dns_switches, "BATCH_LINES", 3)
    f.write_text("a.test\n\n#x\n")  # after the first query line: dig asks each
    assert [(n, t) for n, t, _, _ in parse("-f", str(f)).plan] == [
        ("a.test", None), (".", ["NS"]), ("#x", None)]  # fmt: skip
    f.write_text("\n# only\n")  # none at all: nothing asked, as dig (was an error)
    assert parse("-f", str(f)).plan == []
    f.write_text("#x\n\nb.test\n")  # a name on the command line: the file's first still
    assert [n for n, _, _, _ in parse("a.test", "-f", str(f)).plan] == ["a.test", "b.test"]
    f.write_text("a.test\n" * 4)
    with pytest.raises(RunError, match=r"-f .*batch: more than 3 lines \(the cap"):
        parse("-f", str(f))
    # as dig 9.18 reads a line (fgets, 1,024 bytes): over 1,023 bytes, the rest is a line
    # of its own; 13 words at most (split_batchline), the rest ignored (session 30, dig30:
    # a line over 4,096 bytes was refused, every word read)
    f.write_text("a.test" + " " * 1017 + "b.test +norec\n")
    assert [n for n, _, _, _ in parse("-f", str(f)).plan] == ["a.test", "b.test"]
    f.write_text("a.test " + "+norec " * 11 + "MX c.test\n")
    got = parse("-f", str(f)).plan
    assert [(n, t) for n, t, _, _ in got] == [("a.test", ["MX"])]
    assert len(got[0][3].batch_words) == 13 and got[0][3].batch_words[-1] == "MX"
    # split at blanks alone, as dig (were a shell's words: `a.b.test`, `a.test`)
    f.write_text('a\\.b.test\t+short\n"a.test"\n')
    assert [n for n, _, _, _ in parse("-f", str(f)).plan] == ["a\\.b.test", '"a.test"']
    with pytest.raises(RunError, match=r"-f /nonexistent/x: cannot open: No such file"):
        parse("-f", "/nonexistent/x")
    f.write_text("a.test -z\n")  # the run ends at it in its turn, as dig 9.18 (session 26,
    # odds26: was refused before any line was asked; tests/unit/cli/test_run_dns_batch_stop.py)
    stop = parse("-f", str(f)).plan[-1][3].stop
    assert str(stop).endswith("batch:1: -z: option not supported in a batch line")


def test_a_batch_line_s_port_stays_for_the_lines_after_as_dig(tmp_path: Path) -> None:
    """dig 9.18's -p is a global: set on a batch line it is that line's and every later
    line's port (`-p 5353 a.test` then `b.test`: both to 5353; eyes14, side by side with
    dig; was the command line's port again from the next line)."""
    f = tmp_path / "batch"
    f.write_text("a.test\n-p 5353 b.test\nc.test AXFR\n-p 5300 d.test\ne.test\n")
    a = parse("@127.0.0.1", "-p", "53", "-f", str(f))
    assert [(n, o.port) for n, _, _, o in a.plan] == [
        ("a.test", 53), ("b.test", 5353), ("c.test", 5353), ("d.test", 5300), ("e.test", 5300),
    ]  # fmt: skip


def test_options_after_a_name_are_its_own() -> None:
    """dig's scoping: `a.test +dnssec b.test` asks a.test with DO, b.test without; dig's
    global switches (+short, +nocmd, +split, +time) are every query's wherever written."""
    a = parse("+tcp", "a.test", "+dnssec", "+noall", "+answer", "b.test", "+short", "+time=3")
    (_, _, _, first), (_, _, _, second) = a.plan
    assert first is not None and first.dnssec and first.tcp and not first.show["stats"]
    assert second is not None and not second.dnssec and second.tcp and a.show["stats"]
    assert not second.show["stats"] and second.show["answer"]  # +short: b.test's sections
    assert a.short and a.wait == 3.0 and not a.show["cmd"]  # +noall's cmd: dig's global


def test_dash_t_c_x_and_server_after_a_name_are_its_own_as_dig() -> None:
    """dig applies -t, -c and @SERVER written after a name to that name's query only
    (checked with dig 9.18: `a.test -t MX mx.test` asks a.test MX, mx.test A); -x is a
    name where it stands; after a -t, -c or -x a type or class word is a name; a type
    or class word before any name is every name's."""
    a = parse("@127.0.0.1", "a.test", "-t", "MX", "mx.test", "-c", "CH", "MX")
    assert [(n, t, c) for n, t, c, _ in a.plan] == [
        ("a.test", ["MX"], None), ("mx.test", None, "CH"), ("MX", None, None)
    ]  # fmt: skip
    a = parse("-x", "192.0.2.1", "-t", "A", "a.test", "-x", "192.0.2.2")
    assert [(n, t) for n, t, _, _ in a.plan] == [
        ("1.2.0.192.in-addr.arpa.", ["A"]), ("a.test", None), ("2.2.0.192.in-addr.arpa.", ["PTR"])
    ]  # fmt: skip
    a = parse("MX", "mx.test", "a.test", "TXT")
    assert [(n, t) for n, t, _, _ in a.plan] == [("mx.test", ["MX"]), ("a.test", ["TXT"])]
    a = parse("-p", "5300", "@127.0.0.1", "a.test", "@127.0.0.2", "@::1", "b.test", "c.test")
    (_, _, _, first), (_, _, _, second), (_, _, _, third) = a.plan
    assert first.servers == ["127.0.0.1", "127.0.0.2", "::1"] and second is third is None
    assert (a.servers, a.user_server, a.port) == (["127.0.0.1"], "127.0.0.1", 5300)
    a = parse("-p", "5300", "a.test", "@127.0.0.2", "b.test")  # no server for b.test: the default
    assert a.plan[0][3].servers == ["127.0.0.2"] and a.servers == [] and a.user_server is None
    assert run_dns.COMMAND.budget(a) == 2 * (3 + 1) * 5.0  # dig's +tries=3, +time=5


def test_servers_are_tried_in_order_as_dig() -> None:
    """A query with several servers (dig's @A @B) asks the next when one does not
    answer; the failures are dig's `communications error` lines before the answer."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent / "controller"))
    from ctl_fakes import Rig

    from packetlab.measure.dns import dns_query

    rig = Rig()

    def server(q: bytes) -> list[bytes]:
        import dns.message

        return [dns.message.make_response(dns.message.from_wire(q)).to_wire()]

    rig.endpoint.udp_servers[("192.0.2.53", 53)] = server
    servers = [("192.0.2.54", 53), ("192.0.2.53", 53)]
    from twisted.internet.defer import Deferred

    ask = run_dns_ask._ask(rig.session, servers, "a.test", "A", attempts=2, timeout=1, icmp=False)
    r = rig.run(Deferred.fromCoroutine(ask))
    assert (r.server, r.rcode, r.error) == ("192.0.2.53", "NOERROR", None)
    assert r.notes == ["communications error to 192.0.2.54#53: timed out"] * 2
    assert text_of(parse("+nocmd", "+noall", "+comments", "a.test"), r.to_dict()).startswith(
        ";; communications error to 192.0.2.54#53: timed out\n" * 2 + ";; Got answer:\n"
    )
    r = rig.run(dns_query(rig.session, "a.test", server="192.0.2.54", attempts=1, timeout=1))
    assert r.error_kind == "timeout" and not r.notes


def test_a_closed_first_server_is_asked_again_each_try_as_dig() -> None:
    """dig's order over UDP (`dig @closed @closed2 @open +tries=N`, BIND 9.18.49, seen
    side by side): the lookup's tries go to the first server, a closed port (ICMP port
    unreachable) one try each, then each next server once; a `communications error`
    line a try. Before: the closed server once, then the next."""
    import sys

    from twisted.internet.defer import Deferred

    sys.path.insert(0, str(Path(__file__).resolve().parent / "controller"))
    sys.path.insert(0, str(Path(__file__).resolve().parent / "measure"))
    from ctl_fakes import Rig
    from test_dns import OneRawEndpoint

    def server(q: bytes) -> list[bytes]:
        import dns.message

        return [dns.message.make_response(dns.message.from_wire(q)).to_wire()]

    refused = "communications error to {}#53: connection refused"
    for tries, servers, notes in (
        (3, ["192.0.2.54", "192.0.2.53"], [refused.format("192.0.2.54")] * 3),
        (2, ["192.0.2.54", "192.0.2.55", "192.0.2.53"],
         [refused.format("192.0.2.54")] * 2 + [refused.format("192.0.2.55")]),
        (1, ["192.0.2.54", "192.0.2.55", "192.0.2.53"],
         [refused.format("192.0.2.54"), refused.format("192.0.2.55")]),
    ):  # fmt: skip
        rig = Rig(endpoint=lambda clock: OneRawEndpoint(clock))
        ep = rig.endpoint
        assert isinstance(ep, OneRawEndpoint)
        ep.closed |= {("192.0.2.54", 53), ("192.0.2.55", 53)}
        ep.udp_servers[("192.0.2.53", 53)] = server
        ask = run_dns_ask._ask(rig.session, [(s, 53) for s in servers], "a.test", "A",
                           attempts=tries, timeout=1)  # fmt: skip
        r = rig.run(Deferred.fromCoroutine(ask))
        assert (r.server, r.rcode, r.notes) == ("192.0.2.53", "NOERROR", notes), tries
    # one closed server, +tries=3: three lines, then no servers could be reached (dig's)
    rig = Rig(endpoint=lambda clock: OneRawEndpoint(clock))
    ep = rig.endpoint
    assert isinstance(ep, OneRawEndpoint)
    ep.closed.add(("192.0.2.54", 53))
    ask = run_dns_ask._ask(rig.session, [("192.0.2.54", 53)], "a.test", "A", attempts=3, timeout=1)
    r = rig.run(Deferred.fromCoroutine(ask))
    a = parse("@192.0.2.54", "+tries=3", "a.test")
    assert text_of(a, r.to_dict()).splitlines()[:3] == [";; " + refused.format("192.0.2.54")] * 3
    assert r.error_kind == "refused" and len(r.notes) == 2


def test_a_lame_trace_step_is_digs_horizontal_referral() -> None:
    """+trace at a referral no deeper: the step as dig prints it (`dig -4 +trace +nodnssec
    @127.0.0.11 -p 49287 x.loop.tld`, BIND 9.18.49, against dns_hierarchy_server.py), then
    where we stop (dig goes round until `dig: too many lookups`)."""
    a = parse("-4", "+trace", "+nodnssec", "@127.0.0.11", "-p", "49287", "x.loop.tld")
    lame = {**A_DNSSEC, "qname": "x.loop.tld.", "server": "127.0.0.12", "port": 49287,
            "server_name": "ns1.tld", "size": 101, "rtt_us": 400.0, "answers": [],
            "authority": [{"name": "loop.tld.", "type": "NS", "ttl": 3600, "data": "ns1.tld."}],
            "notes": ["BAD (HORIZONTAL) REFERRAL"], "error_kind": "lame",
            "error": "referral to loop.tld. from loop.tld. goes no deeper "
                     "(a lame delegation)"}  # fmt: skip
    a.dig_text = run_dns_dig.DigText(a)
    a.dig_text.bannered = a  # the steps before it showed the banner
    assert text_of(a, lame) == (
        "loop.tld.\t\t3600\tIN\tNS\tns1.tld.\n;; BAD (HORIZONTAL) REFERRAL\n"
        ";; Received 101 bytes from 127.0.0.12#49287(ns1.tld) in 0 ms\n\n"
        ";; referral to loop.tld. from loop.tld. goes no deeper (a lame delegation)\n"
    )


def test_a_reply_cut_short_shows_what_parsed_as_dig() -> None:
    """`dig @127.0.0.1 -p 42781 +nocmd cutdata.test` (BIND 9.18.49, dns_zone_server.py: two
    A records, the second's data cut 2 bytes short): the malformed warning, the header's
    counts as sent, the extra bytes, the record read whole."""
    cut = {**A_DNSSEC, "qname": "cutdata.test.", "port": 42781, "id": 15437, "size": 60,
           "counts": [1, 2, 0, 0], "edns": None, "rtt_us": 100.0, "extra_bytes": 2,
           "notes": ["Warning: Message parser reports malformed message packet."],
           "answers": [{"name": "cutdata.test.", "type": "A", "ttl": 300,
                        "data": "192.0.2.1"}]}  # fmt: skip
    same(text_of(parse("@127.0.0.1", "+nocmd", "cutdata.test"), cut), (
        ";; Warning: Message parser reports malformed message packet.\n;; Got answer:\n"
        ";; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 15437\n"
        ";; flags: qr aa rd; QUERY: 1, ANSWER: 2, AUTHORITY: 0, ADDITIONAL: 0\n"
        ";; WARNING: recursion requested but not available\n"
        ";; WARNING: Message has 2 extra bytes at end\n\n"
        ";; QUESTION SECTION:\n;cutdata.test.\t\t\tIN\tA\n\n"
        ";; ANSWER SECTION:\ncutdata.test.\t\t300\tIN\tA\t192.0.2.1\n\n"
        ";; Query time: 0 msec\n;; SERVER: 127.0.0.1#42781(127.0.0.1) (UDP)\n"
        ";; WHEN: Fri Dec 04 21:49:23 UTC 2026\n;; MSG SIZE  rcvd: 60\n\n"
    ))  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "message"),
    [  # was one line for both, "--wait must be in (0, 60] and --tries 1..10"
        (
            ["+tries=11", "a.test"],
            r"^\+tries/--tries 11: must be 1\.\.10 \(\+retry=N: N\+1 tries\)$",
        ),
        (["+retry=20", "a.test"], r"^\+tries/--tries 21: must be 1\.\.10"),
        (["+time=61", "a.test"], r"^\+time/--wait 61: must be in \(0, 60\] seconds$"),
        (["--wait", "0", "a.test"], r"^\+time/--wait 0: must be in \(0, 60\] seconds$"),
        (["--tries", "0", "a.test"], r"^\+tries/--tries 0: must be 1\.\.10"),
        (["--wait", "61", "a.test"], r"^\+time/--wait 61: must be in"),
    ],
)
def test_bad_time_and_tries_name_the_one_that_is_wrong(argv: list[str], message: str) -> None:
    from packetlab.cli.run_command import Progress

    with pytest.raises(RunError, match=message):
        run_dns.experiment(parse("@127.0.0.1", *argv), lambda r: None, Progress())


def test_an_at_sign_alone_is_an_error_not_a_name() -> None:
    # `@` was silently a name; dig: "couldn't get address for ''"
    with pytest.raises(RunError, match=r"^@: no server after it"):
        parse("a.test", "@")


def test_help_shows_session_12_words(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--help")
    text = " ".join(capsys.readouterr().out.split())
    for word in ("+ignore", "+retry=N", "+vc", "+trace +tcp @192.0.2.53", "-t MX @192.0.2.54"):
        assert word in text, word


@pytest.mark.parametrize(
    ("argv", "asked", "warnings"),
    [  # each checked with dig 9.18.49 (`+noall +question`): what it asks, its stderr
        (["a.test", "A", "MX"], ["a.test IN MX"], 1),
        (["-t", "A", "-t", "MX", "a.test", "b.test"], ["a.test IN MX", "b.test IN MX"], 1),
        (["--type", "AAAA", "--type", "MX", "a.test"], ["a.test IN MX"], 1),
        (["MX", "A", "a.test"], ["a.test IN A"], 1),
        (["A", "a.test", "MX"], ["a.test IN MX"], 1),  # its own over every name's
        (["a.test", "A", "MX", "b.test"], ["a.test IN MX", "b.test IN A"], 1),
        (["a.test", "A", "MX", "AAAA"], ["a.test IN AAAA"], 2),
        (["-t", "MX", "a.test", "-t", "TXT"], ["a.test IN TXT"], 1),
        (["a.test", "A", "-t", "MX"], ["a.test IN MX"], 1),
        (["a.test", "A", "a.test", "MX"], ["a.test IN A", "a.test IN MX"], 0),
        (["-x", "192.0.2.1", "-t", "A"], ["1.2.0.192.in-addr.arpa. IN A"], 0),
        (["-t", "A", "-x", "192.0.2.1"], ["1.2.0.192.in-addr.arpa. IN A"], 0),
        (["a.test", "-c", "IN", "-c", "CH"], ["a.test CH A"], 1),
        (["-c", "IN", "-c", "CH", "a.test"], ["a.test CH A"], 1),
        (["CH", "-c", "IN", "a.test"], ["a.test IN A"], 1),
        (["a.test", "IN", "CH"], ["a.test CH A"], 1),
        (["-c", "IN", "a.test", "CH"], ["a.test IN A", "CH IN A"], 0),
    ],
)  # fmt: skip
def test_one_type_and_class_a_query_as_dig(
    argv: list[str], asked: list[str], warnings: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """dig asks one type a name: a second type for it (its own, or every name's before
    it) is the one asked, with `;; Warning, extra type option` on stderr (a class:
    `extra class option`); it was each type asked in turn (a documented departure)."""
    a = parse(*argv)
    got = []
    for name, types, cls, _ in a.plan:
        (qtype,) = types or a.types or ["A"]  # one type a query
        got.append(f"{name} {cls or a.qclass or 'IN'} {qtype}")
    assert got == asked
    err = capsys.readouterr().err
    word = "class" if any(w in ("-c", "IN", "CH") for w in argv) else "type"
    assert err == f";; Warning, extra {word} option\n" * warnings
    assert run_dns.COMMAND.budget(a) == len(asked) * (3 + 1) * 5.0  # one query a name


def test_batch_lines_take_the_command_line_s_type_as_dig(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`dig -t MX -f FILE`: a line's name without a type of its own is asked MX (was A),
    and a type of its own is a second one (dig's warning)."""
    f = tmp_path / "batch"
    f.write_text("a.test A\nb.test\nc.test A MX\n-x 192.0.2.1\n")
    for first in (["-t", "MX"], ["MX"]):
        a = parse(*first, "-f", str(f))
        assert [(n, t) for n, t, _, _ in a.plan] == [
            ("a.test", ["A"]), ("b.test", ["MX"]), ("c.test", ["MX"]),
            ("1.2.0.192.in-addr.arpa.", ["MX"]),
        ]  # fmt: skip
        assert capsys.readouterr().err == ""  # a line's warnings: when it is asked
        for _, _, _, line in a.plan:
            run_dns_words._show_line_warnings(line)
        assert capsys.readouterr().err == ";; Warning, extra type option\n" * 3


@pytest.mark.parametrize(
    ("argv", "asked", "err"),
    [
        (["-t", "BOGUS", "a.test"], ["a.test IN A"], ";; Warning, ignoring invalid type BOGUS\n"),
        (["a.test", "-t", "MX", "-t", "BOGUS"], ["a.test IN MX"],
         ";; Warning, ignoring invalid type BOGUS\n"),
        (["a.test", "-t", "65"], ["a.test IN A"], ";; Warning, ignoring invalid type 65\n"),
        (["a.test", "-t", "ixfr"], ["a.test IN A"], ";; Warning, ignoring invalid type ixfr\n"),
        (["a.test", "-t", "NONE"], ["a.test IN A"], ";; Warning, ignoring invalid type NONE\n"),
        (["a.test", "-t", "TYPE65536"], ["a.test IN A"],
         ";; Warning, ignoring invalid type TYPE65536\n"),
        (["-x", "192.0.2.1", "-t", "BOGUS"], ["1.2.0.192.in-addr.arpa. IN PTR"],
         ";; Warning, ignoring invalid type BOGUS\n"),
        (["a.test", "-t", "KEYDATA"], ["a.test IN TYPE65533"], ""),
        (["a.test", "KEYDATA"], ["a.test IN TYPE65533"], ""),
        (["a.test", "-t", "RKEY"], ["a.test IN TYPE57"], ""),
        (["a.test", "ixfr"], ["a.test IN A"], ";; Warning, ixfr requires a serial number\n"),
        (["a.test", "NXNAME"], ["a.test IN A", "NXNAME IN A"], ""),
        (["a.test", "NONE"], ["a.test NONE A"], ""),
        (["a.test", "-c", "BOGUS"], ["a.test IN A"], ";; Warning, ignoring invalid class BOGUS\n"),
        (["a.test", "-c", "3"], ["a.test IN A"], ";; Warning, ignoring invalid class 3\n"),
        (["a.test", "-c", "CH", "-c", "BOGUS"], ["a.test CH A"],
         ";; Warning, extra class option\n;; Warning, ignoring invalid class BOGUS\n"),
    ],
)  # fmt: skip
def test_a_type_or_class_dig_does_not_know_is_ignored_with_its_warning(
    argv: list[str], asked: list[str], err: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """dig 9.18's `-t BOGUS` (-c BOGUS): `;; Warning, ignoring invalid type BOGUS` on
    stderr and the type it had (A; PTR for -x); was our error. What dig reads as a type
    is BIND's list: not a number, IXFR only as ixfr=N, NONE a class, KEYDATA one
    (TYPE65533)."""
    a = parse(*argv)
    got = [f"{n} {c or a.qclass or 'IN'} {(t or a.types or ['A'])[0]}" for n, t, c, _ in a.plan]
    assert got == asked
    assert capsys.readouterr().err == err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["a.test", "--type", "BOGUS"], "--type BOGUS: unknown record type 'BOGUS'"),
        (["a.test", "--type=BOGUS"], "--type BOGUS: unknown record type 'BOGUS'"),
        (["a.test", "--class", "BOGUS"], "--class: unknown class 'BOGUS'"),
        (["a.test", "-t", "ixfr=x3"], "ixfr=x3: invalid serial number 'x3'"),
        (["a.test", "IXFR=4294967296"], "IXFR=4294967296: invalid serial number"),
    ],
)
def test_our_long_type_and_class_options_stay_strict(argv: list[str], message: str) -> None:
    """--type and --class are ours (dig has none): a type that is none is an error."""
    with pytest.raises(RunError, match=re.escape(message)):
        parse(*argv)
    assert parse("a.test", "--type", "28").plan[0][1] == ["28"]  # ours takes numbers (AAAA)


def test_batch_line_warnings_come_between_the_answers_as_dig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dig -f reads a line when the previous one is done: a line's warnings (ignoring
    invalid type, extra type option, split adjusted) come between the answers on
    `2>&1`; they were all printed before the first answer."""
    import io
    import sys

    import dns.message
    import dns.rrset
    from twisted.internet.defer import Deferred

    sys.path.insert(0, str(Path(__file__).resolve().parent / "controller"))
    from ctl_fakes import Rig

    from packetlab.cli.run_command import Progress, begun, measure
    from packetlab.controller.stop import StopSignal

    rig = Rig()

    def server(query: bytes) -> list[bytes]:
        q = dns.message.from_wire(query)
        r = dns.message.make_response(q)
        r.answer.append(dns.rrset.from_text(q.question[0].name, 300, "IN", "A", "192.0.2.1"))
        return [r.to_wire()]

    rig.endpoint.udp_servers[("192.0.2.53", 53)] = server
    f = tmp_path / "batch"
    f.write_text("a.test\nb.test -t BOGUS\nc.test -t MX -t A +split=5\n-c BOGUS d.test\n")
    both = io.StringIO()  # stdout and stderr as `2>&1` shows them
    monkeypatch.setattr(sys, "stderr", both)
    args = parse("@192.0.2.53", "+short", "-f", str(f))
    assert both.getvalue() == ""  # none at parse time: each at its line

    async def link(reactor: object, a: argparse.Namespace, emit: object, p: Progress) -> None:
        await begun(a._command.experiment(a, emit, p), p)(rig.session)

    rig.run(Deferred.fromCoroutine(measure(rig.clock, args, StopSignal(), both, run=link)))
    assert both.getvalue() == (
        "192.0.2.1\n"
        ";; Warning, ignoring invalid type BOGUS\n192.0.2.1\n"
        ";; Warning, extra type option\n"
        ";; Warning, split must be a multiple of 4; adjusting to 8\n192.0.2.1\n"
        ";; Warning, ignoring invalid class BOGUS\n192.0.2.1\n"
    )


# `dig @127.0.0.1 -p 36880 one.xfr AXFR` (BIND 9.18.49) against tests/integration's
# dns_xfr_server.py, and what we recorded for the same transfer (--json)
ONE = "ns.one.xfr. h.one.xfr. 1 7200 3600 1209600 300"
ONE_ANSWERS = [
    {"data": ONE, "name": "one.xfr.", "ttl": 3600, "type": "SOA"},
    {"data": "ns.one.xfr.", "name": "one.xfr.", "ttl": 3600, "type": "NS"},
    {"data": "192.0.2.80", "name": "www.one.xfr.", "ttl": 60, "type": "A"},
    {"data": "2001:db8::80", "name": "www.one.xfr.", "ttl": 60, "type": "AAAA"},
    {"data": '"hello world"', "name": "txt.one.xfr.", "ttl": 60, "type": "TXT"},
    {"data": ONE, "name": "one.xfr.", "ttl": 3600, "type": "SOA"},
]
EDNS = {"flags": [], "mbz": 0, "options": [], "udp": 8192, "version": 0}
ONE_XFR = {
    "type": "dns", "xfr": True, "qname": "one.xfr.", "qtype": "AXFR", "server": "127.0.0.1",
    "port": 36880, "proto": "tcp", "tries": 1, "rcode": "NOERROR", "records": 6,
    "messages": 1, "bytes": 203, "answers": ONE_ANSWERS, "rtt_us": 1453.063,
    "error_kind": None, "id": 45222,
    "parts": [{"answers": 6, "counts": [1, 6, 0, 1], "edns": EDNS, "flags": ["QR", "AA"],
               "id": 6542, "opcode": "QUERY", "question": ["one.xfr.", "AXFR", "IN"],
               "rcode": "NOERROR", "size": 203}],
}  # fmt: skip
ONE_LINES = (
    "one.xfr.\t\t3600\tIN\tSOA\tns.one.xfr. h.one.xfr. 1 7200 3600 1209600 300\n"
    "one.xfr.\t\t3600\tIN\tNS\tns.one.xfr.\n"
    "www.one.xfr.\t\t60\tIN\tA\t192.0.2.80\n"
    "www.one.xfr.\t\t60\tIN\tAAAA\t2001:db8::80\n"
    'txt.one.xfr.\t\t60\tIN\tTXT\t"hello world"\n'
    "one.xfr.\t\t3600\tIN\tSOA\tns.one.xfr. h.one.xfr. 1 7200 3600 1209600 300\n"
)
ONE_STATS = """;; Query time: 1 msec
;; SERVER: 127.0.0.1#36880(127.0.0.1) (TCP)
;; WHEN: Sat Dec 05 02:53:03 UTC 2026
;; XFR size: 6 records (messages 1, bytes 203)

"""
BANNER = """
; <<>> DiG 9.18.49-1~deb12u3-Debian <<>> @127.0.0.1 -p 36880 one.xfr AXFR{}
; (1 server found)
;; global options: +cmd
"""


def xfr_args(*words: str) -> argparse.Namespace:
    a = parse("@127.0.0.1", "-p", "36880", "one.xfr", "AXFR", *words)
    a.cmdline = ["@127.0.0.1", "-p", "36880", "one.xfr", "AXFR", *words]
    a.view = a.plan[0][3] or a  # the name's own options, as the run shows them
    return a


def test_a_zone_transfer_prints_as_dig() -> None:
    """dig's output for a transfer: no header, question nor MSG SIZE as for a query, the
    records of each message, then the statistics with dig's XFR size line (was: the
    AXFR asked over UDP as a query, its REFUSED header printed)."""
    a = xfr_args()
    assert a.plan[0][1] == ["AXFR"]
    same(text_of(a, ONE_XFR), BANNER.format("") + ONE_LINES + ONE_STATS)
    # +comments (+question): each message's header (question) as dig prints a reply's
    out = text_of(xfr_args("+comments"), ONE_XFR)
    same(
        out,
        BANNER.format(" +comments")
        + """;; Got answer:
;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 6542
;; flags: qr aa; QUERY: 1, ANSWER: 6, AUTHORITY: 0, ADDITIONAL: 1

;; OPT PSEUDOSECTION:
; EDNS: version: 0, flags:; udp: 8192
;; ANSWER SECTION:
"""
        + ONE_LINES
        + "\n"
        + ONE_STATS,
    )
    out = text_of(xfr_args("+question", "+nocmd", "+nostats"), ONE_XFR)
    assert out == ";one.xfr.\t\t\tIN\tAXFR\n" + ONE_LINES
    assert text_of(xfr_args("+noall", "+answer"), ONE_XFR) == ONE_LINES
    assert text_of(xfr_args("+noall"), ONE_XFR) == ""
    assert text_of(xfr_args("+short"), ONE_XFR) == (
        f'{ONE}\nns.one.xfr.\n192.0.2.80\n2001:db8::80\n"hello world"\n{ONE}\n'
    )
    # +onesoa: the first SOA only (dig's, for an AXFR; +short keeps both)
    assert (
        text_of(xfr_args("+onesoa", "+nocmd", "+nostats"), ONE_XFR)
        == ONE_LINES.rsplit("one.xfr.\t", 1)[0]
    )
    assert text_of(xfr_args("+onesoa", "+short"), ONE_XFR).count(ONE) == 2
    out = text_of(xfr_args("+multiline", "+nocmd", "+nostats"), ONE_XFR)
    assert out.startswith("one.xfr.\t\t3600 IN\tSOA ns.one.xfr. h.one.xfr. (\n\t\t\t\t1  ")
    assert "www.one.xfr.\t\t60 IN A\t192.0.2.80\n" in out


def test_a_failed_transfer_is_digs_remark() -> None:
    refused = {**ONE_XFR, "rcode": "REFUSED", "records": 0, "bytes": 40, "answers": [],
               "failed": "Transfer failed.",
               "parts": [{**ONE_XFR["parts"][0], "answers": 0, "counts": [1, 0, 0, 1],  # type: ignore[index]
                          "flags": ["QR"], "rcode": "REFUSED", "size": 40}]}  # fmt: skip
    same(text_of(xfr_args(), refused), BANNER.format("") + "; Transfer failed.\n")
    out = text_of(xfr_args("+comments", "+nocmd"), refused)
    assert out.startswith(";; Got answer:\n;; ->>HEADER<<- opcode: QUERY, status: REFUSED,")
    assert out.endswith("; EDNS: version: 0, flags:; udp: 8192\n; Transfer failed.\n")
    assert text_of(xfr_args("+short"), refused) == "; Transfer failed.\n"


def test_a_transfer_cut_short_is_tried_again_as_dig() -> None:
    """The server closed mid-transfer: dig prints what came, its communications error,
    and tries again (+tries); after the last, `no servers could be reached`."""
    cut = {**ONE_XFR, "answers": ONE_ANSWERS[:5], "records": 5, "error_kind": "eof",
           "error": "127.0.0.1#36880 closed the connection after 1 messages", "tries": 2,
           "parts": [{**ONE_XFR["parts"][0], "answers": 5}]}  # type: ignore[index]  # fmt: skip
    last = {**cut, "retries": [dict(cut)]}
    lines = "".join(ONE_LINES.splitlines(keepends=True)[:5])
    same(text_of(xfr_args("+tries=2"), last), BANNER.format(" +tries=2") + lines
         + ";; communications error to 127.0.0.1#36880: end of file\n" + lines
         + ";; communications error to 127.0.0.1#36880: end of file\n"
         + ";; no servers could be reached\n")  # fmt: skip
    # nothing came: the banner before dig's last line, as dig
    none = {**cut, "answers": [], "parts": [], "records": 0, "messages": 0}
    out = text_of(xfr_args("+tries=2"), {**none, "retries": [none]})
    assert out.startswith(";; communications error to 127.0.0.1#36880: end of file\n" * 2 + "\n")
    assert out.endswith(";; global options: +cmd\n;; no servers could be reached\n")
    # a refused connection: dig's line for it and `no servers` each try, no banner
    refused = {**none, "error_kind": "refused", "error": "TCP connect to 127.0.0.1:36880: ..."}
    assert (
        text_of(xfr_args(), {**refused, "retries": [refused]})
        == (
            ";; Connection to 127.0.0.1#36880(127.0.0.1) for one.xfr failed: connection refused.\n"
            ";; no servers could be reached\n"
        )
        * 2
    )


def test_ixfr_words_as_dig() -> None:
    """`IXFR=N` (a word or -t's value): an incremental transfer from serial N; `ixfr`
    alone is dig's warning; was an error (-t) or a name looked up (the word)."""
    assert parse("@127.0.0.1", "z.test", "IXFR=5").plan[0][1] == ["IXFR=5"]
    assert parse("@127.0.0.1", "z.test", "-t", "ixfr=07").plan[0][1] == ["IXFR=7"]
    assert parse("@127.0.0.1", "ixfr=4294967295", "z.test").plan[0][1] == ["IXFR=4294967295"]
    a = parse("@127.0.0.1", "z.test", "AXFR", "y.test", "IXFR=1", "--xfr-max", "50")
    assert [p[1] for p in a.plan] == [["AXFR"], ["IXFR=1"]] and a.xfr_max == 50
    assert run_dns.budget(a) >= 2 * a.tries * 300  # an attempt may take XFR_MAX_S
    with pytest.raises(SystemExit):
        parse("z.test", "AXFR", "--xfr-max", "0")
    from packetlab.measure import dnsxfr

    assert parse("z.test", "AXFR").xfr_max == dnsxfr.XFR_MAX_RECORDS == run_dns.XFR_MAX_RECORDS


def test_help_shows_the_transfers(capsys: pytest.CaptureFixture[str]) -> None:
    import packetlab.cli as cli

    with pytest.raises(SystemExit):
        cli.parse(["run", "dns", "--help"])
    out = capsys.readouterr().out
    assert "IXFR=SERIAL" in out and "--xfr-max N" in out and "example.com AXFR" in out


def test_a_transfer_tries_servers_in_digs_order() -> None:
    """dig's order for a lookup's failures: the first server again while the tries last
    (its requeue), then the next servers once each; `no servers could be reached`
    after each refused connection but the one that goes on to the next server."""
    import struct
    import sys

    import dns.message
    import dns.rrset

    sys.path.insert(0, str(Path(__file__).resolve().parent / "controller"))
    from ctl_fakes import Rig
    from twisted.internet.defer import Deferred

    from packetlab.cli.run_command import Progress

    rig = Rig()

    def cut(data: bytes) -> list[bytes]:  # the SOA, then the connection closed
        r = dns.message.make_response(dns.message.from_wire(data[2:]))
        r.answer.append(dns.rrset.from_text("one.xfr.", 60, "IN", "SOA", ONE))
        wire = r.to_wire()
        return [struct.pack(">H", len(wire)) + wire]

    rig.endpoint.tcp_servers[("192.0.2.54", 53)] = cut
    a = parse("@192.0.2.53", "@192.0.2.54", "one.xfr", "AXFR", "+tries=3", "+nocmd")
    servers = [("192.0.2.53", 53), ("192.0.2.54", 53)]
    o = a.plan[0][3] or a  # the name's own options (+tries=3 after it)
    go = run_dns_ask._transfer(rig.session, servers, "one.xfr", "AXFR", o, "IN", None, Progress())
    r = rig.run(Deferred.fromCoroutine(go))
    got = [(x["server"], x["error_kind"], x.get("next_server")) for x in r.retries]
    assert got == [("192.0.2.53", "refused", None), ("192.0.2.53", "refused", None),
                   ("192.0.2.53", "refused", True)]  # fmt: skip
    assert (r.server, r.error_kind, r.tries) == ("192.0.2.54", "eof", 4)
    a.view = o
    out = text_of(a, r.to_dict())
    refused = ";; Connection to 192.0.2.53#53(192.0.2.53) for one.xfr failed: connection refused.\n"
    assert out.startswith((refused + ";; no servers could be reached\n") * 2 + refused + "one.xfr.")
    assert out.endswith(";; communications error to 192.0.2.54#53: end of file\n"
                        ";; no servers could be reached\n")  # fmt: skip


def test_a_tcp_query_to_a_closed_port_is_digs_connect_failure() -> None:
    """+tcp: a refused connection is dig's `;; Connection to ... failed: connection
    refused.` and `no servers could be reached`, no banner, asked again while the tries
    last (from the first server: dig's requeue), then the next server (was our one
    `communications error ... connection refused` line, the banner, one try)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent / "controller"))
    from ctl_fakes import Rig
    from twisted.internet.defer import Deferred

    rig = Rig()  # nothing listens: the fake refuses every connect
    a = parse("@192.0.2.53", "a.test", "+tcp", "+tries=2")
    servers = [("192.0.2.53", 53)]
    r = rig.run(Deferred.fromCoroutine(run_dns_ask._ask(rig.session, servers, "a.test", "A",
                                                    tcp=True, attempts=2, icmp=False)))  # fmt: skip
    line = ";; Connection to 192.0.2.53#53(192.0.2.53) for a.test failed: connection refused.\n"
    assert text_of(a, r.to_dict()) == (line + ";; no servers could be reached\n") * 2
    r = rig.run(Deferred.fromCoroutine(run_dns_ask._ask(
        rig.session, [("192.0.2.53", 53), ("192.0.2.54", 53)], "a.test", "A", tcp=True,
        attempts=1, icmp=False)))  # fmt: skip
    assert r.notes == [line[3:-1]] and r.server == "192.0.2.54"  # on to the next: no `no servers`


def test_a_query_without_answer_shows_digs_banner_with_short_and_tcp_timeouts() -> None:
    """dig prints its banner before `no servers could be reached` whatever +short says;
    a TCP exchange that timed out is dig's `timed out` (was our StreamTimeout text, and
    no banner with +short)."""
    lost = {"type": "dns", "qname": "silent.test.", "qtype": "A", "server": "127.0.0.1",
            "port": 41073, "proto": "tcp", "tries": 1, "error_kind": "tcp",
            "error": "nothing from 127.0.0.1:41073 within 1 s"}  # fmt: skip
    words = ["@127.0.0.1", "-p", "41073", "silent.test", "+tcp", "+tries=1", "+time=1", "+short"]
    a = parse(*words)
    a.cmdline = words
    a.view = a.plan[0][3]  # the name's options, as the run shows it
    # `dig @127.0.0.1 -p 41073 silent.test +tcp +tries=1 +time=1 +short` (BIND 9.18.49)
    same(text_of(a, lost), (
        ";; communications error to 127.0.0.1#41073: timed out\n"
        "\n; <<>> DiG 9.18.49-1~deb12u3-Debian <<>> " + " ".join(words) + "\n"
        "; (1 server found)\n;; global options: +cmd\n;; no servers could be reached\n"
    ))  # fmt: skip
    # +short or +nocmd before the name: no banner, as dig (it makes none for the lookup)
    assert text_of(parse("+short", "silent.test"), lost) == (
        ";; communications error to 127.0.0.1#41073: timed out\n;; no servers could be reached\n"
    )
    a = parse("@127.0.0.1", "silent.test", "+nocmd")  # after it: dig's banner all the same
    a.view = a.plan[0][3]
    assert "; <<>> pktlab" in text_of(a, lost) and a.view.error_banner
    assert "<<>>" not in text_of(parse("+nocmd", "silent.test"), lost)


def test_no_name_is_the_roots_ns_as_dig() -> None:
    """`dig @SERVER` (and `-t MX`, `-c CH` without a name): `. NS` (was an error)."""
    for words, cls in ((["@192.0.2.53"], None), (["-t", "MX", "@192.0.2.53"], None),
                       (["-c", "CH"], "CH")):  # fmt: skip
        a = parse(*words)
        assert [(e[0], e[1], e[2]) for e in a.plan] == [(".", ["NS"], cls)], words


def test_short_then_cmd_keeps_digs_banner_on_a_failure() -> None:
    """dig 9.18.49: +short turns printcmd off, +cmd back on: the lookup's banner comes
    before `no servers could be reached`, its options `+short +cmd` (+nssearch too)."""
    lost = {"type": "dns", "qname": "silent.test.", "qtype": "A", "server": "127.0.0.1",
            "port": 53, "proto": "udp", "tries": 1, "error_kind": "timeout",
            "error": "no answer"}  # fmt: skip
    for words in (["+short", "+cmd"], ["+cmd", "+short"], ["+nssearch"]):
        a = parse("@127.0.0.1", *words, "silent.test")
        a.view = a.plan[0][3] or a
        text = text_of(a, lost)
        has = ";; global options: +short +cmd\n;; no servers could be reached\n" in text
        assert has == (words != ["+cmd", "+short"]), words
    a = parse("@127.0.0.1", "+cmd", "+short", "silent.test")
    assert "<<>>" not in text_of(a, lost)  # +short last: printcmd off, no banner (as dig)


def test_tries_and_time_by_default_are_digs() -> None:
    """dig 9.18: +tries=3, +time=5 (`time dig @127.0.0.9 a.test` against a silent UDP
    socket: 3 queries 5 s apart, 15.07 s, exit 9); ours were 2 tries of 2 s."""
    a = parse("a.test")
    assert (a.tries, a.wait) == (3, 5.0)
