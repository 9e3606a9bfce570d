"""Builders for PPKS test certificates, good and deliberately broken."""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Callable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from packetlab.ppks import Certificate, CertType, issue_certificate, key_id
from packetlab.ppks import der as pder

NOW = 1_700_000_000
NB = NOW - 86_400
NA = NOW + 86_400
NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, " ")])


def key(name: str) -> Ed25519PrivateKey:
    """A deterministic key per name, so failures are reproducible."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(name.encode()).digest())


def pub(name: str) -> bytes:
    return (
        key(name)
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )


def cert(
    ctype: str, signer: str, subject: str, *, nb: int = NB, na: int = NA, **kw: object
) -> Certificate:
    return issue_certificate(ctype, key(signer), key(subject), nb, na, **kw)  # type: ignore[arg-type]


# -- raw building with cryptography: any extension list --------------------------------


def octet(text: bytes) -> bytes:
    return tlv(0x04, text)


def tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    lb = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(lb)]) + lb + content


def unrec(oid: str, value: bytes) -> x509.UnrecognizedExtension:
    return x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), value)


def ku(*, ds: bool = False, kcs: bool = False, crl: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(ds, False, False, False, False, kcs, crl, False, False)


Ext = tuple[x509.ExtensionType, bool]


def std_exts(
    ctype: CertType,
    signer: str,
    subject: str,
    *,
    info: bytes | None = None,
    limit: bytes | None = None,
    pathlen: int | None = None,
) -> list[Ext]:
    """The extensions ppksman writes, as a list that tests may edit."""
    is_ca = ctype.is_ca
    info = info if info is not None else f"cert_type={ctype.label};".encode()
    if ctype is CertType.DELPRIV and info == b"cert_type=delpriv;":
        info += b"del_type=exppriv,reppriv;"
    exts: list[Ext] = [
        (x509.AuthorityKeyIdentifier(key_id(key(signer)), None, None), False),
        (x509.SubjectKeyIdentifier(key_id(key(subject))), False),
        (ku(ds=not is_ca, kcs=is_ca), True),
        (x509.BasicConstraints(is_ca, pathlen if is_ca else None), True),
        (unrec("1.2.3.1", octet(info)), True),
    ]
    if limit is not None:
        exts.append((unrec("1.2.3.3", octet(limit)), True))
    return exts


def build(
    signer: str | Ed25519PrivateKey | ec.EllipticCurvePrivateKey,
    subject_pub: object,
    exts: Sequence[Ext],
    *,
    nb: int = NB,
    na: int = NA,
    serial: int = 12345,
) -> bytes:
    signer_key = key(signer) if isinstance(signer, str) else signer
    subj = key(subject_pub).public_key() if isinstance(subject_pub, str) else subject_pub
    b = (
        x509.CertificateBuilder()
        .serial_number(serial)
        .issuer_name(NAME)
        .subject_name(NAME)
        .public_key(subj)  # type: ignore[arg-type]
        .not_valid_before(datetime.datetime.fromtimestamp(nb, tz=datetime.UTC))
        .not_valid_after(datetime.datetime.fromtimestamp(na, tz=datetime.UTC))
    )
    for ext, critical in exts:
        b = b.add_extension(ext, critical=critical)
    algo = None if isinstance(signer_key, Ed25519PrivateKey) else hashes.SHA256()
    return b.sign(signer_key, algo).public_bytes(serialization.Encoding.DER)


def good(ctype: CertType, signer: str, subject: str, **kw: object) -> bytes:
    return build(signer, subject, std_exts(ctype, signer, subject, **kw))  # type: ignore[arg-type]


# -- DER surgery: change the TBS, then sign again ------------------------------------


def resign(
    der_bytes: bytes,
    signer: str,
    mutate_fields: Callable[[list[bytes]], list[bytes]] | None = None,
    mutate_exts: Callable[[list[bytes]], list[bytes]] | None = None,
) -> bytes:
    """Split the TBS into its raw fields (and extensions), let the test edit them, and
    assemble and sign a new certificate with `signer`'s Ed25519 key."""
    top = pder.children(pder.read_single(der_bytes, pder.SEQUENCE).value)
    fields = [f.raw for f in pder.children(top[0].value)]
    if mutate_exts is not None:
        idx = next(i for i, f in enumerate(fields) if f[0] == 0xA3)
        seq = pder.read_single(pder.read_single(fields[idx]).value, pder.SEQUENCE)
        exts = mutate_exts([e.raw for e in pder.children(seq.value)])
        fields[idx] = tlv(0xA3, tlv(0x30, b"".join(exts)))
    if mutate_fields is not None:
        fields = mutate_fields(fields)
    tbs = tlv(0x30, b"".join(fields))
    sig = key(signer).sign(tbs)
    return tlv(0x30, tbs + top[1].raw + tlv(0x03, b"\x00" + sig))


def ext_raw(oid_der: bytes, value: bytes, critical: bool = False) -> bytes:
    body = tlv(0x06, oid_der) + (b"\x01\x01\xff" if critical else b"") + tlv(0x04, value)
    return tlv(0x30, body)
