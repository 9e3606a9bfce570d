"""What a transfer of `packetlab.measure.http` tells as it goes, as curl 7.88's debug
callback is told (CURLOPT_DEBUGFUNCTION): informational text in libcurl's words
(`TEXT`, one line with its "\\n"), the request's head and body as sent (`HEADER_OUT`,
`DATA_OUT`), each response header line and the body bytes as received (`HEADER_IN`,
`DATA_IN`; a chunked body with its framing, as curl's), and what OpenSSL's message
callback tells of TLS (`SSL_DATA_OUT`, `SSL_DATA_IN`: each message and record header, a
line for each message). `packetlab.cli.curl_trace` prints them as curl -v, --trace and
--trace-ascii do. Only what is known is told (docs/http.md, "Verbose and trace"); the
pointers curl prints (`Found bundle for host: %p`) are our objects' ids."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from packetlab.measure.certname import name_check

Trace = Callable[[str, bytes], object]  # (kind, bytes): one debug callback
TEXT, HEADER_OUT, DATA_OUT = "text", "header_out", "data_out"
HEADER_IN, DATA_IN = "header_in", "data_in"


def info(trace: Trace | None, text: str) -> None:
    """libcurl's infof: one line of text."""
    if trace is not None:
        trace(TEXT, text.encode("utf-8", "surrogateescape") + b"\n")


def lines(raw: bytes) -> list[bytes]:
    """A header block's lines, each with its line end (as curl hands them over one by
    one)."""
    out, start = [], 0
    while start < len(raw):
        end = raw.find(b"\n", start)
        end = len(raw) if end < 0 else end + 1
        out.append(raw[start:end])
        start = end
    return out


def header_in(trace: Trace | None, raw: bytes, rewind: bool = False,
              cookies: list[str | None] | None = None) -> None:  # fmt: skip
    """A response's header block (1xx ones before it included), line by line, with
    curl's notes where it makes them: an HTTP/1.0 answer's close, and (`rewind`: a
    redirect to follow after a body was sent) "Please rewind output before next
    send" at its Location line; `cookies`: the cookie engine's line for each Set-Cookie
    line in turn (None: none), told before it."""
    if trace is None:
        return
    notes = list(cookies or [])
    for line in lines(raw):
        if line.startswith(b"HTTP/1.0 "):
            info(trace, "HTTP 1.0, assume close after body")
        low = line.lower()
        if rewind and low.startswith(b"location:"):
            info(trace, "Please rewind output before next send")
            rewind = False
        if low.startswith(b"set-cookie:") and notes:
            note = notes.pop(0)
            if note is not None:
                info(trace, note)
        if low.startswith(b"connection:") and b"keep-alive" in low and raw.startswith(b"HTTP/1.0"):
            info(trace, "HTTP/1.0 connection set to keep alive")
        trace(HEADER_IN, line)


def pointer(thing: object) -> str:
    """curl's %p of a thing of ours (its id: no two live things share one)."""
    return f"0x{id(thing):x}"


_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def asn1_time(stamp: bytes | None) -> str:
    """OpenSSL's ASN1_TIME_print of a certificate's time (`Dec  4 17:52:48 2026 GMT`)."""
    if not stamp:
        return ""
    import datetime  # (not on `run http --help`'s path)

    t = datetime.datetime.strptime(stamp.decode()[:14], "%Y%m%d%H%M%S")
    return f"{_MONTHS[t.month - 1]} {t.day:2d} {t:%H:%M:%S} {t.year} GMT"


def name(x509name: Any) -> str:
    """X509_NAME_print_ex with XN_FLAG_SEP_SPLUS_SPC (curl's) of a cryptography Name:
    `C=US; O=Org; CN=host`, OpenSSL's short names."""
    parts = []
    for rdn in x509name.rdns:
        for a in rdn:
            key = a.rfc4514_attribute_name
            key = "emailAddress" if key == "1.2.840.113549.1.9.1" else key
            parts.append(f"{key}={a.value}")
    return "; ".join(parts)


def certificate(trace: Trace | None, conn: Any, host: str, is_address: bool,
                verify: bool) -> bool:  # fmt: skip
    """curl 7.88's "Server certificate:" lines (openssl.c's servercert) for a finished
    handshake: subject, dates, the name check (only when verified, as curl's verifyhost),
    issuer, the chain's verification. False: the name did not match (curl's words for
    it told, the rest not)."""
    if trace is None:
        return True
    cert = conn.get_peer_certificate()
    if cert is None:
        return True
    info(trace, "Server certificate:")
    c = cert.to_cryptography()
    info(trace, f" subject: {name(c.subject)}")
    info(trace, f" start date: {asn1_time(cert.get_notBefore())}")
    info(trace, f" expire date: {asn1_time(cert.get_notAfter())}")
    if verify and not _alt_name(trace, cert, host, is_address):
        return False
    info(trace, f" issuer: {name(c.issuer)}")
    from OpenSSL._util import lib  # (pyOpenSSL has no get_verify_result)

    code = lib.SSL_get_verify_result(conn._ssl)
    if code == 0:
        info(trace, " SSL certificate verify ok.")
    else:
        from packetlab.measure.http_tls import VERIFY_ERRORS

        why = VERIFY_ERRORS.get(code, f"X509 verify error {code}")
        info(trace, f" SSL certificate verify result: {why} ({code}), continuing anyway.")
    return True


