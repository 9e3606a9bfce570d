"""A reply read as BIND reads it (`_parse`): its records and OPT into a `DnsResult`
(`_fill`), what dnspython refuses read with BIND's best effort (a record of another
class, a TSIG out of place, a TSIG error above 4095, a reply cut short past its question)
with dig's malformed-packet note, and BIND's words for a reply it cannot read
(`_Malformed`, `_bind_reason`)."""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterator
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
import dns.wire

from packetlab.measure.dnsquery import CO_BIT, COOKIE, opcode_text
from packetlab.measure.dnsrdata import WKS_MOST, bind_rdata
from packetlab.measure.dnsresult import DnsAnswer, DnsResult
from packetlab.measure.dnstext import presentation


def _records(section: list[Any]) -> list[DnsAnswer]:
    out = []
    for rrset in section:
        name = rrset.name.to_text()
        rtype = dns.rdatatype.to_text(rrset.rdtype)
        cls = dns.rdataclass.to_text(rrset.rdclass)
        for rd in rrset:
            out.append(DnsAnswer(name, rtype, rrset.ttl, presentation(rd), cls))
    return out


def _answers(msg: dns.message.Message) -> list[DnsAnswer]:
    return _records(msg.answer)


def _edns_of(msg: dns.message.Message, cookie: bytes | None = None) -> dict[str, Any] | None:
    """The reply's OPT; a COOKIE option is "good" when it starts with the client cookie
    sent (`cookie`), else "bad" (dig's words; no verdict when none was sent)."""
    if msg.edns < 0:
        return None
    options = []
    for opt in msg.options:
        raw = opt.to_wire() or b""
        option: dict[str, Any] = {"code": int(opt.otype), "data": raw.hex()}
        if option["code"] == COOKIE and cookie is not None:
            option["cookie"] = "good" if len(raw) >= 8 and raw[:8] == cookie[:8] else "bad"
        options.append(option)
    return {
        "version": msg.edns,
        "flags": [f for f, bit in (("do", dns.flags.DO), ("co", CO_BIT)) if msg.ednsflags & bit],
        "mbz": msg.ednsflags & 0x3FFF,  # as dig 9.18: the bits but DO and CO
        "udp": msg.payload,
        "options": options,
    }


def _fill(result: DnsResult, msg: dns.message.Message, wire: bytes) -> None:
    result.rcode = dns.rcode.to_text(msg.rcode())
    result.answers = _answers(msg)
    result.authority = _records(msg.authority)
    result.additional = _records(msg.additional)
    result.tsig = _records([msg.tsig]) if msg.tsig is not None else []
    result.flags = dns.flags.to_text(msg.flags).split()
    result.size = len(wire)
    result.id = msg.id
    result.opcode = opcode_text(int(msg.opcode()))
    if len(wire) >= 12:
        result.counts = struct.unpack(">4H", wire[4:12])
    result.edns = _edns_of(msg, result.cookie)
    if msg.question and msg.question[0].name.to_text() != result.qname:
        result.reply_qname = msg.question[0].name.to_text()  # (the same name but its case)
    if len(wire) >= 12 and not msg.flags & dns.flags.TC:
        pos, _, _, cut = _walk(wire)
        if not cut and _fewer(msg, wire):  # a record's data cut short: read up to it
            fault = rdata_fault(wire)
            if fault is not None and fault[0] == "short":
                pos, cut = fault[2], True
        result.extra_bytes = len(wire) - pos
        # what parsed of a message cut short, or with a TSIG out of its place, as dig shows
        # it (BIND's best effort)
        misplaced = bool(_misplaced_tsigs(wire))
        if cut or misplaced or _other_class(msg, wire):
            result.notes.append(MALFORMED_NOTE)
            # what dig +nobesteffort says of it instead (BIND's parser's result)
            result.lenient = ("TSIG in wrong location" if misplaced else
                              "unexpected end of input" if cut else "FORMERR")  # fmt: skip
            result.packet = wire
    for option in (result.edns or {}).get("options", []):
        if option.get("cookie") == "bad":  # dig's process_cookie, before it prints the reply
            sent = result.cookie or b""
            result.notes.append(COOKIE_MISMATCH if len(sent) >= 8 else COOKIE_SHORT)


