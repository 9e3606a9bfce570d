"""``pktlab run http URL...``: HTTP(S) GET from the endpoint, TLS at the controller
(packetlab.measure.http)."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from typing import IO, Any
from urllib.parse import quote

from packetlab.cli import pcapout
from packetlab.cli.curl_output import Output, RemoteName, is_stdout
from packetlab.cli.run import RunError
from packetlab.cli.run_command import Command, Emit, Experiment, Progress, Record
from packetlab.cli.run_http_opts import (
    HeaderDump,
    byte_range,
    curl_warning,
    referer,
    resolve_entries,
    time_cond,
)
from packetlab.cli.run_http_retry import Retry

MAX_REDIRS = 50  # curl's default --max-redirs (packetlab.measure.http's, not imported here)
USER_AGENT = "pktlab-http/1"  # measure.http's (not imported here: it loads OpenSSL)
CONNECT_TIMEOUT = 10.0  # s, http_get's default connect_timeout
PARALLEL_MAX, PARALLEL_LIMIT = 50, 300  # curl's --parallel-max default and its largest

EPILOG = """\
examples:
  pktlab run http https://example.com/            # certificate checked, like curl
  pktlab run http --cacert ca.pem https://10.77.3.2:8443/page/1
  pktlab run http --insecure https://10.77.3.2/   # no certificate check
  pktlab run http --connect-to 10.77.3.2 https://www.test/ --json
  pktlab run http -L http://10.77.3.2/old       # follow redirects (at most --max-redirs)
  pktlab run http -d 'a=1&b=2' http://10.77.3.2/form   # POST, as curl -d
  pktlab run http -X DELETE http://10.77.3.2/item/4
  pktlab run http --data-urlencode 'q=a b&c' --data-urlencode note@n.txt http://10.77.3.2/f
  pktlab run http --url-query 'q=a b' --url-query +page=2 http://10.77.3.2/search
  pktlab run http -A probe/1 -e 'http://10.77.3.2/;auto' -L http://10.77.3.2/old
  pktlab run http -r 0-1023 -D head.txt -o part.bin http://10.77.3.2/big  # bytes 0-1023
  pktlab run http --retry 3 --retry-connrefused --connect-timeout 2 -m 10 http://10.77.3.2/
  pktlab run http -G -d q=1 -u me:secret -i -o - http://10.77.3.2/search
  pktlab run http --compressed -o page.html http://10.77.3.2/
  pktlab run http -L -b '' -c jar.txt http://10.77.3.2/login  # cookies as curl -c
  pktlab run http -o page.html http://10.77.3.2/ # the body to a file
  pktlab run http -o 'page_#1.html' 'http://10.77.3.2/p/[1-3]'  # page_1.html..., as curl
  pktlab run http -O http://10.77.3.2/data/run1.tar  # saved as run1.tar, as curl -O
  pktlab run http --output-dir out --create-dirs --remote-name-all URL1 URL2  # out/NAME
  pktlab run http -O -J http://10.77.3.2/download?id=7  # the name the server gives
  pktlab run http --no-clobber -O http://10.77.3.2/run1.tar  # run1.tar.1 if it exists
  pktlab run http -g 'http://10.77.3.2/q?a[]=1'  # -g: [ ] { } as written, no globbing
  pktlab run http -F name=me -F 'photo=@cat.jpg' http://10.77.3.2/upload  # multipart POST
  pktlab run http -T results.tar http://10.77.3.2/dav/  # PUT .../dav/results.tar
  pktlab run http -T 'run[1-3].tar' http://10.77.3.2/dav/  # run1.tar..run3.tar, as curl
  pktlab run http -F 'logs=@a.log,b.log' -F 'n=x;headers=X-Run: 7;encoder=base64' \\
      http://10.77.3.2/upload  # several files in one part, part headers, encoders
  pktlab run http -F 'alt=(;type=multipart/alternative' -F 't=<m.txt' -F 'h=<m.html' \\
      -F '=)' http://10.77.3.2/upload  # a nested multipart part, as curl's
  pktlab run http -Z -w '%{url} %{http_code}\\n' -o a -o b URL1 URL2  # curl's -Z meter
  pktlab run http -Z https://10.77.3.2/a https://10.77.3.2/b  # at once, as curl -Z
  pktlab run http -s -o /dev/null -w '%{http_code} %{time_total}\\n' http://10.77.3.2/

With -w the table is replaced by curl's output: each URL's body (unless -o sends it to a
file; the headers with -I) then the write-out, nothing else on stdout. -w knows curl's
%{http_code} %{response_code} %{time_namelookup} %{time_connect} %{time_appconnect}
%{time_pretransfer} %{time_starttransfer} %{time_redirect} %{time_total}
%{size_download} %{size_header} %{size_request} %{size_upload} %{speed_download}
%{speed_upload} %{num_redirects} %{num_connects} %{url} %{url_effective}
%{redirect_url} %{remote_ip} %{remote_port} %{content_type} %{method} %{scheme}
%{http_version} %{exitcode} %{errormsg} %{filename_effective} %{json} %{onerror}
%{stdout} %{stderr} %header{NAME}, \\n \\t \\r and %%; -w @FILE reads the format from FILE.
An unknown variable prints nothing (warned on stderr, as curl). Write --max-redirs=-1
for no limit (-1 alone reads as an option).

