"""What a fresh `pktlab` process imports before it does a command's work: parsing a
command line, `--help`, `decode` and `init` load none of the heavy modules only a
measurement's run needs (Twisted, pyOpenSSL, cryptography's X.509, construct, dnspython,
SQLite, the wire's message classes, PPKS certificates and accounting, the endpoint, the
HTTP client). docs/performance.md, "Session 14: what the command line loaded"."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Loaded by a measurement when it runs (ahead of it, `startup_imports`), never to parse it.
HEAVY = (
    "twisted",
    "OpenSSL",
    "cryptography.x509",
    "construct",
    "dns",
    "sqlite3",
    "packetlab.wire.messages",
    "packetlab.wire.codec",
    "packetlab.ppks.cert",
    "packetlab.ppks.accounting",
    "packetlab.endpoint",
    "packetlab.controller.stop",
    "packetlab.measure.http",
)


def _loaded(
    code: str, env: dict[str, str] | None = None, stdin: bytes = b"", heavy: tuple[str, ...] = HEAVY
) -> list[str]:
    """The modules of `heavy` that `code`, run in a fresh interpreter, left loaded (it
    prints the JSON list of them on its last line of standard error)."""
    tail = (
        "\nimport json, sys\n"
        f"print(json.dumps([m for m in {heavy!r} if m in sys.modules]), file=sys.stderr)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code + tail],
        input=stdin,
        capture_output=True,
        check=True,
        timeout=60,
        env=env,
    )
    loaded: list[str] = json.loads(out.stderr.decode().splitlines()[-1])
    return loaded


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "ping", "-c", "1", "127.0.0.1"],
        ["run", "traceroute", "-n", "-q", "1", "127.0.0.1"],
        ["run", "dns", "@127.0.0.1", "-p", "9", "a.test"],
        ["run", "http", "-s", "http://127.0.0.1:9/"],
        ["run", "throughput", "-c", "127.0.0.1"],
        ["campaign", "--help"],
    ],
)
def test_parsing_a_command_line_loads_no_measurement(argv: list[str]) -> None:
    code = (
        "import packetlab.cli as c\n"
        "try:\n"
        f"    c.parse({argv!r})\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e\n"
    )
    assert _loaded(code) == []


@pytest.mark.parametrize("argv", [["--help"], ["run", "ping", "--help"], ["run", "--help"]])
def test_help_loads_no_measurement(argv: list[str]) -> None:
    code = (
        f"import sys; sys.argv = ['pktlab', *{argv!r}]\n"
        "import packetlab.cli as c\n"
        "try:\n"
        "    c.main()\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e\n"
    )
    assert _loaded(code) == []


def test_decode_loads_no_construct_once_its_tables_are_kept(tmp_path: Path) -> None:
    """The first start derives decode's field tables from the construct declarations and
    keeps them with the wire's derived code; a start that finds them there does not import
    construct, and prints the same JSON."""
    code = "import packetlab.cli as c\nrc = c.main(['decode'])\nassert rc == 0, rc\n"
    frame = subprocess.run(
        [sys.executable, "-m", "packetlab", "encode"],
        input=b'{"type": "nsend", "sktid": 1, "family": 4, "proto": 17, "time": 0, "tag": 7,'
        b' "raddr": "127.0.0.1", "rport": 9, "data": "6869"}\n',
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    first = subprocess.run(
        [sys.executable, "-c", code], input=frame, capture_output=True, check=True, env=env
    )
    assert _loaded(code, env, frame, ("construct", "packetlab.wire.layouts")) == []
    again = subprocess.run(
        [sys.executable, "-c", code], input=frame, capture_output=True, check=True, env=env
    )
    assert again.stdout == first.stdout
    assert json.loads(again.stdout)["raddr"] == "127.0.0.1"


def test_init_loads_no_wire_codec(tmp_path: Path) -> None:
    """`pktlab init` issues certificates (cryptography's X.509 is its work) but needs no
    wire message classes nor accounting: `packetlab.wire` and `packetlab.ppks` load each
    name's module on first use."""
    env = {**os.environ, "HOME": str(tmp_path)}
    code = "import packetlab.cli as c\nrc = c.main(['init'])\nassert rc == 0, rc\n"
    loaded = _loaded(code, env)
    assert (tmp_path / ".pktlab" / "keys").is_dir()
    assert "cryptography.x509" in loaded  # what init does need
    assert not {"packetlab.wire.messages", "packetlab.wire.codec", "construct"} & set(loaded)
    assert "packetlab.ppks.accounting" not in loaded


# What a measurement's own help (and its parsing) no longer loads (session 18): the link's
# run-time module and with it dataclasses (inspect, ast, dis, tokenize), tempfile,
# pathlib; the wire's enums (for `controller.errors`' status names); iperf3's `secrets`
# (hmac, hashlib and OpenSSL's libcrypto) for `pktlab run --help`.
LIGHT = ("packetlab.cli.link", "dataclasses", "tempfile", "pathlib", "packetlab.wire.constants")


@pytest.mark.parametrize(
    ("argv", "heavy"),
    [
        (["run", "ping", "--help"], LIGHT),
        (["run", "traceroute", "--help"], LIGHT),
        (["run", "--help"], ("packetlab.wire.constants", "secrets", "hashlib")),
    ],
)
def test_a_measurements_help_loads_no_link_runtime(argv: list[str], heavy: tuple[str, ...]) -> None:
    code = (
        f"import sys; sys.argv = ['pktlab', *{argv!r}]\n"
        "import packetlab.cli as c\n"
        "try:\n"
        "    c.main()\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e\n"
    )
    assert _loaded(code, heavy=heavy) == []


def test_link_names_are_the_same_from_either_module() -> None:
    from packetlab.cli import link, linkargs

    assert link.LinkError is linkargs.LinkError
    assert link.add_link_arguments is linkargs.add_link_arguments
    assert link.listen_description is linkargs.listen_description
