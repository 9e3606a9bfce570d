"""dig 9.18's switches `pktlab run dns` reads since session 16 (dig16): the tables of
its display and query switches, their values (`query_value`), the query they make
(`query_bits`: measure.dnsquery.QueryBits), +search's names (`search_names`), and the text
of the EDNS options dig names (`known_option`). Apart from run_dns.py, which reads and
prints with them; no dnspython at import."""

from __future__ import annotations

import argparse
import os
import struct
from typing import Any

from packetlab.cli.run import RunError
from packetlab.cli.run_dns_exits import bad_number

NDOTS_MAX = 15  # BIND's MAXNDOTS
BATCH_LINES = 10_000  # -f FILE: query lines at most (each answer is kept for the summary)
# -f FILE: dig 9.18 reads a line with fgets into MXNAME (1,024) bytes: a longer one is
# read as several lines of 1,023 bytes (each then a query line); and splits it into 13
# words at most (split_batchline's 14 argv entries, argv[0] dig's): the rest is ignored
BATCH_LINE_BYTES = 1023
BATCH_WORDS = 13
RESOLV_CONF = "/etc/resolv.conf"  # dig's search list and ndots: this host's, as dig reads them
#: another resolv.conf for dig's reads of it (tests: one whose servers are on loopback)
RESOLV_CONF_ENV = "PKTLAB_RESOLV_CONF"

# since session 16: dig 9.18's display and query switches, each +WORD and +noWORD (an
# alias maps onto the same attribute), as dig reads them
_ON_OFF = {"ttlid": "ttlid", "class": "show_class", "cl": "show_class",
           "ttlunits": "ttlunits", "crypto": "crypto", "rrcomments": "rrcomments",
           "unknownformat": "unknownformat", "qr": "qr", "header-only": "header_only",
           "aaflag": "aaflag", "aaonly": "aaflag", "adflag": "adflag", "ad": "adflag",
           "cdflag": "cdflag", "cd": "cdflag", "raflag": "raflag", "tcflag": "tcflag",
           "zflag": "zflag", "expire": "expire", "keepalive": "keepalive", "fail": "fail",
           "besteffort": "besteffort", "rdflag": "norecurse", "identify": "identify",
           "coflag": "coflag", "expandaaaa": "expandaaaa", "ednsnegotiation": "ednsneg",
           "ednsneg": "ednsneg", "yaml": "yaml", "nssearch": "nssearch",
           "keepopen": "keepopen", "tls": "tls", "badcookie": "badcookie",
           "showbadcookie": "showbadcookie"}  # fmt: skip
#: +WORD and +noWORD of each: (attribute, value), as run_dns.DIG_FLAGS
FLAGS: dict[str, tuple[str, Any]] = {}
for _word, _attr in _ON_OFF.items():
    _on = _attr != "norecurse"  # +rdflag is +recurse
    FLAGS[f"+{_word}"], FLAGS[f"+no{_word}"] = (_attr, _on), (_attr, not _on)
for _word in ("search", "defname"):  # dig: +[no]defname is +[no]search
    FLAGS[f"+{_word}"], FLAGS[f"+no{_word}"] = ("search", True), ("search", False)
# read by run_dns_words' own branch first; here for dig's abbreviations (+shows)
FLAGS["+showsearch"], FLAGS["+noshowsearch"] = ("showsearch", True), ("showsearch", False)
# DNS over HTTPS: read by run_dns_words' own branch first (+https[=PATH], -get)
for _word in ("https", "https-get", "http-plain", "http-plain-get"):
    FLAGS[f"+{_word}"], FLAGS[f"+no{_word}"] = ("doh", _word), ("doh", None)
# +https-post, +http-plain-post (dig's names of the default, POST; since session 17): read
# there too, each its own word here: dig refuses +ht, +http, which begin them and the rest
for _word in ("https-post", "http-plain-post"):
    FLAGS[f"+{_word}"], FLAGS[f"+no{_word}"] = (_word, _word), (_word, None)