Host names are resolved through the endpoint's DNS server unless --connect-to gives the
address (the name still goes into SNI, the Host header and the certificate check).
Times are endpoint stamps from the start (TIME read before the name lookup, or before
the nopen), like curl's time_* (summed over the hops of a redirect, as curl's).
Exit status: 0 all fetched (any HTTP status, as curl; with -f one of 400 or more fails),
1 some fetch failed (its record has "error"), 2 error (an option, a URL or its glob,
a -T glob or a -F part that is wrong: one line, before anything is sent).
See docs/http.md.
"""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "urls",
        metavar="URL",
        nargs="+",
        help="http:// or https:// URLs (no scheme: http://, as curl); curl's globs: "
        "'http://h/f[1-3].txt' or 'http://h/{a,b}' fetch each URL they make (not with -g)",
    )
    p.add_argument("--cacert", metavar="FILE", help="trust the CA certificates in FILE (PEM)")
    p.add_argument(
        "-k", "--insecure", action="store_true", help="do not verify the server certificate"
    )
    p.add_argument(
        "-E", "--cert", metavar="FILE",
        help="the client certificate (PEM, its chain after it; its key too unless --key) "
        "sent when an https:// server asks for one, as curl (no :PASSWORD: an encrypted "
        "key is refused)",
    )  # fmt: skip
    p.add_argument("--key", metavar="FILE", help="the private key of --cert (PEM)")
    p.add_argument(
        "--connect-to",
        metavar="ADDR",
        help="connect to ADDR instead of resolving the URL's host",
    )
    p.add_argument(
        "--resolve", action="append", default=[], metavar="HOST:PORT:ADDR",
        help="a request to HOST (* any) and PORT connects to ADDR (the first of "
        "ADDR,ADDR...; [v6] in brackets), no DNS, as curl (repeatable; -HOST:PORT "
        "drops an earlier one); --connect-to wins",
    )  # fmt: skip
    fam = p.add_mutually_exclusive_group()
    fam.add_argument("-4", dest="family", action="store_const", const=4, help="resolve to IPv4")
    fam.add_argument("-6", dest="family", action="store_const", const=6, help="resolve to IPv6")
    p.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="extra request header (repeatable)",
    )
    p.add_argument(
        "-f", "--fail", action="store_true",
        help="an HTTP status of 400 or more is a failure (exit status 1), as curl -f",
    )  # fmt: skip
    p.add_argument(
        "--fail-with-body", action="store_true",
        help="as -f, but the body of a status of 400 or more is written (curl 7.76+)",
    )  # fmt: skip
    p.add_argument(
        "-L", "--location", action="store_true",
        help="follow 301, 302, 303, 307 and 308 redirects (curl's method rules)",
    )  # fmt: skip
    p.add_argument(
        "--max-redirs", type=int, default=MAX_REDIRS, metavar="N",
        help=f"with -L: at most N redirects, -1 no limit [default: {MAX_REDIRS}, as curl]",
    )  # fmt: skip
    p.add_argument(
        "--location-trusted", action="store_true",
        help="as -L, and -u's credentials (and a -H Authorization or Cookie) also sent to "
        "the other hosts a redirect leads to, as curl",
    )  # fmt: skip
    for code in (301, 302, 303):
        p.add_argument(
            f"--post{code}", action="append_const", dest="post30x", const=code, default=[],
            help=f"with -L: keep a POST a POST through a {code} (curl makes it a GET)",
        )  # fmt: skip
    p.add_argument(
        "-X", "--request", metavar="METHOD",
        help="request method (sent on every request of a redirect chain, as curl)",
    )  # fmt: skip
    for flag, kind, what in (
        (("-d", "--data"), "data", "POST DATA (form-encoded, as curl; @FILE: the file, CR "
         "and LF removed; several: joined with &)"),
        (("--data-binary",), "binary", "POST DATA as is (@FILE: the file as is)"),
        (("--data-raw",), "raw", "POST DATA, an @ is no file name"),
        (("--data-ascii",), "data", "the same as -d"),
        (("--data-urlencode",), "urlencode", "POST DATA URL-encoded, as curl: CONTENT, "
         "=CONTENT, NAME=CONTENT (CONTENT encoded), @FILE, NAME@FILE (the file's bytes "
         "encoded; @-: stdin); joined with the other -d options by &"),
    ):  # fmt: skip
        p.add_argument(*flag, action=_DataAction, dest="data", kind=kind, metavar="DATA",
                       help=what)  # fmt: skip
    p.add_argument(
        "-F", "--form", action=_FormAction, dest="form", default=[], metavar="NAME=VALUE",
        help="a multipart/form-data POST part, as curl -F: NAME=VALUE, NAME=@FILE (a file "
        "part; NAME=@a,b several files in one part), NAME=<FILE (its content as the "
        "value); ;type=T ;filename=F ;headers=H (;headers=@FILE) ;encoder=E after it; "
        "NAME=( (;type=T) opens a nested multipart part that the parts after it go in, =) "
        "closes it",
    )  # fmt: skip
    p.add_argument(
        "--form-string", action=_FormAction, dest="form", metavar="NAME=VALUE",
        help="a multipart/form-data part whose VALUE is sent as is (no @, < or ;type=), "
        "as curl --form-string",
    )  # fmt: skip
    p.add_argument(
        "-T", "--upload-file", action="append", default=[], metavar="FILE",
        help="PUT FILE to the URL (the first -T for the first URL, and so on; - is stdin, "
        "sent chunked); a URL ending in / gets the file name appended; curl's globs: "
        "-T '{a,b}' or -T 'f[1-3]' PUTs each file to that URL",
    )  # fmt: skip
    p.add_argument(
        "-g", "--globoff", action="store_true",
        help="URLs and -T names as written: no {a,b} or [1-3] globbing, as curl -g",
    )  # fmt: skip
    p.add_argument(
        "--create-dirs", action="store_true",
        help="make the missing directories of -o and -O files and --output-dir "
        "(mode 0750), as curl",
    )  # fmt: skip
    p.add_argument(
        "-Z", "--parallel", action="store_true",
        help="fetch the URLs at the same time (at most --parallel-max), as curl -Z: each "
        "row when its URL ends",
    )  # fmt: skip
    p.add_argument(
        "--parallel-immediate", action="store_true",
        help="with -Z: a new connection for each transfer at once, not waiting for a "
        "first connection to the origin (to multiplex over HTTP/2, or reuse over "
        "HTTP/1.1), as curl",
    )  # fmt: skip
    p.add_argument(
        "--parallel-max", type=int, default=PARALLEL_MAX, metavar="N",
        help=f"with -Z: at most N transfers at once, 1..{PARALLEL_LIMIT} "
        f"[default: {PARALLEL_MAX}, as curl]",
    )  # fmt: skip
    p.add_argument("-I", "--head", action="store_true", help="HEAD request (headers only)")
    ver = p.add_mutually_exclusive_group()
    ver.add_argument(
        "--http1.1", dest="http_version", action="store_const", const="1.1",
        help="HTTP/1.1 only (https://: ALPN offers http/1.1 alone)",
    )  # fmt: skip
    ver.add_argument(
        "--http2", dest="http_version", action="store_const", const="2",
        help="HTTP/2 (the default over https:// through ALPN h2; http://: an h2c Upgrade "
        "request, HTTP/1.1 if the server declines)",
    )  # fmt: skip
    ver.add_argument(
        "--http2-prior-knowledge", dest="http_version", action="store_const", const="2-prior",
        help="http://: HTTP/2 (h2c) from the first byte, no Upgrade",
    )  # fmt: skip
    p.add_argument(
        "-G", "--get", action="store_true",
        help="with -d: a GET with the data appended to each URL as its query (after ? or "
        "&; then --url-query is not used, as curl 7.88)",
    )  # fmt: skip
    p.add_argument(
        "--url-query", action=_QueryAction, dest="url_query", default=[], metavar="DATA",
        help="append DATA to each URL's query (several: joined with &), as curl 7.87+: "
        "+DATA as is, else as --data-urlencode makes it (NAME=CONTENT, NAME@FILE, ...)",
    )  # fmt: skip
    p.add_argument(
        "-u", "--user", metavar="USER:PASSWORD",
        help="Basic authorization (sent only to the URL's own scheme, host and port, also "
        "over redirects, as curl)",
    )  # fmt: skip
    p.add_argument(
        "--compressed", action="store_true",
        help="ask for gzip or deflate (Accept-Encoding: deflate, gzip) and decode the body",
    )  # fmt: skip
    p.add_argument(
        "-b", "--cookie", action="append", default=[], metavar="DATA|FILE",
        help="'NAME=VALUE; ...' sent on every request; else a Netscape cookie FILE read "
        "(missing: none), and the cookie engine on: Set-Cookie kept over redirects and URLs",
    )  # fmt: skip
    p.add_argument(
        "-c", "--cookie-jar", metavar="FILE",
        help="the cookie engine on; all cookies written to FILE at the end, as curl's "
        "Netscape cookie file (- is stdout)",
    )  # fmt: skip
    p.add_argument(
        "-i", "--include", action="store_true",
        help="the response headers (every hop's with -L) before the body, where the body "
        "goes (-o or -w output)",
    )  # fmt: skip
    p.add_argument(
        "-o", "--output", action="append", default=[], metavar="FILE",
        help="write the body to FILE (the first -o for the first URL, and so on; - is "
        "stdout); #1, #2... in FILE: what the URL's first, second glob matched, as curl",
    )  # fmt: skip
    p.add_argument(
        "-O", "--remote-name", action="append_const", const=REMOTE, dest="output",
        help="write the body to a file named as the URL's last path segment, in the "
        "current directory (as curl: no query, undecoded, a URL ending in / is an error "
        "unless -J); "
        "paired with URLs in order together with -o",
    )  # fmt: skip
    p.add_argument(
        "--no-remote-name", action="append_const", const=NO_REMOTE, dest="output",
        help="a place among the -o and -O options that names no file (as a URL "
        "without -o), as curl",
    )  # fmt: skip
    p.add_argument(
        "--remote-name-all", "--no-remote-name-all", action=_RemoteNameAll, nargs=0,
        dest="remote_name_all", default=[],
        help="-O for every URL after this option that has no -o or -O of its own, as curl",
    )  # fmt: skip
    p.add_argument(
        "-J", "--remote-header-name", action="store_true", dest="remote_header_name",
        help="with -O: the file named as the server's Content-Disposition header says "
        "(filename=, its path removed; none: the URL's name), as curl 7.88; such a file "
        "is not overwritten (an error, unless --clobber)",
    )  # fmt: skip
    p.add_argument("--no-remote-header-name", action="store_false", dest="remote_header_name",
                   help=argparse.SUPPRESS)  # fmt: skip
    p.add_argument(
        "--no-clobber", action="store_false", dest="clobber", default=None,
        help="an -o, -O or -J file that exists is kept: the body goes to FILE.1, FILE.2 "
        "... FILE.99 (the first that does not exist; none free: error 23), as curl",
    )  # fmt: skip
    p.add_argument(
        "--clobber", action="store_true", dest="clobber", default=None,
        help="overwrite an existing file, also one -J names (curl's default but for -J)",
    )  # fmt: skip
    p.add_argument(
        "--output-dir", metavar="DIR",
        help="the -o and -O files go into DIR (DIR/FILE, as curl; with --create-dirs DIR "
        "is made too)",
    )  # fmt: skip
    p.add_argument(
        "-w", "--write-out", metavar="FORMAT", action=_WriteOutAction,
        help="after each URL print FORMAT with curl's %%{variables} instead of the table "
        "(@FILE: the format from FILE); see below",
    )  # fmt: skip
    p.add_argument(
        "--no-progress-meter", action="store_true",
        help="with -Z and -w: no curl progress meter on stderr (-s: neither it nor error "
        "lines)",
    )  # fmt: skip
    p.add_argument(
        "-s", "--silent", action="store_true",
        help="with -w: no error lines on stderr (the write-out still has %%{errormsg}), "
        "no warnings",
    )  # fmt: skip
    p.add_argument(
        "-S", "--show-error", action="store_true",
        help="with -s: the error lines still on stderr (curl -sS, -fsSL)",
    )  # fmt: skip
    p.add_argument(
        "-A", "--user-agent", metavar="NAME",
        help=f"the User-Agent header [default: {USER_AGENT}]; '' sends none, as curl",
    )  # fmt: skip
    p.add_argument(
        "-e", "--referer", metavar="URL",
        help="the Referer header on every request; 'URL;auto' (or ';auto') with -L: each "
        "redirect hop sends the URL it came from, as curl",
    )  # fmt: skip
    p.add_argument(
        "-r", "--range", metavar="RANGE", dest="byte_range",
        help="ask for bytes RANGE (0-499, 500-, -500, 0-1,5-9): Range: bytes=RANGE on a "
        "GET or HEAD, Content-Range: bytes RANGE/SIZE on a -d or -T upload, as curl",
    )  # fmt: skip
    p.add_argument(
        "-C", "--continue-at", metavar="OFFSET", type=_offset,
        help="resume a download at byte OFFSET (- : the size of the -o file), as curl: "
        "Range: bytes=OFFSET-, the -o file appended to; an answer that does not start "
        "there is curl's 33, a 416 is no error",
    )  # fmt: skip
    p.add_argument(
        "--max-filesize", metavar="BYTES", type=_size,
        help="a response whose Content-Length is over BYTES (k, M, G: KiB, MiB, GiB) is "
        "an error before its body, curl 7.88's 63 (a body of unknown length is not "
        "checked, as 7.88)",
    )  # fmt: skip
    p.add_argument(
        "-z", "--time-cond", metavar="TIME",
        help="If-Modified-Since: TIME (-TIME If-Unmodified-Since, =TIME Last-Modified); "
        "TIME a date or a file (its time of change); a 2xx whose Last-Modified fails it "
        "is curl's simulated 304, no body",
    )  # fmt: skip
    p.add_argument(
        "-D", "--dump-header", metavar="FILE",
        help="write every response header block (1xx, redirect hops, every URL) to FILE "
        "as received (made empty first; - is stdout), as curl",
    )  # fmt: skip
    pcapout.add_option(p)
    p.add_argument(
        "-m",
        "--max-time",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds per URL from its first connect, redirects included [default: 30]",
    )
    p.add_argument(
        "--retry", type=_count, default=0, metavar="N",
        help="fetch a URL again, at most N times, after a transient failure, as curl: a "
        "timeout (28), a name not resolved (6), an HTTP status 408, 429, 500, 502, 503 "
        "or 504; waiting 1 s, then 2, 4, ... (at most 600), or the server's Retry-After, "
        "with curl's 'Warning: Problem : ...' line on stderr [default: 0]",
    )  # fmt: skip
    p.add_argument(
        "--retry-delay", type=_count, default=0, metavar="S",
        help="with --retry: wait S seconds between tries (0: curl's doubling)",
    )  # fmt: skip
    p.add_argument(
        "--retry-max-time", type=_count, default=0, metavar="S",
        help="with --retry: no new try S seconds after the URL's first (0: no limit)",
    )  # fmt: skip
    p.add_argument(
        "--retry-connrefused", action="store_true",
        help="with --retry: a refused connect (7) is transient too",
    )  # fmt: skip
    p.add_argument(
        "--retry-all-errors", action="store_true",
        help="with --retry: any failure is retried (also -f's 22)",
    )  # fmt: skip
    p.add_argument(
        "--expect100-timeout", type=_seconds, default=1.0, metavar="S",
        help="wait S seconds for a 100 Continue before an upload's body goes anyway "
        "[default: 1, as curl]",
    )  # fmt: skip
    p.add_argument(
        "--connect-timeout", type=_seconds, metavar="S",
        help=f"seconds for each TCP connect (0: the default, {CONNECT_TIMEOUT:g}; curl's "
        "also bounds the name lookup and the TLS handshake: ours -m does)",
    )  # fmt: skip


def _count(text: str) -> int:
    """--retry N, --retry-delay S, --retry-max-time S: a whole number, 0 or more (curl's
    words when not)."""
    if text.strip().lstrip("-").isdigit() and text.strip().startswith("-"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive numerical parameter")
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected a proper numerical parameter")
    return int(text)


def _size(text: str) -> int:
    """--max-filesize BYTES as curl 7.88's GetSizeParameter: N, or N with one of G, M, K,
    B (any case; 1024s)."""
    m = re.fullmatch(r"(\d+)([gGmMkKbB]?)", text)
    if m is None:
        raise argparse.ArgumentTypeError(f"{text!r}: unsupported max-filesize unit. Use "
                                         "G, M, K or B!")  # fmt: skip
    return int(m.group(1)) << {"g": 30, "m": 20, "k": 10}.get(m.group(2).lower(), 0)


def _offset(text: str) -> str:
    """-C OFFSET: "-" or a whole number (curl's words when not)."""
    if text != "-" and not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected a proper numerical parameter")
    return text


def _seconds(text: str) -> float:
    """--connect-timeout S: seconds, 0 or more (curl's words when not)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a proper numerical parameter")
    return value


class _FormAction(argparse.Action):
    """-F and --form-string: one list of (literal, value) in command-line order."""

    def __call__(self, parser: Any, ns: argparse.Namespace, value: Any, opt: Any = None) -> None:
        items = list(getattr(ns, self.dest, None) or [])
        items.append((opt == "--form-string", value))
        setattr(ns, self.dest, items)
        _in_order(ns, "form", len(items) - 1)


def _in_order(ns: argparse.Namespace, kind: str, key: Any) -> None:
    """The order of -d, -F and -w on the command line (curl reads stdin for the first
    that takes it; `stdin_owner`)."""
    ns.stdin_order = [*getattr(ns, "stdin_order", []), (kind, key)]


class _QueryAction(argparse.Action):
    """--url-query: each in order (a @- reads stdin)."""

    def __call__(self, parser: Any, ns: argparse.Namespace, value: Any, opt: Any = None) -> None:
        items = [*(getattr(ns, self.dest, None) or []), value]
        setattr(ns, self.dest, items)
        _in_order(ns, "query", len(items) - 1)


class _WriteOutAction(argparse.Action):
    """-w: the last one kept (as curl); each recorded in order (a -w @- reads stdin)."""

    def __call__(self, parser: Any, ns: argparse.Namespace, value: Any, opt: Any = None) -> None:
        setattr(ns, self.dest, value)
        _in_order(ns, "write_out", value)


class _DataAction(argparse.Action):
    """-d (--data-ascii), --data-binary, --data-raw, --data-urlencode: one list of (kind,
    value) in command-line order."""

    def __init__(self, *args: Any, kind: str, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.kind = kind

    def __call__(self, parser: Any, ns: argparse.Namespace, value: Any, opt: Any = None) -> None:
        items = list(getattr(ns, self.dest, None) or [])
        items.append((self.kind, value))
        setattr(ns, self.dest, items)
        _in_order(ns, "data", len(items) - 1)


def _read(what: str, name: str) -> bytes:
    try:
        if name == "-":
            return sys.stdin.buffer.read()
        with open(name, "rb") as f:
            return f.read()
    except OSError as e:
        raise RunError(f"{what} @{name}: {e.strerror or e}") from None


def _takes_stdin(kind: str, value: str) -> bool:
    """A -d/--data-binary @- or a --data-urlencode [NAME]@- (read as curl parses it)."""
    from packetlab.cli.run_http_data import reads_stdin

    return reads_stdin(value) if kind == "urlencode" else kind != "raw" and value == "@-"


def _ignore(_: str) -> None:
    pass


def request_body(items: list[tuple[str, str]] | None, stdin: int | None = -1,
                 warn: Any = _ignore) -> bytes | None:  # fmt: skip
    """The POST body of -d/--data-binary/--data-raw/--data-urlencode as curl builds it:
    each one's bytes (@FILE read; for -d with CR and LF removed; --data-urlencode as
    run_http_data.urlencode, its warnings to `warn`), joined with &. Stdin is read once,
    as curl's: by the item numbered `stdin` (-1: the first @-; None: none, another use
    read it), the other @- empty."""
    from packetlab.cli.run_http_data import urlencode

    if not items:
        return None
    if stdin == -1:
        stdin = next((i for i, (k, v) in enumerate(items) if _takes_stdin(k, v)), None)
    parts = []
    for i, (kind, value) in enumerate(items):
        if kind == "urlencode":
            data = urlencode(value, _reader("--data-urlencode", i == stdin), warn)
        elif kind != "raw" and value == "@-" and i != stdin:
            data = b""
        elif kind != "raw" and value.startswith("@"):
            data = _read("--data" if kind == "data" else "--data-binary", value[1:])
            if kind == "data":
                data = data.replace(b"\r", b"").replace(b"\n", b"")
        else:
            data = value.encode()
        parts.append(data)
    return b"&".join(parts)


def _url_query(args: argparse.Namespace, owner: tuple[str, Any] | None,
               warn: Any) -> str | None:  # fmt: skip
    """--url-query's query (run_http_data.url_query), stdin read by the one that owns it."""
    from packetlab.cli.run_http_data import url_query

    def read(i: int, name: str) -> bytes | None:
        return _reader("--url-query", owner == ("query", i))(name)

    return url_query(args.url_query, read, warn)


