"""The broker's HTTP/JSON status page (``StatusListen`` in broker.conf): GET / gives the
channels with their subscriber and publication counts and every live publication, as
`pktlab broker status` prints it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger
from twisted.protocols.policies import WrappingFactory
from twisted.web import resource, server

__all__ = ["STATUS_MAX_CONNECTIONS", "STATUS_TIMEOUT", "status_site"]

# Anyone who reaches the page may connect and stay silent: twisted.web held each such
# connection 60 s, uncapped, and 1,000 within a minute took the descriptors the broker's
# own ports need (accept() then fails with EMFILE for everyone). A page read by hand or
# by a monitor every minute needs few at once, each for milliseconds.
STATUS_MAX_CONNECTIONS = 32
STATUS_TIMEOUT = 10.0  # s a status connection may idle
log = Logger(namespace="pktbroker")


class _Status(resource.Resource):
    isLeaf = True

    def __init__(self, source: Callable[[], dict[str, object]]) -> None:
        super().__init__()
        self.source = source

    def render_GET(self, request: server.Request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(self.source(), indent=2).encode() + b"\n"


class _Capped(WrappingFactory):
    """At STATUS_MAX_CONNECTIONS open connections the oldest is closed for each new one
    (a real reader is quick; silent ones are old); one line each time the page fills."""

    noisy = False

    def __init__(self, site: server.Site) -> None:
        super().__init__(site)
        self._full = False

    def buildProtocol(self, addr: Any) -> Any:
        if len(self.protocols) >= STATUS_MAX_CONNECTIONS:
            oldest = next(iter(self.protocols))
            self.unregisterProtocol(oldest)
            oldest.transport.abortConnection()
            if not self._full:
                self._full = True
                log.warn(
                    "status page: {n} connections open (at most {n}): closing the oldest "
                    "for each new one",
                    n=STATUS_MAX_CONNECTIONS,
                )
        return super().buildProtocol(addr)

    def unregisterProtocol(self, p: Any) -> None:
        if p not in self.protocols:  # closed for a newer one, and now lost
            return
        super().unregisterProtocol(p)
        if len(self.protocols) < STATUS_MAX_CONNECTIONS // 2:
            self._full = False


def status_site(source: Callable[[], dict[str, object]], clock: Any = None) -> _Capped:
    site = server.Site(_Status(source), timeout=STATUS_TIMEOUT, reactor=clock)
    site.noisy = False
    return _Capped(site)
