"""`pktlab init`: set up a local demo world in ~/.pktlab as the reference init does (§4.1)."""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import secrets
import shutil
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from packetlab.cli.exits import EXIT_INTERRUPTED
from packetlab.cli.interrupt import interrupts_raise
from packetlab.monitor import abi
from packetlab.ppks import (
    BurstRate,
    CertificateError,
    CertLimits,
    CertType,
    DelType,
    PktlabHome,
    generate_private_key,
    issue_certificate,
    key_id,
    make_csr,
    write_key_pair,
)
from packetlab.ppks.keys import Ed25519PrivateKey
from packetlab.ppks.limits import parse_burst_rates

NOT_BEFORE = 0
NOT_AFTER = 2147483647
KEYS = ("k_exper", "k_xc", "k_eop", "k_ep", "k_bop", "k_brk")
# (file name, type, signer key, subject key)
CERTS = (
    ("agent_xc_xc", CertType.AGENT, "k_xc", "k_xc"),
    ("agent_ep_ep", CertType.AGENT, "k_ep", "k_ep"),
    ("exppriv_eop_exper", CertType.EXPPRIV, "k_eop", "k_exper"),
    ("pubcmd_exper_xc", CertType.PUBCMD, "k_exper", "k_xc"),
    ("subcmd_eop_ep", CertType.SUBCMD, "k_eop", "k_ep"),
    # The broker: its operator key k_bop signs its agent cert (clients list k_bop.pub as
    # BrokerChainRootPath / BrokerCertRootPath; BROKER-PROXY-OBSERVED.md section 0).
    ("agent_bop_brk", CertType.AGENT, "k_bop", "k_brk"),
)
# (file name, type, del_type, requester key)
CSRS = (
    ("exppriv_exper", CertType.EXPPRIV, None, "k_exper"),
    ("delpriv_exp_exper", CertType.DELPRIV, DelType.EXPPRIV, "k_exper"),
    ("delpriv_rep_eop", CertType.DELPRIV, DelType.REPPRIV, "k_eop"),
)

