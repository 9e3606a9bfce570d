# Run as a child process: imports only the standard library, Twisted and dnspython.
"""An authoritative server that does zone transfers (AXFR, IXFR) over TCP, and IXFR over
UDP, for the tests of `pktlab run dns ... AXFR` side by side with dig:

    python dns_xfr_server.py [ADDR [QUERY_LOG]]   # prints "PORT" (UDP and TCP on ADDR)

Each query received is appended to QUERY_LOG as a line `PROTO HEX` (its wire bytes), so a
test compares the request we send with dig's.

Zones (each transfer is sent in messages of `PER_MESSAGE` records, the zone's order):
* `test.`: dns_zone_server.py's zone (DNSSEC records, every type dig prints in its own
  way), sent in messages of 7 records; `big.xfr.`: 3000 A records (SOA, NS first), in
  messages of 100; `one.xfr.`: the whole zone in one message.
* `ixfr.xfr.`: serials 1, 2 and 3 (a record deleted and one added each time): IXFR from
  serial 1 or 2 gets the incremental reply (RFC 1995, differences in messages of 3
  records), from 3 or later the current SOA alone (up to date), from any other serial
  the AXFR-style reply (the whole zone between two SOAs).
* `nsec3.xfr.`: NSEC3 records whose owners are hashes; `badnsec3.xfr.` one whose owner
  is none (`zz`, in the third message: BIND refuses the message).
* Over UDP an IXFR gets the incremental reply when it fits in 512 bytes, else the SOA
  alone (RFC 1995 §2); an IXFR of `tc.xfr.` a truncated (TC) reply without records
  (over TCP the whole of `tc.xfr.`, AXFR-style); of `silent.xfr.` no reply; any other
  UDP query gets REFUSED.
Misbehaving ones: `refused.xfr.` REFUSED, `notauth.xfr.` NOTAUTH, `empty.xfr.` NOERROR
with no records, `nosoa.xfr.` a transfer that starts with an A record; `cut.xfr.` two
messages, then the connection closed (no end SOA); `noend.xfr.` two messages, then
silence with the connection open; `endless.xfr.` records without end, as fast as the
client reads; `close.xfr.` the
connection closed at once; `garbage.xfr.` one message, then one that is no DNS message; `badid.xfr.`
the first message with another ID.

Signed transfers (TSIG, `dig -y`): the key's name says how the messages are signed (all
with dns_zone_server's `tk.test.` secret, hmac-sha256; RFC 8945's chaining: each MAC over
the one before, the unsigned messages since and the message): `tk.test.` each message,
`sparse.test.` the first, every third and the last, `lastbare.test.` all but the last,
`badmid.test.` each, the second with a wrong MAC, `gap.test.` the first and the last only
(`big.xfr.` then in messages of 10 records: 300 unsigned in a row). A key of another
secret: NOTAUTH with BADSIG, of another name: NOTAUTH with BADKEY (empty MACs).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone
from childserver import listen_udp_tcp
from twisted.internet import protocol
from twisted.internet import reactor as _reactor
from twisted.protocols.basic import Int16StringReceiver

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dns_zone_server import (  # the side-by-side zone of the query tests; its TSIG keys
    TK_SECRET,
    ZONE,
    _with_tsig,
    check_signed,
)

reactor: Any = _reactor
RR = tuple[str, int, str, str]  # name, ttl, type, data


def _zone_records(text: str, origin: str) -> list[RR]:
    """A zone's records, SOA first, then the others in the zone's order."""
    z = dns.zone.from_text(text, origin=dns.name.from_text(origin), relativize=False)
    soa: list[RR] = []
    rest: list[RR] = []
    for name, node in z.items():
        for rds in node:
            for rd in rds:
                rr = (name.to_text(), rds.ttl, dns.rdatatype.to_text(rds.rdtype), rd.to_text())
                (soa if rds.rdtype == dns.rdatatype.SOA else rest).append(rr)
    return soa + rest


def _soa(zone: str, serial: int) -> RR:
    return (zone, 3600, "SOA", f"ns.{zone} h.{zone} {serial} 7200 3600 1209600 300")


TEST = _zone_records(ZONE, "test.")
TC = [
    _soa("tc.xfr.", 5),
    ("tc.xfr.", 3600, "NS", "ns.tc.xfr."),
    ("www.tc.xfr.", 60, "A", "192.0.2.5"),
]
BIG = [_soa("big.xfr.", 7), ("big.xfr.", 3600, "NS", "ns.big.xfr.")] + [
    (f"h{i}.big.xfr.", 300, "A", f"10.{i // 65536}.{i // 256 % 256}.{i % 256}") for i in range(3000)
]
ONE = [_soa("one.xfr.", 1), ("one.xfr.", 3600, "NS", "ns.one.xfr."),
       ("www.one.xfr.", 60, "A", "192.0.2.80"), ("www.one.xfr.", 60, "AAAA", "2001:db8::80"),
       ("txt.one.xfr.", 60, "TXT", '"hello world"')]  # fmt: skip
# ixfr.xfr.: version 1 has a, b; 2 drops a, adds c; 3 drops b, adds d
IX = "ixfr.xfr."
IX_BASE = [(IX, 3600, "NS", f"ns.{IX}"), (f"ns.{IX}", 3600, "A", "127.0.0.1")]
IX_DIFFS = {  # serial -> (deleted, added) going to it from serial - 1
    2: ([(f"a.{IX}", 300, "A", "192.0.2.1")], [(f"c.{IX}", 300, "A", "192.0.2.3")]),
    3: ([(f"b.{IX}", 300, "A", "192.0.2.2")], [(f"d.{IX}", 300, "TXT", '"new in 3"')]),
}
IX_SERIAL = 3
# nsec3.xfr.: NSEC3 owners (base32hex hashes, upper and lower case); badnsec3.xfr.: the
# third message's owner is no hash (BIND's check-names: `bad owner name`)
N3 = "1 1 12 AABBCCDD 2T7B4G4VSA5SMI47K61MV5BV1A22BOJR A RRSIG"
NSEC3Z = [_soa("nsec3.xfr.", 3), ("nsec3.xfr.", 3600, "NS", "ns.nsec3.xfr."),
          ("ns.nsec3.xfr.", 3600, "A", "127.0.0.1"),
          ("2t7b4g4vsa5smi47k61mv5bv1a22bojr.nsec3.xfr.", 300, "NSEC3", N3),
          ("0P9MHAVEQVM6T7VBL5LOP2U3T2RP3TOM.nsec3.xfr.", 300, "NSEC3", N3),
          ("www.nsec3.xfr.", 60, "A", "192.0.2.3")]  # fmt: skip
BADN3 = [_soa("badnsec3.xfr.", 3), ("badnsec3.xfr.", 3600, "NS", "ns.badnsec3.xfr."),
         ("a.badnsec3.xfr.", 60, "A", "192.0.2.1"), ("b.badnsec3.xfr.", 60, "A", "192.0.2.2"),
         ("zz.badnsec3.xfr.", 300, "NSEC3", N3),
         ("c.badnsec3.xfr.", 60, "A", "192.0.2.3")]  # fmt: skip
IX_NOW = [_soa(IX, IX_SERIAL), *IX_BASE, (f"c.{IX}", 300, "A", "192.0.2.3"),
          (f"d.{IX}", 300, "TXT", '"new in 3"')]  # fmt: skip


def ixfr_records(serial: int) -> list[RR]:
    """The IXFR answer for a client at `serial` (RFC 1995 §4)."""
    if serial >= IX_SERIAL:
        return [_soa(IX, IX_SERIAL)]
    if serial not in (1, 2):
        return [*IX_NOW, _soa(IX, IX_SERIAL)]
    out = [_soa(IX, IX_SERIAL)]
    for to in range(serial + 1, IX_SERIAL + 1):
        deleted, added = IX_DIFFS[to]
        out += [_soa(IX, to - 1), *deleted, _soa(IX, to), *added]
    return [*out, _soa(IX, IX_SERIAL)]


def axfr_of(zone: str) -> tuple[list[RR], int] | None:
    """A zone's AXFR records (SOA, the rest, SOA) and how many go in a message."""
    records = {"test.": (TEST, 7), "big.xfr.": (BIG, 100), "one.xfr.": (ONE, 1000),
               IX: (IX_NOW, 3), "tc.xfr.": (TC, 2),
               "nsec3.xfr.": (NSEC3Z, 2), "badnsec3.xfr.": (BADN3, 2)}.get(zone)  # fmt: skip
    if records is None:
        return None
    rrs, per = records
    return [*rrs, rrs[0]], per


