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
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
from twisted.internet.defer import Deferred

from packetlab.controller import (
    AddressLike,
    ControllerError,
    EndpointSession,
    RequestFailed,
    deferred_api,
    parse_address,
    read_system_info,
)
from packetlab.measure.flight import Waker
from packetlab.measure.pcap import PcapRecorder, local_udp_end
from packetlab.measure.resolvconf import resolver_of
from packetlab.wire import Ndata, Ntag

if TYPE_CHECKING:
    from packetlab.measure.capture import RawCapture
    from packetlab.measure.stream import TcpStream

__all__ = [
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
        if self.query_wire is not None:
            out["query"] = self.query_wire.hex()
            if self.query_before:
                out["query_before"] = [w.hex() for w in self.query_before]
        if self.error is not None:
            out["error"] = self.error
            out["error_kind"] = self.error_kind
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


SPLIT = 56  # dig's +split default: base64 and hex fields cut into 56-character words
SPLIT_MULTILINE = 44  # +multiline's: 80 columns less the rdata column (32), less 2, in 4s
_B64_TYPES = {"DNSKEY", "CDNSKEY", "KEY", "RRSIG", "SIG", "CERT", "OPENPGPKEY", "DHCID",
              "IPSECKEY", "TKEY", "TSIG"}  # fmt: skip
#: BIND's names of the DNSSEC algorithms (dns_secalg_format), in +multiline's key comments
SECALG = {1: "RSAMD5", 2: "DH", 3: "DSA", 5: "RSASHA1", 6: "NSEC3DSA", 7: "NSEC3RSASHA1",
          8: "RSASHA256", 10: "RSASHA512", 12: "ECCGOST", 13: "ECDSAP256SHA256",
          14: "ECDSAP384SHA384", 15: "ED25519", 16: "ED448", 252: "INDIRECT",
          253: "PRIVATEDNS", 254: "PRIVATEOID"}  # fmt: skip
_SOA_FIELDS = ("serial", "refresh", "retry", "expire", "minimum")


def _words(text: str, split: int, sep: str) -> str:
    if split <= 0:
        return text
    return sep.join(text[i : i + split] for i in range(0, len(text), split))


def _hexwords(data: bytes, split: int = SPLIT, sep: str = " ") -> str:
    return _words(data.hex().upper(), split, sep) or "-"


def ttl_words(seconds: int) -> str:
    """BIND's verbose TTL (dns_ttl_totext): `1 day 1 hour 1 minute 1 second`, `0 seconds`."""
    parts = []
    for n, unit in ((seconds // 604800, "week"), (seconds // 86400 % 7, "day"),
                    (seconds // 3600 % 24, "hour"), (seconds // 60 % 60, "minute")):  # fmt: skip
        if n:
            parts.append(f"{n} {unit}{'' if n == 1 else 's'}")
    if seconds % 60 or not parts:
        n = seconds % 60
        parts.append(f"{n} second{'' if n == 1 else 's'}")
    return " ".join(parts)


def presentation(
    rd: Any,
    split: int | None = None,
    linebreak: str | None = None,
    *,
    comments: bool | None = None,
    crypto: bool = True,
    unknown: bool = False,
) -> str:
    """An rdata as dig (BIND 9.18) prints it: dnspython's text, with base64 and hex
    fields in `split`-character words (dig's +split; 0: not cut) and hex in upper case
    as BIND writes them. With `linebreak` (dig's +multiline: a newline and the indent to
    the rdata column) the long types as BIND's multi-line form: in parentheses, a field
    group a line, SOA's and DNSKEY's comments; the others on one line, as BIND.

    dig's +[no]rrcomments (`comments`; default: with +multiline only): SOA's and
    DNSKEY's comments (on one line: DNSKEY's after its key); +nocrypto (`crypto`
    False): a key as `[key id = N]`, a signature or DS digest as `[omitted]`;
    +unknownformat (`unknown`): RFC 3597's `\\# N HEX` for every type."""
    rtype = dns.rdatatype.to_text(rd.rdtype)
    if isinstance(rd, dns.rdata.GenericRdata) or unknown:  # KEYDATA; dig +unknownformat
        data = rd.data if isinstance(rd, dns.rdata.GenericRdata) else rd.to_wire()
        return _unknown(data, split, linebreak)
    if comments is None:
        comments = linebreak is not None
    if linebreak is not None:
        width = SPLIT_MULTILINE if split is None else split
        multi = _multiline(rd, rtype, width, linebreak, comments, crypto)
        if multi is not None:
            return multi
    split = SPLIT if split is None else split
    if (comments or not crypto) and rtype in ("DNSKEY", "CDNSKEY", "KEY"):
        head, key, note = _key_parts(rd, rtype, split, " ", crypto)
        return f"{head} {key}" + (f" {note}" if comments else "")
    if not crypto and rtype in ("RRSIG", "SIG"):
        return " ".join([*str(rd.to_text(chunksize=0)).split(" ")[:8], "[omitted]"])
    if not crypto and rtype in ("DS", "CDS", "DLV"):
        return f"{rd.key_tag} {int(rd.algorithm)} {rd.digest_type} [omitted]"
    if rtype in ("HIP", "TKEY", "TSIG"):
        return _bind_meta(rd, rtype, split, " ", False)
    if rtype == "OPENPGPKEY":  # dnspython's does not cut it
        import base64

        return _words(base64.b64encode(rd.key).decode(), split, " ")
    if rtype in _B64_TYPES:
        return str(rd.to_text(chunksize=split))
    if rtype == "ZONEMD":
        return f"{rd.serial} {rd.scheme} {rd.hash_algorithm} {_hexwords(rd.digest, split)}"
    if rtype in ("SVCB", "HTTPS"):  # BIND quotes alpn's and unknown keys' values only
        import re

        return re.sub(r'(^| )(mandatory|port|ipv4hint|ipv6hint)="([^" ]*)"', r"\1\2=\3",
                      str(rd.to_text()))  # fmt: skip
    if rtype == "LOC":  # BIND: 1 m or more in whole metres (not the altitude), less in cm
        words = str(rd.to_text()).split(" ")
        words[-3:] = [w.removesuffix(".00m") + "m" if w.endswith(".00m") and w != "0.00m"
                      else w for w in words[-3:]]  # fmt: skip
        return " ".join(words)
    if rtype in ("DS", "CDS", "DLV"):
        return f"{rd.key_tag} {int(rd.algorithm)} {rd.digest_type} {_hexwords(rd.digest, split)}"
    if rtype in ("TLSA", "SMIMEA"):
        return f"{rd.usage} {rd.selector} {rd.mtype} {_hexwords(rd.cert, split)}"
    if rtype == "SSHFP":
        return f"{rd.algorithm} {rd.fp_type} {_hexwords(rd.fingerprint, split)}"
    if rtype == "NSEC3PARAM":
        salt = rd.salt.hex().upper() or "-"
        return f"{rd.algorithm} {rd.flags} {rd.iterations} {salt}"
    if rtype == "NSEC3":
        return " ".join(_nsec3_words(rd))
    return str(rd.to_text())


def _nsec3_words(rd: Any) -> list[str]:
    words = str(rd.to_text()).split(" ")
    words[3] = words[3].upper()  # salt
    words[4] = words[4].upper()  # next hashed owner (base32hex)
    return words


def _unknown(data: bytes, split: int | None, linebreak: str | None) -> str:
    """RFC 3597's form of a type dnspython does not know, as BIND writes it (its
    unknown_totext; dig 9.18 writes KEYDATA so too): `\\# N` and the hex in upper case,
    in `split`-character words (+multiline: in parentheses, a word a line)."""
    if not data:
        return "\\# 0"
    if linebreak is None:
        return f"\\# {len(data)} {_hexwords(data, SPLIT if split is None else split)}"
    words = _hexwords(data, SPLIT_MULTILINE if split is None else split, linebreak)
    return f"\\# {len(data)} ( {words} )"


def _key_parts(rd: Any, rtype: str, split: int, lb: str, crypto: bool) -> tuple[str, str, str]:
    """A DNSKEY's (CDNSKEY's, KEY's) head, key (+nocrypto: `[key id = N]`) and BIND's
    comment after it (`; KSK; alg = ECDSAP256SHA256 ; key id = 3925`)."""
    import base64

    import dns.dnssec

    head = f"{rd.flags} {rd.protocol} {int(rd.algorithm)}"
    key_id = dns.dnssec.key_id(rd)
    key = _words(base64.b64encode(rd.key).decode(), split, lb) if crypto else (
        f"[key id = {key_id}]"
    )  # fmt: skip
    alg = SECALG.get(int(rd.algorithm), str(int(rd.algorithm)))
    info = "ZSK" if not rd.flags & 1 else ("revoked KSK" if rd.flags & 0x80 else "KSK")
    tail = f" ; {info}" if rtype != "KEY" else ""
    return head, key, f"{tail}; alg = {alg} ; key id = {key_id}"


def _multiline(
    rd: Any, rtype: str, split: int, lb: str, comments: bool = True, crypto: bool = True
) -> str | None:
    """BIND's +multiline text of the types it writes over several lines (None: one line);
    `comments` (+rrcomments, on by default with it) and `crypto` as `presentation`'s."""
    import base64

    def b64(data: bytes) -> str:
        return _words(base64.b64encode(data).decode(), split, lb)

    if rtype == "SOA":
        lines = [f"{rd.mname} {rd.rname} ("]
        if not comments:  # BIND: the fields a line, the parenthesis after the last
            return lb.join([*lines, *(str(getattr(rd, k)) for k in _SOA_FIELDS)]) + ")"
        for i, key in enumerate(_SOA_FIELDS):
            value = getattr(rd, key)
            note = f" ({ttl_words(value)})" if i else ""
            lines.append(f"{value:<10} ; {key}{note}")
        return lb.join([*lines, ")"])
    if rtype in ("DNSKEY", "CDNSKEY", "KEY"):
        if rtype == "KEY" and rd.flags & 0xC000 == 0xC000:  # no key
            return f"{rd.flags} {rd.protocol} {int(rd.algorithm)}"
        head, key, note = _key_parts(rd, rtype, split, lb, crypto)
        if not comments:
            return f"{head} ({lb}{key} )"
        return f"{head} ({lb}{key}{lb}){note}"
    if rtype in ("RRSIG", "SIG"):
        words = str(rd.to_text(chunksize=0)).split(" ")
        sig = b64(rd.signature) if crypto else "[omitted]"
        return f"{' '.join(words[:4])} ({lb}{' '.join(words[4:8])}{lb}{sig} )"
    if rtype in ("DS", "CDS", "DLV"):
        head = f"{rd.key_tag} {int(rd.algorithm)} {rd.digest_type}"
        digest = _hexwords(rd.digest, split, lb) if crypto else "[omitted]"
        return f"{head} ({lb}{digest} )"
    if rtype in ("TLSA", "SMIMEA"):
        return f"{rd.usage} {rd.selector} {rd.mtype} ({lb}{_hexwords(rd.cert, split, lb)} )"
    if rtype == "SSHFP":
        return f"{rd.algorithm} {rd.fp_type} ({lb}{_hexwords(rd.fingerprint, split, lb)} )"
    if rtype == "NSEC3":
        words = _nsec3_words(rd)
        return f"{' '.join(words[:4])} ({lb}{words[4]}{lb}{' '.join(words[5:])} )"
    if rtype == "OPENPGPKEY":
        return f"( {b64(rd.key)} )"
    if rtype == "CERT":
        head = " ".join(str(rd.to_text(chunksize=0)).split(" ")[:3])
        return f"{head} ({lb}{b64(rd.certificate)} )"
    if rtype == "IPSECKEY":
        head = " ".join(str(rd.to_text(chunksize=0)).split(" ")[:4])
        return f"( {head}{lb}{b64(rd.key)} )"
    if rtype == "DHCID":  # BIND's comment: identifier type, digest type, digest length
        data = rd.data
        note = (
            f" ; {int.from_bytes(data[:2], 'big')} {data[2]} {len(data) - 3}"
            if len(data) > 3
            else ""
        )
        return f"( {b64(data)} ){note}"
    if rtype == "ZONEMD":
        head = f"{rd.serial} {rd.scheme} {rd.hash_algorithm}"
        return f"{head} ({lb}{_hexwords(rd.digest, split, lb)} )"
    if rtype in ("HIP", "TKEY", "TSIG"):
        return _bind_meta(rd, rtype, split, lb, True)
    return None


#: BIND's names of TSIG/TKEY error codes (dns_tsigrcode_totext): the RCODEs, then
#: RFC 8945's; any other code as its number
TSIG_RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP",
               5: "REFUSED", 6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH",
               10: "NOTZONE", 11: "RESERVED11", 12: "RESERVED12", 13: "RESERVED13",
               14: "RESERVED14", 15: "RESERVED15", 16: "BADSIG", 17: "BADKEY", 18: "BADTIME",
               19: "BADMODE", 20: "BADNAME", 21: "BADALG", 22: "BADTRUNC"}  # fmt: skip


def _bind_meta(rd: Any, rtype: str, split: int, lb: str, multiline: bool) -> str:
    """HIP, TKEY and TSIG as BIND 9.18 writes them (one line: `lb` is a space; with
    +multiline the line break and indent): HIP's HIT in upper-case hex and its key whole,
    each rendezvous server after a line break, all in parentheses when multi-line; TKEY's
    and TSIG's error by name, the key (MAC) and other data after their sizes, in
    `split`-character words (0: whole), TKEY's in parentheses when multi-line; TSIG's
    other data after its size and a space, in 56-character words (whole with +split=0),
    as dig 9.18 prints them."""
    import base64

    def b64(data: bytes, width: int, sep: str) -> str:
        return _words(base64.b64encode(data).decode(), width, sep)

    if rtype == "HIP":
        head = f"{rd.algorithm} {rd.hit.hex().upper()}"
        parts = [head, base64.b64encode(rd.key).decode(), *(str(n) for n in rd.servers)]
        text = lb.join(parts)
        return f"( {text} )" if multiline else text
    opening, closing = (" (", " ) ") if multiline else ("", " ")
    alg = str(rd.algorithm)
    if rtype == "TKEY":
        error = TSIG_RCODES.get(int(rd.error), str(int(rd.error)))
        out = (f"{alg} {rd.inception} {rd.expiration} {rd.mode} {error} {len(rd.key)}"
               f"{opening}{lb}{b64(rd.key, split, lb)}{closing}{len(rd.other)}")  # fmt: skip
        if rd.other:
            out += f"{opening}{lb}{b64(rd.other, split, lb)}{' )' if multiline else ''}"
        return out
    error = TSIG_RCODES.get(int(rd.error), str(int(rd.error)))
    other = b64(rd.other, SPLIT if split else 0, " ")  # dig 9.18: 56 whatever +split says
    if not rd.mac:  # BIND: no MAC, nor its parentheses (a BADKEY/BADSIG reply's)
        return (f"{alg} {rd.time_signed} {rd.fudge} 0 {rd.original_id} {error} "
                f"{len(rd.other)} {other}")  # fmt: skip
    return (f"{alg} {rd.time_signed} {rd.fudge} {len(rd.mac)}{opening}{lb}"
            f"{b64(rd.mac, split, lb)}{closing}{rd.original_id} {error} {len(rd.other)} "
            f"{other}")  # fmt: skip


def _meta_from_text(rtype: str, cls: str, data: str) -> Any:
    """A TKEY or TSIG read back from BIND's one-line text (`_bind_meta`'s), or None:
    dnspython's text of them has no sizes and the error as a number."""
    import base64

    words = data.split()
    back = {name: code for code, name in TSIG_RCODES.items()}

    def blob(at: int, size: int) -> tuple[bytes, int]:
        need, text = 4 * ((size + 2) // 3), ""
        while len(text) < need:
            text += words[at]
            at += 1
        return base64.b64decode(text), at

    try:
        alg = dns.name.from_text(words[0])
        if rtype == "TKEY":
            inception, expiration, mode = int(words[1]), int(words[2]), int(words[3])
            error = back.get(words[4]) if words[4] in back else int(words[4])
            key, at = blob(6, int(words[5]))
            other, _ = blob(at + 1, int(words[at]))
            from dns.rdtypes.ANY.TKEY import TKEY

            return TKEY(dns.rdataclass.from_text(cls), dns.rdatatype.TKEY, alg, inception,
                        expiration, mode, error, key, other)  # fmt: skip
        time_signed, fudge = int(words[1]), int(words[2])
        mac, at = blob(4, int(words[3]))
        original_id = int(words[at])
        code = back[words[at + 1]] if words[at + 1] in back else int(words[at + 1])
        other, _ = blob(at + 3, int(words[at + 2]))
        from dns.rdtypes.ANY.TSIG import TSIG

        rd = TSIG(dns.rdataclass.from_text(cls), dns.rdatatype.TSIG, alg, time_signed, fudge,
                  mac, original_id, code if code <= 4095 else 0, other)  # fmt: skip
        if code > 4095:  # not an RCODE to dnspython (`_with_big_tsig_errors`)
            object.__setattr__(rd, "error", code)
        return rd
    except (IndexError, ValueError, dns.exception.DNSException):
        return None


def restyle(
    data: str,
    rtype: str,
    cls: str = "IN",
    split: int | None = None,
    linebreak: str | None = None,
    *,
    comments: bool | None = None,
    crypto: bool = True,
    unknown: bool = False,
) -> str:
    """A record's data (`presentation`'s one-line text, as in DnsAnswer) in another of
    dig's styles (+split=N, +multiline, +[no]rrcomments, +nocrypto, +unknownformat:
    `presentation`'s): read back with dnspython and written again; the text as it was
    if it does not read back."""
    plain = comments is None or (not comments and linebreak is None)
    if split is None and linebreak is None and plain and crypto and not unknown:
        return data
    import dns.rdata

    how: dict[str, Any] = {"comments": comments, "crypto": crypto, "unknown": unknown}
    if rtype in ("TKEY", "TSIG"):  # BIND's text of them, not dnspython's
        rd = _meta_from_text(rtype, cls, data)
        return data if rd is None else presentation(rd, split, linebreak, **how)
    try:
        rd = dns.rdata.from_text(cls, rtype, data)
    except Exception:  # dnspython raises many kinds for text it cannot read
        return data
    return presentation(rd, split, linebreak, **how)


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
    if len(wire) >= 12 and not msg.flags & dns.flags.TC:
        pos, _, _, cut = _walk(wire)
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


MALFORMED_NOTE = "Warning: Message parser reports malformed message packet."


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
        msg = dns.message.from_wire(bytes(patched), ignore_trailing=True, keyring=False)
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
    wire: bytes, heads: list[tuple[int, int, int, int]] | None = None
) -> tuple[int, int, tuple[int, int, int, int], bool]:
    """Where BIND's parser stops in `wire` (12 bytes at least): (its position, the start
    of the record it stopped in, the records read whole per section, whether it ran out
    of data). A record's name that runs past the end leaves the position at the record,
    its fixed fields after its name, its data after its fixed fields (dig's "N extra
    bytes at end" is the rest). A label of an unknown type stops it too (not cut short:
    then the message is bad, whatever it says). `heads`, when given, gets (section, index
    in it, the offset of its TYPE field, its CLASS) of each record read whole (not the
    question's)."""
    counts = struct.unpack(">4H", wire[4:12])
    done = [0, 0, 0, 0]
    end = len(wire)

    def name_end(p: int) -> int | None:  # -1: a bad label type
        while p < end:
            n = wire[p]
            if n == 0:
                return p + 1
            if n & 0xC0 == 0xC0:
                return p + 2 if p + 2 <= end else None
            if n & 0xC0:
                return -1
            p += 1 + n
        return None

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


def _parse(query: dns.message.Message, wire: bytes) -> dns.message.Message | None:
    """The reply to `query`, or None for anything else (another ID or question). Raises
    _Malformed for a message with our ID and QR set that does not parse (a truncated one,
    TC set, may end anywhere: its header and question are kept; another one cut short
    after its question: what parsed, as BIND's best effort keeps it for dig)."""
    ixfr = (
        bool(query.question) and query.question[0].rdtype == dns.rdatatype.IXFR
    )  # +notcp: each SOA as it came
    try:  # keyring=False: a TSIG is kept unchecked (dig without a key prints it so)
        msg = dns.message.from_wire(wire, ignore_trailing=True, question_only=False,
                                    keyring=False, one_rr_per_rrset=ixfr)  # fmt: skip
    except (dns.exception.DNSException, ValueError) as e:
        why = _bind_reason(e)
        if len(wire) < 12 or struct.unpack(">H", wire[:2])[0] != query.id or not wire[2] & 0x80:
            return None
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
                raise _Malformed(why, wire) from None
            msg = kept
    return msg if query.is_response(msg) else None


def _parse_signed(wire: bytes) -> dns.message.Message | None:
    """A reply as `_parse` reads it first, or a TSIG out of its place as BIND keeps it."""
    try:
        return dns.message.from_wire(wire, ignore_trailing=True, keyring=False)
    except dns.message.BadTSIG:
        return _with_misplaced_tsigs(wire)


def _best_effort(wire: bytes) -> dns.message.Message | None:
    """A message cut short after its question (a record or the OPT ends early), as BIND's
    parser keeps it for dig: the records read whole (its header's counts stay the wire's
    in DnsResult.counts), or None when it is not merely cut short."""
    _, start, done, cut = _walk(wire)
    counts = struct.unpack(">4H", wire[4:12])
    if not cut or done[0] != counts[0]:
        return None
    try:
        return dns.message.from_wire(
            wire[:4] + struct.pack(">4H", *done) + wire[12:start], keyring=False
        )
    except (dns.exception.DNSException, ValueError):
        return None


async def _default_server(session: EndpointSession, family: int | None) -> str:
    info = await read_system_info(session)
    servers = [str(a) for a in info.dns4 if family in (None, 4)]
    servers += [str(a) for a in info.dns6 if family in (None, 6)]
    if not servers:
        which = "" if family is None else f" IPv{family}"
        raise DnsError(
            f"the endpoint has no{which} DNS server configured (VMemLocalDNSAddrStrIPv4/IPv6); "
            "give one with server="
        )
    return servers[0]


def _icmp_filter(version: int, rport: int) -> str:
    """ICMP(v6) port unreachable quoting a UDP datagram to port `rport` (a 20-byte quoted
    IPv4 header, no IPv6 extension headers; the quote is checked again in Python)."""
    if version == 4:
        return f"icmp[0] == 3 and icmp[1] == 3 and icmp[30:2] == {rport}"
    return f"icmp6 and ip6[40] == 1 and ip6[41] == 4 and ip6[90:2] == {rport}"


WATCH_S = 20.0  # a watch serves the queries of this long (its ncap runs 30 s more)


class _IcmpWatch:
    """One raw capture per session, server and port, shared by the queries to it: the
    ICMP port unreachable quoting a datagram to the server goes to the query whose local
    port it quotes (`waiting`). Its ncap ends by itself (`open_capture`'s slack)."""

    def __init__(self, cap: RawCapture, server: Any, port: int, until: float) -> None:
        from packetlab.measure.capture import parse_ndata

        self.cap, self.server, self.port, self.until = cap, server, port, until
        self.waiting: dict[int, Callable[[Any], None]] = {}
        self._parse = parse_ndata
        cap.sock.buffering = False
        cap.sock.add_callback(self._note)

    def usable(self, now: float, needed: float) -> bool:
        return not self.cap.sock.ended and now + needed < self.until

    def _note(self, note: Any) -> None:
        parsed = self._parse(note)
        reply = parsed[0] if parsed else None
        if reply is None or not reply.from_destination:
            return
        key = reply.key
        if key.proto == 17 and key.dst == self.server and key.dport == self.port:
            feed = self.waiting.get(key.sport)
            if feed is not None:
                feed(reply)


# session -> (server, port) -> its watch, or why there is none (asked once per session)
_Watches = dict[tuple[str, int], "_IcmpWatch | str | Deferred[None]"]
_WATCHES: WeakKeyDictionary[EndpointSession, _Watches] = WeakKeyDictionary()


def _after(d: Deferred[None]) -> Deferred[None]:
    """Fires (None) when `d` has, leaving `d`'s own result alone."""
    done: Deferred[None] = Deferred()

    def fire(result: Any) -> Any:
        done.callback(None)
        return result

    d.addBoth(fire)
    return done


async def _watch_for(
    session: EndpointSession, server: Any, port: int, needed: float
) -> _IcmpWatch | str:
    """The session's ICMP watch for `server:port` (opened now if none is usable), or why
    there can be none (no raw sockets, no filter): then not asked again."""
    from packetlab.measure.capture import MeasureError, close_capture, open_capture

    mine = _WATCHES.get(session)
    if mine is None:  # a watch holds its session: the entry goes when the session ends
        mine = _WATCHES[session] = {}
        session.when_closed().addCallback(lambda _: _WATCHES.pop(session, None))
    key = (str(server), port)
    known = mine.get(key)
    while isinstance(known, Deferred):  # another query is opening it: that one, then
        await _after(known)
        known = mine.get(key)
    now = session.reactor.seconds()
    if isinstance(known, str) or (known is not None and known.usable(now, needed)):
        return known
    if known is not None:  # expired: its successor first, then it goes
        Deferred.fromCoroutine(close_capture(known.cap)).addErrback(lambda f: None)
    opening: Deferred[None] = Deferred()
    mine[key] = opening  # concurrent queries wait for this one: one raw socket, not many
    got: _IcmpWatch | str
    try:
        # An endpoint has one raw socket per interface and family (ESKTINUSE for a
        # second): a watch of another server no query is using goes first (dig's next
        # server after a closed or silent one: each gets its watch in turn).
        for other_key, other in list(mine.items()):
            if (isinstance(other, _IcmpWatch) and not other.waiting
                    and other.server.version == server.version):  # fmt: skip
                del mine[other_key]
                try:
                    await close_capture(other.cap)
                except ControllerError:
                    pass
        cap = await open_capture(
            session, server, src=None, duration_s=WATCH_S + needed,
            expression=_icmp_filter(server.version, port),
        )  # fmt: skip
        got = _IcmpWatch(cap, server, port, now + WATCH_S + needed)
    except MeasureError as e:
        got = str(e)
    except (RequestFailed, ValueError, RuntimeError) as e:  # refused, or no libpcap filter
        got = str(e)
    except BaseException:
        del mine[key]
        opening.callback(None)
        raise
    mine[key] = got
    opening.callback(None)
    return got


INBOX_MAX = 4 << 20  # bytes of datagrams a query holds unread; past it they are dropped


class _Inbox:
    """The notes of the query's UDP socket and of the ICMP capture, in arrival order. A
    flood of datagrams faster than they are read is dropped past INBOX_MAX bytes (as a
    full socket buffer drops them): the socket has no queue of its own to pause on."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.items: deque[tuple[str, Any]] = deque()
        self.waker = Waker(reactor)  # (its deadline reads what is waiting first)
        self.held = 0  # bytes of the datagrams in `items`
        self.dropped = 0

    def feeder(self, kind: str) -> Callable[[Any], None]:
        def put(note: Any) -> None:
            size = len(note.data) if kind == "udp" and isinstance(note, Ndata) else 0
            if size and self.held + size > INBOX_MAX:
                self.dropped += 1
                return
            self.held += size
            self.items.append((kind, note))
            self.waker.poke()

        return put

    async def next(self, deadline: float) -> tuple[str, Any] | None:
        while not self.items:
            if deadline <= self.reactor.seconds():
                return None
            await self.waker.sleep(deadline)
        kind, note = self.items.popleft()
        if kind == "udp" and isinstance(note, Ndata):
            self.held -= len(note.data)
        return kind, note


NO_WATCH = (
    "a closed port cannot be told from a silent server: the endpoint's UDP sockets report "
    "no ICMP port unreachable"
)


def _stamp(sent: dict[int, int], attempt: int) -> Callable[[Ntag], None]:
    def got(n: Ntag) -> None:
        sent[attempt] = n.time

    return got


async def _over_udp(
    session: EndpointSession,
    query: dns.message.Message,
    result: DnsResult,
    server: Any,
    timeout: float,
    attempts: int,
    recorder: PcapRecorder | None = None,
    icmp: bool = True,
) -> dns.message.Message | None:
    wire = _render(query)
    reactor = session.reactor
    inbox = _Inbox(reactor)
    watch: _IcmpWatch | None = None
    why: str | None = "not asked"
    local: tuple[str, int] | None = None
    chosen = recorder is not None or icmp  # a port we choose, so a capture can name it
    sktid = session.free_sktid()
    try:
        for n in range(5):
            lport = random.randrange(49152, 65536) if chosen else 0
            try:
                sock = await session.nopen_udp(
                    sktid, family=server.version, lport=lport, buffer=False
                )
                break
            except RequestFailed:
                if not chosen or n == 4:
                    raise
                sktid = session.free_sktid()  # that port is taken: another one
        sock.add_callback(inbox.feeder("udp"))
        if icmp:
            found = await _watch_for(session, server, result.port, timeout * attempts)
            watch, why = (None, found) if isinstance(found, str) else (found, None)
        if watch is not None:
            watch.waiting[lport] = inbox.feeder("icmp")
            local = (str(watch.cap.src), lport)
        elif recorder is not None:
            local = ((await local_udp_end(session, server))[0], lport)
        sent: dict[int, int] = {}  # try -> endpoint send time (ns)
        recorded: set[int] = set()

        def record_sends() -> None:  # each query once in the pcap, when its ntag came
            if recorder is None or local is None:
                return
            for a in sorted(set(sent) - recorded):
                recorded.add(a)
                recorder.udp(sent[a], local[0], local[1], str(server), result.port, wire)

        for attempt in range(attempts):
            result.tries = attempt + 1
            queued = await session.nsend(sktid, wire, to=(server, result.port), ntag=True)
            if queued.ntag is not None:
                queued.ntag.addCallbacks(_stamp(sent, attempt), lambda f: None)
            deadline = reactor.seconds() + timeout
            while (got := await inbox.next(deadline)) is not None:
                kind, note = got
                if kind == "udp" and not isinstance(note, Ndata):
                    continue
                if kind == "icmp":  # the watch checked the quote: our port, the server's
                    result.error = (
                        f"connection refused: {result.server}#{result.port} answered with "
                        f"ICMP port unreachable (from {note.src}); nothing listens there"
                    )
                    result.error_kind = "refused"
                    return None
                t_sent = sent.get(attempt)
                if recorder is not None and local is not None:
                    record_sends()
                    recorder.udp(note.time, str(server), result.port, local[0], local[1], note.data)
                try:
                    msg = _parse(query, note.data)
                except _Malformed as e:
                    result.error = f"malformed reply from {result.server}#{result.port}: {e}"
                    result.error_kind = "malformed"
                    result.packet, result.reason = e.wire, e.reason
                    return None
                if msg is None:
                    continue
                if t_sent is not None:
                    result.rtt_us = (note.time - t_sent) / 1000
                _fill(result, msg, note.data)
                _verify(result, query, note.data)
                return msg
            record_sends()
    finally:
        if watch is not None:
            watch.waiting.pop(lport, None)
        try:
            await session.nclose(sktid)
        except ControllerError:
            pass
    lost = f"no answer from {result.server} over UDP ({attempts} x {timeout:g} s)"
    if watch is None and why not in ("not asked", None):
        lost += f"; {NO_WATCH}, and none could be captured: {why}"
    result.error = lost
    result.error_kind = "timeout"
    return None


TCP_MAX = 2 + 65535  # a length prefix and the longest DNS message


class _TcpCap:
    """Drops what a TCP server sends past TCP_MAX bytes: it is not read, and a flood of it
    would fill the socket's queue, which pauses the session's reads (the query's ntag
    and nclose answers too: the query would hang)."""

    def __init__(self, stream: TcpStream) -> None:
        self.stream, self.seen = stream, 0

    def __call__(self, note: object) -> None:
        if isinstance(note, Ndata):
            if self.seen >= TCP_MAX:
                self.stream.sock.buffering = False  # this note and the next are dropped
            self.seen += len(note.data)


async def _over_tcp(
    session: EndpointSession,
    query: dns.message.Message,
    result: DnsResult,
    server: AddressLike,
    timeout: float,
    recorder: PcapRecorder | None = None,
) -> None:
    # Only here: a query over UDP (most) does not load the TCP stream (docs/performance.md).
    from packetlab.measure.stream import StreamError, TcpStream, connect_failure

    wire = _render(query)
    result.proto = "tcp"
    result.tries = 1
    try:
        stream = await TcpStream.connect(
            session, server, result.port, timeout=timeout, recorder=recorder
        )
    except ControllerError as e:
        result.error = "TCP " + connect_failure(e, server, result.port)
        result.error_kind = "refused" if "refused" in result.error else "tcp"
        return
    stream.sock.add_callback(_TcpCap(stream))
    try:
        ntag = stream.send(struct.pack(">H", len(wire)) + wire, ntag=True)
        head = await stream.read_exactly(2, timeout)
        (length,) = struct.unpack(">H", head.data)
        body = await stream.read_exactly(length, timeout)
        try:
            msg = _parse(query, body.data)
        except _Malformed as e:
            result.error = f"malformed reply from {result.server}#{result.port} over TCP: {e}"
            result.error_kind = "malformed"
            result.packet, result.reason = e.wire, e.reason
            return
        if msg is None:
            result.error = f"{result.server} answered over TCP with a message that is not the reply"
            result.error_kind = "malformed"
            return
        assert ntag is not None
        sent = await ntag
        # A TCP ntag is stamped once send() returned; on a loaded endpoint that can be after
        # the answer's kernel receive stamp: then the round trip is not known (None).
        if head.time >= sent.time:
            result.rtt_us = (head.time - sent.time) / 1000
        else:  # dig's query time all the same: from the connection's establishment
            result.query_time_us = max(head.time - stream.established_at, 0) / 1000
        _fill(result, msg, body.data)
        _verify(result, query, body.data)
    except StreamError as e:
        result.error = str(e)
        result.error_kind = "tcp"
    finally:
        await stream.close()


def _render(query: dns.message.Message) -> bytes:
    """The query's wire; signed (dig -k/-y), as BIND writes it (`dnstsig.render`)."""
    if query.tsig is None:
        return bytes(query.to_wire())
    from packetlab.measure.dnstsig import render

    return render(query)


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


NSID, COOKIE = 3, 10  # EDNS option codes (RFC 5001, RFC 7873)
ECS, EXPIRE, KEEPALIVE, PADDING = 8, 9, 11, 12  # RFC 7871, 7314, 7828, 7830
PADDING_MAX = 512  # dig's bound for +padding
Z_BIT = 0x0040  # the header's reserved bit (dig +zflag)
CO_BIT = 0x4000  # the EDNS flag dig 9.18.49 calls co (+coflag: compact denial of existence)


@dataclass(frozen=True, slots=True)
class QueryBits:
    """dig's switches for what else goes in a query: header bits (+aaflag, +adflag (on by
    default, as dig), +cdflag, +raflag, +tcflag, +zflag), +opcode=N, +header-only (no
    question section), and EDNS options in dig's order after NSID: +subnet (the
    CLIENT-SUBNET option's data, `subnet_option`), the cookie, +expire, +keepalive,
    +ednsopt=CODE[:HEX]'s, then +padding=N (a PADDING option that makes the message a
    multiple of N bytes); +ednsflags=N, +coflag (EDNS flag bits), +qid=N (the message
    ID), +noednsnegotiation (BADVERS not asked again with version 0)."""

    aa: bool = False
    ad: bool = True
    cd: bool = False
    ra: bool = False
    tc: bool = False
    z: bool = False
    opcode: int = 0
    header_only: bool = False
    subnet: bytes | None = None
    expire: bool = False
    keepalive: bool = False
    padding: int = 0
    ednsflags: int = 0  # +ednsflags=N: the EDNS flags but DO and CO (dig: those are its own)
    coflag: bool = False
    ednsopts: tuple[tuple[int, bytes], ...] = ()  # +ednsopt=CODE[:HEX], after dig's own
    qid: int | None = None  # +qid=N: the message ID (default: random)
    ednsneg: bool = True  # +noednsnegotiation: a BADVERS answer is not asked again
    besteffort: bool = True  # +nobesteffort: a reply BIND reads only with best effort is bad

    def with_edns(self) -> bool:
        """Whether these ask for an OPT record (dig: +subnet does even after +noedns)."""
        return self.subnet is not None


DIG_QUERY = QueryBits()


def subnet_option(text: str) -> bytes:
    """dig's +subnet=ADDR[/PREFIX] as the CLIENT-SUBNET option's data (RFC 7871): family,
    source prefix, scope 0, the address cut to its prefix's bytes, the bits past it
    cleared; `0` is 0.0.0.0/0. ValueError for one that is no address."""
    import ipaddress

    addr, _, plen = text.partition("/")
    if text == "0":
        return struct.pack(">HBB", 1, 0, 0)
    ip = ipaddress.ip_address(addr)
    bits = ip.max_prefixlen if not plen else int(plen) if plen.isdigit() else -1
    if not 0 <= bits <= ip.max_prefixlen:
        raise ValueError(f"bad prefix length {plen!r}")
    net = ipaddress.ip_network(f"{ip}/{bits}", strict=False)
    data = net.network_address.packed[: (bits + 7) // 8]
    return struct.pack(">HBB", 1 if ip.version == 4 else 2, bits, 0) + data


def _make_query(
    name: dns.name.Name,
    rtype: str,
    edns: int | None,
    payload: int,
    dnssec: bool,
    rd: bool,
    rdclass: str = "IN",
    nsid: bool = False,
    cookie: bytes | None = None,
    bits: QueryBits = DIG_QUERY,
) -> dns.message.Message:
    import dns.edns

    if (dnssec or bits.with_edns()) and edns is None:
        edns = 0  # as dig: +dnssec (and +subnet) turns EDNS on
    options: list[dns.edns.Option] = []
    if edns is not None:  # as dig: the options go in an OPT record, none without EDNS
        if nsid:
            options.append(dns.edns.GenericOption(dns.edns.OptionType.NSID, b""))
        if bits.subnet is not None:
            options.append(dns.edns.GenericOption(dns.edns.OptionType(ECS), bits.subnet))
        if cookie is not None:
            options.append(dns.edns.GenericOption(dns.edns.OptionType.COOKIE, cookie))
        options += [dns.edns.GenericOption(dns.edns.OptionType(code), b"") for code, on in
                    ((EXPIRE, bits.expire), (KEEPALIVE, bits.keepalive)) if on]  # fmt: skip
        options += [dns.edns.GenericOption(dns.edns.OptionType.make(code), data)
                    for code, data in bits.ednsopts]  # fmt: skip
    query = dns.message.make_query(
        name,
        rtype,
        dns.rdataclass.from_text(rdclass),
        use_edns=False if edns is None else edns,
        payload=payload,
        want_dnssec=dnssec,
        options=options or None,
    )
    query.id = random.randrange(0x10000) if bits.qid is None else bits.qid
    if edns is not None and (bits.ednsflags or bits.coflag):  # as dig: DO and CO its own
        flags = bits.ednsflags & ~(dns.flags.DO | CO_BIT) | (dns.flags.DO if dnssec else 0)
        query.use_edns(edns, flags | (CO_BIT if bits.coflag else 0), payload, options=options)
    if not bits.ad:
        query.flags &= ~dns.flags.AD
    else:
        query.flags |= dns.flags.AD  # as dig 9.18 (+adflag by default)
    for on, flag in ((bits.aa, dns.flags.AA), (bits.cd, dns.flags.CD), (bits.ra, dns.flags.RA),
                     (bits.tc, dns.flags.TC), (bits.z, Z_BIT)):  # fmt: skip
        if on:
            query.flags |= flag
    if not rd:
        query.flags &= ~dns.flags.RD
    if bits.opcode:
        query.set_opcode(dns.opcode.Opcode(bits.opcode) if bits.opcode in OPCODE_NAMES
                         else bits.opcode)  # type: ignore[arg-type]  # fmt: skip
    if bits.header_only:
        query.question = []
    if edns is not None and bits.padding:
        _pad(query, options, bits.padding)
    return query


#: dig's names of the opcodes (BIND's opcodetext); the others RESERVEDn
OPCODE_NAMES = {0: "QUERY", 1: "IQUERY", 2: "STATUS", 4: "NOTIFY", 5: "UPDATE"}


def opcode_text(code: int) -> str:
    return OPCODE_NAMES.get(code, f"RESERVED{code}")


def _pad(query: dns.message.Message, options: list[Any], block: int) -> None:
    """dig's +padding=N: a PADDING option last, of the length that makes the message
    (without a TSIG) a multiple of N bytes, as BIND's renderer pads it."""
    import dns.edns

    def padded(fill: int) -> None:
        pad = dns.edns.GenericOption(dns.edns.OptionType.PADDING, bytes(fill))
        query.use_edns(query.edns, query.ednsflags, query.payload, options=[*options, pad])

    padded(0)
    padded((-len(query.to_wire())) % block)


def as_ixfr(query: dns.message.Message, serial: int, rdclass: str = "IN") -> None:
    """dig 9.18's IXFR request (over TCP, or over UDP with +notcp): no flag set, the
    client's SOA (`ZONE 0 CLASS SOA . . SERIAL 0 0 0 0`) in the authority section."""
    import dns.rrset

    if not 0 <= serial <= 0xFFFFFFFF:
        raise DnsError(f"IXFR serial {serial} out of range (0..4294967295)")
    query.flags = dns.flags.Flag(0)
    zone = query.question[0].name
    query.authority.append(dns.rrset.from_text(zone, 0, rdclass, "SOA", f". . {serial} 0 0 0 0"))


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
) -> DnsResult:
    """Ask `server` (default: the endpoint's first configured DNS server, from its
    memory; of IP version `family` when given) for `qname`/`qtype` from the endpoint.

    EDNS: `edns` True (version 0), False (none) or a version number (a BADVERS answer is
    asked again with version 0, as dig); `payload` is the UDP size offered, `dnssec` sets
    the DO bit (and EDNS). Over UDP a lost query is sent again (`attempts` in all,
    `timeout` s each) and a truncated answer is asked again over TCP (unless
    `tcp_fallback` is off). With `icmp` and an endpoint with raw sockets, an ICMP port
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
    sent are kept (`query_wire`; dig +qr prints them).
    """
    if expect_opt is None:
        expect_opt = isinstance(cookie, bytes)
    rtype = "IXFR" if ixfr_serial is not None else parse_qtype(qtype)
    qclass = parse_qclass(qclass)
    if cookie is True:
        cookie = random.randbytes(8)
    elif isinstance(cookie, bytes) and not (len(cookie) == 8 or 16 <= len(cookie) <= 40):
        raise DnsError(f"a COOKIE is 8 bytes, or 16 to 40 with the server's; got {len(cookie)}")
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
    earlier: list[bytes] = []  # keep_query: the queries of the rounds before (BADVERS)
    for _ in range(2):  # a second round only after BADVERS
        query = _make_query(name, rtype, version, payload, dnssec, recursion, qclass, nsid,
                            sent_cookie, bits)  # fmt: skip
        if ixfr_serial is not None:
            as_ixfr(query, ixfr_serial, qclass)
        if tsig is not None:
            from packetlab.measure.dnstsig import sign

            sign(query, tsig)
        result = DnsResult(name.to_text(), rtype, str(addr), port, "udp", notes=result.notes,
                           qclass=qclass, cookie=sent_cookie, tsig_key=tsig)  # fmt: skip
        if keep_query:
            result.query_wire, result.query_before = _render(query), earlier
        if tcp:
            await _over_tcp(session, query, result, addr, timeout, recorder)
        else:
            msg = await _over_udp(session, query, result, addr, timeout, attempts, recorder, icmp)
            if msg is not None and msg.flags & dns.flags.TC and tcp_fallback:
                notes = [*result.notes, "Truncated, retrying in TCP mode."]
                result = DnsResult(result.qname, rtype, result.server, port, "tcp",
                                   truncated=True, notes=notes, qclass=qclass,
                                   cookie=sent_cookie, tsig_key=tsig,
                                   query_wire=result.query_wire,
                                   query_before=result.query_before)  # fmt: skip
                await _over_tcp(session, query, result, addr, timeout, recorder)
            elif msg is not None and msg.flags & dns.flags.TC:
                result.truncated = True
        if not bits.besteffort and result.lenient is not None and result.error is None:
            _refuse_lenient(result)  # dig +nobesteffort: the bad packet, not what parsed
        if result.rcode == "BADVERS" and version and bits.ednsneg:
            result.notes.append("BADVERS, retrying with EDNS version 0.")
            version = 0
            if result.query_wire is not None:
                earlier = [*earlier, result.query_wire]
            continue
        break
    if expect_opt and result.error is None and result.edns is None:
        result.notes.append(NO_OPT_NOTE)  # dig: a cookie of the lookup's, and no OPT came
    return result


NO_OPT_NOTE = "expected opt record in response"


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
    PADDING option shown empty, as dig prints the query before padding it."""
    msg = dns.message.from_wire(wire, keyring=False)
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
