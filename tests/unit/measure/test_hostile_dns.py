"""Hostile DNS servers through the scripted endpoint: every reply a server controls is
capped, bad replies are one clear error naming the server, +trace is bounded in steps and
in servers asked per referral. Nothing here raises out of dns_query or dns_trace."""

from __future__ import annotations

import ipaddress
import random
import struct
import sys
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rrset
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "controller"))

from ctl_fakes import Rig
from test_dns import ROOT, SERVER, answer, zone_server
from twisted.internet.defer import Deferred

from packetlab.cli import run_dns_dig, run_dns_words
from packetlab.cli.run_dns_text import error_lines
from packetlab.measure.dns import TRACE_SERVERS, TRACE_STEPS, DnsResult, dns_query, dns_trace
from packetlab.measure.dnsparse import _Malformed, _parse
from packetlab.measure.dnstransport import INBOX_MAX, SAID_MAX, TCP_MAX
from packetlab.wire import Ndata, Nsend, Proto


def _query(rig: Rig) -> DnsResult:
    return rig.run(dns_query(rig.session, "a.test", server="192.0.2.53", timeout=1))


def _header(query: bytes, counts: tuple[int, int, int, int], flags: int = 0x8180) -> bytes:
    return query[:2] + struct.pack(">H4H", flags, *counts)


def _question(query: bytes) -> bytes:
    return query[12 : 12 + query[12:].index(b"\0") + 5]


def test_a_compression_loop_is_malformed() -> None:
    rig = Rig()

    def serve(q: bytes) -> list[bytes]:  # one answer whose owner name points at itself
        head = _header(q, (1, 1, 0, 0)) + _question(q)
        here = len(head)
        return [head + struct.pack(">H", 0xC000 | here) + b"\0\x01\0\x01" + b"\0" * 6]

    rig.endpoint.udp_servers[SERVER] = serve
    r = _query(rig)
    assert r.error_kind == "malformed" and r.error is not None
    assert r.error.startswith("malformed reply from 192.0.2.53#53: ")


def test_two_pointers_that_point_at_each_other_are_a_bad_pointer_as_dig() -> None:
    """The answer's owner points forward to a pointer that points back to it: BIND's
    `bad compression pointer` (dig's `Got bad packet`), not a reply cut short (its fixed
    fields read from the second pointer ran past the end: best effort kept the header)."""
    q = dns.message.make_query("loop2.test.", "A")
    good = answer(q.to_wire(), "loop2.test. 300 A 192.0.2.1")
    at = 12 + len(_question(q.to_wire()))
    bad = good[:at] + struct.pack(">HH", 0xC000 | (at + 2), 0xC000 | at) + good[at + 2 :]
    with pytest.raises(_Malformed) as e:
        _parse(q, bad)
    assert e.value.reason == "bad compression pointer"
    # a pointer back to the question's name is read (the same reply, not cut)
    assert _parse(q, good) is not None


def test_a_record_s_data_cut_short_within_its_rdlength_is_best_effort_as_dig() -> None:
    """A TXT whose string runs past its RDLENGTH, an SOA or an A too short, before an A:
    BIND's rdata parser runs out of data (unexpected end), dig's best effort keeps the
    records before it, the malformed-packet warning and `N extra bytes at end` from its
    data on (dig 9.18.49; ours was `Got bad packet: unexpected end of input`, session 28).
    An A of 5 bytes is BIND's `extra input data` (ours was dnspython's `Text input is
    malformed`)."""
    rig = Rig()
    data = {"txt": (16, b"\x05ab"), "soa": (6, bytes(6)), "a3": (1, b"\x01\x02\x03"),
            "a5": (1, bytes(5))}  # fmt: skip
    rdata = data["txt"]

    def serve(q: bytes) -> list[bytes]:
        head = _header(q, (1, 3, 0, 0)) + _question(q)
        good = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + bytes([192, 0, 2, 1])
        rtype, bad = rdata
        record = b"\xc0\x0c" + struct.pack(">HHIH", rtype, 1, 60, len(bad)) + bad
        return [head + good + record + good]

    rig.endpoint.udp_servers[SERVER] = serve
    for name in ("txt", "soa", "a3"):
        rdata = data[name]
        r = _query(rig)
        assert r.error is None, (name, r.error)
        assert [a.data for a in r.answers] == ["192.0.2.1"], name
        assert r.notes == ["Warning: Message parser reports malformed message packet."]
        assert r.extra_bytes == len(rdata[1]) + 16 and r.counts == (1, 3, 0, 0)
        assert r.lenient == "unexpected end of input"  # +nobesteffort's words, as dig's
    rdata = data["a5"]
    r = _query(rig)
    assert r.error_kind == "malformed" and r.reason == "extra input data"