for _word in ("idnin", "idnout"):  # off by default: dig's default off a terminal
    FLAGS[f"+{_word}"], FLAGS[f"+no{_word}"] = (_word, True), (_word, False)
#: what they default to (run_dns.configure's)
DEFAULTS: dict[str, Any] = {
    "ttlid": True, "show_class": True, "ttlunits": False, "crypto": True, "rrcomments": None,
    "unknownformat": False, "qr": False, "header_only": False, "aaflag": False,
    "adflag": True, "cdflag": False, "raflag": False, "tcflag": False, "zflag": False,
    "opcode": 0, "subnet": None, "expire": False, "keepalive": False, "padding": 0,
    "fail": True, "besteffort": True, "identify": False, "idnin": False, "idnout": False,
    "search": False, "showsearch": False, "domain": None, "ndots": None, "ednsflags": 0,
    "coflag": False, "ednsopts": (), "qid": None, "ednsneg": True, "expandaaaa": False,
    "yaml": False, "nssearch": False, "keepopen": False, "tls": False, "tls_ca": None,
    "tls_hostname": None, "doh": None, "doh_path": "/dns-query", "doh_get": False,
    "tls_certfile": None, "tls_keyfile": None, "tls_mode": False, "badcookie": True,
    "showbadcookie": False,
}  # fmt: skip
#: dig's opcode names (+opcode=NAME; a number 0..15 too)
OPCODES = {"query": 0, "iquery": 1, "status": 2, "notify": 4, "update": 5}
#: the query's header bits and EDNS options from dig's switches (measure.dnsquery.QueryBits)
QUERY_BITS = ("aaflag", "adflag", "cdflag", "raflag", "tcflag", "zflag", "opcode",
              "header_only", "subnet", "expire", "keepalive", "padding", "ednsflags",
              "coflag", "ednsopts", "qid", "ednsneg", "besteffort", "badcookie",
              "showbadcookie")  # fmt: skip
#: dig 9.18's names for +ednsopt=NAME[:HEX] (its optnames, any case)
EDNS_OPTION_NAMES = {"llq": 1, "nsid": 3, "dau": 5, "dhu": 6, "n3u": 7, "ecs": 8,
                     "expire": 9, "cookie": 10, "keepalive": 11, "padding": 12, "pad": 12,
                     "chain": 13, "key-tag": 14, "ede": 15, "client-tag": 16,
                     "server-tag": 17}  # fmt: skip
EDNS_OPTIONS_MAX = 100  # dig's EDNSOPT_OPTIONS
#: switches that take a value, read by `query_value` (each +noWORD resets it)
QUERY_VALUES = ("+opcode", "+subnet", "+padding", "+ednsflags", "+ednsopt", "+qid")
#: dig 9.18's words not built here: refused by name (an abbreviation of one too); they
#: count when an abbreviation is read (`+ke` is keepalive or keepopen: dig refuses it)
NOT_BUILT = ("dns64prefix", "fuzztime")  # (+showbadcookie: built since session 26)
#: dig 9.18's words it reads only to say `;; +WORD option is deprecated` (no line end)
DEPRECATED = ("sigchase", "topdown", "unexpected", "mapped")
#: abbreviations of several words that dig's parser (a switch on each letter) reads as one
DIG_PREFERS = {"aa": "aaflag", "co": "comments", "i": "ignore", "ttl": "ttlid",
               "https-": "https", "http-plain-": "http-plain"}  # fmt: skip


