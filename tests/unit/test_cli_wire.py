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


@pytest.mark.parametrize(
    ("stream", "hex_", "hint"),
    [
        (b"21000000\n", False, " (the input looks like hex text: pktlab decode --hex)"),
        (b"210", False, " (the input looks like hex text: pktlab decode --hex)"),
        (b"# http_get\n# (comment)\n2100 0000 # start\n40000000\n", False,
         " (the input looks like hex text: pktlab decode --hex)"),
        (b'{"type": "start"}\n', False,
         " (the input looks like JSON lines: pktlab encode turns them into frames)"),
        (b'{"type": "start"}\n', True,
         "; the input looks like JSON lines: pktlab encode turns them into frames"),
        (b'\n [{"dir": "xpmgr->endpt", "name": "start", "hex": "21000000"}]', False,
         " (the input looks like a JSON list; of frames as {\"hex\": ...}: "
         "jq -r '.[].hex' FILE | pktlab decode --hex)"),
        (b'[{"hex": "21000000"}]', True,
         "; the input looks like a JSON list; of frames as {\"hex\": ...}: "
         "jq -r '.[].hex' FILE | pktlab decode --hex"),
        # frames, or hex text with --hex: no hint
        (bytes.fromhex("2c00000f0304"), False, "them"),
        (b"3132333435", True, "them"),  # decodes to b"12345", which is not the input
        (b"21000000 [", True, "(line 1, column 10)"),
    ],
)  # fmt: skip
def test_decode_of_text_says_what_the_text_looks_like(
    stream: bytes,
    hex_: bool,
    hint: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`echo 21000000 | pktlab decode` (no --hex) said `truncated frame at byte offset 0:
    the header (type 0x32 unknown) announces a 3223600-byte body, the stream ends after 5
    of them`, and the reference sessions' JSON (PROTOCOL.md's traces) alike: nothing said
    --hex, encode or how to get the frames out of a session file."""
    set_stdin(monkeypatch, stream)
    assert main(["decode", "--hex"] if hex_ else ["decode"]) == 2
    err = capsys.readouterr().err
    assert err.endswith(hint + "\n") and err.count("\n") == 1, err


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
        ('{"type": "start"}\n\n[1, 2]\n', "line 3: type: expected a JSON object, got an array"),
        ('{"type": "start"}\n{"type": "nosuch"}\n',
         "line 2: type: unknown message type name 'nosuch'"),
        ('{"type": "start"}\n{"type": "nclose"}\n', "line 2: sktid: missing (required by nclose)"),
        ('{"type": "start"}\n{"type": "xcert", "cert": "0g"}\n',
         "line 2: cert: bad hex '0g': 'g' at character 1"),
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


# ------------------------------------------------- session 24: input, output, bounds


def test_hex_is_read_a_chunk_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hex text of one long line was read whole before its first frame (128 MiB on one
    line: 349 MB of memory); now bytes come out after the first chunk."""
    from packetlab.cli import decode

    monkeypatch.setattr(decode, "CHUNK", 64)
    line = b"21000000" * 100_000  # 800 kB, no newline

    class Stream:
        read_so_far = 0

        def read(self, n: int) -> bytes:
            piece = line[self.read_so_far : self.read_so_far + n]
            self.read_so_far += len(piece)
            return piece

        def readline(self, limit: int = -1) -> bytes:  # what the old reader called
            return self.read(len(line) if limit < 0 else limit)

        def __iter__(self) -> object:
            return iter([self.readline()])

    stream = Stream()
    first = next(decode.read_hex(stream))  # type: ignore[arg-type]
    assert first == bytes.fromhex("21000000" * 8)  # the 64 characters of the first chunk
    assert stream.read_so_far <= 64


