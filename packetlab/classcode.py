"""The methods `dataclasses` and `attrs` generate for a class, compiled once and kept.

Both make a class's ``__init__``, ``__repr__``, ``__eq__``... from source text when the
class is created, and compile that text on every start: ~0.06 ms a function on this
interpreter, ~37 ms of the ~250 ms of CPU of `pktlab run traceroute` (~110 dataclasses,
Twisted's attrs classes; docs/performance.md, "Session 18: start-up"). The text is the
same on every start, so its code object is kept as a .pyc is: in one table keyed by a digest
of what was compiled (text, file name, mode, flags), ``$XDG_CACHE_HOME/pktlab/class-code``,
compiled only when missing. `keep_generated_code` routes the two modules' own ``exec`` /
``compile`` through it; what they run is the same code object they would have compiled.
"""

from __future__ import annotations
import __future__

import builtins
import hashlib
import marshal
import os
import re
import sys
from importlib.util import MAGIC_NUMBER
from types import CodeType
from typing import Any

__all__ = ["cached_compile", "keep_generated_code", "table_path"]

#: What `compile` inherits from its caller when not told `dont_inherit`: its __future__s.
_FUTURE_FLAGS = 0
for _name in __future__.all_feature_names:
    _FUTURE_FLAGS |= getattr(__future__, _name).compiler_flag
LIMIT = 4096  # entries kept; past it the table starts afresh with a writer's new ones

_kept: dict[bytes, bytes] | None = None  # key -> marshal of the code, until first used
_loaded: dict[bytes, CodeType] = {}  # key -> code, in this process
_new: dict[bytes, bytes] = {}  # compiled here, for the table at exit
_saving = False  # `save` registered with atexit


