"""Modules that Twisted and the TLS stack import but a `pktlab run` may never use, loaded
on first use (the standard library's `importlib.util.LazyLoader`).

`twisted.python.compat` imports `http.cookiejar` (and with it `urllib.request`,
`http.client`, `email`...), `twisted.internet.posixbase` imports `twisted.internet.ssl`
(and with it `service_identity`, `idna`), `asyncio` imports `ssl` and its SSL protocol,
and so on; a traceroute or ping never touches them (~20 ms of CPU of each run:
docs/performance.md, "Session 19: start-up"). `install` puts a finder first on
`sys.meta_path` that gives each module named in `LAZY` a module object whose code runs at
the first attribute looked up on it, as `LazyLoader` does: after that it is the very
module an eager import makes (its ``__loader__``, ``__spec__`` and contents).

One change to `LazyLoader`'s module: its ``__spec__`` is read without loading it. The
import statement reads it each time a module already in `sys.modules` is imported again
(to see whether it is still initialising), so with the standard library's module alone a
second ``import ssl`` anywhere loaded it. Still, only a module imported as a module object
(``import x``, ``from pkg import x``) stays unloaded: ``from x import name`` or any other
attribute read loads it there and then. Each name is listed because a run was seen to
leave it unloaded (tests/integration/test_cli_run_imports.py pins them), and is a pure
Python module whose import only defines things (no registration a caller relies on
without reading an attribute of it). The `pktlab` process turns this on for `pktlab run`
only, before its imports (`packetlab.cli.main`), not in a program that calls `main`; the
daemons' taps (`heaptrim.lean_daemon_start`) for `DAEMON` only, before the reactor's import.
`LazyLoader` of Python 3.11 is not thread-safe: none of these is first used from
a thread of a run.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import re
import sys
import types
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "DAEMON",
    "LAZY",
    "LAZY_PATTERNS",
    "PARTIAL",
    "LazyPattern",
    "install",
    "is_lazy",
    "is_partial",
    "uninstall",
]

#: Loaded on first use in `pktlab run`. Each is imported as a module object by the code
#: that imports it during a run's start (the module after the colon):
LAZY: frozenset[str] = frozenset(
    {
        "http.cookiejar",  # twisted.python.compat: `from http import cookiejar as cookielib`
        "urllib.request",  # http.cookiejar (`run http`): `import urllib.request`
        "email.parser",  # http.client (`run http`, through http.cookiejar)
        "twisted.internet.ssl",  # twisted.internet.posixbase: `from ... import ssl as _ssl`
        "twisted.internet.unix",  # twisted.internet.posixbase: `from ... import process, unix`
        "twisted.persisted.sob",  # twisted.application.service: `from ... import sob`
        "ssl",  # asyncio.base_events, asyncio.selector_events (`run http` for https)
        "asyncio.sslproto",  # asyncio.base_events: `from . import sslproto`
        "asyncio.staggered",  # asyncio.base_events: `from . import staggered`
        "asyncio.trsock",  # asyncio.base_events: `from . import trsock`
        "asyncio.format_helpers",  # asyncio.events: `from . import format_helpers`
        "cryptography.x509.verification",  # cryptography.x509: `from ... import verification`
        "idna",  # dns.name (`run dns`): `import idna`, used for IDNA 2008 names only
        "ctypes.util",  # packetlab.pcap.libpcap: find_library when the soname is missing
        "pty",  # twisted.internet.process: `import pty`, for usePTY only
        "pickle",  # twisted.python.reflect, twisted.plugin: for plugin caches
        "calendar",  # email._parseaddr (from cryptography.x509.general_name)
        "copy",  # dataclasses: for asdict(), astuple()
        "textwrap",  # traceback: when an exception is formatted
        "tokenize",  # linecache: for the source lines of a traceback
        "bz2",  # shutil (argparse's help formatter), zipfile: for their archives only
        "lzma",  # shutil, zipfile: as bz2
        "fnmatch",  # shutil: for `ignore_patterns` only
    }
)

#: Modules whose regular expressions, compiled as the module is imported, a run does not
#: use: each compiles at its first use instead (`LazyPattern`). ~6 ms of CPU of every run:
#: `cryptography.x509.name`'s RFC 4514 parser (`Name.from_rfc4514_string`: one character
#: class spans all of Unicode), `platform`'s version parsers (attrs asks one of them).
#: Packages whose ``__init__`` imports much a run never uses, imported only for a few names
#: (`from asyncio import AbstractEventLoop, Future, iscoroutine` in twisted.internet.defer:
#: all of asyncio, its event loops, streams, subprocesses and tasks, ~16 ms of CPU). The
#: package starts with those names, taken from the submodules that define them, and runs
#: its own code at the first other name asked of it (`is_partial`).
PARTIAL: dict[str, dict[str, str]] = {
    "asyncio": {"AbstractEventLoop": "events", "Future": "futures", "iscoroutine": "coroutines"},
}

LAZY_PATTERNS: frozenset[str] = frozenset(
    {"cryptography.x509.name", "platform", "logging", "email.utils", "string"}
)

#: What the three daemons (`twistd pktendpoint`, `pktbroker`, `pktproxy`) import through
#: the reactor and never use (all in `LAZY`; `heaptrim.lean_daemon_start`): Twisted's TLS
#: transport (their links are `packetlab.tls`; the proxy's endpoints port does not
#: terminate TLS) and with it `service_identity` and `idna` (~0.9 MiB of the endpoint's
#: idle RSS; the broker and proxy load the transport anyway through their endpoint
#: strings), UNIX sockets, PTYs, and X.509 path validation (PPKS chains are checked by
#: `packetlab.ppks.verify`). None is first used from a daemon's thread (the endpoint's
#: SQLite accounting and monitor compiles; the broker and proxy run none).
DAEMON: frozenset[str] = frozenset(
    {
        "twisted.internet.ssl",
        "twisted.internet.unix",
        "pty",
        "idna",
        "cryptography.x509.verification",
    }
)

_PYTHON_CODE = (importlib.machinery.SourceFileLoader, importlib.machinery.SourcelessFileLoader)


class _LazyFinder:
    """A meta path finder (not `importlib.abc.MetaPathFinder`, whose import is ~14 ms:
    `importlib.resources`, `pathlib`, `tempfile`, `zipfile`): finds a listed module with
    the other finders, and wraps its loader."""

    def __init__(
        self,
        names: Iterable[str],
        patterns: Iterable[str] = (),
        partial: dict[str, dict[str, str]] | None = None,
    ) -> None:
        self.names = frozenset(names)
        self.patterns = frozenset(patterns)
        self.partial = dict(partial or {})

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if not (fullname in self.names or fullname in self.patterns or fullname in self.partial):
            return None
        for finder in sys.meta_path:
            if finder is self or isinstance(finder, _LazyFinder):
                continue
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None:
                break
        else:
            return None
        # Python code only: an extension module's work is its creation, not made lazy.
        if not isinstance(spec.loader, _PYTHON_CODE):
            return spec
        if fullname in self.partial:
            spec.loader = _PartialLoader(spec.loader, self.partial[fullname])
        elif fullname in self.patterns:
            spec.loader = _PatternLoader(spec.loader)
        else:
            spec.loader = _Loader(spec.loader)
        return spec


class _Loader(importlib.util.LazyLoader):
    """`LazyLoader`, its module's ``__spec__`` readable without loading it."""

    def exec_module(self, module: types.ModuleType) -> None:
        super().exec_module(module)
        module.__class__ = _LazyModule


