"""Heads curl reads and h11 refuses, rewritten for h11; everything else passes as is."""

from __future__ import annotations

import h11
import pytest

from packetlab.measure.http_lenient import HOLD_MAX, LenientHeads, rewrite_head


@pytest.mark.parametrize(
    ("head", "taken"),
    [
        (b"http/1.1 200 OK\r\nA: b", b"HTTP/1.1 200 OK\r\nA: b"),
        (b"HTTP/1.1 200 OK\r\nX-A : b\r\nY\t: c", b"HTTP/1.1 200 OK\r\nX-A: b\r\nY: c"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3", b"HTTP/1.1 200 OK\r\nContent-Length: 2"),
        (b"HTTP/1.1 200 OK\r\ncontent-length:2 ,2", b"HTTP/1.1 200 OK\r\ncontent-length:2"),
        (b"HTTP/1.1 200 OK\r\nX: a : b", b"HTTP/1.1 200 OK\r\nX: a : b"),  # a value's colon
        (b"HTTP/1.1 200 OK\r\nX: v\r\n  folded : x", b"HTTP/1.1 200 OK\r\nX: v\r\n  folded : x"),
    ],
)
def test_rewrite_head(head: bytes, taken: bytes) -> None:
    assert rewrite_head(head) == taken


def _h11_reads(chunks: list[bytes]) -> list[object]:
    h = h11.Connection(h11.CLIENT)
    h.send(h11.Request(method="GET", target="/", headers=[("Host", "a")]))
    h.send(h11.EndOfMessage())
    heads = LenientHeads()
    events: list[object] = []
    for chunk in chunks:
        given = heads.take(chunk)
        if given:
            h.receive_data(given)
        while (event := h.next_event()) not in (h11.NEED_DATA, h11.PAUSED):
            events.append(event)
    return events


def test_a_head_split_anywhere_and_a_1xx_before_it() -> None:
    raw = (b"HTTP/1.1 103 Early Hints\r\nLink : x\r\n\r\nhttp/1.1 200 OK\r\nX-A : b\r\n"
           b"Content-Length: 2, 3\r\n\r\nok")  # fmt: skip
    for cut in range(1, len(raw)):
        events = _h11_reads([raw[:cut], raw[cut:]])
        kinds = [type(e).__name__ for e in events if not isinstance(e, h11.Data)]
        assert kinds == ["InformationalResponse", "Response", "EndOfMessage"], cut
        body = b"".join(bytes(e.data) for e in events if isinstance(e, h11.Data))
        assert body == b"ok", cut


def test_the_body_passes_as_it_comes_and_nothing_is_held_past_the_cap() -> None:
    heads = LenientHeads()
    assert heads.take(b"HTTP/1.1 200 OK\r\n") == b""
    assert heads.take(b"\r\nbody : not a field\r\n\r\n") == (
        b"HTTP/1.1 200 OK\r\n\r\nbody : not a field\r\n\r\n")  # fmt: skip
    assert heads.take(b"X : y") == b"X : y"
    huge = LenientHeads()
    assert huge.take(b"x" * (HOLD_MAX + 1)) == b"x" * (HOLD_MAX + 1)  # no end: let go
    assert huge.take(b"more") == b"more"
    cut = LenientHeads()
    assert cut.take(b"HTTP/1.1 200") == b"" and cut.flush() == b"HTTP/1.1 200"


def test_after_a_101_what_follows_passes_as_it_comes() -> None:
    # h2c: HTTP/2 frames follow the 101's head (they were held for a head that never came)
    heads = LenientHeads()
    frames = b"\x00\x00\x12\x04\x00\x00\x00\x00\x00"
    assert heads.take(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n" + frames) == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n" + frames)  # fmt: skip
    assert heads.take(b"more") == b"more"
