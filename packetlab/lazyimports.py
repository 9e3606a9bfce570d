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
endpoint's tap (`twistd pktendpoint`) for `ENDPOINT` only, before the reactor's import.
`LazyLoader` of Python 3.11 is not thread-safe: none of these is first used from
a thread of a run.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Iterable, Sequence

__all__ = ["ENDPOINT", "LAZY", "install", "is_lazy", "uninstall"]

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
    }
)

#: What `twistd pktendpoint` imports through the reactor and never uses (all in `LAZY`):
#: Twisted's TLS transport (the endpoint's link is `packetlab.tls`) and with it
#: `service_identity` and `idna` (~0.9 MiB of idle RSS), UNIX sockets, PTYs, and X.509
#: path validation (PPKS chains are checked by `packetlab.ppks.verify`). None is first
#: used from one of the endpoint's threads (SQLite accounting, monitor compiles).
ENDPOINT: frozenset[str] = frozenset(
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

    def __init__(self, names: Iterable[str]) -> None:
        self.names = frozenset(names)

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.names:
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
        if isinstance(spec.loader, _PYTHON_CODE):
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


def install(names: Iterable[str] = LAZY) -> None:
    """From now on, a module of `names` not yet imported is loaded on first use. Once per
    process (a second call adds nothing); one already imported stays as it is."""
    if not any(isinstance(f, _LazyFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _LazyFinder(names))


def uninstall() -> None:
    """Imports are eager again (modules left unloaded still load on first use)."""
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _LazyFinder)]


def is_lazy(name: str) -> bool:
    """Whether module `name` was imported lazily and not yet used (asking loads nothing)."""
    return type(sys.modules.get(name)) is _LazyModule
