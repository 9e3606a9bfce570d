"""DNS queries from the endpoint, over UDP (retried over TCP when truncated) or TCP.

Queries are built and answers parsed with dnspython: it knows every record type and
prints each in the presentation format dig uses (`rdata.to_text()`), so answers compare
with dig's byte for byte (criterion C3); `twisted.names.dns` parses too, but has no
presentation format for most types and no EDNS options API. The RTT is the endpoint's:
the reply's ndata stamp minus the query's ntag stamp.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from packetlab.controller import (
    AddressLike,
    ControllerError,
    EndpointSession,
    deferred_api,
    parse_address,
    read_system_info,
    udp_exchange,
)
from packetlab.measure.pcap import PcapRecorder, local_udp_end
from packetlab.measure.stream import StreamError, TcpStream, connect_failure

__all__ = ["DnsAnswer", "DnsError", "DnsResult", "dns_query", "parse_qtype", "resolver_of"]

EDNS_PAYLOAD = 1232  # dig's default UDP payload size (the DNS flag day 2020 value)


class DnsError(ControllerError):
    """The query could not be made (no server configured, bad name or type)."""


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    """One answer record, as dig prints it: absolute owner name, type name, TTL, data."""

    name: str
    type: str
    ttl: int
    data: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "ttl": self.ttl, "data": self.data}


@dataclass(slots=True)
class DnsResult:
    """What one query got. `error` is set (and `rcode` None) when no answer came."""

    qname: str
    qtype: str
    server: str
    port: int
    proto: str  # the transport of the answer: "udp" or "tcp"
    rcode: str | None = None
    answers: list[DnsAnswer] = field(default_factory=list)
    rtt_us: float | None = None  # endpoint stamps: reply ndata - query ntag
    truncated: bool = False  # the UDP answer was truncated (then retried over TCP)
    flags: list[str] = field(default_factory=list)
    size: int | None = None  # bytes of the DNS message answered
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "dns",
            "qname": self.qname,
            "qtype": self.qtype,
            "server": self.server,
            "port": self.port,
            "proto": self.proto,
        }
        if self.error is not None:
            out["error"] = self.error
            return out
        out.update(
            rcode=self.rcode,
            answers=[a.to_dict() for a in self.answers],
            rtt_us=self.rtt_us,
            truncated=self.truncated,
            flags=self.flags,
            size=self.size,
        )
        return out

    def answer_set(self) -> frozenset[tuple[str, str, str]]:
        """(name, type, data) of every answer: what C3 compares (TTLs count down)."""
        return frozenset((a.name, a.type, a.data) for a in self.answers)


def parse_qtype(text: str) -> str:
    """A record type name or number ("aaaa", "TYPE65", "28") as its canonical name."""
    try:
        value = int(text) if text.isdigit() else dns.rdatatype.from_text(text.upper())
        return dns.rdatatype.to_text(dns.rdatatype.RdataType.make(value))
    except (dns.rdatatype.UnknownRdatatype, ValueError):
        raise DnsError(f"unknown record type {text!r}") from None


def resolver_of(text: str) -> list[str]:
    """The nameserver addresses of a resolv.conf text (scoped IPv6 ones left out)."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver" and "%" not in parts[1]:
            try:
                out.append(str(parse_address(parts[1])))
            except ValueError:
                continue
    return out


def _answers(msg: dns.message.Message) -> list[DnsAnswer]:
    out = []
    for rrset in msg.answer:
        name = rrset.name.to_text()
        rtype = dns.rdatatype.to_text(rrset.rdtype)
        for rd in rrset:
            out.append(DnsAnswer(name, rtype, rrset.ttl, rd.to_text()))
    return out


def _fill(result: DnsResult, msg: dns.message.Message, size: int) -> None:
    result.rcode = dns.rcode.to_text(msg.rcode())
    result.answers = _answers(msg)
    result.flags = dns.flags.to_text(msg.flags).split()
    result.size = size


def _parse(query: dns.message.Message, wire: bytes) -> dns.message.Message | None:
    """The reply to `query`, or None for anything else (garbage, another id/question)."""
    try:
        msg = dns.message.from_wire(wire, ignore_trailing=True, question_only=False)
    except (dns.exception.DNSException, ValueError):
        try:  # a truncated reply may not parse past the question: keep its header
            msg = dns.message.from_wire(wire, question_only=True)
        except (dns.exception.DNSException, ValueError):
            return None
    return msg if query.is_response(msg) else None