def query_value(at: argparse.Namespace, key: str, value: str, word: str) -> None:
    """dig's +ednsopt=CODE[:HEX], +ednsflags=N, +qid=N, +opcode=NAME|N,
    +subnet=ADDR[/PREFIX], +padding=N (0..512) into `at` (EDNS on, as dig, for
    +ednsflags and +padding, not +ednsopt; +subnet asks for an OPT record by itself)."""
    from packetlab.measure.dnsquery import PADDING_MAX, subnet_option

    if key == "+ednsopt":
        code, _, data = value.partition(":")
        number = EDNS_OPTION_NAMES.get(code.lower(), int(code) if code.isdigit() else -1)
        if not 0 <= number <= 0xFFFF:
            raise RunError(f"{word}: bad edns code point: {code} (0..65535 or dig's "
                           "names: NSID, ECS, EXPIRE, COOKIE, KEEPALIVE, PAD, ...)")  # fmt: skip
        try:
            raw = bytes.fromhex(data)
        except ValueError:
            raise RunError(f"{word}: the value must be hex digits") from None
        if len(at.ednsopts) >= EDNS_OPTIONS_MAX:
            raise RunError(f"{word}: too many ednsopts (at most {EDNS_OPTIONS_MAX})")
        at.ednsopts = (*at.ednsopts, (number, raw))  # as dig: EDNS not turned on by it
    elif key in ("+ednsflags", "+qid"):
        top = 0xFFFF
        try:  # (dig's parse_xint: 0x10 and 010 for ednsflags; digits alone)
            n = int(value, 0) if key == "+ednsflags" and value.isascii() else int(value)
        except ValueError:
            n = -1
        if not value.isascii() or not value[:1].isalnum() or "_" in value:
            n = -1  # Python's int() takes " 5", "+5", "1_0", other scripts' digits
        if not 0 <= n <= top:
            raise bad_number(word, key[1:], value, n > top)
        setattr(at, key[1:], n)
        if key == "+ednsflags":
            at.edns = max(at.edns, 0)
    elif key == "+opcode":
        digits = value.isascii() and value.isdigit()
        op = OPCODES.get(value.lower(), int(value) if digits else -1)
        if not 0 <= op <= 15:  # (dig: a name, else parse_uint's words)
            raise bad_number(word, "opcode", value)
        at.opcode = op
    elif key == "+subnet":
        try:
            at.subnet = subnet_option(value)
        except ValueError as e:  # dig's words: invalid address, invalid prefix length
            raise RunError(f"{word}: {e} (ADDR[/PREFIX], or 0)") from None
    else:
        if not (value.isascii() and value.isdigit()) or int(value) > PADDING_MAX:
            raise bad_number(word, "padding", value)
        at.padding = int(value)
        at.edns = max(at.edns, 0)


def search_names(name: str, args: argparse.Namespace) -> list[str]:
    """The names dig 9.18 asks for `name`, in order: `search_plan`'s."""
    return search_plan(name, args)[0]


def search_plan(name: str, args: argparse.Namespace) -> tuple[list[str], int]:
    """The names dig 9.18 asks for `name`, in order (+search, +domain, +ndots; dig's
    usesearch, domainopt and ndots are globals: the command line's), and how many of
    the first are asked under a search domain (dig's lookup->origin set): with fewer
    dots than ndots (resolv.conf's `options ndots:N`, default 1), the name in each
    domain of the search list (resolv.conf's `search`/`domain`, this host's as dig
    reads them; +domain=D: D alone), then as given; else as given, first, and the
    search list never (`[name, ""]`: dig prints such a name's NXDOMAIN statistics
    twice). Absolute: as given only; dig counts its dots as typed (the root's one,
    `www.`'s one), so with as many as ndots it is `[name, ""]` too, and with fewer it
    is asked under the first search domain (which an absolute name ignores). The next
    is asked only after an NXDOMAIN."""
    top = args  # a batch line's, or the command line's (a name's falls back to them)
    if not getattr(top, "search", False):
        return [name], 0
    from packetlab.measure.resolvconf import search_of

    domains, ndots = search_of(resolv_conf_text())
    if top.domain is not None:
        domains = [top.domain]
    ndots = top.ndots if top.ndots is not None else 1 if ndots is None else ndots
    if name.count(".") >= ndots:  # dig's count_dots, the trailing dot counted
        return [name, ""], 0
    if name.endswith("."):
        return [name], 1 if domains else 0
    asked = [f"{name}.{d.strip('.')}." if d.strip(".") else f"{name}." for d in domains]
    return [*asked, name], len(asked)


