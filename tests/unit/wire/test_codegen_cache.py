"""packetlab.wire.codegen.compile_cached: generated fast paths compiled once per source."""

from __future__ import annotations

import marshal
import sys
from pathlib import Path
from types import CodeType
from typing import Any

import pytest

from packetlab import wire
from packetlab.wire import codegen

SRC = "def f(x):\n    return x + 1\n"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "pktlab" / "wire-code"


def run(code: CodeType) -> object:
    ns: dict[str, Any] = {}
    exec(code, ns)
    return ns["f"](41)


def test_compiled_once_then_read_back(cache: Path) -> None:
    first = codegen.compile_cached(SRC, "<test f>")
    (path,) = cache.iterdir()
    again = codegen.compile_cached(SRC, "<test f>")
    assert run(first) == run(again) == 42 and again.co_filename == "<test f>"
    assert list(cache.iterdir()) == [path]
    codegen.compile_cached(SRC.replace("+ 1", "+ 2"), "<test f>")  # another source
    assert len(list(cache.iterdir())) == 2


def test_a_damaged_cache_file_is_compiled_again(cache: Path) -> None:
    codegen.compile_cached(SRC, "<test f>")
    (path,) = cache.iterdir()
    for junk in (b"", b"\x00garbage", b"N"):  # N: marshalled None, not code
        path.write_bytes(junk)
        assert run(codegen.compile_cached(SRC, "<test f>")) == 42


def test_an_unwritable_cache_still_compiles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pktlab").write_text("a file where the directory would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert run(codegen.compile_cached(SRC, "<test f>")) == 42


# ------------------------------------------- derived code kept without construct (issue 14)


@pytest.fixture
def fresh_kept(cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty on-disk store and no derived code in memory."""
    monkeypatch.setattr(codegen, "_bundle", None)
    return cache


def _no_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make deriving impossible: only kept code can load now."""
    monkeypatch.setattr(codegen, "_bundle", None)
    monkeypatch.setitem(sys.modules, "packetlab.wire.sourcegen", None)  # import fails


def test_kept_code_runs_without_the_generator(
    fresh_kept: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    msgs = [
        wire.Nsend(
            sktid=1, family=4, proto=17, time=5, tag=7, data=b"x", raddr=b"\1\2\3\4", rport=9
        ),
        wire.Xreg(snikey=b"abc1"),  # a rule reading a compiled pattern
        wire.Xpub(chlist=[b"a", b"bc"], eopkey=b"k" * wire.constants.KEYID_LEN),  # chlist codec
        wire.Result(errid=int(wire.Status.ECTLMONUKN), monindx=3),  # rule reading constants
    ]
    derived = {type(m): codegen.derive(type(m)) for m in msgs}
    packer = codegen.derive_packer(wire.Ntag, "sktid", "tag", "time")
    assert [p.name for p in fresh_kept.glob("derived-*")]  # kept on disk
    _no_generator(monkeypatch)
    for m in msgs:
        dec, enc, src = codegen.derive(type(m))
        assert src == derived[type(m)][2]
        frame = enc(m)
        assert frame == wire.encode(m) and dec(frame[4:]) == m
    bad = wire.encode(wire.Xreg(snikey=b"abc1")).replace(b"abc1", b"ABC1")
    with pytest.raises(wire.MalformedMessage, match="snikey"):
        codegen.derive(wire.Xreg)[0](bad[4:])
    with pytest.raises(wire.MalformedMessage, match="chlist"):
        codegen.derive(wire.Xpub)[0](b"\x05ab")
    again = codegen.derive_packer(wire.Ntag, "sktid", "tag", "time")
    assert again(1, 2, 3) == packer(1, 2, 3) and again.source == packer.source  # type: ignore[attr-defined]


def test_damaged_kept_code_is_derived_again(
    fresh_kept: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    codegen.derive(wire.Mread)
    (path,) = fresh_kept.glob("derived-*")
    for junk in (b"", b"\x00garbage", b"N"):
        path.write_bytes(junk)
        monkeypatch.setattr(codegen, "_bundle", None)
        dec, enc, _ = codegen.derive(wire.Mread)
        assert dec(enc(wire.Mread(addr=1, len=2))[4:]) == wire.Mread(addr=1, len=2)


def test_a_kept_table_is_read_back_and_derived_again_when_damaged(
    fresh_kept: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`kept_table` (jsonform's field tables): derived once, then read back without
    deriving; an entry that is unreadable or not of the shape its `check` accepts is
    derived again, never returned."""
    calls: list[int] = []

    def derive() -> dict[str, Any]:
        calls.append(1)
        return {"a": [("x", "int", True)]}

    def ok(t: Any) -> bool:
        return isinstance(t, dict) and t.keys() == {"a"}

    assert codegen.kept_table("test table", derive, ok) == {"a": [("x", "int", True)]}
    monkeypatch.setattr(codegen, "_bundle", None)  # a new process: read from disk
    assert codegen.kept_table("test table", derive, ok) == {"a": [("x", "int", True)]}
    assert len(calls) == 1
    for junk in (b"", b"\x00garbage", marshal.dumps(None), marshal.dumps({"b": 1})):
        codegen._kept()["test table"] = junk
        assert codegen.kept_table("test table", derive, ok) == {"a": [("x", "int", True)]}
    assert len(calls) == 5


def test_jsonform_tables_kept_are_those_derived_from_the_declarations(
    fresh_kept: Path,
) -> None:
    from packetlab.wire import jsonform

    kept = codegen.kept_table("jsonform tables", jsonform._derive_tables, jsonform._tables_ok)
    assert kept == jsonform._derive_tables() == {"fields": jsonform._FIELDS, "bits": jsonform._BITS}
    assert jsonform._tables_ok(kept) and not jsonform._tables_ok({"fields": {}, "bits": {}})


def test_a_rule_reading_more_than_constants_is_refused() -> None:
    helper = len

    def pred(x: int) -> bool:
        return helper is not None

    with pytest.raises(TypeError, match="closures"):
        codegen._constants(pred)  # type: ignore[arg-type]
    glob = {"helper": object()}
    code = compile("def pred2(x):\n    return helper is not None\n", "<t>", "exec")
    exec(code, glob)
    with pytest.raises(TypeError, match="only constants"):
        codegen._constants(glob["pred2"])  # type: ignore[arg-type]
