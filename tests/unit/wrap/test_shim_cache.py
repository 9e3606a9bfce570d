"""Where `pktlab wrap`'s shim is looked for (packetlab.wrap.shim): the user's cache is
shared by every install the user runs, so a shim there built from other sources (another
version, the install before an upgrade) must never be taken, however new it is."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from packetlab.wrap import shim


def install(root: Path, version: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A package whose wrap sources say `version`, read-only in effect (no shim beside
    them), its sources a day old; the shim module pointed at it."""
    csrc = root / "packetlab" / "wrap" / "csrc"
    csrc.mkdir(parents=True, exist_ok=True)
    old = 1_700_000_000
    for src in shim.SOURCES + shim.HEADERS:
        path = csrc / src.name
        path.write_text(f"/* {version} */\n")
        os.utime(path, (old, old))
    monkeypatch.setattr(shim, "CSRC", csrc)
    monkeypatch.setattr(shim, "SOURCES", tuple(csrc / s.name for s in shim.SOURCES))
    monkeypatch.setattr(shim, "HEADERS", tuple(csrc / h.name for h in shim.HEADERS))


def built_in_cache(content: str) -> Path:
    """What a build into the cache leaves (the shim `build_shim` writes there)."""
    out = shim._candidates()[-1]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(b"GNU\0" + shim.sources_digest() + content.encode())  # its build id
    return out


def test_a_cached_shim_of_other_sources_is_not_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: one ~/.cache/packetlab/libpktwrap.so for every install, taken when newer
    # than the sources: version 1's shim was preloaded into version 2's programs.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    install(tmp_path / "v1", "version 1", monkeypatch)
    v1 = built_in_cache("shim of version 1")
    assert shim.wrap_shim(build=False) == v1
    install(tmp_path / "v2", "version 2", monkeypatch)
    with pytest.raises(shim.ShimError, match="not built"):
        shim.wrap_shim(build=False)
    v2 = built_in_cache("shim of version 2")
    assert v2 != v1 and shim.wrap_shim(build=False) == v2
    install(tmp_path / "v1", "version 1", monkeypatch)  # both stay usable side by side
    assert shim.wrap_shim(build=False) == v1 and v1.read_bytes().endswith(b"shim of version 1")


def test_the_cache_name_follows_the_sources_not_their_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    install(tmp_path / "a", "same", monkeypatch)
    a = shim._candidates()[-1]
    install(tmp_path / "b", "same", monkeypatch)  # another venv of the same release
    assert shim._candidates()[-1] == a
    assert a.parent == tmp_path / "cache" / "packetlab"