@pytest.mark.parametrize(
    ("rtype", "data", "said"),
    [
        (2, b"\x01a\x00\x00", "extra input data"),  # NS, a byte past its name
        (64, b"\x00\x01\x00\x00", None),  # SVCB, a key cut short: best effort
        (257, b"", None),  # CAA, empty: cut short (dnspython refuses zeros too)
        (108, bytes(5), "FORMERR"),  # EUI48 not of 6 bytes
        (44, b"\x01\x01\xab", "FORMERR"),  # SSHFP of a SHA-1 of one byte
        (44, b"\x01", None),  # SSHFP without its head: cut short
        (47, b"\x01a\x00\x00\x07", "FORMERR"),  # NSEC, its bitmap cut
    ],
    ids=["ns-long", "svcb-short", "caa-empty", "eui48", "sshfp", "sshfp-head", "nsec"],
)
def test_record_data_faults_in_bind_s_words(rtype: int, data: bytes, said: str | None) -> None:
    """Beside dig 9.18.49 (session 28): data cut short is best effort (None here), data
    left over BIND's `extra input data`, and a few types' FORMERR past their head."""
    q = dns.message.make_query("f.test.", "A")
    wire = q.to_wire()
    head = _header(wire, (1, 1, 0, 0)) + _question(wire)
    bad = head + b"\xc0\x0c" + struct.pack(">HHIH", rtype, 1, 60, len(data)) + data
    if said is None:
        msg = _parse(q, bad)
        assert msg is not None and not msg.answer
        return
    with pytest.raises(_Malformed) as e:
        _parse(q, bad)
    assert e.value.reason == said


def test_huge_counts_with_no_records_are_the_header_alone_at_once() -> None:
    rig = Rig()
    rig.endpoint.udp_servers[SERVER] = lambda q: [
        _header(q, (1, 65535, 65535, 65535)) + _question(q)
    ]
    r = _query(rig)
    # as dig (BIND's best effort): the header and question, no record, at once
    assert r.error is None and r.notes == [
        "Warning: Message parser reports malformed message packet."
    ]
    assert r.counts == (1, 65535, 65535, 65535) and not r.answers and rig.clock.seconds() < 1


def test_tc_then_a_tcp_reply_of_64_kib_of_garbage() -> None:
    rig = Rig()
    rig.endpoint.udp_servers[SERVER] = lambda q: [answer(q, tc=True)]
    garbage = random.Random(1).randbytes(0xFFFF)

    def tcp(data: bytes) -> list[bytes]:
        # our ID and QR set, then garbage: the length prefix caps it at 65535 bytes
        return [struct.pack(">H", 0xFFFF) + data[2:4] + b"\x80" + garbage[3:]]

    rig.endpoint.tcp_servers[SERVER] = tcp
    r = _query(rig)
    assert r.truncated and r.proto == "tcp" and r.error_kind == "malformed"
    assert r.error is not None and "over TCP" in r.error and "(65535 bytes)" in r.error


def test_tc_then_a_tcp_reply_that_never_ends() -> None:
    rig = Rig()
    rig.endpoint.udp_servers[SERVER] = lambda q: [answer(q, tc=True)]
    rig.endpoint.tcp_servers[SERVER] = lambda data: [b"\xff\xff" + b"\0" * 100]  # then silence
    r = _query(rig)
    assert r.proto == "tcp" and r.error_kind == "tcp" and r.error is not None
    assert "192.0.2.53" in r.error and rig.clock.seconds() < 3  # the TCP timeout, once


def test_a_tcp_reply_that_announces_65535_bytes_and_trickles_them() -> None:
    """The length prefix, then a byte every 100 ms: the TCP exchange's wait ends it, and
    the error names that wait and what came. It named the time left in the last wait
    (`nothing from ... within 0.0898042 s`, seen through a real endpoint)."""
    from stream_fakes import Peer, StreamRig

    class Trickle(Peer):
        def received(self, data: bytes) -> None:
            self.write(b"\xff\xff")
            for k in range(1, 100):
                self.write(b"t", delay=k * 0.1)

    rig = StreamRig()
    rig.endpoint.peers[SERVER] = Trickle
    r = rig.run(dns_query(rig.session, "a.test", server="192.0.2.53", tcp=True, timeout=1))
    assert (r.proto, r.error_kind) == ("tcp", "tcp")
    assert r.error in (  # the byte at 1.0 s comes just before or just after the deadline
        "9 of 65535 bytes from 192.0.2.53:53 within 1 s",
        "10 of 65535 bytes from 192.0.2.53:53 within 1 s",
    )


def test_a_tcp_server_that_accepts_and_never_answers() -> None:
    from stream_fakes import Peer, StreamRig

    rig = StreamRig()
    rig.endpoint.peers[SERVER] = Peer
    r = rig.run(dns_query(rig.session, "a.test", server="192.0.2.53", tcp=True, timeout=1))
    assert r.error == "nothing from 192.0.2.53:53 within 1 s"


def test_a_reply_of_10000_ns_records_is_bounded_by_the_64_kib_message() -> None:
    # over UDP one datagram: as many NS as fit; parsing them is linear, nothing kept beyond
    rig = Rig()

    def serve(q: bytes) -> list[bytes]:
        r = dns.message.make_response(dns.message.from_wire(q))
        names = " ".join(f"n{i}.evil." for i in range(2500))
        r.answer.append(dns.rrset.from_text("a.test.", 1, "IN", "NS", *names.split()))
        return [r.to_wire(max_size=65535)]

    rig.endpoint.udp_servers[SERVER] = serve
    r = _query(rig)
    assert r.error is None and len(r.answers) == 2500 and r.size is not None and r.size < 65536


