"""dig 9.18's requeued lookups (session 26, dns26), over the scripted endpoint: a BADVERS
is asked again with the version the server says when it is below the one asked; a
server that answers BADCOOKIE (RFC 7873, rcode 23) with a COOKIE starting with ours is
asked again with that whole cookie over UDP, a second BADCOOKIE over TCP (dig's `;;
BADCOOKIE, retrying.`, `;; BADCOOKIE, retrying in TCP mode.`); a reply whose COOKIE is
not ours gets dig's `;; Warning: Client COOKIE mismatch` before it.
tests/integration/test_dns_requeue_dig.py runs both side by side with dig."""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable
from pathlib import Path

import dns.edns
import dns.message
import dns.rcode
import dns.rrset
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "controller"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ctl_fakes import Rig
from test_cli_dns import parse, text_of

from packetlab.measure.dns import dns_query
from packetlab.measure.dnsquery import QueryBits
from packetlab.wire import Nopen, Nsend, Proto

SERVER = ("192.0.2.53", 53)
SRV = bytes(range(16))  # the server's part of the cookie
COOKIE_MISMATCH = "Warning: Client COOKIE mismatch"  # dig 9.18's words
COOKIE_SHORT = "Warning: COOKIE bad token (too short)"


def read(wire: bytes) -> dns.message.Message:
    """A query as the server reads it: a COOKIE of any length (dnspython's CookieOption
    refuses a client cookie shorter than 8 bytes, which dig +cookie=HEX sends)."""
    dns.edns.register_type(dns.edns.GenericOption, dns.edns.OptionType.COOKIE)
    try:
        return dns.message.from_wire(wire)
    finally:
        dns.edns.register_type(dns.edns.CookieOption, dns.edns.OptionType.COOKIE)


def cookie_of(wire: bytes) -> bytes | None:
    for opt in read(wire).options:
        if opt.otype == dns.edns.OptionType.COOKIE:
            return bytes(opt.to_wire() or b"")
    return None


def reply(query: bytes, *, bad: bool, client: bytes | None = None) -> bytes:
    """The answer (or BADCOOKIE) to `query`, its COOKIE the query's client cookie (or
    `client`) and SRV."""
    q = read(query)
    r = dns.message.make_response(q)
    sent = cookie_of(query)
    cookie = dns.edns.OptionType.COOKIE
    options: list[dns.edns.Option] = (
        [] if sent is None else [dns.edns.GenericOption(cookie, (client or sent[:8]) + SRV)]
    )
    r.use_edns(0, 0, 1232, options=options)
    if bad:
        r.set_rcode(dns.rcode.BADCOOKIE)
    else:
        r.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", "A", "192.0.2.7"))
    return r.to_wire()


def server(bad: Callable[[bytes], bool], client: bytes | None = None) -> Callable[..., list[bytes]]:
    return lambda q: [reply(q, bad=bad(q), client=client)]


def tcp(bad: Callable[[bytes], bool]) -> Callable[[bytes], list[bytes]]:
    def serve(data: bytes) -> list[bytes]:
        (n,) = struct.unpack(">H", data[:2])
        out = reply(data[2 : 2 + n], bad=bad(data[2 : 2 + n]))
        return [struct.pack(">H", len(out)) + out]

    return serve


def without_server_cookie(q: bytes) -> bool:
    return cookie_of(q) != (cookie_of(q) or b"")[:8] + SRV


def sent(rig: Rig) -> list[bytes]:
    return [m.data for m in rig.endpoint.received if isinstance(m, Nsend)]


def test_a_badcookie_is_asked_again_with_the_servers_cookie() -> None:
    rig = Rig()
    rig.endpoint.udp_servers[SERVER] = server(without_server_cookie)
    r = rig.run(dns_query(rig.session, "a.test", server="192.0.2.53", cookie=True))
    first, second = sent(rig)
    client = cookie_of(first) or b""
    assert len(client) == 8 and cookie_of(second) == client + SRV
    assert (r.rcode, r.proto, len(r.answers)) == ("NOERROR", "udp", 1)
    assert r.notes == ["BADCOOKIE, retrying."]
    assert r.edns is not None and r.edns["options"][0]["cookie"] == "good"


