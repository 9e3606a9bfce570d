"""A throwaway CA and a server certificate (for localhost, *.test and 127.0.0.1) for the
HTTPS tests, written as PEM files."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_pki(
    out: Path, names: tuple[str, ...] = ("localhost", "www.test"), *, san: bool = True
) -> dict[str, Path]:
    """ca.pem, server.pem, server.key, other-ca.pem (a CA that signed nothing here), and
    a client certificate the CA signed (client.pem, client.key: CN pktlab test client).
    `san` False: the server's certificate names only `names[0]`, as its common name."""
    now = datetime.datetime.now(datetime.UTC)
    day = datetime.timedelta(days=1)
    paths = {}
    cas = {}
    for label in ("ca", "other-ca"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(f"pktlab test {label}"))
            .issuer_name(_name(f"pktlab test {label}"))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - day)
            .not_valid_after(now + day)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        cas[label] = (key, cert)
        paths[label] = out / f"{label}.pem"
        paths[label].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    ca_key, ca_cert = cas["ca"]
    key = ec.generate_private_key(ec.SECP256R1())
    alt = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - day)
        .not_valid_after(now + day)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    paths["server"] = out / "server.pem"
    paths["server"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"] = out / "server.key"
    paths["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("pktlab test client"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - day)
        .not_valid_after(now + day)
        .sign(ca_key, hashes.SHA256())
    )
    paths["client"], paths["client_key"] = out / "client.pem", out / "client.key"
    paths["client"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["client_key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def encrypted(key: Path, out: Path, phrase: bytes) -> Path:
    """`key` (PEM) written to `out` encrypted with `phrase` (curl's --cert FILE:PASSWORD)."""
    k = serialization.load_pem_private_key(key.read_bytes(), None)
    out.write_bytes(k.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.BestAvailableEncryption(phrase)))  # fmt: skip
    return out
