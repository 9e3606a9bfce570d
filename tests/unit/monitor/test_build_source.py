"""`pktlab monitor build` / `reflex build` with a source that cannot be read: one line
(session 23, doctour23: `error: /usr/bin/clang failed:` then clang's own words on a second
line), before clang runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from packetlab.monitor import build as build_mod
from packetlab.monitor.build import BuildError, build


def test_a_missing_c_source_is_one_line_and_clang_is_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[object] = []
    monkeypatch.setattr(build_mod.subprocess, "run", lambda *a, **k: ran.append(a))
    missing = tmp_path / "nope.c"
    with pytest.raises(BuildError) as e:
        build(missing)
    assert str(e.value) == f"cannot read {missing}: No such file or directory"
    assert ran == []


def test_an_unreadable_wat_source_is_one_line_too(tmp_path: Path) -> None:
    missing = tmp_path / "nope.wat"
    with pytest.raises(BuildError) as e:
        build(missing)
    assert "\n" not in str(e.value) and str(e.value).startswith(f"cannot read {missing}")


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("(module (fnc))", "{src}:1:10: expected valid module field"),
        ("", "{src}:1:1: expected at least one module field"),
        ("(module\n  (func (param i33)))", "{src}:2:16: unexpected token, expected one of: `i32`"),
    ],
)
def test_a_wat_syntax_error_is_one_line_with_its_place(
    tmp_path: Path, text: str, want: str
) -> None:
    """wasmtime's assembler draws the place under the line (`--> <anon>:1:10`, the line,
    a caret): five lines of a one-line error; now FILE:LINE:COL: message, as a compiler."""
    src = tmp_path / "bad.wat"
    src.write_text(text)
    with pytest.raises(BuildError) as e:
        build(src)
    assert "\n" not in str(e.value) and str(e.value).startswith(want.format(src=src))


def test_static_data_past_the_host_memory_says_why_and_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A monitor with 200 KB of static tables failed with wasm-ld's words alone, `initial
    memory too small, 265552 bytes needed`. (pktmon's wasi-sdk build links it, with a
    memory import of 5 pages that the reference endpoint then refuses at load, §8.5.)"""

    class Failed:
        returncode = 1
        stderr = (
            "wasm-ld-14: error: initial memory too small, 265552 bytes needed\n"
            "clang: error: linker command failed with exit code 1 (use -v to see invocation)\n"
        )

    monkeypatch.setattr(build_mod.subprocess, "run", lambda *a, **k: Failed())
    monkeypatch.setattr(build_mod, "find_clang", lambda: "/usr/bin/clang")
    src = tmp_path / "tables.c"
    src.write_text("static const unsigned char t[200000] = {1};\n")
    with pytest.raises(BuildError) as e:
        build(src)
    assert str(e.value).endswith(
        "\n(the monitor's stack and static data must fit in the 2 pages (131072 bytes) "
        "of memory the endpoint gives it at load, as in the reference (a module asking "
        "for more fails to load): make big tables smaller, or malloc them at run time)"
    )
