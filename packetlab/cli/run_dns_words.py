"""dig's words on `pktlab run dns`'s command line and -f FILE's lines, read as dig 9.18
reads them (`dig_style`): @SERVER, TYPE and CLASS words, -t/-c/-x in their place, the
+ switches (their tables: run_dns_switches), each name's own options; `args.plan` from
them."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import sys
from typing import Any, NamedTuple

from packetlab.cli import run_dns_switches as switches
from packetlab.cli.run import RunError
from packetlab.cli.run_dns_exits import bad_number, dig_error


class Unresolved(RunError):
    """A server's name this host does not resolve (`host`): an error on the command line;
    a -f FILE line with one is skipped, as dig (`skip_unresolved`)."""

    def __init__(self, message: str, host: str) -> None:
        super().__init__(message)
        self.host = host


def skip_unresolved(line: argparse.Namespace, error: Unresolved) -> bool:
    """dig 9.18 -f: a line with a server name it cannot resolve is not asked, its line
    `couldn't get address for 'NAME': not found: skipping lookup` on stderr in its turn,
    the status unchanged (the command line's: fatal, dig's exit 1). True when `line` is a
    batch line (the warning kept for it: `_show_line_warnings`)."""
    if not in_batch(line):
        return False
    _warn(_base_of(line), f"couldn't get address for '{error.host}': not found: skipping lookup")
    return True


def in_batch(line: argparse.Namespace) -> bool:
    """Whether `line` (a plan entry's options) is a -f FILE line's."""
    return isinstance(_base_of(line), BatchLine)


def split_server(text: str, family: int | None = None) -> tuple[str, int | None]:
    """ADDR, ADDR:PORT or [V6]:PORT; a host name instead of ADDR is resolved here (to an
    address of IP version `family` when given)."""
    import ipaddress

    text = text.strip()
    from packetlab.hostport import HostPortError, port_number
    from packetlab.hostport import split_host_port as split_text

    try:  # dig's @SERVER: `2001:db8::1:2` is one address
        host, port = split_text(text, reference=False)
    except HostPortError as e:
        raise RunError(f"--server {text}: {e}") from None
    try:
        ipaddress.ip_address(host)
    except ValueError:  # a name, as dig's @ns.example: resolved on this host, as dig does
        from packetlab.cli.run import resolve_target

        if not host:
            raise RunError(f"--server {text}: no address") from None
        try:
            host = str(resolve_target(host, family))
        except RunError:  # dig 9.18's words (was ours: `--server NAME: cannot resolve`)
            raise Unresolved(f"couldn't get address for '{host}': not found", host) from None
    if port is None:
        return host, None
    number = port_number(port)
    if number is None:  # (`²` raised int's ValueError)
        raise RunError(f"--server {text}: bad port {port!r}")
    return host, number


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
# dig's parse_uint words and largest value for a number after one of DIG_VALUES
NUMBERS = {"+time": ("timeout", 0xFFFFFFFF), "+timeout": ("timeout", 0xFFFFFFFF),
           "+tries": ("tries", 0xFFFFFFFF), "+retry": ("retries", 0xFFFFFFFE),
           "+bufsize": ("buffer size", 0xFFFF), "+edns": ("edns", 255)}  # fmt: skip
DIG_VALUES = {"+time": "wait", "+timeout": "wait", "+tries": "tries", "+retry": "tries",
              "+bufsize": "bufsize", "+edns": "edns", "+split": "split",
              "+domain": "domain", "+ndots": "ndots", "+tls-ca": "tls_ca",
              "+tls-hostname": "tls_hostname", "+tls-certfile": "tls_certfile",
              "+tls-keyfile": "tls_keyfile"}  # fmt: skip
# dig's display switches: what each +[no]WORD shows (+all/+noall: every one of them)
SECTIONS = ("cmd", "comments", "question", "answer", "authority", "additional", "stats")
#: every + word read here (without + and no) -> what it sets: dig's abbreviations
#: (`switches.full_word`) are read against them
WORDS: dict[str, object] = {
    **{k[1:].removeprefix("no"): attr for k, (attr, _) in DIG_FLAGS.items()},
    **{k[1:]: attr for k, attr in DIG_VALUES.items()},
    **{k[1:]: k for k in switches.QUERY_VALUES},
    **{k: k for k in (*SECTIONS, "all")},
}
SPLIT_MAX = 1023  # dig's bound for +split
DOH_WORDS = ("+https", "+http-plain", "+https-get", "+http-plain-get", "+https-post",
             "+http-plain-post")  # fmt: skip


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
                   "+ndots", "+yaml", "+noyaml", "+idnin", "+noidnin", "+idnout",
                   "+noidnout"}  # fmt: skip


def _tls_off(at: argparse.Namespace) -> None:
    """dig 9.18.49's +notls (and each +notls-WORD): no TLS, and plain DNS over UDP after
    +https or +http-plain too, unless +tcp was given (then DNS over HTTP(S) stays)."""
    at.tls = at.tls_mode = False
    if not getattr(at, "tcp_set", False):
        at.doh = None


def _short_sections(args: argparse.Namespace, target: argparse.Namespace) -> None:
    """dig's +short turns the lookup's sections off but the answer, and printcmd off, one
    by one: +noshort does not turn them back on (its answer lines, in full, are left)."""
    if target is not args and "show" not in target.__dict__:
        target.show = dict(args.show)
    target.show.update(dict.fromkeys(SECTIONS, False), answer=True)
    args.show["cmd"] = False  # printcmd: `+short +cmd` has its banner


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
        raise dig_error(f"{word}: expected a number 0..{SPLIT_MAX}", 10)
    n = int(value)
    if n % 4:
        n = (n + 3) // 4 * 4
        text = f";; Warning, split must be a multiple of 4; adjusting to {n}"
        if args is None:
            print(text, file=sys.stderr)
        else:
            _warn(args, text)
    return n


def _cookie_value(word: str, value: str) -> bytes | bool:
    """+cookie=HEX as dig 9.18 sends it: 1 to 40 bytes as given (it checks no length
    but the COOKIE buffer's; ours refused all but 8 and 16..40 until session 24, dig24);
    `+cookie=` is +cookie, a random one."""
    if not value:
        return True
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise RunError(f"{word}: expected hex digits (a client cookie of 8 bytes)") from None
    if len(raw) > 40:
        raise dig_error(f"{word}: COOKIE data too large (at most 40 bytes)", 10)
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
    if getattr(args, "bind", None) is not None:  # (was argparse's unrecognized arguments)
        raise RunError(f"-b {args.bind}: not built: the queries go from the endpoint's address")
    given = getattr(args, "_argv", None)  # the words as given (cli.parse)
    argv = list(given or sys.argv[1:])  # dig's banner repeats them
    args.cmdline = argv[argv.index("dns") + 1 :] if "dns" in argv else list(args.names)
    args.show = dict.fromkeys(SECTIONS, True)
    if args.short:  # --short: as +short before every word
        _short_sections(args, args)
    words = _in_place(args, args.cmdline if given and "dns" in argv else [])
    _dig_words(args, words)
    if args.batch is not None:
        _batch_lines(args)
    elif not args.plan:  # as dig: no name is the root's NS (`dig @SERVER`; was an error)
        args.plan = [(".", ["NS"], args.qclass, None)]


class Dash(NamedTuple):
    """`-t TYPE`, `-c CLASS` or `-x ADDR` in its place among dig's words. `strict`: given
    as our own long option (--type, --class), which dig has not: a type or class that
    is none is an error there (dig's -t/-c warn and ignore it)."""

    flag: str
    value: str
    strict: bool = False


_DASHES = {"-t": "-t", "--type": "-t", "-c": "-c", "--class": "-c", "-x": "-x", "-q": "-q"}


def _in_place(args: argparse.Namespace, cmdline: list[str]) -> list[str | Dash]:
    """dig's words (`args.names`) with the -t, -c and -x of the command line (`cmdline`,
    argparse's input) put back in their place among them: argparse gathers them apart.
    One it cannot place (an abbreviated --ty) goes before the names, as before."""
    names = list(args.names)
    dashed = {"-t": list(args.types or []), "-c": list(args.qclass or []),
              "-x": list(args.reverse or []),
              "-q": list(getattr(args, "qnames", None) or [])}  # fmt: skip
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
        if flag not in _DASHES and word[:2] in ("-t", "-c", "-x", "-q") and len(word) > 2:
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
    args.types, args.qclass, args.reverse, args.qnames = None, None, None, None
    return [*first, *out, *(Dash(k, v) for k in ("-x", "-q") for v in dashed[k])]


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


def _reverse_name(text: str) -> str:
    """dig -x ADDR's name: any IPv6 address in ip6.arpa, nibble by nibble, an IPv4-mapped
    one too (dnspython's from_address turns ::ffff:A.B.C.D into in-addr.arpa; dig 9.18
    does not: session 24, dig24); ValueError or DNSException for no address."""
    import dns.ipv6
    import dns.reversename

    if ":" not in text:
        return dns.reversename.from_address(text).to_text()
    nibbles = dns.ipv6.inet_aton(text).hex()
    return ".".join(reversed(nibbles)) + ".ip6.arpa."


def _base_of(ns: argparse.Namespace) -> argparse.Namespace:
    """The namespace a NameScope falls back to (itself for any other)."""
    while isinstance(ns, NameScope):
        ns = ns.__dict__["_base"]
    return ns


def _batch_lines(args: argparse.Namespace) -> None:
    """dig -f FILE: each line a query line of dig's words, with the command line's
    options as its defaults; a line's options are its own but for dig's global switches
    (+short, +[no]cmd, +[no]all's cmd, +split), which stay for the lines after it, as in
    dig. As dig 9.18 reads the file: the lines before the first query line that begin
    with a line end, `#` or `;` are skipped; after it every line is a query line (a
    blank one asks the root's NS, dig's query without a name; `#x` is a name).
    At most BATCH_LINES lines: a longer file is refused before any query, read a line at
    a time (never the whole file at once). As dig 9.18, a line over BATCH_LINE_BYTES is
    read as several, of its first BATCH_WORDS words (session 30, dig30: it was refused
    over 4,096 bytes, and each word read)."""
    lines_max, line_bytes = switches.BATCH_LINES, switches.BATCH_LINE_BYTES

    try:
        f = sys.stdin.buffer if args.batch == "-" else open(args.batch, "rb")  # noqa: SIM115
    except OSError as e:
        raise dig_error(f"-f {args.batch}: cannot open: {e.strerror}", 8) from None
    n, started, n_query = 0, False, 0
    # dig's global switches: set on a line, they stay for the lines after it
    # (and -p: dig's `port` is a global, the line's port and every later line's;
    # +[no]search, +[no]showsearch, +domain, +ndots, +[no]yaml too, since session 29)
    sticky = {"short": args.short, "cmd": args.show["cmd"], "split": args.split,
              "port": args.port, "tsig_unused": False, **_search_globals(args)}  # fmt: skip
    with f:
        while raw := f.readline(line_bytes):
            line = raw.decode("utf-8", "replace")
            n += 1
            if n > lines_max:
                raise RunError(f"-f {args.batch}: more than {lines_max} lines (the cap: each "
                               "answer is kept for the summary; split the file)")  # fmt: skip
            if not started and line[:1] in ("", "\n", "\r", "#", ";"):
                continue  # dig: skipped before the file's first query line only
            started = True
            mine = BatchLine(args)  # the command line's options, then the line's own
            mine.show = {**args.show, "cmd": sticky["cmd"]}
            mine.short, mine.split, mine.port = sticky["short"], sticky["split"], sticky["port"]
            for key in SEARCH_GLOBALS:
                setattr(mine, key, sticky[key])
            if sticky["tsig_unused"]:
                mine.tsig_unused = True
            # dig reads the file's first query line with the command line (its names
            # too), before it makes its TSIG key and search list
            mine.first_line = n_query == 0
            n_query += 1
            mine.plan, mine.types, mine.reverse, mine.qclass = [], args.types, None, args.qclass
            mine.warnings = []  # shown when the line's query is (_show_line_warnings)
            printed = io.StringIO()  # dig's stdout line for a bad number: in its turn
            try:
                with contextlib.redirect_stdout(printed):
                    words = batch_words(line)
                    where = f"-f {args.batch}:{n}"
                    _dig_words(mine, _batch_options(mine, words, where), top=False)
            except RunError as e:  # dig 9.18 reads a line when the one before is done:
                # the lines before it asked, then its error (was: the run refused, exit 2)
                args.plan.append((".", None, None, stop_line(mine, e, printed.getvalue())))
                return
            if not mine.plan:  # dig: no name is the root's NS (a blank line too)
                mine.plan = [(".", ["NS"], None, None)]
            mine.batch_words = words  # dig's banner for the line shows it
            args.plan += [(name, types, cls, o or mine) for name, types, cls, o in mine.plan]
            unused = vars(mine).get("tsig_unused", False)
            sticky = {"short": mine.short, "cmd": mine.show["cmd"], "split": mine.split,
                      "port": mine.port, "tsig_unused": unused,
                      **_search_globals(mine)}  # fmt: skip


#: dig's search globals (usesearch, showsearch, domainopt, ndots) and yaml: a -f line's
#: stay for the lines after it
SEARCH_GLOBALS = ("search", "showsearch", "domain", "ndots", "yaml")  # (and +[no]yaml)


def _later_line(ns: argparse.Namespace) -> bool:
    """Whether `ns` is a -f line after the first one (dig 9.18 reads the command line and
    the first line before it sets its search list up, setup_system: a later line's
    +domain changes nothing, neither the list nor +search)."""
    line = _base_of(ns)
    return isinstance(line, BatchLine) and not vars(line).get("first_line", True)


def _search_globals(ns: argparse.Namespace) -> dict[str, Any]:
    return {key: getattr(ns, key, None) for key in SEARCH_GLOBALS}


def stop_line(line: argparse.Namespace, error: RunError, printed: str = "") -> BatchLine:
    """The options of a plan entry that ends a -f run in its turn with `error` (dig 9.18
    stops at a line it cannot read, or a name that is not legal, after the lines before
    it are asked), `printed` (on stdout) and the line's warnings shown first."""
    base = _base_of(line)  # a -f line's, or the command line's options
    stop = BatchLine(base.__dict__["_base"] if isinstance(base, BatchLine) else base)
    stop.warnings = vars(_base_of(line)).get("warnings") or []
    stop.stop, stop.stop_printed = error, printed
    return stop


def stop_here(line: argparse.Namespace) -> None:
    """Raise the error of a `stop_line` entry (after what dig printed before it)."""
    error = vars(line).get("stop")
    if error is None:
        return
    if line.stop_printed:
        sys.stdout.write(line.stop_printed)
        sys.stdout.flush()
    raise error


def _same_line(other: argparse.Namespace, line: argparse.Namespace, error: RunError) -> bool:
    """Whether the plan entry of `other` is of the -f line of `line` and is not asked
    because of `error`: dig reads a whole line before it asks any of it, so an error in
    its words drops the line; a name that is not legal stops it at that name's lookup."""
    if getattr(error, "at_name", False):
        return False
    return _base_of(other) is _base_of(line)


def batch_words(line: str) -> list[str]:
    """A -f line's words as dig 9.18's split_batchline makes them: split at blanks, tabs
    and line ends alone (quotes and backslashes are the words' own: `a\\.b` is a name
    of a label `a.b`, `"x"` a name with quotes), BATCH_WORDS at most (session 30, dig30:
    they were split as a shell splits)."""
    return [w for w in re.split(r"[ \t\r\n]+", line) if w][: switches.BATCH_WORDS]


def _batch_options(mine: argparse.Namespace, words: list[str], where: str) -> list[str | Dash]:
    """A batch line's dashed options: -p PORT, -4, -6 into `mine`; -t TYPE, -c CLASS and
    -x ADDR in their place among the other words (dig's scoping, as on the command line);
    -y and -k as dig 9.18 takes them: on the first line, the run's key (dig reads that
    line before it makes its key: every line signed); on a later one no key, and -y's
    `;; WARNING -- TSIG key was not used.` from that line on when no key was made."""
    rest: list[str | Dash] = []
    it = iter(words)
    for word in it:
        if word in ("-t", "-c", "-x", "-q", "-p", "-y", "-k"):
            value = next(it, None)
            if value is None:
                raise RunError(f"{where}: {word} needs a value")
            if word in ("-y", "-k"):
                top = mine.__dict__["_base"]
                if mine.first_line:
                    setattr(top, "tsig_y" if word == "-y" else "tsig_file", value)
                elif word == "-y":  # dig reads a later line's -y too (no key made from
                    _y_words(value)  # it): one without name and secret is its usage()
                    if top.tsig_y is None and top.tsig_file is None:
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


def _y_words(value: str) -> None:
    """dig's check of a `-y [hmac:]name:secret` it reads and makes no key of (a -f line
    after the first): RunError (dig: usage, exit 1) for a word without name and secret
    or a digest size it cannot parse, as on the first line."""
    from packetlab.measure.dnstsig import KeyUsageError, key_from_y

    try:
        key_from_y(value)
    except KeyUsageError as e:
        raise RunError(str(e)) from None


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
    loose = True  # a type or class word is one (dig 9.18: until the first -t or -c)

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
            # as dig: from here on, a type or class word is a name (not after -q or -x:
            # `-x 192.0.2.1 MX` asks MX of the reverse name; session 24, dig24)
            loose = loose and word.flag in ("-q", "-x")
            if word.flag == "-x":
                try:
                    new_name(_reverse_name(word.value))
                except (ValueError, dns.exception.DNSException):  # as dig: its words reversed
                    new_name(".".join(reversed(word.value.split("."))) + ".in-addr.arpa.")
                scope().reverse = True
            elif word.flag == "-q":  # dig -q NAME: a name, whatever it reads as
                new_name(word.value)
            elif word.flag == "-t":
                set_type(word.value, word.strict)
            else:
                set_class(word.value, word.strict)
        elif word == "@":  # was taken as a name (dig: couldn't get address for '')
            raise RunError("@: no server after it (@SERVER, e.g. @127.0.0.1, as dig)")
        elif word.startswith("@") and len(word) > 1:
            (own_servers[-1] if names else servers).append(word[1:])
        elif word.startswith("+"):
            typed, eq, value = word.partition("=")
            eq = eq if value else ""  # as dig 9.18 (strtok): `+bufsize=` is `+bufsize`
            key = switches.full_word(typed, WORDS)  # dig's abbreviations: +ans, +tim=3
            if key.removeprefix("+").removeprefix("no") in switches.DEPRECATED:
                sys.stdout.flush()  # dig's warning has no line end
                print(f";; +{key[1:].removeprefix('no')} option is deprecated", end="",
                      file=sys.stderr, flush=True)  # fmt: skip
                continue
            # as dig: an option after a name is that name's query's (a global switch all's)
            at: argparse.Namespace = scope() if names and key not in GLOBAL_SWITCHES else args
            if key == "+edns" and not eq:
                at.edns = 0
            elif key == "+bufsize" and not eq:  # dig 9.18: its default, given (an OPT)
                from packetlab.measure.dnsresult import EDNS_PAYLOAD

                at.bufsize = EDNS_PAYLOAD
            elif key == "+split" and not eq:
                pass  # dig 9.18: +split (or +split=) with no width changes nothing
            elif key == "+split" and eq:
                args.split = _split_value(word, value, args)
            elif key == "+cookie" and eq:
                at.cookie = _cookie_value(word, value)
                at.edns = max(at.edns, 0)  # as dig: +cookie and +nsid turn EDNS on
            elif key in switches.QUERY_VALUES and eq:
                switches.query_value(at, key, value, word)
            elif key in ("+ednsflags", "+noednsflags"):  # (as dig: a value after one
                # that takes none, here and below, is ignored: +nsid=1 is +nsid)
                at.ednsflags = 0
            elif key == "+noednsopt":
                at.ednsopts = ()
            elif key in ("+showsearch", "+noshowsearch"):
                args.showsearch = args.search = key == "+showsearch"  # as dig: both
            elif key == "+domain" and eq and _later_line(args):
                pass  # dig 9.18 makes its search list once, after the first -f line
            elif key == "+domain" and eq:  # as dig: the search list of one, search on
                _check_name(value or ".")
                args.domain, args.search = value, True
            elif key == "+ndots" and eq:
                if not (value.isascii() and value.isdigit()) or int(value) > switches.NDOTS_MAX:
                    raise bad_number(word, "ndots", value)
                args.ndots = int(value)
            elif key in DOH_WORDS:
                at.doh = "https" if key.startswith("+https") else "http"  # (as dig's -get)
                if key.endswith("-get"):
                    at.doh_get = True
                elif eq:
                    at.doh_path = value
            elif key in {f"+no{k[1:]}" for k in DOH_WORDS}:
                if key.endswith("-get"):
                    at.doh_get = False
                else:
                    at.doh = None
            elif key in ("+tls-certfile", "+tls-keyfile") and not value:
                what = "certificate" if key == "+tls-certfile" else "key"
                raise RunError(f"{word}: TLS {what} file is not specified (dig: Invalid option)")
            elif key in ("+tls-ca", "+tls-hostname", "+tls-certfile", "+tls-keyfile") and (
                eq or key == "+tls-ca"
            ):
                setattr(at, key[1:].replace("-", "_"), value)  # dig: TLS on, as +tls
                at.tls = True
            elif key in ("+notls-ca", "+notls-hostname", "+notls-certfile", "+notls-keyfile"):
                setattr(at, key[3:].replace("-", "_"), None)
                _tls_off(at)  # dig 9.18.49: each +notls-WORD is +notls too
            elif key in ("+noopcode", "+nosubnet", "+noqid"):  # (+noqid: a random ID again)
                setattr(at, key[3:], 0 if key == "+noopcode" else None)
            elif key in DIG_FLAGS and DIG_FLAGS[key][0] == "tcp" and not top:
                pass  # dig 9.18 ignores +[no]tcp and +[no]vc on a batch line (is_batchfile)
            elif key == "+nosplit" and eq:  # dig's one switch whose no-form takes no value
                raise RunError(f"{word}: invalid option (+nosplit takes no value, as dig)")
            elif key in DIG_FLAGS:
                attr, on = DIG_FLAGS[key]
                setattr(at, attr, on)
                if attr == "tcp":  # dig's tcp_mode_set: IXFR=N +notcp goes over UDP
                    at.tcp_set = True
                if attr == "tls":  # dig's tls_mode: +tls wins over +https (DoT)
                    at.tls_mode = on
                    if not on:
                        _tls_off(at)
                if key in ("+nsid", "+cookie"):
                    at.edns = max(at.edns, 0)
                if key == "+yaml" and on:  # dig 9.18: +yaml turns printcmd off (a global:
                    # a later -f line's +noyaml has no banner) and the lookup's stats
                    args.show["cmd"] = args.show["stats"] = False
                if key == "+short" and on:  # dig: +short turns the lookup's rrcomments off
                    at.rrcomments = False
                    _short_sections(args, scope() if names else args)
            elif key in DIG_VALUES and eq:
                desc, largest = NUMBERS.get(key, (key[1:], 0xFFFFFFFF))  # dig's words, its largest
                seconds = key in ("+time", "+timeout")  # ours: a fraction too (+time=0.5)
                if not re.fullmatch(r"[0-9]+(\.[0-9]+)?" if seconds else "[0-9]+", value):
                    raise bad_number(word, desc, value)
                n = float(value) if seconds else int(value)
                if n > largest:
                    raise bad_number(word, desc, value)
                n += key == "+retry"
                if n == 0 and key in ("+time", "+timeout", "+tries"):
                    n = 1  # dig 9.18: +time=0 and +tries=0 are 1, silently
                # dig 9.18 keeps the size in an int16_t: 32768..65535 read back negative,
                # dig's "not given" (its default offered, no OPT after +noedns; dig24)
                setattr(at, DIG_VALUES[key], None if key == "+bufsize" and n >= 0x8000 else n)
            elif _display(args, key, at):
                pass
            else:
                shown = word if key == typed else f"{word} ({key})"
                raise RunError(
                    f"{shown}: dig option not supported here (dig-style: @SERVER, TYPE, +tcp, "
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
        if args.port > 65535:
            raise bad_number(f"-p {args.port}", "port number", str(args.port), True, 1)
        if not 1 <= args.port <= 65535:
            raise RunError(f"-p {args.port}: bad port")
        if args.server is None and not any(own_servers) and not getattr(args, "servers", None):
            # dig: resolv.conf's servers at that port (this host's, as dig reads it)
            args.servers = switches.resolv_conf_servers(args.family)
    for i, mine in enumerate(own_servers):
        if mine:  # as dig: the query's servers are every query's, then its own
            if scopes[i] is None:
                scopes[i] = NameScope(args)
            scopes[i].servers = [*args.servers, *mine]  # type: ignore[union-attr]
    for o in [args, *(x for x in scopes if x is not None)]:
        if o.bufsize is not None and not 0 <= o.bufsize <= 65535:
            raise dig_error(f"+bufsize={o.bufsize}: out of range (0..65535)", 10)
        if o.edns > 255:
            raise dig_error(f"+edns={o.edns}: out of range (0..255)", 10)
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
    from packetlab.hostport import HostPortError
    from packetlab.hostport import split_host_port as split_text

    try:
        return split_text(text.strip(), reference=False)[0]
    except HostPortError:  # (split_server said why first)
        return text.strip()


def _check_name(name: str) -> None:
    import dns.exception
    import dns.name

    try:
        dns.name.from_text(name)
    except dns.exception.DNSException as e:
        why = _NAME_ERRORS.get(type(e).__name__, str(e))
        bad = dig_error(f"'{name}' is not a legal name ({why})", 10)  # as typed
        bad.at_name = True  # type: ignore[attr-defined]  # dig: at that name's lookup
        raise bad from None


# BIND's words (isc_result_totext) for dnspython's, as dig says them after the name
_NAME_ERRORS = {"EmptyLabel": "empty label", "LabelTooLong": "label too long",
                "NameTooLong": "ran out of space", "BadEscape": "bad escape"}  # fmt: skip


# BIND 9.18's type mnemonics that dnspython 2 does not know (dns_rdatatype_fromtext):
# dig asks them; we ask TYPEnnn (the question line names them as dig 9.18 does,
# run_dns_text.BIND_TYPE_NAMES, since session 24; KEYDATA dig shows TYPE65533 there)
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


def idn_name(name: str, idnin: bool) -> str:
    """A name typed with non-ASCII letters as dig asks it: +idnin, its A-label form (IDNA
    2008 with UTS #46's mapping, non-transitional: `Bücher.test` is xn--bcher-kva.test,
    `straße` keeps its ß; the `idna` package, as dig's libidn2); +noidnin (dig's default
    off a terminal), its UTF-8 bytes as they are (`B\\195\\188cher.test.`; dnspython
    would have made it IDNA 2003's A-label). An ASCII name as it is (dig: `fa%.test` too)."""
    if name.isascii():
        return name
    if not idnin:
        return "".join(c if c.isascii() else "".join(f"\\{b:03d}" for b in c.encode())
                       for c in name)  # fmt: skip
    import idna

    try:
        return idna.encode(name.rstrip("."), uts46=True, transitional=False).decode() + (
            "." if name.endswith(".") else ""
        )
    except idna.IDNAError as e:
        raise dig_error(f"{name!r} is not a legal IDNA2008 name ({e}), use +noidnin", 10) from None
