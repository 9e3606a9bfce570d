"""curl 7.88's -v lines about a transfer's connections, for `packetlab.measure.http`: one
taken from the cache, one being made (--connect-to, the DNS cache), one that failed, a
transfer's end on one (kept or closed), and the close_notify a TLS one gets when we close
it (curl's SSL_shutdown, -v or not)."""

from __future__ import annotations

from typing import Any

from OpenSSL import SSL

from packetlab.controller import AddressLike
from packetlab.measure.http_conn import Connections, _Conn
from packetlab.measure.http_message import _Hop, _Sink
from packetlab.measure.http_trace import Trace, info, pointer
from packetlab.measure.http_url import Url


def reusing(sink: _Sink, conn: _Conn, bundle: object, pending: bool = False) -> None:
    """curl's lines for a connection taken from its cache (url.c's ConnectionExists): an
    HTTP/2 one in use by other transfers is "multiplexed"; `pending`: the transfer
    waited for it (-Z's pipewait)."""
    trace = sink.trace
    if trace is None:
        return
    multiplex = found_bundle(sink, conn, bundle)
    if multiplex and conn.active > 0:
        info(trace, "Multiplexed connection found")
    info(trace, f"Re-using existing connection #{conn.number} with host {conn.host}")
    if pending:
        info(trace, "Transfer was pending, now try another")


def found_bundle(sink: _Sink, conn: _Conn, bundle: object) -> bool:
    """curl's first lines when its cache holds a connection to the host and port
    (url.c's ConnectionExists; its bundles are by host and port, whatever the scheme:
    `-L` from http to https on one port tells them too, then connects anew); whether
    `conn` multiplexes (HTTP/2)."""
    multiplex = conn.h2 is not None
    info(sink.trace, f"Found bundle for host: {pointer(bundle)} "
                     f"[{'can multiplex' if multiplex else 'serially'}]")  # fmt: skip
    if not multiplex and sink.http not in ("1.0", "1.1"):  # curl wanted HTTP/2
        info(sink.trace, "Can not multiplex, even if we wanted to")
    return multiplex


def dead(sink: _Sink, conn: _Conn, bundle: object) -> None:
    """curl's lines for a cached connection the server closed meanwhile (url.c's
    ConnectionExists, SocketIsDead): looked at, then closed, not reused."""
    trace = sink.trace
    if trace is None:
        return
    found_bundle(sink, conn, bundle)
    info(trace, f"Connection {conn.number} seems to be dead")
    info(trace, f"Closing connection {conn.number}")


def waiting(sink: _Sink, bundle: object) -> None:
    """curl -Z's lines for a transfer that waits for a first connection to its origin to
    learn whether it multiplexes (curl's pipewait)."""
    info(sink.trace, f"Found bundle for host: {pointer(bundle)} [serially]")
    info(sink.trace, "Server doesn't support multiplex yet, wait")
    info(sink.trace, "No connections available.")


def connecting_to(trace: Trace | None, u: Url, where: tuple[str, int],
                  address: AddressLike | None, given: bool) -> None:  # fmt: skip
    """curl's --connect-to lines for a hop to `where` (host, port), told before it looks
    for a connection to reuse (url.c's create_conn: parse_connect_to_slist, then
    ConnectionExists): a reused one, or a dead one closed, comes after them. `given`:
    http_get's own `connect_to` (curl's --connect-to ::ADDR:)."""
    if trace is None:
        return
    if given:
        info(trace, f"Connecting to hostname: {address}")
        return
    host, port = where
    if host != u.host:
        info(trace, f"Connecting to hostname: {host}")
    if port != u.port:
        info(trace, f"Connecting to port: {port}")


