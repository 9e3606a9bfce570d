"""A reply as dig 9.18 shows it (session 26, dns26): its question's name in the case it
came (a server's 0x20 or upper case; ours showed the query's), its records one at a
time, in the wire's order, each with its own TTL, a duplicate kept, as BIND's parser
keeps them for dig (DNS_MESSAGEPARSE_PRESERVEORDER). dnspython merges an RRset's
records: before, ours dropped a duplicate, moved a record next to its RRset's first
and gave every record of an RRset the smallest TTL (a server's TTLs misreported). Seen
against dig 9.18.49; tests/integration/test_dns_odd_dig.py runs both side by side."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import dns.message
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "controller"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ctl_fakes import Rig

from packetlab.measure.dns import dns_query

SERVER = ("192.0.2.53", 53)


def a(ttl: int, last: int) -> bytes:
    return b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, ttl, 4) + bytes([192, 0, 2, last])


AAAA = b"\xc0\x0c" + struct.pack(">HHIH", 28, 1, 60, 16) + bytes(15) + b"\x01"
OTHER = b"\x01b\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + bytes([192, 0, 2, 11])
ANSWERS = {
    "duplicate": [a(60, 9), a(60, 9)],
    "interleaved": [a(60, 9), AAAA, a(60, 10)],
    "ttls": [a(60, 9), a(30, 10)],
    "two-names": [a(60, 9), OTHER, a(60, 10)],
}
SHOWN = {
    "duplicate": [("a.test.", 60, "192.0.2.9"), ("a.test.", 60, "192.0.2.9")],
    "interleaved": [("a.test.", 60, "192.0.2.9"), ("a.test.", 60, "::1"),
                    ("a.test.", 60, "192.0.2.10")],
    "ttls": [("a.test.", 60, "192.0.2.9"), ("a.test.", 30, "192.0.2.10")],
    "two-names": [("a.test.", 60, "192.0.2.9"), ("b.a.test.", 60, "192.0.2.11"),
                  ("a.test.", 60, "192.0.2.10")],
}  # fmt: skip


@pytest.mark.parametrize("case", list(ANSWERS))
def test_the_records_as_they_came(case: str) -> None:
    def serve(query: bytes) -> list[bytes]:
        q = dns.message.from_wire(query)
        head = struct.pack(">6H", q.id, 0x8500, 1, len(ANSWERS[case]), 0, 0)
        question = q.question[0].name.to_wire() or b""
        return [head + question + b"\x00\x01\x00\x01" + b"".join(ANSWERS[case])]

    rig = Rig()
    rig.endpoint.udp_servers[SERVER] = serve
    r = rig.run(dns_query(rig.session, "a.test", server="192.0.2.53", edns=False))
    assert [(x.name, x.ttl, x.data) for x in r.answers] == SHOWN[case]


def test_the_question_as_it_came_back() -> None:
    def serve(query: bytes) -> list[bytes]:
        q = dns.message.from_wire(query)
        head = struct.pack(">6H", q.id, 0x8500, 1, 1, 0, 0)
        question = (q.question[0].name.to_wire() or b"").upper()
        return [head + question + b"\x00\x01\x00\x01" + a(60, 9)]

    rig = Rig()
    rig.endpoint.udp_servers[SERVER] = serve
    r = rig.run(dns_query(rig.session, "a.test", server="192.0.2.53", edns=False)).to_dict()
    assert (r["qname"], r["reply_qname"]) == ("a.test.", "A.TEST.")
    from test_cli_dns import parse, text_of

    text = text_of(parse("@192.0.2.53", "+noall", "+question", "+answer", "a.test"), r)
    assert text == ";A.TEST.\t\t\t\tIN\tA\nA.TEST.\t\t\t60\tIN\tA\t192.0.2.9\n"
