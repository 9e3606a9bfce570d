"""``pktlab run sslcert HOST[:PORT]``: the server's TLS certificate chain as the endpoint
meets it (RIPE Atlas `sslcert`; the essentials of `openssl s_client -showcerts`), with
`run http`'s TLS (packetlab.measure.sslcert)."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from packetlab.cli.run_command import Command, Emit, Experiment, Progress, Record

DEFAULT_TIMEOUT_S = 10.0

EPILOG = """\
examples:
  pktlab run sslcert example.net                  # port 443, SNI example.net
  pktlab run sslcert 127.0.0.1:8443 --sni www.test --showcerts
  pktlab run sslcert -6 --verify --json example.net:853

Text: s_client's `Certificate chain` lines (s: subject, i: issuer, v: validity) with
each certificate's SHA-256 fingerprint, then its `New, TLSvX, Cipher is C` line. JSON:
one `sslcert` record with RIPE Atlas' fields (method, ver, cert: the chain in PEM as
sent, ttc: ms to connect, rt: ms from the connect's start to the certificates, alert,
dst_addr, dst_port). Times are the endpoint's. The chain is reported as sent, never
refused (self-signed, expired); --verify says whether it verifies against the system
store (--cafile FILE: FILE's) and names HOST (or --sni). A failure (refused, timeout,
an alert, a server that does not speak TLS) is the record's one-line `error`, exit
status 1. See docs/sslcert.md.
"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="HOST[:PORT]",
                   help="address or host name, [IPv6]:PORT; port 443 by default")  # fmt: skip
    fam = p.add_mutually_exclusive_group()
    fam.add_argument("-4", dest="family", action="store_const", const=4, help="use IPv4")
    fam.add_argument("-6", dest="family", action="store_const", const=6, help="use IPv6")
    p.add_argument("--sni", metavar="NAME",
                   help="the server name sent (s_client -servername; default: HOST when a "
                   "name, none for an address)")  # fmt: skip
    p.add_argument("--verify", action="store_true",
                   help="also say whether the chain verifies against the system store and "
                   "names HOST (or --sni)")  # fmt: skip
    p.add_argument("--cafile", metavar="FILE",
                   help="--verify against the CA certificates in PEM file FILE instead of "
                   "the system store (s_client -CAfile)")  # fmt: skip
    p.add_argument("--showcerts", action="store_true",
                   help="print each certificate in PEM too (s_client -showcerts)")  # fmt: skip


def split_target(text: str) -> tuple[str, int]:
    """HOST, HOST:PORT, [V6]:PORT or a bare IPv6 address: (host, port)."""
    from packetlab.cli.run import RunError
    from packetlab.measure.sslcert import DEFAULT_PORT

    host, port = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    if not port:
        return host, DEFAULT_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise RunError(f"bad port in {text!r}: expected 1..65535")
    return host, int(port)


def _where(args: argparse.Namespace) -> tuple[Any, int]:
    if not hasattr(args, "_where"):
        from packetlab.cli.run import resolve_target

        host, port = split_target(args.target)
        args._where = (resolve_target(host, args.family), port)
    where: tuple[Any, int] = args._where
    return where


def experiment(args: argparse.Namespace, emit: Emit, progress: Progress) -> Experiment:
    import ipaddress

    from packetlab.measure.sslcert import sslcert

    addr, port = _where(args)
    host = split_target(args.target)[0]
    try:
        ipaddress.ip_address(host)
        sni = args.sni
    except ValueError:  # a name: it is the SNI unless --sni says otherwise (as s_client)
        sni = args.sni or host

    async def run(session: Any) -> None:
        progress(f"sslcert {args.target}")
        limit = handshake_timeout(args.timeout)
        emit(await sslcert(session, addr, port, sni=sni, verify=args.verify, name=host,
                           cafile=args.cafile, timeout=limit))  # fmt: skip

    return run


def handshake_timeout(timeout: float | None) -> float:
    """The connect's and handshake's limit: --timeout less a margin, so that a silent
    server is the record's error (exit 1) before the run's own limit ends it (exit 2)."""
    if timeout is None:
        return DEFAULT_TIMEOUT_S
    return max(timeout - 0.5, timeout / 2)


def _openssl_date(iso: str) -> str:
    """2026-12-07T13:00:00Z as OpenSSL prints it: `Dec  7 13:00:00 2026 GMT`."""
    t = datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ")
    return f"{t:%b} {t.day:>2} {t:%H:%M:%S %Y} GMT"


def text(r: Record, showcerts: bool = False) -> str | None:
    if r["type"] != "sslcert":
        return None
    dst = f"[{r['dst_addr']}]" if r["af"] == 6 else r["dst_addr"]
    lines = []
    if "ttc" in r:
        lines.append(f"CONNECTED {dst}:{r['dst_port']} in {r['ttc']:.3f} ms")
    certs = r.get("certs") or []
    if certs:
        lines += ["---", "Certificate chain"]
    for n, c in enumerate(certs):
        lines += [
            f"{n:>2} s:{c['subject']}",
            f"   i:{c['issuer']}",
            f"   v:NotBefore: {_openssl_date(c['not_before'])}; "
            f"NotAfter: {_openssl_date(c['not_after'])}",
            f"   sha256 Fingerprint={c['sha256']}",
        ]
        if showcerts:
            lines.append(r["cert"][n].rstrip("\n"))
    if "ver" in r:
        name = "TLSv1" if r["ver"] == "1.0" else f"TLSv{r['ver']}"  # (OpenSSL's names)
        lines += ["---", f"New, {name}, Cipher is {r['cipher']}"]
    if "rt" in r:
        lines.append(f"certificates {r['rt']:.3f} ms after the connect began")
    if "verified" in r:
        lines.append("Verification: OK" if r["verified"] else
                     f"Verification error: {r['verify_error']}")  # fmt: skip
    if "error" in r:
        lines.append(f"error: {r['error']}")
    return "\n".join(lines)


def row_for(args: argparse.Namespace) -> Any:
    return lambda r: text(r, args.showcerts)


def summary(records: list[Record]) -> Record:
    return {"handshakes": sum(1 for r in records if r["type"] == "sslcert" and "ver" in r)}


def budget(args: argparse.Namespace) -> float:
    return float(args.timeout or DEFAULT_TIMEOUT_S)


def target(args: argparse.Namespace) -> str:
    return str(_where(args)[0])


COMMAND = Command(
    name="sslcert",
    help="the server's TLS certificate chain, version and cipher (RIPE Atlas sslcert)",
    description="Connect from the endpoint to HOST:PORT, run a TLS handshake (SNI) and "
    "report the certificate chain as the server sent it, the TLS version and cipher, the "
    "times and the server's alert.",
    configure=configure,
    experiment=experiment,
    row=text,
    row_for=row_for,
    summary=summary,
    budget=budget,
    target=target,
    epilog=EPILOG,
)


def add_parser(sub: Any) -> None:
    from packetlab.cli.run_command import add_command

    add_command(sub, COMMAND)
