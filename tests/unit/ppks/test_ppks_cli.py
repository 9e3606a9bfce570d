"""`pktlab ppks` and `pktlab init`."""

from __future__ import annotations

import argparse
import importlib
import stat
from pathlib import Path

import pytest
from ppks_factory import NOW, key, pub, resign

from packetlab import cli
from packetlab.ppks import (
    AuthMode,
    CertType,
    PktlabHome,
    load_certificates,
    parse_controller_exp_chain,
    parse_endpoint_rep_chain,
    raw_public_key,
    read_private_key,
    verify_chain,
    write_key_pair,
)


def pktlab(*argv: str | Path) -> int:
    """Run `pktlab ARGV` through packetlab.cli.main once the command is registered there;
    until then build the same parser from the module."""
    args = [str(a) for a in argv]
    if args[0] in cli.COMMANDS:
        return cli.main(args)
    mod = importlib.import_module(f"packetlab.cli.{args[0]}")
    parser = argparse.ArgumentParser(prog=f"pktlab {args[0]}")
    mod.add_arguments(parser)
    rc: int = mod.run(parser.parse_args(args[1:]))
    return rc


@pytest.fixture
def home(tmp_path: Path) -> PktlabHome:
    h = PktlabHome.at(tmp_path / "pktlab")
    assert pktlab("init", "--home", h.root) == 0
    return h


def test_init_creates_the_reference_layout(home: PktlabHome) -> None:
    for name in ("k_exper", "k_xc", "k_eop", "k_ep"):
        assert stat.S_IMODE(home.key_path(name).stat().st_mode) == 0o600
        assert home.pubkey_path(name).exists()
    certs = {p.stem for p in home.certs_dir.iterdir()}
    assert certs == {
        "agent_xc_xc",
        "agent_ep_ep",
        "exppriv_eop_exper",
        "pubcmd_exper_xc",
        "subcmd_eop_ep",
        "agent_prx_prx",  # the proxy's identity (twistd pktproxy)
        "agent_bop_brk",
    }
    csrs = {p.stem for p in home.csrs_dir.iterdir()}
    assert csrs == {"exppriv_exper", "delpriv_exp_exper", "delpriv_rep_eop"}
    c = home.certificate("exppriv_eop_exper")
    assert (c.not_before, c.not_after) == (0, 2147483647)
    xc, eop, ep = (home.public_key(n) for n in ("k_xc", "k_eop", "k_ep"))
    parse_controller_exp_chain([home.certificate("pubcmd_exper_xc"), c], xc, [eop], NOW)
    parse_endpoint_rep_chain([home.certificate("subcmd_eop_ep")], ep, [eop], NOW)
    verify_chain(AuthMode.AGENT, [home.certificate("agent_xc_xc")], [xc], NOW)
    verify_chain(AuthMode.AGENT, [home.certificate("agent_ep_ep")], [ep], NOW)
    prx = home.public_key("k_prx")
    verify_chain(AuthMode.AGENT, [home.certificate("agent_prx_prx")], [prx], NOW)
    # the broker's agent cert is signed by the broker-operator key clients trust
    bop = home.public_key("k_bop")
    brk = verify_chain(AuthMode.AGENT, [home.certificate("agent_bop_brk")], [bop], NOW)
    assert brk.leaf.public_key == raw_public_key(home.public_key("k_brk"))


def test_init_takes_the_reference_pktlab_init_flags(tmp_path: Path) -> None:
    """§4.1: pktlab_init --del_exppriv / --del_reppriv ask for the delegation CSRs; ours
    are always written, and the flags are taken (they were "unrecognized arguments")."""
    root = tmp_path / "ref"
    assert pktlab("init", "--home", root, "--del_exppriv", "--del_reppriv") == 0
    csrs = {p.name for p in (root / "csrs").iterdir()}
    assert {"delpriv_exp_exper.csr", "delpriv_rep_eop.csr"} <= csrs


