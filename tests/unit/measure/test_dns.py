"""DNS through the scripted endpoint: UDP, TCP, the truncation retry, lost and foreign
replies, the default server from the endpoint's memory, and bad input."""

from __future__ import annotations

import ipaddress
import struct
import sys
from pathlib import Path
from typing import Any

import dns.dnssec
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rrset
import pytest
from twisted.internet.defer import Deferred

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "controller"))

from ctl_fakes import FakeEndpoint, Rig
from test_traceroute_fakes import icmp_packet
from twisted.internet.task import Clock

from packetlab.endpoint.config import parse_config
from packetlab.endpoint.memory import system_image
from packetlab.measure.dns import (
    DnsError,
    dns_query,
    dns_trace,
    parse_qtype,
    presentation,
    resolver_of,
)
from packetlab.measure.dnstransport import _WATCHES, WATCH_S
from packetlab.measure.packets import PROTO_UDP, ip_packet
from packetlab.measure.packets_transport import udp_segment
from packetlab.wire import Mread, Ncap, Ndata, Nopen, Nsend, Proto, Status

SERVER = ("192.0.2.53", 53)
EP = "192.0.2.1"  # the endpoint's address (IcmpEndpoint)


def answer(query: bytes, *records: str, tc: bool = False, rcode: int = 0) -> bytes:
    q = dns.message.from_wire(query)
    r = dns.message.make_response(q)
    for text in records:
        name, ttl, rtype, data = text.split(" ", 3)
        r.answer.append(dns.rrset.from_text(name, int(ttl), "IN", rtype, data))
    if tc:
        r.flags |= dns.flags.TC
    r.set_rcode(dns.rcode.Rcode(rcode))
    return r.to_wire()


def udp_server(*records: str, tc: bool = False, rcode: int = 0):  # type: ignore[no-untyped-def]
    return lambda q: [answer(q, *records, tc=tc, rcode=rcode)]


def tcp_server(*records: str):  # type: ignore[no-untyped-def]
    def serve(data: bytes) -> list[bytes]:
        (n,) = struct.unpack(">H", data[:2])
        assert len(data) == n + 2
        reply = answer(data[2:], *records)
        msg = struct.pack(">H", len(reply)) + reply
        return [msg[:1], msg[1:7], msg[7:]]  # split anywhere: the reader reassembles

    return serve


def test_udp_a_query() -> None:
    rig = Rig()
    rig.endpoint.udp_servers[SERVER] = udp_server(
        "www.example. 60 CNAME a.example.", "a.example. 300 A 192.0.2.1"
    )
    r = rig.run(dns_query(rig.session, "www.example", "a", server="192.0.2.53"))
    assert (r.qname, r.qtype, r.proto, r.rcode, r.error) == (
        "www.example.", "A", "udp", "NOERROR", None,
    )  # fmt: skip
    assert [a.to_dict() for a in r.answers] == [
        {"name": "www.example.", "type": "CNAME", "ttl": 60, "data": "a.example."},
        {"name": "a.example.", "type": "A", "ttl": 300, "data": "192.0.2.1"},
    ]
    assert r.rtt_us is not None and r.rtt_us >= 0
    d = r.to_dict()
    assert d["type"] == "dns" and d["answers"][1]["data"] == "192.0.2.1"
    # the query went from a UDP socket, with EDNS (dig's 1232-byte payload) and RD
    (send,) = [m for m in rig.endpoint.received if isinstance(m, Nsend)]
    q = dns.message.from_wire(send.data)
    assert q.payload == 1232 and q.flags & dns.flags.RD
    assert rig.session.find_socket(send.sktid) is None  # closed afterwards


def test_rtt_comes_from_endpoint_stamps() -> None:
    rig = Rig()
    rig.endpoint.udp_servers[SERVER] = udp_server("a.example. 1 A 192.0.2.1")
    r = rig.run(dns_query(rig.session, "a.example", server="192.0.2.53"))
    assert r.rtt_us == 0.0  # the fake answers in the same instant it sends


def test_truncated_udp_answer_is_asked_again_over_tcp() -> None:
    rig = Rig()
    rig.endpoint.udp_servers[SERVER] = udp_server(tc=True)
    rig.endpoint.tcp_servers[SERVER] = tcp_server(
        "big.example. 60 TXT one", "big.example. 60 TXT two"
    )
    r = rig.run(dns_query(rig.session, "big.example", "TXT", server="192.0.2.53"))
    assert (r.proto, r.truncated, r.rcode) == ("tcp", True, "NOERROR")
    assert sorted(a.data for a in r.answers) == ['"one"', '"two"']
    assert [m.proto for m in rig.endpoint.received if isinstance(m, Nopen)] == [
        Proto.UDP, Proto.TCP,
    ]  # fmt: skip


def test_truncated_without_fallback_is_reported() -> None:
    rig = Rig()
    rig.endpoint.udp_servers[SERVER] = udp_server(tc=True)
    r = rig.run(dns_query(rig.session, "x.example", server="192.0.2.53", tcp_fallback=False))
    assert (r.proto, r.truncated, r.answers) == ("udp", True, [])


def test_tcp_query() -> None:
    rig = Rig()
    rig.endpoint.tcp_servers[SERVER] = tcp_server("a.example. 5 AAAA 2001:db8::1")
    r = rig.run(dns_query(rig.session, "a.example.", "AAAA", server="192.0.2.53", tcp=True))
    assert (r.proto, r.truncated, r.error) == ("tcp", False, None)
    assert r.answer_set() == {("a.example.", "AAAA", "2001:db8::1")}
    assert r.size is not None and r.rtt_us == 0.0


