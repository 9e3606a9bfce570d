"""The names every derived decoder/encoder uses besides its own (`fast_path_ns`).

Both the generator (`sourcegen`, deriving the code from the declarations) and `codegen`
(loading kept code without them) build a fast path's namespace from here.
"""

from __future__ import annotations

import struct
from typing import Any

from packetlab.wire.constants import BODY_MAX
from packetlab.wire.errors import EncodeError, MalformedMessage, RuleError

__all__ = ["fast_path_ns"]


def _as_bytes(value: Any) -> bytes:
    """A byte-string field's value as bytes. `bytes(value)` would turn an int into that
    many zero bytes and a list of ints into bytes; a field value must be bytes-like."""
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"expected bytes, not {type(value).__name__}")


def fast_path_ns(cls: type) -> dict[str, Any]:
    """The names every derived decoder/encoder of `cls` uses besides its own."""
    return {
        "Malformed": MalformedMessage,
        "RuleError": RuleError,
        "EncodeError": EncodeError,
        "struct_error": struct.error,
        "Cls": cls,
        "TYPE": int(cls.TYPE),  # type: ignore[attr-defined]
        "BODY_MAX": BODY_MAX,
        "hdr": struct.Struct(">I").pack,
        "as_bytes": _as_bytes,
    }
