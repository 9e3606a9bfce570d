"""PPKS certificates: X.509 v3, Ed25519, cert_info/cert_limit extensions (PROTOCOL.md §4.2-4.3).

`parse_certificate(der)` refuses everything §4.3 refuses, each with its own `Reason`.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import math
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from packetlab.wire.nvlist import NVListError, NVPair, NVRule, parse_nvlist, quoted

from . import der
from .certcache import LRU, MAX_CACHED_DER
from .errors import CertificateError, Reason
from .limits import CertLimits

__all__ = [
    "MAX_NAME_PARTS",
    "MAX_NV_PAIRS",
    "OID_CERT_INFO",
    "OID_CERT_LIMIT",
    "CertType",
    "Certificate",
    "DelType",
    "certificate_pem",
    "load_certificates",
    "parse_certificate",
    "parse_nv_extension",
]

OID_CERT_INFO = "1.2.3.1"
OID_CERT_LIMIT = "1.2.3.3"
OID_ED25519 = "1.3.101.112"
OID_AKI = "2.5.29.35"
OID_SKI = "2.5.29.14"
OID_KEY_USAGE = "2.5.29.15"
OID_BASIC_CONSTRAINTS = "2.5.29.19"
# Allowed but not interpreted (§4.3): CRL Distribution Points, Freshest CRL, AIA, SIA.
# name=value pairs per cert_info / cert_limit: ppksman writes at most 14 known names (and
# a few aux ones); any stranger can make a certificate, and each pair costs its parse on
# every handshake that presents it.
MAX_NV_PAIRS = 64
# Attributes per issuer or subject name: ignored by the verifier, but each is read, and
# a 96 KB name of 8,000 of them cost 90 ms per handshake (ppksman writes CN=" ").
MAX_NAME_PARTS = 64
_IGNORED_OK = {
    "2.5.29.31": "crlDistributionPoints",
    "2.5.29.46": "freshestCRL",
    "1.3.6.1.5.5.7.1.1": "authorityInfoAccess",
    "1.3.6.1.5.5.7.1.11": "subjectInfoAccess",
}
# Extensions of standard X.509 that PPKS does not allow (refused as "disallowed").
_STANDARD_PREFIXES = ("2.5.29.", "1.3.6.1.5.5.7.1.")

# KeyUsage bits (bit 0 is the most significant bit of the first byte).
_KU_DIGITAL_SIGNATURE = 0
_KU_KEY_CERT_SIGN = 5
_KU_CRL_SIGN = 6


class CertType(enum.IntEnum):
    """`cert_type` of cert_info; the values are the reference enum (§4.2)."""

    SUBCMD = 0
    PUBCMD = 1
    EXPPRIV = 2
    DELPRIV = 3
    AGENT = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @property
    def is_ca(self) -> bool:
        return self in (CertType.EXPPRIV, CertType.DELPRIV)

    @classmethod
    def from_label(cls, text: str) -> CertType:
        for t in cls:
            if t.label == text:
                return t
        raise ValueError(f"unknown cert_type {quoted(text)}")


class DelType(enum.IntFlag):
    """`del_type` of a delpriv cert (§4.2)."""

    NONE = 0
    EXPPRIV = 0x1
    REPPRIV = 0x2

    @property
    def label(self) -> str:
        names = [
            n for f, n in ((DelType.EXPPRIV, "exppriv"), (DelType.REPPRIV, "reppriv")) if f in self
        ]
        return ",".join(names)

    @classmethod
    def from_label(cls, text: str) -> DelType:
        out = cls.NONE
        for item in text.split(","):
            flag = {"exppriv": cls.EXPPRIV, "reppriv": cls.REPPRIV}.get(item)
            if flag is None or flag in out:
                raise ValueError(f"bad del_type {quoted(text)}")
            out |= flag
        return out


@dataclass(frozen=True, eq=False)
class Certificate:
    """A decoded PPKS certificate. Times are Unix seconds."""

    der: bytes
    cert_type: CertType
    del_type: DelType
    serial: int
    serial_bytes: bytes  # DER INTEGER content: used in the accounting key AKI||serial
    not_before: int
    not_after: int
    public_key: bytes  # raw 32-byte Ed25519 key
    subject_key_id: bytes
    authority_key_id: bytes
    pathlen: int | None  # CA certs only; None = unlimited
    info: tuple[NVPair, ...]
    limit_pairs: tuple[NVPair, ...] | None
    limits: CertLimits | None
    tbs: bytes
    signature: bytes

    @property
    def cert_desc(self) -> str | None:
        return next((p.value for p in self.info if p.name == "cert_desc"), None)

    @property
    def info_text(self) -> str:
        return "".join(f"{p.name}={p.value};" for p in self.info)

    @property
    def limit_text(self) -> str | None:
        if self.limit_pairs is None:
            return None
        return "".join(f"{'*' if p.optional else ''}{p.name}={p.value};" for p in self.limit_pairs)

    @property
    def accounting_key(self) -> bytes:
        """AKI(32) || serial: the reference rlim record key (§4.5)."""
        return self.authority_key_id + self.serial_bytes

    def is_valid_at(self, now: float) -> bool:
        """notBefore <= now <= notAfter, `now` in whole seconds as `verify_chain`."""
        return self.not_before <= math.floor(now) <= self.not_after

    def signed_by(self, signer_public_key: bytes) -> bool:
        """True when `signer_public_key` (raw 32 bytes) made this certificate's signature."""
        small = len(self.der) <= MAX_CACHED_DER
        key = (self.der, bytes(signer_public_key))
        if small and (known := _SIGNED.get(key)) is not None:
            return known
        try:
            Ed25519PublicKey.from_public_bytes(signer_public_key).verify(self.signature, self.tbs)
            ok = True
        except (InvalidSignature, ValueError):
            ok = False
        if small:
            _SIGNED.put(key, ok)
        return ok

    def to_pem(self) -> bytes:
        return certificate_pem(self.der)

    def __repr__(self) -> str:
        return (
            f"<Certificate {self.cert_type.label} serial={self.serial:x} "
            f"ski={self.subject_key_id[:4].hex()} aki={self.authority_key_id[:4].hex()}>"
        )