def resolv_conf_text() -> str:
    """This host's resolv.conf as dig reads it (`PKTLAB_RESOLV_CONF`: another one); empty
    when it cannot be read."""
    try:
        with open(os.environ.get(RESOLV_CONF_ENV) or RESOLV_CONF, encoding="utf-8",
                  errors="replace") as f:  # fmt: skip
            return f.read(65536)
    except OSError:
        return ""


def resolv_conf_servers(family: int | None) -> list[str]:
    """dig's servers when none is given (`-p PORT` alone): resolv.conf's nameservers in
    its order, of `family` (-4, -6); none there (of that family): ::1 and 127.0.0.1, as
    BIND's resolver."""
    from packetlab.measure.resolvconf import resolver_of

    def mine(found: list[str]) -> list[str]:
        return [a for a in found if family is None or (":" in a) == (family == 6)]

    return mine(resolver_of(resolv_conf_text())) or mine(["::1", "127.0.0.1"])


def query_bits(o: argparse.Namespace) -> Any:
    """The query switches of `o` (a line's, a name's) as measure.dnsquery.QueryBits."""
    from packetlab.measure.dnsquery import QueryBits

    v = {k: getattr(o, k) for k in QUERY_BITS}
    return QueryBits(aa=v["aaflag"], ad=v["adflag"], cd=v["cdflag"], ra=v["raflag"],
                     tc=v["tcflag"], z=v["zflag"], opcode=v["opcode"],
                     header_only=v["header_only"], subnet=v["subnet"], expire=v["expire"],
                     keepalive=v["keepalive"], padding=v["padding"],
                     ednsflags=v["ednsflags"], coflag=v["coflag"], ednsopts=v["ednsopts"],
                     qid=v["qid"], ednsneg=v["ednsneg"],
                     besteffort=v["besteffort"], badcookie=v["badcookie"],
                     showbadcookie=v["showbadcookie"],
                     udpsize=getattr(o, "bufsize", None) is not None)  # fmt: skip