@pytest.mark.parametrize("seed", range(3))
def test_mutated_replies_never_raise(seed: int) -> None:
    """Bit flips, cuts and splices of a rich reply: _parse returns a message, None, or
    raises _Malformed; nothing else escapes (dnspython's own errors are caught)."""
    q = dns.message.make_query("a.test.", "A", use_edns=0, want_dnssec=True)
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text("a.test.", 1, "IN", "A", "192.0.2.1"))
    r.authority.append(dns.rrset.from_text("test.", 1, "IN", "NS", "ns.test."))
    r.additional.append(dns.rrset.from_text("ns.test.", 1, "IN", "TXT", '"x" "y"'))
    good = r.to_wire()
    rnd = random.Random(seed)
    for _ in range(3000):
        wire = bytearray(good)
        for _ in range(rnd.randrange(1, 6)):
            i = rnd.randrange(2, len(wire))
            wire[i] = rnd.randrange(256)
        if rnd.random() < 0.3:
            wire = wire[: rnd.randrange(12, len(wire))]
        try:
            _parse(q, bytes(wire))
        except _Malformed as e:
            assert str(e) and "\n" not in str(e)


def _chain_rig(depth: int) -> tuple[Rig, str]:
    """A root whose servers refer one label deeper each time, to themselves: an endless
    chain, only as long as the name asked."""
    qname = ".".join(["x"] * depth) + ".evil."
    rig = Rig()
    asked = [0]

    def serve(query: bytes) -> list[bytes]:
        q = dns.message.from_wire(query)
        r = dns.message.make_response(q)
        name = q.question[0].name
        if name.to_text() == ".":
            r.answer.append(dns.rrset.from_text(".", 1, "IN", "NS", "a.root."))
            r.additional.append(dns.rrset.from_text("a.root.", 1, "IN", "A", ROOT))
            return [r.to_wire(max_size=65535)]
        asked[0] += 1
        cut = name.split(min(2 + asked[0], len(name)))[1]  # one label deeper each time
        r.authority.append(dns.rrset.from_text(cut, 1, "IN", "NS", "ns.evil."))
        r.additional.append(dns.rrset.from_text("ns.evil.", 1, "IN", "A", ROOT))
        return [r.to_wire(max_size=65535)]

    rig.endpoint.udp_servers[(ROOT, 53)] = serve
    return rig, qname


def test_an_endless_referral_chain_stops_at_the_step_limit_with_an_error() -> None:
    rig, qname = _chain_rig(60)
    seen: list[DnsResult] = []
    steps = rig.run(dns_trace(rig.session, qname, server=ROOT, icmp=False, on_step=seen.append))
    assert len(steps) == TRACE_STEPS + 2  # the root's NS, the referrals followed, the end
    assert seen == steps  # the end is streamed too (the CLI prints as they come)
    last, before = steps[-1], steps[-2]
    assert before.error is None and before.authority
    assert last.error_kind == "steps" and last.error == (
        f"gave up after {TRACE_STEPS} referrals (the last to {before.authority[0].name} "
        f"from {ROOT}): too deep a delegation or a referral loop"
    )
    assert error_lines(last.to_dict()) == [f";; {last.error}"]  # dig's way: one line


def test_a_referral_up_or_sideways_is_lame_not_a_loop() -> None:
    rig = Rig()
    rig.endpoint.udp_servers[(ROOT, 53)] = zone_server(
        {".": [". 1 NS a.root."]}, {"test.": ["evil. 1 NS a.root."]}, [f"a.root. 1 A {ROOT}"]
    )
    steps = rig.run(dns_trace(rig.session, "x.test", server=ROOT))
    assert steps[-1].error_kind == "lame" and len(steps) == 2


def test_a_referral_to_thousands_of_ns_names_asks_only_a_few() -> None:
    rig = Rig()
    names = [f"ns{i}.evil." for i in range(2500)]  # no glue, none resolves: all silent

    def root(query: bytes) -> list[bytes]:
        q = dns.message.from_wire(query)
        r = dns.message.make_response(q)
        qn = q.question[0].name.to_text()
        if qn == ".":
            r.answer.append(dns.rrset.from_text(".", 1, "IN", "NS", "a.root."))
            r.additional.append(dns.rrset.from_text("a.root.", 1, "IN", "A", ROOT))
        elif qn == "x.evil.":
            r.authority.append(dns.rrset.from_text("evil.", 1, "IN", "NS", *names))
        return [r.to_wire(max_size=65535)]  # the NS names' A: NOERROR, no answer

    rig.endpoint.udp_servers[(ROOT, 53)] = root
    steps = rig.run(dns_trace(rig.session, "x.evil", server=ROOT, timeout=1, attempts=1))
    sent = [m for m in rig.endpoint.received if isinstance(m, Nsend)]
    assert len(sent) == 2 + TRACE_SERVERS  # ., x.evil., then the first NS names' A
    last = steps[-1]
    assert last.error_kind == "timeout" and last.error is not None
    assert last.error.startswith(
        f"no address for the first {TRACE_SERVERS} of the 2500 servers of evil. (ns"
    )
    assert len(last.error) < 400