_EPILOG = f"""\
creates, under --home (default ~/.pktlab, or $PKTLAB_HOME):
  keys/   {", ".join(KEYS)} (PKCS#8, mode 0600) and their .pub files
  certs/  {", ".join(c[0] + ".cert" for c in CERTS)}
  csrs/   {", ".join(c[0] + ".csr" for c in CSRS)}
  keys/k_prx, certs/agent_prx_prx.cert: the proxy's agent identity (twistd pktproxy)
  endpt.conf (the demo endpoint: TLS with these certs), xpmgr.conf (the controller's),
  xpmgr.proxy.conf (the same in proxy mode: pktlab xpmgr -c ... -a PROXY),
  broker.conf (the broker: twistd -n pktbroker)
The agent certs are self-signed; exppriv_eop_exper lets k_exper run experiments on the
endpoints of k_eop; pubcmd_exper_xc lets controller key k_xc act for k_exper;
subcmd_eop_ep lets endpoint key k_ep subscribe for k_eop; agent_bop_brk is the broker's
TLS identity, signed by the broker-operator key k_bop (`twistd -n pktbroker` uses it, and
endpoints and controllers trust k_bop.pub as their broker root). All are valid from
{NOT_BEFORE} to {NOT_AFTER} (Unix seconds). The CSRs are for asking other operators for
privileges (pktlab ppks sign -r FILE ...).
All or nothing: the files are written in a staging directory in the home, then renamed
into place; a full disk or a Ctrl-C leaves the home as it was (not there, if it was
not). Private keys are 0600 from their creation, the directories 0700."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Set up a PacketLab home directory with demo keys, certificates and CSRs, "
        "like the reference pktlab_init. An existing setup is left alone unless --force."
    )
    parser.epilog = _EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--home", help="directory to set up (default $PKTLAB_HOME, else ~/.pktlab)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--force",
        action="store_true",
        help="replace the keys, certs, CSRs and configs of an existing setup",
    )
    which.add_argument(
        "--add-missing",
        action="store_true",
        help="write only what an existing setup lacks, leaving its files as they are "
        "(a reference pktlab_init home: the broker's and the proxy's identities, "
        "broker.conf, ...); a certificate is added only with the keys it goes with",
    )
    parser.add_argument(
        "--monitor",
        action="append",
        default=[],
        type=Path,
        metavar="WASM",
        help="require this monitor: its digest goes into exppriv_eop_exper's monitor= "
        "limit (repeatable; docs/monitors.md)",
    )
    parser.add_argument(
        "--max-burst-rate-byte",
        metavar="BYTES/WINDOW_NS",
        help="send window of exppriv_eop_exper (e.g. 1250000000/10000000000 = 1 Gb/s over "
        "10 s; several comma-separated): the operator's grant, which replaces the built-in "
        "10 Mb/s window on this project's endpoint (docs/security.md)",
    )
    # The reference pktlab_init writes the delegation CSRs only when asked (§4.1); we
    # always write them, and take its flags so its command lines work unchanged.
    for flag, csr in (("del_exppriv", "delpriv_exp_exper"), ("del_reppriv", "delpriv_rep_eop")):
        parser.add_argument(
            f"--{flag}",
            f"--{flag.replace('_', '-')}",
            action="store_true",
            help=f"accepted as in the reference pktlab_init ({csr}.csr is always written)",
        )
    parser.add_argument(
        "--reflex",
        action="append",
        default=[],
        type=Path,
        metavar="WASM",
        help="allow this reflex: its digest goes into exppriv_eop_exper's reflex= limit "
        "(repeatable; docs/reflexes.md)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        if args.home == "":  # `--home "$UNSET"`: Path("") is the current directory
            raise ValueError("is empty (give a directory; . for this one)")
        home = PktlabHome.at(args.home)
    except ValueError as e:  # ~nosuchuser
        print(f"error: --home {e}", file=sys.stderr)
        return 2
    confs = [n for n in CONFS if (home.root / n).is_file()]
    only: list[str] | None = None
    if args.add_missing:
        try:
            only = files_to_add(home)
        except IncompleteGroup as e:
            print(f"error: {home.root}: {e}; nothing changed", file=sys.stderr)
            return 1
        if not only:
            print(f"{home.root} lacks nothing pktlab init writes; nothing changed")
            return 0
    elif home.exists() and not args.force:
        missing = missing_files(home)
        lacks = ""
        if (home.root / "ppks_conf").is_file():  # ppksman's config: the reference's init
            lacks = (
                " (a reference pktlab_init home: ppks_conf; its keys/ and certs/ are used "
                "as they are)"
            )
        elif missing:  # an interrupted init, or files removed: the daemons would fail on them
            shown = ", ".join(missing[:4]) + (
                f" and {len(missing) - 4} more" if missing[4:] else ""
            )
            how = "missing or empty" if any(m.endswith("(empty)") for m in missing) else "missing"
            lacks = f", but not all pktlab init writes ({shown} {how}: an interrupted init?)"
        # A reference home lacks the broker's and proxy's identities, which their daemons
        # tell the operator to get from `pktlab init`: --force would replace its keys.
        fix = "use --force to replace them"
        if missing and _add_refused(home):  # (what a SIGKILL among the renames leaves)
            fix = (
                "--add-missing cannot: a certificate goes with the keys it names; "
                "--force writes the whole home again"
            )
        elif missing:
            fix = f"--add-missing writes only what is missing, {fix}"
        print(
            f"error: {home.root} already holds keys, certs or CSRs{lacks}; nothing changed ({fix})",
            file=sys.stderr,
        )
        return 1
    elif confs and not args.force:  # configs of an operator's own, keys kept elsewhere
        print(
            f"error: {home.root} already holds {', '.join(confs)}; nothing changed (use "
            "--add-missing to keep them, --force to replace them)",
            file=sys.stderr,
        )
        return 1
    rates: tuple[BurstRate, ...] = ()
    try:
        if args.max_burst_rate_byte:
            rates = parse_burst_rates("max_burst_rate_byte", args.max_burst_rate_byte)
        digests = [abi.digest(_wasm(p, "monitor")) for p in args.monitor]
        reflexes = [abi.digest(_wasm(p, "reflex")) for p in args.reflex]
    except CertificateError as e:
        print(f"error: --max-burst-rate-byte: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    done = False
    try:
        with interrupts_raise():  # so that init_home's staging directory is removed
            init_home(home, digests, reflexes, send_rates=rates, only=only)
            done = True
            print(f"initialised {home.root}")
    except PartlyWritten as e:
        print(f"error: cannot set up {home.root}: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(
            f"error: cannot set up {home.root}: {_why(e, home.root)}; no file written",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt as e:
        what = f"no file written in {home.root}"
        if done or isinstance(e, InterruptedWhenDone):
            what = f"{home.root} is set up (every file was written)"
        print(f"\npktlab init: interrupted; {what}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def _add_refused(home: PktlabHome) -> bool:
    """`--add-missing` would refuse `home` (a group only partly there): pointing to it
    only sent the operator to a second error (session 32)."""
    try:
        files_to_add(home)
    except IncompleteGroup:
        return True
    return False


def _why(e: OSError, root: Path) -> str:
    """`e` in a few words: its file named unless it is the home itself (named already) or
    one of the staging directory (a name the operator never sees)."""
    where = os.fspath(e.filename) if e.filename is not None else ""
    why = e.strerror or str(e)
    if isinstance(e, FileExistsError) and not os.path.isdir(where or root):
        # mkdir's own word for a file (or a dangling symlink) where a directory goes
        kind = "a dangling symlink" if os.path.islink(where or root) else "a file"
        why = f"{kind}, not a directory"
    if not where or _STAGE_PREFIX in where or Path(where) == root:
        return why
    return f"{where}: {why}"


def _wasm(path: Path, kind: str) -> bytes:
    """A built module's bytes. The digest of anything else (the .c source, a .wat) would
    be listed and never match what the endpoint is sent."""
    data = path.read_bytes()
    if not data.startswith(b"\0asm"):
        raise OSError(
            f"--{kind} {path}: not a WebAssembly module (build it first: "
            f"pktlab {kind} build {path} -o OUT.wasm)"
        )
    return data


def missing_files(home: PktlabHome) -> list[str]:
    """What `init_home` writes that `home` lacks, relative to it."""
    keys = (*KEYS, "k_prx")
    names = [f"keys/{k}{ext}" for k in keys for ext in ("", ".pub")]
    names += [f"certs/{c[0]}.cert" for c in (*CERTS, ("agent_prx_prx",))]
    names += [f"csrs/{c[0]}.csr" for c in CSRS]
    names += list(CONFS)
    out = []
    for n in names:
        if not _holds(home.root / n):
            out.append(f"{n} (empty)" if (home.root / n).is_file() else n)
    return out


def _holds(path: Path) -> bool:
    """`path` is a file with something in it: an empty key or certificate (what a full disk
    left before session 24) is as good as missing."""
    try:
        return path.is_file() and path.stat().st_size > 0
    except OSError:
        return False


CONFS = ("endpt.conf", "xpmgr.conf", "xpmgr.proxy.conf", "broker.conf")
_STAGE_PREFIX = ".pktlab-init-"
_DEMO_KEYS = ("k_exper", "k_xc", "k_eop", "k_ep")


def _pair(key: str) -> list[str]:
    return [f"keys/{key}", f"keys/{key}.pub"]


# What `--add-missing` writes together or not at all: a certificate goes with the keys
# that signed it and that it names. The CSRs and configs stand alone (a CSR missing beside
# its existing key is made with that key).
GROUPS: dict[str, list[str]] = {
    "the demo keys and certificates (§4.1)": [
        *(f for k in _DEMO_KEYS for f in _pair(k)),
        *(f"certs/{c[0]}.cert" for c in CERTS if c[0] != "agent_bop_brk"),
    ],
    "the broker's identity": [*_pair("k_bop"), *_pair("k_brk"), "certs/agent_bop_brk.cert"],
    "the proxy's identity": [*_pair("k_prx"), "certs/agent_prx_prx.cert"],
}


class IncompleteGroup(ValueError):
    """`--add-missing` found part of a group: adding the rest would not fit it."""


def files_to_add(home: PktlabHome) -> list[str]:
    """What `--add-missing` writes into `home`: each group none of whose files exist, each
    missing CSR and config. IncompleteGroup names a group only partly there."""
    add = []
    there = {f: _holds(home.root / f) for fs in GROUPS.values() for f in fs}
    for what, fs in GROUPS.items():
        present = [f for f in fs if there[f]]
        if present and len(present) < len(fs):
            absent = [f for f in fs if not there[f]]
            raise IncompleteGroup(
                f"{', '.join(absent)} missing beside {', '.join(present)} ({what}: they go "
                "together; --force replaces the whole home)"
            )
        if not present:
            add += fs
    add += [f"csrs/{c[0]}.csr" for c in CSRS if not _holds(home.csr_path(c[0]))]
    add += [n for n in CONFS if not _holds(home.root / n)]
    return add


def init_home(
    home: PktlabHome,
    monitors: Sequence[bytes] = (),
    reflexes: Sequence[bytes] = (),
    *,
    send_rates: Sequence[BurstRate] = (),
    only: Sequence[str] | None = None,
) -> dict[str, Ed25519PrivateKey]:
    """Create the demo keys, certificates, CSRs and configs in `home`; returns the keys by
    name. `monitors` (digests) are required by the exppriv certificate, `reflexes`
    (digests) are allowed by it, and `send_rates` are its max_burst_rate_byte. `only`:
    write just these files (relative to `home`; `files_to_add`), the rest left as it is.

    All or nothing: every file is written in a staging directory inside `home` first
    (private keys 0600 from their creation, in 0700 directories), then each is renamed
    into place. A failure while writing (a full disk, an unwritable directory) or an
    interrupt (KeyboardInterrupt) leaves `home` as it was: files were written one by one
    into it, and a full disk left a home with some keys, a truncated certificate and no
    configs, which the daemons then failed on (session 24)."""
    # keys/ certs/ csrs/ are made with the files they get: made first, an interrupt left
    # them empty, and the home (made by us) with them
    made = _new_dirs(home.root)
    # named before it is made, so that an interrupt right after the mkdir finds it
    stage = home.root / f"{_STAGE_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    moved = [False]  # set once every file is in place
    try:
        home.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        _remove_stale_stages(home.root)
        stage.mkdir(mode=0o700)
        staged = PktlabHome(stage)
        staged.create_dirs()
        keys, lines = _write_all(staged, home, monitors, reflexes, send_rates)
        if only is not None:
            lines = {f: line for f, line in lines.items() if f in only}
            _csrs_of_existing_keys(staged, home, only, lines)
        _move_into_place(stage, home.root, only, moved)
        for line in lines.values():  # what is there now, not what was attempted
            print(line)
    except BaseException as e:
        if moved[0]:  # a Ctrl-C while they are listed: the home is whole
            if isinstance(e, KeyboardInterrupt):
                raise InterruptedWhenDone from None
            raise
        with _signals_deferred():  # a second Ctrl-C must not leave the staging directory
            shutil.rmtree(stage, ignore_errors=True)
            for d in reversed(made):  # the home as it was: not there
                with contextlib.suppress(OSError):
                    d.rmdir()
        raise
    return keys


def _new_dirs(root: Path) -> list[Path]:
    """`root` and those of its parents that do not exist yet, outermost first."""
    made: list[Path] = []
    for d in (root, *root.parents):
        if os.path.lexists(d):
            break
        made.insert(0, d)
    return made


def _remove_stale_stages(root: Path) -> None:
    """Remove the staging directories of inits that were killed (SIGKILL, a power cut):
    the process their name holds is gone. One of a running init is left to it."""
    for stage in root.glob(f"{_STAGE_PREFIX}*"):
        pid = stage.name[len(_STAGE_PREFIX) :].split("-", 1)[0]
        if not pid.isdigit() or not stage.is_dir() or stage.is_symlink():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # running (or another user's, which we may not signal)
        except ProcessLookupError:
            shutil.rmtree(stage, ignore_errors=True)
        except PermissionError:
            continue


class InterruptedWhenDone(KeyboardInterrupt):
    """A Ctrl-C that came once every file was in place (while they were listed)."""


@contextlib.contextmanager
def _signals_deferred() -> Iterator[list[int]]:
    """Ctrl-C and SIGTERM are only noted (in the list) while the body runs, one already
    pending too: the body is never cut short, as it would be by a KeyboardInterrupt."""
    got: list[int] = []
    if threading.current_thread() is not threading.main_thread():  # signals go to main
        yield got
        return
    saved = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        while sig not in saved:
            try:  # signal.signal runs the handlers of pending signals first
                saved[sig] = signal.signal(sig, lambda signum, frame: got.append(signum))
            except KeyboardInterrupt:
                got.append(signal.SIGINT)
    try:
        yield got
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _csrs_of_existing_keys(
    staged: PktlabHome, home: PktlabHome, only: Sequence[str], lines: dict[str, str]
) -> None:
    """The CSRs `only` asks for whose requester key is the home's own, not a new one: made
    with that key (one that cannot be read, e.g. passphrase-protected, is left out)."""
    for name, ctype, dtype, requester in CSRS:
        f = f"csrs/{name}.csr"
        if f not in only or f"keys/{requester}" in only:
            continue
        try:
            key = home.private_key(requester)
        except (OSError, ValueError, TypeError) as e:
            staged.csr_path(name).unlink()
            lines[f] = f"csr  {home.csr_path(name)}  not written: keys/{requester}: {e}"
            continue
        staged.csr_path(name).write_bytes(make_csr(ctype, key, del_type=dtype))


def _write_all(
    staged: PktlabHome,
    home: PktlabHome,
    monitors: Sequence[bytes],
    reflexes: Sequence[bytes],
    send_rates: Sequence[BurstRate],
) -> tuple[dict[str, Ed25519PrivateKey], dict[str, str]]:
    """Write everything into `staged`; the configs name the files of `home`. Returns the
    keys and, by file, the lines to print once they are in place."""
    keys: dict[str, Ed25519PrivateKey] = {}
    lines = {}
    for name in KEYS:
        keys[name] = generate_private_key()
        write_key_pair(staged.key_path(name), keys[name])
        lines[f"keys/{name}"] = f"key  {home.key_path(name)}  id {key_id(keys[name]).hex()}"
    for name, ctype, signer, subject in CERTS:
        limits = None
        if (monitors or reflexes or send_rates) and ctype is CertType.EXPPRIV:
            limits = CertLimits(
                monitor_digests=tuple(monitors) or None,
                reflex_digests=tuple(reflexes) or None,
                max_burst_rate_byte=tuple(send_rates) or None,
            )
        cert = issue_certificate(
            ctype, keys[signer], keys[subject], NOT_BEFORE, NOT_AFTER, limits=limits
        )
        staged.cert_path(name).write_bytes(cert.to_pem())
        lines[f"certs/{name}.cert"] = f"cert {home.cert_path(name)}"
    for name, ctype, dtype, requester in CSRS:
        staged.csr_path(name).write_bytes(make_csr(ctype, keys[requester], del_type=dtype))
        lines[f"csrs/{name}.csr"] = f"csr  {home.csr_path(name)}"
    lines.update(_proxy_identity(staged, home, keys))
    confs = (endpoint_conf(home), xpmgr_conf(home), xpmgr_conf(home, proxy=True), broker_conf(home))
    for name, text in zip(CONFS, confs, strict=True):
        (staged.root / name).write_text(text, encoding="utf-8")
        lines[name] = f"conf {home.root / name}"
    return keys, lines


class PartlyWritten(Exception):
    """Renaming the staged files into place failed after some: the message says how many."""


def _move_into_place(
    stage: Path, root: Path, only: Sequence[str] | None, moved: list[bool]
) -> None:
    """Rename each staged file to its place under `root` (same file system: no copy, no
    space needed, never a partial file), then remove `stage`. A Ctrl-C or SIGTERM from
    here on comes too late to stop anything and is let go: a home half old, half new
    would hold certificates its keys did not sign, and one interrupted while the staging
    directory was removed was whole but said `no file written`, the directory left."""
    with _signals_deferred():  # noted, and let go: too late to stop anything
        try:
            dirs = [root / d for d in ("keys", "certs", "csrs")]
            for d in dirs:  # none made when one cannot be
                if os.path.lexists(d) and not d.is_dir():
                    raise FileExistsError(errno.EEXIST, "File exists", str(d))
            for d in dirs:
                d.mkdir(mode=0o700, exist_ok=True)
            staged = sorted(p for p in stage.rglob("*") if p.is_file())
            moves = [
                (p, root / p.relative_to(stage))
                for p in staged
                if only is None or str(p.relative_to(stage)) in only
            ]
            for _, dest in moves:  # what would stop a rename half-way, found before it
                if dest.is_dir() and not dest.is_symlink():
                    raise IsADirectoryError(errno.EISDIR, "a directory is in the way", str(dest))
                if not os.access(dest.parent, os.W_OK | os.X_OK):
                    raise PermissionError(errno.EACCES, "cannot write in it", str(dest.parent))
            for done, (path, dest) in enumerate(moves):
                try:
                    os.replace(path, dest)
                except OSError as e:
                    raise PartlyWritten(
                        f"{dest}: {e.strerror or e} after {done} of {len(moves)} files "
                        "were written (the rest are as they were: pktlab init --force "
                        "writes all)"
                    ) from e
            moved[0] = True
        finally:
            shutil.rmtree(stage, ignore_errors=True)


def endpoint_conf(home: PktlabHome) -> str:
    """The demo endpoint's endpt.conf: NoSub mode, TLS with the demo certificates."""
    r = home.root.resolve()
    return f"""\
# Demo endpoint (written by pktlab init): twistd pktendpoint -c {r / "endpt.conf"} HOST:PORT
NoSubMode 1
# TLS to the controller (PROTOCOL.md 4.6): our subcmd chain, its key, the EOp keys we trust
ControllerCertChainPath {r / "certs/subcmd_eop_ep.cert"}
EndpointPrivKey {r / "keys/k_ep"}
EndpointOpPubKeyPath {r / "keys/k_eop.pub"}
# Persistent resource accounting (SQLite; see docs/security.md)
RLimDBPath {r / "endpt.rlim.sqlite3"}
# Broker mode (NoSubMode 0; docs/broker.md): subscribe at BrokerAddr for our EOp's channel
BrokerAddr 127.0.0.1
BrokerChainRootPath {r / "keys/k_bop.pub"}
EndpointAgentCertPath {r / "certs/agent_ep_ep.cert"}
SubPrivCertChainPath {r / "certs/subcmd_eop_ep.cert"}
AutoExtractChannel 1
# Persistent memory of monitors (SQLite; see docs/monitors.md)
MonitorPersistentPath {r / "endpt.persistent.sqlite3"}
"""


