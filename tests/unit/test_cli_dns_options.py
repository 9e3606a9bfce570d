"""dig 9.18's switches `pktlab run dns` reads since session 16 (dig16): the query bytes
against dig's (captured from dig 9.18.49 with a UDP listener), the output lines
against dig's text for the same records, +nofail over scripted servers.
tests/integration/test_dns_options_dig.py runs both side by side."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

import dns.name
import dns.rcode
import pytest
from test_cli_dns import A_DNSSEC, parse, text_of

from packetlab.cli import run_dns, run_dns_ask, run_dns_dig, run_dns_text
from packetlab.cli import run_dns_switches as switches
from packetlab.cli.run import RunError
from packetlab.measure.dns import query_record
from packetlab.measure.dnsquery import DIG_QUERY, QueryBits, _make_query

# dig @127.0.0.1 -p PORT +tries=1 +time=1 +nocookie WORDS, the first datagram it sent
DIG_QUERIES = {
    ("+aaflag", "+cdflag", "+raflag", "+tcflag", "+zflag", "+noadflag", "+opcode=notify"):
        "036e27d0000100000000000101610474657374000001000100002904d0000000000000",
    ("+header-only",): "eb7a0120000000000000000100002904d0000000000000",
    ("+subnet=192.0.2.77/27", "+expire", "+keepalive", "+padding=64", "+nsid"):
        "3dfb0120000100000000000101610474657374000001000100002904d000000000001d0003000000"
        "08000800011b00c000024000090000000b0000000c000100",
    ("+coflag",): "ac2e0120000100000000000101610474657374000001000100002904d0000040000000",
    ("+ednsflags=0xffff", "+dnssec"):
        "ac930120000100000000000101610474657374000001000100002904d00000bfff0000",
    ("+ednsopt=65001:abcd", "+ednsopt=5", "+nsid"):
        "7d9a0120000100000000000101610474657374000001000100002904d000000000000e00030000fd"
        "e90002abcd00050000",
    ("+ednsopt=nsid", "+ednsopt=ecs:00010000"):
        "0efd0120000100000000000101610474657374000001000100002904d000000000000c0003000000"
        "08000400010000",
    ("+noedns", "+ednsopt=5"): "996901200001000000000000016104746573740000010001",  # no OPT
    ("+noedns", "+ednsflags=0x80"):
        "bd0a0120000100000000000101610474657374000001000100002904d0000000800000",
    ("+noednsneg", "+edns=1"):
        "74440120000100000000000101610474657374000001000100002904d0000100000000",
    ("+subnet=2001:db8::/33", "+noedns", "MX"):
        "9480012000010000000000010161047465737400000f000100002904d000000000000d0008000900"
        "02210020010db800",
}  # fmt: skip


def query_of(*words: str, qid: int | None = 0) -> bytes:
    """The query `pktlab run dns @127.0.0.1 WORDS a.test` makes (the ID set to `qid`)."""
    a = parse("@127.0.0.1", "+nocookie", *words, "a.test")
    name, types, _, line = a.plan[0]
    o = line or a
    qtype = (types or ["A"])[0]
    edns = None if o.edns < 0 else o.edns
    q = _make_query(dns.name.from_text(name), qtype, edns, 1232, bool(o.dnssec),
                    not o.norecurse, "IN", o.nsid, None, switches.query_bits(o))  # fmt: skip
    if qid is not None:
        q.id = qid
    return bytes(q.to_wire())


@pytest.mark.parametrize("words", list(DIG_QUERIES))
def test_the_query_is_digs_bytes(words: tuple[str, ...]) -> None:
    assert query_of(*words)[2:].hex() == DIG_QUERIES[words][4:]


def test_qid_and_the_bits_dig_keeps_its_own() -> None:
    assert query_of("+qid=4242", qid=None)[:2] == (4242).to_bytes(2, "big")
    assert parse("+ednsflags=0x80", "a.test").edns == 0  # EDNS on, as dig
    wire = query_of("+ednsflags=0xc080")  # DO and CO: not from +ednsflags (dig's own)
    assert wire[-4:-2] == b"\x00\x80"
    assert run_dns_text._opt_lines({"version": 0, "flags": ["co"], "mbz": 0x80, "udp": 1232,
                               "options": []}) == ["; EDNS: version: 0, flags: co; MBZ: "
                                                   "0x0080, udp: 1232"]  # fmt: skip
    for word, says in (("+ednsopt=bogus", "bad edns code point: bogus"),
                       ("+ednsopt=5:xyz", "the value must be hex digits"),
                       ("+ednsflags=x", "Couldn't parse ednsflags"),
                       ("+qid=65536", "Couldn't parse qid")):  # fmt: skip
        with pytest.raises(RunError, match=says):
            parse(word, "a.test")
    with pytest.raises(RunError, match="too many ednsopts"):
        parse(*["+ednsopt=5"] * 101, "a.test")


def test_expandaaaa_as_dig() -> None:
    v6 = {"name": "v6.test.", "type": "AAAA", "ttl": 300, "data": "2001:db8::1"}
    assert answer_lines("+expandaaaa", records=[v6]) == [
        "v6.test.\t\t300\tIN\tAAAA\t2001:0db8:0000:0000:0000:0000:0000:0001"
    ]


def test_the_default_query_bits_are_digs() -> None:
    assert switches.query_bits(parse("a.test")) == DIG_QUERY == QueryBits()
    # +padding turns EDNS on (as dig), after +noedns too; +subnet asks for an OPT
    assert parse("+noedns", "+padding=16", "a.test").edns == 0
    assert query_of("+subnet=0")[-8:].hex() == "0008000400010000"  # 0.0.0.0/0, as dig


# dig @127.0.0.1 -p 46195 +qr +nocookie +subnet=192.0.2.77/27 +expire +keepalive
# +padding=64 +zflag a.test: its `;; Sending:` block (the ID as 0)
DIG_SENDING = """\
;; Sending:
;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 0
;; flags: rd ad; MBZ: 0x4; QUERY: 1, ANSWER: 0, AUTHORITY: 0, ADDITIONAL: 1

