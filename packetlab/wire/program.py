"""Encoded PacketLab programs (PROTOCOL.md §3.4, §8.1): eBPF filters and WASM monitors.

Encoded form: byte 0 is the program type (``PKTLAB_EBPF`` or ``PKTLAB_WASM``).
For eBPF, N 8-byte instructions follow, each ``opcode:u8, regs:u8, offset:u16 BE, imm:u32 BE``
with ``regs = dst << 4 | src``: dst is the *high* nibble, the reverse of Linux's
``struct bpf_insn``. For WASM the module bytes follow.

Text form (``pktlab_load_program``): one instruction per line, five integers
``opcode dst src offset imm`` parsed like C ``strtoull(s, NULL, 0)`` (decimal, ``0x`` hex,
leading-``0`` octal); ``#`` starts a comment; blank lines are ignored.

Sans-IO, stdlib only.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from packetlab.wire.constants import PKTLAB_EBPF, PKTLAB_WASM
from packetlab.wire.errors import WireError

INSN_LEN = 8
# Largest ncap filter the reference endpoint accepts (FILT_BUFSZ), type byte included.
MAX_FILTER_LEN = 0x10000

# eBPF opcode fields (linux/bpf_common.h, linux/bpf.h), shared by the translator and loader.
BPF_LD, BPF_LDX, BPF_ST, BPF_STX, BPF_ALU, BPF_JMP, BPF_JMP32, BPF_ALU64 = range(8)
BPF_W, BPF_H, BPF_B, BPF_DW = 0x00, 0x08, 0x10, 0x18
BPF_IMM, BPF_ABS, BPF_IND, BPF_MEM = 0x00, 0x20, 0x40, 0x60
BPF_K, BPF_X = 0x00, 0x08
BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_OR, BPF_AND = 0x00, 0x10, 0x20, 0x30, 0x40, 0x50
BPF_LSH, BPF_RSH, BPF_NEG, BPF_MOD, BPF_XOR, BPF_MOV = 0x60, 0x70, 0x80, 0x90, 0xA0, 0xB0
BPF_ARSH, BPF_END = 0xC0, 0xD0
BPF_JA, BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET, BPF_JNE = 0x00, 0x10, 0x20, 0x30, 0x40, 0x50
BPF_JSGT, BPF_JSGE, BPF_CALL, BPF_EXIT = 0x60, 0x70, 0x80, 0x90
BPF_JLT, BPF_JLE, BPF_JSLT, BPF_JSLE = 0xA0, 0xB0, 0xC0, 0xD0
REG_FP = 10  # read-only frame pointer

_INSN = struct.Struct(">BBHI")


class ProgramError(WireError):
    """A PacketLab program that cannot be decoded, parsed or encoded."""


class ProgramDecodeError(ProgramError):
    """Bad encoded program; ``offset`` is the byte offset of the problem."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} (at byte offset {offset})")
        self.offset = offset


class ProgramTextError(ProgramError):
    """Bad text-form program; ``lineno`` is the 1-based line of the problem."""

    def __init__(self, message: str, lineno: int) -> None:
        super().__init__(f"line {lineno}: {message}")
        self.lineno = lineno


@dataclass(frozen=True, slots=True)
class Insn:
    """One eBPF instruction; ``off`` and ``imm`` hold their signed (int16/int32) values."""

    opcode: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0

    def __post_init__(self) -> None:
        for field, value, lo, hi in (
            ("opcode", self.opcode, 0, 0xFF),
            ("dst", self.dst, 0, 15),
            ("src", self.src, 0, 15),
            ("off", self.off, -0x8000, 0x7FFF),
            ("imm", self.imm, -0x8000_0000, 0x7FFF_FFFF),
        ):
            if not isinstance(value, int) or not lo <= value <= hi:
                raise ProgramError(f"eBPF instruction {field}={value!r} outside {lo}..{hi}")

    @classmethod
    def unsigned(cls, opcode: int, dst: int, src: int, off: int, imm: int) -> Insn:
        """Build from raw field values, accepting off as u16 or int16 and imm as u32 or int32."""
        return cls(opcode, dst, src, _signed(off, 16, "off"), _signed(imm, 32, "imm"))

    def encode(self) -> bytes:
        """The 8 PacketLab bytes: opcode, dst<<4|src, off (BE), imm (BE)."""
        return _INSN.pack(
            self.opcode, self.dst << 4 | self.src, self.off & 0xFFFF, self.imm & 0xFFFF_FFFF
        )

    @classmethod
    def decode(cls, data: bytes | memoryview, pos: int = 0) -> Insn:
        opcode, regs, off, imm = _INSN.unpack_from(data, pos)
        return cls(opcode, regs >> 4, regs & 0xF, _sext(off, 16), _sext(imm, 32))


