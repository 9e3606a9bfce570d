"""`pktlab run dns` as dig: its switches (+dnssec, +bufsize, +[no]edns, -4/-6, the
+[no]SECTION display switches, refused ones) and its output, byte for byte against text
dig 9.18 printed for the same replies (tests/integration/test_dns_dig.py runs both)."""

from __future__ import annotations

import argparse
import re

import pytest

from packetlab.cli import run_dns
from packetlab.cli.run import RunError


def parse(*argv: str) -> argparse.Namespace:
    """What `pktlab run dns ARGV` runs, dig's words read."""
    import packetlab.cli as cli

    a = cli.parse(["run", "dns", *argv])
    run_dns.dig_style(a)
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


def test_columns_follow_binds_indent() -> None:
    rr = {"name": "a-rather-long-label-for-the-columns.test.", "ttl": 2147483647,
          "type": "A", "data": "192.0.2.3"}  # fmt: skip
    # past a column: one space (a tab when that reaches a tab stop), as dig prints it
    assert run_dns.rr_line(rr) == (
        "a-rather-long-label-for-the-columns.test. 2147483647 IN\tA 192.0.2.3"
    )
    assert run_dns.rr_line({**rr, "name": "_443._tcp.www.test.", "ttl": 300, "type": "TLSA"}) == (
        "_443._tcp.www.test.\t300\tIN\tTLSA\t192.0.2.3"
    )
    assert run_dns.question_line("www.test.", "AAAA") == ";www.test.\t\t\tIN\tAAAA"


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
        (["+multiline", "a.test"], r"\+multiline: dig option not supported here"),
        (["+bogus", "a.test"], r"\+bogus: dig option not supported here \(dig-style"),
        (["+bufsize=70000", "a.test"], r"\+bufsize=70000: out of range"),
        (["+bufsize=-1", "a.test"], r"\+bufsize=-1: expected a number from 0"),
        (["+edns=256", "a.test"], r"\+edns=256: out of range"),
        (["+edns=x", "a.test"], r"\+edns=x: expected a number"),
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
    with pytest.raises(RunError, match=r"\+trace over TCP is not built"):
        from packetlab.cli.run_command import Progress

        run_dns.experiment(parse("+trace", "+tcp", "a.test"), lambda r: None, Progress())
