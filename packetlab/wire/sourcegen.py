"""Derive fast decoders, encoders and frame packers from the construct declarations.

construct's interpreted parse costs ~36 µs a message, its own compiler ~8 µs and it
accepts truncated input (STYLE.md). The hot messages need ~1 µs. Rather than writing each
layout a second time by hand, this module walks the declaration in
`packetlab.wire.layouts` and emits straight-line Python (`struct` runs for fixed fields,
slices for byte strings, the declared conditions and rules inlined) and the namespace it
runs in. `packetlab.wire.codegen` compiles and caches the result (so that a process
whose derived code is cached never imports this module or construct). Property tests
check it against construct's own parse/build of the same declaration.

Supported nodes: named FormatField, Bytes (fixed or expression length), GreedyBytes,
Prefixed(FormatField, GreedyBytes), Switch on an expression with fixed Bytes cases,
If/Cond around one of those, Rebuild(FormatField, expr), ChannelList, Rule, Terminated.
Anything else is refused, so a declaration cannot silently drift from its fast path.
"""

from __future__ import annotations

import re
import struct
from dataclasses import fields as dc_fields
from typing import Any

import construct as c

from packetlab.wire import chlist
from packetlab.wire.fastns import fast_path_ns
from packetlab.wire.nodes import ChannelList, Cond, Rule

_FMT = {"B": 1, "H": 2, "I": 4, "L": 4, "Q": 8}


def expr_source(expr: Any) -> str:
    """Python source for a construct expression over the generated locals."""
    if isinstance(expr, (int, str)):
        return repr(expr)
    src = repr(expr)
    src = src.replace("this['_params']['bodylen']", "n")
    src = re.sub(r"this\['(\w+)'\]", r"v_\1", src)
    return src.replace("len_(", "len(")


def _bytes_expr(v: str) -> str:
    """Source that yields `v` as bytes; the common case (already bytes) costs one test."""
    return f"({v} if {v}.__class__ is bytes else as_bytes({v}))"


def _is_cond(node: Any) -> bool:
    return isinstance(node, Cond) or (isinstance(node, c.IfThenElse) and node.elsesubcon is c.Pass)


def _cond_parts(node: Any, parsing: bool) -> tuple[Any, Any]:
    """(condition, subcon) of an If or a Cond, for parsing or for building."""
    if isinstance(node, Cond):
        return (node.parse_cond if parsing else node.build_cond), node.subcon
    return node.condfunc, node.thensubcon