@dataclass(frozen=True, slots=True)
class EbpfProgram:
    insns: tuple[Insn, ...]

    def encode(self) -> bytes:
        return encode_ebpf(self.insns)


@dataclass(frozen=True, slots=True)
class WasmProgram:
    module: bytes

    def encode(self) -> bytes:
        return encode_wasm(self.module)


Program = EbpfProgram | WasmProgram


def _sext(value: int, bits: int) -> int:
    sign = 1 << (bits - 1)
    return (value & (sign - 1)) - (value & sign)


def _signed(value: int, bits: int, field: str) -> int:
    if not -(1 << (bits - 1)) <= value < (1 << bits):
        raise ProgramError(f"eBPF instruction {field}={value} does not fit in {bits} bits")
    return _sext(value, bits)


def encode_ebpf(insns: Iterable[Insn]) -> bytes:
    """Encoded eBPF program: the type byte then each instruction in PacketLab order."""
    return bytes([PKTLAB_EBPF]) + b"".join(insn.encode() for insn in insns)


def encode_wasm(module: bytes) -> bytes:
    """Encoded WASM program (a monitor): the type byte then the module bytes."""
    return bytes([PKTLAB_WASM]) + bytes(module)


def decode_program(data: bytes | memoryview) -> Program:
    """Decode an encoded program of either type."""
    if len(data) == 0:
        raise ProgramDecodeError("empty program: no type byte", 0)
    kind = data[0]
    if kind == PKTLAB_EBPF:
        return EbpfProgram(tuple(decode_ebpf(data)))
    if kind == PKTLAB_WASM:
        return WasmProgram(bytes(data[1:]))
    raise ProgramDecodeError(f"unknown program type 0x{kind:02x}", 0)


def decode_ebpf(data: bytes | memoryview) -> list[Insn]:
    """Decode an encoded program that must be eBPF (what ncap accepts)."""
    if len(data) == 0:
        raise ProgramDecodeError("empty program: no type byte", 0)
    if data[0] != PKTLAB_EBPF:
        name = "WASM" if data[0] == PKTLAB_WASM else f"unknown type 0x{data[0]:02x}"
        raise ProgramDecodeError(f"program type is {name}, expected eBPF (0x00)", 0)
    body = len(data) - 1
    if body % INSN_LEN:
        whole = 1 + body - body % INSN_LEN
        raise ProgramDecodeError(
            f"eBPF body of {body} bytes is not a multiple of {INSN_LEN}: "
            f"{body % INSN_LEN} trailing bytes",
            whole,
        )
    view = memoryview(data)
    return [Insn.decode(view, pos) for pos in range(1, len(data), INSN_LEN)]


def program_digest(encoded: bytes) -> bytes:
    """SHA-256 of the *encoded* program (type byte included), as certificates name it."""
    return hashlib.sha256(encoded).digest()


def program_digest_hex(encoded: bytes) -> str:
    return program_digest(encoded).hex()


# --- text form -------------------------------------------------------------------------

_STRTOULL = re.compile(r"([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")


def strtoull0(token: str) -> int:
    """Parse a whole token like C ``strtoull(token, &end, 0)`` with ``*end == 0``.

    The sign is kept (C would wrap a negative into 2**64 - n; callers range-check instead).
    Raises ValueError for anything C would not consume entirely.
    """
    m = _STRTOULL.fullmatch(token)
    if m is None:
        raise ValueError(f"not an integer (decimal, 0x hex or 0 octal): {token!r}")
    sign, digits = m.groups()
    if digits[:2] in ("0x", "0X"):
        value = int(digits[2:], 16)
    elif digits.startswith("0"):
        value = int(digits, 8)
    else:
        value = int(digits, 10)
    return -value if sign == "-" else value


_TEXT_FIELDS = (
    ("opcode", 0, 0xFF),
    ("dst", 0, 15),
    ("src", 0, 15),
    ("offset", -0x8000, 0xFFFF),
    ("imm", -0x8000_0000, 0xFFFF_FFFF),
)


def parse_text(text: str) -> list[Insn]:
    """Parse the text form: ``opcode dst src offset imm`` per line; ``#`` comments."""
    insns = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        tokens = line.split()
        if len(tokens) != len(_TEXT_FIELDS):
            raise ProgramTextError(
                f"expected 5 integers (opcode dst src offset imm), got {len(tokens)}", lineno
            )
        values = []
        for token, (field, lo, hi) in zip(tokens, _TEXT_FIELDS, strict=True):
            try:
                value = strtoull0(token)
            except ValueError as exc:
                raise ProgramTextError(f"{field}: {exc}", lineno) from None
            if not lo <= value <= hi:
                raise ProgramTextError(f"{field} {token} outside {lo}..{hi}", lineno)
            values.append(value)
        insns.append(Insn.unsigned(*values))
    return insns


