"""PacketLab Public Key System: keys, certificates, chains, limits (PROTOCOL.md §4).

The public API is re-exported here; see docs/ppks.md. Each name is imported from its
submodule on first use: an endpoint only verifies (idle endpoint memory), and `pktlab run
--help` needs only `PktlabHome` (no cryptography x509, no accounting; docs/performance.md).
"""

from typing import TYPE_CHECKING

from packetlab._lazy import lazy_attributes

if TYPE_CHECKING:
    from .accounting import Accounting, AccountingError, Budget, Counter, Meter
    from .cert import (
        Certificate,
        CertType,
        DelType,
        certificate_pem,
        load_certificates,
        parse_certificate,
    )
    from .chainlimits import Limits, combine_limits, experiment_end_time
    from .errors import CertificateError, ChainError, CSRError, KeyFileError, PPKSError, Reason
    from .issue import CertRequest, issue_certificate, make_csr, parse_csr, sign_csr
    from .keys import (
        generate_private_key,
        key_id,
        load_private_key,
        load_public_key,
        private_key_pem,
        public_key_pem,
        raw_public_key,
        read_private_key,
        read_public_key,
        write_key_pair,
    )
    from .limits import DEFAULT_SEND_BURST, BurstRate, CertLimits
    from .snikey import generate_snikey, is_valid_snikey
    from .store import PktlabHome, default_home
    from .verify import (
        AuthMode,
        EndpointChainInfo,
        ExpChainInfo,
        VerifiedChain,
        parse_controller_exp_chain,
        parse_endpoint_rep_chain,
        verify_chain,
    )

# each public name under its submodule (the TYPE_CHECKING imports and __all__ name the
# same; tests/unit/test_public_names.py keeps the three in step)
_MODULES: dict[str, tuple[str, ...]] = {
    "accounting": (
        "Accounting",
        "AccountingError",
        "Budget",
        "Counter",
        "Meter",
    ),
    "cert": (
        "Certificate",
        "CertType",
        "DelType",
        "certificate_pem",
        "load_certificates",
        "parse_certificate",
    ),
    "chainlimits": (
        "Limits",
        "combine_limits",
        "experiment_end_time",
    ),
    "errors": (
        "CertificateError",
        "ChainError",
        "CSRError",
        "KeyFileError",
        "PPKSError",
        "Reason",
    ),
    "keys": (
        "generate_private_key",
        "key_id",
        "load_private_key",
        "load_public_key",
        "private_key_pem",
        "public_key_pem",
        "raw_public_key",
        "read_private_key",
        "read_public_key",
        "write_key_pair",
    ),
    "limits": (
        "DEFAULT_SEND_BURST",
        "BurstRate",
        "CertLimits",
    ),
    "snikey": (
        "generate_snikey",
        "is_valid_snikey",
    ),
    "store": (
        "PktlabHome",
        "default_home",
    ),
    "verify": (
        "AuthMode",
        "EndpointChainInfo",
        "ExpChainInfo",
        "VerifiedChain",
        "parse_controller_exp_chain",
        "parse_endpoint_rep_chain",
        "verify_chain",
    ),
    "issue": (
        "CertRequest",
        "issue_certificate",
        "make_csr",
        "parse_csr",
        "sign_csr",
    ),
}
__getattr__, __dir__ = lazy_attributes(globals(), _MODULES)

__all__ = [
    "DEFAULT_SEND_BURST",
    "Accounting",
    "AccountingError",
    "AuthMode",
    "Budget",
    "BurstRate",
    "CSRError",
    "CertLimits",
    "CertRequest",
    "CertType",
    "Certificate",
    "CertificateError",
    "ChainError",
    "Counter",
    "DelType",
    "EndpointChainInfo",
    "ExpChainInfo",
    "KeyFileError",
    "Limits",
    "Meter",
    "PPKSError",
    "PktlabHome",
    "Reason",
    "VerifiedChain",
    "certificate_pem",
    "combine_limits",
    "default_home",
    "experiment_end_time",
    "generate_private_key",
    "generate_snikey",
    "is_valid_snikey",
    "issue_certificate",
    "key_id",
    "load_certificates",
    "load_private_key",
    "load_public_key",
    "make_csr",
    "parse_certificate",
    "parse_controller_exp_chain",
    "parse_csr",
    "parse_endpoint_rep_chain",
    "private_key_pem",
    "public_key_pem",
    "raw_public_key",
    "read_private_key",
    "read_public_key",
    "sign_csr",
    "verify_chain",
    "write_key_pair",
]
