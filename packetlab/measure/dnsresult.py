"""What a DNS query from the endpoint gives (`DnsResult`, its `DnsAnswer`s, `DnsError`) and
the type/class words it is asked with; the lowest of the measure.dns modules (dns.py,
dnsquery, dnsparse, dnstransport and dnstext build on it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
    ControllerError,
)

EDNS_PAYLOAD = 1232  # dig's default UDP payload size (the DNS flag day 2020 value)


class DnsError(ControllerError):
    """The query could not be made (no server configured, bad name or type)."""


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    """One resource record, as dig prints it: absolute owner name, type name, TTL, data
    (dig's presentation format: `presentation`), class (IN unless the server said else)."""

    name: str
    type: str
    ttl: int
    data: str
    cls: str = "IN"

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "type": self.type, "ttl": self.ttl, "data": self.data}
        if self.cls != "IN":
            out["class"] = self.cls
        return out


@dataclass(slots=True)
class DnsResult:
    """What one query got. `error` is set (and `rcode` None) when no answer came;
    `error_kind` then says why: "timeout", "refused" (ICMP port unreachable or a TCP
    reset), "malformed" (the reply did not parse) or "tcp" (the TCP exchange failed); in
    dns_trace also "lame" (a referral no deeper) and "steps" (TRACE_STEPS referrals)."""

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
    error_kind: str | None = None
    tries: int = 0  # UDP sends made (TCP: 1)
    id: int | None = None  # the reply's message ID
    opcode: str = "QUERY"
    counts: tuple[int, int, int, int] = (0, 0, 0, 0)  # the reply header's QD/AN/NS/AR counts
    authority: list[DnsAnswer] = field(default_factory=list)
    additional: list[DnsAnswer] = field(default_factory=list)
    edns: dict[str, Any] | None = None  # the reply's OPT: version, flags, udp, options
    notes: list[str] = field(default_factory=list)  # dig's ";; " remarks (TC retry, BADVERS)
    query_time_us: float | None = None  # TCP without rtt_us: answer - ESTABLISHED (dig's)
    server_name: str | None = None  # dns_trace: the NS name of the server asked
    qclass: str = "IN"
    cookie: bytes | None = None  # the COOKIE option sent (client cookie, + server's)
    packet: bytes | None = None  # "malformed": the reply as received (dig's hex dump)
    reason: str | None = None  # "malformed": why it does not parse, in BIND's words
    extra_bytes: int = 0  # bytes past what BIND's parser read (dig's "extra bytes at end")
    tsig: list[DnsAnswer] = field(default_factory=list)  # the reply's TSIG
    # with a key (dig -k/-y): whether the reply's TSIG verified (None: no key given)
    tsig_verified: bool | None = None
    tsig_key: Any = None  # the query's key (measure.dnstsig.TsigKey), None: unsigned
    query_wire: bytes | None = None  # the query as sent (dns_query's keep_query: dig +qr)
    query_before: list[bytes] = field(default_factory=list)  # those of a BADVERS round
    # read only with BIND's best effort (MALFORMED_NOTE): why, in BIND's words, else None
    lenient: str | None = None
    # no answer: the tries whose failure `notes` says already (dig's `communications
    # error` line of each, between the warnings for what came in them)
    tries_said: int = 0
    # the reply's question name when its case is not the query's (dig shows the reply's:
    # a server's 0x20 or case changes seen as they came)
    reply_qname: str | None = None
    # dig +showbadcookie: each BADCOOKIE reply asked again, as its record, in order
    badcookies: list[dict[str, Any]] = field(default_factory=list)
    # dns_query(requeue=True): the whole cookie to ask the lookup's servers again with
    # after this BADCOOKIE (dig's requeued lookup; over TCP when `requeue_tcp`); not a
    # field of the record
    requeue_cookie: bytes | None = None
    requeue_tcp: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "dns",
            "qname": self.qname,
            "qtype": self.qtype,
            "server": self.server,
            "port": self.port,
            "proto": self.proto,
            "tries": self.tries,
        }
        if self.notes:
            out["notes"] = self.notes
        if self.server_name is not None:
            out["server_name"] = self.server_name
        if self.qclass != "IN":
            out["qclass"] = self.qclass
        if self.reply_qname is not None:
            out["reply_qname"] = self.reply_qname
        if self.badcookies:
            out["badcookies"] = self.badcookies
        if self.query_wire is not None:
            out["query"] = self.query_wire.hex()
            if self.query_before:
                out["query_before"] = [w.hex() for w in self.query_before]
        if self.error is not None:
            out["error"] = self.error
            out["error_kind"] = self.error_kind
            if self.tries_said:
                out["tries_said"] = self.tries_said
            if self.packet is not None:
                out["packet"] = self.packet.hex()
                out["reason"] = self.reason
            if self.error_kind != "lame":  # a lame referral: an answer all the same
                return out
        out.update(
            rcode=self.rcode,
            answers=[a.to_dict() for a in self.answers],
            rtt_us=self.rtt_us,
            truncated=self.truncated,
            flags=self.flags,
            size=self.size,
            id=self.id,
            opcode=self.opcode,
            counts=list(self.counts),
            authority=[a.to_dict() for a in self.authority],
            additional=[a.to_dict() for a in self.additional],
            edns=self.edns,
        )
        if self.query_time_us is not None:
            out["query_time_us"] = self.query_time_us
        if self.extra_bytes:
            out["extra_bytes"] = self.extra_bytes
        if self.tsig:
            out["tsig"] = [a.to_dict() for a in self.tsig]
        if self.tsig_verified is not None:
            out["tsig_verified"] = self.tsig_verified
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


def parse_qclass(text: str) -> str:
    """A class name or CLASSnnn ("in", "chaos", "CLASS3") as its canonical name."""
    try:
        return dns.rdataclass.to_text(dns.rdataclass.from_text(text.upper()))
    except (dns.rdataclass.UnknownRdataclass, ValueError):
        raise DnsError(f"unknown class {text!r} (IN, CH, HS, NONE, ANY or CLASSnnn)") from None


def version_of(edns: bool | int, dnssec: bool) -> int | None:
    """The EDNS version a query goes with (None: no OPT), as `_make_query` decides."""
    version = None if edns is False else (0 if edns is True else int(edns))
    return 0 if version is None and dnssec else version
