"""Encode and decode messages: the fast path derived from the declarations, and
construct's own interpretation of the same declarations as the reference (the only part
that imports construct, when called)."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import fields as dc_fields
from typing import Any

from packetlab.wire.codegen import derive, is_kept
from packetlab.wire.constants import BODY_MAX, HEADER_LEN
from packetlab.wire.errors import EncodeError, MalformedMessage, RuleError
from packetlab.wire.messages import ALL_MESSAGES, BY_TYPE, Message


class UnknownType(Exception):
    """A complete frame whose type code is not a PacketLab message (§1.1)."""

    def __init__(self, msgtype: int) -> None:
        super().__init__(f"unknown message type 0x{msgtype:02x}")
        self.msgtype = msgtype


# The fast paths, derived per message type when first used (a process keeps the code of
# the messages it handles only: idle endpoint RSS, docs/performance.md). `decoder` and
# `_derive` fill these; hot paths read them directly.
_DECODERS: dict[int, Callable[[bytes], Message]] = {}
_ENCODERS: dict[type, Callable[[Any], bytes]] = {}
_MESSAGES = frozenset(ALL_MESSAGES)


def _derive(cls: type[Message]) -> tuple[Callable[[bytes], Message], Callable[[Any], bytes]]:
    if not is_kept(cls):
        # Not kept yet (the first run after a change to the declarations or generator):
        # derive and keep every message now, so that no later first use of a message in a
        # long-running process has to derive (construct: ~0.1 s and 1.3 MiB).
        for other in ALL_MESSAGES:
            if not is_kept(other):
                derive(other)
    dec, enc, _ = derive(cls)
    _DECODERS[int(cls.TYPE)] = dec
    _ENCODERS[cls] = enc
    return dec, enc


def decoder(msgtype: int) -> Callable[[bytes], Message] | None:
    """The body decoder of `msgtype`, None for a type that is not a PacketLab message."""
    dec = _DECODERS.get(msgtype)
    if dec is None:
        cls = BY_TYPE.get(msgtype)
        if cls is not None:
            dec = _derive(cls)[0]
    return dec


class _Sources(dict[str, str]):
    """`SOURCES[name]`: the generated source of a message's fast path, made when asked."""

    def __missing__(self, name: str) -> str:
        cls = _BY_CLASS_NAME.get(name)
        if cls is None:
            raise KeyError(name)
        self[name] = src = derive(cls)[2]
        return src


_BY_CLASS_NAME = {cls.__name__: cls for cls in ALL_MESSAGES}
SOURCES: dict[str, str] = _Sources()

_HDR = struct.Struct(">I")


def encode(msg: Message) -> bytes:
    """The whole frame (header and body) for `msg`. Raises EncodeError."""
    try:
        enc = _ENCODERS[type(msg)]
    except KeyError:
        if type(msg) not in _MESSAGES:
            raise EncodeError(f"not a PacketLab message: {msg!r}") from None
        enc = _derive(type(msg))[1]
    return enc(msg)


def decode_body(msgtype: int, body: bytes) -> Message:
    """Decode one body. Raises UnknownType or MalformedMessage."""
    dec = _DECODERS.get(msgtype) or decoder(msgtype)
    if dec is None:
        raise UnknownType(msgtype)
    return dec(body)


def decode_frame(frame: bytes) -> Message:
    """Decode exactly one whole frame (header included)."""
    if len(frame) < HEADER_LEN:
        raise MalformedMessage(frame[0] if frame else 0, 0, "frame shorter than its header")
    (word,) = _HDR.unpack_from(frame, 0)
    if len(frame) != HEADER_LEN + (word & BODY_MAX):
        raise MalformedMessage(word >> 24, 0, "frame length does not match its header")
    return decode_body(word >> 24, bytes(frame[HEADER_LEN:]))


# --------------------------------------------------------- the construct reference path


def _fieldnames(cls: type) -> list[str]:
    return [f.name for f in dc_fields(cls)]


def construct_decode_body(msgtype: int, body: bytes) -> Message:
    """Decode with construct's interpreter (slow; for tests and comparison)."""
    import construct as c  # only here: the fast path runs without it

    cls = BY_TYPE.get(msgtype)
    if cls is None:
        raise UnknownType(msgtype)
    try:
        ctr = cls.BODY.parse(body, bodylen=len(body))
    except RuleError as e:
        raise MalformedMessage(msgtype, -1, e.rule) from None
    except c.ConstructError as e:
        raise MalformedMessage(msgtype, -1, str(e)) from None
    return cls(*(ctr[name] for name in _fieldnames(cls)))


def construct_encode(msg: Message) -> bytes:
    """Encode with construct's interpreter (slow; for tests and comparison)."""
    import construct as c

    cls = type(msg)
    values = {name: getattr(msg, name) for name in _fieldnames(cls)}
    try:
        body = cls.BODY.build(values)
    except RuleError as e:
        raise EncodeError(f"{cls.__name__}: {e.rule}") from None
    except (c.ConstructError, TypeError, struct.error) as e:
        raise EncodeError(f"{cls.__name__}: {e}") from None
    if len(body) > BODY_MAX:
        raise EncodeError(f"{cls.__name__}: body of {len(body)} bytes > 0xFFFFFF")
    return _HDR.pack(int(cls.TYPE) << 24 | len(body)) + body
