"""``pktlab run dns NAME...``: DNS queries from the endpoint (packetlab.measure.dns)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from packetlab.cli import pcapout
from packetlab.cli import run_dns_exits as exits
from packetlab.cli import run_dns_switches as switches
from packetlab.cli.run import RunError
from packetlab.cli.run_command import Command, Emit, Experiment, Progress, Record

EPILOG = """\
examples:
  pktlab run dns example.com                      # A, from the endpoint's DNS server
  pktlab run dns example.com AAAA example.com MX   # two types: the name twice, as dig
  pktlab run dns --tcp --server 192.0.2.53 example.com
  pktlab run dns --json --server 127.0.0.1:5353 a.test b.test
  pktlab run dns @127.0.0.1 -p 5353 example.com MX +tcp     # dig's words work too
  pktlab run dns -x 192.0.2.1                     # PTR, as dig -x
  pktlab run dns +dnssec +bufsize=4096 @192.0.2.53 example.com DNSKEY
  pktlab run dns +noall +answer -6 example.com AAAA
  pktlab run dns --compact a.test b.test          # one ;; line per query, then its answers
  pktlab run dns +trace @192.0.2.53 www.example.com  # iterative, from the server's root NS
  pktlab run dns +multiline +dnssec example.com SOA example.com DNSKEY   # BIND's long forms
  pktlab run dns +nsid @192.0.2.53 example.com    # the server's NSID (a cookie goes too)
  pktlab run dns -c CH @192.0.2.53 version.bind TXT
  pktlab run dns @192.0.2.53 -f queries.txt       # dig's batch mode: a query line a line
  pktlab run dns +trace +tcp @192.0.2.53 www.example.com   # every step over TCP
  pktlab run dns @192.0.2.53 a.test -t MX @192.0.2.54 b.test  # a.test MX (.53, then .54), b.test A
  pktlab run dns @192.0.2.53 example.com AXFR     # a zone transfer over TCP, as dig
  pktlab run dns @192.0.2.53 example.com IXFR=42  # the changes since serial 42 (or the zone)
  pktlab run dns +nottlid +noclass +nocrypto example.com DNSKEY   # dig's record forms
  pktlab run dns +qr +subnet=192.0.2.0/24 +padding=128 example.com  # the query too, as sent
  pktlab run dns @192.0.2.53 @192.0.2.54 +nofail example.com  # SERVFAIL: the next server

