# Run as a child process: imports only the standard library, Twisted and dnspython.
"""An authoritative DNS server for `test.` with DNSSEC records, EDNS and misbehaving names,
for the tests of `pktlab run dns` side by side with dig:

    python dns_zone_server.py [ADDR]     # prints "PORT" (UDP and TCP on ADDR, default 127.0.0.1)

Answers are built with dnspython from the zone below: CNAME chains, NXDOMAIN and NODATA
with the SOA in the authority section, a referral for `sub.test.` (NS in authority, glue
in additional, AA clear), MX with its target's addresses in additional, the RRSIGs of an
RRset when the query has the DO bit, the query's EDNS echoed (version 0, DO as asked,
payload 1232; BADVERS for a version above 0), TC and an empty answer when the UDP reply
is larger than the query allows (512 without EDNS). RD is copied, RA never set.

EDNS options: an NSID request (option 3) is answered with `ns1.test`; a client COOKIE
(option 10, 8 bytes) is echoed with a 16-byte server cookie (fixed: the same for every
query); a CLIENT-SUBNET (8) echoed with its scope the source prefix; EXPIRE (9) answered
1209600; TCP-KEEPALIVE (11) answered 300 (30 s); PADDING (12) answered with 8 bytes. A
query without a question (dig +header-only) gets FORMERR. Class CH: `version.bind. TXT`
(and `id.server.`) as a BIND server answers it.

Outside `test.`: a root zone whose server is `localhost.` (for `+trace`).

`ednsopts.test.`: an OPT with options dig names (empty NSID and PAD, EDE, KEY-TAG)
and others. Misbehaving names: `silent.test.` never answers; `refused.test.` gets REFUSED
(`servfail.test.` SERVFAIL);
`badopt.test.` gets a reply whose OPT record is cut short; `cut.test.` one that ends in
the middle of its SOA (no OPT); `cutname.test.`, `cutfixed.test.`, `cutdata.test.` two A
records, the second cut in its name, its fixed fields, its data; `junk.test.` 5 bytes
after them; `badptr.test.` a bad compression pointer in the answer section;
`counts.test.` 65535 records said in each section, none there; `garbage.test.` gets the
query's ID and flags followed by bytes that are no DNS message; `tcgarbage.test.` gets TC
over UDP and, over TCP, 65535 bytes of garbage after its ID; a name under `deep.test.`
gets a referral one label deeper each time it is asked (to ns.deep.test. at this server):
an endless chain for +trace.

Odd replies (no OPT, AA): `tkey.test.` .. `tkey5.test.` and `tkeyother.test.` a TKEY in
the answer section whatever the type asked (with other data, with an error and no key,
errors BIND names and does not name); `tsig.test.`, `tsigtime.test.` (BADTIME, the time
as other data) and `tsigother.test.` an A record signed with a TSIG (fixed time, MAC and
original ID: the client has no key); `tsigans.test.` that TSIG in the answer section
(BIND's BADTSIG); `tsigbig.test.`, `tsigmax.test.` (and `tsigbigans.test.` in the answer
section) a TSIG whose error is above 4095 (5000, 65535: dnspython reads none).

Signed queries (TSIG, `dig -y` / `-k`): the keys of `TSIG_KEYS` (`tk.test.`
hmac-sha256, `md5.test.` hmac-md5; other keys: NOTAUTH with BADKEY and an empty MAC, a
bad MAC: BADSIG, a time off by more than the fudge: BADTIME signed, with the server's
time) get the name's reply signed with the query's key, but for `unsigned.sig.` (no
TSIG), `badmac.sig.` (signed with another secret), `skew.sig.` (signed 1000 s ago),
`badtime.sig.` (signed, error BADTIME), `badkey.sig.` (signed, error BADKEY),
`othername.sig.` (signed with the right secret under another key name), `shortmac.sig.`
(the MAC cut to 8 bytes), `trunc.sig.` (the MAC cut to 16 bytes, hmac-sha256's least):
each reply an A record, AA.

`hip.test.` and `hip2.test.` are HIP records of the zone; `keydata.test.` a KEYDATA
(type 65533: dig 9.18 prints it in RFC 3597's form, as dnspython reads it), `empty.test.`
a TYPE65280 with no data.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import sys
import time
from typing import Any

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsig
import dns.zone
from childserver import serve_dns


def _b64(seed: str, n: int) -> str:
    out = b""
    while len(out) < n:
        out += hashlib.sha256((seed + str(len(out))).encode()).digest()
    return base64.b64encode(out[:n]).decode()


def _hex(seed: str, n: int) -> str:
    return hashlib.sha256(seed.encode()).digest()[:n].hex()


SIG = "20270101000000 20261201000000 4242 test."
N3 = "2t7b4g4vsa5smi47k61mv5bv1a22bojr"
SVC_PARAMS = "mandatory=alpn,port alpn=h2 port=8443 ipv4hint=192.0.2.1,192.0.2.2 " \
    "ipv6hint=2001:db8::1 key65000=abc"  # fmt: skip  # an NSEC3 owner: a hashed label (base32hex)
ZONE = f"""\
$ORIGIN test.
$TTL 300
@ 3600 IN SOA ns.test. h.test. 1 7200 3600 1209600 300
@ 3600 IN RRSIG SOA 13 1 3600 {SIG} {_b64("soa", 64)}
@ 3600 IN NS ns.test.
@ 3600 IN DNSKEY 257 3 13 {_b64("ksk", 64)}
@ 3600 IN DNSKEY 256 3 8 {_b64("zsk", 260)}
@ 3600 IN RRSIG DNSKEY 13 1 3600 {SIG} {_b64("dnskey", 64)}
@ 300 IN NSEC a.test. SOA NS RRSIG NSEC DNSKEY
@ 300 IN RRSIG NSEC 13 1 300 {SIG} {_b64("apex-nsec", 64)}
ns 3600 IN A 127.0.0.1
a IN A 192.0.2.1
a IN A 192.0.2.2
a IN RRSIG A 13 2 300 {SIG} {_b64("a", 64)}
a IN NSEC v6.test. A RRSIG NSEC
a IN RRSIG NSEC 13 2 300 {SIG} {_b64("a-nsec", 64)}
v6 IN AAAA 2001:db8::1
www 60 IN CNAME v6.test.
mx 60 IN MX 10 a.test.
txt 60 IN TXT "with \\"quotes\\" and spaces" "second string"
a-rather-long-label-for-the-columns 2147483647 IN A 192.0.2.3
xn--bcher-kva IN A 192.0.2.4
idn 60 IN CNAME xn--bcher-kva.test.
idnmx 60 IN MX 10 XN--BCHER-KVA.test.
_443._tcp.www 300 IN TLSA 3 1 1 {_hex("tlsa", 32)}
ssh 300 IN SSHFP 4 2 {_hex("sshfp", 32)}
sub 3600 IN NS ns.sub.test.
sub 3600 IN DS 4242 13 2 {_hex("ds", 32)}
sub 3600 IN RRSIG DS 13 2 3600 {SIG} {_b64("ds", 64)}
ns.sub 3600 IN A 127.0.0.1
{N3} 300 IN NSEC3 1 1 12 AABBCCDD 2T7B4G4VSA5SMI47K61MV5BV1A22BOJR A RRSIG
{N3} 300 IN NSEC3PARAM 1 0 0 -
rev 300 IN DNSKEY 385 3 15 {_b64("rev", 32)}
rev 300 IN DNSKEY 256 3 5 {_b64("rsa", 132)}
pgp 300 IN OPENPGPKEY {_b64("pgp", 100)}
cert 300 IN CERT 1 12345 8 {_b64("cert", 100)}
ipsec 300 IN IPSECKEY 10 1 2 192.0.2.38 {_b64("ipsec", 70)}
dhcid 300 IN DHCID {_b64("dhcid", 35)}
@ 300 IN ZONEMD 2018031500 1 1 {_hex("zonemd", 32)}{_hex("zonemd2", 16)}
caa 300 IN CAA 0 issue "ca.example.net"
https 300 IN HTTPS 1 . alpn="h2,h3" ipv4hint=192.0.2.1
https2 300 IN HTTPS 1 svc.test. {SVC_PARAMS}
svcb 300 IN SVCB 0 svc.test.
hinfo 300 IN HINFO "PC" "Linux"
loc 300 IN LOC 42 21 54 N 71 06 18 W -24m 30m
hip 300 IN HIP 2 {_hex("hip", 16)} {_b64("hip", 260)} rvs1.test. rvs2.test.
hip2 300 IN HIP 2 {_hex("hip2", 16)} {_b64("hip2", 40)}
empty 300 IN TYPE65280 \\# 0
keydata 300 IN TYPE65533 \\# {16 + 32} 69320080 6932208a 00000000 0101030f{_hex("kd", 32)}
"""
for _i in range(3):  # about 800 bytes: over UDP with the default 1232, TC with 512
    ZONE += f"keys 300 IN DNSKEY 256 3 8 {_b64(f'key{_i}', 260)}\n"
for _i in range(8):
    ZONE += f'big 60 IN TXT "{_i:03d}{"x" * 180}"\n'

ROOT_ZONE = """\
$ORIGIN .
$TTL 86400
@ IN SOA localhost. h.test. 1 7200 3600 1209600 300
@ IN NS localhost.
localhost. IN A 127.0.0.1
test. 172800 IN NS localhost.
"""
ORIGIN = dns.name.from_text("test.")
LOCALHOST = dns.name.from_text("localhost.")
root = dns.zone.from_text(ROOT_ZONE, origin=dns.name.root, relativize=False)
SUB = dns.name.from_text("sub.test.")
zone = dns.zone.from_text(ZONE, origin=ORIGIN, relativize=False)
# an SOA with odd timer values (for +multiline's comments), in a zone of its own
ODD = dns.zone.from_text(
    "@ 60 IN SOA ns.test. h.test. 4294967295 0 90061 604800 86399\n@ 60 IN NS ns.test.\n",
    origin=dns.name.from_text("soa2.test."), relativize=False,
)  # fmt: skip
PAYLOAD = 1232


def zone_rrsets(
    name: dns.name.Name, rdtype: dns.rdatatype.RdataType, do: bool, z: dns.zone.Zone | None = None
) -> list[dns.rrset.RRset]:
    node = (z or zone).get_node(name)
    if node is None and z is None:
        node = ODD.get_node(name)
    if node is None:
        return []
    out = []
    rds = node.get_rdataset(dns.rdataclass.IN, rdtype)
    if rds is not None:
        out.append(dns.rrset.from_rdata_list(name, rds.ttl, list(rds)))
        sig = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.RRSIG, rdtype)
        if do and sig is not None:
            out.append(dns.rrset.from_rdata_list(name, sig.ttl, list(sig)))
    return out


def root_answer(
    response: dns.message.Message, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
) -> dns.message.Message:
    """The root zone: `. NS localhost.` (for dig +trace from @SERVER, which resolves the
    root server's name on its host: localhost is 127.0.0.1 there)."""
    response.flags |= dns.flags.AA
    response.answer += zone_rrsets(name, rdtype, False, root)
    if not response.answer:
        if root.get_node(name) is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        response.authority += zone_rrsets(dns.name.root, dns.rdatatype.SOA, False, root)
    elif rdtype == dns.rdatatype.NS:
        response.additional += zone_rrsets(LOCALHOST, dns.rdatatype.A, False, root)
    return response


SERVER_COOKIE = bytes.fromhex("0100000069a5c3d20123456789abcdef")
NSID = b"ns1.test"
CHAOS = {"version.bind.": "9.18-pktlab-test", "id.server.": "ns1.test"}


def _options(query: dns.message.Message) -> list[dns.edns.Option]:
    out: list[dns.edns.Option] = []
    for opt in query.options:
        if opt.otype == dns.edns.NSID:
            out.append(dns.edns.GenericOption(dns.edns.NSID, NSID))
        elif opt.otype == dns.edns.COOKIE:
            client = opt.to_wire()[:8]
            out.append(dns.edns.GenericOption(dns.edns.COOKIE, client + SERVER_COOKIE))
        elif opt.otype == ECS:  # echoed, its scope the source's (dig prints both)
            raw = bytearray(opt.to_wire() or b"")
            if len(raw) >= 4:
                raw[3] = raw[2]
            out.append(dns.edns.GenericOption(ECS, bytes(raw)))
        elif opt.otype == EXPIRE:  # the zone's SOA expire
            out.append(dns.edns.GenericOption(EXPIRE, (1209600).to_bytes(4, "big")))
        elif opt.otype == KEEPALIVE:  # 30.0 s, in units of 100 ms
            out.append(dns.edns.GenericOption(KEEPALIVE, (300).to_bytes(2, "big")))
        elif opt.otype == PADDING:  # a padded query gets a padded reply (8 bytes)
            out.append(dns.edns.GenericOption(PADDING, bytes(8)))
    return out


ODD_OPTIONS: list[dns.edns.Option] = [
    dns.edns.GenericOption(dns.edns.OptionType(code), data)
    for code, data in ((3, b""), (12, b""), (65001, b""), (65002, b"ab\x01"),
                       (15, b"\x00\x09no key"), (15, b"\x00\x63"), (15, b"\x00\x16a\x01b"),
                       (14, b"\x4f\x66\x4f\x67"), (13, b"\x00\x01"))
]  # fmt: skip
ECS, EXPIRE, KEEPALIVE, PADDING = (
    dns.edns.OptionType(c) for c in (8, 9, 11, 12)
)  # EDNS option codes (RFC 7871, 7314, 7828, 7830)


def answer(query: dns.message.Message) -> dns.message.Message:
    response = dns.message.make_response(query, our_payload=PAYLOAD)
    do = bool(query.ednsflags & dns.flags.DO)
    if query.edns >= 0:
        response.use_edns(0, dns.flags.DO if do else 0, PAYLOAD, options=_options(query))
        if query.edns > 0:
            response.set_rcode(dns.rcode.BADVERS)
            return response
    q = query.question[0]
    name, rdtype = q.name, q.rdtype
    if q.rdclass == dns.rdataclass.CH:
        response.flags |= dns.flags.AA
        text = CHAOS.get(name.to_text().lower())
        if text is None or rdtype != dns.rdatatype.TXT:
            response.set_rcode(dns.rcode.REFUSED if text is None else dns.rcode.NOERROR)
        else:
            response.answer.append(dns.rrset.from_text(name, 0, "CH", "TXT", f'"{text}"'))
        return response
    if name == dns.name.from_text("refused.test."):
        response.set_rcode(dns.rcode.REFUSED)
        return response
    if name == dns.name.from_text("servfail.test."):  # dig +nofail: the next server
        response.set_rcode(dns.rcode.SERVFAIL)
        return response
    if not name.is_subdomain(ORIGIN):
        return root_answer(response, name, rdtype)
    if name.is_subdomain(SUB) and not (name == SUB and rdtype == dns.rdatatype.DS):
        response.authority += zone_rrsets(SUB, dns.rdatatype.NS, False)
        ns = dns.name.from_text("ns.sub.test.")
        response.additional += zone_rrsets(ns, dns.rdatatype.A, False)
        return response
    response.flags |= dns.flags.AA
    for _ in range(8):  # CNAME chain
        found = zone_rrsets(name, rdtype, do)
        if found:
            response.answer += found
            break
        cname = zone_rrsets(name, dns.rdatatype.CNAME, do)
        if not cname:
            break
        response.answer += cname
        name = cname[0][0].target
    if not response.answer or (
        response.answer[-1].rdtype == dns.rdatatype.CNAME and rdtype != dns.rdatatype.CNAME
    ):
        if zone.get_node(name) is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        response.authority += zone_rrsets(ORIGIN, dns.rdatatype.SOA, do)
        if do:
            response.authority += zone_rrsets(ORIGIN, dns.rdatatype.NSEC, do)
    if rdtype == dns.rdatatype.MX:
        for rrset in list(response.answer):
            if rrset.rdtype == dns.rdatatype.MX:
                for rd in rrset:
                    response.additional += zone_rrsets(rd.exchange, dns.rdatatype.A, do)
    if rdtype == dns.rdatatype.NS and name == ORIGIN:
        response.additional += zone_rrsets(dns.name.from_text("ns.test."), dns.rdatatype.A, do)
    return response


# an answer of two A records (no OPT) cut or lengthened: in the second record's name
# (a pointer's first byte), in its fixed fields, in its data; 5 bytes of junk after it; a
# bad compression pointer in the answer section (not the question); 65535 records in each
# section said, none there
CUTS = {
    "cutname.test.": lambda w, at: w[:-15],
    "cutfixed.test.": lambda w, at: w[:-10],
    "cutdata.test.": lambda w, at: w[:-2],
    "junk.test.": lambda w, at: w + b"junk!",
    "badptr.test.": lambda w, at: w[:at] + b"\xff\xff" + w[at + 2 :],
    "counts.test.": lambda w, at: w[:6] + b"\xff\xff" * 3 + w[12:at],  # counts, no records
}
TKEY_ALG = dns.name.from_text("hmac-sha256.")
TKEY_TIMES = (1764892800, 1764979200)  # inception, expiration (2025-12-05, a day)


def _tkey(key: bytes, other: bytes = b"", mode: int = 3, error: int = 0) -> Any:
    from dns.rdtypes.ANY.TKEY import TKEY

    return TKEY(dns.rdataclass.ANY, dns.rdatatype.TKEY, TKEY_ALG, *TKEY_TIMES, mode, error,
                key, other)  # fmt: skip


def _tsig(error: int = 0, other: bytes = b"") -> Any:
    """A TSIG record (fixed time, MAC and original ID: the client has no key to check it)."""
    from dns.rdtypes.ANY.TSIG import TSIG

    mac = hashlib.sha256(b"mac").digest()
    return TSIG(dns.rdataclass.ANY, dns.rdatatype.TSIG, TKEY_ALG, TKEY_TIMES[0], 300, mac,
                4242, error, other)  # fmt: skip


class _BigError:
    """A TSIG whose error is above 4095 (dnspython cannot build nor read one: its RCODEs
    end there): `_tsig()`'s wire with the error field set to `error`."""

    rdtype = dns.rdatatype.TSIG

    def __init__(self, error: int) -> None:
        self.error = error

    def to_wire(self) -> bytes:
        data = bytearray(_tsig().to_wire())
        data[-4:-2] = struct.pack(">H", self.error)  # error, then other len (0)
        return bytes(data)


def _meta(rd: Any, section: str = "answer") -> Any:
    """A reply (AA, no OPT) with the meta record `rd` (class ANY, TTL 0): a TKEY in the
    answer section; a TSIG as the last record of the additional section (after an A
    record of the name, as a signed reply), or elsewhere (`section`)."""

    def reply(query: dns.message.Message) -> bytes:
        response = dns.message.make_response(query)
        response.use_edns(False)
        response.flags |= dns.flags.AA
        name = query.question[0].name
        if rd.rdtype != dns.rdatatype.TSIG:
            response.answer.append(dns.rrset.from_rdata(name, 0, rd))
            return bytes(response.to_wire(want_shuffle=False))
        response.answer.append(dns.rrset.from_text(name, 300, "IN", "A", "192.0.2.1"))
        wire = bytearray(response.to_wire(want_shuffle=False))
        data = rd.to_wire()
        owner = b"\x03key\x04test\x00"
        wire += owner + struct.pack(">HHIH", 250, 255, 0, len(data)) + data
        at = {"answer": 6, "additional": 10}[section]  # its count in the header
        wire[at : at + 2] = struct.pack(">H", struct.unpack(">H", wire[at : at + 2])[0] + 1)
        return bytes(wire)

    return reply


# odd replies: TKEY as a server answers a key negotiation (in the answer section; with
# other data; with an error and no key), replies signed with a TSIG the client has no key
# for (its error BADTIME with the server's time as other data); a TSIG in the answer section
META = {
    "tkey.test.": _meta(_tkey(base64.b64decode(_b64("tkey", 100)), b"\x00\x00i2\xd9\x00")),
    "tkey2.test.": _meta(_tkey(b"", mode=2, error=17)),
    "tkey3.test.": _meta(_tkey(b"\x01\x02", mode=5, error=23)),
    "tkey4.test.": _meta(_tkey(b"", mode=1, error=11)),
    "tkey5.test.": _meta(_tkey(b"", mode=1, error=99)),
    "tsig.test.": _meta(_tsig(), "additional"),
    "tsigtime.test.": _meta(_tsig(18, b"\x00\x00i2\xd9\x00"), "additional"),
    "tsigans.test.": _meta(_tsig(), "answer"),
    "tsigbig.test.": _meta(_BigError(5000), "additional"),
    "tsigmax.test.": _meta(_BigError(65535), "additional"),
    "tsigbigans.test.": _meta(_BigError(65535), "answer"),
    # long other data: TKEY's in the key's words, TSIG's in 60-character words
    "tkeyother.test.": _meta(_tkey(b"\x07" * 5, base64.b64decode(_b64("other", 100)))),
    "tsigother.test.": _meta(_tsig(0, base64.b64decode(_b64("other", 100))), "additional"),
}
DEEP = dns.name.from_text("deep.test.")
asked: dict[str, int] = {}  # deep.test. names: how often each was asked (the depth)


TK_SECRET = base64.b64decode("c2VjcmV0c2VjcmV0IGtleSBmb3IgdGVzdHM=")
TSIG_KEYS = {"tk.test.": ("hmac-sha256.", TK_SECRET),
             "md5.test.": ("hmac-md5.sig-alg.reg.int.", b"md5 secret key!!")}  # fmt: skip
# dns_xfr_server.py's: tk.test.'s secret, the name says how a transfer is signed
TSIG_KEYS.update((f"{mode}.test.", ("hmac-sha256.", TK_SECRET))
                 for mode in ("sparse", "lastbare", "badmid", "gap"))  # fmt: skip
SIGNED = dns.name.from_text("sig.")


def _wire(name: Any) -> bytes:
    """A name's canonical wire form (what a MAC covers)."""
    return bytes(name.canonicalize().to_wire() or b"")


def _tsig_start(wire: bytes) -> int:
    """Where a message's last record (its TSIG) starts."""
    counts = struct.unpack(">4H", wire[4:12])
    p = 12
    for _ in range(counts[0]):
        p += dns.name.from_wire(wire, p)[1] + 4
    at = p
    for _ in range(sum(counts[1:])):
        at = p
        p += dns.name.from_wire(wire, p)[1]
        p += 10 + struct.unpack(">H", wire[p + 8 : p + 10])[0]
    return at


def _with_tsig(wire: bytes, keyname: Any, alg: Any, secret: bytes | None, request_mac: bytes,
               error: int = 0, other: bytes = b"", signed: int | None = None,
               maclen: int | None = None) -> bytes:  # fmt: skip
    """`wire` with a TSIG appended (RFC 8945: the request MAC, the message, the
    variables); `secret` None: an empty MAC."""
    import hmac

    from dns.rdtypes.ANY.TSIG import TSIG

    now = int(time.time()) if signed is None else signed
    mac = b""
    if secret is not None:
        hashes = {"hmac-sha256.": "sha256", "hmac-md5.sig-alg.reg.int.": "md5"}
        data = struct.pack(">H", len(request_mac)) + request_mac + wire
        data += _wire(keyname) + struct.pack(">HI", 255, 0)
        data += _wire(alg) + struct.pack(">HIH", now >> 32, now & 0xFFFFFFFF, 300)
        data += struct.pack(">HH", error, len(other)) + other
        mac = hmac.new(secret, data, hashes[alg.to_text()]).digest()[:maclen]
    orig = struct.unpack(">H", wire[:2])[0]
    rd = TSIG(dns.rdataclass.ANY, dns.rdatatype.TSIG, alg, now, 300, mac, orig, error, other)
    data = bytes(rd.to_wire() or b"")
    out = bytearray(wire)
    out += bytes(keyname.to_wire() or b"") + struct.pack(">HHIH", 250, 255, 0, len(data)) + data
    out[10:12] = struct.pack(">H", struct.unpack(">H", out[10:12])[0] + 1)
    return bytes(out)


def check_signed(wire: bytes) -> tuple[bytes, bytes | None]:
    """A signed query checked with TSIG_KEYS: the query without its TSIG, and the
    refusal to send instead of a reply (NOTAUTH: BADKEY, BADSIG, BADTIME), or None."""
    import hmac

    query = dns.message.from_wire(wire, keyring=False)
    assert query.tsig is not None
    rd = query.tsig[0]
    keyname, alg, qmac = query.tsig.name, rd.algorithm, bytes(rd.mac)
    at = _tsig_start(wire)
    bare = bytearray(wire[:at])
    bare[10:12] = struct.pack(">H", struct.unpack(">H", bare[10:12])[0] - 1)

    def refusal(error: int) -> bytes:
        response = dns.message.make_response(dns.message.from_wire(bytes(bare)))
        response.set_rcode(dns.rcode.NOTAUTH)
        response.use_edns(False)
        other = struct.pack(">HI", 0, int(time.time())) if error == 18 else b""
        key = TSIG_KEYS.get(keyname.to_text().lower())
        secret = key[1] if error == 18 and key else None
        return _with_tsig(response.to_wire(), keyname, alg, secret, qmac, error, other)

    key = TSIG_KEYS.get(keyname.to_text().lower())
    if key is None or dns.name.from_text(key[0]) != alg:
        return bytes(bare), refusal(17)
    head = bytearray(bare)
    head[0:2] = struct.pack(">H", rd.original_id)
    data = bytes(head) + _wire(keyname) + struct.pack(">HI", 255, 0) + _wire(alg)
    data += struct.pack(">HIH", rd.time_signed >> 32, rd.time_signed & 0xFFFFFFFF, rd.fudge)
    data += struct.pack(">HH", rd.error, len(rd.other)) + rd.other
    hashes = {"hmac-sha256.": "sha256", "hmac-md5.sig-alg.reg.int.": "md5"}
    full = hmac.new(key[1], data, hashes[key[0]]).digest()
    if len(qmac) < max(10, len(full) // 2) or not hmac.compare_digest(full[: len(qmac)], qmac):
        return bytes(bare), refusal(16)  # a truncated MAC (dig's hmac-sha256-128) is read
    if abs(time.time() - rd.time_signed) > rd.fudge:
        return bytes(bare), refusal(18)
    return bytes(bare), None


def signed_reply(wire: bytes, limit: int | None) -> bytes | None:
    """A signed query's reply (see the module's text): checked with TSIG_KEYS, the
    reply to it unsigned (`reply_to`), then signed as its name says."""
    bare, refused = check_signed(wire)
    if refused is not None:
        return refused
    query = dns.message.from_wire(wire, keyring=False)
    assert query.tsig is not None
    keyname, alg, qmac = query.tsig.name, query.tsig[0].algorithm, bytes(query.tsig[0].mac)
    key = TSIG_KEYS[keyname.to_text().lower()]
    name = query.question[0].name
    if name.is_subdomain(SIGNED):
        response = dns.message.make_response(dns.message.from_wire(bytes(bare)))
        response.use_edns(False)
        response.flags |= dns.flags.AA
        response.answer.append(dns.rrset.from_text(name, 300, "IN", "A", "192.0.2.1"))
        plain = bytes(response.to_wire())
        how = name.labels[0].decode()
        if how == "unsigned":
            return plain
        secret: bytes = key[1]
        keyname2, when, error, maclen = keyname, None, 0, None
        if how == "badmac":
            secret = b"another secret"
        elif how == "skew":
            when = int(time.time()) - 1000
        elif how == "badtime":
            error = 18
        elif how == "badkey":
            error = 17
        elif how == "othername":
            keyname2 = dns.name.from_text("other.key.")
        elif how == "shortmac":
            maclen = 8
        elif how == "trunc":
            maclen = 16
        return _with_tsig(plain, keyname2, alg, secret, qmac, error, b"", when, maclen)
    out = reply_to(bytes(bare), limit)
    return None if out is None else _with_tsig(out, keyname, alg, key[1], qmac)


def reply_to(wire: bytes, limit: int | None) -> bytes | None:
    try:
        signed = dns.message.from_wire(wire, keyring=False).had_tsig
    except Exception:
        signed = False
    if signed:
        return signed_reply(wire, limit)
    try:
        query = dns.message.from_wire(wire)
    except Exception:
        return None
    if not query.question:  # dig +header-only: FORMERR, the header and OPT echoed
        response = dns.message.make_response(query)
        if query.edns >= 0:
            response.use_edns(0, 0, PAYLOAD, options=_options(query))
        response.set_rcode(dns.rcode.FORMERR)
        return response.to_wire()
    qname = query.question[0].name.to_text()
    if qname == "silent.test.":
        return None
    if qname == "garbage.test.":
        return wire[:2] + b"\x84\x00\x00\x01\x00\x01\x00\x00\x00\x00" + b"\xff" * 9
    if qname == "tcgarbage.test.":
        if limit is not None:  # UDP: TC, nothing else
            response = dns.message.make_response(query)
            response.flags |= dns.flags.TC
            return response.to_wire()
        return wire[:2] + b"\x84" + bytes(range(256)) * 255 + b"\0" * 252  # 65535 bytes
    name = query.question[0].name
    if name.is_subdomain(DEEP) and name != DEEP and not query.flags & dns.flags.RD:
        asked[qname] = depth = asked.get(qname, 0) + 1
        response = dns.message.make_response(query)
        cut = name.split(min(len(DEEP) + depth - 1, len(name)))[1]
        response.authority.append(dns.rrset.from_text(cut, 60, "IN", "NS", "ns.deep.test."))
        response.additional.append(dns.rrset.from_text("ns.deep.test.", 60, "IN", "A", "127.0.0.1"))
        return response.to_wire()
    if qname in META:  # TKEY in the answer section, a TSIG-signed reply, ... (odd replies)
        return META[qname](query)
    response = answer(query)
    if qname == "ednsopts.test." and query.edns >= 0:  # options as dig prints them
        response.use_edns(0, 0, PAYLOAD, options=ODD_OPTIONS)
    if qname == "cut.test.":  # no OPT, the authority's SOA cut short: ends mid-record
        response.use_edns(False)
        return response.to_wire(want_shuffle=False)[:-6]
    if qname in CUTS:  # two A records for the name, no OPT, cut (or lengthened) as CUTS says
        response = dns.message.make_response(query)
        response.use_edns(False)
        response.flags |= dns.flags.AA
        response.answer.append(dns.rrset.from_text(name, 300, "IN", "A", "192.0.2.1", "192.0.2.2"))
        wire = response.to_wire(want_shuffle=False)
        at = 12 + len(name.to_wire() or b"") + 4  # the first answer record
        return CUTS[qname](wire, at)
    if qname == "badopt.test.":
        full = response.to_wire(want_shuffle=False)
        return full[:-3]  # the OPT record's RDLENGTH and data cut short
    size = limit if limit is not None else 65535
    if query.edns >= 0 and limit is not None:
        size = max(512, min(query.payload, PAYLOAD))
    try:
        return response.to_wire(max_size=size, want_shuffle=False)  # the zone's order
    except dns.exception.TooBig:
        response.answer, response.authority, response.additional = [], [], []
        response.flags |= dns.flags.TC
        return response.to_wire(want_shuffle=False)


def main(argv: list[str]) -> None:
    serve_dns(lambda q: reply_to(q, 512), lambda q: reply_to(q, None), argv)


if __name__ == "__main__":
    main(sys.argv[1:])
