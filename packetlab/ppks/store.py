"""The `~/.pktlab` directory (PROTOCOL.md §4.1), laid out as the reference init does:

~/.pktlab/keys/NAME        private key, PEM PKCS#8, mode 0600
~/.pktlab/keys/NAME.pub    public key, PEM SubjectPublicKeyInfo
~/.pktlab/certs/NAME.cert  certificate, PEM
~/.pktlab/csrs/NAME.csr    certificate signing request, PEM PKCS#10
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from packetlab.paths import expand_path, pktlab_home

from .cert import Certificate, load_certificates
from .keys import read_private_key, read_public_key

__all__ = ["PktlabHome", "default_home"]


def default_home() -> Path:
    """`$PKTLAB_HOME` if set, else `~/.pktlab` (`packetlab.paths.pktlab_home`)."""
    return pktlab_home()


@dataclass(frozen=True)
class PktlabHome:
    root: Path

    @classmethod
    def at(cls, path: str | os.PathLike[str] | None = None) -> PktlabHome:
        """The home at `path` (``~`` expanded; ValueError for an unknown ``~user``), or the
        default one."""
        return cls(expand_path(path) if path is not None else default_home())

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    @property
    def certs_dir(self) -> Path:
        return self.root / "certs"

    @property
    def csrs_dir(self) -> Path:
        return self.root / "csrs"

    @property
    def accounting_db(self) -> Path:
        """Our resource accounting database (SQLite; the reference uses LMDB at
        `endpt.rlim`, a different format, so the name differs on purpose)."""
        return self.root / "endpt.rlim.sqlite3"

    def key_path(self, name: str) -> Path:
        return self.keys_dir / name

    def pubkey_path(self, name: str) -> Path:
        return self.keys_dir / f"{name}.pub"

    def cert_path(self, name: str) -> Path:
        return self.certs_dir / f"{name}.cert"

    def csr_path(self, name: str) -> Path:
        return self.csrs_dir / f"{name}.csr"

    def exists(self) -> bool:
        """True when any of keys/, certs/, csrs/ already holds a file."""
        return any(d.is_dir() and any(d.iterdir()) for d in self.dirs())

    def dirs(self) -> tuple[Path, Path, Path]:
        return self.keys_dir, self.certs_dir, self.csrs_dir

    def create_dirs(self) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        for d in self.dirs():
            d.mkdir(mode=0o700, exist_ok=True)

    def private_key(self, name: str, passphrase: bytes | None = None) -> Ed25519PrivateKey:
        return read_private_key(self.key_path(name), passphrase)

    def public_key(self, name: str) -> Ed25519PublicKey:
        return read_public_key(self.pubkey_path(name))

    def certificate(self, name: str) -> Certificate:
        return load_certificates(self.cert_path(name).read_bytes())[0]
