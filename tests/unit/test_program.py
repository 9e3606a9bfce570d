"""Encoded PacketLab programs (PROTOCOL.md §3.4, §8.1): byte layout, text form, digest."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from packetlab.wire.program import (
    PKTLAB_EBPF,
    PKTLAB_WASM,
    EbpfProgram,
    Insn,
    ProgramDecodeError,
    ProgramError,
    ProgramTextError,
    WasmProgram,
    decode_ebpf,
    decode_program,
    describe,
    encode_ebpf,
    encode_wasm,
    format_text,
    load_text_program,
    parse_text,
    program_digest,
    program_digest_hex,
    strtoull0,
)

insns = st.builds(
    Insn,
    opcode=st.integers(0, 255),
    dst=st.integers(0, 15),
    src=st.integers(0, 15),
    off=st.integers(-0x8000, 0x7FFF),
    imm=st.integers(-0x8000_0000, 0x7FFF_FFFF),
)

# ICMP filter in the style of the reference example: r0 = proto byte; accept ICMP.
ICMP_TEXT = """\
# accept ICMP, drop the rest
0xbf 6 1 0 0        # r6 = r1 (ld_abs reads the context from r6)
0x30 0 0 0 9        # r0 = ip[9]
0x55 0 0 2 1        # if r0 != 1 goto drop