;; OPT PSEUDOSECTION:
; EDNS: version: 0, flags:; udp: 1232
; CLIENT-SUBNET: 192.0.2.64/27/0
; EXPIRE:
; TCP KEEPALIVE:
; PAD:
;; QUESTION SECTION:
;a.test.\t\t\t\tIN\tA

;; QUERY SIZE: 64
"""


def test_qr_prints_the_query_as_dig() -> None:
    words = ("+subnet=192.0.2.77/27", "+expire", "+keepalive", "+padding=64", "+zflag")
    wire = query_of(*words)
    assert len(wire) == 64
    a = parse("+qr", *words, "a.test")
    text = "\n".join(run_dns_dig.DigText(a).sending({"query": wire.hex()}))
    assert text == DIG_SENDING  # and a blank line, as dig's
    record = query_record(wire)
    assert record["sent"] and record["z"] and record["edns"]["options"][-1]["data"] == ""
    # +header-only: the question section's title alone (dig's sendmsg holds the name)
    lines = run_dns_dig.DigText(a).sending({"query": query_of("+header-only").hex()})
    assert ";; QUESTION SECTION:\n\n;; QUERY SIZE: 23" in "\n".join(lines)


def test_a_reply_s_edns_options_as_dig() -> None:
    options = [{"code": 8, "data": "00011b1bc0000240"}, {"code": 9, "data": "00127500"},
               {"code": 11, "data": "012c"}, {"code": 12, "data": "00" * 8},
               {"code": 8, "data": "00022121" + "20010db800"}, {"code": 8, "data": "0001"},
               {"code": 9, "data": "0102"}]  # fmt: skip
    edns = {"version": 0, "flags": [], "mbz": 0, "udp": 1232, "options": options}
    odd = [{"code": 3, "data": ""}, {"code": 65001, "data": ""},
           {"code": 15, "data": "0009" + b"no key".hex()}, {"code": 15, "data": "0063"},
           {"code": 15, "data": "0016610162"}, {"code": 14, "data": "4f664f67"}]  # fmt: skip
    assert run_dns_text._opt_lines({**edns, "options": odd})[1:] == [
        "; NSID:",
        "; OPT=65001:",
        "; EDE: 9 (DNSKEY Missing): (no key)",
        "; EDE: 99",
        "; EDE: 22 (No Reachable Authority): (a.b)",
        "; KEY-TAG: 20326, 20327",
    ]  # fmt: skip  (dig 9.18.49 against dns_zone_server.py's ednsopts.test)
    assert run_dns_text._opt_lines(edns)[1:] == [
        "; CLIENT-SUBNET: 192.0.2.64/27/27",
        "; EXPIRE: 1209600 (2 weeks)",
        "; TCP KEEPALIVE: 30.0 secs",
        "; PAD: (8 bytes)",
        "; CLIENT-SUBNET: 2001:db8::/33/33",
        '; OPT=8: 00 01 ("..")',
        '; OPT=9: 01 02 ("..")',
    ]  # fmt: skip  (data of another size: BIND refuses the reply, malformed OPT option)


MX = {"name": "mx.test.", "type": "MX", "ttl": 90, "data": "10 a.test."}
KSK = {"name": "test.", "type": "DNSKEY", "ttl": 3600,
       "data": "257 3 13 6GfPDfkzFvmUX4w4K3b6Aw7yzky+6bOTG+TB2DQ/9qeruYhdDdzYuv37hCYFOnb/"
               "M8LKYxPZM5OQoO9hBtm/uQ=="}  # fmt: skip


def answer_lines(*words: str, records: list[dict[str, object]]) -> list[str]:
    a = parse("+noall", "+answer", *words, "a.test")
    return text_of(a, {**A_DNSSEC, "answers": records}).splitlines()


def test_record_display_switches_as_dig() -> None:
    # dig 9.18.49 against dns_zone_server.py (the TTL 90 made up: 1m30s)
    assert answer_lines("+nottlid", records=[MX]) == ["mx.test.\t\tIN\tMX\t10 a.test."]
    assert answer_lines("+noclass", records=[MX]) == ["mx.test.\t\t90\tMX\t10 a.test."]
    assert answer_lines("+nottlid", "+noclass", records=[MX]) == ["mx.test.\t\tMX\t10 a.test."]
    assert answer_lines("+ttlunits", records=[MX]) == ["mx.test.\t\t1m30s\tIN\tMX\t10 a.test."]
    assert answer_lines("+unknownformat", records=[MX]) == [
        "mx.test.\t\t90\tCLASS1\tTYPE15\t\\# 10 000A0161047465737400"
    ]
    assert answer_lines("+nocrypto", records=[KSK]) == [
        "test.\t\t\t3600\tIN\tDNSKEY\t257 3 13 [key id = 3925]"
    ]
    assert answer_lines("+rrcomments", records=[KSK])[0].endswith(
        "uQ==  ; KSK; alg = ECDSAP256SHA256 ; key id = 3925"
    )
    assert answer_lines("+multiline", "+nocrypto", records=[KSK]) == [
        "test.\t\t\t3600 IN\tDNSKEY 257 3 13 (", "\t\t\t\t[key id = 3925]",
        "\t\t\t\t) ; KSK; alg = ECDSAP256SHA256 ; key id = 3925",
    ]  # fmt: skip
    assert answer_lines("+multiline", "+norrcomments", "+nocrypto", records=[KSK]) == [
        "test.\t\t\t3600 IN\tDNSKEY 257 3 13 (", "\t\t\t\t[key id = 3925] )"
    ]  # fmt: skip
    sig = {"name": "a.test.", "type": "RRSIG", "ttl": 300, "data": A_DNSSEC["answers"][2]["data"]}  # type: ignore[index]
    assert answer_lines("+nocrypto", records=[sig])[0].endswith("4242 test. [omitted]")
    assert (
        run_dns_text.ttl_units(0) == "0s" and run_dns_text.ttl_units(1209600 + 3661) == "2w1h1m1s"
    )


def test_identify_with_short_and_without_stats_as_dig() -> None:
    a = parse("+short", "+identify", "a.test")
    assert text_of(a, A_DNSSEC).splitlines()[0] == "192.0.2.2 from server 127.0.0.1 in 0 ms."
    a = parse("@127.0.0.1", "+nostats", "+identify", "+noall", "+answer", "a.test")
    assert text_of(a, A_DNSSEC).endswith(
        ";; Received 167 bytes from 127.0.0.1#53029(127.0.0.1) in 0 ms\n\n"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["+padding=513", "a.test"], r"Couldn't parse padding \(out of range\)"),
        (["+subnet=bogus", "a.test"], "invalid address 'bogus'"),
        # (was /33: dig 9.18 reads that as /32, session 24 dig24)
        (["+subnet=192.0.2.0/x", "a.test"], "invalid prefix length in '192.0.2.0/x'"),
        (["+subnet=10.1", "a.test"], "invalid address '10.1'"),  # short: with a prefix only
        (["+opcode=16", "a.test"], r"Couldn't parse opcode \(out of range\)"),
    ],
)
def test_bad_values_are_one_line_errors(argv: list[str], message: str) -> None:
    with pytest.raises(RunError, match=message.replace("+", r"\+")):
        parse(*argv)


def test_switches_after_a_name_are_its_own() -> None:
    a = parse("a.test", "+opcode=status", "+subnet=192.0.2.0/24", "b.test")
    first, second = (switches.query_bits(p[3] or a) for p in a.plan)
    assert (first.opcode, first.subnet) == (2, bytes.fromhex("000118" + "00c00002"))
    assert second == DIG_QUERY


def test_nofail_asks_the_next_server_after_servfail() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent / "controller"))
    from ctl_fakes import Rig
    from twisted.internet.defer import Deferred

    rig = Rig()

    def answering(rcode: int) -> Callable[[bytes], list[bytes]]:
        def server(q: bytes) -> list[bytes]:
            import dns.message

            r = dns.message.make_response(dns.message.from_wire(q))
            r.set_rcode(dns.rcode.Rcode(rcode))
            return [r.to_wire()]

        return server

    rig.endpoint.udp_servers[("192.0.2.53", 53)] = answering(2)  # SERVFAIL
    rig.endpoint.udp_servers[("192.0.2.54", 53)] = answering(0)
    servers = [("192.0.2.53", 53), ("192.0.2.54", 53)]
    for servfail_next, want in ((True, "192.0.2.54"), (False, "192.0.2.53")):
        ask = run_dns_ask._ask(rig.session, servers, "a.test", "A", attempts=2, timeout=1,
                           icmp=False, servfail_next=servfail_next)  # fmt: skip
        r = rig.run(Deferred.fromCoroutine(ask))
        assert r.server == want
        assert r.notes == (["Got SERVFAIL reply from 192.0.2.53, trying next server"]
                           if servfail_next else [])  # fmt: skip
    ask = run_dns_ask._ask(rig.session, servers[:1], "a.test", "A", attempts=2, timeout=1,
                       icmp=False, servfail_next=True)  # fmt: skip
    r = rig.run(Deferred.fromCoroutine(ask))
    assert (r.rcode, r.notes) == ("SERVFAIL", ["Got SERVFAIL reply from 192.0.2.53"])


def test_help_documents_the_switches(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--help")
    text = " ".join(capsys.readouterr().out.split())
    for word in ("+[no]ttlid", "+[no]class", "+[no]ttlunits", "+[no]crypto", "+[no]rrcomments",
                 "+[no]unknownformat", "+[no]qr", "+[no]header-only", "+[no]aaflag", "+[no]zflag",
                 "+opcode=", "+subnet=ADDR", "+[no]expire", "+ednsopt=", "+ednsflags=",
                 "+[no]coflag", "+qid=", "+[no]expandaaaa", "+[no]ednsnegotiation",
                 "+timeout=", "+[no]yaml", "+showsearch", "+domain=NAME", "+ndots=N",
                 "+[no]besteffort", "hmac-sha256-128: the MAC cut to BITS", "+padding=N",
                 "+[no]keepalive",
                 "+[no]fail", "+[no]identify"):  # fmt: skip
        assert word in text, word


def test_search_names_as_dig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 192.0.2.53\ndomain old.test\nsearch a.test b.test.\n"
                    "options rotate ndots:2\n")  # fmt: skip
    monkeypatch.setattr(switches, "RESOLV_CONF", str(conf))

    def names(*words: str) -> list[str]:
        a = parse(*words)
        return switches.search_names(a.plan[0][0], a.plan[0][3] or a)

    assert names("www") == ["www"]  # no +search: as given (dig's default)
    assert names("+search", "www") == ["www.a.test.", "www.b.test.", "www"]
    assert names("+search", "www.x") == ["www.x.a.test.", "www.x.b.test.", "www.x"]
    assert names("+search", "+ndots=1", "www.x") == ["www.x", ""]  # as given, first and only
    assert names("+search", "www.") == ["www."]  # one dot, fewer than ndots:2
    # dig's count_dots counts an absolute name's trailing dot: as many as ndots, it is
    # asked as given with need_search (its NXDOMAIN statistics twice, dig 9.18.49)
    assert names("+search", "www.x.") == ["www.x.", ""]
    assert names("+domain=c.test", "+ndots=1", ".") == [".", ""]
    assert names("+domain=c.test", "+ndots=2", ".") == ["."]
    assert names("+domain=c.test", "www") == ["www.c.test.", "www"]
    assert names("www", "+showsearch") == ["www.a.test.", "www.b.test.", "www"]  # global
    assert names("+showsearch", "+nosearch", "www") == ["www"]
    with pytest.raises(RunError, match=r"\+ndots=16: Couldn't parse ndots \(out of range\)"):
        parse("+ndots=16", "www")
    # how many are asked under a search domain (dig's lookup->origin)
    a = parse("+search", "www")
    assert switches.search_plan("www", a)[1] == 2
    assert switches.search_plan("www.x.", a)[1] == 0
    assert switches.search_plan("www.", a)[1] == 1  # under a.test., which it ignores
    monkeypatch.setattr(switches, "RESOLV_CONF", str(tmp_path / "none"))
    assert names("+search", "www") == ["www"]  # no resolv.conf: no search list
    assert switches.search_plan("www.", a) == (["www.", ""], 0)  # ndots 1 then
    # fewer dots than ndots and no search domain: no origin (dig's empty search_list)
    assert switches.search_plan("www.", parse("+search", "+ndots=2", "www")) == (["www."], 0)


def test_search_prints_the_last_answer_and_showsearch_each_as_dig() -> None:
    """Over scripted servers: NXDOMAIN asks the next name; +showsearch shows each, dig's
    whole banner again before the next; a name asked as given first: its statistics
    twice (dig 9.18)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent / "controller"))
    import dns.message
    from ctl_fakes import Rig
    from twisted.internet.defer import Deferred

    rig = Rig()

    def server(q: bytes) -> list[bytes]:
        query = dns.message.from_wire(q)
        r = dns.message.make_response(query)
        if query.question[0].name.to_text() != "www.b.test.":
            r.set_rcode(dns.rcode.NXDOMAIN)
        return [r.to_wire()]

    rig.endpoint.udp_servers[("192.0.2.53", 53)] = server
    servers = [("192.0.2.53", 53)]
    for names, show, want in ((["www.a.test.", "www.b.test.", "www"], False, 1),
                              (["www.a.test.", "www.b.test.", "www"], True, 2),
                              (["nothere.x", ""], False, 1)):  # fmt: skip
        got: list[dict[str, object]] = []
        ask = run_dns_ask._search(rig.session, servers, names, "A", got.append, show, attempts=1,
                              timeout=1, icmp=False)  # fmt: skip
        rig.run(Deferred.fromCoroutine(ask))
        assert len(got) == want
        assert got[-1]["qname"] == ("nothere.x." if names[1] == "" else "www.b.test.")
        assert bool(got[-1].get("stats_twice")) == (names[1] == "")
        assert all(r.get("search_step") for r in got[:-1])
    a = parse("@192.0.2.53", "+showsearch", "+nocomments", "+noquestion", "www")
    step = {**A_DNSSEC, "search_step": True, "rcode": "NXDOMAIN", "answers": []}
    text = text_of(a, step, A_DNSSEC)
    assert text.count("; (1 server found)\n;; global options: +cmd\n") == 2
    twice = text_of(parse("+noall", "+stats", "www"), {**A_DNSSEC, "stats_twice": True})
    assert twice.count(";; MSG SIZE  rcvd: 167\n") == 2
    none = text_of(parse("+noall", "+stats", "www"), {**A_DNSSEC, "stats_none": True})
    assert ";; MSG SIZE" not in none and ";; Query time" not in none


