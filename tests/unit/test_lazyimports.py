"""packetlab.lazyimports: modules Twisted imports but a run may not use, loaded on use."""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import re
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


PATTERNS = """
import re
import lazytest_b
WORD = re.compile(r"[a-z]+")


class Parser:
    DIGITS = re.compile(rb"[0-9]+", re.ASCII)
"""


def test_a_listed_module_compiles_its_own_patterns_at_first_use(
    where: list[str], tmp_path: Path
) -> None:
    """A module of `LAZY_PATTERNS` runs at once, its own `re.compile` calls making
    `LazyPattern`s that compile at first use; those of a module it imports are compiled
    as before, and `re.compile` is the real one again afterwards."""
    (tmp_path / "lazytest_re.py").write_text(PATTERNS)
    (tmp_path / "lazytest_b.py").write_text(MODULE + "EAGER = __import__('re').compile('b')\n")
    compile_before = re.compile
    lazyimports.install([], patterns=["lazytest_re"])
    import lazytest_re

    try:
        assert re.compile is compile_before
        assert isinstance(lazytest_re.WORD, lazyimports.LazyPattern)
        assert isinstance(lazytest_re.Parser.DIGITS, lazyimports.LazyPattern)
        assert isinstance(sys.modules["lazytest_b"].EAGER, re.Pattern)
        assert isinstance(lazytest_re.__loader__, importlib.machinery.SourceFileLoader)
        assert lazytest_re.__spec__.loader is lazytest_re.__loader__
        match = lazytest_re.WORD.match("abc1")
        assert match is not None and match.group() == "abc"
        assert lazytest_re.Parser.DIGITS.findall(b"1 22") == [b"1", b"22"]
        assert lazytest_re.WORD.pattern == "[a-z]+" and lazytest_re.Parser.DIGITS.flags & re.ASCII
    finally:
        sys.modules.pop("lazytest_re", None)


def test_a_module_that_kept_re_compile_meanwhile_compiles_after(
    where: list[str], tmp_path: Path
) -> None:
    """A module imported while a module of `LAZY_PATTERNS` runs, and that keeps
    `re.compile` under its own name (`_strptime`: ``from re import compile as
    re_compile``, first imported by a `time.strptime` then), holds `_compile_later` for
    good: its compiles after the window are the real ones (they raised IndexError)."""
    (tmp_path / "lazytest_re.py").write_text(PATTERNS)
    (tmp_path / "lazytest_b.py").write_text(MODULE + "from re import compile as re_compile\n")
    lazyimports.install([], patterns=["lazytest_re"])
    import lazytest_re

    try:
        kept = sys.modules["lazytest_b"].re_compile
        assert kept is lazyimports._compile_later  # what it took while lazytest_re ran
        pattern = kept(r"(\d+)-(\d+)", re.ASCII)
        assert isinstance(pattern, re.Pattern) and pattern.flags & re.ASCII
        found = pattern.match("12-3")
        assert found is not None and found.groups() == ("12", "3")
        assert isinstance(lazytest_re.WORD, lazyimports.LazyPattern)
    finally:
        sys.modules.pop("lazytest_re", None)


def test_a_lazy_pattern_copies_and_pickles_as_a_pattern_does() -> None:
    """`copy.copy` and pickle made a `LazyPattern` without its slots, whose first
    attribute looked up recursed until RecursionError; a copy is now the pattern itself
    (as `re.Pattern`'s), a pickle gives the compiled pattern."""
    import copy
    import pickle

    lazy = lazyimports.LazyPattern(r"[a-z]+", re.IGNORECASE)
    assert copy.copy(lazy) is lazy and copy.deepcopy(lazy) is lazy
    assert copy.deepcopy({"p": [lazy]})["p"][0] is lazy
    back = pickle.loads(pickle.dumps(lazy))
    assert isinstance(back, re.Pattern) and back == re.compile(r"[a-z]+", re.IGNORECASE)
    bare = lazyimports.LazyPattern.__new__(lazyimports.LazyPattern)
    with pytest.raises(AttributeError):
        bare.match  # noqa: B018
    assert lazy.match("ABc1") is not None


