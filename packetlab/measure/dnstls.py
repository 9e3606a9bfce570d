"""DNS over TLS (dig +tls, RFC 7858) and over HTTPS (dig +https, RFC 8484) with `run
http`'s TLS and client (measure.http): `DotClient` wraps the endpoint's TCP stream that
`dnstransport._over_tcp` opened, `DohClient` asks with `http_get`. Apart from
dnstransport and dns.py (which take them by their protocols, `TlsWrap` and
`DohExchange`): measure.http asks DNS through dns_query, so neither imports this."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dns.message

from packetlab.clockstep import steady
from packetlab.controller import AddressLike, EndpointSession
from packetlab.measure.dnsparse import _fill, _stream_reply, _verify
from packetlab.measure.dnsquery import _render
from packetlab.measure.dnsresult import DnsResult
from packetlab.measure.dnstransport import TCP_MAX, _TlsVerify
from packetlab.measure.pcap import PcapRecorder

if TYPE_CHECKING:
    from packetlab.measure.stream import TcpStream


class DotClient:
    """dig +tls: DNS over TLS (RFC 7858) at the controller over the endpoint's TCP
    connection, with `run http`'s TLS (measure.http's client context and memory-BIO
    connection). dig 9.18 checks no certificate unless +tls-ca is given (`cafile` a file,
    or "" the system store); `hostname` (+tls-hostname, else the server) is the name
    checked and, when not an address, the SNI; `cert` (+tls-certfile, +tls-keyfile: PEM
    files) the client's certificate chain and key, SSL.Error when they cannot be used."""

    def __init__(self, verify: bool = False, cafile: str | None = None,
                 hostname: str | None = None,
                 cert: tuple[str, str] | None = None) -> None:  # fmt: skip
        from packetlab.measure.http_tls import client_context

        own = None if cert is None else (cert[0], cert[1], None)
        self.ctx = client_context(cafile=cafile or None, insecure=not verify, cert=own)
        self.hostname = hostname

    async def wrap(self, stream: TcpStream, server: str, timeout: float) -> Any:
        """The TLS connection over `stream`, its handshake done; StreamError when it
        fails, dig's words (`TLS peer certificate verification ... failed: REASON`)."""
        from OpenSSL import SSL

        from packetlab.measure.http_tls import CertificateMismatch, TlsLink, tls_error
        from packetlab.measure.http_url import Url
        from packetlab.measure.stream import StreamError

        tls = TlsLink(self.ctx, Url("https", self.hostname or server, stream.rport, "/"), stream)
        try:
            await tls.handshake(steady(stream.session.reactor) + timeout)
        except CertificateMismatch as e:
            raise _TlsVerify(_verify_failed(str(e), server, stream.rport)) from None
        except SSL.Error as e:
            raise StreamError(tls_error(e)) from None
        return tls


class DohClient:
    """dig +https, +https-get, +http-plain[-get]: DNS over HTTPS (RFC 8484) with `run
    http`'s client (measure.http.http_get: HTTP/2, offered by ALPN over TLS, h2c with
    prior knowledge in plain HTTP): the query POSTed to `path` as
    application/dns-message, or with `get` in `?dns=` (base64url, unpadded). Certificates
    as `DotClient`'s: none checked unless `verify` (+tls-ca); `cert` the client's."""

    def __init__(self, tls: bool = True, path: str = "/dns-query", get: bool = False,
                 verify: bool = False, cafile: str | None = None,
                 hostname: str | None = None,
                 cert: tuple[str, str] | None = None) -> None:  # fmt: skip
        self.tls, self.path, self.get = tls, path, get
        self.verify, self.cafile, self.hostname, self.cert = verify, cafile, hostname, cert

    @property
    def proto(self) -> str:
        """dig's word for it on the SERVER line: HTTPS, HTTPS-GET, HTTP, HTTP-GET."""
        return ("https" if self.tls else "http") + ("-get" if self.get else "")

    async def ask(
        self,
        session: EndpointSession,
        query: dns.message.Message,
        result: DnsResult,
        server: AddressLike,
        timeout: float,
        recorder: PcapRecorder | None = None,
    ) -> None:
        """The query over DNS over HTTPS, into `result` (dnstransport.DohExchange)."""
        await _over_https(session, query, result, server, timeout, self, recorder)


async def _over_https(
    session: EndpointSession,
    query: dns.message.Message,
    result: DnsResult,
    server: AddressLike,
    timeout: float,
    doh: DohClient,
    recorder: PcapRecorder | None = None,
) -> None:
    """A query over DNS over HTTPS (`DohClient`), into `result`."""
    import base64

    from packetlab.measure.http import http_get
    from packetlab.measure.http_message import Asked

    wire = _render(query)
    result.proto = doh.proto
    host = doh.hostname or str(server)
    where = f"[{host}]" if ":" in host else host
    url = f"{'https' if doh.tls else 'http'}://{where}:{result.port}{doh.path}"
    headers = [("Accept", "application/dns-message"),
               ("Cache-Control", "no-cache, no-store, must-revalidate")]  # fmt: skip
    if doh.get:
        url += ("&" if "?" in doh.path else "?") + "dns="
        url += base64.urlsafe_b64encode(wire).decode().rstrip("=")
    else:
        headers.insert(0, ("Content-Type", "application/dns-message"))
    got = await http_get(
        session, url, connect_to=server, cafile=doh.cafile or None, insecure=not doh.verify,
        timeout=timeout, connect_timeout=timeout, headers=headers,
        method=None if doh.get else "POST", data=None if doh.get else wire, keep_body=True,
        max_body=TCP_MAX - 2,  # a DNS message at most
        recorder=recorder, http_version=None if doh.tls else "2-prior",
        asked=Asked(client_cert=None if doh.cert is None else (*doh.cert, None)),
    )  # fmt: skip
    if got.error is not None and got.error.startswith(
        ("TLS: certificate verify failed: ", "TLS: the certificate is not valid for ")
    ):  # fmt: skip
        result.error, result.error_kind = _verify_failed(got.error, str(server), result.port), "tls"
        return
    if got.error is not None:
        result.error = got.error
        result.error_kind = "refused" if "refused" in got.error else "tcp"
        return
    if got.status != 200 or got.body is None:
        result.error = f"{result.server}#{result.port} answered HTTP status {got.status}"
        result.error_kind = "tcp"
        return
    msg = _stream_reply(query, got.body, result, "HTTP")
    if msg is None:
        return
    if got.first_byte_us is not None and got.pretransfer_us is not None:
        result.rtt_us = max(got.first_byte_us - got.pretransfer_us, 0.0)
    _fill(result, msg, got.body)
    _verify(result, query, got.body)


def _verify_failed(why: str, server: str, port: int) -> str:
    """dig's line for a certificate `run http`'s TLS refused (`why`, its words)."""
    why = ("hostname mismatch" if "not valid for" in why else
           why.partition("failed: ")[2].partition(" (")[0] or why)  # fmt: skip
    return f"TLS peer certificate verification for {server}#{port} failed: {why}"