def test_search_without_statistics_for_a_refusal_under_a_search_domain_as_dig() -> None:
    """dig 9.18.49's recv_done prints a reply's statistics when it is NOERROR or its
    lookup has no search domain: `+domain=t rf` answered REFUSED (or SERVFAIL) under
    `t.` has none (session 28, dns28); asked as given, or NOERROR, it has them."""
    sys.path.insert(0, str(Path(__file__).resolve().parent / "controller"))
    import dns.message
    from ctl_fakes import Rig
    from twisted.internet.defer import Deferred

    rig = Rig()

    def server(q: bytes) -> list[bytes]:
        query = dns.message.from_wire(q)
        r = dns.message.make_response(query)
        if query.question[0].name.to_text().startswith("rf."):
            r.set_rcode(dns.rcode.REFUSED)
        return [r.to_wire()]

    rig.endpoint.udp_servers[("192.0.2.53", 53)] = server
    servers = [("192.0.2.53", 53)]
    for names, origins, none in ((["rf.t.", "rf"], 1, True), (["ok.t.", "ok"], 1, False),
                                 (["rf.x", ""], 0, False), (["rf."], 1, True),
                                 (["rf."], 0, False)):  # fmt: skip
        got: list[dict[str, object]] = []
        ask = run_dns_ask._search(rig.session, servers, names, "A", got.append, False,
                                  origins, attempts=1, timeout=1, icmp=False)  # fmt: skip
        rig.run(Deferred.fromCoroutine(ask))
        assert len(got) == 1 and bool(got[0].get("stats_none")) == none, (names, got)
        assert not got[0].get("stats_twice")


