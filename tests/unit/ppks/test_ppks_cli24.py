"""`pktlab ppks` beside ppksman (session 24): its command lines, one-line errors that name
the file, the rule and what was expected, and key/cert files read as OpenSSL reads them."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ppks_factory import NOW, cert, key
from test_ppks_cli import pktlab

from packetlab.ppks import (
    PPKSError,
    Reason,
    key_id,
    load_certificates,
    load_public_key,
    make_csr,
    parse_csr,
    public_key_pem,
    raw_public_key,
    write_key_pair,
)

DIGEST = "ab" * 32


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    for n in ("eop", "exper", "xc"):
        write_key_pair(tmp_path / n, key(n))
    (tmp_path / "text.txt").write_text("hello\n")
    return tmp_path


def test_a_ppksman_gen_cert_command_line_runs_unchanged(
    keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ppksman gen cert -k SUBJECT.pub TYPE SIGNER NOTBEFORE NOTAFTER OUT ... -y` with
    `sign` for `gen cert`: its --opt_NAME flags (two of them plural) and -y were usage
    errors here (exit 2), though ppks.md said ppksman's spellings are taken."""
    t = keys
    argv: list[str | Path] = [
        "-k", t / "exper.pub", "exppriv", t / "eop", "0", "2147483647", t / "e.cert",
        "--pathlen", "3", "-c", "lab grant", "--aux_info_str", "site=lab-1;",
        "--max_send_pkt", "5", "--opt_max_send_pkt",
        "--valid_dest", "127.0.0.0/8", "::1", "--opt_valid_dest",
        "--src_ip_spoofing", "0", "--opt_src_ip_spoofing",
        "--aux_limit_str", "*future=x;",
        "--monitor_digest", "0x" + DIGEST, "--opt_monitor_digests", "-y",
    ]  # fmt: skip
    assert pktlab("ppks", "sign", *argv) == 0, capsys.readouterr().err
    c = load_certificates((t / "e.cert").read_bytes())[0]
    assert c.limit_text == (
        f"*monitor={DIGEST};*max_send_pkt=5;*valid_dest=127.0.0.0/8,::1;"
        "*src_ip_spoofing=0;*future=x;"
    )
    assert c.info_text == "cert_type=exppriv;cert_desc=lab grant;site=lab-1;"
    assert pktlab("ppks", "csr", "exppriv", t / "exper", t / "r.csr",
                  "--max_recv_byte", "7", "--opt_max_recv_byte",
                  "--filter_digest", DIGEST, "--opt_filter_digests", "-y") == 0  # fmt: skip
    capsys.readouterr()
    assert pktlab("ppks", "show", t / "r.csr") == 0
    assert f"cert_limit:     *filter={DIGEST};*max_recv_byte=7;" in capsys.readouterr().out