def connecting(trace: Trace, pool: Connections, u: Url, where: tuple[str, int],
               address: AddressLike | None, given: bool) -> None:  # fmt: skip
    """curl's lines before a new connection's "Trying" to `where` (host, port): its DNS
    cache, a --resolve entry, or an address it has connected to before (--connect-to's
    came before the cache was looked in: `connecting_to`)."""
    if given:
        return
    host, port = where
    seen = pool.looked_up
    key = (host.lower(), port)
    if address is not None and (key in seen or host != str(address)):
        info(trace, f"Hostname {host} was found in DNS cache")
    if address is not None and host == str(address):
        seen.add(key)  # curl: an address "resolved" is cached as well


def unconnected(trace: Trace, hop: _Hop, addr: Any, port: int, allowed: float) -> None:
    """curl's lines for a connect that failed: its words (`hop.said`), after the refusal's
    own line, or the one of --connect-timeout's end (`allowed` s, ms in curl's line)."""
    if "refused" in (hop.error or ""):
        info(trace, f"connect to {addr} port {port} failed: Connection refused")
    elif (hop.said or "").endswith("Timeout was reached"):
        info(trace, f"ipv{addr.version} connect timeout after {allowed * 1000:.0f}ms, move on!")
    info(trace, hop.said or hop.error or "")


def moved_on(trace: Trace | None, failure: str, addr: Any, port: int, allowed: float) -> None:
    """curl's line when a connect to one of several addresses failed and the next is
    tried (`failure`: ours for it; `allowed`: s the attempt had)."""
    if trace is None:
        return
    if "no answer to the SYN" in failure:
        info(trace, f"ipv{addr.version} connect timeout after {allowed * 1000:.0f}ms, move on!")
    elif "refused" in failure:
        info(trace, f"connect to {addr} port {port} failed: Connection refused")
    else:
        info(trace, failure)


def timed_out(hop: _Hop, ms: float, handshake: bool) -> str:
    """curl 7.88.1's words for -m's end (its %{errormsg}): in the TLS handshake "Connection
    timed out after N milliseconds", else what came of the body, "N out of SIZE bytes"
    when a Content-Length announced SIZE."""
    if handshake:
        return f"Connection timed out after {ms:.0f} milliseconds"
    size = None
    if hop.status is not None:
        size = next((v.strip() for k, v in hop.headers if k.lower() == "content-length"), None)
        chunked = any(k.lower() == "transfer-encoding" for k, _ in hop.headers)
        size = None if chunked or not (size or "").isdigit() else size
    got = f"{hop.body_len}" if size is None else f"{hop.body_len} out of {size}"
    return f"Operation timed out after {ms:.0f} milliseconds with {got} bytes received"


def died(hop: _Hop) -> bool:
    """Whether a hop over a reused connection failed before any answer came (the server
    closed it while idle): curl's Curl_retry_request, a fresh connection tried once."""
    return (hop.reused and hop.error is not None and hop.first is None
            and hop.exitcode in (52, 56))  # fmt: skip


def ended(trace: Trace, hop: _Hop, conn: _Conn) -> None:
    """curl's lines at a transfer's end on a connection: the error (ours, unless told in
    curl's words already), then the connection kept ("left intact") or closed."""
    if died(hop):  # curl's words; the retry follows (`_hop`)
        info(trace, "Connection died, retrying a fresh connect (retry count: 1)")
    elif hop.error is not None and hop.exitcode != 22 and not hop.told:  # (-f's: with the head)
        info(trace, hop.error)
    if conn.active > 0:  # (HTTP/2: other transfers' streams still on it: curl says nothing)
        return
    if conn.broken:
        info(trace, f"Closing connection {conn.number}")
    else:
        info(trace, f"Connection #{conn.number} to host {conn.shown or conn.host} left intact")


def close_notify(conn: _Conn) -> None:
    """A TLS connection closed by us: its close_notify first, as curl's SSL_shutdown
    (HTTP/1.1 after the handshake; one in error: nothing more sent)."""
    tls = conn.tls
    if tls is None or conn.tls_version is None or conn.h2 is not None:
        return
    try:
        tls.conn.shutdown()
        tls.flush()
    except SSL.Error:
        pass