def _reader(option: str, stdin: bool) -> Any:
    """An @FILE reader of --data-urlencode or --url-query (run_http_data.read_file): "-"
    stdin when this use owns it, else empty."""
    from packetlab.cli.run_http_data import read_file

    def read(name: str) -> bytes | None:
        return read_file(name, option, lambda: _read(option, "-") if stdin else b"")

    return read


def with_query(url: str, data: bytes, option: str = "-G/--get") -> str:
    """curl -G (and --url-query): `data` appended to the URL's query as curl's URL API
    appends it (run_http_data.append_query)."""
    from packetlab.cli.run_http_data import append_query

    return append_query(url, data.decode("utf-8", "surrogateescape"), option)


def user_password(text: str) -> tuple[str, str]:
    """-u USER:PASSWORD (the password after the first colon)."""
    user, sep, password = text.partition(":")
    if not sep:
        raise RunError(f"-u/--user {text!r}: no password (curl would ask for it; give "
                       "USER:PASSWORD)")  # fmt: skip
    return user, password


def _headers(items: list[str]) -> list[tuple[str, str]]:
    out = []
    for item in items:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise RunError(f"--header {item!r}: expected 'NAME: VALUE'")
        out.append((name.strip(), value.strip()))
    return out


def write_out_format(text: str, stdin: bool = True) -> str:
    """-w's argument: FORMAT, or @FILE's text (@- stdin; empty without `stdin`: another
    use read it), as curl."""
    if text == "@-" and not stdin:
        return ""
    if text.startswith("@"):
        return file2string(_read("--write-out", text[1:])).decode("utf-8", "replace")
    return text


