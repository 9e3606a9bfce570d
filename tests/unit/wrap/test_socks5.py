"""The SOCKS5 handshake parser and UDP header codec: every malformed input gets the reply
RFC 1928 asks for (or none, when the client is not speaking SOCKS5), never an exception."""

from __future__ import annotations

import ipaddress
import random
import struct

import pytest

from packetlab.wrap.socks5 import (
    BadDatagram,
    Cmd,
    Refuse,
    Rep,
    Request,
    Send,
    Socks5Handshake,
    UdpPacket,
    encode_address,
    encode_udp,
    parse_udp,
    reply,
)

GREETING = b"\x05\x01\x00"
V4 = ipaddress.IPv4Address("192.0.2.7")
V6 = ipaddress.IPv6Address("2001:db8::7")


def request(cmd: int, addr: bytes) -> bytes:
    return bytes([5, cmd, 0]) + addr


def feed_all(hs: Socks5Handshake, data: bytes, *, bytewise: bool = False) -> list[object]:
    if not bytewise:
        return list(hs.feed(data))
    out: list[object] = []
    for i in range(len(data)):
        out += hs.feed(data[i : i + 1])
    return out


@pytest.mark.parametrize("bytewise", [False, True])
@pytest.mark.parametrize(
    ("host", "port"),
    [(V4, 80), (V6, 443), ("example.net", 53), ("a" * 255, 65535)],
)
def test_connect_request_any_address_any_split(bytewise: bool, host: object, port: int) -> None:
    hs = Socks5Handshake()
    data = GREETING + request(1, encode_address(host, port))  # type: ignore[arg-type]
    events = feed_all(hs, data, bytewise=bytewise)
    assert events == [Send(b"\x05\x00"), Request(Cmd.CONNECT, host, port)]  # type: ignore[arg-type]
    assert hs.done and hs.rest == b""


def test_pipelined_data_after_the_request_is_kept() -> None:
    hs = Socks5Handshake()
    events = hs.feed(GREETING + request(1, encode_address(V4, 80)) + b"GET / HTTP/1.0\r\n")
    assert events[-1] == Request(Cmd.CONNECT, V4, 80)
    assert hs.rest == b"GET / HTTP/1.0\r\n"
    assert hs.feed(b"\r\n") == []
    assert hs.rest == b"GET / HTTP/1.0\r\n\r\n"


def test_udp_associate_and_bind_are_parsed() -> None:
    for cmd in (Cmd.BIND, Cmd.UDP_ASSOCIATE):
        hs = Socks5Handshake()
        assert hs.feed(GREETING + request(cmd, encode_address(V4, 0)))[-1] == Request(cmd, V4, 0)


def test_greeting_with_several_methods_picks_no_auth() -> None:
    assert Socks5Handshake().feed(b"\x05\x03\x02\x01\x00") == [Send(b"\x05\x00")]


def test_no_acceptable_method() -> None:
    (ev,) = Socks5Handshake().feed(b"\x05\x02\x01\x02")
    assert isinstance(ev, Refuse) and ev.data == b"\x05\xff"


def test_zero_methods_is_no_acceptable_method() -> None:
    (ev,) = Socks5Handshake().feed(b"\x05\x00")
    assert isinstance(ev, Refuse) and ev.data == b"\x05\xff"


@pytest.mark.parametrize("first", [b"\x04", b"GET / HTTP/1.1\r\n", b"\x16\x03\x01", b"\x00"])
def test_not_socks5_is_closed_without_a_reply(first: bytes) -> None:
    hs = Socks5Handshake()
    (ev,) = hs.feed(first)
    assert isinstance(ev, Refuse) and ev.data == b""
    assert hs.done and hs.feed(b"more") == []


