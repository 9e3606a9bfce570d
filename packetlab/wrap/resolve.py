"""Name resolution from the endpoint: a DNS query over the endpoint's UDP socket to the
endpoint's own DNS server (system info IP4DNSLS/IP6DNSLS), as a program running there
would do. Twisted's own DNS codec (twisted.names.dns) builds and parses the messages.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass
from typing import Any, NoReturn

from twisted.internet.defer import Deferred, FirstError, gatherResults
from twisted.names import dns

from packetlab.controller import EndpointSession, IPAddress, udp_exchange
from packetlab.wrap.timeline import ConnTiming


class ResolveError(Exception):
    pass


class NoSuchName(ResolveError):
    """The DNS server answered NXDOMAIN (or the name cannot be asked)."""


@dataclass(frozen=True, slots=True)
class Answer:
    addresses: tuple[IPAddress, ...]
    sent: int | None  # endpoint ns of the first query (ntag); None: no query needed
    answered: int | None  # endpoint ns of the answer that settled it
    # The CNAME chain from the name asked to its canonical name (last), as the answer
    # names them; () when there was none (the canonical name is the one asked).
    names: tuple[str, ...] = ()


LOCALHOST = (ipaddress.IPv4Address("127.0.0.1"),)


def literal(name: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return None


def query(name: str, qtype: int) -> tuple[int, bytes]:
    try:
        wire_name = name.encode("idna")  # an empty or 64+ byte label cannot be asked
    except UnicodeError:
        raise NoSuchName(f"cannot resolve {name!r}: not a valid DNS name") from None
    qid = secrets.randbelow(0x10000)
    m = dns.Message(id=qid, recDes=1)
    m.queries = [dns.Query(wire_name, qtype)]
    return qid, m.toStr()


def addresses_in(reply: bytes, qid: int, qtype: int) -> tuple[int, list[IPAddress]]:
    """(rcode, addresses of `qtype`) of a DNS reply to query `qid`."""
    m = dns.Message()
    try:
        m.fromStr(reply)
    except Exception as e:  # twisted.names raises assorted errors on garbage
        raise ResolveError(f"malformed DNS answer ({type(e).__name__})") from None
    if m.id != qid or not m.answer:
        raise ResolveError("DNS answer does not match the query")
    out: list[IPAddress] = []
    for rr in m.answers:
        payload: Any = rr.payload
        if rr.type == qtype == dns.A:
            out.append(ipaddress.IPv4Address(payload.address))
        elif rr.type == qtype == dns.AAAA:
            out.append(ipaddress.IPv6Address(payload.address))
    return int(m.rCode), out


def chain_in(reply: bytes, name: str) -> tuple[str, ...]:
    """The CNAME chain of a DNS reply from `name`: (name, target, ..., canonical) as the
    records spell them, () without a CNAME. glibc gives the canonical name as
    getaddrinfo's `ai_canonname` and `h_name`, the others as `h_aliases`."""
    m = dns.Message()
    try:
        m.fromStr(reply)
    except Exception:  # addresses_in has said why already
        return ()
    targets: dict[str, str] = {}
    for rr in m.answers:
        payload: Any = rr.payload
        if rr.type == dns.CNAME and payload is not None:
            targets[str(rr.name).lower()] = str(payload.name)
    chain: list[str] = []
    at = name.rstrip(".")
    while at.lower() in targets and len(chain) < 16:  # a loop ends too
        owner = next(str(rr.name) for rr in m.answers if str(rr.name).lower() == at.lower())
        chain.append(owner)
        at = targets.pop(at.lower())
    return (*chain, at) if chain else ()


async def resolve(
    session: EndpointSession,
    name: str,
    servers: list[tuple[IPAddress, int]],
    *,
    timeout: float = 3.0,
    qtypes: tuple[int, ...] = (dns.A, dns.AAAA),
    every: bool = False,
) -> Answer:
    """Addresses of `name`: A first, AAAA if there is no A (or `qtypes` in order), from
    the first server (address, port) that answers; with `every`, the addresses of all
    `qtypes` (a type that fails is left out if another answered). An address literal or
    "localhost" needs no query."""
    lit = literal(name)
    if lit is not None:
        return Answer((lit,), None, None)
    if name.rstrip(".").lower() == "localhost":
        return Answer(LOCALHOST, None, None)
    if not servers:
        raise ResolveError(f"cannot resolve {name!r}: the endpoint has no DNS server")
    if not every:
        first_sent: int | None = None
        errors: list[str] = []
        for qtype in qtypes:
            got = await _ask(session, name, qtype, servers, timeout)
            first_sent = first_sent if first_sent is not None else got.sent
            errors += got.errors
            if got.found:
                return Answer(got.found, first_sent, got.answered, got.names)
        return _nothing(name, errors)
    # Every type at once, as glibc asks A and AAAA together.
    try:
        asked = await gatherResults(
            [Deferred.fromCoroutine(_ask(session, name, q, servers, timeout)) for q in qtypes],
            consumeErrors=True,
        )
    except FirstError as e:  # NXDOMAIN, or a name that cannot be asked
        cause = e.subFailure.value
        raise (cause if cause is not None else ResolveError(str(e))) from None
    found = tuple(a for got in asked for a in got.found)
    if found:
        sents = [got.sent for got in asked if got.sent is not None]
        ends = [got.answered for got in asked if got.answered is not None]
        chain = next((got.names for got in asked if got.found), ())
        return Answer(found, min(sents, default=None), max(ends, default=None), chain)
    return _nothing(name, [e for got in asked for e in got.errors])


