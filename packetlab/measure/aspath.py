"""AS path lookups of hop addresses, as Butskoy traceroute -A does them.

traceroute -A asks a routing registry's whois server (the environment's ``RA_SERVER``,
default ``whois.radb.net``, on service ``RA_SERVICE``, default ``nicname``: port 43) about
each hop address it prints: one TCP connection per query, the address and CRLF sent, the
answer read to its end. Of the RPSL objects in the answer, the ``origin:`` of the
``route:``/``route6:`` objects with the longest prefix win, several joined by ``/``
(``AS64500/AS64501``); no origin at all is ``*``; a failed connection is ``!!``
(`as_path_of`). The line shows it in brackets after the address: ``10.1.1.1 [AS64500]``.

Here the queries go from the controller's host (like the names of the in-process
endpoint; the endpoint has no TCP client of its own for them), each address once, with a
timeout (traceroute waits without one), at most `MAX_CONCURRENT` at once, at most
`MAX_ANSWER` bytes read of an answer and `MAX_CACHED` addresses kept.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from twisted.internet.defer import Deferred, DeferredSemaphore, succeed
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.python.failure import Failure

__all__ = [
    "DEFAULT_SERVER",
    "DEFAULT_SERVICE",
    "AsLookupError",
    "AsPaths",
    "WhoisQuery",
    "as_path_of",
    "resolve_server",
    "whois_server",
]

DEFAULT_SERVER = "whois.radb.net"  # traceroute's DEF_RADB_SERVER
DEFAULT_SERVICE = "nicname"  # its DEF_RADB_SERVICE (tcp/43)
MAX_PATH = 511  # traceroute's ra_buf[512]: a longer path is cut there
MAX_LINE = 1023  # its fgets into 1024 bytes: a longer line is read in pieces
MAX_ANSWER = 1 << 20  # bytes of one answer read at most (the rest is not waited for)
MAX_CACHED = 4096  # addresses whose paths are kept
TIMEOUT_S = 5.0  # one query, connection and answer
MAX_CONCURRENT = 16  # queries open at once (the rest wait their turn)


class AsLookupError(Exception):
    """The whois server's name or service cannot be resolved (traceroute exits 2 with
    ``SERVER/SERVICE: REASON``)."""


def _lines(text: str) -> list[str]:
    """`text` cut as fgets into traceroute's 1024-byte buffer cuts it."""
    out: list[str] = []
    for line in text.splitlines(keepends=True):
        while len(line) > MAX_LINE:
            out.append(line[:MAX_LINE])
            line = line[MAX_LINE:]
        out.append(line)
    return out


def as_path_of(answer: str) -> str:
    """The AS path traceroute -A prints for a whois `answer`: the origins of the
    longest-prefix ``route:``/``route6:`` objects joined by ``/`` (an origin before any
    route, or of a route without a prefix length, counts as prefix 0), ``*`` without
    any; traceroute's own rules (a new origin is only added when it is not already in
    the path as a whole element, as its ``strstr`` test finds the first occurrence;
    at most 511 characters) included."""
    path, prefix, best = "*", 0, 0
    for line in _lines(answer):
        if line.startswith(("route:", "route6:")):
            _, slash, rest = line.partition("/")
            digits = ""
            for ch in rest.lstrip():
                if not ch.isdigit():
                    break
                digits += ch
            prefix = int(digits) if slash and digits else 0
        elif line.startswith("origin:"):
            words = line[len("origin:") :].split()
            origin = words[0] if words else ""
            if prefix > best:
                best, path = prefix, origin[:MAX_PATH]
            elif prefix == best:
                if path == "*":  # traceroute copies over its initial "*"
                    path = origin[:MAX_PATH]
                    continue
                at = path.find(origin)
                after = path[at + len(origin) : at + len(origin) + 1] if at >= 0 else None
                if at < 0 or after not in ("", "/"):
                    path = (path + "/" + origin)[:MAX_PATH]
    return path


