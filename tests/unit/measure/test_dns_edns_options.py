"""EDNS options in a reply as BIND 9.18 reads and dig 9.18 shows them (session 26,
dns26), over the scripted endpoint: the options BIND refuses (`;; Got bad packet:
malformed OPT option`, whatever dnspython thinks of them) and the ones it takes that
dnspython refused (REPORT-CHANNEL, unknown to BIND 9.18), and dig's lines for LLQ,
CLIENT-TAG, SERVER-TAG, a TCP KEEPALIVE of another length, EDE's UTF-8 text and a
CLIENT-SUBNET of family 0. Each case was seen against dig 9.18.49 (a server answering
each option's bytes); before, ours said dnspython's words (`'utf-8' codec can't decode
byte 0xff`, `invalid ECS prefix length`, `unexpected end of input`), took what BIND
refuses (an EXPIRE of 2 bytes, an odd KEY-TAG) and showed `OPT=N` where dig names it."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import dns.message
import dns.rrset
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "controller"))

from ctl_fakes import Rig

from packetlab.cli import run_dns_text
from packetlab.measure.dns import dns_query

SERVER = ("192.0.2.53", 53)


def with_option(code: int, data: bytes):  # type: ignore[no-untyped-def]
    """A server whose answer's OPT carries one option, these bytes as they are."""

    def serve(query: bytes) -> list[bytes]:
        q = dns.message.from_wire(query)
        r = dns.message.make_response(q)
        r.use_edns(False)  # (the OPT is the one below)
        r.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", "A", "192.0.2.9"))
        wire = bytearray(r.to_wire())
        wire[11] = 1  # ARCOUNT: the OPT below
        option = struct.pack(">HH", code, len(data)) + data
        return [bytes(wire) + b"\x00" + struct.pack(">HHIH", 41, 1232, 0, len(option)) + option]

    return serve


def ask(code: int, data: bytes) -> dict[str, object]:
    rig = Rig()
    rig.endpoint.udp_servers[SERVER] = with_option(code, data)
    return rig.run(dns_query(rig.session, "a.test", server="192.0.2.53")).to_dict()


REFUSED = {  # BIND's DNS_R_OPTERR
    "llq-empty": (1, b""), "ecs-short": (8, b"\x00\x01\x18"),
    "ecs-prefix-33": (8, bytes.fromhex("000121000a0b0c0d0e")),
    "ecs-family-3": (8, bytes.fromhex("0003000000")),
    "ecs-too-long": (8, bytes.fromhex("0001180001020300")),
    "ecs-bits-past-prefix": (8, bytes.fromhex("000117000a0b0d")),
    "ecs-family-0-prefix": (8, bytes.fromhex("000017000a0b0c")),
    "expire-2": (9, b"\x00\x01"), "cookie-9": (10, b"123456789"),
    "key-tag-empty": (14, b""), "key-tag-odd": (14, b"\x00\x01\x02"),
    "ede-empty": (15, b""), "ede-1": (15, b"\x00"), "ede-not-utf8": (15, b"\x00\x01\xff"),
    "client-tag-3": (16, b"\x00\x01\x02"), "server-tag-1": (17, b"\x07"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REFUSED))
def test_an_option_bind_refuses_is_its_bad_packet(case: str) -> None:
    r = ask(*REFUSED[case])
    assert (r["error_kind"], r["reason"]) == ("malformed", "malformed OPT option")


TAKEN = {  # BIND's lines (dig 9.18.49's)
    "report-channel": (18, b"\x03foo", '; OPT=18: 03 66 6f 6f (".foo")'),
    "llq": (1, bytes.fromhex("000100010000112233445566778800000e10"),
            "; LLQ: Version: 1, Opcode: 1, Error: 0, Identifier: 1234605616436508552, "
            "Lifetime: 3600"),
    "client-tag": (16, b"\x00\x01", "; CLIENT-TAG: 1"),
    "server-tag": (17, b"\x00\x07", "; SERVER-TAG: 7"),
    "keepalive-1": (11, b"\x00", '; TCP KEEPALIVE: 00 (".")'),
    "keepalive-2": (11, b"\x00\x01", "; TCP KEEPALIVE: 0.1 secs"),
    "ede-utf8": (15, b"\x00\x01\xe2\x82\xacA", "; EDE: 1 (Unsupported DNSKEY Algorithm): (€A)"),
    "ede-controls": (15, b"\x00\x01\x00\x7f", "; EDE: 1 (Unsupported DNSKEY Algorithm): (..)"),
    "ecs-family-0": (8, b"\x00" * 4, "; CLIENT-SUBNET: 0/0/0"),
    "expire-4": (9, b"\x00\x00\x00\x01", "; EXPIRE: 1 (1 second)"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(TAKEN))
def test_an_option_bind_takes_is_dig_s_line(case: str) -> None:
    code, data, line = TAKEN[case]
    r = ask(code, data)
    assert r.get("error") is None
    edns = r["edns"]
    assert isinstance(edns, dict)
    assert run_dns_text._opt_lines(edns)[1:] == [line]