def _fewer(msg: dns.message.Message, wire: bytes) -> bool:
    """Whether `msg` holds fewer records than its header counts (one record an RRset)."""
    held = sum(len(rrset) for rrset in [*msg.answer, *msg.authority, *msg.additional])
    held += (msg.opt is not None) + (msg.tsig is not None)
    return held < sum(struct.unpack(">3H", wire[6:12]))


MALFORMED_NOTE = "Warning: Message parser reports malformed message packet."
#: dig 9.18's lines for a reply's COOKIE that does not start with the client cookie sent
#: (`(bad)`), or for a client cookie sent shorter than 8 bytes (+cookie=HEX)
COOKIE_MISMATCH = "Warning: Client COOKIE mismatch"
COOKIE_SHORT = "Warning: COOKIE bad token (too short)"
COOKIE_NOTES = (COOKIE_MISMATCH, COOKIE_SHORT)


def _other_class(msg: dns.message.Message, wire: bytes) -> bool:
    """A record of another class than the question's (BIND's FORMERR, kept by its best
    effort: dig's malformed-packet warning): but OPT, TSIG, TKEY and SIG (SIG(0)), a KEY
    in a TKEY exchange, a question of class ANY, an UPDATE."""
    if msg.opcode() == dns.opcode.UPDATE:
        return False
    q = msg.question[0] if msg.question else None
    qclass: int | None = None if q is None else int(q.rdclass)
    tkey = q is not None and q.rdtype == dns.rdatatype.TKEY
    meta = {dns.rdatatype.OPT, dns.rdatatype.TSIG, dns.rdatatype.TKEY}
    heads: list[tuple[int, int, int, int]] = []
    _walk(wire, heads)
    for _, _, at, cls in heads:
        rtype = struct.unpack(">H", wire[at : at + 2])[0]
        if qclass is None and rtype not in meta:
            qclass = cls  # no question: the first record's class is the message's
        if rtype in meta or rtype == dns.rdatatype.SIG or (tkey and rtype == dns.rdatatype.KEY):
            continue
        if qclass not in (None, dns.rdataclass.ANY) and cls != qclass:
            return True
    return False


def _misplaced_tsigs(wire: bytes) -> list[int]:
    """Where the TYPE fields of the TSIG records out of their place are (BIND's BADTSIG:
    a TSIG must be the additional section's last record, of class ANY)."""
    heads: list[tuple[int, int, int, int]] = []
    _walk(wire, heads)
    out = []
    counts = struct.unpack(">4H", wire[4:12])
    for section, i, at, cls in heads:
        if struct.unpack(">H", wire[at : at + 2])[0] == dns.rdatatype.TSIG and (
            section != 3 or i != counts[3] - 1 or cls != dns.rdataclass.ANY
        ):
            out.append(at)
    return out


def _with_misplaced_tsigs(wire: bytes) -> dns.message.Message | None:
    """A reply whose TSIG is out of its place (dnspython refuses it: BadTSIG), as BIND's
    best effort keeps it: each such TSIG a record of its section. Each is read under a
    private type no record of the message has, then made a TSIG again."""
    import dns.rdata
    import dns.rrset

    at = _misplaced_tsigs(wire)
    heads: list[tuple[int, int, int, int]] = []
    _walk(wire, heads)
    used = {struct.unpack(">H", wire[h[2] : h[2] + 2])[0] for h in heads}
    marker = next((t for t in range(65534, 65279, -1) if t not in used), None)
    if not at or marker is None:
        return None
    patched = bytearray(wire)
    for a in at:
        patched[a : a + 2] = struct.pack(">H", marker)
    try:
        msg = dns.message.from_wire(bytes(patched), ignore_trailing=True, keyring=False,
                                    one_rr_per_rrset=True)  # fmt: skip
        for section in (msg.answer, msg.authority, msg.additional):
            for k, rrset in enumerate(section):
                if rrset.rdtype == marker:
                    rds = [dns.rdata.from_wire(rrset.rdclass, dns.rdatatype.TSIG, rd.data, 0,
                                               len(rd.data)) for rd in rrset]  # fmt: skip
                    section[k] = dns.rrset.from_rdata_list(rrset.name, rrset.ttl, rds)
    except (dns.exception.DNSException, ValueError):
        return None
    return msg


