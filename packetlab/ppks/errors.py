"""PPKS errors: every refusal names the rule (PROTOCOL.md §4.1-§4.5) that was broken."""

from __future__ import annotations

import enum


class Reason(enum.Enum):
    """Why a key, certificate or chain was refused. Values are stable, short identifiers."""

    # keys (§4.1)
    KEY_NOT_PEM = "key_not_pem"
    KEY_NOT_ED25519 = "key_not_ed25519"
    KEY_NEEDS_PASSPHRASE = "key_needs_passphrase"
    KEY_BAD_PASSPHRASE = "key_bad_passphrase"
    # certificate structure (§4.3)
    MALFORMED_DER = "malformed_der"
    NOT_PEM_OR_DER = "not_pem_or_der"
    BAD_VERSION = "bad_version"
    BAD_SERIAL = "bad_serial"
    BAD_SIGNATURE_ALGORITHM = "bad_signature_algorithm"
    BAD_PUBLIC_KEY = "bad_public_key"
    BAD_VALIDITY = "bad_validity"
    UNIQUE_ID_PRESENT = "unique_id_present"
    NO_EXTENSIONS = "no_extensions"
    DUPLICATE_EXTENSION = "duplicate_extension"
    DISALLOWED_EXTENSION = "disallowed_extension"
    UNKNOWN_CRITICAL_EXTENSION = "unknown_critical_extension"
    MISSING_AKI = "missing_aki"
    BAD_AKI = "bad_aki"
    MISSING_SKI = "missing_ski"
    BAD_SKI = "bad_ski"
    SKI_MISMATCH = "ski_mismatch"
    MISSING_KEY_USAGE = "missing_key_usage"
    BAD_KEY_USAGE = "bad_key_usage"
    MISSING_BASIC_CONSTRAINTS = "missing_basic_constraints"
    BASIC_CONSTRAINTS_NOT_CRITICAL = "basic_constraints_not_critical"
    BAD_BASIC_CONSTRAINTS = "bad_basic_constraints"
    CA_ON_LEAF = "ca_on_leaf"
    PATHLEN_ON_LEAF = "pathlen_on_leaf"
    NOT_CA = "not_ca"
    # cert_info / cert_limit (§4.3)
    MISSING_CERT_INFO = "missing_cert_info"
    CERT_INFO_NOT_CRITICAL = "cert_info_not_critical"
    BAD_CERT_INFO_ENCODING = "bad_cert_info_encoding"
    BAD_CERT_INFO_SYNTAX = "bad_cert_info_syntax"
    DUPLICATE_NAME = "duplicate_name"
    MISSING_CERT_TYPE = "missing_cert_type"
    UNKNOWN_CERT_TYPE = "unknown_cert_type"
    MISSING_DEL_TYPE = "missing_del_type"
    UNEXPECTED_DEL_TYPE = "unexpected_del_type"
    BAD_DEL_TYPE = "bad_del_type"
    CERT_LIMIT_NOT_CRITICAL = "cert_limit_not_critical"
    BAD_CERT_LIMIT_ENCODING = "bad_cert_limit_encoding"
    BAD_CERT_LIMIT_SYNTAX = "bad_cert_limit_syntax"
    CERT_LIMIT_ON_LEAF = "cert_limit_on_leaf"
    BAD_MONITOR_DIGESTS = "bad_monitor_digests"
    BAD_FILTER_DIGESTS = "bad_filter_digests"
    BAD_DECIMAL = "bad_decimal"
    BAD_BURST_RATE = "bad_burst_rate"
    BAD_VALID_DEST = "bad_valid_dest"
    BAD_SRC_IP_SPOOFING = "bad_src_ip_spoofing"
    TOO_MANY_NV_PAIRS = "too_many_nv_pairs"
    TOO_MANY_VALID_DEST = "too_many_valid_dest"
    TOO_MANY_BURST_RATES = "too_many_burst_rates"
    TOO_MANY_NAME_PARTS = "too_many_name_parts"
    # chain validation (§4.4)
    EMPTY_CHAIN = "empty_chain"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    WRONG_CERT_TYPE = "wrong_cert_type"
    DEL_TYPE_NOT_EXPPRIV = "del_type_not_exppriv"
    DEL_TYPE_NOT_REPPRIV = "del_type_not_reppriv"
    MISSING_PARENT = "missing_parent"
    CHAIN_LOOP = "chain_loop"
    BAD_SIGNATURE = "bad_signature"
    PATHLEN_EXCEEDED = "pathlen_exceeded"
    UNTRUSTED_ROOT = "untrusted_root"
    BAD_ROOT_SIGNATURE = "bad_root_signature"
    TOO_MANY_CERTS = "too_many_certs"
    LEAF_KEY_MISMATCH = "leaf_key_mismatch"
    # CSRs
    BAD_CSR = "bad_csr"
    BAD_CSR_SIGNATURE = "bad_csr_signature"


class PPKSError(Exception):
    """Base of every PPKS refusal; `reason` says which rule."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)


class KeyFileError(PPKSError):
    """A key file could not be used (not PEM, not Ed25519, passphrase problems)."""


class CertificateError(PPKSError):
    """A certificate breaks an encoding rule of §4.3."""

    def __init__(self, reason: Reason, detail: str = "", *, field: str | None = None) -> None:
        super().__init__(reason, detail)
        self.field = field  # the cert_info/cert_limit name concerned, if any


class ChainError(PPKSError):
    """A certificate chain breaks a validation rule of §4.4.

    `index` is the position, in the list given, of the certificate concerned (or None).
    """

    def __init__(self, reason: Reason, detail: str = "", *, index: int | None = None) -> None:
        where = f"cert #{index}: " if index is not None else ""
        super().__init__(reason, where + detail)
        self.index = index


class CSRError(PPKSError):
    """A certificate signing request could not be used."""
