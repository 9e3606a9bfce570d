"""packetlab.classcode: the generated methods of dataclasses and attrs classes, kept compiled.
A class made through the table has the very code objects it would have had without it."""

from __future__ import annotations

import dataclasses
import marshal
import os
import types
from pathlib import Path
from typing import Any

import attr
import attr._make
import pytest

from packetlab import classcode

DATACLASS = """
from __future__ import annotations
import dataclasses
import marshal

@dataclasses.dataclass(frozen=True, order=True)
class Point:
    x: int
    y: int | None = None
    tags: tuple[str, ...] = ()

@dataclasses.dataclass(slots=True)
class Slot:
    a: bytes = b""
"""

ATTRS = """
import attr

@attr.s(auto_attribs=True, frozen=True)
class Pair:
    left: int
    right: str = "r"

@attr.s(auto_attribs=True)
class Box:
    inside: list[int]
"""


def _make(source: str, name: str) -> dict[str, Any]:
    module = types.ModuleType(name)
    import sys

    sys.modules[name] = module  # dataclasses looks the class's module up
    try:
        exec(source, module.__dict__)
    finally:
        del sys.modules[name]
    return module.__dict__


def _codes(cls: type) -> dict[str, tuple[Any, ...]]:
    """The class's own functions' code: equal code objects (bytecode, constants, names,
    flags, lines), and their file names."""
    return {
        k: (v.__code__, v.__code__.co_filename, v.__code__.co_flags)
        for k, v in vars(cls).items()
        if isinstance(v, types.FunctionType)
    }


@pytest.fixture
def table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(classcode, "_kept", None)
    monkeypatch.setattr(classcode, "_new", {})
    monkeypatch.setattr(classcode, "_loaded", {})
    return Path(classcode.table_path())


def _fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """As a new process: the table read again from disk, nothing compiled yet."""
    monkeypatch.setattr(classcode, "_kept", None)
    monkeypatch.setattr(classcode, "_new", {})
    monkeypatch.setattr(classcode, "_loaded", {})


def test_a_dataclass_through_the_table_has_the_code_it_would_have(
    table: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = _make(DATACLASS, "zz_dc_plain")
    monkeypatch.setattr(dataclasses, "exec", classcode._exec, raising=False)
    first = _make(DATACLASS, "zz_dc_plain")
    assert classcode._new  # compiled, for the table
    classcode.save()
    assert table.is_file() and not table.stat().st_mode & 0o077
    _fresh(monkeypatch)
    kept = _make(DATACLASS, "zz_dc_plain")
    assert classcode._new == {}  # every method came from the table
    for name in ("Point", "Slot"):
        assert _codes(plain[name]) == _codes(first[name]) == _codes(kept[name]), name
    p = kept["Point"](1, 2)
    assert (p, repr(p), p < kept["Point"](2)) == (
        kept["Point"](1, 2),
        "Point(x=1, y=2, tags=())",
        True,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = 3


def test_an_attrs_class_keeps_its_file_name_and_future_flags(
    table: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = _make(ATTRS, "zz_attrs")
    monkeypatch.setattr(attr._make, "compile", classcode._compile, raising=False)
    _make(ATTRS, "zz_attrs")
    classcode.save()
    _fresh(monkeypatch)
    kept = _make(ATTRS, "zz_attrs")
    assert classcode._new == {}
    for name in ("Pair", "Box"):
        assert _codes(plain[name]) == _codes(kept[name]), name
    assert kept["Pair"](1) == kept["Pair"](1, "r") and kept["Box"]([1]).inside == [1]
    # Pair's __hash__ holds a hash of this process's: kept with a stand-in for it, which
    # the code from the table has replaced (`_codes` compares the constants too).
    kept_files = {marshal.loads(blob).co_filename for blob in classcode._read().values()}
    assert any("zz_attrs.Box" in f for f in kept_files), kept_files
    assert any("zz_attrs.Pair" in f for f in kept_files), kept_files
    assert hash(kept["Pair"](1)) == hash(kept["Pair"](1, "r")) != hash(kept["Pair"](2))


HASH = """def __hash__(self):
        return hash((
                {salt},
                self.a,
            ))"""


@pytest.mark.parametrize("salt", [-4617315517961328365, 1234567890123456789])
def test_a_hash_method_of_any_salt_comes_from_one_entry_with_its_own_salt(
    table: Path, salt: int
) -> None:
    """attrs's ``__hash__`` hashes a number of the process's own first (a string's hash):
    one table entry for every number, the code the process's own number would compile to
    (a cached-hash one, where it stands deeper, too)."""
    other = int(str(salt)[:-1] + str(9 - int(str(salt)[-1])))  # as long, another salt
    classcode._compile(HASH.format(salt=other), "<attrs generated hash m.C>", "exec")
    assert len(classcode._new) == 1
    code = classcode._compile(HASH.format(salt=salt), "<attrs generated hash m.C>", "exec")
    assert len(classcode._new) == 1  # the same entry
    assert code == compile(HASH.format(salt=salt), "<attrs generated hash m.C>", "exec")
    cached = HASH.replace("return hash((", "if x:\n            y = f(hash((").replace(
        "            ))", "            )))"
    )
    code = classcode._compile(cached.format(salt=salt), "<f>", "exec")
    assert code == compile(cached.format(salt=salt), "<f>", "exec")
    two = HASH.format(salt=salt) + "\n" + HASH.format(salt=salt).replace("__hash__", "h2")
    assert classcode._compile(two, "<f>", "exec") == compile(two, "<f>", "exec")  # compiled


def test_a_table_another_could_write_or_of_another_interpreter_is_not_read(
    table: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = "def f():\n return 1\n"
    classcode.cached_compile(source, "<x>", "exec", dont_inherit=True)
    classcode.save()
    os.chmod(table, 0o666)
    _fresh(monkeypatch)
    assert classcode._table() == {}
    os.chmod(table, 0o600)
    table.write_bytes(b"\0\0\0\0" + table.read_bytes()[4:])  # another magic number
    _fresh(monkeypatch)
    assert classcode._table() == {}


def test_compile_inherits_its_callers_future_flags_unless_told_not_to(table: Path) -> None:
    # This module has `from __future__ import annotations`: an annotation stays a string.
    ns: dict[str, Any] = {}
    exec(classcode.cached_compile("def f(a: undefined_name): pass", "<t>", "exec"), ns)
    assert ns["f"].__annotations__ == {"a": "undefined_name"}
    code = classcode.cached_compile("def g(a: 1 + 1): pass", "<t>", "exec", dont_inherit=True)
    exec(code, ns)
    assert ns["g"].__annotations__ == {"a": 2}


def test_nothing_new_writes_nothing(table: Path) -> None:
    classcode.save()
    assert not table.exists()


def test_keep_generated_code_routes_both_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dataclasses, "exec", exec, raising=False)
    monkeypatch.setattr(attr._make, "compile", compile, raising=False)
    monkeypatch.setattr(classcode, "_saving", True)  # no atexit here
    classcode.keep_generated_code()
    assert dataclasses.exec is classcode._exec  # type: ignore[attr-defined]
    assert attr._make.compile is classcode._compile  # type: ignore[attr-defined]
    assert attr.s is not None


def test_no_home_no_table(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(classcode, "_kept", None)
    monkeypatch.setattr(classcode, "_new", {})
    monkeypatch.setattr(classcode, "_loaded", {})
    assert classcode.table_path() == ""
    classcode.cached_compile("x = 1\n", "<y>", "exec")
    classcode.save()
    assert list(tmp_path.iterdir()) == []  # nothing made in the working directory
