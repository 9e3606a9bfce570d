"""`pktlab run http`'s command line: curl 7.88's options, their values read as curl reads
them, and the examples of `--help`."""

from __future__ import annotations

import argparse
import re
from typing import Any

from packetlab.cli import curl_trace, pcapout
from packetlab.cli.run import RunError
from packetlab.numtext import FINITE, float_in

MAX_REDIRS = 50  # curl's default --max-redirs (packetlab.measure.http's, not imported here)


USER_AGENT = "pktlab-http/1"  # measure.http's (not imported here: it loads OpenSSL)


CONNECT_TIMEOUT = 10.0  # s, http_get's default connect_timeout (the connection's set-up)


PARALLEL_MAX, PARALLEL_LIMIT = 50, 300  # curl's --parallel-max default and its largest


EPILOG = """\
examples:
  pktlab run http https://example.com/            # certificate checked, like curl
  pktlab run http --cacert ca.pem https://10.77.3.2:8443/page/1
  pktlab run http --insecure https://10.77.3.2/   # no certificate check
  pktlab run http --connect-to 10.77.3.2 https://www.test/ --json
  pktlab run http -L http://10.77.3.2/old       # follow redirects (at most --max-redirs)
  pktlab run http -d 'a=1&b=2' http://10.77.3.2/form   # POST, as curl -d
  pktlab run http --json '{"a":1}' http://10.77.3.2/api  # curl's --json: a JSON POST
  pktlab run http -K opts.txt --url http://10.77.3.2/  # curl's config file, --url
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
  pktlab run http -sv -o /dev/null https://10.77.3.2/  # curl's verbose lines on stderr
  pktlab run http --trace-ascii t.txt --trace-time -d a=1 http://10.77.3.2/form  # curl's dump
  pktlab run http -w '%{url}\\n' -d a=1 http://10.77.3.2/f --next -I http://10.77.3.2/g

With -w the table is replaced by curl's output: each URL's body (unless -o sends it to a
file; the headers with -I) then the write-out, nothing else on stdout. -w knows curl's
%{http_code} %{response_code} %{time_namelookup} %{time_connect} %{time_appconnect}
%{time_pretransfer} %{time_starttransfer} %{time_redirect} %{time_total}
%{size_download} %{size_header} %{size_request} %{size_upload} %{speed_download}
%{speed_upload} %{num_redirects} %{num_connects} %{url} %{url_effective}
%{redirect_url} %{remote_ip} %{remote_port} %{local_ip} %{local_port} %{num_certs}
%{content_type} %{method} %{scheme}
%{http_version} %{exitcode} %{errormsg} %{filename_effective} %{json} %{onerror}
%{stdout} %{stderr} %header{NAME}, \\n \\t \\r and %%; -w @FILE reads the format from FILE.
An unknown variable prints nothing (warned on stderr, as curl). Write --max-redirs=-1
for no limit (-1 alone reads as an option).

--json: the word after it starts with @ or is JSON ({...}, [...], "text", a number,
true, false, null): curl's --json DATA (a POST, Content-Type and Accept
application/json); anything else (a URL, an option, nothing): JSON lines instead of the
table. --json=DATA is always curl's DATA, sent as is; a word starting with { or [ that
is not JSON and has no :// is refused.

Host names are resolved through the endpoint's DNS server unless --resolve or
--connect-to gives the address (the URL's name still goes into SNI, the Host header and
the certificate check). --connect-to takes curl's HOST1:PORT1:HOST2:PORT2 and, as before
it, an IP address alone: a value that is an IP address (::1 too) is the address form.
Times are endpoint stamps from the start (TIME read before the name lookup, or before
the nopen), like curl's time_* (summed over the hops of a redirect, as curl's).
Exit status: 0 all fetched (any HTTP status, as curl; with -f one of 400 or more fails),
1 some fetch failed (its record has "error"), 2 error (an option, a URL or its glob,
a -T glob or a -F part that is wrong: one line, before anything is sent).
See docs/http.md.
"""