def test_nxdomain() -> None:
    rig = Rig()
    rig.endpoint.udp_servers[SERVER] = udp_server(rcode=3)
    r = rig.run(dns_query(rig.session, "nope.example", server="192.0.2.53"))
    assert (r.rcode, r.answers, r.error) == ("NXDOMAIN", [], None)


def test_no_answer_is_retried_then_reported() -> None:
    rig = Rig()
    r = rig.run(dns_query(rig.session, "a.example", server="192.0.2.53", timeout=0.5))
    assert r.rcode is None and "no answer from 192.0.2.53 over UDP (2 x 0.5 s)" in (r.error or "")
    assert len([m for m in rig.endpoint.received if isinstance(m, Nsend)]) == 2
    assert "rcode" not in r.to_dict() and r.to_dict()["error"]


@pytest.mark.parametrize(
    "reply",
    [
        lambda q: [b"\x00garbage"],  # not DNS
        lambda q: [answer(q)[:2].translate(bytes(range(1, 256)) + b"\x00") + answer(q)[2:]],  # id
        lambda q: [answer(dns.message.make_query("other.example", "A").to_wire())],  # question
    ],
    ids=["garbage", "wrong-id", "other-question"],
)
def test_foreign_replies_are_ignored(reply: object) -> None:
    rig = Rig()
    rig.endpoint.udp_servers[SERVER] = reply  # type: ignore[assignment]
    r = rig.run(dns_query(rig.session, "a.example", server="192.0.2.53", timeout=0.2, attempts=1))
    assert r.error is not None and r.rcode is None


def test_tcp_refused_and_early_close() -> None:
    rig = Rig()
    r = rig.run(dns_query(rig.session, "a.example", server="192.0.2.53", tcp=True))
    assert r.error is not None
    assert r.error.startswith("TCP connect to 192.0.2.53:53: connection refused (the host")
    rig = Rig()
    rig.endpoint.tcp_servers[SERVER] = lambda data: [b"\x00\x40abc"]  # 64 promised, 3 sent
    r = rig.run(dns_query(rig.session, "a.example", server="192.0.2.53", tcp=True))
    assert r.error is not None and "closed after 3 of 64 bytes" in r.error


def test_default_server_from_endpoint_memory() -> None:
    rig = Rig()
    rig.endpoint.memory = system_image(parse_config(["VMemLocalDNSAddrStrIPv4 192.0.2.53"]))
    rig.endpoint.udp_servers[SERVER] = udp_server("a.example. 1 A 192.0.2.1")
    r = rig.run(dns_query(rig.session, "a.example"))
    assert (r.server, r.port, len(r.answers)) == ("192.0.2.53", 53, 1)


def test_no_server_anywhere() -> None:
    rig = Rig()
    rig.endpoint.memory = system_image(parse_config([]))
    with pytest.raises(DnsError, match="no DNS server configured"):
        rig.run(dns_query(rig.session, "a.example"))


def test_bad_type_and_name() -> None:
    rig = Rig()
    with pytest.raises(DnsError, match="unknown record type 'NOTATYPE'"):
        rig.run(dns_query(rig.session, "a.example", "NOTATYPE", server="192.0.2.53"))
    with pytest.raises(DnsError, match="bad name"):
        rig.run(dns_query(rig.session, "a" * 70 + ".example", server="192.0.2.53"))


def test_qtype_and_resolv_conf_parsing() -> None:
    assert [parse_qtype(t) for t in ("a", "AAAA", "28", "TYPE65", "any")] == [
        "A", "AAAA", "AAAA", "HTTPS", "ANY",
    ]  # fmt: skip
    text = "# c\nsearch x\nnameserver 10.0.0.53\nnameserver fe80::1%eth0\nnameserver ::1\nbad\n"
    assert resolver_of(text) == ["10.0.0.53", "::1"]


# -- EDNS, DNSSEC, sections, families, malformed replies, closed ports (dig's gaps) ------------


def test_dnssec_sets_do_and_rrsig_is_shown_as_dig() -> None:
    rig = Rig()
    sig = "A 13 2 300 20270101000000 20261201000000 4242 test. " + "QUJD" * 22
    rig.endpoint.udp_servers[SERVER] = udp_server(
        "a.test. 300 A 192.0.2.1", f"a.test. 300 RRSIG {sig}"
    )
    r = rig.run(dns_query(rig.session, "a.test", server="192.0.2.53", dnssec=True, payload=4096))
    (send,) = [m for m in rig.endpoint.received if isinstance(m, Nsend)]
    q = dns.message.from_wire(send.data)
    assert q.edns == 0 and q.ednsflags & dns.flags.DO and q.payload == 4096
    rrsig = next(a for a in r.answers if a.type == "RRSIG")
    b64 = "QUJD" * 22  # 88 characters: BIND cuts base64 into 56-character words
    assert rrsig.data == sig.replace(b64, b64[:56] + " " + b64[56:])


def test_no_edns_and_edns_version() -> None:
    rig = Rig()
    rig.endpoint.udp_servers[SERVER] = udp_server("a.test. 1 A 192.0.2.1")
    r = rig.run(dns_query(rig.session, "a.test", server="192.0.2.53", edns=False))
    (send,) = [m for m in rig.endpoint.received if isinstance(m, Nsend)]
    assert dns.message.from_wire(send.data).edns == -1 and r.edns is None
    with pytest.raises(DnsError, match="payload 70000 out of range"):
        rig.run(dns_query(rig.session, "a.test", server="192.0.2.53", payload=70000))


