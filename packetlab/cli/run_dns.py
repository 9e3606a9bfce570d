"""``pktlab run dns NAME...``: DNS queries from the endpoint (packetlab.measure.dns)."""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

from packetlab.cli import pcapout
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
query got no answer (dig: 9), 2 error (dig: 1 usage, 10 internal). See docs/dns.md.
"""


def split_server(text: str, family: int | None = None) -> tuple[str, int | None]:
    """ADDR, ADDR:PORT or [V6]:PORT; a host name instead of ADDR is resolved here (to an
    address of IP version `family` when given)."""
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
            host = str(resolve_target(host, family))
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
             "+noshort": ("short", False), "+dnssec": ("dnssec", True),
             "+nodnssec": ("dnssec", False), "+do": ("dnssec", True),
             "+nodo": ("dnssec", False), "+noedns": ("edns", -1),
             "+trace": ("trace", True), "+notrace": ("trace", False),
             "+nsid": ("nsid", True), "+nonsid": ("nsid", False),
             "+multiline": ("multiline", True), "+nomultiline": ("multiline", False),
             "+cookie": ("cookie", True), "+nocookie": ("cookie", False),
             "+nosplit": ("split", 0), "+ignore": ("ignore", True),
             "+noignore": ("ignore", False), "+onesoa": ("onesoa", True),
             "+noonesoa": ("onesoa", False)}  # fmt: skip
DIG_FLAGS.update(switches.FLAGS)  # since session 16: dig 9.18's other switches
DIG_VALUES = {"+time": "wait", "+timeout": "wait", "+tries": "tries", "+retry": "tries",
              "+bufsize": "bufsize", "+edns": "edns", "+split": "split"}  # fmt: skip
SPLIT_MAX = 1023  # dig's bound for +split
XFR_MAX_RECORDS = 100_000  # measure.dnsxfr's (not imported here: dnspython loads late)
BATCH_LINES = 10_000  # -f FILE: query lines at most (each answer is kept for the summary)
BATCH_LINE_BYTES = 4096  # -f FILE: a longer line is refused
# dig's display switches: what each +[no]WORD shows (+all/+noall: every one of them)
SECTIONS = ("cmd", "comments", "question", "answer", "authority", "additional", "stats")


def _display(args: argparse.Namespace, word: str, target: argparse.Namespace | None = None) -> bool:
    """Apply a +[no]SECTION or +[no]all switch to `target.show` (default `args`); cmd, a
    global switch in dig, to `args.show`. False if `word` is none."""
    key = word[1:]
    on = not key.startswith("no")
    key = key[2:] if not on else key
    keys = SECTIONS if key == "all" else (key,) if key in SECTIONS else ()
    if not keys:
        return False
    target = args if target is None else target
    if target is not args and "show" not in target.__dict__:
        target.show = dict(args.show)  # the name's own sections from here on
    for k in keys:
        if k == "cmd":
            args.show["cmd"] = on
        target.show[k] = on
    # dig's +[no]comments and +[no]question as given (the last one): a transfer shows its
    # messages' headers and questions only when asked (dig's pluscomm, plusquest)
    given = dict(getattr(target, "plus_set", None) or {})
    given.update((k, on) for k in keys if k in ("comments", "question"))
    target.plus_set = given
    return True


# dig's switches that are global variables (not a lookup's): after a name too, they set
# the command line's (a batch line's) options
GLOBAL_SWITCHES = {"+short", "+noshort", "+split", "+nosplit", "+time", "+search", "+nosearch",
                   "+defname", "+nodefname", "+showsearch", "+noshowsearch", "+domain",
                   "+ndots", "+yaml", "+noyaml"}  # fmt: skip


def _warn(args: argparse.Namespace, text: str) -> None:
    """One of dig's parse-time warnings (`;; Warning, ...`) on stderr: at once for the
    command line's words; a batch line's are kept (`args.warnings`) and shown when its
    query is (dig reads a line of -f FILE only when the previous one is done, so its
    warnings come between the answers: `_show_line_warnings`)."""
    pending = vars(args).get("warnings")
    if pending is not None:
        pending.append(text)
    else:
        print(text, file=sys.stderr)


def _show_line_warnings(line: argparse.Namespace) -> None:
    """A batch line's warnings (`_warn`), once, before its first query's output: stdout
    flushed first, so that `2>&1` shows them where dig does."""
    pending = vars(_base_of(line)).get("warnings")
    if pending:
        sys.stdout.flush()
        print("\n".join(pending), file=sys.stderr, flush=True)
        pending.clear()


def _split_value(word: str, value: str, args: argparse.Namespace | None = None) -> int:
    """+split=N as dig: 0..1023, rounded up to a multiple of 4 with dig's warning."""
    if not value.isdigit() or int(value) > SPLIT_MAX:
        raise RunError(f"{word}: expected a number 0..{SPLIT_MAX}")
    n = int(value)
    if n % 4:
        n = (n + 3) // 4 * 4
        text = f";; Warning, split must be a multiple of 4; adjusting to {n}"
        if args is None:
            print(text, file=sys.stderr)
        else:
            _warn(args, text)
    return n


def _cookie_value(word: str, value: str) -> bytes:
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise RunError(f"{word}: expected hex digits (a client cookie of 8 bytes)") from None
    if not (len(raw) == 8 or 16 <= len(raw) <= 40):
        raise RunError(f"{word}: a cookie is 8 bytes, or 16 to 40 with the server's")
    return raw


def dig_style(args: argparse.Namespace) -> None:
    """Read the words dig takes among its names, in place: `@SERVER` (before any name:
    every query's server; after a name: one more server for that name's query, as dig),
    a record type (a word that is a type mnemonic, TYPEnnn included: as dig, after a
    name that name's type, `dig a.test MX b.test` asks a.test MX and b.test A; before any
    name, every name's; one type a query: a second one is the one asked, with dig's
    `;; Warning, extra type option` on stderr), a class (IN, CH, HS, CLASSnnn: likewise),
    `+tcp`, `+norecurse`, `+short`, `+time=S`, `+tries=N`, `+retry=N`, ...; `-t TYPE`,
    `-c CLASS` and `-x ADDR` in their place among the names (as dig: after a name, that
    name's; and after the first of them a type or class word is a name); then `-p PORT`
    and `-f FILE` (dig's batch file: its lines after the names, each with its own words).
    Sets `args.plan`: (name, its types (one at most) or None, its class or None, its
    options or None) in order."""
    given = getattr(args, "_argv", None)  # the words as given (cli.parse)
    argv = list(given or sys.argv[1:])  # dig's banner repeats them
    args.cmdline = argv[argv.index("dns") + 1 :] if "dns" in argv else list(args.names)
    args.show = dict.fromkeys(SECTIONS, True)
    words = _in_place(args, args.cmdline if given and "dns" in argv else [])
    _dig_words(args, words)
    if args.batch is not None:
        _batch_lines(args)
    elif not args.plan:
        raise RunError("no name to look up (give NAME, or -x ADDR)")


class Dash(NamedTuple):
    """`-t TYPE`, `-c CLASS` or `-x ADDR` in its place among dig's words. `strict`: given
    as our own long option (--type, --class), which dig has not: a type or class that
    is none is an error there (dig's -t/-c warn and ignore it)."""

    flag: str
    value: str
    strict: bool = False


_DASHES = {"-t": "-t", "--type": "-t", "-c": "-c", "--class": "-c", "-x": "-x"}


def _in_place(args: argparse.Namespace, cmdline: list[str]) -> list[str | Dash]:
    """dig's words (`args.names`) with the -t, -c and -x of the command line (`cmdline`,
    argparse's input) put back in their place among them: argparse gathers them apart.
    One it cannot place (an abbreviated --ty) goes before the names, as before."""
    names = list(args.names)
    dashed = {"-t": list(args.types or []), "-c": list(args.qclass or []),
              "-x": list(args.reverse or [])}  # fmt: skip
    out: list[str | Dash] = []
    k, i = 0, 0
    while i < len(cmdline):
        word = cmdline[i]
        i += 1
        if k < len(names) and word == names[k]:
            out.append(word)
            k += 1
            continue
        flag, eq, value = word.partition("=")
        if flag not in _DASHES and word[:2] in ("-t", "-c", "-x") and len(word) > 2:
            flag, value, eq = word[:2], word[2:], "="  # -tMX, as argparse reads it
        if flag in _DASHES:
            if not eq:
                if i >= len(cmdline):
                    break
                value, i = cmdline[i], i + 1
            kind = _DASHES[flag]
            if value in dashed[kind]:
                dashed[kind].remove(value)
                out.append(Dash(kind, value, flag.startswith("--")))
    out += names[k:]
    # the ones not found: before every name, as argparse had them
    first = [Dash(kind, v) for kind in ("-t", "-c") for v in dashed[kind]]
    args.types, args.qclass, args.reverse = None, None, None
    return [*first, *out, *(Dash("-x", v) for v in dashed["-x"])]


