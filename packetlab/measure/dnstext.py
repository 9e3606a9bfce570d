"""Records as BIND writes them: the presentation format with dig's switches (+split,
+multiline, +nocrypto, +unknownformat, +rrcomments; `presentation`), a record's text
written again in another of those forms (`restyle`), TTLs in words (`ttl_words`)."""

from __future__ import annotations

import time
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
_SVC_KEYS = {"dohpath": 7, "ohttp": 8, "docpath": 10}  # SVCB keys BIND 9.18 does not name


def _words(text: str, split: int, sep: str) -> str:
    if split <= 0:
        return text
    return sep.join(text[i : i + split] for i in range(0, len(text), split))


def _hexwords(data: bytes, split: int = SPLIT, sep: str = " ") -> str:
    return _words(data.hex().upper(), split, sep) or "-"


def _b64words(data: bytes, split: int, sep: str) -> str:
    import base64

    return _words(base64.b64encode(data).decode(), split, sep)


def sig_time(value: int, now: float | None = None) -> str:
    """An RRSIG's (SIG's) 32-bit time as BIND writes it (dns_time32_totext): the instant
    within 2**31 seconds (68 years) of now that has those low 32 bits, serial arithmetic
    (RFC 4034 3.1.5), as `YYYYMMDDHHMMSS`: an expiration more than 68 years ahead is
    written in the past (2099 seen from 2026: 1963), as dig does."""
    import datetime

    clock = int(time.time() if now is None else now)
    ahead = (value - clock + 2**31) % 2**32 - 2**31  # (int32_t)(value - now), isc_serial_gt
    when = datetime.datetime(1970, 1, 1) + datetime.timedelta(seconds=clock + ahead)
    return when.strftime("%Y%m%d%H%M%S")


def _svc_key(number: int, param: Any) -> str:
    """A SVCB parameter BIND 9.18 does not name, as it writes one: `keyN`, and its wire
    value quoted, `"` and `\\` escaped, bytes outside printable ASCII as `\\DDD`."""
    import io

    out = io.BytesIO()
    if param is not None:  # (dnspython: None, or an empty value, for a key without one)
        param.to_wire(out)
    value = out.getvalue()
    if not value:
        return f"key{number}"
    text = "".join(
        "\\" + chr(b) if b in b'"\\' else chr(b) if 32 <= b < 127 else f"\\{b:03d}" for b in value
    )
    return f'key{number}="{text}"'


def _sig_times_as_numbers(data: str) -> str:
    """An RRSIG's (SIG's) text with its times as their 32-bit numbers: `sig_time` may
    have written one before 1970 (1963), which dnspython does not read back."""
    import calendar
    import datetime

    words = data.split(" ")
    for i in (4, 5):
        if i < len(words) and len(words[i]) == 14 and words[i].isdigit():
            when = datetime.datetime.strptime(words[i], "%Y%m%d%H%M%S")
            words[i] = str(calendar.timegm(when.timetuple()) % 2**32)
    return " ".join(words)


def _sig_words(rd: Any) -> list[str]:
    """An RRSIG's (SIG's) fields before its signature, as BIND writes them: its times by
    `sig_time` (dnspython's are the 32-bit values read as after 1970)."""
    words = str(rd.to_text(chunksize=0)).split(" ")[:8]
    words[4:6] = [sig_time(rd.expiration), sig_time(rd.inception)]
    return words


