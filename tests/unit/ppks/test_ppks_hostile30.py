"""Session 30 (ppks30): certificates an outside tester forges, refused in one clear line
at a bounded cost, and `pktlab ppks show` of what a stranger can sign."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from ppks_factory import NOW, build, ext_raw, good, resign, std_exts, tlv
from test_ppks_cli import pktlab

from packetlab.ppks import AuthMode, CertificateError, CertType, parse_certificate, verify_chain
from packetlab.ppks import der as pder
from packetlab.ppks.cert import _pem_blocks, certificate_pem, load_certificates
from packetlab.ppks.errors import ChainError, Reason


def _with_oid(oid_der: bytes) -> bytes:
    base = good(CertType.AGENT, "a30", "a30")
    return resign(base, "a30", mutate_exts=lambda e: [*e, ext_raw(oid_der, b"\x04\x01x")])


def test_an_oid_arc_of_a_uuid_is_read_and_one_past_140_bits_is_refused() -> None:
    """A 20-byte arc (2.25.<UUID> needs 19) is an OID like any other: this one is not
    allowed in PPKS. One more byte is malformed, before any integer is built of it."""
    twenty = b"\x69" + b"\xff" * 19 + b"\x7f"  # 2.25.N, N of 140 bits
    with pytest.raises(CertificateError) as e:
        parse_certificate(_with_oid(twenty))
    assert e.value.reason is Reason.DISALLOWED_EXTENSION
    with pytest.raises(CertificateError) as e:
        parse_certificate(_with_oid(b"\x69" + b"\xff" * 20 + b"\x7f"))
    assert e.value.reason is Reason.MALFORMED_DER
    assert "OBJECT IDENTIFIER arc of over 20 bytes" in e.value.detail


def test_a_90_kb_oid_arc_is_one_clear_refusal() -> None:
    """OpenSSL's TLS stack takes a certificate with an extension OID of one 90 KB arc
    (under its 100 KB certificate list). The check built a 630,000-bit integer from it,
    7 bits at a time (0.7 s of the reactor per handshake), and then refused it as
    `undecodable field: Exceeds the limit (4300 digits) for integer string conversion;
    use sys.set_int_max_str_digits() to increase the limit`."""
    bad = _with_oid(b"\x2a" + b"\xff" * 90_000 + b"\x7f")
    with pytest.raises(ChainError) as e:
        verify_chain(AuthMode.AGENT, [bad], now=NOW)
    assert str(e.value) == "malformed_der: cert #0: OBJECT IDENTIFIER of over 64 bytes"


def test_an_oid_of_64_bytes_is_read_and_one_of_90000_arcs_is_refused_unread() -> None:
    """90,000 one-byte arcs (OpenSSL takes them in an extension) cost 22 ms a handshake,
    refused as `disallowed_extension: extension 1.2.1.1.1...`, 180 KB of text in the
    log line. 64 bytes are read (and this OID refused as not allowed in PPKS)."""
    assert pder.decode_oid(b"\x2a" + b"\x01" * 63).count(".") == 64
    with pytest.raises(CertificateError) as e:
        parse_certificate(_with_oid(b"\x2a" + b"\x01" * 63))
    assert e.value.reason is Reason.DISALLOWED_EXTENSION
    with pytest.raises(CertificateError) as e:
        parse_certificate(_with_oid(b"\x2a" + b"\x01" * 90_000))
    assert (e.value.reason, e.value.detail) == (
        Reason.MALFORMED_DER,
        "OBJECT IDENTIFIER of over 64 bytes",
    )


def test_show_prints_a_serial_of_2000_bytes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """§4.3 asks only for a non-empty serial, and any stranger may sign one of 2,000
    bytes. `show` printed the header and then `error: Exceeds the limit (4300 digits) for
    integer string conversion; ...` (exit 1): a decimal of over 4,300 digits."""
    base = good(CertType.EXPPRIV, "eop30", "exper30")

    def big(fields: list[bytes]) -> list[bytes]:
        fields[1] = tlv(0x02, b"\x01" + b"\x00" * 2000)
        return fields

    path = tmp_path / "big.cert"
    path.write_bytes(certificate_pem(resign(base, "eop30", mutate_fields=big)))
    assert pktlab("ppks", "show", path) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.strip().startswith("serial:"))
    assert line.split() == ["serial:", f"0x1{'00' * 2000}", "(2001", "bytes)"]


def test_show_prints_a_pathlen_of_2000_bytes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pathlen is an INTEGER of any size (and allows any chain): `show` failed on it
    as on the serial above, after printing half the certificate."""
    bc = ext_raw(
        b"\x55\x1d\x13", tlv(0x30, b"\x01\x01\xff" + tlv(0x02, b"\x01" + bytes(2000))), True
    )

    def huge_pathlen(exts: list[bytes]) -> list[bytes]:
        return [bc if b"\x06\x03\x55\x1d\x13" in e else e for e in exts]

    der = resign(good(CertType.EXPPRIV, "eop30", "exper30"), "eop30", mutate_exts=huge_pathlen)
    assert parse_certificate(der).pathlen == 1 << 16000
    path = tmp_path / "pathlen.cert"
    path.write_bytes(certificate_pem(der))
    assert pktlab("ppks", "show", path) == 0
    out = capsys.readouterr().out
    assert f"pathlen:        0x1{'0' * 4000}\n" in out