def test_init_leaves_an_existing_setup_alone(
    home: PktlabHome, capsys: pytest.CaptureFixture[str]
) -> None:
    before = home.key_path("k_eop").read_bytes()
    assert pktlab("init", "--home", home.root) == 1
    assert "--force" in capsys.readouterr().err
    assert home.key_path("k_eop").read_bytes() == before
    assert pktlab("init", "--home", home.root, "--force") == 0
    assert home.key_path("k_eop").read_bytes() != before


def test_init_names_what_an_incomplete_home_lacks(
    home: PktlabHome, capsys: pytest.CaptureFixture[str]
) -> None:
    """A home an interrupted init (or a hand) left without some files: the refusal says
    which, since the daemons fail on them later. It said only "already holds keys, certs or
    CSRs", the same as for a whole home."""
    assert pktlab("init", "--home", home.root) == 1
    assert "missing" not in capsys.readouterr().err  # a whole home
    (home.root / "certs/subcmd_eop_ep.cert").unlink()
    (home.root / "endpt.conf").unlink()
    assert pktlab("init", "--home", home.root) == 1
    assert capsys.readouterr().err == (
        f"error: {home.root} already holds keys, certs or CSRs, but not all pktlab init "
        "writes (certs/subcmd_eop_ep.cert, endpt.conf missing: an interrupted init?); "
        "nothing changed (--add-missing cannot: a certificate goes with the keys it names; "
        "--force writes the whole home again)\n"  # (it refuses a cert beside its keys)
    )
    (home.root / "endpt.conf").write_text("")
    assert pktlab("init", "--home", home.root, "--add-missing") == 1  # as the line says
    for p in home.csrs_dir.iterdir():
        p.unlink()
    assert pktlab("init", "--home", home.root) == 1
    assert "csrs/delpriv_rep_eop.csr and 1 more missing" in capsys.readouterr().err
    # a home of the reference's pktlab_init (ppksman's ppks_conf beside keys/, certs/)
    # lacks our broker and proxy files by design: not "an interrupted init?" (session 20)
    (home.root / "ppks_conf").write_text('LocalFSPPKSKeyManager {"name": "x"}\n')
    assert pktlab("init", "--home", home.root) == 1
    assert capsys.readouterr().err == (
        f"error: {home.root} already holds keys, certs or CSRs (a reference pktlab_init "
        "home: ppks_conf; its keys/ and certs/ are used as they are); nothing changed "
        "(--add-missing cannot: a certificate goes with the keys it names; --force writes "
        "the whole home again)\n"  # (subcmd_eop_ep.cert still missing beside its keys)
    )


def test_init_unwritable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    assert pktlab("init", "--home", f / "sub") == 1
    assert "error:" in capsys.readouterr().err


