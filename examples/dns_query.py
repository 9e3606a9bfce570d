#!/usr/bin/env python3
"""DNS query through a PacketLab endpoint.

With no arguments everything runs on loopback: a tiny DNS responder (Twisted, UDP) that
answers every A query with a fixed address, a controller on 127.0.0.1, and a PacketLab
endpoint in this process (the `twistd pktendpoint` service), linked over TLS 1.3. The
experiment sends the query from the endpoint's UDP socket and prints the answer with the
endpoint's own send (ntag) and receive (ndata) timestamps.

    python examples/dns_query.py
    python examples/dns_query.py --name www.example.com --server 192.0.2.53:53 \\
        --listen tcp:20556   # wait for a remote endpoint instead
"""

from __future__ import annotations

import _startup  # noqa: F401  (first: a Ctrl-C while starting is one line, 130)

# isort: split
import argparse
import random
from typing import Any

from _common import add_link_args, address_port, host_port, react, run_experiment
from twisted.internet import defer
from twisted.internet.protocol import DatagramProtocol
from twisted.names import dns

from packetlab.controller import EndpointSession, udp_exchange

FIXED_ANSWER = "192.0.2.53"  # TEST-NET-1: what the local responder says every name is


class FixedResponder(DatagramProtocol):
    """Answers every query with one A record for FIXED_ANSWER (ttl 60)."""

    def __init__(self) -> None:
        self.queries = 0

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        query = dns.Message()
        try:
            query.fromStr(data)
        except Exception:
            return  # not DNS: ignore, as a server would
        self.queries += 1
        reply = dns.Message(id=query.id, answer=1, opCode=query.opCode, recDes=query.recDes)
        reply.recAv = True
        reply.queries = query.queries
        for q in query.queries:
            if q.type == dns.A:
                payload = dns.Record_A(FIXED_ANSWER, ttl=60)
                reply.answers.append(dns.RRHeader(q.name.name, dns.A, dns.IN, 60, payload))
        self.transport.write(reply.toStr(), addr)  # type: ignore[union-attr]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--name", default="www.example.com", help="name to look up (A record)")
    p.add_argument(
        "--server",
        type=address_port(53),
        help="DNS server IP[:PORT] to ask (default: a local responder this script starts)",
    )
    add_link_args(p)
    return p.parse_args(argv)


def make_experiment(name: str, server: str, port: int) -> tuple[Any, int]:
    qid = random.randrange(1 << 16)
    query = dns.Message(id=qid, recDes=True)
    query.queries = [dns.Query(name, dns.A, dns.IN)]
    data = query.toStr()

    async def experiment(session: EndpointSession) -> Any:
        return await udp_exchange(session, server, port, data, timeout=3.0)

    return experiment, qid


def report(name: str, server: str, port: int, qid: int, got: Any) -> int:
    print(f"DNS A {name} asked of {host_port(server, port)} through the endpoint")
    sent = got.sent[0]
    if sent.time is None:
        print(f"  query not sent: {sent.error}")
        return 1
    print(f"  query       {sent.size} bytes, id {qid}")
    if not got.replies:
        print("  no answer   (timeout)")
        return 1
    r = got.replies[0]
    msg = dns.Message()
    msg.fromStr(r.data)
    src = host_port(r.addr, r.port)
    print(f"  reply       {len(r.data)} bytes from {src}, id {msg.id}, rcode {msg.rCode}")
    for rr in msg.answers:
        rtype = dns.QUERY_TYPES.get(rr.type, rr.type)
        value = rr.payload.dottedQuad() if isinstance(rr.payload, dns.Record_A) else rr.payload
        print(f"  answer      {rr.name} {rtype} {value} ttl {rr.ttl}")
    print(f"  rtt         {(r.time - sent.time) / 1e6:.3f} ms  (ntag of the query -> ndata)")
    return 0 if msg.id == qid and msg.answers else 1


async def main(reactor: Any, args: argparse.Namespace) -> int:
    udp: Any = None
    if args.server is None:
        udp = reactor.listenUDP(0, FixedResponder(), interface="127.0.0.1")
        server, port = "127.0.0.1", udp.getHost().port
    else:
        server, port = args.server
    experiment, qid = make_experiment(args.name, server, port)
    try:
        got = await run_experiment(reactor, args, experiment, targets=[server])
    finally:
        if udp is not None:
            await defer.maybeDeferred(udp.stopListening)
    return report(args.name, server, port, qid, got)


def run(argv: list[str] | None = None) -> None:
    react(main, parse_args(argv))


if __name__ == "__main__":
    run()