def test_showsearch_repeats_the_banner_in_the_first_lookup_only_as_dig() -> None:
    """dig 9.18.49 gives its banner (the lookup's cmdline) to the first lookup, and
    requeue_lookup to that lookup's next search names: `+showsearch zz zz` prints it
    before the first name's second try, not before the second name's (it did before
    session 28, dns28)."""
    a = parse("@192.0.2.53", "+showsearch", "+domain=t", "zz", "zz")
    step = {**A_DNSSEC, "search_step": True, "rcode": "NXDOMAIN", "answers": []}
    text = text_of(a, step, A_DNSSEC, step, A_DNSSEC)
    assert text.count("; <<>> pktlab") == 2
    assert text.count("; (1 server found)\n;; global options: +cmd\n") == 2


SECRET = "c2VjcmV0c2VjcmV0IGtleSBmb3IgdGVzdHM="


def test_batch_line_keys_as_dig(tmp_path: Path) -> None:
    """dig 9.18 reads the first batch line before it makes its TSIG key: a -y or -k
    there is the run's key; on a later line no key, and -y's `TSIG key was not used`
    from that line on (-k: nothing)."""
    batch = tmp_path / "q"
    batch.write_text(f"-y hmac-sha256:tk.test:{SECRET} a.test\nb.test\n")
    a = parse("@127.0.0.1", "-f", str(batch))
    assert a.tsig_y == f"hmac-sha256:tk.test:{SECRET}" and a.tsig_file is None
    batch.write_text(f"a.test\n-y hmac-sha256:tk.test:{SECRET} b.test\nc.test\n-k k d.test\n")
    a = parse("@127.0.0.1", "-f", str(batch))
    assert a.tsig_y is None and a.tsig_file is None
    unused = [bool(getattr(line, "tsig_unused", False)) for _, _, _, line in a.plan]
    assert unused == [False, True, True, True]
    a.view = a.plan[1][3]
    stats = "\n".join(run_dns_dig.DigText(a).stats(A_DNSSEC, ";; MSG SIZE  rcvd: 167"))
    assert stats.endswith(";; MSG SIZE  rcvd: 167\n;; WARNING -- TSIG key was not used.\n")
    batch.write_text(f"-k {tmp_path / 'key'} a.test\n-y hmac-sha256:tk.test:{SECRET} b.test\n")
    a = parse("@127.0.0.1", "-f", str(batch))
    assert a.tsig_file == str(tmp_path / "key")  # a key was made: a later -y says nothing
    assert not any(getattr(line, "tsig_unused", False) for _, _, _, line in a.plan)