def test_a_flood_of_foreign_replies_before_the_answer() -> None:
    """5,000 datagrams with another ID, another ID and QR clear, another question or 3
    bytes come first: each is dropped as it is read, then the answer counts (no retry, no
    error); dig's warning for each, the first SAID_MAX kept, the rest counted."""
    rig = Rig()

    def serve(q: bytes) -> list[bytes]:
        good = answer(q, "a.test. 1 A 192.0.2.1")
        other_id = bytes([good[0] ^ 0xFF]) + good[1:]
        query_back = other_id[:2] + q[2:]  # QR clear, another ID
        other_q = answer(dns.message.make_query("b.test.", "A").to_wire(), "b.test. 1 A 192.0.2.2")
        other_q = q[:2] + other_q[2:]  # our ID, another question
        return [other_id, query_back, other_q, b"\xff" * 3] * 1250 + [good]

    rig.endpoint.udp_servers[SERVER] = serve
    r = _query(rig)
    assert r.error is None and r.answer_set() == {("a.test.", "A", "192.0.2.1")}
    assert r.tries == 1
    assert len(r.notes) == SAID_MAX + 1 and r.notes[-1] == (
        f"Warning: {5000 + 1250 - SAID_MAX} more messages not taken (warnings kept: 200)"
    )  # five lines for each four: query_back has two
    assert r.notes[3] == ";; Question section mismatch: got b.test/A/IN"


def test_what_is_not_the_reply_as_dig_says_it() -> None:
    """dig's checks, in its order, with its words: a short message, another ID (and QR
    clear), another opcode, another question are not taken and said; a reply with QR
    clear is taken (its warning said); a try that timed out is said before the answer."""
    rig = Rig()
    sent: list[bytes] = []

    def serve(q: bytes) -> list[bytes]:
        sent.append(q)
        if len(sent) == 1:
            return []  # the first try lost
        good = answer(q, "a.test. 1 A 192.0.2.1")
        qid = struct.unpack(">H", q[:2])[0]
        other_id = struct.pack(">H", qid ^ 1) + good[2:3] + bytes([good[3]]) + good[4:]
        status = good[:2] + bytes([good[2] | 0x10]) + good[3:]  # opcode 2 (STATUS)
        other_q = answer(dns.message.make_query("B.test.", "MX", "CH").to_wire())
        no_qr = good[:2] + bytes([good[2] & 0x7F]) + good[3:]
        return [b"\x01" * 11, other_id, other_id[:2] + no_qr[2:], status,
                q[:2] + other_q[2:], no_qr]  # fmt: skip

    rig.endpoint.udp_servers[SERVER] = serve
    r = rig.run(dns_query(rig.session, "a.test", server="192.0.2.53", timeout=1, attempts=2))
    qid = struct.unpack(">H", sent[0][:2])[0]
    assert r.error is None and r.answer_set() == {("a.test.", "A", "192.0.2.1")}
    assert "QR" not in r.flags and r.tries == 2
    assert r.notes == [
        "communications error to 192.0.2.53#53: timed out",
        "Warning: short (< header size) message received",
        f"Warning: ID mismatch: expected ID {qid}, got {qid ^ 1}",
        f"Warning: ID mismatch: expected ID {qid}, got {qid ^ 1}",
        "Warning: query response not set",
        "Warning: Opcode mismatch: expected QUERY, got STATUS",
        ";; Question section mismatch: got B.test/MX/CH",
        "Warning: query response not set",
    ]


def test_a_reply_from_another_address_or_port_is_not_taken() -> None:
    """dig 9.18's UDP socket is connected: a datagram from another address or port of
    the same (our ID, our question) never reaches it; nothing is said."""
    rig = Rig()
    ep = rig.endpoint

    def serve(q: bytes) -> list[bytes]:
        sktid = max(ep.sockets)  # the query's socket
        fake = answer(q, "a.test. 1 A 203.0.113.66")
        for addr, port in (("192.0.2.66", 53), ("192.0.2.53", 5353)):
            packed = ipaddress.ip_address(addr).packed
            ep.send(Ndata(sktid, ep.sockets[sktid]["family"], Proto.UDP, ep.now(), fake,
                          packed, port))  # fmt: skip
        return []

    ep.udp_servers[SERVER] = serve
    r = rig.run(dns_query(rig.session, "a.test", server="192.0.2.53", timeout=1, attempts=2))
    assert r.error_kind == "timeout" and r.tries == 2 and not r.answers
    assert r.notes == ["communications error to 192.0.2.53#53: timed out"]
    assert error_lines(r.to_dict()) == [";; communications error to 192.0.2.53#53: timed out"]
    ep.udp_servers[SERVER] = lambda q: [*serve(q), answer(q, "a.test. 1 A 192.0.2.1")]
    r = _query(rig)
    assert r.answer_set() == {("a.test.", "A", "192.0.2.1")} and r.notes == []


