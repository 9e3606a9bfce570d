"""The recorded reference sessions (PROTOCOL.md's traces/) replayed into our sans-IO
session, byte for byte: the controller's frames go in exactly as recorded, the socket
events the reference endpoint saw (connect, data, peer close, the send) are played at
the recorded times, and every frame our session writes must equal the reference
endpoint's frame, header, field order, optional fields and timestamps included.

`test_trace_replay.py` runs the same traces against a real endpoint process (root, ports
53/80), where timing decides the ndata splits and times, so it compares types and the
deterministic fields; this one pins the bytes. It lives here, not in tests/unit, only
because it reads the traces beside the project (tests/unit reads nothing outside it).
"""

from __future__ import annotations

import json

import pytest
from ep_fakes import Rig
from spec_traces import TRACES

from packetlab import wire

SESSIONS = sorted(p.stem.removesuffix(".session") for p in TRACES.glob("*.session.json"))


def test_both_reference_sessions_are_here() -> None:
    assert {"dns", "http_get"} <= set(SESSIONS), f"reference traces missing under {TRACES}"


def _time(entry: dict[str, str]) -> int | None:
    msg = wire.decode_frame(bytes.fromhex(entry["hex"]))
    return getattr(msg, "time", None)


def _play(rig: Rig, note: wire.Message) -> None:
    """Make our session emit `note` the way the reference endpoint came to: the socket
    event behind it, at the time it carries."""
    s = rig.session
    if isinstance(note, wire.Ntag):
        rig.clock.now = note.time
        rig.run_timer_to(note.time)  # the queued nsend goes out now
        return
    assert isinstance(note, (wire.Nstat, wire.Ndata)), note
    skt = rig.skt(note.sktid)
    rig.clock.now = note.time
    if isinstance(note, wire.Ndata):
        if note.raddr is not None:
            assert note.rport is not None
            s.udp_received(skt, note.data, note.time, note.raddr, note.rport)
        else:
            s.tcp_received(skt, note.data, note.time)
    elif note.raddr is not None:  # ESTABLISHED with the peer's address
        assert note.rport is not None
        s.tcp_established(skt, b"\x7f\x00\x00\x01", 40000, note.raddr, note.rport)
    else:
        assert note.code == wire.NstatCode.PEERCLOSED, note
        s.tcp_eof(skt)


@pytest.mark.parametrize("name", SESSIONS)
def test_reference_session_byte_for_byte(name: str) -> None:
    trace = json.loads((TRACES / f"{name}.session.json").read_text())
    rig = Rig()
    rig.clock.step = 0  # clock readings are the recorded times, exactly
    framer = wire.Framer()
    want: list[bytes] = []
    for i, entry in enumerate(trace):
        frame = bytes.fromhex(entry["hex"])
        if entry["dir"] == "xpmgr->endpt":
            (item,) = list(framer.feed(frame))
            assert isinstance(item, wire.Message) and item.NAME == entry["name"]
            # The reference handled it just before its next notification: an immediate
            # nsend goes out while it is handled, stamped with that time.
            later = [_time(e) for e in trace[i + 1 :] if e["dir"] != "xpmgr->endpt"]
            rig.clock.now = max([rig.clock.now, *[t for t in later if t is not None][:1]])
            rig.session.handle(item)
            continue
        want.append(frame)
        msg = wire.decode_frame(frame)
        if not isinstance(msg, (wire.Result, wire.Mdata)):  # responses come from handle()
            _play(rig, msg)
        got = rig.frames[: len(want)]
        assert [f.hex() for f in got] == [f.hex() for f in want], f"{name}: after {entry['name']}"
    assert [f.hex() for f in rig.frames] == [f.hex() for f in want]
    assert rig.session.ended is None and rig.session.open_sockets == 0
    assert rig.session.budget.used == 0
