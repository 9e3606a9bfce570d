"""HTTP and HTTPS requests from the endpoint, TLS at the controller, as curl makes them.

The endpoint only opens a TCP connection and moves bytes; TLS runs here, in a pyOpenSSL
connection over memory BIOs: what OpenSSL wants to send goes out with nsend, what the
endpoint received (ndata) is written into OpenSSL. So the certificate is verified at the
controller (on by default, against the system store like curl, or `cafile`), with SNI
and the host name checked by curl's rules (`certname.name_check`). HTTP/1.1 framing
(Content-Length, chunked, close-delimited, 204/304, HEAD) is h11's: a small sans-IO
parser that is strict where hand-written ones are not. GET, POST (`data`), HEAD or any
method; redirects followed as curl -L does (`follow`, `next_method` for the method).
Connections are kept open as curl keeps them (HTTP/1.1 persistent connections,
`Connections`): the next request to the same scheme, host and port, a redirect hop or
the next URL of a run, goes over the same TCP (and TLS) connection unless the server
said `Connection: close`; one that died while idle is replaced by a new connect, as
curl's "Connection died, retrying".

Timings are endpoint stamps, from the TIME read just before the name lookup (or the
nopen, for an address; sent ahead, not awaited before the lookup or request it stamps),
like curl's `time_*`, all from the start: `namelookup_us` the
TIME read before the nopen, `connect_us` the ESTABLISHED nstat, `tls_us` the ndata that
completed the handshake, `pretransfer_us` the request's ntag, `first_byte_us` the ndata
carrying the first response byte, `total_us` the ndata carrying the last body byte. Over
redirects they add up per hop as curl's do. Over a reused connection a hop starts at a
TIME read before its request: no lookup, connect or handshake time (0, as curl's).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib import import_module
from typing import TYPE_CHECKING, Any

import h11
from OpenSSL import SSL
from twisted.internet.task import deferLater

from packetlab.clockstep import steady
from packetlab.controller import (
    AddressLike,
    ControllerError,
    EndpointSession,
    SocketInfo,
    deferred_api,
    parse_address,
    read_socket_info,
    read_time,
)
from packetlab.measure.cookies import CookieJar
from packetlab.measure.curldate import http_date
from packetlab.measure.http1 import _exchange
from packetlab.measure.http2_exchange import _exchange_h2, _h2_framing
from packetlab.measure.http_auth import answer, new_cnonce
from packetlab.measure.http_conn import Connections, _Conn, _fill, _resolve, _send, _Unresolved
from packetlab.measure.http_fields import basic_auth, basic_user, field_bytes, url_basic
from packetlab.measure.http_head import HeadTooLarge, cut_short
from packetlab.measure.http_lenient import UnsupportedVersion
from packetlab.measure.http_message import (
    FORM,
    H11_CAP,
    MAX_BODY,
    Asked,
    HttpResult,
    _Cookies,
    _Failed,
    _Fields,
    _Hop,
    _NoResume,
    _own,
    _Sink,
    _TooLarge,
    _Undecodable,
    wire_target,
)
from packetlab.measure.http_netrc import Netrc, NetrcError
from packetlab.measure.http_rate import Pace, rbufsz_for
from packetlab.measure.http_speed import LowSpeed, TooSlow, clock_phase
from packetlab.measure.http_tls import (
    CertificateMismatch,
    TlsLink,
    ca_file,
    client_context,
    tls_error,
)
from packetlab.measure.http_told import (
    close_notify,
    connecting,
    connecting_to,
    dead,
    died,
    ended,
    found_bundle,
    moved_on,
    reusing,
    timed_out,
    unconnected,
    waiting,
)
from packetlab.measure.http_trace import (
    Trace,
    info,
    tls_done,
    tls_messages,
    tls_offered,
    unwatch_tls,
    watch_tls,
    with_credentials,
)
from packetlab.measure.http_url import (
    CURL_SCHEMES,
    MAX_REDIRS,
    HttpError,
    Url,
    clear_auth_note,
    foreign_target,
    next_method,
    parse_url,
    redirect_target,
)
from packetlab.measure.pcap import PcapRecorder
from packetlab.measure.stream import (
    StreamError,
    StreamTimeout,
    TcpStream,
    connect_failure,
)
from packetlab.measure.upload_body import Upload, UploadError
from packetlab.measure.writeerror import WriteError  # (re-exported: its home before)

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

__all__ = [
    "Asked",
    "Connections",
    "HttpError",
    "HttpResult",
    "WriteError",
    "http_get",
    "next_method",
    "parse_url",
    "redirect_target",
]


KEEP_HEADERS = 100  # header blocks kept (the last ones) in `raw_headers`
# request headers not sent on to another host (curl: unless --location-trusted)
_PRIVATE = ("authorization", "cookie")


@deferred_api
async def http_get(
    session: EndpointSession,
    url: str,
    *,
    connect_to: AddressLike | None = None,
    family: int | None = None,
    cafile: str | None = None,
    insecure: bool = False,
    timeout: float = 30.0,
    connect_timeout: float = 10.0,
    headers: list[tuple[str, str]] | None = None,
    max_body: int = MAX_BODY,
    keep_body: bool = False,
    recorder: PcapRecorder | None = None,
    method: str | None = None,
    data: bytes | Upload | None = None,
    head: bool = False,
    follow: bool = False,
    max_redirs: int = MAX_REDIRS,
    post30x: frozenset[int] = frozenset(),
    on_body: Callable[[bytes], object] | None = None,
    connections: Connections | None = None,
    auth: tuple[str, str] | None = None,
    compressed: bool = False,
    on_headers: Callable[[bytes], object] | None = None,
    cookies: CookieJar | None = None,
    cookie: str | None = None,
    http_version: str | None = None,
    on_hop: Callable[[Any], object] | None = None,
    asked: Asked = Asked(),
    trace: Trace | None = None,
    fail: bool = False,
) -> HttpResult:
    """Fetch `url` from the endpoint (HTTP/1.1 or HTTP/2, persistent connections as curl): a GET, a
    POST of `data` (form-encoded unless a Content-Type header is given, as curl -d), a
    HEAD with `head`, or `method` (curl -X: sent as is on every request, the body only
    where curl keeps it).

    The host name is resolved through the endpoint's DNS server unless `connect_to` gives
    the address (like curl --resolve; every hop of a redirect goes there). HTTPS verifies
    the server's certificate and name unless `insecure`. With `follow` (curl -L) a 301,
    302, 303, 307 or 308 with a Location is followed (the method as `next_method`), at
    most `max_redirs` times (-1: no limit), over the same connection when the Location
    has the same scheme, host and port and the server kept it open, else a new one (TLS
    verified again). `connections` keeps them open after the fetch, for the next URL
    (the caller closes them); without it they are closed at the end.

    `auth` (user, password) is sent as Basic authorization (curl -u), as `Authorization`
    and `Cookie` headers are, only to the first URL's scheme, host and port (curl without
    --location-trusted). `compressed` asks for gzip or deflate and decodes the final body
    for `on_body`/`body` (curl --compressed; `body_len` stays the bytes received, as
    curl's size_download). `on_headers` gets each response's header block (curl -i).
    `cookies` (curl's cookie engine, -b FILE/-c FILE) gets every response's Set-Cookie
    and gives each request, redirect hops included, the cookies that match it; `cookie`
    (curl -b 'NAME=VALUE; ...') is sent as is after them on every request.
    Failures after the URL was accepted (name not resolved, refused, TLS, timeout, bad
    HTTP, a redirect loop or a Location that is no URL) come back in `error`, curl's exit
    code in `exitcode`. `timeout` bounds the URL's exchanges, from the first connect
    (redirects included). `on_body` gets the final response's body as it comes
    (`keep_body` keeps it in `body`).
    `recorder` collects the connections' packets for a pcap file (TLS stays encrypted).
    `on_body` or `on_headers` may raise WriteError (a file that could not be made, -J):
    the fetch ends with its message as `error`, exit code 23, the status kept.
    `asked`: curl's User-Agent, Referer and Range (-A, -e, -r; see Asked); a -H of the
    same name replaces it, as any of curl's own fields (`-H 'NAME:'` removes it).
    `on_hop` gets each request's live state as it starts (a redirect's next hop too): its
    `body_len`, `uploaded`, `headers` (once the response's head came) as they grow, for
    a progress meter (read only). `trace` is told what curl's debug callback is told
    (-v, --trace; `http_trace`). `fail` (curl -f): a final status of 400 or more ends
    the fetch after its head (no body read, the connection closed), `error` saying it,
    exit code 22.

    HTTP versions as curl 7.88's with nghttp2: by default https:// offers ALPN h2 and
    http/1.1 and speaks HTTP/2 when the server picks h2, http:// speaks HTTP/1.1;
    `http_version` "1.1" offers only http/1.1 (--http1.1), "2" also asks an http:// server
    for an h2c Upgrade (--http2), "2-prior" speaks h2c on http:// from the start
    (--http2-prior-knowledge). HTTP/2 is one request at a time on a connection, kept for
    the next request to the same origin as an HTTP/1.1 one is; `http_version` of the
    result says which was spoken.
    """
    if http_version not in (None, "1.0", "1.1", "2", "2-prior"):
        raise HttpError(f"http_version {http_version!r}: one of '1.0', '1.1', '2', '2-prior'")
    current = parse_url(url, as_is=asked.path_as_is)
    body = Upload.of(data, FORM) if isinstance(data, bytes) else data
    kind = "HEAD" if head else "GET" if body is None else body.method
    result = HttpResult(url, url_effective=current.effective)
    ctxs: dict[str, SSL.Context] = {}
    extra = list(headers or [])
    basic = None
    if auth is not None:  # a -H Authorization wins (_own)
        basic = basic_auth(field_bytes(auth[0]), field_bytes(auth[1]))
    pair = None  # --digest, --anyauth: -u's, answered to a 401's challenge (http_auth)
    if auth is not None and (asked.auth_scheme != "basic" or _waits(asked)):
        pair = (field_bytes(auth[0]), field_bytes(auth[1]))
    ranged = asked.byte_range is not None or asked.resume_from > 0  # curl: no -z check
    jar = _Cookies(cookies, cookie, any(k.lower() == "cookie" for k, _ in extra))
    sink = _Sink(max_body, keep_body, on_body, on_headers, compressed, http_version,
                 on_hop=on_hop, resume=asked.resume_from if body is None else 0,
                 max_filesize=asked.max_filesize, expect_wait=asked.expect_wait,
                 time_cond=None if ranged else asked.time_cond, trace=trace,
                 fail=fail, cookies=jar)  # fmt: skip
    pool = Connections() if connections is None else connections
    for h, p, a in asked.resolve if trace is not None else ():  # curl: at each transfer
        if pool.transfers:
            info(trace, f"RESOLVE {h}:{p} is - old addresses discarded")
        shown = ",".join(f"[{x}]" if ":" in x else x for x in a.split(","))  # (as given)
        info(trace, f"Added {h}:{p}:{shown} to DNS cache")
        pool.looked_up.add((h, p))
    pool.transfers += 1
    if body is not None:  # a -F part's stdin from a pipe: read whole first, as curl's
        try:
            await _fill(session.reactor, body)
        except UploadError as e:  # curl: (26)
            result.error, result.exitcode = f"upload: {e}", 26
            if connections is None:
                await pool.close()
            return result
    try:
        return await _fetch(session, result, current, kind, method, body, extra, pool, ctxs,
                           connect_to, family, cafile, insecure, timeout, connect_timeout,
                           sink, recorder, follow, max_redirs, post30x, jar,
                           (asked, basic, pair))  # fmt: skip
    finally:
        if connections is None:
            await pool.close()


async def _fetch(
    session: EndpointSession,
    result: HttpResult,
    current: Url,
    kind: str,
    method: str | None,
    data: Upload | None,
    extra: list[tuple[str, str]],
    pool: Connections,
    ctxs: dict[str, SSL.Context],
    connect_to: AddressLike | None,
    family: int | None,
    cafile: str | None,
    insecure: bool,
    timeout: float,
    connect_timeout: float,
    sink: _Sink,
    recorder: PcapRecorder | None,
    follow: bool,
    max_redirs: int,
    post30x: frozenset[int],
    jar: _Cookies,
    own: tuple[Asked, str | None, tuple[bytes, bytes] | None],
) -> HttpResult:
    body = data
    referer = own[0].referer
    creds = own[1] is not None  # curl's URL holds -u's credentials (a relative hop keeps them)
    origin = Connections.key(current)
    first_host = current.host
    public = [(k, v) for k, v in extra if k.lower() not in _PRIVATE]
    first_start: int | None = None
    # --digest/--anyauth: the 401's fields once one was answered, its cnonce, the next nc
    challenge: tuple[list[tuple[str, str]], str, int] | None = None
    began: int | None = None  # with -Z: before the wait for a first connection (pipewait)
    last_hop: _Hop | None = None
    redirected = False  # a Location followed: --proto-redir's too
    sums = dict.fromkeys(("namelookup", "connect", "tls", "pretransfer", "first"), 0)
    route = _Route(session, connect_to, family, timeout, connect_timeout, sink, recorder,
                   follow, pool, own[0].resolve, own[0].connect,
                   own[0].limit_rate, None if insecure else cafile or ca_file(),
                   own[0].local_address, own[0].speed_limit)  # fmt: skip
    while True:
        if current.scheme == "https" and current.scheme not in ctxs:
            alpn = {"1.1": [b"http/1.1"], "1.0": [b"http/1.0"]}.get(
                sink.http or "", [b"h2", b"http/1.1"]
            )
            ctxs["https"] = client_context(cafile=cafile, insecure=insecure, alpn=alpn,
                                           cert=own[0].client_cert)  # fmt: skip
        if sink.http not in ("1.0", "1.1") and (current.scheme == "https" or sink.http):
            import_module("packetlab.measure.http2")  # before the hop starts, not in its times
        if not _allowed(own[0], current.scheme, redirected):  # curl: (1), nothing sent
            said = f'Protocol "{current.scheme}" not supported or disabled in libcurl'
            info(sink.trace, said)
            info(sink.trace, "Closing connection -1")
            option = "--proto-redir" if redirected else "--proto"
            result.error = f"{option}: {current.scheme}:// not allowed"
            result.exitcode, result.said = 1, said
            result.url_effective = current.effective
            break
        hop = _Hop(current, method or kind, nobody=kind == "HEAD")
        if sink.on_hop is not None:
            sink.on_hop(hop)
        followed = follow and (max_redirs < 0 or result.num_redirects < max_redirs)

        # curl: credentials and cookies only to the first URL's scheme, host and port
        same = Connections.key(current) == origin or own[0].trusted
        custom = extra if same else public
        basic = own[1] if same else None  # -u's, else the URL's own USER:PASSWORD@
        pair = own[2] if same else None  # --digest, --anyauth: -u's
        if own[1] is None and own[0].netrc is not None:  # --netrc, without -u
            try:
                pair = _netrc(own[0].netrc, current.host, current.userinfo, sink.trace)
                if pair is None and own[0].trusted and current.host != first_host:
                    pair = _netrc(own[0].netrc, first_host, "")  # curl: the first's kept
            except NetrcError as e:  # curl: (26), nothing sent
                result.error, result.exitcode, result.said = str(e), 26, ".netrc parser error"
                break
            if pair is not None and own[0].auth_scheme == "basic" and not _waits(own[0]):
                basic, pair = basic_auth(*pair), None
        if basic is None and current.userinfo:
            basic = url_basic(current.userinfo)
        user = basic_user(basic)
        pending = None  # curl --digest/--anyauth: none before the server's challenge
        sending = body
        waits = _waits(own[0]) and same
        # (no -u beside --oauth2-bearer: curl's Digest for an empty user, no Basic field)
        who: tuple[bytes, bytes | None] = pair if pair is not None else (b"", None)
        if pair is not None or waits:
            basic, pending = None, own[0].auth_scheme + ("+bearer" if waits else "")
            if challenge is not None:  # curl: each request answers it again, nc counted up
                wire = wire_target(current.target) if own[0].request_target is None else (
                    own[0].request_target)  # fmt: skip
                basic = answer(challenge[0], pending, who[0], who[1], method or kind, wire,
                               challenge[1], challenge[2], own[0].bearer) or None  # fmt: skip
                challenge, pending = (challenge[0], challenge[1], challenge[2] + 1), None
            hop.auth_retry = pending
            # (curl: a Bearer beside them, two schemes, the body whole: measured, session 30)
            multipass = pending in ("digest", "anyauth")
            if multipass and body is not None and body.length:  # curl: an empty body first
                kind_of = body.content_type if body.inline else None  # (-F's: none, as curl)
                sending = Upload([b""], body.method, kind_of, inline=True)
        if own[0].bearer is not None and same and not waits:  # curl: the Bearer wins
            basic = f"Bearer {own[0].bearer}"
        mine = _own(own[0], basic, sink.compressed, referer, kind, sending)
        hop.referer = referer or None  # curl's %{referer}: -e's (not a -H Referer)
        names = {k.lower() for k, _ in custom}
        cond = own[0].time_cond  # curl: after the Cookie
        dated = [] if cond is None else [(cond[0], http_date(cond[1]))]
        sent = _Fields([f for f in mine if f[0].lower() not in names],
                       jar.headers(current) + [f for f in dated if f[0].lower() not in names],
                       custom, own[0].request_target, user,
                       "Digest" if pending == "digest" else "", own[0].tr_encoding)  # fmt: skip
        await _hop(route, hop, ctxs.get(current.scheme), sending, sent)
        result.connects += hop.server is not None and not hop.reused
        result.reused = hop.reused
        if hop.status is not None:
            result.http_version = hop.version
        result.request_size += hop.request_size
        result.upload_size = hop.uploaded
        result.header_size += len(hop.raw_headers)
        if hop.raw_headers:
            result.raw_headers.append(hop.raw_headers)
            del result.raw_headers[:-KEEP_HEADERS]  # bounded with --max-redirs -1
        if hop.start is not None:
            first_start = hop.start if first_start is None else first_start
            if began is None:  # curl's time_total runs from the transfer's start
                began = hop.start if hop.queued is None else min(hop.queued, hop.start)
            _add(sums, hop)
        result.method, result.referer = hop.method, hop.referer
        result.ssl_verify_result = hop.verify_result
        result.num_certs = hop.num_certs or result.num_certs  # (curl's: the last handshake's)
        result.url_effective = current.effective
        if hop.server is not None:
            result.server, result.local = hop.server, hop.local
            result.scheme = current.scheme
        if hop.status is not None or last_hop is None:
            last_hop = hop
        if hop.error is not None:
            result.error, result.exitcode, result.said = hop.error, hop.exitcode, hop.said
            result.truncated = hop.truncated
            break
        if pending is not None and hop.status == 401 and (pair is not None or waits):
            wire = wire_target(current.target) if own[0].request_target is None else (
                own[0].request_target)  # fmt: skip
            if answer(hop.headers, pending, who[0], who[1], hop.method, wire,
                      bearer=own[0].bearer) is not None:  # fmt: skip
                challenge = (hop.headers, new_cnonce(), 1)
                result.num_redirects += 1  # curl: the same URL again, counted so
                info(sink.trace, f"Issue another request to this URL: '{current.written}'")
                continue
        location = hop.location()
        if location is None:
            break
        foreign = foreign_target(location)
        if foreign is not None and (not follow or followed):  # ftp:// and the like
            if not follow:  # curl's %{redirect_url}
                result.redirect_url = foreign[1]
            else:
                result.num_redirects += 1
                _refuse_scheme(result, own[0], current, *foreign, location, sink.trace)
            break
        try:
            target = redirect_target(current, location, followed)
        except HttpError as e:
            if followed:  # curl: (3) The redirect target URL could not be parsed
                result.error, result.exitcode = f"redirect: {e}", 3
                result.num_redirects += 1  # counted as followed, as curl does
            elif follow:
                result.error, result.exitcode = f"maximum ({max_redirs}) redirects followed", 47
                result.said = f"Maximum ({max_redirs}) redirects followed"
                if foreign is not None:  # (curl's %{redirect_url}: where it pointed)
                    result.redirect_url = foreign[1]
            break
        if not follow:
            result.redirect_url = target.text
            break
        if not followed:  # curl: (47) Maximum (N) redirects followed
            result.redirect_url = target.text
            result.error = f"maximum ({max_redirs}) redirects followed (the next to {target.text})"
            result.exitcode, result.said = 47, f"Maximum ({max_redirs}) redirects followed"
            break
        result.num_redirects += 1
        redirected = True
        creds = creds and "//" not in location.split("?", 1)[0]
        if sink.trace is not None:  # (curl's URL holds -u's: not our url_effective, a record's)
            shown = target.written
            if creds and not target.userinfo:
                shown = with_credentials(target.text, own[1])
            note = None if own[0].trusted else clear_auth_note(current, target.scheme, target.text)
            if note is not None:
                info(sink.trace, note)
            info(sink.trace, f"Issue another request to this URL: '{shown}'")
        if hop.last is not None and first_start is not None:
            result.redirect_us = (hop.last - first_start) / 1000
        new_kind = next_method(hop.status or 0, kind, method, post30x)
        if new_kind != kind:
            switched = f"Switch to {new_kind}" if hop.status == 303 else "Switch from POST to GET"
            info(sink.trace, switched)
            kind, body = new_kind, None
        if own[0].auto_referer:  # curl -e ';auto': the URL the redirect came from
            referer = current.text
        current = target
    _finish(result, last_hop, sums, first_start, began)
    if last_hop is not None and last_hop is not hop:  # a redirect followed, then a failure
        result.body_len, result.body_sha256, result.body = 0, None, None  # curl resets them
    return result


def _waits(asked: Asked) -> bool:
    """--oauth2-bearer beside --basic/--digest/--anyauth: curl 7.88.1 wants two schemes
    (its authtype bits add up), so its first request carries none; a 401 picks one."""
    return asked.bearer is not None and asked.bearer_waits


def _netrc(netrc: Netrc, host: str, userinfo: str, trace: Trace | None = None
           ) -> tuple[bytes, bytes] | None:  # fmt: skip
    """curl --netrc: the user and password a request to `host` sends, from the file and
    the URL's USER[:PASSWORD] (None: none from the file, said in -v as curl's)."""
    user, sep, password = userinfo.partition(":")
    from urllib.parse import unquote

    def decoded(text: str) -> str:
        return unquote(text, errors="surrogateescape")

    if netrc.optional and sep:  # --netrc-optional: the URL's password, no file read
        return None
    got = netrc.credentials(host, decoded(user) if userinfo else None,
                            decoded(password) if sep else None)  # fmt: skip
    if got is None:  # (curl 7.88.1 names --netrc's own file "(nil)")
        info(trace, f"Couldn't find host {host} in the {netrc.path or '(nil)'} file; "
             "using defaults")  # fmt: skip
        return None
    return field_bytes(got[0]), field_bytes(got[1])


def _refuse_scheme(result: HttpResult, asked: Asked, current: Url, scheme: str, text: str,
                   location: str, trace: Trace | None) -> None:  # fmt: skip
    """-L to a Location of a scheme other than http(s), as curl 7.88.1 ends it when it
    cannot go there: one it does not know, its (1) "Unsupported URL scheme" (the URL
    stays the last one); one --proto/--proto-redir leave out (file://, dict://; its
    redirect default allows ftp and ftps alone), its (1) `Protocol "X" not supported or
    disabled in libcurl` after the redirect. ftp:// and ftps:// curl speaks; ours has no
    FTP and ends the same way (a curl built without it says so), in its words."""
    if scheme not in CURL_SCHEMES:
        said = "The redirect target URL could not be parsed: Unsupported URL scheme"
        info(trace, said)
        result.error = f"redirect: Location {location!r}: an unsupported URL scheme"
        result.exitcode, result.said = 1, said
        return
    note = None if asked.trusted else clear_auth_note(current, scheme, text)
    if note is not None:
        info(trace, note)
    info(trace, f"Issue another request to this URL: '{text}'")
    said = f'Protocol "{scheme}" not supported or disabled in libcurl'
    info(trace, said)
    info(trace, "Closing connection -1")
    if scheme in ("ftp", "ftps") and _allowed(asked, scheme, True):
        result.error = (f"redirect to {text}: pktlab run http speaks HTTP and HTTPS only "
                        f"(curl would try {scheme.upper()})")  # fmt: skip
    else:
        result.error = f"--proto-redir: {scheme}:// not allowed (redirect to {text})"
    result.exitcode, result.said = 1, said
    result.url_effective = text


def _allowed(asked: Asked, scheme: str, redirected: bool) -> bool:
    """curl's --proto (every URL) and --proto-redir (a redirect's, besides) allow it."""
    if asked.protocols is not None and scheme not in asked.protocols:
        return False
    return not redirected or asked.redir_protocols is None or scheme in asked.redir_protocols


def _add(sums: dict[str, int], hop: _Hop) -> None:
    """curl's accumulation: each hop's stamps from that hop's start, summed."""
    assert hop.start is not None
    for name, t in (("namelookup", hop.resolved), ("connect", hop.connected),
                    ("tls", hop.tls_done), ("pretransfer", hop.sent),
                    ("first", hop.first)):  # fmt: skip
        if t is not None:
            sums[name] += t - hop.start


