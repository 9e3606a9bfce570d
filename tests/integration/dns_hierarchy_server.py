# Run as a child process: imports only the standard library, Twisted and dnspython.
"""A small DNS delegation hierarchy on loopback addresses, for `pktlab run dns +trace`
side by side with dig +trace:

    python dns_hierarchy_server.py PREFIX    # prints "PORT" (UDP and TCP, every server)

PREFIX is the first three octets of the servers' addresses (`127.0.0`): the root at
PREFIX.11 (`a.root.`), `tld.` at .12 (`ns1.tld.`), `example.tld.` at .13
(`ns.example.tld.`), `other.tld.` at .14 (`ns.other.tld.`, named in `tld.` without glue:
out of bailiwick, `ns.example.tld.` names it), all on the same port. `HOSTS` (printed
with `--hosts`) gives the servers' names for an /etc/hosts, as dig +trace resolves them
on its host.

Each server is authoritative for its zone (AA set): an answer, NXDOMAIN or NODATA with
the SOA; below a zone cut it refers (AA clear: NS in authority, with the DS and its RRSIG
when the query has the DO bit, glue in additional). The query's EDNS is echoed (version 0,
DO as asked, payload 1232, a client COOKIE with a fixed server cookie). The root server
also answers a recursive query (RD) for the A record of a server name: it stands for the
resolver `@SERVER` is (pktlab looks up a glue-less NS name there; dig on its host).

`loop.tld.` is delegated to `ns1.tld.`, the server of `tld.` itself, which refers
every name under it to `loop.tld.` again: a lame delegation.
"""

from __future__ import annotations

import base64
import hashlib
import sys
from typing import Any

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone
from dns_zone_server import zone_rrsets  # (a sibling: run as a script from this folder)
from twisted.internet import protocol
from twisted.internet import reactor as _reactor
from twisted.internet.error import CannotListenError
from twisted.protocols.basic import Int16StringReceiver

reactor: Any = _reactor
SIG = "20270101000000 20261201000000 4242"


def _b64(seed: str) -> str:
    return base64.b64encode(hashlib.sha256(seed.encode()).digest() * 2).decode()


def zones(prefix: str) -> dict[str, tuple[str, str]]:
    """Each server's zone: name -> (address, zone text)."""
    root = f"""\
$TTL 86400
. IN SOA a.root. h.root. 1 1800 900 604800 86400
. IN NS a.root.
. IN RRSIG NS 13 0 86400 {SIG} . {_b64("root-ns")}
a.root. IN A {prefix}.11
tld. 172800 IN NS ns1.tld.
tld. 86400 IN DS 4242 13 2 {hashlib.sha256(b"tld").hexdigest()}
tld. 86400 IN RRSIG DS 13 1 86400 {SIG} . {_b64("tld-ds")}
ns1.tld. 172800 IN A {prefix}.12
"""
    tld = f"""\
$TTL 3600
tld. IN SOA ns1.tld. h.tld. 7 1800 900 604800 300
tld. IN NS ns1.tld.
ns1.tld. IN A {prefix}.12
example.tld. IN NS ns.example.tld.
ns.example.tld. IN A {prefix}.13
other.tld. IN NS ns.other.tld.
loop.tld. IN NS ns1.tld.
"""
    example = f"""\
$TTL 300
example.tld. IN SOA ns.example.tld. h.example.tld. 3 1800 900 604800 60
example.tld. IN NS ns.example.tld.
ns.example.tld. IN A {prefix}.13
ns.other.tld. IN A {prefix}.14
www.example.tld. IN CNAME host.example.tld.
host.example.tld. IN A 192.0.2.7
host.example.tld. IN AAAA 2001:db8::7
mx.example.tld. IN MX 10 host.example.tld.
"""
    other = """\
$TTL 300
other.tld. IN SOA ns.other.tld. h.other.tld. 5 1800 900 604800 60
other.tld. IN NS ns.other.tld.
a.other.tld. IN A 192.0.2.14
"""
    return {
        ".": (f"{prefix}.11", root),
        "tld.": (f"{prefix}.12", tld),
        "example.tld.": (f"{prefix}.13", example),
        "other.tld.": (f"{prefix}.14", other),
    }


def hosts(prefix: str) -> str:
    """The servers' names, as /etc/hosts lines (dig +trace resolves them on its host)."""
    return "".join(
        f"{prefix}.{n} {name}\n"
        for n, name in (
            (11, "a.root"),
            (12, "ns1.tld"),
            (13, "ns.example.tld"),
            (14, "ns.other.tld"),
        )
    )


SERVER_COOKIE = bytes.fromhex("0100000069a5c3d2fedcba9876543210")
PAYLOAD = 1232


