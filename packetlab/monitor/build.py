"""Building monitors: C with Debian's clang/lld for wasm32, or WebAssembly text.

C is compiled without a libc against the shipped header ``pktlab_monitor.h`` (the ABI,
the host functions, a bump malloc). A source written for the reference's builder pktmon
(it includes ``monitor_helper.h`` or ``pktlab.h``) is built unchanged against our
compatibility headers in ``include/pktmon`` with their small libc ``pktmon_libc.c`` (a
free-list malloc, string.h, snprintf) linked in, and its plain functions exported by name
as pktmon's Makefile does. The reference builds with wasi-sdk and
``--import-memory=monitor,memory``; Debian's lld (14) can only import ``env.memory``, so
the memory import is renamed in the binary afterwards (one import entry rewritten; the
module is otherwise lld's output). WAT goes through wasmtime's own assembler.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import wasmtime

from packetlab.monitor import abi

__all__ = [
    "INCLUDE_DIR",
    "PKTMON_EXPORTS",
    "PKTMON_INCLUDE_DIR",
    "BuildError",
    "build",
    "find_clang",
    "retarget_memory_import",
]

INCLUDE_DIR = Path(__file__).with_name("include")
PKTMON_INCLUDE_DIR = INCLUDE_DIR / "pktmon"
PKTMON_LIBC = PKTMON_INCLUDE_DIR / "pktmon_libc.c"
#: What pktmon's Makefile exports by name (checks, malloc/free required; the rest
#: optional). Here every one is exported if defined: a check left out is reported by the
#: load checks as a note (a crash when that message comes), as for our own header.
PKTMON_EXPORTS: tuple[str, ...] = (
    *(f"{abi.CHECK_PREFIX}{k}" for k in ("nopen", "nclose", "nsend", "ndata", "ncap", "nctl")),
    "malloc",
    "free",
    *(
        f"{abi.RESULT_PREFIX}{k}{abi.RESULT_SUFFIX}"
        for k in ("nopen", "nclose", "nsend", "ncap", "nctl")
    ),
    "initialize",
    "finalize",
)
#: wasm-ld's default stack, which pktmon's builds keep (64 KiB, not our header's 16 KiB: a
#: monitor with a 40 KB local array works there), placed first so that an overflow traps
#: (an address below 0) instead of running over the static data. The later -z wins.
PKTMON_LINK_FLAGS = ("-Wl,-z,stack-size=65536", "-Wl,--stack-first")
_PKTMON_INCLUDE = re.compile(
    rb'^[ \t]*#[ \t]*include[ \t]*["<](monitor_helper|pktlab)\.h[">]', re.M
)
_CLANGS = ("clang", "clang-19", "clang-18", "clang-17", "clang-16", "clang-15", "clang-14")
C_FLAGS = (
    "--target=wasm32",
    "-O2",
    "-nostdlib",
    "-fno-builtin",
    "-Wall",
    "-Wl,--no-entry",
    "-Wl,--import-memory",
    f"-Wl,--initial-memory={abi.MEMORY_MIN_PAGES * 65536}",
    "-Wl,-z,stack-size=16384",
    "-Wl,--strip-all",
)


class BuildError(Exception):
    """A monitor source that does not build; the message says why."""


def find_clang() -> str | None:
    for name in _CLANGS:
        path = shutil.which(name)
        if path is not None:
            return path
    return None


def build(source: Path, extra_flags: tuple[str, ...] = ()) -> bytes:
    """The wasm module of a ``.c`` or ``.wat`` source. Raises `BuildError`."""
    suffix = source.suffix.lower()
    if suffix == ".wat":
        try:
            text = source.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise BuildError(f"cannot read {source}: {e}") from None
        try:
            return bytes(wasmtime.wat2wasm(text))
        except wasmtime.WasmtimeError as e:
            raise BuildError(_wat_error(source, str(e))) from None
    if suffix == ".c":
        try:  # (clang's own words came on a second line, after `clang failed:`)
            source.open("rb").close()
        except OSError as e:
            raise BuildError(f"cannot read {source}: {e.strerror}") from None
        return retarget_memory_import(_build_c(source, extra_flags))
    raise BuildError(f"{source}: expected a .c or .wat source")


_WAT_PLACE = re.compile(r"-->\s*<anon>:(\d+):(\d+)")


def _wat_error(source: Path, text: str) -> str:
    """The assembler's error in one line, FILE:LINE:COL: message (it draws the place
    under the source line: `--> <anon>:1:10`, the line, a caret)."""
    lines = text.strip().splitlines()
    place = _WAT_PLACE.search(text)
    where = f"{source}:{place[1]}:{place[2]}" if place else str(source)
    return f"{where}: {lines[0] if lines else 'invalid text'}"


def is_pktmon_source(source: Path) -> bool:
    """Whether a C source is written for pktmon (includes monitor_helper.h or pktlab.h)."""
    try:
        return _PKTMON_INCLUDE.search(source.read_bytes()) is not None
    except OSError as e:
        raise BuildError(f"cannot read {source}: {e}") from None


def c_argv(clang: str, source: Path, out: Path, extra_flags: tuple[str, ...] = ()) -> list[str]:
    """The clang command line for `source`: our header's, or pktmon's compatible one."""
    argv = [clang, *C_FLAGS, "-I", str(INCLUDE_DIR)]
    if is_pktmon_source(source):
        argv += ["-I", str(PKTMON_INCLUDE_DIR), *PKTMON_LINK_FLAGS]
        argv += [f"-Wl,--export-if-defined={name}" for name in PKTMON_EXPORTS]
        return [*argv, *extra_flags, "-o", str(out), str(source), str(PKTMON_LIBC)]
    return [*argv, *extra_flags, "-o", str(out), str(source)]


def _build_c(source: Path, extra_flags: tuple[str, ...]) -> bytes:
    clang = find_clang()
    if clang is None:
        raise BuildError("no clang found: install clang and lld (apt-get install clang lld)")
    with tempfile.TemporaryDirectory(prefix="pktlab-monitor-") as tmp:
        out = Path(tmp) / "out.wasm"
        argv = c_argv(clang, source, out, extra_flags)
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise BuildError(f"cannot run {clang}: {e}") from None
        if proc.returncode != 0:
            hint = ""
            if "wasm-ld" in proc.stderr and "not found" in proc.stderr:
                hint = "\n(wasm-ld is missing: apt-get install lld)"
            elif "initial memory too small" in proc.stderr:
                hint = (
                    "\n(the monitor's stack and static data must fit in the "
                    f"{abi.MEMORY_MIN_PAGES} pages ({abi.MEMORY_MIN_PAGES * 65536} bytes) of "
                    "memory the endpoint gives it at load, as in the reference (a module "
                    "asking for more fails to load): make big tables smaller, or malloc them "
                    "at run time)"
                )
            elif "undefined symbol" in proc.stderr and argv[-1] == str(PKTMON_LIBC):
                hint = (
                    "\n(a pktmon-style monitor gets a small libc, not wasi-libc: see "
                    'docs/monitors.md "Monitors written for pktmon" for what it has)'
                )
            raise BuildError(f"{clang} failed:\n{proc.stderr.strip()}{hint}")
        return out.read_bytes()


# ------------------------------------------------------------------ binary rewriting


def _uleb(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise BuildError("truncated LEB128 in the module")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, pos


def _leb(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _name(s: str) -> bytes:
    raw = s.encode()
    return _leb(len(raw)) + raw


def retarget_memory_import(wasm: bytes, module: str = abi.MEMORY_MODULE) -> bytes:
    """Rename the import ``env.memory`` to ``<module>.memory`` (what lld < 17 cannot do).
    A module without that import comes back unchanged."""
    if wasm[:8] != b"\0asm\x01\0\0\0":
        raise BuildError("not a WebAssembly binary module")
    pos = 8
    while pos < len(wasm):
        sec_id = wasm[pos]
        size, body = _uleb(wasm, pos + 1)
        end = body + size
        if sec_id == 2:  # the import section
            new = _rewrite_imports(wasm[body:end], module)
            if new is None:
                return wasm
            return wasm[:pos] + bytes([2]) + _leb(len(new)) + new + wasm[end:]
        pos = end
    return wasm


def _rewrite_imports(sec: bytes, module: str) -> bytes | None:
    count, pos = _uleb(sec, 0)
    out = bytearray(_leb(count))
    changed = False
    for _ in range(count):
        mlen, p = _uleb(sec, pos)
        mod = sec[p : p + mlen]
        p += mlen
        nlen, p = _uleb(sec, p)
        name = sec[p : p + nlen]
        p += nlen
        kind = sec[p]
        desc_start = p
        p += 1
        if kind == 0:  # func: type index
            _, p = _uleb(sec, p)
        elif kind == 1:  # table: reftype, limits
            p += 1
            p = _skip_limits(sec, p)
        elif kind == 2:  # memory: limits
            p = _skip_limits(sec, p)
        elif kind == 3:  # global: valtype, mut
            p += 2
        else:
            raise BuildError(f"unknown import kind {kind}")
        if kind == 2 and mod == b"env" and name == b"memory":
            out += _name(module) + _name("memory")
            changed = True
        else:
            out += sec[pos:desc_start]
        out += sec[desc_start:p]
        pos = p
    return bytes(out) + sec[pos:] if changed else None


def _skip_limits(sec: bytes, p: int) -> int:
    flags = sec[p]
    _, p = _uleb(sec, p + 1)
    if flags & 1:
        _, p = _uleb(sec, p)
    return p


def write_module(wasm: bytes, out: Path) -> None:
    """Write atomically (a half-written module would have another digest)."""
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_bytes(wasm)
    os.replace(tmp, out)