def _fail(reason: Reason, detail: str = "", field: str | None = None) -> CertificateError:
    return CertificateError(reason, detail, field=field)


def _algorithm_is_ed25519(tlv: der.TLV) -> bool:
    if tlv.tag != der.SEQUENCE:
        return False
    parts = der.children(tlv.value, most=1)
    return (
        len(parts) == 1
        and parts[0].tag == der.OID
        and der.decode_oid(parts[0].value) == (OID_ED25519)
    )


def _check_name(tlv: der.TLV, what: str) -> None:
    """Names are ignored (§4.3) but must be DER like the rest: SEQUENCE OF SET OF
    SEQUENCE {OID, primitive value}. They were skipped whole, so long-form lengths
    inside a name passed here (`cryptography` refuses them). At most MAX_NAME_PARTS
    attributes, counted as they are read."""
    count = 0
    try:
        for rdn in der.iter_children(tlv.value):
            if rdn.tag != der.SET or not rdn.value:
                raise der.DERError("a name part is not a non-empty SET")
            for atv in der.iter_children(rdn.value):
                count += 1
                if count > MAX_NAME_PARTS:
                    raise _fail(
                        Reason.TOO_MANY_NAME_PARTS,
                        f"{what} name of over {MAX_NAME_PARTS} attributes (ppksman's has one)",
                    )
                parts = der.children(atv.value, most=2) if atv.tag == der.SEQUENCE else []
                if len(parts) != 2 or parts[0].tag != der.OID or parts[1].tag & 0x20:
                    raise der.DERError("a name attribute is not SEQUENCE {OID, value}")
                der.decode_oid(parts[0].value)
    except der.DERError as e:
        raise _fail(Reason.MALFORMED_DER, f"{what} name: {e}") from None