def known_option(code: int, data: bytes, yaml: bool = False) -> str | None:
    """dig's line for CLIENT-SUBNET, EXPIRE, TCP KEEPALIVE, PADDING, KEY-TAG, EDE (None:
    another option, or one whose data BIND would not read so). `yaml`: dig's YAML words
    (TCP-KEEPALIVE; PAD's bytes as another option's)."""
    import ipaddress

    from packetlab.measure.dnsquery import ECS, EXPIRE, KEEPALIVE, PADDING
    from packetlab.measure.dnstext import ttl_words

    if code == ECS and data == b"\0" * 4:  # family 0 (RFC 7871 7.1.2: no address)
        return "; CLIENT-SUBNET: 0/0/0"
    if code == ECS and len(data) >= 4 and data[:2] in (b"\0\1", b"\0\2"):
        size = 4 if data[1] == 1 else 16
        if len(data) - 4 > size:
            return None
        addr = ipaddress.ip_address(data[4:].ljust(size, b"\0"))
        return f"; CLIENT-SUBNET: {addr}/{data[2]}/{data[3]}"
    if code == EXPIRE and len(data) in (0, 4):
        secs = int.from_bytes(data, "big")
        return f"; EXPIRE: {secs} ({ttl_words(secs)})" if data else "; EXPIRE:"
    if code == KEEPALIVE:  # another length: BIND's name, the bytes as any option's
        n = int.from_bytes(data, "big")
        name = "TCP-KEEPALIVE" if yaml else "TCP KEEPALIVE"
        if len(data) not in (0, 2):
            return f"; {name}: {hex_words(data)}"
        return f"; {name}: {n // 10}.{n % 10} secs" if data else f"; {name}:"
    if code == LLQ and len(data) == 18:  # (another length: BIND's malformed OPT option)
        version, opcode, error, ident, life = struct.unpack(">HHHQI", data)
        return (f"; LLQ: Version: {version}, Opcode: {opcode}, Error: {error}, "
                f"Identifier: {ident}, Lifetime: {life}")  # fmt: skip
    if code in TAGS and len(data) == 2:
        return f"; {TAGS[code]}: {int.from_bytes(data, 'big')}"
    if code == PADDING and not (yaml and data):
        return f"; PAD: ({len(data)} bytes)" if data else "; PAD:"
    if code == KEY_TAG and data and len(data) % 2 == 0:
        tags = (int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
        return "; KEY-TAG: " + ", ".join(map(str, tags))
    if code == EDE and len(data) >= 2:
        info = int.from_bytes(data[:2], "big")
        name = f" ({EDE_NAMES[info]})" if info < len(EDE_NAMES) else ""
        # BIND: its text (UTF-8: BIND refuses another) with each ASCII control as "."
        chars = data[2:].decode("utf-8", "replace")
        text = "".join("." if ord(c) < 32 or c == "\x7f" else c for c in chars)
        if yaml:  # dig's YAML: a mapping (and a blank line after an unnamed code alone)
            extra = f'\n  EXTRA-TEXT: "{text}"' if text else "\n" if not name else ""
            return f"; EDE:\n  INFO-CODE: {info}{name}{extra}"
        return f"; EDE: {info}{name}" + (f": ({text})" if text else "")
    return None


KEY_TAG, EDE, LLQ = 14, 15, 1  # EDNS option codes (RFC 8145, RFC 8914, RFC 8764)
TAGS = {16: "CLIENT-TAG", 17: "SERVER-TAG"}  # (draft-bellis-dnsop-edns-tags, as BIND)


def hex_words(data: bytes) -> str:
    """An option's bytes as dig shows one it does not read: hex, then the text."""
    shown = "".join(chr(b) if 32 <= b < 127 else "." for b in data)
    return " ".join(f"{b:02x}" for b in data) + f' ("{shown}")'


#: BIND 9.18's names of the extended DNS errors (its edetext), by INFO-CODE
EDE_NAMES = ("Other", "Unsupported DNSKEY Algorithm", "Unsupported DS Digest Type",
             "Stale Answer", "Forged Answer", "DNSSEC Indeterminate", "DNSSEC Bogus",
             "Signature Expired", "Signature Not Yet Valid", "DNSKEY Missing", "RRSIGs Missing",
             "No Zone Key Bit Set", "NSEC Missing", "Cached Error", "Not Ready", "Blocked",
             "Censored", "Filtered", "Prohibited", "Stale NXDOMAIN Answer", "Not Authoritative",
             "Not Supported", "No Reachable Authority", "Network Error",
             "Invalid Data")  # fmt: skip


def full_word(key: str, actions: dict[str, object]) -> str:
    """dig's `+KEY` (the part before any `=`) as the switch dig 9.18 reads: dig takes a
    word by its first letters (`+ans`, `+noall`, `+tim=3`, `+nocl`), so `key` is read as
    the word of `actions` (every word we read, without `+` and `no`, each mapped to what
    it sets) or of NOT_BUILT/DEPRECATED that it begins; several that set the same thing
    (`+tim`: time, timeout) are one. `key` itself when it is a word or begins none (the
    caller refuses it by name); RunError when it begins several, as dig's `Invalid
    option` (`+sh`: short, showsearch, showbadcookie), but for dig's own readings of
    some of those (DIG_PREFERS)."""
    body = key[1:]
    no = body.startswith("no") and body not in actions
    stem = body[2:] if no else body
    words: dict[str, object] = {**actions, **{w: w for w in (*NOT_BUILT, *DEPRECATED)}}
    if stem in words or not stem:
        return key
    if stem in DIG_PREFERS:
        return f"+{'no' * no}{DIG_PREFERS[stem]}"
    found = sorted(w for w in words if w.startswith(stem))
    if not found:
        return key
    if len({words[w] for w in found}) > 1:
        which = ", ".join(f"+{'no' * no}{w}" for w in found)
        raise RunError(f"{key}: ambiguous dig option, the start of {which} (dig: Invalid option)")
    return f"+{'no' * no}{max(found, key=len)}"
