"""How `pktlab monitor build` tells a pktmon-style source from one written against our
header, and the command line each gets (no clang needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from packetlab.monitor import build as b


def argv(tmp_path: Path, text: str) -> list[str]:
    src = tmp_path / "m.c"
    src.write_text(text)
    return b.c_argv("clang", src, tmp_path / "o.wasm", ("-DX=1",))


@pytest.mark.parametrize(
    "line",
    ['#include "monitor_helper.h"', "#include <pktlab.h>", '  #  include "pktlab.h"'],
)
def test_a_pktmon_source_gets_the_compat_headers_libc_and_exports(
    tmp_path: Path, line: str
) -> None:
    got = argv(tmp_path, f"{line}\nint x;\n")
    assert got[-1] == str(b.PKTMON_LIBC) and got[-2] == str(tmp_path / "m.c")
    assert str(b.PKTMON_INCLUDE_DIR) in got
    exports = {a.split("=", 1)[1] for a in got if a.startswith("-Wl,--export-if-defined=")}
    assert exports == set(b.PKTMON_EXPORTS)
    assert {"malloc", "free", "initialize", "check_pktlab_message_nsend",
            "pktlab_message_nopen_result"} <= exports  # fmt: skip
    assert "-DX=1" in got


def test_a_source_on_our_header_builds_as_before(tmp_path: Path) -> None:
    text = '#include "pktlab_monitor.h"\n/* not #include "pktlab.h" */\n// monitor_helper.h\n'
    got = argv(tmp_path, text)
    assert got == [
        "clang", *b.C_FLAGS, "-I", str(b.INCLUDE_DIR), "-DX=1",
        "-o", str(tmp_path / "o.wasm"), str(tmp_path / "m.c"),
    ]  # fmt: skip


def test_an_unreadable_source_is_a_build_error(tmp_path: Path) -> None:
    with pytest.raises(b.BuildError, match="cannot read"):
        b.c_argv("clang", tmp_path / "missing.c", tmp_path / "o.wasm")
