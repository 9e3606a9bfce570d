# Run as a child process: imports only the standard library, Twisted and dnspython.
"""A DNS server of odd but well-formed answers, for `pktlab run dns` side by side with dig
9.18 (session 26, dns26):

    python dns_odd_server.py [ADDR]     # prints "PORT" (UDP and TCP on ADDR)

By the query's first label:
* `xCODE-HEX` (`x15-0001ff`, `x8-none`): an A record and an OPT whose one option is
  CODE with the bytes HEX (`none`: empty), as they are (dig: BIND's checks of them);
* `rcN`: RCODE N, its upper bits in the OPT (the header's status in dig's words);
* `rTYPE-HEX` (`r16-056162`): a record of TYPE whose data is HEX, as it is, then an A
  (session 28: data cut short within its RDLENGTH, or too long, as BIND reads it); of
  the question's class, and alone when that is not IN (session 29: `-c CH`);
* `upperq`: the question back in upper case;
* `dup`, `interleave`, `ttls`: A records twice, with an AAAA between two, of two TTLs
  (dig shows each record as it came);
* any other name: the `odd.` zone below (AA), its RRSIGs only when asked for RRSIG:
  an RSAMD5 DNSKEY (BIND 9.18's key tag), an RRSIG expiring in 2099 (BIND writes it in
  the past, 68 years being its window), a SIG, NID, L64, GPOS, SVCB/HTTPS keys BIND 9.18
  does not name."""

from __future__ import annotations

import base64
import hashlib
import struct
import sys

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.zone
from childserver import query_of, serve_dns


def _bytes(seed: str, n: int) -> bytes:
    out = b""
    while len(out) < n:
        out += hashlib.sha256((seed + str(len(out))).encode()).digest()
    return out[:n]


def _b64(seed: str, n: int) -> str:
    return base64.b64encode(_bytes(seed, n)).decode()


_ECH = "ADj+DQA0AQAgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABAABAAEAB2V4YW1wbGUAAA=="
ZONE = f"""\
$ORIGIN odd.
$TTL 300
@ IN SOA ns.odd. h.odd. 1 7200 3600 1209600 300
@ IN NS ns.odd.
ns IN A 127.0.0.1
keys IN DNSKEY 257 3 1 {_b64("md5", 132)}
keys IN DNSKEY 256 3 13 {_b64("p256", 64)}
far IN RRSIG NSEC3 13 1 0 20991231235959 20000101000000 65535 odd. {_b64("y", 100)}
far IN RRSIG A 13 2 300 20270101000000 20261201000000 4242 odd. {_b64("a", 64)}
sig IN SIG A 8 2 300 20270101000000 20261201000000 4242 odd. {_b64("sig", 128)}
nid IN NID 10 0014:4fff:ff20:ee64
l64 IN L64 20 0000:0000:0000:0001
gpos IN GPOS -32.6882 116.8652 10.0
svc IN HTTPS 1 . dohpath=/dns-query{{?dns}} alpn=h2
svc IN HTTPS 1 . ohttp alpn=h3
svc IN HTTPS 1 . docpath=/a/b alpn=h2
svc IN HTTPS 2 svc.odd. ech={_ECH} ipv6hint=2001:db8::1
v6 IN AAAA 2001:db8::
pgp IN OPENPGPKEY {_b64("pgp", 40)}
zmd IN ZONEMD 2026120401 1 1 {_bytes("zmd", 48).hex()}
v6 IN APL 1:192.0.2.0/24 !2:2001:db8::/32
2t7b4g4vsa5smi47k61mv5bv1a22bojr IN NSEC3 1 1 12 AABBCCDD 2T7B4G4VSA5SMI47K61MV5BV1A22BOJR A
nsec3 IN NSEC3 1 1 12 AABBCCDD 2T7B4G4VSA5SMI47K61MV5BV1A22BOJR A
nsec3w IN NSEC3 1 1 12 AABBCCDD 2T7B4G4VSA5SMI47K61MV5BV1A22BOJR A
c0 IN NSEC3 1 1 12 AABBCCDD 2T7B4G4VSA5SMI47K61MV5BV1A22BOJR A
c1 IN NSEC3 1 1 12 AABBCCDD 2T7B4G4VSA5SMI47K61MV5BV1A22BOJR A
c000 IN NSEC3 1 1 12 AABBCCDD 2T7B4G4VSA5SMI47K61MV5BV1A22BOJR A
c001 IN NSEC3 1 1 12 AABBCCDD 2T7B4G4VSA5SMI47K61MV5BV1A22BOJR A
c0000 IN NSEC3 1 1 12 AABBCCDD 2T7B4G4VSA5SMI47K61MV5BV1A22BOJR A
c0001 IN NSEC3 1 1 12 AABBCCDD 2T7B4G4VSA5SMI47K61MV5BV1A22BOJR A
c000000 IN NSEC3 1 1 12 AABBCCDD 2T7B4G4VSA5SMI47K61MV5BV1A22BOJR A
c000004 IN NSEC3 1 1 12 AABBCCDD 2T7B4G4VSA5SMI47K61MV5BV1A22BOJR A
c00 IN NSEC3 1 1 12 AABBCCDD 2T7B4G4VSA5SMI47K61MV5BV1A22BOJR A
cccccccc IN NSEC3 1 1 12 AABBCCDD 2T7B4G4VSA5SMI47K61MV5BV1A22BOJR A
"""
zone = dns.zone.from_text(ZONE, origin="odd.", relativize=False)


