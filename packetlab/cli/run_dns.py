"""``pktlab run dns NAME...``: DNS queries from the endpoint (packetlab.measure.dns)."""

from __future__ import annotations

import argparse
from typing import Any

from packetlab.cli import pcapout
from packetlab.cli.run import RunError
from packetlab.cli.run_command import Command, Emit, Experiment, Progress, Record

EPILOG = """\
examples:
  pktlab run dns example.com                      # A, from the endpoint's DNS server
  pktlab run dns --type AAAA --type MX example.com
  pktlab run dns --tcp --server 192.0.2.53 example.com
  pktlab run dns --json --server 127.0.0.1:5353 a.test b.test
  pktlab run dns @127.0.0.1 -p 5353 example.com MX +tcp     # dig's words work too
  pktlab run dns -x 192.0.2.1                     # PTR, as dig -x

The default server is the endpoint's first configured DNS address (its memory; the
in-process endpoint takes /etc/resolv.conf). A truncated UDP answer is asked again over
TCP. RTT: reply ndata stamp minus query ntag stamp, both taken by the endpoint.
Exit status: 0 all answered, 1 some query got no answer, 2 error. See docs/dns.md.
"""


def split_server(text: str) -> tuple[str, int | None]:
    """ADDR, ADDR:PORT or [V6]:PORT; a host name instead of ADDR is resolved here."""
    import ipaddress

    text = text.strip()
    host, port = text, None
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise RunError(f"--server {text}: expected [IPv6]:PORT")
        port = rest[1:] or None
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        ipaddress.ip_address(host)
    except ValueError:  # a name, as dig's @ns.example: resolved on this host, as dig does
        from packetlab.cli.run import resolve_target

        if not host:
            raise RunError(f"--server {text}: no address") from None
        try:
            host = str(resolve_target(host, None))
        except RunError as e:
            raise RunError(f"--server {text}: {e}") from None
    if port is None:
        return host, None
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise RunError(f"--server {text}: bad port {port!r}")
    return host, int(port)


# dig's query options (`+tcp`, `+time=2`, ...) that map onto ours; the others are refused
# by name rather than looked up as a domain name.
DIG_FLAGS = {"+tcp": ("tcp", True), "+vc": ("tcp", True), "+notcp": ("tcp", False),
             "+novc": ("tcp", False), "+norecurse": ("norecurse", True),
             "+norec": ("norecurse", True), "+recurse": ("norecurse", False),
             "+rec": ("norecurse", False), "+short": ("short", True),
             "+noshort": ("short", False)}  # fmt: skip
DIG_VALUES = {"+time": "wait", "+tries": "tries", "+retry": "tries"}


def dig_style(args: argparse.Namespace) -> None:
    """Read the words dig takes among its names, in place: `@SERVER`, a record type
    (a word that is a type mnemonic, TYPEnnn included: as dig, it is the type of the name
    before it, `dig a.test MX b.test` asks a.test MX and b.test A; before any name, of the
    first), `+tcp`, `+norecurse`, `+short`, `+time=S`, `+tries=N`, `+retry=N`; then `-p
    PORT` and `-x ADDR` (PTR). Sets `args.plan`: (name, its types or None) in order."""
    import dns.exception
    import dns.rdatatype
    import dns.reversename

    names: list[str] = []
    own: list[list[str]] = []  # each name's types
    pending: list[str] = []  # types given before the first name
    for word in args.names:
        if word.startswith("@") and len(word) > 1:
            args.server = word[1:]
        elif word.startswith("+"):
            key, eq, value = word.partition("=")
            if key in DIG_FLAGS and not eq:
                attr, on = DIG_FLAGS[key]
                setattr(args, attr, on)
            elif key in DIG_VALUES and eq:
                try:
                    n = float(value) if key == "+time" else int(value) + (key == "+retry")
                except ValueError:
                    raise RunError(f"{word}: expected a number") from None
                setattr(args, DIG_VALUES[key], n)
            else:
                raise RunError(
                    f"{word}: dig option not supported here (dig-style: @SERVER, TYPE, +tcp, "
                    "+norecurse, +short, +time=S, +tries=N, +retry=N; see --help)"
                )
        elif _is_type(word, dns.rdatatype):
            (own[-1] if own else pending).append(word)
        else:
            names.append(word)
            own.append(pending)
            pending = []
    for addr in args.reverse or []:
        try:
            names.append(dns.reversename.from_address(addr).to_text())
        except (ValueError, dns.exception.DNSException):
            raise RunError(f"-x {addr}: not an IP address") from None
        own.append(pending or ["PTR"])
        pending = []
    if not names:
        raise RunError("no name to look up (give NAME, or -x ADDR)")
    if args.port is not None:
        if not 1 <= args.port <= 65535:
            raise RunError(f"-p {args.port}: bad port")
        if args.server is None:
            raise RunError("-p PORT needs a server: @ADDR or --server ADDR")
        host, _ = split_server(args.server)
        args.server = f"[{host}]:{args.port}" if ":" in host else f"{host}:{args.port}"
    args.names = names
    args.plan = [(name, mine or args.types) for name, mine in zip(names, own, strict=True)]


def _check_name(name: str) -> None:
    import dns.exception
    import dns.name

    try:
        dns.name.from_text(name)
    except dns.exception.DNSException as e:
        raise RunError(f"{name!r} is not a legal name: {e}") from None