def test_badvers_is_asked_again_with_version_0() -> None:
    def server(query: bytes) -> list[bytes]:
        q = dns.message.from_wire(query)
        r = dns.message.make_response(q)
        if q.edns > 0:
            r.use_edns(0, 0, 1232)
            r.set_rcode(dns.rcode.BADVERS)
        else:
            r.answer.append(dns.rrset.from_text("a.test.", 1, "IN", "A", "192.0.2.1"))
        return [r.to_wire()]

    rig = Rig()
    rig.endpoint.udp_servers[SERVER] = server
    r = rig.run(dns_query(rig.session, "a.test", server="192.0.2.53", edns=1))
    versions = [dns.message.from_wire(m.data).edns for m in rig.endpoint.received
                if isinstance(m, Nsend)]  # fmt: skip
    assert versions == [1, 0] and r.rcode == "NOERROR" and len(r.answers) == 1
    assert r.notes == ["BADVERS, retrying with EDNS version 0."]


def test_sections_header_and_opt_are_kept() -> None:
    def server(query: bytes) -> list[bytes]:
        q = dns.message.from_wire(query)
        r = dns.message.make_response(q)
        r.use_edns(0, dns.flags.DO, 1232)
        r.flags |= dns.flags.AA
        r.set_rcode(dns.rcode.NXDOMAIN)
        r.authority.append(
            dns.rrset.from_text("test.", 60, "IN", "SOA", "ns.test. h.test. 1 2 3 4 5")
        )
        r.additional.append(dns.rrset.from_text("ns.test.", 60, "IN", "A", "192.0.2.9"))
        return [r.to_wire()]

    rig = Rig()
    rig.endpoint.udp_servers[SERVER] = server
    r = rig.run(dns_query(rig.session, "nope.test", server="192.0.2.53", dnssec=True))
    (send,) = [m for m in rig.endpoint.received if isinstance(m, Nsend)]
    assert r.id == dns.message.from_wire(send.data).id and r.opcode == "QUERY"
    assert (r.rcode, r.counts, r.answers) == ("NXDOMAIN", (1, 0, 1, 2), [])
    assert [a.to_dict() for a in r.authority] == [
        {"name": "test.", "type": "SOA", "ttl": 60, "data": "ns.test. h.test. 1 2 3 4 5"}
    ]
    assert [a.data for a in r.additional] == ["192.0.2.9"]
    assert r.edns == {"version": 0, "flags": ["do"], "mbz": 0, "udp": 1232, "options": []}
    assert {"AA", "QR", "RD"} <= set(r.flags)


@pytest.mark.parametrize(
    "cut",
    [lambda w: w[:15], lambda w: w[:14] + b"\xff" * 9],
    ids=["truncated-question", "bad-pointer"],
)
def test_a_malformed_reply_is_one_clear_error(cut: object) -> None:
    rig = Rig()
    rig.endpoint.udp_servers[SERVER] = lambda q: [cut(answer(q, "a.test. 1 A 192.0.2.1"))]  # type: ignore[operator]
    r = rig.run(dns_query(rig.session, "a.test", server="192.0.2.53", timeout=5))
    assert r.error_kind == "malformed" and r.rcode is None
    assert r.error is not None and r.error.startswith("malformed reply from 192.0.2.53#53: ")
    assert "\n" not in r.error and rig.clock.seconds() < 1  # at once, not after the tries
    assert r.packet is not None and r.reason and r.to_dict()["reason"] == r.reason
    assert bytes.fromhex(r.to_dict()["packet"]) == r.packet


@pytest.mark.parametrize(
    ("cut", "reason"),
    [(lambda w: w[:14] + b"\xff" * 9, "bad compression pointer"),
     (lambda w: w[:12] + b"\x41abc", "bad label type"),
     (lambda w: w[:15], "unexpected end of input")],
    ids=["pointer", "label", "end"],
)  # fmt: skip
def test_a_bad_packet_is_kept_with_binds_reason(cut: Any, reason: str) -> None:
    """The reply that does not parse is kept (dig's hex dump) with BIND's words for why
    (`;; Got bad packet: bad compression pointer`, as dig says it)."""
    rig = Rig()
    sent: list[bytes] = []

    def server(q: bytes) -> list[bytes]:
        sent.append(cut(answer(q, "a.test. 1 A 192.0.2.1")))
        return sent[-1:]

    rig.endpoint.udp_servers[SERVER] = server
    r = rig.run(dns_query(rig.session, "a.test", server="192.0.2.53", timeout=5))
    assert (r.error_kind, r.reason, r.packet) == ("malformed", reason, sent[0])
    assert r.error == f"malformed reply from 192.0.2.53#53: {reason} ({len(sent[0])} bytes)"


@pytest.mark.parametrize(
    ("cut", "extra", "kept"),
    [(lambda w: w[:-15], 1, 1), (lambda w: w[:-10], 4, 1), (lambda w: w[:-2], 2, 1),
     (lambda w: w + b"junk!", 5, 2)],
    ids=["in-a-name", "in-fixed-fields", "in-data", "junk-after"],
)  # fmt: skip
def test_a_reply_cut_short_is_what_parsed_as_dig(cut: Any, extra: int, kept: int) -> None:
    """BIND's best effort, as dig 9.18 shows it (tests/integration's cutname.test, ...):
    a reply that ends inside a record after its question keeps the records read whole,
    says "malformed" and how many bytes were left past where the parser stopped (the
    record's start in its name, after its name in its fixed fields, after those in its
    data); bytes after a whole message are extra bytes alone."""
    rig = Rig()
    rig.endpoint.udp_servers[SERVER] = lambda q: [
        cut(answer(q, "a.test. 1 A 192.0.2.1", "a.test. 1 A 192.0.2.2"))
    ]
    q = rig.run(dns_query(rig.session, "a.test", server="192.0.2.53", edns=False, cookie=False))
    assert q.error is None and q.rcode == "NOERROR" and len(q.answers) == kept
    assert q.extra_bytes == extra and q.to_dict()["extra_bytes"] == extra and q.counts[1] == 2
    malformed = ["Warning: Message parser reports malformed message packet."]
    assert q.notes == (malformed if kept == 1 else [])