def _parse_spki(tlv: der.TLV) -> bytes:
    if tlv.tag != der.SEQUENCE:
        raise _fail(Reason.MALFORMED_DER, "subjectPublicKeyInfo is not a SEQUENCE")
    parts = der.children(tlv.value, most=2)
    if len(parts) != 2 or not _algorithm_is_ed25519(parts[0]) or parts[1].tag != der.BIT_STRING:
        raise _fail(Reason.BAD_PUBLIC_KEY, "subject public key is not Ed25519")
    key, unused = der.decode_bit_string(parts[1].value)
    if unused or len(key) != 32:
        raise _fail(Reason.BAD_PUBLIC_KEY, f"Ed25519 key is {len(key)} bytes, not 32")
    return key


def parse_nv_extension(value: bytes, oid: str) -> list[NVPair]:
    """Decode a cert_info/cert_limit extnValue: DER OCTET STRING (SIZE(1..MAX)) of
    ASCII name=value pairs (§4.3)."""
    is_info = oid == OID_CERT_INFO
    enc = Reason.BAD_CERT_INFO_ENCODING if is_info else Reason.BAD_CERT_LIMIT_ENCODING
    syn = Reason.BAD_CERT_INFO_SYNTAX if is_info else Reason.BAD_CERT_LIMIT_SYNTAX
    try:
        inner = der.read_single(value, der.OCTET_STRING)
    except der.DERError as e:
        raise _fail(enc, f"not a DER OCTET STRING: {e}") from None
    if not inner.value:
        raise _fail(enc, "empty string (SIZE(1..MAX))")
    pairs = inner.value.count(b";")
    if pairs > MAX_NV_PAIRS:  # counted before any is parsed
        raise _fail(
            Reason.TOO_MANY_NV_PAIRS,
            f"{'cert_info' if is_info else 'cert_limit'} of {pairs} pairs (at most {MAX_NV_PAIRS})",
        )
    try:
        return parse_nvlist(inner.value, allow_optional=not is_info)
    except NVListError as e:
        reason = Reason.DUPLICATE_NAME if e.rule is NVRule.DUPLICATE_NAME else syn
        raise _fail(reason, str(e)) from None


def _parse_info(pairs: list[NVPair]) -> tuple[CertType, DelType]:
    fields = {p.name: p.value for p in pairs}
    if "cert_type" not in fields:
        raise _fail(Reason.MISSING_CERT_TYPE, "cert_info has no cert_type", "cert_type")
    try:
        ctype = CertType.from_label(fields["cert_type"])
    except ValueError as e:
        raise _fail(Reason.UNKNOWN_CERT_TYPE, str(e), "cert_type") from None
    dtype = DelType.NONE
    if "del_type" in fields:
        if ctype is not CertType.DELPRIV:
            raise _fail(Reason.UNEXPECTED_DEL_TYPE, f"del_type on a {ctype.label} cert", "del_type")
        try:
            dtype = DelType.from_label(fields["del_type"])
        except ValueError as e:
            raise _fail(Reason.BAD_DEL_TYPE, str(e), "del_type") from None
    elif ctype is CertType.DELPRIV:
        raise _fail(Reason.MISSING_DEL_TYPE, "delpriv cert without del_type", "del_type")
    return ctype, dtype


@dataclass
class _Exts:
    aki: bytes | None = None
    ski: bytes | None = None
    ku: tuple[set[int], bool] | None = None  # (bits set, critical)
    bc: tuple[bool, int | None, bool] | None = None  # (ca, pathlen, critical)
    info: tuple[bytes, bool] | None = None
    limit: tuple[bytes, bool] | None = None


