"""HTTP and HTTPS GET from the endpoint, TLS at the controller.

The endpoint only opens a TCP connection and moves bytes; TLS runs here, in a pyOpenSSL
connection over memory BIOs: what OpenSSL wants to send goes out with nsend, what the
endpoint received (ndata) is written into OpenSSL. So the certificate is verified at the
controller (on by default, against the system store like curl, or `cafile`), with SNI and
the host name checked by service_identity. HTTP/1.1 framing (Content-Length, chunked,
close-delimited, 204/304) is h11's: a small sans-IO parser that is strict where hand-written
ones are not.

Timings are endpoint stamps, from the TIME read just before the nopen (like curl's
`time_*`, all from the start): `connect_us` the ESTABLISHED nstat, `tls_us` the ndata that
completed the handshake, `first_byte_us` the ndata carrying the first response byte,
`total_us` the ndata carrying the last body byte.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import h11
from OpenSSL import SSL

from packetlab.controller import (
    AddressLike,
    ControllerError,
    EndpointSession,
    deferred_api,
    parse_address,
)
from packetlab.measure.dns import DnsError, dns_query
from packetlab.measure.pcap import PcapRecorder
from packetlab.measure.stream import (
    Chunk,
    StreamError,
    StreamTimeout,
    TcpStream,
    connect_failure,
)

__all__ = ["HttpError", "HttpResult", "http_get", "parse_url"]

USER_AGENT = "pktlab-http/1"
MAX_BODY = 256 << 20
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
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return Url(parts.scheme, parts.hostname, port, target)


@dataclass(slots=True)
class HttpResult:
    url: str
    server: str | None = None  # address:port connected to
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

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "http", "url": self.url, "server": self.server}
        if self.connect_us is not None:
            out["connect_us"] = self.connect_us
        if self.tls_us is not None:
            out.update(tls_us=self.tls_us, tls_version=self.tls_version)
        if self.error is not None:
            out["error"] = self.error
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


def client_context(*, cafile: str | None = None, insecure: bool = False) -> SSL.Context:
    """TLS 1.2+ client context: peer verification against `cafile` or the system store,
    none with `insecure`."""
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
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


class _Tls:
    """A client TLS connection over memory BIOs, fed with the endpoint's chunks."""

    def __init__(self, ctx: SSL.Context, url: Url, stream: TcpStream) -> None:
        self.conn = SSL.Connection(ctx, None)
        if not url.host_is_address:
            self.conn.set_tlsext_host_name(url.host.encode("idna"))
        self.conn.set_connect_state()
        self.stream = stream
        self.url = url

    def flush(self) -> None:
        while True:
            try:
                out = self.conn.bio_read(1 << 16)
            except SSL.WantReadError:
                return
            if not out:
                return
            self.stream.send(out)

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

    def send(self, data: bytes) -> None:
        self.conn.sendall(data)
        self.flush()

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


def _us(t: int | None, start: int) -> float | None:
    return None if t is None else (t - start) / 1000


class _Unresolved(Exception):
    """The URL's host has no address: why, in one line (curl's exit 6)."""


async def _resolve(session: EndpointSession, url: Url, family: int | None) -> AddressLike:
    if url.host_is_address:
        return url.host
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
) -> HttpResult:
    """GET `url` from the endpoint (HTTP/1.1, one request, `Connection: close`).

    The host name is resolved through the endpoint's DNS server unless `connect_to` gives
    the address (like curl --resolve). HTTPS verifies the server's certificate and name
    unless `insecure`. Failures after the URL was accepted (name not resolved, refused,
    TLS, timeout, bad HTTP) come back in `error`. `timeout` bounds the whole exchange
    after the connect.
    `recorder` collects the connection's packets for a pcap file (TLS stays encrypted).
    """
    u = parse_url(url)
    result = HttpResult(url)
    ctx = client_context(cafile=cafile, insecure=insecure) if u.scheme == "https" else None
    if connect_to is None:
        try:
            connect_to = await _resolve(session, u, family)
        except _Unresolved as e:
            result.error = str(e)
            return result
    addr = parse_address(connect_to)
    result.server = f"[{addr}]:{u.port}" if addr.version == 6 else f"{addr}:{u.port}"
    try:
        stream = await TcpStream.connect(
            session, addr, u.port, timeout=connect_timeout, recorder=recorder
        )
    except ControllerError as e:
        result.error = connect_failure(e, addr, u.port)
        return result
    start = stream.started_at
    result.connect_us = _us(stream.established_at, start)
    clock = session.reactor
    deadline = clock.seconds() + timeout
    try:
        await _exchange(session, u, stream, ctx, result, deadline, headers, max_body, keep_body)
    except SSL.Error as e:
        result.error = _tls_error(e)
    except _CertificateMismatch as e:
        result.error = str(e)
    except StreamTimeout:  # curl: "Operation timed out after N ms with M bytes received"
        what = "no response" if result.status is None else "no complete response"
        result.error = (
            f"timed out: {what} within {timeout:g} s of the connect "
            f"({result.body_len} body bytes received)"
        )
    except StreamError as e:
        result.error = str(e)
    except h11.ProtocolError as e:
        result.error = f"HTTP: {type(e).__name__}: {e}"
    finally:
        await stream.close()
    if result.error is not None:
        result.status = None
    return result


async def _exchange(
    session: EndpointSession,
    u: Url,
    stream: TcpStream,
    ctx: SSL.Context | None,
    result: HttpResult,
    deadline: float,
    headers: list[tuple[str, str]] | None,
    max_body: int,
    keep_body: bool,
) -> None:
    clock = session.reactor
    start = stream.started_at
    tls = None
    if ctx is not None:
        tls = _Tls(ctx, u, stream)
        result.tls_us = _us(await tls.handshake(deadline), start)
        result.tls_version = tls.conn.get_protocol_version_name()
    h = h11.Connection(h11.CLIENT)
    req = [
        ("Host", u.authority),
        ("User-Agent", USER_AGENT),
        ("Accept", "*/*"),
        ("Connection", "close"),
        *(headers or []),
    ]
    data = h.send(h11.Request(method="GET", target=u.target, headers=req))
    data += h.send(h11.EndOfMessage())
    if tls is not None:
        tls.send(data)
    else:
        stream.send(data)
    digest = hashlib.sha256()
    body: list[bytes] = []
    first = last = None
    while True:
        event = h.next_event()
        if event is h11.NEED_DATA:
            chunk = await stream.recv(max(deadline - clock.seconds(), 0.0))
            if tls is not None:
                plain, closed = tls.feed(chunk)
                if plain:
                    h.receive_data(plain)
                if closed:
                    h.receive_data(b"")
            elif chunk is None:
                h.receive_data(b"")
            else:
                plain = chunk.data
                h.receive_data(plain)
            if chunk is not None and plain:
                first = chunk.time if first is None else first
                last = chunk.time
            if first is None and (chunk is None or stream.eof):
                raise StreamError("the server closed the connection without a response")
            continue
        if isinstance(event, h11.Response):
            result.status = event.status_code
            result.reason = event.reason.decode("latin-1")
            result.headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers]
        elif isinstance(event, h11.Data):
            result.body_len += len(event.data)
            if result.body_len > max_body:
                raise StreamError(f"body larger than {max_body} bytes")
            digest.update(event.data)
            if keep_body:
                body.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            break
        elif isinstance(event, h11.ConnectionClosed):
            raise StreamError("the server closed the connection before a complete response")
    result.body_sha256 = digest.hexdigest()
    result.body = b"".join(body) if keep_body else None
    result.first_byte_us = _us(first, start)
    result.total_us = _us(last, start)