async def _default_server(session: EndpointSession) -> str:
    info = await read_system_info(session)
    servers = [str(a) for a in info.dns4] + [str(a) for a in info.dns6]
    if not servers:
        raise DnsError(
            "the endpoint has no DNS server configured (VMemLocalDNSAddrStrIPv4/IPv6); "
            "give one with server="
        )
    return servers[0]


async def _over_udp(
    session: EndpointSession,
    query: dns.message.Message,
    result: DnsResult,
    server: AddressLike,
    timeout: float,
    attempts: int,
    recorder: PcapRecorder | None = None,
) -> dns.message.Message | None:
    wire = query.to_wire()
    local: tuple[str, int] | None = None
    if recorder is not None:  # a port we choose, so the capture can show it
        local = await local_udp_end(session, server)
    for _ in range(attempts):
        lport = local[1] if local else 0
        ex = await udp_exchange(session, server, result.port, wire, timeout=timeout, lport=lport)
        sent = ex.sent[0].time if ex.sent else None
        if recorder is not None and local is not None:
            if sent is not None:
                recorder.udp(sent, local[0], local[1], str(server), result.port, wire)
            for r in ex.replies:
                recorder.udp(r.time, str(r.addr), r.port, local[0], local[1], r.data)
        for reply in ex.replies:
            msg = _parse(query, reply.data)
            if msg is None:
                continue
            if sent is not None:
                result.rtt_us = (reply.time - sent) / 1000
            _fill(result, msg, len(reply.data))
            return msg
    result.error = f"no answer from {result.server} over UDP ({attempts} x {timeout:g} s)"
    return None


async def _over_tcp(
    session: EndpointSession,
    query: dns.message.Message,
    result: DnsResult,
    server: AddressLike,
    timeout: float,
    recorder: PcapRecorder | None = None,
) -> None:
    wire = query.to_wire()
    result.proto = "tcp"
    try:
        stream = await TcpStream.connect(
            session, server, result.port, timeout=timeout, recorder=recorder
        )
    except ControllerError as e:
        result.error = "TCP " + connect_failure(e, server, result.port)
        return
    try:
        ntag = stream.send(struct.pack(">H", len(wire)) + wire, ntag=True)
        head = await stream.read_exactly(2, timeout)
        (length,) = struct.unpack(">H", head.data)
        body = await stream.read_exactly(length, timeout)
        msg = _parse(query, body.data)
        if msg is None:
            result.error = f"{result.server} answered over TCP with a message that is not the reply"
            return
        assert ntag is not None
        sent = await ntag
        # A TCP ntag is stamped once send() returned; on a loaded endpoint that can be after
        # the answer's kernel receive stamp: then the round trip is not known (None).
        if head.time >= sent.time:
            result.rtt_us = (head.time - sent.time) / 1000
        _fill(result, msg, length)
    except StreamError as e:
        result.error = str(e)
    finally:
        await stream.close()


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
    edns: bool = True,
    tcp_fallback: bool = True,
    recorder: PcapRecorder | None = None,
) -> DnsResult:
    """Ask `server` (default: the endpoint's first configured DNS server, from its
    memory) for `qname`/`qtype` from the endpoint. Over UDP a lost query is sent again
    (`attempts` in all, `timeout` s each) and a truncated answer is asked again over TCP
    (unless `tcp_fallback` is off). A result always comes back; failures are in `error`.
    `recorder` collects the exchanged packets for a pcap file.
    """
    rtype = parse_qtype(qtype)
    try:
        name = dns.name.from_text(qname)
    except dns.exception.DNSException as e:
        raise DnsError(f"bad name {qname!r}: {e}") from None
    if server is None:
        server = await _default_server(session)
    addr = parse_address(server)
    query = dns.message.make_query(
        name, rtype, dns.rdataclass.IN, use_edns=0 if edns else False, payload=EDNS_PAYLOAD
    )
    query.id = random.randrange(0x10000)
    if not recursion:
        query.flags &= ~dns.flags.RD
    result = DnsResult(name.to_text(), rtype, str(addr), port, "udp")
    if tcp:
        await _over_tcp(session, query, result, addr, timeout, recorder)
        return result
    msg = await _over_udp(session, query, result, addr, timeout, attempts, recorder)
    if msg is not None and msg.flags & dns.flags.TC and tcp_fallback:
        tcp_result = DnsResult(result.qname, rtype, result.server, port, "tcp", truncated=True)
        await _over_tcp(session, query, tcp_result, addr, timeout, recorder)
        return tcp_result
    if msg is not None and msg.flags & dns.flags.TC:
        result.truncated = True
    return result
