"""dig's text for records and errors, line by line: BIND's columns (`Style`, `rr_line`,
`question_line`), the OPT pseudosection (`_opt_lines`), a packet's hex dump, the lines
of a query that got no answer (`error_lines`)."""

from __future__ import annotations

import re

from packetlab.cli import run_dns_switches as switches
from packetlab.cli.run_command import Record


def _pad(column: int, to: int) -> tuple[str, int]:
    """BIND's indent(): tabs (8 wide), then spaces, from `column` to `to`; at least one."""
    to = max(to, column + 1)
    tabs = to // 8 - column // 8
    if tabs > 0:
        return "\t" * tabs + " " * (to - to // 8 * 8), to
    return " " * (to - column), to


#: dig 9.18's names of the header's status (dig.c's rcodetext, not BIND's library's):
#: 0..16, RESERVED11..15 among them, and BADCOOKIE (23); any other is `?N` (+yaml: N)
DIG_RCODES = ("NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN",
              "YXRRSET", "NXRRSET", "NOTAUTH", "NOTZONE", "RESERVED11", "RESERVED12",
              "RESERVED13", "RESERVED14", "RESERVED15", "BADVERS")  # fmt: skip


def dig_status(rcode: str, yaml: bool = False) -> str:
    """A reply's RCODE (dnspython's name or number, as a record has it) as dig's header
    shows it: `RESERVED11` (dnspython: DSOTYPENI), `?17` (dnspython: BADKEY; dig names
    the TSIG errors only in the TSIG record), `?4095`."""
    import dns.rcode

    try:
        number = int(dns.rcode.from_text(rcode))
    except (ValueError, dns.rcode.UnknownRcode):
        return rcode
    if number < len(DIG_RCODES):
        return DIG_RCODES[number]
    if number == 23:
        return "BADCOOKIE"
    return str(number) if yaml else f"?{number}"


TTL_COLUMN, CLASS_COLUMN, TYPE_COLUMN, RDATA_COLUMN = 24, 32, 40, 48  # dig's columns
COLUMNS = (TTL_COLUMN, CLASS_COLUMN, TYPE_COLUMN, RDATA_COLUMN)
MULTILINE_COLUMNS = (24, 24, 24, 32)  # dig +multiline's (BIND's style for it)


class Style:
    """How dig lays records out: its columns and, with +multiline or +split=N, the data
    written again (measure.dnstext.restyle) in BIND's multi-line form or N-character words;
    +nottlid and +noclass leave out the TTL and class (BIND's columns for them),
    +ttlunits writes TTLs in units (`1h30m`), +[no]rrcomments, +nocrypto and
    +unknownformat as `presentation` says."""

    def __init__(self, multiline: bool = False, split: int | None = None, *, ttl: bool = True,
                 cls: bool = True, ttlunits: bool = False, comments: bool | None = None,
                 crypto: bool = True, unknown: bool = False,
                 expandaaaa: bool = False, idnout: bool = False) -> None:  # fmt: skip
        self.multiline, self.split = multiline, split
        self.idnout = idnout
        self.ttl, self.cls, self.ttlunits = ttl, cls, ttlunits
        self.comments, self.crypto, self.unknown = comments, crypto, unknown
        self.expandaaaa = expandaaaa
        # dig's columns (dns_master_stylecreate in its printmessage)
        self.columns = (MULTILINE_COLUMNS if multiline or not (ttl or cls) else
                        (24, 24, 32, 40) if not (ttl and cls) else COLUMNS)  # fmt: skip
        # a line break goes on at the rdata column, in tabs as BIND indents
        self.linebreak = "\n" + _pad(0, self.columns[3])[0] if multiline else None

    def data(self, a: Record) -> str:
        text = self._data(a)
        return idn_names(text) if self.idnout and "xn--" in text.lower() else text

    def _data(self, a: Record) -> str:
        if self.expandaaaa and a["type"] == "AAAA" and not self.unknown:  # dig +expandaaaa
            import ipaddress

            try:
                return ipaddress.IPv6Address(a["data"]).exploded
            except ValueError:
                return str(a["data"])
        plain = self.comments is None or (not self.comments and not self.multiline)
        if not self.multiline and self.split is None and plain and self.crypto and (
            not self.unknown
        ):  # fmt: skip
            return str(a["data"])
        from packetlab.measure.dns import restyle

        return restyle(a["data"], a["type"], a.get("class", "IN"), self.split,
                       self.linebreak, comments=self.comments, crypto=self.crypto,
                       unknown=self.unknown)  # fmt: skip

    def ttl_text(self, ttl: int) -> str:
        return ttl_units(ttl) if self.ttlunits else str(ttl)

    def names(self, a: Record) -> tuple[str, str]:
        """The class and type as written: +unknownformat's CLASSn and TYPEn."""
        cls, rtype = a.get("class", "IN"), a["type"]
        if not self.unknown:
            return cls, rtype
        import dns.rdataclass
        import dns.rdatatype

        try:
            return (f"CLASS{int(dns.rdataclass.from_text(cls))}",
                    f"TYPE{int(dns.rdatatype.from_text(rtype))}")  # fmt: skip
        except (ValueError, dns.rdataclass.UnknownRdataclass, dns.rdatatype.UnknownRdatatype):
            return cls, rtype


PLAIN = Style()


def ttl_units(seconds: int) -> str:
    """dig +ttlunits: BIND 9.18's short TTL text (dns_ttl_totext): `1w2d3h4m5s`, `0s`."""
    parts = [f"{n}{u}" for n, u in ((seconds // 604800, "w"), (seconds // 86400 % 7, "d"),
             (seconds // 3600 % 24, "h"), (seconds // 60 % 60, "m")) if n]  # fmt: skip
    if seconds % 60 or not parts:
        parts.append(f"{seconds % 60}s")
    return "".join(parts)


def rr_line(a: Record, style: Style = PLAIN) -> str:
    """A resource record as dig prints it: the fields at its tab columns (no TTL with
    +nottlid, no class with +noclass: the next field at that one's column, as BIND)."""
    cls, rtype = style.names(a)
    fields = [(style.ttl_text(a["ttl"]), style.columns[0], style.ttl),
              (cls, style.columns[1], style.cls), (rtype, style.columns[2], True),
              (style.data(a), style.columns[3], True)]  # fmt: skip
    owner = idn_names(a["name"]) if style.idnout else a["name"]
    out, col = owner, len(owner)
    for text, to, shown in fields:
        if not shown:
            continue
        gap, col = _pad(col, to)
        out += gap + text
        col += len(text)
    return out


# BIND 9.18's mnemonics for types dnspython 2 writes TYPEnnn (dig's question line names
# them; KEYDATA it writes TYPE65533 there too): session 24, dig24
BIND_TYPE_NAMES = {"TYPE31": "EID", "TYPE32": "NIMLOC", "TYPE34": "ATMA", "TYPE40": "SINK",
                   "TYPE57": "RKEY", "TYPE58": "TALINK", "TYPE100": "UINFO", "TYPE101": "UID",
                   "TYPE102": "GID", "TYPE259": "DOA"}  # fmt: skip


def question_line(qname: str, qtype: str, qclass: str = "IN", style: Style = PLAIN) -> str:
    """dig's question line: `;NAME`, then class and type at their columns (the `;` is
    not counted, as in BIND); a type only BIND names by its name, as dig."""
    qtype = BIND_TYPE_NAMES.get(qtype.upper(), qtype)
    _, class_column, type_column, _ = style.columns
    qname = idn_names(qname) if style.idnout else qname
    gap, col = _pad(len(qname), class_column)
    gap2, _ = _pad(col + len(qclass), type_column)
    return f";{qname}{gap}{qclass}{gap2}{qtype}"


FLAG_ORDER = ("QR", "AA", "TC", "RD", "RA", "AD", "CD")


def _opt_lines(edns: Record, yaml: bool = False) -> list[str]:
    """dig's OPT pseudosection lines (`yaml`: as its YAML style words them)."""
    flags = "".join(f" {f}" for f in ("do", "co") if f in edns["flags"])
    mbz = edns.get("mbz", 0)
    tail = f"; MBZ: 0x{mbz:04x}, udp: {edns['udp']}" if mbz else f"; udp: {edns['udp']}"
    lines = [f"; EDNS: version: {edns['version']}, flags:{flags}{tail}"]
    for opt in edns.get("options", []):
        data = bytes.fromhex(opt["data"])
        if opt["code"] == 10:  # dig: the cookie in hex, whether it is ours
            verdict = f" ({opt['cookie']})" if "cookie" in opt else ""
            lines.append(f"; COOKIE: {opt['data']}{verdict}")
            continue
        known = switches.known_option(opt["code"], data, yaml)
        if known is not None:
            lines.append(known)
            continue
        name = {3: "NSID", 12: "PAD"}.get(opt["code"], f"OPT={opt['code']}")
        lines.append(f"; {name}: {switches.hex_words(data)}" if data else f"; {name}:")
    return lines


def hex_dump(data: bytes) -> list[str]:
    """dig's hex dump of a packet (BIND's hex_dump()): its length, then 16 bytes a line
    in hex, nine spaces and the bytes from '!' to '}' as themselves, the others as '.'."""
    lines = [f"{len(data)} bytes"]
    for at in range(0, len(data), 16):
        chunk = data[at : at + 16]
        text = "".join(chr(b) if 0x21 <= b <= 0x7D else "." for b in chunk)
        lines.append("".join(f"{b:02x} " for b in chunk).ljust(48) + " " * 9 + text)
    return lines


# a query's transports over a connection (TCP, TLS, DNS over HTTP(S)): dig's TCP lines
STREAMS = ("tcp", "tls", "https", "https-get", "http", "http-get")
STREAM_TIMEOUT = re.compile(r" within [0-9.e+-]+ s$")
STREAM_EOF = re.compile(r" closed after \d+( of \d+)? bytes(: .*)?$")  # dig: end of file


def connect_failed_line(r: Record, user: str | None, why: str = "connection refused") -> str:
    """dig's line for a TCP connection that failed: the server as typed (`user`), the
    name as typed (we have it absolute: without its final dot)."""
    name = r["qname"].rstrip(".") or "."
    where = f"{r['server']}#{r['port']}({user or r['server']})"
    return f";; Connection to {where} for {name} failed: {why}."


def error_lines(r: Record, user: str | None = None) -> list[str]:
    """A query that got no answer, as dig says it: a communications error per try (a
    reply that does not parse: `Got bad packet` and dig's hex dump of it)."""
    if r.get("error_kind") == "malformed" and "packet" in r:
        return [f";; Got bad packet: {r['reason']}", *hex_dump(bytes.fromhex(r["packet"]))]
    if r.get("error_kind") in ("malformed", "lame", "steps"):
        return [f";; Got bad packet: {r['error']}" if r["error_kind"] == "malformed" else
                f";; {r['error']}"]  # fmt: skip
    if r.get("error_kind") in ("tls", "family", "mismatch"):  # dig's line for it
        return [f";; {r['error']}"]
    where = f"{r['server']}#{r['port']}"
    if r.get("proto") in STREAMS and r.get("error_kind") == "refused":  # dig's connect failure
        return [connect_failed_line(r, user)]
    what = {"timeout": "timed out", "refused": "connection refused"}.get(
        r.get("error_kind") or "", r["error"]
    )
    if r.get("proto") in STREAMS and STREAM_TIMEOUT.search(r["error"]):
        what = "timed out"  # the TCP exchange's wait (TcpStream's StreamTimeout), as dig
    elif r.get("proto") in STREAMS and STREAM_EOF.search(r["error"]):
        what = "end of file"  # the server closed (or a TLS alert ended it), as dig
    elif r.get("proto") in STREAMS and r["error"].endswith(": RESET"):
        what = "connection reset"  # (TcpStream's word for it), as dig
    said = r.get("tries_said", 0)  # those in the record's notes, in their place
    return [f";; communications error to {where}: {what}"] * max(r.get("tries", 1) - said, 1)


def idn_names(text: str) -> str:
    """dig +idnout: the names in `text` (a name, or a record's data: its words that are
    not quoted strings) with each `xn--` label written in Unicode, its case kept (as
    libidn2's idn2_to_unicode_8zlz does for dig); a label that is no valid A-label (IDNA
    2008, the `idna` package) stays as it came (dig: `Bad ACE string`, exit 1)."""
    import idna

    def label(part: str) -> str:
        if not part.lower().startswith("xn--"):
            return part
        try:
            idna.decode(part)
            return part[4:].encode("ascii").decode("punycode")
        except (idna.IDNAError, UnicodeError):
            return part

    words = text.split(" ")
    for i, word in enumerate(words):
        if "xn--" in word.lower() and not word.startswith('"'):
            words[i] = ".".join(label(part) for part in word.split("."))
    return " ".join(words)
