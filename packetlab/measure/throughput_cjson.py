"""iperf3 3.12's `-J` text: cJSON 1.7.15's `cJSON_Print` layout (objects one key a line,
tab-indented, `"key":<TAB>value`; arrays on one line, `[{` ... `}, {` ... `}]`; an
empty object `{` newline `}`; integral numbers without `.0`, others in `%1.15g`, else
`%1.17g`; non-ASCII bytes as they are). `json.dumps(indent="\\t")` broke every array over
lines and wrote `{}`, `0.0`. A `Pairs` object is printed as an object that may repeat a
key, as 3.12's `start` repeats `sock_bufsize`, `sndbuf_actual`, `rcvbuf_actual` once per
data connection."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["Pairs", "dumps", "unformatted"]

INT_MAX = 2**31 - 1


class Pairs(list[tuple[str, Any]]):
    """An object's members in order, a key possibly more than once."""


def _number(d: float) -> str:
    if math.isnan(d) or math.isinf(d):
        return "null"
    # cJSON's valueint is the double saturated to int: %d where it is equal
    if d == int(d) and -INT_MAX - 1 <= d <= INT_MAX:
        return str(int(d))
    text = f"{d:.15g}"
    return text if float(text) == d else f"{d:.17g}"


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
            "\t": "\\t"}  # fmt: skip


def _string(s: str) -> str:
    out = [_ESCAPES.get(c) or (f"\\u{ord(c):04x}" if ord(c) < 32 else c) for c in s]
    return '"' + "".join(out) + '"'


def _value(v: Any, depth: int) -> str:
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int | float):
        return _number(float(v))
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, Pairs):
        return _object(list(v), depth)
    if isinstance(v, dict):
        return _object(list(v.items()), depth)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x, depth + 1) for x in v) + "]"
    raise TypeError(f"not JSON: {type(v).__name__}")


def _object(items: list[tuple[str, Any]], depth: int) -> str:
    inner = "\t" * (depth + 1)
    lines = [f"{inner}{_string(k)}:\t{_value(v, depth + 1)}" for k, v in items]
    return "{\n" + "".join(x + (",\n" if i < len(lines) - 1 else "\n")
                           for i, x in enumerate(lines)) + "\t" * depth + "}"  # fmt: skip


def _compact(v: Any) -> str:
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)  # exact (iperf3 3.12 sends its unsigned -1 as 18446744073709551615)
    if isinstance(v, float) and math.isfinite(v) and v == int(v) and abs(v) < 2**63:
        return str(int(v))  # iperf3's cJSON: valueint is 64-bit, printed with %lld
    if isinstance(v, dict):
        return "{" + ",".join(f"{_string(k)}:{_compact(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list | tuple):
        return "[" + ",".join(_compact(x) for x in v) + "]"
    return _value(v, 0)


def unformatted(doc: Any) -> str:
    """`doc` as iperf3 3.12's cJSON_PrintUnformatted writes it on the control connection:
    no spaces, integral numbers as integers (`0`, not `0.0`), others %1.15g else %1.17g,
    non-ASCII as it is (json.dumps wrote `\\u00e9` and `0.0`)."""
    return _compact(doc)


def dumps(doc: Any) -> str:
    """`doc` as cJSON_Print writes it (no final newline: iperf3 adds one)."""
    return _value(doc, 0)
