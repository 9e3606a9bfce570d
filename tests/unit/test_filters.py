"""tcpdump expressions -> classic BPF (libpcap) -> PacketLab eBPF.

The translation is checked by running the classic program and its eBPF translation through
two small interpreters (below) on many packets and comparing the verdicts, and by checking
the verdicts against what the expression means. tests/integration/test_bpf.py runs the
translated programs in the kernel.
"""

from __future__ import annotations

import functools
import ipaddress
import struct
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from packetlab.controller import filters
from packetlab.controller.filters import (
    ClassicInsn,
    FilterError,
    FilterSyntaxError,
    FilterTooLarge,
    FilterTranslationError,
    accept_all_filter,
    classic_to_ebpf,
    compile_classic,
    compile_ebpf,
    drop_all_filter,
    tcpdump_filter,
    text_filter,
)
from packetlab.pcap import libpcap
from packetlab.wire.program import Insn, ProgramTextError, decode_ebpf, encode_ebpf

MASK32, MASK64 = 0xFFFF_FFFF, 0xFFFF_FFFF_FFFF_FFFF


def _libpcap_available() -> bool:
    try:
        libpcap.libpcap()
    except libpcap.LibpcapUnavailable:
        return False
    return True


needs_libpcap = pytest.mark.skipif(
    not _libpcap_available(), reason="libpcap not installed (apt-get install libpcap0.8)"
)


# --- reference interpreters ------------------------------------------------------------


def alu(op: int, a: int, b: int, shift_mask: int) -> int:
    """One ALU operation; shift counts are masked as the kernel's interpreter and JITs do.

    Division or modulo by zero gives 0 / a, as eBPF defines (classic returns before this).
    """
    if op == 0x00:
        return a + b
    if op == 0x10:
        return a - b
    if op == 0x20:
        return a * b
    if op == 0x30:
        return a // b if b else 0
    if op == 0x40:
        return a | b
    if op == 0x50:
        return a & b
    if op == 0x60:
        return a << (b & shift_mask)
    if op == 0x70:
        return a >> (b & shift_mask)
    if op == 0x80:
        return -a
    if op == 0x90:
        return a % b if b else a
    if op == 0xA0:
        return a ^ b
    if op == 0xB0:
        return b
    raise AssertionError(f"ALU op 0x{op:02x} not in the interpreter")


def run_classic(prog: Sequence[ClassicInsn], pkt: bytes) -> int:
    """Classic BPF as Linux runs a socket filter (out-of-bounds load or x/0 returns 0)."""
    a = x = 0
    mem = [0] * 16
    pc = 0
    while True:
        ins = prog[pc]
        pc += 1
        cls, code, k = ins.code & 7, ins.code, ins.k
        if cls in (0, 1):
            mode, size = code & 0xE0, {0: 4, 8: 2, 0x10: 1}[code & 0x18]
            if mode == 0x00:
                val = k
            elif mode in (0x20, 0x40):
                off = k + (x if mode == 0x40 else 0)
                if off + size > len(pkt):
                    return 0
                val = int.from_bytes(pkt[off : off + size], "big")
            elif mode == 0x60:
                val = mem[k]
            elif mode == 0x80:
                val = len(pkt)
            else:  # MSH
                if k >= len(pkt):
                    return 0
                x = (pkt[k] & 0xF) * 4
                continue
            if cls == 0:
                a = val
            else:
                x = val
        elif cls == 2:
            mem[k] = a
        elif cls == 3:
            mem[k] = x
        elif cls == 4:
            op, b = code & 0xF0, (x if code & 8 else k)
            if op in (0x30, 0x90) and b == 0:
                return 0
            a = alu(op, a, b, 31) & MASK32
        elif cls == 5:
            op, b = code & 0xF0, (x if code & 8 else k)
            if op == 0:
                pc += k
                continue
            taken = {0x10: a == b, 0x20: a > b, 0x30: a >= b, 0x40: bool(a & b)}[op]
            pc += ins.jt if taken else ins.jf
        elif cls == 6:
            return {0x00: k, 0x10: a, 0x08: x}[code & 0x18]
        else:
            if code & 0xF8 == 0:
                x = a
            else:
                a = x


CTX = 1 << 40  # stands for the context pointer in r1/r6


class Uninitialised(Exception):
    pass


