"""Golden bytes from real reference sessions (../shared/spec/traces): every frame decodes to
its named message and re-encodes to the same bytes, on the fast path and on construct's."""

from __future__ import annotations

import json
from typing import cast

import pytest
from spec_traces import TRACES

from packetlab import wire
from packetlab.wire import jsonform

FRAMES = [
    pytest.param(f["name"], bytes.fromhex(f["hex"]), id=f"{p.stem}-{i}-{f['name']}")
    for p in sorted(TRACES.glob("*.session.json"))
    for i, f in enumerate(json.loads(p.read_text()))
]


def test_traces_found() -> None:
    assert len(FRAMES) >= 20, f"reference traces missing under {TRACES}"


@pytest.mark.parametrize(("name", "frame"), FRAMES)
def test_reference_frame_round_trips(name: str, frame: bytes) -> None:
    msg = wire.decode_frame(frame)
    assert msg.NAME == name
    assert wire.encode(msg) == frame
    assert wire.construct_encode(msg) == frame
    assert wire.construct_decode_body(frame[0], frame[4:]) == msg


def test_framer_splits_a_whole_session_fed_byte_by_byte() -> None:
    frames = [cast(bytes, p.values[1]) for p in FRAMES]
    stream = b"".join(frames)
    framer = wire.Framer()
    got = [m for i in range(len(stream)) for m in framer.feed(stream[i : i + 1])]
    assert [wire.encode(m) for m in got] == frames  # type: ignore[arg-type]
    assert framer.buffered == 0


@pytest.mark.parametrize(("name", "frame"), FRAMES)
def test_reference_frame_json_form_round_trips(name: str, frame: bytes) -> None:
    form = jsonform.message_to_json(wire.decode_frame(frame))
    assert form["type"] == name
    assert jsonform.frame_from_json(json.loads(json.dumps(form))) == frame