class BatchLine(argparse.Namespace):
    """A batch line's options (dig -f): those the line sets, the command line's (`base`)
    for the rest, so a 10,000-line file holds no copy of every option per line."""

    def __init__(self, base: argparse.Namespace) -> None:
        super().__init__()
        self.__dict__["_base"] = base

    def __getattr__(self, name: str) -> Any:  # only for what the line did not set
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.__dict__["_base"], name)


class NameScope(BatchLine):
    """The options written after a name on the line (dig: they are that name's query's;
    its global switches excepted)."""


def _base_of(ns: argparse.Namespace) -> argparse.Namespace:
    """The namespace a NameScope falls back to (itself for any other)."""
    while isinstance(ns, NameScope):
        ns = ns.__dict__["_base"]
    return ns


def _batch_lines(args: argparse.Namespace) -> None:
    """dig -f FILE: each line a query line of dig's words, with the command line's
    options as its defaults; a line's options are its own but for dig's global switches
    (+short, +[no]cmd, +[no]all's cmd, +split), which stay for the lines after it, as in
    dig. Blank lines are skipped (dig asks the root's NS for them).
    At most BATCH_LINES lines of BATCH_LINE_BYTES: a longer file is refused before any
    query, read a line at a time (never the whole file at once)."""
    import shlex

    try:
        f = sys.stdin if args.batch == "-" else open(args.batch, encoding="utf-8", errors="replace")  # noqa: SIM115
    except OSError as e:
        raise RunError(f"-f {args.batch}: cannot open: {e.strerror}") from None
    n = 0
    # dig's global switches: set on a line, they stay for the lines after it
    # (and -p: dig's `port` is a global, the line's port and every later line's)
    sticky = {"short": args.short, "cmd": args.show["cmd"], "split": args.split,
              "port": args.port, "tsig_unused": False}  # fmt: skip
    with f:
        while line := f.readline(BATCH_LINE_BYTES + 1):
            n += 1
            if len(line) > BATCH_LINE_BYTES and not line.endswith("\n"):
                raise RunError(f"-f {args.batch}:{n}: line longer than {BATCH_LINE_BYTES} bytes")
            if n > BATCH_LINES:
                raise RunError(f"-f {args.batch}: more than {BATCH_LINES} lines (the cap: each "
                               "answer is kept for the summary; split the file)")  # fmt: skip
            try:
                words = shlex.split(line, comments=False)
            except ValueError as e:
                raise RunError(f"-f {args.batch}:{n}: {e}") from None
            if not words:
                continue
            mine = BatchLine(args)  # the command line's options, then the line's own
            mine.show = {**args.show, "cmd": sticky["cmd"]}
            mine.short, mine.split, mine.port = sticky["short"], sticky["split"], sticky["port"]
            if sticky["tsig_unused"]:
                mine.tsig_unused = True
            mine.first_line = not args.plan  # dig reads it before it makes its TSIG key
            mine.plan, mine.types, mine.reverse, mine.qclass = [], args.types, None, args.qclass
            mine.warnings = []  # shown when the line's query is (_show_line_warnings)
            _dig_words(mine, _batch_options(mine, words, f"-f {args.batch}:{n}"), top=False)
            mine.batch_words = words  # dig's banner for the line shows it
            args.plan += [(name, types, cls, o or mine) for name, types, cls, o in mine.plan]
            unused = vars(mine).get("tsig_unused", False)
            sticky = {"short": mine.short, "cmd": mine.show["cmd"], "split": mine.split,
                      "port": mine.port, "tsig_unused": unused}  # fmt: skip
    if not args.plan:
        raise RunError(f"-f {args.batch}: no name to look up")


def _batch_options(mine: argparse.Namespace, words: list[str], where: str) -> list[str | Dash]:
    """A batch line's dashed options: -p PORT, -4, -6 into `mine`; -t TYPE, -c CLASS and
    -x ADDR in their place among the other words (dig's scoping, as on the command line);
    -y and -k as dig 9.18 takes them: on the first line, the run's key (dig reads that
    line before it makes its key: every line signed); on a later one no key, and -y's
    `;; WARNING -- TSIG key was not used.` from that line on when no key was made."""
    rest: list[str | Dash] = []
    it = iter(words)
    for word in it:
        if word in ("-t", "-c", "-x", "-p", "-y", "-k"):
            value = next(it, None)
            if value is None:
                raise RunError(f"{where}: {word} needs a value")
            if word in ("-y", "-k"):
                top = mine.__dict__["_base"]
                if mine.first_line:
                    setattr(top, "tsig_y" if word == "-y" else "tsig_file", value)
                elif word == "-y" and top.tsig_y is None and top.tsig_file is None:
                    mine.tsig_unused = True
            elif word != "-p":
                rest.append(Dash(word, value))
            elif not value.isdigit():
                raise RunError(f"{where}: -p {value}: bad port")
            else:
                mine.port = int(value)
        elif word in ("-4", "-6"):
            mine.family = int(word[1])
        elif word.startswith("-") and len(word) > 1:
            raise RunError(f"{where}: {word}: option not supported in a batch line")
        else:
            rest.append(word)
    return rest


