"""The wrap shim is used only when built from these sources (session 33, review33B).

A shim built later than the sources by another packetlab install sharing
~/.cache/packetlab (its "F" request 3 bytes, ours 11) passed the old time check: the
wrapper waited for 8 more bytes, the shim for its answer, and the program's connect hung.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from packetlab.wrap import shim


def _elf_with_build_id(digest: bytes) -> bytes:
    # what the linker writes for --build-id: the note's sizes, type 3, "GNU\0", the id
    note = (4).to_bytes(4, "little") + len(digest).to_bytes(4, "little")
    return b"\x7fELF" + b"\0" * 60 + note + (3).to_bytes(4, "little") + b"GNU\0" + digest


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / shim.LIBNAME
    monkeypatch.setattr(shim, "_candidates", lambda: [path])
    return path


def test_a_shim_newer_than_the_sources_but_built_from_others_is_not_used(cache: Path) -> None:
    cache.write_bytes(_elf_with_build_id(bytes(20)))  # another install's sources
    later = max(src.stat().st_mtime for src in shim.SOURCES) + 3600
    os.utime(cache, (later, later))
    with pytest.raises(shim.ShimError, match="not built"):
        shim.wrap_shim(build=False)


def test_a_shim_built_from_these_sources_is_used(cache: Path) -> None:
    cache.write_bytes(_elf_with_build_id(shim.sources_digest()))
    os.utime(cache, (0, 0))  # (its time does not matter: a checkout's files are newer)
    assert shim.wrap_shim(build=False) == cache


def test_the_digest_follows_every_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = tmp_path / "a.c", tmp_path / "b.h"
    a.write_bytes(b"int x;")
    b.write_bytes(b"")
    monkeypatch.setattr(shim, "SOURCES", (a,))
    monkeypatch.setattr(shim, "HEADERS", (b,))
    before = shim.sources_digest()
    b.write_bytes(b"#define F_SIZE 11\n")
    assert shim.sources_digest() != before
    assert len(before) == 20  # the size of the linker's own build id