def test_family_picks_the_default_server_and_checks_a_given_one() -> None:
    rig = Rig()
    both = ["VMemLocalDNSAddrStrIPv4 192.0.2.53", "VMemLocalDNSAddrStrIPv6 2001:db8::53"]
    rig.endpoint.memory = system_image(parse_config(both))
    rig.endpoint.udp_servers[("2001:db8::53", 53)] = udp_server("a.test. 1 A 192.0.2.1")
    r = rig.run(dns_query(rig.session, "a.test", family=6))
    assert (r.server, r.rcode) == ("2001:db8::53", "NOERROR")
    with pytest.raises(DnsError, match="-4: the server 2001:db8::53 is not an IPv4 address"):
        rig.run(dns_query(rig.session, "a.test", server="2001:db8::53", family=4))
    rig.endpoint.memory = system_image(parse_config(["VMemLocalDNSAddrStrIPv4 192.0.2.53"]))
    with pytest.raises(DnsError, match="no IPv6 DNS server configured"):
        rig.run(dns_query(rig.session, "a.test", family=6))


def test_presentation_of_hex_fields_is_bind_s() -> None:
    import dns.rdata

    def text(rtype: str, data: str) -> str:
        return presentation(dns.rdata.from_text("IN", rtype, data))

    digest = "ab" * 32
    assert text("DS", f"4242 13 2 {digest}") == f"4242 13 2 {'AB' * 28} {'AB' * 4}"
    assert text("SSHFP", "4 1 " + "0f" * 20) == "4 1 " + "0F" * 20
    assert text("NSEC3PARAM", "1 0 10 aabb") == "1 0 10 AABB"
    assert text("NSEC3", "1 0 0 - 2vptu5timamqttgl4luu9kg21e0aor3s A RRSIG") == (
        "1 0 0 - 2VPTU5TIMAMQTTGL4LUU9KG21E0AOR3S A RRSIG"
    )


def test_loc_sizes_are_binds() -> None:
    """BIND writes a LOC size or precision of 1 m or more as whole metres, and one below
    (0 too, mantissa and exponent 0 on the wire) with its centimetres: `0.00m` (eyes14:
    was `0m`; dig 9.18 side by side over an AXFR)."""
    import dns.rdata

    def text(data: str) -> str:
        return presentation(dns.rdata.from_text("IN", "LOC", data))

    assert text("52 22 23.000 N 4 53 32.000 E -2.00m 0.00m 10000m 10m") == (
        "52 22 23.000 N 4 53 32.000 E -2.00m 0.00m 10000m 10m"
    )
    assert text("42 21 54 N 71 06 18 W -24m 30m") == (
        "42 21 54.000 N 71 6 18.000 W -24.00m 30m 10000m 10m"
    )
    assert text("1 N 1 E 0m 0.5m 1m 0.01m").endswith(" 0.00m 0.50m 1m 0.01m")


class IcmpEndpoint(FakeEndpoint):
    """The scripted endpoint with raw sockets (or without, `raw=False`): a UDP datagram to
    a port in `closed` gets an ICMP port unreachable, `delay` s later, on each raw socket
    with an ncap."""

    def __init__(self, clock: Clock, raw: bool = True) -> None:
        super().__init__(clock)
        conf = ["TransprotoSup raw,tcp,udp" if raw else "TransprotoSup tcp,udp",
                f"VMemLocalAddrStrIPv4 {EP}/24"]  # fmt: skip
        self.memory = system_image(parse_config(conf))
        self.closed: set[tuple[str, int]] = set()
        self.ncaps: list[Ncap] = []
        self.delay = 0.01

    def handle(self, msg: Any) -> None:
        if isinstance(msg, Ncap):
            self.ncaps.append(msg)
            self.result()
            return
        super().handle(msg)
        if isinstance(msg, Nsend) and msg.proto == Proto.UDP and msg.raddr is not None:
            to = (str(ipaddress.ip_address(msg.raddr)), msg.rport or 0)
            nopen = self.sockets[msg.sktid]["msg"]
            if to in self.closed:
                udp = udp_segment(EP, to[0], nopen.lport, to[1], msg.data)
                quoted = ip_packet(EP, to[0], PROTO_UDP, udp)
                icmp = icmp_packet(to[0], EP, 3, 3, bytes(4), quoted)
                self.clock.callLater(self.delay, self.unreachable, icmp)

    def unreachable(self, packet: bytes) -> None:
        capturing = {m.sktid for m in self.ncaps}
        for sktid, skt in list(self.sockets.items()):
            if skt["proto"] == Proto.RAW and sktid in capturing:
                self.send(Ndata(sktid, skt["family"], Proto.RAW, self.now(), packet))


def icmp_rig(raw: bool = True) -> tuple[Rig, IcmpEndpoint]:
    rig = Rig(endpoint=lambda clock: IcmpEndpoint(clock, raw))
    assert isinstance(rig.endpoint, IcmpEndpoint)
    return rig, rig.endpoint


