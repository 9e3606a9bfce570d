"""Non-canonical DER anywhere in a certificate is refused (§4.3: X.509 in DER).

Each case is signed again after the change, so only the encoding rule can refuse it.
The sweep re-encodes every element of a good certificate's signed part, one at a time
(descending into extension values), with a long-form length and, for constructed
elements, an indefinite length: names were only skipped, so such lengths inside the
issuer or subject passed (session 20).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from ppks_factory import cert, key, resign, tlv

from packetlab.ppks import CertificateError, Reason, parse_certificate
from packetlab.ppks import der as pder

ED25519 = tlv(0x30, tlv(0x06, bytes.fromhex("2b6570")))


@dataclass
class Node:
    tag: int
    content: bytes  # primitive content (None of kids)
    kids: list[Node] | None  # constructed, or an OCTET STRING wrapping one DER element


def tree(data: bytes) -> Node:
    t = pder.read_single(data)
    if t.tag & 0x20:
        return Node(t.tag, b"", [tree(c.raw) for c in pder.children(t.value)])
    if t.tag == pder.OCTET_STRING:  # extnValue (and cert_info's inner string)
        try:
            return Node(t.tag, b"", [tree(t.value)])
        except pder.DERError:
            pass
    return Node(t.tag, t.value, None)


def encode(n: Node, target: int, how: str, counter: list[int]) -> bytes:
    me = counter[0]
    counter[0] += 1
    body = (
        n.content if n.kids is None else b"".join(encode(k, target, how, counter) for k in n.kids)
    )
    if me == target and how == "long":
        return bytes([n.tag, 0x82]) + len(body).to_bytes(2, "big") + body
    if me == target and how == "indefinite" and n.tag & 0x20:
        return bytes([n.tag, 0x80]) + body + b"\x00\x00"
    return tlv(n.tag, body)


def signed(tbs: bytes, signer: str) -> bytes:
    return tlv(0x30, tbs + ED25519 + tlv(0x03, b"\x00" + key(signer).sign(tbs)))


GOOD = cert("exppriv", "eop", "exper", limits="max_send_byte=100;valid_dest=10.0.0.0/8;")
TREE = tree(GOOD.tbs)
N_ELEMENTS = (lambda c: (encode(TREE, -1, "", c), c[0])[1])([0])


def test_the_sweep_rebuilds_the_certificate_exactly() -> None:
    assert encode(TREE, -1, "", [0]) == GOOD.tbs
    assert N_ELEMENTS > 50  # names, times, key, every extension and its inner value


@pytest.mark.parametrize("how", ["long", "indefinite"])
def test_every_element_with_a_non_der_length_is_refused(how: str) -> None:
    accepted = []
    for i in range(N_ELEMENTS):
        tbs = encode(TREE, i, how, [0])
        if tbs == GOOD.tbs:  # a primitive element has no indefinite form
            continue
        try:
            parse_certificate(signed(tbs, "eop"))
        except CertificateError:
            continue
        accepted.append((i, tbs.hex()))
    assert accepted == []


def _ext_with(fn: object) -> bytes:
    return resign(GOOD.der, "eop", mutate_exts=fn)  # type: ignore[arg-type]


def _explicit_false(exts: list[bytes]) -> list[bytes]:
    """AKI (non-critical) with its DEFAULT FALSE written out."""
    parts = pder.children(pder.read_single(exts[0]).value)
    return [tlv(0x30, parts[0].raw + b"\x01\x01\x00" + parts[1].raw), *exts[1:]]


def _leaf_bc_false(exts: list[bytes]) -> list[bytes]:
    bc = tlv(
        0x30,
        tlv(0x06, bytes.fromhex("551d13")) + b"\x01\x01\xff" + tlv(0x04, b"\x30\x03\x01\x01\x00"),
    )
    return [*exts[:3], bc, *exts[4:]]


def _ku_zero_bits(exts: list[bytes]) -> list[bytes]:
    """keyCertSign as 03 02 00 04: the same bits, but the unused count not minimal."""
    ku = tlv(
        0x30, tlv(0x06, bytes.fromhex("551d0f")) + b"\x01\x01\xff" + tlv(0x04, b"\x03\x02\x00\x04")
    )
    return [*exts[:2], ku, *exts[3:]]


CASES = {
    "critical FALSE written out": (lambda: _ext_with(_explicit_false), Reason.MALFORMED_DER),
    "leaf BasicConstraints cA FALSE written out": (
        lambda: resign(cert("pubcmd", "exper", "xc").der, "exper", mutate_exts=_leaf_bc_false),
        Reason.BAD_BASIC_CONSTRAINTS,
    ),
    "KeyUsage with trailing zero bits": (lambda: _ext_with(_ku_zero_bits), Reason.BAD_KEY_USAGE),
    "constructed string in a name": (
        lambda: resign(
            GOOD.der,
            "eop",
            mutate_fields=lambda f: [
                *f[:3],
                tlv(
                    0x30,
                    tlv(0x31, tlv(0x30, tlv(0x06, b"\x55\x04\x03") + tlv(0x2C, tlv(0x0C, b" ")))),
                ),
                *f[4:],
            ],
        ),
        Reason.MALFORMED_DER,
    ),
    "an empty SET in a name": (
        lambda: resign(
            GOOD.der, "eop", mutate_fields=lambda f: [*f[:5], tlv(0x30, tlv(0x31, b"")), *f[6:]]
        ),
        Reason.MALFORMED_DER,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_non_der_forms_are_refused_with_their_reason(case: str) -> None:
    make, reason = CASES[case]
    with pytest.raises(CertificateError) as e:
        parse_certificate(make())
    assert e.value.reason is reason, str(e.value)
    assert "not DER" in str(e.value) or "name" in str(e.value), str(e.value)