class _LazyModule(importlib.util._LazyModule):  # type: ignore[name-defined]
    def __getattribute__(self, attr: str) -> object:
        if attr == "__spec__":  # the import statement's look at a module imported again
            return object.__getattribute__(self, attr)
        # The standard library's module loads it (its own class check, 3.12's lock).
        self.__class__ = importlib.util._LazyModule  # type: ignore[attr-defined]
        try:
            return importlib.util._LazyModule.__getattribute__(self, attr)  # type: ignore[attr-defined]
        except ValueError as e:
            # A module that puts another object in its place in sys.modules, as
            # twisted.internet.ssl (deprecatedModuleAttribute: a proxy of itself): it ran
            # in full and sys.modules holds what its eager import leaves there; the
            # standard library refuses only because those holding this object bypass it.
            if type(self) is not types.ModuleType or "substituted in sys.modules" not in str(e):
                raise
            return object.__getattribute__(self, attr)


class LazyPattern:
    """What `re.compile(pattern, flags)` returns, compiled at the first attribute looked
    up on it (`.match`, `.sub`, `.pattern`...). Not a `re.Pattern`: only for a module
    whose patterns are used through their methods (`LAZY_PATTERNS`)."""

    __slots__ = ("_args", "_compiled")

    def __init__(self, pattern: str | bytes, flags: int = 0) -> None:
        self._args = (pattern, flags)
        self._compiled: re.Pattern[Any] | None = None

    def __getattr__(self, name: str) -> Any:
        if name in LazyPattern.__slots__:
            # A slot not set yet: an instance made without __init__ (copy.copy's and
            # pickle's way) asked for it recursed here until RecursionError.
            raise AttributeError(name)
        if self._compiled is None:
            self._compiled = re.compile(*self._args)
        return getattr(self._compiled, name)

    # Copied or pickled as `re.Pattern` is: a copy is the pattern itself (`re.Pattern`'s
    # own __copy__), a pickle compiles it again (`re.compile` with its arguments).
    def __copy__(self) -> LazyPattern:
        return self

    def __deepcopy__(self, memo: Any) -> LazyPattern:
        return self

    def __reduce__(self) -> tuple[Any, tuple[str | bytes, int]]:
        return _EAGER_COMPILE, self._args

    def __repr__(self) -> str:
        return f"LazyPattern({self._args[0]!r}, {self._args[1]!r})"


