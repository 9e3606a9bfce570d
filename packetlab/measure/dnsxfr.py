"""Zone transfers (AXFR, IXFR) from the endpoint over TCP, as dig 9.18 makes them.

The request is dig's: AXFR with AD set and RD clear, IXFR with no flag and the client's
SOA (`ZONE 0 IN SOA . . SERIAL 0 0 0 0`) in the authority section, EDNS and a client
cookie as a query's. The reply is read message by message over one `TcpStream` until
the transfer is complete by BIND's rules (`XfrState`: dig's check_for_more_data): an
AXFR at its second SOA; an IXFR at the current SOA alone (up to date), at its second
SOA when the second record is no SOA (an AXFR-style reply), else when the current
serial comes back a second time after the differences. Each message is parsed with its
records kept one by one in the wire's order (an IXFR repeats SOAs that an RRset would
merge).

What a transfer may hold is capped (`max_records`, `max_bytes`, `max_seconds`): a server
that sends without end is cut there with a clear error, never unbounded memory or time.
Between two messages the wait is `timeout` (dig's +time), as dig's. A transfer cut by a
communications error (the server closed, a reset, nothing within `timeout`) is made
again, `attempts` in all, as dig does over TCP; each attempt's partial records are kept
(`XfrResult.retries`), as dig prints them.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from packetlab.clockstep import steady
from packetlab.controller import (
    AddressLike,
    ControllerError,
    EndpointSession,
    deferred_api,
    parse_address,
)
from packetlab.measure.dns import EDNS_PAYLOAD, DnsAnswer, DnsError, parse_qclass
from packetlab.measure.dnsparse import (
    BAD_OWNER,
    MALFORMED_NOTE,
    OPT_ERROR,
    _bind_reason,
    _edns_of,
    _other_class,
    _records,
    bad_owner,
    bind_opt_error,
    generic_options,
)
from packetlab.measure.dnsquery import _make_query, _render, as_ixfr
from packetlab.measure.dnsrdata import bind_rdata
from packetlab.measure.dnsresult import version_of
from packetlab.measure.dnstransport import _default_server
from packetlab.measure.pcap import PcapRecorder

__all__ = ["XFR_MAX_BYTES", "XFR_MAX_RECORDS", "XFR_MAX_S", "XfrResult", "XfrState", "dns_xfr"]

XFR_MAX_RECORDS = 100_000  # records a transfer may hold (all its attempts together)
XFR_MAX_BYTES = 32 << 20  # bytes of DNS messages likewise
XFR_MAX_S = 300.0  # seconds an attempt may take in all (each wait: `timeout`)
STOP_POLL_S = 0.25  # with `stop`: how often a silent transfer asks it


@dataclass(slots=True)
class XfrResult:
    """What one transfer got. `rcode` is the first message's (None: no message came).
    `failed` is dig's remark when the server answered but gave no zone (`Transfer
    failed.`: an error RCODE or no record; `Transfer failed.  Didn't start with SOA
    answer.`); `error`/`error_kind` say why it ended without its last SOA: "refused"
    (connection refused), "tcp" (no connection), "eof" (the server closed), "timeout",
    "reset", "malformed" (a message that does not parse), "mismatch" (a first message of
    another ID or question), "limit" (a cap reached), "interrupted" (`stop` said so).
    `records`, `messages`, `nbytes` are dig's XFR size (records up to the last SOA,
    messages and their bytes); `answers` every record received; `parts` a header per
    message (id, flags, rcode, counts, OPT, size, and how many of `answers` it carried).
    `style` (IXFR): "incremental", "axfr" (the AXFR-style reply) or "up-to-date"."""

    zone: str
    qtype: str  # "AXFR" or "IXFR"
    server: str
    port: int
    serial: int | None = None  # IXFR: the client's serial sent
    qclass: str = "IN"
    rcode: str | None = None
    answers: list[DnsAnswer] = field(default_factory=list)
    parts: list[dict[str, Any]] = field(default_factory=list)
    records: int = 0
    messages: int = 0
    nbytes: int = 0  # dig's XFR size bytes ("bytes" in to_dict)
    rtt_us: float | None = None  # endpoint stamps: the last message - the query's send
    query_time_us: float | None = None  # without rtt_us: from the connection's establishment
    failed: str | None = None
    error: str | None = None
    error_kind: str | None = None
    style: str | None = None
    tries: int = 0
    id: int | None = None  # the query's message ID
    packet: bytes | None = None  # "malformed": the message as received (dig's hex dump)
    reason: str | None = None
    cookie: bytes | None = None
    retries: list[dict[str, Any]] = field(default_factory=list)  # earlier attempts
    notes: list[str] = field(default_factory=list)  # dig's remarks before it (TC: over TCP)
    tsig_verified: bool | None = None  # with a key: every signed message's MAC verified

    @property
    def complete(self) -> bool:
        return self.error is None and self.failed is None and self.messages > 0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "dns",
            "xfr": True,
            "qname": self.zone,
            "qtype": self.qtype,
            "server": self.server,
            "port": self.port,
            "proto": "tcp",
            "tries": self.tries,
            "rcode": self.rcode,
            "records": self.records,
            "messages": self.messages,
            "bytes": self.nbytes,
            "answers": [a.to_dict() for a in self.answers],
            "parts": self.parts,
            "rtt_us": self.rtt_us,
            "error_kind": self.error_kind,
            "id": self.id,
        }
        if self.serial is not None:
            out["serial"] = self.serial
        if self.qclass != "IN":
            out["qclass"] = self.qclass
        if self.style is not None:
            out["style"] = self.style
        if self.query_time_us is not None:
            out["query_time_us"] = self.query_time_us
        if self.failed is not None:
            out["failed"] = self.failed
        if self.error is not None:
            out["error"] = self.error
        if self.packet is not None:
            out["packet"] = self.packet.hex()
            out["reason"] = self.reason
        if self.retries:
            out["retries"] = self.retries
        if self.notes:
            out["notes"] = self.notes
        if self.tsig_verified is not None:
            out["tsig_verified"] = self.tsig_verified
        return out

    def attempt_dict(self) -> dict[str, Any]:
        """This attempt as an entry of a later one's `retries`."""
        return {k: v for k, v in self.to_dict().items() if k not in ("retries", "type", "xfr")}


class XfrState:
    """When a transfer is complete, by BIND's rules (dig's check_for_more_data), fed the
    answer records' types (and SOA serials) of each message in order. `feed_message`
    says whether the transfer is over; then `failed` is dig's remark when it failed."""

    def __init__(self, ixfr_serial: int | None = None) -> None:
        self.ixfr = ixfr_serial is not None
        self.serial = ixfr_serial or 0
        self.axfr = not self.ixfr
        self.first_soa = False
        self.second_rr = False
        self.first_serial = 0
        self.first_repeat = False
        self.records = 0
        self.failed: str | None = None
        self.style: str | None = None

    def feed_message(self, rrs: list[tuple[int, int | None]]) -> bool:
        """`rrs`: (type, serial or None) of each answer record. True: the transfer is over
        (complete, or failed: `failed`)."""
        if not rrs:
            self.failed = "Transfer failed."
            return True
        for rdtype, serial in rrs:
            self.records += 1
            soa = rdtype == dns.rdatatype.SOA
            if not self.first_soa and not soa:
                self.failed = "Transfer failed.  Didn't start with SOA answer."
                return True
            if not self.second_rr and not soa and self.first_soa:
                self.second_rr = True
                self.axfr = True
                self.style = "axfr" if self.ixfr else None
                continue
            if not soa:
                continue
            assert serial is not None
            if not self.first_soa:
                self.first_soa, self.first_serial = True, serial
                if self.ixfr and _serial_ge(self.serial, serial):
                    self.style = "up-to-date"
                    return True
                continue
            if self.axfr:
                return True
            if not self.second_rr:
                if self.first_serial == serial:
                    return True  # an empty zone
                self.second_rr = True
                self.style = "incremental"
                continue
            if self.first_serial == serial:
                if not self.first_repeat:
                    self.first_repeat = True
                    continue
                return True
        return False


def _serial_ge(a: int, b: int) -> bool:
    """RFC 1982 serial arithmetic: a >= b (BIND's isc_serial_ge)."""
    return a == b or 0 < (a - b) % (1 << 32) < (1 << 31)


class Frames:
    """Length-prefixed DNS messages from a TCP byte stream (RFC 1035 §4.2.2), sans-IO:
    `feed` returns the whole messages so far; a buffer with an offset (no quadratic
    copying when a chunk holds many small messages)."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.at = 0

    def feed(self, data: bytes) -> list[bytes]:
        if self.at:
            del self.buf[: self.at]
            self.at = 0
        self.buf += data
        out = []
        while len(self.buf) - self.at >= 2:
            (n,) = struct.unpack_from(">H", self.buf, self.at)
            if len(self.buf) - self.at - 2 < n:
                break
            out.append(bytes(self.buf[self.at + 2 : self.at + 2 + n]))
            self.at += 2 + n
        return out

    @property
    def pending(self) -> int:
        return len(self.buf) - self.at


def xfr_query(
    zone: dns.name.Name,
    serial: int | None,
    edns: int | None,
    payload: int,
    dnssec: bool,
    qclass: str = "IN",
    nsid: bool = False,
    cookie: bytes | None = None,
) -> dns.message.Message:
    """dig 9.18's request: AXFR with AD set (RD clear whatever +rec says), IXFR with no
    flag set and the client's SOA in the authority section."""
    rtype = "AXFR" if serial is None else "IXFR"
    query = _make_query(zone, rtype, edns, payload, dnssec, False, qclass, nsid, cookie)
    if serial is None:
        query.flags = dns.flags.AD
    else:
        as_ixfr(query, serial, qclass)
    return query


def _parse_message(wire: bytes) -> dns.message.Message:
    """A transfer's message, its records one by one in the wire's order, its EDNS
    options read as BIND reads them (a query's reply's: `dnsparse.bind_opt_error`)."""
    with generic_options(), bind_rdata():
        msg = dns.message.from_wire(wire, keyring=False, one_rr_per_rrset=True,
                                    ignore_trailing=True)  # fmt: skip
    if any(bind_opt_error(int(o.otype), o.to_wire() or b"") for o in msg.options):
        raise dns.exception.FormError(OPT_ERROR)  # (its words: _bind_reason keeps them)
    if bad_owner(msg):  # dig: `Got bad packet: bad owner name (check-names)` (dig30)
        raise dns.exception.FormError(BAD_OWNER)
    return msg


def _head(msg: dns.message.Message, wire: bytes, n: int, cookie: bytes | None) -> dict[str, Any]:
    part: dict[str, Any] = {
        "id": msg.id,
        "flags": dns.flags.to_text(msg.flags).split(),
        "rcode": dns.rcode.to_text(msg.rcode()),
        "opcode": dns.opcode.to_text(msg.opcode()),
        "counts": list(struct.unpack(">4H", wire[4:12])),
        "edns": _edns_of(msg, cookie),
        "size": len(wire),
        "answers": n,
    }
    if msg.question:
        q = msg.question[0]
        part["question"] = [q.name.to_text(), dns.rdatatype.to_text(q.rdtype),
                            dns.rdataclass.to_text(q.rdclass)]  # fmt: skip
    authority, additional = _records(msg.authority), _records(msg.additional)
    if authority:
        part["authority"] = [a.to_dict() for a in authority]
    if additional:
        part["additional"] = [a.to_dict() for a in additional]
    if msg.tsig is not None:  # dig shows it after the message's records
        part["tsig"] = [a.to_dict() for a in _records([msg.tsig])]
    return part


@deferred_api
async def dns_xfr(
    session: EndpointSession,
    zone: str,
    *,
    serial: int | None = None,
    server: AddressLike | None = None,
    port: int = 53,
    timeout: float = 2.0,
    attempts: int = 2,
    edns: bool | int = True,
    payload: int = EDNS_PAYLOAD,
    dnssec: bool = False,
    family: int | None = None,
    qclass: str = "IN",
    nsid: bool = False,
    cookie: bytes | None = None,
    max_records: int = XFR_MAX_RECORDS,
    max_bytes: int = XFR_MAX_BYTES,
    max_seconds: float = XFR_MAX_S,
    recorder: PcapRecorder | None = None,
    stop: Callable[[], bool] | None = None,
    tsig: Any = None,
) -> XfrResult:
    """Transfer `zone` from `server` (default: the endpoint's first DNS server) over TCP
    from the endpoint: AXFR, or IXFR from `serial` when given. A result always comes
    back (failures in `error`, a refusal in `failed`); see the module's docstring.
    `stop`, when given, is asked between reads (at least every STOP_POLL_S s): once it
    says True the transfer ends with what came ("interrupted"), not tried again.

    `tsig` (a `measure.dnstsig.TsigKey`, dig's -k/-y): the request signed as dig signs
    it; each message that carries a TSIG is checked as dig checks it (RFC 8945's
    chaining: the prior MAC, the unsigned messages since), a failure noted on that
    message (`Couldn't verify signature: ...`, `tsig_note` of its part) and
    `tsig_verified` False; as dig 9.18, unsigned messages after the first are not
    counted and the last need not be signed (`dnstsig.Verifier(strict=True)`: RFC
    8945's rules)."""
    import random

    qclass = parse_qclass(qclass)
    try:
        name = dns.name.from_text(zone)
    except dns.exception.DNSException as e:
        raise DnsError(f"bad zone name {zone!r}: {e}") from None
    if serial is not None and not 0 <= serial <= 0xFFFFFFFF:
        raise DnsError(f"IXFR serial {serial} out of range (0..4294967295)")
    if server is None:
        server = await _default_server(session, family)
    addr = parse_address(server)
    if family is not None and addr.version != family:
        raise DnsError(f"-{family}: the server {addr} is not an IPv{family} address")
    version = version_of(edns, dnssec)
    if cookie is not None and version is None:
        cookie = None
    query = xfr_query(name, serial, version, payload, dnssec, qclass, nsid, cookie)
    query.id = random.randrange(0x10000)
    if tsig is not None:
        from packetlab.measure.dnstsig import sign

        sign(query, tsig)
    qtype = "AXFR" if serial is None else "IXFR"
    earlier: list[dict[str, Any]] = []
    budget = [max_records, max_bytes]
    result = XfrResult(name.to_text(), qtype, str(addr), port, serial, qclass)
    for attempt in range(1, max(attempts, 1) + 1):
        result = XfrResult(name.to_text(), qtype, str(addr), port, serial, qclass,
                           tries=attempt, id=query.id, cookie=cookie)  # fmt: skip
        await _attempt(session, query, result, addr, timeout, budget, max_seconds, recorder,
                       stop, tsig)  # fmt: skip
        budget[0] -= len(result.answers)
        budget[1] -= result.nbytes
        if result.error_kind not in ("eof", "timeout", "reset", "refused", "tcp"):
            break
        if attempt < attempts:
            earlier.append(result.attempt_dict())
    result.retries = earlier
    return result


async def _attempt(
    session: EndpointSession,
    query: dns.message.Message,
    result: XfrResult,
    server: Any,
    timeout: float,
    budget: list[int],
    max_seconds: float,
    recorder: PcapRecorder | None,
    stop: Callable[[], bool] | None,
    tsig: Any = None,
) -> None:
    from packetlab.measure.stream import StreamError, StreamTimeout, TcpStream, connect_failure

    wire = _render(query)  # signed: anew each attempt (its time), as dig
    verifier = None
    if tsig is not None:
        from packetlab.measure.dnstsig import Verifier, query_mac

        verifier = Verifier(tsig, query_mac(query))
        result.tsig_verified = True
    try:
        stream = await TcpStream.connect(
            session, server, result.port, timeout=timeout, recorder=recorder
        )
    except ControllerError as e:
        text = connect_failure(e, server, result.port)
        result.error = "TCP " + text
        result.error_kind = "refused" if "refused" in text else "tcp"
        return
    clock = session.reactor
    deadline = steady(clock) + max_seconds
    state = XfrState(result.serial)
    frames = Frames()
    warn_id = True
    try:
        ntag = stream.send(struct.pack(">H", len(wire)) + wire, ntag=True)
        assert ntag is not None
        sent_at: list[int] = []
        ntag.addCallbacks(lambda t: sent_at.append(t.time), lambda f: None)
        idle = steady(clock) + timeout  # dig's wait: +time after the last message
        while True:
            now = steady(clock)
            if stop is not None and stop():
                result.error = (f"interrupted after {len(result.answers)} records: the "
                                "transfer is incomplete")  # fmt: skip
                result.error_kind = "interrupted"
                return
            if now >= deadline:
                result.error = (
                    f"transfer of {result.zone} stopped after {max_seconds:g} s (the cap of "
                    f"an attempt), {len(result.answers)} records in"
                )
                result.error_kind = "limit"
                return
            if now >= idle:
                result.error = f"nothing from {result.server}#{result.port} within {timeout:g} s"
                result.error_kind = "timeout"
                return
            wait = min(idle, deadline) - now
            try:
                chunk = await stream.recv(wait if stop is None else min(wait, STOP_POLL_S))
            except StreamTimeout:
                continue  # which limit it was: said above
            except StreamError as e:
                result.error = str(e)
                result.error_kind = "reset"
                return
            if chunk is None:
                result.error = (
                    f"{result.server}#{result.port} closed the connection after "
                    f"{result.messages} messages, without the transfer's last SOA"
                )
                result.error_kind = "eof"
                return
            idle = steady(clock) + timeout
            for message in frames.feed(chunk.data):
                done = _take(result, query, message, state, budget, warn_id, verifier)
                if result.parts and result.parts[-1].get("notes"):
                    warn_id = False
                if result.error is None and done:
                    if sent_at and chunk.time >= sent_at[0]:
                        result.rtt_us = (chunk.time - sent_at[0]) / 1000
                    else:
                        result.query_time_us = max(chunk.time - stream.established_at, 0) / 1000
                if done or result.error is not None:
                    return
    finally:
        await stream.close()


def _take(
    result: XfrResult,
    query: dns.message.Message,
    wire: bytes,
    state: XfrState,
    budget: list[int],
    warn_id: bool,
    verifier: Any = None,
) -> bool:
    """One message of the transfer into `result`; True when the transfer is over (or
    failed: `result.error`/`result.failed`). `verifier`: its TSIG checked (dig's note
    on the part, `tsig_note`, when it fails)."""
    notes: list[str] = []
    if len(wire) < 12:
        result.error = "ERROR: short (< header size) message"
        result.error_kind = "mismatch"
        return True
    (msg_id,) = struct.unpack(">H", wire[:2])
    if msg_id != query.id:
        if not state.first_soa:
            result.error = f"ERROR: ID mismatch: expected ID {query.id}, got {msg_id}"
            result.error_kind = "mismatch"
            return True
        if warn_id:
            notes.append(f"WARNING: ID mismatch: expected ID {query.id}, got {msg_id}")
    if result.nbytes + len(wire) > budget[1]:
        result.error = (f"transfer of {result.zone} stopped at {result.nbytes} bytes in "
                        f"{result.messages} messages: the next would pass the cap of "
                        f"{budget[1]} bytes")  # fmt: skip
        result.error_kind = "limit"
        return True
    try:
        msg = _parse_message(wire)
    except (dns.exception.DNSException, ValueError) as e:
        result.error = f"malformed message from {result.server}#{result.port}: {_bind_reason(e)}"
        result.error_kind = "malformed"
        result.packet, result.reason = wire, _bind_reason(e)
        return True
    answers = _records(msg.answer)
    if len(result.answers) + len(answers) > budget[0]:
        result.error = (f"transfer of {result.zone} stopped at {len(result.answers)} records: "
                        f"the next message would pass the cap of {budget[0]} records "
                        "(max_records; pktlab run dns: --xfr-max N)")  # fmt: skip
        result.error_kind = "limit"
        return True
    if result.rcode is None:
        result.rcode = dns.rcode.to_text(msg.rcode())
    if _other_class(msg, wire):  # dig: BIND's best effort, said before the message
        notes.append(MALFORMED_NOTE)
    part = _head(msg, wire, len(answers), result.cookie)
    if notes:
        part["notes"] = notes
    if verifier is not None:
        words = verifier.check(wire)
        if words is not None:
            from packetlab.measure.dnstsig import verify_failure_note

            part["tsig_note"] = verify_failure_note(words)
            result.tsig_verified = False
    result.parts.append(part)
    result.answers += answers
    result.messages += 1
    result.nbytes += len(wire)
    rrs = [(int(rrset.rdtype), getattr(rd, "serial", None)) for rrset in msg.answer
           for rd in rrset]  # fmt: skip
    done = state.feed_message(rrs)
    result.records = state.records
    result.failed, result.style = state.failed, state.style
    return done