def _tsig_error_at(wire: bytes, at: int) -> int | None:
    """The offset of the error field of the TSIG whose TYPE field is at `at` (its data
    read from the front: algorithm name, times, MAC, original ID), or None when its data
    is too short to hold one."""
    length = struct.unpack(">H", wire[at + 8 : at + 10])[0]
    p, end = at + 10, min(at + 10 + length, len(wire))
    while p < end and wire[p] and wire[p] & 0xC0 != 0xC0:  # the algorithm's labels
        p += 1 + wire[p]
    p += 1 if p < end and not wire[p] else 2  # its root label, or a compression pointer
    if p + 10 > end:
        return None
    mac = struct.unpack(">H", wire[p + 8 : p + 10])[0]  # after time (6) and fudge (2)
    p += 10 + mac + 2  # the MAC, the original ID
    return p if p + 4 <= end else None


def _with_big_tsig_errors(wire: bytes, parse: Any) -> dns.message.Message | None:
    """A reply with a TSIG whose error is above 4095 (dnspython reads an error as an
    RCODE, 0..4095, and refuses the message; BIND shows the number): each such error read
    as 0 by `parse` (the reply's parser), then set back on the record read, in the wire's
    order. None when there is none (or it still does not parse)."""
    heads: list[tuple[int, int, int, int]] = []
    _walk(wire, heads)
    errors: list[int] = []
    patched = bytearray(wire)
    for _, _, at, _ in heads:
        if struct.unpack(">H", wire[at : at + 2])[0] != dns.rdatatype.TSIG:
            continue
        where = _tsig_error_at(wire, at)
        errors.append(-1 if where is None else struct.unpack(">H", wire[where : where + 2])[0])
        if errors[-1] > 4095 and where is not None:
            patched[where : where + 2] = b"\0\0"
    if not any(e > 4095 for e in errors):
        return None
    try:
        msg = parse(bytes(patched))
    except (dns.exception.DNSException, ValueError):
        return None
    if msg is None:
        return None
    read = [rd for section in (msg.answer, msg.authority, msg.additional) for rrset in section
            if rrset.rdtype == dns.rdatatype.TSIG for rd in rrset]  # fmt: skip
    read += list(msg.tsig or [])
    for rd, error in zip(read, errors, strict=False):
        if error > 4095:
            object.__setattr__(rd, "error", error)  # dnspython's rdata is frozen
    return msg


def _walk(
    wire: bytes,
    heads: list[tuple[int, int, int, int]] | None = None,
    starts: list[int] | None = None,
) -> tuple[int, int, tuple[int, int, int, int], bool]:
    """Where BIND's parser stops in `wire` (12 bytes at least): (its position, the start
    of the record it stopped in, the records read whole per section, whether it ran out
    of data). A record's name that runs past the end leaves the position at the record,
    its fixed fields after its name, its data after its fixed fields (dig's "N extra
    bytes at end" is the rest). A label of an unknown type stops it too (not cut short:
    then the message is bad, whatever it says). `heads`, when given, gets (section, index
    in it, the offset of its TYPE field, its CLASS) of each record read whole (not the
    question's); `starts` the offset where each of them begins."""
    counts = struct.unpack(">4H", wire[4:12])
    done = [0, 0, 0, 0]
    end = len(wire)

    def name_end(p: int) -> int | None:  # -1: a bad label type or pointer
        first = p
        while p < end:
            n = wire[p]
            if n == 0:
                return p + 1
            if n & 0xC0 == 0xC0:
                if p + 2 > end:
                    return None
                return p + 2 if pointed(first, struct.unpack(">H", wire[p : p + 2])[0]) else -1
            if n & 0xC0:
                return -1
            p += 1 + n
        return None

    def pointed(biggest: int, at: int) -> bool:
        """Whether the rest of a name, from a pointer (`at`) in a name that starts at
        `biggest`, reads as BIND's dns_name_fromwire reads it: each pointer before the
        last one's target (so no loop: BIND's bad compression pointer), in the message."""
        at &= 0x3FFF
        if at >= biggest:
            return False
        biggest = at
        while at < end:
            n = wire[at]
            if n == 0:
                return True
            if n & 0xC0 == 0xC0:
                if at + 2 > end:
                    return False
                at = struct.unpack(">H", wire[at : at + 2])[0] & 0x3FFF
                if at >= biggest:
                    return False
                biggest = at
            elif n & 0xC0:
                return False
            else:
                at += 1 + n
        return False

    pos = 12
    for section, count in enumerate(counts):
        fixed = 4 if section == 0 else 10
        for _ in range(count):
            after = name_end(pos)
            if after == -1:
                return pos, pos, (done[0], done[1], done[2], done[3]), False
            if after is None:
                return pos, pos, (done[0], done[1], done[2], done[3]), True
            if after + fixed > end:
                return after, pos, (done[0], done[1], done[2], done[3]), True
            data = 0 if section == 0 else struct.unpack(">H", wire[after + 8 : after + 10])[0]
            if after + fixed + data > end:
                return after + fixed, pos, (done[0], done[1], done[2], done[3]), True
            if heads is not None and section:
                cls = struct.unpack(">H", wire[after + 2 : after + 4])[0]
                heads.append((section, done[section], after, cls))
                if starts is not None:
                    starts.append(pos)
            pos = after + fixed + data
            done[section] += 1
    return pos, pos, (done[0], done[1], done[2], done[3]), False