Output is dig's (header, OPT pseudosection, question, answer, authority, additional,
statistics; +[no]cmd, +[no]comments, +[no]question, +[no]answer, +[no]authority,
+[no]additional, +[no]stats, +[no]all, +short), with the endpoint's RTT as the query
time. The default server is the endpoint's first configured DNS address (its memory; the
in-process endpoint takes /etc/resolv.conf). A truncated UDP answer is asked again over
TCP. A closed UDP port is "connection refused" at once when the endpoint has raw sockets
(it captures the ICMP port unreachable); without them it is "no answer" after the tries.
A zone transfer (AXFR, IXFR=SERIAL) is read over TCP until its last SOA and printed as
dig prints it (the records, then the XFR size; +comments/+question: each message's
header/question); a refusal is dig's "; Transfer failed." (exit 0), a server that closes
or goes silent mid-transfer is asked again (+tries), a transfer holds --xfr-max records
at most. IXFR=SERIAL +notcp is asked over UDP and printed as a query's answer, as dig
(truncated: the transfer over TCP). Exit status: 0 all answered (NXDOMAIN too), 1 some
query got no answer (dig: 9), 2 error (dig: 1 usage, 10 internal); --dig-exit-codes:
dig 9.18's (0, 1 usage, 8 a -f file not opened, 9 the last lookup got no reply, 10).
Ctrl-C: 130. See docs/dns.md.
"""
XFR_MAX_RECORDS = 100_000  # measure.dnsxfr's (not imported here: dnspython loads late)


def _xfr_max(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 10_000_000:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of records, 1..10000000")
    return int(text)


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "names",
        metavar="NAME",
        nargs="*",
        help="names to look up; dig's words work among them: @SERVER, a TYPE or CLASS after "
        "a name (AXFR, IXFR=SERIAL: a zone transfer), +tcp (+vc), +ignore, +norecurse, "
        "+dnssec, +[no]edns[=N], +bufsize=N, +trace, "
        "+time=S, +tries=N, +retry=N, +short, +[no]multiline, +split=N, +[no]nsid, "
        "+[no]cookie[=HEX], +[no]onesoa (AXFR: the first SOA only), +[no]cmd, "
        "+[no]comments, +[no]question, +[no]answer, +[no]authority, +[no]additional, "
        "+[no]stats, +[no]all; the records' form: +[no]ttlid, +[no]class, +[no]ttlunits "
        "(TTLs as 1h30m), +[no]crypto (keys as [key id = N], signatures and digests "
        "[omitted]), +[no]rrcomments (DNSKEY's and SOA's comments; default: with "
        "+multiline), +[no]unknownformat (RFC 3597's \\# N HEX), +[no]identify (+short: "
        "the server and time after each answer); the query: +[no]qr (print it as sent), "
        "+[no]header-only (no question), +[no]aaflag, +[no]adflag (on by default), "
        "+[no]cdflag, +[no]raflag, +[no]tcflag, +[no]zflag (header bits), +opcode=NAME|N, "
        "+subnet=ADDR[/PREFIX] (EDNS client subnet; 0: 0.0.0.0/0), +[no]expire, "
        "+[no]keepalive, +padding=N (a multiple of N bytes, 0..512), +[no]fail (+nofail: "
        "a SERVFAIL reply asks the next server), +ednsopt=CODE[:HEX] (CODE a number or "
        "dig's name: NSID, ECS, EXPIRE, COOKIE, KEEPALIVE, PAD, ...; +noednsopt: none), "
        "+ednsflags=N, +[no]coflag (EDNS flag bits), +qid=N (the message ID), "
        "+[no]ednsnegotiation (BADVERS asked again with the version it says), +[no]expandaaaa "
        "(AAAA written whole), +timeout=S (+time=S); +search, +showsearch, +domain=NAME, "
        "+ndots=N (this host's resolv.conf search list, as dig); +[no]yaml (dig's YAML "
        "items; not with +trace or transfers); +[no]besteffort "
        "(+nobesteffort: a reply BIND reads only with its best effort is dig's Got bad "
        "packet); +[no]idnin (a Unicode name asked in its xn-- form, IDNA 2008), "
        "+[no]idnout (xn-- labels written in Unicode; both off by default: dig's defaults "
        "off a terminal); +nssearch (the zone's NS from the server, then each one's SOA, as "
        "dig's lines); +[no]keepopen (one TCP connection a server for the run's queries); "
        "+[no]tls (DNS over TLS, port 853 unless -p; no certificate check unless "
        "+tls-ca[=FILE]: FILE's CAs or the system store, against +tls-hostname=NAME or "
        "the server); +[no]https[=PATH] (DNS over HTTPS: the query POSTed to PATH, "
        "default /dns-query, over HTTP/2; port 443 unless -p; certificates as +tls), "
        "+[no]https-get (GET), +[no]http-plain[=PATH], +[no]http-plain-get (plain HTTP/2, "
        "port 80); "
        "each word by its first letters, as dig 9.18 reads them (+ans, "
        "+noal, +tim=3; one that begins several words is refused, as dig's Invalid option)",
    )
    p.add_argument(
        "-x", dest="reverse", action="append", metavar="ADDR",
        help="reverse lookup of ADDR (PTR), as dig -x",
    )  # fmt: skip
    p.add_argument("-p", "--port", type=int, metavar="PORT", help="server port (as dig -p)")
    p.add_argument(
        "-q", dest="qnames", action="append", metavar="NAME",
        help="a name to look up, where it stands, even one that reads as a type or class "
        "(as dig -q)",
    )  # fmt: skip
    p.add_argument(
        "-u", dest="usec", action="store_true",
        help="query times in microseconds (`;; Query time: N usec`, `in N us`), as dig -u",
    )  # fmt: skip
    for flag, why in (
        ("-r", "dig's: do not read ~/.digrc; ours never reads it"),
        ("-m", "dig's memory debugging"),
        ("-i", "dig 9.18 ignores it too"),
    ):
        p.add_argument(flag, action="store_true", help=f"taken and ignored ({why})")
    p.add_argument(
        "-b", dest="bind", metavar="ADDR[#PORT]",
        help="refused: the queries go from the endpoint, from its address (dig -b binds "
        "its source)",
    )  # fmt: skip
    p.add_argument(
        "-c", "--class", dest="qclass", metavar="CLASS", action="append",
        help="query class: IN, CH, HS, NONE, ANY, CLASSnnn (as dig -c) [default: IN]",
    )  # fmt: skip
    p.add_argument(
        "-f", "--batch", metavar="FILE",
        help=f"dig's batch mode: a query line per line of FILE ('-': stdin), each with dig's "
        f"words, the command line's options its defaults (at most {switches.BATCH_LINES} lines)",
    )  # fmt: skip
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
        help="record type (A, AAAA, MX, TXT, ANY, TYPE65, ...), as dig -t: after a name "
        "that name's, before any name every name's; one type a query: given again, the last "
        "is asked, with dig's ';; Warning, extra type option' on stderr (two types: give "
        "the name twice); -t with a type dig does not read: dig's ';; Warning, ignoring "
        "invalid type' and the type it had; --type with one: an error [default: A]",
    )
    p.add_argument("--tcp", action="store_true", help="ask over TCP (default: UDP)")
    p.add_argument(
        "-y", dest="tsig_y", metavar="[HMAC:]NAME:SECRET",
        help="sign the queries and transfers with this TSIG key (secret in base64; HMAC "
        "hmac-md5 (default, as dig 9.18), hmac-sha1, -sha224, -sha256, -sha384, -sha512; "
        "HMAC-BITS, e.g. hmac-sha256-128: the MAC cut to BITS) and check the replies' "
        "signatures, as dig -y (+trace: each step; on a -f line: the first line's is the "
        "run's key, as dig 9.18)",
    )  # fmt: skip
    p.add_argument(
        "-k", dest="tsig_file", metavar="FILE",
        help='the TSIG key from a BIND key file (key "NAME" { algorithm hmac-sha256; '
        'secret "BASE64"; };), as dig -k (with -y too: this key, as dig 9.18)',
    )  # fmt: skip
    p.add_argument(
        "--xfr-max", type=_xfr_max, default=XFR_MAX_RECORDS, metavar="N",
        help="records a zone transfer (AXFR, IXFR=SERIAL) may hold, its retries' included; "
        f"past it the transfer stops with an error [default: {XFR_MAX_RECORDS}]",
    )  # fmt: skip
    p.set_defaults(nsid=False, cookie=True, multiline=False, split=None, ignore=False,
                   onesoa=False, **switches.DEFAULTS)  # fmt: skip
    p.add_argument(
        "--server",
        metavar="ADDR[:PORT]",
        help="DNS server, address or name (default: the endpoint's configured DNS server, port 53)",
    )
    p.add_argument(
        "--wait",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds per try (+time=S) [default: 5, as dig]",
    )
    p.add_argument(
        "--tries",
        type=int,
        default=3,
        metavar="N",
        help="tries per query (+tries=N) [default: 3, as dig]",
    )
    p.add_argument(
        "--norecurse", action="store_true", help="clear the RD bit (ask an authoritative server)"
    )
    p.add_argument(
        "--dnssec", action="store_true", default=None,
        help="set the DO bit: DNSSEC records (RRSIG, NSEC...) come too (as dig +dnssec)",
    )  # fmt: skip
    p.add_argument(
        "--bufsize", type=int, metavar="N",
        help="EDNS UDP payload size offered (as dig +bufsize=N) [default: 1232]",
    )  # fmt: skip
    p.add_argument(
        "--no-edns", dest="edns", action="store_const", const=-1, default=0,
        help="send no OPT record (as dig +noedns); +edns=N sends EDNS version N",
    )  # fmt: skip
    fam = p.add_mutually_exclusive_group()
    fam.add_argument(
        "-4", dest="family", action="store_const", const=4,
        help="IPv4 only: the endpoint's IPv4 DNS server, an IPv4 @SERVER (as dig -4)",
    )  # fmt: skip
    fam.add_argument(
        "-6", dest="family", action="store_const", const=6,
        help="IPv6 only (as dig -6)",
    )  # fmt: skip
    p.add_argument(
        "--trace", action="store_true",
        help="resolve iteratively from the server's root NS down, each step shown as it "
        "comes (as dig +trace; DO bit set, as dig)",
    )  # fmt: skip
    p.add_argument(
        "--compact", action="store_true",
        help="instead of dig's sections: one ';;' line per query (rcode, endpoint RTT in "
        "us) then its answer lines, and a summary line",
    )  # fmt: skip
    p.add_argument(
        "--dig-exit-codes", action="store_true",
        help="exit as dig 9.18 does: 0 when the last lookup was answered (a bad packet, "
        "NXDOMAIN, SERVFAIL, a failed transfer too), 9 when it got no reply (a timeout, "
        "a refused connection, +nssearch with no server reached), 1 a usage error, 10 a "
        "bad +WORD=NUMBER, an illegal name or an error of the run, 8 a -f FILE not "
        "opened (default: ours, 0 all answered, 1 one unanswered, 2 an error)",
    )  # fmt: skip
    pcapout.add_option(p)


def experiment(args: argparse.Namespace, emit: Emit, progress: Progress) -> Experiment:
    from packetlab.cli.run_dns_ask import (
        _ixfr_over_udp,
        _ixfr_udp,
        _nssearch,
        _search,
        _transfer,
        _tsig_key,
    )
    from packetlab.cli.run_dns_words import (
        Unresolved,
        _check_name,
        _class_of,
        _host_text,
        _same_line,
        _show_line_warnings,
        dig_style,
        idn_name,
        in_batch,
        is_xfr,
        skip_unresolved,
        split_server,
        stop_here,
        stop_line,
    )
    from packetlab.measure.dns import EDNS_PAYLOAD, dns_trace, parse_qtype

    dig_style(args)
    # (name, types, class, options, servers in dig's order, dig's lines before the lookup)
    plan: list[tuple[str, list[Any], str, Any, list[tuple[str | None, int]], list[str]]] = []
    for name, types, cls, line in args.plan:
        o = line or args  # a batch line's options, else the command line's
        if vars(o).get("stop") is not None:  # a -f line dig stops at (_batch_lines)
            if not plan:  # nothing asked before it: the error before anything is sent
                _show_line_warnings(o)
                stop_here(o)
            plan.append((name, [], "IN", o, [(None, 53)], []))
            break
        try:
            name = idn_name(name, o.idnin)  # +idnin: a Unicode name in its xn-- form
            _check_name(name)  # dig: when its turn comes (the first: before anything)
            servers: list[tuple[str | None, int]] = []  # dig's order: tried until one answers
            texts: dict[str, str] = {}  # address -> as typed, for ";; SERVER: ADDR#PORT(TEXT)"
            if o.tls_mode and o.doh:  # dig 9.18.49: +tls with +https asks over DoT
                o.doh = None
            if getattr(o, "tcp_set", False) and not o.tcp:  # dig: +notcp is UDP, port 53,
                o.tls, o.doh = False, None  # whatever +tls, +https said (before or after)
            skipped: list[str] = []  # -6: dig's line for each IPv4 server, at each lookup
            typed_servers = getattr(o, "servers", None) or ([o.server] if o.server else [])
            try:
                split = [(typed, split_server(typed, o.family)) for typed in typed_servers]
            except Unresolved as e:
                if not skip_unresolved(o, e):
                    raise
                plan.append((name, [], "IN", o, [(None, 53)], []))  # its warning, no query
                continue
            for typed, (server, port) in split:
                if o.family == 4 and ":" in server:  # (dig: fatal, `address family not supported`)
                    raise RunError(f"-4: the server {server} is not an IPv4 address")
                if o.family == 6 and ":" not in server:
                    skipped.append(f"Skipping mapped address '::ffff:{server}'")
                    continue
                # dig's ports: DNS over HTTPS's, plain HTTP's, DNS over TLS's
                default = {"https": 443, "http": 80}.get(o.doh or "", 853 if o.tls else 53)
                servers.append((server, o.port or port or default))  # -p: every server's, as dig
                texts.setdefault(server, _host_text(typed))
            if texts:
                o.server_texts = texts
            if not 0 < o.wait <= 60:  # was one message for both, naming neither's value
                raise RunError(f"+time/--wait {o.wait:g}: must be in (0, 60] seconds")
            if not 1 <= o.tries <= 10:
                raise RunError(f"+tries/--tries {o.tries}: must be 1..10 (+retry=N: N+1 tries)")
            try:
                cert = _client_cert(o)
            except RunError as e:
                if not getattr(args, "dig_exit_codes", False):
                    raise  # ours: an error before anything is sent, exit 2
                # dig 9.18.49: `TLS context cannot be created` for each TLS lookup, status
                # unchanged (its reason on stderr, as dig logs it there)
                print(f"pktlab run dns: {e}", file=sys.stderr)
                cert, o.tls_context_failed = None, True
            if o.tls and not o.doh and not hasattr(o, "dot"):  # dig +tls: one client a line's
                o.dot = _dot_client(o, cert)
            if o.doh and not hasattr(o, "doh_client"):  # dig +https, +http-plain
                from packetlab.measure.dnstls import DohClient

                o.doh_client = DohClient(o.doh == "https", o.doh_path, bool(o.doh_get),
                                         o.tls_ca is not None or cert is not None, o.tls_ca,
                                         o.tls_hostname, cert)  # fmt: skip
            qtypes = [t if is_xfr(t) else parse_qtype(t) for t in (types or ["A"])]
            if getattr(o, "yaml", False) and (o.trace or any(is_xfr(t) for t in qtypes)):
                raise RunError("+yaml: not built for +trace and zone transfers (AXFR, IXFR)")
            if typed_servers and not servers:  # -6 and IPv4 servers only: none to ask
                skipped.append(NO_SERVERS)
            plan.append((name, qtypes, _class_of(cls or "IN", "-c"), o, servers or [(None, 53)],
                         skipped))  # fmt: skip
        except RunError as e:
            at_name = getattr(e, "at_name", False)  # dig: at that name's lookup, in turn
            if not in_batch(o) and not (at_name and plan):
                raise  # the command line's words: an error before anything is sent
            # dig 9.18 -f: the lines before it asked, then its error at this line
            plan[:] = [p for p in plan if not _same_line(p[3], o, e)]
            if not plan:  # nothing asked before it: the error before anything is sent
                _show_line_warnings(o)
                raise
            plan.append((name, [], "IN", stop_line(o, e), [(None, 53)], []))
            break

    tsig = _tsig_key(args)
    if tsig is not None:  # signed and checked on dig's host's clock: the endpoint's
        from dataclasses import replace

        tsig = replace(tsig, now=progress.clock.now)
    recorder = pcapout.recorder_for(args)

    async def run(session: Any) -> None:
        from packetlab.measure.dnstransport import KeptStreams

        kept = KeptStreams()  # dig +keepopen: a TCP connection a server for the run
        try:
            await queries(session, kept)
        finally:
            await kept.close()

    async def queries(session: Any, kept: Any) -> None:
        total = sum(len(p[1]) for p in plan)
        n = 0
        for name, types, qclass, o, servers, skipped in plan:
            args.view = o  # the display options of the line being shown (dig -f)
            _show_line_warnings(o)  # dig -f: a line's warnings before its answers
            stop_here(o)  # dig -f: a line in error ends the run when its turn comes
            for qtype in types:
                if progress.stopping:  # Ctrl-C: no new query
                    return
                n += 1
                progress(f"dns {n}/{total}: {name} {qtype}")
                if skipped and skipped[-1] == NO_SERVERS:  # dig: its lines, no lookup
                    emit({"type": "dns", "qname": name, "qtype": str(qtype), "server": "",
                          "port": servers[0][1], "proto": "udp", "tries": 0,
                          "notes": skipped[:-1], "error": NO_SERVERS,
                          "error_kind": "family"})  # fmt: skip
                    continue
                out = _with_notes(emit, skipped)  # dig's skipped servers before it
                unmade = _tls_unmade(o)
                if unmade:  # dig: its line, the lookup not made
                    server, port = servers[0]
                    out({"type": "dns", "qname": name, "qtype": str(qtype),
                         "server": server or "", "port": port, "proto": "tls", "tries": 0,
                         "error": unmade, "error_kind": "tls"})  # fmt: skip
                    continue
                if _ixfr_over_udp(qtype, o):  # dig: asked as a query, TC: the transfer
                    result = await _ixfr_udp(session, servers, name, qtype, o, qclass,
                                             recorder, progress, tsig)  # fmt: skip
                    out(result.to_dict())
                    continue
                if is_xfr(qtype):  # over TCP, as dig
                    xfr = await _transfer(
                        session, servers, name, qtype, o, qclass, recorder, progress, tsig=tsig
                    )
                    out(xfr.to_dict())
                    continue
                if o.trace:  # from the first server, as dig
                    server, port = servers[0]
                    await dns_trace(
                        session,
                        name,
                        qtype,
                        server=server,
                        port=port,
                        tcp=o.tcp,
                        tcp_fallback=not o.ignore,
                        timeout=o.wait,
                        attempts=o.tries,
                        edns=False if o.edns < 0 else o.edns,
                        payload=EDNS_PAYLOAD if o.bufsize is None else o.bufsize,
                        dnssec=o.dnssec is not False,  # on unless +nodnssec, as dig
                        family=o.family,
                        on_step=_as_dicts(out),
                        nsid=o.nsid,
                        cookie=o.cookie,
                        tsig=tsig,  # signed, as dig signs each step
                    )
                    continue
                asked: dict[str, Any] = dict(
                    # dig 9.18: ANY over TCP unless +[no]tcp was given
                    tcp=o.tcp or (qtype == "ANY" and not getattr(o, "tcp_set", False)),
                    tcp_fallback=not o.ignore,  # +ignore: a truncated answer as it came
                    timeout=o.wait,
                    attempts=o.tries,
                    recursion=not o.norecurse,
                    edns=False if o.edns < 0 else o.edns,
                    payload=EDNS_PAYLOAD if o.bufsize is None else o.bufsize,
                    dnssec=bool(o.dnssec),
                    family=o.family,
                    recorder=recorder,
                    qclass=qclass,
                    nsid=o.nsid,
                    cookie=o.cookie,
                    tsig=tsig,
                    bits=switches.query_bits(o),
                    keep_query=bool(o.qr),
                    servfail_next=not o.fail,
                    kept=kept if o.keepopen else None,
                    tls=getattr(o, "dot", None),
                    doh=getattr(o, "doh_client", None),
                )
                if o.nssearch:  # dig +nssearch: the zone's NS, each one's SOA
                    await _nssearch(session, servers, name, out, **asked)
                    continue
                names, origins = switches.search_plan(name, o)
                showsearch = bool(getattr(o, "showsearch", False))  # (a -f line's: global)
                await _search(session, servers, names, qtype, out, showsearch, origins, **asked)

    return pcapout.recording(args, recorder, run)


def _dot_client(o: argparse.Namespace, cert: tuple[str, str] | None) -> Any:
    """dig +tls's client: certificates checked only with +tls-ca (its FILE, or the
    system store), against +tls-hostname or the server; `cert` the client's."""
    from OpenSSL import SSL

    from packetlab.measure.dnstls import DotClient

    try:
        # dig 9.18.49: a client certificate turns the server's check on (+tls-ca's)
        verify = o.tls_ca is not None or cert is not None
        return DotClient(verify, o.tls_ca, o.tls_hostname, cert)
    except SSL.Error:
        raise RunError(f"+tls-ca={o.tls_ca}: no certificates read from it") from None


