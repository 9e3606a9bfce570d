"""`pktlab monitor build|digest|test`, `pktlab init --monitor`, and the shipped example
monitors, run as the real command line (C examples need clang and lld)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from packetlab.monitor import abi
from packetlab.monitor.build import find_clang
from packetlab.ppks import PktlabHome

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "monitors"
MESSAGES = EXAMPLES / "messages.jsonl"
needs_clang = pytest.mark.skipif(find_clang() is None, reason="clang/lld not installed")


def pktlab(*args: str, stdin: str | None = None, check: bool = True) -> Any:
    proc = subprocess.run(
        [sys.executable, "-m", "packetlab", *args],
        input=stdin, capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def build(src: str, tmp: Path) -> Path:
    out = tmp / (Path(src).stem + ".wasm")
    proc = pktlab("monitor", "build", str(EXAMPLES / src), "-o", str(out))
    digest = proc.stdout.split()[0]
    assert digest == abi.digest(out.read_bytes()).hex()
    return out


def verdicts(wasm: Path, messages: Path = MESSAGES, *extra: str) -> list[dict[str, Any]]:
    out = pktlab("monitor", "test", str(wasm), "--messages", str(messages), *extra).stdout
    return [json.loads(line) for line in out.splitlines()]


def rvs(rows: list[dict[str, Any]]) -> dict[int, int]:
    return {r["line"]: r["rv"] for r in rows if "rv" in r}


def test_wat_example_builds_and_passes_all(tmp_path: Path) -> None:
    wasm = build("pass_all.wat", tmp_path)
    rows = verdicts(wasm)
    assert rows[0] == {"initialize": "ok", "linfo": ""}
    assert set(rvs(rows).values()) == {0}
    assert rows[-1] == {"line": 10, "type": "mread", "verdict": "not checked"}
    digest = pktlab("monitor", "digest", str(wasm)).stdout.split()[0]
    assert digest == abi.digest(wasm.read_bytes()).hex()


@needs_clang
@pytest.mark.parametrize(
    ("src", "want"),
    [
        ("tcp_only.c", {2: 0, 3: 0, 4: 1, 5: 0, 6: 2, 7: 2, 8: 0, 9: 0}),
        ("http_only.c", {2: 0, 3: 1, 4: 1, 5: 0, 6: 2, 7: 2, 8: 0, 9: 0}),
        ("allow_list.c", {2: 0, 3: 1, 4: 0, 5: 0, 6: 0, 7: 1, 8: 0, 9: 0}),
        ("payload_check.c", {2: 0, 3: 0, 4: 0, 5: 0, 6: 0, 7: 7, 8: 0, 9: 0}),
    ],
)
def test_c_examples(tmp_path: Path, src: str, want: dict[int, int]) -> None:
    wasm = build(src, tmp_path)
    rows = verdicts(wasm)
    assert rvs(rows) == want
    rejected = [r for r in rows if r.get("verdict") == "reject"]
    assert all(r["answer"]["errid"] == 0x12 and r["answer"]["monindx"] == 0 for r in rejected)


def _echo(tag: int) -> str:
    # IPv4 header (proto 1) + ICMP echo request
    hdr = "4500001c00000000400100007f0000017f000001"
    return json.dumps({"type": "nsend", "sktid": 4, "family": 4, "proto": 0, "time": 0,
                       "tag": tag, "data": hdr + "0800f7ff00000000"})  # fmt: skip


@needs_clang
def test_icmp_rate_limit_keeps_a_persistent_counter(tmp_path: Path) -> None:
    wasm = build("icmp_rate_limit.c", tmp_path)
    msgs = tmp_path / "echo.jsonl"
    msgs.write_text("\n".join(_echo(i) for i in range(12)) + "\n")
    pm = tmp_path / "pm.bin"
    rows = verdicts(wasm, msgs, "--pm", str(pm))
    assert rows[0]["linfo"] == bytes(8).hex()
    got = [r["rv"] for r in rows[1:]]
    assert got == [0] * 10 + [1, 1]  # at most 10 per second
    rows = verdicts(wasm, msgs, "--pm", str(pm))
    assert rows[0]["linfo"] == (10).to_bytes(8, "little").hex()  # kept across runs


def test_test_reports_crashes_and_bad_lines(tmp_path: Path) -> None:
    from wasmtime import wat2wasm

    from packetlab.monitor.template import monitor_wat

    wasm = tmp_path / "trap.wasm"
    wasm.write_bytes(wat2wasm(monitor_wat({"nclose": "unreachable", "ndata": "(i32.const -3)"})))
    msgs = tmp_path / "m.jsonl"
    msgs.write_text(
        '{"type": "nclose", "sktid": 1}\n{"type": "bogus"}\n'
        '{"type": "ndata", "sktid": 1, "family": 4, "proto": 6, "time": 5, "data": "00"}\n'
        '{"type": "nsend", "sktid": 1, "family": 4, "proto": 6, "time": 0, "tag": 0,'
        ' "data": "00"}\n'
    )
    proc = pktlab("monitor", "test", str(wasm), "--messages", str(msgs), "--report-crash",
                  check=False)  # fmt: skip
    assert proc.returncode == 2 and "m.jsonl:2" in proc.stderr
    rows = [json.loads(x) for x in proc.stdout.splitlines()]
    assert rows[1]["verdict"] == "crash" and "unreachable" in rows[1]["why"]
    assert rows[1]["answer"] == {"type": "result", "errid": 0x13, "monindx": 0}
    assert rows[2]["answer"]["type"] == "nblock" and rows[2]["answer"]["monerrid"] == 0xFFFD
    assert rows[3]["verdict"] == "crash" and "not exported" in rows[3]["why"]


def test_build_errors_are_clear(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wat"
    bad.write_text("(module (func")
    proc = pktlab("monitor", "build", str(bad), "-o", str(tmp_path / "x.wasm"), check=False)
    assert proc.returncode == 1 and "error:" in proc.stderr
    own = tmp_path / "own.wat"
    own.write_text("(module (memory 2))")
    proc = pktlab("monitor", "build", str(own), "-o", str(tmp_path / "x.wasm"), check=False)
    assert "must import its memory as monitor.memory" in proc.stderr
    assert not (tmp_path / "x.wasm").exists()
    # pktmon style, 200 KB of static tables: past the 2-page host memory (session 30)
    tables = tmp_path / "tables.c"
    tables.write_text(
        '#include "monitor_helper.h"\nstatic const unsigned char t[200000] = {1};\n'
        "int check_pktlab_message_nclose(unsigned char s, void *pm, unsigned pmlen)"
        " { return t[s * 777]; }\n"
    )
    proc = pktlab("monitor", "build", str(tables), "-o", str(tmp_path / "x.wasm"), check=False)
    assert proc.returncode == 1 and "initial memory too small" in proc.stderr
    assert "must fit in the 2 pages (131072 bytes)" in proc.stderr


def test_init_requires_the_monitor(tmp_path: Path) -> None:
    wasm = build("pass_all.wat", tmp_path)
    pktlab("init", "--home", str(tmp_path / "home"), "--monitor", str(wasm))
    cert = PktlabHome.at(tmp_path / "home").certificate("exppriv_eop_exper")
    assert cert.limits is not None
    assert cert.limits.monitor_digests == (abi.digest(wasm.read_bytes()),)


@needs_clang
def test_tutorial_write_test_and_require_a_monitor(tmp_path: Path) -> None:
    """docs/monitors.md, "write, test and require your first monitor", as commands."""
    wasm = build("tcp_only.c", tmp_path)
    home = tmp_path / "demo"
    pktlab("init", "--home", str(home), "--monitor", str(wasm))
    script = str(EXAMPLES / "require_monitor.py")
    run = [sys.executable, script, "--home", str(home)]
    ok = subprocess.run([*run, str(wasm)], capture_output=True, text=True, timeout=120)
    assert "tcp socket: opened" in ok.stdout, ok.stdout + ok.stderr
    assert "udp socket: nopen failed: ECTLMONREJ (0x12): " in ok.stdout
    assert "monitor 0 error 1" in ok.stdout
    assert ok.returncode == 0, ok.stderr
    refused = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert "ECRTNOHDAT" in refused.stdout
    # the one line: no traceback of the refused setup under it (run_with_local_endpoint
    # logged it), and a failure's status (it was 0)
    assert refused.stderr == "" and refused.returncode == 1, refused.stderr
    assert (home / "endpt.persistent.sqlite3").exists()  # MonitorPersistentPath of init


def test_bad_inputs_are_one_line_errors_naming_the_file(tmp_path: Path) -> None:
    """Session 20: each bad input is one line on stderr naming the file or the option,
    with exit status 1 (2 for a bad option), no traceback, and nothing run or written."""
    from wasmtime import wat2wasm

    from packetlab.monitor.template import monitor_wat

    allow = {k: "(i32.const 0)" for k in abi.CHECKS}
    ok = tmp_path / "ok.wasm"
    ok.write_bytes(wat2wasm(monitor_wat(allow)))
    (tmp_path / "junk.wasm").write_bytes(b"\x7fELF not a module")
    (tmp_path / "text.wasm").write_text(monitor_wat({}))  # WAT, named .wasm
    (tmp_path / "imp.wat").write_text('(module (import "env" "nope" (func)))')
    start = monitor_wat(allow, extra="(func $s (loop (br 0))) (start $s)")
    (tmp_path / "start.wat").write_text(start)
    pm = tmp_path / "big.pm"
    pm.write_bytes(bytes(range(256)) + b"tail")
    cases = [
        (("test", "junk.wasm"), 1, "junk.wasm: not a valid WebAssembly module"),
        (("test", "text.wasm"), 1, "text.wasm: not a valid WebAssembly module: it does not"),
        (("build", "imp.wat", "-o", "imp.wasm"), 1, "imp.wat: imports unknown host function"),
        (("test", "start.wat"), 1, "start.wat: instantiation failed: deadline of 100 ms"),
        (("test", "ok.wasm", "--pm", "big.pm"), 1, "big.pm: 260 bytes; a persistent memory"),
        (("test", "ok.wasm", "--messages", "nofile.jsonl"), 1, "nofile.jsonl"),
        (("test", "ok.wasm", "--deadline-ms", "-1"), 2, "--deadline-ms: -1 is not in 1..60000"),
        (("test", "ok.wasm", "--deadline-ms", "x"), 2, "--deadline-ms: not an integer: 'x'"),
        (("test", "ok.wasm", "--memory-max", "1000"), 2, "--memory-max: 1000 is not in 131072"),
    ]
    for args, status, line in cases:
        proc = subprocess.run(
            [sys.executable, "-m", "packetlab", "monitor", *args],
            input="", capture_output=True, text=True, timeout=300, cwd=tmp_path,
        )  # fmt: skip
        assert proc.returncode == status, (args, proc.stderr)
        assert line in proc.stderr.splitlines()[-1], (args, proc.stderr)
        assert "Traceback" not in proc.stderr
        if status == 1:
            assert len(proc.stderr.splitlines()) == 1, (args, proc.stderr)
        assert proc.stdout == "", (args, proc.stdout)  # nothing ran
    assert pm.read_bytes() == bytes(range(256)) + b"tail"  # not cut to 256 bytes
    assert not (tmp_path / "imp.wasm").exists()