def message(query: dns.message.Message, records: list[RR]) -> bytes:
    r = dns.message.make_response(query)
    r.flags |= dns.flags.AA
    for name, ttl, rtype, data in records:
        r.answer.append(dns.rrset.from_text(name, ttl, "IN", rtype, data))
    return bytes(r.to_wire(want_shuffle=False, max_size=65535))


def _rcode(query: dns.message.Message, rcode: int) -> bytes:
    r = dns.message.make_response(query)
    r.set_rcode(dns.rcode.Rcode(rcode))
    return bytes(r.to_wire())


def _ixfr_serial(query: dns.message.Message) -> int | None:
    for rrset in query.authority:
        if rrset.rdtype == dns.rdatatype.SOA:
            return int(rrset[0].serial)
    return None


XFR_KEYS = ("tk.test.", "sparse.test.", "lastbare.test.", "badmid.test.", "gap.test.")


class Signer:
    """Signs a transfer's messages as the key's name says (see the module's text)."""

    def __init__(self, query_wire: bytes) -> None:
        q = dns.message.from_wire(query_wire, keyring=False)
        assert q.tsig is not None
        rd = q.tsig[0]
        self.keyname, self.alg, self.prior = q.tsig.name, rd.algorithm, bytes(rd.mac)
        self.mode = self.keyname.to_text().lower()
        self.secret = TK_SECRET
        self.pending: list[bytes] = []
        self.n = 0
        self.bare, self.refusal = check_signed(query_wire)

    def sign(self, wire: bytes, last: bool) -> bytes:
        import hmac
        import struct
        import time

        n, self.n = self.n, self.n + 1
        mode = self.mode
        if not (n == 0 or last or mode in ("tk.test.", "badmid.test.")
                or (mode == "sparse.test." and n % 3 == 0)
                or (mode == "lastbare.test." and not last)):  # fmt: skip
            self.pending.append(wire)
            return wire
        if mode == "lastbare.test." and last and n > 0:
            return wire
        if n == 0:
            out = _with_tsig(wire, self.keyname, self.alg, self.secret, self.prior)
        else:
            now = int(time.time())
            data = struct.pack(">H", len(self.prior)) + self.prior + b"".join(self.pending)
            data += wire + struct.pack(">HIH", now >> 32, now & 0xFFFFFFFF, 300)
            mac = hmac.new(self.secret, data, "sha256").digest()
            if mode == "badmid.test." and n == 1:
                mac = bytes(32)
            out = _with_mac(wire, self.keyname, self.alg, mac, now)
        self.pending = []
        found = dns.message.from_wire(out, keyring=False).tsig
        assert found is not None
        self.prior = bytes(found[0].mac)
        return out


