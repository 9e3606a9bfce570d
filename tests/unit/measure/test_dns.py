"""DNS through the scripted endpoint: UDP, TCP, the truncation retry, lost and foreign
replies, the default server from the endpoint's memory, and bad input."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "controller"))

from ctl_fakes import Rig

from packetlab.endpoint.config import parse_config
from packetlab.endpoint.memory import system_image
from packetlab.measure.dns import DnsError, dns_query, parse_qtype, resolver_of
from packetlab.wire import Nopen, Nsend, Proto

SERVER = ("192.0.2.53", 53)


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