class _Malformed(Exception):
    """A reply to our query (its ID, QR set) that does not parse as a DNS message:
    `reason` in BIND's words where it has them, `wire` the reply."""

    def __init__(self, reason: str, wire: bytes) -> None:
        super().__init__(f"{reason} ({len(wire)} bytes)")
        self.reason, self.wire = reason, wire


# BIND's words (isc_result_totext) for what dnspython's parse errors mean, so that
# dig's `;; Got bad packet: REASON` line reads the same; other errors keep dnspython's
_BIND_REASONS = {
    "BadPointer": "bad compression pointer",
    "BadLabelType": "bad label type",
    "LabelTooLong": "label too long",
    "NameTooLong": "name too long",
    "ShortHeader": "unexpected end of input",
    "TrailingJunk": "extra input data",
}


def _bind_reason(e: Exception) -> str:
    name = type(e).__name__
    if name in _BIND_REASONS:
        return _BIND_REASONS[name]
    if type(e) is dns.exception.FormError and str(e) == str(dns.exception.FormError()):
        return "unexpected end of input"  # dnspython's parser ran out of data
    return " ".join(str(e).split()).rstrip(".") or name  # dnspython's wrap


def _parse(
    query: dns.message.Message, wire: bytes, said: list[str] | None = None, stream: bool = False
) -> dns.message.Message | None:
    """The reply to `query`, or None for anything else (short, another ID, opcode or
    question), with dig's warning for it added to `said` (dig's recv_done checks, in its
    order; `stream`: over TCP, where dig's words for a short message or another ID are an
    ERROR and end the lookup). Raises _Malformed for a message with our ID that does not
    parse (a truncated one, TC set, may end anywhere: its header and question are kept;
    another one cut short after its question: what parsed, as BIND's best effort keeps it
    for dig)."""
    said = [] if said is None else said
    if len(wire) < 12:
        said.append("ERROR: short (< header size) message" if stream else
                    "Warning: short (< header size) message received")  # fmt: skip
        return None
    got, bits = struct.unpack(">HH", wire[:4])
    if got != query.id:
        said.append(f"{'ERROR' if stream else 'Warning'}: ID mismatch: expected ID "
                    f"{query.id}, got {got}")  # fmt: skip
        if stream:
            return None
    if not bits & 0x8000:
        said.append("Warning: query response not set")
    if got != query.id:
        return None
    # one record an RRset (BIND's DNS_MESSAGEPARSE_PRESERVEORDER, dig's): each in the
    # wire's order with its own TTL, a duplicate kept (dnspython would merge an RRset's
    # records, dropping duplicates, grouping them and giving all the smallest TTL); an
    # IXFR over UDP's SOAs each as it came
    # the options and the records' data as BIND reads them (bind_opt_error, dnsrdata)
    with generic_options(), bind_rdata():
        try:  # keyring=False: a TSIG is kept unchecked (dig without a key prints it so)
            msg = dns.message.from_wire(wire, ignore_trailing=True, question_only=False,
                                        keyring=False, one_rr_per_rrset=True)  # fmt: skip
        except (dns.exception.DNSException, ValueError) as e:
            why = _bind_reason(e)
            kept = _with_misplaced_tsigs(wire) if isinstance(e, dns.message.BadTSIG) else None
            if kept is None:  # a TSIG error above 4095? (None if there is none)
                kept = _with_big_tsig_errors(wire, _parse_signed)
            if kept is not None:
                msg = kept
            elif wire[2] & 0x02:  # TC: a truncated reply may not parse past the question
                try:
                    msg = dns.message.from_wire(wire, question_only=True)
                except (dns.exception.DNSException, ValueError):
                    raise _Malformed(why, wire) from None
            else:
                kept = _best_effort(wire)
                if kept is None:
                    fault = rdata_fault(wire)
                    if fault is not None and fault[0] == "long":
                        why = "extra input data"  # BIND's DNS_R_EXTRADATA (dnspython's own)
                    elif fault is not None and fault[0] == "formerr":
                        why = "FORMERR"  # BIND's DNS_R_FORMERR
                    raise _Malformed(why, wire) from None
                msg = kept
    if any(bind_opt_error(int(o.otype), o.to_wire() or b"") for o in msg.options):
        raise _Malformed(OPT_ERROR, wire)  # BIND's DNS_R_OPTERR: not even best effort
    if bad_owner(msg):
        raise _Malformed(BAD_OWNER, wire)  # BIND's DNS_R_BADOWNERNAME
    return msg if _same_question(query, msg, said) else None