def _dig_words(args: argparse.Namespace, words: list[str | Dash], top: bool = True) -> None:
    """dig's words (`dig_style`) into `args`; `args.plan` from them."""
    import dns.exception
    import dns.rdataclass
    import dns.rdatatype
    import dns.reversename

    names: list[str] = []
    own: list[list[str]] = []  # each name's types
    own_class: list[str | None] = []
    own_servers: list[list[str]] = []  # each name's @SERVERs (dig: tried after the others)
    scopes: list[NameScope | None] = []  # each name's options written after it
    if top:
        args.user_server = None  # the server as typed, for dig's ";; SERVER: ADDR#PORT(TEXT)"
    servers: list[str] = []  # the @SERVERs before any name: every query's, in order
    types: list[str] = list(args.types or [])  # before any name: every name's
    qclass: str | None = args.qclass
    loose = True  # a type or class word is one (dig: until the first -t, -c or -x)

    def scope() -> NameScope:
        mine = scopes[-1]
        if mine is None:
            mine = scopes[-1] = NameScope(args)
        return mine

    def set_type(word: str, strict: bool = False) -> None:
        """A type for the last name (before any name: every name's). As dig: one type a
        query; a second one for the same name (its own, or every name's before it) is
        the one asked, with dig's warning on stderr. One that is no type to dig (-t
        BOGUS, -t 65, -t ixfr) is ignored with dig's warning (--type, ours: an error)."""
        known = _ixfr_type(word) if word.lower().startswith("ixfr=") else None
        known = known or _dig_type(word, dns.rdatatype)
        if known is None and strict:
            from packetlab.measure.dns import DnsError, parse_qtype

            try:
                known = parse_qtype(word)
            except DnsError as e:
                raise RunError(f"--type {word}: {e}") from None
        if known is None:
            _warn(args, f";; Warning, ignoring invalid type {word}")
            return
        mine = own[-1] if names else types
        if mine or (names and types):
            _warn(args, ";; Warning, extra type option")
        mine[:] = [known if word.upper() in BIND_ONLY_TYPES or is_xfr(known) else word]

    def set_class(word: str, strict: bool = False) -> None:
        """Likewise a class (dig's `extra class option`, before the class is read; one
        that is none: dig's `ignoring invalid class` warning, --class's error)."""
        nonlocal qclass
        if (own_class[-1] if names else None) is not None or qclass is not None:
            _warn(args, ";; Warning, extra class option")
        if not _is_class(word, dns.rdataclass, loose=False):
            if strict:
                _class_of(word, "--class")
            _warn(args, f";; Warning, ignoring invalid class {word}")
            return
        if names:
            own_class[-1] = word
        else:
            qclass = word

    built: list[bool] = []  # dig's banner made for each name's lookup (cmd on, no +short)

    def new_name(name: str) -> None:
        built.append(bool(args.show["cmd"]) and not args.short)
        names.append(name)
        own.append([])
        own_class.append(None)
        own_servers.append([])
        scopes.append(None)

    for word in words:
        if isinstance(word, Dash):
            loose = False  # as dig: from here on, a type or class word is a name
            if word.flag == "-x":
                try:
                    new_name(dns.reversename.from_address(word.value).to_text())
                except (ValueError, dns.exception.DNSException):
                    raise RunError(f"-x {word.value}: not an IP address") from None
                scope().reverse = True
            elif word.flag == "-t":
                set_type(word.value, word.strict)
            else:
                set_class(word.value, word.strict)
        elif word == "@":  # was taken as a name (dig: couldn't get address for '')
            raise RunError("@: no server after it (@SERVER, e.g. @127.0.0.1, as dig)")
        elif word.startswith("@") and len(word) > 1:
            (own_servers[-1] if names else servers).append(word[1:])
        elif word.startswith("+"):
            key, eq, value = word.partition("=")
            # as dig: an option after a name is that name's query's (a global switch all's)
            at: argparse.Namespace = scope() if names and key not in GLOBAL_SWITCHES else args
            if key == "+edns" and not eq:
                at.edns = 0
            elif key == "+split" and eq:
                args.split = _split_value(word, value, args)
            elif key == "+cookie" and eq:
                at.cookie = _cookie_value(word, value)
                at.edns = max(at.edns, 0)  # as dig: +cookie and +nsid turn EDNS on
            elif key in ("+opcode", "+subnet", "+padding", "+ednsflags", "+ednsopt",
                         "+qid") and eq:  # fmt: skip
                switches.query_value(at, key, value, word)
            elif key in ("+ednsflags", "+noednsflags") and not eq:
                at.ednsflags = 0
            elif key == "+noednsopt" and not eq:
                at.ednsopts = ()
            elif key in ("+showsearch", "+noshowsearch") and not eq:
                args.showsearch = args.search = key == "+showsearch"  # as dig: both
            elif key == "+domain" and eq:  # as dig: the search list of one, search on
                _check_name(value or ".")
                args.domain, args.search = value, True
            elif key == "+ndots" and eq:
                if not value.isdigit() or int(value) > switches.NDOTS_MAX:
                    raise RunError(f"{word}: expected a number 0..{switches.NDOTS_MAX}")
                args.ndots = int(value)
            elif key in ("+noopcode", "+nosubnet") and not eq:
                setattr(at, key[3:], 0 if key == "+noopcode" else None)
            elif key in ("+idnin", "+idnout"):
                raise RunError(f"{word}: IDN names not supported here (dig's default when "
                               "its output is not a terminal: +noidnin +noidnout; give "
                               "names in their xn-- form)")  # fmt: skip
            elif key in DIG_FLAGS and not eq and DIG_FLAGS[key][0] == "tcp" and not top:
                pass  # dig 9.18 ignores +[no]tcp and +[no]vc on a batch line (is_batchfile)
            elif key in DIG_FLAGS and not eq:
                attr, on = DIG_FLAGS[key]
                setattr(at, attr, on)
                if attr == "tcp":  # dig's tcp_mode_set: IXFR=N +notcp goes over UDP
                    at.tcp_set = True
                if key in ("+nsid", "+cookie"):
                    at.edns = max(at.edns, 0)
                if key == "+short" and on:  # dig: +short turns the lookup's rrcomments off
                    at.rrcomments = False
            elif key in DIG_VALUES and eq:
                try:
                    n = float(value) if key == "+time" else int(value) + (key == "+retry")
                except ValueError:
                    raise RunError(f"{word}: expected a number") from None
                if n < 0 and key in ("+edns", "+bufsize"):
                    raise RunError(f"{word}: expected a number from 0")
                setattr(at, DIG_VALUES[key], n)
            elif not eq and _display(args, word, at):
                pass
            else:
                raise RunError(
                    f"{word}: dig option not supported here (dig-style: @SERVER, TYPE, +tcp, "
                    "+norecurse, +short, +dnssec, +[no]edns[=N], +bufsize=N, +trace, +time=S, "
                    "+ignore, +tries=N, +retry=N, +[no]nsid, +[no]cookie[=HEX], +[no]multiline, "
                    "+split=N, +[no]onesoa, +[no]cmd/comments/question/answer/authority/"
                    "additional/stats/all, +[no]ttlid, +[no]class, +[no]ttlunits, +[no]crypto, "
                    "+[no]rrcomments, +[no]unknownformat, +[no]qr, +[no]header-only, "
                    "+[no]aaflag/adflag/cdflag/raflag/tcflag/zflag, +opcode=N, +subnet=ADDR/N, "
                    "+[no]expire, +[no]keepalive, +padding=N, +[no]fail, +[no]identify; "
                    "see --help)"
                )
        elif loose and word.lower() == "ixfr":  # as dig: neither a type nor a name
            _warn(args, ";; Warning, ixfr requires a serial number")
        elif loose and (word.lower().startswith("ixfr=") or _is_type(word, dns.rdatatype)):
            set_type(word)  # a type word, dig's IXFR=SERIAL too
        elif loose and _is_class(word, dns.rdataclass):
            set_class(word)
        else:
            new_name(word)
    if not (args.show["cmd"] and not args.short):  # +nocmd or +short after a name: dig
        for i, made in enumerate(built):  # made that lookup's banner before reading them,
            if made:  # and prints it before `no servers could be reached`
                if scopes[i] is None:
                    scopes[i] = NameScope(args)
                scopes[i].error_banner = True  # type: ignore[union-attr]
    if qclass is not None:
        _class_of(qclass, "-c")
    for cls in own_class:
        if cls is not None:
            _class_of(cls, cls)
    if top and args.server is not None:  # --server ADDR: the first
        servers.insert(0, args.server)
    if servers:
        args.servers = servers
        args.server = servers[0]
    elif top:
        args.servers = []
    if args.server is not None:
        args.user_server = _host_text(args.server)
    if args.port is not None:
        if not 1 <= args.port <= 65535:
            raise RunError(f"-p {args.port}: bad port")
        if args.server is None and not any(own_servers):
            raise RunError("-p PORT needs a server: @ADDR or --server ADDR")
    for i, mine in enumerate(own_servers):
        if mine:  # as dig: the query's servers are every query's, then its own
            if scopes[i] is None:
                scopes[i] = NameScope(args)
            scopes[i].servers = [*args.servers, *mine]  # type: ignore[union-attr]
    for o in [args, *(x for x in scopes if x is not None)]:
        if o.bufsize is not None and not 0 <= o.bufsize <= 65535:
            raise RunError(f"+bufsize={o.bufsize}: out of range (0..65535)")
        if o.edns > 255:
            raise RunError(f"+edns={o.edns}: out of range (0..255)")
    args.names = names
    args.types, args.qclass = types or None, qclass
    args.plan = [
        (name, mine or args.types or (["PTR"] if getattr(sc, "reverse", False) else None),
         cls or args.qclass, sc)
        for name, mine, cls, sc in zip(names, own, own_class, scopes, strict=True)
    ]  # fmt: skip


def _class_of(text: str, where: str) -> str:
    from packetlab.measure.dns import DnsError, parse_qclass

    try:
        return parse_qclass(text)
    except DnsError as e:
        raise RunError(f"{where}: {e}") from None


def _is_class(word: str, rdataclass: Any, loose: bool = True) -> bool:
    """A class mnemonic among the names (dig's IN, CH, HS, NONE, CLASSnnn; ANY is a type
    first, as dig reads it); `loose=False`: -c's value (CLASS65536 and 3 are none)."""
    if (loose and not word.isalnum()) or not word or word.isdigit():
        return False
    try:
        rdataclass.from_text(word.upper())
    except rdataclass.UnknownRdataclass:
        return False
    return True


def _host_text(text: str) -> str:
    """The host part of ADDR, ADDR:PORT or [V6]:PORT, as typed."""
    text = text.strip()
    if text.startswith("["):
        return text[1:].partition("]")[0]
    return text.split(":")[0] if text.count(":") == 1 else text


def _check_name(name: str) -> None:
    import dns.exception
    import dns.name

    try:
        dns.name.from_text(name)
    except dns.exception.DNSException as e:
        raise RunError(f"{name!r} is not a legal name: {e}") from None


# BIND 9.18's type mnemonics that dnspython 2 does not know (dns_rdatatype_fromtext):
# dig asks them; we ask TYPEnnn (the question line shows TYPEnnn but for KEYDATA, which
# dig shows so too)
BIND_ONLY_TYPES = {"EID": 31, "NIMLOC": 32, "ATMA": 34, "SINK": 40, "RKEY": 57, "TALINK": 58,
                   "UINFO": 100, "UID": 101, "GID": 102, "DOA": 259, "KEYDATA": 65533}  # fmt: skip
# dnspython's that BIND's are not: dig ignores them with its warning (IXFR: only as
# ixfr=SERIAL; NONE is a class; NXNAME came after 9.18)
NOT_BIND_TYPES = {"NONE", "IXFR", "NXNAME", "NSAP_PTR", "RESERVED0"}


SERIAL_MAX = 0xFFFFFFFF


def _ixfr_type(word: str) -> str:
    """dig's `ixfr=SERIAL` (a type word, or -t's value) as our type `IXFR=SERIAL`."""
    value = word[5:]
    if not value.isdigit() or int(value) > SERIAL_MAX:
        raise RunError(f"{word}: invalid serial number {value!r} (IXFR=N: 0..{SERIAL_MAX})")
    return f"IXFR={int(value)}"


def is_xfr(qtype: str) -> bool:
    """A zone transfer's type: AXFR, or IXFR=SERIAL (`_ixfr_type`)."""
    upper = qtype.upper()
    return upper == "AXFR" or upper.startswith("IXFR=")


def _dig_type(word: str, rdatatype: Any) -> str | None:
    """`word` as a type dig 9.18 reads (-t's value, a type word among the names): the
    canonical name we ask (TYPEnnn for a type only BIND names), else None (dig: `ignoring
    invalid type`). Not a number (`-t 65`: dig's warning; TYPE65 is one)."""
    upper = word.upper()
    if upper in BIND_ONLY_TYPES:
        return f"TYPE{BIND_ONLY_TYPES[upper]}"
    if not word or word.isdigit() or upper in NOT_BIND_TYPES:
        return None
    try:
        return str(rdatatype.to_text(rdatatype.from_text(upper)))
    except (rdatatype.UnknownRdatatype, ValueError):
        return None