def configure(p: argparse.ArgumentParser) -> None:
    _read_curl_words(p)
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
        "-E", "--cert", metavar="FILE[:PASSWORD]",
        help="the client certificate (PEM, its chain after it; its key too unless --key) "
        "sent when an https:// server asks for one, as curl; :PASSWORD the key's "
        "passphrase (\\: a colon in FILE)",
    )  # fmt: skip
    p.add_argument("--key", metavar="FILE", help="the private key of --cert (PEM)")
    p.add_argument(
        "--pass",
        dest="key_pass",
        metavar="PHRASE",
        help="the passphrase of the private key (wins over --cert's :PASSWORD)",
    )
    p.add_argument(
        "--connect-to", action="append", default=[], metavar="HOST1:PORT1:HOST2:PORT2",
        help="a request to HOST1 and PORT1 connects to HOST2 and PORT2 instead, as curl "
        "(HOST1, PORT1 empty: any; HOST2, PORT2 empty: the URL's; [v6] in brackets; "
        "repeatable, the first that matches wins); the Host field and the TLS name stay the "
        "URL's. An IP address alone (ours before curl's form): every request to it, the "
        "URL's port (curl's ::ADDR:)",
    )  # fmt: skip
    p.add_argument(
        "--resolve", action="append", default=[], metavar="HOST:PORT:ADDR",
        help="a request to HOST (* any) and PORT connects to ADDR (the first of "
        "ADDR,ADDR...; [v6] in brackets), no DNS, as curl (repeatable; -HOST:PORT "
        "drops an earlier one); --connect-to wins",
    )  # fmt: skip
    fam = p.add_mutually_exclusive_group()
    fam.add_argument("-4", "--ipv4", dest="family", action="store_const", const=4,
                     help="resolve to IPv4")  # fmt: skip
    fam.add_argument("-6", "--ipv6", dest="family", action="store_const", const=6,
                     help="resolve to IPv6")  # fmt: skip
    p.add_argument(
        "-K", "--config", metavar="FILE",
        help="read options from FILE (- stdin) in this place, as curl: one a line, the "
        "leading -- optional, a value after blanks, = or :, \"quoted\" with \\ escapes",
    )  # fmt: skip
    p.add_argument("--url", metavar="URL", help="a URL, as an operand in this place (curl's)")
    p.add_argument(
        "-q", "--disable", action="store_true",
        help="no .curlrc read (curl's; we never read one: no effect)",
    )  # fmt: skip
    p.add_argument(
        "-N", "--no-buffer", action="store_true",
        help="no effect: the body is written as it comes (curl's -N)",
    )  # fmt: skip
    p.add_argument(
        "-#", "--progress-bar", action="store_true",
        help="no effect (curl's bar on stderr; ours: the table's progress line, -Z's meter)",
    )  # fmt: skip
    p.add_argument(
        "--fail-early", action="store_true",
        help="after a URL fails, no other is fetched (curl's; the exit status 1)",
    )  # fmt: skip
    p.add_argument(
        "--curl-exit-codes", action="store_true",
        help="exit as curl 7.88 does (ours: 0, or 1 when a URL failed): the last URL's "
        "code (6, 7, 18, 22, 28, 47, 60, ...; 0 when it was fetched); with -Z the last "
        "failure's. Errors before anything is sent stay 2, Ctrl-C 130",
    )  # fmt: skip
    sockopt = "a socket option: the endpoint's socket is its own"
    for option, why in (("--no-keepalive", sockopt), ("--tcp-nodelay", sockopt)):
        p.add_argument(option, action="store_true", help=f"no effect, as curl's ({why})")
    p.add_argument(
        "--stderr", metavar="FILE",
        help="what would go to stderr goes to FILE (- stdout), as curl",
    )  # fmt: skip
    p.add_argument(
        "--request-target", metavar="PATH",
        help="the request line's target instead of the URL's path and query (`*` for "
        "OPTIONS *), for every request of the transfer, as curl",
    )  # fmt: skip
    p.add_argument(
        "--path-as-is", action="store_true",
        help="send the URL's /../ and /./ as written (curl's; without it they are removed)",
    )  # fmt: skip
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
    p.add_argument(
        "--proto", metavar="PROTOCOLS",
        help="the schemes a URL may have, as curl: comma-separated, each after + (allow), "
        "- (deny) or = (only these), 'all' for every one (e.g. =https); another: curl's "
        "(1) 'Protocol \"http\" not supported or disabled in libcurl', nothing sent",
    )  # fmt: skip
    p.add_argument(
        "--proto-redir", metavar="PROTOCOLS",
        help="as --proto, for the URLs -L's redirects lead to (from curl's default: "
        "http, https, ftp, ftps), --proto's too",
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
        "-R", "--remote-time", action="store_true",
        help="give each -o/-O file the server's Last-Modified time, as curl -R",
    )  # fmt: skip
    p.add_argument(
        "--etag-save", metavar="FILE",
        help="save each URL's ETag values in FILE (- stdout), as curl",
    )  # fmt: skip
    p.add_argument(
        "--etag-compare", metavar="FILE",
        help="send If-None-Match with the ETag in FILE, as curl",
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
        "-0", "--http1.0", dest="http_version", action="store_const", const="1.0",
        help="HTTP/1.0 requests (curl's: no Expect, no reuse; https://: ALPN http/1.0)",
    )  # fmt: skip
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
    for auth_flag, scheme, text in (
        ("--basic", "basic", "-u's credentials as Basic authorization at once (the default)"),
        (
            "--digest",
            "digest",
            "-u's credentials as Digest authorization: the request goes "
            "without, a 401's Digest challenge is answered by one more (curl's RFC 7616: MD5, "
            "SHA-256, SHA-512-256, -sess, qop=auth)",
        ),
        (
            "--anyauth",
            "anyauth",
            "as --digest, Basic too when the 401 offers only Basic "
            "(so are --digest --basic together, as curl's)",
        ),
        (
            "--ntlm",
            "ntlm",
            "refused: NTLM is not built (a connection-bound handshake with "
            "MD4/DES the endpoint's one-request hops do not keep)",
        ),
        (
            "--negotiate",
            "negotiate",
            "refused: SPNEGO/Kerberos is not built (needs a Kerberos client on the measuring host)",
        ),
    ):  # curl: they add up (--digest --basic: either, as --anyauth)
        p.add_argument(auth_flag, dest="auth_schemes", action="append_const", const=scheme,
                       default=[], help=text)  # fmt: skip
    p.add_argument(
        "--tr-encoding", action="store_true",
        help="ask for a gzip Transfer-Encoding (HTTP/1.x: `Connection: TE`, `TE: gzip`), "
        "as curl (a gzip Transfer-Encoding is decoded with it or without, as curl 7.88)",
    )  # fmt: skip
    p.add_argument(
        "-n", "--netrc", action="store_true",
        help="credentials from ~/.netrc for each host without -u, as curl",
    )  # fmt: skip
    p.add_argument(
        "--netrc-file", metavar="FILE",
        help="credentials from FILE for each host without -u, as curl",
    )  # fmt: skip
    p.add_argument(
        "--netrc-optional", action="store_true",
        help="--netrc, but a URL's own USER:PASSWORD@ wins, as curl",
    )  # fmt: skip
    p.add_argument(
        "--oauth2-bearer", metavar="TOKEN",
        help="`Authorization: Bearer TOKEN` (over -u's; only to the URL's own scheme, "
        "host and port, as -u's), as curl",
    )  # fmt: skip
    p.add_argument(
        "-u", "--user", metavar="USER:PASSWORD",
        help="Basic authorization (sent only to the URL's own scheme, host and port, also "
        "over redirects, as curl)",
    )  # fmt: skip
    p.add_argument(
        "--compressed", action="store_true",
        help="ask for a compressed body (Accept-Encoding: deflate, gzip, br, zstd, as curl "
        "7.88.1's) and decode it",
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
        "-j", "--junk-session-cookies", action="store_true",
        help="the session cookies (no expiry) of -b's cookie files not read, as curl: a "
        "new session",
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
        "there is curl's 33, a 416 is no error. With -T FILE: the file from OFFSET (- : "
        "all), Content-Range: bytes OFFSET-LAST/SIZE; with -d: curl 7.88's quirk, the "
        "data's first LEN-OFFSET bytes under that Content-Range (OFFSET bytes of a stdin "
        "that cannot seek read and dropped)",
    )  # fmt: skip
    p.add_argument(
        "--limit-rate", metavar="RATE", type=_rate, default=0,
        help="each transfer at most RATE bytes per second on average (k, M, G: 1024s), "
        "download and upload, as curl: the endpoint stops reading the socket while the "
        "transfer is ahead (the server sees the TCP window close), sends wait",
    )  # fmt: skip
    p.add_argument(
        "-Y", "--speed-limit", metavar="BYTES", type=_count, default=0,
        help="end a transfer slower than BYTES per second for --speed-time seconds "
        "(default 30), as curl: its (28) 'Operation too slow' [default: 0, none]",
    )  # fmt: skip
    p.add_argument(
        "-y", "--speed-time", metavar="S", type=_count, default=0,
        help="with -Y: the seconds the speed may stay under -Y's [default: 30, as curl; "
        "without -Y: no effect, as curl 7.88]",
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
        "TIME a date as curl reads one ('20 Jan 2024', 'Jan 20 2024 10:11 CET', RFC 1123, "
        "YYYYMMDD) or a file (its time of change); a 2xx whose Last-Modified fails it "
        "is curl's simulated 304, no body",
    )  # fmt: skip
    p.add_argument(
        "-D", "--dump-header", metavar="FILE",
        help="write every response header block (1xx, redirect hops, every URL) to FILE "
        "as received (made empty first; - is stdout), as curl",
    )  # fmt: skip
    pcapout.add_option(p)
    curl_trace.add_options(p)
    p.add_argument(
        "-:", "--next", dest="next_groups", action=_NextAction, nargs=argparse.REMAINDER,
        default=[], metavar="...",
        help="the options before it apply to the URLs before it; after it a new set of "
        "options for the URLs after it, as curl's (but the global ones, for all: -v, "
        "--trace, --trace-ascii, --trace-time, -s, -S, --stderr, -Z, --parallel-max, "
        "--parallel-immediate, --fail-early, --no-progress-meter, and ours: --json, "
        "--timeout, --pcap, the link's); the connections are kept from group to group",
    )  # fmt: skip
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
        help="seconds for each connection's set-up as curl's: the name lookup, the TCP "
        f"connect and the TLS handshake together (28 when over) [0: the default, "
        f"{CONNECT_TIMEOUT:g}; curl's 300]",
    )  # fmt: skip


