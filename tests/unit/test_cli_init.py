"""`pktlab init` as an operator runs it (session 24, testbed24): all or nothing, never a
silent overwrite, private files private from their creation, and the home found by every
consumer where `pktlab init` put it ($PKTLAB_HOME)."""

from __future__ import annotations

import errno
import os
import signal
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from packetlab import cli
from packetlab.cli import init as cli_init
from packetlab.cli.interrupt import quit_on_interrupt
from packetlab.ppks import PktlabHome


def pktlab(*argv: str | Path) -> int:
    return cli.main([str(a) for a in argv])


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(autouse=True)
def _signals() -> object:
    """cli.main installs `pktlab`'s start-up SIGINT handler: put the runner's back."""
    saved = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGINT, saved[0])
    signal.signal(signal.SIGTERM, saved[1])


def test_private_files_are_private_from_their_creation_whatever_the_umask(
    tmp_path: Path,
) -> None:
    old = os.umask(0)
    try:
        assert pktlab("init", "--home", tmp_path / "h") == 0
    finally:
        os.umask(old)
    home = PktlabHome.at(tmp_path / "h")
    assert stat.S_IMODE(home.root.stat().st_mode) == 0o700
    for d in home.dirs():
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
    for p in home.keys_dir.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    assert [p.name for p in home.root.iterdir() if p.name.startswith(".")] == []


def _full_disk_at_the_csrs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills up after the keys and certificates are written."""

    def full(*args: object, **kwargs: object) -> bytes:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(cli_init, "make_csr", full)


def test_a_full_disk_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Files were written one by one into the home: a full disk left 9 of 28 (the last one
    empty) and `error: [Errno 28] No space left on device`."""
    root = tmp_path / "h"
    _full_disk_at_the_csrs(monkeypatch)
    assert pktlab("init", "--home", root) == 1
    out, err = capsys.readouterr()
    assert err == f"error: cannot set up {root}: No space left on device; no file written\n"
    assert out == ""  # no `key ...` line for a key that is not there
    assert not root.exists()  # made by init, then removed: no empty keys/ certs/ csrs/
    monkeypatch.undo()  # room again: a plain re-run, no --force needed
    assert pktlab("init", "--home", root) == 0


def test_a_full_disk_during_force_leaves_the_old_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "h"
    assert pktlab("init", "--home", root) == 0
    before = files(root)
    _full_disk_at_the_csrs(monkeypatch)
    assert pktlab("init", "--home", root, "--force") == 1
    assert "no file written" in capsys.readouterr().err
    assert files(root) == before  # the old keys and the certificates they signed, together


def test_ctrl_c_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`pktlab`'s start-up handler ended the process at once (os._exit) wherever init was:
    a home with some keys and no certificates. Now a Ctrl-C raises in init_home, whose
    staging directory is removed."""
    root = tmp_path / "h"
    seen = []

    def interrupted(*args: object, **kwargs: object) -> bytes:
        handler = signal.getsignal(signal.SIGINT)
        seen.append(handler)
        assert callable(handler)
        if "quit_on_interrupt" in getattr(handler, "__qualname__", ""):
            pytest.fail("a Ctrl-C here ends the process at once (os._exit)")
        handler(signal.SIGINT, None)  # what a Ctrl-C here runs
        raise AssertionError("the handler returned")

    quit_on_interrupt()
    monkeypatch.setattr(cli_init, "make_csr", interrupted)
    try:
        rc = pktlab("init", "--home", root)
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped pktlab init")
    assert rc == 130
    assert capsys.readouterr().err == f"\npktlab init: interrupted; no file written in {root}\n"
    assert not root.exists()  # nor the staging directory, nor empty keys/ certs/ csrs/


def test_configs_of_an_operators_own_are_not_replaced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A home holding only configs (keys kept elsewhere, as a reference endpoint's
    ~/.pktlab/endpt.conf often is): init replaced them without a word."""
    root = tmp_path / "h"
    root.mkdir()
    (root / "endpt.conf").write_text("NoSubMode 0\nBrokerAddr broker.example\n")
    assert pktlab("init", "--home", root) == 1
    assert capsys.readouterr().err == (
        f"error: {root} already holds endpt.conf; nothing changed (use --add-missing to "
        "keep them, --force to replace them)\n"
    )
    assert files(root) == {"endpt.conf": b"NoSubMode 0\nBrokerAddr broker.example\n"}
    assert pktlab("init", "--home", root, "--force") == 0
    assert b"NoSubMode 1" in (root / "endpt.conf").read_bytes()