BAD_OWNER = "bad owner name (check-names)"  # BIND's words for DNS_R_BADOWNERNAME
_BASE32HEX = {c: i for i, c in enumerate(b"0123456789abcdefghijklmnopqrstuv")}  # its values
#: base32hex without padding: the bits its last digit holds past the bytes, by the
#: digits' count modulo 8 (another count does not decode)
_SPARE_BITS = {0: 0, 2: 0x03, 4: 0x0F, 5: 0x01, 7: 0x07}


def bad_owner(msg: dns.message.Message) -> bool:
    """Whether a record of `msg` is an NSEC3 whose owner is no hash (`_hash_owner`): BIND
    refuses the message (a reply's, a zone transfer's: session 30, dig30)."""
    return any(rrset.rdtype == dns.rdatatype.NSEC3 and not _hash_owner(rrset.name)
               for rrset in [*msg.answer, *msg.authority, *msg.additional])  # fmt: skip


def _hash_owner(name: dns.name.Name) -> bool:
    """Whether an NSEC3's owner starts with a label that decodes as base32hex without
    padding, the bits past its bytes zero (BIND's checkowner_nsec3, which its message
    parser applies to every NSEC3: dig's `Got bad packet: bad owner name (check-names)`;
    dnspython took any name; session 29, dig29)."""
    label = name.labels[0].lower() if name.labels else b""
    spare = _SPARE_BITS.get(len(label) % 8)
    if spare is None or any(c not in _BASE32HEX for c in label):
        return False
    return not label or not _BASE32HEX[label[-1]] & spare


OPT_ERROR = "malformed OPT option"  # BIND's words for DNS_R_OPTERR
LLQ, ECS, EXPIRE, COOKIE_OPT, KEEPALIVE, KEY_TAG, EDE, CLIENT_TAG, SERVER_TAG = (
    1,
    8,
    9,
    10,
    11,
    14,
    15,
    16,
    17,
)