def _client_cert(o: argparse.Namespace) -> tuple[str, str] | None:
    """dig's +tls-certfile=FILE and +tls-keyfile=FILE (both, or neither: dig's warning
    for each TLS lookup, `TLS_HALF`), checked here: a certificate and key that cannot
    be used are an error before anything is sent (dig: `TLS context cannot be created`
    for each lookup, exit 0)."""
    if not (o.tls_certfile and o.tls_keyfile):
        return None
    from OpenSSL import SSL

    from packetlab.measure.http_tls import client_context

    try:
        client_context(insecure=True, cert=(o.tls_certfile, o.tls_keyfile, None))
    except (SSL.Error, OSError) as e:
        why = getattr(e, "strerror", None) or _ssl_reason(e)
        raise RunError(f"+tls-certfile={o.tls_certfile} +tls-keyfile={o.tls_keyfile}: "
                       f"cannot be used: {why}") from None  # fmt: skip
    return o.tls_certfile, o.tls_keyfile


def _ssl_reason(e: BaseException) -> str:
    """OpenSSL's reason of the last error in `e` (`PEM lib`, `key values mismatch`)."""
    errors = e.args[0] if e.args and isinstance(e.args[0], list) else []
    return str(errors[-1][2]) if errors and len(errors[-1]) > 2 else str(e)


