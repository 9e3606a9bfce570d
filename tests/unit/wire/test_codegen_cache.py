"""packetlab.wire.codegen.compile_cached: generated fast paths compiled once per source."""

from __future__ import annotations

from pathlib import Path
from types import CodeType
from typing import Any

import pytest

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