def _is_type(word: str, rdatatype: Any) -> bool:
    if not word.isalnum() or word.isdigit():
        return False
    try:
        rdatatype.from_text(word.upper())
    except rdatatype.UnknownRdatatype:
        return False
    return True


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "names",
        metavar="NAME",
        nargs="*",
        help="names to look up; dig's words work among them: @SERVER, a TYPE after a "
        "name, +tcp, +norecurse, +time=S, +tries=N",
    )
    p.add_argument(
        "-x", dest="reverse", action="append", metavar="ADDR",
        help="reverse lookup of ADDR (PTR), as dig -x",
    )  # fmt: skip
    p.add_argument("-p", "--port", type=int, metavar="PORT", help="server port (as dig -p)")
    p.add_argument(
        "--short", action="store_true",
        help="only the answers' data, one a line (as dig +short); no summary line",
    )  # fmt: skip
    p.add_argument(
        "-t",
        "--type",
        dest="types",
        action="append",
        metavar="TYPE",
        help="record type (A, AAAA, MX, TXT, ANY, TYPE65, ...); repeat for several [default: A]",
    )
    p.add_argument("--tcp", action="store_true", help="ask over TCP (default: UDP)")
    p.add_argument(
        "--server",
        metavar="ADDR[:PORT]",
        help="DNS server, address or name (default: the endpoint's configured DNS server, port 53)",
    )
    p.add_argument(
        "--wait", type=float, default=2.0, metavar="S", help="seconds per try [default: 2]"
    )
    p.add_argument(
        "--tries", type=int, default=2, metavar="N", help="UDP tries per query [default: 2]"
    )
    p.add_argument(
        "--norecurse", action="store_true", help="clear the RD bit (ask an authoritative server)"
    )
    pcapout.add_option(p)


def experiment(args: argparse.Namespace, emit: Emit, progress: Progress) -> Experiment:
    from packetlab.measure.dns import dns_query, parse_qtype

    dig_style(args)
    plan = [(name, [parse_qtype(t) for t in (types or ["A"])]) for name, types in args.plan]
    for name in args.names:  # a bad name is an error before anything is sent, as dig
        _check_name(name)
    server, port = split_server(args.server) if args.server else (None, None)
    if not 0 < args.wait <= 60 or not 1 <= args.tries <= 10:
        raise RunError("--wait must be in (0, 60] and --tries 1..10")

    recorder = pcapout.recorder_for(args)

    async def run(session: Any) -> None:
        total = sum(len(types) for _, types in plan)
        n = 0
        for name, types in plan:
            for qtype in types:
                if progress.stopping:  # Ctrl-C: no new query
                    return
                n += 1
                progress(f"dns {n}/{total}: {name} {qtype}")
                result = await dns_query(
                    session,
                    name,
                    qtype,
                    server=server,
                    port=port or 53,
                    tcp=args.tcp,
                    timeout=args.wait,
                    attempts=args.tries,
                    recursion=not args.norecurse,
                    recorder=recorder,
                )
                emit(result.to_dict())

    return pcapout.recording(args, recorder, run)


def row(r: Record) -> str | None:
    if r["type"] == "summary":
        return f";; {r['queries']} queries, {r['answered']} answered, {r['answers']} answers"
    head = f";; {r['qname']} {r['qtype']} @{r['server']}#{r['port']} ({r['proto']})"
    if "error" in r:
        return f"{head}: {r['error']}"
    lines = [f"{head}: {r['rcode']}, {r['rtt_us']:.0f} us" if r["rtt_us"] is not None else head]
    for a in r["answers"]:
        lines.append(f"{a['name']}\t{a['ttl']}\tIN\t{a['type']}\t{a['data']}")
    return "\n".join(lines)


def short_row(r: Record) -> str | None:
    """dig +short: each answer's data; a query without answer says why (as dig's
    `;; connection timed out; no servers could be reached`); no summary."""
    if r["type"] != "dns":
        return None
    if "error" in r:
        return f";; {r['qname']} {r['qtype']}: {r['error']}"
    return "\n".join(a["data"] for a in r["answers"]) or None


def row_for(args: argparse.Namespace) -> Any:
    return short_row if getattr(args, "short", False) else row


def summary(records: list[Record]) -> Record:
    got = [r for r in records if r["type"] == "dns"]
    ok = [r for r in got if "error" not in r]
    rtts = sorted(r["rtt_us"] for r in ok if r.get("rtt_us") is not None)
    return {
        "queries": len(got),
        "answered": len(ok),
        "answers": sum(len(r["answers"]) for r in ok),
        "rtt_us_median": rtts[len(rtts) // 2] if rtts else None,
    }


def budget(args: argparse.Namespace) -> float:
    tries = 1 if args.tcp else args.tries
    plan = getattr(args, "plan", None) or [(n, args.types) for n in args.names]
    queries = sum(len(types or ["A"]) for _, types in plan)
    return queries * (tries + 1) * args.wait


COMMAND = Command(
    name="dns",
    help="DNS queries over UDP or TCP",
    description="Ask a DNS server from the endpoint (UDP, or TCP with --tcp; a truncated "
    "UDP answer is retried over TCP) and print the answer section like dig.",
    configure=configure,
    experiment=experiment,
    row=row,
    summary=summary,
    budget=budget,
    epilog=EPILOG,
    split="names",
    row_for=row_for,
)


def add_parser(sub: Any) -> None:
    from packetlab.cli.run_command import add_command

    add_command(sub, COMMAND)