def _parse_extensions(tlv: der.TLV) -> _Exts:
    exts = _Exts()
    seen: set[str] = set()
    outer = der.read_single(tlv.value, der.SEQUENCE)
    if not outer.value:
        raise _fail(Reason.MALFORMED_DER, "empty extensions list")
    # One at a time: PPKS allows ten kinds, each once, so the first duplicate or stranger
    # ends the list (it was read whole first: 9,000 entries in 99 KB cost 35 ms).
    for item in der.iter_children(outer.value):
        if item.tag != der.SEQUENCE:
            raise _fail(Reason.MALFORMED_DER, "extension is not a SEQUENCE")
        parts = der.children(item.value, most=3)
        if len(parts) not in (2, 3) or parts[0].tag != der.OID:
            raise _fail(Reason.MALFORMED_DER, "bad extension structure")
        oid = der.decode_oid(parts[0].value)
        critical = False
        if len(parts) == 3:
            if parts[1].tag != der.BOOLEAN:
                raise _fail(Reason.MALFORMED_DER, f"extension {oid}: bad critical flag")
            critical = der.decode_boolean(parts[1].value)
            if not critical:  # DER omits a DEFAULT value (X.690 11.5)
                raise _fail(
                    Reason.MALFORMED_DER, f"extension {oid}: critical FALSE written out (not DER)"
                )
        value_tlv = parts[-1]
        if value_tlv.tag != der.OCTET_STRING:
            raise _fail(Reason.MALFORMED_DER, f"extension {oid}: extnValue is not OCTET STRING")
        if oid in seen:
            raise _fail(Reason.DUPLICATE_EXTENSION, f"extension {oid} appears twice")
        seen.add(oid)
        value = value_tlv.value
        if oid == OID_AKI:
            exts.aki = _parse_aki(value)
        elif oid == OID_SKI:
            try:
                ski = der.read_single(value, der.OCTET_STRING).value
            except der.DERError as e:
                raise _fail(Reason.BAD_SKI, str(e)) from None
            if len(ski) != 32:
                raise _fail(Reason.BAD_SKI, f"SKI is {len(ski)} bytes, not 32")
            exts.ski = ski
        elif oid == OID_KEY_USAGE:
            exts.ku = (_parse_key_usage(value), critical)
        elif oid == OID_BASIC_CONSTRAINTS:
            ca, pathlen = _parse_basic_constraints(value)
            exts.bc = (ca, pathlen, critical)
        elif oid == OID_CERT_INFO:
            exts.info = (value, critical)
        elif oid == OID_CERT_LIMIT:
            exts.limit = (value, critical)
        elif oid in _IGNORED_OK:
            pass
        elif critical and not oid.startswith(_STANDARD_PREFIXES):
            raise _fail(Reason.UNKNOWN_CRITICAL_EXTENSION, f"unknown critical extension {oid}")
        else:
            raise _fail(Reason.DISALLOWED_EXTENSION, f"extension {oid} is not allowed in PPKS")
    return exts


def _parse_aki(value: bytes) -> bytes:
    try:
        seq = der.read_single(value, der.SEQUENCE)
        parts = der.children(seq.value, most=1)
    except der.DERError as e:
        raise _fail(Reason.BAD_AKI, str(e)) from None
    if len(parts) != 1 or parts[0].tag != 0x80:
        raise _fail(Reason.BAD_AKI, "AKI must hold only a keyIdentifier")
    if len(parts[0].value) != 32:
        raise _fail(Reason.BAD_AKI, f"AKI keyid is {len(parts[0].value)} bytes, not 32")
    return parts[0].value