def file2string(data: bytes) -> bytes:
    """A file's text as curl 7.88's file2string takes it (-w @FILE): read in fgets()
    pieces of up to 255 bytes (a line's end ends one), each cut at its first CR or LF
    (and, a C string, at a NUL): the line ends gone, and what follows a CR in its piece."""
    out, pos = [], 0
    while pos < len(data):
        end = data.find(b"\n", pos, pos + 255) + 1 or min(pos + 255, len(data))
        out.append(re.split(b"[\r\n\0]", data[pos:end], maxsplit=1)[0])
        pos = end
    return b"".join(out)


def _sec(us: float | None) -> float:
    return round((us or 0.0) / 1e6, 6)


def write_out_values(r: Any, url: str, filename: str | None, exitcode: int,
                     error: str | None) -> dict[str, Any]:  # fmt: skip
    """curl's --write-out variables of one fetch (an HttpResult), typed as %{json} has them."""
    total = _sec(r.total_us)
    scheme = (r.url_effective or url).split("://", 1)[0].upper()
    return {
        "content_type": r.content_type,
        "errormsg": error,
        "exitcode": exitcode,
        "filename_effective": filename,
        "http_code": r.status or 0,
        "http_connect": 0,
        "http_version": r.http_version if r.status is not None else "0",
        "method": r.method,
        "num_connects": r.connects,
        "num_redirects": r.num_redirects,
        "redirect_url": r.redirect_url,
        "remote_ip": r.remote_ip,
        "remote_port": r.remote_port,
        "response_code": r.status or 0,
        "scheme": scheme,
        "size_download": r.body_len if r.status is not None else 0,
        "size_header": r.header_size,
        "size_request": r.request_size,
        "size_upload": r.upload_size,
        "speed_download": int(r.body_len / total) if total and r.status else 0,
        "speed_upload": int(r.upload_size / total) if total else 0,
        "time_appconnect": _sec(r.tls_us),
        "time_connect": _sec(r.connect_us),
        "time_namelookup": _sec(r.namelookup_us),
        "time_pretransfer": _sec(r.pretransfer_us),
        "time_redirect": _sec(r.redirect_us),
        "time_starttransfer": _sec(r.first_byte_us),
        "time_total": total,
        "url": url,
        "url_effective": r.url_effective or url,
    }


def _text(name: str, value: Any) -> str:
    if name.startswith("time_"):
        return f"{value:.6f}"
    if name in ("http_code", "response_code", "http_connect"):
        return f"{value:03d}"
    return "" if value is None else str(value)


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token: a method
VARIABLES = (  # write_out_values' names
    "content_type", "errormsg", "exitcode", "filename_effective", "http_code",
    "http_connect", "http_version", "method", "num_connects", "num_redirects",
    "redirect_url", "remote_ip", "remote_port", "response_code", "scheme", "size_download",
    "size_header", "size_request", "size_upload", "speed_download", "speed_upload",
    "time_appconnect", "time_connect", "time_namelookup", "time_pretransfer",
    "time_redirect", "time_starttransfer", "time_total", "url", "url_effective",
)  # fmt: skip
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}
_CONTROL = ("onerror", "stdout", "stderr", "json")


def format_warnings(fmt: str) -> list[str]:
    """What is wrong in a -w FORMAT, one line each: unknown variables (curl warns and prints
    nothing for them) and a %{ without } (printed as is, as curl)."""
    warned: list[str] = []
    dummy = {name: 0 for name in VARIABLES} | {"errormsg": "x"}  # past any %{onerror}
    write_out(fmt, dummy, [], warned.append)
    return warned


def write_out(fmt: str, values: dict[str, Any], headers: list[tuple[str, str]],
              warn: Any = None) -> list[tuple[str, str]]:  # fmt: skip
    """`fmt` rendered as curl 7.88 does: [(stream, text)], stream "stdout" or "stderr".
    %{var} (unknown: nothing, and `warn(name)`), %header{NAME}, %% , \\n \\t \\r (another
    backslash pair is printed as is), a %{ with no } printed as is; %{onerror} stops here
    unless the fetch failed; %{stderr}/%{stdout} switch the stream."""
    out: list[tuple[str, str]] = []
    stream = "stdout"
    buf: list[str] = []

    def put(text: str) -> None:
        buf.append(text)

    def switch(to: str) -> None:
        nonlocal stream
        if buf:
            out.append((stream, "".join(buf)))
            buf.clear()
        stream = to

    i, n = 0, len(fmt)
    while i < n:
        c = fmt[i]
        if c == "%" and i + 1 < n:
            nxt = fmt[i + 1]
            if nxt == "%":
                put("%")
                i += 2
                continue
            if nxt == "{" or fmt.startswith("header{", i + 1):
                brace = fmt.index("{", i)
                end = fmt.find("}", brace)
                if end < 0:  # curl: the %{ as is, then the rest
                    if warn is not None:
                        warn(f"--write-out: {fmt[i : brace + 1]!r} without '}}' at "
                             f"character {i + 1}: printed as is")  # fmt: skip
                    put(fmt[i : brace + 1])
                    i = brace + 1
                    continue
                name = fmt[brace + 1 : end]
                i = end + 1
                if nxt != "{":  # %header{NAME}: the last response's header
                    put(next((v for k, v in headers if k.lower() == name.lower()), ""))
                elif name == "onerror":
                    if not values.get("errormsg"):
                        break
                elif name in ("stdout", "stderr"):
                    switch(name)
                elif name == "json":
                    put(json.dumps(values, sort_keys=True))
                elif name in values:
                    put(_text(name, values[name]))
                elif warn is not None:
                    warn(f"unknown --write-out variable: {name!r}")
                continue
            put(c)
            i += 1
            continue
        if c == "\\" and i + 1 < n:
            put(_ESCAPES.get(fmt[i + 1], fmt[i : i + 2]))
            i += 2
            continue
        put(c)
        i += 1
    switch(stream)
    return out


