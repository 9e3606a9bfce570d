"""DNS queries from the endpoint, over UDP (retried over TCP when truncated) or TCP.

Queries are built and answers parsed with dnspython: it knows every record type and
prints each in the presentation format dig uses (`rdata.to_text()`), so answers compare
with dig's byte for byte (criterion C3); `twisted.names.dns` parses too, but has no
presentation format for most types and no EDNS options API. The RTT is the endpoint's:
the reply's ndata stamp minus the query's ntag stamp.

This module asks (`dns_query`, `dns_trace`); the parts it asks with are its own modules,
each below it: dnsresult (what a query gives), dnsquery (the query dig sends), dnstransport
(UDP and TCP through the endpoint), dnsparse (a reply read as BIND reads it), dnstext
(records as BIND writes them). The names other packages use are re-exported here.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from typing import Any

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from packetlab.controller import (
    AddressLike,
    EndpointSession,
    deferred_api,
    parse_address,
)
from packetlab.measure.dnsparse import COOKIE_NOTES, MALFORMED_NOTE, _edns_of, _records
from packetlab.measure.dnsquery import (
    COOKIE,
    DIG_QUERY,
    PADDING,
    Z_BIT,
    QueryBits,
    _make_query,
    _render,
    as_ixfr,
    opcode_text,
)
from packetlab.measure.dnsresult import (
    EDNS_PAYLOAD,
    DnsAnswer,
    DnsError,
    DnsResult,
    parse_qclass,
    parse_qtype,
    version_of,
)
from packetlab.measure.dnstext import presentation, restyle
from packetlab.measure.dnstransport import (
    DohExchange,
    KeptStreams,
    TlsWrap,
    _default_server,
    _over_tcp,
    _over_udp,
)
from packetlab.measure.pcap import PcapRecorder
from packetlab.measure.resolvconf import resolver_of

__all__ = [
    "EDNS_PAYLOAD",
    "DnsAnswer",
    "DnsError",
    "DnsResult",
    "dns_query",
    "dns_trace",
    "parse_qclass",
    "parse_qtype",
    "presentation",
    "resolver_of",
    "restyle",
]


@deferred_api
async def dns_query(
    session: EndpointSession,
    qname: str,
    qtype: str = "A",
    *,
    server: AddressLike | None = None,
    port: int = 53,
    tcp: bool = False,
    timeout: float = 2.0,
    attempts: int = 2,
    recursion: bool = True,
    edns: bool | int = True,
    payload: int = EDNS_PAYLOAD,
    dnssec: bool = False,
    family: int | None = None,
    tcp_fallback: bool = True,
    icmp: bool = True,
    recorder: PcapRecorder | None = None,
    qclass: str = "IN",
    nsid: bool = False,
    cookie: bool | bytes = False,
    expect_opt: bool | None = None,
    ixfr_serial: int | None = None,
    tsig: Any = None,
    bits: QueryBits = DIG_QUERY,
    keep_query: bool = False,
    kept: KeptStreams | None = None,
    tls: TlsWrap | None = None,
    doh: DohExchange | None = None,
    requeue: bool = False,
    badcookie_seen: bool = False,
) -> DnsResult:
    """Ask `server` (default: the endpoint's first configured DNS server, from its
    memory; of IP version `family` when given) for `qname`/`qtype` from the endpoint.

    EDNS: `edns` True (version 0), False (none) or a version number (a BADVERS answer is
    asked again with the version it says when that is lower, as dig); `payload` is the
    UDP size offered, `dnssec` sets the DO bit (and EDNS). Over UDP a lost query is sent
    again (`attempts` in all, `timeout` s each) and a truncated answer is asked again over
    TCP (unless `tcp_fallback` is off). With `icmp` and an endpoint with raw sockets, an ICMP port
    unreachable quoting the query ends it at once as "connection refused". A result
    always comes back; failures are in `error`. `recorder` collects the exchanged packets
    for a pcap file.

    `qclass` is the query's class (IN, CH, HS, CLASSnnn). With EDNS, `nsid` asks for the
    server's NSID (option 3) and `cookie` sends a COOKIE (option 10): True a random
    8-byte client cookie, bytes that cookie (8, or 16..40 with a server cookie); the
    reply's COOKIE is then marked "good" or "bad" in `edns`. A reply without an OPT
    record is noted as dig notes it (`expected opt record in response`) when
    `expect_opt` (default: a cookie was given as bytes, dig's +cookie=HEX).

    `ixfr_serial`: an IXFR asked as a query (dig's `IXFR=N +notcp`: over UDP, the reply
    printed as a query's), `qtype` IXFR, with dig's request (`as_ixfr`).

    `tsig` (a `measure.dnstsig.TsigKey`, dig's -k/-y): the query signed as dig signs it,
    the reply's MAC checked as dig checks it (`tsig_verified`; a failure is dig's note
    `Couldn't verify signature: ...`).

    `bits`: dig's other query switches (header bits, opcode, +header-only, +subnet,
    +expire, +keepalive, +padding: `QueryBits`). `keep_query`: the query's bytes as
    sent are kept (`query_wire`; dig +qr prints them). `kept`: a query over TCP uses
    the connection to its server kept there and leaves it open (dig +keepopen). `tls`:
    over TLS (dig +tls: measure.dnstls.DotClient). `doh`: over HTTPS (dig +https:
    measure.dnstls.DohClient).

    `requeue`: a BADCOOKIE to ask again is handed back (`requeue_cookie`, its remark
    said) instead of asked again of this server: dig 9.18 requeues the lookup, from its
    first server (the caller's, `cli.run_dns_ask._ask`); `badcookie_seen`: the lookup
    had one before (dig's seenbadcookie: the next is asked over TCP).
    """
    if expect_opt is None:
        expect_opt = isinstance(cookie, bytes)
    rtype = "IXFR" if ixfr_serial is not None else parse_qtype(qtype)
    qclass = parse_qclass(qclass)
    learn = cookie is True  # dig's own cookie: a TCP retry sends the server's back
    if cookie is True:
        cookie = random.randbytes(8)
    elif isinstance(cookie, bytes) and not 1 <= len(cookie) <= 40:  # dig 9.18 sends any
        raise DnsError(f"a COOKIE given is 1 to 40 bytes; got {len(cookie)}")
    with_opt = version_of(edns, dnssec) is not None or bits.with_edns()
    sent_cookie = cookie if isinstance(cookie, bytes) and with_opt else None
    try:
        name = dns.name.from_text(qname)
    except dns.exception.DNSException as e:
        raise DnsError(f"bad name {qname!r}: {e}") from None
    if not 0 <= payload <= 65535:
        raise DnsError(f"EDNS UDP payload {payload} out of range (0..65535)")
    version: int | None = None if edns is False else (0 if edns is True else int(edns))
    if version is not None and not 0 <= version <= 255:
        raise DnsError(f"EDNS version {version} out of range (0..255)")
    if server is None:
        server = await _default_server(session, family)
    addr = parse_address(server)
    if family is not None and addr.version != family:
        raise DnsError(f"-{family}: the server {addr} is not an IPv{family} address")
    result = DnsResult(name.to_text(), rtype, str(addr), port, "udp")
    earlier: list[bytes] = []  # keep_query: the queries of the rounds before (BADVERS, ...)
    over_tcp = tcp
    seen_badcookie = badcookie_seen  # dig's seenbadcookie: the second asked over TCP
    shown: list[dict[str, Any]] = []  # +showbadcookie: the BADCOOKIE replies asked again
    for _ in range(ROUNDS):  # another round only after BADVERS or BADCOOKIE (dig's requeue)
        query = _make_query(name, rtype, version, payload, dnssec, recursion, qclass, nsid,
                            sent_cookie, bits)  # fmt: skip
        if ixfr_serial is not None:
            as_ixfr(query, ixfr_serial, qclass)
        if tsig is not None:
            _sign(query, tsig)
        result = DnsResult(name.to_text(), rtype, str(addr), port, "udp", notes=result.notes,
                           qclass=qclass, cookie=sent_cookie, tsig_key=tsig)  # fmt: skip
        if keep_query:
            result.query_wire, result.query_before = _render(query), earlier
        if doh is not None:
            await doh.ask(session, query, result, addr, timeout, recorder)
        elif over_tcp or tls is not None:
            await _over_tcp(session, query, result, addr, timeout, recorder, kept, tls)
        else:
            msg = await _over_udp(session, query, result, addr, timeout, attempts, recorder, icmp)
            if msg is not None and msg.flags & dns.flags.TC and tcp_fallback:
                # dig reads the TC reply's cookie only when the lookup has none of its own
                notes = [n for n in result.notes if learn or n not in COOKIE_NOTES]
                notes.append("Truncated, retrying in TCP mode.")
                full = _server_cookie(msg, sent_cookie) if learn else None
                if full is not None:  # dig 9.18: the retry carries the server's cookie
                    query = _make_query(name, rtype, version, payload, dnssec, recursion,
                                        qclass, nsid, full, bits)  # fmt: skip
                    if ixfr_serial is not None:
                        as_ixfr(query, ixfr_serial, qclass)
                    if tsig is not None:
                        _sign(query, tsig)
                    if keep_query and result.query_wire is not None:
                        earlier = [*earlier, result.query_wire]
                        result.query_before, result.query_wire = earlier, _render(query)
                result = DnsResult(result.qname, rtype, result.server, port, "tcp",
                                   truncated=True, notes=notes, qclass=qclass,
                                   cookie=sent_cookie, tsig_key=tsig,
                                   query_wire=result.query_wire,
                                   query_before=result.query_before)  # fmt: skip
                await _over_tcp(session, query, result, addr, timeout, recorder, kept)
            elif msg is not None and msg.flags & dns.flags.TC:
                result.truncated = True
        if not bits.besteffort and result.lenient is not None and result.error is None:
            _refuse_lenient(result)  # dig +nobesteffort: the bad packet, not what parsed
        lower = _badvers_version(result, version, bits)
        if lower is not None:  # dig: the version the server said, when below the one asked
            result.notes.append(f"BADVERS, retrying with EDNS version {lower}.")
            version = lower
            if result.query_wire is not None:
                earlier = [*earlier, result.query_wire]
            continue
        full = _badcookie_retry(result, sent_cookie, bits)
        if full is not None:
            # dig 9.18 (its badcookie, on by default): a BADCOOKIE over UDP whose COOKIE
            # starts with ours is asked again with that whole cookie; a second one over TCP
            tail = " in TCP mode" if seen_badcookie else ""
            if bits.showbadcookie:  # dig prints it (and its statistics) before the retry
                shown.append({k: v for k, v in result.to_dict().items() if k not in HIDDEN})
            result.notes.append(f"BADCOOKIE, retrying{tail}.")
            if requeue:  # dig's requeue_lookup: the caller starts again from its first
                result.requeue_cookie, result.requeue_tcp = full, seen_badcookie
                break
            over_tcp = over_tcp or seen_badcookie
            seen_badcookie, sent_cookie, learn, expect_opt = True, full, False, True
            if result.query_wire is not None:
                earlier = [*earlier, result.query_wire]
            continue
        break
    if expect_opt and result.error is None and result.edns is None:
        result.notes.append(NO_OPT_NOTE)  # dig: a cookie of the lookup's, and no OPT came
    result.badcookies = shown
    return result


NO_OPT_NOTE = "expected opt record in response"
#: what a BADCOOKIE reply kept for +showbadcookie leaves out: the lookup's remarks and
#: queries are the final record's
HIDDEN = ("notes", "query", "query_before", "badcookies")
#: rounds of one query at most: a BADVERS for each version below the one asked (each
#: lower: 255 at most), BADCOOKIE twice (UDP, then TCP), the last
ROUNDS = 256 + 2 + 1


def _badvers_version(result: DnsResult, asked: int | None, bits: QueryBits) -> int | None:
    """The EDNS version to ask again with after a BADVERS (dig 9.18's recv_done: the
    version of the reply's OPT when it is below the one asked, +ednsnegotiation), else
    None (the BADVERS is the answer)."""
    if result.rcode != "BADVERS" or result.edns is None or asked is None or not bits.ednsneg:
        return None
    said = int(result.edns["version"])
    return said if said < asked else None


def _badcookie_retry(result: DnsResult, sent: bytes | None, bits: QueryBits) -> bytes | None:
    """The cookie to ask again with after a BADCOOKIE (dig 9.18's recv_done: over UDP, a
    cookie sent, +badcookie, and the reply's COOKIE starting with ours, BIND's cc_ok: its
    whole COOKIE option, client and server part), else None."""
    if result.rcode != "BADCOOKIE" or result.proto != "udp" or sent is None:
        return None
    if not bits.badcookie or result.edns is None:
        return None
    for option in result.edns["options"]:
        if option["code"] == COOKIE and option.get("cookie") == "good":
            return bytes.fromhex(option["data"])
    return None


def _sign(query: dns.message.Message, tsig: Any) -> None:
    from packetlab.measure.dnstsig import sign  # (only with a key: -y, -k)

    sign(query, tsig)


def _server_cookie(msg: dns.message.Message, sent: bytes | None) -> bytes | None:
    """The whole COOKIE of a reply (ours and the server's, 16..40 bytes) when it starts
    with the client cookie `sent`; None otherwise."""
    if sent is None:
        return None
    for option in msg.options:
        data = option.to_wire() or b""
        if option.otype == dns.edns.OptionType.COOKIE and 16 <= len(data) <= 40:
            return bytes(data) if data[:8] == sent[:8] else None
    return None


def _refuse_lenient(result: DnsResult) -> None:
    """A reply read with BIND's best effort as dig +nobesteffort has it: `Got bad packet`
    (BIND's reason) and its hex dump, no records."""
    result.notes.remove(MALFORMED_NOTE)
    wire = result.packet or b""
    via = " over TCP" if result.proto == "tcp" else ""
    result.error = (f"malformed reply from {result.server}#{result.port}{via}: "
                    f"{result.lenient} ({len(wire)} bytes)")  # fmt: skip
    result.error_kind, result.reason = "malformed", result.lenient


def query_record(wire: bytes) -> dict[str, Any]:
    """A query as sent (`DnsResult.query_wire`) as a record of `DnsResult.to_dict`'s
    shape (`sent` True, `z` the header's Z bit), for dig +qr's `;; Sending:` block: its
    PADDING option shown empty, as dig prints the query before padding it. A COOKIE of
    any length (dig's +cookie=HEX: 1..40 bytes) is read as it is: dnspython's
    CookieOption refuses all but 8 and 16..40 (+qr +cookie=01 was an internal error)."""
    cookie = dns.edns.OptionType.COOKIE
    dns.edns.register_type(dns.edns.GenericOption, cookie)
    try:
        msg = dns.message.from_wire(wire, keyring=False)
    finally:
        dns.edns.register_type(dns.edns.CookieOption, cookie)
    out: dict[str, Any] = {
        "type": "dns", "sent": True, "z": bool(wire[3] & Z_BIT), "rcode": "NOERROR",
        "flags": dns.flags.to_text(msg.flags).split(), "id": msg.id, "size": len(wire),
        "opcode": opcode_text(int(msg.opcode())), "counts": list(struct.unpack(">4H", wire[4:12])),
        "answers": [], "authority": [a.to_dict() for a in _records(msg.authority)],
        "additional": [], "edns": _edns_of(msg),
    }  # fmt: skip
    if msg.tsig is not None:  # a signed query: dig shows its TSIG too
        out["tsig"] = [a.to_dict() for a in _records([msg.tsig])]
    if out["edns"] is not None:
        for opt in out["edns"]["options"]:
            if opt["code"] == PADDING:
                opt["data"] = ""
    if msg.question:
        q = msg.question[0]
        out.update(qname=q.name.to_text(), qtype=dns.rdatatype.to_text(q.rdtype),
                   qclass=dns.rdataclass.to_text(q.rdclass))  # fmt: skip
    return out


TRACE_STEPS = 16  # referrals followed at most (dig: 30)
TRACE_SERVERS = 8  # NS names of one referral tried at most (a hostile one may list thousands)


def _addresses_of(name: str, glue: list[DnsAnswer], version: int) -> list[str]:
    rtype = "A" if version == 4 else "AAAA"
    return [g.data for g in glue if g.name == name and g.type == rtype]


@deferred_api
async def dns_trace(
    session: EndpointSession,
    qname: str,
    qtype: str = "A",
    *,
    server: AddressLike | None = None,
    port: int = 53,
    tcp: bool = False,
    tcp_fallback: bool = True,
    timeout: float = 2.0,
    attempts: int = 2,
    edns: bool | int = True,
    payload: int = EDNS_PAYLOAD,
    dnssec: bool = True,
    family: int | None = None,
    icmp: bool = True,
    on_step: Callable[[DnsResult], object] | None = None,
    nsid: bool = False,
    cookie: bool | bytes = False,
    tsig: Any = None,
) -> list[DnsResult]:
    """Resolve `qname`/`qtype` iteratively from the endpoint, as dig +trace: ask `server`
    (default: the endpoint's) for the root's NS (RD set), then ask a root server without
    RD and follow each referral (the authority section's NS) down to the answer, NXDOMAIN
    or NODATA. A server's address is its glue from the referral's additional section, or
    else `server`'s answer for its A (AAAA) record. The NS are tried in their order (dig:
    at random) until one answers. Every step is a DnsResult (its `server_name` the NS
    name asked), given to `on_step` as it comes; the last one says how it ended.
    `dnssec` (default on, as dig +trace) sets the DO bit; `nsid` and `cookie` go in each
    query, as in dns_query (True: one random client cookie for the whole trace); `tcp`
    asks every step over TCP (dig +trace +tcp), `tcp_fallback` off keeps a truncated
    UDP answer as it came (dig +ignore). With a cookie, a step after the first whose
    reply has no OPT is noted as dig notes it (its follow-up lookups carry a cookie).
    `tsig` (dig -y/-k with +trace): every query signed, every reply checked, as dig."""
    explicit = isinstance(cookie, bytes)
    if cookie is True:
        cookie = random.randbytes(8)
    common: dict[str, Any] = {
        "port": port, "timeout": timeout, "attempts": attempts, "edns": edns,
        "payload": payload, "dnssec": dnssec, "family": family, "icmp": icmp,
        "nsid": nsid, "cookie": cookie, "tcp": tcp, "tcp_fallback": tcp_fallback,
        "tsig": tsig,
    }  # fmt: skip
    if server is None:
        server = await _default_server(session, family)
    start = parse_address(server)
    version = family or start.version
    steps: list[DnsResult] = []

    def step(r: DnsResult) -> DnsResult:
        steps.append(r)
        if on_step is not None:
            on_step(r)
        return r

    first = step(await dns_query(session, ".", "NS", server=start, expect_opt=explicit,
                                 **common))  # fmt: skip
    if first.error is not None or first.rcode != "NOERROR":
        return steps
    zone = dns.name.root
    referral = [a for a in first.answers if a.type == "NS"]
    glue = first.additional
    target = dns.name.from_text(qname)
    for n in range(TRACE_STEPS + 1):
        if not referral:
            break
        if n == TRACE_STEPS:  # each referral goes deeper, so only a name this deep gets here
            before = steps[-1]
            last = DnsResult(target.to_text(), before.qtype, before.server, port, before.proto)
            last.error = (
                f"gave up after {TRACE_STEPS} referrals (the last to {zone} from "
                f"{before.server}): too deep a delegation or a referral loop"
            )
            last.error_kind = "steps"
            step(last)  # a step of its own: the referral before it was shown already
            break
        got: DnsResult | None = None
        for ns in referral[:TRACE_SERVERS]:
            addrs = _addresses_of(ns.data, glue, version)
            if not addrs:  # no glue: the first server's answer for the name
                look = await dns_query(
                    session, ns.data, "A" if version == 4 else "AAAA", server=start,
                    expect_opt=False, **common,
                )  # fmt: skip
                addrs = [a.data for a in look.answers if a.type == look.qtype]
            for addr in addrs[:1]:
                r = await dns_query(session, qname, qtype, server=addr, recursion=False,
                                    expect_opt=cookie is not False, **common)  # fmt: skip
                r.server_name = ns.data.rstrip(".") or "."
                if r.error is None:
                    got = r
                    break
                got = got or r
            if got is not None and got.error is None:
                break
        if got is None:
            names = ", ".join(ns.data for ns in referral[:TRACE_SERVERS])
            which = "any of the" if len(referral) <= TRACE_SERVERS else (
                f"the first {TRACE_SERVERS} of the {len(referral)}"
            )  # fmt: skip
            last = DnsResult(target.to_text(), parse_qtype(qtype), "", port, "udp")
            last.error = f"no address for {which} servers of {zone} ({names})"
            last.error_kind = "timeout"
            step(last)
            break
        if got.error is not None or got.rcode != "NOERROR" or got.answers:
            step(got)
            break
        referral = [a for a in got.authority if a.type == "NS"]
        if not referral:
            step(got)
            break  # NODATA: the SOA in the authority section says so
        cut = dns.name.from_text(referral[0].name)
        if not (cut.is_subdomain(zone) and cut != zone and target.is_subdomain(cut)):
            got.error = f"referral to {cut} from {zone} goes no deeper (a lame delegation)"
            got.error_kind = "lame"
            got.notes.append("BAD (HORIZONTAL) REFERRAL" if cut == zone else "BAD REFERRAL")
            step(got)
            break
        step(got)
        zone, glue = cut, got.additional
    return steps
