"""`pktlab ppks`: keys, CSRs, certificates and chain checks (what the reference ppksman does)."""

from __future__ import annotations

import argparse
import datetime
import getpass
import sys
from collections.abc import Sequence
from pathlib import Path

from packetlab.numtext import FINITE, float_in
from packetlab.ppks import (
    AuthMode,
    Certificate,
    CertRequest,
    CertType,
    ChainError,
    DelType,
    KeyFileError,
    PPKSError,
    Reason,
    generate_private_key,
    issue_certificate,
    key_id,
    load_certificates,
    load_private_key,
    load_public_key,
    make_csr,
    parse_controller_exp_chain,
    parse_csr,
    parse_endpoint_rep_chain,
    public_key_pem,
    raw_public_key,
    sign_csr,
    verify_chain,
    write_key_pair,
)
from packetlab.ppks.keys import Ed25519PrivateKey, Ed25519PublicKey
from packetlab.wire.nvlist import NVPair, parse_nvlist

MODES = {
    "controller": AuthMode.ENDPOINT_AUTH_CONTROLLER,
    "endpoint": AuthMode.CONTROLLER_AUTH_ENDPOINT,
    "agent": AuthMode.AGENT,
}

_DESCRIPTION = """\
Manage PacketLab PPKS keys, certificate signing requests and certificates, and check
certificate chains. Keys are Ed25519 (PEM); certificates and CSRs are PEM files made
exactly as the reference ppksman (pktlab 1.0.4) makes them."""

_EPILOG = """\
examples:
  pktlab ppks genkey ~/.pktlab/keys/k_eop
  pktlab ppks sign exppriv ~/.pktlab/keys/k_eop 0 2147483647 exppriv.cert \\
      -k ~/.pktlab/keys/k_exper.pub --max-send-byte 1000000 --valid-dest 192.0.2.0/24
  pktlab ppks sign pubcmd ~/.pktlab/keys/k_exper 0 2147483647 pubcmd.cert -k k_xc.pub
  pktlab ppks show exppriv.cert -k ~/.pktlab/keys/k_eop.pub
  pktlab ppks verify --mode controller --root ~/.pktlab/keys/k_eop.pub \\
      pubcmd.cert exppriv.cert

Options that take several values (--valid-dest, --monitor-digest, ...) go after the
positional arguments. A ppksman command line runs with `pktlab ppks` in place of
`ppksman -g CONFIG` (gen cert = sign, gen csr = csr, gen key NAME -f FILE = genkey FILE):
  pktlab ppks gen cert -k k_exper.pub exppriv k_eop 0 2147483647 exppriv.cert \\
      --max_send_byte 1000000 --opt_max_send_byte -y"""

