"""`pktlab decode` and `pktlab encode` (packetlab.cli.decode / packetlab.cli.encode)."""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import pytest

from packetlab import wire
from packetlab.cli import main

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_HEX = REPO / "examples" / "every_message.hex"
EXAMPLE_JSONL = REPO / "examples" / "every_message.jsonl"


def hex_without_comments(path: Path) -> str:
    return "".join("".join(line.split("#", 1)[0].split()) for line in path.read_text().splitlines())


def set_stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


# ---------------------------------------------------------------------------- decode


def test_decode_every_message_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", "--hex", str(EXAMPLE_HEX)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.splitlines() == EXAMPLE_JSONL.read_text().splitlines()
    types = [json.loads(line)["type"] for line in out.splitlines()]
    assert sorted(types) == sorted([m.NAME for m in wire.ALL_MESSAGES] + ["unknown"])


def test_decode_raw_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.bin"
    path.write_bytes(bytes.fromhex(hex_without_comments(EXAMPLE_HEX)))
    assert main(["decode", str(path)]) == 0
    assert capsys.readouterr().out.splitlines() == EXAMPLE_JSONL.read_text().splitlines()


def test_decode_raw_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    set_stdin(monkeypatch, bytes.fromhex("2b00000103 21000000"))
    assert main(["decode"]) == 0
    assert capsys.readouterr().out == '{"type": "nclose", "sktid": 3}\n{"type": "start"}\n'


