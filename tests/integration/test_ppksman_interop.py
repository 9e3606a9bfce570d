"""Interoperability with the reference certificate tool, ppksman (PyPI pktlab==1.0.4).

ppksman needs cryptography 42.0.8 and pyOpenSSL 24.1.0 (INTEROP.md), so it runs from its
own virtualenv, made once under `$PACKETLAB_CACHE_DIR` (default `<repo>/.cache`). The tests
are skipped, with the reason, when PyPI cannot be reached.

Both directions: what ppksman makes, we parse and verify (and reissue byte for byte);
what we make, ppksman shows without a warning and with a valid signature, and signs
from our CSRs.
"""

from __future__ import annotations

import base64
import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from packetlab.ppks import (
    AuthMode,
    CertType,
    ChainError,
    generate_private_key,
    issue_certificate,
    key_id,
    load_certificates,
    make_csr,
    parse_controller_exp_chain,
    parse_csr,
    parse_endpoint_rep_chain,
    read_private_key,
    read_public_key,
    sign_csr,
    verify_chain,
    write_key_pair,
)
from packetlab.ppks.keys import private_key_pem

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PINS = ["pktlab==1.0.4", "cryptography==42.0.8", "pyopenssl==24.1.0"]
NOW = 1_700_000_000
NB, NA = 0, 2147483647


def _venv_dir() -> Path:
    base = Path(os.environ.get("PACKETLAB_CACHE_DIR", REPO / ".cache"))
    return base / "ppksman-venv-1.0.4"