def run_ebpf(prog: Sequence[Insn], pkt: bytes) -> int:
    """The eBPF subset the translation emits, as a socket filter (r1 = ctx, r0 = verdict)."""
    reg: list[int | None] = [None] * 11
    reg[1], reg[10] = CTX, 512  # the context; frame pointer = top of the stack
    stack: dict[int, int] = {}
    pc = 0

    def get(r: int) -> int:
        v = reg[r]
        if v is None:
            raise Uninitialised(f"r{r} read before being written (pc {pc - 1})")
        return v

    for _ in range(100_000):
        ins = prog[pc]
        pc += 1
        code, cls = ins.opcode, ins.opcode & 7
        if cls in (4, 7):  # ALU32 / ALU64
            op = code & 0xF0
            bits = MASK32 if cls == 4 else MASK64
            shift_mask = 31 if cls == 4 else 63
            b = (get(ins.src) if code & 8 else ins.imm & MASK64) & bits
            a = 0 if op == 0xB0 else get(ins.dst) & bits
            res = alu(op, a, b, shift_mask)
            reg[ins.dst] = res & bits
        elif cls == 5:
            op = code & 0xF0
            if op == 0x90:
                return get(0) & MASK32
            if op == 0x00:
                pc += ins.off
                continue
            a, b = get(ins.dst), (get(ins.src) if code & 8 else ins.imm & MASK64)
            taken = {
                0x10: a == b,
                0x20: a > b,
                0x30: a >= b,
                0x40: bool(a & b),
                0x50: a != b,
                0xA0: a < b,
                0xB0: a <= b,
            }[op]
            if taken:
                pc += ins.off
        elif cls == 0:  # legacy ld_abs / ld_ind: result in r0, r1-r5 clobbered
            assert reg[6] == CTX, "ld_abs needs the context in r6"
            size = {0: 4, 8: 2, 0x10: 1}[code & 0x18]
            off = ins.imm + (get(ins.src) if code & 0xE0 == 0x40 else 0)
            if off < 0 or off + size > len(pkt):
                return 0
            reg[0] = int.from_bytes(pkt[off : off + size], "big")
            for r in range(1, 6):
                reg[r] = None
        elif code == 0x61:  # ldxw
            base = get(ins.src)
            if base == CTX:
                assert ins.off == 0  # __sk_buff.len
                reg[ins.dst] = len(pkt)
            else:
                reg[ins.dst] = stack[base + ins.off]
        elif code == 0x63:  # stxw
            stack[get(ins.dst) + ins.off] = get(ins.src) & MASK32
        elif code == 0x62:  # stw
            stack[get(ins.dst) + ins.off] = ins.imm & MASK32
        else:
            raise AssertionError(f"opcode 0x{code:02x} not in the interpreter")
    raise AssertionError("no exit within 100000 steps")


# --- packets ---------------------------------------------------------------------------


def ipv4(
    proto: int,
    payload: bytes,
    *,
    src: str = "10.77.1.1",
    dst: str = "10.77.3.2",
    ttl: int = 64,
    frag: int = 0,
) -> bytes:
    hdr = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(payload),
        1,
        frag,
        ttl,
        proto,
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    )
    return hdr + payload


def ipv6(nh: int, payload: bytes, *, src: str = "fd00:77:1::1", dst: str = "fd00:77:3::2") -> bytes:
    return (
        struct.pack(
            "!IHBB16s16s",
            6 << 28,
            len(payload),
            nh,
            64,
            ipaddress.IPv6Address(src).packed,
            ipaddress.IPv6Address(dst).packed,
        )
        + payload
    )


def udp(sport: int, dport: int, data: bytes = b"x") -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data


def tcp(sport: int, dport: int, flags: int, data: bytes = b"") -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 1024, 0, 0) + data


def icmp(kind: int, code: int = 0) -> bytes:
    return struct.pack("!BBHI", kind, code, 0, 0)


PORTS = st.sampled_from([53, 80, 5555, 5556, 1500, 33434])
ADDRS4 = st.sampled_from(["10.77.1.1", "10.77.3.2", "10.99.0.1", "192.0.2.1"])
ADDRS6 = st.sampled_from(["fd00:77:1::1", "fd00:77:3::2", "2001:db8::1"])
L4 = st.one_of(
    st.builds(lambda s, d, b: (17, udp(s, d, b)), PORTS, PORTS, st.binary(max_size=12)),
    st.builds(
        lambda s, d, f, b: (6, tcp(s, d, f, b)),
        PORTS,
        PORTS,
        st.integers(0, 63),
        st.binary(max_size=12),
    ),
    st.builds(lambda t, c: (1, icmp(t, c)), st.sampled_from([0, 3, 8, 11]), st.integers(0, 3)),
    st.builds(lambda t: (58, icmp(t)), st.sampled_from([1, 3, 128, 129])),
    st.builds(lambda b: (47, b), st.binary(max_size=8)),
)
PACKETS = st.one_of(
    st.builds(
        lambda l4, s, d, ttl, frag: ipv4(l4[0], l4[1], src=s, dst=d, ttl=ttl, frag=frag),
        L4,
        ADDRS4,
        ADDRS4,
        st.integers(1, 255),
        st.sampled_from([0, 0, 0x4000, 0x2000, 5]),
    ),
    st.builds(lambda l4, s, d: ipv6(l4[0], l4[1], src=s, dst=d), L4, ADDRS6, ADDRS6),
    st.binary(max_size=60),  # not IP at all, or truncated
    PORTS.map(lambda p: ipv4(17, udp(1, p))[:24]),  # cut inside the UDP header
)