def test_trace_signs_each_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """dig +trace -y: every step's query signed (dns_trace hands the key to each)."""
    from twisted.internet.defer import Deferred

    from packetlab.measure import dns as measure_dns

    seen: list[object] = []

    async def fake_query(session: object, qname: str, qtype: str, **kw: object) -> object:
        seen.append(kw.get("tsig"))
        r = measure_dns.DnsResult(qname, qtype, "192.0.2.53", 53, "udp", rcode="NOERROR")
        if qname == ".":
            r.answers = [measure_dns.DnsAnswer(".", "NS", 60, "ns.test.")]
            r.additional = [measure_dns.DnsAnswer("ns.test.", "A", 60, "192.0.2.54")]
        else:
            r.answers = [measure_dns.DnsAnswer(qname, "A", 60, "192.0.2.1")]
        return r

    monkeypatch.setattr(measure_dns, "dns_query", fake_query)
    key = object()
    d = measure_dns.dns_trace(None, "a.test", server="192.0.2.53", tsig=key)  # type: ignore[arg-type]
    steps: list[object] = []
    d.addCallback(steps.append)
    assert isinstance(d, Deferred) and steps and seen == [key, key]


def test_nobesteffort_makes_a_lenient_reply_a_bad_packet() -> None:
    """A reply cut short in its second record: read with BIND's best effort by default
    (dig's warning); +nobesteffort: dig's `Got bad packet` and hex dump."""
    sys.path.insert(0, str(Path(__file__).resolve().parent / "controller"))
    import dns.message
    import dns.rrset
    from ctl_fakes import Rig

    from packetlab.measure.dns import dns_query
    from packetlab.measure.dnsparse import MALFORMED_NOTE

    rig = Rig()

    def server(q: bytes) -> list[bytes]:
        r = dns.message.make_response(dns.message.from_wire(q))
        r.use_edns(False)
        r.answer.append(dns.rrset.from_text("a.test.", 300, "IN", "A", "192.0.2.1", "192.0.2.2"))
        return [r.to_wire()[:-2]]

    rig.endpoint.udp_servers[("192.0.2.53", 53)] = server
    got = rig.run(dns_query(rig.session, "a.test", server="192.0.2.53", icmp=False))
    assert got.error is None and got.notes == [MALFORMED_NOTE] and len(got.answers) == 1
    strict = QueryBits(besteffort=False)
    bad = rig.run(dns_query(rig.session, "a.test", server="192.0.2.53", icmp=False, bits=strict))
    assert (bad.error_kind, bad.reason, bad.notes) == ("malformed", "unexpected end of input", [])
    text = text_of(parse("+nobesteffort", "a.test"), bad.to_dict())
    assert text.startswith(";; Got bad packet: unexpected end of input\n54 bytes\n")


# dig @127.0.0.1 -p 53029 +yaml +dnssec a.test (dig 9.18.49): its item, the times as T
DIG_YAML = """\
- type: MESSAGE
  message:
    type: AUTH_RESPONSE
    query_time: !!timestamp 2026-12-05T09:09:35.414Z
    response_time: !!timestamp 2026-12-05T09:09:35.414Z
    message_size: 167b
    socket_family: INET
    socket_protocol: UDP
    response_address: "127.0.0.1"
    response_port: 53029
    query_address: "0.0.0.0"
    query_port: 0
    response_message_data:
      opcode: QUERY
      status: NOERROR
      id: 44758
      flags: qr aa rd
      QUESTION: 1
      ANSWER: 3
      AUTHORITY: 0
      ADDITIONAL: 1
      OPT_PSEUDOSECTION:
        EDNS:
          version: 0
          flags: do
          udp: 1232
      QUESTION_SECTION:
        - 'a.test. IN A'
      ANSWER_SECTION:
        - 'a.test. 300 IN A 192.0.2.2'
        - 'a.test. 300 IN A 192.0.2.1'
        - 'a.test. 300 IN RRSIG A 13 2 300 20270101000000 20261201000000 4242 test. \
ThGV3wIN5Z4NZaM6QnnxGD565OXZgOMJ+LVa3/LmHD6kIHaXcNeEwXnx MXquEiYgTTx8sUWts87pJ9MzEmgyPw=='
"""


