"""ProgramDirPath: files found by the digest of their encoding; chain digests (§7.2-7.3)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from packetlab.controller.programs import ProgramDir, monitor_digests
from packetlab.ppks import CertLimits, generate_private_key, issue_certificate


def test_programs_by_digest_of_the_encoding(tmp_path: Path) -> None:
    (tmp_path / "mon.wasm").write_bytes(b"\0asm-module")
    (tmp_path / "filter").write_bytes(b"12345678")  # no extension: eBPF
    (tmp_path / "f2.ebpf").write_bytes(b"abcdefgh")
    (tmp_path / ".hidden.wasm").write_bytes(b"ignored")
    (tmp_path / "notes.txt").write_bytes(b"?")
    d = ProgramDir(tmp_path)
    wasm = b"\x01\0asm-module"
    ebpf = b"\x0012345678"
    assert set(d.by_digest) == {
        hashlib.sha256(wasm).digest(),
        hashlib.sha256(ebpf).digest(),
        hashlib.sha256(b"\x00abcdefgh").digest(),
    }
    found, missing = d.for_digests([hashlib.sha256(ebpf).digest(), b"\x11" * 32,
                                    hashlib.sha256(wasm).digest()])  # fmt: skip
    assert found == [ebpf, wasm] and missing == [b"\x11" * 32]
    assert d.skipped == ["notes.txt: unknown extension '.txt'"]


def test_missing_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"ProgramDirPath .*nope"):
        ProgramDir(tmp_path / "nope")


def test_monitor_digests_of_a_chain() -> None:
    eop, exper, xc = generate_private_key(), generate_private_key(), generate_private_key()
    d1, d2 = b"\xaa" * 32, b"\xbb" * 32
    exppriv = issue_certificate("exppriv", eop, exper, 0, 2**31 - 1,
                                limits=CertLimits(monitor_digests=(d1, d2)))  # fmt: skip
    pubcmd = issue_certificate("pubcmd", exper, xc, 0, 2**31 - 1)
    assert monitor_digests([pubcmd, exppriv]) == (d1, d2)


def test_unreadable_program_is_skipped_with_its_reason(tmp_path: Path) -> None:
    """A file that cannot be read (here /proc/self/mem: EIO at offset 0) is skipped with a
    warning, not a traceback out of the manager's start-up."""
    (tmp_path / "bad.wasm").symlink_to("/proc/self/mem")
    (tmp_path / "good.wasm").write_bytes(b"\0asm")
    d = ProgramDir(tmp_path)
    assert list(d.by_digest) == [hashlib.sha256(b"\x01\0asm").digest()]
    assert len(d.skipped) == 1 and d.skipped[0].startswith("bad.wasm: cannot read")