def _as_dicts(emit: Emit) -> Any:
    """`emit` for results (a +trace step's): their records."""
    return lambda result: emit(result.to_dict())


def _with_notes(emit: Emit, notes: list[str]) -> Emit:
    """`emit`, with `notes` (dig's lines said before a lookup) put before the notes of the
    lookup's first record."""
    if not notes:
        return emit
    pending = list(notes)

    def noted(r: Record) -> None:
        if pending and r.get("type") == "dns":
            r = {**r, "notes": [*pending, *r.get("notes", [])]}
            pending.clear()
        emit(r)

    return noted


#: dig's line when -6 leaves no server to ask (each IPv4 one skipped)
NO_SERVERS = "No acceptable nameservers"


def _tls_unmade(o: argparse.Namespace) -> str | None:
    """dig's line for a TLS lookup (+tls, +https) it does not make: one of +tls-certfile
    and +tls-keyfile (`TLS_HALF`), or (--dig-exit-codes) a pair that cannot be used."""
    if not ((o.tls and not o.doh) or o.doh == "https"):
        return None
    if bool(o.tls_certfile) != bool(o.tls_keyfile):
        return TLS_HALF
    return TLS_CONTEXT if getattr(o, "tls_context_failed", False) else None


#: dig's line for a TLS lookup with one of +tls-certfile and +tls-keyfile (its words)
TLS_HALF = "both TLS client certificate and key file must be specified a the same time"
#: dig's line for a TLS lookup whose client certificate and key cannot be used
TLS_CONTEXT = "TLS context cannot be created"