def test_a_stream_reply_that_is_not_the_reply_ends_the_lookup_as_dig() -> None:
    """Over TCP dig says ERROR for a short message or another ID, its warning for another
    question, and the lookup ends (no retry, its status as an answer's)."""
    for make, said in (
        (lambda q, good: good[:5], "ERROR: short (< header size) message"),
        (lambda q, good: b"\0\0" + good[2:] if good[:2] != b"\0\0" else b"\0\1" + good[2:],
         "ERROR: ID mismatch: expected ID {qid}, got {got}"),
        (lambda q, good: q[:2] + answer(dns.message.make_query("x.", "A").to_wire())[2:],
         ";; Question section mismatch: got x/A/IN"),
    ):  # fmt: skip
        rig = Rig()

        def tcp(data: bytes, make: Any = make) -> list[bytes]:
            bad = make(data[2:], answer(data[2:], "a.test. 1 A 192.0.2.1"))
            return [struct.pack(">H", len(bad)) + bad]

        rig.endpoint.tcp_servers[SERVER] = tcp
        r = rig.run(dns_query(rig.session, "a.test", server="192.0.2.53", tcp=True, timeout=1))
        assert r.error_kind == "mismatch" and r.notes == []
        assert r.error is not None and r.error.split(":")[0] == said.split(":")[0]
        assert error_lines(r.to_dict()) == [f";; {r.error}"]


def test_tc_then_a_tcp_reply_followed_by_a_flood() -> None:
    """The TCP answer, then 64 MiB more: what follows TCP_MAX bytes is dropped as it
    comes. Queued, it filled the socket's queue, which pauses the session's reads, the
    query's ntag and nclose answers with them: the query hung."""
    rig = Rig()
    rig.endpoint.udp_servers[SERVER] = lambda q: [answer(q, tc=True)]

    def tcp(data: bytes) -> list[bytes]:
        reply = answer(data[2:], "a.test. 1 A 192.0.2.1")
        return [struct.pack(">H", len(reply)) + reply] + [b"z" * 65536] * 1024

    rig.endpoint.tcp_servers[SERVER] = tcp
    r = _query(rig)
    assert r.error is None and r.proto == "tcp" and r.truncated
    assert r.answer_set() == {("a.test.", "A", "192.0.2.1")}
    assert not rig.session.paused and TCP_MAX == 65537


def test_a_flood_of_big_datagrams_is_dropped_past_the_inbox_cap() -> None:
    """The query's inbox (the UDP socket's datagrams and the ICMP capture's notes) holds
    at most INBOX_MAX bytes of datagrams unread: 200 of 60,000 bytes (12 MB) arriving
    before one is read keep 69 of them; an ICMP note is never dropped; reading frees."""
    from twisted.internet.task import Clock

    from packetlab.measure.dnstransport import _Inbox
    from packetlab.wire import Proto

    inbox = _Inbox(Clock())
    udp, icmp = inbox.feeder("udp"), inbox.feeder("icmp")
    for n in range(200):
        udp(Ndata(0, 4, Proto.UDP, n, b"\0" * 60000))
    icmp(object())
    assert inbox.held == 69 * 60000 <= INBOX_MAX and inbox.dropped == 131
    assert len(inbox.items) == 70 and inbox.items[-1][0] == "icmp"
    got = next_now(inbox)
    assert got is not None and got[0] == "udp" and inbox.held == 68 * 60000
    udp(Ndata(0, 4, Proto.UDP, 999, b"\0" * 60000))  # room again for one
    assert inbox.held == 69 * 60000 and inbox.dropped == 131


def next_now(inbox: Any) -> Any:
    d = Deferred.fromCoroutine(inbox.next(deadline=1.0))
    assert d.called
    return d.result


# HIP, TKEY and TSIG as dig 9.18.49 prints them (+multiline +noall +answer; the TSIG
# pseudosection with +multiline +nocmd +nostats), for the replies dns_zone_server.py gives
# (its `hip`, `tkey`, `tkey2`, `tkey5`, `tsigans` and `tsigtime` names)
HIP_KEY = (
    "UvNgXYQ8ym4Jo4GRA1NLrb7N08K+toIgwX9vNJIslQl8K+jPc91cuqmCjqeIWKEQi6VybbiUROChmZ9jkzUmK+8a5D"
    "eoWpnC7ZVFr3Lu1HWlffkUr98FY1L1nNHQqXv99lWVC4XmUZl+C2sL8JahEmAB2gUFQrh5YvmRFDa6BgDIBuFYIxlW"
    "45MiBMCqlKJ4R9G8zJBrZrUfzylCf8uZBxBHTvGsSkMVWw5oJZFcefnbgBqPi86jXexKojNlJXpBPOWAqIG8bYpNqc"
    "YXj2vmPoxEeDoKjlRNL3OBER23rwlTygzLg6Db81Z5zGf0vY2e+gfM7zQqS3ejjdBT0fIT/xh6gzk="
)
TKEY_KEY = ("epUA3SrFf3kTZ5UX3UD/JBjYnKMtXNdCzHpnlF4VH29r3PBccJEQrueVfzbG32SwqZKFqQBNWd7Yg2Pe3Km"
            "TCxaNjh0i6xUpIDS4bS6b3fNVVB7jBnFoT5kJNMH6wIsNRqvuFQ==")  # fmt: skip
