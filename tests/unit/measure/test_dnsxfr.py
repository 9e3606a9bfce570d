"""Zone transfers (AXFR, IXFR) through the scripted endpoint: dig's request bytes, the end
of a transfer by BIND's rules, many messages split anywhere, refusals, a server that
closes or goes silent mid-transfer, a malformed message, and the caps."""

from __future__ import annotations

import ipaddress
import struct
import sys
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "controller"))

from ctl_fakes import FakeEndpoint, Rig
from twisted.internet.task import Clock

from packetlab.measure.dnsxfr import Frames, XfrState, dns_xfr
from packetlab.wire import Ndata, Nopen, Nsend, Nstat, NstatCode, Proto

SERVER = ("192.0.2.53", 53)
RR = tuple[str, int, str, str]


def soa(serial: int, zone: str = "z.test.") -> RR:
    return (zone, 3600, "SOA", f"ns.{zone} h.{zone} {serial} 7200 3600 1209600 300")


ZONE = [soa(5), ("z.test.", 3600, "NS", "ns.z.test."), ("a.z.test.", 60, "A", "192.0.2.1"),
        ("a.z.test.", 60, "A", "192.0.2.2"), ("t.z.test.", 60, "TXT", '"x"'), soa(5)]  # fmt: skip


def message(query: dns.message.Message, records: list[RR], rcode: int = 0) -> bytes:
    r = dns.message.make_response(query)
    for name, ttl, rtype, data in records:
        r.answer.append(dns.rrset.from_text(name, ttl, "IN", rtype, data))
    r.set_rcode(dns.rcode.Rcode(rcode))
    wire = r.to_wire(want_shuffle=False, max_size=65535)
    return struct.pack(">H", len(wire)) + wire


def xfr_server(messages: list[list[RR]], *, rcode: int = 0, tail: bytes = b"") -> Any:
    """A TCP server that answers a transfer with `messages`, the bytes cut anywhere."""

    def serve(data: bytes) -> list[bytes]:
        (n,) = struct.unpack(">H", data[:2])
        query = dns.message.from_wire(data[2 : 2 + n])
        out = b"".join(message(query, m, rcode) for m in messages) + tail
        return [out[i : i + 37] for i in range(0, len(out), 37)]

    return serve


