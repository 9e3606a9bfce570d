"""packetlab.heaptrim: free C-heap pages go back to the kernel once, after start-up."""

from __future__ import annotations

import gc
import platform
import sys
import types
import weakref

import pytest
from twisted.internet.testing import MemoryReactorClock

from packetlab import heaptrim


def test_trims_once_after_the_reactor_runs() -> None:
    reactor = MemoryReactorClock()
    trims: list[float] = []
    heaptrim.trim_after_startup(reactor, delay=0.5, trim_heap=lambda: trims.append(1))
    assert not reactor.getDelayedCalls()  # nothing before the reactor runs
    reactor.run()
    (call,) = reactor.getDelayedCalls()
    assert call.getTime() == 0.5 and not trims
    reactor.advance(0.5)
    assert trims == [1] and not reactor.getDelayedCalls()  # ran once, not rescheduled


def test_no_startup_trim_while_a_session_is_open() -> None:
    # An endpoint started inside a running `pktlab run` has its session open at once: the
    # full collection and trim stalled its reads for 20-40 ms mid-download.
    reactor = MemoryReactorClock()
    trims: list[float] = []
    live = [1]
    heaptrim.trim_after_startup(
        reactor, delay=0.5, busy=lambda: live[0] > 0, trim_heap=lambda: trims.append(1)
    )
    reactor.run()
    reactor.advance(0.5)
    assert not trims and not reactor.getDelayedCalls()  # skipped: IdleTrim's turn later


def test_a_stopped_endpoints_startup_trim_is_cancelled() -> None:
    # An in-process endpoint stopped before the delay left its trim pending: it fired
    # during the next run's experiment (20 of 21 runs in a row still had one waiting).
    reactor = MemoryReactorClock()
    trims: list[float] = []
    cancel = heaptrim.trim_after_startup(reactor, delay=0.5, trim_heap=lambda: trims.append(1))
    reactor.run()
    cancel()
    assert not reactor.getDelayedCalls()
    reactor.advance(1)
    assert not trims
    # Stopped before the reactor ran: nothing is scheduled when it does.
    reactor = MemoryReactorClock()
    heaptrim.trim_after_startup(reactor, delay=0.5, trim_heap=lambda: trims.append(1))()
    reactor.run()
    assert not reactor.getDelayedCalls() and not trims


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_trim_heap_releases_freed_blocks() -> None:
    # ~24 MB in blocks too large for pymalloc but under the mmap threshold: they come
    # from (and, freed, stay in) the C heap until trimmed.
    blocks = [bytes(2048) + i.to_bytes(4, "big") for i in range(12_000)]
    del blocks
    assert heaptrim.trim_heap() is True


def _idle(clock: MemoryReactorClock) -> tuple[heaptrim.IdleTrim, list[float]]:
    trims: list[float] = []
    idle = heaptrim.IdleTrim(clock, lambda: trims.append(clock.seconds()), interval=30, settle=0.5)
    return idle, trims


def test_idle_trim_runs_when_the_last_session_ends() -> None:
    clock = MemoryReactorClock()
    idle, trims = _idle(clock)
    first, second = idle.opened(), idle.opened()
    first()
    clock.advance(5)
    assert trims == []  # one session still open
    second()
    assert trims == []  # not inside connectionLost: after the settle time
    clock.advance(0.5)
    assert trims == [5.5] and idle.live == 0


def test_idle_trim_is_cancelled_by_a_new_session_and_rate_limited() -> None:
    clock = MemoryReactorClock()
    idle, trims = _idle(clock)
    idle.opened()()
    clock.advance(0.2)
    back = idle.opened()  # reconnect within the settle time: no trim
    clock.advance(1)
    assert trims == [] and not clock.getDelayedCalls()
    back()
    back()  # a second close of the same session counts once
    assert idle.live == 0
    clock.advance(0.5)
    assert trims == [1.7]
    idle.opened()()  # ends again at once: the next trim waits for the interval
    clock.advance(10)
    assert trims == [1.7]
    clock.advance(20)
    assert trims == [1.7, 31.7] and idle.trims == 2


# ------------------------------------------------ modules only twistd's plugin scan needed


@pytest.fixture
def fake_tree(monkeypatch: pytest.MonkeyPatch) -> dict[str, types.ModuleType]:
    """`zzleft` (a package), `zzleft.sub` defining a class, and `zzuser` that uses neither."""
    mods = {n: types.ModuleType(n) for n in ("zzleft", "zzleft.sub", "zzuser")}
    mods["zzleft.sub"].Thing = type("Thing", (), {"__module__": "zzleft.sub"})  # type: ignore[attr-defined]
    mods["zzleft"].sub = mods["zzleft.sub"]  # type: ignore[attr-defined]
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    return mods