EXPRESSIONS = [
    "",
    "udp and dst port 5555",
    "ip6 and udp dst port 5555",
    "icmp",
    "icmp[icmptype] == icmp-echoreply or icmp[icmptype] == icmp-timxceed",
    "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn",
    "src host 10.77.1.1 and not port 53",
    "net 10.77.0.0/16 or net fd00:77::/32",
    "len > 40",
    "ip[8] < 10",
    "udp[8:4] = 0xdeadbeef or ip[12:4] = 0xc0000201",  # constants ≥ 2**31
    "portrange 1000-2000",
    "tcp and (((ip[2:2] - ((ip[0]&0xf)<<2)) - ((tcp[12]&0xf0)>>2)) != 0)",  # scratch memory
    "ip and ip[1] / (ip[8] & 1) = 0",  # division by X, X may be 0
    "ip and (ip[8] % 3) * 2 + 1 - ip[9] ^ 5 > 3",
    "ip[6] & 0x20 != 0 or ip[6:2] & 0x1fff != 0",  # fragments
    "ip6 and ip6[6] == 58",
]


# --- translation against the interpreters ----------------------------------------------


@functools.cache
def _compiled(expression: str) -> tuple[list[ClassicInsn], list[Insn]]:
    classic = compile_classic(expression)
    return classic, classic_to_ebpf(classic)


# (One test over all programs: pytest-twisted breaks @given combined with parametrize.)
@needs_libpcap
@settings(max_examples=400, deadline=None)
@given(pkt=PACKETS)
def test_translation_agrees_with_classic(pkt: bytes) -> None:
    for expression in EXPRESSIONS:
        classic, ebpf = _compiled(expression)
        assert run_ebpf(ebpf, pkt) == run_classic(classic, pkt), expression


@needs_libpcap
def test_udp_port_filter_meaning() -> None:
    prog = compile_ebpf("udp and dst port 5555")
    assert run_ebpf(prog, ipv4(17, udp(1000, 5555))) == 0xFFFF
    assert run_ebpf(prog, ipv6(17, udp(1000, 5555))) == 0xFFFF
    assert run_ebpf(prog, ipv4(17, udp(5555, 1000))) == 0
    assert run_ebpf(prog, ipv4(6, tcp(1000, 5555, 2))) == 0
    assert run_ebpf(prog, ipv4(17, udp(1000, 5555), frag=5)) == 0  # not a first fragment
    assert run_ebpf(prog, b"\x45") == 0


@needs_libpcap
def test_icmp_filter_meaning_and_encoding() -> None:
    data = tcpdump_filter("icmp")
    assert data[0] == 0 and (len(data) - 1) % 8 == 0
    prog = decode_ebpf(data)
    assert prog[0] == Insn(0xBF, 6, 1)  # r6 = ctx, as ld_abs needs
    assert run_ebpf(prog, ipv4(1, icmp(0))) == 0xFFFF
    assert run_ebpf(prog, ipv4(17, udp(1, 2))) == 0
    assert run_ebpf(prog, ipv6(58, icmp(129))) == 0  # "icmp" means ICMPv4


@needs_libpcap
def test_snaplen_is_the_accepted_length() -> None:
    prog = compile_ebpf("", snaplen=96)
    assert run_ebpf(prog, ipv4(17, udp(1, 2, bytes(200)))) == 96


@needs_libpcap
@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("udp and dst prot 5555", "prot"),
        ("udp port", "syntax error"),
        ("tcp[100000000000]", ""),
        ("ip[2:2] / 0 > 1", "division by zero"),
        ("ether host 01:02:03:04:05:06", ""),  # no link header on DLT_RAW
    ],
)
def test_bad_expression_carries_libpcaps_message(expression: str, words: str) -> None:
    with pytest.raises(FilterSyntaxError) as info:
        compile_ebpf(expression)
    assert info.value.pcap_message
    assert words in info.value.pcap_message
    assert repr(expression) in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("expression", ["udp and port\0 53", "udp port \uff15\uff13"])