def test_yaml_is_digs_item() -> None:
    from packetlab.cli import run_dns_yaml

    a = parse("@127.0.0.1", "+yaml", "+nottlid", "a.test")  # dig's YAML: every field
    r = {**A_DNSSEC, "rtt_us": 0.0}
    lines = run_dns_dig.DigText(a).yaml(r)
    now = run_dns_yaml.stamp(1796461775.414)
    assert now == "2026-12-05T09:09:35.414Z"
    text = "\n".join(lines) + "\n"
    assert re.sub(r"!!timestamp \S+", f"!!timestamp {now}", text) == DIG_YAML
    assert run_dns_dig.DigText(a).yaml({**r, "error": "x", "error_kind": "timeout"}) == [
        "- type: DIG_ERROR", "  message: |", "    no servers could be reached"
    ]  # fmt: skip
    edns = {"version": 0, "flags": [], "mbz": 0, "udp": 1232,
            "options": [{"code": 15, "data": "0063"}, {"code": 11, "data": "012c"},
                        {"code": 12, "data": "0000"}]}  # fmt: skip
    assert run_dns_text._opt_lines(edns, yaml=True)[1:] == [
        "; EDE:\n  INFO-CODE: 99\n", "; TCP-KEEPALIVE: 30.0 secs", '; PAD: 00 00 ("..")'
    ]  # fmt: skip


def test_yaml_short_identify_says_where_each_answer_came_from() -> None:
    """dig 9.18.49 +yaml +short +identify: each answer's line ends `from server ADDR in
    N ms.`, as without +yaml (ours wrote the data alone; session 29, dig29)."""
    a = parse("@127.0.0.1", "+yaml", "+short", "+identify", "a.test")
    lines = run_dns_dig.DigText(a).yaml({**A_DNSSEC, "rtt_us": 3000.0})
    data = [line for line in lines if not line.startswith((" ", "-"))]
    assert data and all(re.fullmatch(r".+\S from server 127.0.0.1 in 3 ms\.", d) for d in data)


def test_qr_shows_each_query_before_what_came_of_it() -> None:
    """dig +qr: a `;; Sending:` block before each try's communications error, before a
    truncated reply's retry and before the answer; a BADVERS round's query its own;
    a failed TCP connection sent nothing (dig 9.18.49's order)."""
    first = query_of("+edns=1").hex()
    second = query_of().hex()
    r = {**A_DNSSEC, "query": second, "query_before": [first],
         "notes": ["communications error to 192.0.2.9#53: timed out",
                   "Connection to 192.0.2.8#53(192.0.2.8) for a.test failed: connection refused.",
                   "BADVERS, retrying with EDNS version 0.",
                   "Couldn't verify signature: tsig verify failure"]}  # fmt: skip
    text = text_of(
        parse("@127.0.0.1", "+qr", "+nocomments", "+noquestion", "+nostats", "a.test"), r
    )
    heads = [line for line in text.splitlines() if not line.startswith(("a.test.", ";; QUERY"))]
    assert heads[4:] == [
        ";; communications error to 192.0.2.9#53: timed out",
        ";; Connection to 192.0.2.8#53(192.0.2.8) for a.test failed: connection refused.",
        ";; Couldn't verify signature: tsig verify failure",
    ]  # fmt: skip  (+nocomments: no Sending titles, no BADVERS remark (dig 9.18.49's);
    # the queries' lines are cut above)
    a = parse("@127.0.0.1", "+qr", "a.test")
    text = text_of(a, r)
    assert text.count(";; Sending:") == 3
    assert text.index("version: 1") < text.index("BADVERS") < text.rindex("version: 0")
    lost = {**A_DNSSEC, "query": second, "error": "x", "error_kind": "timeout", "tries": 2,
            "notes": []}  # fmt: skip
    text = text_of(parse("@127.0.0.1", "+qr", "a.test"), lost)
    assert text.count(";; Sending:") == 2 and text.endswith(
        ";; communications error to 127.0.0.1#53029: timed out\n;; no servers could be reached\n"
    )


def test_a_tsig_failure_is_said_after_every_later_signed_reply_as_dig() -> None:
    a = parse("+noall", "+stats", "a.test", "b.test", "c.test")
    warn = ";; WARNING -- Some TSIG could not be validated"
    texts = [text_of(a, {**A_DNSSEC, "tsig_verified": ok}) for ok in (True, False, True)]
    assert [warn in t for t in texts] == [False, True, True]  # one run: dig's global
    rows = run_dns_dig.DigText(a)
    shown = ["\n".join(rows.stats({**A_DNSSEC, "tsig_verified": ok}, "x")) for ok in
             (True, False, True, None)]  # fmt: skip
    assert [warn in t for t in shown] == [False, True, True, False]


# dig 9.18.49's verdict on each prefix of each + word (see the file's first lines)
DIG_PREFIXES = Path(__file__).with_name("dig918_plus_prefixes.txt")


def _read_as_dig(word: str) -> bool:
    """Whether `run dns` reads `word` as a word of dig's (ours, or one refused by name)."""
    from packetlab.cli.run_dns_words import WORDS

    known = {*WORDS, *switches.NOT_BUILT, *switches.DEPRECATED}
    try:
        key = switches.full_word(word.partition("=")[0], WORDS)[1:]
    except RunError:
        return False
    return key in known or (key.startswith("no") and key[2:] in known)


def test_every_prefix_is_read_as_dig_reads_it() -> None:
    rows = [line.split() for line in DIG_PREFIXES.read_text().splitlines() if line[0] != "#"]
    assert len(rows) > 900
    for word, verdict in rows:
        if word.startswith("+no") and "=" in word:
            continue  # a value switch negated: refused by the branch that reads values
        if word.startswith("+noht"):
            continue  # dig reads +noht... as http-plain (its +ht... not): not built here
        assert _read_as_dig(word) == (verdict == "read"), word


@pytest.mark.parametrize(
    ("typed", "word"),
    [("+ans", "+answer"), ("+noal", "+noall"), ("+tim", "+timeout"), ("+tri", "+tries"),
     ("+nocl", "+nocl"), ("+co", "+comments"), ("+i", "+ignore"), ("+ttl", "+ttlid"),
     ("+nottl", "+nottlid"), ("+aa", "+aaflag"), ("+shor", "+short"), ("+ednsf", "+ednsflags"),
     ("+ednsn", "+ednsnegotiation"), ("+nss", "+nssearch"), ("+si", "+sigchase"),
     ("+bogus", "+bogus")],
)  # fmt: skip
def test_abbreviations_read_as_dig(typed: str, word: str) -> None:
    from packetlab.cli.run_dns_words import WORDS

    assert switches.full_word(typed, WORDS) == word