def _finish(
    result: HttpResult, hop: _Hop | None, sums: dict[str, int], first: int | None,
    began: int | None = None,
) -> None:  # fmt: skip
    if hop is None:
        return
    if hop.status is not None:
        result.status, result.reason, result.headers = hop.status, hop.reason, hop.headers
        result.body_len, result.body_sha256, result.body = hop.body_len, hop.body_sha256, hop.body
    result.tls_version = hop.tls_version
    if first is None:
        return
    result.namelookup_us = sums["namelookup"] / 1000
    if hop.connected is not None or result.num_redirects or hop.reused:
        result.connect_us = sums["connect"] / 1000
    if hop.tls_done is not None or (hop.reused and hop.tls_version is not None):
        result.tls_us = sums["tls"] / 1000
    if hop.sent is not None or result.num_redirects:
        result.pretransfer_us = sums["pretransfer"] / 1000
    if hop.first is not None:
        result.first_byte_us = sums["first"] / 1000
    if hop.last is not None:  # on an error: to the last byte received
        result.total_us = (hop.last - (first if began is None else began)) / 1000


_EXIT_CONNECT = 7  # curl: couldn't connect


class _HandshakeTimeout(Exception):
    """The TLS handshake was not done when --connect-timeout ran out."""


@dataclass(frozen=True, slots=True)
class _Route:
    """What every hop of one transfer is made with (curl's per-transfer options)."""

    session: EndpointSession
    connect_to: AddressLike | None
    family: int | None
    timeout: float
    connect_timeout: float
    sink: _Sink
    recorder: PcapRecorder | None
    follows: bool
    pool: Connections
    resolve: tuple[tuple[str, int, str], ...] = ()
    connect: tuple[tuple[str, int | None, str, int | None], ...] = ()
    rate: int = 0  # --limit-rate (bytes/s)
    cafile: str | None = None  # the CA file certificates are verified with (None: -k)
    local: bool = False  # each new connection's own address read (Asked.local_address)
    speed: tuple[int, int] | None = None  # -Y/-y (Asked.speed_limit)

    def names_host(self, u: Url) -> bool:
        """Whether a --connect-to (or http_get's `connect_to`) names the host a hop to `u`
        connects to (curl's conn_to_host)."""
        if self.connect_to is not None:
            return True
        for h1, p1, h2, p2 in self.connect:
            if h1 in ("", u.host.lower()) and p1 in (None, u.port) and (h2 or p2 is not None):
                return bool(h2)
        return False

    def target(self, u: Url) -> tuple[str, int, AddressLike | None]:
        """Where a hop to `u` connects: (host, port, its address, None for the endpoint's
        DNS). http_get's `connect_to`: that address and the URL's port. Else the first
        --connect-to entry (curl's) that matches the URL's host and port and names a host or
        a port, else the URL's; an address is itself, a name the first --resolve entry of it
        (or "*") and that port (its addresses: "A1,A2", tried in turn)."""
        if self.connect_to is not None:
            return u.host, u.port, self.connect_to
        host, port = u.host, u.port
        for h1, p1, h2, p2 in self.connect:
            if h1 in ("", u.host.lower()) and p1 in (None, u.port) and (h2 or p2 is not None):
                host, port = h2 or u.host, u.port if p2 is None else p2
                break
        if replace(u, host=host).host_is_address:
            return host, port, host
        name = host.lower()
        return host, port, next((a for h, p, a in self.resolve if p == port and h in (name, "*")),
                                None)  # fmt: skip