class _Gen:
    def __init__(self, cls: type, struct_: Any) -> None:
        self.cls = cls
        self.struct = struct_
        self.ns: dict[str, Any] = fast_path_ns(cls)
        self.counter = 0
        self.dfields = [f.name for f in dc_fields(cls)]

    def name(self, prefix: str, obj: Any) -> str:
        self.counter += 1
        key = f"{prefix}{self.counter}"
        self.ns[key] = obj
        return key

    # ----------------------------------------------------------------------- decode

    def decode_source(self) -> str:
        out = ["def decode(body):", "    n = len(body)", "    off = 0"]
        run: list[tuple[str, str]] = []  # pending fixed run: (field, struct code)

        def flush() -> None:
            if not run:
                return
            fmt = ">" + "".join(code for _, code in run)
            size = struct.calcsize(fmt)
            unpack = self.name("u", struct.Struct(fmt).unpack_from)
            names = ", ".join(f"v_{f}" for f, _ in run)
            first = run[0][0]
            out.append(f"    if n < off + {size}:")
            out.append(f"        raise Malformed(TYPE, off, 'truncated at field {first}')")
            out.append(f"    {names}, = {unpack}(body, off)")
            out.append(f"    off += {size}")
            run.clear()

        for sub in self.struct.subcons:
            if isinstance(sub, c.Renamed) and sub.name:
                fname, node = sub.name, sub.subcon
                code = self.fixed_code(node)
                if code is not None:
                    run.append((fname, code))
                    continue
                flush()
                out.extend(self.decode_node(fname, node, "    "))
            elif isinstance(sub, Rule):
                if not sub.on_parse:
                    continue
                flush()
                fn = self.name("rule", sub.pred)
                args = ", ".join("n" if a == "bodylen" else f"v_{a}" for a in sub.args)
                out.append(f"    if not {fn}({args}):")
                out.append(f"        raise Malformed(TYPE, off, {sub.text!r})")
            elif isinstance(sub, c.Terminated.__class__):
                flush()
                out.append("    if off != n:")
                out.append("        raise Malformed(TYPE, off, f'{n - off} trailing bytes')")
            else:
                raise TypeError(f"{self.cls.__name__}: unsupported node {sub!r}")
        flush()
        args = ", ".join(f"v_{f}" for f in self.dfields)
        out.append(f"    return Cls({args})")
        return "\n".join(out)

    @staticmethod
    def fixed_code(node: Any) -> str | None:
        if isinstance(node, c.FormatField) and node.fmtstr[1:] in _FMT:
            return str(node.fmtstr[1:])
        if isinstance(node, c.Bytes) and isinstance(node.length, int):
            return f"{node.length}s"
        if isinstance(node, c.Rebuild):
            return _Gen.fixed_code(node.subcon)
        return None

    def decode_node(self, fname: str, node: Any, ind: str) -> list[str]:
        v = f"v_{fname}"
        if _is_cond(node):
            cond, sub = _cond_parts(node, parsing=True)
            inner = self.decode_node(fname, sub, ind + "    ")
            return [f"{ind}if {expr_source(cond)}:", *inner, f"{ind}else:", f"{ind}    {v} = None"]
        code = self.fixed_code(node)
        if code is not None:
            size = struct.calcsize(">" + code)
            unpack = self.name("u", struct.Struct(">" + code).unpack_from)
            return [
                f"{ind}if n < off + {size}:",
                f"{ind}    raise Malformed(TYPE, off, 'truncated at field {fname}')",
                f"{ind}{v}, = {unpack}(body, off)",
                f"{ind}off += {size}",
            ]
        if isinstance(node, c.Bytes):  # expression length
            return [
                f"{ind}ln = {expr_source(node.length)}",
                f"{ind}if n < off + ln:",
                f"{ind}    raise Malformed(TYPE, off, f'{fname}: needs {{ln}} bytes')",
                f"{ind}{v} = body[off:off + ln]",
                f"{ind}off += ln",
            ]
        if isinstance(node, c.GreedyBytes.__class__):
            return [f"{ind}{v} = body[off:]", f"{ind}off = n"]
        if isinstance(node, c.Prefixed) and isinstance(node.subcon, c.GreedyBytes.__class__):
            lcode = self.fixed_code(node.lengthfield)
            assert lcode is not None, "Prefixed needs a fixed-size length field"
            size = struct.calcsize(">" + lcode)
            unpack = self.name("u", struct.Struct(">" + lcode).unpack_from)
            return [
                f"{ind}if n < off + {size}:",
                f"{ind}    raise Malformed(TYPE, off, 'truncated at length of {fname}')",
                f"{ind}ln, = {unpack}(body, off)",
                f"{ind}off += {size}",
                f"{ind}if n < off + ln:",
                f"{ind}    raise Malformed(TYPE, off, f'{fname}: needs {{ln}} bytes')",
                f"{ind}{v} = body[off:off + ln]",
                f"{ind}off += ln",
            ]
        if isinstance(node, c.Switch):
            lines = [f"{ind}k = {expr_source(node.keyfunc)}"]
            kw = "if"
            for key, case in node.cases.items():
                if not (isinstance(case, c.Bytes) and isinstance(case.length, int)):
                    raise TypeError(f"{self.cls.__name__}.{fname}: Switch cases must be Bytes(n)")
                lines += [f"{ind}{kw} k == {key!r}:", f"{ind}    ln = {case.length}"]
                kw = "elif"
            lines += [
                f"{ind}else:",
                f"{ind}    raise Malformed(TYPE, off, f'{fname}: no layout for {{k!r}}')",
                f"{ind}if n < off + ln:",
                f"{ind}    raise Malformed(TYPE, off, 'truncated at field {fname}')",
                f"{ind}{v} = body[off:off + ln]",
                f"{ind}off += ln",
            ]
            return lines
        if isinstance(node, ChannelList):
            fn = self.name("chl", chlist.decode)
            return [
                f"{ind}try:",
                f"{ind}    {v}, off = {fn}(body, off)",
                f"{ind}except RuleError as e:",
                f"{ind}    raise Malformed(TYPE, off, e.rule) from None",
            ]
        raise TypeError(f"{self.cls.__name__}.{fname}: unsupported node {node!r}")

    # ----------------------------------------------------------------------- encode

    def encode_source(self) -> str:
        out = ["def encode(m):"]
        out += [f"    v_{f} = m.{f}" for f in self.dfields]
        out.append("    try:")
        body: list[str] = []
        parts: list[str] = []  # expressions concatenated for the body, in order
        cond_used = False
        run: list[tuple[str, str]] = []
        ind = "        "
        for sub in self.struct.subcons:  # Rebuild fields are computed, not stored
            if isinstance(sub, c.Renamed) and isinstance(sub.subcon, c.Rebuild):
                body.append(f"{ind}v_{sub.name} = {expr_source(sub.subcon.func)}")

        def flush() -> None:
            if not run:
                return
            fmt = ">" + "".join(code for _, code in run)
            pack = self.name("p", struct.Struct(fmt).pack)
            for f, code in run:
                if code.endswith("s"):
                    body.append(f"{ind}if len(v_{f}) != {code[:-1]}:")
                    body.append(
                        f"{ind}    raise EncodeError('{f} must be {code[:-1]} bytes, "
                        f"not ' + str(len(v_{f})))"
                    )
            args = ", ".join(
                _bytes_expr(f"v_{f}") if code.endswith("s") else f"v_{f}" for f, code in run
            )
            parts.append(f"{pack}({args})")
            run.clear()

        for sub in self.struct.subcons:
            if isinstance(sub, c.Renamed) and sub.name:
                fname, node = sub.name, sub.subcon
                code = self.fixed_code(node)
                if code is not None:
                    run.append((fname, code))
                    continue
                flush()
                if _is_cond(node):
                    cond, csub = _cond_parts(node, parsing=False)
                    cond_used = True
                    self.emit_parts(parts, body, ind)
                    body.append(f"{ind}if {expr_source(cond)}:")
                    inner: list[str] = []
                    self.encode_node(fname, csub, inner, body, ind + "    ")
                    for p in inner:
                        body.append(f"{ind}    parts.append({p})")
                else:
                    if cond_used:
                        tmp: list[str] = []
                        self.encode_node(fname, node, tmp, body, ind)
                        for p in tmp:
                            body.append(f"{ind}parts.append({p})")
                    else:
                        self.encode_node(fname, node, parts, body, ind)
            elif isinstance(sub, Rule):
                if sub.on_build:
                    fn = self.name("rule", sub.pred)
                    args = ", ".join(f"v_{a}" for a in sub.args)
                    body.insert(0, f"{ind}if not {fn}({args}):")
                    body.insert(1, f"{ind}    raise EncodeError({sub.text!r})")
            elif isinstance(sub, c.Terminated.__class__):
                pass
            else:
                raise TypeError(f"{self.cls.__name__}: unsupported node {sub!r}")
        flush()
        if cond_used:
            self.emit_parts(parts, body, ind)
            body.append(f"{ind}b = b''.join(parts)")
            body.insert(0, f"{ind}parts = []")
        else:
            body.append(f"{ind}b = {' + '.join(parts) if parts else repr(b'')}")
        out += body
        out += [
            "    except (struct_error, TypeError, OverflowError) as e:",
            "        raise EncodeError(f'{Cls.__name__}: {e}') from None",
            "    except RuleError as e:",
            "        raise EncodeError(f'{Cls.__name__}: {e.rule}') from None",
            "    except EncodeError as e:  # a declared rule or size: name the message",
            "        raise EncodeError(f'{Cls.__name__}: {e}') from None",
            "    ln = len(b)",
            "    if ln > BODY_MAX:",
            "        raise EncodeError(f'{Cls.__name__}: body of {ln} bytes > 0xFFFFFF')",
            "    return hdr(TYPE << 24 | ln) + b",
        ]
        return "\n".join(out)

    @staticmethod
    def emit_parts(parts: list[str], body: list[str], ind: str) -> None:
        for p in parts:
            body.append(f"{ind}parts.append({p})")
        parts.clear()

    def encode_node(
        self, fname: str, node: Any, parts: list[str], body: list[str], ind: str
    ) -> None:
        v = f"v_{fname}"
        code = self.fixed_code(node)
        if code is not None:
            pack = self.name("p", struct.Struct(">" + code).pack)
            if code.endswith("s"):
                body.append(f"{ind}if len({v}) != {code[:-1]}:")
                body.append(f"{ind}    raise EncodeError('{fname} must be {code[:-1]} bytes')")
                parts.append(f"{pack}({_bytes_expr(v)})")
            else:
                parts.append(f"{pack}({v})")
        elif isinstance(node, c.Bytes):
            ln = expr_source(node.length)
            body.append(f"{ind}if len({v}) != {ln}:")
            body.append(f"{ind}    raise EncodeError('{fname} length does not match')")
            parts.append(_bytes_expr(v))
        elif isinstance(node, c.GreedyBytes.__class__):
            parts.append(_bytes_expr(v))
        elif isinstance(node, c.Prefixed):
            lcode = self.fixed_code(node.lengthfield)
            pack = self.name("p", struct.Struct(f">{lcode}").pack)
            parts.append(f"{pack}(len({v})) + {_bytes_expr(v)}")
        elif isinstance(node, c.Switch):
            body.append(f"{ind}k = {expr_source(node.keyfunc)}")
            kw = "if"
            for key, case in node.cases.items():
                body.append(f"{ind}{kw} k == {key!r}:")
                body.append(f"{ind}    ln = {case.length}")
                kw = "elif"
            body.append(f"{ind}else:")
            body.append(f"{ind}    raise EncodeError(f'{fname}: no layout for {{k!r}}')")
            body.append(f"{ind}if len({v}) != ln:")
            body.append(
                f"{ind}    raise EncodeError(f'{fname} must be {{ln}} bytes, not {{len({v})}}')"
            )
            parts.append(_bytes_expr(v))
        elif isinstance(node, ChannelList):
            fn = self.name("chl", chlist.encode)
            parts.append(f"{fn}({v})")
        else:
            raise TypeError(f"{self.cls.__name__}.{fname}: unsupported node {node!r}")