MAC = "NIpin1zu0DLD6HBuxH2b+vsA+0JQsBjdllQ1ylDLg24="
DIG_META = {
    ("hip.test", "HIP"): "hip.test.\t\t300 IN HIP ( 2 DD805812F2FD7FF1476C5ABB96D09D0D\n"
    f"\t\t\t\t{HIP_KEY}\n\t\t\t\trvs1.test.\n\t\t\t\trvs2.test. )\n",
    ("tkey.test", "TKEY"): "tkey.test.\t\t0 ANY TKEY hmac-sha256. 1764892800 1764979200 3 "
    "NOERROR 100 (\n\t\t\t\tepUA3SrFf3kTZ5UX3UD/JBjYnKMtXNdCzHpnlF4VH29r\n"
    "\t\t\t\t3PBccJEQrueVfzbG32SwqZKFqQBNWd7Yg2Pe3KmTCxaN\n"
    "\t\t\t\tjh0i6xUpIDS4bS6b3fNVVB7jBnFoT5kJNMH6wIsNRqvu\n\t\t\t\tFQ== ) 6 (\n"
    "\t\t\t\tAABpMtkA )\n",
    ("tkey2.test", "A"): "tkey2.test.\t\t0 ANY TKEY hmac-sha256. 1764892800 1764979200 2 "
    "BADKEY 0 (\n\t\t\t\t ) 0\n",
    ("tkey5.test", "A"): "tkey5.test.\t\t0 ANY TKEY hmac-sha256. 1764892800 1764979200 1 99 0 "
    "(\n\t\t\t\t ) 0\n",
    ("tsigans.test", "A"): ";; Warning: Message parser reports malformed message packet.\n"
    "tsigans.test.\t\t300 IN A 192.0.2.1\nkey.test.\t\t0 ANY TSIG hmac-sha256. 1764892800 "
    f"300 32 (\n\t\t\t\t{MAC} ) 4242 NOERROR 0 \n",
}  # fmt: skip
DIG_TSIG_TAIL = (  # dig +multiline +nocmd +nostats tsigtime.test: the end of it
    ";; ANSWER SECTION:\ntsigtime.test.\t\t300 IN A 192.0.2.1\n\n;; TSIG PSEUDOSECTION:\n"
    f"key.test.\t\t0 ANY TSIG hmac-sha256. 1764892800 300 32 (\n\t\t\t\t{MAC} ) 4242 BADTIME "
    "6 AABpMtkA\n\n"
)


def _meta_reply(q: bytes) -> list[bytes]:
    """dns_zone_server.py's odd replies: HIP; TKEY in the answer section (class ANY, TTL
    0); an A record and a TSIG (unchecked MAC), last in the additional section or, for
    tsigans.test, in the answer section."""
    import base64
    import hashlib

    import dns.name
    import dns.rdata
    from dns.rdtypes.ANY.TKEY import TKEY
    from dns.rdtypes.ANY.TSIG import TSIG

    query = dns.message.from_wire(q)
    r = dns.message.make_response(query)
    r.use_edns(False)
    r.flags |= dns.flags.AA
    name = query.question[0].name
    alg = dns.name.from_text("hmac-sha256.")
    label = name.labels[0].decode()
    tkeys = {"tkey": (3, 0, base64.b64decode(TKEY_KEY), b"\0\0i2\xd9\0"),
             "tkey2": (2, 17, b"", b""), "tkey5": (1, 99, b"", b"")}  # fmt: skip
    if label == "hip":
        text = f"2 DD805812F2FD7FF1476C5ABB96D09D0D {HIP_KEY} rvs1.test. rvs2.test."
        r.answer.append(dns.rrset.from_text(name, 300, "IN", "HIP", text))
    elif label in tkeys:
        rd = TKEY(dns.rdataclass.ANY, dns.rdatatype.TKEY, alg, 1764892800, 1764979200,
                  *tkeys[label])  # fmt: skip
        r.answer.append(dns.rrset.from_rdata(name, 0, rd))
    else:
        r.answer.append(dns.rrset.from_text(name, 300, "IN", "A", "192.0.2.1"))
        error, other = (18, b"\0\0i2\xd9\0") if label == "tsigtime" else (0, b"")
        sig = TSIG(dns.rdataclass.ANY, dns.rdatatype.TSIG, alg, 1764892800, 300,
                  hashlib.sha256(b"mac").digest(), 4242, error, other)  # fmt: skip
        data = sig.to_wire() or b""
        big = {"tsigbig": 5000, "tsigbigans": 65535}.get(label)
        if big is not None:  # above 4095: dnspython builds none (nor reads one)
            data = data[:-4] + struct.pack(">H", big) + data[-2:]
        wire = bytearray(r.to_wire())
        wire += b"\x03key\x04test\0" + struct.pack(">HHIH", 250, 255, 0, len(data)) + data
        at = 6 if label in ("tsigans", "tsigbigans") else 10  # its section's count, +1
        wire[at : at + 2] = struct.pack(">H", struct.unpack(">H", wire[at : at + 2])[0] + 1)
        return [bytes(wire)]
    return [r.to_wire()]


def dig_text(result: DnsResult, *words: str) -> str:
    """A result as `pktlab run dns WORDS` prints it (dig's text), "" for none."""
    import packetlab.cli as cli

    a = cli.parse(["run", "dns", *words, "x"])
    run_dns_words.dig_style(a)
    line = run_dns_dig.DigText(a)(result.to_dict())
    return "" if line is None else line + "\n"