def _is_type(word: str, rdatatype: Any) -> bool:
    return (word.isalnum() or word.upper() == "NSAP-PTR") and _dig_type(word, rdatatype) is not None


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
        "+[no]ednsnegotiation (BADVERS asked again with version 0), +[no]expandaaaa "
        "(AAAA written whole), +timeout=S (+time=S); +search, +showsearch, +domain=NAME, "
        "+ndots=N (this host's resolv.conf search list, as dig); +[no]yaml (dig's YAML "
        "items; not with +trace or transfers); +[no]besteffort "
        "(+nobesteffort: a reply BIND reads only with its best effort is dig's Got bad "
        "packet); +noidnin, +noidnout (dig's defaults off a terminal; +idnin and +idnout "
        "are refused)",
    )
    p.add_argument(
        "-x", dest="reverse", action="append", metavar="ADDR",
        help="reverse lookup of ADDR (PTR), as dig -x",
    )  # fmt: skip
    p.add_argument("-p", "--port", type=int, metavar="PORT", help="server port (as dig -p)")
    p.add_argument(
        "-c", "--class", dest="qclass", metavar="CLASS", action="append",
        help="query class: IN, CH, HS, NONE, ANY, CLASSnnn (as dig -c) [default: IN]",
    )  # fmt: skip
    p.add_argument(
        "-f", "--batch", metavar="FILE",
        help=f"dig's batch mode: a query line per line of FILE ('-': stdin), each with dig's "
        f"words, the command line's options its defaults (at most {BATCH_LINES} lines)",
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
        'secret "BASE64"; };), as dig -k',
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
        "--wait", type=float, default=2.0, metavar="S", help="seconds per try [default: 2]"
    )
    p.add_argument(
        "--tries", type=int, default=2, metavar="N", help="UDP tries per query [default: 2]"
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
    pcapout.add_option(p)


def experiment(args: argparse.Namespace, emit: Emit, progress: Progress) -> Experiment:
    from packetlab.measure.dns import EDNS_PAYLOAD, dns_trace, parse_qtype

    dig_style(args)
    plan = []
    for name, types, cls, line in args.plan:
        o = line or args  # a batch line's options, else the command line's
        _check_name(name)  # a bad name is an error before anything is sent, as dig
        servers: list[tuple[str | None, int]] = []  # dig's order: tried until one answers
        texts: dict[str, str] = {}  # address -> as typed, for ";; SERVER: ADDR#PORT(TEXT)"
        for typed in getattr(o, "servers", None) or ([o.server] if o.server else []):
            server, port = split_server(typed, o.family)
            if o.family is not None and (":" in server) != (o.family == 6):
                raise RunError(f"-{o.family}: the server {server} is not an IPv{o.family} address")
            servers.append((server, o.port or port or 53))  # -p: every server's, as dig
            texts.setdefault(server, _host_text(typed))
        if texts:
            o.server_texts = texts
        if not 0 < o.wait <= 60:  # was one message for both, naming neither's value
            raise RunError(f"+time/--wait {o.wait:g}: must be in (0, 60] seconds")
        if not 1 <= o.tries <= 10:
            raise RunError(f"+tries/--tries {o.tries}: must be 1..10 (+retry=N: N+1 tries)")
        qtypes = [t if is_xfr(t) else parse_qtype(t) for t in (types or ["A"])]
        if getattr(o, "yaml", False) and (o.trace or any(is_xfr(t) for t in qtypes)):
            raise RunError("+yaml: not built for +trace and zone transfers (AXFR, IXFR)")
        plan.append((name, qtypes, _class_of(cls or "IN", "-c"), o, servers or [(None, 53)]))

    tsig = _tsig_key(args)
    recorder = pcapout.recorder_for(args)

    async def run(session: Any) -> None:
        total = sum(len(p[1]) for p in plan)
        n = 0
        for name, types, qclass, o, servers in plan:
            args.view = o  # the display options of the line being shown (dig -f)
            _show_line_warnings(o)  # dig -f: a line's warnings before its answers
            for qtype in types:
                if progress.stopping:  # Ctrl-C: no new query
                    return
                n += 1
                progress(f"dns {n}/{total}: {name} {qtype}")
                if _ixfr_over_udp(qtype, o):  # dig: asked as a query, TC: the transfer
                    result = await _ixfr_udp(session, servers, name, qtype, o, qclass,
                                             recorder, progress, tsig)  # fmt: skip
                    emit(result.to_dict())
                    continue
                if is_xfr(qtype):  # over TCP, as dig
                    xfr = await _transfer(
                        session, servers, name, qtype, o, qclass, recorder, progress, tsig=tsig
                    )
                    emit(xfr.to_dict())
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
                        on_step=lambda r: emit(r.to_dict()),
                        nsid=o.nsid,
                        cookie=o.cookie,
                        tsig=tsig,  # signed, as dig signs each step
                    )
                    continue
                await _search(
                    session,
                    servers,
                    switches.search_names(name, o),
                    qtype,
                    emit,
                    bool(getattr(args, "showsearch", False)),
                    tcp=o.tcp,
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
                )

    return pcapout.recording(args, recorder, run)


def _tsig_key(args: argparse.Namespace) -> Any:
    """dig's -y/-k key (-y when both), or None: what dig cannot make is its warning on
    stderr and no key (the queries go unsigned, as dig's); a -y without name and secret,
    a key file without algorithm or secret, an error (dig: exit 1)."""
    y, path = getattr(args, "tsig_y", None), getattr(args, "tsig_file", None)
    if y is None and path is None:
        return None
    from packetlab.measure.dnstsig import KeyUsageError, key_from_file, key_from_y

    try:
        made = key_from_y(y) if y is not None else key_from_file(str(path))
    except KeyUsageError as e:
        raise RunError(str(e) if y is not None else f"-k {path}: {e} (dig's words)") from None
    if made.warnings:
        sys.stdout.flush()
        print("\n".join(made.warnings), file=sys.stderr, flush=True)
    if made.failed is not None:  # dig: on stdout, before anything; then each reply says so
        print(made.failed, flush=True)
        args.tsig_unused = True
    return made.key


async def _transfer(
    session: Any,
    servers: Sequence[tuple[str | None, int]],
    name: str,
    qtype: str,
    o: argparse.Namespace,
    qclass: str,
    recorder: Any,
    progress: Progress,
    cookie: bytes | None = b"",
    tsig: Any = None,
    tries: int | None = None,
) -> Any:
    """A zone transfer (AXFR, IXFR=SERIAL) from dig's servers in dig's order: a
    communications failure (a refused connection, the server closing or silent
    mid-transfer) is tried again from the first server while the lookup's tries last
    (+tries: dig's requeue), then the next servers once each; an answer (a refusal too)
    ends it. The attempts before the last are its `retries`, one that went on to the
    next server marked `next_server` (dig says `no servers could be reached` after the
    others). `tries`: the lookup's (default +tries; less after UDP tries, dig's requeue)."""
    from packetlab.measure.dns import EDNS_PAYLOAD
    from packetlab.measure.dnsxfr import dns_xfr

    serial = int(qtype[5:]) if qtype.upper().startswith("IXFR=") else None
    if cookie == b"":  # one client cookie for the lookup, as dig (given: IXFR's over UDP)
        cookie = _xfr_cookie(o.cookie)
    earlier: list[Record] = []
    left, budget, i = o.tries if tries is None else tries, o.xfr_max, 0
    while True:
        server, port = servers[i]
        result = await dns_xfr(
            session, name, serial=serial, server=server, port=port, timeout=o.wait,
            attempts=1, edns=False if o.edns < 0 else o.edns,
            payload=EDNS_PAYLOAD if o.bufsize is None else o.bufsize,
            dnssec=bool(o.dnssec), family=o.family, qclass=qclass, nsid=o.nsid,
            cookie=cookie, max_records=budget, recorder=recorder,
            stop=lambda: progress.stopping,  # Ctrl-C: what came is printed, then the summary
            tsig=tsig,
        )  # fmt: skip
        budget -= len(result.answers)  # the cap holds for all the attempts together
        final = result.error is None or result.error_kind in (
            "malformed", "mismatch", "limit", "interrupted",
        )  # fmt: skip
        if final or progress.stopping or (left <= 1 and i == len(servers) - 1):
            break
        attempt = result.attempt_dict()
        if left > 1:  # dig's requeue: the lookup again, from its first server
            left, i = left - 1, 0
        else:
            attempt["next_server"] = True
            i += 1
        earlier.append(attempt)
    result.retries = earlier
    result.tries = len(earlier) + 1
    return result


def _ixfr_over_udp(qtype: str, o: argparse.Namespace) -> bool:
    """dig 9.18 asks an IXFR over UDP when +notcp (+novc) was given (its tcp_mode_set)."""
    return qtype.upper().startswith("IXFR=") and bool(getattr(o, "tcp_set", False)) and not o.tcp


