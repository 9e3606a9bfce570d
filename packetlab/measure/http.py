"""HTTP and HTTPS requests from the endpoint, TLS at the controller, as curl makes them.

The endpoint only opens a TCP connection and moves bytes; TLS runs here, in a pyOpenSSL
connection over memory BIOs: what OpenSSL wants to send goes out with nsend, what the
endpoint received (ndata) is written into OpenSSL. So the certificate is verified at the
controller (on by default, against the system store like curl, or `cafile`), with SNI and
the host name checked by service_identity. HTTP/1.1 framing (Content-Length, chunked,
close-delimited, 204/304, HEAD) is h11's: a small sans-IO parser that is strict where
hand-written ones are not. GET, POST (`data`), HEAD or any method; redirects followed as
curl -L does (`follow`, `next_method` for the method). Connections are kept open as
curl keeps them (HTTP/1.1 persistent connections, `Connections`): the next request to
the same scheme, host and port, a redirect hop or the next URL of a run, goes over the
same TCP (and TLS) connection unless the server said `Connection: close`; one that died
while idle is replaced by a new connect, as curl's "Connection died, retrying".

Timings are endpoint stamps, from the TIME read just before the name lookup (or the
nopen, for an address), like curl's `time_*`, all from the start: `namelookup_us` the
TIME read before the nopen, `connect_us` the ESTABLISHED nstat, `tls_us` the ndata that
completed the handshake, `pretransfer_us` the request's ntag, `first_byte_us` the ndata
carrying the first response byte, `total_us` the ndata carrying the last body byte. Over
redirects they add up per hop as curl's do. Over a reused connection a hop starts at a
TIME read before its request: no lookup, connect or handshake time (0, as curl's).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import re
import ssl
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from email.utils import formatdate, parsedate_to_datetime
from importlib import import_module
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urljoin, urlsplit

import h11
from OpenSSL import SSL
from twisted.internet.defer import Deferred

from packetlab.controller import (
    AddressLike,
    ControllerError,
    EndpointSession,
    RequestFailed,
    deferred_api,
    parse_address,
    read_time,
)
from packetlab.measure.cookies import CookieJar
from packetlab.measure.pcap import PcapRecorder
from packetlab.measure.stream import (
    Chunk,
    StreamError,
    StreamTimeout,
    TcpStream,
    connect_failure,
)
from packetlab.measure.upload import CHUNK, Upload, UploadError
from packetlab.measure.writeerror import WriteError  # (re-exported: its home before)
from packetlab.wire import Ndata, Ntag

if TYPE_CHECKING:  # HTTP/2 (h2, hpack) is loaded when a connection speaks it
    from packetlab.measure.http2 import H2Framing

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

USER_AGENT = "pktlab-http/1"
FORM = "application/x-www-form-urlencoded"  # -d's Content-Type (curl's)
EXPECT_WAIT = 1.0  # s curl waits for a 100 Continue before it sends the body anyway
UPLOAD_WINDOW = 8  # body chunks sent and not yet ntagged at most (the rest read later)
MAX_BODY = 256 << 20
# A response's header blocks, 1xx ones included, at most (curl 8.3+'s
# MAX_HTTP_RESP_HEADER_SIZE; 7.88 had no total, so 1xx responses sent for ever grew it):
# the one limit of header lines, header count and informational responses a server controls.
MAX_HEADERS = 300 << 10
CA_FILES = (  # where curl and Python find the system store on common distributions
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
)


class HttpError(ControllerError):
    """The URL cannot be fetched as given (bad URL). A host name that does not resolve is
    the result's `error`, as a refused connect: the other URLs of a run still go."""


