"""Messages as JSON-able dicts and back (sans-IO), for the `pktlab decode/encode` dissector.

The form of a message: `"type"` is its name as in PROTOCOL.md §1.2 (`Message.NAME`); every
other key is a field name of the spec (= the dataclass field). Addresses (`laddr`,
`raddr`) are text (IPv4 dotted, IPv6 compressed), ports and other numbers are integers,
every other byte string is lowercase hex, `chlist` is a list of hex strings. Fields that
are absent on the wire (`None`) are left out.

    >>> message_to_json(Nclose(sktid=3))
    {'type': 'nclose', 'sktid': 3}

A frame whose type code is not a message has the form
`{"type": "unknown", "code": N, "body": hex}`.
"""

from __future__ import annotations

import ipaddress
import json
import string
from collections.abc import Mapping
from dataclasses import MISSING, fields
from typing import Any

from packetlab.wire.codec import encode
from packetlab.wire.codegen import kept_table
from packetlab.wire.constants import HEADER_LEN
from packetlab.wire.errors import WireError
from packetlab.wire.messages import ALL_MESSAGES, BY_NAME, Message

__all__ = [
    "JsonFormError",
    "frame_from_json",
    "message_from_json",
    "message_to_json",
    "shorten",
    "unknown_to_json",
]

UNKNOWN = "unknown"
ADDRESS_FIELDS = frozenset({"laddr", "raddr"})


class JsonFormError(WireError):
    """A JSON object that is not the form of a message; `key` names the culprit."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"{shorten(key)}: {problem}")


# ------------------------------------------------------------------ field kinds, derived


def _int_bits(body: Any) -> dict[str, int]:
    """Width in bits of every integer field of a construct body declaration."""
    import construct as c

    from packetlab.wire.nodes import Cond

    out: dict[str, int] = {}
    for sub in body.subcons:
        if not (isinstance(sub, c.Renamed) and sub.name):
            continue
        node = sub.subcon
        while isinstance(node, (Cond, c.IfThenElse, c.Rebuild)):
            node = node.thensubcon if isinstance(node, c.IfThenElse) else node.subcon
        if isinstance(node, c.FormatField):
            out[sub.name] = 8 * node.length
    return out


def _kind(name: str, annotation: str) -> str:
    if annotation.startswith("list"):
        return "chlist"
    if "bytes" in annotation:
        return "addr" if name in ADDRESS_FIELDS else "hex"
    return "int"


def _wire_order(cls: type[Message]) -> list[Any]:
    """The dataclass fields in the order the body declaration puts them on the wire."""
    import construct as c

    declared = [s.name for s in cls.BODY.subcons if isinstance(s, c.Renamed) and s.name]
    dfields = fields(cls)  # type: ignore[arg-type]
    return sorted(dfields, key=lambda f: declared.index(f.name))


def _derive_tables() -> dict[str, Any]:
    """name -> [(field, kind, required)] in wire order, and name -> {field: bits}, walked
    from the construct declarations (`cls.BODY`)."""
    fields_: dict[str, list[tuple[str, str, bool]]] = {}
    bits: dict[str, dict[str, int]] = {}
    for cls in ALL_MESSAGES:
        fields_[cls.NAME] = [
            (
                f.name,
                _kind(f.name, str(f.type)),
                f.default is MISSING and f.default_factory is MISSING,
            )
            for f in _wire_order(cls)
        ]
        bits[cls.NAME] = _int_bits(cls.BODY)
    return {"fields": fields_, "bits": bits}


# Kept with the wire's derived code (`codegen.kept_table`): a start that finds them there
# imports neither construct nor the layouts (`pktlab decode`, docs/performance.md).
def _tables_ok(tables: Any) -> bool:
    """A kept value of `_derive_tables`'s shape, for every message."""
    return (
        isinstance(tables, dict)
        and tables.keys() == {"fields", "bits"}
        and all(isinstance(tables[k], dict) and tables[k].keys() == BY_NAME.keys() for k in tables)
        and all(
            isinstance(spec, list) and all(isinstance(f, tuple) and len(f) == 3 for f in spec)
            for spec in tables["fields"].values()
        )
    )


_TABLES = kept_table("jsonform tables", _derive_tables, _tables_ok)
_FIELDS: dict[str, list[tuple[str, str, bool]]] = _TABLES["fields"]
_BITS: dict[str, dict[str, int]] = _TABLES["bits"]


# -------------------------------------------------------------------------- to JSON


def _addr_text(value: bytes) -> str:
    if len(value) == 4:
        return str(ipaddress.IPv4Address(bytes(value)))
    if len(value) == 16:
        return str(ipaddress.IPv6Address(bytes(value)))
    return bytes(value).hex()  # not an address size: cannot come from the decoder


def message_to_json(msg: Message) -> dict[str, Any]:
    """The JSON form of `msg`: `type` first, then its fields in wire order."""
    out: dict[str, Any] = {"type": msg.NAME}
    for name, kind, _ in _FIELDS[msg.NAME]:
        value = getattr(msg, name)
        if value is None:
            continue
        if kind == "int":
            out[name] = int(value)
        elif kind == "addr":
            out[name] = _addr_text(value)
        elif kind == "chlist":
            out[name] = [bytes(ch).hex() for ch in value]
        else:
            out[name] = bytes(value).hex()
    return out


