"""PPKS TLS factories and endpoints: `PPKSTLSFactory` stacks `PPKSTLSProtocol` and
`PeerGate` under an application factory; `PPKSClientEndpoint` and `PPKSServerEndpoint`
wrap any Twisted stream endpoint with it (server ports cap the connections still in the
handshake, `default_pending_max`).
"""

from __future__ import annotations

import time
from typing import Any, cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IAddress,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from zope.interface import implementer

from packetlab.addrshare import AddressShare, oldest_of_busiest
from packetlab.fdcap import default_pending_max
from packetlab.hostport import host_port

from .anytypes import (
    AnyClientEndpoint,
    AnyListeningPort,
    AnyProtocol,
    AnyProtocolFactory,
    AnyReactorTime,
    AnyServerEndpoint,
    RefusalDelay,
)
from .context import PPKSClientCreator, PPKSServerOptions
from .gate import PeerGate
from .protocol import PPKSTLSProtocol

__all__ = [
    "PPKSClientEndpoint",
    "PPKSServerEndpoint",
    "PPKSTLSFactory",
    "default_pending_max",
]


def _local(gate: PeerGate) -> str:
    """The listening address a server connection came in on, for log lines."""
    try:
        return host_port(cast(Any, gate.transport).getHost())
    except Exception:
        return "?"


class PPKSTLSFactory(TLSMemoryBIOFactory):
    """Wraps `wrapped_factory` in TLS with the PPKS check, one TLS record per write.

    `creator` is a `PPKSClientCreator` (is_client=True) or `PPKSServerOptions`.
    Listen with it, or connect with it (the returned protocol is the TLS one; use
    `PPKSClientEndpoint` to get the application protocol once the peer is verified).
    """

    # Not BufferingTLSTransport: it would join the writes of one reactor turn.
    protocol = PPKSTLSProtocol

    def __init__(
        self,
        creator: PPKSClientCreator | PPKSServerOptions,
        is_client: bool,
        wrapped_factory: AnyProtocolFactory,
        *,
        tcp_nodelay: bool = True,
        clock: AnyReactorTime | None = None,
        handshake_timeout: tuple[float, AnyReactorTime] | None = None,
        refusal_delay: RefusalDelay | None = None,
        pending_max: int | None = None,
    ) -> None:
        if is_client and not isinstance(creator, PPKSClientCreator):
            raise TypeError("a client PPKSTLSFactory needs a PPKSClientCreator")
        if not is_client and not isinstance(creator, PPKSServerOptions):
            raise TypeError("a server PPKSTLSFactory needs PPKSServerOptions")
        # The clock only serves BufferingTLSTransport, which we do not use; passing one
        # keeps the base class from importing the global reactor.
        super().__init__(
            cast(Any, creator),
            is_client,
            wrapped_factory,
            clock=cast(Any, clock or Clock()),
        )
        self.is_client = is_client
        self.tcp_nodelay = tcp_nodelay
        self.handshake_timeout = handshake_timeout
        self.refusal_delay = refusal_delay
        # At most so many connections in the handshake at once (None: no cap): each new
        # one past it closes the oldest of the address holding the most. Silent
        # connections otherwise each hold a descriptor and an OpenSSL session until the
        # handshake deadline, and once the descriptors run out Twisted closes every new
        # connection at accept (EMFILE), a real peer's too. The oldest of all was a real
        # peer's whenever a flood from one address came after it (`oldest_of_busiest`).
        self.pending_max = pending_max
        self.pending: dict[PeerGate, str] = {}  # oldest first -> the peer's host
        self.pending_by = AddressShare(time.monotonic)  # (its counts only)
        self.evicted = 0
        self._saturated = False
        self._where = "?"  # the port's address, for the episode's lines

    def buildProtocol(self, addr: IAddress | None) -> TLSMemoryBIOProtocol | None:  # type: ignore[override]
        app = self.wrappedFactory.buildProtocol(cast(IAddress, addr))
        if app is None:
            return None
        gate = PeerGate(
            app,
            is_client=self.is_client,
            tcp_nodelay=self.tcp_nodelay,
            handshake_timeout=self.handshake_timeout,
            refusal_delay=self.refusal_delay,
        )
        if self.pending_max is not None:
            self._admit(gate, str(getattr(addr, "host", "?")))
        return self.protocol(self, gate)

    def _admit(self, gate: PeerGate, host: str) -> None:
        assert self.pending_max is not None
        pending, by = self.pending, self.pending_by
        while pending and len(pending) >= self.pending_max:
            oldest = oldest_of_busiest(pending, by, pending.__getitem__)
            if not self._saturated:
                self._saturated = True
                self._where = _local(oldest)
                PeerGate.log.warn(
                    "TLS port {port}: {n} connections in the handshake (cap {cap}): "
                    "closing the oldest one of the address holding the most ({host}) "
                    "for each new one",
                    port=self._where,
                    n=len(pending),
                    cap=self.pending_max,
                    host=pending[oldest],
                )
            self.evicted += 1
            self._forget(oldest)
            oldest.evict(f"closed for a newer connection ({self.pending_max} in the handshake)")
        pending[gate] = host
        by.add(host)
        gate.on_settled = self._settled

    def _forget(self, gate: PeerGate) -> None:
        host = self.pending.pop(gate, None)
        if host is not None:
            self.pending_by.remove(host)

    def _settled(self, gate: PeerGate) -> None:
        self._forget(gate)
        if self._saturated and len(self.pending) < (self.pending_max or 0) * 3 // 4:
            self._saturated = False
            PeerGate.log.info(
                "TLS port {port}: {n} connections in the handshake, under the cap again "
                "(closed so far for newer ones: {evicted})",
                port=self._where,
                n=len(self.pending),
                evicted=self.evicted,
            )