def _with_mac(wire: bytes, keyname: Any, alg: Any, mac: bytes, now: int) -> bytes:
    import struct

    from dns.rdtypes.ANY.TSIG import TSIG

    orig = struct.unpack(">H", wire[:2])[0]
    rd = TSIG(dns.rdataclass.ANY, dns.rdatatype.TSIG, alg, now, 300, mac, orig, 0, b"")
    data = bytes(rd.to_wire() or b"")
    out = bytearray(wire)
    out += bytes(keyname.to_wire() or b"") + struct.pack(">HHIH", 250, 255, 0, len(data)) + data
    out[10:12] = struct.pack(">H", struct.unpack(">H", out[10:12])[0] + 1)
    return bytes(out)


class Tcp(Int16StringReceiver):
    MAX_LENGTH = 65535
    transport: Any
    factory: Any

    def stringReceived(self, data: bytes) -> None:
        log(self.factory, "tcp", data)
        signer: Signer | None = None
        try:
            if dns.message.from_wire(data, keyring=False).had_tsig:
                signer = Signer(data)
        except Exception:
            self.transport.loseConnection()
            return
        if signer is not None and signer.refusal is not None:
            self.sendString(signer.refusal)
            return
        try:
            query = dns.message.from_wire(data if signer is None else signer.bare)
        except Exception:
            self.transport.loseConnection()
            return
        if not query.question:
            return
        q = query.question[0]
        zone, rdtype = q.name.to_text(), q.rdtype
        if rdtype not in (dns.rdatatype.AXFR, dns.rdatatype.IXFR):
            self.sendString(_rcode(query, dns.rcode.REFUSED))
            return
        special = {"refused.xfr.": dns.rcode.REFUSED, "notauth.xfr.": dns.rcode.NOTAUTH}
        if zone in special:
            self.sendString(_rcode(query, special[zone]))
            return
        if zone == "close.xfr.":
            self.transport.loseConnection()
            return
        if zone == "empty.xfr.":
            self.sendString(message(query, []))
            return
        if zone == "nosoa.xfr.":
            self.sendString(message(query, [("a.nosoa.xfr.", 60, "A", "192.0.2.9")]))
            return
        if zone in ("cut.xfr.", "noend.xfr.", "garbage.xfr.", "badid.xfr."):
            self.misbehave(query, zone)
            return
        if zone == "endless.xfr.":
            self.endless(query)
            return
        if rdtype == dns.rdatatype.IXFR and zone == IX:
            serial = _ixfr_serial(query)
            records = ixfr_records(serial if serial is not None else 0)
            per = 3
        else:
            got = axfr_of(zone)
            if got is None:
                self.sendString(_rcode(query, dns.rcode.NOTAUTH))
                return
            records, per = got
        if signer is not None and signer.mode == "gap.test." and zone == "big.xfr.":
            per = 10
        for at in range(0, len(records), per):
            wire = message(query, records[at : at + per])
            if signer is not None:
                wire = signer.sign(wire, at + per >= len(records))
            self.sendString(wire)

    def misbehave(self, query: dns.message.Message, zone: str) -> None:
        first = [_soa(zone, 1), (zone, 3600, "NS", f"ns.{zone}")]
        second = [(f"h{i}.{zone}", 60, "A", f"192.0.2.{i}") for i in range(1, 4)]
        if zone == "badid.xfr.":
            wire = bytearray(message(query, first))
            wire[0:2] = ((query.id + 1) % 65536).to_bytes(2, "big")
            self.sendString(bytes(wire))
            return
        self.sendString(message(query, first))
        if zone == "garbage.xfr.":
            self.sendString(message(query, [])[:2] + b"\x84\x00" + b"\xff" * 20)
            return
        self.sendString(message(query, second))
        if zone == "cut.xfr.":
            self.transport.loseConnection()

    def endless(self, query: dns.message.Message) -> None:
        """Records without end, each message written once the client read the last."""
        self.sendString(message(query, [_soa("endless.xfr.", 1)]))
        producer = Endless(self, query)
        self.transport.registerProducer(producer, True)
        reactor.callLater(0, producer.resumeProducing)