0xb7 0 0 0 0xffff   # r0 = 0xffff
0x95 0 0 0 0        # exit
0xb7 0 0 0 0
0x95 0 0 0 0
"""


def test_regs_byte_has_dst_in_the_high_nibble() -> None:
    assert Insn(0xBF, dst=6, src=1).encode() == bytes([0xBF, 0x61, 0, 0, 0, 0, 0, 0])


def test_offset_and_imm_are_big_endian_and_signed() -> None:
    insn = Insn(0x55, dst=0, src=0, off=-2, imm=-1)
    assert insn.encode() == bytes([0x55, 0x00, 0xFF, 0xFE, 0xFF, 0xFF, 0xFF, 0xFF])
    assert Insn(0x30, imm=0x01020304, off=0x0506).encode()[2:] == bytes([5, 6, 1, 2, 3, 4])
    assert Insn.decode(insn.encode()) == insn


def test_encode_ebpf_prefixes_the_type_byte() -> None:
    prog = [Insn(0xB7, imm=0xFFFF), Insn(0x95)]
    data = encode_ebpf(prog)
    assert data[0] == PKTLAB_EBPF and len(data) == 1 + 16
    assert data.hex() == "00" + "b70000000000ffff" + "9500000000000000"
    assert decode_program(data) == EbpfProgram(tuple(prog))
    assert EbpfProgram(tuple(prog)).encode() == data


def test_wasm_form_and_its_digest() -> None:
    module = b"\0asm\x01\0\0\0"
    data = encode_wasm(module)
    assert data == b"\x01" + module
    assert decode_program(data) == WasmProgram(module)
    assert WasmProgram(module).encode() == data
    # §8.1: the digest covers the encoded program, type byte included.
    assert program_digest(data) == hashlib.sha256(b"\x01" + module).digest()
    assert program_digest_hex(data) == hashlib.sha256(data).hexdigest()


@given(st.lists(insns, max_size=20))
def test_round_trip(prog: list[Insn]) -> None:
    assert decode_ebpf(encode_ebpf(prog)) == prog
    assert parse_text(format_text(prog)) == prog
    assert parse_text(format_text(prog, annotate=False)) == prog
    assert all(describe(insn) for insn in prog)  # any instruction renders


@given(st.binary(max_size=64))
def test_garbage_decodes_or_raises_program_error(data: bytes) -> None:
    try:
        decode_program(data)
    except ProgramError:
        pass


@pytest.mark.parametrize(
    ("data", "offset", "words"),
    [
        (b"", 0, "empty program"),
        (b"\x02" + bytes(8), 0, "unknown program type 0x02"),
        (b"\x00" + bytes(13), 9, "5 trailing bytes"),
        (b"\x00\x95", 1, "1 trailing bytes"),
    ],
)
def test_decode_errors_name_the_offset(data: bytes, offset: int, words: str) -> None:
    with pytest.raises(ProgramDecodeError) as info:
        decode_program(data)
    assert info.value.offset == offset
    assert words in str(info.value)
    assert f"byte offset {offset}" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_decode_ebpf_refuses_wasm() -> None:
    with pytest.raises(ProgramDecodeError, match="WASM"):
        decode_ebpf(encode_wasm(b"\0asm"))
    with pytest.raises(ProgramDecodeError, match="empty"):
        decode_ebpf(b"")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"opcode": 256},
        {"opcode": 0, "dst": 16},
        {"opcode": 0, "src": -1},
        {"opcode": 0, "off": 0x8000},
        {"opcode": 0, "imm": 0x8000_0000},
        {"opcode": 0, "imm": 1.5},
    ],
)
def test_insn_fields_are_range_checked(kwargs: dict[str, int]) -> None:
    with pytest.raises(ProgramError):
        Insn(**kwargs)


def test_insn_unsigned_accepts_both_forms() -> None:
    assert Insn.unsigned(0x55, 0, 0, 0xFFFF, 0xFFFF_FFFF) == Insn(0x55, 0, 0, -1, -1)
    assert Insn.unsigned(0x55, 0, 0, -1, -1) == Insn(0x55, 0, 0, -1, -1)
    with pytest.raises(ProgramError, match="16 bits"):
        Insn.unsigned(0x55, 0, 0, 0x10000, 0)


@pytest.mark.parametrize(
    ("token", "value"),
    [("0", 0), ("17", 17), ("0x1F", 31), ("0X1f", 31), ("017", 15), ("-1", -1), ("+5", 5)],
)
def test_strtoull_base_zero(token: str, value: int) -> None:
    assert strtoull0(token) == value


@pytest.mark.parametrize("token", ["08", "0x", "1a", "abc", "", "--1", "1.0"])
def test_strtoull_rejects_what_c_would_not_consume(token: str) -> None:
    with pytest.raises(ValueError):
        strtoull0(token)


def test_parse_text_with_comments_and_bases() -> None:
    prog = parse_text(ICMP_TEXT)
    assert prog == [
        Insn(0xBF, 6, 1),
        Insn(0x30, imm=9),
        Insn(0x55, off=2, imm=1),
        Insn(0xB7, imm=0xFFFF),
        Insn(0x95),
        Insn(0xB7),
        Insn(0x95),
    ]
    assert load_text_program(ICMP_TEXT) == encode_ebpf(prog)
    assert parse_text("") == [] and parse_text("# nothing\n\n   \n") == []
    assert parse_text("0x55 0 0 0xffff 0xffffffff\n") == [Insn(0x55, off=-1, imm=-1)]
    assert parse_text("0x55 0 0 -2 -3") == [Insn(0x55, off=-2, imm=-3)]
    assert parse_text("0x55 0 0 010 0\r\n") == [Insn(0x55, off=8)]


@pytest.mark.parametrize(
    ("text", "lineno", "words"),
    [
        ("0x95 0 0 0\n", 1, "expected 5 integers"),
        ("# c\n0x95 0 0 0 0 0\n", 2, "got 6"),
        ("\n\n0x95 0 0 zero 0", 3, "offset"),
        ("0x100 0 0 0 0", 1, "opcode 0x100 outside 0..255"),
        ("0x95 16 0 0 0", 1, "dst 16 outside"),
        ("0x95 0 -1 0 0", 1, "src -1 outside"),
        ("0x95 0 0 0x10000 0", 1, "offset 0x10000 outside"),
        ("0x95 0 0 0 0x100000000", 1, "imm 0x100000000 outside"),
        ("0x95 0 0 0 08", 1, "imm: not an integer"),
    ],
)
def test_parse_text_errors_name_the_line(text: str, lineno: int, words: str) -> None:
    with pytest.raises(ProgramTextError) as info:
        parse_text(text)
    assert info.value.lineno == lineno
    assert words in str(info.value)
    assert str(info.value).startswith(f"line {lineno}:")


def test_describe_renders_common_instructions() -> None:
    assert describe(Insn(0xBF, 6, 1)) == "r6 = r1"
    assert describe(Insn(0x30, imm=9)) == "r0 = *(u8 *)skb[9]"
    assert describe(Insn(0x48, src=7, imm=2)) == "r0 = *(u16 *)skb[r7 + 2]"
    assert describe(Insn(0x55, off=2, imm=1)) == "if r0 != 1 goto +2"
    assert describe(Insn(0x1D, dst=0, src=8, off=-1)) == "if r0 == r8 goto -1"
    assert describe(Insn(0x95)) == "exit"
    assert describe(Insn(0x61, 0, 10, -4)) == "r0 = *(u32 *)(r10 -4)"
    assert describe(Insn(0x63, 10, 0, -8)) == "*(u32 *)(r10 -8) = r0"
    assert describe(Insn(0x84, 0)) == "w0 = -w0"
    assert describe(Insn(0xFF)) == "opcode 0xff"
    assert describe(Insn(0xF5)) == "opcode 0xf5"
    assert "# r0 = *(u8 *)skb[9]" in format_text([Insn(0x30, imm=9)])
    assert PKTLAB_WASM == 1