def test_a_directory_in_the_way_is_found_before_anything_is_replaced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "h"
    assert pktlab("init", "--home", root) == 0
    (root / "keys/k_xc").unlink()
    (root / "keys/k_xc").mkdir()
    before = files(root)
    assert pktlab("init", "--home", root, "--force") == 1
    assert capsys.readouterr().err == (
        f"error: cannot set up {root}: {root}/keys/k_xc: a directory is in the way; no "
        "file written\n"
    )
    assert files(root) == before


def test_every_consumer_finds_the_home_in_pktlab_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`PKTLAB_HOME=D pktlab init` writes D/endpt.conf, but the endpoint read only
    ~/.pktlab/endpt.conf: `twistd pktendpoint` then refused to start (TLS needs
    ControllerCertChainPath), where the broker, the proxy and xpmgr took D's."""
    from packetlab.broker.config import load_config as broker_config
    from packetlab.controller.xpmgrconf import default_config_path
    from packetlab.endpoint.config import load_config as endpoint_config

    home = tmp_path / "elsewhere"
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.setenv("PKTLAB_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    assert pktlab("init") == 0
    ep = endpoint_config(None)
    assert ep.controller_chain and ep.private_key == str(home.resolve() / "keys/k_ep")
    assert broker_config(None).private_key == str(home.resolve() / "keys/k_brk")
    assert default_config_path() == home / "xpmgr.conf"
    assert PktlabHome.at().root == home


REFERENCE_LACKS = [  # what the reference pktlab_init does not write (§4.1) and we add
    "broker.conf",
    "certs/agent_bop_brk.cert",
    "certs/agent_prx_prx.cert",
    "csrs/delpriv_exp_exper.csr",  # only with --del_exppriv
    "csrs/delpriv_rep_eop.csr",  # only with --del_reppriv
    "keys/k_bop",
    "keys/k_bop.pub",
    "keys/k_brk",
    "keys/k_brk.pub",
    "keys/k_prx",
    "keys/k_prx.pub",
    "xpmgr.proxy.conf",
]


def _reference_home(root: Path) -> PktlabHome:
    assert pktlab("init", "--home", root) == 0
    for name in REFERENCE_LACKS:
        (root / name).unlink()
    (root / "ppks_conf").write_text('LocalFSPPKSKeyManager {"name": "x"}\n')
    return PktlabHome.at(root)


def test_add_missing_completes_a_reference_home_without_touching_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The broker and the proxy, started on a reference home, say `Run pktlab init` for
    their identities; init refused the home, and `--force` would have replaced its keys.
    `--add-missing` writes only what is missing (session 24)."""
    from packetlab.ppks import parse_csr, raw_public_key

    home = _reference_home(tmp_path / "ref")
    before = files(home.root)
    capsys.readouterr()
    assert pktlab("init", "--home", home.root) == 1
    assert capsys.readouterr().err.endswith(
        "nothing changed (--add-missing writes only what is missing, use --force to replace them)\n"
    )
    assert pktlab("init", "--home", home.root, "--add-missing") == 0
    after = files(home.root)
    assert sorted(set(after) - set(before)) == REFERENCE_LACKS
    assert {f: after[f] for f in before} == before
    # the delegation CSRs ask for the home's own keys, not new ones
    for csr, key in (("delpriv_exp_exper", "k_exper"), ("delpriv_rep_eop", "k_eop")):
        got = parse_csr(home.csr_path(csr).read_bytes())
        assert got.public_key == raw_public_key(home.public_key(key))
    out = capsys.readouterr().out
    assert "keys/k_ep " not in out and f"key  {home.root}/keys/k_bop  id " in out
    assert pktlab("init", "--home", home.root, "--add-missing") == 0
    assert (
        capsys.readouterr().out
        == f"{home.root} lacks nothing pktlab init writes; nothing changed\n"
    )


def test_add_missing_refuses_half_a_group(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A certificate without the keys it names (or the reverse) would not fit new ones."""
    root = tmp_path / "h"
    assert pktlab("init", "--home", root) == 0
    (root / "certs/agent_bop_brk.cert").unlink()
    before = files(root)
    capsys.readouterr()
    assert pktlab("init", "--home", root, "--add-missing") == 1
    assert capsys.readouterr().err == (
        f"error: {root}: certs/agent_bop_brk.cert missing beside keys/k_bop, keys/k_bop.pub, "
        "keys/k_brk, keys/k_brk.pub (the broker's identity: they go together; --force "
        "replaces the whole home); nothing changed\n"
    )
    assert files(root) == before
    with pytest.raises(SystemExit):
        pktlab("init", "--home", root, "--add-missing", "--force")


def test_an_empty_home_argument_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`pktlab init --home "$UNSET"` set up the current directory (argparse made "" the
    Path "."): keys/, certs/, csrs/ and four configs wherever the operator stood."""
    monkeypatch.chdir(tmp_path)
    assert pktlab("init", "--home", "") == 2
    assert capsys.readouterr().err == (
        "error: --home is empty (give a directory; . for this one)\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_force_replaces_a_symlink_not_what_it_points_to(tmp_path: Path) -> None:
    """Files were written through the names in the home: with --force, a certificate name
    that was a symbolic link overwrote the file it pointed to, anywhere. A rename
    replaces the link itself."""
    root = tmp_path / "h"
    assert pktlab("init", "--home", root) == 0
    elsewhere = tmp_path / "not-the-home.txt"
    elsewhere.write_text("keep me\n")
    (root / "certs/agent_xc_xc.cert").unlink()
    (root / "certs/agent_xc_xc.cert").symlink_to(elsewhere)
    assert pktlab("init", "--home", root, "--force") == 0
    assert elsewhere.read_text() == "keep me\n"
    cert = root / "certs/agent_xc_xc.cert"
    assert not cert.is_symlink() and cert.read_bytes().startswith(b"-----BEGIN CERTIFICATE")


def test_an_empty_file_is_as_good_as_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What a full disk left before (files written in place, the last one empty): the
    refusal names the empty file, and --add-missing replaces it with its group."""
    root = tmp_path / "h"
    assert pktlab("init", "--home", root) == 0
    (root / "keys/k_bop").write_bytes(b"")
    for name in ("keys/k_bop.pub", "keys/k_brk", "keys/k_brk.pub", "certs/agent_bop_brk.cert"):
        (root / name).unlink()
    kept = {f: b for f, b in files(root).items() if f != "keys/k_bop"}
    capsys.readouterr()
    assert pktlab("init", "--home", root) == 1
    assert (
        "(keys/k_bop (empty), keys/k_bop.pub, keys/k_brk, keys/k_brk.pub and 1 more missing "
        "or empty: an interrupted init?)"
    ) in capsys.readouterr().err
    assert pktlab("init", "--home", root, "--add-missing") == 0
    after = files(root)
    assert after["keys/k_bop"].startswith(b"-----BEGIN PRIVATE KEY")
    assert {f: after[f] for f in kept} == kept
    assert len(after) == len(kept) + 5


def test_ctrl_c_while_files_are_moved_into_place_is_too_late(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Ctrl-C among the renames (or while the staging directory was removed) cut them
    short: a home half old, half new, or a whole one said `no file written` with the
    staging directory left. It is let go there: the home is whole, exit 0."""
    root = tmp_path / "h"
    real = os.replace
    calls: list[object] = []

    def replace(src: object, dst: object) -> None:
        calls.append(dst)
        if len(calls) == 5:
            handler = signal.getsignal(signal.SIGINT)
            assert callable(handler)
            handler(signal.SIGINT, None)  # what a Ctrl-C here runs
        real(src, dst)  # type: ignore[arg-type]

    quit_on_interrupt()
    monkeypatch.setattr(cli_init.os, "replace", replace)
    try:
        assert pktlab("init", "--home", root) == 0
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped pktlab init")
    monkeypatch.undo()
    assert len(files(root)) == len(calls) == 28
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []
    assert capsys.readouterr().out.endswith(f"initialised {root}\n")


def test_ctrl_c_while_the_files_are_listed_says_the_home_is_set_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "h"

    real = print
    cuts: list[tuple[object, ...]] = []

    def cut(*args: object, **kwargs: object) -> None:
        if not cuts:  # the first `key ...` line: a Ctrl-C then
            cuts.append(args)
            raise KeyboardInterrupt
        real(*args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(cli_init, "print", cut, raising=False)
    assert pktlab("init", "--home", root) == 130
    monkeypatch.undo()
    assert len(files(root)) == 28
    assert capsys.readouterr().err == (
        f"\npktlab init: interrupted; {root} is set up (every file was written)\n"
    )


@pytest.mark.parametrize(
    ("make", "where", "said"),
    [
        (lambda p: p.write_text(""), "", "a file, not a directory"),
        (lambda p: p.symlink_to(p.parent / "gone"), "", "a dangling symlink, not a directory"),
        (lambda p: (p.mkdir(), (p / "keys").write_text("")), "keys", "a file, not a directory"),
    ],
)
def test_a_file_where_a_directory_goes_is_named_so(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make: Callable[[Path], object],
    where: str,
    said: str,
) -> None:
    """`pktlab init --home FILE` said `cannot set up FILE: File exists` (mkdir's word),
    as if a home were there already (session 31)."""
    root = tmp_path / "h"
    make(root)
    assert pktlab("init", "--home", root) == 1
    named = f"{root / where}: " if where else ""
    assert capsys.readouterr().err == (
        f"error: cannot set up {root}: {named}{said}; no file written\n"
    )


def test_a_killed_inits_staging_directory_is_removed_and_a_running_ones_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SIGKILLed init left `.pktlab-init-PID-XXXX` (its private keys inside) for good: the
    next init removes it when PID is gone. One whose process runs is another init's."""
    root = tmp_path / "h"
    dead, alive = root / ".pktlab-init-4000001-0badcafe", root / ".pktlab-init-4000002-cafe0bad"
    for stage in (dead, alive):
        (stage / "keys").mkdir(parents=True)
        (stage / "keys" / "k_exper").write_bytes(b"secret")

    def kill(pid: int, sig: int) -> None:
        assert sig == 0
        if pid == 4000001:
            raise ProcessLookupError(pid)

    monkeypatch.setattr(os, "kill", kill)
    assert pktlab("init", "--home", root) == 0
    assert not dead.exists()
    assert (alive / "keys" / "k_exper").read_bytes() == b"secret"
    assert cli_init.missing_files(PktlabHome.at(root)) == []


def test_an_interrupted_init_leaves_a_home_it_did_not_make(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty directory given as the home stays, empty (it had keys/ certs/ csrs/ after)."""
    root = tmp_path / "h"
    root.mkdir()

    def interrupted(*args: object, **kwargs: object) -> bytes:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_init, "make_csr", interrupted)
    assert pktlab("init", "--home", root) == 130
    assert list(root.iterdir()) == []


def test_a_home_add_missing_cannot_complete_is_sent_to_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What an init SIGKILLed among its renames leaves (certs/ in place, keys/ half): the
    error sent the operator to --add-missing, which then refused it (a certificate without
    its keys): now straight to --force (session 32)."""
    root = tmp_path / "h"
    assert pktlab("init", "--home", root) == 0
    for name in ("k_xc", "k_xc.pub", "k_prx", "k_prx.pub"):
        (root / "keys" / name).unlink()
    capsys.readouterr()
    assert pktlab("init", "--home", root) == 1
    err = capsys.readouterr().err
    assert err.endswith(
        "nothing changed (--add-missing cannot: a certificate goes with the keys it names; "
        "--force writes the whole home again)\n"
    )
    assert pktlab("init", "--home", root, "--force") == 0