def bind_opt_error(code: int, data: bytes) -> bool:
    """Whether BIND 9.18 refuses an EDNS option as malformed (its fromwire_opt's checks,
    each seen against dig 9.18.49: `Got bad packet: malformed OPT option`): LLQ not 18
    bytes, CLIENT-SUBNET cut short or past its family's length or with bits set past its
    prefix, EXPIRE not 0 or 4 bytes, COOKIE not 8 or 16..40, KEY-TAG empty or odd, EDE
    under 2 bytes or its text not UTF-8, CLIENT-TAG and SERVER-TAG not 2 bytes. dnspython
    refuses some of these in its own words and takes the others (and refuses REPORT-
    CHANNEL's that BIND 9.18, not knowing it, takes): `generic_options`."""
    n = len(data)
    if code == LLQ:
        return n != 18
    if code == ECS:
        return _bad_ecs(data)
    if code == EXPIRE:
        return n not in (0, 4)
    if code == COOKIE_OPT:
        return n != 8 and not 16 <= n <= 40
    if code == KEY_TAG:
        return n == 0 or n % 2 == 1
    if code == EDE:
        if n < 2:
            return True
        try:
            data[2:].decode("utf-8")
        except UnicodeDecodeError:
            return True
        return False
    if code in (CLIENT_TAG, SERVER_TAG):
        return n != 2
    return False


def _bad_ecs(data: bytes) -> bool:
    if len(data) < 4:
        return True
    family, source, scope = struct.unpack(">HBB", data[:4])
    widest = {0: 0, 1: 32, 2: 128}.get(family)
    if widest is None or source > widest or scope > widest:
        return True
    size = (source + 7) // 8
    if size + 4 != len(data):
        return True
    last = data[3 + size] if size else 0
    return bool(size and source % 8 and last & (0xFF >> (source % 8)))


@contextlib.contextmanager
def generic_options() -> Iterator[None]:
    """dnspython reading every EDNS option as a GenericOption (its bytes), so that a
    reply is refused as BIND refuses it (`bind_opt_error`), not as dnspython's option
    classes would (a CLIENT-SUBNET, EDE or COOKIE it finds bad, in its words; a REPORT-
    CHANNEL BIND does not know)."""
    import dns.edns

    saved = {t: dns.edns.get_option_class(t) for t in dns.edns.OptionType}
    for otype in saved:
        dns.edns.register_type(dns.edns.GenericOption, otype)
    try:
        yield
    finally:
        for otype, cls in saved.items():
            dns.edns.register_type(cls, otype)


def _same_question(query: dns.message.Message, msg: dns.message.Message, said: list[str]) -> bool:
    """dig's checks after the parse: the opcode, then each question (none: taken), with
    dig's warning for one that differs."""
    if msg.opcode() != query.opcode():
        said.append(f"Warning: Opcode mismatch: expected {opcode_text(query.opcode())}, "
                    f"got {opcode_text(msg.opcode())}")  # fmt: skip
        return False
    if not query.question:  # +header-only: nothing to compare with
        return True
    asked = query.question[0]
    for q in msg.question:
        if (q.name, q.rdtype, q.rdclass) != (asked.name, asked.rdtype, asked.rdclass):
            rtype = dns.rdatatype.to_text(q.rdtype)
            said.append(f";; Question section mismatch: got {q.name.to_text(True)}/{rtype}/"
                        f"{dns.rdataclass.to_text(q.rdclass)}")  # fmt: skip
            return False
    return True


def _stream_reply(
    query: dns.message.Message, body: bytes, result: DnsResult, over: str
) -> dns.message.Message | None:
    """`_parse` of the one message a stream exchange (TCP, TLS, HTTP) brought back: None
    with `result`'s error and kind set (dig's words, `over` the transport's name) when it
    is malformed or not the reply."""
    said: list[str] = []
    try:
        msg = _parse(query, body, said, stream=True)
    except _Malformed as e:
        result.notes[:0] = said
        result.error = f"malformed reply from {result.server}#{result.port} over {over}: {e}"
        result.error_kind = "malformed"
        result.packet, result.reason = e.wire, e.reason
        return None
    if msg is None:  # dig: its warning, and the lookup ends (no other server asked)
        result.notes[:0] = said[:-1]
        result.error = said[-1]
        result.error_kind = "mismatch"
    else:
        result.notes[:0] = said  # a reply without QR, taken as dig takes it
    return msg


