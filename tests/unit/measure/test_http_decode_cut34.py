"""--compressed bodies cut short, with data past their end, or empty, the same for every
coding (session 34): a body that ends within its compressed stream is refused (curl's
61, `Undecodable.truncated` the coding) with what it decoded so far handed out; data
after a stream's end is refused the same, but a next gzip member (RFC 1952 2.2) is read
on; a body of no bytes is empty. Before, only zstd was refused cut short (session 33);
gzip, deflate and br bodies cut short were taken, and data after a gzip or deflate
stream's end dropped without a word."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable

import brotli
import pytest
import zstandard
from test_http_redirects import response, serving

from packetlab.measure.http import http_get
from packetlab.measure.http_decode import Undecodable, decoder

TEXT = b"hello compressed world\n" * 40
CUT = "the body ends within its compressed stream (cut short)"


def _raw(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-15)
    return c.compress(data) + c.flush()


def _gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


# (name, the Content-Encoding codings, how TEXT is encoded)
CODED: list[tuple[str, list[str], Callable[[bytes], bytes]]] = [
    ("gzip", ["gzip"], _gz),
    ("x-gzip", ["x-gzip"], _gz),
    ("deflate", ["deflate"], zlib.compress),
    ("raw deflate", ["deflate"], _raw),
    ("br", ["br"], brotli.compress),
    ("zstd", ["zstd"], zstandard.ZstdCompressor(write_checksum=True).compress),
]


def _decode(codings: list[str], reads: list[bytes]) -> tuple[bytes, Undecodable | None]:
    """What the reads decode to (what was handed out, a fault's `out` with it) and the
    fault, if any."""
    d = decoder(codings, 1 << 20, "s")
    assert d is not None
    out = b""
    try:
        for data in reads:
            out += d.feed(data)
        out += d.feed(b"", final=True)
    except Undecodable as e:
        return out + e.out, e
    return out, None


def _bytewise(body: bytes) -> list[bytes]:
    return [body[i : i + 1] for i in range(len(body))]


@pytest.mark.parametrize(("name", "codings", "encode"), CODED, ids=[c[0] for c in CODED])
def test_every_cut_of_a_body_is_refused_as_cut_short(
    name: str, codings: list[str], encode: Callable[[bytes], bytes]
) -> None:
    """Each of a body's cuts (1 to its length less 1 bytes; at once and a byte a read)
    is refused as cut short, naming its coding, with a prefix of the text handed out;
    the whole body decodes however read. Before: gzip (75 bytes), deflate and br cuts
    were taken (curl 7.88.1 takes them: exit 0), what they held written."""
    body = encode(TEXT)
    assert _decode(codings, [body]) == (TEXT, None)
    assert _decode(codings, _bytewise(body)) == (TEXT, None)
    refused = 0
    for cut in range(1, len(body)):
        for reads in ([body[:cut]], _bytewise(body[:cut])):
            out, fault = _decode(codings, reads)
            assert fault is not None, (name, cut)
            assert fault.truncated == codings[0], (name, cut, fault)
            assert str(fault).endswith(CUT)
            assert TEXT.startswith(out), (name, cut)
        refused += 1
    assert refused == len(body) - 1


@pytest.mark.parametrize(("name", "codings", "encode"), CODED, ids=[c[0] for c in CODED])
def test_data_after_the_end_is_refused_with_the_text_handed_out(
    name: str, codings: list[str], encode: Callable[[bytes], bytes]
) -> None:
    """Bytes after a complete stream (a read of their own): refused, the text decoded
    handed out. Before: gzip and deflate dropped them (exit 0); curl 7.88.1 fails 23
    (gzip, deflate, br) or 61 (zstd), the text written."""
    body = encode(TEXT)
    for reads in ([body, b"GARBAGE!"], _bytewise(body + b"GARBAGE!")):
        out, fault = _decode(codings, reads)
        assert fault is not None and fault.truncated is None, name
        assert str(fault).endswith("data after the end of its compressed stream"), name
        assert out == TEXT, name


def test_gzip_members_one_after_another_are_one_body() -> None:
    """RFC 1952 2.2: a gzip file is members one after another (gunzip, Python's gzip
    read them all; curl 7.88.1 writes the first and fails 23). Read however cut; a body
    cut within the second member is cut short; a deflate stream twice is data after
    the end (RFC 1950 has no members)."""
    two = _gz(TEXT) + _gz(b"second member\n")
    for codings in (["gzip"], ["x-gzip"]):
        assert _decode(codings, [two]) == (TEXT + b"second member\n", None)
        assert _decode(codings, _bytewise(two)) == (TEXT + b"second member\n", None)
        for cut in (len(_gz(TEXT)) + 1, len(_gz(TEXT)) + 2, len(two) - 1):
            out, fault = _decode(codings, [two[:cut]])
            assert fault is not None and fault.truncated == codings[0], cut
            assert out.startswith(TEXT)
    _, fault = _decode(["deflate"], [zlib.compress(TEXT) * 2])
    assert fault is not None and "data after the end" in str(fault)
    # a byte that cannot start a member is data after the end at once, not a member cut
    for reads in ([_gz(TEXT) + b"\n"], [_gz(TEXT), b"\n"]):
        out, fault = _decode(["gzip"], reads)
        assert fault is not None and fault.truncated is None and out == TEXT
        assert "data after the end" in str(fault)


def test_an_empty_body_is_empty_whatever_its_coding() -> None:
    """A body of no bytes under any coding is no stream cut short (as curl, exit 0)."""
    for _, codings, _ in CODED:
        assert _decode(codings, []) == (b"", None)
        assert _decode(codings, [b""]) == (b"", None)
    assert _decode(["gzip", "br"], []) == (b"", None)


def test_a_chained_body_cut_short_names_the_coding_cut() -> None:
    """`Content-Encoding: gzip, br` (br applied last, undone first): the br stream cut
    is told as br's; a whole br stream of a gzip stream cut, as gzip's."""
    inner_cut = brotli.compress(_gz(TEXT)[:-4])
    out, fault = _decode(["gzip", "br"], [inner_cut])
    assert fault is not None and fault.truncated == "gzip" and out == TEXT
    whole = brotli.compress(_gz(TEXT))
    for cut in range(1, len(whole)):
        out, fault = _decode(["gzip", "br"], [whole[:cut]])
        assert fault is not None and fault.truncated == "br", cut
        assert TEXT.startswith(out)
    assert _decode(["gzip", "br"], [whole]) == (TEXT, None)


def test_a_cut_body_from_a_server_is_61_with_its_decoded_bytes_handed_out() -> None:
    """http_get: a gzip body 4 bytes short (its length field) is the URL's 61 with
    `truncated` in its record, the text it decoded handed to on_body and kept; under
    `Transfer-Encoding: gzip, chunked` too, its error naming that field (a transfer
    coding's errors said Content-Encoding). Before: no error (exit 0), no sign it was
    cut."""
    cut = _gz(TEXT)[:-4]

    def handler(method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
        if target == "/te":  # (a transfer coding: decoded with or without --compressed)
            return (b"HTTP/1.1 200 X\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                    b"%x\r\n%s\r\n0\r\n\r\n" % (len(cut), cut))  # fmt: skip
        return response(200, cut if target == "/cut" else _gz(TEXT), Content_Encoding="gzip")

    rig, _ = serving(handler)
    out: list[bytes] = []
    r = rig.run(http_get(rig.session, "http://192.0.2.80/cut", compressed=True,
                         keep_body=True, on_body=out.append))  # fmt: skip
    assert (r.exitcode, r.status, r.truncated) == (61, 200, "gzip")
    assert r.error == "Content-Encoding gzip: " + CUT
    assert b"".join(out) == r.body == TEXT and r.body_len == len(cut)
    record = r.to_dict()
    assert (record["exitcode"], record["truncated"], record["body_len"]) == (61, "gzip", len(cut))
    r = rig.run(http_get(rig.session, "http://192.0.2.80/whole", compressed=True, keep_body=True))
    assert (r.error, r.body, r.truncated) == (None, TEXT, None)
    assert "truncated" not in r.to_dict()
    # a Transfer-Encoding's stream cut short: the same, told as its field's
    r = rig.run(http_get(rig.session, "http://192.0.2.80/te", keep_body=True))
    assert (r.exitcode, r.truncated, r.body) == (61, "gzip", TEXT)
    assert r.error == "Transfer-Encoding gzip: " + CUT


def test_a_cut_body_over_http2_is_61_the_same() -> None:
    """The same over HTTP/2 (h2c with prior knowledge): a br body cut a byte short is
    61 with `truncated` "br" and the bytes it decoded kept. Before: taken, exit 0."""
    from http_fake import Answer, H2Server, serve

    cut = brotli.compress(TEXT)[:-1]

    def br(method: str, target: str, headers: dict[str, str], body: bytes) -> Answer:
        return 200, [("content-encoding", "br"), ("content-length", str(len(cut)))], cut

    rig, _ = serve(lambda _: H2Server(br))
    r = rig.run(http_get(rig.session, "http://192.0.2.80/", http_version="2-prior",
                         compressed=True, keep_body=True))  # fmt: skip
    assert (r.http_version, r.exitcode, r.truncated, r.body_len) == ("2", 61, "br", len(cut))
    assert r.body is not None and TEXT.startswith(r.body)