def test_decode_hex_stdin_ignores_whitespace_and_comments(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # a byte may even be split across lines; upper case is fine
    set_stdin(monkeypatch, b"# a comment\n2B 00 00\n  0\n1 03 # nclose\n\t2100 0000\n")
    assert main(["decode", "--hex", "-"]) == 0
    assert capsys.readouterr().out == '{"type": "nclose", "sktid": 3}\n{"type": "start"}\n'


def test_decode_empty_input(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    set_stdin(monkeypatch, b"")
    assert main(["decode"]) == 0
    assert capsys.readouterr() == ("", "")


def test_decode_unknown_type_carries_on(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    set_stdin(monkeypatch, b"25000002 abcd  90000000  68000000")
    assert main(["decode", "--hex"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert lines == [
        {"type": "unknown", "code": 0x25, "body": "abcd"},
        {"type": "unknown", "code": 0x90, "body": ""},
        {"type": "suspd"},
    ]


@pytest.mark.parametrize(
    ("stream", "error"),
    [
        # malformed bodies: offset of the frame, the type and the rule
        ("21000000 28000006 0000000000 00",
         "malformed frame at byte offset 4 (type 0x28 mread, body offset 6): "
         "mread len must be > 0"),
        ("21000000 2b000001 03 2e00000c 03041100000000000000000001",
         "malformed frame at byte offset 9 (type 0x2e nctl, body offset 11): "
         "nctl proto must be TCP (6)"),
        ("21000000 40000002 0012", "byte offset 4 (type 0x40 result, body offset 2): ECTLMONREJ"),
        ("21000000 70000001 00", "xnotify channel length must be 1..32"),
        ("21000000 31000004 03616263", "chlist: missing 0 terminator"),
        ("21000000 21000001 00",
         "byte offset 4 (type 0x21 start, body offset 0): 1 trailing bytes"),
        # truncated last frame
        ("21000000 2c00000f 0304", "truncated frame at byte offset 4: the header (type 0x2c "
         "nsend) announces a 15-byte body, the stream ends after 2 of them"),
        ("21000000 2c00", "truncated frame at byte offset 4: only 2 of the 4 header bytes"),
        ("21000000 9000000a ff", "truncated frame at byte offset 4: the header (type 0x90 "
         "unknown) announces a 10-byte body"),
        # bad hex
        ("21000000 2b0000 0x03", "bad hex digit 'x' at byte offset 7 (line 1, column 18)"),
        ("21000000\n2b00000103\n21 00 00 0g",
         "bad hex digit 'g' at byte offset 12 (line 3, column 11)"),
        ("21000000 2b00000103 2", "odd number of hex digits: a lone digit at byte offset 9"),
    ],
)  # fmt: skip
def test_decode_bad_input(
    stream: str, error: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    set_stdin(monkeypatch, stream.encode())
    assert main(["decode", "--hex"]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("pktlab decode: ")
    assert error in err
    assert err.count("\n") == 1
    # the valid frames before the fault were printed
    assert out.startswith('{"type": "start"}\n')


def test_decode_malformed_in_raw_mode(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    set_stdin(monkeypatch, bytes.fromhex("2b00000103 80000003 414243"))
    assert main(["decode"]) == 2
    out, err = capsys.readouterr()
    assert out == '{"type": "nclose", "sktid": 3}\n'
    assert "malformed frame at byte offset 5 (type 0x80 xreg" in err
    assert "snikey must be 1..63 characters of [a-z0-9]" in err


def test_decode_non_ascii_in_hex(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    set_stdin(monkeypatch, "21000000 é".encode())
    assert main(["decode", "--hex"]) == 2
    assert "bad hex digit '\\xc3' at byte offset 4 (line 1, column 10)" in capsys.readouterr().err


def test_decode_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", str(tmp_path / "nope")]) == 2
    assert "pktlab decode: cannot open" in capsys.readouterr().err


def test_decode_large_frame_across_chunks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = bytes(range(256)) * 1000  # a 256000-byte ndata spans several read chunks
    frame = wire.encode(wire.Ndata(1, 4, 6, 0, data))
    path = tmp_path / "big.bin"
    path.write_bytes(frame * 2)
    assert main(["decode", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert json.loads(lines[1])["data"] == data.hex()


# ---------------------------------------------------------------------------- encode


def test_encode_raw(
    monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    set_stdin(monkeypatch, b'{"type": "nclose", "sktid": 3}\n\n# comment\n{"type": "start"}\n')
    assert main(["encode"]) == 0
    assert capsysbinary.readouterr().out == bytes.fromhex("2b00000103 21000000")


def test_encode_hex_one_frame_per_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    set_stdin(monkeypatch, b'{"type": "mread", "addr": 268500992, "len": 8}\n{"type": "start"}')
    assert main(["encode", "--hex"]) == 0
    assert capsys.readouterr().out == "280000061001000000 08\n21000000\n".replace(" ", "")


def test_every_message_example_round_trips(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["encode", "--hex", str(EXAMPLE_JSONL)]) == 0
    out = capsys.readouterr().out
    assert out.replace("\n", "") == hex_without_comments(EXAMPLE_HEX)
    assert len(out.splitlines()) == len(EXAMPLE_JSONL.read_text().splitlines())


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        ('{"type": "start"}\n{"type": "nclose", sktid: 3}\n',
         "line 2: bad JSON: Expecting property name"),
        ('{"type": "start"}\n\n[1, 2]\n', "line 3: type: expected a JSON object, got list"),
        ('{"type": "start"}\n{"type": "nosuch"}\n',
         "line 2: type: unknown message type name 'nosuch'"),
        ('{"type": "start"}\n{"type": "nclose"}\n', "line 2: sktid: missing (required by nclose)"),
        ('{"type": "start"}\n{"type": "xcert", "cert": "0g"}\n', "line 2: cert: bad hex '0g'"),
        ('{"type": "start"}\n{"type": "nopen", "sktid": 0, "family": 4, "proto": 0, '
         '"rbufsz": 0, "laddr": "::1"}\n', "line 2: laddr: '::1' is not an IPv4 address"),
        ('{"type": "start"}\n{"type": "mread", "addr": 0, "len": 0}\n',
         "line 2: cannot encode: Mread: mread len must be > 0"),
        ('{"type": "start"}\n{"type": "nsend", "sktid": 1, "family": 4, "proto": 17, "time": 0, '
         '"tag": 0, "data": ""}\n', "line 2: cannot encode: Nsend: UDP needs raddr and rport"),
    ],
)  # fmt: skip
def test_encode_bad_line(
    lines: str, error: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    set_stdin(monkeypatch, lines.encode())
    assert main(["encode", "--hex"]) == 2
    out, err = capsys.readouterr()
    assert out == "21000000\n"  # the frames before the bad line are written
    assert err.startswith("pktlab encode: ")
    assert error in err


def test_encode_non_utf8(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    set_stdin(monkeypatch, b'{"type": "start"}\n\xff\xfe\n')
    assert main(["encode", "--hex"]) == 2
    assert "line 2: not UTF-8 text" in capsys.readouterr().err


def test_encode_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["encode", str(tmp_path / "nope.jsonl")]) == 2
    assert "pktlab encode: cannot open" in capsys.readouterr().err


def test_decode_then_encode_is_identity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = (REPO / "examples" / "http_get.frames.hex").read_text()
    set_stdin(monkeypatch, stream.encode())
    assert main(["decode", "--hex"]) == 0
    jsonl = tmp_path / "s.jsonl"
    jsonl.write_text(capsys.readouterr().out)
    assert main(["encode", "--hex", str(jsonl)]) == 0
    assert capsys.readouterr().out.replace("\n", "") == "".join(stream.split())


# ----------------------------------------------------------------------------- help


@pytest.mark.parametrize("command", ["decode", "encode"])
def test_help_has_an_example(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "--hex" in out
    assert re.search(rf"examples:\n  (echo .*\| )?pktlab {command}", out)