def test_non_ascii_or_nul_expression(expression: str) -> None:
    with pytest.raises(FilterSyntaxError):
        compile_classic(expression)


# --- translation of hand-made classic programs -----------------------------------------

RET_A = ClassicInsn(0x16)


def C(code: int, k: int = 0, jt: int = 0, jf: int = 0) -> ClassicInsn:
    return ClassicInsn(code, jt, jf, k)


HAND_PROGRAMS = {
    "msh and ld_ind": [C(0xB1, 0), C(0x48, 2), RET_A],  # X = ihl*4; A = P[X+2:2]; ret A
    "scratch": [
        C(0x00, 7),
        C(0x02, 3),
        C(0x00, 1),
        C(0x60, 3),
        C(0x07),
        C(0x61, 3),
        C(0x87),
        C(0x0C),
        RET_A,
    ],
    "div by x zero": [C(0x00, 10), C(0x01, 0), C(0x3C), RET_A],
    "mod by x": [C(0x30, 8), C(0x07), C(0x00, 100), C(0x9C), RET_A],
    "neg": [C(0x30, 0), C(0x84), RET_A],
    "ret x": [C(0x01, 77), C(0x0E)],
    "ret k": [C(0x06, 12345)],
    "len": [C(0x80), C(0x81), C(0x0C), RET_A],
    "jset both ways": [C(0x30, 0), C(0x45, 0x40, 1, 2), C(0x06, 1), C(0x06, 2), C(0x06, 3)],
    "jgt inverted": [C(0x30, 8), C(0x25, 63, 0, 1), C(0x06, 1), C(0x06, 2)],
    "jge both": [C(0x30, 8), C(0x35, 64, 1, 0), C(0x06, 1), C(0x06, 2)],
    "jeq same target": [C(0x30, 8), C(0x15, 64, 0, 0), C(0x06, 1)],
    "jeq x": [C(0x30, 8), C(0x01, 64), C(0x1D, 0, 0, 1), C(0x06, 1), C(0x06, 2)],
    "big constant": [
        C(0x20, 0),
        C(0x15, 0x45000000, 0, 1),
        C(0x06, 0),
        C(0x25, 0xF0000000, 0, 1),
        C(0x06, 1),
        C(0x06, 2),
    ],
    "ja": [C(0x05, 1), C(0x06, 1), C(0x06, 2)],
    "alu x": [
        C(0x30, 9),
        C(0x07),
        C(0x30, 8),
        C(0x0C),
        C(0x1C),
        C(0x2C),
        C(0x4C),
        C(0x5C),
        C(0x6C),
        C(0x7C),
        C(0xAC),
        RET_A,
    ],
    "shift k": [C(0x30, 0), C(0x64, 31), C(0x74, 3), RET_A],
}


@settings(max_examples=300, deadline=None)
@given(pkt=PACKETS)
def test_hand_programs_agree(pkt: bytes) -> None:
    for name, classic in HAND_PROGRAMS.items():
        assert run_ebpf(classic_to_ebpf(classic), pkt) == run_classic(classic, pkt), name


def test_scratch_slots_are_zeroed_at_entry() -> None:
    prog = classic_to_ebpf([C(0x60, 5), RET_A])  # A = M[5] before any store
    assert Insn(0x62, 10, 0, -44, 0) in prog
    assert run_ebpf(prog, b"") == 0


@pytest.mark.parametrize(
    ("prog", "index", "words"),
    [
        ([], 0, "empty"),
        ([C(0x00, 1)], 0, "not a return"),
        ([C(0x20, 0xFFFF_F000 + 4), RET_A], 0, "ancillary"),  # SKF_AD_PROTOCOL
        ([C(0x60, 16), RET_A], 0, "scratch memory index 16"),
        ([C(0x02, 99), RET_A], 0, "scratch"),
        ([C(0x34, 0), RET_A], 0, "division by constant zero"),
        ([C(0x64, 32), RET_A], 0, "shift by 32"),
        ([C(0x15, 0, 5, 0), RET_A], 0, "beyond the end"),
        ([C(0x05, 3), RET_A], 0, "beyond the end"),
        ([C(0xE5), RET_A], 0, "jump opcode 0xe5"),
        ([C(0xF4), RET_A], 0, "ALU opcode 0xf4"),
        ([C(0x00), C(0x1E)], 1, "return opcode 0x1e"),
        ([C(0x37), RET_A], 0, "misc opcode 0x37"),
        ([C(0x18), RET_A], 0, "load opcode 0x18"),
        ([C(0x68, 1), RET_A], 0, "load opcode 0x68"),
        ([C(0x39, 1), RET_A], 0, "load opcode 0x39"),
        ([C(0x12, 1), RET_A], 0, "store opcode 0x12"),
    ],
)
def test_untranslatable_classic(prog: list[ClassicInsn], index: int, words: str) -> None:
    with pytest.raises(FilterTranslationError) as info:
        classic_to_ebpf(prog)
    assert info.value.index == index
    assert words in str(info.value)


