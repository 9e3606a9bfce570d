"""The query dig sends: its header bits and EDNS options from dig's switches
(`QueryBits`), the message (`_make_query`), an IXFR request (`as_ixfr`), +subnet's
option (`subnet_option`), its wire (`_render`: signed as BIND signs)."""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass
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

from packetlab.measure.dnsresult import DnsError


def _render(query: dns.message.Message) -> bytes:
    """The query's wire; signed (dig -k/-y), as BIND writes it (`dnstsig.render`)."""
    if query.tsig is None:
        return bytes(query.to_wire())
    from packetlab.measure.dnstsig import render

    return render(query)


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
    ID), +noednsnegotiation (BADVERS not asked again with a lower version), +nobadcookie
    (BADCOOKIE not asked again with the server's cookie), +showbadcookie (each BADCOOKIE
    reply asked again kept, for dig's print of it before the retry)."""

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
    badcookie: bool = True  # +nobadcookie: a BADCOOKIE answer is not asked again
    showbadcookie: bool = False  # +showbadcookie: the BADCOOKIE replies kept (`badcookies`)
    udpsize: bool = False  # +bufsize[=N] given (N < 32768): dig 9.18 then always has an OPT

    def with_edns(self) -> bool:
        """Whether these ask for an OPT record (dig: +subnet and +bufsize do even with
        +noedns, before or after it)."""
        return self.subnet is not None or self.udpsize


DIG_QUERY = QueryBits()


def subnet_option(text: str) -> bytes:
    """dig's +subnet=ADDR[/PREFIX] as the CLIENT-SUBNET option's data (RFC 7871): family,
    source prefix, scope 0, the address cut to its prefix's bytes, the bits past it
    cleared; `0` is 0.0.0.0/0. As dig 9.18's parse_netprefix (session 24, dig24): a
    prefix past the family's length is that length (/33 is /32, /200 on IPv6 /128), and
    with a prefix an IPv4 address may be short, `.0`s added (10/8, 10.1/16, 0/0).
    ValueError, dig's words, for no address or no prefix number."""
    import ipaddress

    if text == "0":
        return struct.pack(">HBB", 1, 0, 0)
    addr, slash, plen = text.partition("/")
    bits = 0xFFFFFFFF  # dig: no prefix is the family's whole length
    if slash:
        if not (plen.isascii() and plen.isdigit()):
            raise ValueError(f"invalid prefix length in {text!r}: not a valid number")
        if int(plen) > 0xFFFFFFFF:
            raise ValueError(f"invalid prefix length in {text!r}: out of range")
        bits = int(plen)
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    tries = [addr] + ([addr + ".0" * n for n in (1, 2, 3)] if slash else [])
    for candidate in tries:  # (inet_pton's dotted quad: ipaddress reads that alike)
        try:
            ip = ipaddress.ip_address(candidate)
            break
        except ValueError:
            continue
    if ip is None or "%" in addr:
        raise ValueError(f"invalid address {text!r}")
    bits = min(bits, ip.max_prefixlen)
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
