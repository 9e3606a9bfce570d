"""Construct building blocks the message declarations use beyond construct's own.

Each node works in construct's ordinary parse/build (the readable, slow path) and is also
understood by `packetlab.wire.codegen`, which turns a declaration into fast straight-line
Python. Both paths evaluate the same expressions and call the same rule functions, so the
declaration stays the single description of the layout.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import construct as c
from construct import this

from packetlab.wire import chlist, errors

# `this._params.bodylen` is the body length, passed as a parse parameter.
BODYLEN = this._params.bodylen

# A 4- or 16-byte address whose size follows the message's `family` field.
Addr = c.Switch(this.family, {4: c.Bytes(4), 6: c.Bytes(16)}, default=c.Error)


class RuleError(errors.RuleError, c.ValidationError):
    """A declared rule failed in construct's parse/build; `rule` is its text."""

    def __init__(self, rule: str, path: str | None = None) -> None:
        c.ValidationError.__init__(self, rule, path=path)
        self.rule = rule


class Rule(c.Construct):
    """Checks a predicate over already-parsed fields; consumes no bytes.

    `pred` is a function whose parameter names are field names (and `bodylen`).
    `on_build` says whether the rule is also checked when encoding (it cannot be when
    it looks at `bodylen`); `on_parse=False` makes an encode-only rule, for a value the
    layout would otherwise drop silently (decoding cannot produce it, so checking it there
    would only cost time). When encoding, rules see the values as given.
    """

    def __init__(
        self, pred: Callable[..., bool], text: str, on_build: bool = True, on_parse: bool = True
    ) -> None:
        super().__init__()
        self.pred = pred
        self.text = text
        self.on_build = on_build
        self.on_parse = on_parse
        self.args = tuple(inspect.signature(pred).parameters)
        self.flagbuildnone = True

    def _call(self, context: Any) -> bool:
        vals = []
        for a in self.args:
            vals.append(context._params.bodylen if a == "bodylen" else context.get(a))
        return bool(self.pred(*vals))

    def _parse(self, stream: Any, context: Any, path: str) -> None:
        if self.on_parse and not self._call(context):
            raise RuleError(self.text, path=path)
        return None

    def _build(self, obj: Any, stream: Any, context: Any, path: str) -> None:
        if self.on_build and not self._call(context):
            raise RuleError(self.text, path=path)
        return None

    def _sizeof(self, context: Any, path: str) -> int:
        return 0


class Cond(c.Subconstruct):
    """`If` with separate conditions for parsing and building.

    Some forms are told apart by the body length when decoding (result, nstat) but by
    which fields are set when encoding; one `If` expression cannot say both.
    """

    def __init__(self, parse: Any, build: Any, subcon: Any) -> None:
        super().__init__(subcon)
        self.parse_cond = parse
        self.build_cond = build
        self.flagbuildnone = True

    def _parse(self, stream: Any, context: Any, path: str) -> Any:
        if c.evaluate(self.parse_cond, context):
            return self.subcon._parsereport(stream, context, path)
        return None

    def _build(self, obj: Any, stream: Any, context: Any, path: str) -> Any:
        if c.evaluate(self.build_cond, context):
            return self.subcon._build(obj, stream, context, path)
        # Not written, but keep the given value in the context: a later Rule must judge
        # what the caller asked for (the fast encoder does), not None.
        return obj


class ChannelList(c.Construct):
    """chlist (§5.2), with the codec of `packetlab.wire.chlist`."""

    fast_decode = staticmethod(chlist.decode)
    fast_encode = staticmethod(chlist.encode)

    def _parse(self, stream: Any, context: Any, path: str) -> list[bytes]:
        start = stream.tell()
        rest = stream.read()
        value, used = self.fast_decode(rest, 0)
        stream.seek(start + used)
        return value

    def _build(self, obj: Any, stream: Any, context: Any, path: str) -> list[bytes]:
        stream.write(self.fast_encode(obj))
        return list(obj)

    def _sizeof(self, context: Any, path: str) -> int:
        raise c.SizeofError(path=path)
