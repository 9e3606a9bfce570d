"""A tiny authoritative DNS server for the tests: answers PTR queries from a JSON map
(address -> name) given on the command line, NXDOMAIN for anything else.

    python ptr_server.py ADDR PORT '{"10.77.1.2": "r1.test."}'

Prints "ready" once it listens. Runs until killed.
"""

from __future__ import annotations

import json
import socket
import sys

import dns.message
import dns.rcode
import dns.rdatatype
import dns.reversename
import dns.rrset


def main() -> None:
    addr, port, table = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
    names = {dns.reversename.from_address(a): n for a, n in table.items()}
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((addr, port))
    print("ready", flush=True)
    while True:
        data, peer = sock.recvfrom(4096)
        try:
            query = dns.message.from_wire(data)
        except Exception:
            continue
        reply = dns.message.make_response(query)
        q = query.question[0]
        name = names.get(q.name)
        if q.rdtype == dns.rdatatype.PTR and name is not None:
            reply.answer.append(dns.rrset.from_text(q.name, 60, "IN", "PTR", name))
        else:
            reply.set_rcode(dns.rcode.NXDOMAIN)
        sock.sendto(reply.to_wire(), peer)


if __name__ == "__main__":
    main()
