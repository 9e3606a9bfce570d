"""What answers at a `pktlab broker status --url` that gave no status page: the broker's
TLS port at an http:// URL said `Remote end closed connection without response`, and a
plain HTTP page at an https:// URL a handshake timeout (session 31, bstat31)."""

from __future__ import annotations

import socket
import ssl
import urllib.parse

PROBE_SECONDS = 2.0


def speaks_tls(host: str, port: int, timeout: float = PROBE_SECONDS) -> bool:
    """Whether the server answers a TLS ClientHello with a TLS record (a handshake or an
    alert): the first bytes only, no certificate checked, nothing else sent."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    out = ssl.MemoryBIO()
    tls = ctx.wrap_bio(ssl.MemoryBIO(), out)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return _first_bytes(host, port, out.read(), timeout)[:1] in (b"\x16", b"\x15")


def speaks_http(host: str, port: int, timeout: float = PROBE_SECONDS) -> bool:
    """Whether a plain `GET /` there is answered with an HTTP status line."""
    hello = f"GET / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode()
    return _first_bytes(host, port, hello, timeout).startswith(b"HTTP/")


def _first_bytes(host: str, port: int, hello: bytes, timeout: float) -> bytes:
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=timeout) as s:
            s.sendall(hello)
            return s.recv(16)
    except OSError:
        return b""


def listen_at(where: str | None) -> tuple[str, int] | None:
    """(host, port) a broker.conf listen string (`tcp:20558:interface=127.0.0.1`) names
    for a client on this host, else None."""
    from twisted.internet.endpoints import serverFromString

    try:
        ep = serverFromString(None, where) if where else None
    except (ValueError, KeyError, TypeError):
        return None
    port, iface = getattr(ep, "_port", None), getattr(ep, "_interface", "")
    if not isinstance(port, int) or port == 0:
        return None
    host = "127.0.0.1" if iface in ("", "0.0.0.0") else "[::1]" if iface == "::" else iface
    return f"[{host}]" if ":" in host and not host.startswith("[") else host, port


def port_at(where: str | None) -> int | None:
    at = listen_at(where)
    return None if at is None else at[1]


def what_answered(url: str, listens: dict[str, str | None], status_url: str | None) -> str | None:
    """One clause for the error line when a TLS server answered at an http:// URL or a
    plain HTTP server at an https:// one; None when neither (the usual reason stands)."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    if parts.scheme == "https":
        if not speaks_http(host, port):
            return None
        plain = urllib.parse.urlunsplit(("http", *parts[1:]))
        return f"a plain HTTP server answered the TLS hello (the status page serves HTTP: {plain})"
    if not speaks_tls(host, port):
        return None
    named = [k for k, v in listens.items() if k != "StatusListen" and port_at(v) == port]
    which = f" ({named[0]} of the home's broker.conf)" if named else ""
    if status_url is not None:
        page = f"the status page is {status_url}"
    elif listens:
        page = "StatusListen is not set in the home's broker.conf: the broker serves no page"
    else:
        page = "StatusListen in broker.conf says where the page is"
    return f"a TLS port{which}, not the status page; {page}"