def test_a_closed_port_is_connection_refused_at_once_with_raw_sockets() -> None:
    rig, ep = icmp_rig()
    ep.closed.add(SERVER)
    r = rig.run(dns_query(rig.session, "a.test", server="192.0.2.53", timeout=2, attempts=3))
    assert r.error_kind == "refused" and r.tries == 1 and rig.clock.seconds() < 0.5
    assert r.error == (
        "connection refused: 192.0.2.53#53 answered with ICMP port unreachable (from "
        "192.0.2.53); nothing listens there"
    )
    # the UDP socket is closed; the capture stays for the session's next queries to the
    # server (one raw socket, one ncap: no round trips of its own for them)
    (raw,) = ep.sockets.values()
    assert raw["proto"] == Proto.RAW and len(ep.ncaps) == 1
    r = rig.run(dns_query(rig.session, "b.test", server="192.0.2.53", timeout=2, attempts=3))
    assert r.error_kind == "refused" and len(ep.ncaps) == 1 and len(ep.sockets) == 1
    # ... until it has served WATCH_S seconds: then a new one, and the old one is closed
    rig.clock.advance(WATCH_S)
    r = rig.run(dns_query(rig.session, "c.test", server="192.0.2.53", timeout=2, attempts=3))
    assert r.error_kind == "refused" and len(ep.ncaps) == 2 and len(ep.sockets) == 1
    assert rig.session in _WATCHES
    rig.session.close()
    rig.pump.flush()
    assert rig.session not in _WATCHES  # the session's watches go with it
    # an open port on the same endpoint: the answer, as before
    rig, ep = icmp_rig()
    ep.udp_servers[SERVER] = udp_server("a.test. 1 A 192.0.2.1")
    r = rig.run(dns_query(rig.session, "a.test", server="192.0.2.53"))
    assert r.rcode == "NOERROR" and r.error is None


class OneRawEndpoint(IcmpEndpoint):
    """As our endpoint (endpoint/raw.py) and the reference: one raw socket per interface
    and family, a second one ESKTINUSE."""

    def nopen(self, msg: Nopen) -> None:
        if msg.proto == Proto.RAW and any(
            s["proto"] == Proto.RAW and s["family"] == msg.family for s in self.sockets.values()
        ):
            self.result(Status.ESKTINUSE)
            return
        super().nopen(msg)


def test_a_second_server_s_closed_port_is_seen_too() -> None:
    """dig's next server after a closed one: the idle watch of the first goes, so the
    second gets one (was: `nopen failed: ESKTINUSE`, the second's closed port a timeout
    after its tries)."""
    rig = Rig(endpoint=lambda clock: OneRawEndpoint(clock))
    ep = rig.endpoint
    assert isinstance(ep, OneRawEndpoint)
    other = ("192.0.2.54", 53)
    ep.closed |= {SERVER, other}
    for server in ("192.0.2.53", "192.0.2.54", "192.0.2.53"):
        r = rig.run(dns_query(rig.session, "a.test", server=server, timeout=2, attempts=3))
        assert (r.server, r.error_kind, r.tries) == (server, "refused", 1), r.error
    assert len(ep.ncaps) == 3 and len(ep.sockets) == 1  # one raw socket at a time


def test_an_unreachable_quoting_another_port_is_not_ours() -> None:
    rig, ep = icmp_rig()
    ep.closed.add(SERVER)
    real = ep.unreachable

    def other_port(packet: bytes) -> None:  # the quoted source port + 1
        b = bytearray(packet)
        b[48:50] = ((b[48] << 8 | b[49]) + 1 & 0xFFFF).to_bytes(2, "big")
        real(bytes(b))

    ep.unreachable = other_port  # type: ignore[method-assign]
    r = rig.run(dns_query(rig.session, "a.test", server="192.0.2.53", timeout=0.5))
    assert r.error_kind == "timeout" and r.tries == 2


def test_without_raw_sockets_a_closed_port_is_no_answer_and_says_why() -> None:
    rig, ep = icmp_rig(raw=False)
    ep.closed.add(SERVER)
    r = rig.run(dns_query(rig.session, "a.test", server="192.0.2.53", timeout=0.5))
    assert r.error_kind == "timeout" and r.error is not None
    assert r.error.startswith("no answer from 192.0.2.53 over UDP (2 x 0.5 s); a closed port "
                              "cannot be told from a silent server")  # fmt: skip
    assert "TRANSSUP has no raw" in r.error and ep.ncaps == []
    reads = len([m for m in ep.received if isinstance(m, Mread)])
    r = rig.run(dns_query(rig.session, "b.test", server="192.0.2.53", timeout=0.5))
    assert "TRANSSUP has no raw" in (r.error or "")  # known: the endpoint is not asked again
    assert len([m for m in ep.received if isinstance(m, Mread)]) == reads


# -- +trace: iterative resolution over scripted servers ------------------------------------------

ROOT, TLD, LEAF, OTHER = "192.0.2.10", "192.0.2.20", "192.0.2.30", "192.0.2.40"


def zone_server(
    answers: dict[str, list[str]],
    authority: dict[str, list[str]] | None = None,
    additional: list[str] | None = None,
    rcode: int = 0,
) -> Any:
    """A server answering `answers[qname]` (records "name ttl TYPE data") if it has the
    name, else a referral: `authority[suffix]`; the `additional` glue in every reply."""

    def serve(query: bytes) -> list[bytes]:
        q = dns.message.from_wire(query)
        r = dns.message.make_response(q)
        qname = q.question[0].name.to_text()

        def add(section: list[Any], text: str) -> None:
            name, ttl, rtype, data = text.split(" ", 3)
            section.append(dns.rrset.from_text(name, int(ttl), "IN", rtype, data))

        if qname in answers:
            for text in answers[qname]:
                add(r.answer, text)
            r.set_rcode(dns.rcode.Rcode(rcode))
        else:
            for suffix, records in (authority or {}).items():
                if qname.endswith(suffix):
                    for text in records:
                        add(r.authority, text)
        for text in additional or []:
            add(r.additional, text)
        return [r.to_wire()]

    return serve


