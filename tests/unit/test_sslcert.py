"""`run sslcert`'s pieces over bytes: the alert and non-TLS readings of what the server
sent, a certificate's s_client lines and fingerprint, HOST[:PORT], the text form."""

from __future__ import annotations

import datetime
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from packetlab.cli.run import RunError
from packetlab.cli.run_sslcert import handshake_timeout, split_target, text
from packetlab.measure.sslcert import alert_of, cert_info, not_tls, pem, version_number


def _cert() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test Org"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "leaf.test")])  # fmt: skip
    start = datetime.datetime(2026, 12, 7, 13, 0, 5, tzinfo=datetime.UTC)
    end = start + datetime.timedelta(days=2)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(7).not_valid_before(start)
            .not_valid_after(end).sign(key, hashes.SHA256()))  # fmt: skip
    return cert.public_bytes(serialization.Encoding.DER)


def test_a_plaintext_alert_record_is_read_from_the_bytes() -> None:
    hello = bytes([22, 3, 3, 0, 4]) + b"\x02\x00\x00\x00"  # a record before the alert
    alert = bytes([21, 3, 3, 0, 2, 2, 40])
    got = alert_of(hello + alert, [])
    assert got == {"level": 2, "decription": 40, "description": 40, "name": "handshake_failure"}


def test_an_encrypted_alert_is_named_from_openssls_reason() -> None:
    app = bytes([23, 3, 3, 0, 19]) + bytes(19)  # (TLS 1.3: an alert inside application data)
    assert alert_of(app, ["tlsv13 alert certificate required"])["description"] == 116  # type: ignore[index]
    assert alert_of(b"", ["tlsv1 unrecognized name"])["name"] == "unrecognized_name"  # type: ignore[index]
    assert alert_of(app, ["wrong version number"]) is None


def test_bytes_that_are_not_a_tls_record() -> None:
    assert not_tls(bytes([22, 3, 1, 0, 5])) is None
    assert not_tls(b"") is None
    said = not_tls(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    assert (
        said == "not a TLS server: its first bytes are not a TLS record: 'HTTP/1.1 400 Bad Request'"
    )
    assert not_tls(b"SSH-2.0-OpenSSH_9.6\r\n") == (
        "not a TLS server: its first bytes are not a TLS record: 'SSH-2.0-OpenSSH_9.6\\r\\n'"
    )


def test_a_certificate_as_s_client_names_it() -> None:
    der = _cert()
    info = cert_info(der)
    assert info["subject"] == info["issuer"] == "C = US, O = Test Org, CN = leaf.test"
    assert (info["not_before"], info["not_after"]) == (
        "2026-12-07T13:00:05Z",
        "2026-12-09T13:00:05Z",
    )
    assert info["sha256"].replace(":", "") == hashlib.sha256(der).hexdigest().upper()
    assert x509.load_pem_x509_certificate(pem(der).encode()).public_bytes(
        serialization.Encoding.DER) == der  # fmt: skip


def test_host_and_port() -> None:
    assert split_target("example.net") == ("example.net", 443)
    assert split_target("127.0.0.1:8443") == ("127.0.0.1", 8443)
    assert split_target("[::1]:853") == ("::1", 853)
    assert split_target("::1") == ("::1", 443)
    with pytest.raises(RunError, match="bad port"):
        split_target("a.test:99999")


def test_the_handshake_ends_before_the_runs_limit() -> None:
    assert handshake_timeout(None) == 10.0
    assert handshake_timeout(2.0) == 1.5
    assert handshake_timeout(1.0) == 0.5


def test_the_text_form() -> None:
    der = _cert()
    rec = {"type": "sslcert", "af": 4, "dst_addr": "127.0.0.1", "dst_port": 443, "ttc": 0.25,
           "rt": 1.5, "ver": "1.3", "cipher": "TLS_AES_256_GCM_SHA384", "cert": [pem(der)],
           "certs": [cert_info(der)], "verified": False,
           "verify_error": "self-signed certificate"}  # fmt: skip
    lines = text(rec).splitlines()  # type: ignore[union-attr]
    assert lines[:5] == [
        "CONNECTED 127.0.0.1:443 in 0.250 ms", "---", "Certificate chain",
        " 0 s:C = US, O = Test Org, CN = leaf.test", "   i:C = US, O = Test Org, CN = leaf.test",
    ]  # fmt: skip
    assert (
        lines[5] == "   v:NotBefore: Dec  7 13:00:05 2026 GMT; NotAfter: Dec  9 13:00:05 2026 GMT"
    )
    assert "New, TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384" in lines
    assert lines[-1] == "Verification error: self-signed certificate"
    assert "-----BEGIN CERTIFICATE-----" in text(rec, showcerts=True)  # type: ignore[operator]
    failed = {"type": "sslcert", "af": 6, "dst_addr": "::1", "dst_port": 1, "error": "refused"}
    assert text(failed) == "error: refused"
    assert text({"type": "summary"}) is None


def test_the_verdict_is_the_last_chain_error_and_never_refuses() -> None:
    from OpenSSL import crypto

    from packetlab.measure.sslcert import Verdict

    leaf = crypto.X509.from_cryptography(x509.load_der_x509_certificate(_cert()))
    v = Verdict()
    assert v(None, None, 20, 1, 0) and v(None, None, 0, 1, 1) and v(None, None, 10, 0, 0)
    assert v.fields(leaf, "leaf.test") == {
        "verified": False, "verify_error": "certificate has expired", "verify_result": 10,
    }  # fmt: skip
    ok = Verdict()
    assert ok(None, None, 0, 0, 1)
    assert ok.fields(leaf, "leaf.test") == {"verified": True}
    assert ok.fields(leaf, "other.test") == {
        "verified": False,
        "verify_error": "SSL: certificate subject name 'leaf.test' does not match "
        "target host name 'other.test'",
    }
    assert ok.fields(None, "leaf.test")["verify_error"] == "no certificate"


def test_the_version_as_atlas_writes_it() -> None:
    assert [version_number(v) for v in ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")] == [
        "1.0", "1.1", "1.2", "1.3",
    ]  # fmt: skip