def _ensure_venv() -> Path:
    venv = _venv_dir()
    ok = venv / ".packetlab-ok"
    if ok.exists():
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / ".ppksman-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one maker at a time (parallel test runs)
        if ok.exists():
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
        r = subprocess.run(
            [
                str(venv / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                *PINS,
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if r.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
            pytest.skip(f"cannot install {' '.join(PINS)} from PyPI: {' | '.join(tail)}")
        ok.write_text("\n".join(PINS) + "\n")
    return venv


@dataclass
class PPKSMan:
    exe: Path
    work: Path
    conf: Path

    def run(
        self, *args: str | Path, stdin: str = "\n", check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        # A new session has no controlling terminal, so getpass reads the passphrase
        # from stdin. HOME points into the test directory: ~/.pktlab is never touched.
        r = subprocess.run(
            [str(self.exe), "-g", str(self.conf), *map(str, args)],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.work,
            env={**os.environ, "HOME": str(self.work)},
            start_new_session=True,
        )
        if check and r.returncode != 0:
            raise AssertionError(f"ppksman {args} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r

    def key(self, name: str, passphrase: str = "") -> Path:
        stdin = f"{passphrase}\n{passphrase}\n" if passphrase else "\n"
        self.run("gen", "key", name, "-f", self.work / name, stdin=stdin)
        return self.work / name

    def cert(self, ctype: str, signer: str, subject: str, out: str, *opts: str) -> Path:
        path = self.work / out
        self.run(
            "gen",
            "cert",
            "-k",
            self.work / f"{subject}.pub",
            ctype,
            self.work / signer,
            str(NB),
            str(NA),
            path,
            *opts,
            "-y",
        )
        return path

    def show_cert(self, path: Path, signer_pub: Path) -> subprocess.CompletedProcess[str]:
        return self.run("show", "cert", path, "-k", signer_pub)


@pytest.fixture(scope="module")
def ppksman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PPKSMan]:
    venv = _ensure_venv()
    work = tmp_path_factory.mktemp("ppksman")
    conf = work / "ppks_conf"
    conf.write_text(
        'LocalFSPPKSKeyManagerConfigStr {"name": "LocalFSPPKSKeyManager", '
        f'"dirpath": "{work}/store/keys"}}\n'
        'LocalFSPPKSStateManagerConfigStr {"name": "LocalFSPPKSStateManager", '
        f'"dirpath": "{work}/store/certs"}}\n'
    )
    yield PPKSMan(venv / "bin" / "ppksman", work, conf)


MONITOR = "0x" + "5a" * 32
EXPPRIV_OPTS = (
    "--pathlen",
    "3",
    "-c",
    "interop grant",
    "--aux_info_str",
    "site=lab-1;",
    "--max_num_priority",
    "7",
    "--max_socket_count",
    "9",
    "--max_exp_period",
    "60000000000",
    "--max_send_byte",
    "1000000",
    "--max_send_pkt",
    "1000",
    "--max_recv_byte",
    "2000000",
    "--max_recv_pkt",
    "2000",
    "--max_burst_rate_byte",
    "1000/1000000",
    "5000/9000000",
    "--max_burst_rate_pkt",
    "10/1000000",
    "--valid_dest",
    "127.0.0.0/8",
    "::1",
    "--src_ip_spoofing",
    "0",
    "--opt_max_send_pkt",
    "--aux_limit_str",
    "*future=x;",
    "--monitor_digest",
    MONITOR,
)


@pytest.fixture(scope="module")
def world(ppksman: PPKSMan) -> dict[str, Path]:
    """Keys and certificates made by ppksman."""
    for n in ("eop", "exper", "exper2", "xc", "ep", "eop2", "bop", "brk"):
        ppksman.key(n)
    p = ppksman.cert
    return {
        "exppriv": p("exppriv", "eop", "exper", "exppriv.cert", *EXPPRIV_OPTS),
        "delpriv_exp": p(
            "delpriv",
            "exper",
            "exper2",
            "delpriv_exp.cert",
            "--del_exppriv",
            "--max_send_byte",
            "500",
        ),
        "pubcmd": p("pubcmd", "exper2", "xc", "pubcmd.cert"),
        "delpriv_rep": p("delpriv", "eop", "eop2", "delpriv_rep.cert", "--del_reppriv"),
        "subcmd": p("subcmd", "eop2", "ep", "subcmd.cert"),
        "agent_xc": p("agent", "xc", "xc", "agent_xc.cert"),
        "agent_brk": p("agent", "bop", "brk", "agent_brk.cert"),
    }


def _c(path: Path):  # type: ignore[no-untyped-def]
    return load_certificates(path.read_bytes())[0]


def _der(pem: bytes) -> bytes:
    """The DER of a PEM certificate, without parsing it (it may be one we refuse)."""
    body = pem.split(b"-----")[2]
    return base64.b64decode(b"".join(body.split()))


def test_ppksman_keys_load_in_ours(ppksman: PPKSMan, world: dict[str, Path]) -> None:
    w = ppksman.work
    pub = read_public_key(w / "eop.pub")
    assert read_private_key(w / "eop").public_key().public_bytes_raw() == pub.public_bytes_raw()
    out = ppksman.run("show", "key", w / "eop.pub").stdout
    digest = key_id(pub).hex()
    flat = out.replace("\n", "").replace("\t", "").replace(" ", "")
    assert digest in flat  # ppksman prints the same key id (raw pubkey SHA256 hash)
    enc = ppksman.key("k_enc", passphrase="s3cret")
    assert (
        read_private_key(enc, b"s3cret").public_key().public_bytes_raw()
        == read_public_key(w / "k_enc.pub").public_bytes_raw()
    )


def test_ppksman_certs_verify_in_ours(ppksman: PPKSMan, world: dict[str, Path]) -> None:
    w = ppksman.work
    eop, xc, ep, bop = (read_public_key(w / f"{n}.pub") for n in ("eop", "xc", "ep", "bop"))
    ex = _c(world["exppriv"])
    assert ex.cert_type is CertType.EXPPRIV and ex.pathlen == 3
    assert ex.cert_desc == "interop grant"
    assert ex.info_text == "cert_type=exppriv;cert_desc=interop grant;site=lab-1;"
    lim = ex.limits
    assert lim is not None
    assert lim.monitor_digests == (bytes.fromhex("5a" * 32),)
    assert (lim.max_num_priority, lim.max_socket_count, lim.max_exp_period) == (
        7,
        9,
        60_000_000_000,
    )
    assert (lim.max_send_byte, lim.max_send_pkt, lim.max_recv_byte, lim.max_recv_pkt) == (
        1_000_000,
        1000,
        2_000_000,
        2000,
    )
    assert [str(r) for r in lim.max_burst_rate_byte or ()] == ["1000/1000000", "5000/9000000"]
    assert lim.optional == {"max_send_pkt", "future"}
    assert [p.name for p in lim.aux] == ["future"]
    assert lim.src_ip_spoofing is False

    chain = [_c(world[n]) for n in ("pubcmd", "exppriv", "delpriv_exp")]
    info = parse_controller_exp_chain(chain, xc, [eop], NOW)
    assert info.channel == key_id(eop) and len(info.certs) == 3
    rep = parse_endpoint_rep_chain([_c(world["subcmd"]), _c(world["delpriv_rep"])], ep, [eop], NOW)
    assert rep.channels[-1] == key_id(eop)
    verify_chain(AuthMode.AGENT, [_c(world["agent_xc"])], [xc], NOW)
    verify_chain(AuthMode.AGENT, [_c(world["agent_brk"])], [bop], NOW)


def test_we_reissue_ppksman_certs_byte_for_byte(ppksman: PPKSMan, world: dict[str, Path]) -> None:
    """With ppksman's serial and the same inputs our certificate is the same DER
    (Ed25519 signatures are deterministic): extension encodings, order, criticality,
    names and times all match."""
    w = ppksman.work
    cases = {
        "exppriv": ("eop", "exper", {}),
        "delpriv_exp": ("exper", "exper2", {"del_type": "exppriv"}),
        "pubcmd": ("exper2", "xc", {}),
        "delpriv_rep": ("eop", "eop2", {"del_type": "reppriv"}),
        "subcmd": ("eop2", "ep", {}),
        "agent_xc": ("xc", "xc", {}),
        "agent_brk": ("bop", "brk", {}),
    }
    for name, (signer, subject, kw) in cases.items():
        theirs = _c(world[name])
        aux = [p for p in theirs.info if p.name not in ("cert_type", "del_type", "cert_desc")]
        ours = issue_certificate(
            theirs.cert_type,
            read_private_key(w / signer),
            read_public_key(w / f"{subject}.pub"),
            theirs.not_before,
            theirs.not_after,
            pathlen=theirs.pathlen,
            cert_desc=theirs.cert_desc,
            aux_info=aux or None,
            limits=theirs.limit_text,
            serial=theirs.serial,
            **kw,
        )
        assert ours.der == theirs.der, name


def _no_warnings(r: subprocess.CompletedProcess[str]) -> None:
    assert "Warning" not in r.stderr, r.stderr
    assert "Signature (valid)" in r.stdout, r.stdout


def test_our_certs_show_clean_in_ppksman(ppksman: PPKSMan, tmp_path: Path) -> None:
    keys = {n: generate_private_key() for n in ("eop", "exper", "xc")}
    for n, k in keys.items():
        write_key_pair(tmp_path / n, k)
    certs = {
        "exppriv": issue_certificate(
            "exppriv",
            keys["eop"],
            keys["exper"],
            NB,
            NA,
            pathlen=0,
            cert_desc="ours",
            limits="monitor=" + "ab" * 64 + ";max_send_byte=10;*max_recv_pkt=3;"
            "max_burst_rate_byte=1/2,3/4;valid_dest=10.0.0.0/8,::1;src_ip_spoofing=1;",
        ),
        "delpriv": issue_certificate(
            "delpriv", keys["exper"], keys["xc"], NB, NA, del_type="exppriv,reppriv"
        ),
        "pubcmd": issue_certificate("pubcmd", keys["exper"], keys["xc"], NB, NA),
        "agent": issue_certificate("agent", keys["xc"], keys["xc"], NB, NA),
    }
    signer = {"exppriv": "eop", "delpriv": "exper", "pubcmd": "exper", "agent": "xc"}
    for name, cert in certs.items():
        path = tmp_path / f"{name}.cert"
        path.write_bytes(cert.to_pem())
        r = ppksman.show_cert(path, tmp_path / f"{signer[name]}.pub")
        _no_warnings(r)
        assert f"pktlab certificate type: {cert.cert_type.label}" in r.stdout
        assert f"'{cert.info_text}'" in r.stdout
        if cert.limit_text:
            assert f"'{cert.limit_text}'" in r.stdout
        # and a wrong signer is noticed by ppksman, as by us
        bad = ppksman.show_cert(path, tmp_path / ("xc.pub" if signer[name] != "xc" else "eop.pub"))
        assert "Signature (INVALID)" in bad.stdout


def test_our_keys_load_in_ppksman(ppksman: PPKSMan, tmp_path: Path) -> None:
    k = generate_private_key()
    plain = tmp_path / "plain"
    write_key_pair(plain, k)
    enc = tmp_path / "enc"
    enc.write_bytes(private_key_pem(k, b"pw123"))
    raw = k.public_key().public_bytes_raw().hex()
    for path, stdin in ((plain, "\n"), (enc, "pw123\n")):
        out = ppksman.run("show", "key", path, stdin=stdin).stdout
        flat = out.replace("\n", "").replace("\t", "").replace(" ", "")
        assert raw in flat


def test_csrs_both_ways(ppksman: PPKSMan, world: dict[str, Path], tmp_path: Path) -> None:
    w = ppksman.work
    # our CSR, shown and signed by ppksman, verifies in ours
    req_key = generate_private_key()
    write_key_pair(tmp_path / "req", req_key)
    csr = tmp_path / "ours.csr"
    csr.write_bytes(
        make_csr(
            "delpriv",
            req_key,
            del_type="exppriv",
            pathlen=2,
            cert_desc="please",
            limits="max_send_byte=5;*max_recv_byte=6;",
        )
    )
    r = ppksman.run("show", "csr", csr)
    _no_warnings(r)
    assert "- Delegation type: exppriv" in r.stdout
    out = tmp_path / "from_our_csr.cert"
    ppksman.run("gen", "cert", "-r", csr, "delpriv", w / "exper", str(NB), str(NA), out, "-y")
    c = _c(out)
    assert c.cert_type is CertType.DELPRIV and c.pathlen == 2 and c.cert_desc == "please"
    assert c.limit_text == "max_send_byte=5;*max_recv_byte=6;"
    assert c.public_key == req_key.public_key().public_bytes_raw()
    assert c.signed_by(read_public_key(w / "exper.pub").public_bytes_raw())

    # ppksman's CSR, parsed and signed by us, shows clean in ppksman
    their_csr = tmp_path / "theirs.csr"
    ppksman.run(
        "gen",
        "csr",
        "exppriv",
        w / "exper2",
        their_csr,
        "--max_send_pkt",
        "4",
        "-c",
        "theirs",
        "-y",
    )
    req = parse_csr(their_csr.read_bytes())
    assert req.cert_type is CertType.EXPPRIV and req.cert_desc == "theirs"
    assert req.public_key == read_public_key(w / "exper2.pub").public_bytes_raw()
    signed = sign_csr(req, read_private_key(w / "eop"), NB, NA)
    assert signed.limit_text == "max_send_pkt=4;"
    path = tmp_path / "signed_by_us.cert"
    path.write_bytes(signed.to_pem())
    _no_warnings(ppksman.show_cert(path, w / "eop.pub"))


def test_a_reflex_limit_shows_clean_in_ppksman(ppksman: PPKSMan, tmp_path: Path) -> None:
    """The reflex= limit (docs/reflexes.md) is not a reference name: ppksman must still
    show the certificate without a warning, the limit text as it is."""
    eop, exper = generate_private_key(), generate_private_key()
    write_key_pair(tmp_path / "eop", eop)
    cert = issue_certificate(
        "exppriv", eop, exper, NB, NA, limits="monitor=" + "ab" * 32 + ";reflex=" + "cd" * 32 + ";"
    )
    path = tmp_path / "exppriv.cert"
    path.write_bytes(cert.to_pem())
    r = ppksman.show_cert(path, tmp_path / "eop.pub")
    _no_warnings(r)
    assert f"'{cert.limit_text}'" in r.stdout


# -- session 24 (ppks24): ppksman's command lines, and its certificates at the rule edges --


def test_a_ppksman_command_line_makes_the_same_certificate_here(
    ppksman: PPKSMan, world: dict[str, Path], tmp_path: Path
) -> None:
    """The same `gen cert` command line (command words, option spellings, --opt_NAME
    markers, -y) run by `pktlab ppks` for `ppksman -g CONF`, with ppksman's serial added:
    the same DER, byte for byte."""
    w = ppksman.work

    def argv(out: Path) -> list[str]:
        return [
            "gen", "cert", "-k", str(w / "exper.pub"), "exppriv", str(w / "eop"), str(NB),
            str(NA), str(out),
            "--pathlen", "2", "-c", "same grant", "--aux_info_str", "site=lab-2;",
            "--max_send_pkt", "5", "--opt_max_send_pkt", "--max_recv_byte", "6",
            "--max_burst_rate_byte", "10/1000", "20/3000", "--opt_max_burst_rate_byte",
            "--valid_dest", "127.0.0.0/8", "::1", "--opt_valid_dest",
            "--src_ip_spoofing", "1", "--aux_limit_str", "*future=y;",
            "--monitor_digest", MONITOR, "--opt_monitor_digests", "-y",
        ]  # fmt: skip

    theirs, ours = w / "cmdline.cert", tmp_path / "ours.cert"
    ppksman.run(*argv(theirs))
    serial = str(_c(theirs).serial)
    r = subprocess.run(
        [sys.executable, "-m", "packetlab", "ppks", *argv(ours), "--serial", serial],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert _c(ours).der == _c(theirs).der
    assert _c(ours).limit_text == (
        f"*monitor={MONITOR[2:]};*max_send_pkt=5;max_recv_byte=6;"
        "*max_burst_rate_byte=10/1000,20/3000;*valid_dest=127.0.0.0/8,::1;"
        "src_ip_spoofing=1;*future=y;"
    )


def test_ppksman_limits_past_what_a_verifier_can_read_are_refused_by_name(
    ppksman: PPKSMan, world: dict[str, Path]
) -> None:
    """ppksman checks a decimal's digits only and a valid_dest with `ipaddress`: it writes
    max_send_byte=2^64 and the netmask form 10.0.0.0/255.0.0.0. Neither is a §4.3 value
    (a u64; addr[/prefixlen]): the chain is refused naming the certificate and the field,
    as the endpoint and broker then refuse the peer (docs/security.md)."""
    w = ppksman.work
    xc, eop = read_public_key(w / "xc.pub"), read_public_key(w / "eop.pub")
    pubcmd = world["pubcmd"]  # exper2 -> xc
    for opts, reason, field in (
        (("--max_send_byte", str(2**64)), "bad_decimal", "max_send_byte"),
        (("--valid_dest", "10.0.0.0/255.0.0.0"), "bad_valid_dest", "valid_dest"),
    ):
        path = ppksman.cert("exppriv", "eop", "exper2", f"edge_{field}.cert", *opts)
        chain = [pubcmd.read_bytes(), path.read_bytes()]
        with pytest.raises(ChainError) as e:
            parse_controller_exp_chain([_der(c) for c in chain], xc, [eop], NOW)
        assert (e.value.reason.value, e.value.index) == (reason, 1)
        assert field in str(e.value)
    # one less than 2^64, and a prefix length: taken
    path = ppksman.cert("exppriv", "eop", "exper2", "edge_ok.cert", "--max_send_byte",
                        str(2**64 - 1), "--valid_dest", "10.0.0.0/8")  # fmt: skip
    info = parse_controller_exp_chain([_c(pubcmd), _c(path)], xc, [eop], NOW)
    assert info.certs[1].limits is not None
    assert info.certs[1].limits.max_send_byte == 2**64 - 1


def test_ppksman_chains_at_the_pathlen_and_del_type_edges(ppksman: PPKSMan) -> None:
    """pathlen counts the CA certs below (an exppriv with --pathlen 0 over a delpriv is
    refused, 1 is enough); a delpriv with --del_exppriv --del_reppriv fits both modes."""
    w = ppksman.work
    for n in ("e24", "x24a", "x24b", "c24", "p24", "e24b"):
        ppksman.key(n)
    p = ppksman.cert
    pubcmd = _c(p("pubcmd", "x24b", "c24", "pc24.cert"))
    both = _c(p("delpriv", "x24a", "x24b", "both24.cert", "--del_exppriv", "--del_reppriv"))
    eop = read_public_key(w / "e24.pub")
    for pathlen, ok in (("0", False), ("1", True)):
        top = _c(p("exppriv", "e24", "x24a", f"ex24_{pathlen}.cert", "--pathlen", pathlen))
        chain = [pubcmd, both, top]
        if ok:
            assert (
                len(verify_chain(AuthMode.ENDPOINT_AUTH_CONTROLLER, chain, [eop], NOW).certs) == 3
            )
            continue
        with pytest.raises(ChainError) as e:
            verify_chain(AuthMode.ENDPOINT_AUTH_CONTROLLER, chain, [eop], NOW)
        assert (e.value.reason.value, e.value.index) == ("pathlen_exceeded", 2)
    subcmd = _c(p("subcmd", "x24b", "p24", "sc24.cert"))
    rep = parse_endpoint_rep_chain(
        [subcmd, both], read_public_key(w / "p24.pub"), [read_public_key(w / "x24a.pub")], NOW
    )
    assert rep.channels == (
        key_id(read_public_key(w / "x24b.pub")),
        key_id(read_public_key(w / "x24a.pub")),
    )