@dataclass(frozen=True, slots=True)
class Url:
    scheme: str
    host: str
    port: int
    target: str  # path and query
    fragment: str = ""  # never sent; curl's url_effective keeps it

    @property
    def effective(self) -> str:
        """curl's %{url_effective}: the URL as fetched and its #fragment."""
        return self.text + (f"#{self.fragment}" if self.fragment else "")

    @property
    def text(self) -> str:
        """The URL as fetched (curl's url_effective): scheme, authority, target."""
        return f"{self.scheme}://{self.authority}{self.target}"

    @property
    def host_is_address(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def remove_dot_segments(path: str) -> str:
    """RFC 3986's remove_dot_segments, as curl's URL parser does to a URL's path
    (`/a/b/../c/./d` is fetched as `/a/c/d`, and is -O's `d`)."""
    out: list[str] = []
    segments = path.split("/")
    for n, seg in enumerate(segments):
        last = n == len(segments) - 1
        if seg == ".":
            if last:
                out.append("")
        elif seg == "..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(seg)
    return "/".join(out)


def parse_url(url: str) -> Url:
    """An http:// or https:// URL; without a scheme, http:// as curl assumes."""
    parts = urlsplit(url if "://" in url else "http://" + url)
    if parts.scheme not in ("http", "https"):
        raise HttpError(f"{url!r}: only http:// and https:// URLs")
    if not parts.hostname:
        raise HttpError(f"{url!r}: no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise HttpError(f"{url!r}: bad port") from None
    target = remove_dot_segments(parts.path) or "/"
    if parts.query:
        target += "?" + parts.query
    return Url(parts.scheme, parts.hostname, port, target, parts.fragment)


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
    http_version: str = "1.1"  # of the last response: "1.1" or "2" (curl's http_version)

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


def client_context(
    *,
    cafile: str | None = None,
    insecure: bool = False,
    alpn: list[bytes] | None = None,
    cert: tuple[str, str | None] | None = None,
) -> SSL.Context:
    """TLS 1.2+ client context: peer verification against `cafile` or the system store,
    none with `insecure`; `alpn` the protocols offered (curl's: h2, http/1.1); `cert`
    (curl --cert FILE, --key KEY: PEM; the key in FILE without one) the client's
    certificate chain and key (SSL.Error when they cannot be used)."""
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    if alpn:
        ctx.set_alpn_protos(alpn)
    if cert is not None:
        ctx.use_certificate_chain_file(cert[0])
        ctx.use_privatekey_file(cert[1] or cert[0])
        ctx.check_privatekey()
    if insecure:
        ctx.set_verify(SSL.VERIFY_NONE)
        return ctx
    trusted = cafile
    if cafile is not None:
        ctx.load_verify_locations(cafile)
    else:
        system = [ssl.get_default_verify_paths().cafile, *CA_FILES]
        found = next((p for p in system if p and os.path.isfile(p)), None)
        if found is not None:
            ctx.load_verify_locations(found)
        else:
            ctx.set_default_verify_paths()
        trusted = f"the system store ({found or 'OpenSSL default paths'})"

    def verify(conn: SSL.Connection, cert: Any, errno: int, depth: int, ok: int) -> bool:
        if not ok and conn.get_app_data() is None:  # the first failure says the most
            subject = cert.to_cryptography().subject.rfc4514_string() or "no subject"
            reason = VERIFY_ERRORS.get(errno, f"X509 verify error {errno}")
            where = "the server's certificate" if depth == 0 else f"chain certificate {depth}"
            conn.set_app_data(f"{reason} ({where}, {subject}; trusted: {trusted})")
        return bool(ok)

    ctx.set_verify(SSL.VERIFY_PEER, verify)
    return ctx


# OpenSSL's X509_V_ERR_* texts (x509_txt.c) for the failures a measurement meets
VERIFY_ERRORS = {
    2: "unable to get issuer certificate",
    9: "certificate is not yet valid",
    10: "certificate has expired",
    18: "self-signed certificate",
    19: "self-signed certificate in certificate chain",
    20: "unable to get local issuer certificate",
    21: "unable to verify the first certificate",
    23: "certificate revoked",
    24: "invalid CA certificate",
    26: "unsuitable certificate purpose",
}


def _tls_error(e: SSL.Error) -> str:
    reasons = [str(a[2]) for a in (e.args[0] if e.args and isinstance(e.args[0], list) else [])]
    return "TLS: " + ("; ".join(reasons) if reasons else str(e) or type(e).__name__)


def _send(conn: _Conn, data: bytes, ntag: bool = False) -> Deferred[Ntag] | None:
    """`data` over the connection (encrypted on TLS); with `ntag`, the last nsend's."""
    if conn.tls is None:
        return conn.stream.send(data, ntag=ntag)
    if ntag:
        return conn.tls.send(data)
    conn.tls.conn.sendall(data)
    conn.tls.flush()
    return None


class _Tls:
    """A client TLS connection over memory BIOs, fed with the endpoint's chunks."""

    def __init__(self, ctx: SSL.Context, url: Url, stream: TcpStream) -> None:
        self.conn = SSL.Connection(ctx, None)
        if not url.host_is_address:
            self.conn.set_tlsext_host_name(url.host.encode("idna"))
        self.conn.set_connect_state()
        self.stream = stream
        self.url = url

    def flush(self, ntag: bool = False) -> Deferred[Ntag] | None:
        """Send what OpenSSL has to send; with `ntag`, the Deferred of the last nsend's
        ntag (None when there was nothing to send)."""
        sent = None
        while True:
            try:
                out = self.conn.bio_read(1 << 16)
            except SSL.WantReadError:
                return sent
            if not out:
                return sent
            sent = self.stream.send(out, ntag=ntag)

    async def handshake(self, deadline: float) -> int:
        """Run the handshake; the endpoint time of the chunk that completed it."""
        clock = self.stream.session.reactor
        when = self.stream.established_at
        while True:
            try:
                self.conn.do_handshake()
                break
            except SSL.WantReadError:
                pass
            except SSL.Error:
                why = self.conn.get_app_data()
                if why is None:
                    raise
                raise _CertificateMismatch(f"TLS: certificate verify failed: {why}") from None
            self.flush()
            chunk = await self.stream.recv(max(deadline - clock.seconds(), 0.0))
            if chunk is None:
                raise StreamError("the server closed the connection during the TLS handshake")
            self.conn.bio_write(chunk.data)
            when = chunk.time
        self.flush()  # the client Finished
        self._check_name()
        return when

    def _check_name(self) -> None:
        if self.conn.get_context().get_verify_mode() == SSL.VERIFY_NONE:
            return
        from service_identity import VerificationError
        from service_identity.pyopenssl import verify_hostname, verify_ip_address

        try:
            if self.url.host_is_address:
                verify_ip_address(self.conn, self.url.host)
            else:
                verify_hostname(self.conn, self.url.host)
        except VerificationError:
            raise _CertificateMismatch(
                f"TLS: the certificate is not valid for {self.url.host}"
            ) from None

    def send(self, data: bytes) -> Deferred[Ntag] | None:
        """Encrypt and send `data`; the Deferred of its (last) nsend's ntag."""
        self.conn.sendall(data)
        return self.flush(ntag=True)

    def feed(self, chunk: Chunk | None) -> tuple[bytes, bool]:
        """Decrypt what `chunk` brought: (plaintext, closed). None = the TCP EOF."""
        if chunk is None:
            self.conn.bio_shutdown()
        else:
            self.conn.bio_write(chunk.data)
        out = bytearray()
        while True:
            try:
                out += self.conn.recv(1 << 16)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:  # close_notify
                return bytes(out), True
            except SSL.SysCallError:  # TCP EOF without close_notify
                return bytes(out), True
        self.flush()  # post-handshake messages (key updates) may want answers
        return bytes(out), chunk is None


class _CertificateMismatch(Exception):
    pass


class _TooMuch(StreamError):
    """The server sent more than a limit allows (curl's 56, as its "Too large")."""


@dataclass(slots=True)
class _Conn:
    """An open connection between requests: the stream, its TLS, where it goes."""

    stream: TcpStream
    tls: _Tls | None
    server: str
    tls_version: str | None
    stirred: bool = False  # something came while idle: dead, or unasked for (not reused)
    unwatch: Callable[[], None] | None = None
    h2: H2Framing | None = None  # HTTP/2 (ALPN h2, h2c): its state between requests
    # HTTP/2 with several streams at once (--parallel): how many exchanges use it, one of
    # them reads for all (`reading`), the others wait to be woken (`waiters`); `failed`
    # the connection's end that every stream gets, `broken`: no new stream goes on it
    active: int = 0
    reading: bool = False
    waiters: list[Deferred[None]] = field(default_factory=list)
    failed: Exception | None = None
    h2_pumping: bool = False  # an _h2_upload runs (`h2_again`: something more to frame)
    h2_again: bool = False
    closed: bool = False
    broken: bool = False

    def wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for d in waiters:
            if not d.called:
                d.callback(None)

    def idle(self) -> None:
        """Watch the connection while it waits in the pool: what comes (bytes nobody asked
        for, the peer's close) marks it not reusable and is dropped, not queued. A
        server flooding an idle connection would fill the socket's queue, which pauses
        the session's reads: every other URL of the run would hang."""
        sock = self.stream.sock

        def stirred(note: object) -> None:
            if self.h2 is not None and not self.stirred and self._h2_idle(note):
                return
            self.stirred = True
            sock.buffering = False

        if self.h2 is not None:  # HTTP/2 frames while idle (SETTINGS, PING) are answered
            sock.buffering = False
        self.unwatch = sock.add_callback(stirred)

    def _h2_idle(self, note: object) -> bool:
        """An HTTP/2 connection's frames while idle: taken in (ACKs sent) when they are
        control frames within the limits; False when the connection cannot be reused."""
        assert self.h2 is not None
        if not isinstance(note, Ndata):
            return False
        if self.tls is None:
            plain, closed = note.data, False
        else:
            try:
                plain, closed = self.tls.feed(Chunk(note.data, note.time))
            except SSL.Error:
                return False
        try:
            if closed or self.h2.receive(plain):
                return False
        except StreamError:  # the framing's H2Error
            return False
        out = self.h2.data_to_send()
        if out:
            _send(self, out)
        return self.h2.reusable

    def taken(self) -> None:
        if self.unwatch is not None:
            self.unwatch()
            self.unwatch = None
        if self.h2 is not None and not self.stirred:
            self.stream.sock.buffering = True


MAX_IDLE = 5  # connections kept open at most (curl's default CURLOPT_MAXCONNECTS)


class Connections:
    """Connections kept open for the next request (curl's connection cache): one idle
    connection per scheme, host and port, `MAX_IDLE` in all (the oldest closed first).
    Fetches running at once (curl --parallel) share an HTTP/2 connection as streams;
    with `pipewait` (curl's default) a fetch waits for a connection to its origin being
    made to learn whether it can (HTTP/1.1: until its first exchange ended, then one
    fetch reuses it). `close()` ends them all."""

    def __init__(self, pipewait: bool = True) -> None:
        self.pipewait = pipewait  # False: curl --parallel-immediate
        self.idle: dict[tuple[str, str, int], _Conn] = {}
        # HTTP/2 connections in use that take another stream (curl --parallel multiplexes)
        self.busy: dict[tuple[str, str, int], _Conn] = {}
        # connections being made whose protocol is not known yet: who waits for them
        # (curl's pipewait: a transfer waits to learn whether the first multiplexes)
        self.connecting: dict[tuple[str, str, int], list[Deferred[None]]] = {}

    @staticmethod
    def key(u: Url) -> tuple[str, str, int]:
        return (u.scheme, u.host.lower(), u.port)

    def shared(self, u: Url) -> _Conn | None:
        """An HTTP/2 connection in use to `u`'s origin with room for another stream."""
        conn = self.busy.get(self.key(u))
        if conn is None or conn.h2 is None or conn.broken or conn.failed or conn.closed:
            return None
        return conn if conn.h2.room and not conn.stream.eof else None

    def known(self, u: Url, conn: _Conn | None) -> None:
        """A new connection's protocol is known (or it failed: None): an HTTP/2 one is
        offered to the transfers waiting for it."""
        if conn is not None and conn.h2 is not None:
            self.busy[self.key(u)] = conn
        for d in self.connecting.pop(self.key(u), []):
            d.callback(None)

    async def wait_for(self, u: Url) -> None:
        """When a connection to `u`'s origin is being made: until its protocol is known."""
        waiting = self.connecting.get(self.key(u))
        if waiting is not None:
            d: Deferred[None] = Deferred()
            waiting.append(d)
            await d

    def done(self, u: Url, conn: _Conn) -> None:
        """An exchange on `conn` ended: an HTTP/2 connection no longer in use is no
        longer offered for streams (it goes back to `idle` through `put`, or closes)."""
        if self.busy.get(self.key(u)) is conn and conn.active == 0:
            del self.busy[self.key(u)]

    async def take(self, u: Url) -> _Conn | None:
        conn = self.shared(u)
        if conn is not None:  # curl: "Multiplexed connection found"
            return conn
        conn = self.idle.pop(self.key(u), None)
        if conn is None:
            return None
        sock = conn.stream.sock
        conn.taken()
        if conn.stream.eof or sock.ended or sock.queued or conn.stirred:
            # curl: an idle connection with something to read (the server closed it, or
            # sent what nobody asked for) "seems to be dead": not reused
            await conn.stream.close()
            return None
        if conn.h2 is not None:
            self.busy[self.key(u)] = conn
        return conn

    async def put(self, u: Url, conn: _Conn) -> None:
        old = self.idle.pop(self.key(u), None)
        conn.idle()
        self.idle[self.key(u)] = conn
        if old is not None:
            await old.stream.close()
        while len(self.idle) > MAX_IDLE:  # curl: the oldest goes (each is an endpoint socket)
            oldest = self.idle.pop(next(iter(self.idle)))
            await oldest.stream.close()

    @deferred_api
    async def close(self) -> None:
        self.busy.clear()
        idle, self.idle = list(self.idle.values()), {}
        for conn in idle:
            await conn.stream.close()


class _Unresolved(Exception):
    """The URL's host has no address: why, in one line (curl's exit 6)."""


async def _resolve(session: EndpointSession, url: Url, family: int | None) -> AddressLike:
    if url.host_is_address:
        return url.host
    # Only here: a URL with an address needs neither the DNS client nor dnspython (~60 ms
    # of a `pktlab run http` start, docs/performance.md).
    from packetlab.measure.dns import DnsError, dns_query

    qtypes = ["AAAA"] if family == 6 else ["A"] if family == 4 else ["A", "AAAA"]
    why = []
    for qtype in qtypes:
        try:
            r = await dns_query(session, url.host, qtype)
        except DnsError as e:  # no DNS server configured at the endpoint
            raise _Unresolved(f"could not resolve host {url.host}: {e}") from None
        for a in r.answers:
            if a.type == qtype:
                return a.data
        if r.rcode == "NXDOMAIN":
            raise _Unresolved(
                f"could not resolve host {url.host}: no such name (NXDOMAIN from {r.server})"
            )
        why.append(f"{qtype}: {r.error}" if r.error else f"{qtype}: {r.rcode}, no address")
    raise _Unresolved(
        f"could not resolve host {url.host} through the endpoint's DNS server ({'; '.join(why)})"
    )


REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRS = 50  # curl's default --max-redirs
KEEP_HEADERS = 100  # header blocks kept (the last ones) in `raw_headers`
# request headers not sent on to another host (curl: unless --location-trusted)
_PRIVATE = ("authorization", "cookie")


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
    until: list[float] = field(default_factory=list)  # the URL's end (its first exchange's)
    on_hop: Callable[[Any], object] | None = None  # each request's live state (-Z's meter)
    resume: int = 0  # -C's offset: the final answer must resume there (_Response.head)
    time_cond: tuple[str, int] | None = None  # -z without a range (Asked.time_cond)
    max_filesize: int = 0  # --max-filesize (0: none)
    expect_wait: float = EXPECT_WAIT  # s for a 100 Continue (--expect100-timeout)


ACCEPT_ENCODING = "deflate, gzip"  # curl 7.88 built without brotli and zstd sends this


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
    trusted: bool = False  # --location-trusted: -u, -H Authorization and Cookie to any host
    expect_wait: float = EXPECT_WAIT  # --expect100-timeout: s to wait for a 100 Continue
    client_cert: tuple[str, str | None] | None = None  # --cert FILE, --key KEY (PEM)
    # -z: (If-Modified-Since, If-Unmodified-Since or Last-Modified, the time in s); a 2xx
    # whose Last-Modified fails it is curl's simulated 304 (_Response.head)
    time_cond: tuple[str, int] | None = None


@dataclass(frozen=True, slots=True)
class _Fields:
    """A request's header fields but Host and the body's, in curl 7.88's order: its own
    (Authorization, Range, User-Agent, Accept, Accept-Encoding, Referer), then a chunked
    body's Transfer-Encoding, the Cookie, the -H ones (`custom`; the body's after them)."""

    own: list[tuple[str, str]]
    cookie: list[tuple[str, str]]
    custom: list[tuple[str, str]]


_GZIP, _ZLIB, _RAW = 32 + 15, 15, -15  # zlib wbits: gzip, zlib-wrapped deflate, raw


class _Undecodable(Exception):
    """A Content-Encoding that cannot be decoded (curl's 61)."""


class _Decoder:
    """--compressed: a gzip or deflate body decoded as it comes, at most `limit` bytes out
    (a small body that inflates without bound is refused)."""

    def __init__(self, encoding: str, limit: int, server: str | None = None) -> None:
        self.encoding, self.limit, self.out = encoding, limit, 0
        self.server = server
        self.wbits = _GZIP if encoding in ("gzip", "x-gzip") else _ZLIB
        self.z = zlib.decompressobj(self.wbits)
        self.fed = False

    def feed(self, data: bytes, final: bool = False) -> bytes:
        try:
            out = self.z.decompress(data, self.limit + 1 - self.out)
        except zlib.error as e:
            if self.fed or self.wbits != _ZLIB:
                raise _Undecodable(f"Content-Encoding {self.encoding}: bad data ({e})") from None
            self.wbits, self.z = _RAW, zlib.decompressobj(_RAW)  # deflate without its header
            return self.feed(data, final)
        self.fed = self.fed or bool(data)
        if final:
            out += self.z.flush()
        self.out += len(out)
        if self.out > self.limit or self.z.unconsumed_tail:
            raise _TooMuch(f"decoded body from {self.server} larger than {self.limit} bytes")
        return out


def _decoder(headers: list[tuple[str, str]], limit: int, server: str | None) -> _Decoder | None:
    codings = [c.strip().lower() for k, v in headers if k.lower() == "content-encoding"
               for c in v.split(",") if c.strip()]  # fmt: skip
    codings = [c for c in codings if c != "identity"]
    if not codings:
        return None
    if len(codings) > 1 or codings[0] not in ("gzip", "x-gzip", "deflate"):
        raise _Undecodable(
            f"Content-Encoding {', '.join(codings)}: not decoded (gzip and deflate are; "
            "br and zstd need libraries this install does not have)"
        )
    return _Decoder(codings[0], limit, server)


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

    def receive(self, u: Url, headers: list[tuple[str, str]]) -> None:
        if self.jar is not None:
            self.jar.receive(u.scheme, u.host, u.target, headers)


@dataclass(slots=True)
class _Hop:
    """One request/response of a fetch: endpoint stamps (ns) and what came back."""

    url: Url
    method: str
    start: int | None = None  # TIME before the resolve (or the nopen)
    resolved: int | None = None  # TIME just before the nopen
    connected: int | None = None
    tls_done: int | None = None
    sent: int | None = None  # the request's ntag
    first: int | None = None
    last: int | None = None
    server: str | None = None
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

    def location(self) -> str | None:
        if self.status not in REDIRECTS:
            return None
        loc = next((v for k, v in self.headers if k.lower() == "location"), "").strip()
        return loc or None


def redirect_target(base: Url, location: str) -> Url:
    """`location` (a Location header) against `base`, as curl follows it: relative
    references resolved, spaces and non-ASCII bytes percent-encoded. HttpError when the
    result is not an http(s) URL one can fetch."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in location):
        raise HttpError(f"Location {location!r}: control characters")
    encoded = quote(location.encode("latin-1"), safe=":/?#[]@!$&'()*+,;=%~")
    try:
        target = urljoin(base.text, encoded)
    except ValueError as e:
        raise HttpError(f"Location {location!r}: {e}") from None
    try:
        return parse_url(target)
    except HttpError as e:
        raise HttpError(f"Location {location!r}: {str(e).split(': ', 1)[-1]}") from None


def next_method(status: int, kind: str, custom: str | None, post30x: frozenset[int]) -> str:
    """curl 7.88's method after a `status` redirect of a `kind` request (GET, HEAD or
    POST: what -d/-I made it): 301 and 302 turn a POST into a GET unless --post301/302,
    303 turns anything but a GET or HEAD into a GET (a POST kept with --post303), 307
    and 308 keep it. -X's `custom` method is sent whatever the kind (as curl does)."""
    if status in (301, 302) and kind == "POST" and status not in post30x:
        return "GET"
    if status == 303 and kind not in ("GET", "HEAD") and not (kind == "POST" and 303 in post30x):
        return "GET"
    return kind


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
    a progress meter (read only).

    HTTP versions as curl 7.88's with nghttp2: by default https:// offers ALPN h2 and
    http/1.1 and speaks HTTP/2 when the server picks h2, http:// speaks HTTP/1.1;
    `http_version` "1.1" offers only http/1.1 (--http1.1), "2" also asks an http:// server
    for an h2c Upgrade (--http2), "2-prior" speaks h2c on http:// from the start
    (--http2-prior-knowledge). HTTP/2 is one request at a time on a connection, kept for
    the next request to the same origin as an HTTP/1.1 one is; `http_version` of the
    result says which was spoken.
    """
    if http_version not in (None, "1.1", "2", "2-prior"):
        raise HttpError(f"http_version {http_version!r}: one of '1.1', '2', '2-prior'")
    current = parse_url(url)
    body = Upload.of(data, FORM) if isinstance(data, bytes) else data
    kind = "HEAD" if head else "GET" if body is None else body.method
    result = HttpResult(url, url_effective=current.effective)
    ctxs: dict[str, SSL.Context] = {}
    extra = list(headers or [])
    basic = None
    if auth is not None:  # a -H Authorization wins (_own)
        basic = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    ranged = asked.byte_range is not None or asked.resume_from > 0  # curl: no -z check
    sink = _Sink(max_body, keep_body, on_body, on_headers, compressed, http_version,
                 on_hop=on_hop, resume=asked.resume_from,
                 max_filesize=asked.max_filesize, expect_wait=asked.expect_wait,
                 time_cond=None if ranged else asked.time_cond)  # fmt: skip
    jar = _Cookies(cookies, cookie, any(k.lower() == "cookie" for k, _ in extra))
    pool = Connections() if connections is None else connections
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
                           (asked, basic))  # fmt: skip
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
    own: tuple[Asked, str | None],
) -> HttpResult:
    body = data
    referer = own[0].referer
    origin = Connections.key(current)
    public = [(k, v) for k, v in extra if k.lower() not in _PRIVATE]
    first_start: int | None = None
    began: int | None = None  # with -Z: before the wait for a first connection (pipewait)
    last_hop: _Hop | None = None
    sums = dict.fromkeys(("namelookup", "connect", "tls", "pretransfer", "first"), 0)
    route = _Route(session, connect_to, family, timeout, connect_timeout, sink, recorder,
                   follow, pool, own[0].resolve)  # fmt: skip
    while True:
        if current.scheme == "https" and current.scheme not in ctxs:
            alpn = [b"http/1.1"] if sink.http == "1.1" else [b"h2", b"http/1.1"]
            ctxs["https"] = client_context(cafile=cafile, insecure=insecure, alpn=alpn,
                                           cert=own[0].client_cert)  # fmt: skip
        if sink.http != "1.1" and (current.scheme == "https" or sink.http is not None):
            import_module("packetlab.measure.http2")  # before the hop starts, not in its times
        hop = _Hop(current, method or kind)
        if sink.on_hop is not None:
            sink.on_hop(hop)
        followed = follow and (max_redirs < 0 or result.num_redirects < max_redirs)

        # curl: credentials and cookies only to the first URL's scheme, host and port
        same = Connections.key(current) == origin or own[0].trusted
        custom = extra if same else public
        mine = _own(own[0], own[1] if same else None, sink.compressed, referer, kind, body)
        names = {k.lower() for k, _ in custom}
        cond = own[0].time_cond  # curl: after the Cookie
        dated = [] if cond is None else [(cond[0], formatdate(cond[1], usegmt=True))]
        sent = _Fields([f for f in mine if f[0].lower() not in names],
                       jar.headers(current) + [f for f in dated if f[0].lower() not in names],
                       custom)  # fmt: skip
        await _hop(route, hop, ctxs.get(current.scheme), body, sent)
        if hop.status is not None:
            jar.receive(current, hop.headers)
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
        result.method = hop.method
        result.url_effective = current.effective
        if hop.server is not None:
            result.server = hop.server
        if hop.status is not None or last_hop is None:
            last_hop = hop
        if hop.error is not None:
            result.error, result.exitcode = hop.error, hop.exitcode
            break
        location = hop.location()
        if location is None:
            break
        try:
            target = redirect_target(current, location)
        except HttpError as e:
            if followed:  # curl: (3) The redirect target URL could not be parsed
                result.error, result.exitcode = f"redirect: {e}", 3
                result.num_redirects += 1  # counted as followed, as curl does
            elif follow:
                result.error, result.exitcode = f"maximum ({max_redirs}) redirects followed", 47
            break
        if not follow:
            result.redirect_url = target.text
            break
        if not followed:  # curl: (47) Maximum (N) redirects followed
            result.redirect_url = target.text
            result.error = f"maximum ({max_redirs}) redirects followed (the next to {target.text})"
            result.exitcode = 47
            break
        result.num_redirects += 1
        if hop.last is not None and first_start is not None:
            result.redirect_us = (hop.last - first_start) / 1000
        new_kind = next_method(hop.status or 0, kind, method, post30x)
        if new_kind != kind:
            kind, body = new_kind, None
        if own[0].auto_referer:  # curl -e ';auto': the URL the redirect came from
            referer = current.text
        current = target
    _finish(result, last_hop, sums, first_start, began)
    if last_hop is not None and last_hop is not hop:  # a redirect followed, then a failure
        result.body_len, result.body_sha256, result.body = 0, None, None  # curl resets them
    return result


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

    def address_for(self, u: Url) -> AddressLike | None:
        """--connect-to's address, else the first --resolve entry of the URL's host (or
        "*") and port, else None (the endpoint's DNS)."""
        if self.connect_to is not None:
            return self.connect_to
        return next((a for h, p, a in self.resolve if p == u.port and h in (u.host, "*")),
                    None)  # fmt: skip


async def _hop(
    route: _Route,
    hop: _Hop,
    ctx: SSL.Context | None,
    data: Upload | None,
    headers: _Fields,
) -> None:
    session, pool = route.session, route.pool
    u = hop.url
    conn = await pool.take(u)
    # curl's pipewait (its -Z default): while a first connection to the origin is being
    # made, wait to learn whether it multiplexes (HTTP/2: at its handshake; HTTP/1.1: at
    # its first exchange's end, when it can be reused)
    multiplexed = pool.pipewait
    if conn is None and multiplexed and Connections.key(u) in pool.connecting:
        queued = await read_time(session)  # curl: time_total counts the wait
        await pool.wait_for(u)  # curl's pipewait: the first connection may take us too
        conn = await pool.take(u)
        hop.queued = queued
    if conn is not None:  # curl: "Re-using existing connection"
        hop.start = hop.resolved = await read_time(session)
        hop.reused, hop.server, hop.tls_version = True, conn.server, conn.tls_version
        await _over(session, hop, conn, data, headers, route.timeout, route.sink,
                    route.follows, pool)  # fmt: skip
        if not (hop.error is not None and hop.first is None and hop.exitcode in (52, 56)):
            return
        # curl: "Connection died, retrying a fresh connect" (closed while idle)
        was = hop.queued
        hop.__init__(hop.url, hop.method)  # type: ignore[misc]
        hop.queued = was
    mine = multiplexed and Connections.key(u) not in pool.connecting
    if mine:  # the next transfers to this origin wait to learn whether it multiplexes
        pool.connecting[Connections.key(u)] = []
    try:
        await _connect(route, hop, ctx, data, headers)
    finally:
        if mine:
            pool.known(u, None)  # failed before its protocol was known: they go on their own


async def _connect(
    route: _Route,
    hop: _Hop,
    ctx: SSL.Context | None,
    data: Upload | None,
    headers: _Fields,
) -> None:
    """The hop over a new connection: the name resolved, the connect, the exchange."""
    session, connect_to = route.session, route.address_for(hop.url)
    u = hop.url
    if connect_to is None and not u.host_is_address:
        hop.start = await read_time(session)
        try:
            connect_to = await _resolve(session, u, route.family)
        except _Unresolved as e:
            hop.error, hop.exitcode = str(e), 6
            return
    addr = parse_address(connect_to if connect_to is not None else u.host)
    server = f"[{addr}]:{u.port}" if addr.version == 6 else f"{addr}:{u.port}"
    try:
        stream = await TcpStream.connect(
            session, addr, u.port, timeout=route.connect_timeout, recorder=route.recorder
        )
    except ControllerError as e:
        hop.error = connect_failure(e, addr, u.port)
        hop.exitcode = 28 if "not established within" in str(e) else _EXIT_CONNECT
        return
    hop.server = server
    if hop.start is None:
        hop.start = stream.started_at
    hop.resolved, hop.connected = stream.started_at, stream.established_at
    tls = None if ctx is None else _Tls(ctx, u, stream)
    await _over(session, hop, _Conn(stream, tls, server, None), data, headers, route.timeout,
                route.sink, route.follows, route.pool)  # fmt: skip


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
) -> None:
    """One request and its response over `conn` (a new one: TLS handshake first); the
    connection back into `pool` when the exchange left it reusable, else closed."""
    stream = conn.stream
    now = session.reactor.seconds()
    if not sink.until:  # curl -m: the URL's time, its redirects included, not each hop's
        sink.until.append(now + timeout)
    deadline = min(now + timeout, sink.until[0])
    keep = False
    conn.active += 1
    try:
        if conn.tls is not None and not hop.reused:
            hop.tls_done = await conn.tls.handshake(deadline)
            conn.tls_version = hop.tls_version = conn.tls.conn.get_protocol_version_name()
            if conn.tls.conn.get_alpn_proto_negotiated() == b"h2":
                conn.h2 = _h2_framing(conn.server)
        elif conn.tls is None and not hop.reused and sink.http == "2-prior":
            conn.h2 = _h2_framing(conn.server)  # h2c, no Upgrade
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
            hop.error, hop.exitcode = _tls_error(e), 35
        else:  # curl: (56) a TLS read failed
            hop.error = f"{_tls_error(e)} (from {conn.server}, after the handshake)"
            hop.exitcode = 56
    except _CertificateMismatch as e:
        hop.error, hop.exitcode = str(e), 60
    except StreamTimeout:  # curl: "Operation timed out after N ms with M bytes received"
        what = "no response" if hop.status is None else "no complete response"
        hop.error = (
            f"timed out: {what} from {conn.server} within {timeout:g} s of the "
            f"{'connect' if deadline == now + timeout else 'first hop connect'} "
            f"({hop.body_len} body bytes received)"
        )
        hop.exitcode = 28
    except StreamError as e:  # HTTP/2's H2Error: curl's 16 (framing), 92 (a stream reset)
        hop.error = str(e)
        hop.exitcode = getattr(e, "exitcode", 52 if "without a response" in str(e) else 56)
    except UploadError as e:  # curl: (26) a read error on the file sent; (65) no rewind
        hop.error = f"upload: {e}"
        hop.exitcode = 65 if "sent again" in str(e) else 26
    except _Undecodable as e:  # curl: (61) Unrecognized content encoding type
        hop.error, hop.exitcode = str(e), 61
    except _NoResume as e:  # curl: (33) HTTP server doesn't seem to support byte ranges
        hop.error, hop.exitcode = str(e), 33
    except _TooLarge as e:  # curl: (63) Maximum file size exceeded
        hop.error, hop.exitcode = str(e), 63
    except h11.ProtocolError as e:
        why = str(e)
        if why == "Receive buffer too long":  # h11's max_incomplete_event_size
            why = f"response headers over {MAX_HEADERS} bytes"
        hop.error = f"HTTP: bad response from {conn.server}: {type(e).__name__}: {why}"
        hop.exitcode = 18 if "complete message" in str(e) else 8
    except WriteError as e:  # curl: (23) Failed writing header / output to destination
        hop.error, hop.exitcode = str(e), 23
    except OSError as e:  # on_body could not write
        hop.error = f"writing the body: {e.strerror or e}"
        hop.exitcode = 23
    finally:
        conn.active -= 1
        if not (keep and hop.error is None):
            conn.broken = True  # HTTP/2: no new stream; the others in flight go on
        pool.done(hop.url, conn)
        if conn.active > 0:
            pass  # streams of other transfers are in flight: the last one decides
        elif not conn.broken:
            await pool.put(hop.url, conn)
        else:
            await stream.close()
        if not hop.reused and conn.h2 is None:  # HTTP/1.1: a waiting transfer reuses it
            pool.known(hop.url, None)
    if hop.error is not None and hop.exitcode not in (23, 33, 63):  # the response came
        hop.status = None


def _h2_framing(server: str) -> H2Framing:
    from packetlab.measure.http2 import H2Framing

    return H2Framing(server, MAX_HEADERS)


def _own(asked: Asked, basic: str | None, compressed: bool, referer: str | None, kind: str,
         body: Upload | None) -> list[tuple[str, str]]:  # fmt: skip
    """curl 7.88's own fields of a request, in its order (http.c's request line format):
    Authorization (-u), Range or Content-Range (-r), User-Agent, Accept, Accept-Encoding
    (--compressed), Referer."""
    out = [] if basic is None else [("Authorization", basic)]
    r = asked.byte_range
    if r is None and asked.resume_from and (body is None or kind in ("GET", "HEAD")):
        r = f"{asked.resume_from}-"  # curl -C N
    if r is not None and (body is None or kind in ("GET", "HEAD")):
        out.append(("Range", f"bytes={r}"))
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


def _request_headers(
    u: Url, data: Upload | None, fields: _Fields, expect: bool = False
) -> list[tuple[str, str]]:
    """The request's header fields as curl 7.88 sends them (either framing), in its
    order: Host, its own (`_own`), Transfer-Encoding: chunked for a body of unknown
    length, Cookie, the -H fields (one without a value is not sent: `-H 'NAME:'`
    removes curl's own NAME), then a body's Content-Length, Content-Type and, over
    HTTP/1.1 when curl asks it, `Expect: 100-continue`."""
    names = {k.lower() for k, _ in fields.custom}
    req = [] if "host" in names else [("Host", u.authority)]
    req += fields.own
    if data is not None and data.length is None:
        req.append(("Transfer-Encoding", "chunked"))
    req += fields.cookie
    req += [(k, v) for k, v in fields.custom if v]
    if data is not None:
        if data.length is not None:
            req.append(("Content-Length", str(data.length)))
        if data.content_type is not None and "content-type" not in names:
            req.append(("Content-Type", data.content_type))
        if expect:
            req.append(("Expect", "100-continue"))
    return req


def _expects(data: Upload | None, fields: _Fields) -> bool:
    """curl 7.88 over HTTP/1.1: `Expect: 100-continue` for a PUT's body, a POST's over
    1 MiB or of unknown length, unless a -H Expect is given (`-H Expect:` removes it)."""
    given = any(k.lower() == "expect" for k, _ in fields.custom)
    return data is not None and data.expects() and not given


def _request(
    u: Url, method: str, data: Upload | None, fields: _Fields, expect: bool = False,
) -> tuple[h11.Connection, bytes, bool]:  # fmt: skip
    """h11's connection, the request's head (with the body when curl sends it in the
    same write: -d below 64 KiB, no Expect), and whether the body went with it."""
    h = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADERS)
    headers = _request_headers(u, data, fields, expect)
    out = h.send(h11.Request(method=method, target=u.target, headers=headers))
    small = None if data is None or expect else data.small()
    if data is not None and small is None:
        return h, out, False
    if small:
        out += h.send(h11.Data(data=small))
    out += h.send(h11.EndOfMessage())
    return h, out, True


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
        self.decoder: _Decoder | None = None

    def head(self, status: int, reason: str, headers: list[tuple[str, str]], raw: bytes) -> None:
        hop = self.hop
        hop.status, hop.reason, hop.headers, hop.raw_headers = status, reason, headers, raw
        self.keep = not (self.follows and hop.location() is not None)
        if self.keep and self.sink.resume and hop.method != "HEAD":
            self.ignore = _resumed(self.sink.resume, status, headers, hop.server)
        if self.keep and not self._meets(status, headers):  # curl: "Simulate an HTTP 304"
            self.ignore, hop.status = "done", 304
        large = self._too_large(headers)
        if large is not None and raw.endswith(b"\r\n\r\n"):  # curl: before the blank line
            raw = hop.raw_headers = raw[:-2]
        if self.sink.on_headers is not None:
            try:
                self.sink.on_headers(raw)
            except WriteError as e:  # curl's size_header: the lines before the refused one
                if e.header_bytes is not None:
                    hop.raw_headers = raw[: e.header_bytes]
                raise
        if large is not None:
            raise large

    def _meets(self, status: int, headers: list[tuple[str, str]]) -> bool:
        """-z: curl 7.88's Curl_meets_timecondition on a 2xx's Last-Modified (none, or
        one it cannot read: met): "not new enough" (at or before the time; also for
        -z =TIME) or, for -z -TIME, "not old enough" (at or after it)."""
        cond = self.sink.time_cond
        if cond is None or not 200 <= status < 300:
            return True
        value = next((v for k, v in headers if k.lower() == "last-modified"), "")
        try:
            doc = int(parsedate_to_datetime(value).timestamp())
        except (TypeError, ValueError, IndexError):
            return True
        if not doc or not cond[1]:
            return True
        return doc < cond[1] if cond[0] == "If-Unmodified-Since" else doc > cond[1]

    def _too_large(self, headers: list[tuple[str, str]]) -> _TooLarge | None:
        """--max-filesize: a final answer's Content-Length over it (curl 7.88's 63,
        checked at the end of its header block, before that block's last line end)."""
        limit, hop = self.sink.max_filesize, self.hop
        if not (self.keep and limit and hop.method != "HEAD"):
            return None
        length = next((v.strip() for k, v in headers if k.lower() == "content-length"), "")
        if not (length.isdigit() and int(length) > limit):
            return None
        return _TooLarge(f"Maximum file size exceeded ({length} bytes from {hop.server}; "
                         f"at most {limit})")  # fmt: skip

    def data(self, data: bytes) -> None:
        hop, sink = self.hop, self.sink
        if self.keep and sink.compressed and hop.body_len == 0:  # a body to decode (not HEAD)
            self.decoder = _decoder(hop.headers, sink.max_body, hop.server)
        if self.ignore == "done":  # curl: not read ("already downloaded")
            return
        hop.body_len += len(data)
        if hop.body_len > sink.max_body:
            raise _TooMuch(f"body from {hop.server} larger than {sink.max_body} bytes")
        self.digest.update(data)
        self._out(data if self.decoder is None else self.decoder.feed(data))

    def _out(self, out: bytes) -> None:
        if self.keep and self.sink.keep_body:
            self.body.append(out)
        if self.keep and self.sink.on_body is not None and out and not self.ignore:
            self.sink.on_body(out)

    def end(self) -> None:
        if self.decoder is not None:
            self._out(self.decoder.feed(b"", final=True))
        self.hop.body_sha256 = self.digest.hexdigest()
        self.hop.body = b"".join(self.body) if self.sink.keep_body and self.keep else None