async def _ixfr_udp(
    session: Any,
    servers: Sequence[tuple[str | None, int]],
    name: str,
    qtype: str,
    o: argparse.Namespace,
    qclass: str,
    recorder: Any,
    progress: Progress,
    tsig: Any = None,
) -> Any:
    """dig's `IXFR=N +notcp`: the IXFR request asked over UDP as a query (its servers,
    tries and errors a query's); a truncated (TC) reply is the transfer over TCP (from
    the first server again: dig's requeue), with the same client cookie (`;; Truncated,
    retrying in TCP mode.` before it, shown as dig with +comments), unless +ignore."""
    from packetlab.measure.dns import EDNS_PAYLOAD

    cookie = _xfr_cookie(o.cookie)
    result, left = await _ask_udp(
        session, servers, name, "IXFR", tcp=False, tcp_fallback=False, timeout=o.wait,
        attempts=o.tries, edns=False if o.edns < 0 else o.edns,
        payload=EDNS_PAYLOAD if o.bufsize is None else o.bufsize, dnssec=bool(o.dnssec),
        family=o.family, recorder=recorder, qclass=qclass, nsid=o.nsid,
        cookie=cookie or False, expect_opt=isinstance(o.cookie, bytes),
        ixfr_serial=int(qtype[5:]), tsig=tsig,
    )  # fmt: skip
    if not result.truncated or o.ignore:
        return result
    # dig's requeued lookup over TCP: from its first server again, as a transfer's, with
    # the tries the UDP ones left (the first server once at least, then the next ones)
    xfr = await _transfer(session, servers, name, qtype, o, qclass, recorder, progress, cookie,
                          tsig, tries=max(left, 1))  # fmt: skip
    xfr.notes = [*result.notes, "Truncated, retrying in TCP mode."]
    return xfr


def _xfr_cookie(cookie: bool | bytes) -> bytes | None:
    """The client cookie a transfer sends (dig's default: a random one)."""
    import random

    if cookie is True:
        return random.randbytes(8)
    return cookie or None


async def _search(
    session: Any,
    servers: Sequence[tuple[str | None, int]],
    names: list[str],
    qtype: str,
    emit: Emit,
    show: bool,
    **options: Any,
) -> Any:
    """dig +search: each of `names` (`search_names`) while the answer is NXDOMAIN; the
    last answer emitted, those before it only with +showsearch (each marked
    `search_step`: dig prints its whole banner again before the next). A name asked as
    given first (`search_names`' "") whose answer is NXDOMAIN is marked `stats_twice`:
    dig 9.18 prints its statistics twice then."""
    as_is_first = names[1:] == [""]
    names = [n for n in names if n]
    for i, name in enumerate(names):
        result = await _ask(session, servers, name, qtype, **options)
        if result.rcode != "NXDOMAIN" or i == len(names) - 1:
            break
        if show:
            emit({**result.to_dict(), "search_step": True})
    record = result.to_dict()
    if as_is_first and result.rcode == "NXDOMAIN":
        record["stats_twice"] = True
    emit(record)
    return result


async def _ask(
    session: Any, servers: Sequence[tuple[str | None, int]], name: str, qtype: str, **options: Any
) -> Any:
    """dig's servers of a query in dig's order until one answers (a reply that does not
    parse ends it too): the lookup's tries go to its first server (each timeout or
    `connection refused` one; a closed port is asked again, as dig, not given up at
    once), then each next server gets one try (dig's requeue, as over TCP). The one
    that answered, with the failures before it as dig's remarks
    (`communications error to ADDR#PORT: connection refused`, a line a try)."""
    if options.get("tcp"):
        return await _ask_tcp(session, servers, name, qtype, **options)
    return (await _ask_udp(session, servers, name, qtype, **options))[0]


async def _ask_udp(
    session: Any, servers: Sequence[tuple[str | None, int]], name: str, qtype: str, **options: Any
) -> tuple[Any, int]:
    """`_ask` over UDP: the result, and the lookup's tries left (dig's requeue over TCP
    after a truncated reply has only those)."""
    from packetlab.measure.dns import dns_query

    notes: list[str] = []
    servfail_next = options.pop("servfail_next", False)
    attempts = options.pop("attempts")
    left, i, first = attempts, 0, 0
    while True:
        server, port = servers[i]
        tries = left if i == first else 1
        result = await dns_query(session, name, qtype, server=server, port=port,
                                 attempts=tries, **options)  # fmt: skip
        if i == first:
            left -= max(result.tries, 1)  # a refusal ends its tries early: the rest left
        if servfail_next and result.rcode == "SERVFAIL":  # dig +nofail: the next server
            if i + 1 == len(servers):
                notes.append(f"Got SERVFAIL reply from {server}")
                break
            notes.append(f"Got SERVFAIL reply from {server}, trying next server")
            i = first = i + 1  # asked anew, with the lookup's tries (as dig)
            left = attempts
            continue
        if result.error is None or result.error_kind == "malformed":
            break
        if i == first and left > 0 and result.error_kind == "refused":
            pass  # the first server again, with the tries left
        elif i + 1 < len(servers):
            i += 1
        else:
            break
        notes += [line.removeprefix(";; ") for line in error_lines(result.to_dict())]
    result.notes[:0] = notes
    return result, left


async def _ask_tcp(
    session: Any, servers: Sequence[tuple[str | None, int]], name: str, qtype: str, **options: Any
) -> Any:
    """A query over TCP (+tcp) in dig's order for a lookup over TCP: a connection refused
    or a failed exchange is asked again from the first server while the tries last
    (dig's requeue), then the next servers once each; each failure dig's lines before
    the last (`;; Connection to ADDR#PORT(ADDR) for NAME failed: connection refused.`,
    then `;; no servers could be reached` but when it goes on to the next server)."""
    from packetlab.measure.dns import dns_query

    notes: list[str] = []
    servfail_next = options.pop("servfail_next", False)
    left, i = options["attempts"], 0
    while True:
        server, port = servers[i]
        result = await dns_query(session, name, qtype, server=server, port=port, **options)
        if servfail_next and result.rcode == "SERVFAIL":  # dig +nofail: the next server
            if i + 1 == len(servers):
                notes.append(f"Got SERVFAIL reply from {server}")
                break
            notes.append(f"Got SERVFAIL reply from {server}, trying next server")
            i += 1
            continue
        if result.error is None or result.error_kind not in ("refused", "tcp"):
            break
        if left > 1:
            left, i, next_server = left - 1, 0, False
        elif i + 1 < len(servers):
            i, next_server = i + 1, True
        else:
            break
        lines = error_lines(result.to_dict())
        if result.error_kind == "refused" and not next_server:
            lines.append(";; no servers could be reached")
        notes += [line.removeprefix(";; ") for line in lines]
    result.notes[:0] = notes
    return result


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


