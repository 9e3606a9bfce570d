"""The broker's HTTP/JSON status page (``StatusListen`` in broker.conf): GET / gives the
channels with their subscriber and publication counts and every live publication, as
`pktlab broker status` prints it."""

from __future__ import annotations

import json
from collections.abc import Callable

from twisted.web import resource, server

__all__ = ["status_site"]


class _Status(resource.Resource):
    isLeaf = True

    def __init__(self, source: Callable[[], dict[str, object]]) -> None:
        super().__init__()
        self.source = source

    def render_GET(self, request: server.Request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(self.source(), indent=2).encode() + b"\n"


def status_site(source: Callable[[], dict[str, object]]) -> server.Site:
    site = server.Site(_Status(source))
    site.noisy = False
    return site