class Endless:
    """A push producer of A records in messages of 100, for as long as the client reads."""

    def __init__(self, proto: Tcp, query: dns.message.Message) -> None:
        self.proto, self.query, self.count, self.paused = proto, query, 0, False

    def resumeProducing(self) -> None:
        self.paused = False
        while not self.paused and self.proto.transport is not None and self.proto.connected:
            n, self.count = self.count, self.count + 100
            self.proto.sendString(message(self.query, [
                (f"h{i}.endless.xfr.", 60, "A", f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
                for i in range(n, n + 100)
            ]))  # fmt: skip

    def pauseProducing(self) -> None:
        self.paused = True

    def stopProducing(self) -> None:
        self.paused = True


class Udp(protocol.DatagramProtocol):
    def __init__(self, factory: Any) -> None:
        self.factory = factory

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        log(self.factory, "udp", data)
        try:
            query = dns.message.from_wire(data)
        except Exception:
            return
        if not query.question or self.transport is None:
            return
        q = query.question[0]
        if q.rdtype == dns.rdatatype.IXFR and q.name.to_text() == "silent.xfr.":
            return
        if q.rdtype == dns.rdatatype.IXFR and q.name.to_text() == "tc.xfr.":
            r = dns.message.make_response(query)
            r.flags |= dns.flags.AA | dns.flags.TC
            out = r.to_wire()
        elif q.rdtype == dns.rdatatype.IXFR and q.name.to_text() == IX:
            serial = _ixfr_serial(query)
            out = message(query, ixfr_records(serial if serial is not None else 0))
            if len(out) > 512:
                out = message(query, [_soa(IX, IX_SERIAL)])
        else:
            out = _rcode(query, dns.rcode.REFUSED)
        self.transport.write(out, addr)


def log(factory: Any, proto: str, data: bytes) -> None:
    path = getattr(factory, "query_log", None)
    if path:
        with open(path, "a", encoding="ascii") as f:
            f.write(f"{proto} {data.hex()}\n")


def main(argv: list[str]) -> None:
    addr = argv[0] if argv else "127.0.0.1"
    factory = protocol.Factory.forProtocol(Tcp)
    factory.query_log = argv[1] if len(argv) > 1 else None  # type: ignore[attr-defined]
    print(listen_udp_tcp(reactor, Udp(factory), factory, addr), flush=True)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