def table_path() -> str:
    """``$XDG_CACHE_HOME/pktlab/class-code/TAG.marshal`` (default ``~/.cache``); "" (no
    table) when neither names an absolute folder (no home: nothing made in the cwd)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    if not os.path.isabs(base):
        return ""
    tag = sys.implementation.cache_tag or "python"
    return os.path.join(base, "pktlab", "class-code", f"{tag}.marshal")


def _table() -> dict[bytes, bytes]:
    global _kept
    if _kept is None:
        _kept = _read()
    return _kept


def _read() -> dict[bytes, bytes]:
    try:
        with open(table_path(), "rb") as f:
            st = os.fstat(f.fileno())
            # Code this process will run: only a file of its own user that no other may
            # write (a .pyc's trust, as for the wire's kept code).
            if st.st_uid == os.geteuid() and not st.st_mode & 0o022:
                data = f.read()
                if data[: len(MAGIC_NUMBER)] == MAGIC_NUMBER:
                    loaded = marshal.loads(data[len(MAGIC_NUMBER) :])
                    if isinstance(loaded, dict):
                        return loaded
    except (OSError, ValueError, EOFError, TypeError):
        pass
    return {}


def cached_compile(
    source: Any,
    filename: Any,
    mode: str,
    flags: int = 0,
    dont_inherit: bool = False,
    optimize: int = -1,
    *,
    _depth: int = 1,
) -> Any:
    """`compile(...)` as called from the frame `_depth` up, from the table when it holds
    the same compilation (only text is kept: bytes, trees... are compiled as given)."""
    if not dont_inherit:  # what the caller's own compile() would inherit
        flags |= sys._getframe(_depth).f_code.co_flags & _FUTURE_FLAGS
    if type(source) is not str or type(filename) is not str:
        return builtins.compile(source, filename, mode, flags, True, optimize)
    # Named by a digest of all it was compiled from: the texts are ~0.4 MB in all.
    key = hashlib.sha256(
        f"{filename}\0{mode}\0{flags}\0{optimize}\0{source}".encode("utf-8", "surrogatepass")
    ).digest()
    code = _loaded.get(key)
    if code is not None:
        return code
    blob = _table().pop(key, None)  # its bytes are not needed again
    if blob is not None:
        try:
            code = marshal.loads(blob)
        except (ValueError, EOFError, TypeError):
            code = None
    if not isinstance(code, CodeType):
        code = builtins.compile(source, filename, mode, flags, True, optimize)
        _new[key] = marshal.dumps(code)
    _loaded[key] = code
    return code


def _exec(source: Any, globals: Any = None, locals: Any = None, /) -> None:
    """`exec` for `dataclasses`: a text is compiled as exec() compiles it ("<string>",
    the caller's __future__s), through the table."""
    if globals is None:  # exec() in the caller's namespace (dataclasses always gives one)
        caller = sys._getframe(1)
        globals = caller.f_globals
        locals = caller.f_locals if locals is None else locals
    if type(source) is str:
        source = cached_compile(source, "<string>", "exec", _depth=2)
    builtins.exec(source, globals, locals)


def _compile(
    source: Any,
    filename: Any,
    mode: str,
    flags: int = 0,
    dont_inherit: bool = False,
    optimize: int = -1,
) -> Any:
    """`compile` for `attr._make`. A class's ``__hash__`` holds the hash of a string,
    another in every process (hash randomization): kept with a stand-in in its place,
    which this process's number then replaces in the code's constants."""
    if type(source) is str and "def __hash__(" in source:
        return _compile_salted(source, filename, mode, flags, dont_inherit, optimize)
    return cached_compile(source, filename, mode, flags, dont_inherit, optimize, _depth=2)


#: The number attrs puts first in the tuple a ``__hash__`` hashes (the class's salt).
_SALT = re.compile(r"(hash\(\(\n +)(-?\d+),")


def _compile_salted(
    source: str, filename: Any, mode: str, flags: int, dont_inherit: bool, optimize: int
) -> Any:
    """The salt's stand-in is as long as it (9s, its sign kept): the code's column
    positions are the same, and a table entry serves every salt of that length."""
    if not dont_inherit:  # (the caller of `_compile`'s, two frames up)
        flags |= sys._getframe(2).f_code.co_flags & _FUTURE_FLAGS
    found = _SALT.findall(source)
    if len(found) == 1:
        salt = found[0][1]
        stand_in = "-" * salt.startswith("-") + "9" * len(salt.lstrip("-"))
        if stand_in not in source:  # (a salt of 9s: compiled as it is)
            text = _SALT.sub(rf"\g<1>{stand_in},", source)
            code = cached_compile(text, filename, mode, flags, True, optimize)
            salted, replaced = _replace_constant(code, int(stand_in), int(salt))
            if replaced == 1:
                return salted
    return builtins.compile(source, filename, mode, flags, True, optimize)


def _replace_constant(value: Any, old: int, new: int) -> tuple[Any, int]:
    """`value` (a code object, a tuple of constants) with the int `old` made `new` in its
    constants and theirs; how many were replaced."""
    if type(value) is int and value == old:
        return new, 1
    if isinstance(value, CodeType):
        consts, n = _replace_constant(value.co_consts, old, new)
        return (value.replace(co_consts=consts) if n else value), n
    if type(value) is tuple:
        items = [_replace_constant(v, old, new) for v in value]
        n = sum(k for _, k in items)
        return (tuple(v for v, _ in items) if n else value), n
    return value, 0


def keep_generated_code() -> None:
    """From now on, the classes `dataclasses` and `attrs` make in this process take their
    generated methods' code from the table; what was compiled afresh is added to it at
    exit. Imports both (a command that imports Twisted imports them anyway)."""
    global _saving
    import atexit
    import importlib

    for name, attr, fn in (("dataclasses", "exec", _exec), ("attr._make", "compile", _compile)):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if getattr(module, attr, None) is not fn:
            setattr(module, attr, fn)  # a module global: shadows the builtin there only
    if not _saving:
        _saving = True
        atexit.register(save)


def save() -> None:
    """Write the table if this process compiled something it lacked: the old entries and
    ours (ours alone past `LIMIT`), whole or not at all (a rename), whoever else writes."""
    path = table_path()
    if not _new or not path or not _ours(os.path.dirname(path)):
        return
    table = {**_read(), **_new}  # as on disk now: others may have added to it
    if len(table) > LIMIT:
        table = dict(_new)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC_NUMBER + marshal.dumps(table))
        os.replace(tmp, path)
    except (OSError, ValueError, KeyboardInterrupt):  # (Ctrl-C at exit: kept next time)
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _ours(folder: str) -> bool:
    """Whether the nearest existing one of `folder` and its parents is this user's: root
    with another's HOME (sudo) leaves that user's cache alone."""
    while True:
        try:
            return os.stat(folder).st_uid == os.geteuid()
        except FileNotFoundError:
            parent = os.path.dirname(folder)
            if parent == folder:
                return False
            folder = parent
        except OSError:
            return False