@pytest.mark.parametrize(
    ("req", "rep"),
    [
        (bytes([5, 9, 0]) + encode_address(V4, 1), Rep.COMMAND_NOT_SUPPORTED),
        (bytes([5, 0, 0]) + encode_address(V4, 1), Rep.COMMAND_NOT_SUPPORTED),
        (bytes([5, 1, 0, 2]) + b"\0" * 8, Rep.ATYP_NOT_SUPPORTED),
        (bytes([5, 1, 0, 7]), Rep.ATYP_NOT_SUPPORTED),
        (bytes([5, 1, 1]) + encode_address(V4, 1), Rep.GENERAL_FAILURE),
        (bytes([4, 1, 0]) + encode_address(V4, 1), Rep.GENERAL_FAILURE),
        (bytes([5, 1, 0, 3, 0, 0, 80]), Rep.HOST_UNREACHABLE),
        (bytes([5, 1, 0, 3, 2]) + b"\xff\xfe" + b"\0P", Rep.HOST_UNREACHABLE),
        (bytes([5, 1, 0, 3, 3]) + b"a/b" + b"\0P", Rep.HOST_UNREACHABLE),
        (bytes([5, 1, 0, 3, 1]) + b"." + b"\0P", Rep.HOST_UNREACHABLE),
    ],
)
def test_malformed_requests_get_the_right_reply(req: bytes, rep: Rep) -> None:
    hs = Socks5Handshake()
    events = hs.feed(GREETING + req)
    assert events[0] == Send(b"\x05\x00")
    (ev,) = events[1:]
    assert isinstance(ev, Refuse)
    assert ev.data == reply(rep)
    assert ev.data[:3] == bytes([5, rep, 0])
    assert hs.done


def test_incomplete_request_waits() -> None:
    hs = Socks5Handshake()
    full = GREETING + request(1, encode_address("example.org", 443))
    for cut in range(len(GREETING) + 1, len(full)):
        h = Socks5Handshake()
        events = h.feed(full[:cut])
        assert all(isinstance(e, Send) for e in events) and not h.done
    assert hs.feed(full)[-1] == Request(Cmd.CONNECT, "example.org", 443)


def test_random_garbage_never_raises_and_never_grows() -> None:
    rng = random.Random(12)
    for _ in range(3000):
        hs = Socks5Handshake()
        prefix = GREETING if rng.random() < 0.7 else b""
        blob = prefix + bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
        for i in range(0, len(blob), rng.randrange(1, 8)):
            for ev in hs.feed(blob[i : i + 8]):
                assert isinstance(ev, Send | Request | Refuse)
        assert len(hs._buf) <= Socks5Handshake.MAX_REQUEST


def test_reply_encoding() -> None:
    assert reply(Rep.SUCCEEDED) == b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    r = reply(Rep.SUCCEEDED, ipaddress.ip_address("127.0.0.1"), 5353)
    assert r == b"\x05\x00\x00\x01\x7f\x00\x00\x01" + struct.pack(">H", 5353)
    assert reply(Rep.CONNECTION_REFUSED, V6, 1)[3] == 4


def test_udp_header_round_trip() -> None:
    for host in (V4, V6, "dns.example"):
        pkt = parse_udp(encode_udp(host, 53, b"query"))
        assert pkt == UdpPacket(host, 53, b"query")
    assert parse_udp(encode_udp(V4, 1, b"")).data == b""


@pytest.mark.parametrize(
    ("datagram", "why"),
    [
        (b"", "shorter"),
        (b"\0\0\0", "shorter"),
        (b"\0\1\0\1" + V4.packed + b"\0\1", "reserved"),
        (b"\0\0\1\1" + V4.packed + b"\0\1", "fragment"),
        (b"\0\0\0\1" + V4.packed, "truncated"),
        (b"\0\0\0\7" + V4.packed + b"\0\1", "address type"),
        (b"\0\0\0\3\0\0\1", "empty domain"),
    ],
)
def test_bad_udp_datagrams(datagram: bytes, why: str) -> None:
    with pytest.raises(BadDatagram, match=why):
        parse_udp(datagram)


def test_random_udp_datagrams_never_raise_anything_else() -> None:
    rng = random.Random(5)
    for _ in range(3000):
        blob = b"\0\0\0" + bytes(rng.randrange(256) for _ in range(rng.randrange(30)))
        try:
            parse_udp(blob)
        except BadDatagram:
            pass


@pytest.mark.parametrize("bytewise", [False, True])
def test_a_greeting_answered_before_it_came_is_checked_not_answered(bytewise: bool) -> None:
    """`pktlab wrap` answers proxychains' greeting as it accepts (session 29): the parser
    then sends nothing for it, still takes the request after it, and refuses a client
    that does not offer "no authentication" without a second method selection."""
    hs = Socks5Handshake(answered=True)
    events = feed_all(hs, GREETING + request(1, encode_address(V4, 80)), bytewise=bytewise)
    assert events == [Request(Cmd.CONNECT, V4, 80)]
    hs = Socks5Handshake(answered=True)
    (event,) = hs.feed(b"\x05\x01\x02")  # username/password only
    assert isinstance(event, Refuse) and event.data == b"" and hs.done