def _parse_key_usage(value: bytes) -> set[int]:
    try:
        bits, unused = der.decode_bit_string(der.read_single(value, der.BIT_STRING).value)
        if len(bits) > 2:  # each bit was looked at: 90 KB of them cost 70-97 ms
            raise der.DERError(f"{len(bits)} bytes of bits (its nine named bits fit in 2)")
        if bits and (bits[-1] == 0 or bits[-1] & (1 << unused) == 0):
            # a named bit list in DER ends at its last 1 bit (X.690 11.2.2)
            raise der.DERError("trailing zero bits (not DER)")
    except der.DERError as e:
        raise _fail(Reason.BAD_KEY_USAGE, str(e)) from None
    total = len(bits) * 8 - unused
    return {i for i in range(total) if bits[i // 8] & (0x80 >> (i % 8))}


def _parse_basic_constraints(value: bytes) -> tuple[bool, int | None]:
    try:
        parts = der.children(der.read_single(value, der.SEQUENCE).value, most=2)
        ca = False
        pathlen = None
        rest = parts
        if rest and rest[0].tag == der.BOOLEAN:
            ca = der.decode_boolean(rest[0].value)
            if not ca:  # DER omits a DEFAULT value (X.690 11.5)
                raise der.DERError("cA FALSE written out (not DER)")
            rest = rest[1:]
        if rest and rest[0].tag == der.INTEGER:
            pathlen = der.decode_integer(rest[0].value)
            rest = rest[1:]
        if rest or (pathlen is not None and pathlen < 0):
            raise der.DERError("bad BasicConstraints")
    except der.DERError as e:
        raise _fail(Reason.BAD_BASIC_CONSTRAINTS, str(e)) from None
    return ca, pathlen


def _check_extensions(
    exts: _Exts, public_key: bytes
) -> tuple[
    CertType,
    DelType,
    bytes,
    bytes,
    int | None,
    list[NVPair],
    list[NVPair] | None,
    CertLimits | None,
]:
    if exts.info is None:
        raise _fail(Reason.MISSING_CERT_INFO, "no cert_info (1.2.3.1) extension")
    info_value, info_critical = exts.info
    if not info_critical:
        raise _fail(Reason.CERT_INFO_NOT_CRITICAL, "cert_info must be critical")
    info = parse_nv_extension(info_value, OID_CERT_INFO)
    ctype, dtype = _parse_info(info)

    if exts.aki is None:
        raise _fail(Reason.MISSING_AKI, "no AuthorityKeyIdentifier")
    if exts.ski is None:
        raise _fail(Reason.MISSING_SKI, "no SubjectKeyIdentifier")
    if exts.ski != hashlib.sha256(public_key).digest():
        raise _fail(Reason.SKI_MISMATCH, "SKI is not SHA-256 of the subject public key")

    if exts.ku is None:
        raise _fail(Reason.MISSING_KEY_USAGE, "no KeyUsage")
    bits = exts.ku[0]
    if ctype.is_ca:
        ok = bits in ({_KU_KEY_CERT_SIGN}, {_KU_KEY_CERT_SIGN, _KU_CRL_SIGN})
        want = "keyCertSign (or keyCertSign|cRLSign)"
    else:
        ok = bits == {_KU_DIGITAL_SIGNATURE}
        want = "digitalSignature only"
    if not ok:
        raise _fail(Reason.BAD_KEY_USAGE, f"{ctype.label} needs KeyUsage {want}, got bits {bits}")

    if exts.bc is None:
        raise _fail(Reason.MISSING_BASIC_CONSTRAINTS, "no BasicConstraints")
    ca, pathlen, bc_critical = exts.bc
    if not bc_critical:
        raise _fail(Reason.BASIC_CONSTRAINTS_NOT_CRITICAL, "BasicConstraints must be critical")
    if ctype.is_ca:
        if not ca:
            raise _fail(Reason.NOT_CA, f"{ctype.label} cert needs CA=TRUE")
    else:
        if ca:
            raise _fail(Reason.CA_ON_LEAF, f"{ctype.label} cert must have CA=FALSE")
        if pathlen is not None:
            raise _fail(Reason.PATHLEN_ON_LEAF, f"{ctype.label} cert must have no pathlen")

    limit_pairs: list[NVPair] | None = None
    limits: CertLimits | None = None
    if exts.limit is not None:
        limit_value, limit_critical = exts.limit
        if not ctype.is_ca:
            raise _fail(Reason.CERT_LIMIT_ON_LEAF, f"cert_limit on a {ctype.label} cert")
        if not limit_critical:
            raise _fail(Reason.CERT_LIMIT_NOT_CRITICAL, "cert_limit must be critical")
        limit_pairs = parse_nv_extension(limit_value, OID_CERT_LIMIT)
        limits = CertLimits.from_pairs(limit_pairs)
    return ctype, dtype, exts.aki, exts.ski, pathlen, info, limit_pairs, limits


def parse_certificate(data: bytes) -> Certificate:
    """Decode and check one DER certificate against every rule of §4.3.

    Raises `CertificateError` whose `reason` names the rule broken. Does not check
    validity times or the signature (that needs the chain: see `verify_chain`).
    """
    data = bytes(data)
    cert = _PARSED.get(data) if len(data) <= MAX_CACHED_DER else None
    if cert is not None:
        return cert
    try:
        cert = _parse(data)
    except der.DERError as e:
        raise _fail(Reason.MALFORMED_DER, str(e)) from None
    except CertificateError:
        raise
    except (ValueError, OverflowError, IndexError) as e:
        # A conversion no rule above foresaw (as int() of over 4,300 digits and the year
        # 0 were): still a refusal of this certificate, never a traceback in the caller.
        raise _fail(Reason.MALFORMED_DER, f"undecodable field: {e}") from None
    if len(data) <= MAX_CACHED_DER:
        _PARSED.put(cert.der, cert)
    return cert


# Parsed certificates by their DER bytes, and signature checks by (DER, signer key):
# both pure, so a hit is the same answer (certcache).
_PARSED: LRU[bytes, Certificate] = LRU(256)
_SIGNED: LRU[tuple[bytes, bytes], bool] = LRU(512)


def _parse(data: bytes) -> Certificate:
    cert = der.read_single(data, der.SEQUENCE)
    top = der.children(cert.value, most=3)
    if len(top) != 3 or top[0].tag != der.SEQUENCE or top[2].tag != der.BIT_STRING:
        raise _fail(Reason.MALFORMED_DER, "not an X.509 Certificate")
    tbs_tlv, outer_alg, sig_tlv = top
    if not _algorithm_is_ed25519(outer_alg):
        raise _fail(Reason.BAD_SIGNATURE_ALGORITHM, "signature algorithm is not Ed25519")
    signature, unused = der.decode_bit_string(sig_tlv.value)
    if unused or len(signature) != 64:
        raise _fail(Reason.BAD_SIGNATURE_ALGORITHM, "Ed25519 signature must be 64 bytes")

    # version, serial, algorithm, issuer, validity, subject, key, 2 unique ids, extensions
    fields = der.children(tbs_tlv.value, most=10)
    i = 0
    if not fields or fields[0].tag != 0xA0:
        raise _fail(Reason.BAD_VERSION, "no explicit version (v1 certificate)")
    version = der.decode_integer(der.read_single(fields[0].value, der.INTEGER).value)
    if version != 2:
        raise _fail(Reason.BAD_VERSION, f"version field {version}, need 2 (v3)")
    i = 1

    def take(tag: int | None, what: str) -> der.TLV:
        nonlocal i
        if i >= len(fields) or (tag is not None and fields[i].tag != tag):
            raise _fail(Reason.MALFORMED_DER, f"missing or bad {what}")
        i += 1
        return fields[i - 1]

    serial_tlv = take(der.INTEGER, "serialNumber")
    if not serial_tlv.value:
        raise _fail(Reason.BAD_SERIAL, "empty serial number")
    serial = der.decode_integer(serial_tlv.value)
    tbs_alg = take(der.SEQUENCE, "signature algorithm")
    if not _algorithm_is_ed25519(tbs_alg):
        raise _fail(Reason.BAD_SIGNATURE_ALGORITHM, "tbs signature algorithm is not Ed25519")
    _check_name(take(der.SEQUENCE, "issuer"), "issuer")
    validity = take(der.SEQUENCE, "validity")
    times = der.children(validity.value, most=2)
    if len(times) != 2:
        raise _fail(Reason.BAD_VALIDITY, "validity needs notBefore and notAfter")
    try:
        not_before, not_after = der.decode_time(times[0]), der.decode_time(times[1])
    except der.DERError as e:
        raise _fail(Reason.BAD_VALIDITY, str(e)) from None
    _check_name(take(der.SEQUENCE, "subject"), "subject")
    public_key = _parse_spki(take(None, "subjectPublicKeyInfo"))
    exts = None
    for f in fields[i:]:
        if f.tag in (0x81, 0xA1, 0x82, 0xA2):
            raise _fail(Reason.UNIQUE_ID_PRESENT, "issuer/subject unique IDs are not allowed")
        if f.tag != 0xA3 or exts is not None:
            raise _fail(Reason.MALFORMED_DER, f"unexpected field tag 0x{f.tag:02x} in tbs")
        exts = _parse_extensions(f)
    if exts is None:
        raise _fail(Reason.NO_EXTENSIONS, "certificate has no extensions")
    ctype, dtype, aki, ski, pathlen, info, limit_pairs, limits = _check_extensions(exts, public_key)
    return Certificate(
        der=bytes(data),
        cert_type=ctype,
        del_type=dtype,
        serial=serial,
        serial_bytes=serial_tlv.value,
        not_before=not_before,
        not_after=not_after,
        public_key=public_key,
        subject_key_id=ski,
        authority_key_id=aki,
        pathlen=pathlen if ctype.is_ca else None,
        info=tuple(info),
        limit_pairs=tuple(limit_pairs) if limit_pairs is not None else None,
        limits=limits,
        tbs=tbs_tlv.raw,
        signature=signature,
    )


_BEGIN = b"-----BEGIN CERTIFICATE-----"
_END = b"-----END CERTIFICATE-----"


def _pem_blocks(data: bytes) -> list[bytes]:
    """What each BEGIN ... END CERTIFICATE pair holds, leftmost first: the matches of
    `BEGIN(.+?)END` (re.S), found in linear time. That regex went over the rest of the
    file again from each BEGIN without an END: 448 KB of BEGIN lines took 54 s."""
    out = []
    pos = 0
    while (start := data.find(_BEGIN, pos)) >= 0:
        body = start + len(_BEGIN)
        end = data.find(_END, body + 1)  # `.+?`: at least one byte
        if end < 0:  # no END after this BEGIN, so none after any later one
            break
        out.append(data[body:end])
        pos = end + len(_END)
    return out


def load_certificates(data: bytes) -> list[Certificate]:
    """Parse every certificate in `data`: PEM (one or more blocks) or a single DER.

    Text around the PEM blocks is skipped, as OpenSSL's PEM reader (the reference's)
    skips it: `openssl x509 -text` output, or "Bag Attributes" lines, before the block.
    Such a file was read as DER and refused with `malformed_der: trailing bytes`. A DER
    certificate starts with its SEQUENCE tag (0x30) and is never searched for blocks (a
    cert_desc may spell a whole PEM block)."""
    blocks = _pem_blocks(data) if data[:1] != b"\x30" and b"-----BEGIN" in data else []
    if blocks or data.lstrip().startswith(b"-----BEGIN"):
        if not blocks:
            raise _fail(Reason.NOT_PEM_OR_DER, "no CERTIFICATE PEM block")
        out = []
        for b in blocks:
            try:
                raw = base64.b64decode(b"".join(b.split()), validate=True)
            except ValueError:
                raise _fail(Reason.NOT_PEM_OR_DER, "bad base64 in PEM block") from None
            out.append(parse_certificate(raw))
        return out
    if data[:1] != b"\x30":  # said `malformed_der: truncated` for a text file
        raise _fail(Reason.NOT_PEM_OR_DER, "no CERTIFICATE PEM block, and not DER")
    return [parse_certificate(data)]


def certificate_pem(der_bytes: bytes) -> bytes:
    b64 = base64.b64encode(der_bytes)
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return b"-----BEGIN CERTIFICATE-----\n" + b"\n".join(lines) + b"\n-----END CERTIFICATE-----\n"
