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


# -- hand-built ClientHellos: the extension edge cases real clients produce ------------


def ext(etype: int, body: bytes) -> bytes:
    return struct.pack(">HH", etype, len(body)) + body


def sni_ext(*names: tuple[int, bytes]) -> bytes:
    entries = b"".join(struct.pack(">BH", t, len(n)) + n for t, n in names)
    return ext(0, struct.pack(">H", len(entries)) + entries)


def hello_bytes(exts: list[bytes], *, record_version: bytes = b"\x03\x01") -> bytes:
    body = b"\x03\x03" + bytes(32) + b"\x20" + bytes(32)  # legacy_version, random, session id
    suites = b"\x0a\x0a\x13\x01\x13\x02"  # GREASE first, as browsers do
    body += struct.pack(">H", len(suites)) + suites + b"\x01\x00"
    blob = b"".join(exts)
    body += struct.pack(">H", len(blob)) + blob
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16" + record_version + struct.pack(">H", len(hs)) + hs


GREASE = [ext(0x0A0A, b""), ext(0x1A1A, b"\x00")]
VERSIONS = ext(43, b"\x04\x7a\x7a\x03\x04")  # supported_versions with a GREASE version


@pytest.mark.parametrize(
    ("exts", "sni"),
    [
        ([*GREASE, sni_ext((0, b"k1")), VERSIONS], "k1"),  # GREASE around SNI
        ([VERSIONS, ext(21, bytes(400)), sni_ext((0, b"k1"))], "k1"),  # padding before SNI
        ([sni_ext((0, b"k1")), ext(21, bytes(300))], "k1"),  # padding (RFC 7685) last
        # ECH (draft-ietf-tls-esni): the outer hello's SNI is the public name; we route on it
        ([sni_ext((0, b"public1")), ext(0xFE0D, b"\x00" + bytes(200)), VERSIONS], "public1"),
        ([sni_ext((0, b"a" * 63))], "a" * 63),  # the longest snikey
        ([sni_ext((0, b"a" * 255))], "a" * 255),  # the longest name OpenSSL takes
        ([*GREASE, VERSIONS], None),  # no server_name
        ([sni_ext()], None),  # an empty server_name_list
        ([], None),  # an empty extension block
    ],
)
def test_extension_edge_cases(exts: list[bytes], sni: str | None) -> None:
    data = hello_bytes(exts)
    for chunk in (len(data), 1, 7):
        got = feed_all(data, chunk)
        assert got is not None and got.sni == sni and got.raw == data


@pytest.mark.parametrize("version", [b"\x03\x00", b"\x03\x01", b"\x03\x03"])
def test_any_record_version_3_x(version: bytes) -> None:
    data = hello_bytes([sni_ext((0, b"k1"))], record_version=version)
    assert ClientHelloReader().feed(data) == Hello("k1", data)


def test_handshake_header_split_across_records() -> None:
    """Handshake fragmentation: the 4-byte handshake header itself cut over records of
    1..3 bytes, the rest in records of 5 bytes, all in one segment or byte by byte."""
    one = hello_bytes([*GREASE, sni_ext((0, b"k1")), ext(21, bytes(100))])
    body = one[5:]
    pieces = [body[:1], body[1:3], body[3:4]] + [body[i : i + 5] for i in range(4, len(body), 5)]
    data = b"".join(b"\x16\x03\x01" + struct.pack(">H", len(p)) + p for p in pieces)
    for chunk in (len(data), 1, 13):
        got = feed_all(data, chunk)
        assert got is not None and got.sni == "k1" and got.raw == data