#: curl 7.88.1's happy eyeballs timeout (CURLOPT_HAPPY_EYEBALLS_TIMEOUT_MS default 200):
#: the second address family is tried this long after the first one's connect began
HAPPY_EYEBALLS_S = 0.2


async def _hop(
    route: _Route,
    hop: _Hop,
    ctx: SSL.Context | None,
    data: Upload | None,
    headers: _Fields,
) -> None:
    session, pool = route.session, route.pool
    u = hop.url
    host, port, connect_to = route.target(u)
    connecting_to(route.sink.trace, u, (host, port), connect_to, route.connect_to is not None)
    looked: list[object] = []  # a dead connection told (with curl's bundle lines)

    def seems_dead(c: Any) -> None:
        looked.append(c)
        dead(route.sink, c, pool.bundle(u))

    conn = await pool.take(u, seems_dead)
    # curl's pipewait (its -Z default): while a first connection to the origin is being
    # made, wait to learn whether it multiplexes (HTTP/2: at its handshake; HTTP/1.1: at
    # its first exchange's end, when it can be reused)
    multiplexed = pool.pipewait
    pending = conn is None and multiplexed and Connections.key(u) in pool.connecting
    if pending:
        waiting(route.sink, pool.bundle(u))
        queued = await read_time(session)  # curl: time_total counts the wait
        await pool.wait_for(u)  # curl's pipewait: the first connection may take us too
        # Woken inside the connection maker's `pool.known`, before it sent its own request:
        # one reactor turn lets that request go first, as curl's does.
        await deferLater(session.reactor, 0, lambda: None)
        conn = await pool.take(u)
        hop.queued = queued
    if conn is not None:  # curl: "Re-using existing connection"
        reusing(route.sink, conn, pool.bundle(u), pending)
        start = read_time(session)  # pipelined: sampled just before the request is handled
        hop.reused, hop.server, hop.tls_version = True, conn.server, conn.tls_version
        hop.local = conn.local
        try:
            await _paced(route, hop, conn, data, headers)
        finally:
            hop.start = hop.resolved = await _stamp(start)
        if not died(hop):
            return
        # curl: "Connection died, retrying a fresh connect" (closed while idle), then the
        # same URL again through create_conn: its --connect-to lines again
        was = hop.queued, hop.referer
        hop.__init__(hop.url, hop.method, hop.nobody)  # type: ignore[misc]
        hop.queued, hop.referer = was
        info(route.sink.trace, f"Issue another request to this URL: '{u.written}'")
        connecting_to(route.sink.trace, u, (host, port), connect_to,
                      route.connect_to is not None)  # fmt: skip
    other = pool.other_scheme(u) if conn is None and not pending and not looked else None
    if other is not None and route.sink.trace is not None:  # (-L from http to https)
        found_bundle(route.sink, other, pool.bundle(u))
    mine = multiplexed and Connections.key(u) not in pool.connecting
    if mine:  # the next transfers to this origin wait to learn whether it multiplexes
        pool.connecting[Connections.key(u)] = []
    try:
        await _connect(route, hop, ctx, data, headers)
    finally:
        if mine:
            pool.known(u, None)  # failed before its protocol was known: they go on their own