def cookie_options(items: list[str], jar_file: str | None,
                   stdin: bool = True) -> tuple[Any, str | None]:  # fmt: skip
    """-b and -c as curl reads them: (the cookie engine or None, the -b string or None).
    A -b with '=' is cookies to send as is; else a Netscape cookie file, read if it exists
    (curl: a missing one just turns the engine on); `-b -` stdin, read once (none
    without `stdin`: another use read it)."""
    from packetlab.measure.cookies import CookieJar

    strings = [item for item in items if "=" in item]
    files = [item for item in items if "=" not in item]
    jar = CookieJar() if files or jar_file is not None else None
    for name in files:
        if not name or (name != "-" and not os.path.exists(name)):
            continue
        if name != "-" and os.path.isdir(name):
            raise RunError(f"-b/--cookie {name}: is a directory")
        assert jar is not None
        if name == "-" and not stdin:
            continue
        stdin = stdin and name != "-"
        jar.load(_read("--cookie", name).decode("utf-8", "replace"))
    if jar_file is not None:
        _check_output(jar_file, "--cookie-jar")
    return jar, "; ".join(s.strip().rstrip(";") for s in strings) or None


def _save(text: str, path: str, args: argparse.Namespace, stderr: Any) -> None:
    """-c FILE at the end of the run (curl writes it at exit too); a failure warned."""
    try:
        if path == "-":
            out: IO[bytes] = getattr(args, "_stdout", None) or sys.stdout.buffer
            out.write(text.encode())
            out.flush()
            return
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        print(f"pktlab run http: --cookie-jar {path}: cookies not saved: {e.strerror or e}",
              file=stderr)  # fmt: skip


def _check_output(path: str, option: str = "--output", create_dirs: bool = False,
                  replaced: bool = True) -> None:  # fmt: skip
    """An output file's directory (made with `create_dirs`) and, when `path` is the file
    opened (not so with --no-clobber or -J), the file itself: refused before the run
    when they cannot be written."""
    if is_stdout(path):
        return
    parent = os.path.dirname(os.path.abspath(path))
    if replaced and os.path.isdir(path):
        raise RunError(f"{option} {path}: is a directory")
    if create_dirs and not os.path.isdir(parent):  # --create-dirs: made now, as curl's
        _create_dirs(parent, option, path)
    if not os.path.isdir(parent):
        raise RunError(f"{option} {path}: no such directory {parent}")
    if not os.access(path if replaced and os.path.exists(path) else parent, os.W_OK):
        raise RunError(f"{option} {path}: permission denied")


REMOTE = "\0-O"  # -O/--remote-name among the -o files (args.output): no file name has a NUL
NO_REMOTE = "\0--no-remote-name"  # curl's -O turned off: that URL's place, no file


class _RemoteNameAll(argparse.Action):
    """--remote-name-all (--no-remote-name-all): as curl 7.88, for the URLs after it on
    the command line only: kept as (how many URLs argparse has read before it, on)."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        seen = len(getattr(namespace, "urls", None) or [])
        marks = [*getattr(namespace, self.dest, []), (seen, not str(option).startswith("--no-"))]
        setattr(namespace, self.dest, marks)


def _output_of(args: argparse.Namespace, i: int) -> str | None:
    """The Nth URL's -o FILE or -O (REMOTE), curl's pairing: the Nth of the -o, -O and
    --no-remote-name options (None: no file), else -O if --remote-name-all came before
    that URL, else None."""
    if i <= len(args.output):
        return None if args.output[i - 1] == NO_REMOTE else str(args.output[i - 1])
    on = [o for seen, o in getattr(args, "remote_name_all", []) if seen < i]
    return REMOTE if on and on[-1] else None


def remote_name(url: str) -> str:
    """curl 7.88's -O file name (get_url_file_name): the URL's path as curl parses it (no
    query, no fragment, its . and .. segments removed) after its last / (and after a \\
    in that), as written: not decoded (`a%2F..%2Fb` is the name of a file here, not a
    path). "" for a path that ends in / (curl: "Remote file name has no length!", 23)."""
    rest = url.partition("://")[2] if "://" in url else url
    at = re.search(r"[/?#]", rest)
    path = rest[at.start() :] if at else ""
    path = re.split(r"[?#]", path, maxsplit=1)[0]
    from packetlab.measure.http_url import remove_dot_segments

    name = remove_dot_segments(path or "/").rsplit("/", 1)[-1]
    return name.rsplit("\\", 1)[-1]


def upload_url(url: str, path: str) -> str:
    """curl -T: a URL without a file name (its path empty or ending in /) gets the
    file's name appended (not for stdin), percent-encoded as curl 7.88 writes it (%5b:
    its hex digits in lower case)."""
    if path == "-":
        return url
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    host, slash, tail = rest.partition("/")
    where, q, query = tail.partition("?")
    if slash and where and not where.endswith("/"):
        return url
    base = path.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]  # after the last / or \, as curl
    name = re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), quote(base, safe=""))
    return f"{scheme}{sep}{host}/{where}{name}{q}{query}"


def _create_dirs(parent: str, option: str, path: str) -> None:
    """curl's --create-dirs: each missing directory of `parent` made with mode 0750
    (less the umask), as curl 7.88's create_dir_hierarchy."""
    missing = []
    while parent and not os.path.isdir(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o750)
        except FileExistsError:
            if not os.path.isdir(d):
                raise RunError(f"{option} {path}: {d} is not a directory") from None
        except OSError as e:  # curl: "Failed to create the directory D: ..." (23)
            raise RunError(f"{option} {path}: cannot create the directory {d}: "
                           f"{e.strerror or e} (--create-dirs)") from None  # fmt: skip


def stdin_owner(args: argparse.Namespace, form_stdin: int | None,
                uploads: list[Any]) -> tuple[str, Any] | None:  # fmt: skip
    """Which use of stdin reads it, as curl 7.88: stdin is read once, and every other use
    gets it empty (-T -: an empty chunked PUT; -F: an empty part; -d, -w, -b: nothing).
    First those curl reads as it parses its arguments, the first on the command line:
    -d/--data-binary @- (("data", its number)), -w @- (("write_out", its place among
    the -w)), a -F part of stdin when stdin is a pipe or a terminal (("form", 0));
    then -b - (("cookie", 0), read as the first transfer starts); then what is read when
    sent: a -F part of a regular file (("form", 0): the first in the first transfer's
    body), the first transfer's -T - (("upload", 0)). None: stdin unused.
    `form_stdin`: the number of the first -F with a part of stdin (`Forms.first_stdin`);
    `uploads`: each -T's (file name, Upload) list (a glob's names: `-T '{-,a}'`)."""
    from packetlab.measure.upload import stdin_is_regular

    regular = stdin_is_regular()
    w = 0
    for kind, key in getattr(args, "stdin_order", []):
        if kind == "data":
            if _takes_stdin(*args.data[key]):
                return ("data", key)
        elif kind == "query":
            from packetlab.cli.run_http_data import reads_stdin

            if not args.url_query[key].startswith("+") and reads_stdin(args.url_query[key]):
                return ("query", key)
        elif kind == "write_out":
            if key == "@-":
                return ("write_out", w)
            w += 1
        elif kind == "form" and key == form_stdin and not regular:
            return ("form", 0)
    if "-" in args.cookie:
        return ("cookie", 0)
    if form_stdin is not None:
        return ("form", 0)
    if any(name == "-" for files in uploads for name, _ in files):
        return ("upload", 0)
    return None


