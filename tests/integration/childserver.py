"""Loopback servers that integration tests run as child processes (dns_zone_server.py,
dns_xfr_server.py, measure_services.py, ...): the child prints its port as its first
line; the parent reads it, or fails naming the child with the child's stderr, and stops
the child when done."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest


@contextlib.contextmanager
def serve_child(script: str, *args: str, what: str | None = None) -> Iterator[int]:
    """Run `python SCRIPT ARGS...`, yield the port it printed first, then terminate it."""
    proc = subprocess.Popen([sys.executable, script, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.strip().isdigit():
            proc.kill()
            name = what or script.rsplit("/", 1)[-1].removesuffix(".py")
            pytest.fail(f"{name} did not start: {line} {proc.communicate()[1]}")
        yield int(line)
    finally:
        proc.terminate()
        proc.wait(10)


def listen_udp_tcp(reactor: Any, udp: Any, factory: Any, addr: str) -> int:
    """One port number for both UDP `udp` and TCP `factory` on `addr` (in the child)."""
    from twisted.internet.error import CannotListenError

    # TCP first: a UDP port stopped for another try lets its protocol go a reactor turn
    # later (Twisted asserts a protocol has no transport when it is listened again), a
    # factory can listen on several ports at once
    for _ in range(50):  # the TCP port's number may be taken for UDP: try another
        port = reactor.listenTCP(0, factory, interface=addr)
        number: int = port.getHost().port
        try:
            reactor.listenUDP(number, udp, interface=addr)
            return number
        except CannotListenError:
            port.stopListening()
    raise CannotListenError(addr, 0, "no port number free for both UDP and TCP")


def serve_dns(
    udp_reply: Callable[[bytes], bytes | None],
    tcp_reply: Callable[[bytes], bytes | None],
    argv: list[str],
) -> None:
    """Run a DNS server in the child: each UDP datagram and each TCP message (2-byte
    length framed) answered by its function (None: no answer) on one port of `argv[0]`
    (127.0.0.1 by default), printed first; until the parent stops it."""
    from twisted.internet import protocol
    from twisted.internet import reactor as _reactor
    from twisted.protocols.basic import Int16StringReceiver

    reactor: Any = _reactor

    class Udp(protocol.DatagramProtocol):
        def datagramReceived(self, data: bytes, addr: Any) -> None:
            out = udp_reply(data)
            if out is not None and self.transport is not None:
                self.transport.write(out, addr)

    class Tcp(Int16StringReceiver):
        def stringReceived(self, data: bytes) -> None:
            out = tcp_reply(data)
            if out is not None:
                self.sendString(out)

    addr = argv[0] if argv else "127.0.0.1"
    factory = protocol.Factory.forProtocol(Tcp)
    print(listen_udp_tcp(reactor, Udp(), factory, addr), flush=True)
    reactor.run()


def query_of(wire: bytes) -> tuple[Any, str] | None:
    """A DNS server's view of a datagram: (the dnspython query, its name's first label in
    lower case), or None when it is no query with a question (no answer then)."""
    import dns.message

    try:
        q = dns.message.from_wire(wire)
    except Exception:  # not a query: no answer
        return None
    if not q.question:
        return None
    return q, q.question[0].name.labels[0].decode().lower()
