"""Property tests: the fast codec derived from the declarations agrees with construct's
interpretation of them, round trips hold, and the framer survives any byte stream."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wire_strategies import STRATEGIES, any_message, mutated_body

from packetlab import wire
from packetlab.wire import Message, jsonform

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CLASSES = pytest.mark.parametrize("cls", wire.ALL_MESSAGES, ids=lambda c: c.NAME)


@CLASSES
def test_round_trip_and_paths_agree(cls: type[Message]) -> None:
    @FAST
    @given(STRATEGIES[cls])
    def check(msg: Message) -> None:
        frame = wire.encode(msg)
        assert frame == wire.construct_encode(msg)
        assert frame[0] == cls.TYPE
        assert int.from_bytes(frame[1:4], "big") == len(frame) - 4
        body = frame[4:]
        fast = wire.decode_body(cls.TYPE, body)
        assert fast == msg
        assert wire.construct_decode_body(cls.TYPE, body) == fast
        assert wire.decode_frame(frame) == msg
        assert jsonform.message_from_json(jsonform.message_to_json(msg)) == msg

    check()


@CLASSES
def test_any_body_fast_and_construct_agree(cls: type[Message]) -> None:
    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(mutated_body(cls))
    def check(body: bytes) -> None:
        fast: Any
        ref: Any
        try:
            fast = wire.decode_body(cls.TYPE, body)
        except wire.MalformedMessage as e:
            fast = e
        try:
            ref = wire.construct_decode_body(cls.TYPE, body)
        except wire.MalformedMessage as e:
            ref = e
        if isinstance(fast, Exception) or isinstance(ref, Exception):
            assert type(fast) is type(ref), f"fast: {fast!r}, construct: {ref!r}"
            assert fast.msgtype == ref.msgtype == cls.TYPE
        else:
            assert fast == ref
            # A body that decodes re-encodes to the same bytes, except the two forms the
            # encoder writes shorter: result and ntag with an explicit SUCCESS errid.
            again = wire.encode(fast)[4:]
            assert again == body or (cls in (wire.Result, wire.Ntag) and again == body[:-2])

    check()


# ----------------------------------------------------------------------------- framer


def _key(item: wire.Item) -> tuple[Any, ...]:
    if isinstance(item, wire.Malformed):
        return ("malformed", item.msgtype, item.body, item.offset, item.error.rule)
    if isinstance(item, wire.Unknown):
        return ("unknown", item.msgtype, item.body, item.offset)
    return ("message", item)


@st.composite
def frame(draw: Any) -> bytes:
    """A valid frame, a frame of any type code with any body, or a few garbage bytes."""
    how = draw(st.sampled_from(["message", "message", "raw", "garbage"]))
    if how == "message":
        return wire.encode(draw(any_message))
    if how == "raw":
        body = draw(st.binary(max_size=40))
        return bytes([draw(st.integers(0, 255))]) + len(body).to_bytes(3, "big") + body
    return bytes(draw(st.binary(min_size=1, max_size=6)))


streams = st.lists(frame(), max_size=12).map(b"".join)


def _drain(framer: wire.Framer, chunks: list[bytes]) -> tuple[list[Any], wire.FrameTooLarge | None]:
    items: list[Any] = []
    try:
        for chunk in chunks:
            items.extend(_key(i) for i in framer.feed(chunk))
    except wire.FrameTooLarge as e:
        return items, e
    return items, None


@FAST
@given(streams, st.data())
def test_framer_never_raises_and_chunking_does_not_matter(stream: bytes, data: Any) -> None:
    framer = wire.Framer()
    whole, err = _drain(framer, [stream])
    assert err is None  # the default cap is the protocol maximum: nothing is too large
    assert len(whole) <= len(stream) // 4  # every item consumed at least a header
    tail = stream[len(stream) - framer.buffered :]  # what is left is one incomplete frame
    assert len(tail) < 4 or 4 + int.from_bytes(tail[1:4], "big") > len(tail)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    again, err = _drain(wire.Framer(), chunks)
    assert err is None
    assert again == whole


@FAST
@given(streams, st.integers(0, 64), st.data())
def test_framer_cap_raises_only_frame_too_large(stream: bytes, cap: int, data: Any) -> None:
    whole, err = _drain(wire.Framer(max_body=cap), [stream])
    if err is not None:
        assert isinstance(err, wire.FrameTooLarge) and err.length > cap
        assert stream[err.offset + 1 : err.offset + 4] == err.length.to_bytes(3, "big")
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    again, err2 = _drain(wire.Framer(max_body=cap), chunks)
    assert again == whole
    assert (err is None) == (err2 is None)
    if err is not None and err2 is not None:
        assert (err.offset, err.length) == (err2.offset, err2.length)


@FAST
@given(st.binary(max_size=300))
def test_framer_random_bytes(stream: bytes) -> None:
    items, err = _drain(wire.Framer(), [stream[i : i + 7] for i in range(0, len(stream), 7)])
    assert err is None
    assert len(items) <= len(stream) // 4


# ------------------------------------------------- encoding any field values, valid or not

_INTS = st.one_of(
    st.none(), st.integers(-2, (1 << 64) + 1), st.sampled_from([0, 1, 4, 6, 17, 0x12, 0x13])
)
_BYTES = st.one_of(st.none(), st.binary(max_size=40))
_LISTS = st.one_of(st.none(), st.lists(st.binary(max_size=34), max_size=3))


def _loose(cls: type[Message]) -> st.SearchStrategy[Message]:
    """Instances with any field values of the right Python type (or None), mostly invalid.

    Byte fields never get an int here: construct's `Bytes(n)` turns an int into n bytes,
    while the fast encoder refuses it (an int where bytes belong is a caller's bug).
    """
    kinds = {"int": _INTS, "bytes": _BYTES, "list[bytes]": _LISTS}
    strategies = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        kind = str(f.type).replace(" | None", "")
        strategies[f.name] = kinds[kind]
    return st.fixed_dictionaries(strategies).map(lambda kw: cls(**kw))


@CLASSES
def test_encoders_agree_on_any_field_values(cls: type[Message]) -> None:
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_loose(cls))
    def check(msg: Message) -> None:
        fast: Any
        ref: Any
        try:
            fast = wire.encode(msg)
        except wire.EncodeError:
            fast = "EncodeError"
        try:
            ref = wire.construct_encode(msg)
        except wire.EncodeError:
            ref = "EncodeError"
        assert fast == ref
        if fast != "EncodeError":  # whatever encodes decodes back to the same message
            assert wire.decode_frame(fast) == msg

    check()