def compact_row(r: Record) -> str | None:
    """--compact (and `pktlab campaign dns`): a `;;` line per query, its answer lines."""
    if r["type"] == "summary":
        return f";; {r['queries']} queries, {r['answered']} answered, {r['answers']} answers"
    head = f";; {r['qname']} {r['qtype']} @{r['server']}#{r['port']} ({r['proto']})"
    if "error" in r:
        return f"{head}: {r['error']}"
    lines = [f"{head}: {r['rcode']}, {r['rtt_us']:.0f} us" if r["rtt_us"] is not None else head]
    for a in r["answers"]:
        lines.append(f"{a['name']}\t{a['ttl']}\t{a.get('class', 'IN')}\t{a['type']}\t{a['data']}")
    return "\n".join(lines)


row = compact_row  # the form without options (`pktlab campaign dns`)


def row_for(args: argparse.Namespace) -> Any:
    """--compact: the compact form; otherwise dig's output (+short's included)."""
    from packetlab.cli.run_dns_dig import DigText

    if getattr(args, "compact", False) and not getattr(args, "short", False):
        return compact_row
    if not isinstance(getattr(args, "dig_text", None), DigText):
        args.dig_text = DigText(args)  # one per run: the banner comes once
    return args.dig_text


def clock_first(args: argparse.Namespace) -> bool:
    """The endpoint's clock from the run's start (`Command.clock_first`): a TSIG key
    (-y, -k: its time signed and the replies' checked). The times dig's text shows
    (`prints_times`) are of replies: read, not waited for (`Command.clock_read`)."""
    return getattr(args, "tsig_y", None) is not None or bool(getattr(args, "tsig_file", None))


