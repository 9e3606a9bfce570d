"""Making PPKS certificates and CSRs the way the reference `ppksman` (pktlab 1.0.4) does.

Certificates carry, in this order: AKI (non-critical), SKI (non-critical), KeyUsage
(critical), BasicConstraints (critical), cert_info (critical) and, on CA types, cert_limit
(critical); names are CN=" "; serials are 128-bit. With the same inputs and serial the
DER is byte-for-byte what ppksman makes (Ed25519 signatures are deterministic).

CSRs are PKCS#10 (ppksman's `CertificateSigningRequestBuilder`; the reference docs call
them "CRMF" but the tool makes PKCS#10): subject CN=" ", BasicConstraints only when a
pathlen is asked for, cert_info and cert_limit as in certificates.
"""

from __future__ import annotations

import datetime
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import NameOID

from packetlab.wire.nvlist import NVListError, NVPair, parse_nvlist

from . import der
from .cert import (
    OID_CERT_INFO,
    OID_CERT_LIMIT,
    Certificate,
    CertType,
    DelType,
    parse_certificate,
    parse_nv_extension,
)
from .errors import CertificateError, CSRError, PPKSError, Reason
from .keys import key_id, raw_public_key
from .limits import U64_MAX, CertLimits

__all__ = [
    "CertRequest",
    "issue_certificate",
    "make_csr",
    "new_serial",
    "parse_csr",
    "sign_csr",
]

_EMPTY_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, " ")])

LimitsArg = Sequence[NVPair] | str | CertLimits | None
InfoArg = Sequence[NVPair] | str | None


def new_serial() -> int:
    """A random, non-zero 128-bit serial (ppksman's serials look random too)."""
    while True:
        s = secrets.randbits(128)
        if s:
            return s