class _NoResume(Exception):
    """-C: the server answered the whole document, not from the offset (curl's 33)."""


class _TooLarge(Exception):
    """A Content-Length over --max-filesize (curl's 63)."""


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


async def _read(
    session: EndpointSession, conn: _Conn, deadline: float
) -> tuple[Chunk | None, bytes, bool]:
    """The next chunk, its plaintext and whether the server ended the connection (TCP
    EOF, or TLS close_notify)."""
    chunk = await conn.stream.recv(max(deadline - session.reactor.seconds(), 0.0))
    if conn.tls is not None:
        plain, closed = conn.tls.feed(chunk)
        return chunk, plain, closed
    if chunk is None:
        return None, b"", True
    return chunk, chunk.data, False


def _stamp_sent(hop: _Hop, sent: Deferred[Ntag] | None) -> None:
    if sent is not None:

        def stamp(tag: Ntag) -> None:
            hop.sent = tag.time

        sent.addCallbacks(stamp, lambda _: None)


async def _exchange(
    session: EndpointSession,
    hop: _Hop,
    conn: _Conn,
    data: Upload | None,
    headers: _Fields,
    deadline: float,
    sink: _Sink,
    follows: bool,
) -> bool:
    """The request and its response over HTTP/1.1; whether the connection can carry
    another (both sides DONE in h11: no `Connection: close`, a delimited body). With
    --http2 on a new http:// connection the request asks for an h2c Upgrade (curl's):
    a 101 continues in HTTP/2 (`_h2_response`). A body not sent with the head goes in
    chunks after it; with `Expect: 100-continue` (curl's rules, `_expects`) only after
    a 100 Continue or `sink.expect_wait` s without an answer, never after a final response
    (curl: "HTTP error before end of send, stop sending"; the connection is closed)."""
    stream = conn.stream
    u = hop.url
    upgrade = None
    if sink.http == "2" and u.scheme == "http" and not hop.reused:
        upgrade = _h2_framing(conn.server)
        headers = replace(headers, custom=[
            *headers.custom, ("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c"),
            ("HTTP2-Settings", upgrade.upgrade_settings())])  # fmt: skip
    expect = _expects(data, headers)
    try:
        h, request, complete = _request(u, hop.method, data, headers, expect)
    except h11.LocalProtocolError as e:
        raise StreamError(f"bad request: {e}") from None
    hop.request_size = len(request)
    _stamp_sent(hop, _send(conn, request, ntag=True))
    if complete and data is not None:
        hop.uploaded = data.length or 0
    fed = bytearray()  # response bytes up to the end of the headers
    resp = _Response(hop, sink, follows)
    ended = False  # the server ended the connection (TCP EOF, or TLS close_notify)

    async def next_event(until: float) -> Any:
        nonlocal ended
        while True:
            event = h.next_event()
            if event is not h11.NEED_DATA:
                return event
            chunk, plain, closed = await _read(session, conn, until)
            if plain:
                h.receive_data(plain)
            if closed:
                h.receive_data(b"")
                ended = True
            if hop.status is None:
                fed.extend(plain)
                if len(fed) > MAX_HEADERS + len(plain):  # this chunk may hold body bytes
                    raise _TooMuch(f"response headers from {hop.server} over {MAX_HEADERS} "
                                   "bytes (1xx responses included)")  # fmt: skip
            if chunk is not None and plain:
                hop.first = chunk.time if hop.first is None else hop.first
                hop.last = chunk.time
            if hop.first is None and (chunk is None or stream.eof):
                raise StreamError(
                    f"the server {hop.server} closed the connection without a response"
                )

    early = None  # a response that came before the body went
    if not complete and data is not None:
        send = True
        if expect:  # curl: wait for the 100 (1 s), or the final answer that stops it
            send = False
            wait = min(session.reactor.seconds() + sink.expect_wait, deadline)
            while True:
                try:
                    event = await next_event(wait)
                except StreamTimeout:
                    if wait >= deadline:
                        raise
                    send = True  # no answer: the body goes anyway
                    break
                if isinstance(event, h11.InformationalResponse) and event.status_code == 100:
                    send = True
                    break
                if not isinstance(event, h11.InformationalResponse):
                    early = event
                    break
        if send:
            await _upload(hop, conn, data, h, deadline)
    while True:
        event, early = (early, None) if early is not None else (await next_event(deadline), None)
        if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
            if upgrade is None or h.their_state is not h11.SWITCHED_PROTOCOL:
                raise StreamError(f"the server {hop.server} switched protocols unasked")
            leftover, _ = h.trailing_data
            conn.h2 = upgrade
            upgrade.upgraded()
            _send(conn, upgrade.data_to_send())
            raw = bytes(fed[: len(fed) - len(leftover)])
            return await _h2_response(session, hop, conn, deadline, sink, follows, raw,
                                      bytes(leftover), 1)  # fmt: skip
        if isinstance(event, h11.Response):
            resp.head(
                event.status_code,
                event.reason.decode("latin-1"),
                [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers.raw_items()],
                bytes(fed[: len(fed) - len(h.trailing_data[0])]),
            )
        elif isinstance(event, h11.Data):
            resp.data(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            break
        elif isinstance(event, h11.ConnectionClosed):
            raise StreamError(
                f"the server {hop.server} closed the connection before a complete response"
            )
    resp.end()
    clean = not h.trailing_data[0] and not ended and not stream.eof  # a close-delimited
    return h.our_state is h11.DONE and h.their_state is h11.DONE and clean  # body: not kept


async def _fill(clock: Any, body: Upload) -> None:
    """What curl reads of the body before the request (a -F part's stdin from a pipe:
    whole, for its Content-Length), read by a thread while this awaits (the reactor runs
    on: Ctrl-C and SIGTERM act). As curl's (read while it parses its options) the time
    limit (-m) starts after it."""
    ready = _Ready(clock)
    while not body.fill(ready.notify):
        await ready.wait(None)


class _Ready:
    """Wakes an upload waiting for a pipe's next chunk: `notify` is called by the
    pipe's reader thread (callFromThread), `wait` awaited on the reactor (until
    `deadline`: then StreamTimeout). A notify before the wait is not lost."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.fired = False
        self.waiter: Deferred[None] | None = None
        self.on_ready: Callable[[], None] | None = None  # also run on the reactor

    def notify(self) -> None:  # the reader thread
        self.clock.callFromThread(self._fire)

    def _fire(self) -> None:
        self.fired = True
        waiter, self.waiter = self.waiter, None
        if waiter is not None:
            waiter.callback(None)
        if self.on_ready is not None:
            self.on_ready()

    async def wait(self, deadline: float | None) -> None:
        if self.fired:
            self.fired = False
            return
        self.waiter = waiter = Deferred[None]()
        if deadline is None:  # until notified (or cancelled)
            await waiter
            self.fired = False
            return
        left = deadline - self.clock.seconds()
        if left <= 0:
            self.waiter = None
            raise StreamTimeout("nothing to upload within the time (the pipe gave nothing)")
        timer = self.clock.callLater(left, lambda: None if waiter.called else waiter.callback(None))
        try:
            await waiter
        finally:
            if timer.active():
                timer.cancel()
        self.fired = False


async def _upload(hop: _Hop, conn: _Conn, data: Upload, h: h11.Connection, deadline: float) -> None:
    """The body after the head, in chunks read now, at most `UPLOAD_WINDOW` of them on
    their way to the endpoint (each waits for an earlier one's ntag): a file of any size
    goes through bounded memory. A pipe (stdin, a FIFO) is read by a thread, never on
    the reactor: while it gives nothing the upload awaits its next chunk (the reactor
    runs on: Ctrl-C, SIGTERM and the time limit act). A send the endpoint refuses (the
    server closed) stops it: the response, if one came, is read next."""
    inflight: list[Deferred[Ntag]] = []
    ready = _Ready(conn.stream.session.reactor)
    try:
        for piece in data.chunks(ready.notify):
            if not piece:  # the pipe has nothing yet
                await ready.wait(deadline)
                continue
            try:
                out = h.send(h11.Data(data=piece))
            except h11.LocalProtocolError as e:  # more than Content-Length
                raise UploadError(f"the body: {e}") from None
            sent = _send(conn, out or b"", ntag=True)
            hop.uploaded += len(piece) if data.length is not None else len(out or b"")
            if sent is not None:
                inflight.append(sent)
            if len(inflight) > UPLOAD_WINDOW:
                await inflight.pop(0)
        out = h.send(h11.EndOfMessage())
        if out:  # chunked: its last chunk (counted in size_upload, as curl's)
            _send(conn, out)
            hop.uploaded += len(out)
        for sent in inflight:
            sent.addErrback(lambda _: None)
    except RequestFailed as e:  # the endpoint refused an nsend: its policy, not the server
        for sent in inflight:
            sent.addErrback(lambda _: None)
        raise _refused(e, hop.uploaded, data.length) from None
    except ControllerError:  # a send failed (the connection is gone): read the answer
        for sent in inflight:
            sent.addErrback(lambda _: None)


class _SendRefused(StreamError):
    """The endpoint refused an nsend of the body (curl's 55: failed sending data)."""

    exitcode = 55


def _refused(e: RequestFailed, sent: int, length: int | None) -> _SendRefused:
    of = "" if length is None else f" of {length}"
    why = f"upload: the endpoint refused a send ({e.name}; {sent}{of} body bytes queued)"
    if e.name == "ESKTPKTDENY":
        why += (": over its send window (without a max_burst_rate_byte grant in the "
                "operator's exppriv certificate 12,500,000 bytes per 10 s, 10 Mb/s; "
                "pktlab init --max-burst-rate-byte 1250000000/10000000000 grants the "
                "in-process endpoint more; docs/http.md)")  # fmt: skip
    return _SendRefused(why)


async def _exchange_h2(
    session: EndpointSession,
    hop: _Hop,
    conn: _Conn,
    data: Upload | None,
    headers: _Fields,
    deadline: float,
    sink: _Sink,
    follows: bool,
) -> bool:
    """The request and its response as HTTP/2 (one stream); whether the connection can
    carry another. The request's fields are HTTP/1.1's; `request_size` is curl's (the
    HTTP/1.1 form of the request's head, `HTTP/2` in its request line; the body, sent as
    DATA frames, is not counted)."""
    assert conn.h2 is not None
    u = hop.url
    fields = _request_headers(u, data, headers)
    try:
        _request(u, hop.method, None, headers)  # h11's checks of the method and fields
    except h11.LocalProtocolError as e:
        raise StreamError(f"bad request: {e}") from None
    head = f"{hop.method} {u.target} HTTP/2\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields)
    hop.request_size = len(head.encode("latin-1", "replace")) + 2  # the head only, as curl's
    ready = _Ready(session.reactor)
    framing = conn.h2
    ready.on_ready = lambda: _h2_kick(conn, framing)  # a pipe's chunk: frame it now
    frames = conn.h2.request(hop.method, u.scheme, u.authority, u.target, fields,
                             None if data is None else data.chunks(ready.notify))  # fmt: skip
    sid = conn.h2.stream_id
    _stamp_sent(hop, _send(conn, frames, ntag=True))
    return await _h2_response(session, hop, conn, deadline, sink, follows, b"", b"", sid)


async def _h2_response(
    session: EndpointSession,
    hop: _Hop,
    conn: _Conn,
    deadline: float,
    sink: _Sink,
    follows: bool,
    informational: bytes,
    leftover: bytes,
    sid: int,
) -> bool:
    """The response on the request's stream `sid`: `informational` the header blocks
    before it (an h2c Upgrade's 101), `leftover` bytes already received after them.
    With other streams in flight on the connection (--parallel) one exchange reads for
    all at a time and the others wait until it woke them (what came for them queued)."""
    from packetlab.measure.http2 import Body, End, Head

    framing = conn.h2
    assert framing is not None
    resp = _Response(hop, sink, follows)
    done = False
    clock = session.reactor
    try:
        if leftover:
            framing.receive(leftover, hop.last)
        while not done:
            for when, ev in framing.take(sid):
                when = hop.last if when is None else when
                hop.first = when if hop.first is None else hop.first
                hop.last = when
                if isinstance(ev, Head) and not ev.final:
                    informational += ev.raw
                    if len(informational) > MAX_HEADERS:
                        raise _TooMuch(f"response headers from {hop.server} over {MAX_HEADERS} "
                                       "bytes (1xx responses included)")  # fmt: skip
                elif isinstance(ev, Head):
                    hop.version = "2"
                    resp.head(ev.status, "", ev.headers, informational + ev.raw)
                elif isinstance(ev, Body):
                    resp.data(ev.data)
                elif isinstance(ev, End):
                    done = True
            if done:
                break
            if conn.failed is not None:
                raise conn.failed
            if conn.closed:
                what = "without a response" if hop.first is None else "before a complete response"
                raise StreamError(f"the server {hop.server} closed the connection {what}")
            if conn.reading:  # another stream's exchange reads: wait for it to wake us
                left = deadline - clock.seconds()
                if left <= 0:
                    raise StreamTimeout(f"nothing from {conn.server} within the time")
                await _woken(conn, clock, left)
                continue
            conn.reading = True
            try:
                chunk, plain, closed = await _read(session, conn, deadline)
                if plain:
                    framing.receive(plain, chunk.time if chunk is not None else hop.last)
            except StreamTimeout:
                raise  # this stream's time: the others have theirs
            except Exception as e:  # the connection's end: every stream's
                conn.failed = e
                raise
            finally:
                conn.reading = False
                conn.wake()
            conn.closed = conn.closed or closed
            out = framing.data_to_send()
            if out:
                _send(conn, out)
            await _h2_upload(conn, framing)
            hop.uploaded = framing.uploaded(sid)
        hop.uploaded = framing.uploaded(sid)
    finally:
        framing.finish(sid)
    resp.end()
    return framing.reusable and not conn.closed and not conn.stream.eof


async def _woken(conn: _Conn, clock: Any, left: float) -> None:
    """Until the exchange reading the connection woke the waiters, or `left` s."""
    woken: Deferred[None] = Deferred()
    conn.waiters.append(woken)

    def late() -> None:
        if not woken.called:
            woken.callback(None)

    timer = clock.callLater(left, late)
    await woken
    if timer.active():
        timer.cancel()


def _h2_kick(conn: _Conn, framing: H2Framing) -> None:
    """A request body's pipe has a chunk ready: frame it now (one `_h2_upload` at a
    time on the connection: the running one goes on). A refused send is the
    connection's failure (the response's loop raises it)."""
    if conn.h2_pumping:
        conn.h2_again = True
        return

    def failed(f: Any) -> None:
        conn.failed = conn.failed or f.value
        conn.wake()

    Deferred.fromCoroutine(_h2_upload(conn, framing)).addErrback(failed)


async def _h2_upload(conn: _Conn, framing: H2Framing) -> None:
    """The request body's DATA frames the server's windows let go now, `UPLOAD_WINDOW`
    chunks at a time, each batch after the previous one's ntag (bounded memory); one at a
    time on a connection (frames in order): a call while one runs asks it to go on."""
    if conn.h2_pumping:
        conn.h2_again = True
        return
    conn.h2_pumping = True
    try:
        while True:
            conn.h2_again = False
            await _h2_frames(conn, framing)
            if not conn.h2_again:
                break
    finally:
        conn.h2_pumping = False


async def _h2_frames(conn: _Conn, framing: H2Framing) -> None:
    sent: Deferred[Ntag] | None = None
    while True:
        framed = framing.pump(UPLOAD_WINDOW * CHUNK)
        out = framing.data_to_send()
        if out:
            if sent is not None:
                try:
                    await sent
                except RequestFailed as e:
                    raise _refused(e, framing.uploaded(framing.stream_id), None) from None
                except ControllerError:  # the connection is gone: the read says so
                    return
            sent = _send(conn, out, ntag=True)
        if not framed:
            break
    if sent is not None:
        sent.addErrback(lambda _: None)