class QuietEnd(FakeEndpoint):
    """A fake endpoint whose TCP servers in `open_ended` keep the connection open after
    their reply (no PEERCLOSED): a transfer that never ends."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.open_ended: set[tuple[str, int]] = set()

    def send(self, msg: Any) -> None:
        if isinstance(msg, Nstat) and msg.code == NstatCode.PEERCLOSED:
            skt = self.sockets.get(msg.sktid)
            nopen = skt["msg"] if skt else None
            key = (str(ipaddress.ip_address(nopen.raddr)), nopen.rport) if nopen else None
            if key in self.open_ended:
                return
        super().send(msg)


def sent_query(rig: Rig) -> dns.message.Message:
    (send,) = [m for m in rig.endpoint.received if isinstance(m, Nsend)]
    (n,) = struct.unpack(">H", send.data[:2])
    assert len(send.data) == n + 2
    return dns.message.from_wire(send.data[2:])


def test_axfr_in_many_messages_ends_at_the_second_soa() -> None:
    rig = Rig()
    rig.endpoint.tcp_servers[SERVER] = xfr_server([ZONE[:2], ZONE[2:4], ZONE[4:]])
    r = rig.run(dns_xfr(rig.session, "z.test", server="192.0.2.53"))
    assert (r.error, r.failed, r.rcode) == (None, None, "NOERROR")
    assert (r.records, r.messages) == (6, 3) and r.complete
    assert [a.type for a in r.answers] == ["SOA", "NS", "A", "A", "TXT", "SOA"]
    assert r.nbytes == sum(p["size"] for p in r.parts) and [p["answers"] for p in r.parts] == [
        2, 2, 2,
    ]  # fmt: skip
    assert r.rtt_us is not None
    # dig's request: over TCP, AXFR, AD set and RD clear, EDNS with dig's 1232 bytes
    assert [m.proto for m in rig.endpoint.received if isinstance(m, Nopen)] == [Proto.TCP]
    q = sent_query(rig)
    assert q.flags == dns.flags.AD and q.question[0].rdtype == dns.rdatatype.AXFR
    assert q.payload == 1232 and not q.authority
    d = r.to_dict()
    assert (d["type"], d["xfr"], d["records"], d["messages"], d["error_kind"]) == (
        "dns", True, 6, 3, None,
    )  # fmt: skip


def test_ixfr_request_carries_digs_soa_and_reads_an_incremental_reply() -> None:
    rig = Rig()
    diffs = [soa(5), soa(3), ("a.z.test.", 60, "A", "192.0.2.1"), soa(4),
             ("b.z.test.", 60, "A", "192.0.2.9"), soa(4), soa(5),
             ("c.z.test.", 60, "A", "192.0.2.3"), soa(5)]  # fmt: skip
    rig.endpoint.tcp_servers[SERVER] = xfr_server([diffs[:3], diffs[3:6], diffs[6:]])
    r = rig.run(dns_xfr(rig.session, "z.test.", serial=3, server="192.0.2.53"))
    assert (r.error, r.failed, r.style, r.records, r.messages) == (None, None, "incremental", 9, 3)
    q = sent_query(rig)
    assert q.flags == 0 and q.question[0].rdtype == dns.rdatatype.IXFR
    (auth,) = q.authority
    assert (auth.ttl, auth.rdtype, auth[0].to_text()) == (0, dns.rdatatype.SOA, ". . 3 0 0 0 0")
    # the SOA's owner is the question's name, compressed: as dig's bytes
    (send,) = [m for m in rig.endpoint.received if isinstance(m, Nsend)]
    assert b"\xc0\x0c\x00\x06\x00\x01\x00\x00\x00\x00\x00\x16\x00\x00" in send.data


@pytest.mark.parametrize(
    ("messages", "style", "records"),
    [
        ([[soa(5)]], "up-to-date", 1),  # the client has the current serial
        ([ZONE[:3], ZONE[3:]], "axfr", 6),  # the AXFR-style reply
    ],
)
def test_ixfr_up_to_date_and_axfr_style_replies(
    messages: list[list[RR]], style: str, records: int
) -> None:
    rig = Rig()
    rig.endpoint.tcp_servers[SERVER] = xfr_server(messages)
    r = rig.run(dns_xfr(rig.session, "z.test", serial=5 if style == "up-to-date" else 1,
                        server="192.0.2.53"))  # fmt: skip
    assert (r.error, r.failed, r.style, r.records) == (None, None, style, records)


@pytest.mark.parametrize(
    ("messages", "rcode", "failed"),
    [
        ([[]], 5, "Transfer failed."),  # REFUSED
        ([[]], 9, "Transfer failed."),  # NOTAUTH
        ([[]], 0, "Transfer failed."),  # no record
        ([[("a.z.test.", 60, "A", "192.0.2.1")]], 0,
         "Transfer failed.  Didn't start with SOA answer."),
    ],
)  # fmt: skip
def test_a_refused_transfer_is_digs_transfer_failed(
    messages: list[list[RR]], rcode: int, failed: str
) -> None:
    rig = Rig()
    rig.endpoint.tcp_servers[SERVER] = xfr_server(messages, rcode=rcode)
    r = rig.run(dns_xfr(rig.session, "z.test", server="192.0.2.53"))
    assert (r.failed, r.error, r.tries) == (failed, None, 1)  # answered: not tried again
    assert r.rcode == dns.rcode.to_text(dns.rcode.Rcode(rcode)) and not r.complete
    assert "error" not in r.to_dict() and r.to_dict()["failed"] == failed


def test_a_server_that_closes_mid_transfer_is_tried_again_as_dig() -> None:
    rig = Rig()
    rig.endpoint.tcp_servers[SERVER] = xfr_server([ZONE[:2], ZONE[2:4]])  # then it closes
    r = rig.run(dns_xfr(rig.session, "z.test", server="192.0.2.53", attempts=3))
    assert (r.error_kind, r.tries, r.records, r.messages) == ("eof", 3, 4, 2)
    assert "closed the connection after 2 messages, without the transfer's last SOA" in (
        r.error or ""
    )
    assert [(a["error_kind"], a["records"]) for a in r.retries] == [("eof", 4), ("eof", 4)]
    assert len([m for m in rig.endpoint.received if isinstance(m, Nsend)]) == 3


def test_a_server_that_never_sends_the_last_soa_times_out() -> None:
    rig = Rig(endpoint=QuietEnd)
    assert isinstance(rig.endpoint, QuietEnd)
    rig.endpoint.open_ended.add(SERVER)
    rig.endpoint.tcp_servers[SERVER] = xfr_server([ZONE[:2]])
    d = dns_xfr(rig.session, "z.test", server="192.0.2.53", timeout=1.5, attempts=1)
    r = rig.run(d, limit=10)
    assert (r.error_kind, r.records, r.messages) == ("timeout", 2, 1)
    assert r.error == "nothing from 192.0.2.53#53 within 1.5 s"
    assert rig.clock.seconds() < 3  # the wait after the last message: +time, no more


def test_an_attempt_is_capped_in_time_whatever_trickles_in() -> None:
    rig = Rig(endpoint=QuietEnd)
    assert isinstance(rig.endpoint, QuietEnd)
    rig.endpoint.open_ended.add(SERVER)
    rig.endpoint.tcp_servers[SERVER] = xfr_server([ZONE[:2]])
    sock: list[int] = []
    nsend = rig.endpoint.nsend

    def sending(m: Nsend) -> None:
        sock.append(m.sktid)
        nsend(m)

    rig.endpoint.nsend = sending  # type: ignore[method-assign,assignment]

    def trickle() -> None:  # a byte a second (of a 65535-byte message): never the end
        if sock and sock[0] in rig.endpoint.sockets:
            rig.endpoint.send(Ndata(sock[0], 4, Proto.TCP, rig.endpoint.now(), b"\xff"))
        rig.clock.callLater(1.0, trickle)

    rig.clock.callLater(1.0, trickle)
    r = rig.run(dns_xfr(rig.session, "z.test", server="192.0.2.53", timeout=2, attempts=1,
                        max_seconds=10), limit=30)  # fmt: skip
    assert r.error_kind == "limit" and "stopped after 10 s" in (r.error or "")
    assert 10 <= rig.clock.seconds() < 13


def test_the_caps_stop_a_transfer_without_end() -> None:
    rig = Rig()
    many = [[soa(1)]] + [[(f"h{i}.z.test.", 60, "A", "192.0.2.1") for i in range(50)]] * 10
    rig.endpoint.tcp_servers[SERVER] = xfr_server(many)
    r = rig.run(dns_xfr(rig.session, "z.test", server="192.0.2.53", max_records=120))
    assert r.error_kind == "limit" and len(r.answers) == 101 and r.tries == 1
    assert "cap of 120 records" in (r.error or "") and "--xfr-max" in (r.error or "")
    r = rig.run(dns_xfr(rig.session, "z.test", server="192.0.2.53", max_bytes=2000))
    assert r.error_kind == "limit" and r.nbytes <= 2000 and "cap of 2000 bytes" in (r.error or "")


def test_a_malformed_message_mid_transfer_is_digs_bad_packet() -> None:
    rig = Rig()

    def serve(data: bytes) -> list[bytes]:
        query = dns.message.from_wire(data[2:])
        bad = data[2:4] + b"\x84\x00" + b"\xff" * 20
        return [message(query, ZONE[:2]) + struct.pack(">H", len(bad)) + bad]

    rig.endpoint.tcp_servers[SERVER] = serve
    r = rig.run(dns_xfr(rig.session, "z.test", server="192.0.2.53"))
    assert (r.error_kind, r.records, r.tries) == ("malformed", 2, 1)
    assert r.reason == "bad compression pointer"
    assert r.packet is not None and r.packet[2:4] == b"\x84\x00"


def test_a_first_message_of_another_id_is_digs_id_mismatch() -> None:
    rig = Rig()

    def serve(data: bytes) -> list[bytes]:
        query = dns.message.from_wire(data[2:])
        wire = bytearray(message(query, ZONE))
        wire[2:4] = ((query.id + 1) % 65536).to_bytes(2, "big")
        return [bytes(wire)]

    rig.endpoint.tcp_servers[SERVER] = serve
    r = rig.run(dns_xfr(rig.session, "z.test", server="192.0.2.53"))
    assert r.error_kind == "mismatch" and r.error is not None
    assert r.error.startswith("ERROR: ID mismatch: expected ID ") and not r.answers


def test_a_refused_connection_is_tried_again() -> None:
    rig = Rig()  # no server there: the fake refuses the connect
    r = rig.run(dns_xfr(rig.session, "z.test", server="192.0.2.53", attempts=2))
    assert (r.error_kind, r.tries, len(r.retries)) == ("refused", 2, 1)


def test_xfr_state_follows_binds_rules() -> None:
    A, S = dns.rdatatype.A, dns.rdatatype.SOA
    s = XfrState()
    assert not s.feed_message([(S, 5), (A, None)])
    assert s.feed_message([(A, None), (S, 5), (A, None)])
    assert s.records == 4  # dig counts up to the last SOA
    s = XfrState(ixfr_serial=7)
    assert s.feed_message([(S, 7)]) and s.style == "up-to-date"
    s = XfrState(ixfr_serial=0xFFFFFFFF)  # serial arithmetic: 2**32-1 is before 3
    assert not s.feed_message([(S, 3)])
    s = XfrState(ixfr_serial=2)
    assert not s.feed_message([(S, 3), (S, 2), (A, None), (S, 3), (A, None)])
    assert s.feed_message([(S, 3)]) and s.style == "incremental"
    s = XfrState(ixfr_serial=2)  # an empty zone's IXFR: two SOAs of one serial
    assert s.feed_message([(S, 3), (S, 3)])


def test_frames_split_anywhere_and_many_in_one_chunk() -> None:
    msgs = [bytes([i]) * (i + 12) for i in range(40)]
    stream = b"".join(struct.pack(">H", len(m)) + m for m in msgs)
    f = Frames()
    got = f.feed(stream[:1]) + f.feed(stream[1:3]) + f.feed(stream[3:500]) + f.feed(stream[500:])
    assert got == msgs and f.pending == 0


def test_a_later_message_of_another_id_is_digs_warning_once() -> None:
    rig = Rig()

    def serve(data: bytes) -> list[bytes]:
        query = dns.message.from_wire(data[2:])
        parts = [bytearray(message(query, m)) for m in (ZONE[:2], ZONE[2:4], ZONE[4:])]
        for p in parts[1:]:
            p[2:4] = ((query.id + 7) % 65536).to_bytes(2, "big")
        return [bytes(b"".join(parts))]

    rig.endpoint.tcp_servers[SERVER] = serve
    r = rig.run(dns_xfr(rig.session, "z.test", server="192.0.2.53"))
    assert (r.error, r.records, r.messages) == (None, 6, 3)
    assert r.parts[1]["notes"] == [
        f"WARNING: ID mismatch: expected ID {r.id}, got {(r.id or 0) + 7 & 0xFFFF}"
    ]
    assert "notes" not in r.parts[2]  # as dig: said once


def test_stop_ends_a_transfer_with_what_came() -> None:
    """Ctrl-C (`stop`): the transfer in flight ends at once with its records, not tried
    again, even while the server is silent."""
    rig = Rig(endpoint=QuietEnd)
    assert isinstance(rig.endpoint, QuietEnd)
    rig.endpoint.open_ended.add(SERVER)
    rig.endpoint.tcp_servers[SERVER] = xfr_server([ZONE[:2], ZONE[2:4]])
    r = rig.run(dns_xfr(rig.session, "z.test", server="192.0.2.53", timeout=30, attempts=3,
                        stop=lambda: rig.clock.seconds() > 1.0), limit=60)  # fmt: skip
    assert (r.error_kind, r.records, r.tries, r.retries) == ("interrupted", 4, 1, [])
    assert r.error == "interrupted after 4 records: the transfer is incomplete"
    assert rig.clock.seconds() < 2  # not the 30 s wait


def test_a_record_of_another_class_is_digs_malformed_warning() -> None:
    """A message with a record of another class than the question's (BIND's FORMERR, kept
    by its best effort): dig 9.18 prints its malformed-packet warning before that
    message's records, and goes on with the transfer (eyes14; was silent)."""
    rig = Rig()

    def serve(data: bytes) -> list[bytes]:
        query = dns.message.from_wire(data[2:])
        r = dns.message.make_response(query)
        r.answer.append(dns.rrset.from_text("z.test.", 60, "CH", "TXT", '"chaos"'))
        wire = r.to_wire()
        return [message(query, ZONE[:2]) + struct.pack(">H", len(wire)) + wire
                + message(query, ZONE[2:])]  # fmt: skip

    rig.endpoint.tcp_servers[SERVER] = serve
    r = rig.run(dns_xfr(rig.session, "z.test", server="192.0.2.53"))
    assert (r.error, r.records, r.messages) == (None, 7, 3)
    assert "notes" not in r.parts[0] and "notes" not in r.parts[2]
    assert r.parts[1]["notes"] == ["Warning: Message parser reports malformed message packet."]


def test_a_message_with_an_option_bind_refuses_is_its_bad_packet() -> None:
    """Session 26 (dns26): a transfer's message is read as a query's reply is (BIND's
    parser is the same): an EDE whose text is not UTF-8 is BIND's `malformed OPT option`,
    not dnspython's words (a Python codec error)."""
    import dns.edns

    rig = Rig()

    def serve(data: bytes) -> list[bytes]:
        query = dns.message.from_wire(data[2:])
        r = dns.message.make_response(query)
        ede = dns.edns.GenericOption(dns.edns.OptionType.EDE, b"\x00\x01\xff")
        r.use_edns(0, 0, 1232, options=[ede])
        for name, ttl, rtype, text in ZONE:
            r.answer.append(dns.rrset.from_text(name, ttl, "IN", rtype, text))
        wire = r.to_wire(want_shuffle=False, max_size=65535)
        return [struct.pack(">H", len(wire)) + wire]

    rig.endpoint.tcp_servers[SERVER] = serve
    r = rig.run(dns_xfr(rig.session, "z.test", server="192.0.2.53"))
    assert (r.error_kind, r.reason) == ("malformed", "malformed OPT option")
