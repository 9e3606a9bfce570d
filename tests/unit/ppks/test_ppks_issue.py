"""Keys, certificate issuing, CSRs, snikeys and the ~/.pktlab layout."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from ppks_factory import NA, NB, key, pub

from packetlab.ppks import (
    CertificateError,
    CertLimits,
    CertType,
    CSRError,
    DelType,
    KeyFileError,
    PktlabHome,
    Reason,
    generate_snikey,
    is_valid_snikey,
    issue_certificate,
    key_id,
    load_private_key,
    load_public_key,
    make_csr,
    parse_csr,
    private_key_pem,
    public_key_pem,
    read_private_key,
    read_public_key,
    sign_csr,
    write_key_pair,
)


def test_key_id_is_sha256_of_raw_key() -> None:
    import hashlib

    k = key("a")
    assert key_id(k) == key_id(k.public_key()) == key_id(pub("a"))
    assert key_id(k) == hashlib.sha256(pub("a")).digest()


def test_key_files_round_trip(tmp_path: Path) -> None:
    k = key("a")
    priv, pubp = write_key_pair(tmp_path / "k_a", k)
    assert pubp.name == "k_a.pub"
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert read_private_key(priv).private_bytes_raw() == k.private_bytes_raw()
    assert read_public_key(pubp).public_bytes_raw() == pub("a")
    assert pubp.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert priv.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


def test_encrypted_private_key(tmp_path: Path) -> None:
    pem = private_key_pem(key("a"), b"secret")
    assert b"ENCRYPTED" in pem
    assert load_private_key(pem, b"secret").private_bytes_raw() == key("a").private_bytes_raw()
    with pytest.raises(KeyFileError) as e:
        load_private_key(pem)
    assert e.value.reason is Reason.KEY_NEEDS_PASSPHRASE
    with pytest.raises(KeyFileError) as e:
        load_private_key(pem, b"wrong")
    assert e.value.reason is Reason.KEY_BAD_PASSPHRASE
    # a passphrase given for a plain key is ignored
    assert load_private_key(private_key_pem(key("a")), b"x")


def test_key_errors() -> None:
    with pytest.raises(KeyFileError) as e:
        load_public_key(b"not a key")
    assert e.value.reason is Reason.KEY_NOT_PEM
    eck = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(KeyFileError) as e:
        load_public_key(
            eck.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        )
    assert e.value.reason is Reason.KEY_NOT_ED25519
    with pytest.raises(KeyFileError) as e:
        load_private_key(eck.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    assert e.value.reason is Reason.KEY_NOT_ED25519
    with pytest.raises(KeyFileError) as e:
        load_private_key(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    assert e.value.reason is Reason.KEY_NOT_PEM
    assert load_public_key(pub("a")).public_bytes_raw() == pub("a")  # raw 32 bytes
    assert load_public_key(public_key_pem(pub("a"))).public_bytes_raw() == pub("a")


def test_issue_matches_ppksman_layout() -> None:
    c = issue_certificate(
        "exppriv",
        key("eop"),
        key("exper").public_key(),
        NB,
        NA,
        pathlen=2,
        cert_desc="demo cert",
        aux_info="site=lab1;",
        limits="monitor=" + "ab" * 32 + ";*max_send_byte=1000;valid_dest=10.0.0.0/8;",
    )
    x = x509.load_der_x509_certificate(c.der)
    oids = [e.oid.dotted_string for e in x.extensions]
    crit = [e.critical for e in x.extensions]
    assert oids == ["2.5.29.35", "2.5.29.14", "2.5.29.15", "2.5.29.19", "1.2.3.1", "1.2.3.3"]
    assert crit == [False, False, True, True, True, True]
    assert x.subject.rfc4514_string() == "CN=\\ " and x.issuer == x.subject
    assert c.info_text == "cert_type=exppriv;cert_desc=demo cert;site=lab1;"
    assert c.limit_text == "monitor=" + "ab" * 32 + ";*max_send_byte=1000;valid_dest=10.0.0.0/8;"
    assert 0 < c.serial < 2**128


def test_issue_from_certlimits() -> None:
    lim = CertLimits(max_send_pkt=5, valid_dest=None, src_ip_spoofing=True)
    c = issue_certificate(
        CertType.DELPRIV, key("a"), pub("b"), NB, NA, del_type=DelType.EXPPRIV, limits=lim
    )
    assert c.limit_text == "max_send_pkt=5;src_ip_spoofing=1;"
    assert c.limits == lim


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cert_type": "delpriv"}, "needs a del_type"),
        ({"cert_type": "pubcmd", "del_type": "exppriv"}, "only for delpriv"),
        ({"cert_type": "pubcmd", "pathlen": 1}, "pathlen is only"),
        ({"cert_type": "exppriv", "pathlen": -1}, ">= 0"),
        ({"cert_type": "agent", "limits": "max_send_byte=1;"}, "limits are only"),
        ({"cert_type": "root"}, "unknown cert_type"),
    ],
)
def test_issue_argument_errors(kwargs: dict[str, object], message: str) -> None:
    ctype = kwargs.pop("cert_type")
    with pytest.raises(ValueError, match=message):
        issue_certificate(ctype, key("a"), pub("b"), NB, NA, **kwargs)  # type: ignore[arg-type]


def test_issue_refuses_bad_values() -> None:
    with pytest.raises(CertificateError) as e:
        issue_certificate("exppriv", key("a"), pub("b"), NB, NA, limits="max_send_byte=x;")
    assert e.value.reason is Reason.BAD_DECIMAL
    with pytest.raises(CertificateError) as e:
        issue_certificate("exppriv", key("a"), pub("b"), NB, NA, limits="max_send_byte=1")
    assert e.value.reason is Reason.BAD_CERT_LIMIT_SYNTAX
    with pytest.raises(CertificateError) as e:
        issue_certificate("pubcmd", key("a"), pub("b"), NB, NA, cert_desc="a=b")
    assert e.value.reason is Reason.BAD_CERT_INFO_SYNTAX


def test_csr_round_trip_and_sign() -> None:
    pem = make_csr(
        "delpriv",
        key("exper2"),
        del_type="exppriv",
        pathlen=1,
        cert_desc="please",
        aux_info="org=x;",
        limits="max_send_byte=100;*max_recv_byte=7;",
    )
    assert pem.startswith(b"-----BEGIN CERTIFICATE REQUEST-----")
    req = parse_csr(pem)
    assert req.cert_type is CertType.DELPRIV and req.del_type is DelType.EXPPRIV
    assert req.pathlen == 1 and req.cert_desc == "please"
    assert req.public_key == pub("exper2")
    assert [p.name for p in req.aux_info] == ["org"]
    # signer overrides one limit and adds another; CSR's others are kept
    c = sign_csr(req, key("exper"), NB, NA, limits="max_send_byte=50;max_send_pkt=9;")
    assert c.limit_text == "max_send_byte=50;*max_recv_byte=7;max_send_pkt=9;"
    assert c.cert_type is CertType.DELPRIV and c.pathlen == 1
    assert c.authority_key_id == key_id(key("exper"))
    assert c.public_key == pub("exper2")
    assert c.info_text == "cert_type=delpriv;del_type=exppriv;cert_desc=please;org=x;"
    # signing as another type drops what that type may not carry
    leaf = sign_csr(req, key("exper"), NB, NA, cert_type="pubcmd")
    assert leaf.cert_type is CertType.PUBCMD and leaf.limits is None and leaf.pathlen is None


def test_csr_without_pathlen_has_no_basic_constraints() -> None:
    x = x509.load_pem_x509_csr(make_csr("exppriv", key("a")))
    assert [e.oid.dotted_string for e in x.extensions] == ["1.2.3.1"]


def test_csr_errors() -> None:
    with pytest.raises(CSRError) as e:
        parse_csr(b"nope")
    assert e.value.reason is Reason.BAD_CSR
    eck = ec.generate_private_key(ec.SECP256R1())
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    ecsr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, " ")]))
        .sign(eck, hashes.SHA256())
        .public_bytes(Encoding.PEM)
    )
    with pytest.raises(CSRError) as e:
        parse_csr(ecsr)
    assert e.value.reason is Reason.BAD_CSR
    # tamper with the signed part: the self-signature no longer verifies
    der = x509.load_pem_x509_csr(make_csr("exppriv", key("a"))).public_bytes(Encoding.DER)
    i = der.find(b"cert_type=exppriv")
    bad = der[:i] + b"cert_type=delpriv" + der[i + 17 :]
    with pytest.raises(CSRError) as e:
        parse_csr(bad)
    assert e.value.reason is Reason.BAD_CSR_SIGNATURE
    # a CSR with no cert_info cannot be signed without a type
    bare = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, " ")]))
        .sign(key("a"), None)
        .public_bytes(Encoding.PEM)
    )
    req = parse_csr(bare)
    assert req.cert_type is None
    with pytest.raises(CSRError):
        sign_csr(req, key("b"), NB, NA)
    assert sign_csr(req, key("b"), NB, NA, cert_type="agent").cert_type is CertType.AGENT


def test_snikeys() -> None:
    assert is_valid_snikey("abc123")
    assert is_valid_snikey("a" * 63) and not is_valid_snikey("a" * 64)
    assert not is_valid_snikey("") and not is_valid_snikey("ABC") and not is_valid_snikey("a-b")
    assert is_valid_snikey(b"abc") and not is_valid_snikey(b"\xff")
    k = generate_snikey()
    assert len(k) == 63 and is_valid_snikey(k) and k != generate_snikey()
    with pytest.raises(ValueError):
        generate_snikey(64)


def test_home_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = PktlabHome.at(tmp_path / "h")
    assert not home.exists()
    home.create_dirs()
    assert not home.exists()  # empty dirs are not a setup
    write_key_pair(home.key_path("k_x"), key("x"))
    assert home.exists()
    assert home.public_key("k_x").public_bytes_raw() == pub("x")
    assert home.private_key("k_x").private_bytes_raw() == key("x").private_bytes_raw()
    assert home.cert_path("c").name == "c.cert" and home.csr_path("r").name == "r.csr"
    monkeypatch.setenv("PKTLAB_HOME", str(tmp_path / "env"))
    assert PktlabHome.at().root == tmp_path / "env"
    monkeypatch.delenv("PKTLAB_HOME")
    assert PktlabHome.at().root == Path.home() / ".pktlab"