@pytest.mark.parametrize(
    ("text", "error"),
    [
        # a comment and a bad digit across the chunk boundaries (CHUNK = 5 below)
        (b"2100 # a comment that runs long zz\n0000 2b00\n0001 03\n  0x",
         "bad hex digit 'x' at byte offset 9 (line 4, column 4)"),
        (b"# zz\n#zz\n21000000zz", "bad hex digit 'z' at byte offset 4 (line 3, column 9)"),
        (b"21000000\r\n2b\r\n00 00 01 03 2", "a lone digit at byte offset 9"),
    ],
)  # fmt: skip
def test_hex_lines_and_columns_across_chunks(
    text: bytes, error: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from packetlab.cli import decode

    monkeypatch.setattr(decode, "CHUNK", 5)
    set_stdin(monkeypatch, text)
    assert main(["decode", "--hex"]) == 2
    out, err = capsys.readouterr()
    assert out.startswith('{"type": "start"}\n')
    assert error in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ('{"type": "nclose", "sktid": ' + "9" * 5000 + "}",
         "line 2: bad JSON: a number of more than 4300 digits"),  # was a ValueError traceback
        ("[" * 100_000 + "]" * 100_000, "line 2: bad JSON: nested too deeply"),  # RecursionError
        ('{"type": "nclose", "sktid": 1, "sktid": 2}', "line 2: key 'sktid' given twice"),
        ('{"type": "nclose", "sktid": NaN}', "line 2: sktid: expected an integer, got NaN"),
        # a value of megabytes in the line: quoted whole (10 MB of stderr), now cut
        ('{"type": "mwrite", "addr": 0, "data": "' + "0" * 10**7 + 'zz"}',
         "line 2: data: bad hex '0000000000000000000000000000000... (10000004 characters): "
         "'z' at character 10000000"),
        ('{"type": "' + "x" * 10**6 + '"}',
         "line 2: type: unknown message type name 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx... "
         "(1000002 characters)"),
        ('{"type": "start", "' + "k" * 10**6 + '": 1}',
         "line 2: kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk... (1000000 characters): not a field of start"),
        ('{"type": "start", "' + "k" * 10**6 + '": 1, "' + "k" * 10**6 + '": 2}',
         "line 2: key 'kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk... (1000002 characters) given twice"),
        ('{"type": "nsend", "sktid": 1, "family": 4, "proto": 17, "time": 0, "tag": 0, '
         '"raddr": "' + "1" * 10**6 + '", "rport": 1}',
         "line 2: raddr: '1111111111111111111111111111111... (1000002 characters) is not an "
         "IPv4 address (family 4)"),
        ('{"type": "nsend", "sktid": 1, "family": "' + "f" * 10**6 + '", "proto": 17, '
         '"time": 0, "tag": 0, "raddr": "1.2.3.4", "rport": 1}',
         'line 2: family: expected an integer, got "fffffffffffffffffffffffffffffff... '
         '(1000002 characters)'),
        ('{"type": "unknown", "code": 144, "body": "' + "00" * 0x1000000 + '"}',
         "line 2: body: 16777216 bytes > 0xFFFFFF"),
        ('{"type": "mwrite", "addr": 0, "data": "' + "00" * 0x1000000 + '"}',
         "line 2: cannot encode: Mwrite: body of 16777220 bytes > 0xFFFFFF"),
    ],
)  # fmt: skip
def test_encode_refuses_in_one_line(
    line: str, error: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    set_stdin(monkeypatch, ('{"type": "start"}\n' + line + "\n").encode())
    assert main(["encode", "--hex"]) == 2
    out, err = capsys.readouterr()
    assert out == "21000000\n"
    assert err == f"pktlab encode: {error}\n"


def test_encode_refuses_a_line_too_long_before_reading_it_whole(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from packetlab.cli import encode

    monkeypatch.setattr(encode, "MAX_LINE", 100)
    text = b'{"type": "start"}' + b" " * 83 + b"\n"  # 100 bytes and its newline: taken
    set_stdin(monkeypatch, text + b'{"type": "start"}' + b" " * 84 + b"\n")  # 101: refused
    assert main(["encode", "--hex"]) == 2
    out, err = capsys.readouterr()
    assert out == "21000000\n"
    assert err == "pktlab encode: line 2: longer than 100 bytes\n"


class _Failing(io.RawIOBase):
    def __init__(self, error: OSError) -> None:
        self.error = error

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def write(self, b: object) -> int:
        raise self.error

    def readinto(self, b: object) -> int:
        raise self.error


@pytest.mark.parametrize("command", ["decode", "encode"])
def test_an_output_that_cannot_be_written_is_one_line(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`pktlab decode x > /dev/full`: an OSError traceback; now one line, status 2."""
    import errno

    set_stdin(monkeypatch, b'{"type": "start"}\n' if command == "encode" else b"\x21\0\0\0")
    full = _Failing(OSError(errno.ENOSPC, "No space left on device"))
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BufferedWriter(full)))
    assert main([command]) == 2
    assert capsys.readouterr().err == (
        f"pktlab {command}: cannot write the output: No space left on device\n"
    )


@pytest.mark.parametrize("command", ["decode", "encode"])
def test_a_reader_gone_is_141_quietly(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`| head -1`: 141 and nothing said, as the other pktlab commands (was 0)."""
    set_stdin(monkeypatch, b'{"type": "start"}\n' if command == "encode" else b"\x21\0\0\0")
    gone = _Failing(BrokenPipeError(32, "Broken pipe"))
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BufferedWriter(gone)))
    assert main([command]) == 141
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("command", ["decode", "encode"])
def test_an_input_that_cannot_be_read_is_one_line(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import errno

    broken = _Failing(OSError(errno.EIO, "Input/output error"))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(broken)))
    assert main([command]) == 2
    assert capsys.readouterr().err == (
        f"pktlab {command}: cannot read standard input: Input/output error\n"
    )


