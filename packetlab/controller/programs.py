"""`ProgramDirPath`: monitor and filter programs found by digest (PROTOCOL.md §7.2, §7.3).

Each file of the directory is a program; its type comes from the extension (``.wasm``:
WebAssembly; ``.ebpf`` or no extension: eBPF; dotfiles are ignored). It is encoded (type
byte + bytes, §8.1) and indexed by the SHA-256 of that encoding, the digest that
certificates name in their ``monitor=`` limit.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from packetlab.ppks import Certificate, combine_limits
from packetlab.wire.program import PKTLAB_EBPF, PKTLAB_WASM, program_digest

__all__ = ["ProgramDir", "monitor_digests"]


class ProgramDir:
    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = None if path is None else Path(path)
        self.by_digest: dict[bytes, tuple[Path, bytes]] = {}
        self.skipped: list[str] = []
        if self.path is None:
            return
        try:
            entries = sorted(self.path.iterdir())
        except OSError as e:
            raise ValueError(f"ProgramDirPath {self.path}: {e.strerror}") from None
        for p in entries:
            if p.name.startswith(".") or not p.is_file():
                continue
            if p.suffix == ".wasm":
                kind = PKTLAB_WASM
            elif p.suffix in ("", ".ebpf"):
                kind = PKTLAB_EBPF
            else:
                self.skipped.append(f"{p.name}: unknown extension {p.suffix!r}")
                continue
            try:
                encoded = bytes([kind]) + p.read_bytes()
            except OSError as e:
                self.skipped.append(f"{p.name}: cannot read: {e.strerror or e}")
                continue
            self.by_digest[program_digest(encoded)] = (p, encoded)

    def for_digests(self, digests: Sequence[bytes]) -> tuple[list[bytes], list[bytes]]:
        """The encoded programs for `digests` in order, and the digests not found."""
        found, missing = [], []
        for d in digests:
            hit = self.by_digest.get(d)
            if hit is None:
                missing.append(d)
            else:
                found.append(hit[1])
        return found, missing


def monitor_digests(chain: Sequence[Certificate]) -> tuple[bytes, ...]:
    """The monitor digests a chain requires (the union over its certificates)."""
    return combine_limits(chain).monitor_digests