async def _stamp(start: Deferred[int]) -> int | None:
    """A hop's start: a TIME read sent ahead of the hop's first request and awaited only
    after it, so the endpoint samples its clock just before it handles that request (it
    handles them in order). Awaiting the read first made the request leave one controller
    round trip later, counted in every time of the hop (~40 ms more against a reference
    endpoint, which holds an answer's body back for the delayed ACK; ctlaudit23). None
    when the session ended first (the hop has its error then)."""
    try:
        return await start
    except ControllerError:
        return None


async def _connect(
    route: _Route,
    hop: _Hop,
    ctx: SSL.Context | None,
    data: Upload | None,
    headers: _Fields,
) -> None:
    """The hop over a new connection: the name resolved, the connect, the exchange.
    curl's --connect-timeout bounds the three steps of the connection phase together:
    the lookup, the TCP connect and the TLS handshake."""
    session, u = route.session, hop.url
    clock = session.reactor
    began = steady(clock)
    if not route.sink.until:  # curl -m: from the transfer's start, its lookup and connect in
        route.sink.until.append(began + route.timeout)
        route.sink.timed_from.append(hop)
    whole = route.sink.until[0]  # (ours began at the first exchange: -m 1 waited 10 s on a SYN)
    until = min(began + route.connect_timeout, whole)
    host, port, connect_to = route.target(u)
    looked_up = connect_to is None
    number, trace = route.pool.number(), route.sink.trace
    if trace is not None:
        connecting(trace, route.pool, u, (host, port), connect_to, route.connect_to is not None)
    if connect_to is None:
        start = read_time(session)  # pipelined: sampled just before the lookup's first request
        try:
            connect_to = await _resolve(session, replace(u, host=host, port=port), route.family,
                                        until)  # fmt: skip
        except _Unresolved as e:
            hop.error, hop.exitcode = str(e), e.exitcode
            resolving = (steady(clock) - began) * 1000
            hop.said = (f"Could not resolve host: {host}" if e.exitcode == 6 else
                        f"Resolving timed out after {resolving:.0f} milliseconds")  # fmt: skip
            if trace is not None:  # curl's words
                info(trace, hop.said)
                info(trace, f"Closing connection {number}")
            return
        finally:  # whatever the lookup gave (a failure of the read, if the session ended,
            hop.start = await _stamp(start)  # is not left unhandled)
    # --resolve HOST:PORT:A1,A2 and a name's addresses: each in turn until one connects,
    # as curl's (a refusal moves on at once; each but the last has half the time left)
    addrs = [parse_address(a) for a in str(connect_to).split(",")]
    opened = steady(clock)  # (curl's happy eyeballs timer: -Y/-y checks at its end too)
    for n, addr in enumerate(addrs):
        server = f"[{addr}]:{port}" if addr.version == 6 else f"{addr}:{port}"
        info(trace, f"  Trying {server}...")
        left = max(until - steady(clock), 0.001)
        share = left if n == len(addrs) - 1 else left / 2
        # curl's happy eyeballs: the other family is tried HAPPY_EYEBALLS_S after the
        # first one's start (curl keeps the first attempt going beside it; ours gives it up)
        eyeballs = n < len(addrs) - 1 and addrs[n + 1].version != addr.version
        try:
            stream = await TcpStream.connect(session, addr, port,
                                             timeout=min(share, HAPPY_EYEBALLS_S) if eyeballs
                                             else share,
                                             recorder=route.recorder,
                                             rbufsz=rbufsz_for(route.rate))  # fmt: skip
            break
        except ControllerError as e:
            if n < len(addrs) - 1:
                failure = connect_failure(e, addr, port)
                if eyeballs and "no answer to the SYN" in failure:
                    continue  # (curl says nothing: its next family starts beside it)
                told = (until - began if n == 0 else left) / 2  # (curl's: its share at the start)
                moved_on(trace, failure, addr, port, told)
                continue
            failed: ControllerError = e
    else:
        err = failed
        hop.error = connect_failure(err, addr, port)
        hop.exitcode = _EXIT_CONNECT
        ms = int((steady(clock) - began) * 1000)  # (curl's: since the transfer's start)
        why = "Couldn't connect to server"
        if "not established within" in str(err):  # curl: (28) Failed to connect ... Timeout
            since = " of the name lookup's start" if looked_up else ""
            took = f"{route.connect_timeout:g} s{since}"
            if whole < began + route.connect_timeout:
                took = f"{route.timeout:g} s of the transfer's start (-m)"
            hop.error = (f"connect to {server}: no answer to the SYN: not established within "
                         f"{took} (the host is down or a firewall drops it)")  # fmt: skip
            hop.exitcode, why = 28, "Timeout was reached"
        # curl's words (%{errormsg}, -v): -m's end first is its "Connection timed out"
        hop.said = f"Failed to connect to {host} port {port} after {ms} ms: {why}"
        if hop.exitcode == 28 and whole < began + route.connect_timeout:
            hop.said = f"Connection timed out after {ms} milliseconds"
        if trace is not None:
            unconnected(trace, hop, addr, port, left)
            info(trace, f"Closing connection {number}")
        return
    shown = "(nil)" if route.names_host(u) else u.host  # (curl 7.88.1's, _Conn.shown)
    info(trace, f"Connected to {shown} ({addr}) port {port} (#{number})")
    hop.server = server
    if hop.start is None:
        hop.start = stream.started_at
    hop.resolved, hop.connected = stream.started_at, stream.established_at
    if ctx is not None and trace is not None:  # OpenSSL's messages, as curl's
        tls_messages(ctx)
    tls = None if ctx is None else TlsLink(ctx, u, stream)
    if tls is not None and trace is not None:
        watch_tls(tls.conn, trace, route.cafile)
        tls.stepwise = True
    conn = _Conn(stream, tls, server, None, number=number, host=u.host, shown=shown)
    looked = None if not route.local else _local_address(session, stream.sktid, conn)
    await _paced(route, hop, conn, data, headers, until, opened + HAPPY_EYEBALLS_S)
    if looked is not None:
        await looked
        hop.local = conn.local