def _pad(column: int, to: int) -> tuple[str, int]:
    """BIND's indent(): tabs (8 wide), then spaces, from `column` to `to`; at least one."""
    to = max(to, column + 1)
    tabs = to // 8 - column // 8
    if tabs > 0:
        return "\t" * tabs + " " * (to - to // 8 * 8), to
    return " " * (to - column), to


TTL_COLUMN, CLASS_COLUMN, TYPE_COLUMN, RDATA_COLUMN = 24, 32, 40, 48  # dig's columns
COLUMNS = (TTL_COLUMN, CLASS_COLUMN, TYPE_COLUMN, RDATA_COLUMN)
MULTILINE_COLUMNS = (24, 24, 24, 32)  # dig +multiline's (BIND's style for it)


class Style:
    """How dig lays records out: its columns and, with +multiline or +split=N, the data
    written again (measure.dnstext.restyle) in BIND's multi-line form or N-character words;
    +nottlid and +noclass leave out the TTL and class (BIND's columns for them),
    +ttlunits writes TTLs in units (`1h30m`), +[no]rrcomments, +nocrypto and
    +unknownformat as `presentation` says."""

    def __init__(self, multiline: bool = False, split: int | None = None, *, ttl: bool = True,
                 cls: bool = True, ttlunits: bool = False, comments: bool | None = None,
                 crypto: bool = True, unknown: bool = False,
                 expandaaaa: bool = False) -> None:  # fmt: skip
        self.multiline, self.split = multiline, split
        self.ttl, self.cls, self.ttlunits = ttl, cls, ttlunits
        self.comments, self.crypto, self.unknown = comments, crypto, unknown
        self.expandaaaa = expandaaaa
        # dig's columns (dns_master_stylecreate in its printmessage)
        self.columns = (MULTILINE_COLUMNS if multiline or not (ttl or cls) else
                        (24, 24, 32, 40) if not (ttl and cls) else COLUMNS)  # fmt: skip
        # a line break goes on at the rdata column, in tabs as BIND indents
        self.linebreak = "\n" + _pad(0, self.columns[3])[0] if multiline else None

    def data(self, a: Record) -> str:
        if self.expandaaaa and a["type"] == "AAAA" and not self.unknown:  # dig +expandaaaa
            import ipaddress

            try:
                return ipaddress.IPv6Address(a["data"]).exploded
            except ValueError:
                return str(a["data"])
        plain = self.comments is None or (not self.comments and not self.multiline)
        if not self.multiline and self.split is None and plain and self.crypto and (
            not self.unknown
        ):  # fmt: skip
            return str(a["data"])
        from packetlab.measure.dns import restyle

        return restyle(a["data"], a["type"], a.get("class", "IN"), self.split,
                       self.linebreak, comments=self.comments, crypto=self.crypto,
                       unknown=self.unknown)  # fmt: skip

    def ttl_text(self, ttl: int) -> str:
        return ttl_units(ttl) if self.ttlunits else str(ttl)

    def names(self, a: Record) -> tuple[str, str]:
        """The class and type as written: +unknownformat's CLASSn and TYPEn."""
        cls, rtype = a.get("class", "IN"), a["type"]
        if not self.unknown:
            return cls, rtype
        import dns.rdataclass
        import dns.rdatatype

        try:
            return (f"CLASS{int(dns.rdataclass.from_text(cls))}",
                    f"TYPE{int(dns.rdatatype.from_text(rtype))}")  # fmt: skip
        except (ValueError, dns.rdataclass.UnknownRdataclass, dns.rdatatype.UnknownRdatatype):
            return cls, rtype


PLAIN = Style()


def ttl_units(seconds: int) -> str:
    """dig +ttlunits: BIND 9.18's short TTL text (dns_ttl_totext): `1w2d3h4m5s`, `0s`."""
    parts = [f"{n}{u}" for n, u in ((seconds // 604800, "w"), (seconds // 86400 % 7, "d"),
             (seconds // 3600 % 24, "h"), (seconds // 60 % 60, "m")) if n]  # fmt: skip
    if seconds % 60 or not parts:
        parts.append(f"{seconds % 60}s")
    return "".join(parts)


def rr_line(a: Record, style: Style = PLAIN) -> str:
    """A resource record as dig prints it: the fields at its tab columns (no TTL with
    +nottlid, no class with +noclass: the next field at that one's column, as BIND)."""
    cls, rtype = style.names(a)
    fields = [(style.ttl_text(a["ttl"]), style.columns[0], style.ttl),
              (cls, style.columns[1], style.cls), (rtype, style.columns[2], True),
              (style.data(a), style.columns[3], True)]  # fmt: skip
    out, col = a["name"], len(a["name"])
    for text, to, shown in fields:
        if not shown:
            continue
        gap, col = _pad(col, to)
        out += gap + text
        col += len(text)
    return out


def question_line(qname: str, qtype: str, qclass: str = "IN", style: Style = PLAIN) -> str:
    """dig's question line: `;NAME`, then class and type at their columns (the `;` is
    not counted, as in BIND)."""
    _, class_column, type_column, _ = style.columns
    gap, col = _pad(len(qname), class_column)
    gap2, _ = _pad(col + len(qclass), type_column)
    return f";{qname}{gap}{qclass}{gap2}{qtype}"


FLAG_ORDER = ("QR", "AA", "TC", "RD", "RA", "AD", "CD")


def _opt_lines(edns: Record, yaml: bool = False) -> list[str]:
    """dig's OPT pseudosection lines (`yaml`: as its YAML style words them)."""
    flags = "".join(f" {f}" for f in ("do", "co") if f in edns["flags"])
    mbz = edns.get("mbz", 0)
    tail = f"; MBZ: 0x{mbz:04x}, udp: {edns['udp']}" if mbz else f"; udp: {edns['udp']}"
    lines = [f"; EDNS: version: {edns['version']}, flags:{flags}{tail}"]
    for opt in edns.get("options", []):
        data = bytes.fromhex(opt["data"])
        shown = "".join(chr(b) if 32 <= b < 127 else "." for b in data)
        words = " ".join(f"{b:02x}" for b in data)
        if opt["code"] == 10:  # dig: the cookie in hex, whether it is ours
            verdict = f" ({opt['cookie']})" if "cookie" in opt else ""
            lines.append(f"; COOKIE: {opt['data']}{verdict}")
            continue
        known = switches.known_option(opt["code"], data, yaml)
        if known is not None:
            lines.append(known)
            continue
        name = {3: "NSID", 12: "PAD"}.get(opt["code"], f"OPT={opt['code']}")
        lines.append(f'; {name}: {words} ("{shown}")' if data else f"; {name}:")
    return lines


def hex_dump(data: bytes) -> list[str]:
    """dig's hex dump of a packet (BIND's hex_dump()): its length, then 16 bytes a line
    in hex, nine spaces and the bytes from '!' to '}' as themselves, the others as '.'."""
    lines = [f"{len(data)} bytes"]
    for at in range(0, len(data), 16):
        chunk = data[at : at + 16]
        text = "".join(chr(b) if 0x21 <= b <= 0x7D else "." for b in chunk)
        lines.append("".join(f"{b:02x} " for b in chunk).ljust(48) + " " * 9 + text)
    return lines


STREAM_TIMEOUT = re.compile(r" within [0-9.e+-]+ s$")


def connect_failed_line(r: Record, user: str | None, why: str = "connection refused") -> str:
    """dig's line for a TCP connection that failed: the server as typed (`user`), the
    name as typed (we have it absolute: without its final dot)."""
    name = r["qname"].rstrip(".") or "."
    where = f"{r['server']}#{r['port']}({user or r['server']})"
    return f";; Connection to {where} for {name} failed: {why}."


def error_lines(r: Record, user: str | None = None) -> list[str]:
    """A query that got no answer, as dig says it: a communications error per try (a
    reply that does not parse: `Got bad packet` and dig's hex dump of it)."""
    if r.get("error_kind") == "malformed" and "packet" in r:
        return [f";; Got bad packet: {r['reason']}", *hex_dump(bytes.fromhex(r["packet"]))]
    if r.get("error_kind") in ("malformed", "lame", "steps"):
        return [f";; Got bad packet: {r['error']}" if r["error_kind"] == "malformed" else
                f";; {r['error']}"]  # fmt: skip
    where = f"{r['server']}#{r['port']}"
    if r.get("proto") == "tcp" and r.get("error_kind") == "refused":  # dig's connect failure
        return [connect_failed_line(r, user)]
    what = {"timeout": "timed out", "refused": "connection refused"}.get(
        r.get("error_kind") or "", r["error"]
    )
    if r.get("proto") == "tcp" and STREAM_TIMEOUT.search(r["error"]):
        what = "timed out"  # the TCP exchange's wait (TcpStream's StreamTimeout), as dig
    return [f";; communications error to {where}: {what}"] * max(r.get("tries", 1), 1)


class DigText:
    """dig's output for each record (its default sections, the +[no]SECTION switches,
    +short), the `; <<>>` banner before the first one."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.bannered: argparse.Namespace | None = None  # whose banner was shown last
        self.tsig_failures = False  # a reply's TSIG did not verify (dig: every later says so)

    @property
    def view(self) -> argparse.Namespace:
        """The options of what is shown now: a batch line's (dig -f), else the command's."""
        return getattr(self.args, "view", None) or self.args

    @property
    def show(self) -> dict[str, bool]:
        return getattr(self.view, "show", None) or dict.fromkeys(SECTIONS, True)

    @property
    def short(self) -> bool:  # dig's global switch: the command line's (batch line's)
        return bool(getattr(_base_of(self.view), "short", False))

    @property
    def cmd(self) -> bool:  # likewise
        show = getattr(_base_of(self.view), "show", None)
        return bool(show["cmd"]) if show else True

    @property
    def trace(self) -> bool:
        return bool(getattr(self.view, "trace", False))

    @property
    def error_banner(self) -> bool:
        """dig made the lookup's banner (`_dig_words`' `error_banner`): it comes before
        `no servers could be reached` even when +nocmd or +short came after the name."""
        return bool(getattr(self.view, "error_banner", False))

    @property
    def user_server(self) -> str | None:
        return getattr(self.view, "user_server", None)

    @property
    def style(self) -> Style:
        view = self.view
        multiline = bool(getattr(view, "multiline", False)) and not self.short

        def opt(name: str, default: Any) -> Any:
            return getattr(view, name, default)

        return Style(multiline, opt("split", None), ttl=opt("ttlid", True),
                     cls=opt("show_class", True), ttlunits=opt("ttlunits", False),
                     comments=opt("rrcomments", None), crypto=opt("crypto", True),
                     unknown=opt("unknownformat", False),
                     expandaaaa=opt("expandaaaa", False))  # fmt: skip

    def banner(self, always: bool = False) -> list[str]:
        """dig's banner before the first answer; with -f, a line of it before each batch
        line's first answer too, naming that line's words. `always`: whatever +nocmd and
        +short say now (dig made it when it read the name, before them)."""
        view = _base_of(self.view)
        words = getattr(view, "batch_words", None)
        if view is self.bannered or (self.bannered is not None and words is None):
            return []
        first = self.bannered is None
        self.bannered = view
        if not always and (not self.cmd or self.short):
            return []
        from packetlab import __version__

        text = " ".join(words if words is not None else getattr(self.args, "cmdline", None) or [])
        if not first:
            return [f"; <<>> pktlab {__version__} <<>> {text}"]
        lines = ["", f"; <<>> pktlab {__version__} <<>> {text}"]
        if self.user_server is not None:
            lines.append("; (1 server found)")
        return [*lines, ";; global options: +cmd"]

    def __call__(self, r: Record) -> str | None:
        if r["type"] != "dns":
            return None
        if getattr(self.view, "yaml", False):
            return "\n".join(self.yaml(r)) or None
        if r.get("xfr"):
            return "\n".join(self.transfer(r)) or None
        if r.get("error_kind") == "lame" and self.trace and not self.short:  # as dig's step
            notes = [f";; {n}" for n in r.get("notes", []) if not n.startswith("BAD ")]
            return "\n".join([*notes, *self.trace_step(r), f";; {r['error']}"])
        lines = [f";; {note}" for note in r.get("notes", [])]
        if "error" in r and "query" in r and r.get("error_kind") in ("timeout", "refused"):
            return "\n".join(self.with_queries(r, [";; no servers could be reached"]))
        if "error" in r and "query" in r and r.get("error_kind") == "malformed":
            return "\n".join([*self.banner(), *self.sending(r), *error_lines(r)])
        if "error" in r:
            texts = getattr(self.view, "server_texts", None) or {}
            lines += error_lines(r, texts.get(r["server"]) or self.user_server)
            if r.get("proto") == "tcp" and r.get("error_kind") == "refused":
                lines.append(";; no servers could be reached")  # as dig: no banner
            elif r.get("error_kind") == "malformed":
                self.banner()  # as dig: the lookup's banner is used up, not shown
            elif r.get("error_kind") not in ("lame", "steps"):
                lines += self.banner(always=self.error_banner)
                lines.append(";; no servers could be reached")
            if r.get("error_kind") == "timeout" and "; " in r["error"]:
                lines.append(";; (" + r["error"].split("; ", 1)[1] + ")")
            return "\n".join(lines)
        if self.short and self.trace:  # dig +trace +short: each answer, where, how long
            ms = self.took(r)
            style = self.style
            lines += [f"{a['type']} {style.data(a)} from server {r['server']} in {ms} ms."
                      for a in r["answers"]]  # fmt: skip
            return "\n".join(lines) or None
        if self.short:
            style = self.style
            where = (f" from server {r['server']} in {self.took(r)} ms."
                     if getattr(self.view, "identify", False) else "")  # fmt: skip
            lines += [style.data(a) + where for a in r["answers"]]
            return "\n".join(lines) or None
        if "query" in r:  # dig +qr: the banner, each query as sent, then what came of it
            return "\n".join(self.with_queries(r, self.message(r)))
        lines += self.banner()
        if self.trace:
            return "\n".join([*lines, *self.trace_step(r)])
        lines += self.message(r, self.xfr_show() if r["qtype"] == "IXFR" else None)  # +notcp
        if r.get("search_step"):  # dig +showsearch: the next lookup's whole banner again
            self.bannered = None
        return "\n".join(lines) if lines else None

    def yaml(self, r: Record) -> list[str]:
        """dig +yaml: the message (after the query with +qr) as dig's YAML item; no
        answer: its DIG_ERROR item (dig's remarks before an answer are not shown)."""
        from packetlab.cli import run_dns_yaml as y

        if "error" in r:  # dig 9.18 says nothing of a bad packet in YAML
            malformed = r.get("error_kind") == "malformed"
            return [] if malformed else y.error_item("no servers could be reached")
        # dig's YAML style: one line, +split's words, none of the other record switches
        data = Style(False, self.style.split).data

        def opt_lines(edns: Record) -> list[str]:
            return _opt_lines(edns, yaml=True)

        now = time.time()
        lines: list[str] = []
        if "query" in r:
            from packetlab.measure.dns import query_record

            sent = {**query_record(bytes.fromhex(r["query"])), "server": r["server"],
                    "port": r["port"], "proto": r["proto"], "rtt_us": r.get("rtt_us")}  # fmt: skip
            lines += y.message(sent, self.show, data, opt_lines, now=now)
        return lines + y.message(r, self.show, data, opt_lines, short=self.short, now=now)

    @staticmethod
    def took(r: Record) -> str:
        """The query time in whole ms, as dig (endpoint stamps; "?" when not known)."""
        us = r["rtt_us"] if r.get("rtt_us") is not None else r.get("query_time_us")
        return f"{int(us // 1000)}" if us is not None else "?"

    def trace_step(self, r: Record) -> list[str]:
        """A +trace step as dig prints it: the answer and authority records, where they
        came from and how long it took."""
        ms = self.took(r)
        name = r.get("server_name") or self.user_server or r["server"]
        style = self.style
        bad = [f";; {n}" for n in r.get("notes", []) if n.startswith("BAD ")]  # dig's, after
        return [
            *(rr_line(a, style) for a in [*r["answers"], *r.get("authority", [])]),
            *bad,
            f";; Received {r['size']} bytes from {r['server']}#{r['port']}({name}) in {ms} ms",
            "",
        ]

    def transfer(self, r: Record) -> list[str]:
        """A zone transfer as dig prints it: each attempt's messages (only their answer
        sections by default: a transfer shows headers and questions when +comments and
        +question were given), how it ended (`; Transfer failed.`, a communications
        error), then the statistics with dig's XFR size line."""
        show = self.xfr_show()
        show["stats"] = False  # after the last message, with its XFR size
        attempts = [*r.get("retries", []), r]
        lines = self.xfr_notes(r)
        for i, a in enumerate(attempts):
            lines += self.xfr_attempt(a, show, last=i == len(attempts) - 1)
        complete = r.get("error") is None and r.get("failed") is None and r["messages"]
        if complete and self.show["stats"] and not self.short:
            size = f"{r['records']} records (messages {r['messages']}, bytes {r['bytes']})"
            lines += self.stats(r, f";; XFR size: {size}")
        return lines

    def xfr_show(self) -> dict[str, bool]:
        """A transfer's display switches (an IXFR asked over UDP's too, as dig): headers
        and questions only when +comments and +question were given."""
        show = dict(self.show)
        given = getattr(self.view, "plus_set", None) or {}
        show["comments"] = show["comments"] and given.get("comments", False)
        show["question"] = show["question"] and given.get("question", False)
        return show

    def xfr_notes(self, r: Record) -> list[str]:
        """dig's remarks before a transfer (`IXFR=N +notcp` truncated: `;; Truncated,
        retrying in TCP mode.`, which dig prints only with +comments)."""
        comments = self.xfr_show()["comments"]
        return [f";; {n}" for n in r.get("notes", []) if comments or not n.startswith("Trunc")]

    def xfr_attempt(self, a: Record, show: dict[str, bool], last: bool) -> list[str]:
        style = self.style
        lines: list[str] = []
        if a["parts"]:
            first = a["parts"][0].get("tsig_note")  # dig: its TSIG's failure, then the banner
            lines += [f";; {first}"] if first else []
            lines += self.banner()  # dig's, with the first message
        at = 0
        onesoa = bool(getattr(self.view, "onesoa", False)) and a["qtype"] == "AXFR"
        for j, part in enumerate(a["parts"]):
            if j and part.get("tsig_note"):  # dig: before the message that did not verify
                lines.append(f";; {part['tsig_note']}")
            lines += [f";; {note}" for note in part.get("notes", [])]
            records = a["answers"][at : at + part["answers"]]
            at += part["answers"]
            if self.short:
                lines += [style.data(x) for x in records]
                continue
            if onesoa:  # dig +onesoa (AXFR): the first message's first SOA, no other
                soas = [k for k, x in enumerate(records) if x["type"] == "SOA"]
                drop = set(soas[1:] if j == 0 else soas)
                records = [x for k, x in enumerate(records) if k not in drop]
            message = {**part, "answers": records}
            if "question" in part:
                message["qname"], message["qtype"], message["qclass"] = part["question"]
            lines += self.message(message, show)
        if a.get("failed"):
            lines.append(f"; {a['failed']}")
        kind = a.get("error_kind")
        if a.get("error") is None:
            return lines
        where = f"{a['server']}#{a['port']}"
        texts = getattr(self.view, "server_texts", None) or {}
        if kind in ("refused", "tcp"):  # dig: the lookup's name as typed, no final dot
            why = ("connection refused" if kind == "refused" else "timed out"
                   if "timed out" in a["error"] else a["error"].split(": ", 1)[-1])  # fmt: skip
            user = texts.get(a["server"]) or self.user_server or a["server"]
            lines.append(connect_failed_line(a, user, why))
            if not a.get("next_server"):  # dig: said but when it goes on to the next server
                lines.append(";; no servers could be reached")
        elif kind == "malformed" and "packet" in a:
            lines += [f";; Got bad packet: {a['reason']}", *hex_dump(bytes.fromhex(a["packet"]))]
        elif kind in ("eof", "timeout", "reset"):
            what = {"eof": "end of file", "timeout": "timed out"}.get(kind, "connection reset")
            lines.append(f";; communications error to {where}: {what}")
            if last:  # dig's banner, if no message showed it
                lines += [*self.banner(always=self.error_banner), ";; no servers could be reached"]
        else:  # an ID mismatch (dig's words), a cap reached (ours)
            lines.append(f";; {a['error']}")
        return lines

    def stats(self, r: Record, size_line: str) -> list[str]:
        """dig's statistics: query time, server, when, the size line, a blank line."""
        lines = []
        took = r["rtt_us"] if r.get("rtt_us") is not None else r.get("query_time_us")
        if took is not None:
            lines.append(f";; Query time: {int(took // 1000)} msec")
        texts = getattr(self.view, "server_texts", None) or {}
        user = texts.get(r["server"]) or self.user_server or r["server"]
        return [
            *lines,
            f";; SERVER: {r['server']}#{r['port']}({user}) ({r['proto'].upper()})",
            f";; WHEN: {time.strftime('%a %b %d %H:%M:%S %Z %Y')}",
            size_line,
            *(
                [";; WARNING -- Some TSIG could not be validated"] if self.tsig_failed(r) else []
            ),  # dig's, after the size
            *(
                [";; WARNING -- TSIG key was not used."]
                if getattr(self.args, "tsig_unused", False)
                or getattr(self.view, "tsig_unused", False)
                else []
            ),
            "",
        ]

    def tsig_failed(self, r: Record) -> bool:
        """dig's `Some TSIG could not be validated`: from the first reply that did not
        verify, every later signed lookup's too (dig's `validated` is a global)."""
        if r.get("tsig_verified") is False:
            self.tsig_failures = True
        return self.tsig_failures and r.get("tsig_verified") is not None

    def message(self, r: Record, show: dict[str, bool] | None = None) -> list[str]:
        """The reply: header, OPT pseudosection, sections and statistics as dig shows
        them; a blank line ends each block (the last one is the record's line end).
        `show`: the display switches (default: the view's)."""
        show, style = show or self.show, self.style
        comments = show["comments"]
        lines: list[str] = []
        if comments:
            flags = "".join(f" {f.lower()}" for f in FLAG_ORDER if f in r["flags"])
            qd, an, ns, ar = r.get("counts") or (1, len(r["answers"]), 0, 0)
            mbz = "; MBZ: 0x4" if r.get("z") else ""  # dig's word for the Z bit
            lines += [
                ";; Got answer:",
                f";; ->>HEADER<<- opcode: {r.get('opcode', 'QUERY')}, status: {r['rcode']}, "
                f"id: {r.get('id')}",
                f";; flags:{flags}{mbz}; QUERY: {qd}, ANSWER: {an}, AUTHORITY: {ns}, "
                f"ADDITIONAL: {ar}",
            ]
            if "RD" in r["flags"] and "RA" not in r["flags"] and not r.get("sent"):
                lines.append(";; WARNING: recursion requested but not available")
            if r.get("extra_bytes"):
                lines.append(f";; WARNING: Message has {r['extra_bytes']} extra bytes at end")
            lines.append("")
            if r.get("edns") is not None:  # as dig 9.18: no blank line after it
                lines += [";; OPT PSEUDOSECTION:", *_opt_lines(r["edns"])]
        sections = [("QUESTION", "question", None), ("ANSWER", "answer", r["answers"]),
                    ("AUTHORITY", "authority", r.get("authority", [])),
                    ("ADDITIONAL", "additional", r.get("additional", []))]  # fmt: skip
        for title, key, records in sections:
            if not show[key]:
                continue
            no_question = "qname" not in r or (
                not r.get("sent") and (r.get("counts") or [1])[0] == 0
            )  # a transfer's message without one, a reply to +header-only
            if records is None and no_question:
                if r.get("sent"):  # dig +header-only's query: the title alone
                    lines += [f";; {title} SECTION:", ""] if comments else []
                continue
            if records is None:
                cls, rtype = style.names({"class": r.get("qclass", "IN"), "type": r["qtype"]})
                body = [question_line(r["qname"], rtype, cls, style)]
            else:
                body = [rr_line(a, style) for a in records]
            if body:
                lines += [f";; {title} SECTION:", *body, ""] if comments else body
        if show["additional"] and r.get("tsig"):  # dig: after the additional section
            body = [rr_line(a, style) for a in r["tsig"]]
            lines += [";; TSIG PSEUDOSECTION:", *body, ""] if comments else body
        if r.get("sent"):  # dig +qr's query: its size, not the statistics
            return [*lines, f";; QUERY SIZE: {r['size']}", ""] if show["stats"] else lines
        twice = 2 if r.get("stats_twice") else 1
        if show["stats"]:
            lines += self.stats(r, f";; MSG SIZE  rcvd: {r['size']}") * twice
        elif getattr(self.view, "identify", False):  # dig +identify +nostats
            lines += [
                f";; Received {r['size']} bytes from {r['server']}#{r['port']}"
                f"({self.user_server or r['server']}) in {self.took(r)} ms",
                "",
            ] * twice
        return lines

    def with_queries(self, r: Record, tail: list[str]) -> list[str]:
        """dig +qr: the banner, then each query sent (`;; Sending:`) before what came of
        it (a communications error, a truncated reply, a SERVFAIL with +nofail, a
        BADVERS: the next round's query), the remarks on the last reply, then `tail`
        (the reply; `no servers could be reached`). A TCP connection that failed sent
        nothing: its lines as they are."""
        wires = [*r.get("query_before", []), r["query"]]
        k = 0
        out: list[str] = []
        after: list[str] = []
        before: list[str] = []  # the lines before the first query

        sent: list[bool] = []

        def send() -> None:
            if not sent:  # dig's banner comes with the first message it prints (+cmd)
                out.extend(self.banner())
                sent.append(True)
            out.extend(self.sending({"query": wires[min(k, len(wires) - 1)]}))

        tries = error_lines(r) if "error" in r else []
        for note in [*r.get("notes", []), *(t.removeprefix(";; ") for t in tries)]:
            if note.startswith(("communications error", "Truncated, retrying", "BADVERS")) or (
                note.startswith("Got SERVFAIL reply") and note.endswith("trying next server")
            ):  # fmt: skip
                send()
                out.append(f";; {note}")
                k += note.startswith("BADVERS")
            elif note.startswith(("Connection to", "no servers could be reached")):
                (out if sent else before).append(f";; {note}")
            else:
                after.append(f";; {note}")
        if "error" not in r:
            send()
            out += after
        return [*before, *out, *tail]

    def sending(self, r: Record) -> list[str]:
        """dig +qr: `;; Sending:` and the query as dig prints it before it goes (its
        PADDING option still empty), `;; QUERY SIZE: N` for its statistics."""
        from packetlab.measure.dns import query_record

        lines = self.message(query_record(bytes.fromhex(r["query"])))
        return lines[:1] and [";; Sending:", *lines[1:]] if self.show["comments"] else lines


def row_for(args: argparse.Namespace) -> Any:
    """--compact: the compact form; otherwise dig's output (+short's included)."""
    if getattr(args, "compact", False) and not getattr(args, "short", False):
        return compact_row
    if not isinstance(getattr(args, "dig_text", None), DigText):
        args.dig_text = DigText(args)  # one per run: the banner comes once
    return args.dig_text


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


def target(args: argparse.Namespace) -> str | None:
    """The server: the in-process endpoint exports the address it would reach it from
    (of its family, on its interface: where an ICMP port unreachable comes back)."""
    if args.server:
        return split_server(args.server, args.family)[0]
    named = next((w[1:] for w in args.names if w.startswith("@") and len(w) > 1), None)
    for entry in getattr(args, "plan", None) or []:  # dig's words read: the names' own
        named = named or next(iter(getattr(entry[3], "servers", None) or []), None)
    if named is not None:  # a server of a name's own (dig's `NAME @SERVER`)
        return split_server(named, args.family)[0]
    from packetlab.cli.run_command import resolv_conf_servers

    v4, v6 = resolv_conf_servers()
    mine = {4: v4, 6: v6}.get(args.family or 0, v4 + v6)
    return mine[0] if mine else None


def budget(args: argparse.Namespace) -> float:
    plan = getattr(args, "plan", None) or [(n, args.types, None, None) for n in args.names]
    total = 0.0
    for entry in plan:
        o = entry[3] or args  # a batch line's options (dig -f), else the command line's
        servers = max(len(getattr(o, "servers", None) or ()), 1)
        tries = o.tries + servers - 1  # dig's requeue: the first server's tries, one a next
        # measure.dns.TRACE_STEPS; +search: the names asked in turn
        steps = 16 if getattr(o, "trace", False) else len(switches.search_names(entry[0], o))
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
    # raw sockets offered (not needed): the ICMP port unreachable of a closed UDP port
    raw=True,
)


def add_parser(sub: Any) -> None:
    from packetlab.cli.run_command import add_command

    add_command(sub, COMMAND)
