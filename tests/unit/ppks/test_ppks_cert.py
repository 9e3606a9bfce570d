"""Certificate encoding rules (§4.3): one refused certificate per rule, each with its reason."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st
from ppks_factory import (
    NA,
    NB,
    build,
    ext_raw,
    good,
    key,
    ku,
    octet,
    pub,
    resign,
    std_exts,
    tlv,
    unrec,
)

from packetlab.ppks import (
    CertificateError,
    CertType,
    DelType,
    Reason,
    key_id,
    load_certificates,
    parse_certificate,
)

EXP = CertType.EXPPRIV
PUB = CertType.PUBCMD
DEL = CertType.DELPRIV


def test_good_certificates_parse() -> None:
    c = parse_certificate(good(EXP, "eop", "exper", pathlen=3, limit=b"max_send_byte=10;"))
    assert c.cert_type is EXP and c.pathlen == 3
    assert c.authority_key_id == key_id(key("eop"))
    assert c.subject_key_id == key_id(key("exper"))
    assert c.public_key == pub("exper")
    assert (c.not_before, c.not_after) == (NB, NA)
    assert c.limits is not None and c.limits.max_send_byte == 10
    assert c.serial == 12345 and c.serial_bytes == (12345).to_bytes(2, "big")
    assert c.accounting_key == c.authority_key_id + c.serial_bytes
    assert c.signed_by(pub("eop")) and not c.signed_by(pub("exper"))
    d = parse_certificate(good(DEL, "exper", "exper2"))
    assert d.del_type == DelType.EXPPRIV | DelType.REPPRIV and d.pathlen is None
    leaf = parse_certificate(good(PUB, "exper", "xc"))
    assert leaf.pathlen is None and leaf.limits is None and leaf.info_text == "cert_type=pubcmd;"


def test_keycertsign_with_crlsign_is_allowed() -> None:
    exts = std_exts(EXP, "eop", "exper")
    exts[2] = (ku(kcs=True, crl=True), True)
    assert parse_certificate(build("eop", "exper", exts)).cert_type is EXP


def test_allowed_ignored_extensions_are_accepted() -> None:
    exts = std_exts(PUB, "exper", "xc")
    dp = x509.DistributionPoint([x509.UniformResourceIdentifier("http://x/crl")], None, None, None)
    exts.append((x509.CRLDistributionPoints([dp]), False))
    assert parse_certificate(build("exper", "xc", exts)).cert_type is PUB


def _replace(exts: list, i: int, new: object) -> list:
    out = list(exts)
    if new is None:
        del out[i]
    else:
        out[i] = new
    return out


def _with(ctype: CertType, i: int, new: object, **kw: object) -> bytes:
    signer, subject = ("eop", "exper") if ctype.is_ca else ("exper", "xc")
    return build(signer, subject, _replace(std_exts(ctype, signer, subject, **kw), i, new))  # type: ignore[arg-type]


def _info(text: bytes, ctype: CertType = PUB) -> bytes:
    return _with(ctype, 4, (unrec("1.2.3.1", octet(text)), True))


def _limit(text: bytes, ctype: CertType = EXP) -> bytes:
    signer, subject = ("eop", "exper")
    return build(signer, subject, std_exts(ctype, signer, subject, limit=text))


def _fields(mutate: Callable[[list[bytes]], list[bytes]]) -> bytes:
    return resign(good(PUB, "exper", "xc"), "exper", mutate_fields=mutate)


def _exts(mutate: Callable[[list[bytes]], list[bytes]]) -> bytes:
    return resign(good(PUB, "exper", "xc"), "exper", mutate_exts=mutate)


_SAN = (x509.SubjectAlternativeName([x509.DNSName("example.org")]), False)
_BAD_TIME = tlv(0x30, tlv(0x17, b"99999999999Z") + tlv(0x17, b"380119031407Z"))
_NO_SUCH_DAY = tlv(0x30, tlv(0x17, b"230231000000Z") + tlv(0x17, b"380119031407Z"))
_NO_SUCH_DAY_G = tlv(0x30, tlv(0x17, b"230101000000Z") + tlv(0x18, b"21000229000000Z"))
_YEAR_0 = tlv(0x30, tlv(0x18, b"00000229000000Z") + tlv(0x18, b"21000101000000Z"))

CORPUS: dict[str, tuple[Callable[[], bytes], Reason]] = {
    "garbage": (lambda: b"\x30\x03abc", Reason.MALFORMED_DER),
    "truncated": (lambda: good(PUB, "exper", "xc")[:-10], Reason.MALFORMED_DER),
    "trailing bytes": (lambda: good(PUB, "exper", "xc") + b"\x00", Reason.MALFORMED_DER),
    "v1 (no version)": (lambda: _fields(lambda f: f[1:]), Reason.BAD_VERSION),
    "v2": (lambda: _fields(lambda f: [tlv(0xA0, b"\x02\x01\x01"), *f[1:]]), Reason.BAD_VERSION),
    "empty serial": (lambda: _fields(lambda f: [f[0], b"\x02\x00", *f[2:]]), Reason.BAD_SERIAL),
    "bad time": (lambda: _fields(lambda f: [*f[:4], _BAD_TIME, *f[5:]]), Reason.BAD_VALIDITY),
    # 31 February: OpenSSL refuses the date; it was read as 3 March
    "no such day": (lambda: _fields(lambda f: [*f[:4], _NO_SUCH_DAY, *f[5:]]), Reason.BAD_VALIDITY),
    "no such day (GeneralizedTime)": (
        lambda: _fields(lambda f: [*f[:4], _NO_SUCH_DAY_G, *f[5:]]),
        Reason.BAD_VALIDITY,
    ),
    "issuer unique id": (
        lambda: _fields(lambda f: [*f[:7], b"\x81\x02\x00\x01", *f[7:]]),
        Reason.UNIQUE_ID_PRESENT,
    ),
    "subject unique id": (
        lambda: _fields(lambda f: [*f[:7], b"\x82\x02\x00\x01", *f[7:]]),
        Reason.UNIQUE_ID_PRESENT,
    ),
    "no extensions": (lambda: _fields(lambda f: f[:7]), Reason.NO_EXTENSIONS),
    "ecdsa signature": (
        lambda: build(ec.generate_private_key(ec.SECP256R1()), "xc", std_exts(PUB, "exper", "xc")),
        Reason.BAD_SIGNATURE_ALGORITHM,
    ),
    "ecdsa subject key": (
        lambda: build("exper", ec.generate_private_key(ec.SECP256R1()).public_key(), []),
        Reason.BAD_PUBLIC_KEY,
    ),
    "duplicate extension": (lambda: _exts(lambda e: [*e, e[1]]), Reason.DUPLICATE_EXTENSION),
    "disallowed extension (SAN)": (
        lambda: build("exper", "xc", [*std_exts(PUB, "exper", "xc"), _SAN]),
        Reason.DISALLOWED_EXTENSION,
    ),
    "disallowed private extension": (
        lambda: build(
            "exper", "xc", [*std_exts(PUB, "exper", "xc"), (unrec("1.2.3.2", b"\x05\x00"), False)]
        ),
        Reason.DISALLOWED_EXTENSION,
    ),
    "unknown critical extension": (
        lambda: build(
            "exper", "xc", [*std_exts(PUB, "exper", "xc"), (unrec("1.2.3.99", b"\x05\x00"), True)]
        ),
        Reason.UNKNOWN_CRITICAL_EXTENSION,
    ),
    "missing AKI": (lambda: _with(PUB, 0, None), Reason.MISSING_AKI),
    "AKI keyid 20 bytes": (
        lambda: _with(PUB, 0, (x509.AuthorityKeyIdentifier(b"\x01" * 20, None, None), False)),
        Reason.BAD_AKI,
    ),
    "AKI with issuer and serial": (
        lambda: _with(
            PUB,
            0,
            (
                x509.AuthorityKeyIdentifier(key_id(key("exper")), [x509.DNSName("a.example")], 7),
                False,
            ),
        ),
        Reason.BAD_AKI,
    ),
    "missing SKI": (lambda: _with(PUB, 1, None), Reason.MISSING_SKI),
    "SKI 20 bytes": (
        lambda: _with(PUB, 1, (x509.SubjectKeyIdentifier(b"\x01" * 20), False)),
        Reason.BAD_SKI,
    ),
    "SKI not hash of key": (
        lambda: _with(PUB, 1, (x509.SubjectKeyIdentifier(key_id(key("other"))), False)),
        Reason.SKI_MISMATCH,
    ),
    "missing KeyUsage": (lambda: _with(PUB, 2, None), Reason.MISSING_KEY_USAGE),
    "leaf with keyCertSign": (lambda: _with(PUB, 2, (ku(kcs=True), True)), Reason.BAD_KEY_USAGE),
    "leaf with extra usage": (
        lambda: _with(PUB, 2, (ku(ds=True, crl=True), True)),
        Reason.BAD_KEY_USAGE,
    ),
    "CA with digitalSignature": (lambda: _with(EXP, 2, (ku(ds=True), True)), Reason.BAD_KEY_USAGE),
    "CA with keyCertSign+digitalSignature": (
        lambda: _with(EXP, 2, (ku(ds=True, kcs=True), True)),
        Reason.BAD_KEY_USAGE,
    ),
    "missing BasicConstraints": (lambda: _with(PUB, 3, None), Reason.MISSING_BASIC_CONSTRAINTS),
    "BasicConstraints not critical": (
        lambda: _with(PUB, 3, (x509.BasicConstraints(False, None), False)),
        Reason.BASIC_CONSTRAINTS_NOT_CRITICAL,
    ),
    "CA flag on a leaf": (
        lambda: _with(PUB, 3, (x509.BasicConstraints(True, None), True)),
        Reason.CA_ON_LEAF,
    ),
    "pathlen on a leaf": (
        lambda: _with(PUB, 3, (unrec("2.5.29.19", bytes.fromhex("3003020100")), True)),
        Reason.PATHLEN_ON_LEAF,
    ),
    "exppriv without CA flag": (
        lambda: _with(EXP, 3, (x509.BasicConstraints(False, None), True)),
        Reason.NOT_CA,
    ),
    "missing cert_info": (lambda: _with(PUB, 4, None), Reason.MISSING_CERT_INFO),
    "cert_info not critical": (
        lambda: _with(PUB, 4, (unrec("1.2.3.1", octet(b"cert_type=pubcmd;")), False)),
        Reason.CERT_INFO_NOT_CRITICAL,
    ),
    "cert_info as UTF8String": (
        lambda: _with(PUB, 4, (unrec("1.2.3.1", tlv(0x0C, b"cert_type=pubcmd;")), True)),
        Reason.BAD_CERT_INFO_ENCODING,
    ),
    "cert_info empty": (lambda: _info(b""), Reason.BAD_CERT_INFO_ENCODING),
    "cert_info no terminator": (lambda: _info(b"cert_type=pubcmd"), Reason.BAD_CERT_INFO_SYNTAX),
    "cert_info bad char": (lambda: _info(b"cert_type=pubcmd;x=a*b;"), Reason.BAD_CERT_INFO_SYNTAX),
    "cert_info optional marker": (
        lambda: _info(b"*cert_type=pubcmd;"),
        Reason.BAD_CERT_INFO_SYNTAX,
    ),
    "cert_info duplicate name": (
        lambda: _info(b"cert_type=pubcmd;cert_type=pubcmd;"),
        Reason.DUPLICATE_NAME,
    ),
    "missing cert_type": (lambda: _info(b"cert_desc=x;"), Reason.MISSING_CERT_TYPE),
    "unknown cert_type": (lambda: _info(b"cert_type=root;"), Reason.UNKNOWN_CERT_TYPE),
    "uppercase cert_type": (lambda: _info(b"cert_type=PUBCMD;"), Reason.UNKNOWN_CERT_TYPE),
    "delpriv without del_type": (
        lambda: _info(b"cert_type=delpriv;", DEL),
        Reason.MISSING_DEL_TYPE,
    ),
    "del_type on exppriv": (
        lambda: _info(b"cert_type=exppriv;del_type=exppriv;", EXP),
        Reason.UNEXPECTED_DEL_TYPE,
    ),
    "unknown del_type": (
        lambda: _info(b"cert_type=delpriv;del_type=all;", DEL),
        Reason.BAD_DEL_TYPE,
    ),
    "repeated del_type": (
        lambda: _info(b"cert_type=delpriv;del_type=exppriv,exppriv;", DEL),
        Reason.BAD_DEL_TYPE,
    ),
    "empty del_type": (lambda: _info(b"cert_type=delpriv;del_type=;", DEL), Reason.BAD_DEL_TYPE),
    "cert_limit on a leaf": (
        lambda: build("exper", "xc", std_exts(PUB, "exper", "xc", limit=b"max_send_byte=1;")),
        Reason.CERT_LIMIT_ON_LEAF,
    ),
    "cert_limit not critical": (
        lambda: build(
            "eop",
            "exper",
            [*std_exts(EXP, "eop", "exper"), (unrec("1.2.3.3", octet(b"a=1;")), False)],
        ),
        Reason.CERT_LIMIT_NOT_CRITICAL,
    ),
    "cert_limit bad encoding": (
        lambda: build(
            "eop", "exper", [*std_exts(EXP, "eop", "exper"), (unrec("1.2.3.3", b"a=1;"), True)]
        ),
        Reason.BAD_CERT_LIMIT_ENCODING,
    ),
    "cert_limit empty": (lambda: _limit(b""), Reason.BAD_CERT_LIMIT_ENCODING),
    "cert_limit syntax": (lambda: _limit(b"max_send_byte=1"), Reason.BAD_CERT_LIMIT_SYNTAX),
    "cert_limit duplicate": (
        lambda: _limit(b"max_send_byte=1;*max_send_byte=2;"),
        Reason.DUPLICATE_NAME,
    ),
    "monitor 63 hex": (lambda: _limit(b"monitor=" + b"a" * 63 + b";"), Reason.BAD_MONITOR_DIGESTS),
    "monitor not hex": (lambda: _limit(b"monitor=" + b"g" * 64 + b";"), Reason.BAD_MONITOR_DIGESTS),
    "monitor empty": (lambda: _limit(b"monitor=;"), Reason.BAD_MONITOR_DIGESTS),
    "filter 65 hex": (lambda: _limit(b"filter=" + b"a" * 65 + b";"), Reason.BAD_FILTER_DIGESTS),
    "negative counter": (lambda: _limit(b"max_send_byte=-1;"), Reason.BAD_DECIMAL),
    "fractional counter": (lambda: _limit(b"max_exp_period=1.5;"), Reason.BAD_DECIMAL),
    "counter over u64": (lambda: _limit(b"max_recv_pkt=18446744073709551616;"), Reason.BAD_DECIMAL),
    "empty priority": (lambda: _limit(b"max_num_priority=;"), Reason.BAD_DECIMAL),
    "burst window 0": (lambda: _limit(b"max_burst_rate_byte=10/0;"), Reason.BAD_BURST_RATE),
    "burst without window": (lambda: _limit(b"max_burst_rate_pkt=10;"), Reason.BAD_BURST_RATE),
    "burst empty item": (lambda: _limit(b"max_burst_rate_pkt=10/5,;"), Reason.BAD_BURST_RATE),
    "valid_dest bad addr": (lambda: _limit(b"valid_dest=256.0.0.1;"), Reason.BAD_VALID_DEST),
    "valid_dest prefix 33": (lambda: _limit(b"valid_dest=10.0.0.0/33;"), Reason.BAD_VALID_DEST),
    "valid_dest netmask form": (
        lambda: _limit(b"valid_dest=10.0.0.0/255.0.0.0;"),
        Reason.BAD_VALID_DEST,
    ),
    "valid_dest v6 prefix 129": (lambda: _limit(b"valid_dest=::1/129;"), Reason.BAD_VALID_DEST),
    "src_ip_spoofing 2": (lambda: _limit(b"src_ip_spoofing=2;"), Reason.BAD_SRC_IP_SPOOFING),
}


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_refused_with_reason(case: str) -> None:
    make, reason = CORPUS[case]
    with pytest.raises(CertificateError) as e:
        parse_certificate(make())
    assert e.value.reason is reason, str(e.value)
    assert reason.value in str(e.value)


def test_generalized_time_year_0_is_a_date() -> None:
    # 29 February of year 0 (a leap year): the day check must not lean on the calendar
    # module, which has no year 0 (its ValueError would escape parse_certificate).
    cert = parse_certificate(_fields(lambda f: [*f[:4], _YEAR_0, *f[5:]]))
    assert cert.not_before == -62167219200 + 59 * 86400  # 0000-01-01 is -62167219200


def test_limit_errors_name_the_field() -> None:
    with pytest.raises(CertificateError) as e:
        parse_certificate(_limit(b"max_send_byte=1;valid_dest=nope;"))
    assert e.value.field == "valid_dest"


def test_unknown_limit_fields_are_kept_as_aux() -> None:
    c = parse_certificate(_limit(b"*future_thing=a b;max_send_pkt=3;filter=" + b"0" * 64 + b";"))
    assert c.limits is not None
    assert [p.name for p in c.limits.aux] == ["future_thing"]
    assert c.limits.optional == {"future_thing"}
    assert c.limits.filter_digests == (bytes(32),)
    assert c.limit_text is not None and c.limit_text.startswith("*future_thing=a b;")


def test_valid_dest_forms() -> None:
    c = parse_certificate(_limit(b"valid_dest=10.1.2.3,10.0.0.1/8,2001:db8::/32,::1;"))
    assert c.limits is not None and c.limits.valid_dest is not None
    assert [str(n) for n in c.limits.valid_dest] == [
        "10.1.2.3/32",
        "10.0.0.0/8",
        "2001:db8::/32",
        "::1/128",
    ]


def test_load_pem_bundle_and_der() -> None:
    a = parse_certificate(good(PUB, "exper", "xc"))
    b = parse_certificate(good(EXP, "eop", "exper"))
    bundle = a.to_pem() + b"junk between\n" + b.to_pem()
    assert [c.der for c in load_certificates(bundle)] == [a.der, b.der]
    assert load_certificates(a.der)[0].der == a.der
    with pytest.raises(CertificateError) as e:
        load_certificates(b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n")
    assert e.value.reason is Reason.NOT_PEM_OR_DER
    with pytest.raises(CertificateError) as e:
        load_certificates(b"-----BEGIN PUBLIC KEY-----\n")
    assert e.value.reason is Reason.NOT_PEM_OR_DER


def test_generalized_time_after_2049() -> None:
    c = parse_certificate(build("exper", "xc", std_exts(PUB, "exper", "xc"), na=4102444800))
    assert c.not_after == 4102444800


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_corrupted_certificates_never_crash(data: st.DataObject) -> None:
    der = bytearray(good(EXP, "eop", "exper", limit=b"max_send_byte=1;valid_dest=::1;"))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(der) - 1))
        der[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(der)))
    try:
        parse_certificate(bytes(der[:cut]))
    except CertificateError:
        pass


def test_raw_ext_helper_roundtrip() -> None:
    # ext_raw builds an Extension by hand: an unknown OID, non-critical -> disallowed.
    extra = ext_raw(bytes.fromhex("2a0304"), b"\x05\x00")  # OID 1.2.3.4
    with pytest.raises(CertificateError) as e:
        parse_certificate(_exts(lambda e: [*e, extra]))
    assert e.value.reason is Reason.DISALLOWED_EXTENSION