def _read_curl_words(p: argparse.ArgumentParser) -> None:
    """`p` (a `cli._Parser`) reads curl's -K/--config, --url, -q (run_http_words.expand)
    and `--json DATA` (run_http_json.rewrite) before argparse sees the words; `--json`'s
    help (the output flag's, added later by run_command) says both."""
    p.read_words = read_words  # type: ignore[attr-defined]


def _takes_value(p: argparse.ArgumentParser) -> Any:
    def takes_value(option: str) -> bool:
        action = p._option_string_actions.get(option)
        # -:/--next (REMAINDER) takes no value: the words after it are the next group's
        return action is not None and action.nargs not in (0, argparse.REMAINDER)

    return takes_value


def read_words(p: argparse.ArgumentParser, words: list[str]) -> list[str]:
    from packetlab.cli.run_http_json import HELP, rewrite
    from packetlab.cli.run_http_words import expand

    takes_value = _takes_value(p)
    flag = p._option_string_actions.get("--json")
    if flag is not None:
        flag.help = HELP
    try:
        return _groups(rewrite(expand(words, takes_value)), takes_value)
    except RunError as e:  # an unreadable -K file: one line, as a usage error
        p.exit(2, f"{p.prog}: {e}\n")


NEXT = ("-:", "--next")


def _groups(words: list[str], takes_value: Any) -> list[str]:
    """curl 7.88 ends a group of options at -:/--next only when it has a URL: a --next
    before the group's first URL is passed over (`-w F --next URL` is one group). An
    option's value that starts with a dash is joined to it (`--proto=-all,http`,
    `-d-x`), as curl takes the next word whatever it is."""
    out: list[str] = []
    has_url, i = False, 0
    while i < len(words):
        word = words[i]
        if word == "--":
            return out + words[i:]
        if word in NEXT:
            if has_url:
                out.append(word)
            has_url = False
        elif word.startswith("-") and len(word) > 1:
            takes = "=" not in word and takes_value(word) and i + 1 < len(words)
            value = words[i + 1] if takes else ""
            if value.startswith("-") and len(value) > 1:  # curl: the value all the same
                out.append(f"{word}={value}" if word.startswith("--") else word + value)
            else:  # (argparse would take `--proto -all,http`'s value for an option)
                out += words[i : i + 2] if takes else [word]
            i += 1 if takes else 0
        else:
            out.append(word)
            has_url = True
        i += 1
    return out