def unknown_to_json(code: int, body: bytes) -> dict[str, Any]:
    """The JSON form of a frame whose type code is not a PacketLab message."""
    return {"type": UNKNOWN, "code": code, "body": bytes(body).hex()}


# ------------------------------------------------------------------------ from JSON


def _got(value: Any) -> str:
    """A JSON value as its writer wrote it, for an error (it said Python's type names:
    `got NoneType`, `got str`, `got list`)."""
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return shorten(json.dumps(value))


def shorten(text: str, most: int = 40) -> str:
    """`text` cut to its first characters: an error line quoted a 64 MiB value whole."""
    return text if len(text) <= most else f"{text[: most - 8]}... ({len(text)} characters)"


def _bad_hex(text: str) -> str:
    """What is wrong with hex text `bytes.fromhex` refused, and where."""
    for i, c in enumerate(text):
        if c not in string.hexdigits and not c.isspace():
            return f"bad hex {shorten(repr(text))}: {c!r} at character {i}"
    return f"bad hex {shorten(repr(text))}: an odd number of digits or a space inside a byte"


def _hex(key: str, value: Any) -> bytes:
    if not isinstance(value, str):
        raise JsonFormError(key, f"expected a hex string, got {_got(value)}")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise JsonFormError(key, _bad_hex(value)) from None


def _int(key: str, value: Any, bits: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise JsonFormError(key, f"expected an integer, got {_got(value)}")
    if bits is not None and not 0 <= value < 1 << bits:
        raise JsonFormError(key, f"{value} does not fit in an unsigned {bits}-bit field")
    return value


def _addr(key: str, value: Any, family: Any) -> bytes:
    if not isinstance(value, str):
        raise JsonFormError(key, f"expected an address string, got {_got(value)}")
    if family not in (4, 6) or isinstance(family, bool):
        raise JsonFormError(key, f"an address needs family 4 or 6, not {shorten(repr(family))}")
    try:
        if family == 4:
            return ipaddress.IPv4Address(value).packed
        return ipaddress.IPv6Address(value).packed
    except ValueError:
        raise JsonFormError(
            key, f"{shorten(repr(value))} is not an IPv{family} address (family {family})"
        ) from None


def message_from_json(obj: Mapping[str, Any]) -> Message:
    """The message whose JSON form is `obj`. Raises JsonFormError naming the bad key.

    Integers are range-checked against their wire width here; the rules between fields
    (lengths, forms) are the encoder's, which raises EncodeError.
    """
    if not isinstance(obj, Mapping):
        raise JsonFormError("type", f"expected a JSON object, got {_got(obj)}")
    name = obj.get("type")
    if name is None:
        raise JsonFormError("type", "missing")
    cls = BY_NAME.get(name) if isinstance(name, str) else None
    if cls is None:
        raise JsonFormError("type", f"unknown message type name {shorten(repr(name))}")
    spec = _FIELDS[cls.NAME]
    extra = set(obj) - {"type"} - {f for f, _, _ in spec}
    if extra:
        raise JsonFormError(sorted(extra)[0], f"not a field of {cls.NAME}")
    bits = _BITS[cls.NAME]
    kwargs: dict[str, Any] = {}
    for fname, kind, required in spec:
        if fname not in obj or obj[fname] is None:
            if required:
                raise JsonFormError(fname, f"missing (required by {cls.NAME})")
            continue
        value = obj[fname]
        if kind == "int":
            kwargs[fname] = _int(fname, value, bits.get(fname))
        elif kind == "addr":
            kwargs[fname] = _addr(fname, value, obj.get("family"))
        elif kind == "chlist":
            if not isinstance(value, list):
                raise JsonFormError(fname, f"expected an array of hex strings, got {_got(value)}")
            kwargs[fname] = [_hex(f"{fname}[{i}]", ch) for i, ch in enumerate(value)]
        else:
            kwargs[fname] = _hex(fname, value)
    return cls(**kwargs)


def frame_from_json(obj: Mapping[str, Any]) -> bytes:
    """The whole frame for a JSON form: a message, or an `unknown` frame written as is.

    An `unknown` form may carry any code 0..255 and any body, so it can also craft
    frames that are malformed on purpose. Raises JsonFormError or EncodeError.
    """
    if isinstance(obj, Mapping) and obj.get("type") == UNKNOWN:
        extra = set(obj) - {"type", "code", "body"}
        if extra:
            raise JsonFormError(sorted(extra)[0], "not a field of unknown")
        if "code" not in obj:
            raise JsonFormError("code", "missing (required by unknown)")
        code = _int("code", obj["code"], 8)
        body = _hex("body", obj.get("body", ""))
        if len(body) > 0xFFFFFF:
            raise JsonFormError("body", f"{len(body)} bytes > 0xFFFFFF")
        return (code << 24 | len(body)).to_bytes(HEADER_LEN, "big") + body
    return encode(message_from_json(obj))
