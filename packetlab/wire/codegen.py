"""The fast decoders, encoders and frame packers derived from the wire declarations,
compiled once and kept.

`packetlab.wire.sourcegen` derives them from the construct declarations in
`packetlab.wire.layouts`; this module compiles what it emits and keeps it on disk: the
code objects, and how to rebuild the namespace they run in (`struct` formats, the
declared rule predicates as code and constants, the chlist codec by name). A process
whose derived code is on disk (the endpoint, after its first start) loads it from there
and never imports construct (1.3 MiB of its resident memory, docs/performance.md). The
kept code is named by a hash of the files it is derived from (declarations, generator,
construct's version) and the interpreter, so a change to any of them derives afresh.
"""

from __future__ import annotations

import builtins
import hashlib
import marshal
import os
import re
import struct
import sys
from collections.abc import Callable
from importlib.machinery import PathFinder
from pathlib import Path
from types import CodeType, FunctionType
from typing import Any, cast

from packetlab.wire import chlist
from packetlab.wire.fastns import fast_path_ns


def code_cache_dir() -> Path:
    """Where compiled fast paths are kept: ``$XDG_CACHE_HOME/pktlab/wire-code`` (default
    ``~/.cache/pktlab/wire-code``), one file per Python version and generated source."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pktlab" / "wire-code"


def compile_cached(src: str, filename: str) -> CodeType:
    """compile(src), kept on disk like a .pyc: the generated sources are the same on every
    start, and compiling them was about half of importing packetlab.wire (every
    `pktlab` command pays it). The file is named by a hash of the source, the file name
    and the interpreter; one that cannot be read or written is simply compiled again."""
    tag = sys.implementation.cache_tag or "python"
    digest = hashlib.sha256(f"{tag}\0{filename}\0{src}".encode()).hexdigest()[:32]
    path = code_cache_dir() / f"{digest}.{tag}.code"
    try:
        code = marshal.loads(path.read_bytes())
        if isinstance(code, CodeType) and code.co_filename == filename:
            return code
    except (OSError, ValueError, EOFError, TypeError):
        pass
    code = compile(src, filename, "exec")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(marshal.dumps(code))
        os.replace(tmp, path)  # whole or not at all, whoever else writes it too
    except OSError:
        pass
    return code


# ------------------------------------------------------------ derived code kept on disk

# What the derived code is made from: a change to any of these derives it afresh.
_INPUTS = (
    "layouts.py", "messages.py", "nodes.py", "chlist.py", "constants.py", "errors.py",
    "sourcegen.py", "codegen.py", "fastns.py", "jsonform.py",
)  # fmt: skip
_CHLIST = {chlist.decode: "decode", chlist.encode: "encode"}
# key -> marshal of (code, recipe, source), as kept on disk: each entry is loaded when its
# code is first needed, so a process keeps objects only for the messages it uses (idle
# endpoint RSS, docs/performance.md).
_bundle: dict[str, bytes] | None = None


def _bundle_path() -> Path:
    h = hashlib.sha256(sys.implementation.cache_tag.encode())
    here = Path(__file__).parent
    for name in _INPUTS:
        h.update((here / name).read_bytes())
    spec = PathFinder.find_spec("construct")
    if spec is not None and spec.origin is not None:  # its version, without importing it
        version = Path(spec.origin).with_name("version.py")
        h.update(version.read_bytes() if version.exists() else spec.origin.encode())
    tag = sys.implementation.cache_tag or "python"
    return code_cache_dir() / f"derived-{h.hexdigest()[:32]}.{tag}.marshal"


def _kept() -> dict[str, bytes]:
    global _bundle
    if _bundle is None:
        try:
            loaded = marshal.loads(_bundle_path().read_bytes())
            _bundle = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError, EOFError, TypeError):
            _bundle = {}
    return _bundle


def _keep(key: str, entry: Any) -> None:
    kept = _kept()
    kept[key] = marshal.dumps(entry)
    try:
        path = _bundle_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(marshal.dumps(kept))
        os.replace(tmp, path)  # whole or not at all, whoever else writes it too
    except (OSError, ValueError):
        pass  # derived again next time


def _recipe(ns: dict[str, Any], base: dict[str, Any]) -> tuple[Any, ...]:
    """How to rebuild the names of `ns` that are not in `base`, without construct."""
    out: list[tuple[Any, ...]] = []
    for name, obj in ns.items():
        if name in base:  # rebuilt by the caller
            continue
        owner = getattr(obj, "__self__", None)
        if isinstance(obj, int):
            out.append((name, "int", obj))
        elif isinstance(owner, struct.Struct):
            out.append((name, "struct", owner.format, obj.__name__))
        elif obj in _CHLIST:
            out.append((name, "chlist", _CHLIST[obj]))
        elif isinstance(obj, FunctionType):  # a declared rule's predicate
            out.append((name, "function", obj.__code__, _constants(obj)))
        else:
            raise TypeError(f"cannot keep {name} = {obj!r} of the derived code")
    return tuple(out)


def _constants(fn: FunctionType) -> dict[str, Any]:
    """The global names a rule predicate reads, by value (ints, strings, bytes, compiled
    patterns as ("re", pattern, flags)). Raises TypeError for anything else."""
    if fn.__closure__ or fn.__defaults__ or fn.__kwdefaults__:
        raise TypeError(f"rule {fn.__qualname__}: no closures or defaults")
    out: dict[str, Any] = {}
    for name in fn.__code__.co_names:
        if name not in fn.__globals__:
            continue  # an attribute, or a builtin
        value = fn.__globals__[name]
        if isinstance(value, re.Pattern):
            out[name] = ("re", value.pattern, value.flags)
        elif isinstance(value, (bool, int, str, bytes)):
            out[name] = value
        else:
            raise TypeError(f"rule {fn.__qualname__} reads {name}: only constants can be kept")
    return out


def _namespace(base: dict[str, Any], recipe: tuple[Any, ...]) -> dict[str, Any]:
    ns = dict(base)
    for name, kind, *args in recipe:
        if kind == "int":
            ns[name] = args[0]
        elif kind == "struct":
            ns[name] = getattr(struct.Struct(args[0]), args[1])
        elif kind == "chlist":
            ns[name] = getattr(chlist, args[0])
        elif kind == "function":
            glob: dict[str, Any] = {"__builtins__": builtins}
            for k, v in args[1].items():
                glob[k] = re.compile(v[1], v[2]) if isinstance(v, tuple) else v
            ns[name] = FunctionType(args[0], glob)
        else:
            raise ValueError(f"unknown kind {kind!r} in kept derived code")
    return ns


def _load(
    key: str, base: dict[str, Any], derive_source: Callable[[], Any]
) -> tuple[dict[str, Any], str]:
    """The namespace after running `key`'s derived code, and its source: kept, or derived
    now (`derive_source` returns (source, namespace)) and kept."""
    blob = _kept().get(key)
    entry = None
    if blob is not None:
        try:
            entry = marshal.loads(blob)
            code, recipe, src = entry
            ns = _namespace(base, recipe)
        except (TypeError, ValueError, EOFError, AttributeError, struct.error):
            entry = None
    if entry is None:
        src, gen_ns = derive_source()
        recipe = _recipe(gen_ns, base)
        code = compile_cached(src, f"<packetlab.wire {key}>")
        _keep(key, (code, recipe, src))
        ns = _namespace(base, recipe)
    exec(code, ns)
    return ns, src


def kept_table(
    key: str, derive_table: Callable[[], Any], check: Callable[[Any], bool] = bool
) -> Any:
    """A table derived from the declarations (plain dicts, lists, tuples of str, int,
    bool), kept with the derived code: `packetlab.wire.jsonform`'s field tables, so that
    `pktlab decode` does not import construct to walk the layouts on every start. Derived
    now by `derive_table` and kept when absent, unreadable or not of the shape `check`
    accepts."""
    blob = _kept().get(key)
    if blob is not None:
        try:
            table = marshal.loads(blob)
            if check(table):
                return table
        except (ValueError, EOFError, TypeError, KeyError, AttributeError):
            pass
    table = derive_table()
    _keep(key, table)
    return table


def is_kept(cls: type) -> bool:
    """Whether the fast path of `cls` is kept (loads without deriving)."""
    return f"fast path for {cls.__name__}" in _kept()


def derive(cls: type) -> tuple[Callable[[bytes], Any], Callable[[Any], bytes], str]:
    """Return (decode_body, encode_frame, generated source) for a message class."""

    def source() -> Any:
        from packetlab.wire.sourcegen import fast_path_source

        return fast_path_source(cls)

    ns, src = _load(f"fast path for {cls.__name__}", fast_path_ns(cls), source)
    return ns["decode"], ns["encode"], src


def derive_packer(cls: type, *present: str) -> Callable[..., bytes]:
    """An unchecked frame packer for one form of `cls`: a function of the `present` fields
    (in declaration order) that returns the whole frame, header folded into the first
    `struct` call. Optional fields (If/Cond) not named are left out; rules are not
    checked (hot paths pass values they made; tests compare with `encode`). Its source
    is the function's `source` attribute. Raises TypeError for fields `cls` does not
    have, in another order, or a required one left out."""

    def source() -> Any:
        from packetlab.wire.sourcegen import packer_source

        return packer_source(cls, *present)

    ns, src = _load(f"packer for {cls.__name__}{present}", {}, source)
    pack: Any = ns["pack"]
    pack.source = src
    pack.__name__ = pack.__qualname__ = f"pack_{cls.__name__.lower()}"
    return cast(Callable[..., bytes], pack)