def packer_source(cls: type, *present: str) -> tuple[str, dict[str, Any]]:
    """(source, namespace) of `codegen.derive_packer(cls, *present)`."""
    names = [sub.name for sub in cls.BODY.subcons if isinstance(sub, c.Renamed) and sub.name]  # type: ignore[attr-defined]
    unknown = set(present) - set(names)
    if unknown:
        raise TypeError(f"{cls.__name__} has no field {sorted(unknown)}")
    if [n for n in names if n in present] != list(present):
        raise TypeError(f"{cls.__name__}: give the fields in declaration order ({names})")
    ns: dict[str, Any] = {}
    parts: list[str] = []  # expressions joined with + after the header
    lengths: list[str] = []  # variable lengths
    fixed = 0
    run: list[tuple[str, str]] = [("HDR", "I")]  # HDR: replaced by the header below

    def flush() -> None:
        nonlocal fixed
        if not run:
            return
        fmt = ">" + "".join(code for _, code in run)
        key = f"p{len(ns)}"
        ns[key] = struct.Struct(fmt).pack
        parts.append(f"{key}({', '.join(v for v, _ in run)})")
        fixed += struct.calcsize(fmt)
        run.clear()

    for sub in cls.BODY.subcons:  # type: ignore[attr-defined]
        if not (isinstance(sub, c.Renamed) and sub.name):
            continue  # rules and Terminated: nothing to write
        fname, node = sub.name, sub.subcon
        if _is_cond(node):
            if fname not in present:
                continue
            node = _cond_parts(node, parsing=False)[1]
        elif fname not in present:
            raise TypeError(f"{cls.__name__}.{fname} is not optional")
        code = _Gen.fixed_code(node)
        if code is not None and not code.endswith("s"):
            run.append((fname, code))
            continue
        flush()  # a byte string: appended as it is
        if isinstance(node, c.Prefixed):
            lcode = _Gen.fixed_code(node.lengthfield)
            key = f"p{len(ns)}"
            ns[key] = struct.Struct(f">{lcode}").pack
            parts.append(f"{key}(len({fname}))")
            fixed += struct.calcsize(f">{lcode}")
        elif not isinstance(node, (c.Bytes, c.Switch, c.GreedyBytes.__class__)):
            raise TypeError(f"{cls.__name__}.{fname}: unsupported node {node!r}")
        parts.append(fname)
        lengths.append(f"len({fname})")
    flush()
    ns["T"] = mtype = int(cls.TYPE) << 24  # type: ignore[attr-defined]
    # A constant-size form has its header computed now; otherwise type | body length.
    hdr = f"T | ({' + '.join([str(fixed - 4), *lengths])})" if lengths else str(mtype | fixed - 4)
    parts[0] = parts[0].replace("HDR", hdr, 1)
    src = f"def pack({', '.join(present)}):\n    return {' + '.join(parts)}\n"
    return src, ns


def fast_path_source(cls: type) -> tuple[str, dict[str, Any]]:
    """(source, namespace) of the decoder and encoder `codegen.derive(cls)` returns."""
    gen = _Gen(cls, cls.BODY)  # type: ignore[attr-defined]
    return gen.decode_source() + "\n\n" + gen.encode_source() + "\n", gen.ns