@pytest.mark.parametrize("command", ["decode", "encode"])
def test_help_gives_the_exit_statuses(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "exit status: 0 done; 2 bad input" in out
    assert "130 Ctrl-C; 141 the reader of the output went away" in out


def _decode_then_encode(stream: bytes) -> bytes:
    """`pktlab decode | pktlab encode` on `stream`, in memory."""
    from packetlab.cli.decode import decode_stream
    from packetlab.cli.encode import encode_stream

    text = io.StringIO()
    decode_stream(iter([stream]), text)
    out = io.BytesIO()
    encode_stream(io.BytesIO(text.getvalue().encode()), out, False)  # type: ignore[arg-type]
    return out.getvalue()


@pytest.mark.parametrize("cls", wire.ALL_MESSAGES, ids=lambda c: c.NAME)
def test_decode_then_encode_gives_the_bytes_of_every_message_type(cls: type) -> None:
    """A frame of every type, drawn from the wire declarations (wire_strategies), through
    the two commands: the same bytes."""
    from hypothesis import given, settings
    from wire_strategies import STRATEGIES

    @settings(max_examples=60, deadline=None)
    @given(STRATEGIES[cls])
    def check(msg: wire.Message) -> None:
        frame = wire.encode(msg)
        assert _decode_then_encode(frame + frame) == frame + frame

    check()


@pytest.mark.parametrize(
    "frame",
    ["400000020000",  # result: SUCCESS spelled out (errid 0 on the wire)
     "6000000d 01 04d2 18ea3aa2bdb9583e 0000"],  # ntag likewise
)  # fmt: skip
def test_success_spelled_out_comes_back_as_it_came(
    frame: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decoders take it, the reference's encoder never writes it: `decode | encode` gave
    the short form (40000000), 2 bytes fewer than the capture it read."""
    data = bytes.fromhex(frame)
    assert _decode_then_encode(data + bytes.fromhex("40000000")) == data + bytes.fromhex("40000000")
    set_stdin(monkeypatch, data)
    assert main(["decode"]) == 0
    assert json.loads(capsys.readouterr().out)["explicit"] is True


def test_every_trace_round_trips() -> None:
    """The reference sessions (examples/*.frames.hex: spec/traces/*.session.json byte for byte):
    decode then encode gives each byte back."""
    for path in sorted((REPO / "examples").glob("*.frames.hex")):
        data = bytes.fromhex(hex_without_comments(path))
        assert _decode_then_encode(data) == data, path.name


@pytest.mark.parametrize("as_hex", [False, True])
def test_a_pipe_still_open_is_decoded_as_its_frames_come(
    as_hex: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`socat ... | pktlab decode`: a frame was printed once 64 KiB had come (or the pipe
    closed), its line held in the output's buffer; now as soon as it is read. The pipe: a
    first read gives one frame, the next would wait for the writer, so by then the line
    must be out."""
    import argparse

    from packetlab.cli import decode

    lines: list[str] = []
    shown_before_waiting: list[list[str]] = []

    class Out(io.StringIO):
        def flush(self) -> None:
            lines[:] = self.getvalue().splitlines()

    class Pipe:
        frames = [b"2b00000103\n" if as_hex else bytes.fromhex("2b00000103")]

        def read1(self, n: int) -> bytes:
            if not self.frames:  # the writer has not written more: this read waits
                shown_before_waiting.append(list(lines))
                return b""
            return self.frames.pop()

        read = read1  # (before: read(64 KiB), a pipe's full read: it waited here too)

    monkeypatch.setattr(sys, "stdin", argparse.Namespace(buffer=Pipe()))
    monkeypatch.setattr(sys, "stdout", Out())
    assert decode.run(argparse.Namespace(file="-", hex=as_hex)) == 0
    assert shown_before_waiting == [['{"type": "nclose", "sktid": 3}']]
