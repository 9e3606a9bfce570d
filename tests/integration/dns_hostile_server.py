"""A DNS server on loopback that answers wrongly on purpose, for `pktlab run dns` beside
dig (tests/integration/test_dns_hostile_dig.py); the first line printed is its port.

By the name asked (class IN, any type):
  wrongid.test.   a reply with another ID first, then the right one
  wrongq.test.    a reply to another question (other.test.) first, then the right one
  wrongsrc.test.  a reply from another port of the same address first, then the right one
  onlywrongid.test., onlywrongq.test., onlywrongsrc.test.  only the wrong reply
  short.test.     5 bytes: a header cut short
  loop.test.      an answer whose owner is a compression pointer to itself
  loop2.test.     two pointers that point at each other
  counts.test.    ANCOUNT 3, one record
  big.test.       TXT: ~65.35 KB over TCP (TC over UDP)
  dropfirst.test. the first try of each query ID not answered
  anything else   A 192.0.2.1 (AAAA 2001:db8::1), authoritative
"""

from __future__ import annotations

import struct
import sys
from typing import Any

import dns.flags
import dns.message
import dns.rrset
from childserver import listen_udp_tcp
from twisted.internet import protocol
from twisted.internet import reactor as _reactor
from twisted.protocols.basic import Int16StringReceiver

reactor: Any = _reactor

SEEN: set[int] = set()  # dropfirst.test.'s query IDs


def plain(query: dns.message.Message) -> dns.message.Message:
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA
    q = query.question[0]
    data = "2001:db8::1" if q.rdtype == 28 else "192.0.2.1"
    rtype = "AAAA" if q.rdtype == 28 else "A"
    response.answer.append(dns.rrset.from_text(q.name, 300, "IN", rtype, data))
    return response


def big(query: dns.message.Message) -> bytes:
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA
    strings = ['"' + "x" * 255 + '"'] * 15  # 3,840 bytes of TXT data a record
    texts = [" ".join([f"{i:04d}", *strings]) for i in range(16)]
    texts.append(" ".join(["0016", *strings[:14]]))  # the message: ~65.35 KB (64 KB and more)
    response.answer.append(dns.rrset.from_text(query.question[0].name, 300, "IN", "TXT", *texts))
    return response.to_wire(max_size=65535, want_shuffle=False)


def header_only(wire: bytes, ancount: int) -> bytes:
    return wire[:6] + struct.pack("!H", ancount) + wire[8:]


def answers(wire: bytes, udp: bool) -> list[tuple[str, bytes]]:
    """What to send back: (how, bytes) pairs; how is "" or "other" (another port)."""
    try:
        query = dns.message.from_wire(wire)
    except Exception:
        return []
    name = query.question[0].name.to_text().lower()
    right = plain(query).to_wire()
    bare = name.removeprefix("only")
    if bare == "wrongid.test.":
        wrong = struct.pack("!H", (query.id + 1) & 0xFFFF) + right[2:]
    elif bare == "wrongq.test.":
        other = dns.message.make_query("other.test.", "A", id=query.id)
        wrong = plain(other).to_wire()
    elif bare == "wrongsrc.test.":
        return [("other", right)] + ([] if name != bare else [("", right)])
    else:
        wrong = b""
    if wrong:
        return [("", wrong)] + ([] if name != bare else [("", right)])
    if name == "dropfirst.test." and udp and query.id not in SEEN:  # the first try lost
        SEEN.add(query.id)
        return []
    if name == "short.test.":
        return [("", right[:5])]
    if name in ("loop.test.", "loop2.test."):
        head = right[:12]
        qlen = len(query.question[0].name.to_wire() or b"") + 4
        at = 12 + qlen  # the answer's owner: a pointer to itself (or to the next two bytes)
        rest = right[at + 2 :]
        if name == "loop.test.":
            owner = struct.pack("!H", 0xC000 | at)
            return [("", head + right[12:at] + owner + rest)]
        # two pointers: the owner points at a pointer just after the question's, and back
        return [("", right[:at] + struct.pack("!H", 0xC000 | (at + 2))
                 + struct.pack("!H", 0xC000 | at) + rest)]  # fmt: skip
    if name == "counts.test.":  # no OPT: the answer count lies, nothing after the record
        response = plain(query)
        response.use_edns(False)
        return [("", header_only(response.to_wire(), 3))]
    if name == "countsopt.test.":  # the OPT read as the second answer record
        return [("", header_only(right, 3))]
    if name == "big.test.":
        if udp:
            response = dns.message.make_response(query)
            response.flags |= dns.flags.TC | dns.flags.AA
            return [("", response.to_wire())]
        return [("", big(query))]
    return [("", right)]


class Udp(protocol.DatagramProtocol):
    def __init__(self, other: Any) -> None:
        self.other = other

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        for how, out in answers(data, True):
            (self.other if how else self.transport).write(out, addr)  # type: ignore[union-attr]


class Tcp(Int16StringReceiver):
    MAX_LENGTH = 65535

    def stringReceived(self, data: bytes) -> None:
        for _, out in answers(data, False):
            self.sendString(out)


def main(argv: list[str]) -> None:
    addr = argv[0] if argv else "127.0.0.1"
    other = protocol.DatagramProtocol()
    reactor.listenUDP(0, other, interface=addr)
    factory = protocol.Factory.forProtocol(Tcp)
    print(listen_udp_tcp(reactor, Udp(other.transport), factory, addr), flush=True)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