def prints_times(args: argparse.Namespace) -> bool:
    """dig's text shows a time of its host's clock: `;; WHEN:` (+stats) or +yaml's, on
    the command line or a -f line."""
    if args.json or (getattr(args, "compact", False) and not getattr(args, "short", False)):
        return False
    plan = getattr(args, "plan", None) or []
    for o in [entry[3] or args for entry in plan] or [args]:  # (as `experiment` reads it)
        stats = (getattr(o, "show", None) or {}).get("stats", True)
        if getattr(o, "yaml", False) or (stats and not getattr(o, "short", False)):
            return True
    return False


def summary(records: list[Record]) -> Record:
    got = [r for r in records if r["type"] == "dns"]
    ok = [r for r in got if "error" not in r and "nssearch_error" not in r]
    rtts = sorted(r["rtt_us"] for r in ok if r.get("rtt_us") is not None)
    return {
        "queries": len(got),
        "answered": len(ok),
        "answers": sum(len(r["answers"]) for r in ok),
        "rtt_us_median": rtts[len(rtts) // 2] if rtts else None,
    }


def target(args: argparse.Namespace) -> list[str] | None:
    """The servers: the in-process endpoint exports the address it would reach the first
    of each family from (on its interface: where an ICMP port unreachable comes back; both
    families for `@127.0.0.1 @::1`, since session 21: the second was refused)."""
    from packetlab.cli.run_dns_words import Unresolved, in_batch, split_server

    typed = [args.server] if args.server else []
    typed += [w[1:] for w in args.names if w.startswith("@") and len(w) > 1]
    typed += getattr(args, "servers", None) or []  # -p alone: resolv.conf's
    found = [addr for named in typed if (addr := split_server(named, args.family)[0])]
    for entry in getattr(args, "plan", None) or []:  # dig's words read: the names' own
        for named in getattr(entry[3], "servers", None) or []:
            try:
                found.append(split_server(named, args.family)[0])
            except Unresolved:  # a -f line's: skipped in its turn, as dig (skip_unresolved)
                if not in_batch(entry[3]):
                    raise
    found = [a for a in found if args.family != 6 or ":" in a]  # -6: dig skips IPv4's
    if found:
        return list(dict.fromkeys(found))
    from packetlab.cli.run_command import resolv_conf_servers

    v4, v6 = resolv_conf_servers()
    mine = {4: v4, 6: v6}.get(args.family or 0, v4 + v6)
    return mine[:1] or None


def budget(args: argparse.Namespace) -> float:
    from packetlab.cli.run_dns_words import is_xfr

    plan = getattr(args, "plan", None) or [(n, args.types, None, None) for n in args.names]
    total = 0.0
    for entry in plan:
        o = entry[3] or args  # a batch line's options (dig -f), else the command line's
        servers = max(len(getattr(o, "servers", None) or ()), 1)
        tries = o.tries + servers - 1  # dig's requeue: the first server's tries, one a next
        # measure.dns.TRACE_STEPS; +search: the names asked in turn
        steps = 16 if getattr(o, "trace", False) else len(switches.search_names(entry[0], o))
        if getattr(o, "nssearch", False):  # the NS, each one's address, each one's SOA
            steps = 1 + 2 * 8
        for qtype in entry[1] or ["A"]:
            if is_xfr(qtype):  # each attempt: its connect, then at most XFR_MAX_S
                total += o.tries * max(len(getattr(o, "servers", None) or ()), 1) * (o.wait + 300)
            else:
                total += steps * (tries + 1) * o.wait
    return total


COMMAND = Command(
    name="dns",
    help="DNS queries over UDP or TCP",
    description="Ask a DNS server from the endpoint (UDP, or TCP with --tcp; a truncated "
    "UDP answer is retried over TCP) and print what dig prints (--compact: one line per "
    "query and its answers).",
    configure=configure,
    experiment=experiment,
    row=compact_row,
    summary=summary,
    budget=budget,
    target=target,
    epilog=EPILOG,
    split="names",
    row_for=row_for,
    clock_first=clock_first,
    clock_read=prints_times,
    status=exits.status,  # --dig-exit-codes
    error_status=exits.error_status,
    usage_status=exits.usage_status,
    # raw sockets offered (not needed): the ICMP port unreachable of a closed UDP port
    raw=True,
)


def add_parser(sub: Any) -> None:
    from packetlab.cli.run_command import add_command

    add_command(sub, COMMAND)