@dataclass(frozen=True, slots=True)
class _Asked:
    found: tuple[IPAddress, ...]
    sent: int | None  # the first query's ntag time
    answered: int | None  # the time of the answer that settled it
    errors: list[str]
    names: tuple[str, ...] = ()  # the CNAME chain (chain_in)


async def _ask(
    session: EndpointSession,
    name: str,
    qtype: int,
    servers: list[tuple[IPAddress, int]],
    timeout: float,
) -> _Asked:
    """The addresses of one type from the first server that answers; raises NoSuchName
    on NXDOMAIN."""
    first_sent: int | None = None
    errors: list[str] = []
    for server, port in servers:
        qid, msg = query(name, qtype)
        got = await udp_exchange(session, server, port, msg, timeout=timeout)
        sent = got.sent[0].time if got.sent else None
        first_sent = first_sent if first_sent is not None else sent
        if not got.replies:
            errors.append(f"no answer from {server}")
            continue
        try:
            rcode, found = addresses_in(got.replies[0].data, qid, qtype)
        except ResolveError as e:
            errors.append(f"{server}: {e}")
            continue
        if rcode == dns.ENAME and not found:
            raise NoSuchName(f"cannot resolve {name!r}: no such name ({server})")
        chain = chain_in(got.replies[0].data, name) if found else ()
        return _Asked(tuple(found), first_sent, got.replies[0].time, [], chain)  # answered
    return _Asked((), first_sent, None, errors)


async def reverse(
    session: EndpointSession,
    addr: IPAddress,
    servers: list[tuple[IPAddress, int]],
    *,
    timeout: float = 3.0,
) -> tuple[str, int | None, int | None]:
    """The name of `addr` (a PTR query for its in-addr.arpa / ip6.arpa name, as glibc's
    gethostbyaddr asks), with the endpoint times of the query and its answer; raises
    NoSuchName (NXDOMAIN, or no PTR) or ResolveError (no server answered)."""
    ptr = addr.reverse_pointer
    if not servers:
        raise ResolveError(f"cannot resolve {addr}: the endpoint has no DNS server")
    errors: list[str] = []
    for server, port in servers:
        qid, msg = query(ptr, dns.PTR)
        got = await udp_exchange(session, server, port, msg, timeout=timeout)
        sent = got.sent[0].time if got.sent else None
        if not got.replies:
            errors.append(f"no answer from {server}")
            continue
        m = dns.Message()
        try:
            m.fromStr(got.replies[0].data)
        except Exception as e:  # twisted.names raises assorted errors on garbage
            errors.append(f"{server}: malformed DNS answer ({type(e).__name__})")
            continue
        if m.id != qid or not m.answer:
            errors.append(f"{server}: DNS answer does not match the query")
            continue
        # (a CNAME chain, RFC 2317 classless delegation, ends in the PTR record)
        ptrs: list[Any] = [rr.payload for rr in m.answers if rr.type == dns.PTR]
        names = [str(p.name) for p in ptrs]
        if names and names[0]:
            return names[0].rstrip("."), sent, got.replies[0].time
        if m.rCode in (dns.OK, dns.ENAME):
            raise NoSuchName(f"cannot resolve {addr}: no such name ({server})")
        errors.append(f"{server}: rcode {m.rCode}")
    raise ResolveError(f"cannot resolve {addr}: {'; '.join(errors)}")


def _nothing(name: str, errors: list[str]) -> NoReturn:
    if not errors:  # answered, with no address of the types asked for
        raise NoSuchName(f"cannot resolve {name!r}: no address")
    raise ResolveError(f"cannot resolve {name!r}: {'; '.join(errors)}")


# RFC 6724 as glibc applies it by default (no /etc/gai.conf): glibc's precedence table
# (::1 50, ::/0 40, 2002::/16 30, ::/96 20, ::ffff:0:0/96 10, IPv4 as mapped).
_PRECEDENCE = (
    (ipaddress.ip_network("::1/128"), 50),
    (ipaddress.ip_network("::ffff:0:0/96"), 10),
    (ipaddress.ip_network("2002::/16"), 30),
    (ipaddress.ip_network("::/96"), 20),
)


def _precedence(addr: IPAddress) -> int:
    if addr.version == 4:
        return 10
    for net, value in _PRECEDENCE:
        if addr in net:
            return value
    return 40


def _scope(addr: IPAddress) -> int:
    """RFC 6724 §3.1 scope: 2 link-local (loopback too), 5 site-local, 14 global."""
    if addr.version == 4:
        return 2 if addr.is_loopback or addr.is_link_local else 14
    if addr.is_multicast:
        return addr.packed[1] & 0x0F
    if addr.is_loopback or addr.is_link_local:
        return 2
    return 5 if addr.is_site_local else 14