def _alt_name(trace: Trace, cert: Any, host: str, is_address: bool) -> bool:
    """curl's verifyhost lines (`name_check`); False (curl's words said) when no name
    matched."""
    matched, said = name_check(cert, host, is_address)
    for line in said:
        info(trace, line)
    return matched


def sent_out(trace: Trace | None, request: bytes) -> None:
    """An HTTP/1.1 request as written: its head (HEADER_OUT), then the body sent with
    it (DATA_OUT), as curl hands them over."""
    if trace is None:
        return
    end = request.find(b"\r\n\r\n")
    head = request if end < 0 else request[: end + 4]
    trace(HEADER_OUT, head)
    if request[len(head) :]:
        trace(DATA_OUT, request[len(head) :])


def h2_request(trace: Trace, method: str, scheme: str, authority: str | None, target: str,
               fields: list[tuple[str, str]], sid: int, handle: object) -> None:  # fmt: skip
    """curl 7.88's lines before an HTTP/2 request is sent (h2h3.c, http2.c): each header
    as sent (`h2h3 [name: value]`; `authority` None: no :authority), the stream."""
    rest = [(k.lower(), v) for k, v in fields if k.lower() != "host"]
    pseudo = [(":method", method), (":path", target), (":scheme", scheme)]
    if authority is not None:
        pseudo.append((":authority", authority))
    for k, v in pseudo + rest:
        info(trace, f"h2h3 [{k}: {v}]")
    info(trace, f"Using Stream ID: {sid} (easy handle {pointer(handle)})")


def h2_head(trace: Trace, method: str, authority: str | None, target: str,
            fields: list[tuple[str, str]]) -> None:  # fmt: skip
    """An HTTP/2 request's head as curl 7.88 shows it once sent (`METHOD PATH HTTP/2`,
    Host (none when removed), the other fields in lower case as sent)."""
    rest = [(k.lower(), v) for k, v in fields if k.lower() != "host"]
    head = f"{method} {target} HTTP/2\r\n"
    head += "" if authority is None else f"Host: {authority}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in rest) + "\r\n"
    trace(HEADER_OUT, head.encode("latin-1", "replace"))


def tls_offered(trace: Trace, http: str | None) -> None:
    """curl 7.88's line before a TLS handshake (OpenSSL's): ALPN offered."""
    offers = {"1.1": "http/1.1", "1.0": "http/1.0"}.get(http or "", "h2,http/1.1")
    info(trace, f"ALPN: offers {offers}")


def tls_done(trace: Trace, tls: Any, verify: bool) -> bool:
    """curl 7.88's lines after a TLS handshake: the version and cipher, ALPN's answer,
    the server certificate (then the caller's `using HTTP/2` or `using HTTP/1.x`); False
    when the certificate does not name the host (curl's words for it said)."""
    conn = tls.conn
    info(trace, f"SSL connection using {conn.get_protocol_version_name()} / "
                f"{conn.get_cipher_name()}")  # fmt: skip
    alpn = conn.get_alpn_proto_negotiated()
    if alpn:
        info(trace, f"ALPN: server accepted {alpn.decode('latin-1')}")
    else:
        info(trace, "ALPN: server did not agree on a protocol. Uses default.")
    return certificate(trace, conn, tls.url.host, tls.url.host_is_address, verify)


SSL_DATA_IN, SSL_DATA_OUT = "ssl_data_in", "ssl_data_out"
_RT = {20: "TLS change cipher", 21: "TLS alert", 22: "TLS handshake", 23: "TLS app data"}
_MT = {0: "Hello request", 1: "Client hello", 2: "Server hello", 4: "Newsession Ticket",
       5: "End of early data", 8: "Encrypted Extensions", 11: "Certificate",
       12: "Server key exchange", 13: "Request CERT", 14: "Server finished",
       15: "CERT verify", 16: "Client key exchange", 20: "Finished",
       22: "Certificate Status", 23: "Supplemental data", 24: "Key update",
       67: "Next protocol", 254: "Message hash"}  # fmt: skip
_VERSIONS = {0x300: "SSLv3", 0x301: "TLSv1.0", 0x302: "TLSv1.1", 0x303: "TLSv1.2",
             0x304: "TLSv1.3"}  # fmt: skip
