"""TLS at the controller for `packetlab.measure.http`: a pyOpenSSL connection over memory
BIOs on an endpoint TCP stream, its context (system store or `cafile`, SNI) and its
errors in curl's words."""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from typing import Any

from OpenSSL import SSL
from twisted.internet.defer import Deferred

from packetlab.clockstep import steady
from packetlab.measure.http_url import Url
from packetlab.measure.stream import (
    Chunk,
    StreamError,
    TcpStream,
)
from packetlab.wire import Ntag

CA_FILES = (  # where curl and Python find the system store on common distributions
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
)


def use_private_key(ctx: SSL.Context, path: str, phrase: bytes | None) -> None:
    """The key in PEM file `path`, unlocked with `phrase` if given (an encrypted key
    without one, or a wrong one: SSL.Error or ValueError)."""
    if phrase is None:
        ctx.use_privatekey_file(path)
        return
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    with open(path, "rb") as f:
        key = load_pem_private_key(f.read(), phrase)
    ctx.use_privatekey(key)  # type: ignore[arg-type]


def ca_file() -> str | None:
    """The system store's CA file (curl's default CAfile), None when there is none."""
    system = [ssl.get_default_verify_paths().cafile, *CA_FILES]
    return next((p for p in system if p and os.path.isfile(p)), None)


def client_context(
    *,
    cafile: str | None = None,
    insecure: bool = False,
    alpn: list[bytes] | None = None,
    cert: tuple[str, str | None, bytes | None] | None = None,
) -> SSL.Context:
    """TLS 1.2+ client context: peer verification against `cafile` or the system store,
    none with `insecure`; `alpn` the protocols offered (curl's: h2, http/1.1); `cert`
    (curl --cert FILE, --key KEY: PEM; the key in FILE without one; the key's passphrase)
    the client's certificate chain and key (SSL.Error when they cannot be used)."""
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    if alpn:
        ctx.set_alpn_protos(alpn)
    if cert is not None:
        ctx.use_certificate_chain_file(cert[0])
        use_private_key(ctx, cert[1] or cert[0], cert[2])
        ctx.check_privatekey()
    if insecure:
        ctx.set_verify(SSL.VERIFY_NONE)
        return ctx
    trusted = cafile
    if cafile is not None:
        ctx.load_verify_locations(cafile)
    else:
        found = ca_file()
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
            text = f"{reason} ({where}, {subject}; trusted: {trusted})"
            conn.set_app_data((reason, text, errno))
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


def tls_error(e: SSL.Error) -> str:
    """An OpenSSL error as one line (`TLS: REASON; REASON`): the words curl and dig show."""
    reasons = [str(a[2]) for a in (e.args[0] if e.args and isinstance(e.args[0], list) else [])]
    return "TLS: " + ("; ".join(reasons) if reasons else str(e) or type(e).__name__)