def transfers(args: argparse.Namespace, uploads: list[Any], stdin: bool = True) -> tuple[
    list[tuple[int, str, Any]], list[str | None]
]:  # fmt: skip
    """curl 7.88's transfers in its order, numbered from 1: (number, URL, its -T upload
    or None), and each one's -o file (None: stdout). Each URL is globbed unless -g
    (`{a,b}`, `[1-3]`: urlglob, curl's errors), each of its -T's files going to every
    URL of the glob (the files the outer loop, as curl); its -o (the Nth for the Nth
    URL) gets #N filled with what the URL's Nth glob matched, its -O the file name of
    each URL of the glob (the URL before -T's file name is added, as curl); each file
    in --output-dir if given. At most MAX_NAMES. Stdin is read once (curl's): by the
    first transfer of a -T - when `stdin`, the others (all without `stdin`: another use
    read it) an empty chunked PUT."""
    from packetlab.measure.upload import file_upload
    from packetlab.measure.urlglob import MAX_NAMES, GlobError, glob_urls, output_name

    jobs: list[tuple[int, str, Any]] = []
    outputs: list[str | None] = []
    for i, url in enumerate(args.urls, 1):
        try:
            matches = [None] if args.globoff else glob_urls(url)
        except GlobError as e:
            hint = "; -g/--globoff takes { } [ ] as written" if e.pos else ""
            raise RunError(f"URL {url!r}: {e}{hint}") from None
        files = uploads[i - 1] if i <= len(uploads) else [(None, None)]
        if len(jobs) + len(files) * len(matches) > MAX_NAMES:
            raise RunError(f"over {MAX_NAMES} transfers (URL globs and -T files; each is "
                           "listed before anything is sent; curl has no such limit)")  # fmt: skip
        out = _output_of(args, i)
        for name, up in files:
            for m in matches:
                if name == "-":
                    up = up if stdin else file_upload("-", spent=True)
                    stdin = False
                target = url if m is None else m.url
                if out == REMOTE:
                    path: str | None = RemoteName(remote_name(target))
                    # -J: the server may name it (curl fetches it; none: 23 then)
                    if path == "" and not getattr(args, "remote_header_name", False):
                        raise RunError(f"-O/--remote-name: {target} has no file name (nothing "
                                       "after its last / or \\; curl: 23, after the URLs before "
                                       "it, and no URL after it is fetched)")  # fmt: skip
                else:
                    path = out if m is None or out in (None, "-") else output_name(out, m)
                    if path == "":  # curl: "output glob produces empty string" (23)
                        raise RunError(f"-o/--output {out!r}: empty for {target}")
                if (
                    path is not None and not is_stdout(path) and args.output_dir
                ):  # as curl: "DIR/FILE"
                    path = type(path)(f"{args.output_dir}/{path}")
                jobs.append(
                    (len(jobs) + 1, target if name is None else upload_url(target, name), up)
                )
                outputs.append(path)
    return jobs, outputs


def _upload_files(arg: str, globoff: bool) -> list[tuple[str, Any]]:
    """One -T: its files (curl's globbing of the name unless -g), each (name, Upload),
    looked at now."""
    from packetlab.measure.upload import UploadError, file_upload
    from packetlab.measure.urlglob import GlobError, glob_names

    try:
        names = [arg] if globoff else glob_names(arg)
    except GlobError as e:
        raise RunError(f"-T/--upload-file {arg!r}: {e}") from None
    try:
        return [(name, file_upload(name)) for name in names]
    except UploadError as e:
        where = "" if names == [arg] else f" (from {arg!r})"
        raise RunError(f"-T/--upload-file {e}{where}") from None


def bodies(args: argparse.Namespace, data: bytes | None) -> tuple[list[Any], list[Any], Any]:
    """-F's parts and -T's uploads (each -T a list of (file name, Upload): curl's glob;
    files looked at now: a missing or unreadable one is a one-line error before anything
    is sent), checked against -d (`data` not None: given), -I and -G as curl; and which
    -F first has a part of stdin (`Forms.first_stdin`)."""
    from packetlab.measure.upload import Forms, UploadError

    tree = Forms()  # NAME=( ... =): a sub-multipart, as curl's
    warnings: list[str] = []
    for literal, f in args.form:
        option = "--form-string" if literal else "-F/--form"
        try:
            tree.add(f, literal, warnings)
        except UploadError as e:  # a file part's file: the -F it came from (was -T's name)
            named = str(e).startswith(("-F", "--form-string"))
            raise RunError(str(e) if named else f"{option} {f!r}: {e}") from None
        stderr = getattr(args, "_stderr", None) or sys.stderr
        for warning in warnings if not args.silent else []:  # curl: "Warning: ..."
            print(f"pktlab run http: {option} {f!r}: {warning}", file=stderr)
        warnings.clear()
    forms: list[Any] = tree.parts
    uploads = [_upload_files(f, args.globoff) for f in args.upload_file]
    given = [o for o, v in (("-d/--data", data is not None), ("-F/--form", forms),
                            ("-T/--upload-file", uploads)) if v]  # fmt: skip
    if len(given) > 1:  # curl: "You can only select one HTTP request method!" (2)
        raise RunError(f"{' and '.join(given)}: one request body only")
    if given and args.head:
        raise RunError(f"-I/--head and {given[0]}: one request method only (HEAD or "
                       f"{'PUT' if uploads else 'POST'})")  # fmt: skip
    if args.get and (forms or uploads):
        raise RunError(f"-G/--get and {given[0]}: -G makes -d the query; no other body")
    if len(uploads) > len(args.urls):
        raise RunError(f"{len(uploads)} -T/--upload-file for {len(args.urls)} URLs")
    return forms, uploads, tree.first_stdin