def _local_address(session: EndpointSession, sktid: int, conn: _Conn) -> Deferred[None]:
    """The connection's own address and port (curl's %{local_ip}, %{local_port}) into
    `conn.local`, from the socket block's LADDR and LPORT: the read is sent now and its
    answer awaited after the hop, so the request does not wait one more round trip for
    it (the endpoint handles it before the request's nsend). Nothing if it fails (the
    session ended: the hop has its error)."""

    def got(info: SocketInfo) -> None:
        if info.laddr is not None and info.lport:
            a = info.laddr
            conn.local = f"[{a}]:{info.lport}" if a.version == 6 else f"{a}:{info.lport}"

    d: Deferred[None] = read_socket_info(session, sktid).addCallback(got)
    return d.addErrback(lambda _: None)


async def _paced(route: _Route, hop: _Hop, conn: _Conn, data: Upload | None,
                 headers: _Fields, until: float = math.inf,
                 wake: float | None = None) -> None:  # fmt: skip
    """The hop over `conn`, its reads and sends held to --limit-rate's rate (if any);
    `until`: when the connection phase (its TLS handshake) must be done; `wake`: when
    a new connection's happy eyeballs timer ends (a -Y/-y check, as curl's)."""
    session = route.session
    pace = None if not route.rate else Pace(conn.stream, route.rate, steady(session.reactor))
    conn.pace = pace
    if route.speed is not None:  # -Y/-y: from the request's send on, at each read and send
        hop.slow = LowSpeed(*route.speed, lambda: hop.body_len + hop.uploaded,
                            clock_phase(session.reactor), wake=wake)  # fmt: skip
    try:
        await _over(session, hop, conn, data, headers, route.timeout, route.sink,
                    route.follows, route.pool, (until, route.connect_timeout),
                    route.cafile)  # fmt: skip
        if pace is not None and hop.error is None and hop.last is not None:
            # the last byte reached the endpoint's kernel before the pace let it go: the
            # transfer ends when it did (curl's time_total: when curl read it)
            hop.last = max(hop.last, await read_time(session))
    finally:
        if pace is not None:
            pace.release()
            if conn.pace is pace:
                conn.pace = None
        hop.slow = None