def test_genkey_and_showkey(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    k = tmp_path / "k_new"
    assert pktlab("ppks", "genkey", k) == 0
    assert pktlab("ppks", "genkey", k) == 1  # exists
    assert pktlab("ppks", "genkey", k, "--force") == 0
    capsys.readouterr()
    assert pktlab("ppks", "showkey", f"{k}.pub") == 0
    out = capsys.readouterr().out
    assert "key id (sha256):" in out and "BEGIN PUBLIC KEY" in out
    pw = tmp_path / "pw"
    pw.write_text("hunter2\n")
    assert pktlab("ppks", "genkey", tmp_path / "enc", "--passphrase-file", pw) == 0
    assert read_private_key(tmp_path / "enc", b"hunter2")
    assert pktlab("ppks", "showkey", tmp_path / "enc") == 1  # needs the passphrase
    assert "key_needs_passphrase" in capsys.readouterr().err
    assert pktlab("ppks", "showkey", tmp_path / "enc", "--passphrase-file", pw) == 0


def test_sign_each_type_and_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for n in ("eop", "exper", "exper1", "xc", "ep", "eop1"):
        write_key_pair(tmp_path / n, key(n))
    t = tmp_path
    nb, na = str(NOW - 100), str(NOW + 100)
    assert (
        pktlab(
            "ppks",
            "sign",
            "exppriv",
            t / "eop",
            nb,
            na,
            t / "exppriv.cert",
            "-k",
            t / "exper.pub",
            "--pathlen",
            "1",
            "--max-send-byte",
            "1000",
            "--valid-dest",
            "10.0.0.0/8",
            "::1",
            "--max_burst_rate_pkt",
            "5/100",
            "--monitor-digest",
            "0x" + "ab" * 32,
            "--optional",
            "max_send_byte",
            "-c",
            "lab grant",
        )
        == 0
    )
    c = load_certificates((t / "exppriv.cert").read_bytes())[0]
    assert c.limit_text == (
        "monitor=" + "ab" * 32 + ";*max_send_byte=1000;max_burst_rate_pkt=5/100;"
        "valid_dest=10.0.0.0/8,::1;"
    )
    assert c.cert_desc == "lab grant" and c.pathlen == 1
    assert (
        pktlab(
            "ppks",
            "sign",
            "delpriv",
            t / "exper",
            nb,
            na,
            t / "delpriv.cert",
            "-k",
            t / "exper1",
            "--del-exppriv",
            "--max-send-byte",
            "10",
        )
        == 0
    )
    assert (
        pktlab(
            "ppks", "sign", "pubcmd", t / "exper1", nb, na, t / "pubcmd.cert", "-k", t / "xc.pub"
        )
        == 0
    )
    assert (
        pktlab(
            "ppks",
            "sign",
            "delpriv",
            t / "eop",
            nb,
            na,
            t / "rep.cert",
            "-k",
            t / "eop1.pub",
            "--del_reppriv",
        )
        == 0
    )
    assert (
        pktlab("ppks", "sign", "subcmd", t / "eop1", nb, na, t / "subcmd.cert", "-k", t / "ep.pub")
        == 0
    )
    assert (
        pktlab("ppks", "sign", "agent", t / "xc", nb, na, t / "agent.cert", "-k", t / "xc.pub") == 0
    )
    capsys.readouterr()

    now = str(NOW)
    rc = pktlab(
        "ppks",
        "verify",
        "--mode",
        "controller",
        "--root",
        t / "eop.pub",
        "--now",
        now,
        "--key",
        t / "xc.pub",
        t / "pubcmd.cert",
        t / "exppriv.cert",
        t / "delpriv.cert",
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "valid: controller chain of 3 cert(s): pubcmd <- delpriv <- exppriv" in out
    assert f"channel: {pub('eop').hex()}" not in out  # channel is the key id, not the key
    assert "channel: " in out
    rc = pktlab(
        "ppks",
        "verify",
        "--mode",
        "endpoint",
        "--root",
        t / "eop.pub",
        "--now",
        now,
        "--key",
        t / "ep.pub",
        t / "subcmd.cert",
        t / "rep.cert",
    )
    out = capsys.readouterr().out
    assert rc == 0 and out.count("channel: ") == 2
    assert pktlab("ppks", "verify", "--mode", "agent", "--now", now, t / "agent.cert") == 0
    assert "any (no --root given" in capsys.readouterr().out

    # failures print the rule and exit 1
    rc = pktlab(
        "ppks",
        "verify",
        "--mode",
        "controller",
        "--root",
        t / "exper.pub",
        "--now",
        now,
        t / "pubcmd.cert",
        t / "exppriv.cert",
        t / "delpriv.cert",
    )
    assert rc == 1 and capsys.readouterr().out.startswith("invalid: untrusted_root:")
    rc = pktlab(
        "ppks",
        "verify",
        "--mode",
        "controller",
        "--now",
        str(NOW + 1000),
        t / "pubcmd.cert",
        t / "exppriv.cert",
        t / "delpriv.cert",
    )
    assert rc == 1 and capsys.readouterr().out.startswith("invalid: expired:")
    rc = pktlab("ppks", "verify", "--mode", "endpoint", "--now", now, t / "pubcmd.cert")
    assert rc == 1 and capsys.readouterr().out.startswith("invalid: wrong_cert_type:")
    rc = pktlab(
        "ppks", "verify", "--mode", "agent", "--now", now, "--key", t / "ep.pub", t / "agent.cert"
    )
    assert rc == 1 and capsys.readouterr().out.startswith("invalid: leaf_key_mismatch:")
    bad = t / "bad.cert"
    bad.write_bytes(b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n")
    rc = pktlab("ppks", "verify", "--mode", "agent", bad)
    assert rc == 1 and capsys.readouterr().out.startswith("invalid: malformed_der:")
    forged = t / "forged.cert"
    forged.write_bytes(
        load_certificates(
            resign(load_certificates((t / "pubcmd.cert").read_bytes())[0].der, "mallory")
        )[0].to_pem()
    )
    rc = pktlab(
        "ppks",
        "verify",
        "--mode",
        "controller",
        "--now",
        now,
        forged,
        t / "exppriv.cert",
        t / "delpriv.cert",
    )
    assert rc == 1 and capsys.readouterr().out.startswith("invalid: bad_signature:")


def test_sign_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_key_pair(tmp_path / "a", key("a"))
    t = tmp_path
    rc = pktlab(
        "ppks",
        "sign",
        "pubcmd",
        t / "a",
        "0",
        "10",
        t / "x.cert",
        "-k",
        t / "a.pub",
        "--pathlen",
        "1",
    )
    assert rc == 1 and "pathlen" in capsys.readouterr().err
    rc = pktlab(
        "ppks",
        "sign",
        "exppriv",
        t / "a",
        "0",
        "10",
        t / "x.cert",
        "-k",
        t / "a.pub",
        "--valid-dest",
        "300.1.1.1",
    )
    assert rc == 1 and "bad_valid_dest" in capsys.readouterr().err
    rc = pktlab(
        "ppks", "sign", "exppriv", t / "a", "0", "10", t / "x.cert", "-k", t / "missing.pub"
    )
    assert rc == 1 and "missing.pub" in capsys.readouterr().err
    rc = pktlab(
        "ppks",
        "sign",
        "exppriv",
        t / "a",
        "0",
        "10",
        t / "x.cert",
        "-k",
        t / "a.pub",
        "--optional",
        "nonsense",
    )
    assert rc == 1 and "unknown limit field" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # neither -k nor -r
        pktlab("ppks", "sign", "exppriv", t / "a", "0", "10", t / "x.cert")
    assert not (t / "x.cert").exists()


def test_csr_flow_and_show(
    home: PktlabHome, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csr = tmp_path / "req.csr"
    assert (
        pktlab(
            "ppks",
            "csr",
            "delpriv",
            home.key_path("k_exper"),
            csr,
            "--del-exppriv",
            "--max-recv-byte",
            "77",
            "--aux-limit",
            "*note=hi;",
        )
        == 0
    )
    out = tmp_path / "granted.cert"
    assert (
        pktlab(
            "ppks",
            "sign",
            "delpriv",
            home.key_path("k_eop"),
            "0",
            "2147483647",
            out,
            "-r",
            csr,
            "--max-send-pkt",
            "3",
        )
        == 0
    )
    c = load_certificates(out.read_bytes())[0]
    assert (
        c.cert_type is CertType.DELPRIV
        and c.limit_text == "max_recv_byte=77;*note=hi;max_send_pkt=3;"
    )
    capsys.readouterr()
    rc = pktlab(
        "ppks", "show", csr, out, home.cert_path("subcmd_eop_ep"), "-k", home.pubkey_path("k_eop")
    )
    text = capsys.readouterr().out
    assert rc == 0
    assert "certificate signing request" in text and "type:           delpriv" in text
    assert text.count("signature:      valid for the given signer key") == 2
    rc = pktlab("ppks", "show", home.cert_path("pubcmd_exper_xc"), "-k", home.pubkey_path("k_eop"))
    assert rc == 0 and "INVALID" in capsys.readouterr().out
    junk = tmp_path / "junk.cert"
    junk.write_bytes(b"\x30\x01")
    assert pktlab("ppks", "show", junk) == 1
    assert "INVALID: malformed_der" in capsys.readouterr().out


def test_help_texts(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["ppks", "--help"],
        ["ppks", "sign", "--help"],
        ["ppks", "verify", "--help"],
        ["init", "--help"],
    ):
        with pytest.raises(SystemExit) as e:
            pktlab(*argv)
        assert e.value.code == 0
    text = capsys.readouterr().out
    assert "genkey" in text and "--max-send-byte" in text and "--mode" in text and "k_exper" in text


@pytest.mark.parametrize(
    ("nb", "na", "message"),
    [
        ("0", "99999999999999", "not_after 99999999999999 is after 9999-12-31T23:59:59Z"),
        ("-99999999999999", "0", "not_before -99999999999999 is before 0001-01-01T00:00:00Z"),
        ("100", "50", "not_after 50 is before not_before 100"),
    ],
)
def test_sign_times_a_certificate_cannot_hold_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], nb: str, na: str, message: str
) -> None:
    # were: "error: year 3170843 is out of range", cryptography's "The not valid after
    # date must be after the not valid before date."
    write_key_pair(tmp_path / "bop", key("bop"))
    write_key_pair(tmp_path / "brk", key("brk"))
    args: list[str | Path] = [
        "ppks",
        "sign",
        "agent",
        tmp_path / "bop",
        nb,
        na,
        tmp_path / "x.cert",
    ]
    assert pktlab(*args, "-k", tmp_path / "brk.pub") == 1
    err = capsys.readouterr().err
    assert message in err, err
    assert not (tmp_path / "x.cert").exists()


def test_a_digest_that_is_not_hex_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ppks.md's `--monitor-digest 5a5a…5a` typed as written (an ellipsis, not a digest):
    `error: 'ascii' codec can't encode character '\\u2026' in position 12: ordinal not in
    range(128)`. Now the option and the value, as for any other digest that is not hex."""
    write_key_pair(tmp_path / "eop", key("eop"))
    write_key_pair(tmp_path / "exper", key("exper"))
    rc = pktlab("ppks", "sign", "exppriv", tmp_path / "eop", "0", "2147483647",
                tmp_path / "c.cert", "-k", tmp_path / "exper.pub",
                "--monitor-digest", "5a5a\u20265a")  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1 and "ascii" not in err, err
    assert err.startswith("error: --monitor-digest: '5a5a\u20265a': not hexadecimal"), err


def test_verify_names_the_file_of_the_refused_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`invalid: chain_loop: cert #1: ...` said only the position on the command line
    (session 20): now the file too, also of a certificate that does not decode, and the
    k-th of a file of several."""
    from ppks_factory import cert

    from packetlab.ppks import certificate_pem

    files = {
        "pc.cert": cert("pubcmd", "a", "xc"),
        "d1.cert": cert("delpriv", "a", "b", del_type="exppriv"),
        "d2.cert": cert("delpriv", "b", "a", del_type="exppriv"),
    }
    for name, c in files.items():
        (tmp_path / name).write_bytes(c.to_pem())
    paths = [tmp_path / n for n in files]
    rc = pktlab("ppks", "verify", "--mode", "controller", "--now", str(NOW), *paths)
    assert rc == 1
    assert capsys.readouterr().out == (
        f"invalid: chain_loop: cert #1 ({paths[1]}): its issuer (SKI = its AKI) is cert #2, "
        "already below it in the chain\n"
    )
    both = tmp_path / "both.pem"
    both.write_bytes(files["d1.cert"].to_pem() + certificate_pem(b"\x30\x03\x02\x01\x01"))
    rc = pktlab("ppks", "verify", "--mode", "controller", paths[0], both)
    assert rc == 1
    assert capsys.readouterr().out.startswith(f"invalid: malformed_der: cert #1 ({both}): ")
    bundle = tmp_path / "ds.pem"
    bundle.write_bytes(files["d1.cert"].to_pem() + files["d2.cert"].to_pem())
    rc = pktlab("ppks", "verify", "--mode", "controller", "--now", str(NOW), paths[0], bundle)
    assert rc == 1
    assert capsys.readouterr().out.startswith(f"invalid: chain_loop: cert #1 ({bundle}[0]): ")