class Authority:
    """One server: its zone, and (the root) the names it resolves for a recursive query."""

    def __init__(self, origin: str, text: str, resolves: dict[str, str] | None = None) -> None:
        self.origin = dns.name.from_text(origin)
        self.zone = dns.zone.from_text(text, origin=self.origin, relativize=False)
        self.resolves = resolves or {}

    def rrsets(self, name: dns.name.Name, rdtype: Any, do: bool) -> list[dns.rrset.RRset]:
        return zone_rrsets(name, rdtype, do, self.zone)

    def cut(self, name: dns.name.Name) -> dns.name.Name | None:
        """The zone cut at or above `name` below this zone (a delegation), if any."""
        for depth in range(len(self.origin) + 1, len(name) + 1):
            above = name.split(depth)[1]
            node = self.zone.get_node(above)
            if node is not None and node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.NS):
                return above
        return None

    def answer(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query, our_payload=PAYLOAD)
        do = bool(query.ednsflags & dns.flags.DO)
        if query.edns >= 0:
            options: list[dns.edns.Option] = []
            for opt in query.options:
                if opt.otype == dns.edns.COOKIE:
                    client = opt.to_wire()[:8]
                    options.append(dns.edns.GenericOption(dns.edns.COOKIE, client + SERVER_COOKIE))
            response.use_edns(0, dns.flags.DO if do else 0, PAYLOAD, options=options)
        q = query.question[0]
        name, rdtype = q.name, q.rdtype
        text = name.to_text()
        if query.flags & dns.flags.RD and text in self.resolves and rdtype == dns.rdatatype.A:
            response.flags |= dns.flags.RA  # a resolver's answer for a server's name
            response.answer.append(dns.rrset.from_text(name, 300, "IN", "A", self.resolves[text]))
            return response
        if not name.is_subdomain(self.origin):
            response.set_rcode(dns.rcode.REFUSED)
            return response
        cut = self.cut(name)
        if cut is not None and not (cut == name and rdtype == dns.rdatatype.DS):
            response.authority += self.rrsets(cut, dns.rdatatype.NS, False)
            response.authority += self.rrsets(cut, dns.rdatatype.DS, do) if do else []
            for rrset in response.authority:
                if rrset.rdtype == dns.rdatatype.NS:
                    for rd in rrset:
                        response.additional += self.rrsets(rd.target, dns.rdatatype.A, False)
            return response
        response.flags |= dns.flags.AA
        target = name
        for _ in range(8):  # a CNAME chain within the zone
            found = self.rrsets(target, rdtype, do)
            if found:
                response.answer += found
                break
            cname = self.rrsets(target, dns.rdatatype.CNAME, do)
            if not cname:
                break
            response.answer += cname
            target = cname[0][0].target
        if not response.answer or (
            response.answer[-1].rdtype == dns.rdatatype.CNAME and rdtype != dns.rdatatype.CNAME
        ):
            if self.zone.get_node(target) is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
            response.authority += self.rrsets(self.origin, dns.rdatatype.SOA, do)
        return response


class Udp(protocol.DatagramProtocol):
    def __init__(self, authority: Authority) -> None:
        self.authority = authority

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        out = reply_to(self.authority, data, True)
        if out is not None and self.transport is not None:
            self.transport.write(out, addr)


class Tcp(Int16StringReceiver):
    def stringReceived(self, data: bytes) -> None:
        out = reply_to(self.factory.authority, data, False)
        if out is not None:
            self.sendString(out)


def reply_to(authority: Authority, wire: bytes, udp: bool) -> bytes | None:
    try:
        query = dns.message.from_wire(wire)
    except Exception:
        return None
    if not query.question:
        return None
    response = authority.answer(query)
    size = max(512, min(query.payload, PAYLOAD)) if udp and query.edns >= 0 else 512
    try:
        return response.to_wire(max_size=size if udp else 65535, want_shuffle=False)
    except dns.exception.TooBig:
        response.answer, response.authority, response.additional = [], [], []
        response.flags |= dns.flags.TC
        return response.to_wire(want_shuffle=False)


def main(argv: list[str]) -> None:
    prefix = argv[0] if argv else "127.0.0"
    if "--hosts" in argv:
        print(hosts(prefix), end="")
        return
    servers = zones(prefix)
    resolves = {line.split()[1] + ".": line.split()[0] for line in hosts(prefix).splitlines()}
    authorities = {
        origin: Authority(origin, text, resolves if origin == "." else None)
        for origin, (_, text) in servers.items()
    }
    for _ in range(50):  # one port free on every address, UDP and TCP
        first = reactor.listenUDP(0, Udp(authorities["."]), interface=servers["."][0])
        port = first.getHost().port
        listening: list[Any] = [first]
        try:
            for origin, (addr, _) in servers.items():
                if origin != ".":
                    listening.append(reactor.listenUDP(port, Udp(authorities[origin]), addr))
                factory = protocol.Factory.forProtocol(Tcp)
                factory.authority = authorities[origin]  # type: ignore[attr-defined]
                listening.append(reactor.listenTCP(port, factory, interface=addr))
            break
        except CannotListenError:
            for p in listening:
                p.stopListening()
    print(port, flush=True)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