def native_order(
    addrs: tuple[IPAddress, ...], sources: tuple[IPAddress, ...]
) -> tuple[IPAddress, ...]:
    """`addrs` in the order glibc's getaddrinfo gives them on a host whose addresses are
    `sources` (the endpoint's): RFC 6724 rules 1 (no source of that family and scope:
    last), 2 (matching scope), 6 (precedence) and 8 (smaller scope); stable otherwise."""

    def key(dst: IPAddress) -> tuple[int, int, int, int]:
        scope = _scope(dst)
        fits = [_scope(s) for s in sources if s.version == dst.version and _scope(s) >= scope]
        usable = bool(fits)
        matching = usable and min(fits) == scope
        return (not usable, not matching, -_precedence(dst), scope)

    return tuple(sorted(addrs, key=key))


def source_for(dst: IPAddress, sources: tuple[IPAddress, ...]) -> IPAddress | None:
    """The address among `sources` (the endpoint's) a socket talking to `dst` gets as its
    own (RFC 6724 source selection, rules 2 and 8: the same scope, else the smallest larger
    one; loopback for loopback); None if none has `dst`'s family."""
    mine = [s for s in sources if s.version == dst.version]
    want = _scope(dst)
    fits = sorted(
        (s for s in mine if _scope(s) >= want),
        key=lambda s: (_scope(s), s.is_loopback != dst.is_loopback),
    )
    return fits[0] if fits else (mine[0] if mine else None)


def hosts_names(path: str = "/etc/hosts") -> frozenset[str]:
    """The names of a hosts file (lower case)."""
    return frozenset(_hosts_words(path))


def hosts_addresses(path: str = "/etc/hosts") -> frozenset[IPAddress]:
    """The addresses of a hosts file (glibc's "files" answers their reverse lookups)."""
    return frozenset(a for a in map(literal, _hosts_words(path, first=True)) if a is not None)


def _hosts_words(path: str, first: bool = False) -> list[str]:
    """A hosts file's addresses (`first`) or names (lower case)."""
    out: list[str] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                words = line.split("#", 1)[0].split()
                out += words[:1] if first else [n.lower() for n in words[1:]]
    except OSError:
        pass
    return out


class Names:
    """The name lookups of one wrapped run. The shim's getaddrinfo asks here first, so
    the program gets the endpoint's answer (its real addresses, NXDOMAIN as "no such
    name") and then connects to an address; `seen` maps that address back to the name
    and its DNS times for the connection's timings."""

    def __init__(
        self,
        session: EndpointSession,
        servers: list[tuple[IPAddress, int]],
        hosts: frozenset[str] | None = None,
        sources: tuple[IPAddress, ...] = (),
        hosts_addrs: frozenset[IPAddress] | None = None,
    ) -> None:
        self.session = session
        self.servers = servers
        self.sources = sources  # the endpoint's addresses, for the order of an answer
        self.hosts = hosts_names() if hosts is None else hosts
        self.hosts_addrs = hosts_addresses() if hosts_addrs is None else hosts_addrs
        self.seen: dict[IPAddress, tuple[str, Answer]] = {}

    def local(self, name: str) -> bool:
        """Answered on this side, as before (proxychains reads /etc/hosts)."""
        return name.rstrip(".").lower() in self.hosts or literal(name) is not None

    def local_address(self, addr: IPAddress) -> bool:
        """Its reverse lookup is answered on this side: an /etc/hosts address, as its
        forward lookup is."""
        return addr in self.hosts_addrs

    async def reverse(self, addr: IPAddress) -> tuple[str, int | None, int | None]:
        """The endpoint's name for `addr` (PTR) and the query's endpoint times; raises
        ResolveError (NoSuchName: it has none)."""
        return await reverse(self.session, addr, self.servers)

    async def lookup(self, name: str, family: int = 0) -> Answer:
        """Resolve from the endpoint (`family` 4 or 6: that type only; 0: both, in the
        order a program on the endpoint would get them); raises ResolveError (NoSuchName
        for NXDOMAIN)."""
        qtypes = {4: (dns.A,), 6: (dns.AAAA,)}.get(family, (dns.A, dns.AAAA))
        answer = await resolve(self.session, name, self.servers, qtypes=qtypes, every=True)
        if family not in (4, 6):
            ordered = native_order(answer.addresses, self.sources)
            answer = Answer(ordered, answer.sent, answer.answered, answer.names)
        if len(self.seen) > 4096:  # a long run: keep the recent ones
            self.seen.clear()
        for addr in answer.addresses:
            self.seen[addr] = (name, answer)
        return answer

    def label(self, rec: ConnTiming, addr: object) -> None:
        """A connection to an address the program looked up through us: its timings
        name the host and carry that lookup's DNS times."""
        if not isinstance(addr, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            return
        seen = self.seen.get(addr)
        if seen is not None:
            rec.host = seen[0]
            rec.dns_sent, rec.dns_answered = seen[1].sent, seen[1].answered