@pytest.mark.parametrize("pathlen", [2**64, 10**30])
def test_sign_refuses_a_pathlen_past_64_bits_in_one_line(
    pathlen: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`pktlab ppks sign exppriv ... --pathlen 18446744073709551616` ended in a traceback
    (`TypeError: failed to extract field PyBasicConstraints.path_length` from
    `cryptography`); 2^64 - 1 is written."""
    assert pktlab("ppks", "genkey", tmp_path / "eop") == 0
    assert pktlab("ppks", "genkey", tmp_path / "exper") == 0
    capsys.readouterr()
    argv: list[str | Path] = [
        "ppks",
        "sign",
        "exppriv",
        tmp_path / "eop",
        "0",
        "100",
        tmp_path / "out",
    ]
    argv += ["-k", tmp_path / "exper.pub"]
    assert pktlab(*argv, "--pathlen", str(pathlen)) == 1
    err = capsys.readouterr().err
    assert err == "error: pathlen does not fit in 64 bits (at most 18446744073709551615)\n"
    assert not (tmp_path / "out").exists()
    assert pktlab(*argv, "--pathlen", str(2**64 - 1)) == 0
    assert load_certificates((tmp_path / "out").read_bytes())[0].pathlen == 2**64 - 1


RDN = tlv(0x31, tlv(0x30, tlv(0x06, b"\x55\x04\x03") + tlv(0x0C, b" ")))


def _with_issuer_rdns(n: int) -> bytes:
    def name(fields: list[bytes]) -> list[bytes]:
        fields[3] = tlv(0x30, RDN * n)  # version, serial, algorithm, issuer
        return fields

    return resign(good(CertType.AGENT, "a30", "a30"), "a30", mutate_fields=name)


def test_a_name_of_8000_attributes_is_refused_after_64() -> None:
    """Names are ignored, but every attribute was read: an issuer of 8,000 (96 KB,
    OpenSSL takes it) was accepted at 90 ms per handshake. 64 are taken (ppksman writes
    one), 65 refused by name, and the rest never read."""
    assert parse_certificate(_with_issuer_rdns(64)).cert_type is CertType.AGENT
    with pytest.raises(CertificateError) as e:
        parse_certificate(_with_issuer_rdns(65))
    assert e.value.reason is Reason.TOO_MANY_NAME_PARTS
    assert e.value.detail == "issuer name of over 64 attributes (ppksman's has one)"
    reads = _counting_reads(lambda: parse_certificate(_with_issuer_rdns(8000)))
    assert reads < 400


def _counting_reads(fn: Callable[[], object]) -> int:
    """How many DER elements `fn` reads (it is expected to raise a CertificateError)."""
    calls = 0
    real = pder.read_tlv

    def counted(data: bytes, pos: int = 0) -> tuple[pder.TLV, int]:
        nonlocal calls
        calls += 1
        return real(data, pos)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pder, "read_tlv", counted)
        with pytest.raises(CertificateError):
            fn()
    return calls


def test_a_90_kb_key_usage_is_refused_unread() -> None:
    """KeyUsage has nine named bits (2 bytes); each bit of a 90 KB one was looked at
    (70-97 ms per handshake) before `got bits {0, 720015}`."""
    ku = ext_raw(b"\x55\x1d\x0f", tlv(0x03, b"\x00\x80" + bytes(90_000) + b"\x01"), True)
    bad = resign(
        good(CertType.AGENT, "a30", "a30"),
        "a30",
        mutate_exts=lambda e: [ku if b"\x06\x03\x55\x1d\x0f" in x else x for x in e],
    )
    with pytest.raises(CertificateError) as e:
        parse_certificate(bad)
    assert e.value.reason is Reason.BAD_KEY_USAGE
    assert e.value.detail == "90002 bytes of bits (its nine named bits fit in 2)"


def test_extensions_are_read_up_to_the_first_refused_one() -> None:
    """9,000 copies of an allowed extension (99 KB): refused at the second, and the
    list was read whole first (35 ms per handshake)."""
    crl = ext_raw(b"\x55\x1d\x1f", tlv(0x30, b""))
    bad = resign(good(CertType.AGENT, "a30", "a30"), "a30", mutate_exts=lambda e: e + [crl] * 9000)
    assert _counting_reads(lambda: parse_certificate(bad)) < 400


@pytest.mark.parametrize(
    ("where", "detail"),
    [
        ("aki", "bad_aki: AKI must hold only a keyIdentifier"),
        ("extension", "malformed_der: bad extension structure"),
        ("tbs", "malformed_der: unexpected field tag 0x05 in tbs"),
    ],
)
def test_45000_empty_elements_are_refused_unread(where: str, detail: str) -> None:
    """A SEQUENCE of a known few fields padded with 45,000 NULLs (90 KB) was read whole
    before its count was refused: 0.11-0.15 s a handshake (the AKI one OpenSSL's TLS
    stack takes; the others reach a broker's xcert). The same refusal, reading at most
    one element more than the field has."""
    base = good(CertType.AGENT, "a30", "a30")
    pad = b"\x05\x00" * 45_000
    if where == "aki":
        aki = ext_raw(b"\x55\x1d\x23", tlv(0x30, b"\x80\x00" + pad))
        bad = resign(
            base, "a30", mutate_exts=lambda e: [aki if b"\x55\x1d\x23" in x else x for x in e]
        )
    elif where == "extension":
        item = tlv(0x30, b"\x06\x03\x55\x1d\x1f" + pad)
        bad = resign(base, "a30", mutate_exts=lambda e: [item, *e])
    else:
        bad = resign(base, "a30", mutate_fields=lambda f: [*f, pad])
    assert _counting_reads(lambda: parse_certificate(bad)) < 100
    with pytest.raises(CertificateError) as e:
        parse_certificate(bad)
    assert str(e.value) == detail


BIG = b"A" * 90_000
LONG_LINES = {
    "a pair without '='": (CertType.AGENT, b"cert_type=agent;" + BIG + b";", None),
    "an unknown cert_type": (CertType.AGENT, b"cert_type=" + BIG + b";", None),
    "a bad del_type": (CertType.DELPRIV, b"cert_type=delpriv;del_type=" + BIG + b";", None),
    "a long name twice": (CertType.AGENT, b"cert_type=agent;" + (BIG + b"=1;") * 2, None),
    "one valid_dest of 90 KB": (CertType.EXPPRIV, None, b"valid_dest=" + BIG + b";"),
    "one burst window of 90 KB": (CertType.EXPPRIV, None, b"max_burst_rate_pkt=" + BIG + b";"),
}


@pytest.mark.parametrize("case", sorted(LONG_LINES))
def test_a_refusal_quotes_at_most_80_characters_of_a_field(case: str) -> None:
    """A stranger's cert_info or cert_limit put its whole 90 KB into the refusal (the
    line a daemon logs for each refused handshake): `missing_equals at offset 16:
    'AAAA...` of 90,073 characters, `unknown cert_type 'AAAA...` of 90,048."""
    ctype, info, limit = LONG_LINES[case]
    exts = std_exts(ctype, "s30", "s30", info=info, limit=limit)
    with pytest.raises(CertificateError) as e:
        parse_certificate(build("s30", "s30", exts))
    assert len(str(e.value)) < 400, str(e.value)[:400]
    assert "(90000 characters)" in str(e.value) or "(90002 characters)" in str(e.value)


_PEM_RE = re.compile(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.S)
B, E = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"


@pytest.mark.parametrize(
    "data",
    [
        B + b"\nQUJD\n" + E,
        b"junk\n" + B + b"x" + E + b"\n" + B + b"y" + E,
        B + E + b"z" + E,  # an empty block reaches the next END, as `.+?` does
        B + B + b"a" + E + B,
        B * 3,
        b"x" + E + B + b"q" + E,
        B + b"a" + E + B + E + B + b"b" + E,
    ],
)
def test_pem_blocks_are_the_regex_matches(data: bytes) -> None:
    """The linear scan finds what the regex it replaces found."""
    assert _pem_blocks(data) == _PEM_RE.findall(data)


@pytest.mark.serial
def test_a_file_of_begin_lines_is_read_in_linear_time() -> None:
    """16,000 BEGIN lines and no END (448 KB) took 54 s (1,000: 0.22 s; the regex went
    over the rest of the file from each BEGIN): `pktlab ppks show` of such a file hung.
    Now 16 times the lines cost about 16 times the time, not 250."""

    def cost(n: int) -> float:
        data = b"-----BEGIN CERTIFICATE-----\n" * n
        best = math.inf
        for _ in range(5):
            t = time.perf_counter()
            with pytest.raises(CertificateError):
                load_certificates(data)
            best = min(best, time.perf_counter() - t)
        return best

    small, large = cost(1_000), cost(16_000)
    assert large < 60 * max(small, 1e-5)
