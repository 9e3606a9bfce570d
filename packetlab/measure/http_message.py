"""One request and its response for `packetlab.measure.http`: what was asked (`Asked`),
the request's fields in curl's order, a hop's record, the response's body decoded,
resumed or refused (-C, --max-filesize), cookies, and the result of a fetch."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import h11
from twisted.internet.defer import Deferred

from packetlab.measure.cookies import CookieJar
from packetlab.measure.curldate import getdate
from packetlab.measure.http_auth import offered
from packetlab.measure.http_decode import (
    ACCEPT_ENCODING,
    Decoder,
    Undecodable,
    content_codings,
    decoder,
    transfer_codings,
)
from packetlab.measure.http_fields import field_bytes, field_line
from packetlab.measure.http_netrc import Netrc
from packetlab.measure.http_speed import LowSpeed
from packetlab.measure.http_trace import DATA_IN, Trace, header_in, info
from packetlab.measure.http_url import REDIRECTS, Url
from packetlab.measure.stream import StreamError
from packetlab.measure.upload_body import Upload
from packetlab.measure.writeerror import WriteError
from packetlab.wire import Ntag

USER_AGENT = "pktlab-http/1"
FORM = "application/x-www-form-urlencoded"  # -d's Content-Type (curl's)
EXPECT_WAIT = 1.0  # s curl waits for a 100 Continue before it sends the body anyway
UPLOAD_WINDOW = 8  # body chunks sent and not yet ntagged at most (the rest read later)
MAX_BODY = 256 << 20
# A response's header blocks, 1xx ones included, at most (curl's MAX_HTTP_RESP_HEADER_SIZE:
# 8.3+, and Debian 12's 7.88.1 with the CVE-2023-38039 fix; over HTTP/1.x counted line by
# line in http_head, over HTTP/2 the header list's cap).
MAX_HEADERS = 300 << 10
# h11's cap of an incomplete head (or trailer block): above http_head's, which stop a
# head where curl stops (a line of 100 KiB, 300 KiB in all), so that they come first
H11_CAP = MAX_HEADERS + (100 << 10)


@dataclass(slots=True)
class HttpResult:
    """One URL's fetch, redirects followed included. With redirects the `*_us` times add
    up over the hops as curl's `time_*` do (each hop's from its own start); `total_us` runs
    from the first hop's start to the last body byte."""

    url: str
    server: str | None = None  # address:port connected to (the last hop's)
    status: int | None = None
    reason: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    body_len: int = 0
    body_sha256: str | None = None
    body: bytes | None = None  # kept only with keep_body
    connect_us: float | None = None
    tls_us: float | None = None
    first_byte_us: float | None = None
    total_us: float | None = None
    tls_version: str | None = None
    error: str | None = None
    method: str = "GET"  # of the last request
    namelookup_us: float | None = None
    pretransfer_us: float | None = None
    redirect_us: float | None = None  # the first start to the end of the last redirect
    num_redirects: int = 0
    url_effective: str | None = None  # the last URL asked for
    redirect_url: str | None = None  # a redirect not followed: where it pointed
    header_size: int = 0  # response header bytes, every hop and 1xx included (curl's)
    request_size: int = 0  # request bytes sent, every hop (headers and body)
    upload_size: int = 0  # request body bytes sent in the last request (curl's size_upload)
    connects: int = 0  # new TCP connections made (curl's num_connects: 0 when reused)
    reused: bool = False  # the last request went over a connection kept from before
    raw_headers: list[bytes] = field(default_factory=list)  # header blocks (the last 100)
    exitcode: int = 0  # curl's exit code for this outcome (0, 6, 7, 28, 35, 47, 60, ...)
    http_version: str = "1.1"  # of the last response: "1.0", "1.1" or "2"
    ssl_verify_result: int = 0  # the chain's X509_V_ERR_* (0: verified, http://, or -k)
    referer: str | None = None  # the Referer the last request sent (curl's %{referer})
    local: str | None = None  # the endpoint's address:port of the last hop (Asked.local_address)
    scheme: str | None = None  # the last connection's (curl's %{scheme}: none if none was made)
    said: str | None = None  # the error in curl's words, when known (its %{errormsg})
    num_certs: int = 0  # certificates the server sent in the transfer's last handshake
    truncated: str | None = None  # the coding whose stream the body ended within (61)

    @property
    def local_ip(self) -> str:
        return "" if self.local is None else self.local.rsplit(":", 1)[0].strip("[]")

    @property
    def local_port(self) -> int:
        return 0 if self.local is None else int(self.local.rsplit(":", 1)[1])

    @property
    def remote_ip(self) -> str:
        return "" if self.server is None else self.server.rsplit(":", 1)[0].strip("[]")

    @property
    def remote_port(self) -> int:
        return 0 if self.server is None else int(self.server.rsplit(":", 1)[1])

    @property
    def content_type(self) -> str | None:
        return next((v for k, v in self.headers if k.lower() == "content-type"), None)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "http", "url": self.url, "server": self.server}
        out.update(
            method=self.method,
            url_effective=self.url_effective or self.url,
            num_redirects=self.num_redirects,
            header_size=self.header_size,
            request_size=self.request_size,
            upload_size=self.upload_size,
            connects=self.connects,
        )
        if self.reused:
            out["reused"] = True
        if self.http_version != "1.1":
            out["http_version"] = self.http_version
        if self.redirect_url is not None:
            out["redirect_url"] = self.redirect_url
        if self.content_type is not None:
            out["content_type"] = self.content_type
        for name in ("namelookup_us", "connect_us", "pretransfer_us", "redirect_us"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.tls_us is not None:
            out.update(tls_us=self.tls_us, tls_version=self.tls_version)
        if self.error is not None:
            out.update(error=self.error, exitcode=self.exitcode)
            if self.truncated is not None:
                out["truncated"] = self.truncated
            if self.status is not None:  # a redirect that could not be followed
                out.update(status=self.status, reason=self.reason, body_len=self.body_len,
                           first_byte_us=self.first_byte_us)  # fmt: skip
            if self.total_us is not None:
                out["total_us"] = self.total_us
            return out
        out.update(
            status=self.status,
            reason=self.reason,
            body_len=self.body_len,
            body_sha256=self.body_sha256,
            first_byte_us=self.first_byte_us,
            total_us=self.total_us,
        )
        return out


@dataclass(frozen=True, slots=True)
class _Sink:
    """What a fetch does with its responses: the body limit, the final body kept or handed
    to `on_body` (decoded with `compressed`), every header block to `on_headers` (-i)."""

    max_body: int
    keep_body: bool
    on_body: Callable[[bytes], object] | None
    on_headers: Callable[[bytes], object] | None = None
    compressed: bool = False
    http: str | None = None  # "1.1" (--http1.1), "2" (--http2), "2-prior"; None: curl's default
    until: list[float] = field(default_factory=list)  # the URL's end (-m from its start)
    timed_from: list[Any] = field(default_factory=list)  # the hop whose connect began -m's
    on_hop: Callable[[Any], object] | None = None  # each request's live state (-Z's meter)
    resume: int = 0  # -C's offset: the final answer must resume there (_Response.head)
    time_cond: tuple[str, int] | None = None  # -z without a range (Asked.time_cond)
    max_filesize: int = 0  # --max-filesize (0: none)
    expect_wait: float = EXPECT_WAIT  # s for a 100 Continue (--expect100-timeout)
    trace: Trace | None = None  # curl's debug callback (-v, --trace): http_trace
    fail: bool = False  # curl -f: a final status of 400 or more ends it after its head
    cookies: Any = None  # the fetch's `_Cookies`: each response's Set-Cookie as it comes


@dataclass(frozen=True, slots=True)
class Asked:
    """What curl adds to every request of a transfer (its options, not -H): -A's
    User-Agent ("": none), -e's Referer (`auto_referer`: ;auto, each redirect hop the URL
    before it), -r's byte range (`Range: bytes=R` for a GET or HEAD, `Content-Range:
    bytes R/SIZE` for a -d POST or a -T PUT, nothing for -F, as curl 7.88's http.c);
    -C's offset (`resume_from`: `Range: bytes=N-`, and the final answer must resume
    there: `_Response.head`)."""

    user_agent: str = USER_AGENT
    referer: str | None = None
    auto_referer: bool = False
    byte_range: str | None = None
    resume_from: int = 0  # -C: Range: bytes=N- (a GET or HEAD), the answer checked
    max_filesize: int = 0  # --max-filesize: a larger Content-Length is curl's 63 (0: none)
    # --resolve: (host, port, address) a hop to that host and port connects to, no DNS
    # (host "*": any); `connect_to` wins over it
    resolve: tuple[tuple[str, int, str], ...] = ()
    # --connect-to: (HOST1, PORT1, HOST2, PORT2) a hop to HOST1 and PORT1 connects to HOST2
    # and PORT2 instead (HOST1 "" or PORT1 None: any; HOST2 "" or PORT2 None: the URL's),
    # the first that matches and names a host or a port; HOST2's address is then looked up
    # as the URL's host would be (--resolve, else the endpoint's DNS). Host and TLS: the URL's
    connect: tuple[tuple[str, int | None, str, int | None], ...] = ()
    limit_rate: int = 0  # --limit-rate: bytes/s each way, averaged over a hop (0: none)
    trusted: bool = False  # --location-trusted: -u, -H Authorization and Cookie to any host
    expect_wait: float = EXPECT_WAIT  # --expect100-timeout: s to wait for a 100 Continue
    # --cert FILE, --key KEY (PEM), the key's passphrase (--cert's :PASSWORD, --pass)
    client_cert: tuple[str, str | None, bytes | None] | None = None
    # -z: (If-Modified-Since, If-Unmodified-Since or Last-Modified, the time in s); a 2xx
    # whose Last-Modified fails it is curl's simulated 304 (_Response.head)
    time_cond: tuple[str, int] | None = None
    path_as_is: bool = False  # --path-as-is: the URL's /../ and /./ sent as written
    bearer: str | None = None  # --oauth2-bearer: `Authorization: Bearer TOKEN`, over -u's
    # --oauth2-bearer with --basic/--digest/--anyauth: curl wants two schemes and sends no
    # Authorization until a 401 names one (Bearer first; http_auth's "+bearer" schemes)
    bearer_waits: bool = False
    request_target: str | None = None  # --request-target: every request line's target
    # -u's scheme (http_auth.SCHEMES): "basic" sent at once; "digest", "anyauth" answer a
    # 401's challenge with one more request (curl --digest, --anyauth)
    auth_scheme: str = "basic"
    tr_encoding: bool = False  # --tr-encoding: ask for a gzip Transfer-Encoding (HTTP/1.x)
    # -w's %{local_ip}, %{local_port}: each new connection's own address read from the
    # endpoint's socket block (LADDR, LPORT; the ESTABLISHED nstat has the peer's only)
    local_address: bool = False
    # --netrc, --netrc-file, --netrc-optional (http_netrc.Netrc): without -u, each hop's
    # credentials from the file for its host (--location-trusted: the first URL's host)
    netrc: Netrc | None = None
    # --proto, --proto-redir: the schemes a URL (and a redirect's) may have (None: any);
    # another is curl's (1) before anything is sent
    protocols: frozenset[str] | None = None
    redir_protocols: frozenset[str] | None = None
    # -Y/-y: (LIMIT bytes/s, TIME s): a hop under LIMIT for TIME s is curl's (28)
    speed_limit: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class _Fields:
    """A request's header fields but Host and the body's, in curl 7.88's order: its own
    (Authorization, Range, User-Agent, Accept, Accept-Encoding, Referer), then a chunked
    body's Transfer-Encoding, the Cookie, the -H ones (`custom`; the body's after them)."""

    own: list[tuple[str, str]]
    cookie: list[tuple[str, str]]
    custom: list[tuple[str, str]]
    target: str | None = None  # --request-target's, instead of the URL's path and query
    auth_user: str = ""  # -u's (or the URL's) user: curl's -v line for a Bearer names it
    auth_scheme: str = ""  # "Digest": --digest's first request (no field; curl's -v line)
    tr_encoding: bool = False  # --tr-encoding: HTTP/1.x's `Connection: TE`, `TE: gzip`


_Undecodable = Undecodable  # (http.py's name: curl's 61)


@dataclass(frozen=True, slots=True)
class _Cookies:
    """A fetch's cookies: the engine's (`jar`), then the -b string unless a -H Cookie
    is given (curl 7.88 then sends the engine's in their own header, and the -H one)."""

    jar: CookieJar | None
    string: str | None
    custom: bool  # a -H Cookie

    def headers(self, u: Url) -> list[tuple[str, str]]:
        found = None if self.jar is None else self.jar.header(u.scheme, u.host, u.target)
        value = "; ".join(v for v in (found, None if self.custom else self.string) if v)
        return [("Cookie", value)] if value else []

    def receive(self, u: Url, headers: list[tuple[str, str]]) -> list[str | None]:
        """The response's Set-Cookie headers into the engine; curl's -v line for each."""
        if self.jar is None:
            return []
        return self.jar.receive(u.scheme, u.host, u.target, headers)


@dataclass(slots=True)
class _Hop:
    """One request/response of a fetch: endpoint stamps (ns) and what came back."""

    url: Url
    method: str  # the request line's (-X's, else the kind's)
    nobody: bool = False  # curl's opt_no_body (-I): the response has no body, any method
    start: int | None = None  # TIME before the resolve (or the nopen)
    resolved: int | None = None  # TIME just before the nopen
    connected: int | None = None
    tls_done: int | None = None
    sent: int | None = None  # the request's ntag
    first: int | None = None
    last: int | None = None
    server: str | None = None
    local: str | None = None  # the endpoint's address:port (Asked.local_address)
    status: int | None = None
    reason: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    raw_headers: bytes = b""
    body_len: int = 0
    body_sha256: str | None = None
    body: bytes | None = None
    tls_version: str | None = None
    request_size: int = 0
    error: str | None = None
    exitcode: int = 0
    reused: bool = False  # over a connection kept from an earlier request
    version: str = "1.1"  # of the response: "1.1" or "2"
    uploaded: int = 0  # request body bytes sent (curl's size_upload)
    queued: int | None = None  # TIME before it waited for a first connection (pipewait)
    told: bool = False  # its error told to the trace in curl's words already
    said: str | None = None  # its error in curl 7.88.1's words, when known (%{errormsg})
    num_certs: int = 0  # certificates the server sent in its TLS handshake (none: reused)
    verify_result: int = 0  # OpenSSL's X509_V_ERR_* when the chain failed (curl's)
    referer: str | None = None  # the Referer it sent
    auth_retry: str | None = None  # --digest/--anyauth: a 401 with a challenge is answered
    slow: LowSpeed | None = None  # -Y/-y: its speed check (each transfer's, as curl's)
    truncated: str | None = None  # the coding whose stream the body ended within

    def location(self) -> str | None:
        if self.status not in REDIRECTS:
            return None
        loc = next((v for k, v in self.headers if k.lower() == "location"), "").strip()
        return loc or None


EMPTY_FIELD = "\0"  # a -H 'NAME;' field: NAME sent with no value (-H 'NAME:' removes it)


def _own(asked: Asked, basic: str | None, compressed: bool, referer: str | None, kind: str,
         body: Upload | None) -> list[tuple[str, str]]:  # fmt: skip
    """curl 7.88's own fields of a request, in its order (http.c's request line format):
    Authorization (-u), Range or Content-Range (-r), User-Agent, Accept, Accept-Encoding
    (--compressed), Referer."""
    out = [] if basic is None else [("Authorization", basic)]
    r = asked.byte_range
    if asked.resume_from and (body is None or kind in ("GET", "HEAD")):
        r = f"{asked.resume_from}-"  # curl -C N (over -r's, as curl)
    if r is not None and (body is None or kind in ("GET", "HEAD")):
        out.append(("Range", f"bytes={r}"))
    elif r is None and body is not None and body.resumed is not None:  # -C with -T
        start, total = body.resumed
        out.append(("Content-Range", f"bytes {start}-{total - 1}/{total}"))
    elif r is not None and body is not None and (body.inline or body.method == "PUT"):
        size = -1 if body.length is None else body.length  # curl's infilesize
        out.append(("Content-Range", f"bytes {r}/{size}"))  # (a -F form: none, as curl)
    if asked.user_agent:
        out.append(("User-Agent", asked.user_agent))
    out.append(("Accept", "*/*"))
    if compressed:
        out.append(("Accept-Encoding", ACCEPT_ENCODING))
    if referer:
        out.append(("Referer", referer))
    return out


_BEFORE_TE = {"authorization", "range", "content-range", "user-agent", "accept"}  # curl's


def _request_headers(
    u: Url, data: Upload | None, fields: _Fields, expect: bool = False, te: bool = False
) -> list[tuple[str, str]]:
    """The request's header fields as curl 7.88 sends them (either framing), in its
    order: Host, its own (`_own`), Transfer-Encoding: chunked for a body of unknown
    length, Cookie, the -H fields (one without a value is not sent: `-H 'NAME:'`
    removes curl's own NAME; `-H 'NAME;'`, EMPTY_FIELD, is sent empty), then a body's
    Content-Length, Content-Type and, over
    HTTP/1.1 when curl asks it, `Expect: 100-continue`. `te` (--tr-encoding, HTTP/1.x
    alone): curl's `Connection: TE` (a -H Connection's value before it, that field not
    sent) and `TE: gzip` after Accept, unless a -H TE is given."""
    names = {k.lower() for k, _ in fields.custom}
    req = [] if "host" in names else [("Host", u.authority)]
    te = te and "te" not in names
    if te:
        given = next((v for k, v in fields.custom if k.lower() == "connection"), "")
        given = "" if given == EMPTY_FIELD else given.strip()
        at = sum(k.lower() in _BEFORE_TE for k, _ in fields.own)
        req += [*fields.own[:at], ("Connection", f"{given}, TE" if given else "TE"),
                ("TE", "gzip"), *fields.own[at:]]  # fmt: skip
    else:
        req += fields.own
    if data is not None and data.length is None:
        req.append(("Transfer-Encoding", "chunked"))
    req += fields.cookie
    req += [(k, "" if v == EMPTY_FIELD else v) for k, v in fields.custom
            if v and not (te and k.lower() == "connection")]  # fmt: skip
    if data is not None:
        if data.length is not None:
            req.append(("Content-Length", str(data.length)))
        if data.content_type is not None and "content-type" not in names:
            req.append(("Content-Type", data.content_type))
        if expect:
            req.append(("Expect", "100-continue"))
    return req


_PRINTABLE = "".join(map(chr, range(0x21, 0x7F)))  # a target's bytes h11 takes as they are


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")  # (a URL's bytes as given in argv)


def wire_target(target: str) -> str:
    """The request line's target as curl 7.88 sends it: the path's bytes above 127
    percent-encoded (lower-case hex), the query's as they are."""
    path, mark, query = target.partition("?")
    if path.isascii():
        return target
    enc = "".join(c if c.isascii() else "".join(f"%{b:02x}" for b in _raw(c)) for c in path)
    return enc + mark + query


_NO_HOST = ("Host", "no-host.invalid")  # the Host h11 is given for a request without one


def _expects(data: Upload | None, fields: _Fields) -> bool:
    """curl 7.88 over HTTP/1.1: `Expect: 100-continue` for a PUT's body, a POST's over
    1 MiB or of unknown length, unless a -H Expect is given (`-H Expect:` removes it)."""
    given = any(k.lower() == "expect" for k, _ in fields.custom)
    return data is not None and data.expects() and not given


def _request(
    u: Url, method: str, data: Upload | None, fields: _Fields, expect: bool = False,
    version: str | None = None, nobody: bool = False,
) -> tuple[h11.Connection, bytes, bool]:  # fmt: skip
    """h11's connection, the request's head (with the body when curl sends it in the
    same write: -d below 64 KiB, no Expect), and whether the body went with it.
    `version` "1.0" (curl -0): the request line says HTTP/1.0 (h11 writes 1.1 only).
    Whether the response has a body is curl's -I (`nobody`), not the method's: h11 is
    told HEAD for -I (`-I -X GET`), GET for `-X HEAD`, and the line says `method`."""
    h = h11.Connection(h11.CLIENT, max_incomplete_event_size=H11_CAP)
    headers = _request_headers(u, data, fields, expect, fields.tr_encoding)
    wire = wire_target(u.target) if fields.target is None else fields.target
    target = wire if wire.isascii() else quote(_raw(wire), safe=_PRINTABLE)  # (h11: ASCII)
    # a -H Host takes the Host's place, first, as curl's (and h11, which moves it there)
    headers = sorted(headers, key=lambda f: f[0].lower() != "host")
    hostless = not any(k.lower() == "host" for k, _ in headers)
    if hostless:  # -H 'Host:': none, as curl's; h11 wants one (taken out of its bytes)
        headers = [(_NO_HOST[0], _NO_HOST[1]), *headers]
    sent = [(field_bytes(k), field_bytes(v)) for k, v in headers]  # (h11 takes str as ASCII)
    # h11 refuses a value with blanks at its ends, which curl sends as given (-A 'ua  '),
    # and writes `NAME: VALUE` where curl sends a -H line as typed (`X:v`): h11 writes
    # the trimmed fields, each line is then put back as curl's
    trimmed = [(k, v.strip(b" \t")) for k, v in sent]
    told = "HEAD" if nobody else "GET" if method == "HEAD" else method  # (h11's framing)
    out = h.send(h11.Request(method=told, target=target, headers=trimmed))
    if told != method:
        out = method.encode() + out.removeprefix(told.encode())
    head, sep, rest = out.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    wanted = [field_line(k, v) for k, v in headers]
    if len(lines) == len(sent) + 1 and lines[1:] != wanted:  # the request line, each field
        out = b"\r\n".join([lines[0], *wanted]) + sep + rest
    if target != wire:  # the query's bytes above 127 as they are, as curl's
        line, sep, rest = out.partition(b"\r\n")
        out = line.replace(b" %s " % target.encode(), b" %s " % _raw(wire), 1) + sep + rest
    if version == "1.0":
        if data is not None and data.length is None:  # curl: (25)
            raise h11.LocalProtocolError("Chunky upload is not supported by HTTP 1.0")
        line, sep, rest = out.partition(b"\r\n")
        out = line.removesuffix(b" HTTP/1.1") + b" HTTP/1.0" + sep + rest
    if hostless:
        out = out.replace(b"\r\n%s: %s\r\n" % tuple(x.encode() for x in _NO_HOST), b"\r\n", 1)
    if any(not v for _, v in sent):  # -H 'NAME;': curl's `NAME:`, h11 writes `NAME: `
        head, sep, rest = out.partition(b"\r\n\r\n")
        out = b"\r\n".join(x[:-1] if x.endswith(b": ") else x for x in head.split(b"\r\n"))
        out += sep + rest
    small = None if data is None or expect else data.small()
    if data is not None and small is None:
        return h, out, False
    if small:
        out += h.send(h11.Data(data=small))
    out += h.send(h11.EndOfMessage())
    return h, out, True


def _body_read(headers: list[tuple[str, str]]) -> bool:
    """Whether curl -L reads (and tells it ignores) a redirect's body: not one of
    Content-Length 0, nor one whose connection closes (it stops after the head)."""
    for k, v in headers:
        name = k.lower()
        if name == "content-length" and v.strip() == "0":
            return False
        if name == "connection" and "close" in (t.strip().lower() for t in v.split(",")):
            return False
    return True


class _Response:
    """A response as it comes, in either framing: its header block handed to -i's
    `on_headers`, its body counted, hashed, capped, decoded (--compressed), kept or
    handed to `on_body` when it is the result's (not a redirect followed)."""

    def __init__(self, hop: _Hop, sink: _Sink, follows: bool) -> None:
        self.hop, self.sink, self.follows = hop, sink, follows
        self.digest = hashlib.sha256()
        self.body: list[bytes] = []
        self.keep = True
        self.ignore: str | None = None  # -C: "ignore" the body (a 416), "done" (_resumed)
        self.decoder: Decoder | None = None
        self.told = 0  # header bytes told to the trace already (1xx blocks)
        self.failed: str | None = None  # -f over HTTP/2: the error, at the stream's end
        self.untold = False  # a redirect's body curl would not read: no DATA_IN for it
        self.wired = False  # body bytes came (curl's bodywrite)

    def inform(self, block: bytes) -> None:
        """1xx header blocks came (all of them so far: `block`): the new lines to the
        trace as curl tells them, without the blank line that ends each."""
        if self.sink.trace is not None and len(block) > self.told:
            new = block[self.told :]
            self.told = len(block)
            header_in(self.sink.trace, new[:-2] if new.endswith(b"\r\n\r\n") else new)

    def head(self, status: int, reason: str, headers: list[tuple[str, str]], raw: bytes) -> None:
        hop = self.hop
        hop.status, hop.reason, hop.headers, hop.raw_headers = status, reason, headers, raw
        # curl's cookie engine takes a Set-Cookie as it parses it (its -v line before it)
        notes = [] if self.sink.cookies is None else self.sink.cookies.receive(hop.url, headers)
        retried = status == 401 and hop.auth_retry is not None and offered(headers, hop.auth_retry)
        self.keep = not ((self.follows and hop.location() is not None) or retried)
        if self.keep and self.sink.resume and not hop.nobody:
            self.ignore = _resumed(self.sink.resume, status, headers, hop.server)
        if self.keep and not self._meets(status, headers):  # curl: "Simulate an HTTP 304"
            self.ignore, hop.status = "done", 304
        large = self._too_large(headers)
        if large is not None and raw.endswith(b"\r\n\r\n"):  # curl: before the blank line
            raw = hop.raw_headers = raw[:-2]
        trace = self.sink.trace
        failed = self.keep and self.sink.fail and status >= 400
        if trace is not None:  # curl: a body sent, a redirect to follow: "rewind"
            sent = hop.uploaded > 0 and hop.method not in ("GET", "HEAD")
            told = raw[self.told :]
            if failed and told.endswith(b"\r\n\r\n"):  # curl -f: before the blank line
                told = told[:-2]
            header_in(trace, told, rewind=sent and not self.keep, cookies=notes)
            if failed:
                info(trace, f"The requested URL returned error: {status}")
            elif not self.keep and _body_read(headers):
                info(trace, "Ignoring the response-body")
            elif not self.keep:  # curl stops reading: the body is not told either
                self.untold = True
        if self.sink.on_headers is not None:
            try:
                self.sink.on_headers(raw)
            except WriteError as e:  # curl's size_header: the lines before the refused one
                if e.header_bytes is not None:
                    hop.raw_headers = raw[: e.header_bytes]
                raise
        if large is not None:
            raise large
        if failed:  # curl -f: no body read, the connection closed (HTTP/2: the stream's
            text = f"the server answered {f'{status} {reason}'.strip()} (--fail)"
            if hop.version != "2":
                raise _Failed(text)
            self.ignore, self.failed = "fail", text  # body read, not kept: connection kept

    def _meets(self, status: int, headers: list[tuple[str, str]]) -> bool:
        """-z: curl 7.88's Curl_meets_timecondition on a 2xx's Last-Modified read as
        curl_getdate reads it (none: met; one it cannot read: -1, as curl's): "not new
        enough" (at or before the time; also for -z =TIME) or, for -z -TIME, "not old
        enough" (at or after it)."""
        cond = self.sink.time_cond
        if cond is None or not 200 <= status < 300:
            return True
        value = next((v for k, v in headers if k.lower() == "last-modified"), None)
        if value is None:
            return True
        doc = getdate(value)
        if doc is None:  # curl's -1: older than any time asked for
            doc = -1
        if not doc or not cond[1]:
            return True
        return doc < cond[1] if cond[0] == "If-Unmodified-Since" else doc > cond[1]

    def _too_large(self, headers: list[tuple[str, str]]) -> _TooLarge | None:
        """--max-filesize: a final answer's Content-Length over it (curl 7.88's 63,
        checked at the end of its header block, before that block's last line end; a
        HEAD's too, whose body never comes: measured, session 29)."""
        limit, hop = self.sink.max_filesize, self.hop
        if not (self.keep and limit):
            return None
        length = next((v.strip() for k, v in headers if k.lower() == "content-length"), "")
        if not (length.isdigit() and int(length) > limit):
            return None
        return _TooLarge(f"Maximum file size exceeded ({length} bytes from {hop.server}; "
                         f"at most {limit})")  # fmt: skip

    def wire(self, data: bytes) -> None:
        """Body bytes as they came (chunked: with the framing), for curl's DATA_IN."""
        if data and self.sink.trace is not None and self.failed is None and not self.untold:
            self.sink.trace(DATA_IN, data)
        self.wired = self.wired or bool(data)

    def closed(self) -> None:
        """The server closed after the head: curl 7.88 traces its EOF read when no body
        byte came before it (transfer.c's is_empty_data: `{ [0 bytes data]`)."""
        trace = self.sink.trace
        if trace is not None and not self.wired and self.failed is None and not self.untold:
            trace(DATA_IN, b"")
        self.wired = True

    def data(self, data: bytes) -> None:
        hop, sink = self.hop, self.sink
        if self.keep and not hop.body_len and not self.failed:  # (not HEAD)
            # curl 7.88: a Transfer-Encoding's codings always, Content-Encoding's with
            # --compressed; the transfer ones undone first
            codings = content_codings(hop.headers) if sink.compressed else []
            transfer = transfer_codings(hop.raw_headers)
            try:
                self.decoder = decoder([*codings, *transfer], sink.max_body, hop.server,
                                       len(transfer))  # fmt: skip
            except Undecodable as e:  # curl: (61), the bytes read counted in size_download
                hop.body_len += 0 if e.at_head else len(data)  # (over 5: refused at the head)
                raise
        if self.ignore == "done":  # curl: not read ("already downloaded")
            return
        hop.body_len += len(data)
        if hop.body_len > sink.max_body:
            raise _TooMuch(f"body from {hop.server} larger than {sink.max_body} bytes")
        self.digest.update(data)
        self._out(data if self.decoder is None else self._decode(data, False))

    def _decode(self, data: bytes, final: bool) -> bytes:
        """The decoder's output; on a fault, what it decoded before it is written (as
        curl writes it) and the body so far kept before the fault is raised."""
        assert self.decoder is not None
        try:
            return self.decoder.feed(data, final)
        except Undecodable as e:
            self._out(e.out)
            self._settle()
            raise

    def _out(self, out: bytes) -> None:
        if self.keep and self.sink.keep_body:
            self.body.append(out)
        if self.keep and self.sink.on_body is not None and out and not self.ignore:
            self.sink.on_body(out)

    def end(self) -> None:
        if self.failed is not None:  # (-f over HTTP/2: curl reads none of it)
            self.hop.error, self.hop.exitcode, self.hop.body_len = self.failed, 22, 0
            return
        if self.decoder is not None:
            self._out(self._decode(b"", True))
        self._settle()

    def _settle(self) -> None:
        self.hop.body_sha256 = self.digest.hexdigest()
        self.hop.body = b"".join(self.body) if self.sink.keep_body and self.keep else None


class _NoResume(Exception):
    """-C: the server answered the whole document, not from the offset (curl's 33)."""


class _TooLarge(Exception):
    """A Content-Length over --max-filesize (curl's 63)."""


class _Failed(Exception):
    """curl -f: a final status of 400 or more (curl's 22)."""


def _resumed(offset: int, status: int, headers: list[tuple[str, str]],
             server: str | None) -> str | None:  # fmt: skip
    """curl 7.88's check of a -C answer (http.c), as curl 7.88.1 was seen to do: None,
    its body written; "ignore" (a 416: read, not written, no error); "done" (no
    Content-Range from `offset` but a body of exactly `offset` bytes: "The entire
    document is already downloaded", not read, size_download 0). Raises _NoResume
    (curl's 33) when the answer does not start at `offset`. A Content-Range's first
    number (after what is not a digit) must be `offset`; one with `*` before any digit
    turns the check off (curl: "get everything")."""
    if status == 416:
        return "ignore"
    value = next((v for k, v in headers if k.lower() == "content-range"), None)
    if value is not None:
        m = re.search(r"\d+|\*", value)
        if m is None or m.group() == "*" or int(m.group()) == offset:
            return None
    length = next((v.strip() for k, v in headers if k.lower() == "content-length"), "")
    if length.isdigit() and int(length) == offset:
        return "done"
    raise _NoResume(f"HTTP server doesn't seem to support byte ranges. Cannot resume. "
                    f"({server}: no Content-Range from byte {offset})")  # fmt: skip


class _TooMuch(StreamError):
    """The server sent more than a limit allows (curl's 56, as its "Too large")."""


def _stamp_sent(hop: _Hop, sent: Deferred[Ntag] | None) -> None:
    if sent is not None:

        def stamp(tag: Ntag) -> None:
            hop.sent = tag.time

        sent.addCallbacks(stamp, lambda _: None)