def format_text(insns: Iterable[Insn], *, annotate: bool = True) -> str:
    """Text form of ``insns``; with ``annotate`` each line ends with a ``#`` disassembly."""
    lines = []
    for insn in insns:
        line = f"0x{insn.opcode:02x} {insn.dst} {insn.src} {insn.off} {insn.imm}"
        if annotate:
            line = f"{line:<32}# {describe(insn)}"
        lines.append(line)
    return "".join(f"{line}\n" for line in lines)


def load_text_program(text: str) -> bytes:
    """Text form -> encoded eBPF program (what ``pktlab_load_program`` then encode do)."""
    return encode_ebpf(parse_text(text))


# --- disassembly (for humans: docs, logs, error messages) ------------------------------

_ALU_OPS = {
    BPF_ADD: "+=",
    BPF_SUB: "-=",
    BPF_MUL: "*=",
    BPF_DIV: "/=",
    BPF_OR: "|=",
    BPF_AND: "&=",
    BPF_LSH: "<<=",
    BPF_RSH: ">>=",
    BPF_MOD: "%=",
    BPF_XOR: "^=",
    BPF_MOV: "=",
    BPF_ARSH: "s>>=",
}
_JMP_OPS = {
    BPF_JEQ: "==",
    BPF_JGT: ">",
    BPF_JGE: ">=",
    BPF_JSET: "&",
    BPF_JNE: "!=",
    BPF_JSGT: "s>",
    BPF_JSGE: "s>=",
    BPF_JLT: "<",
    BPF_JLE: "<=",
    BPF_JSLT: "s<",
    BPF_JSLE: "s<=",
}
_SIZES = {BPF_W: "u32", BPF_H: "u16", BPF_B: "u8", BPF_DW: "u64"}


def describe(insn: Insn) -> str:
    """Short human-readable rendering of one instruction (not a full disassembler)."""
    code, cls = insn.opcode, insn.opcode & 0x07
    dst, src = f"r{insn.dst}", f"r{insn.src}"
    size = _SIZES[code & 0x18]
    if cls in (BPF_ALU, BPF_ALU64):
        w = "w" if cls == BPF_ALU else "r"
        op = code & 0xF0
        if op == BPF_NEG:
            return f"{w}{insn.dst} = -{w}{insn.dst}"
        if op == BPF_END:
            return f"{w}{insn.dst} = {'be' if code & BPF_X else 'le'}{insn.imm} {w}{insn.dst}"
        if op not in _ALU_OPS:
            return f"opcode 0x{code:02x}"
        operand = f"{w}{insn.src}" if code & BPF_X else str(insn.imm)
        return f"{w}{insn.dst} {_ALU_OPS[op]} {operand}"
    if cls in (BPF_JMP, BPF_JMP32):
        op = code & 0xF0
        if op == BPF_EXIT:
            return "exit"
        if op == BPF_CALL:
            return f"call {insn.imm}"
        if op == BPF_JA:
            return f"goto {insn.off:+d}"
        if op not in _JMP_OPS:
            return f"opcode 0x{code:02x}"
        w = "w" if cls == BPF_JMP32 else "r"
        operand = f"{w}{insn.src}" if code & BPF_X else str(insn.imm)
        return f"if {w}{insn.dst} {_JMP_OPS[op]} {operand} goto {insn.off:+d}"
    if cls == BPF_LD:
        mode = code & 0xE0
        if mode == BPF_ABS:
            return f"r0 = *({size} *)skb[{insn.imm}]"
        if mode == BPF_IND:
            return f"r0 = *({size} *)skb[{src} + {insn.imm}]"
        if mode == BPF_IMM and code & 0x18 == BPF_DW:
            return f"{dst} = imm64 (low {insn.imm})"
    if cls == BPF_LDX and code & 0xE0 == BPF_MEM:
        return f"{dst} = *({size} *)({src} {insn.off:+d})"
    if cls == BPF_STX and code & 0xE0 == BPF_MEM:
        return f"*({size} *)({dst} {insn.off:+d}) = {src}"
    if cls == BPF_ST and code & 0xE0 == BPF_MEM:
        return f"*({size} *)({dst} {insn.off:+d}) = {insn.imm}"
    return f"opcode 0x{code:02x}"


def ebpf_insns(program: Sequence[Insn] | bytes) -> list[Insn]:
    """Instructions from either a list of them or an encoded eBPF program."""
    if isinstance(program, bytes | bytearray | memoryview):
        return decode_ebpf(program)
    return list(program)
