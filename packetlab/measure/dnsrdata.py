"""Record data read as BIND 9.18's fromwire reads it where dnspython 2.9's reader differs
(session 29, dig29; each compared with dig 9.18.49 against the same crafted reply):

* a name in a record's data may be compressed in every type, as BIND 9.18.49 reads it
  (a CH-class A, KX, DNAME, NSAP-PTR, RRSIG, NSEC, SVCB/HTTPS, IPSECKEY, AMTRELAY, LP,
  MD...): dnspython allows a pointer only in RFC 3597's list of types and refused the
  others (`A name has a compression pointer but decompression is forbidden`: the reply
  lost). BIND's own CH-class A answers compress their name.
* a TLSA or SMIMEA whose data is not its matching type's length (SHA-256 and 32
  bytes): BIND shows it, dnspython refused it (the reply cut there);
* an empty OPENPGPKEY, NSAP or DHCID: BIND runs out of data (its best effort: the
  records before it and dig's malformed-packet warning); dnspython took it as empty;
* MD, MF, MB, MG, MR (a name) and MINFO (two): BIND writes their names, dnspython
  (having no class for them) their data in RFC 3597's form; an HS-class A likewise
  (BIND: its IPv4 address);
* an NSEC3 of hash algorithm 1 (SHA-1) whose next hash is not 20 bytes: BIND's FORMERR
  (`Got bad packet: FORMERR`, before its owner's check); dnspython took it (session 30,
  dig30: lengths 1, 2, 8, 19, 21 refused, 20 read; algorithms 0 and 2 any length);
* a WKS whose bitmap ends in a zero byte: BIND's FORMERR (`Got bad packet: FORMERR`);
  dnspython took it. (A WKS of no port at all BIND writes without dnspython's trailing
  blank: `dnstext.presentation`.)

`bind_rdata()` puts these in place while a reply is read (dnspython looks its classes
up in a table of its own; there is no public way to replace a type it knows)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.NSEC3
import dns.rdtypes.ANY.OPENPGPKEY
import dns.rdtypes.ANY.RP
import dns.rdtypes.ANY.SMIMEA
import dns.rdtypes.ANY.TLSA
import dns.rdtypes.IN.A
import dns.rdtypes.IN.DHCID
import dns.rdtypes.IN.NSAP
import dns.rdtypes.IN.WKS
import dns.rdtypes.nsbase
import dns.wire

#: the largest WKS data BIND reads (its address, protocol and 8192 bitmap bytes); past
#: it BIND's DNS_R_EXTRADATA
WKS_MOST = 8197


class _LaxTLSA(dns.rdtypes.ANY.TLSA.TLSA):
    _cert_length_by_mtype: dict[int, int] = {}  # BIND checks no length against the type


class _LaxSMIMEA(dns.rdtypes.ANY.SMIMEA.SMIMEA):
    _cert_length_by_mtype: dict[int, int] = {}


class _NotEmpty:
    """Record data BIND refuses when empty (OPENPGPKEY, NSAP, DHCID): its plain form, ran
    out, as BIND's unexpected end; dnspython took empty data."""

    @classmethod
    def from_wire_parser(cls, rdclass: Any, rdtype: Any, parser: Any, origin: Any = None) -> Any:
        if parser.remaining() == 0:
            raise dns.exception.FormError
        return super().from_wire_parser(rdclass, rdtype, parser, origin)  # type: ignore[misc]


class _OPENPGPKEY(_NotEmpty, dns.rdtypes.ANY.OPENPGPKEY.OPENPGPKEY):
    pass


class _NSAP(_NotEmpty, dns.rdtypes.IN.NSAP.NSAP):
    pass


class _DHCID(_NotEmpty, dns.rdtypes.IN.DHCID.DHCID):
    pass


class _WKS(dns.rdtypes.IN.WKS.WKS):
    @classmethod
    def from_wire_parser(cls, rdclass: Any, rdtype: Any, parser: Any, origin: Any = None) -> Any:
        rd = super().from_wire_parser(rdclass, rdtype, parser, origin)
        if rd.bitmap and rd.bitmap[-1] == 0:  # BIND's wks fromwire: DNS_R_FORMERR
            raise dns.exception.FormError("WKS bitmap ends in a zero byte")
        return rd


class _NSEC3(dns.rdtypes.ANY.NSEC3.NSEC3):
    @classmethod
    def from_wire_parser(cls, rdclass: Any, rdtype: Any, parser: Any, origin: Any = None) -> Any:
        rd = super().from_wire_parser(rdclass, rdtype, parser, origin)
        if rd.algorithm == SHA1 and len(rd.next) != SHA1_BYTES:  # BIND 9.18: DNS_R_FORMERR
            raise dns.exception.FormError("NSEC3 SHA-1 hash not of 20 bytes")
        return rd


SHA1, SHA1_BYTES = 1, 20  # NSEC3's hash algorithm 1 and its digest's length


class _OneName(dns.rdtypes.nsbase.NSBase):
    """MD, MF, MB, MG, MR: a name (RFC 1035's; dnspython has no class for them and showed
    their data as `\\# N HEX`, BIND as the name)."""


class _MINFO(dns.rdtypes.ANY.RP.RP):
    """MINFO: two names (rmailbx emailbx), written as RP's."""


#: (class, type) → BIND's reading; ANY: every class (as dnspython's own for the type)
_CLASSES: dict[tuple[int, int], type[dns.rdata.Rdata]] = {
    **{(dns.rdataclass.ANY, t): _OneName for t in (3, 4, 7, 8, 9)},  # MD MF MB MG MR
    (dns.rdataclass.ANY, dns.rdatatype.MINFO): _MINFO,
    (dns.rdataclass.ANY, dns.rdatatype.TLSA): _LaxTLSA,
    (dns.rdataclass.ANY, dns.rdatatype.SMIMEA): _LaxSMIMEA,
    (dns.rdataclass.ANY, dns.rdatatype.OPENPGPKEY): _OPENPGPKEY,
    (dns.rdataclass.IN, dns.rdatatype.NSAP): _NSAP,
    (dns.rdataclass.IN, dns.rdatatype.DHCID): _DHCID,
    (dns.rdataclass.IN, dns.rdatatype.WKS): _WKS,
    (dns.rdataclass.ANY, dns.rdatatype.NSEC3): _NSEC3,
    (dns.rdataclass.HS, dns.rdatatype.A): dns.rdtypes.IN.A.A,  # BIND's hs_4/a_1: IN's A
}


def _get_name(self: Any, origin: dns.name.Name | None = None, decompress: bool = False) -> Any:
    del decompress  # (BIND 9.18.49 decompresses a name in any type's data)
    name = dns.name.from_wire_parser(self, True)
    return name.relativize(origin) if origin else name


@contextlib.contextmanager
def bind_rdata() -> Iterator[None]:
    """dnspython reading record data as BIND 9.18 does (the module's list) until the
    block ends; nests (each level puts back what it found)."""
    table: dict[Any, Any] = dns.rdata._rdata_classes  # (private: no public way to replace)
    saved = dict(table)
    for (cls, rtype), impl in _CLASSES.items():
        table[(cls, rtype)] = impl
        if cls == dns.rdataclass.ANY:  # the class-specific entries dnspython cached
            for key in [k for k in table if k[1] == rtype and k[0] != cls]:
                table[key] = impl
    get_name = dns.wire.Parser.get_name
    dns.wire.Parser.get_name = _get_name  # type: ignore[method-assign]
    try:
        yield
    finally:
        dns.wire.Parser.get_name = get_name  # type: ignore[method-assign]
        table.clear()
        table.update(saved)