def test_unused_modules_are_forgotten_and_load_again(
    fake_tree: dict[str, types.ModuleType],
) -> None:
    gone = weakref.ref(fake_tree.pop("zzleft.sub"))
    assert heaptrim.drop_unused_modules(["zzleft"]) == ["zzleft", "zzleft.sub"]
    assert "zzleft" not in sys.modules and "zzleft.sub" not in sys.modules
    fake_tree.pop("zzleft")
    gc.collect()
    assert gone() is None  # freed, not only unlisted
    assert heaptrim.drop_unused_modules(["zzleft"]) == []


@pytest.mark.parametrize("use", ["module", "object", "instance"])
def test_modules_in_use_are_all_kept(fake_tree: dict[str, types.ModuleType], use: str) -> None:
    thing = fake_tree["zzleft.sub"].Thing
    value = {"module": fake_tree["zzleft.sub"], "object": thing, "instance": thing()}[use]
    fake_tree["zzuser"].ref = value  # type: ignore[attr-defined]
    assert heaptrim.drop_unused_modules(["zzleft"]) == []
    assert sys.modules["zzleft.sub"] is fake_tree["zzleft.sub"]


def test_a_module_that_imports_the_group_keeps_it_at_first_glance(
    fake_tree: dict[str, types.ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A module bound under its own name (`import argparse`) is the commonest use: found
    without looking into every object of every module (`pktlab run` has argparse in use,
    and ~500 modules loaded when its endpoint starts)."""
    looked: list[str] = []

    class Watched:
        @property
        def __module__(self) -> str:  # type: ignore[override]
            looked.append("older")
            return "zzolder"

    older = types.ModuleType("zzolder")
    older.watched = Watched()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "zzolder", older)
    newer = types.ModuleType("zznewer")
    newer.zzleft = fake_tree["zzleft"]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "zznewer", newer)
    assert heaptrim.drop_unused_modules(["zzleft"]) == []
    assert looked == []


def test_a_lazy_module_imports_on_first_use_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    lazy = heaptrim.LazyModule("colorsys")
    with pytest.raises(AttributeError):
        lazy.__file__  # noqa: B018 (introspection, as drop_unused_modules does)
    assert "colorsys" not in sys.modules
    assert lazy.rgb_to_hsv(1.0, 0.0, 0.0) == (0.0, 1.0, 1.0)
    assert "colorsys" in sys.modules


def test_a_lazy_binding_lets_its_module_go_and_brings_it_back(
    fake_tree: dict[str, types.ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    # zzuser binds zzleft at import (as twistd's app binds pdb) for a path seldom taken.
    fake_tree["zzuser"].zzleft = fake_tree["zzleft"]  # type: ignore[attr-defined]
    monkeypatch.setattr(heaptrim, "LAZY_BINDINGS", (("zzuser", "zzleft"),))
    monkeypatch.setattr(heaptrim, "SCAN_LEFTOVERS", (("zzleft",),))
    assert heaptrim.drop_scan_leftovers() == ["zzleft", "zzleft.sub"]
    stand_in = fake_tree["zzuser"].zzleft
    assert isinstance(stand_in, heaptrim.LazyModule) and "zzleft" not in sys.modules
    # First use: imported again (here the finder finds our fake again).
    monkeypatch.setitem(sys.modules, "zzleft", fake_tree["zzleft"])
    assert stand_in.sub is fake_tree["zzleft.sub"]


def test_a_lazy_binding_is_put_back_where_its_module_stays(
    fake_tree: dict[str, types.ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_tree["zzuser"].zzleft = fake_tree["zzleft"]  # type: ignore[attr-defined]
    other = types.ModuleType("zzother")
    other.thing = fake_tree["zzleft.sub"].Thing  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "zzother", other)  # a real user: nothing goes
    monkeypatch.setattr(heaptrim, "LAZY_BINDINGS", (("zzuser", "zzleft"),))
    monkeypatch.setattr(heaptrim, "SCAN_LEFTOVERS", (("zzleft",),))
    assert heaptrim.drop_scan_leftovers() == []
    assert fake_tree["zzuser"].zzleft is fake_tree["zzleft"]


def test_a_group_used_only_by_a_group_gone_before_goes_too(
    fake_tree: dict[str, types.ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The groups share one index of who uses what (built before the first goes): a use
    from a module an earlier group took away counts no more (as `pprint` once `unittest`
    has gone)."""
    fake_tree["zzuser"].thing = fake_tree["zzleft.sub"].Thing  # type: ignore[attr-defined]
    monkeypatch.setattr(heaptrim, "LAZY_BINDINGS", ())
    monkeypatch.setattr(heaptrim, "SCAN_LEFTOVERS", (("zzuser",), ("zzleft",)))
    assert heaptrim.drop_scan_leftovers() == ["zzuser", "zzleft", "zzleft.sub"]
    assert not {"zzuser", "zzleft", "zzleft.sub"} & set(sys.modules)


def test_a_use_found_by_the_shared_index_keeps_its_group(
    fake_tree: dict[str, types.ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_tree["zzuser"].thing = fake_tree["zzleft.sub"].Thing  # type: ignore[attr-defined]
    monkeypatch.setattr(heaptrim, "LAZY_BINDINGS", ())
    monkeypatch.setattr(heaptrim, "SCAN_LEFTOVERS", (("zzleft",), ("zzuser",)))
    assert heaptrim.drop_scan_leftovers() == ["zzuser"]
    assert sys.modules["zzleft.sub"] is fake_tree["zzleft.sub"]


def test_the_groups_are_freed_by_one_collection(
    fake_tree: dict[str, types.ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full collection per group cost ~50 ms each in a twistd start-up."""
    collections: list[int] = []

    def collect() -> int:
        collections.append(1)
        return 0

    monkeypatch.setattr(heaptrim.gc, "collect", collect)
    monkeypatch.setattr(heaptrim, "LAZY_BINDINGS", ())
    monkeypatch.setattr(heaptrim, "SCAN_LEFTOVERS", (("zzuser",), ("zzleft",)))
    assert heaptrim.drop_scan_leftovers() == ["zzuser", "zzleft", "zzleft.sub"]
    assert collections == [1]


def test_the_shared_index_holds_only_what_points_into_the_groups(
    fake_tree: dict[str, types.ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An index of every global of every loaded module (2.7 MB of Python objects at its
    peak under twistd) left its freed memory scattered among what the daemon allocated
    next: idle RSS +0.6 MiB. This process has more modules loaded than twistd; the index
    of the few bindings into the groups stays far below one of all of them."""
    import tracemalloc

    monkeypatch.setattr(heaptrim, "LAZY_BINDINGS", ())
    monkeypatch.setattr(heaptrim, "SCAN_LEFTOVERS", (("zzuser",), ("zzleft",)))
    monkeypatch.setattr(heaptrim.gc, "collect", lambda: 0)
    globals_seen = sum(len(getattr(m, "__dict__", {})) for m in list(sys.modules.values()))
    assert globals_seen > 20_000  # enough for an index of all of them to show
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        assert heaptrim.drop_scan_leftovers() == ["zzuser", "zzleft", "zzleft.sub"]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024, f"{peak} bytes allocated at the peak"


def test_an_index_asked_about_other_modules_looks_again(
    fake_tree: dict[str, types.ModuleType],
) -> None:
    uses = heaptrim.Uses(["zzuser"])
    drop = {"zzleft", "zzleft.sub"}
    mods = {id(fake_tree[n]) for n in drop}
    assert not uses.any_of(drop, mods)
    fake_tree["zzuser"].thing = fake_tree["zzleft.sub"].Thing  # type: ignore[attr-defined]
    assert heaptrim.Uses(["zzuser"]).any_of(drop, mods)
    assert heaptrim.Uses().any_of(drop, mods)


def test_the_plugin_modules_go_first_and_the_rebuilds_groups_only_before_the_reactor(
    fake_tree: dict[str, types.ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`PLUGIN_MODULES` stands for the plugin modules loaded (a scan that rebuilt the
    plugin cache imported them all, and their globals held the other groups); a group of
    `BEFORE_REACTOR_ONLY` goes only while the reactor is not imported."""
    plugin = types.ModuleType("twisted.plugins.zzplugin")
    plugin.thing = fake_tree["zzleft.sub"].Thing  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "twisted.plugins.zzplugin", plugin)
    monkeypatch.setattr(heaptrim, "LAZY_BINDINGS", ())
    groups = ((heaptrim.PLUGIN_MODULES,), ("zzleft",), ("zzuser",))
    monkeypatch.setattr(heaptrim, "SCAN_LEFTOVERS", groups)
    monkeypatch.setattr(heaptrim, "BEFORE_REACTOR_ONLY", frozenset({("zzuser",)}))
    monkeypatch.setitem(sys.modules, "twisted.internet.reactor", types.ModuleType("reactor"))
    import twisted.plugins

    # The real plugin modules loaded go too: put back afterwards, in sys.modules and as
    # the package's attributes (Twisted's plugin loader reads both).
    for name in [n for n in sys.modules if n.startswith("twisted.plugins.")]:
        if name != plugin.__name__:
            monkeypatch.setitem(sys.modules, name, sys.modules[name])
            child = name.rpartition(".")[2]
            monkeypatch.setattr(twisted.plugins, child, sys.modules[name], raising=False)
    dropped = heaptrim.drop_scan_leftovers()
    assert "twisted.plugins.zzplugin" in dropped and "zzleft" in dropped
    assert "zzuser" not in dropped and "zzuser" in sys.modules  # the reactor is there
    monkeypatch.delitem(sys.modules, "twisted.internet.reactor")
    assert heaptrim.drop_scan_leftovers() == ["zzuser"]
