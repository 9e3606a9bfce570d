"""What answers at a `pktlab broker status --url` that gave no status page: the broker's
TLS port at an http:// URL said `Remote end closed connection without response`, and a
plain HTTP page at an https:// URL a handshake timeout (session 31, bstat31); that one is
now told before the fetch, in a round trip (session 32, ops32)."""

from __future__ import annotations

import socket
import ssl
import urllib.parse

PROBE_SECONDS = 2.0


def _client_hello() -> bytes:
    """A TLS ClientHello's bytes (no certificate checked: nothing is sent after it)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    out = ssl.MemoryBIO()
    tls = ctx.wrap_bio(ssl.MemoryBIO(), out)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def speaks_tls(host: str, port: int, timeout: float = PROBE_SECONDS) -> bool:
    """Whether the server answers a TLS ClientHello with a TLS record (a handshake or an
    alert): the first bytes only."""
    return _first_bytes(host, port, _client_hello(), timeout)[:1] in (b"\x16", b"\x15")


HELLO_SECONDS = 1.0


def plain_http_at(url: str, timeout: float = HELLO_SECONDS) -> str | None:
    """For an https:// URL whose server is plain HTTP, the clause saying so; else None.
    A plain server waits for the end of the line a TLS hello started (the broker's page,
    Twisted's, for the handshake's whole 5 s unless its random bytes hold a line feed):
    the hello is sent with a blank line after it, which such a server answers at once with
    a 400; a TLS server answers the hello itself first (a handshake record)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https":
        return None
    host, port = parts.hostname or "", parts.port or 443
    if not _first_bytes(host, port, _client_hello() + b"\r\n\r\n", timeout).startswith(b"HTTP/"):
        return None
    plain = urllib.parse.urlunsplit(("http", *parts[1:]))
    return f"a plain HTTP server answered the TLS hello (the status page serves HTTP: {plain})"


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
    """One clause for the error line when a TLS server answered at an http:// URL, or the
    broker's TLS port (its certificate not one a web client knows) at an https:// one;
    None when not (the usual reason stands)."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    named = [k for k, v in listens.items() if k != "StatusListen" and port_at(v) == port]
    if parts.scheme == "https":  # a TLS server: but another's, unless the home names it
        if not named:
            return None
    elif not speaks_tls(host, port):
        return None
    which = f" ({named[0]} of the home's broker.conf)" if named else ""
    if status_url is not None:
        page = f"the status page is {status_url}"
    elif listens:
        page = "StatusListen is not set in the home's broker.conf: the broker serves no page"
    else:
        page = "StatusListen in broker.conf says where the page is"
    return f"a TLS port{which}, not the status page; {page}"
