# Run as a child process: imports only the standard library and dnspython.
"""A zone of three name servers for `pktlab run dns +nssearch` side by side with dig:

    python dns_nssearch_server.py    # prints "PORT" (UDP, 127.0.0.21 and 127.0.0.22)

`multi.test.` has NS ns1, ns2 and ns3.multi.test. (127.0.0.21-23; ns1 with glue, the
others without: pktlab asks @SERVER for their addresses, which these servers answer, and
dig its host's resolver, an /etc/hosts of the test's). Each server answers the SOA with a
serial of its own (10, 11); nothing listens on 127.0.0.23 (dig's warning for it).
`one.test.` has a single NS (ns1.multi.test.). `gone.test.` (since session 17, dig17b)
two, ns4 and ns5.multi.test. (127.0.0.24-25, with glue), where nothing listens: dig's
`NS servers could not be reached`. `HOSTS` is that /etc/hosts' lines.
"""

from __future__ import annotations

import socket
import threading

import dns.flags
import dns.message
import dns.rdatatype
import dns.rrset

SERVERS = {"ns1.multi.test.": "127.0.0.21", "ns2.multi.test.": "127.0.0.22",
           "ns3.multi.test.": "127.0.0.23"}  # fmt: skip
GONE = {"ns4.multi.test.": "127.0.0.24", "ns5.multi.test.": "127.0.0.25"}  # nothing there
HOSTS = "".join(f"{addr} {name.rstrip('.')}\n" for name, addr in {**SERVERS, **GONE}.items())


def answer(wire: bytes, serial: int) -> bytes:
    query = dns.message.from_wire(wire)
    reply = dns.message.make_response(query)
    reply.flags |= dns.flags.AA
    q = query.question[0]
    name = q.name.to_text()
    if q.rdtype == dns.rdatatype.NS and name in ("multi.test.", "one.test."):
        hosts = list(SERVERS) if name == "multi.test." else ["ns1.multi.test."]
        reply.answer.append(dns.rrset.from_text_list(name, 300, "IN", "NS", hosts))
        reply.additional.append(dns.rrset.from_text("ns1.multi.test.", 300, "IN", "A",
                                                    SERVERS["ns1.multi.test."]))  # fmt: skip
    elif q.rdtype == dns.rdatatype.NS and name == "gone.test.":
        reply.answer.append(dns.rrset.from_text_list(name, 300, "IN", "NS", list(GONE)))
        for host, addr in GONE.items():
            reply.additional.append(dns.rrset.from_text(host, 300, "IN", "A", addr))
    elif q.rdtype == dns.rdatatype.A and name in SERVERS:
        reply.answer.append(dns.rrset.from_text(name, 300, "IN", "A", SERVERS[name]))
    elif q.rdtype == dns.rdatatype.SOA and name in ("multi.test.", "one.test."):
        soa = f"ns1.multi.test. h.multi.test. {serial} 1800 900 604800 60"
        reply.answer.append(dns.rrset.from_text(name, 300, "IN", "SOA", soa))
    return bytes(reply.to_wire())


def serve(sock: socket.socket, serial: int) -> None:
    while True:
        wire, peer = sock.recvfrom(4096)
        try:
            sock.sendto(answer(wire, serial), peer)
        except Exception:  # a query it cannot read: no answer
            continue


def main() -> None:
    first = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    first.bind(("127.0.0.21", 0))
    port = first.getsockname()[1]
    second = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    second.bind(("127.0.0.22", port))
    for serial, sock in ((10, first), (11, second)):
        threading.Thread(target=serve, args=(sock, serial), daemon=True).start()
    print(port, flush=True)
    threading.Event().wait()  # until terminated


if __name__ == "__main__":
    main()