def test_show_takes_ppksmans_signer_pubkey_spelling(
    keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (keys / "x.cert").write_bytes(cert("pubcmd", "exper", "xc").to_pem())
    assert pktlab("ppks", "show", keys / "x.cert", "--signer_pubkey", keys / "exper.pub") == 0
    assert "signature:      valid for the given signer key" in capsys.readouterr().out


def test_key_errors_name_the_file_in_one_short_line(
    keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`sign` reads two keys: `error: key_not_pem: not a public key: Could not deserialize
    key data. The data may be in an incorrect format, ... Details: ...` (~280
    characters) did not say which; cryptography's FAQ link and generic sentence are gone."""
    t = keys
    text, pub = t / "text.txt", t / "exper.pub"
    cases = [
        ((t / "eop", text), f"error: key_not_pem: {text}: not a public key: ", text),
        ((text, pub), f"error: key_not_pem: {text}: not a PEM private key: ", text),
        ((pub, pub), f"error: key_not_pem: {pub}: not a PEM private key: a public key where", pub),
        ((t / "nosuch", pub), f"error: {t / 'nosuch'}: No such file or directory\n", t),
        ((t, pub), f"error: {t}: Is a directory\n", t),
    ]
    (t / "x.cert").write_bytes(cert("pubcmd", "exper", "xc").to_pem())
    cases.append(
        (
            (t / "eop", t / "x.cert"),
            f"error: key_not_pem: {t / 'x.cert'}: not a public key: a certificate where a "
            "public key is needed\n",
            t,
        )
    )
    for (signer, subject), head, path in cases:
        rc = pktlab("ppks", "sign", "exppriv", signer, "0", "10", t / "o.cert", "-k", subject)
        err = capsys.readouterr().err
        assert rc == 1 and err.startswith(head), err
        assert err.count("\n") == 1 and "https://" not in err and "deserialize" not in err, err
        assert "Traceback" not in err and len(err) - len(str(path)) < 120, err
    assert not (t / "o.cert").exists()


def test_verify_reports_a_bad_key_file_as_an_error_not_a_verdict(
    keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --root or --key file that is not a key printed `invalid: key_not_pem: ...` on
    stdout, as if the chain had been refused."""
    t = keys
    (t / "a.cert").write_bytes(cert("agent", "xc", "xc").to_pem())
    write_key_pair(t / "enc", key("enc"), b"pw")
    for opt, path, head in (
        ("--root", t / "text.txt", f"error: key_not_pem: {t / 'text.txt'}: not a public key"),
        ("--key", t / "enc", f"error: key_needs_passphrase: {t / 'enc'}: an encrypted private"),
        ("--root", t / "a.cert", f"error: key_not_pem: {t / 'a.cert'}: not a public key"),
    ):
        rc = pktlab("ppks", "verify", "--mode", "agent", opt, path, t / "a.cert")
        out, err = capsys.readouterr()
        assert rc == 1 and out == "" and err.startswith(head), (out, err)


def test_verify_says_what_was_expected(keys: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An untrusted top names the --root keys' ids beside its AKI (to be compared by hand
    with `showkey`), and a certificate out of its window the time it was checked at."""
    t = keys
    (t / "a.cert").write_bytes(cert("agent", "xc", "xc").to_pem())
    rc = pktlab("ppks", "verify", "--mode", "agent", "--now", str(NOW),
                "--root", t / "eop.pub", "--root", t / "exper.pub", t / "a.cert")  # fmt: skip
    out = capsys.readouterr().out
    ids = [key_id(key(n)).hex()[:16] for n in ("xc", "eop", "exper")]
    assert rc == 1 and out == (
        f"invalid: untrusted_root: cert #0 ({t / 'a.cert'}): top cert AKI {ids[0]}... is no "
        f"trusted root key; the --root keys: {t / 'eop.pub'} ({ids[1]}...), "
        f"{t / 'exper.pub'} ({ids[2]}...)\n"
    )
    rc = pktlab("ppks", "verify", "--mode", "agent", "--now", "3000000000", t / "a.cert")
    out = capsys.readouterr().out
    assert rc == 1 and out.startswith("invalid: expired: cert #0 (")
    assert out.endswith("; now is 2065-01-24T05:20:00Z (3000000000)\n"), out


@pytest.mark.parametrize("now", ["nan", "inf", "soon"])
def test_verify_now_must_be_a_time(
    keys: Path, capsys: pytest.CaptureFixture[str], now: str
) -> None:
    (keys / "a.cert").write_bytes(cert("agent", "xc", "xc").to_pem())
    with pytest.raises(SystemExit) as e:
        pktlab("ppks", "verify", "--mode", "agent", "--now", now, keys / "a.cert")
    assert e.value.code == 2
    assert f"argument --now: '{now}' is not a Unix time in seconds" in capsys.readouterr().err


# -- files as OpenSSL's PEM reader (the reference's) reads them --------------------------------


def test_text_before_a_pem_block_is_skipped_as_openssl_does(tmp_path: Path) -> None:
    """`openssl x509 -text` output (the text, then the block) and "Bag Attributes" lines:
    the reference reads such a cert or key file (PEM_read_* skips what precedes the
    block); ours read it as DER (`malformed_der: trailing bytes after element`) and a
    public key as `not a public key`."""
    c = cert("pubcmd", "exper", "xc")
    text = b"Certificate:\n    Data:\n        Version: 3 (0x2)\n"
    assert load_certificates(text + c.to_pem())[0].der == c.der
    bag = b"Bag Attributes\n    localKeyID: 01\nsubject=CN =  \n"
    two = load_certificates(bag + c.to_pem() + b"trailing words\n" + c.to_pem())
    assert [x.der for x in two] == [c.der, c.der]
    pub = public_key_pem(key("xc"))
    assert raw_public_key(load_public_key(b"comment line\n" + pub)) == raw_public_key(key("xc"))
    csr = make_csr("exppriv", key("exper"))
    assert parse_csr(b"a note\n" + csr).public_key == raw_public_key(key("exper"))


def test_a_file_that_is_neither_pem_nor_der_says_so() -> None:
    with pytest.raises(PPKSError) as e:
        load_certificates(b"hello\n")
    assert e.value.reason is Reason.NOT_PEM_OR_DER, e.value  # was malformed_der: truncated


def test_a_der_certificate_is_never_searched_for_pem_blocks() -> None:
    """cert_desc may spell a whole PEM block; a DER certificate (SEQUENCE tag 0x30
    first) is read as DER all the same."""
    desc = "-----BEGIN CERTIFICATE-----MAAA-----END CERTIFICATE-----"
    c = cert("pubcmd", "exper", "xc", cert_desc=desc)
    assert load_certificates(c.der)[0].cert_desc == desc


def test_sign_option_errors_name_the_option(keys: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Were `missing_terminator at offset 1: ...` (no option named), `invalid <lambda>
    value: '0x'`, and cryptography's `The serial number should be positive.`."""
    t = keys
    base: list[str | Path] = ["ppks", "sign", "exppriv", t / "eop", "0", "10", t / "o.cert"]
    base += ["-k", t / "exper.pub"]
    assert pktlab(*base, "--aux-limit", "x") == 1
    assert capsys.readouterr().err == (
        "error: --aux-limit 'x': missing_terminator at offset 1: pair does not end with ';'\n"
    )
    for serial in ("0", "-1", "0x"):
        with pytest.raises(SystemExit):
            pktlab(*base, "--serial", serial)
        err = capsys.readouterr().err
        assert f"argument --serial: '{serial}' is not a positive integer" in err, err
    assert pktlab(*base, "--valid-dest", "10.0.0.0/255.0.0.0") == 1
    err = capsys.readouterr().err
    assert err.endswith("bad prefix length '255.0.0.0' (a prefix length, not a netmask)\n"), err
    assert not (t / "o.cert").exists()


# -- CSRs that cryptography decodes only in part -----------------------------------------------


def _csr_der() -> bytes:
    pem = make_csr("delpriv", key("exper"), del_type="exppriv", limits="max_send_byte=5;")
    return base64.b64decode(b"".join(pem.split(b"-----")[2].split()))


def _csr_variants() -> dict[str, bytes]:
    der = _csr_der()
    version = der.index(b"\x02\x01\x00")  # CertificationRequestInfo version 0 (v1)
    oid = der.index(bytes.fromhex("06032b6570"))  # the key's id-Ed25519
    return {
        "version 5": der[:version] + b"\x02\x01\x05" + der[version + 3 :],
        "unknown key algorithm": der[: oid + 4] + b"\x7f" + der[oid + 5 :],
    }


@pytest.mark.parametrize("case", sorted(_csr_variants()))
def test_a_csr_cryptography_half_decodes_is_a_bad_csr(
    case: str, keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """cryptography raises InvalidVersion / UnsupportedAlgorithm (not ValueError) for
    these: `pktlab ppks show` and `sign -r` ended in a traceback."""
    der = _csr_variants()[case]
    with pytest.raises(PPKSError) as e:
        parse_csr(der)
    assert e.value.reason is Reason.BAD_CSR, e.value
    path = keys / "odd.csr"
    path.write_bytes(
        b"-----BEGIN CERTIFICATE REQUEST-----\n"
        + base64.encodebytes(der)
        + b"-----END CERTIFICATE REQUEST-----\n"
    )
    assert pktlab("ppks", "show", path) == 1
    assert capsys.readouterr().out.startswith(f"{path}: INVALID: bad_csr: not a CSR: ")
    rc = pktlab("ppks", "sign", "delpriv", keys / "eop", "0", "10", keys / "o.cert", "-r", path)
    assert rc == 1 and capsys.readouterr().err.startswith("error: bad_csr: not a CSR: ")


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_corrupted_csrs_never_crash(data: st.DataObject) -> None:
    der = bytearray(_csr_der())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(der) - 1))
        der[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(der)))
    try:
        parse_csr(bytes(der[:cut]))
    except PPKSError:
        pass


def _pkcs8_ed25519(key_len: int) -> bytes:
    inner = bytes([0x04, key_len]) + bytes(range(key_len))
    body = bytes.fromhex("020100300506032b6570") + bytes([0x04, len(inner)]) + inner
    der = bytes([0x30, len(body)]) + body
    return (
        b"-----BEGIN PRIVATE KEY-----\n" + base64.encodebytes(der) + b"-----END PRIVATE KEY-----\n"
    )


@pytest.mark.parametrize("key_len", [0, 31, 33])
def test_a_pkcs8_key_of_the_wrong_length_is_a_key_error(
    key_len: int, keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """OpenSSL's `key setup failed` is cryptography's InternalError, not a ValueError: a
    traceback from `pktlab ppks sign`, and from a daemon reading such a key file
    (Credentials.load catches PPKSError). Found by mutating an encrypted key's IV."""
    from packetlab.ppks import load_private_key
    from packetlab.tls import TLSConfigError
    from packetlab.tls.credentials import Credentials

    pem = _pkcs8_ed25519(key_len)
    with pytest.raises(PPKSError) as e:
        load_private_key(pem)
    assert e.value.reason is Reason.KEY_NOT_PEM, e.value
    with pytest.raises(PPKSError) as e:
        load_private_key(pem, b"pw")  # with a passphrase: perhaps the wrong one
    assert e.value.reason is Reason.KEY_BAD_PASSPHRASE, e.value
    bad = keys / "short.key"
    bad.write_bytes(pem)
    assert (
        pktlab("ppks", "sign", "agent", bad, "0", "10", keys / "o.cert", "-k", keys / "xc.pub") == 1
    )
    assert capsys.readouterr().err == (
        f"error: key_not_pem: {bad}: not a usable Ed25519 private key (a damaged key; "
        "OpenSSL: key setup failed)\n"
    )
    (keys / "a.cert").write_bytes(cert("agent", "xc", "xc").to_pem())
    with pytest.raises(TLSConfigError, match="key_not_pem"):
        Credentials.load([keys / "a.cert"], bad)


# -- ppksman's command names, and a reader that goes away ---------------------------------------


def test_ppksman_command_names_run_here(keys: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`ppksman -g CONF gen cert ...` with `pktlab ppks` for `ppksman -g CONF`: the
    `generate` words (gen, g; cert, csr, key) and `show cert|csr|key FILE` were unknown."""
    t = keys
    assert pktlab("ppks", "gen", "cert", "-k", t / "exper.pub", "exppriv", t / "eop", "0",
                  "2147483647", t / "g.cert", "--max_send_byte", "5", "--opt_max_send_byte",
                  "-y") == 0  # fmt: skip
    assert pktlab("ppks", "generate", "csr", "pubcmd", t / "xc", t / "g.csr", "-y") == 0
    assert pktlab("ppks", "gen", "key", "k_new", "-f", t / "k_new") == 0
    assert (t / "k_new.pub").exists()
    capsys.readouterr()
    assert pktlab("ppks", "gen", "key", "k_other") == 1  # no key store: -f is needed
    assert "give -f FILE" in capsys.readouterr().err
    assert pktlab("ppks", "show", "cert", t / "g.cert", "-k", t / "eop.pub") == 0
    out = capsys.readouterr().out
    assert "cert_limit:     *max_send_byte=5;" in out and "valid for the given signer" in out
    assert pktlab("ppks", "show", "csr", t / "g.csr") == 0
    assert "type:           pubcmd" in capsys.readouterr().out
    assert pktlab("ppks", "show", "key", t / "k_new.pub") == 0
    assert "key id (sha256):" in capsys.readouterr().out


def test_a_closed_stdout_is_141_and_no_error(
    keys: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`pktlab ppks show *.cert | head -1` said `error: [Errno 32] Broken pipe`, 1."""
    import io
    import os

    from packetlab.cli import interrupt

    (keys / "a.cert").write_bytes(cert("agent", "xc", "xc").to_pem())
    r, w = os.pipe()
    os.close(r)  # the reader is gone
    closed = io.TextIOWrapper(io.FileIO(w, "w"), line_buffering=True)
    monkeypatch.setattr(interrupt, "_stdout_closed", [False])
    monkeypatch.setattr("sys.stdout", closed)
    rc = pktlab("ppks", "show", keys / "a.cert")
    monkeypatch.undo()
    assert rc == 141
    assert "Broken pipe" not in capsys.readouterr().err
    try:
        closed.close()
    except BrokenPipeError:
        pass