def test_a_second_badcookie_is_asked_over_tcp_and_one_over_tcp_is_the_answer() -> None:
    rig = Rig()
    rig.endpoint.udp_servers[SERVER] = server(lambda q: True)
    rig.endpoint.tcp_servers[SERVER] = tcp(lambda q: False)
    r = rig.run(dns_query(rig.session, "a.test", server="192.0.2.53", cookie=True,
                          keep_query=True))  # fmt: skip
    assert [m.proto for m in rig.endpoint.received if isinstance(m, Nopen)][-1] == Proto.TCP
    assert (r.rcode, r.proto) == ("NOERROR", "tcp")
    assert r.notes == ["BADCOOKIE, retrying.", "BADCOOKIE, retrying in TCP mode."]
    assert len(r.query_before) == 2  # dig +qr: each round's query
    rig = Rig()  # BADCOOKIE over TCP too: shown as it came (dig: no retry in TCP mode)
    rig.endpoint.udp_servers[SERVER] = server(lambda q: True)
    rig.endpoint.tcp_servers[SERVER] = tcp(lambda q: True)
    r = rig.run(dns_query(rig.session, "a.test", server="192.0.2.53", cookie=True))
    assert (r.rcode, r.proto, len(sent(rig))) == ("BADCOOKIE", "tcp", 3)
    rig = Rig()
    rig.endpoint.tcp_servers[SERVER] = tcp(lambda q: True)
    r = rig.run(dns_query(rig.session, "a.test", server="192.0.2.53", cookie=True, tcp=True))
    assert (r.rcode, r.notes, len(sent(rig))) == ("BADCOOKIE", [], 1)


@pytest.mark.parametrize("cookie", [False, True], ids=["nocookie", "nobadcookie"])
def test_no_retry_without_a_cookie_or_with_nobadcookie(cookie: bool) -> None:
    rig = Rig()
    rig.endpoint.udp_servers[SERVER] = server(lambda q: True)
    bits = QueryBits() if not cookie else QueryBits(badcookie=False)
    r = rig.run(dns_query(rig.session, "a.test", server="192.0.2.53", cookie=cookie, bits=bits))
    assert (r.rcode, r.notes, len(sent(rig))) == ("BADCOOKIE", [], 1)


def test_a_cookie_not_ours_is_dig_s_warning_and_no_retry() -> None:
    rig = Rig()
    rig.endpoint.udp_servers[SERVER] = server(lambda q: True, client=b"\x01" * 8)
    r = rig.run(dns_query(rig.session, "a.test", server="192.0.2.53", cookie=True))
    assert (r.rcode, r.notes, len(sent(rig))) == ("BADCOOKIE", [COOKIE_MISMATCH], 1)
    rig.endpoint.udp_servers[SERVER] = server(lambda q: False, client=b"\x01" * 8)
    r = rig.run(dns_query(rig.session, "a.test", server="192.0.2.53", cookie=b"\x02" * 4))
    assert r.notes == [COOKIE_SHORT]  # dig: a client cookie sent shorter than 8 bytes


def test_the_cli_prints_dig_s_lines_in_dig_s_places() -> None:
    rig = Rig()
    rig.endpoint.udp_servers[SERVER] = server(lambda q: True)
    rig.endpoint.tcp_servers[SERVER] = tcp(lambda q: False)
    r = rig.run(dns_query(rig.session, "a.test", server="192.0.2.53", cookie=True))
    record = r.to_dict()
    text = text_of(parse("@192.0.2.53", "a.test"), record)
    assert text.startswith(";; BADCOOKIE, retrying.\n;; BADCOOKIE, retrying in TCP mode.\n\n; <<>>")
    assert text_of(parse("@192.0.2.53", "+short", "a.test"), record) == "192.0.2.7\n"
    bad = {**record, "notes": [COOKIE_MISMATCH]}  # not a comment: said with +short too
    assert text_of(parse("@192.0.2.53", "+short", "a.test"), bad) == (
        ";; Warning: Client COOKIE mismatch\n192.0.2.7\n"
    )
    a = parse("@192.0.2.53", "+nobadcookie", "a.test")
    assert a.badcookie is False


def versions_server(top: int, says: int | None = None) -> Callable[[bytes], list[bytes]]:
    """EDNS versions up to `top`: BADVERS to a higher one, its OPT saying `says` (`top`)."""

    def serve(query: bytes) -> list[bytes]:
        q = read(query)
        r = dns.message.make_response(q)
        if q.edns > top:
            r.use_edns(top if says is None else says, 0, 1232)
            r.set_rcode(dns.rcode.BADVERS)
        else:
            r.use_edns(q.edns, 0, 1232)
            r.answer.append(dns.rrset.from_text(q.question[0].name, 1, "IN", "A", "192.0.2.1"))
        return [r.to_wire()]

    return serve


@pytest.mark.parametrize(
    "top, says, asked, versions, rcode",
    [(1, None, 3, [3, 1], "NOERROR"), (0, None, 2, [2, 0], "NOERROR"),
     (0, 3, 1, [1], "BADVERS"), (0, 3, 4, [4, 3], "BADVERS")],
    ids=["to-1", "to-0", "says-higher", "says-lower-still-bad"],
)  # fmt: skip
def test_badvers_is_asked_again_with_the_version_the_server_says(
    top: int, says: int | None, asked: int, versions: list[int], rcode: str
) -> None:
    rig = Rig()
    rig.endpoint.udp_servers[SERVER] = versions_server(top, says)
    r = rig.run(dns_query(rig.session, "a.test", server="192.0.2.53", edns=asked))
    assert [read(w).edns for w in sent(rig)] == versions and r.rcode == rcode
    assert r.notes == [f"BADVERS, retrying with EDNS version {v}." for v in versions[1:]]