def _parse_signed(wire: bytes) -> dns.message.Message | None:
    """A reply as `_parse` reads it first, or a TSIG out of its place as BIND keeps it."""
    try:
        return dns.message.from_wire(wire, ignore_trailing=True, keyring=False,
                                     one_rr_per_rrset=True)  # fmt: skip
    except dns.message.BadTSIG:
        return _with_misplaced_tsigs(wire)


_RAN_OUT = str(dns.exception.FormError())  # dnspython's parser ran out of data
#: how far past a record's RDLENGTH its data is tried (zeros) to tell data cut short
#: within its RDLENGTH (BIND: unexpected end) from data that is wrong (a name is at most
#: 255 bytes; SOA's fixed fields 20)
_RDATA_REACH = 300


#: types whose data BIND's fromwire refuses as FORMERR (not cut short: no best effort)
#: once their fixed head is there: head bytes, or -1 for a name first (NSEC's next name)
_FORMERR_HEAD: dict[int, int] = {
    dns.rdatatype.EUI48: 0,
    dns.rdatatype.EUI64: 0,
    dns.rdatatype.X25: 0,
    dns.rdatatype.NSEC3PARAM: 0,
    dns.rdatatype.NSEC3: 0,
    dns.rdatatype.HIP: 0,
    dns.rdatatype.SSHFP: 2,
    dns.rdatatype.AMTRELAY: 2,
    dns.rdatatype.WKS: 5,
    dns.rdatatype.CSYNC: 6,
    dns.rdatatype.NSEC: -1,
    dns.rdatatype.NID: 0,  # (session 29: BIND's FORMERR for any other length than 10,
    dns.rdatatype.L32: 0,  # 6 and 10 bytes, even empty)
    dns.rdatatype.L64: 0,
}
#: AMTRELAY's data length by its relay type (0 none, 1 IPv4, 2 IPv6; 3 a name: read as
#: one, cut short or followed by data as any name is)
_AMTRELAY_SIZES = {0: 2, 1: 6, 2: 18}


def _reads(cls: int, rtype: int, wire: bytes, at: int, size: int) -> bool:
    try:
        kind = dns.rdataclass.RdataClass.make(cls), dns.rdatatype.RdataType.make(rtype)
        dns.rdata.from_wire(*kind, wire, at, size)
    except (dns.exception.DNSException, ValueError, IndexError, struct.error):
        return False
    return True


def _ran_out(cls: int, rtype: int, wire: bytes, at: int, size: int) -> bool:
    """Whether dnspython's parser ran out of a record's data while it read it (BIND's
    unexpected end), not data left over past what it read (BIND's extra input data: the
    same FormError, raised as the restricted parser closes)."""
    parser = dns.wire.Parser(wire, at)
    kind = dns.rdataclass.RdataClass.make(cls), dns.rdatatype.RdataType.make(rtype)
    ran_out = False
    # (not returned from within: the restricted parser's close raises for data left,
    # suppressed here once the flag is set)
    errors = (dns.exception.DNSException, ValueError, IndexError, struct.error)
    with contextlib.suppress(*errors), parser.restrict_to(size):
        try:
            dns.rdata.from_wire_parser(*kind, parser)
        except dns.exception.FormError as e:
            ran_out = type(e) is dns.exception.FormError and str(e) == _RAN_OUT
    return ran_out


def _formerr(rtype: int, wire: bytes, at: int, size: int) -> bool:
    head = _FORMERR_HEAD.get(rtype)
    if head is None or (rtype == dns.rdatatype.WKS and size > WKS_MOST):  # (WKS: extra data)
        return False
    if rtype == dns.rdatatype.AMTRELAY and size >= 2:  # BIND's amtrelay fromwire (session 29)
        wanted = _AMTRELAY_SIZES.get(wire[at + 1] & 0x7F)
        return wanted is not None and size != wanted
    if rtype == dns.rdatatype.HIP and size >= 4:  # BIND: FORMERR while the HIT and key do
        hit, key = wire[at], struct.unpack(">H", wire[at + 2 : at + 4])[0]  # not fit; a
        return size < 4 + hit + key  # rendezvous server's name cut: unexpected end
    if head >= 0:
        return size >= head
    try:  # a name first: FORMERR once it ends within the data
        _, used = dns.name.from_wire(wire[: at + size], at)
    except dns.exception.DNSException:
        return False
    return used <= size