def test_hello_and_the_next_record_in_one_segment_are_kept_whole() -> None:
    """A second handshake message in the hello's record, and a following record of
    another type (early data): all forwarded unchanged."""
    one = hello_bytes([sni_ext((0, b"k1"))])
    body = one[5:] + b"\x14\x00\x00\x00"  # something after the ClientHello, same record
    data = b"\x16\x03\x01" + struct.pack(">H", len(body)) + body + b"\x17\x03\x03\x00\x01x"
    assert ClientHelloReader().feed(data) == Hello("k1", data)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (hello_bytes([sni_ext((0, b""))]), "bad_sni"),  # an empty host_name
        (hello_bytes([sni_ext((0, "ké".encode()))]), "bad_sni"),  # not ASCII
        (hello_bytes([ext(0, b"\x00\x09\x00\x00\x09k1")]), "malformed"),  # name past its list
        (hello_bytes([ext(0, b"\x00")]), "malformed"),  # a server_name of one byte
        (hello_bytes([ext(0, b"")]), "malformed"),  # empty, as only a ServerHello has it
        # what OpenSSL (the manager's TLS server) refuses as a bad extension, so routing it
        # spent a backlog on an endpoint no manager could serve (session 21)
        (hello_bytes([sni_ext((0, b"k1"), (0, b"k2"))]), "bad_sni"),  # two names
        (hello_bytes([sni_ext((1, b"other"), (0, b"k1"))]), "bad_sni"),  # a NameType not 0
        (hello_bytes([sni_ext((0, b"k1")), sni_ext((0, b"k2"))]), "bad_sni"),  # two extensions
        (hello_bytes([ext(0, b"\x00\x05\x00\x00\x02k1\x00")]), "bad_sni"),  # a byte past the list
        (hello_bytes([sni_ext((0, b"k1\x00x"))]), "bad_sni"),  # a NUL in the name
        (hello_bytes([sni_ext((0, b"a" * 256))]), "bad_sni"),  # over 255 bytes
        (hello_bytes([b"\x00\x00\x00\x10\x00"]), "malformed"),  # extension past the block
        # a ClientHello in one record, then an alert record before the next fragment
        (b"\x16\x03\x01\x00\x02\x01\x00" + b"\x15\x03\x03\x00\x02\x02\x28", "not_tls"),
        (b"\x80\x2e\x01\x03\x01" + bytes(40), "not_tls"),  # an SSLv2-format hello
        (b"\x16\x02\x00\x00\x10" + bytes(16), "not_tls"),
        (b"\x16\x03\x01\x00\x00", "bad_record"),  # a zero-length handshake fragment
        (b"\x16\x03\x01\x00\x04\x02\x00\x00\x00", "not_client_hello"),  # ServerHello
    ],
)
def test_bad_hellos_have_their_reason(data: bytes, reason: str) -> None:
    with pytest.raises(HelloError) as e:
        for i in range(len(data)):  # byte by byte: no partial read may crash either
            ClientHelloReader().feed(data[: i + 1])
    assert e.value.reason == reason


def test_many_tiny_records_count_toward_the_cap() -> None:
    """1-byte records make a 5x larger stream: the cap bounds the bytes buffered, not
    the ClientHello's own size."""
    one = hello_bytes([sni_ext((0, b"k1")), ext(21, bytes(600))])
    body = one[5:]
    data = b"".join(b"\x16\x03\x01\x00\x01" + body[i : i + 1] for i in range(len(body)))
    with pytest.raises(HelloError) as e:
        feed_all(data, 64, cap=2048)
    assert e.value.reason == "too_large"
    assert feed_all(data, 64, cap=len(data)) is not None


@pytest.mark.parametrize("records", [1, 3])
@pytest.mark.parametrize("chunk", [1, 4096])
def test_a_hello_of_exactly_the_cap_is_taken_and_one_byte_less_cap_refuses_it(
    records: int, chunk: int
) -> None:
    # `--hello-cap N`: "Largest ClientHello accepted, bytes": N itself is accepted
    hello = client_hello("capsni", pad=3000)
    data = hello if records == 1 else split_records(hello, len(hello) // 3 + 1)
    got = feed_all(data, chunk, cap=len(data))
    assert got is not None and got.sni == "capsni" and got.raw == data
    with pytest.raises(HelloError) as e:
        feed_all(data, chunk, cap=len(data) - 1)
    assert e.value.reason == "too_large"