def test_hip_tkey_and_tsig_as_dig_prints_them() -> None:
    """HIP, TKEY, TSIG: BIND's one-line and +multiline forms (one line, dnspython's text
    before: HIP's HIT in lower case, TKEY's error a number and no sizes); a signed reply
    (no key here, as dig without -k) is read with its TSIG in dig's TSIG pseudosection
    (it was `Got bad packet: got signed message without keyring`); a TSIG out of its
    place is BIND's best effort: a record of its section, dig's malformed-packet warning."""
    rig = Rig()
    rig.endpoint.udp_servers[SERVER] = _meta_reply
    for (name, qtype), text in DIG_META.items():
        r = rig.run(dns_query(rig.session, name, qtype, server=SERVER[0], timeout=1))
        assert r.error is None, r.error
        assert dig_text(r, "+multiline", "+noall", "+answer") == text
        one = dig_text(r, "+noall", "+answer")  # one line a record, BIND's words
        assert one.count("\n") == text.count("\n") - text.count("\t\t\t\t")
    r = rig.run(dns_query(rig.session, "tsigtime.test", server=SERVER[0], timeout=1))
    assert r.error is None and r.counts == (1, 1, 0, 1) and r.additional == []
    assert [(t.name, t.type, t.cls) for t in r.tsig] == [("key.test.", "TSIG", "ANY")]
    out = dig_text(r, "+multiline", "+nocmd", "+nostats")
    assert out.endswith(DIG_TSIG_TAIL) and out.startswith(";; Got answer:\n")
    assert dig_text(r, "+noall", "+answer", "+additional") == (  # no comments: no title
        "tsigtime.test.\t\t300\tIN\tA\t192.0.2.1\nkey.test.\t\t0\tANY\tTSIG\thmac-sha256. "
        f"1764892800 300 32 {MAC} 4242 BADTIME 6 AABpMtkA\n"
    )
    assert "TSIG" not in dig_text(r, "+noadditional", "+nocmd")  # as dig: with additional
    assert r.to_dict()["tsig"][0]["data"].endswith(" 4242 BADTIME 6 AABpMtkA")


def test_tkey_and_tsig_other_data_in_dig_s_words() -> None:
    """TKEY's other data is cut as its key (+split's words, +multiline's lines); a TSIG's
    in 56-character words whatever +split says (whole with +split=0): dig 9.18.49 for
    dns_zone_server.py's tkeyother.test and tsigother.test."""
    import base64
    import hashlib

    import dns.name
    from dns.rdtypes.ANY.TKEY import TKEY
    from dns.rdtypes.ANY.TSIG import TSIG

    from packetlab.measure.dns import presentation, restyle

    other = ("9Lp08doGiOYkacdcyIkpc8VM0FRKRSFwXPRiL+VtsAkydrfS3Kkn4wif7eWR7vfRNXhv7nmQwA9Ny+Zq"
             "4isklJvFN+0xvQI1d1dl3zl08KKwMKGxLFaM0nWF6fn75T/6uBy45g==")  # fmt: skip
    alg = dns.name.from_text("hmac-sha256.")
    tkey = TKEY(dns.rdataclass.ANY, dns.rdatatype.TKEY, alg, 1764892800, 1764979200, 3, 0,
                b"\x07" * 5, base64.b64decode(other))  # fmt: skip
    tsig = TSIG(dns.rdataclass.ANY, dns.rdatatype.TSIG, alg, 1764892800, 300,
                hashlib.sha256(b"mac").digest(), 4242, 0, base64.b64decode(other))  # fmt: skip
    head = "hmac-sha256. 1764892800 1764979200 3 NOERROR 5 BwcHBwc= 100 "
    assert presentation(tkey) == head + f"{other[:56]} {other[56:112]} {other[112:]}"
    assert presentation(tkey, 20).startswith(head + f"{other[:20]} {other[20:40]} ")
    lb = "\n\t\t\t\t"
    assert restyle(presentation(tkey), "TKEY", "ANY", None, lb) == (
        "hmac-sha256. 1764892800 1764979200 3 NOERROR 5 (\n\t\t\t\tBwcHBwc= ) 100 (\n"
        f"\t\t\t\t{other[:44]}\n\t\t\t\t{other[44:88]}\n\t\t\t\t{other[88:132]}\n"
        f"\t\t\t\t{other[132:]} )"
    )
    words = f"{other[:56]} {other[56:112]} {other[112:]}"
    for split, linebreak in ((None, None), (12, None), (100, None), (None, lb), (12, lb)):
        text = restyle(presentation(tsig), "TSIG", "ANY", split, linebreak)
        assert text.endswith(f" 4242 NOERROR 100 {words}"), (split, linebreak)
    assert presentation(tsig, 0).endswith(f" 4242 NOERROR 100 {other}")


