"""A name looked up through the endpoint's DNS server: every AAAA and A address tried
in turn, IPv6 first, as curl 7.88.1 tries them (happy eyeballs: the other family 200 ms
after the first one's start), with curl's `-v` lines; A and AAAA asked at once (session
26, odds26: the first A was the only address, a refusal there the transfer's end).
tests/integration/test_http_eyeballs_curl.py runs it beside curl."""

from __future__ import annotations

from typing import Any

import dns.message
import dns.rrset
from http_fake import TlsPeer
from stream_fakes import StreamRig

from packetlab.endpoint.config import parse_config
from packetlab.endpoint.memory import system_image
from packetlab.measure.http import http_get
from packetlab.measure.http_trace import TEXT

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class Ok(TlsPeer):
    def arrived(self) -> None:
        if b"\r\n\r\n" in self.got:
            self.got.clear()
            self.write(OK)


def rig_with(addresses: dict[str, list[str]], *listening: tuple[str, int]) -> StreamRig:
    """A DNS server at 192.0.2.53 answering www.test with `addresses` (type -> data);
    a web server at each of `listening` (the others refuse)."""

    def answer(query: bytes) -> list[bytes]:
        q = dns.message.from_wire(query)
        r = dns.message.make_response(q)
        kind = "A" if q.question[0].rdtype == 1 else "AAAA"
        for data in addresses.get(kind, []):
            r.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", kind, data))
        return [r.to_wire()]

    rig = StreamRig()
    rig.endpoint.memory = system_image(parse_config(["VMemLocalDNSAddrStrIPv4 192.0.2.53"]))
    rig.endpoint.udp_servers[("192.0.2.53", 53)] = answer
    for peer in listening:
        rig.endpoint.peers[peer] = Ok
    return rig


def get(rig: StreamRig, **kw: Any) -> tuple[Any, list[str]]:
    events: list[tuple[str, bytes]] = []
    r = rig.run(http_get(rig.session, "http://www.test/", trace=lambda k, d: events.append((k, d)),
                         **kw))  # fmt: skip
    return r, [d.decode().rstrip("\n") for k, d in events if k == TEXT]


def test_each_address_in_turn_ipv6_first_as_curl() -> None:
    rig = rig_with({"A": ["192.0.2.81", "192.0.2.80"], "AAAA": ["2001:db8::80"]},
                   ("192.0.2.80", 80))  # fmt: skip
    r, text = get(rig)
    assert (r.error, r.status, r.server) == (None, 200, "192.0.2.80:80")
    trying = [t for t in text if "Trying" in t or "failed" in t]
    assert trying == [
        "  Trying [2001:db8::80]:80...",
        "connect to 2001:db8::80 port 80 failed: Connection refused",
        "  Trying 192.0.2.81:80...",
        "connect to 192.0.2.81 port 80 failed: Connection refused",
        "  Trying 192.0.2.80:80...",
    ]


def test_a_name_with_one_family_and_none_that_answers() -> None:
    rig = rig_with({"AAAA": ["2001:db8::80"]}, ("2001:db8::80", 80))
    r, _ = get(rig)
    assert (r.error, r.server) == (None, "[2001:db8::80]:80")
    rig = rig_with({"A": ["192.0.2.81", "192.0.2.82"]})
    r, text = get(rig)
    assert r.exitcode == 7 and r.error is not None
    assert sum("Trying" in t for t in text) == 2


def test_ipv4_only_asks_a_alone() -> None:
    rig = rig_with({"A": ["192.0.2.80"], "AAAA": ["2001:db8::80"]}, ("192.0.2.80", 80))
    r, text = get(rig, family=4)
    assert r.server == "192.0.2.80:80"
    assert not any("2001:db8" in t for t in text)


def test_an_unanswered_ipv6_syn_moves_to_ipv4_after_200_ms() -> None:
    """curl's happy eyeballs: IPv4 starts 200 ms after the IPv6 attempt (curl says
    nothing of it); ours waited half the connect timeout on the first address."""
    rig = rig_with({"A": ["192.0.2.80"], "AAAA": ["2001:db8::80"]}, ("192.0.2.80", 80))
    rig.endpoint.tcp_silent.add(("2001:db8::80", 80))
    began = rig.clock.seconds()
    r, text = get(rig, connect_timeout=10.0)
    assert (r.error, r.server) == (None, "192.0.2.80:80")
    assert 0.2 <= rig.clock.seconds() - began < 0.5
    assert [t for t in text if "Trying" in t or "move on" in t] == [
        "  Trying [2001:db8::80]:80...",
        "  Trying 192.0.2.80:80...",
    ]


def test_localhost_is_127_0_0_1_then_ipv6_as_curl() -> None:
    """curl 7.88.1's localhost (never asked of DNS): 127.0.0.1, then ::1 when it refuses;
    ours was 127.0.0.1 alone (exit 7 against a server on ::1 only)."""
    rig = rig_with({}, ("::1", 8080))
    events: list[tuple[str, bytes]] = []
    r = rig.run(http_get(rig.session, "http://localhost:8080/",
                         trace=lambda k, d: events.append((k, d))))  # fmt: skip
    assert (r.error, r.server) == (None, "[::1]:8080")
    text = [d.decode().rstrip("\n") for k, d in events if k == TEXT]
    assert [t for t in text if "Trying" in t] == ["  Trying 127.0.0.1:8080...",
                                                  "  Trying [::1]:8080..."]  # fmt: skip