def test_a_server_stepping_down_one_version_at_a_time_is_followed_to_the_end() -> None:
    def serve(query: bytes) -> list[bytes]:
        q = read(query)
        r = dns.message.make_response(q)
        r.use_edns(max(q.edns - 1, 0), 0, 1232)
        if q.edns > 0:
            r.set_rcode(dns.rcode.BADVERS)
        return [r.to_wire()]

    rig = Rig()
    rig.endpoint.udp_servers[SERVER] = serve
    r = rig.run(dns_query(rig.session, "a.test", server="192.0.2.53", edns=20))
    assert len(sent(rig)) == 21 and r.rcode == "NOERROR" and r.edns is not None
    assert r.edns["version"] == 0  # each lower: dig's rounds end, and so do ours


def test_showbadcookie_keeps_each_badcookie_and_prints_it_before_its_retry() -> None:
    """dig 9.18's +showbadcookie (session 26, odds26; it was refused as not built): each
    BADCOOKIE reply asked again is printed whole, with its statistics, before its
    `;; BADCOOKIE, retrying.` (the banner before the first); +short: the answer alone."""
    rig = Rig()
    rig.endpoint.udp_servers[SERVER] = server(lambda q: True)
    rig.endpoint.tcp_servers[SERVER] = tcp(lambda q: False)
    r = rig.run(dns_query(rig.session, "a.test", server="192.0.2.53", cookie=True,
                          bits=QueryBits(showbadcookie=True)))  # fmt: skip
    assert [b["rcode"] for b in r.badcookies] == ["BADCOOKIE", "BADCOOKIE"]
    assert [b["proto"] for b in r.badcookies] == ["udp", "udp"]
    record = r.to_dict()
    text = text_of(parse("@192.0.2.53", "+showbadcookie", "a.test"), record)
    marks = ("; <<>> ", "status: BADCOOKIE", "MSG SIZE  rcvd:", ";; BADCOOKIE, retrying.\n")
    at = [text.index(w) for w in marks]
    assert at == sorted(at) and text.count("status: BADCOOKIE") == 2
    assert text.index("retrying in TCP mode") < text.index("status: NOERROR")
    assert text.count(";; MSG SIZE  rcvd:") == 3
    short = parse("@192.0.2.53", "+showbadcookie", "+short", "a.test")
    assert text_of(short, record) == "192.0.2.7\n"
    rig = Rig()  # without it: nothing kept (the record as before)
    rig.endpoint.udp_servers[SERVER] = server(lambda q: True)
    rig.endpoint.tcp_servers[SERVER] = tcp(lambda q: False)
    r = rig.run(dns_query(rig.session, "a.test", server="192.0.2.53", cookie=True))
    assert r.badcookies == [] and "badcookies" not in r.to_dict()


def test_a_badcookie_requeues_the_lookup_from_its_first_server() -> None:
    """dig 9.18 `@A @B` where A is silent and B says BADCOOKIE: the lookup is requeued
    from A (B's cookie, the tries left), then B (session 26, odds26: ours asked B again
    at once). One server: asked again itself, as before."""
    from twisted.internet.defer import Deferred

    from packetlab.cli.run_dns_ask import _ask

    rig = Rig()
    asked: list[str] = []
    enforcing = server(without_server_cookie)

    def silent(q: bytes) -> list[bytes]:
        asked.append("A")
        return []

    def b(q: bytes) -> list[bytes]:
        asked.append("B" if cookie_of(q) == (cookie_of(q) or b"")[:8] else "B+")
        return enforcing(q)

    rig.endpoint.udp_servers[("192.0.2.1", 53)] = silent
    rig.endpoint.udp_servers[SERVER] = b
    servers = [("192.0.2.1", 53), SERVER]
    asking = _ask(rig.session, servers, "a.test", "A", tcp=False, timeout=1.0, attempts=1,
                  cookie=True, keep_query=True)  # fmt: skip
    r = rig.run(Deferred.fromCoroutine(asking))
    assert asked == ["A", "B", "A", "B+"]
    assert (r.rcode, r.server, len(r.answers)) == ("NOERROR", "192.0.2.53", 1)
    assert [n.split(":")[0] for n in r.notes] == [
        "communications error to 192.0.2.1#53", "BADCOOKIE, retrying.",
        "communications error to 192.0.2.1#53"]  # fmt: skip
    assert len(r.query_before) == 1  # dig +qr: the first lookup's query, then the second's
