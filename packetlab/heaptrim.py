"""Give the C heap's free pages back to the kernel once a daemon has started, and
whenever its last session has ended.

Start-up (importing Twisted, OpenSSL and packetlab, deriving the wire codecs, loading
the TLS credentials) frees a good deal of what it allocated, but glibc keeps freed
blocks inside its heap for reuse, so they stay resident. `malloc_trim(0)` hands the
free pages back (idle endpoint RSS -0.8 MiB, docs/performance.md). A one-off call of
a few milliseconds: nothing on any hot path. Where the C library has no `malloc_trim`
(musl, macOS) it does nothing.

A long-running endpoint's heap in use stays flat, but glibc's free space inside the heap
drifts upward as sessions come and go (the hour-long pre-emption soak: RSS +2.55 MB/h with
bytes in use flat, docs/reliability.md). `IdleTrim` trims when no session is left (so no
send is scheduled and no timing is disturbed), at most once per `IDLE_TRIM_INTERVAL_S`.

Memory is best not allocated at all: `drop_scan_leftovers` forgets the modules only
twistd's plugin scan needed, before a daemon's own imports, which then reuse it.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import sys
import types
from collections.abc import Callable, Iterable
from typing import Any

from packetlab import lazyimports
from packetlab.clockstep import steady
from packetlab.sessioncount import SessionCount

__all__ = [
    "BEFORE_REACTOR_ONLY",
    "LAZY_BINDINGS",
    "PLUGIN_MODULES",
    "SCAN_LEFTOVERS",
    "IdleTrim",
    "LazyModule",
    "drop_scan_leftovers",
    "drop_unused_modules",
    "trim_after_startup",
    "trim_heap",
]

#: Stands for the plugin modules loaded (`twisted.plugins.*`) in `SCAN_LEFTOVERS`.
PLUGIN_MODULES = "twisted.plugins.*"

#: What twistd's plugin scan imports and a daemon never uses, in the order they can go:
#: unpickling Twisted's own dropin.cache names trial's reporter interfaces, so every
#: twistd program imports `twisted.trial.itrial`, and with it the whole of `unittest`
#: (~1.4 MiB of RSS) and `difflib`; `unittest.main` imports `argparse` (twistd itself
#: uses `twisted.python.usage`); the cred plugins' `strcred`. Then what twistd imports
#: for a path a daemon does not take (`LAZY_BINDINGS`): `pdb` and what only it uses
#: (`pprint` once `unittest` has gone too), `getpass`. First the plugin modules
#: themselves, last what only they import: a scan that finds a dropin.cache stale or
#: missing imports every plugin module to rebuild it, whose globals then held trial,
#: cred, conch, Twisted's endpoints (and with them stdio, systemd, HAProxy, its TLS
#: transport: then loaded whole, not left to `lazyimports.DAEMON`), so that nothing
#: went (endpoint RSS +2.6 MiB in a session, on every start where the cache cannot be
#: written: an install read-only to the daemon's user, docs/reliability.md "Lazy imports
#: on rare paths"). The plugins a daemon's twistd holds need none of those modules.
_CONCH = ("twisted.conch",)  # (the cred plugins' ssh keys)
_ENDPOINTS = (
    "twisted.internet.endpoints",  # (twisted_core's parsers)
    "twisted.internet.stdio",
    "twisted.internet._posixstdio",
    "twisted.python.systemd",
    "twisted.protocols.haproxy",
    "twisted.protocols._sni",
)
_TLS = (
    "twisted.internet.ssl",  # (Twisted's endpoints)
    "twisted.internet._sslverify",
    "twisted.internet._service_identity",
    "service_identity",
    "idna",
)
SCAN_LEFTOVERS = (
    (PLUGIN_MODULES,),
    ("unittest", "twisted.trial"),
    ("argparse",),
    ("difflib",),
    _CONCH,
    ("twisted.cred",),
    ("pdb",),
    ("bdb",),
    ("cmd",),
    ("code",),
    ("codeop",),
    ("pprint",),
    ("getpass",),
    _ENDPOINTS,
    _TLS,
)

#: The groups of `SCAN_LEFTOVERS` that only a scan's rebuild imports, forgotten only
#: before the reactor is imported (a daemon's start, nothing of its own run yet): in a
#: process whose own code has run (`pktlab run`'s in-process endpoint) an object of
#: theirs may be held where `Uses` does not look (a local, an attribute).
BEFORE_REACTOR_ONLY = frozenset({_CONCH, _ENDPOINTS, _TLS})

#: (module, global) bound at import to a module used only on a path a daemon seldom
#: takes: `twistd --debug` runs the reactor under `pdb`; a saved application's
#: passphrase is asked with `getpass`. `drop_scan_leftovers` binds a `LazyModule` in
#: its place, which imports the module again on first use, so that it can be forgotten.
LAZY_BINDINGS = (("twisted.application.app", "pdb"), ("twisted.application.app", "getpass"))

#: Seconds after the reactor starts: past the listening and connecting of start-up.
STARTUP_SETTLE_S = 0.5
#: Seconds between trims while idle: a trim costs milliseconds, sessions may come fast.
IDLE_TRIM_INTERVAL_S = 30.0
#: Seconds after the last session ends (0: the next reactor turn). With no session
#: there is no scheduled send to disturb; sessions that follow each other within a
#: second (a broker's pre-emptions) would otherwise never leave room for a trim.
IDLE_SETTLE_S = 0.0


def trim_heap() -> bool:
    """Collect cyclic garbage, then return the C heap's free pages to the kernel. True if
    `malloc_trim` exists and released something."""
    gc.collect()
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return bool(trim(0))


class LazyModule(types.ModuleType):
    """Stands for the module of its name: the first attribute asked of it imports the
    module (again) and is taken from it."""

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):  # introspection (e.g. __module__) imports nothing
            raise AttributeError(attr)
        return getattr(importlib.import_module(self.__name__), attr)


def drop_scan_leftovers() -> list[str]:
    """`drop_unused_modules` for each group of `SCAN_LEFTOVERS` in turn, after binding
    `LazyModule`s for `LAZY_BINDINGS` (put back where their module stays); the names
    forgotten. A daemon calls it before its own imports, which then reuse the memory
    freed (glibc and Python's allocator keep freed memory for reuse, they seldom return
    it): idle endpoint RSS -0.95 MiB (docs/performance.md). A no-op where they are used
    (pytest, trial)."""
    bound: list[tuple[types.ModuleType, str, Any]] = []
    for owner, name in LAZY_BINDINGS:
        mod = sys.modules.get(owner)
        if mod is not None and getattr(mod, name, None) is sys.modules.get(name, bound):
            bound.append((mod, name, getattr(mod, name)))
            setattr(mod, name, LazyModule(name))
    early = "twisted.internet.reactor" not in sys.modules
    groups = [
        _plugin_modules() if group == (PLUGIN_MODULES,) else group
        for group in SCAN_LEFTOVERS
        if early or group not in BEFORE_REACTOR_ONLY
    ]
    uses = Uses(root for group in groups for root in group)
    dropped = [
        name for group in groups for name in drop_unused_modules(group, collect=False, uses=uses)
    ]
    for mod, name, real in bound:
        if name not in dropped:
            setattr(mod, name, real)
    if dropped:
        # One full collection for all groups: one per group cost ~50 ms each in a twistd
        # start-up (its plugin scan leaves many objects), 0.5 s of every `twistd
        # pktendpoint`. Unlisted modules refer to nothing a later group's check reads.
        gc.collect()
    return dropped


def _plugin_modules() -> tuple[str, ...]:
    """The plugin modules loaded (`twisted.plugins.X`; not the package, whose path
    Twisted's plugin system extends)."""
    return tuple(name for name in sys.modules if name.startswith("twisted.plugins."))


def _owner(value: Any) -> Any:
    try:
        return getattr(value, "__module__", None)
    except Exception:  # an object whose attributes are computed: not ours to judge
        return None


class Uses:
    """Where loaded modules' globals point at the modules under `roots` or at what they
    define: (module, name) by the id of the value and by the module that defined it.
    Built once (on first use) for all the groups of `drop_scan_leftovers`: a look into
    every object of every module per group cost 20-50 ms each in a twistd start-up.
    Only the bindings that point into `roots` are kept (a few dozen): an index of every
    global (2.7 MB of Python objects at its peak under twistd) left its freed memory
    scattered among the objects allocated after it, resident for good (idle endpoint
    RSS +0.6 MiB, docs/performance.md). Every hit is read again when asked,
    so modules forgotten (or bindings popped) since the index was built count no more.
    Asked about modules outside `roots` (or with no `roots`), it looks again for them."""

    def __init__(self, roots: Iterable[str] = ()) -> None:
        self._roots = tuple(roots)
        self._names: set[str] = set()
        self._by_id: dict[int, list[tuple[str, str]]] = {}
        self._by_owner: dict[str, list[tuple[str, str]]] = {}

    def _build(self, drop: set[str]) -> None:
        prefixes = tuple(r + "." for r in self._roots)
        names = {n for n in sys.modules if n in self._roots or n.startswith(prefixes)}
        names |= drop
        ids = {id(sys.modules[n]) for n in names if n in sys.modules}
        self._names, self._by_id, self._by_owner = names, {}, {}
        for name, mod in list(sys.modules.items()):
            for key, value in list(getattr(mod, "__dict__", {}).items()):
                if id(value) in ids:
                    self._by_id.setdefault(id(value), []).append((name, key))
                owner = _owner(value)
                if isinstance(owner, str) and owner in names:
                    self._by_owner.setdefault(owner, []).append((name, key))

    def any_of(self, drop: set[str], mods: set[int]) -> bool:
        """Whether a module outside `drop` refers to one of `mods` (the modules named in
        `drop`) or to anything defined in `drop` (a package's binding of its own
        submodule aside)."""
        if not drop <= self._names:
            self._build(drop)
        hits = [ref for i in mods for ref in self._by_id.get(i, ())]
        hits += [ref for owner in drop for ref in self._by_owner.get(owner, ())]
        missing = object()
        for name, key in hits:
            mod = sys.modules.get(name)
            if mod is None or name in drop or f"{name}.{key}" in drop:
                continue
            value = getattr(mod, "__dict__", {}).get(key, missing)
            if value is missing:
                continue
            owner = _owner(value)
            if id(value) in mods or (isinstance(owner, str) and owner in drop):
                return True
        return False


def drop_unused_modules(
    roots: Iterable[str], *, collect: bool = True, uses: Uses | None = None
) -> list[str]:
    """Forget the loaded modules under `roots` (each root and its submodules) if no other
    loaded module refers to one of them, or to anything they define, from its globals;
    returns the names forgotten (none when any is in use: all or nothing). Their objects
    are then freed (`collect`: by a full collection now, else by the caller's), and a
    later import loads them afresh. `uses`: an index shared by calls in a row."""
    roots = tuple(roots)
    prefixes = tuple(r + "." for r in roots)
    drop = {n for n in sys.modules if n in roots or n.startswith(prefixes)}
    if not drop:
        return []
    mods = {id(sys.modules[n]) for n in drop}
    # The commonest use first, one dict lookup per module: a root bound under its own
    # name (`import argparse`: in `pktlab run`, whose in-process endpoint calls this).
    for root in roots:
        top, short = sys.modules.get(root), root.rpartition(".")[2]
        if top is None:
            continue
        for name, mod in list(sys.modules.items()):
            bound = getattr(mod, "__dict__", {}).get(short)
            # (not a package binding its own submodule)
            if bound is top and name not in drop and f"{name}.{short}" not in drop:
                return []
    if (uses if uses is not None else Uses()).any_of(drop, mods):
        return []
    for name in drop:
        del sys.modules[name]
        parent, _, child = name.rpartition(".")
        if parent and parent not in drop and parent in sys.modules:
            vars(sys.modules[parent]).pop(child, None)
    if collect:
        gc.collect()
    return sorted(drop)


def trim_after_startup(
    reactor: Any,
    delay: float = STARTUP_SETTLE_S,
    busy: Callable[[], bool] = lambda: False,
    trim_heap: Callable[[], object] = trim_heap,
) -> Callable[[], None]:
    """Call `trim_heap` once, `delay` seconds after `reactor` starts running, unless
    `busy()` then (a session is open: the full collection and trim stall the reactor for
    20-40 ms, mid-transfer for an endpoint started inside a running `pktlab run`; IdleTrim
    trims once the session is over). Returns the cancel: an in-process endpoint stopped
    before the delay must not stall the next run's reactor with its trim."""
    pending: list[Any] = []
    cancelled = False

    def trim() -> None:
        if not busy():
            trim_heap()

    def schedule() -> None:
        if not cancelled:
            pending.append(reactor.callLater(delay, trim))

    def cancel() -> None:
        nonlocal cancelled
        cancelled = True
        for call in pending:
            if call.active():
                call.cancel()

    reactor.callWhenRunning(schedule)
    return cancel


class IdleTrim(SessionCount):
    """Trim the heap once no session is open: `opened()` when a session starts, `closed()`
    when it ends. The trim runs `settle` s after the count reaches zero (by default on the
    next reactor turn, never inside connectionLost), not if a session opened meanwhile,
    and not sooner than `interval` s after the previous one."""

    def __init__(
        self,
        clock: Any,
        trim: Callable[[], object] = trim_heap,
        *,
        interval: float = IDLE_TRIM_INTERVAL_S,
        settle: float = IDLE_SETTLE_S,
    ) -> None:
        self.clock = clock
        self.trim = trim
        self.interval = interval
        self.settle = settle
        self.trims = 0
        self._last = float("-inf")
        self._pending: Any = None

    def _opened(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None

    def _closed(self) -> None:
        if self.live or self._pending is not None:
            return
        wait = max(self.settle, self._last + self.interval - steady(self.clock))
        self._pending = self.clock.callLater(wait, self._fire)

    def _fire(self) -> None:
        self._pending = None
        if self.live:
            return
        self._last = steady(self.clock)
        self.trims += 1
        self.trim()


def lean_daemon_start() -> None:
    """What a daemon's tap does before its own imports (endpoint, broker, proxy): what the
    reactor imports and a daemon never uses (`lazyimports.DAEMON`) loaded on first use,
    then what twistd's plugin scan alone needed (unittest, trial, argparse) forgotten, so
    the daemon's own imports reuse its memory (docs/performance.md, Memory). Under twistd
    the taps' imports bring in the reactor, so this comes first; a process that has
    imported the reactor already (a test, `pktlab run`'s in-process endpoint) keeps its
    imports, and the drop is a no-op where the modules are in use. `pktlab run`'s lazy
    regular expressions and partial asyncio stay its own."""
    if "twisted.internet.reactor" not in sys.modules:
        lazyimports.install(lazyimports.DAEMON, patterns=(), partial={})
    drop_scan_leftovers()
