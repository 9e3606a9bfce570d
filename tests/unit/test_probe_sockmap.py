"""`benchmarks/probe_sockmap.py`'s verdict program, decoded: every jump lands where its
comment says (the kernel's verifier accepts a wrong but safe jump and relays wrongly)."""

from __future__ import annotations

import struct

from benchmarks.probe_sockmap import _FN_COOKIE, _FN_REDIRECT_HASH, verdict_program


def decode(code: bytes) -> list[tuple[int, int, int, int, int]]:
    """(opcode, dst, src, off, imm) per 8-byte slot."""
    out = []
    for i in range(0, len(code), 8):
        op, regs, off, imm = struct.unpack_from("<BBhi", code, i)
        out.append((op, regs & 0xF, regs >> 4, off, imm))
    return out


def test_the_verdict_program_drops_empty_skbs_and_redirects_to_the_peer_or_passes() -> None:
    ins = decode(verdict_program(7))
    assert len(ins) == 17  # 16 instructions, ld_imm64 taking two slots
    # if skb->len == 0: the target returns SK_DROP (r0 = 0; exit)
    jeq = ins[2]
    assert (jeq[0], jeq[1], jeq[4]) == (0x15, 2, 0)
    drop = 2 + 1 + jeq[3]
    assert ins[drop][0] == 0xB7 and ins[drop][4] == 0 and ins[drop + 1][0] == 0x95
    # the cookie goes to fp-8, the key of the redirect into map fd 7 (pseudo map fd)
    assert ins[3] == (0x85, 0, 0, 0, _FN_COOKIE)
    assert ins[4] == (0x7B, 10, 0, -8, 0)
    assert ins[6] == (0x18, 2, 1, 0, 7)
    assert ins[11] == (0x85, 0, 0, 0, _FN_REDIRECT_HASH)
    assert ins[10] == (0xB7, 4, 0, 0, 0)  # flags 0: the peer's egress, not its ingress
    # redirect_hash said SK_PASS (1): exit with it; SK_DROP (0, no peer): pass instead
    jne = ins[12]
    assert (jne[0], jne[1]) == (0x55, 0)
    assert ins[12 + 1 + jne[3]][0] == 0x95
    assert ins[13] == (0xB7, 0, 0, 0, 1) and ins[14][0] == 0x95
