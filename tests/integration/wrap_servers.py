"""Local servers for the pktlab wrap tests, as one child process on loopback:

    python wrap_servers.py DIR [HOST [DNSPORT]]

serves DIR over HTTP and HTTPS (certificate DIR/cert.pem + DIR/key.pem, made by the
test), and DNS over UDP and TCP (every A question answered with HOST's address, default
127.0.0.1; names starting with "nx" get NXDOMAIN; PTR questions for addresses ending
in 2 get www.wrap.test, others NXDOMAIN). Paths: /slow/N waits N ms before
answering, /fail gives 500, /drip/N sends N bytes slowly, /page/N is one of 200
deterministic pages (every 10th slow, every 17th failing, every 23rd 1 MB). Prints one
JSON line with the ports, then serves until killed.
"""

from __future__ import annotations

import json
import random
import sys
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet import ssl
from twisted.internet.defer import fail, succeed
from twisted.names import dns, server
from twisted.names.error import DomainError
from twisted.web import resource, static
from twisted.web.server import NOT_DONE_YET, Site

reactor: Any = _reactor  # the global reactor (mypy sees too little of it)


class Slow(resource.Resource):
    isLeaf = True

    def render_GET(self, request):  # type: ignore[no-untyped-def]
        parts = request.path.decode().strip("/").split("/")
        kind, n = parts[0], int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        if kind == "fail":
            request.setResponseCode(500)
            return b"failure\n"
        if kind == "slow":
            reactor.callLater(n / 1000, lambda: (request.write(b"slow %d\n" % n), request.finish()))
            return NOT_DONE_YET
        if kind == "page":
            return self.page(request, n)
        if kind == "drip":
            left = [n]

            def more() -> None:
                chunk = min(left[0], 4096)
                left[0] -= chunk
                request.write(b"x" * chunk)
                if left[0]:
                    reactor.callLater(0.001, more)
                else:
                    request.finish()

            more()
            return NOT_DONE_YET
        return b"?"

    def page(self, request, n):  # type: ignore[no-untyped-def]
        if n % 17 == 0:
            request.setResponseCode(500)
            return b"page %d failed\n" % n
        if n % 23 == 0:
            body = random.Random(n).randbytes(1 << 20)
        else:
            body = (b"page %d\n" % n) * (n % 50 + 1)
        if n % 10 == 0:
            reactor.callLater(0.05, lambda: (request.write(body), request.finish()))
            return NOT_DONE_YET
        return body


class Answers:
    def __init__(self, addr: str) -> None:
        self.addr = addr

    def query(self, query, timeout=None):  # type: ignore[no-untyped-def]
        name = query.name.name
        if name.startswith(b"nx"):
            return fail(DomainError(name))
        if query.type == dns.PTR:  # x.x.x.2 and ...::2 are www.wrap.test; others unknown
            if not name.startswith(b"2."):
                return fail(DomainError(name))
            ptr = dns.Record_PTR(b"www.wrap.test", 60)
            return succeed(([dns.RRHeader(name, dns.PTR, dns.IN, 60, ptr)], [], []))
        if name.startswith(b"dual") and query.type == dns.AAAA:  # and A: both families
            rr = dns.RRHeader(name, dns.AAAA, dns.IN, 60, dns.Record_AAAA("::1", 60))
            return succeed(([rr], [], []))
        if query.type != dns.A:
            return succeed(([], [], []))
        rr = dns.RRHeader(name, dns.A, dns.IN, 60, dns.Record_A(self.addr, 60))
        return succeed(([rr], [], []))


def main() -> None:
    root_dir = sys.argv[1]
    addr = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
    dns_port = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    root = static.File(root_dir)
    for kind in ("slow", "fail", "drip", "page"):
        root.putChild(kind.encode(), Slow())
    site = Site(root)
    http = reactor.listenTCP(0, site, interface=addr)
    ctx = ssl.DefaultOpenSSLContextFactory(f"{root_dir}/key.pem", f"{root_dir}/cert.pem")
    https = reactor.listenSSL(0, site, ctx, interface=addr)
    factory = server.DNSServerFactory(authorities=[Answers(addr)])
    tcp = reactor.listenTCP(dns_port, factory, interface=addr)
    udp = reactor.listenUDP(tcp.getHost().port, dns.DNSDatagramProtocol(factory), interface=addr)
    ports = {
        "http": http.getHost().port,
        "https": https.getHost().port,
        "dns": udp.getHost().port,
    }
    print(json.dumps(ports), flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