def experiment(args: argparse.Namespace, emit: Emit, progress: Progress) -> Experiment:
    from dataclasses import replace

    from packetlab.measure.http import Connections, HttpResult, WriteError, http_get, parse_url
    from packetlab.measure.upload import UploadError, multipart

    body_given = (args.data is not None and not args.get) or args.form or args.upload_file
    if args.continue_at is not None and body_given:
        raise RunError("-C/--continue-at with a request body: an upload resumed is not "
                       "built (curl sends a Content-Range)")  # fmt: skip
    if args.fail and args.fail_with_body:  # curl: 2, its words
        raise RunError("-f/--fail and --fail-with-body: You must select either --fail or "
                       "--fail-with-body, not both.")  # fmt: skip
    if args.remote_header_name and (args.include or args.head):  # curl: 2, as ours
        raise RunError(f"{'-I/--head' if args.head else '-i/--include'} and "
                       "-J/--remote-header-name: showing headers and --remote-header-name "
                       "cannot be combined (curl's words)")  # fmt: skip
    # -G: -d is the query, no body; -d read after -F is checked (stdin: see stdin_owner)
    forms, uploads, form_stdin = bodies(args, b"" if args.data and not args.get else None)
    owner = stdin_owner(args, form_stdin, uploads)  # stdin is read once, as curl's
    stderr = getattr(args, "_stderr", None) or sys.stderr

    def warn(text: str) -> None:  # curl's warnings in its form (-s: none, as curl's)
        if not args.silent:
            print(curl_warning(text), end="", file=stderr, flush=True)

    data = request_body(args.data, owner[1] if owner and owner[0] == "data" else None, warn)
    query = _url_query(args, owner, warn)
    asked = _asked(args, warn)
    if args.dump_header is not None:
        _check_output(args.dump_header, "--dump-header")
    if len(args.output) > len(args.urls):  # curl: a warning, the extra ones unused
        raise RunError(f"{len(args.output)} -o/--output and -O for {len(args.urls)} URLs")
    # the transfers, in curl's order: (number, URL, its -T upload or None), each -o file
    jobs, outputs = transfers(args, uploads, stdin=owner == ("upload", 0))
    try:  # a form for each transfer (its own boundary, as curl's), its files looked at now
        posts = [multipart(forms, stdin=owner == ("form", 0) and not i)
                 for i in range(len(jobs))] if forms else []  # fmt: skip
    except UploadError as e:
        raise RunError(f"-F/--form {e}") from None
    if not 1 <= args.parallel_max <= PARALLEL_LIMIT:
        raise RunError(f"--parallel-max {args.parallel_max}: 1..{PARALLEL_LIMIT}")
    if args.get and data is not None:  # curl -G: the data is the query, no body
        jobs = [(i, with_query(url, data), up) for i, url, up in jobs]
        data = None  # (--url-query then unused: curl 7.88 appends one or the other)
    elif query is not None:
        jobs = [(i, with_query(url, query.encode(), "--url-query"), up) for i, url, up in jobs]
    for _, url, _ in jobs:
        parse_url(url)  # a bad URL is an error before anything starts
    auth = None if args.user is None else user_password(args.user)
    if args.include and all(p is None for p in outputs) and args.write_out is None:
        raise RunError("-i/--include: the headers go where the body goes, and the table shows "
                       "no body: add -o FILE (-o - for stdout) or -w")  # fmt: skip
    headers = _headers(args.header)
    jar, cookie = cookie_options(args.cookie, args.cookie_jar, stdin=owner == ("cookie", 0))
    if args.cacert is not None:
        try:
            open(args.cacert, "rb").close()
        except OSError as e:
            raise RunError(f"--cacert {args.cacert}: {e.strerror or e}") from None
    if args.head and data is not None:  # curl: "You can only select one HTTP request method!"
        raise RunError("-I/--head and -d/--data: one request method only (HEAD or POST)")
    if args.max_redirs < -1:
        raise RunError(f"--max-redirs {args.max_redirs}: -1 (no limit) or more")
    if args.output_dir and not args.create_dirs and not os.path.isdir(args.output_dir):
        raise RunError(f"--output-dir {args.output_dir}: no such directory (--create-dirs "
                       "makes it; curl: 23 for each URL, after fetching it)")  # fmt: skip
    for path in dict.fromkeys(p for p in outputs if p is not None):
        # --no-clobber or -J: the file may be another than `path`; its directory matters
        named = args.clobber is False or (args.remote_header_name and isinstance(path, RemoteName))
        _check_output(path, create_dirs=args.create_dirs, replaced=not named)
    fmt = None
    if args.write_out is not None:  # the last -w (the one kept) reads stdin if it is first
        last = sum(k == "write_out" for k, _ in getattr(args, "stdin_order", [])) - 1
        fmt = write_out_format(args.write_out, stdin=owner in (None, ("write_out", last)))
    if fmt is not None and args.json:
        raise RunError("-w/--write-out and --json: choose one output")
    for warning in format_warnings(fmt or ""):  # curl warns at each use; we once
        print(f"pktlab run http: {warning}", file=stderr)
    method = args.request
    if method is not None and not _TOKEN.fullmatch(method):
        raise RunError(f"-X/--request {method!r}: not an HTTP method (a token: letters, "
                       "digits, !#$%&'*+-.^_`|~)")  # fmt: skip
    recorder = pcapout.recorder_for(args)
    # curl 7.88 -Z draws its parallel meter on stderr (also off a terminal) unless -s,
    # --no-progress-meter, or a body goes to stdout on a terminal; ours with -w, where the
    # output is curl's (the table keeps its progress line, drawn between its rows)
    to_stdout = any(is_stdout(path) for path in outputs)
    stdout_tty = getattr(getattr(args, "_stdout", None) or sys.stdout, "isatty", bool)()
    meter_wanted = (args.parallel and fmt is not None and not args.silent
                    and not args.no_progress_meter and not (to_stdout and stdout_tty))  # fmt: skip

    stdout: IO[bytes] = getattr(args, "_stdout", None) or sys.stdout.buffer
    dump = None if args.dump_header is None else HeaderDump(args.dump_header, stdout)

    async def run(session: Any) -> None:
        # kept open from URL to URL, as curl's connection cache
        pool = Connections(pipewait=not args.parallel_immediate)
        try:
            await fetch_all(session, pool)
        finally:
            await pool.close()
            if dump is not None:
                dump.close()

    async def fetch_all(session: Any, pool: Any) -> None:
        if fmt is not None or "-" in args.output:
            progress.clear()  # curl's bytes on stdout: no progress line drawn between them
        if not args.parallel:
            for n, job in enumerate(jobs, 1):
                if progress.stopping:  # Ctrl-C: no new URL
                    return
                progress(f"http {n}/{len(jobs)}: {job[1]}")
                await fetch(session, pool, *job)
            return
        # curl -Z: every URL at once, at most --parallel-max of them; each one's row (or
        # write-out) when it ends, so in the order they end
        from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults

        gate = DeferredSemaphore(args.parallel_max)
        done = [0]
        meter, stop = None, None
        if meter_wanted:  # curl's own parallel progress meter on stderr (see curl_meter)
            from packetlab.cli import curl_meter

            meter, stop = curl_meter.start(session.reactor, stderr)

        async def parallel(i: int, url: str, up: Any) -> None:
            if progress.stopping:
                return
            xfer = None
            if meter is not None:
                xfer = _transfer(posts[i - 1] if forms else up if up is not None else data)
                meter.add(xfer)
            try:
                await fetch(session, pool, i, url, up, xfer)
            finally:
                if meter is not None and xfer is not None:
                    meter.done(xfer)
            done[0] += 1
            progress(f"http -Z: {done[0]}/{len(jobs)} done")

        def start(job: tuple[int, str, Any]) -> Any:
            return Deferred.fromCoroutine(parallel(*job))

        try:
            await gatherResults([gate.run(start, job) for job in jobs], consumeErrors=True)
        finally:
            if stop is not None:
                stop()

    async def fetch(session: Any, pool: Any, i: int, url: str, up: Any, xfer: Any = None) -> None:
        path = outputs[i - 1]
        body: Any = posts[i - 1] if forms else up if up is not None else data
        sink: Output | None = None
        if path is not None or fmt is not None:
            honor = args.remote_header_name and isinstance(path, RemoteName)  # curl: -J with -O
            sink = Output(path, stdout, args.clobber, honor, args.output_dir or None)
        offset = _resume_offset(args.continue_at, path)
        unopened = None
        if sink is not None and offset:
            try:
                sink.resume(offset)  # curl: the -o file opened to append now
            except WriteError as e:  # curl: 23 for this URL
                unopened = str(e)
        on_body = None if sink is None or args.head else sink.write
        on_headers: Any = None if sink is None or not args.include or args.head else sink.write
        if sink is not None and sink.honor:  # -J (never with -i or -I)
            on_headers = sink.headers
        if dump is not None:  # -D: first, as curl's header callback
            dump.start()
            on_headers = _both(dump.write, on_headers)
        failing = _Failing(on_body) if args.fail else None
        if failing is not None:  # curl -f: the headers of a status >= 400 out, no body
            on_headers, on_body = _both(failing.headers, on_headers), failing.body
        retry = Retry(args.retry, args.retry_delay, args.retry_max_time, session.reactor.seconds())
        while True:  # --retry: the transfer again while curl would
            if unopened is not None:
                result = HttpResult(url, error=unopened, exitcode=23)
                break
            result = await attempt(session, pool, url, body, on_body, on_headers, xfer, offset)
            if sink is not None and args.head:  # curl -I: the headers are the output
                try:
                    sink.write(b"".join(result.raw_headers))
                except OSError as e:
                    result.error = result.error or f"writing {path}: {e.strerror or e}"
            if not await again(session, retry, result, sink):
                break
        failed = failing is not None and failing.failed and result.error is None
        why = None if sink is None else sink.close(result.error is None and not failed)
        if why is not None and result.error is None:
            result.error, result.exitcode = why, 23
        record = result.to_dict()
        if path and not is_stdout(
            path
        ):  # the file written (-J, --no-clobber: another); -J: none yet
            output = (sink.written or sink.effective) if sink is not None else path
            if output:
                record["output"] = output
        fails = args.fail or args.fail_with_body
        if fails and result.status is not None and result.status >= 400 and not result.error:
            answer = f"{result.status} {result.reason or ''}".strip()  # HTTP/2: no reason
            record["error"] = f"the server answered {answer} (--fail)"
            record["exitcode"] = 22
        if fmt is not None:  # no table: the experiment writes curl's output
            record["_quiet"] = True
        emit(record)
        if fmt is not None:
            error = record.get("error")
            if error is not None and (not args.silent or args.show_error):
                print(f"pktlab run http: {url}: {error}", file=stderr)
            name = sink.effective if sink is not None else path  # curl's: null for stdout
            values = write_out_values(result, url, name, record.get("exitcode", 0), error)
            if failed:  # curl -f stops before the body
                values["size_download"] = values["speed_download"] = 0
            for stream, text in write_out(fmt, values, result.headers):
                if stream == "stdout":
                    stdout.write(text.encode("utf-8", "surrogateescape"))  # a name as sent
                    stdout.flush()
                else:
                    print(text, end="", file=stderr, flush=True)
        if jar is not None and args.cookie_jar is not None:  # curl: after each URL
            _save(jar.dump(), args.cookie_jar, args, stderr)

    async def attempt(session: Any, pool: Any, url: str, body: Any, on_body: Any,
                      on_headers: Any, xfer: Any, offset: int) -> Any:  # fmt: skip
        return await http_get(
            session,
            url,
            connect_to=args.connect_to,
            family=args.family,
            cafile=args.cacert,
            insecure=args.insecure,
            timeout=args.max_time,
            connect_timeout=args.connect_timeout or CONNECT_TIMEOUT,
            asked=replace(asked, resume_from=offset),
            headers=headers,
            recorder=recorder,
            method=method,
            data=body,
            head=args.head,
            follow=args.location or args.location_trusted,
            max_redirs=args.max_redirs,
            post30x=frozenset(args.post30x),
            on_body=on_body,
            connections=pool,
            auth=auth,
            compressed=args.compressed,
            on_headers=on_headers,
            cookies=jar,
            cookie=cookie,
            http_version=args.http_version,
            on_hop=None if xfer is None else xfer.follow,
        )

    async def again(session: Any, retry: Any, result: Any, sink: Output | None) -> bool:
        """--retry: whether to fetch the URL again, after curl's warning and wait (a
        file's bytes thrown away, as curl's; stdout's stay)."""
        from twisted.internet.task import deferLater

        from packetlab.cli.run_http_retry import retry_after, transient

        fails = args.fail or args.fail_with_body
        failed = fails and result.status is not None and result.status >= 400
        code = 22 if failed and result.exitcode == 0 else result.exitcode
        why = transient(code, result.status, result.error, args.retry_connrefused,
                        args.retry_all_errors)  # fmt: skip
        now = session.reactor.seconds()
        wait, text = retry.next(why, retry_after(result.headers, time.time()), now)
        if text is not None and not args.silent:  # curl's words (-s: none, as curl's)
            print(curl_warning(text), end="", file=stderr, flush=True)
        if wait is None or progress.stopping:
            return False
        if sink is not None and sink.file is not None and sink.file.tell():
            if not args.silent:
                print(f"Throwing away {sink.file.tell()} bytes", file=stderr, flush=True)
            try:
                sink.file.truncate(sink.append)  # to where it started (-C: its offset)
                sink.file.seek(0, os.SEEK_END)
            except OSError as e:  # /dev/null: curl's "(23) Failed to truncate file"
                result.error = f"Failed to truncate file {sink.written}: {e.strerror or e}"
                result.exitcode = 23
                return False
        end = session.reactor.seconds() + wait
        while not progress.stopping and session.reactor.seconds() < end:  # Ctrl-C: at once
            await deferLater(session.reactor, min(0.1, end - session.reactor.seconds()))
        return not progress.stopping

    return pcapout.recording(args, recorder, run)