# cert_limit fields in the order ppksman writes them: (option, field, kind)
_LIMIT_OPTIONS: tuple[tuple[str, str, str], ...] = (
    ("filter-digest", "filter", "digests"),
    ("monitor-digest", "monitor", "digests"),
    ("reflex-digest", "reflex", "digests"),
    ("max-num-priority", "max_num_priority", "int"),
    ("max-socket-count", "max_socket_count", "int"),
    ("max-exp-period", "max_exp_period", "int"),
    ("max-send-byte", "max_send_byte", "int"),
    ("max-send-pkt", "max_send_pkt", "int"),
    ("max-recv-byte", "max_recv_byte", "int"),
    ("max-recv-pkt", "max_recv_pkt", "int"),
    ("max-burst-rate-byte", "max_burst_rate_byte", "list"),
    ("max-burst-rate-pkt", "max_burst_rate_pkt", "list"),
    ("valid-dest", "valid_dest", "list"),
    ("src-ip-spoofing", "src_ip_spoofing", "bool"),
)
# ppksman's flags marking a limit optional ('*'): --opt_NAME, two of them plural.
_PPKSMAN_OPT_FLAGS = {
    "filter": "opt_filter_digests",
    "monitor": "opt_monitor_digests",
    **{f: f"opt_{f}" for _o, f, _k in _LIMIT_OPTIONS if f not in ("filter", "monitor", "reflex")},
}
_LIMIT_HELP = {
    "filter": "SHA-256 digests (hex) of eBPF filter programs",
    "monitor": "SHA-256 digests (hex) of encoded monitor programs (sha256(0x01 || wasm))",
    "reflex": "SHA-256 digests (hex) of encoded reflex programs (docs/reflexes.md)",
    "max_num_priority": "highest experiment priority allowed",
    "max_socket_count": "sockets an experiment may open",
    "max_exp_period": "total experiment run time, in ns",
    "max_send_byte": "bytes an experiment may send (persisted across sessions)",
    "max_send_pkt": "packets an experiment may send",
    "max_recv_byte": "bytes an experiment may receive",
    "max_recv_pkt": "packets an experiment may receive",
    "max_burst_rate_byte": "sliding-window send limits BYTES/WINDOW_NS (several allowed)",
    "max_burst_rate_pkt": "sliding-window send limits PKTS/WINDOW_NS (several allowed)",
    "valid_dest": "allowed destinations ADDR[/PREFIXLEN] (several allowed)",
    "src_ip_spoofing": "0 or 1",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = _DESCRIPTION
    parser.epilog = _EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = parser.add_subparsers(dest="ppks_command", metavar="ACTION")
    sub.required = True

    p = sub.add_parser(
        "genkey",
        help="generate an Ed25519 key pair (PATH and PATH.pub)",
        description="Generate an Ed25519 key pair: PATH (PKCS#8 private key, mode 0600) and "
        "PATH.pub (SubjectPublicKeyInfo public key).",
    )
    p.add_argument("path", type=Path, help="private key file to write; PATH.pub is the public key")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    _add_passphrase_options(p, "encrypt the private key with a passphrase")
    p.set_defaults(_run=_run_genkey)

    p = sub.add_parser(
        "showkey",
        help="show a key's raw bytes and key id",
        description="Show the raw public key, its key id (SHA-256, used as SKI/AKI and as "
        "private broker channel) and its PEM.",
    )
    p.add_argument("path", type=Path, help="public (.pub) or private key file")
    _add_passphrase_options(p, "passphrase of an encrypted private key")
    p.set_defaults(_run=_run_showkey)

    _add_csr_arguments(
        sub.add_parser("csr", help="make a certificate signing request", description=_CSR_TEXT)
    )
    _add_sign_arguments(sub.add_parser("sign", help="sign a certificate", description=_SIGN_TEXT))
    _add_ppksman_generate(sub)

    p = sub.add_parser(
        "show",
        help="show certificates or CSRs",
        description="Decode and check certificates (PEM, several per file allowed, or DER) "
        "and CSRs. Exit 1 if one breaks a PPKS rule. `show cert|csr|key FILE` (ppksman's "
        "form) is taken too.",
    )
    p.add_argument("files", nargs="+", type=Path, help="certificate or CSR files")
    p.add_argument(
        "-k",
        "--signer-key",
        "--signer_pubkey",
        type=Path,
        help="check the signature(s) with this public key",
    )
    p.set_defaults(_run=_run_show)

    p = sub.add_parser(
        "verify",
        help="verify a certificate chain (leaf first)",
        description="Verify a PPKS chain as the reference verifier does. The first "
        "certificate is the leaf; the others may come in any order. Exit 0 when valid, 1 "
        "(with the rule broken) when not.",
        epilog="modes: controller = pubcmd -> delpriv(exppriv)* -> exppriv (an endpoint "
        "checking a controller); endpoint = subcmd -> delpriv(reppriv)* (a controller "
        "checking an endpoint); agent = one agent cert (broker/proxy links).",
    )
    p.add_argument("--mode", required=True, choices=sorted(MODES), help="verification mode")
    p.add_argument(
        "--root",
        action="append",
        default=[],
        type=Path,
        metavar="PUBKEY",
        help="trusted root public key (repeat); none = any root (form only)",
    )
    p.add_argument(
        "--key",
        type=Path,
        metavar="PUBKEY",
        help="also require the leaf to hold this key (controller/endpoint key) "
        "and print the broker channels the chain proves",
    )
    p.add_argument(
        "--now",
        type=_unix_time,
        help="check validity at this Unix time, in whole seconds (default now)",
    )
    p.add_argument("certs", nargs="+", type=Path, metavar="CERT", help="certificate files")
    p.set_defaults(_run=_run_verify)


_CSR_TEXT = (
    "Make a PKCS#10 certificate signing request for TYPE, signed with the requester's "
    "private key (as ppksman does)."
)
_SIGN_TEXT = (
    "Sign a TYPE certificate with SIGNER_KEY, valid from NOT_BEFORE to NOT_AFTER (Unix "
    "seconds), for the key given with -k or the CSR given with -r. Options given here take "
    "precedence over what the CSR asks for."
)


def _add_csr_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("cert_type", choices=[t.label for t in CertType], help="certificate type")
    p.add_argument("key", type=Path, help="requester's private key")
    p.add_argument("out", type=Path, help="CSR file to write (PEM)")
    _add_field_options(p)
    _add_passphrase_options(p, "passphrase of the requester's key")
    _add_yes_option(p)
    p.set_defaults(_run=_run_csr)


def _add_sign_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("cert_type", choices=[t.label for t in CertType], help="certificate type")
    p.add_argument("signer_key", type=Path, help="signer's private key")
    p.add_argument("not_before", type=int, help="start of validity, Unix seconds")
    p.add_argument("not_after", type=int, help="end of validity, Unix seconds")
    p.add_argument("out", type=Path, help="certificate file to write (PEM)")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument(
        "-k",
        "--subject-key",
        "--signee_pubkey",
        type=Path,
        help="subject's public key file (or private key file)",
    )
    who.add_argument("-r", "--csr", "--csr_path", type=Path, help="sign this CSR")
    p.add_argument("--serial", type=_serial, help="serial number (default random)")
    _add_field_options(p)
    _add_passphrase_options(p, "passphrase of the signer's key")
    _add_yes_option(p)
    p.set_defaults(_run=_run_sign)


def _add_ppksman_generate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """ppksman's `generate {cert,csr,key}` (also spelt `gen`), so that its command lines
    run here with the program name changed (INTEROP.md): `gen cert` is `sign`, `gen csr`
    is `csr`, `gen key NAME -f FILE` is `genkey FILE` (no key store: -f is required).

    Each spelling is a parser of its own, not an argparse alias: an alias's usage and
    error lines name the first spelling (`pktlab ppks generate csr` for `gen csr`)."""
    text = (
        "ppksman's `generate` command lines: `gen cert ...` is `sign ...`, `gen csr ...` "
        "is `csr ...`, `gen key NAME -f FILE` is `genkey FILE`."
    )
    for name in ("generate", "gen"):
        if name == "generate":
            g = sub.add_parser(
                name,
                help="ppksman's names (also gen): gen cert = sign, gen csr = csr",
                description=text,
            )
        else:  # without help=: it works, and is not listed again
            g = sub.add_parser(name, description=text)
        what = g.add_subparsers(dest="ppksman_generate", metavar="WHAT")
        what.required = True
        _add_sign_arguments(what.add_parser("cert", help="= sign", description=_SIGN_TEXT))
        _add_csr_arguments(what.add_parser("csr", help="= csr", description=_CSR_TEXT))
        p = what.add_parser(
            "key",
            help="= genkey FILE",
            description="Generate an Ed25519 key pair: FILE and FILE.pub (ppksman's key "
            "store is not kept: NAME is taken and unused, -f FILE is required).",
        )
        p.add_argument("keyname", help="ppksman's key store name (unused)")
        p.add_argument("-f", "--file", type=Path, help="private key file to write (required)")
        p.add_argument("--force", action="store_true", help="overwrite existing files")
        _add_passphrase_options(p, "encrypt the private key with a passphrase")
        p.set_defaults(_run=_run_ppksman_gen_key)


def run(args: argparse.Namespace) -> int:
    try:
        rc: int = args._run(args)
    except PPKSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `| head`: quietly, 141, as `pktlab monitor` (was "error:
        from packetlab.cli.exits import EXIT_BROKEN_PIPE  # [Errno 32] Broken pipe", 1)
        from packetlab.cli.interrupt import stdout_gone

        stdout_gone()
        return EXIT_BROKEN_PIPE
    except OSError as e:
        # `[Errno 2] No such file or directory: 'x'` -> `x: No such file or directory`
        what = f"{e.filename}: {e.strerror}" if e.filename and e.strerror else str(e)
        print(f"error: {what}", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return rc


def _serial(text: str) -> int:
    # was `invalid <lambda> value`, and cryptography's "The serial number should be
    # positive." with no option named
    try:
        n = int(text, 0)
    except ValueError:
        n = 0
    if n <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return n


def _unix_time(text: str) -> float:
    t = float_in(text, -FINITE, FINITE)
    if t is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a Unix time in seconds")
    return t


# -- options -------------------------------------------------------------------------


def _add_passphrase_options(p: argparse.ArgumentParser, text: str) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--passphrase-file",
        type=Path,
        metavar="FILE",
        help=f"{text}: read it from FILE (first line)",
    )
    g.add_argument("--ask-passphrase", action="store_true", help=f"{text}: prompt for it")


def _add_yes_option(p: argparse.ArgumentParser) -> None:
    # ppksman asks "Is the above information correct?" unless -y; we never ask, and take
    # the flag so that a ppksman command line runs here unchanged.
    p.add_argument(
        "-y", "--yes", action="store_true", help="accepted for ppksman command lines (no prompts)"
    )


def _add_field_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("certificate information (cert_info)")
    g.add_argument("--pathlen", type=int, help="exppriv/delpriv: how many CA certs may follow")
    g.add_argument(
        "--del-exppriv",
        "--del_exppriv",
        action="store_true",
        help="delpriv: delegate the experiment privilege",
    )
    g.add_argument(
        "--del-reppriv",
        "--del_reppriv",
        action="store_true",
        help="delpriv: delegate the representation (subscription) privilege",
    )
    g.add_argument("-c", "--cert-desc", "--cert_description", help="free-text description")
    g.add_argument(
        "--aux-info",
        "--aux_info_str",
        metavar="NVLIST",
        help="extra name=value; pairs for cert_info",
    )
    g = p.add_argument_group("limits (cert_limit, exppriv/delpriv only)")
    for opt, field, kind in _LIMIT_OPTIONS:
        names = [f"--{opt}", f"--{opt.replace('-', '_')}"]
        helptext = _LIMIT_HELP[field]
        if kind in ("digests", "list"):
            metavar = "HEX" if kind == "digests" else "N/WINDOW_NS"
            metavar = "ADDR[/LEN]" if field == "valid_dest" else metavar
            g.add_argument(
                *names, dest=field, action="extend", nargs="+", metavar=metavar, help=helptext
            )
        elif kind == "bool":
            g.add_argument(*names, dest=field, type=int, choices=(0, 1), help=helptext)
        else:
            g.add_argument(*names, dest=field, type=int, metavar="N", help=helptext)
    g.add_argument(
        "--aux-limit",
        "--aux_limit_str",
        metavar="NVLIST",
        help="extra name=value; pairs for cert_limit ('*name' marks optional)",
    )
    g.add_argument(
        "--optional",
        action="append",
        default=[],
        metavar="FIELD",
        help="mark a limit field optional ('*' prefix); repeatable (ppksman's "
        "--opt_max_send_byte, --opt_monitor_digests, ... are taken too)",
    )
    for field, flag in _PPKSMAN_OPT_FLAGS.items():
        g.add_argument(
            f"--{flag}", dest="optional", action="append_const", const=field, help=argparse.SUPPRESS
        )


def _limit_pairs(args: argparse.Namespace) -> list[NVPair]:
    pairs: list[NVPair] = []
    optional = set(args.optional)
    for _opt, field, kind in _LIMIT_OPTIONS:
        v = getattr(args, field)
        if v is None:
            continue
        if kind == "digests":
            for d in v:  # non-ASCII failed later, in an ascii codec's words
                if not d.isascii():
                    raise ValueError(
                        f"--{_opt}: {d!r}: not hexadecimal (64 hex digits per SHA-256 digest)"
                    )
            text = "".join(d[2:] if d.startswith("0x") else d for d in v)
        elif kind == "list":
            text = ",".join(v)
        else:
            text = str(v)
        pairs.append(NVPair(field, text, field in optional))
    unknown = optional - {f for _o, f, _k in _LIMIT_OPTIONS}
    if unknown:
        raise ValueError(f"--optional: unknown limit field(s) {sorted(unknown)}")
    return pairs


def _del_type(args: argparse.Namespace) -> DelType | None:
    d = DelType.NONE
    if args.del_exppriv:
        d |= DelType.EXPPRIV
    if args.del_reppriv:
        d |= DelType.REPPRIV
    return d or None


def _passphrase(args: argparse.Namespace, prompt: str) -> bytes | None:
    if getattr(args, "passphrase_file", None) is not None:
        return args.passphrase_file.read_bytes().splitlines()[0]
    if getattr(args, "ask_passphrase", False):
        return getpass.getpass(prompt).encode()
    return None


def _load_private(path: Path, args: argparse.Namespace) -> Ed25519PrivateKey:
    data = path.read_bytes()
    pw = _passphrase(args, f"Passphrase for {path}: ")
    try:
        try:
            return load_private_key(data, pw)
        except KeyFileError as e:
            if e.reason is Reason.KEY_NEEDS_PASSPHRASE and pw is None and sys.stdin.isatty():
                pw = getpass.getpass(f"Passphrase for {path}: ").encode()
                return load_private_key(data, pw)
            raise
    except KeyFileError as e:
        raise _in_file(e, path) from None


def _load_any_public(path: Path) -> Ed25519PublicKey:
    data = path.read_bytes()
    try:
        if b"PRIVATE KEY" in data:
            return load_private_key(data).public_key()
        return load_public_key(data)
    except KeyFileError as e:
        if e.reason is Reason.KEY_NEEDS_PASSPHRASE:
            e = KeyFileError(e.reason, "an encrypted private key: give its .pub file here")
        raise _in_file(e, path) from None


def _in_file(e: KeyFileError, path: Path) -> KeyFileError:
    """`e` naming the key file: `sign` reads two keys, `verify` one per --root, and the
    refusal (`key_not_pem: not a public key: ...`) did not say which one it was."""
    return KeyFileError(e.reason, f"{path}: {e.detail}")


# -- actions -------------------------------------------------------------------------


def _run_genkey(args: argparse.Namespace) -> int:
    pub = args.path.with_name(args.path.name + ".pub")
    if not args.force and (args.path.exists() or pub.exists()):
        print(f"error: {args.path} or {pub} exists (use --force)", file=sys.stderr)
        return 1
    pw = _passphrase(args, "New passphrase: ")
    if args.ask_passphrase and getpass.getpass("Again: ").encode() != pw:
        print("error: passphrases differ", file=sys.stderr)
        return 1
    key = generate_private_key()
    write_key_pair(args.path, key, pw)
    print(f"wrote {args.path} and {pub}")
    print(f"key id: {key_id(key).hex()}")
    return 0


def _run_ppksman_gen_key(args: argparse.Namespace) -> int:
    if args.file is None:
        print(
            f"error: gen key {args.keyname}: pktlab keeps no key store: give -f FILE "
            "(writes FILE and FILE.pub)",
            file=sys.stderr,
        )
        return 1
    args.path = args.file
    return _run_genkey(args)


def _run_showkey(args: argparse.Namespace) -> int:
    data = args.path.read_bytes()
    if b"PRIVATE KEY" in data:
        raw = raw_public_key(_load_private(args.path, args))
        print("private key: yes")
    else:
        raw = raw_public_key(load_public_key(data))
    print(f"raw public key: {raw.hex()}")
    print(f"key id (sha256): {key_id(raw).hex()}")
    print(public_key_pem(raw).decode(), end="")
    return 0


def _run_csr(args: argparse.Namespace) -> int:
    key = _load_private(args.key, args)
    pem = make_csr(
        args.cert_type,
        key,
        del_type=_del_type(args),
        pathlen=args.pathlen,
        cert_desc=args.cert_desc,
        aux_info=args.aux_info,
        limits=_limit_pairs(args) + _aux_limit(args),
    )
    args.out.write_bytes(pem)
    print(f"wrote {args.out}")
    return 0


def _aux_limit(args: argparse.Namespace) -> list[NVPair]:
    if not args.aux_limit:
        return []
    try:
        return parse_nvlist(args.aux_limit, allow_optional=True)
    except ValueError as e:  # said `missing_terminator at offset 1: ...`, no option named
        raise ValueError(f"--aux-limit {args.aux_limit!r}: {e}") from None


def _run_sign(args: argparse.Namespace) -> int:
    signer = _load_private(args.signer_key, args)
    limits = _limit_pairs(args) + _aux_limit(args)
    if args.csr is not None:
        csr = parse_csr(args.csr.read_bytes())
        if csr.cert_type is not None and csr.cert_type.label != args.cert_type:
            print(
                f"warning: CSR asks for {csr.cert_type.label}, signing {args.cert_type}",
                file=sys.stderr,
            )
        cert = sign_csr(
            csr,
            signer,
            args.not_before,
            args.not_after,
            cert_type=args.cert_type,
            del_type=_del_type(args),
            pathlen=args.pathlen,
            cert_desc=args.cert_desc,
            limits=limits,
            serial=args.serial,
        )
    else:
        cert = issue_certificate(
            args.cert_type,
            signer,
            _load_any_public(args.subject_key),
            args.not_before,
            args.not_after,
            del_type=_del_type(args),
            pathlen=args.pathlen,
            cert_desc=args.cert_desc,
            aux_info=args.aux_info,
            limits=limits or None,
            serial=args.serial,
        )
    args.out.write_bytes(cert.to_pem())
    print(f"wrote {args.out}")
    _print_cert(cert, None)
    return 0


def _ts(t: int) -> str:
    try:
        iso = datetime.datetime.fromtimestamp(t, tz=datetime.UTC).isoformat()
    except (OverflowError, OSError, ValueError):
        iso = "?"
    return f"{t} ({iso})"


def _number(n: int) -> str:
    """Decimal, or hex past 64 bits: a signer may write any size, and str() of an int of
    over 4,300 digits raises."""
    return str(n) if n.bit_length() <= 64 else f"0x{n:x}"


def _print_cert(cert: Certificate, signer: bytes | None) -> None:
    print(f"  type:           {cert.cert_type.label}")
    if cert.cert_type is CertType.DELPRIV:
        print(f"  del_type:       {cert.del_type.label}")
    if cert.cert_type.is_ca:
        print(f"  pathlen:        {'unlimited' if cert.pathlen is None else _number(cert.pathlen)}")
    if len(cert.serial_bytes) <= 20:
        print(f"  serial:         {cert.serial} (0x{cert.serial:x})")
    else:  # a decimal of over 4,300 digits raises; RFC 5280 serials are <= 20 bytes
        print(f"  serial:         0x{cert.serial:x} ({len(cert.serial_bytes)} bytes)")
    print(f"  public key:     {cert.public_key.hex()}")
    print(f"  subject key id: {cert.subject_key_id.hex()}")
    print(f"  issuer key id:  {cert.authority_key_id.hex()}")
    print(f"  not before:     {_ts(cert.not_before)}")
    print(f"  not after:      {_ts(cert.not_after)}")
    if cert.cert_desc is not None:
        print(f"  description:    {cert.cert_desc!r}")
    print(f"  cert_info:      {cert.info_text}")
    if cert.limit_text is not None:
        print(f"  cert_limit:     {cert.limit_text}")
    if signer is not None:
        ok = cert.signed_by(signer) and cert.authority_key_id == key_id(signer)
        print(f"  signature:      {'valid' if ok else 'INVALID'} for the given signer key")


def _print_csr(csr: CertRequest) -> None:
    print(f"  type:           {csr.cert_type.label if csr.cert_type else '(none)'}")
    if csr.del_type:
        print(f"  del_type:       {csr.del_type.label}")
    if csr.pathlen is not None:
        print(f"  pathlen:        {_number(csr.pathlen)}")
    print(f"  public key:     {csr.public_key.hex()}")
    print(f"  key id:         {key_id(csr.public_key).hex()}")
    if csr.cert_desc is not None:
        print(f"  description:    {csr.cert_desc!r}")
    if csr.aux_info:
        print(f"  aux info:       {''.join(f'{p.name}={p.value};' for p in csr.aux_info)}")
    if csr.limit_pairs:
        text = "".join(f"{'*' if p.optional else ''}{p.name}={p.value};" for p in csr.limit_pairs)
        print(f"  cert_limit:     {text}")
    print("  signature:      valid (self-signed)")


# ppksman's `show {cert,csr,key} TARGET`: the first word is a kind, not a file.
_PPKSMAN_SHOW = {"cert": "cert", "csr": "csr", "key": "key"}


def _run_show(args: argparse.Namespace) -> int:
    first = args.files[0]
    kind = _PPKSMAN_SHOW.get(str(first))
    if kind is not None and len(args.files) > 1 and not first.exists():
        args.files = args.files[1:]
        if kind == "key":
            rc = 0
            for path in args.files:
                args.path = path
                rc = max(rc, _run_showkey(args))
            return rc
    signer = raw_public_key(_load_any_public(args.signer_key)) if args.signer_key else None
    rc = 0
    for path in args.files:
        data = path.read_bytes()
        try:
            if b"CERTIFICATE REQUEST" in data:
                csr = parse_csr(data)  # first: a refused CSR is one INVALID line
                print(f"{path}: certificate signing request")
                _print_csr(csr)
                continue
            certs = load_certificates(data)
        except PPKSError as e:
            print(f"{path}: INVALID: {e}")
            rc = 1
            continue
        for i, cert in enumerate(certs):
            suffix = f" [{i}]" if len(certs) > 1 else ""
            print(f"{path}{suffix}: certificate")
            _print_cert(cert, signer)
    return rc


def _load_chain(paths: Sequence[Path], origins: list[str] | None = None) -> list[Certificate]:
    """Every certificate of `paths`, in order; `origins` gets the file of each (FILE[k]
    for the k-th of a file of several)."""
    certs: list[Certificate] = []
    for path in paths:
        data = path.read_bytes()
        try:
            got = load_certificates(data)
        except PPKSError as e:
            if origins is not None:
                origins.append(str(path))
            raise ChainError(e.reason, e.detail, index=len(certs)) from None
        certs += got
        if origins is not None:
            origins += [f"{path}[{k}]" if len(got) > 1 else str(path) for k in range(len(got))]
    return certs


def _named(e: PPKSError, origins: Sequence[str]) -> str:
    """`e`'s detail with the file of the certificate it names: `cert #1 (d1.cert): ...`
    (a refused chain said only `cert #1`, the position on the command line)."""
    index = getattr(e, "index", None)
    head = f"cert #{index}: "
    if index is None or not 0 <= index < len(origins) or not e.detail.startswith(head):
        return e.detail
    return f"cert #{index} ({origins[index]}): {e.detail.removeprefix(head)}"


def _expected(e: PPKSError, args: argparse.Namespace) -> str:
    """What an untrusted top should have been signed by: the --root files and their key
    ids (the line named only the top's AKI, to be compared by hand with `showkey`)."""
    if e.reason is not Reason.UNTRUSTED_ROOT or not args.root:
        return ""
    roots = ", ".join(f"{p} ({key_id(_load_any_public(p)).hex()[:16]}...)" for p in args.root[:4])
    more = f" and {len(args.root) - 4} more" if len(args.root) > 4 else ""
    return f"; the --root keys: {roots}{more}"


def _run_verify(args: argparse.Namespace) -> int:
    mode = MODES[args.mode]
    origins: list[str] = []
    # The keys first, outside the verdict: a --root or --key file that is not a key is
    # an `error:` (exit 1), not `invalid: key_not_pem`, as if the chain were refused.
    roots = [raw_public_key(_load_any_public(p)) for p in args.root]
    key = raw_public_key(_load_any_public(args.key)) if args.key is not None else None
    try:
        certs = _load_chain(args.certs, origins)
        channels: Sequence[bytes] = ()
        if key is not None and mode is not AuthMode.AGENT:
            if mode is AuthMode.ENDPOINT_AUTH_CONTROLLER:
                info = parse_controller_exp_chain(certs, key, roots, args.now)
                chain, channels = info.chain, (info.channel,)
            else:
                rep = parse_endpoint_rep_chain(certs, key, roots, args.now)
                chain, channels = rep.chain, rep.channels
        else:
            chain = verify_chain(mode, certs, roots, args.now)
            if key is not None and chain.leaf.public_key != key:
                raise ChainError(Reason.LEAF_KEY_MISMATCH, "leaf is not the given key", index=0)
    except PPKSError as e:
        print(f"invalid: {e.reason.value}: {_named(e, origins)}{_expected(e, args)}")
        return 1
    names = " <- ".join(c.cert_type.label for c in chain.certs)
    print(f"valid: {args.mode} chain of {len(chain.certs)} cert(s): {names}")
    if chain.root_index is not None:
        print(f"root: {args.root[chain.root_index]}")
    else:
        print("root: any (no --root given; top signature not checked)")
    unused = len(certs) - len(chain.certs)
    if unused:
        print(f"note: {unused} certificate(s) given but not part of the chain")
    for ch in channels:
        print(f"channel: {ch.hex()}")
    return 0
