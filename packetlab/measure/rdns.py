"""Names of hop addresses (PTR lookups) asked from the endpoint, as traceroute shows them.

Native traceroute resolves each hop with the resolver of the host it runs on; here that
host is the endpoint, so the PTR queries go from the endpoint to its DNS server (from its
memory, `VMemLocalDNSAddrStr*`) with `packetlab.measure.dns`. Lookups run in parallel,
each address once; a failure (no server, no answer, NXDOMAIN) is a missing name, never an
error: the address is shown instead, as traceroute does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, succeed

if TYPE_CHECKING:
    from packetlab.controller import EndpointSession

__all__ = ["LocalNames", "ReverseNames"]


class _Names:
    """Each address looked up once, however many callers ask while it is in flight:
    `lookup(addr)` gives a new Deferred for each call (callers may chain it); the
    subclass's `_resolve` fires with the name or None and never fails."""

    def __init__(self) -> None:
        self.names: dict[str, str | None] = {}
        self._waiting: dict[str, list[Deferred[str | None]]] = {}

    def lookup(self, addr: str) -> Deferred[str | None]:
        if addr in self.names:
            return succeed(self.names[addr])
        d: Deferred[str | None] = Deferred()
        waiting = self._waiting.get(addr)
        if waiting is not None:
            waiting.append(d)
            return d
        self._waiting[addr] = [d]
        self._resolve(addr).addErrback(lambda _: None).addCallback(self._got, addr)
        return d

    def _resolve(self, addr: str) -> Deferred[str | None]:
        raise NotImplementedError

    def _got(self, name: str | None, addr: str) -> None:
        self.names[addr] = name
        for d in self._waiting.pop(addr, []):
            d.callback(name)


class ReverseNames(_Names):
    """PTR names from the endpoint's resolver: `lookup(addr)` fires with the name (no
    trailing dot) or None, within about `timeout` x `attempts` seconds."""

    def __init__(
        self,
        session: EndpointSession,
        server: str | None = None,
        timeout: float = 1.0,
        attempts: int = 2,
    ) -> None:
        super().__init__()
        self.session, self.server = session, server
        self.timeout, self.attempts = timeout, attempts
        self._no_server = False

    def _resolve(self, addr: str) -> Deferred[str | None]:
        # a name is a nicety: any failure shows the address (the errback in lookup)
        return Deferred.fromCoroutine(self._ptr(addr))

    async def _ptr(self, addr: str) -> str | None:
        if self._no_server:
            return None
        import dns.reversename  # here: dnspython's import is only paid when names are shown

        from packetlab.measure.dns import DnsError, dns_query

        qname = dns.reversename.from_address(addr).to_text()
        try:
            got = await dns_query(
                self.session,
                qname,
                "PTR",
                server=self.server,
                timeout=self.timeout,
                attempts=self.attempts,
                edns=False,
            )
        except DnsError:  # the endpoint has no DNS server: no names at all
            self._no_server = True
            return None
        ptrs = [a.data for a in got.answers if a.type == "PTR"]
        return ptrs[0].rstrip(".") if ptrs else None


class LocalNames(_Names):
    """Names of addresses from this host's own resolver (``getnameinfo``: /etc/hosts, then
    DNS), as native ping and traceroute look them up: for an endpoint that runs on this
    host (`pktlab run` without --listen). The same interface as `ReverseNames`; each
    lookup runs in the reactor's thread pool, each address once."""

    def __init__(self, reactor: Any) -> None:
        super().__init__()
        self.reactor = reactor

    def _resolve(self, addr: str) -> Deferred[str | None]:
        from twisted.internet.threads import deferToThreadPool

        return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), _host_name, addr)


def _host_name(addr: str) -> str | None:
    """getnameinfo's name for `addr`, None when it has none."""
    import socket

    try:
        name, _ = socket.getnameinfo((addr, 0), socket.NI_NAMEREQD)
    except (OSError, UnicodeError):
        return None
    return name or None