def _octet_string(text: str) -> bytes:
    raw = text.encode("ascii")
    n = len(raw)
    if n < 0x80:
        hdr = bytes([der.OCTET_STRING, n])
    else:
        lb = n.to_bytes((n.bit_length() + 7) // 8, "big")
        hdr = bytes([der.OCTET_STRING, 0x80 | len(lb)]) + lb
    return hdr + raw


def _as_pairs(value: Sequence[NVPair] | str | None, *, optional_ok: bool) -> list[NVPair]:
    if value is None:
        return []
    if isinstance(value, str):
        try:
            return parse_nvlist(value, allow_optional=optional_ok)
        except NVListError as e:
            reason = Reason.BAD_CERT_LIMIT_SYNTAX if optional_ok else Reason.BAD_CERT_INFO_SYNTAX
            raise CertificateError(reason, str(e)) from None
    return [NVPair(*p) for p in value]


def _text(pairs: Sequence[NVPair]) -> str:
    return "".join(f"{'*' if p.optional else ''}{p.name}={p.value};" for p in pairs)


def _info_pairs(
    cert_type: CertType, del_type: DelType, cert_desc: str | None, aux_info: InfoArg
) -> list[NVPair]:
    pairs = [NVPair("cert_type", cert_type.label)]
    if del_type:
        pairs.append(NVPair("del_type", del_type.label))
    if cert_desc is not None:
        pairs.append(NVPair("cert_desc", cert_desc))
    pairs += _as_pairs(aux_info, optional_ok=False)
    return pairs


def _limit_pairs(limits: LimitsArg) -> list[NVPair]:
    if isinstance(limits, CertLimits):
        return limits.to_pairs()
    return _as_pairs(limits, optional_ok=True)


def _check_args(
    cert_type: CertType, del_type: DelType, pathlen: int | None, limit_pairs: list[NVPair]
) -> None:
    if cert_type is CertType.DELPRIV and not del_type:
        raise ValueError("a delpriv certificate needs a del_type (exppriv and/or reppriv)")
    if cert_type is not CertType.DELPRIV and del_type:
        raise ValueError(f"del_type is only for delpriv, not {cert_type.label}")
    if not cert_type.is_ca and pathlen is not None:
        raise ValueError(f"pathlen is only for exppriv/delpriv, not {cert_type.label}")
    if pathlen is not None and pathlen < 0:
        raise ValueError("pathlen must be >= 0")
    if pathlen is not None and pathlen > U64_MAX:  # `cryptography` raised a TypeError
        raise ValueError(f"pathlen does not fit in 64 bits (at most {U64_MAX})")
    if not cert_type.is_ca and limit_pairs:
        raise ValueError(f"limits are only for exppriv/delpriv, not {cert_type.label}")


def _coerce(cert_type: CertType | str, del_type: DelType | str | None) -> tuple[CertType, DelType]:
    ct = cert_type if isinstance(cert_type, CertType) else CertType.from_label(cert_type)
    if del_type is None:
        dt = DelType.NONE
    elif isinstance(del_type, str):
        dt = DelType.from_label(del_type)
    else:
        dt = DelType(del_type)
    return ct, dt


def _extension_list(
    cert_type: CertType, pathlen: int | None, info: list[NVPair], limits: list[NVPair]
) -> list[tuple[x509.ExtensionType, bool]]:
    ku = x509.KeyUsage(
        digital_signature=not cert_type.is_ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_type.is_ca,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    bc = x509.BasicConstraints(ca=cert_type.is_ca, path_length=pathlen if cert_type.is_ca else None)
    out: list[tuple[x509.ExtensionType, bool]] = [(ku, True), (bc, True)]
    out.append(
        (
            x509.UnrecognizedExtension(
                x509.ObjectIdentifier(OID_CERT_INFO), _octet_string(_text(info))
            ),
            True,
        )
    )
    if limits:
        out.append(
            (
                x509.UnrecognizedExtension(
                    x509.ObjectIdentifier(OID_CERT_LIMIT), _octet_string(_text(limits))
                ),
                True,
            )
        )
    return out


def _utc(ts: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ts, tz=datetime.UTC)


# What an X.509 time (GeneralizedTime YYYYMMDDHHMMSSZ) can hold, in Unix seconds.
_FIRST_TIME = -62135596800  # 0001-01-01T00:00:00Z
_LAST_TIME = 253402300799  # 9999-12-31T23:59:59Z


def _check_times(not_before: int, not_after: int) -> None:
    """Validity times a certificate can hold, named as the CLI names them (cryptography
    said "year 3170843 is out of range")."""
    for name, t in (("not_before", not_before), ("not_after", not_after)):
        if t < _FIRST_TIME:
            raise ValueError(f"{name} {t} is before 0001-01-01T00:00:00Z")
        if t > _LAST_TIME:
            raise ValueError(f"{name} {t} is after 9999-12-31T23:59:59Z")
    if not_after < not_before:
        raise ValueError(f"not_after {not_after} is before not_before {not_before}")


def issue_certificate(
    cert_type: CertType | str,
    signer: Ed25519PrivateKey,
    subject: Ed25519PublicKey | Ed25519PrivateKey | bytes,
    not_before: int,
    not_after: int,
    *,
    del_type: DelType | str | None = None,
    pathlen: int | None = None,
    cert_desc: str | None = None,
    aux_info: InfoArg = None,
    limits: LimitsArg = None,
    serial: int | None = None,
) -> Certificate:
    """Sign a PPKS certificate of `cert_type` for `subject` with `signer` (§4.3).

    `limits` (exppriv/delpriv only) is cert_limit text, pairs or a `CertLimits`.
    The result is parsed back, so a certificate we refuse is never returned.
    """
    _check_times(not_before, not_after)
    ct, dt = _coerce(cert_type, del_type)
    info = _info_pairs(ct, dt, cert_desc, aux_info)
    lim = _limit_pairs(limits)
    _check_args(ct, dt, pathlen, lim)
    subject_raw = raw_public_key(subject)
    builder = (
        x509.CertificateBuilder()
        .serial_number(serial if serial is not None else new_serial())
        .issuer_name(_EMPTY_NAME)
        .subject_name(_EMPTY_NAME)
        .public_key(Ed25519PublicKey.from_public_bytes(subject_raw))
        .not_valid_before(_utc(not_before))
        .not_valid_after(_utc(not_after))
        .add_extension(x509.AuthorityKeyIdentifier(key_id(signer), None, None), critical=False)
        .add_extension(x509.SubjectKeyIdentifier(key_id(subject_raw)), critical=False)
    )
    for ext, critical in _extension_list(ct, pathlen, info, lim):
        builder = builder.add_extension(ext, critical=critical)
    cert = builder.sign(signer, None)
    return parse_certificate(cert.public_bytes(serialization.Encoding.DER))


@dataclass(frozen=True)
class CertRequest:
    """A decoded PPKS CSR: the subject key and the fields it asks for."""

    pem: bytes
    public_key: bytes
    cert_type: CertType | None
    del_type: DelType
    pathlen: int | None
    cert_desc: str | None
    aux_info: tuple[NVPair, ...]
    limit_pairs: tuple[NVPair, ...]


def make_csr(
    cert_type: CertType | str,
    subject_key: Ed25519PrivateKey,
    *,
    del_type: DelType | str | None = None,
    pathlen: int | None = None,
    cert_desc: str | None = None,
    aux_info: InfoArg = None,
    limits: LimitsArg = None,
) -> bytes:
    """A PEM PKCS#10 CSR asking for a `cert_type` certificate for `subject_key`."""
    ct, dt = _coerce(cert_type, del_type)
    info = _info_pairs(ct, dt, cert_desc, aux_info)
    lim = _limit_pairs(limits)
    _check_args(ct, dt, pathlen, lim)
    if lim:
        CertLimits.from_pairs(lim)  # refuse bad values now, not at signing time
    builder = x509.CertificateSigningRequestBuilder().subject_name(_EMPTY_NAME)
    for ext, critical in _extension_list(ct, pathlen, info, lim):
        if isinstance(ext, x509.KeyUsage):
            continue
        if isinstance(ext, x509.BasicConstraints) and pathlen is None:
            continue
        builder = builder.add_extension(ext, critical=critical)
    return builder.sign(subject_key, None).public_bytes(serialization.Encoding.PEM)


def parse_csr(data: bytes) -> CertRequest:
    """Load a PEM (or DER) CSR, check its self-signature and read its PPKS fields."""
    # cryptography decodes lazily and raises more than ValueError: an unknown key or
    # signature algorithm is UnsupportedAlgorithm, a bad version InvalidVersion (plain
    # Exceptions, both). They escaped as tracebacks from `pktlab ppks show`/`sign -r`.
    try:
        if b"-----BEGIN" in data:  # text before the block is skipped, as OpenSSL does
            csr = x509.load_pem_x509_csr(data)
        else:
            csr = x509.load_der_x509_csr(data)
        pub = csr.public_key()
        signed = isinstance(pub, Ed25519PublicKey) and csr.is_signature_valid
    except (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion) as e:
        raise CSRError(Reason.BAD_CSR, f"not a CSR: {e}") from None
    if not isinstance(pub, Ed25519PublicKey):
        raise CSRError(Reason.BAD_CSR, "CSR key is not Ed25519")
    if not signed:
        raise CSRError(Reason.BAD_CSR_SIGNATURE, "CSR self-signature is invalid")
    ctype: CertType | None = None
    dtype = DelType.NONE
    desc = None
    aux: list[NVPair] = []
    limit_pairs: list[NVPair] = []
    pathlen = None
    try:
        exts = csr.extensions
    except ValueError as e:
        raise CSRError(Reason.BAD_CSR, f"bad CSR extensions: {e}") from None
    try:
        for ext in exts:
            oid = ext.oid.dotted_string
            if oid == OID_CERT_INFO and isinstance(ext.value, x509.UnrecognizedExtension):
                for p in parse_nv_extension(ext.value.value, oid):
                    if p.name == "cert_type":
                        ctype = CertType.from_label(p.value)
                    elif p.name == "del_type":
                        dtype = DelType.from_label(p.value)
                    elif p.name == "cert_desc":
                        desc = p.value
                    else:
                        aux.append(p)
            elif oid == OID_CERT_LIMIT and isinstance(ext.value, x509.UnrecognizedExtension):
                limit_pairs = parse_nv_extension(ext.value.value, oid)
                CertLimits.from_pairs(limit_pairs)
            elif isinstance(ext.value, x509.BasicConstraints):
                pathlen = ext.value.path_length
    except (PPKSError, ValueError) as e:
        raise CSRError(Reason.BAD_CSR, str(e)) from None
    return CertRequest(
        pem=csr.public_bytes(serialization.Encoding.PEM),
        public_key=raw_public_key(pub),
        cert_type=ctype,
        del_type=dtype,
        pathlen=pathlen,
        cert_desc=desc,
        aux_info=tuple(aux),
        limit_pairs=tuple(limit_pairs),
    )


def _merge(base: Sequence[NVPair], override: Sequence[NVPair]) -> list[NVPair]:
    out = list(base)
    for p in override:
        idx = next((i for i, q in enumerate(out) if q.name == p.name), None)
        if idx is None:
            out.append(p)
        else:
            out[idx] = p
    return out


def sign_csr(
    csr: CertRequest,
    signer: Ed25519PrivateKey,
    not_before: int,
    not_after: int,
    *,
    cert_type: CertType | str | None = None,
    del_type: DelType | str | None = None,
    pathlen: int | None = None,
    cert_desc: str | None = None,
    limits: LimitsArg = None,
    serial: int | None = None,
) -> Certificate:
    """Sign what a CSR asks for; arguments given here take precedence (as in ppksman),
    limits override the CSR's pair by pair."""
    ctype = cert_type if cert_type is not None else csr.cert_type
    if ctype is None:
        raise CSRError(Reason.BAD_CSR, "CSR has no cert_type and none was given")
    ct, dt = _coerce(ctype, del_type if del_type is not None else csr.del_type)
    lim = _merge(csr.limit_pairs, _limit_pairs(limits))
    return issue_certificate(
        ct,
        signer,
        csr.public_key,
        not_before,
        not_after,
        del_type=dt if ct is CertType.DELPRIV else None,
        pathlen=pathlen if pathlen is not None else (csr.pathlen if ct.is_ca else None),
        cert_desc=cert_desc if cert_desc is not None else csr.cert_desc,
        aux_info=csr.aux_info,
        limits=lim if ct.is_ca else None,
        serial=serial,
    )


def read_csr(path: str | os.PathLike[str]) -> CertRequest:
    with open(path, "rb") as f:
        return parse_csr(f.read())