async def _given_up(session: EndpointSession, last: int | None) -> int | None:
    """When a hop that timed out (-m, -Y/-y) ended, on the endpoint's clock (read now: a
    control round trip's half after): curl's time_total runs to its end, not to the last
    byte that came (ours was 0 for a server that never answered)."""
    try:
        now = await read_time(session)
    except Exception:  # (the session ended: the last byte's time, as before)
        return last
    return now if last is None else max(last, now)


def _rate(conn: _Conn) -> int:
    """--limit-rate's rate on `conn` (0: none): an HTTP/2 connection holds each stream
    to it (`http2_exchange._StreamPace`), not the socket."""
    return 0 if conn.pace is None else conn.pace.rate


async def _over(
    session: EndpointSession,
    hop: _Hop,
    conn: _Conn,
    data: Upload | None,
    headers: _Fields,
    timeout: float,
    sink: _Sink,
    follows: bool,
    pool: Connections,
    connect: tuple[float, float] = (math.inf, 0.0),
    cafile: str | None = None,
) -> None:
    """One request and its response over `conn` (a new one: TLS handshake first); the
    connection back into `pool` when the exchange left it reusable, else closed.
    `connect`: (when the connection phase must be done, --connect-timeout): the
    handshake's bound when it comes before -m's."""
    stream = conn.stream
    now = steady(session.reactor)
    if not sink.until:  # curl -m: the URL's time, its redirects included, not each hop's
        sink.until.append(now + timeout)
    deadline = min(now + timeout, sink.until[0])
    keep = False
    conn.active += 1
    try:
        if conn.tls is not None and not hop.reused:
            if sink.trace is not None:
                tls_offered(sink.trace, sink.http)
            try:
                hop.tls_done = await conn.tls.handshake(min(deadline, connect[0]),
                                                        check_name=sink.trace is None)  # fmt: skip
            except StreamTimeout:
                if connect[0] < deadline:
                    raise _HandshakeTimeout from None
                raise
            conn.tls_version = hop.tls_version = conn.tls.conn.get_protocol_version_name()
            hop.num_certs = len(conn.tls.conn.get_peer_cert_chain() or [])  # (curl's: 0 reused)
            if conn.tls.conn.get_alpn_proto_negotiated() == b"h2":
                conn.h2 = _h2_framing(conn.server, _rate(conn))
            if sink.trace is not None:  # (the name checked after curl's lines of it)
                hop.told = not tls_done(sink.trace, conn.tls, cafile is not None)
                conn.tls.check_name()
                hop.told = False
                if conn.h2 is not None:  # curl: the preface goes before the request
                    _send(conn, conn.h2.preface())
                info(sink.trace, "using HTTP/2" if conn.h2 is not None else "using HTTP/1.x")
        elif conn.tls is None and not hop.reused and sink.http == "2-prior":
            conn.h2 = _h2_framing(conn.server, _rate(conn))  # h2c, no Upgrade
        if not hop.reused and conn.h2 is not None:
            pool.known(hop.url, conn)  # HTTP/2: the transfers waiting for it multiplex
        if conn.h2 is not None:
            keep = await _exchange_h2(session, hop, conn, data, headers, deadline, sink,
                                      follows)  # fmt: skip
        else:
            keep = await _exchange(session, hop, conn, data, headers, deadline, sink,
                                   follows)  # fmt: skip
    except SSL.Error as e:
        if hop.tls_done is None and not hop.reused:  # curl: (35) the handshake failed
            hop.error, hop.exitcode, hop.verify_result = tls_error(e), 35, 1
        else:  # curl: (56) a TLS read failed
            hop.error = f"{tls_error(e)} (from {conn.server}, after the handshake)"
            hop.exitcode = 56
    except CertificateMismatch as e:
        hop.error, hop.exitcode, hop.verify_result = str(e), 60, e.verify_result
        hop.said = e.said
        if e.curl is not None:
            info(sink.trace, e.curl)
            hop.told = True
    except _HandshakeTimeout:  # curl: (28) SSL connection timeout
        hop.error = (f"SSL connection timeout: no TLS handshake from {conn.server} within "
                     f"{connect[1]:g} s of the connection's start (--connect-timeout)")  # fmt: skip
        hop.exitcode = 28
        hop.said = "SSL connection timeout"
        info(sink.trace, hop.said)
        hop.told = True
    except StreamTimeout:  # curl: "Operation timed out after N ms with M bytes received"
        what = "no response" if hop.status is None else "no complete response"
        first = deadline == now + timeout or any(h is hop for h in sink.timed_from)
        hop.error = (
            f"timed out: {what} from {conn.server} within {timeout:g} s of the "
            f"{'connect' if first else 'first hop connect'} "
            f"({hop.body_len} body bytes received)"
        )
        hop.exitcode = 28
        ms = (steady(session.reactor) - sink.until[0] + timeout) * 1000
        hop.said = timed_out(hop, ms, conn.tls is not None and hop.tls_done is None)
        info(sink.trace, hop.said)
        hop.told = True
        hop.last = await _given_up(session, hop.last)
    except TooSlow as e:  # curl: (28) Operation too slow (-Y/-y)
        hop.error = (f"too slow: under {e.limit} bytes/s from {conn.server} for {e.time} s "
                     f"({hop.body_len} body bytes received; -Y/-y)")  # fmt: skip
        hop.exitcode, hop.said, hop.told = 28, e.said, True
        info(sink.trace, e.said)
        hop.last = await _given_up(session, hop.last)
    except HeadTooLarge as e:  # curl: (27) a line over 100 KiB, (56) over 300 KiB in all
        hop.error, hop.exitcode, hop.status = str(e), e.exitcode, e.status
    except StreamError as e:  # HTTP/2's H2Error: curl's 16 (framing), 92 (a stream reset)
        hop.error = str(e)
        hop.exitcode = getattr(e, "exitcode", 52 if "without a response" in str(e) else 56)
        if hop.exitcode == 52:  # curl's words (%{errormsg})
            hop.said = "Empty reply from server"
        elif str(e).endswith(": RESET"):
            hop.said = "Recv failure: Connection reset by peer"
        if hop.exitcode == 35:  # curl: the chain not checked yet (!X509_V_OK)
            hop.verify_result = 1
    except UploadError as e:  # curl: (26) a read error on the file sent; (65) no rewind
        hop.error = f"upload: {e}"
        hop.exitcode = 65 if "sent again" in str(e) else 26
    except UnsupportedVersion as e:  # curl: (1) `HTTP/1.2 200`: nothing written
        hop.error, hop.exitcode = str(e), e.exitcode
    except _Undecodable as e:  # curl: (61) Unrecognized content encoding type
        hop.error, hop.exitcode, hop.told, hop.said = str(e), 61, True, e.curl
        hop.truncated = e.truncated  # (a compressed stream the body ended within)
        if e.curl is not None:  # its -v line (none for a br or zstd stream)
            info(sink.trace, e.curl)
    except _NoResume as e:  # curl: (33) HTTP server doesn't seem to support byte ranges
        hop.error, hop.exitcode = str(e), 33
        hop.said = str(e).partition(" (")[0]  # curl's words alone (%{errormsg})
    except _TooLarge as e:  # curl: (63) Maximum file size exceeded
        hop.error, hop.exitcode, hop.said = str(e), 63, "Maximum file size exceeded"
    except _Failed as e:  # curl: (22) The requested URL returned error
        hop.error, hop.exitcode = str(e), 22
    except h11.ProtocolError as e:
        why = str(e)
        if why == "Receive buffer too long":  # h11's max_incomplete_event_size
            why = f"response {'trailers' if hop.status else 'headers'} over {H11_CAP} bytes"
        hop.error = f"HTTP: bad response from {conn.server}: {type(e).__name__}: {why}"
        # curl: a bad head 8 (no status line: 1, _bad_head); a bad body 56
        hop.exitcode = getattr(e, "curl_exit", None) or (8 if hop.status is None else 56)
        if cut_short(why) is not None:  # curl: (18), the status and the bytes that came kept
            hop.error, hop.exitcode = cut_short(why), 18
        elif why.startswith("illegal chunk header"):  # curl's words (%{errormsg})
            hop.said = "Illegal or missing hexadecimal sequence in chunked-encoding"
    except WriteError as e:  # curl: (23) Failed writing header / output to destination
        hop.error, hop.exitcode = str(e), 23
    except OSError as e:  # on_body could not write
        hop.error = f"writing the body: {e.strerror or e}"
        hop.exitcode = 23
    finally:
        conn.active -= 1
        if not (keep and (hop.error is None or hop.exitcode in (18, 22))):  # (HTTP/2: kept)
            conn.broken = True  # HTTP/2: no new stream; the others in flight go on
        if sink.trace is not None:
            ended(sink.trace, hop, conn)
        pool.done(hop.url, conn)
        if conn.active > 0:
            pass  # streams of other transfers are in flight: the last one decides
        elif not conn.broken:
            await pool.put(hop.url, conn)
        else:
            if conn.tls is not None:
                close_notify(conn)
                unwatch_tls(conn.tls.conn)
            await stream.close()
        if not hop.reused and conn.h2 is None:  # HTTP/1.1: a waiting transfer reuses it
            pool.known(hop.url, None)
