"""`pktlab monitor` and `pktlab reflex` errors name the command, as argparse's own do
(they said a bare `error: [Errno 2] No such file or directory: 'x'`; cli20's leftover)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from packetlab.cli import monitor, reflex


def _run(module: object, words: list[str]) -> int:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)  # type: ignore[attr-defined]
    return int(module.run(parser.parse_args(words)))  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("module", "words", "status", "line"),
    [
        (monitor, ["digest", "{missing}"], 1,
         "pktlab monitor digest: error: {missing}: No such file or directory"),
        (monitor, ["test", "{missing}"], 1,
         "pktlab monitor test: error: {missing}: No such file or directory"),
        (monitor, ["build"], 2, "pktlab monitor build: error: build needs SRC and -o OUT.wasm"),
        (reflex, ["test", "{missing}"], 1,
         "pktlab reflex test: error: {missing}: No such file or directory"),
    ],
)  # fmt: skip
def test_an_error_is_one_line_naming_the_command(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    module: object,
    words: list[str],
    status: int,
    line: str,
) -> None:
    missing = str(tmp_path / "nope.wasm")
    assert _run(module, [w.format(missing=missing) for w in words]) == status
    assert capsys.readouterr().err == line.format(missing=missing) + "\n"


@pytest.mark.parametrize("module", [monitor, reflex])
@pytest.mark.parametrize("text", [b"int reflex_packet(void) { return 0; }\n", b"(module)\n", b""])
def test_digest_refuses_what_is_not_a_module(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], module: object, text: bytes
) -> None:
    """`pktlab reflex digest prog.c` printed the digest of the C text (no certificate
    with it ever matches the built module); now one line, status 1, no digest at all
    when any file is not a module."""
    good, bad = tmp_path / "good.wasm", tmp_path / "prog.c"
    good.write_bytes(b"\0asm\x01\0\0\0")
    bad.write_bytes(text)
    name = "reflex" if module is reflex else "monitor"
    assert _run(module, ["digest", str(good), str(bad)]) == 1
    got = capsys.readouterr()
    assert got.out == ""
    assert got.err == (f"pktlab {name} digest: error: {bad}: not a WebAssembly module "
                       f"(build it first: pktlab {name} build {bad} -o OUT.wasm)\n")  # fmt: skip


@pytest.mark.parametrize("module", [monitor, reflex])
@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "it is empty (0 bytes)"),
        (b"MZ\x90\0", "it does not begin with the binary magic \\0asm"),
    ],
)
def test_digest_of_a_broken_wasm_file_says_what_is_wrong(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], module: object, data: bytes, why: str
) -> None:
    """`pktlab monitor digest x.wasm` of an empty or foreign .wasm file said `build it
    first: pktlab monitor build x.wasm -o OUT.wasm`, which `build` refuses (`expected a .c
    or .wat source`): the build hint is for sources; a .wasm file is told what is wrong."""
    bad = tmp_path / "x.wasm"
    bad.write_bytes(data)
    name = "reflex" if module is reflex else "monitor"
    assert _run(module, ["digest", str(bad)]) == 1
    assert capsys.readouterr().err == (
        f"pktlab {name} digest: error: {bad}: not a WebAssembly module: {why}\n"
    )


def test_digest_of_modules_as_before(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from packetlab.monitor import abi

    good = tmp_path / "good.wasm"
    good.write_bytes(b"\0asm\x01\0\0\0")
    assert _run(reflex, ["digest", str(good)]) == 0
    assert capsys.readouterr().out == f"{abi.digest(good.read_bytes()).hex()}  {good}\n"


@pytest.mark.parametrize("module", [monitor, reflex])
def test_test_of_an_empty_module_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], module: object
) -> None:
    """`pktlab reflex test empty.wasm` said `not a valid WebAssembly module: it is empty
    (0 bytes)` without the file, where `pktlab monitor test` names it (session 30, mon30's
    finding)."""
    bad = tmp_path / "empty.wasm"
    bad.write_bytes(b"")
    name = "reflex" if module is reflex else "monitor"
    assert _run(module, ["test", str(bad), "--messages", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"pktlab {name} test: error: {bad}: not a valid WebAssembly module")


NO_MEMORY = (
    '(module (func (export "malloc") (param i32) (result i32) i32.const 0)'
    ' (func (export "free") (param i32)))'
)
WAT_FIX = 'add (import "monitor" "memory" (memory 2)) to the module'
C_FIX = "link with --import-memory=monitor,memory"


@pytest.mark.parametrize("module", [monitor, reflex])
def test_no_memory_import_says_the_fix_in_the_sources_language(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], module: object
) -> None:
    """`pktlab reflex build x.wat` of a module without the memory import said to use
    `--import-memory=monitor,memory`, a C linker flag (reflex31's finding): a WAT source
    now gets the WAT import; a .wasm of unknown source both fixes."""
    import wasmtime

    name = module.__name__.rsplit(".", 1)[1]  # type: ignore[attr-defined]
    wat, wasm = tmp_path / "m.wat", tmp_path / "m.wasm"
    wat.write_text(NO_MEMORY)
    wasm.write_bytes(bytes(wasmtime.wat2wasm(NO_MEMORY)))
    assert _run(module, ["build", str(wat), "-o", str(tmp_path / "out.wasm")]) == 1
    assert capsys.readouterr().err == (
        f"pktlab {name} build: error: {wat}: the module must import its memory as "
        f"monitor.memory ({WAT_FIX})\n"
    )
    assert not (tmp_path / "out.wasm").exists()
    assert _run(module, ["test", str(wasm)]) == 1
    assert capsys.readouterr().err == (
        f"pktlab {name} test: error: {wasm}: the module must import its memory as "
        f"monitor.memory (C: {C_FIX}; WAT: {WAT_FIX})\n"
    )


def test_memory_imported_under_lld_s_default_name_says_the_hosts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`(import "env" "memory" (memory 2))` (lld's name without `=monitor,memory`) said
    `imports unknown host function env.memory`: it is a memory, and its name is wrong."""
    wat = tmp_path / "env.wat"
    wat.write_text(NO_MEMORY.replace("(module", '(module (import "env" "memory" (memory 2))'))
    assert _run(reflex, ["build", str(wat), "-o", str(tmp_path / "out.wasm")]) == 1
    assert capsys.readouterr().err == (
        f"pktlab reflex build: error: {wat}: imports its memory as env.memory; the host's "
        'is monitor.memory (import "monitor" "memory" (memory 2))\n'
    )