def rdata_fault(wire: bytes) -> tuple[str, int, int, tuple[int, int, int, int]] | None:
    """The first record whose data BIND's rdata parser refuses within its RDLENGTH (the
    records themselves read whole, `_walk`): ("short", its start, its data's start, the
    records read whole before it per section) when the data needs more bytes than its
    RDLENGTH (BIND's fromwire: ISC_R_UNEXPECTEDEND, which dig's best effort keeps the
    records before, "N extra bytes at end" from its data on: a TXT string or an SOA past
    the end of its data, an A of 3 bytes); ("long", ...) when a shorter RDLENGTH would
    read (DNS_R_EXTRADATA, `extra input data`: an A of 5 bytes); ("formerr", ...) for
    the types BIND refuses as FORMERR past their head (`_FORMERR_HEAD`: an SSHFP whose
    fingerprint is not its type's length, an EUI48 not of 6 bytes); None when each
    reads, or its fault is none of these. OPT and TSIG are read elsewhere. Compared
    with dig 9.18.49 on 196 records (49 types, each one byte short, one byte long, one
    byte alone, empty; docs/dns.md "Session 28")."""
    with bind_rdata():  # (each record's data as BIND reads it)
        return _rdata_fault(wire)


def _rdata_fault(wire: bytes) -> tuple[str, int, int, tuple[int, int, int, int]] | None:
    heads: list[tuple[int, int, int, int]] = []
    starts: list[int] = []
    _walk(wire, heads, starts)
    done = [struct.unpack(">H", wire[4:6])[0], 0, 0, 0]  # (the question read whole, heads)
    for (section, _, at, cls), start in zip(heads, starts, strict=True):
        rtype, _, _, size = struct.unpack(">HHIH", wire[at : at + 10])
        data = at + 10
        if rtype in (dns.rdatatype.OPT, dns.rdatatype.TSIG) or _reads(cls, rtype, wire, data, size):
            done[section] += 1
            continue
        before = (done[0], done[1], done[2], done[3])
        if _formerr(rtype, wire, data, size):
            return "formerr", start, data, before
        if _ran_out(cls, rtype, wire, data, size):
            return "short", start, data, before
        ahead = wire[: data + size] + bytes(_RDATA_REACH)
        if any(_reads(cls, rtype, ahead, data, size + n) for n in range(1, _RDATA_REACH)):
            return "short", start, data, before
        if any(_reads(cls, rtype, wire, data, n) for n in range(size)):
            return "long", start, data, before
        return None
    return None


def _best_effort(wire: bytes) -> dns.message.Message | None:
    """A message cut short after its question (a record or the OPT ends early), or with a
    record whose data is cut short within its RDLENGTH (`rdata_fault`), as BIND's parser
    keeps it for dig: the records read whole before it (its header's counts stay the
    wire's in DnsResult.counts), or None when it is not merely cut short."""
    _, start, done, cut = _walk(wire)
    counts = struct.unpack(">4H", wire[4:12])
    if not cut and done[0] == counts[0]:
        fault = rdata_fault(wire)
        if fault is not None and fault[0] == "short":
            _, start, _, done = fault
            cut = True
    if not cut or done[0] != counts[0]:
        return None
    try:
        return dns.message.from_wire(
            wire[:4] + struct.pack(">4H", *done) + wire[12:start],
            keyring=False,
            one_rr_per_rrset=True,
        )
    except (dns.exception.DNSException, ValueError):
        return None


def _verify(result: DnsResult, query: dns.message.Message, wire: bytes) -> None:
    """A signed query's reply checked as dig checks it: a failure is dig's note
    (`Couldn't verify signature: WORDS`) and `tsig_verified` False."""
    if result.tsig_key is None:
        return
    from packetlab.measure.dnstsig import Verifier, query_mac, verify_failure_note

    words = Verifier(result.tsig_key, query_mac(query)).check(wire)
    result.tsig_verified = words is None
    if words is not None:
        result.notes.append(verify_failure_note(words))