def test_cryptographys_name_parser_compiles_nothing_until_used() -> None:
    """`cryptography.x509.name` (imported by every run's TLS) compiles ~6 ms of regular
    expressions for `Name.from_rfc4514_string`, which no run calls: with the finder they
    compile at first use, and parse as before."""
    import cryptography.x509

    spec = lazyimports._LazyFinder([], lazyimports.LAZY_PATTERNS).find_spec(
        "cryptography.x509.name", cryptography.x509.__path__
    )
    assert spec is not None and isinstance(spec.loader, lazyimports._PatternLoader)
    module = importlib.util.module_from_spec(spec)  # a copy: the imported one is left alone
    spec.loader.exec_module(module)
    parser = module._RFC4514NameParser
    names = ("_OID_RE", "_DESCR_RE", "_PAIR_MULTI_RE", "_STRING_RE", "_HEXSTRING_RE")
    assert all(isinstance(getattr(parser, n), lazyimports.LazyPattern) for n in names)
    text = r"CN=a\,b+OU=x,O=y,1.2.3=#0403616263"
    eager = cryptography.x509.Name.from_rfc4514_string(text).rfc4514_string()
    assert module.Name.from_rfc4514_string(text).rfc4514_string() == eager
    assert eager.startswith(r"CN=a\,b+OU=x,O=y,1.2.3=")


def test_every_pattern_module_is_python_code_that_exists() -> None:
    for name in sorted(lazyimports.LAZY_PATTERNS):
        spec = importlib.util.find_spec(name)
        assert spec is not None, name
        assert isinstance(spec.loader, importlib.machinery.SourceFileLoader), name


def test_a_partial_package_starts_with_its_names_and_runs_its_code_on_another(
    where: list[str], tmp_path: Path
) -> None:
    """A package of `PARTIAL` starts with its listed names, from their submodules; its
    own code runs, in the same module, at the first other name asked (`from p import X`
    too), and the package is then what an eager import makes."""
    pkg = tmp_path / "lazytest_part"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(MODULE + "from .sub import NAME\nOTHER = NAME + 1\n")
    (pkg / "sub.py").write_text(MODULE + "NAME = 5\n")
    lazyimports.install([], [], {"lazytest_part": {"NAME": "sub"}})
    try:
        from lazytest_part import NAME

        assert NAME == 5 and where == ["lazytest_part.sub"]
        assert lazyimports.is_partial("lazytest_part")
        package = sys.modules["lazytest_part"]
        assert isinstance(package.__loader__, importlib.machinery.SourceFileLoader)
        from lazytest_part import OTHER  # another name: the package's code runs

        assert OTHER == 6 and where == ["lazytest_part.sub", "lazytest_part"]
        assert not lazyimports.is_partial("lazytest_part") and "__getattr__" not in vars(package)
        with pytest.raises(AttributeError):
            package.MISSING  # noqa: B018
    finally:
        for name in ("lazytest_part", "lazytest_part.sub"):
            sys.modules.pop(name, None)


def test_asyncios_listed_names_are_its_own() -> None:
    """The names `PARTIAL` gives asyncio before its code runs are the objects its code
    exports (a Python upgrade that moved one would show here)."""
    import asyncio

    for package, names in lazyimports.PARTIAL.items():
        module = importlib.import_module(package)
        for name, submodule in names.items():
            found = importlib.import_module(f"{package}.{submodule}")
            assert getattr(found, name) is getattr(module, name), (asyncio, name)


def test_the_endpoints_lazy_modules_are_among_those_a_run_makes_lazy() -> None:
    """Under `pktlab run` the in-process endpoint's tap installs nothing more (the finder
    is installed once per process): what it expects lazy must be lazy there too."""
    assert lazyimports.DAEMON <= lazyimports.LAZY