def test_no_opt_in_the_reply_of_a_lookup_with_a_cookie_is_noted_as_dig() -> None:
    """dig notes `;; expected opt record in response` when its lookup carries a cookie
    (+cookie=HEX; +trace's follow-up lookups, unless +nocookie) and the reply has no OPT
    (dig 9.18.49 against dns_zone_server.py's tsig.test and cut.test; we said nothing)."""
    from test_dns import ROOT, TLD, zone_server

    import packetlab.cli as cli
    from packetlab.measure.dns import NO_OPT_NOTE

    rig = Rig()
    rig.endpoint.udp_servers[SERVER] = _meta_reply  # no OPT in its replies
    for cookie, notes in ((bytes(8), [NO_OPT_NOTE]), (True, []), (False, [])):
        r = rig.run(dns_query(rig.session, "tsig.test", server=SERVER[0], cookie=cookie))
        assert r.error is None and r.edns is None and r.notes == notes, cookie
    rig.endpoint.udp_servers[SERVER] = lambda q: [answer(q, "a.test. 300 A 192.0.2.1")]
    r = rig.run(dns_query(rig.session, "a.test", server=SERVER[0], cookie=bytes(8)))
    assert r.edns is not None and r.notes == []  # an OPT came: nothing to say
    rig.endpoint.udp_servers[(ROOT, 53)] = zone_server(
        {".": [". 86400 NS a.root."]}, {"test.": ["test. 172800 NS ns.test."]},
        [f"ns.test. 172800 A {TLD}", f"a.root. 60 A {ROOT}"],
    )  # fmt: skip
    rig.endpoint.udp_servers[(TLD, 53)] = _meta_reply
    for cookie, last in ((True, [NO_OPT_NOTE]), (False, [])):
        steps = rig.run(dns_trace(rig.session, "tsig.test", server=ROOT, cookie=cookie))
        assert [s.notes for s in steps] == [[], [], last], cookie
        if cookie:  # as dig prints the step: the note, then its records
            args = cli.parse(["run", "dns", "+trace", "+nocmd", "x"])
            run_dns_words.dig_style(args)
            text = run_dns_dig.DigText(args)(steps[-1].to_dict()) or ""
            assert text.startswith(";; expected opt record in response\ntsig.test.\t\t300\tIN\tA")


def test_a_tsig_error_above_4095_is_its_number_as_dig() -> None:
    """A TSIG error is 16 bits; dnspython reads it as an RCODE (0..4095) and refused
    the whole reply (`Got bad packet: rcode must be an int between >= 0 and <= 4095`);
    dig 9.18.49 shows the reply and the number (dns_zone_server.py's tsigbig.test,
    tsigbigans.test: +multiline +nocmd +nostats, +multiline +noall +answer)."""
    rig = Rig()
    rig.endpoint.udp_servers[SERVER] = _meta_reply
    r = rig.run(dns_query(rig.session, "tsigbig.test", server=SERVER[0], timeout=1))
    assert r.error is None, r.error
    assert dig_text(r, "+multiline", "+nocmd", "+nostats").endswith(
        ";; ANSWER SECTION:\ntsigbig.test.\t\t300 IN A 192.0.2.1\n\n;; TSIG PSEUDOSECTION:\n"
        f"key.test.\t\t0 ANY TSIG hmac-sha256. 1764892800 300 32 (\n\t\t\t\t{MAC} ) 4242 5000 "
        "0 \n\n"
    )
    assert r.to_dict()["tsig"][0]["data"] == f"hmac-sha256. 1764892800 300 32 {MAC} 4242 5000 0 "
    r = rig.run(dns_query(rig.session, "tsigbigans.test", server=SERVER[0], timeout=1))
    assert r.error is None, r.error
    assert dig_text(r, "+multiline", "+noall", "+answer") == (
        ";; Warning: Message parser reports malformed message packet.\n"
        "tsigbigans.test.\t300 IN A 192.0.2.1\nkey.test.\t\t0 ANY TSIG hmac-sha256. 1764892800 "
        f"300 32 (\n\t\t\t\t{MAC} ) 4242 65535 0 \n"
    )


def test_a_record_of_another_class_than_the_question_s_is_malformed_as_dig() -> None:
    """A server answering a class HS (NONE, CLASS9) question with class IN records: BIND's
    parser calls it FORMERR and keeps the records (dig 9.18.49: `;; Warning: Message
    parser reports malformed message packet.` against dns_zone_server.py, `a.test -c HS`);
    ours said nothing. A question of class ANY, and OPT/TSIG records, are not."""
    from packetlab.measure.dnsparse import MALFORMED_NOTE

    def in_class(q: bytes) -> list[bytes]:
        query = dns.message.from_wire(q)
        r = dns.message.make_response(query)
        r.answer.append(dns.rrset.from_text(query.question[0].name, 300, "IN", "A", "192.0.2.1"))
        return [r.to_wire()]

    rig = Rig()
    rig.endpoint.udp_servers[SERVER] = in_class
    for qclass, noted in (("HS", True), ("NONE", True), ("CLASS9", True), ("ANY", False),
                          ("IN", False)):  # fmt: skip
        r = rig.run(dns_query(rig.session, "a.test", server=SERVER[0], timeout=1, qclass=qclass))
        assert r.error is None and [a.data for a in r.answers] == ["192.0.2.1"], qclass
        assert (MALFORMED_NOTE in r.notes) is noted, qclass
    rig.endpoint.udp_servers[SERVER] = _meta_reply  # a TSIG (class ANY) in its place
    r = rig.run(dns_query(rig.session, "tsig.test", server=SERVER[0], timeout=1))
    assert r.error is None and r.tsig and MALFORMED_NOTE not in r.notes