def _opt(data: bytes = b"", rcode_hi: int = 0) -> bytes:
    return b"\x00" + struct.pack(">HHIH", 41, 1232, rcode_hi << 24, len(data)) + data


def _head(q: dns.message.Message, answers: int, rcode: int = 0, with_opt: bool = True) -> bytes:
    question = q.question[0]
    head = struct.pack(">6H", q.id, 0x8500 | rcode & 0xF, 1, answers, 0, int(with_opt))
    name = question.name.to_wire() or b""
    return head + name + struct.pack(">HH", question.rdtype, question.rdclass)


def _a(ttl: int = 60, last: int = 9) -> bytes:
    return b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, ttl, 4) + bytes([192, 0, 2, last])


_A = _a()
_AAAA = b"\xc0\x0c" + struct.pack(">HHIH", 28, 1, 60, 16) + bytes(15) + b"\x01"
RAW = {"dup": [_A, _A], "interleave": [_A, _AAAA, _a(60, 10)], "ttls": [_A, _a(30, 10)]}


def reply_to(wire: bytes) -> bytes | None:
    got = query_of(wire)
    if got is None:
        return None
    q, label = got
    if label.startswith("x") and label.count("-") == 1:
        code, _, hexdata = label[1:].partition("-")
        data = b"" if hexdata == "none" else bytes.fromhex(hexdata)
        return _head(q, 1) + _A + _opt(struct.pack(">HH", int(code), len(data)) + data)
    if label == "upperq":  # the question back in upper case (a 0x20-minded server's)
        name = (q.question[0].name.to_wire() or b"").upper()
        head = struct.pack(">6H", q.id, 0x8500, 1, 1, 0, 0)
        return head + name + b"\x00\x01\x00\x01" + _A
    if label in RAW:
        return _head(q, len(RAW[label]), with_opt=False) + b"".join(RAW[label])
    if label.startswith("r") and label[1:].partition("-")[0].isdigit() and "-" in label:
        code, _, hexdata = label[1:].partition("-")  # a record of type CODE, data HEX
        data, cls = bytes.fromhex(hexdata), q.question[0].rdclass  # (the question's class)
        rr = b"\xc0\x0c" + struct.pack(">HHIH", int(code), cls, 60, len(data)) + data
        if cls != 1:  # (session 29: a CH record alone, an IN A after it being FORMERR)
            return _head(q, 1, with_opt=False) + rr
        return _head(q, 2, with_opt=False) + rr + _A  # the A after it: dropped by BIND
    if label.startswith("rc") and label[2:].isdigit():
        number = int(label[2:])
        return _head(q, 0, number) + _opt(rcode_hi=number >> 4)
    r = dns.message.make_response(q)
    r.flags |= dns.flags.AA
    node = zone.get_node(q.question[0].name)
    if node is None:
        r.set_rcode(dns.rcode.NXDOMAIN)
        return r.to_wire()
    for rds in node.rdatasets:
        if rds.rdtype == q.question[0].rdtype:
            found = r.find_rrset(r.answer, q.question[0].name, rds.rdclass, rds.rdtype,
                                 rds.covers, create=True)  # fmt: skip
            found.update(rds)
    return r.to_wire(want_shuffle=False)  # the zone's order, as dig sees it each time


def main(argv: list[str]) -> None:
    serve_dns(reply_to, reply_to, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
