"""Capture filters for ncap (PROTOCOL.md §3.4): tcpdump expressions -> PacketLab eBPF.

An expression is compiled by libpcap for ``DLT_RAW`` (packets start at the IP header, as
the endpoint's capture socket sees them) into classic BPF, which is then translated into
eBPF the way Linux's ``bpf_convert_filter`` does. The result is an encoded PacketLab
program for ``ncap``. Hand-written eBPF in the text form is accepted too.

Register use of the translation (eBPF socket filters return the accepted length in r0, and
``ld_abs``/``ld_ind`` write r0, clobber r1-r5 and read the context from r6):

* A = r0, X = r7, a temporary = r8, the context (skb) = r6;
* scratch memory M[k] = 32-bit stack slot at fp - 4 * (16 - k), zeroed at entry if used;
* ``LD|ABS`` / ``LD|IND`` stay the legacy eBPF packet loads (allowed in socket filters);
* a conditional jump with both branches becomes ``j<cond>`` plus ``ja``; comparisons with a
  constant ≥ 2**31 go through r8 because eBPF sign-extends immediates;
* division or modulo by X = 0 returns 0, as classic BPF does.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from packetlab.pcap import libpcap
from packetlab.pcap.libpcap import DLT_RAW, ClassicInsn
from packetlab.wire import program as P
from packetlab.wire.program import Insn

__all__ = [
    "DLT_RAW",
    "ClassicInsn",
    "FilterError",
    "FilterSyntaxError",
    "FilterTooLarge",
    "FilterTranslationError",
    "LibpcapUnavailable",
    "accept_all_filter",
    "classic_to_ebpf",
    "compile_classic",
    "compile_ebpf",
    "drop_all_filter",
    "netmask_value",
    "tcpdump_filter",
    "text_filter",
]

SNAPLEN = 0xFFFF  # r0 = 0xffff accepts the whole packet (§3.4)

# Classic BPF (linux/filter.h, pcap/bpf.h); sizes, modes, ALU ops and jump ops share the
# eBPF values in packetlab.wire.program.
C_LD, C_LDX, C_ST, C_STX, C_ALU, C_JMP, C_RET, C_MISC = range(8)
C_LEN, C_MSH = 0x80, 0xA0
C_RVAL_A = 0x10
C_TAX, C_TXA = 0x00, 0x80
MEMWORDS = 16
SKF_AD_OFF = 0xFFFF_F000  # -0x1000: ancillary data loads, not available in eBPF

REG_A, REG_X, REG_TMP, REG_CTX = 0, 7, 8, 6
_ALU_BINOPS = frozenset(
    {P.BPF_ADD, P.BPF_SUB, P.BPF_MUL, P.BPF_DIV, P.BPF_OR, P.BPF_AND}
    | {P.BPF_LSH, P.BPF_RSH, P.BPF_MOD, P.BPF_XOR}
)
_INVERSE = {P.BPF_JEQ: P.BPF_JNE, P.BPF_JGT: P.BPF_JLE, P.BPF_JGE: P.BPF_JLT}


class FilterError(Exception):
    """A filter that cannot be built."""


class FilterSyntaxError(FilterError, ValueError):
    """libpcap refused the expression; ``pcap_message`` is its own error text."""

    def __init__(self, expression: str, pcap_message: str) -> None:
        super().__init__(f"bad filter expression {expression!r}: {pcap_message}")
        self.expression = expression
        self.pcap_message = pcap_message


class FilterTranslationError(FilterError, ValueError):
    """A classic program the translation does not support; ``index`` is the insn."""

    def __init__(self, message: str, index: int) -> None:
        super().__init__(f"classic BPF instruction {index}: {message}")
        self.index = index


class FilterTooLarge(FilterError, ValueError):
    """The encoded program is past ncap's limit (the endpoint's FILT_BUFSZ): said here, by
    size and count, rather than as a bare ESKTBADFILT from the endpoint."""

    def __init__(self, size: int, insns: int) -> None:
        super().__init__(
            f"the filter is {size} bytes of eBPF ({insns} instructions), more than the "
            f"{P.MAX_FILTER_LEN} an endpoint accepts in ncap ({P.MAX_FILTER_LEN // P.INSN_LEN - 1}"
            " instructions): a shorter expression (a net instead of many hosts) fits"
        )
        self.size = size
        self.insns = insns


def _fits(encoded: bytes) -> bytes:
    if len(encoded) > P.MAX_FILTER_LEN:
        raise FilterTooLarge(len(encoded), (len(encoded) - 1) // P.INSN_LEN)
    return encoded


class LibpcapUnavailable(FilterError, RuntimeError):
    """libpcap (Debian package libpcap0.8) is not installed."""


# --- libpcap (packetlab.pcap) ---------------------------------------------------------


Netmask = str | int | ipaddress.IPv4Address | None


def netmask_value(netmask: Netmask) -> int:
    """pcap_compile's netmask argument: `ip broadcast` tests a destination's host bits
    under it. None: not known (libpcap refuses `ip broadcast`); "255.255.255.0", "24" or
    an IPv4Address; an int is the 32-bit value itself (0xFFFFFF00). tcpdump 4.99.3 gives
    0 (measured, also capturing live: docs/filters.md)."""
    if netmask is None:
        return libpcap.PCAP_NETMASK_UNKNOWN
    if isinstance(netmask, ipaddress.IPv4Address):
        return int(netmask)
    if isinstance(netmask, int) and not isinstance(netmask, bool):
        if not 0 <= netmask <= 0xFFFF_FFFF:
            raise ValueError(f"netmask {netmask:#x} is not a 32-bit value")
        return netmask
    try:
        return int(ipaddress.IPv4Network(f"0.0.0.0/{netmask}").netmask)
    except (ValueError, TypeError):
        raise ValueError(
            f"netmask {netmask!r}: not an IPv4 netmask (255.255.255.0) or prefix length (24)"
        ) from None


def compile_classic(
    expression: str,
    *,
    snaplen: int = SNAPLEN,
    optimize: bool = True,
    linktype: int = DLT_RAW,
    netmask: Netmask = None,
) -> list[ClassicInsn]:
    """Compile a tcpdump expression with libpcap into classic BPF for ``linktype``;
    `netmask` as pcap_compile takes it (`netmask_value`), for `ip broadcast`."""
    mask = netmask_value(netmask)
    try:
        return libpcap.compile_classic(
            expression, snaplen=snaplen, optimize=optimize, linktype=linktype, netmask=mask
        )
    except libpcap.PcapSyntaxError as e:
        message = e.pcap_message
        if netmask is None and message.startswith("netmask not known"):
            # the endpoint's interfaces are not known here: the caller says it
            message += (
                " (say the endpoint interface's netmask: netmask='255.255.255.0'; "
                "tcpdump 4.99.3 compiles it with 0)"
            )
        raise FilterSyntaxError(expression, message) from None
    except libpcap.LibpcapUnavailable as e:
        raise LibpcapUnavailable(str(e)) from None


# --- classic -> eBPF -------------------------------------------------------------------


def _stack_off(k: int, index: int) -> int:
    if not 0 <= k < MEMWORDS:
        raise FilterTranslationError(f"scratch memory index {k} outside 0..15", index)
    return -4 * (MEMWORDS - k)


def _imm(k: int) -> int:
    """Classic u32 k as an eBPF int32 immediate (ALU32 uses the same 32 bits)."""
    k &= 0xFFFF_FFFF
    return k - (1 << 32) if k & 0x8000_0000 else k


def _uses_scratch(c: ClassicInsn) -> bool:
    cls = c.code & 0x07
    return cls in (C_ST, C_STX) or (cls in (C_LD, C_LDX) and c.code & 0xE0 == P.BPF_MEM)


# An emitted instruction, possibly a jump whose offset is patched once the eBPF position
# of its classic target is known.
_Emit = tuple[Insn, int | None]


def _translate_one(ins: ClassicInsn, i: int, n: int) -> list[_Emit]:
    cls, code, k = ins.code & 0x07, ins.code, ins.k
    size, mode = code & 0x18, code & 0xE0
    out: list[_Emit] = []

    def emit(insn: Insn, target: int | None = None) -> None:
        out.append((insn, target))

    if cls in (C_LD, C_LDX):
        dst = REG_A if cls == C_LD else REG_X
        if mode in (P.BPF_IMM, P.BPF_MEM, C_LEN) and size != P.BPF_W:
            raise FilterTranslationError(f"unsupported load opcode 0x{code:02x}", i)
        if mode == P.BPF_IMM:
            emit(Insn(P.BPF_ALU | P.BPF_MOV | P.BPF_K, dst, 0, 0, _imm(k)))
        elif mode == P.BPF_MEM:
            emit(Insn(P.BPF_LDX | P.BPF_MEM | P.BPF_W, dst, P.REG_FP, _stack_off(k, i)))
        elif mode == C_LEN:  # __sk_buff.len is at offset 0
            emit(Insn(P.BPF_LDX | P.BPF_MEM | P.BPF_W, dst, REG_CTX, 0))
        elif cls == C_LD and mode in (P.BPF_ABS, P.BPF_IND) and size != P.BPF_DW:
            if k >= SKF_AD_OFF:
                raise FilterTranslationError(
                    f"ancillary load (offset {_imm(k)}) has no eBPF equivalent", i
                )
            src = REG_X if mode == P.BPF_IND else 0
            emit(Insn(P.BPF_LD | mode | size, 0, src, 0, _imm(k)))
        elif cls == C_LDX and mode == C_MSH and size == P.BPF_B:
            # X = 4 * (P[k] & 0xf): the load writes r0 (= A), so park A in the temporary.
            emit(Insn(P.BPF_ALU64 | P.BPF_MOV | P.BPF_X, REG_TMP, REG_A))
            emit(Insn(P.BPF_LD | P.BPF_ABS | P.BPF_B, 0, 0, 0, _imm(k)))
            emit(Insn(P.BPF_ALU | P.BPF_AND | P.BPF_K, REG_A, 0, 0, 0xF))
            emit(Insn(P.BPF_ALU | P.BPF_LSH | P.BPF_K, REG_A, 0, 0, 2))
            emit(Insn(P.BPF_ALU64 | P.BPF_MOV | P.BPF_X, REG_X, REG_A))
            emit(Insn(P.BPF_ALU64 | P.BPF_MOV | P.BPF_X, REG_A, REG_TMP))
        else:
            raise FilterTranslationError(f"unsupported load opcode 0x{code:02x}", i)
    elif cls in (C_ST, C_STX):
        if code != cls:
            raise FilterTranslationError(f"unsupported store opcode 0x{code:02x}", i)
        src = REG_A if cls == C_ST else REG_X
        emit(Insn(P.BPF_STX | P.BPF_MEM | P.BPF_W, P.REG_FP, src, _stack_off(k, i)))
    elif cls == C_ALU:
        op, by_x = code & 0xF0, bool(code & P.BPF_X)
        if op == P.BPF_NEG:
            emit(Insn(P.BPF_ALU | P.BPF_NEG, REG_A))
        elif op in _ALU_BINOPS:
            if by_x:
                if op in (P.BPF_DIV, P.BPF_MOD):  # classic BPF: x / 0 returns 0
                    emit(Insn(P.BPF_JMP | P.BPF_JNE | P.BPF_K, REG_X, 0, 2, 0))
                    emit(Insn(P.BPF_ALU | P.BPF_MOV | P.BPF_K, REG_A, 0, 0, 0))
                    emit(Insn(P.BPF_JMP | P.BPF_EXIT))
                emit(Insn(P.BPF_ALU | op | P.BPF_X, REG_A, REG_X))
            else:
                if op in (P.BPF_DIV, P.BPF_MOD) and k == 0:
                    raise FilterTranslationError("division by constant zero", i)
                if op in (P.BPF_LSH, P.BPF_RSH) and k >= 32:
                    raise FilterTranslationError(f"shift by {k} (≥ 32)", i)
                emit(Insn(P.BPF_ALU | op | P.BPF_K, REG_A, 0, 0, _imm(k)))
        else:
            raise FilterTranslationError(f"unsupported ALU opcode 0x{code:02x}", i)
    elif cls == C_JMP:
        op = code & 0xF0
        if op == P.BPF_JA:
            target = i + 1 + k
            if target >= n:
                raise FilterTranslationError(f"jump to {target} beyond the end ({n})", i)
            emit(Insn(P.BPF_JMP | P.BPF_JA), target)
        elif op in (P.BPF_JEQ, P.BPF_JGT, P.BPF_JGE, P.BPF_JSET):
            t, f = i + 1 + ins.jt, i + 1 + ins.jf
            if max(t, f) >= n:
                raise FilterTranslationError(f"jump to {max(t, f)} beyond the end ({n})", i)
            src, imm, srcbit = 0, _imm(k), code & P.BPF_X
            if srcbit:
                src, imm = REG_X, 0
            elif imm < 0:  # eBPF would sign-extend k to 64 bits; compare with it zero-extended
                emit(Insn(P.BPF_ALU | P.BPF_MOV | P.BPF_K, REG_TMP, 0, 0, imm))
                src, imm, srcbit = REG_TMP, 0, P.BPF_X
            if t == f:
                emit(Insn(P.BPF_JMP | P.BPF_JA), t)
            elif f == i + 1:
                emit(Insn(P.BPF_JMP | op | srcbit, REG_A, src, 0, imm), t)
            elif t == i + 1 and op in _INVERSE:
                emit(Insn(P.BPF_JMP | _INVERSE[op] | srcbit, REG_A, src, 0, imm), f)
            else:
                emit(Insn(P.BPF_JMP | op | srcbit, REG_A, src, 0, imm), t)
                emit(Insn(P.BPF_JMP | P.BPF_JA), f)
        else:
            raise FilterTranslationError(f"unsupported jump opcode 0x{code:02x}", i)
    elif cls == C_RET:
        rval = code & 0x18
        if rval == P.BPF_K:
            emit(Insn(P.BPF_ALU | P.BPF_MOV | P.BPF_K, REG_A, 0, 0, _imm(k)))
        elif rval == P.BPF_X:
            emit(Insn(P.BPF_ALU | P.BPF_MOV | P.BPF_X, REG_A, REG_X))
        elif rval != C_RVAL_A:
            raise FilterTranslationError(f"unsupported return opcode 0x{code:02x}", i)
        emit(Insn(P.BPF_JMP | P.BPF_EXIT))
    elif cls == C_MISC:
        if code & 0xF8 == C_TAX:
            emit(Insn(P.BPF_ALU | P.BPF_MOV | P.BPF_X, REG_X, REG_A))
        elif code & 0xF8 == C_TXA:
            emit(Insn(P.BPF_ALU | P.BPF_MOV | P.BPF_X, REG_A, REG_X))
        else:
            raise FilterTranslationError(f"unsupported misc opcode 0x{code:02x}", i)
    return out


def classic_to_ebpf(classic: Sequence[ClassicInsn]) -> list[Insn]:
    """Translate a classic BPF socket filter into equivalent PacketLab eBPF instructions."""
    n = len(classic)
    if n == 0:
        raise FilterTranslationError("empty classic program", 0)
    if classic[-1].code & 0x07 != C_RET:
        raise FilterTranslationError("last instruction is not a return", n - 1)
    # Prologue: keep the context for ld_abs, A = X = 0, used scratch slots = 0.
    prologue = [
        Insn(P.BPF_ALU64 | P.BPF_MOV | P.BPF_X, REG_CTX, 1),
        Insn(P.BPF_ALU | P.BPF_MOV | P.BPF_K, REG_A, 0, 0, 0),
        Insn(P.BPF_ALU | P.BPF_MOV | P.BPF_K, REG_X, 0, 0, 0),
    ]
    blocks = [_translate_one(c, i, n) for i, c in enumerate(classic)]
    slots = sorted({c.k for c in classic if _uses_scratch(c)})
    prologue += [
        Insn(P.BPF_ST | P.BPF_MEM | P.BPF_W, P.REG_FP, 0, -4 * (MEMWORDS - k), 0) for k in slots
    ]
    starts, pos = [], len(prologue)
    for block in blocks:
        starts.append(pos)
        pos += len(block)
    out = list(prologue)
    for block in blocks:
        for insn, target in block:
            if target is not None:
                off = starts[target] - (len(out) + 1)
                if not -0x8000 <= off <= 0x7FFF:
                    raise FilterTranslationError("jump offset does not fit in 16 bits", 0)
                insn = Insn(insn.opcode, insn.dst, insn.src, off, insn.imm)
            out.append(insn)
    return out


# --- encoded ncap filters --------------------------------------------------------------


def compile_ebpf(
    expression: str, *, snaplen: int = SNAPLEN, optimize: bool = True, netmask: Netmask = None
) -> list[Insn]:
    """tcpdump expression -> eBPF instructions for a capture socket (offset 0 = IP header)."""
    return classic_to_ebpf(
        compile_classic(expression, snaplen=snaplen, optimize=optimize, netmask=netmask)
    )


def tcpdump_filter(
    expression: str, *, snaplen: int = SNAPLEN, optimize: bool = True, netmask: Netmask = None
) -> bytes:
    """tcpdump expression -> encoded PacketLab program for ncap's ``filter`` field.
    `netmask`: the endpoint interface's, for `ip broadcast` (`netmask_value`).

    Raises FilterSyntaxError with libpcap's message for a bad expression (`ip broadcast`
    without a netmask says to give one), FilterTooLarge for one past ncap's limit,
    ValueError for a netmask that is not one.
    """
    insns = compile_ebpf(expression, snaplen=snaplen, optimize=optimize, netmask=netmask)
    return _fits(P.encode_ebpf(insns))


def text_filter(text: str) -> bytes:
    """Hand-written eBPF in the text form -> encoded program (ProgramTextError if bad,
    FilterTooLarge if past ncap's limit)."""
    return _fits(P.load_text_program(text))


def accept_all_filter(snaplen: int = SNAPLEN) -> bytes:
    """``r0 = snaplen; exit``: every packet, whole (up to snaplen bytes)."""
    return P.encode_ebpf(
        [Insn(P.BPF_ALU64 | P.BPF_MOV | P.BPF_K, 0, 0, 0, snaplen), Insn(P.BPF_JMP | P.BPF_EXIT)]
    )


def drop_all_filter() -> bytes:
    """``r0 = 0; exit``: capture nothing."""
    return P.encode_ebpf(
        [Insn(P.BPF_ALU64 | P.BPF_MOV | P.BPF_K, 0, 0, 0, 0), Insn(P.BPF_JMP | P.BPF_EXIT)]
    )