def trace_rig() -> Rig:
    rig = Rig()
    rig.endpoint.udp_servers[(ROOT, 53)] = zone_server(
        {".": [". 86400 NS a.root."], "a.root.": [f"a.root. 60 A {ROOT}"]},
        {"test.": ["test. 172800 NS ns.test."]},
        [f"ns.test. 172800 A {TLD}"],
    )  # fmt: skip
    rig.endpoint.udp_servers[(TLD, 53)] = zone_server(
        {}, {"sub.test.": ["sub.test. 3600 NS ns1.elsewhere.", "sub.test. 3600 NS ns2.elsewhere."]}
    )  # no glue: ROOT (the first server) is asked for their addresses
    return rig


def test_trace_follows_referrals_down_to_the_answer() -> None:
    rig = trace_rig()
    rig.endpoint.udp_servers[(ROOT, 53)] = zone_server(
        {".": [". 86400 NS a.root."], "ns1.elsewhere.": [f"ns1.elsewhere. 60 A {LEAF}"]},
        {"test.": ["test. 172800 NS ns.test."]},
        [f"ns.test. 172800 A {TLD}", f"a.root. 60 A {ROOT}"],
    )  # fmt: skip
    rig.endpoint.udp_servers[(LEAF, 53)] = zone_server(
        {"x.sub.test.": ["x.sub.test. 5 A 192.0.2.99"]}
    )
    seen: list[str] = []
    steps = rig.run(dns_trace(rig.session, "x.sub.test", server=ROOT,
                              on_step=lambda r: seen.append(r.server)))  # fmt: skip
    assert [(s.server, s.server_name, s.qname, s.qtype) for s in steps] == [
        (ROOT, None, ".", "NS"),
        (ROOT, "a.root", "x.sub.test.", "A"),
        (TLD, "ns.test", "x.sub.test.", "A"),
        (LEAF, "ns1.elsewhere", "x.sub.test.", "A"),
    ]
    assert seen == [s.server for s in steps]  # streamed, step by step
    assert steps[-1].answer_set() == {("x.sub.test.", "A", "192.0.2.99")}
    queries = [dns.message.from_wire(m.data) for m in rig.endpoint.received
               if isinstance(m, Nsend)]  # fmt: skip
    assert [bool(q.flags & dns.flags.RD) for q in queries if q.question[0].name.to_text() ==
            "x.sub.test."] == [False, False, False]  # fmt: skip
    assert all(q.ednsflags & dns.flags.DO for q in queries)  # as dig +trace


def test_trace_over_tcp_asks_every_step_over_tcp() -> None:
    """dig +trace +tcp: the root's NS, each referral and the NS addresses, all over TCP
    (the servers here answer TCP only)."""
    rig = trace_rig()
    rig.endpoint.udp_servers[(LEAF, 53)] = zone_server(
        {"x.sub.test.": ["x.sub.test. 5 A 192.0.2.99"]}
    )
    rig.endpoint.udp_servers[(ROOT, 53)] = zone_server(
        {".": [". 86400 NS a.root."], "ns1.elsewhere.": [f"ns1.elsewhere. 60 A {LEAF}"]},
        {"test.": ["test. 172800 NS ns.test."]},
        [f"ns.test. 172800 A {TLD}", f"a.root. 60 A {ROOT}"],
    )  # fmt: skip

    def over_tcp(serve: Any) -> Any:
        def stream(data: bytes) -> list[bytes]:
            return [struct.pack(">H", len(r)) + r for r in serve(data[2:])]

        return stream

    for where in list(rig.endpoint.udp_servers):
        rig.endpoint.tcp_servers[where] = over_tcp(rig.endpoint.udp_servers.pop(where))
    steps = rig.run(dns_trace(rig.session, "x.sub.test", server=ROOT, tcp=True))
    assert [(s.server, s.proto, s.error) for s in steps] == [
        (ROOT, "tcp", None), (ROOT, "tcp", None), (TLD, "tcp", None), (LEAF, "tcp", None)
    ]  # fmt: skip
    assert steps[-1].answer_set() == {("x.sub.test.", "A", "192.0.2.99")}
    opened = [m.proto for m in rig.endpoint.received if isinstance(m, Nopen)]
    assert len(opened) == 5 and set(opened) == {Proto.TCP}  # 4 steps, a glue-less NS's A


def test_trace_tries_the_next_server_and_stops_at_a_lame_referral() -> None:
    rig = trace_rig()
    rig.endpoint.udp_servers[(ROOT, 53)] = zone_server(
        {".": [". 86400 NS a.root."], "ns1.elsewhere.": [f"ns1.elsewhere. 60 A {OTHER}"],
         "ns2.elsewhere.": [f"ns2.elsewhere. 60 A {LEAF}"]},
        {"test.": ["test. 172800 NS ns.test."]},
        [f"ns.test. 172800 A {TLD}", f"a.root. 60 A {ROOT}"],
    )  # fmt: skip
    # OTHER (ns1) never answers; LEAF (ns2) refers to sub.test. again
    rig.endpoint.udp_servers[(LEAF, 53)] = zone_server(
        {}, {"sub.test.": ["sub.test. 3600 NS ns2.elsewhere."]}
    )
    steps = rig.run(dns_trace(rig.session, "x.sub.test", server=ROOT, timeout=0.5, attempts=1))
    assert [s.server for s in steps] == [ROOT, ROOT, TLD, LEAF]
    assert steps[-1].error_kind == "lame" and steps[-1].error == (
        "referral to sub.test. from sub.test. goes no deeper (a lame delegation)"
    )
    # shown as dig shows it (its records, `BAD (HORIZONTAL) REFERRAL`), so kept in the record
    lame = steps[-1].to_dict()
    assert lame["notes"] == ["BAD (HORIZONTAL) REFERRAL"] and lame["rcode"] == "NOERROR"
    assert lame["authority"] == [
        {"name": "sub.test.", "type": "NS", "ttl": 3600, "data": "ns2.elsewhere."}
    ]  # fmt: skip