def key_tag(rd: Any) -> int:
    """A DNSKEY's (KEY's) key tag as BIND 9.18 computes it (dst_region_computeid): RFC 4034
    Appendix B's sum for every algorithm, RSAMD5's too (dnspython's key_id gives RSAMD5
    the modulus' bits of B.1, which BIND 9.18, without RSAMD5, does not)."""
    wire = rd.to_wire()
    if len(wire) % 2:
        wire += b"\0"
    total = sum(int.from_bytes(wire[i : i + 2], "big") for i in range(0, len(wire), 2))
    total += (total >> 16) & 0xFFFF
    return total & 0xFFFF


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
    if rtype in ("RRSIG", "SIG"):  # BIND: SIG's signature even with +nocrypto
        omit = not crypto and rtype == "RRSIG"
        sig = "[omitted]" if omit else _b64words(rd.signature, split, " ")
        return " ".join([*_sig_words(rd), sig])
    if not crypto and rtype in ("DS", "CDS", "DLV"):
        return f"{rd.key_tag} {int(rd.algorithm)} {rd.digest_type} [omitted]"
    if rtype in ("HIP", "TKEY", "TSIG"):
        return _bind_meta(rd, rtype, split, " ", False)
    if not crypto and rtype == "OPENPGPKEY":  # BIND's +nocrypto (session 29)
        return "[omitted]"
    if not crypto and rtype == "ZONEMD":
        return f"{rd.serial} {rd.scheme} {rd.hash_algorithm} [omitted]"
    if rtype == "OPENPGPKEY":  # dnspython's does not cut it
        import base64

        return _words(base64.b64encode(rd.key).decode(), split, " ")
    if rtype in _B64_TYPES:
        return str(rd.to_text(chunksize=split))
    if rtype == "ZONEMD":
        return f"{rd.serial} {rd.scheme} {rd.hash_algorithm} {_hexwords(rd.digest, split)}"
    if rtype in ("SVCB", "HTTPS"):  # BIND quotes alpn's and unknown keys' values only
        import re

        text = re.sub(r'(^| )(mandatory|port|ipv4hint|ipv6hint|ech)="([^" ]*)"', r"\1\2=\3",
                      str(rd.to_text()))  # fmt: skip
        for name, number in _SVC_KEYS.items():  # BIND 9.18 names keys 0..6 only
            if number in rd.params:
                bind = _svc_key(number, rd.params[number]).replace(
                    "\\", "\\\\"
                )  # (a re.sub template)
                text = re.sub(rf'(^| ){name}(="(?:[^"\\]|\\.)*"|=\S*)?(?= |$)', rf"\1{bind}",
                              text)  # fmt: skip
        return text
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
    if rtype in ("NID", "L64"):  # BIND: the locator's groups in %x, no leading zeros
        groups = str(rd.to_text()).split(" ")[1].split(":")
        return f"{rd.preference} " + ":".join(f"{int(g, 16):x}" for g in groups)
    if rtype == "GPOS":  # BIND: each field quoted
        return " ".join(f'"{w}"' for w in str(rd.to_text()).split(" "))
    if rtype == "NSEC3PARAM":
        salt = rd.salt.hex().upper() or "-"
        return f"{rd.algorithm} {rd.flags} {rd.iterations} {salt}"
    if rtype == "NSEC3":
        return " ".join(_nsec3_words(rd))
    if rtype == "WKS":  # BIND: no blank after the protocol when no port is set
        return str(rd.to_text()).rstrip(" ")
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

    head = f"{rd.flags} {rd.protocol} {int(rd.algorithm)}"
    key_id = key_tag(rd)
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
    if rtype in ("RRSIG", "SIG"):  # BIND: SIG's "(" after its expiration, RRSIG's before
        words = _sig_words(rd)
        sig = b64(rd.signature) if crypto or rtype == "SIG" else "[omitted]"
        cut = 5 if rtype == "SIG" else 4
        return f"{' '.join(words[:cut])} ({lb}{' '.join(words[cut:])}{lb}{sig} )"
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
    if rtype == "OPENPGPKEY":  # (+nocrypto: BIND omits the key, session 29)
        return f"( {b64(rd.key) if crypto else '[omitted]'} )"
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
        return f"{head} ({lb}{_hexwords(rd.digest, split, lb) if crypto else '[omitted]'} )"
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


#: RFC 1035's types of names BIND writes as names (`dnsrdata`): dnspython reads no text
#: of them
_NAME_TYPES = ("MD", "MF", "MB", "MG", "MR", "MINFO")


def _names_unknown(data: str, split: int | None, linebreak: str | None) -> str:
    """MD..MINFO's names in RFC 3597's form (+unknownformat), as BIND writes them."""
    try:
        wire = b"".join(dns.name.from_text(w).to_wire() or b"" for w in data.split())
    except dns.exception.DNSException:
        return data
    return _unknown(wire, split, linebreak)


def _locator_groups(data: str) -> str:
    """An NID's or L64's text as dnspython reads it: each group of 4 hex digits."""
    words = data.split(" ")
    if len(words) == 2:
        words[1] = ":".join(g.rjust(4, "0") for g in words[1].split(":"))
    return " ".join(words)


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
    if rtype in ("RRSIG", "SIG"):
        data = _sig_times_as_numbers(data)
    if rtype in _NAME_TYPES:  # (dnspython reads no text of them; BIND: one line always)
        return _names_unknown(data, split, linebreak) if unknown else data
    if rtype in ("NID", "L64"):  # BIND's groups without their leading zeros: dnspython's
        data = _locator_groups(data)
    if (cls, rtype) == ("HS", "A"):  # BIND's HS A is IN's (dnspython has none: dnsrdata)
        cls = "IN"
    try:
        rd = dns.rdata.from_text(cls, rtype, data)
    except Exception:  # dnspython raises many kinds for text it cannot read
        return data
    return presentation(rd, split, linebreak, **how)
