"""Build and find our LD_PRELOAD shim libpktwrap.so and proxychains-ng.

libpktwrap.so = csrc/pktwrap_udp.c (UDP datagrams through the endpoint, via relay ports)
+ csrc/pktwrap_names.c (name and reverse-name lookups from the endpoint)
+ csrc/pktwrap_clock.c (the program's clocks, for timing fidelity), with csrc/pktwrap.h
what they share; each part acts only when its environment variable is set. `python -m
packetlab.wrap.shim` builds it (scripts/setup.sh runs it); `pktlab wrap` builds it on
first use when a C compiler is there.

A built shim is used only if it was built from these sources: the linker's build id is
their digest (`sources_digest`). The wrapper and the shim speak one request format (the
"F" request grew from 3 to 11 bytes in session 33: a wrapper waiting for 11 bytes and a
shim of 3 waiting for its answer hung the program's connect); a file's time alone took a
shim built later by another packetlab install sharing ~/.cache/packetlab.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

CSRC = Path(__file__).with_name("csrc")
SOURCES = (CSRC / "pktwrap_clock.c", CSRC / "pktwrap_udp.c", CSRC / "pktwrap_names.c")
HEADERS = (CSRC / "pktwrap.h",)
LIBNAME = "libpktwrap.so"
PROXYCHAINS_LIBS = (
    "/usr/lib/x86_64-linux-gnu/libproxychains.so.4",
    "/usr/lib/aarch64-linux-gnu/libproxychains.so.4",
    "/usr/lib/libproxychains.so.4",
    "/usr/lib/libproxychains4.so",
    "/usr/local/lib/libproxychains4.so",
)


class ShimError(RuntimeError):
    pass


def _candidates() -> list[Path]:
    """Beside the sources, then the user's cache. The cache is shared by every install
    the user runs (two versions, an upgrade): its shim is named by the sources it was
    built from, so one built from other sources is never taken, however new it is."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "packetlab"
    return [CSRC.parent / LIBNAME, cache / f"libpktwrap-{sources_digest().hex()[:16]}.so"]


def sources_digest() -> bytes:
    """The shim's build id: SHA-1 (the linker's own build id's size) of its sources."""
    h = hashlib.sha1(usedforsecurity=False)
    for src in (*SOURCES, *HEADERS):
        data = src.read_bytes()
        h.update(len(data).to_bytes(8, "big") + data)
    return h.digest()


def built_from(path: Path, digest: bytes) -> bool:
    """Whether the shim at `path` carries `digest` as its build id (its ELF note)."""
    try:
        data = path.read_bytes()
    except OSError:
        return False
    return b"GNU\0" + digest in data  # (the note's name, then its descriptor)


def wrap_shim(build: bool = True) -> Path:
    """The shim built from these sources; built now if missing (and `build`)."""
    digest = sources_digest()
    for path in _candidates():
        if built_from(path, digest):
            return path
    if not build:
        raise ShimError(f"libpktwrap.so is not built: run {sys.executable} -m packetlab.wrap.shim")
    return build_shim()


def build_shim() -> Path:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise ShimError("no C compiler (cc/gcc) to build libpktwrap.so")
    errors = []
    for out in _candidates():
        try:
            out.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # preloaded: ours only
            tmp = out.with_suffix(f".{os.getpid()}.tmp")
            # Made here first: a directory we cannot write (an install in site-packages
            # owned by root, run by a user) is then an OSError and the next place is
            # tried; the linker's "cannot open output file" was a ShimError that stopped.
            tmp.touch()
            cmd = [cc, "-shared", "-fPIC", "-O2", "-Wall", "-o", str(tmp), *map(str, SOURCES)]
            cmd += ["-ldl", "-lpthread", f"-Wl,--build-id=0x{sources_digest().hex()}"]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                tmp.unlink(missing_ok=True)
                raise ShimError(f"{' '.join(cmd)} failed:\n{done.stderr.strip()}")
            os.replace(tmp, out)
            return out
        except OSError as e:
            errors.append(f"{out}: {e}")
    raise ShimError("cannot write libpktwrap.so: " + "; ".join(errors))


def proxychains_lib() -> Path:
    """libproxychains of Debian's proxychains4 (or $PKTLAB_PROXYCHAINS_LIB)."""
    env = os.environ.get("PKTLAB_PROXYCHAINS_LIB")
    for cand in ([env] if env else []) + list(PROXYCHAINS_LIBS):
        if cand and os.path.exists(cand):
            return Path(cand)
    raise ShimError(
        "proxychains-ng is not installed (Debian: apt-get install proxychains4); "
        "set PKTLAB_PROXYCHAINS_LIB to its libproxychains.so.4, or use --socks-env"
    )


if __name__ == "__main__":
    try:
        print(build_shim())
    except ShimError as exc:
        print(f"packetlab.wrap.shim: {exc}", file=sys.stderr)
        sys.exit(1)
