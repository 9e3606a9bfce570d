"""The wire fast paths are derived per message type on first use (idle endpoint RSS,
docs/performance.md), from the derived code kept on disk; the first process after a
change keeps every message's at once, so no later first use has to derive."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from packetlab import wire
from packetlab.wire import codec, codegen
from packetlab.wire.framer import Unknown


@pytest.fixture
def underived() -> Iterator[None]:
    """No fast path derived in this process (the same dicts the framer reads, emptied)."""
    decoders, encoders, sources = dict(codec._DECODERS), dict(codec._ENCODERS), dict(codec.SOURCES)
    codec._DECODERS.clear()
    codec._ENCODERS.clear()
    codec.SOURCES.clear()
    yield
    codec._DECODERS.clear()
    codec._DECODERS.update(decoders)
    codec._ENCODERS.clear()
    codec._ENCODERS.update(encoders)
    codec.SOURCES.clear()
    codec.SOURCES.update(sources)


def test_a_message_is_derived_when_first_used(underived: None) -> None:
    m = wire.Mread(addr=1, len=2)
    assert codec._ENCODERS == {} and codec._DECODERS == {}
    frame = wire.encode(m)
    assert list(codec._ENCODERS) == [wire.Mread]  # its decoder with it
    assert list(codec._DECODERS) == [int(wire.Mread.TYPE)]
    assert wire.decode_frame(frame) == m
    assert wire.decode_frame(wire.encode(wire.Start())) == wire.Start()
    assert sorted(codec._DECODERS) == sorted([int(wire.Mread.TYPE), int(wire.Start.TYPE)])


def test_the_framer_derives_a_message_it_has_not_seen_and_keeps_unknown_types(
    underived: None,
) -> None:
    frames = wire.encode(wire.Start()) + b"\x95\x00\x00\x01x" + wire.encode(wire.End())
    assert list(wire.Framer().feed(frames)) == [wire.Start(), Unknown(0x95, b"x", 4), wire.End()]
    with pytest.raises(codec.UnknownType):
        codec.decode_body(0x95, b"")


def test_a_non_message_is_still_refused(underived: None) -> None:
    with pytest.raises(wire.EncodeError, match="not a PacketLab message"):
        wire.encode(object())  # type: ignore[arg-type]


def test_sources_are_made_when_asked(underived: None) -> None:
    assert "def decode" in codec.SOURCES["Mread"]
    with pytest.raises(KeyError):
        codec.SOURCES["NoSuchMessage"]


def test_the_first_derivation_keeps_every_message(
    underived: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(codegen, "_bundle", None)
    assert not any(codegen.is_kept(cls) for cls in wire.ALL_MESSAGES)
    wire.encode(wire.Start())
    assert all(codegen.is_kept(cls) for cls in wire.ALL_MESSAGES)
    assert list(codec._ENCODERS) == [wire.Start]  # only the one used is loaded
    monkeypatch.setattr(codegen, "_bundle", None)  # a later process reads them back
    assert all(codegen.is_kept(cls) for cls in wire.ALL_MESSAGES)