def test_text_and_fixed_filters() -> None:
    text = "0xb7 0 0 0 0xffff\n0x95 0 0 0 0\n"
    assert text_filter(text) == accept_all_filter()
    assert accept_all_filter() == encode_ebpf([Insn(0xB7, imm=0xFFFF), Insn(0x95)])
    assert run_ebpf(decode_ebpf(drop_all_filter()), ipv4(17, udp(1, 2))) == 0
    with pytest.raises(ProgramTextError, match="line 2"):
        text_filter("0x95 0 0 0 0\nexit\n")


@needs_libpcap
def test_a_filter_past_ncaps_limit_is_refused_here_by_size() -> None:
    """3000 hosts or'ed compiled to 94,057 bytes of eBPF and went out in the ncap, which
    the endpoint answers with a bare ESKTBADFILT (its FILT_BUFSZ is 65,536 bytes): now a
    FilterTooLarge naming the size, the limit and what fits."""
    many = " or ".join(f"host 10.0.{i // 250}.{i % 250}" for i in range(3000))
    with pytest.raises(FilterTooLarge) as info:
        tcpdump_filter(many)
    assert info.value.size == 94057 and "more than the 65536" in str(info.value)
    assert isinstance(info.value, FilterError) and isinstance(info.value, ValueError)
    # The largest that fits (8191 instructions) is sent; one more is refused.
    fits = "\n".join(["0xb7 0 0 0 0"] * 8190 + ["0x95 0 0 0 0"])
    assert len(text_filter(fits)) == 65529
    with pytest.raises(FilterTooLarge):
        text_filter(fits + "\n0x95 0 0 0 0" * 2)


@needs_libpcap
def test_ip_broadcast_compiles_with_the_netmask_given() -> None:
    """`ip broadcast` was refused (libpcap's `netmask not known`): the controller cannot
    know the endpoint interface's netmask, and no filter function took one. Now each
    (compile_classic, compile_ebpf, tcpdump_filter) takes `netmask=` as pcap_compile
    does; without it the refusal says to give it. Under /24 a destination whose host
    bits are all ones or all zeros matches (libpcap's test), under 0 (what tcpdump 4.99.3
    gives pcap_compile) only 255.255.255.255 and 0.0.0.0; the translation agrees with
    the classic program and with libpcap's own run of it (pcap_offline_filter)."""
    with pytest.raises(FilterSyntaxError, match=r"netmask='255\.255\.255\.0'") as info:
        tcpdump_filter("ip broadcast")
    assert info.value.pcap_message.startswith("netmask not known")
    dsts = ["10.33.7.255", "10.33.7.0", "255.255.255.255", "0.0.0.0", "10.33.7.9", "10.33.8.255"]
    pkts = [ipv4(17, udp(1, 9), dst=d) for d in dsts] + [ipv6(17, udp(1, 9), dst="ff02::1")]
    matches: dict[filters.Netmask, list[bool]] = {
        "24": [True, True, True, True, False, True, False],
        "255.255.255.0": [True, True, True, True, False, True, False],
        0xFFFFFF00: [True, True, True, True, False, True, False],
        ipaddress.IPv4Address("255.255.0.0"): [False, False, True, True, False, False, False],
        0: [False, False, True, True, False, False, False],
    }
    for mask, want in matches.items():
        classic = compile_classic("ip broadcast", netmask=mask)
        ebpf = decode_ebpf(tcpdump_filter("ip broadcast", netmask=mask))
        assert ebpf == compile_ebpf("ip broadcast", netmask=mask)
        pcap = libpcap.OfflineFilter("ip broadcast", netmask=filters.netmask_value(mask))
        for pkt, match in zip(pkts, want, strict=True):
            assert (run_ebpf(ebpf, pkt) == 0xFFFF) is match, (mask, pkt[16:20])
            assert run_classic(classic, pkt) == run_ebpf(ebpf, pkt)
            assert pcap.matches(pkt) is match
    bads: list[filters.Netmask] = ["255.0.255.0", "33", "x", -1, 1 << 32]
    for bad in bads:
        with pytest.raises(ValueError, match="netmask"):
            tcpdump_filter("ip broadcast", netmask=bad)
