"""--compressed: data after a stream's end, wherever the reads cut it, is the same answer
for every coding (session 35, clock35): 61 `data after the end of its compressed
stream`, the whole text handed out (curl 7.88.1 writes the same text; its exit is 23 for
gzip, deflate and br, which ours leaves: docs/http.md). Before, a br body with the
junk in the read that ended its stream was `bad data (brotli: decoder failed)` and that
read's text was lost (the binding refuses the read whole)."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable

import brotli
import pytest
import zstandard
from test_http_decode_cut34 import _decode
from test_http_redirects import response, serving

from packetlab.measure import http_decode
from packetlab.measure.http import http_get

TEXT = b"".join(b"line %05d of the text, some words to compress\n" % i for i in range(400))
AFTER = "data after the end of its compressed stream"
# (name, the Content-Encoding codings, how TEXT is encoded)
CODED: list[tuple[str, list[str], Callable[[bytes], bytes]]] = [
    ("gzip", ["gzip"], lambda b: gzip.compress(b, mtime=0)),
    ("deflate", ["deflate"], zlib.compress),
    ("br", ["br"], brotli.compress),
    ("zstd", ["zstd"], zstandard.ZstdCompressor(write_checksum=True).compress),
    ("gzip, br", ["gzip", "br"], lambda b: brotli.compress(gzip.compress(b, mtime=0))),
]
# what a server wrote after the stream: text, NULs, a lone byte; for deflate and br also
# the same stream again (a gzip member or a zstd frame: read on, not junk)
JUNK = [b"JUNK\x00after the end\n", b"\x00" * 8, b"x"]


@pytest.mark.parametrize(("name", "codings", "encode"), CODED, ids=[c[0] for c in CODED])
def test_data_after_the_end_in_any_read_hands_out_the_whole_text(
    name: str, codings: list[str], encode: Callable[[bytes], bytes]
) -> None:
    """Body and junk in one read, cut anywhere into two reads (the junk in the read that
    ends the stream, or in one of its own), and a byte a read. Before: br failed each
    cut within the stream, as bad data, the text of that read lost (in one read: none)."""
    body = encode(TEXT)
    junks = JUNK if name != "zstd" else JUNK[:2]  # (zstd: a lone byte is a frame cut short)
    for junk in [*junks, *([body] if name in ("deflate", "br") else [])]:
        whole = body + junk
        cuts = [[whole], [whole[i : i + 1] for i in range(len(whole))]]
        cuts += [[whole[:k], whole[k:]] for k in range(1, len(whole))]
        for reads in cuts:
            out, fault = _decode(codings, reads)
            assert fault is not None and str(fault).endswith(AFTER), (name, junk, len(reads[0]))
            assert fault.truncated is None
            assert out == TEXT, (name, junk, len(reads[0]), len(out))


def test_br_past_its_kept_bytes_is_still_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past BR_HISTORY_MAX compressed bytes (8 MiB) a br read refused whole is told as
    bad data, as before, that read's text not handed out."""
    monkeypatch.setattr(http_decode, "BR_HISTORY_MAX", 100)
    body = brotli.compress(TEXT)
    out, fault = _decode(["br"], [body[:200], body[200:] + b"JUNK"])
    assert fault is not None and "bad data (brotli: decoder failed)" in str(fault)
    assert TEXT.startswith(out) and len(out) < len(TEXT)
    monkeypatch.setattr(http_decode, "BR_HISTORY_MAX", 8 << 20)
    assert _decode(["br"], [body[:200], body[200:] + b"JUNK"])[0] == TEXT


def test_a_bad_br_stream_hands_out_what_came_before_the_fault() -> None:
    """A byte the decoder cannot take within the stream is bad data; the text before it
    in that read is handed out (before: that read's none)."""
    body = bytearray(brotli.compress(TEXT))
    out, fault = _decode(["br"], [bytes(body[:50]), bytes(body[50:])])
    assert fault is None and out == TEXT
    first, _ = _decode(["br"], [bytes(body[:50])])  # (cut short: its first read's text)
    body[-2] ^= 0xFF  # (in its last meta-block)
    out, fault = _decode(["br"], [bytes(body[:50]), bytes(body[50:])])
    assert fault is not None and "bad data" in str(fault) and fault.truncated is None
    assert TEXT.startswith(out) and len(out) > len(first), (len(out), len(first))


def test_a_server_writing_junk_after_a_br_body_is_61_with_the_text_written() -> None:
    """http_get over the fake endpoint: the br body and its junk in one write (as the
    loopback server of docs/usability.md's Session 35 (clock35)): 61, the text kept and
    handed to on_body; curl 7.88.1 --compressed wrote the same 18,800 bytes (exit 23).
    Before: 61 `bad data (brotli: decoder failed)`, nothing handed out."""
    junk = b"JUNK\x00after the end\n"
    rig, _ = serving(lambda *_: response(200, brotli.compress(TEXT) + junk,
                                         Content_Encoding="br"))  # fmt: skip
    out: list[bytes] = []
    r = rig.run(http_get(rig.session, "http://192.0.2.80/", compressed=True,
                         keep_body=True, on_body=out.append))  # fmt: skip
    assert (r.exitcode, r.status, r.truncated) == (61, 200, None)
    assert r.error == "Content-Encoding br: " + AFTER
    assert b"".join(out) == r.body == TEXT
    assert r.body_len == len(brotli.compress(TEXT) + junk)  # (size_download: as received)