@implementer(IStreamClientEndpoint)
class PPKSClientEndpoint:
    """Connects over `endpoint` with TLS + the PPKS check. `connect(factory)` fires with
    the application protocol once the server is verified, or fails with
    `PeerVerificationError` (or the endpoint's connection error)."""

    def __init__(
        self,
        endpoint: AnyClientEndpoint,
        creator: PPKSClientCreator,
        *,
        tcp_nodelay: bool = True,
        handshake_timeout: tuple[float, AnyReactorTime] | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._creator = creator
        self._tcp_nodelay = tcp_nodelay
        # (seconds, clock): a server silent in the handshake is given up on (the connect
        # fails), as the server side cuts off a silent client
        self._handshake_timeout = handshake_timeout

    def connect(self, protocolFactory: AnyProtocolFactory) -> Deferred[AnyProtocol]:
        factory = PPKSTLSFactory(
            self._creator,
            True,
            protocolFactory,
            tcp_nodelay=self._tcp_nodelay,
            handshake_timeout=self._handshake_timeout,
        )

        def verified(tls: TLSMemoryBIOProtocol) -> Deferred[AnyProtocol]:
            gate = cast(PeerGate, tls.wrappedProtocol)
            return gate.when_verified().addCallback(lambda _: gate.app)

        d: Deferred[TLSMemoryBIOProtocol] = cast(Any, self._endpoint).connect(factory)
        return d.addCallback(verified)


@implementer(IStreamServerEndpoint)
class PPKSServerEndpoint:
    """Listens on `endpoint` with TLS + the PPKS check (e.g. around
    `serverFromString(reactor, "tcp:20556")`, for `StreamServerEndpointService`).
    `handshake_timeout` (seconds, clock): a client still in the handshake by then is cut
    off (a slow or silent client would otherwise hold its descriptor for good).
    `refusal_delay` (function of the client's host giving seconds, clock): a client whose
    certificates are refused is cut off that much later, not at once."""

    def __init__(
        self,
        endpoint: AnyServerEndpoint,
        options: PPKSServerOptions,
        *,
        tcp_nodelay: bool = True,
        handshake_timeout: tuple[float, AnyReactorTime] | None = None,
        refusal_delay: RefusalDelay | None = None,
        pending_max: int | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._options = options
        self._pending_max = pending_max
        self._tcp_nodelay = tcp_nodelay
        self._handshake_timeout = handshake_timeout
        self._refusal_delay = refusal_delay

    def listen(self, protocolFactory: AnyProtocolFactory) -> Deferred[AnyListeningPort]:
        return cast(Any, self._endpoint).listen(
            PPKSTLSFactory(
                self._options,
                False,
                protocolFactory,
                tcp_nodelay=self._tcp_nodelay,
                handshake_timeout=self._handshake_timeout,
                refusal_delay=self._refusal_delay,
                pending_max=self._pending_max,
            )
        )