# curl 7.88's global options (and ours): one value for every group of a --next run
GLOBAL = ("trace_opts", "trace_time", "silent", "show_error", "stderr", "parallel",
          "parallel_max", "parallel_immediate", "fail_early", "no_progress_meter", "json",
          "curl_exit_codes",
          "timeout", "verbose", "pcap", "listen", "home", "insecure_plaintext")  # fmt: skip


class _NextAction(argparse.Action):
    """-:/--next: the words after it are the next group's, read with the same options
    (from their defaults, as curl's new OperationConfig), into `next_groups`; a group
    without a URL is curl's "no URL specified!" (exit 2; curl: after the transfers
    before it)."""

    def __call__(self, parser: Any, ns: argparse.Namespace, values: Any, opt: Any = None) -> None:
        words = list(values or [])
        if not any(word in NEXT for word in _groups([*words, NEXT[0]], _takes_value(parser))):
            parser.error(f"no URL specified! (curl's words: the options after "
                         f"the last {opt} have no URL)")  # fmt: skip
        group, extra = parser.parse_known_args(words)
        bad = [w for w in extra if w.startswith("-") and len(w) > 1]
        if bad:
            parser.error(f"unrecognized arguments: {' '.join(bad)}")
        group.urls.extend(extra)  # operands after an option, as the first group's
        later = group.next_groups
        group.next_groups = []
        setattr(ns, self.dest, [group, *later])


