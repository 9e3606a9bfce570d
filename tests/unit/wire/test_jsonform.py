"""The JSON form of messages (packetlab.wire.jsonform)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from wire_strategies import any_message

from packetlab import wire
from packetlab.wire import jsonform
from packetlab.wire.jsonform import JsonFormError, message_from_json, message_to_json


@pytest.mark.parametrize(
    ("msg", "form"),
    [
        (wire.Nclose(sktid=3), {"type": "nclose", "sktid": 3}),
        (wire.Start(), {"type": "start"}),
        (wire.Result(), {"type": "result", "errid": 0}),
        (
            wire.Result(errid=0x12, monindx=1, monerrid=7),
            {"type": "result", "errid": 18, "monindx": 1, "monerrid": 7},
        ),
        (
            wire.Nsend(1, 6, 17, 5, 7, b"\xab\xcd", raddr=bytes(15) + b"\x01", rport=53),
            {"type": "nsend", "sktid": 1, "family": 6, "proto": 17, "time": 5, "tag": 7,
             "raddr": "::1", "rport": 53, "data": "abcd"},
        ),
        (
            wire.Nopen(3, 4, 6, 0x4000, bytes(4), lport=0, raddr=bytes([198, 51, 100, 7]),
                       rport=80),
            {"type": "nopen", "sktid": 3, "family": 4, "proto": 6, "rbufsz": 16384,
             "laddr": "0.0.0.0", "lport": 0, "raddr": "198.51.100.7", "rport": 80},
        ),
        (
            wire.Nopen(0, 6, 0, 1, bytes.fromhex("20010db8000000000000000000000001")),
            {"type": "nopen", "sktid": 0, "family": 6, "proto": 0, "rbufsz": 1,
             "laddr": "2001:db8::1"},
        ),
        (
            wire.Nstat(3, 4, 6, 2, raddr=bytes([198, 51, 100, 7]), rport=80),
            {"type": "nstat", "sktid": 3, "family": 4, "proto": 6, "time": 2, "code": 0,
             "raddr": "198.51.100.7", "rport": 80},
        ),
        (
            wire.Xpub(chlist=[b"test", b"\xAB"], eopkey=b"\x11" * 32, xdescr=b"a=b;"),
            {"type": "xpub", "chlist": ["74657374", "ab"], "eopkey": "11" * 32,
             "xdescr": "613d623b"},
        ),
        (
            wire.Linfo(name=b"monitor", aux=b"\x01\x00", info=b""),
            {"type": "linfo", "name": "6d6f6e69746f72", "aux": "0100", "info": ""},
        ),
    ],
)  # fmt: skip
def test_form(msg: wire.Message, form: dict[str, Any]) -> None:
    assert message_to_json(msg) == form
    assert list(message_to_json(msg)) == list(form)  # type first, then wire order
    assert message_from_json(form) == msg


def test_optional_fields_may_be_left_out() -> None:
    assert message_from_json({"type": "result"}) == wire.Result()
    assert message_from_json({"type": "xnotify", "channel": "61"}) == wire.Xnotify(b"a")
    assert message_from_json({"type": "ntag", "sktid": 1, "tag": 2, "time": 3}) == wire.Ntag(
        1, 2, 3
    )


def test_hex_may_be_upper_case_and_spaced() -> None:
    assert message_from_json({"type": "xcert", "cert": "30 03 02 01 0A"}) == wire.Xcert(
        bytes.fromhex("300302010a")
    )


@pytest.mark.parametrize(
    ("obj", "key", "text"),
    [
        ({}, "type", "missing"),
        ([], "type", "expected a JSON object"),
        ({"type": "nosuch"}, "type", "unknown message type name 'nosuch'"),
        ({"type": 44}, "type", "unknown message type name 44"),
        ({"type": "nclose"}, "sktid", "missing (required by nclose)"),
        ({"type": "nclose", "sktid": 1, "tag": 2}, "tag", "not a field of nclose"),
        ({"type": "nclose", "sktid": "1"}, "sktid", 'expected an integer, got "1"'),
        ({"type": "nclose", "sktid": True}, "sktid", "expected an integer, got true"),
        ({"type": "nclose", "sktid": 256}, "sktid", "256 does not fit in an unsigned 8-bit"),
        ({"type": "nclose", "sktid": -1}, "sktid", "does not fit"),
        ({"type": "yield", "rhint": 1 << 64}, "rhint", "unsigned 64-bit"),
        ({"type": "xcert", "cert": "zz"}, "cert", "bad hex 'zz': 'z' at character 0"),
        ({"type": "xcert", "cert": "abc"}, "cert", "bad hex 'abc': an odd number of digits"),
        ({"type": "xcert", "cert": 12}, "cert", "expected a hex string, got 12"),
        ({"type": "xpub", "chlist": "ab", "eopkey": ""}, "chlist",
         'expected an array of hex strings, got "ab"'),
        ({"type": "xpub", "chlist": ["ab", "g"], "eopkey": ""}, "chlist[1]", "bad hex"),
        (
            {"type": "nopen", "sktid": 0, "family": 4, "proto": 0, "rbufsz": 0, "laddr": "::1"},
            "laddr", "'::1' is not an IPv4 address (family 4)",
        ),
        (
            {"type": "nopen", "sktid": 0, "family": 6, "proto": 0, "rbufsz": 0, "laddr": "1.2.3"},
            "laddr", "is not an IPv6 address",
        ),
        (
            {"type": "nopen", "sktid": 0, "family": 5, "proto": 0, "rbufsz": 0, "laddr": "::"},
            "laddr", "an address needs family 4 or 6, not 5",
        ),
        (
            {"type": "nopen", "sktid": 0, "proto": 0, "rbufsz": 0, "laddr": "::"},
            "family", "missing",
        ),
        (
            {"type": "nstat", "sktid": 0, "family": 4, "proto": 6, "time": 0, "raddr": 7},
            "raddr", "expected an address string, got 7",
        ),
    ],
)  # fmt: skip
def test_bad_form_names_the_key(obj: Any, key: str, text: str) -> None:
    with pytest.raises(JsonFormError) as err:
        message_from_json(obj)
    assert err.value.key == key
    assert text in str(err.value)
    assert str(err.value).startswith(f"{key}: ")


def test_frame_from_json() -> None:
    assert jsonform.frame_from_json({"type": "start"}) == b"\x21\x00\x00\x00"
    raw = {"type": "unknown", "code": 0x90, "body": "dead"}
    assert jsonform.frame_from_json(raw) == bytes.fromhex("90000002dead")
    assert jsonform.frame_from_json({"type": "unknown", "code": 0x25}) == b"\x25\x00\x00\x00"
    assert jsonform.unknown_to_json(0x90, b"\xde\xad") == raw
    with pytest.raises(JsonFormError, match="code: missing"):
        jsonform.frame_from_json({"type": "unknown", "body": ""})
    with pytest.raises(JsonFormError, match="code: 256 does not fit"):
        jsonform.frame_from_json({"type": "unknown", "code": 256})
    with pytest.raises(JsonFormError, match="extra: not a field of unknown"):
        jsonform.frame_from_json({"type": "unknown", "code": 1, "extra": 1})
    # Rules between fields are the encoder's.
    with pytest.raises(wire.EncodeError, match="mread len must be > 0"):
        jsonform.frame_from_json({"type": "mread", "addr": 0, "len": 0})


@settings(max_examples=200, deadline=None)
@given(any_message)
def test_json_round_trip(msg: wire.Message) -> None:
    form = message_to_json(msg)
    assert message_from_json(json.loads(json.dumps(form))) == msg
    assert jsonform.frame_from_json(form) == wire.encode(msg)