def test_trace_ends_at_nxdomain_and_at_an_unanswered_root() -> None:
    rig = trace_rig()
    rig.endpoint.udp_servers[(TLD, 53)] = zone_server({"nope.test.": []}, rcode=3)
    steps = rig.run(dns_trace(rig.session, "nope.test", server=ROOT))
    assert [s.rcode for s in steps] == ["NOERROR", "NOERROR", "NXDOMAIN"]
    rig = Rig()
    steps = rig.run(dns_trace(rig.session, "a.test", server=ROOT, timeout=0.2, attempts=1))
    assert len(steps) == 1 and steps[0].error_kind == "timeout"


def test_concurrent_queries_share_one_watch() -> None:
    from twisted.internet.defer import gatherResults

    rig, ep = icmp_rig()
    ep.closed.add(SERVER)
    queries = [dns_query(rig.session, f"n{i}.test", server="192.0.2.53") for i in range(5)]
    got = rig.run(gatherResults(queries))
    assert [r.error_kind for r in got] == ["refused"] * 5
    assert len(ep.ncaps) == 1  # one raw socket for the five, not five
    assert [s["proto"] for s in ep.sockets.values()] == [Proto.RAW]


def opts_server(echo_cookie: bytes | None = None):  # type: ignore[no-untyped-def]
    """A server answering CH TXT, NSID and COOKIE as a BIND server configured for them;
    `echo_cookie`: the client cookie it puts back (default: the one asked with)."""
    import dns.edns

    def serve(query: bytes) -> list[bytes]:
        q = dns.message.from_wire(query)
        r = dns.message.make_response(q)
        out: list[dns.edns.Option] = []
        for opt in q.options:
            if opt.otype == dns.edns.OptionType.NSID:
                out.append(dns.edns.GenericOption(dns.edns.OptionType.NSID, b"ns1"))
            if opt.otype == dns.edns.OptionType.COOKIE:
                client = echo_cookie or opt.to_wire()[:8]
                out.append(dns.edns.GenericOption(dns.edns.OptionType.COOKIE, client + b"S" * 16))
        if q.edns >= 0:
            r.use_edns(0, 0, 1232, options=out)
        qn = q.question[0]
        r.answer.append(dns.rrset.from_text(qn.name, 0, qn.rdclass, "TXT", '"v"'))
        return [r.to_wire()]

    return serve


def test_class_nsid_and_cookie_go_in_the_query_and_come_back_marked() -> None:
    rig = Rig()
    rig.endpoint.udp_servers[SERVER] = opts_server()
    r = rig.run(dns_query(rig.session, "version.bind", "TXT", server="192.0.2.53", qclass="chaos",
                          nsid=True, cookie=True))  # fmt: skip
    (send,) = [m for m in rig.endpoint.received if isinstance(m, Nsend)]
    q = dns.message.from_wire(send.data)
    assert q.question[0].rdclass == dns.rdataclass.CH and r.qclass == "CH"
    sent = {int(o.otype): o.to_wire() for o in q.options}
    assert sent[3] == b"" and len(sent[10]) == 8  # an NSID request, a random client cookie
    assert r.to_dict()["qclass"] == "CH" and r.answers[0].cls == "CH"
    assert r.edns is not None and r.edns["options"] == [
        {"code": 3, "data": b"ns1".hex()},
        {"code": 10, "data": (sent[10] + b"S" * 16).hex(), "cookie": "good"},
    ]
    # a reply whose client cookie is not ours is "bad" (dig's word); none without EDNS
    rig = Rig()
    rig.endpoint.udp_servers[SERVER] = opts_server(echo_cookie=b"X" * 8)
    r = rig.run(dns_query(rig.session, "a.test", server="192.0.2.53", cookie=b"C" * 8))
    assert r.edns is not None and r.edns["options"][0]["cookie"] == "bad"
    r = rig.run(dns_query(rig.session, "a.test", server="192.0.2.53", cookie=True, nsid=True,
                          edns=False))  # fmt: skip
    assert r.edns is None and r.cookie is None
    with pytest.raises(DnsError, match="unknown class 'XX'"):
        rig.run(dns_query(rig.session, "a.test", server="192.0.2.53", qclass="XX"))
    with pytest.raises(DnsError, match="a COOKIE given is 1 to 40 bytes; got 41"):
        rig.run(dns_query(rig.session, "a.test", server="192.0.2.53", cookie=b"x" * 41))


