"""The sans-IO ClientHello reader: real ClientHellos from OpenSSL, split, oversized,
truncated, garbage, without SNI."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from OpenSSL import SSL

from packetlab.proxy.clienthello import ClientHelloReader, Hello, HelloError


def client_hello(sni: str | None = None, *, pad: int = 0) -> bytes:
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
    conn = SSL.Connection(ctx, None)
    if sni is not None:
        conn.set_tlsext_host_name(sni.encode())
    if pad:  # a long ALPN list makes the ClientHello as large as we like
        conn.set_alpn_protos([b"x" * 200] * (pad // 201 + 1))
    conn.set_connect_state()
    with pytest.raises(SSL.WantReadError):
        conn.do_handshake()
    return conn.bio_read(1 << 20)


def split_records(hello: bytes, size: int) -> bytes:
    """The same handshake bytes re-cut into records of at most `size` bytes."""
    (length,) = struct.unpack_from(">H", hello, 3)
    body = hello[5 : 5 + length]
    out = b""
    for i in range(0, len(body), size):
        part = body[i : i + size]
        out += b"\x16\x03\x01" + struct.pack(">H", len(part)) + part
    return out


def feed_all(data: bytes, chunk: int, cap: int = 16384) -> Hello | None:
    r = ClientHelloReader(cap)
    got = None
    for i in range(0, len(data), chunk):
        got = r.feed(data[i : i + chunk])
        if got is not None:
            break
    return got


def test_sni_read_in_one_segment() -> None:
    hello = client_hello("proxysni1")
    got = ClientHelloReader().feed(hello)
    assert got == Hello("proxysni1", hello)


@pytest.mark.parametrize("chunk", [1, 2, 5, 7, 100])
def test_split_over_many_segments(chunk: int) -> None:
    hello = client_hello("a" * 63)
    got = feed_all(hello, chunk)
    assert got is not None and got.sni == "a" * 63 and got.raw == hello


def test_split_over_many_records_and_segments() -> None:
    data = split_records(client_hello("abc123"), 17)
    got = feed_all(data, 3)
    assert got is not None and got.sni == "abc123" and got.raw == data


def test_bytes_after_the_hello_are_kept() -> None:
    hello = client_hello("k")
    got = ClientHelloReader().feed(hello + b"\x14\x03\x03\x00\x01\x01")
    assert got is not None and got.raw.endswith(b"\x01\x01")


def test_no_sni() -> None:
    got = ClientHelloReader().feed(client_hello(None))
    assert got is not None and got.sni is None


def test_larger_than_cap() -> None:
    hello = client_hello("big", pad=5000)
    assert len(hello) > 4096
    with pytest.raises(HelloError) as e:
        feed_all(hello, 1000, cap=4096)
    assert e.value.reason == "too_large"


def test_handshake_length_larger_than_cap_refused_before_buffering() -> None:
    # one small record announcing a 1 MB ClientHello
    rec = b"\x16\x03\x01\x00\x04" + b"\x01\x10\x00\x00"
    with pytest.raises(HelloError) as e:
        ClientHelloReader(4096).feed(rec)
    assert e.value.reason == "too_large"


def test_incomplete_stays_bounded() -> None:
    hello = client_hello("x")
    r = ClientHelloReader()
    assert r.feed(hello[:-1]) is None
    assert r.buffered == len(hello) - 1


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", "not_tls"),
        (b"\x16\x02\x00\x00\x10" + b"\x00" * 16, "not_tls"),
        (b"\x16\x03\x01\x00\x00", "bad_record"),
        (b"\x16\x03\x01\x50\x00", "bad_record"),
        (b"\x16\x03\x01\x00\x04\x02\x00\x00\x00", "not_client_hello"),
        (b"\x16\x03\x01\x00\x06\x01\x00\x00\x02\x03\x03", "malformed"),
    ],
)
def test_garbage(data: bytes, reason: str) -> None:
    with pytest.raises(HelloError) as e:
        ClientHelloReader().feed(data)
    assert e.value.reason == reason


def test_bad_sni_bytes() -> None:
    hello = client_hello("zzzzzz")
    bad = hello.replace(b"zzzzzz", b"zz\xffzzz")
    with pytest.raises(HelloError) as e:
        ClientHelloReader().feed(bad)
    assert e.value.reason == "bad_sni"


@given(st.binary(max_size=600), st.integers(1, 64))
def test_garbage_never_crashes_and_stays_bounded(data: bytes, chunk: int) -> None:
    r = ClientHelloReader(512)
    try:
        for i in range(0, len(data), chunk):
            if r.feed(data[i : i + chunk]) is not None:
                break
            assert r.buffered <= 512 + chunk
    except HelloError:
        pass


@given(st.integers(0, 400), st.binary(min_size=1, max_size=8))
def test_corrupted_hello_never_crashes(pos: int, junk: bytes) -> None:
    hello = bytearray(client_hello("fuzz"))
    pos = min(pos, len(hello) - 1)
    hello[pos : pos + len(junk)] = junk
    try:
        ClientHelloReader().feed(bytes(hello))
    except HelloError:
        pass
