"""packetlab.lazyimports: modules Twisted imports but a run may not use, loaded on use."""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from packetlab import lazyimports

MODULE = """
import sys
sys.modules["lazytest_log"].runs.append(__name__)
VALUE = 42
"""


@pytest.fixture
def where(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A folder of modules on sys.path whose bodies log their execution in `runs`; the
    finder removed and the modules forgotten afterwards."""
    log = type(sys)("lazytest_log")
    runs: list[str] = []
    log.runs = runs  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "lazytest_log", log)
    (tmp_path / "lazytest_a.py").write_text(MODULE)
    (tmp_path / "lazytest_b.py").write_text(MODULE)
    pkg = tmp_path / "lazytest_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "sub.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    saved = list(sys.meta_path)
    lazyimports.uninstall()  # one an earlier test's import installed (the endpoint's tap)
    yield runs
    sys.meta_path[:] = saved
    for name in ("lazytest_a", "lazytest_b", "lazytest_pkg", "lazytest_pkg.sub"):
        sys.modules.pop(name, None)


def test_a_listed_module_runs_at_its_first_attribute_use(where: list[str]) -> None:
    lazyimports.install(["lazytest_a"])
    import lazytest_a

    assert where == [] and lazyimports.is_lazy("lazytest_a")
    assert lazytest_a.VALUE == 42
    assert where == ["lazytest_a"] and not lazyimports.is_lazy("lazytest_a")
    # Then the very module an eager import makes: its own loader, in sys.modules.
    assert sys.modules["lazytest_a"] is lazytest_a
    assert type(lazytest_a) is type(sys)
    assert isinstance(lazytest_a.__loader__, importlib.machinery.SourceFileLoader)
    spec = lazytest_a.__spec__
    assert spec is not None and spec.loader is lazytest_a.__loader__
    assert lazytest_a.VALUE == 42 and where == ["lazytest_a"]  # once


def test_a_submodule_imported_as_a_module_object_stays_unloaded(where: list[str]) -> None:
    lazyimports.install(["lazytest_pkg.sub"])
    from lazytest_pkg import sub

    assert where == [] and lazyimports.is_lazy("lazytest_pkg.sub")
    assert sys.modules["lazytest_pkg"].sub is sub
    assert sub.VALUE == 42 and where == ["lazytest_pkg.sub"]


def test_a_second_import_elsewhere_leaves_it_unloaded(where: list[str]) -> None:
    """The import statement reads ``__spec__`` of a module it finds in sys.modules (is
    it still initialising?): that look loads nothing; the module is the same object."""
    lazyimports.install(["lazytest_a"])
    import lazytest_a

    again = importlib.import_module("lazytest_a")
    ns: dict[str, object] = {}
    exec("import lazytest_a as third", ns)
    assert again is lazytest_a is ns["third"]
    assert where == [] and lazyimports.is_lazy("lazytest_a")
    assert lazytest_a.__spec__ is not None and where == []
    assert lazytest_a.__name__ == "lazytest_a" and where == ["lazytest_a"]


def test_from_import_of_a_name_loads_it_there_and_then(where: list[str]) -> None:
    lazyimports.install(["lazytest_a"])
    from lazytest_a import VALUE

    assert VALUE == 42 and where == ["lazytest_a"]
    assert not lazyimports.is_lazy("lazytest_a")


def test_only_listed_modules_and_not_already_imported_ones(where: list[str]) -> None:
    import lazytest_a  # eager, before install

    lazyimports.install(["lazytest_a"])
    import lazytest_b  # noqa: F401  # not listed: eager

    assert where == ["lazytest_a", "lazytest_b"]
    assert not lazyimports.is_lazy("lazytest_a") and not lazyimports.is_lazy("lazytest_b")
    assert importlib.import_module("lazytest_a") is lazytest_a


def test_install_is_once_and_uninstall_makes_imports_eager(where: list[str]) -> None:
    lazyimports.install(["lazytest_a"])
    lazyimports.install(["lazytest_b"])  # a second call adds nothing
    finders = [f for f in sys.meta_path if isinstance(f, lazyimports._LazyFinder)]
    assert len(finders) == 1 and finders[0].names == {"lazytest_a"}
    lazyimports.uninstall()
    import lazytest_a  # noqa: F401

    assert where == ["lazytest_a"]
    assert not any(isinstance(f, lazyimports._LazyFinder) for f in sys.meta_path)


def test_a_missing_listed_module_is_an_import_error_as_before(where: list[str]) -> None:
    lazyimports.install(["lazytest_missing"])
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("lazytest_missing")


def test_an_extension_module_is_left_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only Python code is made lazy: an extension module's work is its creation."""
    spec = importlib.util.find_spec("_decimal")
    assert spec is not None and isinstance(spec.loader, importlib.machinery.ExtensionFileLoader)
    monkeypatch.delitem(sys.modules, "_decimal", raising=False)
    finder = lazyimports._LazyFinder(["_decimal"])
    found = finder.find_spec("_decimal", None)
    assert found is not None and isinstance(found.loader, importlib.machinery.ExtensionFileLoader)


def test_every_listed_module_is_python_code_that_exists() -> None:
    """A name that no longer exists (a Twisted or Python upgrade), or became an extension
    module, would silently stop being lazy: each is a Python source module here."""
    for name in sorted(lazyimports.LAZY):
        spec = importlib.util.find_spec(name)
        assert spec is not None, name
        assert isinstance(spec.loader, importlib.machinery.SourceFileLoader), name


def test_is_lazy_loads_nothing(where: list[str]) -> None:
    lazyimports.install(["lazytest_a"])
    import lazytest_a  # noqa: F401

    for _ in range(2):
        assert lazyimports.is_lazy("lazytest_a")
    assert where == [] and not lazyimports.is_lazy("lazytest_never_imported")


def test_a_module_that_substitutes_itself_in_sys_modules_loads(where: list[str]) -> None:
    """eyes19b: twisted.internet.ssl puts a proxy of itself in sys.modules (Twisted's
    deprecatedModuleAttribute); loaded lazily, its first use was LazyLoader's `ValueError:
    module object for 'twisted.internet.ssl' substituted in sys.modules during a lazy
    load` (`pktlab run ping --listen` over TLS: that one line, exit 2)."""
    proxy = "sys.modules[__name__] = type(sys)('lazytest_b_proxy')\n"
    Path(sys.path[0], "lazytest_b.py").write_text(MODULE + proxy)  # (the fixture's folder)
    importlib.invalidate_caches()
    lazyimports.install(["lazytest_b"])
    import lazytest_b

    assert lazyimports.is_lazy("lazytest_b")
    assert lazytest_b.VALUE == 42 and where == ["lazytest_b"]
    assert lazytest_b.VALUE == 42 and where == ["lazytest_b"]  # once
    assert sys.modules["lazytest_b"].__name__ == "lazytest_b_proxy"  # as an eager import


def test_a_module_whose_body_fails_fails_as_before(where: list[str]) -> None:
    Path(sys.path[0], "lazytest_b.py").write_text(MODULE + "raise ValueError('its own')\n")
    importlib.invalidate_caches()
    lazyimports.install(["lazytest_b"])
    import lazytest_b

    with pytest.raises(ValueError, match="its own"):
        lazytest_b.VALUE  # noqa: B018


def test_the_endpoints_lazy_modules_are_among_those_a_run_makes_lazy() -> None:
    """Under `pktlab run` the in-process endpoint's tap installs nothing more (the finder
    is installed once per process): what it expects lazy must be lazy there too."""
    assert lazyimports.ENDPOINT <= lazyimports.LAZY