def _client_cert(args: argparse.Namespace) -> tuple[str, str | None] | None:
    """--cert and --key, loaded once now: one that cannot be used is a one-line error in
    curl's words before anything is sent (curl: 58 when the transfer starts)."""
    if args.cert is None:
        if args.key is not None:  # curl: the key alone is not used
            raise RunError("--key without --cert/-E: no client certificate to use it with")
        return None
    from OpenSSL import SSL

    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    key = args.key or args.cert
    for step, why, name in (
        (ctx.use_certificate_chain_file, "could not load PEM client certificate", args.cert),
        (ctx.use_privatekey_file, "unable to set private key file", key),
        (lambda _: ctx.check_privatekey(), "Private key does not match the certificate "
         "public key", key),
    ):  # fmt: skip
        try:
            open(name, "rb").close()
            step(name)
        except (OSError, SSL.Error) as e:
            detail = getattr(e, "strerror", None) or "not PEM, or not its key"
            raise RunError(f"--cert {args.cert}: {why} '{name}' ({detail}; curl: "
                           "58)") from None  # fmt: skip
    return args.cert, args.key


def _resume_offset(continue_at: str | None, path: str | None) -> int:
    """-C's offset for a transfer to `path`: N, or with "-" the size of the -o file
    (0: none yet, or stdout), as curl's stat of it."""
    if continue_at is None:
        return 0
    if continue_at != "-":
        return int(continue_at)
    if path is None or is_stdout(path):
        return 0
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _asked(args: argparse.Namespace, warn: Any) -> Any:
    """-A, -e and -r as measure.http.Asked (run_http_opts reads them as curl)."""
    from packetlab.measure.http import Asked

    ref, auto = referer(args.referer)
    r = None if args.byte_range is None else byte_range(args.byte_range, warn)
    ua = USER_AGENT if args.user_agent is None else args.user_agent
    return Asked(user_agent=ua, referer=ref, auto_referer=auto, byte_range=r,
                 max_filesize=args.max_filesize or 0,
                 resolve=resolve_entries(args.resolve), trusted=args.location_trusted,
                 expect_wait=args.expect100_timeout, client_cert=_client_cert(args),
                 time_cond=None if args.time_cond is None else time_cond(args.time_cond,
                                                                         warn))  # fmt: skip


class _Failing:
    """curl -f: a final response of 400 or more ends the transfer after its headers
    (-i and -D have them), its body not written (-o makes no file)."""

    def __init__(self, on_body: Any) -> None:
        self.on_body, self.failed = on_body, False

    def headers(self, raw: bytes) -> None:
        code = raw.split(b" ", 2)[1:2]
        self.failed = bool(code) and code[0].isdigit() and int(code[0]) >= 400

    def body(self, data: bytes) -> None:
        if not self.failed and self.on_body is not None:
            self.on_body(data)


def _both(first: Any, then: Any) -> Any:
    """Two header-block callbacks in turn (the second may be None)."""

    def call(raw: bytes) -> None:
        first(raw)
        if then is not None:
            then(raw)

    return call


def _transfer(body: Any) -> Any:
    """A -Z transfer for curl's meter, its upload's size known beforehand (0: none, or
    unknown: stdin, quoted-printable)."""
    from packetlab.cli.curl_meter import Transfer

    size = len(body) if isinstance(body, bytes) else getattr(body, "length", None) or 0
    return Transfer(size)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v / 1000:.3f}"


def row(r: Record) -> str | None:
    if r.get("_quiet"):  # -w: curl's output instead of the table
        return None
    if r["type"] == "summary":
        if r.get("stop_reason") == "INTERRUPTED":  # the URLs not ended are not in "urls"
            return (f"# interrupted (Ctrl-C): {r['urls']} URLs ended, {r['fetched']} "
                    f"fetched, {r['bytes']} body bytes")  # fmt: skip
        return f"# {r['fetched']} of {r['urls']} fetched, {r['bytes']} body bytes"
    if "error" in r and r.get("status") is not None:  # --fail: a response, but >= 400
        return f"{_fetched(r)}  {r['error']}"
    if "error" in r:
        return (  # the columns of a fetched URL, "-" where not reached
            f"{'ERR':>4}  {'-':>9}  {_ms(r.get('connect_us')):>8}  {_ms(r.get('tls_us')):>8}  "
            f"{'-':>8}  {'-':>8}  {r['url']}  {r['error']}"
        )
    return _fetched(r)


def _fetched(r: Record) -> str:
    return (
        f"{r['status']:>4}  {r['body_len']:>9}  {_ms(r.get('connect_us')):>8}  "
        f"{_ms(r.get('tls_us')):>8}  {_ms(r.get('first_byte_us')):>8}  "
        f"{_ms(r.get('total_us')):>8}  {r['url']}"
    )


HEADER = "  ".join(
    [f"{'code':>4}", f"{'bytes':>9}", *(f"{h:>8}" for h in ("conn ms", "tls ms", "ttfb ms")),
     f"{'total ms':>8}", "url"]
)  # fmt: skip


def summary(records: list[Record]) -> Record:
    got = [r for r in records if r["type"] == "http"]
    ok = [r for r in got if "error" not in r]
    if any(r.get("_quiet") for r in got):
        return {"_quiet": True}
    return {"urls": len(got), "fetched": len(ok), "bytes": sum(r["body_len"] for r in ok)}


def budget(args: argparse.Namespace) -> float:
    redirs = args.max_redirs if args.max_redirs >= 0 else 5
    hops = 1 + (min(redirs, 5) if args.location or getattr(args, "location_trusted", False) else 0)
    from packetlab.measure.urlglob import MAX_NAMES, GlobError, glob_count

    def count(pattern: str) -> int:
        try:
            return 1 if getattr(args, "globoff", True) else glob_count(pattern)
        except GlobError:
            return 1  # the experiment says why

    files = [count(arg) for arg in args.upload_file]
    # one transfer for each URL a URL's glob makes, times its -T glob's files
    n = sum(count(url) * (files[i] if i < len(files) else 1) for i, url in enumerate(args.urls))
    # --retry: each try, and curl's waits between them (a Retry-After not foreseen)
    retries = getattr(args, "retry", 0)
    delay = getattr(args, "retry_delay", 0)
    doubled = sum(2**k for k in range(min(retries, 10))) + 600 * max(0, retries - 10)
    waits = delay * retries if delay else doubled  # curl: 1, 2, ... 512, then 600 s
    if getattr(args, "retry_max_time", 0):
        waits = min(waits, args.retry_max_time)
    return min(n, MAX_NAMES) * (hops * (args.max_time + 15) * (1 + retries) + waits)


COMMAND = Command(
    name="http",
    help="HTTP and HTTPS requests, curl-like (TLS at the controller)",
    description="Fetch each URL (GET, or -X/-d/-I) through an endpoint TCP socket, "
    "redirects followed with -L. HTTPS runs TLS at the "
    "controller over that socket, with certificate and name verification (system store, "
    "or --cacert) and SNI. Prints status, body size and endpoint-stamped timings "
    "(with -w: curl's output instead).",
    configure=configure,
    experiment=experiment,
    row=row,
    summary=summary,
    budget=budget,
    epilog=EPILOG,
    split="urls",
    header=HEADER,
)


def add_parser(sub: Any) -> None:
    from packetlab.cli.run_command import add_command

    add_command(sub, COMMAND)