class _WrappingLoader:
    """A loader that runs a module its own way but leaves it with the original loader,
    as an eager import leaves it (`_PatternLoader`, `_PartialLoader`)."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def __getattr__(self, name: str) -> Any:  # get_code, get_source... as the loader's
        return getattr(self.loader, name)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        made: types.ModuleType | None = self.loader.create_module(spec)
        return made

    def _hand_back(self, module: types.ModuleType) -> None:
        spec = module.__spec__
        if spec is not None:
            spec.loader = self.loader
        module.__loader__ = self.loader


class _PatternLoader(_WrappingLoader):
    """Runs a module of `LAZY_PATTERNS` with its own calls of `re.compile` (those of its
    body, not of the modules it imports) making `LazyPattern`s."""

    def exec_module(self, module: types.ModuleType) -> None:
        self._hand_back(module)
        if not _running:
            _eager[:] = [re.compile]
            re.compile = _compile_later
        _running.append(module.__dict__)
        try:
            self.loader.exec_module(module)
        finally:
            _running.pop()  # (modules it imports ran and left in between)
            if not _running:
                re.compile = _eager.pop()


class _PartialLoader(_WrappingLoader):
    """Starts a package of `PARTIAL` with its listed names only (imported from their
    submodules); its own code runs, in the same module, at the first other name looked
    up (a module ``__getattr__``, removed then)."""

    def __init__(self, loader: Any, names: dict[str, str]) -> None:
        super().__init__(loader)
        self.names = names

    def exec_module(self, module: types.ModuleType) -> None:
        self._hand_back(module)
        namespace = module.__dict__
        for name, submodule in self.names.items():
            found = importlib.import_module(f"{module.__name__}.{submodule}")
            namespace[name] = getattr(found, name)
        loader = self.loader

        def __getattr__(name: str) -> Any:
            if namespace.get("__getattr__") is not __getattr__:  # (running already)
                raise AttributeError(f"module {module.__name__!r} has no attribute {name!r}")
            del namespace["__getattr__"]
            loader.exec_module(module)  # the package's own code, in this module
            return getattr(module, name)

        __getattr__._pktlab_partial = True  # type: ignore[attr-defined]
        namespace["__getattr__"] = __getattr__


def is_partial(name: str) -> bool:
    """Whether package `name` was started with `PARTIAL`'s names only, its own code not
    yet run (asking runs nothing)."""
    hook = vars(sys.modules[name]).get("__getattr__") if name in sys.modules else None
    return getattr(hook, "_pktlab_partial", False) is True


_running: list[dict[str, Any]] = []  # the namespaces of the `_PatternLoader` modules running
_eager: list[Any] = []  # `re.compile` while they run
#: `re.compile` as this module found it: what `_compile_later` calls once no module of
#: `LAZY_PATTERNS` runs (`_eager` is empty then).
_EAGER_COMPILE = re.compile


def _compile_later(pattern: Any, flags: Any = 0) -> Any:
    """`re.compile` while a module of `LAZY_PATTERNS` runs: a `LazyPattern` when called by
    its code, the real compile for any other (the modules it imports). A module imported
    meanwhile that keeps `re.compile` in its own name (`_strptime`: ``from re import
    compile as re_compile``; another thread's import) calls this for good: an IndexError
    on `_eager` once the window had closed, at its first compile after."""
    caller = sys._getframe(1).f_globals
    if isinstance(pattern, (str, bytes)) and any(caller is ns for ns in _running):
        return LazyPattern(pattern, flags)
    return (_eager[0] if _eager else _EAGER_COMPILE)(pattern, flags)


def install(
    names: Iterable[str] = LAZY,
    patterns: Iterable[str] = LAZY_PATTERNS,
    partial: dict[str, dict[str, str]] | None = None,
) -> None:
    """From now on, a module of `names` not yet imported is loaded on first use, one of
    `patterns` compiles its regular expressions at their first use, and a package of
    `partial` (default `PARTIAL`) starts with its names only. Once per process (a second
    call adds nothing); one already imported stays as it is."""
    if not any(isinstance(f, _LazyFinder) for f in sys.meta_path):
        sys.meta_path.insert(
            0, _LazyFinder(names, patterns, PARTIAL if partial is None else partial)
        )


def uninstall() -> None:
    """Imports are eager again (modules left unloaded still load on first use)."""
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _LazyFinder)]


def is_lazy(name: str) -> bool:
    """Whether module `name` was imported lazily and not yet used (asking loads nothing)."""
    return type(sys.modules.get(name)) is _LazyModule