def test_multiline_and_split_styles_are_bind_s() -> None:
    import dns.rdata

    from packetlab.measure.dns import restyle
    from packetlab.measure.dnstext import ttl_words

    assert [ttl_words(n) for n in (0, 1, 60, 3600, 90061, 1209600, 86399)] == [
        "0 seconds", "1 second", "1 minute", "1 hour", "1 day 1 hour 1 minute 1 second",
        "2 weeks", "23 hours 59 minutes 59 seconds",
    ]  # fmt: skip
    lb = "\n\t\t\t\t"
    soa = presentation(dns.rdata.from_text("IN", "SOA", "a. b. 1 2 3 4 5"), linebreak=lb)
    assert soa.splitlines()[1:3] == ["\t\t\t\t1          ; serial",
                                     "\t\t\t\t2          ; refresh (2 seconds)"]  # fmt: skip
    key = dns.rdata.from_text("IN", "KEY", "256 3 13 " + "QUJD" * 4)  # KEY: no KSK/ZSK word
    assert presentation(key, linebreak=lb).endswith(")" + "; alg = ECDSAP256SHA256 ; key id = "
                                                    + str(dns.dnssec.key_id(key)))  # type: ignore[arg-type]  # fmt: skip
    digest = "ABCDEF01" * 8
    assert (
        restyle(f"4242 13 2 {digest}", "DS", split=32) == f"4242 13 2 {digest[:32]} {digest[32:]}"
    )
    assert restyle("not hex", "DS", split=4) == "not hex"  # text it cannot read: as it was
    assert restyle("192.0.2.1", "A", linebreak=lb) == "192.0.2.1"  # one line, as BIND

    # dig 9.18's text of these (dns_zone_server.py), one line and +multiline
    def one(rtype: str, text: str) -> str:
        return presentation(dns.rdata.from_text("IN", rtype, text))

    assert one("LOC", "42 21 54 N 71 06 18 W -24m 30m") == (
        "42 21 54.000 N 71 6 18.000 W -24.00m 30m 10000m 10m"
    )
    assert one("HTTPS", '1 . alpn="h2,h3" port=443 ipv4hint=192.0.2.1 key65000=abc') == (
        '1 . alpn="h2,h3" port=443 ipv4hint=192.0.2.1 key65000="abc"'
    )
    assert one("ZONEMD", "2018031500 1 1 " + "ab" * 48) == (
        f"2018031500 1 1 {'AB' * 28} {'AB' * 20}"
    )
    assert one("OPENPGPKEY", "QUJD" * 20) == f"{'QUJD' * 14} {'QUJD' * 6}"
    dhcid = "UvqztzyvPnWfvoWG+sUzlXdB9l3eFLpeWPvmDc7xdbQE8rQ="
    assert restyle(dhcid, "DHCID", linebreak=lb) == (
        "( UvqztzyvPnWfvoWG+sUzlXdB9l3eFLpeWPvmDc7xdbQE\n\t\t\t\t8rQ= ) ; 21242 179 32"
    )


# `dig @127.0.0.1 -p PORT keydata.test -t KEYDATA +noall +answer [+multiline]` (BIND
# 9.18.49) against tests/integration/dns_zone_server.py's KEYDATA record: dig writes it
# in RFC 3597's form (its KEYDATA text is for named's managed-keys files only)
KEYDATA_HEX = ("693200806932208A000000000101030FF66025C51E65B02FFDAF55EA9460656A0B79598CB7DB1514"
               "DC7A23A81B4CF1AA")  # fmt: skip
DIG_KEYDATA = r"\# 48 " + KEYDATA_HEX[:56] + " " + KEYDATA_HEX[56:]
DIG_KEYDATA_MULTILINE = (
    r"\# 48 ( 693200806932208A000000000101030FF66025C51E65" "\n\t\t\t\t"
    "B02FFDAF55EA9460656A0B79598CB7DB1514DC7A23A8\n\t\t\t\t1B4CF1AA )"
)  # fmt: skip


def test_a_type_dnspython_does_not_know_is_written_as_bind_writes_it() -> None:
    """KEYDATA (65533) and any other type dnspython reads as generic: BIND's `\\# N` with
    the hex in upper case and 56-character words (+multiline: in parentheses, 44 a line);
    it was dnspython's lower-case hex in one word."""
    import dns.rdata

    from packetlab.measure.dns import presentation, restyle

    keydata = dns.rdatatype.RdataType.make(65533)
    rd = dns.rdata.from_wire(dns.rdataclass.IN, keydata, bytes.fromhex(KEYDATA_HEX), 0, 48)
    assert presentation(rd) == DIG_KEYDATA
    assert presentation(rd, linebreak="\n\t\t\t\t") == DIG_KEYDATA_MULTILINE
    assert restyle(DIG_KEYDATA, "TYPE65533", linebreak="\n\t\t\t\t") == DIG_KEYDATA_MULTILINE
    assert presentation(rd, 0) == r"\# 48 " + KEYDATA_HEX
    empty = dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.RdataType.make(65280), b"", 0, 0)
    assert presentation(empty) == presentation(empty, linebreak="\n\t\t\t\t") == r"\# 0"


def test_a_kept_stream_the_server_closed_is_replaced() -> None:
    """dig +keepopen: a TCP query to a server goes over the connection kept from the one
    before (tests/integration/test_dns_keepopen_dig.py counts them); when the server
    closed it after its answer (as this fake does), the query goes over a new one."""
    from packetlab.measure.dnstransport import KeptStreams

    rig = Rig()
    rig.endpoint.tcp_servers[SERVER] = tcp_server("a.example. 5 A 192.0.2.1")
    kept = KeptStreams()
    for _ in range(2):
        r = rig.run(dns_query(rig.session, "a.example.", server="192.0.2.53", tcp=True, kept=kept))
        assert (r.rcode, [a.data for a in r.answers]) == ("NOERROR", ["192.0.2.1"]), r.error
    assert [m.proto for m in rig.endpoint.received if isinstance(m, Nopen)] == [Proto.TCP] * 2
    assert list(kept.streams) == [("192.0.2.53", 53)]  # the last one, until the run ends
    rig.run(Deferred.fromCoroutine(kept.close()))
    assert kept.streams == {}