class TlsLink:
    """A client TLS connection over memory BIOs, fed with the endpoint's chunks."""

    def __init__(self, ctx: SSL.Context, url: Url, stream: TcpStream) -> None:
        self.conn = SSL.Connection(ctx, None)
        if not url.host_is_address:
            self.conn.set_tlsext_host_name(url.host.encode("idna"))
        self.conn.set_connect_state()
        self.stream = stream
        self.url = url
        # with -v/--trace: records taken in one at a time, as curl's reads take them, so
        # that what each tells comes in curl's order (`pending`: the records not yet in)
        self.stepwise = False
        self.pending = bytearray()
        self.last: Chunk | None = None
        # each chunk the handshake takes in, once OpenSSL has taken it in (`run sslcert`:
        # when the certificates came; the raw records, for a plaintext alert or non-TLS)
        self.on_chunk: Callable[[Chunk], object] | None = None

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

    async def handshake(self, deadline: float, check_name: bool = True) -> int:
        """Run the handshake; the endpoint time of the chunk that completed it. The
        certificate's name is checked after it (`check_name` False: `check_name()`
        later)."""
        clock = self.stream.session.reactor
        when = self.stream.established_at
        fed: Chunk | None = None
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
                text = f"TLS: certificate verify failed: {why[1]}"
                curl = f"SSL certificate problem: {why[0]}"
                raise CertificateMismatch(text, curl, verify_result=why[2]) from None
            finally:  # (OpenSSL has taken `fed` in: its certificates are known, or not)
                if fed is not None and self.on_chunk is not None:
                    self.on_chunk(fed)
            self.flush()
            chunk = await self.stream.recv(max(deadline - steady(clock), 0.0))
            if chunk is None:
                raise HandshakeClosed("the server closed the connection during the TLS handshake")
            self.conn.bio_write(chunk.data)
            when, fed = chunk.time, chunk
        self.flush()  # the client Finished
        if check_name:
            self.check_name()
        return when

    def check_name(self) -> None:
        if self.conn.get_context().get_verify_mode() == SSL.VERIFY_NONE:
            return
        from packetlab.measure.certname import name_check

        # curl's rules, as its verbose lines say them (`certname`): a certificate with
        # no subjectAltName is checked by its common name (service_identity refused it
        # with a CertificateError, an internal error here).
        cert = self.conn.get_peer_certificate()
        matched, lines = (False, []) if cert is None else name_check(
            cert, self.url.host, self.url.host_is_address)  # fmt: skip
        if not matched:  # (curl's words, the last of its lines: -v told them already)
            raise CertificateMismatch(f"TLS: the certificate is not valid for {self.url.host}",
                                      said=lines[-1] if lines else None)  # fmt: skip

    def send(self, data: bytes) -> Deferred[Ntag] | None:
        """Encrypt and send `data`; the Deferred of its (last) nsend's ntag."""
        self.conn.sendall(data)
        return self.flush(ntag=True)

    def feed(self, chunk: Chunk | None) -> tuple[bytes, bool]:
        """Decrypt what `chunk` brought: (plaintext, closed). None = the TCP EOF.
        `stepwise`: up to the first record with plaintext (`more`: records left)."""
        if chunk is None:
            if self.pending:
                self.conn.bio_write(bytes(self.pending))
                self.pending.clear()
            self.conn.bio_shutdown()
        elif self.stepwise:
            self.last = chunk
            self.pending += chunk.data
            return self._records()
        else:
            self.conn.bio_write(chunk.data)
        return self._plain(chunk is None)

    def more(self) -> bool:
        """A whole record is waiting to be taken in (`stepwise`; `next` takes it)."""
        p = self.pending
        return len(p) >= 5 and len(p) >= 5 + int.from_bytes(p[3:5], "big")

    def next(self) -> tuple[bytes, bool]:
        return self._records()

    def _records(self) -> tuple[bytes, bool]:
        while self.more():
            size = 5 + int.from_bytes(self.pending[3:5], "big")
            self.conn.bio_write(bytes(self.pending[:size]))
            del self.pending[:size]
            plain, closed = self._plain(False)
            if plain or closed:
                return plain, closed
        return b"", False

    def _plain(self, eof: bool) -> tuple[bytes, bool]:
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
        return bytes(out), eof


class HandshakeClosed(StreamError):
    """The server closed the connection before the TLS handshake ended: curl's 35
    (`SSL_ERROR_SYSCALL`); it was our 56, a failed read after the handshake."""

    exitcode = 35


class CertificateMismatch(Exception):
    """The server's certificate is not trusted or does not name the host asked for
    (curl's exit 60); `curl`: curl's words for it, when they differ from ours;
    `verify_result` OpenSSL's X509_V_ERR_* of the chain (curl's %{ssl_verify_result})."""

    def __init__(self, text: str, curl: str | None = None, verify_result: int = 0,
                 said: str | None = None) -> None:  # fmt: skip
        super().__init__(text)
        self.curl, self.verify_result = curl, verify_result
        self.said = said or curl  # curl's words (%{errormsg}), told to -v or not