def broker_conf(home: PktlabHome) -> str:
    """The demo broker's broker.conf (docs/broker.md)."""
    r = home.root.resolve()
    return f"""\
# Demo broker (written by pktlab init): twistd -n pktbroker
BrokerCertPath {r / "certs/agent_bop_brk.cert"}
BrokerPrivKey {r / "keys/k_brk"}
PublishListen tcp:20556
SubscribeListen tcp:20557
Store memory:
# HTTP/JSON status (pktlab broker status); loopback only
StatusListen tcp:20558:interface=127.0.0.1
"""


def xpmgr_conf(home: PktlabHome, proxy: bool = False) -> str:
    """The demo controller's credentials in the reference xpmgr.conf form (§7.2);
    `proxy`: xpmgr.proxy.conf, the same in proxy mode (the reference's first external
    experiment tutorial appends its ExpExec line to both files)."""
    r = home.root.resolve()
    chain = f"{r / 'certs/pubcmd_exper_xc.cert'},{r / 'certs/exppriv_eop_exper.cert'}"
    head = "# Demo controller (written by pktlab init), reference xpmgr.conf form\n"
    mode = ""
    if proxy:
        head = (
            "# Demo controller behind NAT (written by pktlab init), reference xpmgr.conf form:\n"
            f"#   pktlab xpmgr -c {r / 'xpmgr.proxy.conf'} -a PROXY[:PORT] MLET [MLET_ARGS]\n"
        )
        mode = f"""\
EnableProxyMode 1
# our agent certificate for the proxy (one run with --manager-roots requires it)
BacklogConnAgentCertPath {r / "certs/agent_xc_xc.cert"}
# check the proxy's certificate against its key (twistd pktproxy's default is k_prx):
# ProxyCertRootPath {r / "keys/k_prx.pub"}
"""
    return f"""\
{head}EnableExpPublication 0
ControllerPrivkeyPath {r / "keys/k_xc"}
{mode}# IS_DEFAULT:SNIKEY:EXPPRIVCHAIN_PATH:TRUSTEDEOP_PATH:PUB_CHANNEL:OVERRIDE_XDESCRNVP
ExpExec 1::{chain}:{r / "keys/k_eop.pub"}::
"""


def _proxy_identity(
    staged: PktlabHome, home: PktlabHome, keys: dict[str, Ed25519PrivateKey]
) -> dict[str, str]:
    """The proxy's agent key and self-signed agent cert (twistd pktproxy's default)."""
    keys["k_prx"] = generate_private_key()
    write_key_pair(staged.key_path("k_prx"), keys["k_prx"])
    cert = issue_certificate(CertType.AGENT, keys["k_prx"], keys["k_prx"], NOT_BEFORE, NOT_AFTER)
    staged.cert_path("agent_prx_prx").write_bytes(cert.to_pem())
    return {
        "keys/k_prx": f"key  {home.key_path('k_prx')}  id {key_id(keys['k_prx']).hex()}",
        "certs/agent_prx_prx.cert": f"cert {home.cert_path('agent_prx_prx')}",
    }