def test_abbreviations_set_what_the_word_sets() -> None:
    a = parse("+noal", "+ans", "+tim=3", "+tri=1", "+nocoo", "+sp=9", "+mu", "a.test")
    assert (a.show["answer"], a.show["question"], a.wait, a.tries, a.cookie) == (
        True, False, 3.0, 1, False,
    )  # fmt: skip
    assert (a.split, a.multiline) == (12, True)
    for typed in ("+sh", "+a", "+n", "+tc", "+re", "+ed", "+ke", "+f", "+m", "+u"):
        with pytest.raises(RunError, match=r"ambiguous dig option, the start of \+"):
            parse(typed, "a.test")
    with pytest.raises(RunError, match=r"\+dns6 \(\+dns64prefix\): dig option not supported"):
        parse("+dns6", "a.test")


def test_a_deprecated_switch_is_digs_warning(capsys: pytest.CaptureFixture[str]) -> None:
    a = parse("+si", "+notop", "+noall", "+answer", "a.test")
    assert a.show["answer"] and not a.show["question"]
    assert capsys.readouterr().err == (
        ";; +sigchase option is deprecated;; +topdown option is deprecated"
    )


def test_nssearch_asks_each_name_server_of_the_zone_for_its_soa() -> None:
    """+nssearch: the zone's NS from @SERVER, an NS's address from the glue or asked of
    @SERVER, each address's SOA (recursion off), dig's lines; a server that does not
    answer is dig's warning alone when another answered, dig's error when none did."""
    sys.path.insert(0, str(Path(__file__).resolve().parent / "controller"))
    import dns.flags
    import dns.message
    import dns.rrset
    from ctl_fakes import Rig
    from twisted.internet.defer import Deferred

    rig = Rig()
    asked: list[tuple[str, str, bool]] = []

    def server(addr: str, serial: int) -> Callable[[bytes], list[bytes]]:
        def answer(wire: bytes) -> list[bytes]:
            q = dns.message.from_wire(wire)
            r = dns.message.make_response(q)
            name, rtype = q.question[0].name.to_text(), q.question[0].rdtype
            asked.append((addr, f"{name} {rtype}", bool(q.flags & dns.flags.RD)))
            if rtype == 2:
                r.answer.append(
                    dns.rrset.from_text_list(name, 60, "IN", "NS", ["ns1.z.test.", "ns2.z.test."])
                )
                r.additional.append(dns.rrset.from_text("ns1.z.test.", 60, "IN", "A",
                                                        "192.0.2.53"))  # fmt: skip
            elif rtype == 1:
                r.answer.append(dns.rrset.from_text(name, 60, "IN", "A", "192.0.2.54"))
            else:
                soa = f"ns1.z.test. h.z.test. {serial} 1 2 3 4"
                r.answer.append(dns.rrset.from_text(name, 60, "IN", "SOA", soa))
            return [r.to_wire()]

        return answer

    rig.endpoint.udp_servers[("192.0.2.53", 53)] = server("192.0.2.53", 7)
    rig.endpoint.udp_servers[("192.0.2.54", 53)] = server("192.0.2.54", 8)
    got: list[dict[str, object]] = []
    search = run_dns_ask._nssearch(
        rig.session,
        [("192.0.2.53", 53)],
        "z.test",
        got.append,
        attempts=2,
        timeout=1,
        icmp=False,
        servfail_next=False,
    )
    rig.run(Deferred.fromCoroutine(search))
    # (dnspython's server shuffles the NS records: the SOA queries in either order)
    assert asked[:2] == [("192.0.2.53", "z.test. 2", True), ("192.0.2.53", "ns2.z.test. 1", True)]
    assert sorted(asked[2:]) == [("192.0.2.53", "z.test. 6", False),
                                 ("192.0.2.54", "z.test. 6", False)]  # fmt: skip
    a = parse("+nssearch", "z.test")
    assert a.nssearch and sorted(text_of(a, *got).splitlines()) == [
        "SOA ns1.z.test. h.z.test. 7 1 2 3 4 from server 192.0.2.53 in 0 ms.",
        "SOA ns1.z.test. h.z.test. 8 1 2 3 4 from server 192.0.2.54 in 0 ms.",
    ]
    silent = {"type": "dns", "qname": "z.test.", "qtype": "SOA", "server": "192.0.2.55",
              "port": 53, "proto": "udp", "error": "no answer", "error_kind": "timeout",
              "tries": 1, "nssearch": True}  # fmt: skip
    warned = {**silent, "nssearch_error": silent["error"]}
    del warned["error"]
    assert text_of(a, warned) == ";; communications error to 192.0.2.55#53: timed out\n"
    assert text_of(a, {**silent, "nssearch_failed": True}) == (
        ";; communications error to 192.0.2.55#53: timed out\n;; NS servers could not be reached\n"
    )
    assert run_dns.summary([*got, warned])["answered"] == 2


def test_tls_switches_as_dig() -> None:
    """+tls (port 853 unless -p), +tls-ca[=FILE] and +tls-hostname=NAME (each turns TLS
    on, as dig's); a certificate failure is dig's line alone."""
    a = parse("@127.0.0.1", "+tls-ca", "+tls-hostname=dot.test", "a.test")
    assert (a.tls, a.tls_ca, a.tls_hostname) == (True, "", "dot.test")
    a = parse("@127.0.0.1", "+tls", "+tls-ca=/x.pem", "+notls-ca", "a.test")
    assert (a.tls, a.tls_ca) == (False, None)  # dig 9.18.49: +notls-ca is +notls too
    with pytest.raises(RunError, match="ambiguous"):  # as dig: +tls, +tls-ca, ... begin so
        parse("+tl", "a.test")
    failed = {"type": "dns", "qname": "a.test.", "qtype": "A", "server": "127.0.0.1",
              "port": 853, "proto": "tls", "error_kind": "tls",
              "error": "TLS peer certificate verification for 127.0.0.1#853 failed: "
                       "hostname mismatch"}  # fmt: skip
    assert text_of(parse("+tls", "a.test"), failed) == (
        ";; TLS peer certificate verification for 127.0.0.1#853 failed: hostname mismatch\n"
    )