_ALERTS = {0: "close notify", 10: "unexpected_message", 20: "bad record mac",
           40: "handshake failure", 42: "bad certificate", 43: "unsupported certificate",
           44: "certificate revoked", 45: "certificate expired", 46: "certificate unknown",
           47: "illegal parameter", 48: "unknown CA", 50: "decode error",
           51: "decrypt error", 70: "protocol version", 80: "internal error",
           90: "user canceled", 109: "missing extension", 112: "unrecognized name",
           116: "certificate required", 120: "no application protocol"}  # fmt: skip
# an SSL's address: its trace, the tickets it got, lines to tell after its ClientHello
_WATCHED: dict[int, tuple[Trace, list[int], list[str]]] = {}
_CALLBACK: list[Any] = []  # the one cffi callback (kept alive)


def tls_messages(ctx: Any) -> None:
    """OpenSSL's message callback on `ctx` (before a connection is made of it): each
    connection `watch_tls` names tells its trace what curl's callback (openssl.c's
    ossl_trace) is told: each TLS message as a line (`TLSv1.3 (OUT), TLS handshake,
    Client hello (1):`) and its bytes, a record header's too, as SSL data."""
    from OpenSSL._util import ffi, lib

    if not _CALLBACK:
        _CALLBACK.append(ffi.callback(
            "void (*)(int, int, int, const void *, size_t, SSL *, void *)", _message))  # fmt: skip
    lib.SSL_CTX_set_msg_callback(ctx._context, _CALLBACK[0])


def watch_tls(conn: Any, trace: Trace, cafile: str | None) -> None:
    """`conn`'s messages to `trace`; the CA file curl names after its ClientHello went
    (None: -k, not named; we use no CA directory: `CApath: none`)."""
    from OpenSSL._util import ffi

    after = [] if cafile is None else [f" CAfile: {cafile}", " CApath: none"]
    _WATCHED[int(ffi.cast("uintptr_t", conn._ssl))] = (trace, [0], after)


def unwatch_tls(conn: Any) -> None:
    from OpenSSL._util import ffi

    _WATCHED.pop(int(ffi.cast("uintptr_t", conn._ssl)), None)


def _message(out: int, version: int, content: int, buf: Any, size: int, ssl: Any,
             arg: Any) -> None:  # fmt: skip
    from OpenSSL._util import ffi

    watched = _WATCHED.get(int(ffi.cast("uintptr_t", ssl)))
    if watched is None or out not in (0, 1):
        return
    trace, tickets, after = watched
    data = bytes(ffi.buffer(buf, size))
    if version and content not in (256, 257) and data:  # not a record header, inner type
        kind = data[0] if content != 21 else (data[0] << 8) + data[1] if size > 1 else 0
        if content == 20:
            what = "Change cipher spec"
        elif content == 21:
            what = _ALERTS.get(kind & 0xFF, "unknown")
        else:
            what = _MT.get(kind, "Unknown")
        verstr = _VERSIONS.get(version, f"({version:x})")
        rt = _RT.get(content, "TLS Unknown") if version >> 8 == 3 else ""
        info(trace, f"{verstr} ({'OUT' if out else 'IN'}), {rt}, {what} ({kind}):")
    trace(SSL_DATA_OUT if out else SSL_DATA_IN, data)
    if out and content == 22 and data[:1] == b"\x01":  # the ClientHello went
        for line in after:
            info(trace, line)
        after.clear()
    if not out and content == 22 and data[:1] == b"\x04":  # curl's session cache: the
        tickets[0] += 1  # later tickets replace the first
        if tickets[0] > 1:
            info(trace, "old SSL session ID is stale, removing")


def auth(trace: Trace | None, own: list[tuple[str, str]], user: str = "",
         scheme: str = "") -> None:  # fmt: skip
    """curl's line for -u's credentials (or --oauth2-bearer's token) in a request (its
    own Authorization field); `user`: -u's or the URL's, which curl names for a Bearer;
    `scheme` "Digest": --digest's first request, which curl tells without a field."""
    if trace is None:
        return
    value = next((v for k, v in own if k == "Authorization"), None)
    if value is not None and value.startswith("Digest "):
        value, scheme = None, "Digest"
    if value is None and scheme:
        info(trace, f"Server auth using {scheme} with user '{user}'")
        return
    if value is not None and value.startswith("Basic "):
        from packetlab.measure.http_fields import basic_user

        info(trace, f"Server auth using Basic with user '{basic_user(value)}'")
    elif value is not None and value.startswith("Bearer "):
        info(trace, f"Server auth using Bearer with user '{user}'")


def with_credentials(url: str, basic: str | None) -> str:
    """`url` with -u's USER:PASSWORD in it, as curl's URL API writes them (each part
    percent-encoded, lower-case hex)."""
    if basic is None or "://" not in url:
        return url
    import base64
    import re
    from urllib.parse import quote

    user, _, password = base64.b64decode(basic[6:]).decode("utf-8", "replace").partition(":")

    def enc(text: str) -> str:
        return re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), quote(text, safe=""))

    scheme, rest = url.split("://", 1)
    return f"{scheme}://{enc(user)}:{enc(password)}@{rest}"
