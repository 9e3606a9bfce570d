"""The iperf3 control protocol (client side), sans-IO: what a stock `iperf3 -s` (3.x)
expects, so the throughput measurement can use the many existing servers.

A test: the client connects the control channel and sends a 37-byte cookie; the server
drives it with one signed state byte at a time. PARAM_EXCHANGE: the client sends its
parameters (u32 length + JSON). CREATE_STREAMS: the client connects each data stream and
sends the same cookie on it. TEST_START, TEST_RUNNING: the sender sends (the server with
`reverse`). The client sends TEST_END when done; EXCHANGE_RESULTS: the client sends its
results (u32 + JSON) and reads the server's; DISPLAY_RESULTS: the client sends IPERF_DONE.
Checked against iperf3 3.12 (Debian bookworm).
"""

from __future__ import annotations

import json
import secrets
import struct
from enum import IntEnum
from typing import Any

__all__ = [
    "COOKIE_SIZE",
    "DEFAULT_PORT",
    "Iperf3Error",
    "State",
    "client_results",
    "cookie",
    "decode_json",
    "encode_json",
    "parameters",
    "stream_result",
]

DEFAULT_PORT = 5201
COOKIE_SIZE = 37  # 36 characters and a NUL
BLOCK = 128 * 1024  # iperf3's default TCP block ("len")
MAX_JSON = 1 << 20
_B32 = "abcdefghijklmnopqrstuvwxyz234567"  # the alphabet of iperf3's make_cookie


class Iperf3Error(Exception):
    """The server refused, failed, or said something this client does not understand."""


class State(IntEnum):
    TEST_START = 1
    TEST_RUNNING = 2
    TEST_END = 4
    PARAM_EXCHANGE = 9
    CREATE_STREAMS = 10
    SERVER_TERMINATE = 11
    CLIENT_TERMINATE = 12
    EXCHANGE_RESULTS = 13
    DISPLAY_RESULTS = 14
    IPERF_START = 15
    IPERF_DONE = 16
    ACCESS_DENIED = -1
    SERVER_ERROR = -2


def cookie() -> bytes:
    return ("".join(secrets.choice(_B32) for _ in range(COOKIE_SIZE - 1)) + "\0").encode()


def state_byte(state: State) -> bytes:
    return struct.pack("b", state)


def parse_state(b: bytes) -> State:
    (v,) = struct.unpack("b", b[:1])
    try:
        return State(v)
    except ValueError:
        raise Iperf3Error(f"unknown iperf3 state {v}") from None


def encode_json(obj: dict[str, Any]) -> bytes:
    data = json.dumps(obj, separators=(",", ":")).encode()
    return struct.pack(">I", len(data)) + data


def json_length(head: bytes) -> int:
    (n,) = struct.unpack(">I", head)
    if not 0 < n <= MAX_JSON:
        raise Iperf3Error(f"iperf3 JSON of {n} bytes announced")
    return n


def decode_json(data: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, ValueError) as e:
        raise Iperf3Error(f"bad iperf3 JSON: {e}") from None
    if not isinstance(obj, dict):
        raise Iperf3Error("iperf3 JSON is not an object")
    return obj


def parameters(nbytes: int, *, reverse: bool, block: int = BLOCK) -> dict[str, Any]:
    """One TCP stream moving exactly `nbytes` (no time limit, nothing omitted). The server
    takes the mere presence of "reverse" as true, so it is left out for an upload."""
    params: dict[str, Any] = {
        "tcp": True,
        "omit": 0,
        "time": 0,
        "num": nbytes,
        "blockcount": 0,
        "parallel": 1,
        "len": block,
        "pacing_timer": 1000,
        "client_version": "3.12",
    }
    if reverse:
        params["reverse"] = True
    return params


def client_results(nbytes: int, seconds: float) -> dict[str, Any]:
    """What the client reports at EXCHANGE_RESULTS (the fields the server requires)."""
    return {
        "cpu_util_total": 0,
        "cpu_util_user": 0,
        "cpu_util_system": 0,
        "sender_has_retransmits": -1,
        "streams": [
            {
                "id": 1,
                "bytes": nbytes,
                "retransmits": -1,
                "jitter": 0,
                "errors": 0,
                "packets": 0,
                "start_time": 0,
                "end_time": seconds,
            }
        ],
    }


def stream_result(results: dict[str, Any]) -> tuple[int, float]:
    """(bytes, seconds) of the server's one stream."""
    try:
        (stream,) = results["streams"]
        nbytes = int(stream["bytes"])
        seconds = float(stream.get("end_time", 0)) - float(stream.get("start_time", 0))
    except (KeyError, TypeError, ValueError) as e:
        raise Iperf3Error(f"unexpected iperf3 results: {e!r}") from None
    return nbytes, seconds