def test_idn_names_as_dig() -> None:
    """+idnin: a Unicode name in its A-label form (IDNA 2008, UTS #46 non-transitional),
    +noidnin its UTF-8 bytes (dig's default off a terminal; was dnspython's IDNA 2003);
    +idnout: each valid xn-- label of a name, in a record's data too (not in a quoted
    string), written in Unicode with its case kept; an invalid one as it came."""
    from packetlab.cli.run_dns_text import idn_names
    from packetlab.cli.run_dns_words import idn_name

    assert idn_name("Bücher.test", True) == "xn--bcher-kva.test"
    assert idn_name("straße.test.", True) == "xn--strae-oqa.test."
    assert idn_name("Bücher.test", False) == "B\\195\\188cher.test"
    assert idn_name("fa%.test", True) == "fa%.test"
    with pytest.raises(RunError, match=r"not a legal IDNA2008 name .*use \+noidnin"):
        idn_name("bü%cher.test", True)
    assert idn_names("a.XN--BCHER-KVA.test.") == "a.BüCHER.test."
    assert idn_names('10 xn--bcher-kva.test. "xn--bcher-kva"') == '10 bücher.test. "xn--bcher-kva"'
    assert idn_names("xn--zz.test.") == "xn--zz.test."
    a = parse("+idnout", "a.test")
    rr = {"name": "xn--bcher-kva.test.", "ttl": 60, "type": "CNAME", "data": "xn--fa-hia.test."}
    assert (
        text_of(a, {**A_DNSSEC, "answers": [rr]}).count("bücher.test.\t\t60\tIN\tCNAME\tfaß.test.")
        == 1
    )


def test_doh_switches_as_dig() -> None:
    """+https[=PATH] (POST), +https-get (GET, HTTPS on as dig's), +http-plain[-get]; the
    query's port 443 (80 in plain HTTP) unless -p; dig's word on the SERVER line."""
    a = parse("@127.0.0.1", "+https-get", "a.test")
    assert (a.doh, a.doh_get, a.doh_path) == ("https", True, "/dns-query")
    a = parse("@127.0.0.1", "+http-plain=/q", "+nohttps-get", "a.test")
    assert (a.doh, a.doh_get, a.doh_path) == ("http", False, "/q")
    assert parse("+https", "+nohttps", "a.test").doh is None
    from packetlab.measure.dnstls import DohClient

    assert [DohClient(t, get=g).proto.upper() for t in (True, False) for g in (False, True)] == [
        "HTTPS", "HTTPS-GET", "HTTP", "HTTP-GET",
    ]  # fmt: skip


#: a -f file whose lines set dig's search globals (session 29, dig29)
SEARCH_BATCH = ("zz\n+showsearch zz\nzz\n+noshowsearch zz\n+search +ndots=2 a.zz\na.zz\n"
                "+domain=other zz\n")  # fmt: skip


def test_a_batch_line_s_search_switches_stay_for_the_lines_after_it_as_dig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dig 9.18.49's usesearch, showsearch and ndots are globals: a -f line's stay for
    the later lines (ours were that line's only: `+showsearch` on line 2 showed nothing
    there or after, `+ndots=2` was 1 again on the next line); its search list is made
    once, after the command line and the first line: a later line's `+domain` changes
    nothing (ours searched it). Beside dig: `test_dns_odd_dig.py`'s batch case."""
    monkeypatch.setattr(switches, "RESOLV_CONF", str(tmp_path / "none"))
    batch = tmp_path / "q"
    batch.write_text(SEARCH_BATCH)
    a = parse("@192.0.2.53", "+domain=t", "-f", str(batch))
    lines = [line for _, _, _, line in a.plan]
    asked = [switches.search_names(name, line) for name, _, _, line in a.plan]
    assert asked == [["zz.t.", "zz"], ["zz.t.", "zz"], ["zz.t.", "zz"], ["zz"],
                     ["a.zz.t.", "a.zz"], ["a.zz.t.", "a.zz"], ["zz.t.", "zz"]]  # fmt: skip
    assert [bool(line.showsearch) for line in lines] == [False, True, True] + [False] * 4
    batch.write_text("+domain=other zz\nzz\n")  # the first line's: the run's list
    a = parse("@192.0.2.53", "-f", str(batch))
    assert [switches.search_names(n, line) for n, _, _, line in a.plan] == [["zz.other.", "zz"]] * 2
    a = parse("@192.0.2.53", "a.test", "-f", str(batch))  # (names before it: still the first)
    assert [switches.search_names(n, line) for n, _, _, line in a.plan][1:] == [
        ["zz.other.", "zz"]
    ] * 2


def test_the_first_batch_line_is_read_with_the_command_line_s_names(tmp_path: Path) -> None:
    """dig 9.18.49 reads the file's first query line with the command line, names on it
    or not: that line's -y is the run's key (the command line's a.test signed too, as
    dig; ours made no key when a name came before -f)."""
    batch = tmp_path / "q"
    batch.write_text(f"-y hmac-sha256:tk.test:{SECRET} b.test\nc.test\n")
    a = parse("@127.0.0.1", "a.test", "-f", str(batch))
    assert a.tsig_y == f"hmac-sha256:tk.test:{SECRET}"
    assert not any(getattr(line, "tsig_unused", False) for _, _, _, line in a.plan)
