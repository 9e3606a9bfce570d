"""What every result record shares: where its timestamps came from (`Stamp`), RTTs from
two absolute times, and a record read back from JSON with its fields checked
(`RecordError`)."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

__all__ = [
    "RESULT_NON_NULL",
    "RecordError",
    "Stamp",
    "record_from_dict",
    "rtt_us_between",
]


class RecordError(ValueError):
    """A JSON object that is not a valid record."""


class Stamp(enum.StrEnum):
    """Where a send or receive timestamp was taken."""

    KERNEL = "kernel"  # SO_TIMESTAMP(NS) on receive; SO_TIMESTAMPING software TX on send
    USER_BEFORE_SEND = "user-before-send"  # gettimeofday()/clock_gettime() just before send()
    USER_AFTER_SEND = "user-after-send"  # just after send() returned (reference endpoint ntag)
    USER_AFTER_RECV = "user-after-recv"  # after recv() returned
    UNKNOWN = "unknown"


def rtt_us_between(send_ns: int, recv_ns: int) -> float:
    """Round-trip time in microseconds (ns resolution) from two absolute ns times."""
    return (recv_ns - send_ns) / 1000.0


def record_from_dict(
    cls: Any, obj: Mapping[str, Any], *, required: Sequence[str], non_null: Sequence[str] = ()
) -> Any:
    if not isinstance(obj, Mapping):
        raise RecordError(f"{cls.__name__} must be a JSON object, not {type(obj).__name__}")
    missing = [k for k in required if k not in obj]
    if missing:
        raise RecordError(f"{cls.__name__} is missing {', '.join(missing)}")
    known = {f.name: f for f in fields(cls)}
    unknown = set(obj) - set(known)
    if unknown:
        raise RecordError(f"{cls.__name__} has unknown fields {', '.join(sorted(unknown))}")
    for name, value in obj.items():
        if value is None and name in non_null:
            raise RecordError(f"{cls.__name__}.{name} must not be null")
        _check_type(cls.__name__, name, value)
    return cls(**obj)


_INT_FIELDS = {
    "ttl",
    "tcp_flags",
    "code",
    "probe_send_ns",
    "reply_recv_ns",
    "reply_ttl",
    "reply_ip_id",
    "seq",
    "size",
    "sent",
    "max_ttl",
    "probe_size",
    "start_ns",
    "icmp_type",
    "mtu",
}
_FLOAT_FIELDS = {"rtt_us"}
RESULT_NON_NULL = ("dst", "sent", "tool", "method", "send_stamp", "recv_stamp")
_STR_FIELDS = {"addr", "reply_type", "dst", "src", "tool", "method", "send_stamp", "recv_stamp"}


def _check_type(owner: str, name: str, value: object) -> None:
    if value is None:
        return
    if name in _INT_FIELDS:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif name in _FLOAT_FIELDS:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    elif name in _STR_FIELDS:
        ok = isinstance(value, str)
    else:
        ok = True  # hops/replies: checked by their own from_dict
    if not ok:
        raise RecordError(f"{owner}.{name} has the wrong type: {value!r}")