def whois_server(environ: dict[str, str] | None = None) -> tuple[str, str]:
    """(server, service) from ``RA_SERVER`` / ``RA_SERVICE``, traceroute's defaults."""
    env = os.environ if environ is None else environ
    return env.get("RA_SERVER") or DEFAULT_SERVER, env.get("RA_SERVICE") or DEFAULT_SERVICE


def resolve_server(server: str, service: str) -> tuple[str, int]:
    """The first address of `server` and the port of `service` (getaddrinfo, as
    traceroute); AsLookupError in its words (``SERVER/SERVICE: REASON``)."""
    try:
        infos = socket.getaddrinfo(server, service, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise AsLookupError(f"{server}/{service}: {reason}") from None
    host, port = infos[0][4][:2]
    return str(host), int(port)


class WhoisQuery(Protocol):
    """One query: `query` + CRLF sent on connection, the answer gathered to its end (at
    most `MAX_ANSWER` bytes: then the connection is dropped and what came is used);
    `done` fires with the AS path (`as_path_of`), or ``!!`` when the connection failed
    before an answer."""

    def __init__(self, query: str) -> None:
        self.query = query
        self.chunks: list[bytes] = []
        self.size = 0
        self.done: Deferred[str] = Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self.query.encode("ascii", "replace") + b"\r\n")

    def dataReceived(self, data: bytes) -> None:
        room = max(0, MAX_ANSWER - self.size)
        if room:
            self.chunks.append(data[:room])
        self.size += len(data)
        if self.size >= MAX_ANSWER and self.transport is not None:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:
        if not self.done.called:
            text = b"".join(self.chunks).decode("latin-1")
            self.done.callback(as_path_of(text))


class _Factory(ClientFactory):
    def __init__(self, query: WhoisQuery) -> None:
        self.query = query

    def buildProtocol(self, addr: Any) -> WhoisQuery:
        return self.query

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        if not self.query.done.called:
            self.query.done.callback("!!")


class AsPaths:
    """AS paths of addresses from the whois server at (`host`, `port`) (`resolve_server`
    finds them), asked from this host: `lookup(addr)` fires with the path and never
    fails; each address asked once however many callers wait for it, at most
    `MAX_CONCURRENT` queries open at once, each given `timeout` s (then ``!!``, as a
    failed connection), at most `MAX_CACHED` kept."""

    def __init__(self, reactor: Any, host: str, port: int, timeout: float = TIMEOUT_S) -> None:
        self.reactor, self.host, self.port, self.timeout = reactor, host, port, timeout
        self.paths: dict[str, str] = {}  # address -> AS path
        self._waiting: dict[str, list[Deferred[str]]] = {}
        self._slots = DeferredSemaphore(MAX_CONCURRENT)

    def lookup(self, addr: str) -> Deferred[str]:
        if addr in self.paths:
            return succeed(self.paths[addr])
        d: Deferred[str] = Deferred()
        waiting = self._waiting.get(addr)
        if waiting is not None:
            waiting.append(d)
            return d
        self._waiting[addr] = [d]
        asked = self._slots.run(self._ask, addr)
        asked.addErrback(lambda _: "!!").addCallback(self._got, addr)
        return d

    def _got(self, path: str, addr: str) -> None:
        if len(self.paths) >= MAX_CACHED:
            self.paths.pop(next(iter(self.paths)))  # the oldest
        self.paths[addr] = path
        for d in self._waiting.pop(addr, []):
            d.callback(path)

    def _ask(self, addr: str) -> Deferred[str]:
        query = WhoisQuery(addr)
        connector = self.reactor.connectTCP(
            self.host, self.port, _Factory(query), timeout=self.timeout
        )

        def late() -> None:
            if not query.done.called:
                query.done.callback("!!")
            connector.disconnect()

        timer = self.reactor.callLater(self.timeout, late)

        def stop(path: str) -> str:
            if timer.active():
                timer.cancel()
            return path

        return query.done.addBoth(stop)