_LONG_MAX = (1 << 63) - 1  # curl's long and curl_off_t (x86-64)
_CURL_NUMBER = re.compile(r"[ \t\n\v\f\r]*([+-]?)([0-9]+)")  # strtol's: ASCII digits


def _count(text: str) -> int:
    """--retry N, --retry-delay S, --retry-max-time S, -Y, -y: a whole number, 0 or more,
    as curl 7.88's str2unum reads it (strtol: blanks and a sign before ASCII digits);
    curl's words when not. `isdigit` took `٣` (3) and let `²` and 5,000 digits through
    to int()'s ValueError (argparse's `invalid _count value`; fuzz28's http_opts)."""
    m = _CURL_NUMBER.fullmatch(text)
    if m is None:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a proper numerical parameter")
    digits = m.group(2).lstrip("0") or "0"
    if len(digits) > 19 or int(digits) > _LONG_MAX:
        raise argparse.ArgumentTypeError(f"{text!r}: too large number")
    if m.group(1) == "-" and int(digits):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive numerical parameter")
    return int(digits)


def _size(text: str, which: str = "max-filesize") -> int:
    """--max-filesize BYTES (and --limit-rate's) as curl 7.88's GetSizeParameter: N, or N
    with one of G, M, K, B (any case; 1024s), ASCII digits; past curl_off_t curl's
    words (`\\d` took `٣K` and int() failed 5,000 digits: fuzz28's http_opts)."""
    m = re.fullmatch(r"([0-9]+)([gGmMkKbB]?)", text)
    if m is None:
        raise argparse.ArgumentTypeError(f"{text!r}: unsupported {which} unit. Use "
                                         "G, M, K or B!")  # fmt: skip
    digits = m.group(1).lstrip("0") or "0"
    if len(digits) > 19 or int(digits) > _LONG_MAX:  # (curl: strtoofft's overflow)
        raise argparse.ArgumentTypeError(f"{text!r}: invalid number specified for {which} "
                                         "(curl: is badly used here)")  # fmt: skip
    n = int(digits) << {"g": 30, "m": 20, "k": 10}.get(m.group(2).lower(), 0)
    if n > _LONG_MAX:
        raise argparse.ArgumentTypeError(f"{text!r}: too large number")
    return n


def _rate(text: str) -> int:
    return _size(text, "rate")


def _offset(text: str) -> str:
    """-C OFFSET: "-" or a whole number (curl's words when not)."""
    if text != "-" and not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected a proper numerical parameter")
    return text


def _seconds(text: str) -> float:
    """--connect-timeout S: seconds, 0 or more (curl's words when not)."""
    value = float_in(text, 0, FINITE)
    if value is None:
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
        from packetlab.cli.run_http_json import BAD_MARK, JSON_MARK

        items = list(getattr(ns, self.dest, None) or [])
        kind = self.kind
        for mark, marked in ((JSON_MARK, "json"), (BAD_MARK, "json-bad")):
            if value.startswith(mark):  # curl's --json DATA (run_http_json.rewrite)
                kind, value = marked, value[len(mark) :]
        items.append((kind, value))
        setattr(ns, self.dest, items)
        _in_order(ns, "data", len(items) - 1)


REMOTE = "\0-O"  # -O/--remote-name among the -o files (args.output): no file name has a NUL


NO_REMOTE = "\0--no-remote-name"  # curl's -O turned off: that URL's place, no file


class _RemoteNameAll(argparse.Action):
    """--remote-name-all (--no-remote-name-all): as curl 7.88, for the URLs after it on
    the command line only: kept as (how many URLs argparse has read before it, on)."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        seen = len(getattr(namespace, "urls", None) or [])
        marks = [*getattr(namespace, self.dest, []), (seen, not str(option).startswith("--no-"))]
        setattr(namespace, self.dest, marks)
