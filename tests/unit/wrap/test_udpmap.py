"""The shim's map requests (family, port, address → relay port): valid ones get a port,
malformed or oversized ones an answer of 0 or a closed connection, never an exception."""

from __future__ import annotations

import struct
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from packetlab.wrap.shimctl import MapServer
from packetlab.wrap.timeline import TimingLog
from packetlab.wrap.udpmap import UdpMap


class Port:
    def __init__(self, number: int) -> None:
        self.number = number

    def getHost(self) -> IPv4Address:
        return IPv4Address("UDP", "127.0.0.1", self.number)


class Reactor:
    """listenUDP only: records (interface, protocol) and hands out port numbers."""

    def __init__(self) -> None:
        self.udp: list[tuple[str, Any]] = []
        self.sizes: list[int] = []

    def listenUDP(
        self, port: int, proto: Any, interface: str = "", maxPacketSize: int = 8192
    ) -> Port:
        self.udp.append((interface, proto))
        self.sizes.append(maxPacketSize)
        return Port(40000 + len(self.udp))


def make() -> tuple[UdpMap, Reactor]:
    reactor = Reactor()
    return UdpMap(None, reactor, TimingLog(None), None), reactor  # type: ignore[arg-type]


def ask(udpmap: UdpMap, data: bytes) -> tuple[bytes, bool]:
    proto: Any = MapServer(udpmap).buildProtocol(None)
    t = StringTransport()
    proto.makeConnection(t)
    proto.dataReceived(data)
    return t.value(), t.disconnecting


def test_one_relay_port_per_destination() -> None:
    udpmap, reactor = make()
    v4 = bytes([4]) + struct.pack(">H", 53) + bytes([192, 0, 2, 53])
    answer, closed = ask(udpmap, v4)
    assert closed and len(answer) == 2
    assert ask(udpmap, v4)[0] == answer  # the same destination: the same port
    v6 = bytes([6]) + struct.pack(">H", 53) + bytes(15) + b"\x01"
    ask(udpmap, v6)
    assert [u[0] for u in reactor.udp] == ["127.0.0.1", "::1"]
    assert len(udpmap.relays) == 2
    # a relay port reads whole datagrams (Twisted's default of 8192 cut longer ones)
    assert reactor.sizes == [65535, 65535]


def test_a_request_split_in_pieces_is_answered_once_complete() -> None:
    udpmap, _ = make()
    proto: Any = MapServer(udpmap).buildProtocol(None)
    t = StringTransport()
    proto.makeConnection(t)
    req = bytes([4]) + struct.pack(">H", 53) + bytes([192, 0, 2, 1])
    for i in range(len(req)):
        proto.dataReceived(req[i : i + 1])
    assert len(t.value()) == 2 and t.disconnecting


def test_bad_requests() -> None:
    udpmap, _ = make()
    assert ask(udpmap, bytes([9, 0, 53, 1, 2, 3, 4])) == (b"\0\0", True)  # unknown family
    assert ask(udpmap, b"\x04" + b"\x00" * 30)[1]  # too long: closed
    assert udpmap.relay_port(b"\x04\x00") == 0
    assert udpmap.relay_port(b"") == 0
    assert udpmap.relays == {}


class FakeNames:
    """Names.lookup over a table: name -> addresses, or the error to raise."""

    def __init__(self, table: dict[str, Any]) -> None:
        self.table = table
        self.asked: list[tuple[str, int]] = []

    def local(self, name: str) -> bool:
        return name == "localhost"

    async def lookup(self, name: str, family: int = 0) -> Any:
        from packetlab.wrap.resolve import Answer

        self.asked.append((name, family))
        found = self.table[name]
        if isinstance(found, Exception):
            raise found
        return Answer(tuple(found), None, None)


def test_name_lookups_answer_the_endpoints_addresses_or_no_such_name() -> None:
    """The shim's getaddrinfo asks here: the program gets the endpoint's addresses, and
    NXDOMAIN as "no such name" (curl exit 6) where it got a placeholder address and
    then a refused connection (exit 7)."""
    import ipaddress

    from packetlab.wrap.resolve import NoSuchName, ResolveError
    from packetlab.wrap.shimctl import LOOKUP_FAILED, LOOKUP_LOCAL, LOOKUP_NONAME, LOOKUP_OK

    log = TimingLog(None)
    names = FakeNames({
        "www.test": [ipaddress.ip_address("192.0.2.80"), ipaddress.ip_address("2001:db8::1")],
        "nx.test": NoSuchName("cannot resolve 'nx.test': no such name"),
        "down.test": ResolveError("cannot resolve 'down.test': no answer"),
    })  # fmt: skip
    udpmap = UdpMap(None, Reactor(), log, None, names)  # type: ignore[arg-type]

    def lookup(name: bytes, family: int = 0) -> bytes:
        return ask(udpmap, b"N" + bytes([family, len(name)]) + name)[0]

    assert lookup(b"www.test", 4) == (
        bytes([LOOKUP_OK, 2, 4, 192, 0, 2, 80, 6]) + ipaddress.ip_address("2001:db8::1").packed
    )
    assert names.asked == [("www.test", 4)]
    assert lookup(b"nx.test") == bytes([LOOKUP_NONAME, 0])
    assert lookup(b"down.test") == bytes([LOOKUP_FAILED, 0])
    assert lookup(b"localhost") == bytes([LOOKUP_LOCAL, 0])  # /etc/hosts: this side
    assert [(r.proto, r.host) for r in log.records] == [("dns", "nx.test"), ("dns", "down.test")]
    assert "no such name" in (log.records[0].error or "")


def test_a_name_that_cannot_be_asked_or_a_failing_lookup_is_still_answered() -> None:
    """`getent ahosts a..b` hung: the name's IDNA encoding raised, the lookup was never
    answered, and the program's getaddrinfo waited for ever."""
    import ipaddress

    from packetlab.wrap.resolve import Names
    from packetlab.wrap.shimctl import LOOKUP_FAILED, LOOKUP_NONAME

    names = Names(None, [(ipaddress.ip_address("192.0.2.53"), 53)], hosts=frozenset())  # type: ignore[arg-type]
    udpmap = UdpMap(None, Reactor(), TimingLog(None), None, names)  # type: ignore[arg-type]
    for bad in (b"a..b", b"x" * 70 + b".test"):
        assert ask(udpmap, b"N\x00" + bytes([len(bad)]) + bad) == (
            bytes([LOOKUP_NONAME, 0]), True,
        )  # fmt: skip
    broken = FakeNames({"www.test": RuntimeError("a bug")})
    udpmap = UdpMap(None, Reactor(), TimingLog(None), None, broken)  # type: ignore[arg-type]
    assert ask(udpmap, b"N\x00\x08www.test") == (bytes([LOOKUP_FAILED, 0]), True)


def test_getsockname_requests_answer_the_endpoint_side_address() -> None:
    """ "S" + the program's loopback port: family, port, address; 0 when unknown."""
    import ipaddress

    from twisted.internet.defer import succeed

    ip = ipaddress.ip_address
    known: dict[int, Any] = {4000: (ip("192.0.2.7"), 51000), 4001: (ip("2001:db8::7"), 443)}
    udpmap = UdpMap(None, Reactor(), TimingLog(None), None)  # type: ignore[arg-type]
    assert ask(udpmap, b"S\x0f\xa0") == (b"\0", True)  # no one to ask yet
    udpmap.local_of = lambda port: succeed(known.get(port))
    assert ask(udpmap, b"S\x0f\xa0") == (b"\x04\xc7\x38" + ip("192.0.2.7").packed, True)
    assert ask(udpmap, b"S\x0f\xa1") == (b"\x06\x01\xbb" + ip("2001:db8::7").packed, True)
    assert ask(udpmap, b"S\x0f\xa2") == (b"\0", True)
    assert ask(udpmap, b"S\x0f") == (b"", False)  # incomplete: wait for the rest


def test_reverse_lookups_answer_the_endpoints_name_or_no_such_name() -> None:
    """ "R" + family + address: the endpoint's PTR name (getnameinfo, gethostbyaddr; the
    shim got numbers only from proxychains), "no such name", a temporary failure, or
    "answer it on this side" for an /etc/hosts address; a bad family is an answer too."""
    import ipaddress

    from packetlab.wrap.resolve import NoSuchName, ResolveError
    from packetlab.wrap.shimctl import LOOKUP_FAILED, LOOKUP_LOCAL, LOOKUP_NONAME, LOOKUP_OK

    ip = ipaddress.ip_address
    table: dict[Any, Any] = {
        ip("192.0.2.7"): "www.example.test",
        ip("2001:db8::7"): "six.example.test",
        ip("192.0.2.8"): NoSuchName("cannot resolve 192.0.2.8: no such name"),
        ip("192.0.2.9"): ResolveError("cannot resolve 192.0.2.9: no answer"),
    }

    class Reverse(FakeNames):
        def local_address(self, addr: Any) -> bool:
            return bool(addr == ip("127.0.0.1"))

        async def reverse(self, addr: Any) -> tuple[str, None, None]:
            found = table[addr]
            if isinstance(found, Exception):
                raise found
            return found, None, None

    log = TimingLog(None)
    udpmap = UdpMap(None, Reactor(), log, None, Reverse({}))  # type: ignore[arg-type]

    def reverse(addr: str) -> tuple[bytes, bool]:
        a = ip(addr)
        return ask(udpmap, b"R" + bytes([a.version]) + a.packed)

    assert reverse("192.0.2.7") == (bytes([LOOKUP_OK, 16]) + b"www.example.test", True)
    assert reverse("2001:db8::7")[0] == bytes([LOOKUP_OK, 16]) + b"six.example.test"
    assert reverse("192.0.2.8")[0] == bytes([LOOKUP_NONAME, 0])
    assert reverse("192.0.2.9")[0] == bytes([LOOKUP_FAILED, 0])
    assert reverse("127.0.0.1")[0] == bytes([LOOKUP_LOCAL, 0])
    assert ask(udpmap, b"R\x09\x01\x02") == (bytes([LOOKUP_FAILED, 0]), True)  # no family 9
    assert ask(udpmap, b"R\x04\x01\x02") == (b"", False)  # incomplete: wait for the rest
    assert [(r.proto, r.host) for r in log.records] == [("dns", "192.0.2.8"), ("dns", "192.0.2.9")]


def test_udp_getsockname_requests() -> None:
    """ "U" + family + the program's port + the relay port it is connected to (0: none):
    the endpoint socket's port; connected, with the endpoint's address towards the peer
    (its LADDR is unspecified: the socket is not connected at the endpoint)."""
    import ipaddress

    from packetlab.wrap.udpmap import _Sock

    ip = ipaddress.ip_address
    names = FakeNames({})
    names.sources = (ip("127.0.0.1"), ip("192.0.2.5"))  # type: ignore[attr-defined]
    udpmap = UdpMap(None, Reactor(), TimingLog(None), None, names)  # type: ignore[arg-type]
    relay = udpmap.relay_port(bytes([4]) + struct.pack(">H", 53) + ip("198.51.100.1").packed)
    sock = _Sock(udpmap, ("127.0.0.1", 5000), 4)
    sock.sktid = 3
    sock.opened.callback(None)

    async def local() -> tuple[None, int]:
        return None, 61000

    sock.local = local  # type: ignore[method-assign]
    udpmap.socks[("127.0.0.1", 5000, 4)] = sock
    assert ask(udpmap, b"U\x04" + struct.pack(">HH", 5000, 0)) == (
        b"\x04" + struct.pack(">H", 61000) + bytes(4), True,
    )  # fmt: skip
    assert ask(udpmap, b"U\x04" + struct.pack(">HH", 5000, relay)) == (
        b"\x04" + struct.pack(">H", 61000) + ip("192.0.2.5").packed, True,
    )  # fmt: skip
    assert ask(udpmap, b"U\x04\x13") == (b"", False)  # incomplete


def test_connect_failure_requests() -> None:
    """ "E" + family + port + address (session 25): the SOCKS reply code of the latest
    failed TCP connect to that destination (the shim's connect() errno), 0 if none;
    a bad family is answered 0 and closed, a short request waits, pieces add up."""
    import ipaddress

    udpmap, _ = make()
    seen: list[tuple[str, int]] = []

    def failure_of(addr: Any, port: int) -> int | None:
        seen.append((str(addr), port))
        return 6 if port == 80 else None

    udpmap.failure_of = failure_of
    v4 = b"E\x04" + struct.pack(">H", 80) + bytes([192, 0, 2, 1])
    assert ask(udpmap, v4) == (b"\x06", True)
    v6 = b"E\x06" + struct.pack(">H", 81) + ipaddress.ip_address("2001:db8::1").packed
    assert ask(udpmap, v6) == (b"\x00", True)
    assert seen == [("192.0.2.1", 80), ("2001:db8::1", 81)]
    assert ask(udpmap, b"E\x05\x00\x50") == (b"\x00", True)  # no such family
    assert ask(udpmap, v4[:5]) == (b"", False)  # incomplete
    proto: Any = MapServer(udpmap).buildProtocol(None)
    t = StringTransport()
    proto.makeConnection(t)
    for i in range(len(v4)):
        proto.dataReceived(v4[i : i + 1])
    assert t.value() == b"\x06" and t.disconnecting

    def broken(addr: Any, port: int) -> int | None:
        raise RuntimeError("a bug")

    udpmap.failure_of = broken
    assert ask(udpmap, v4) == (b"\x00", True)  # still answered
    udpmap.failure_of = None
    assert ask(udpmap, v4) == (b"\x00", True)


def test_peer_requests() -> None:
    """ "P" + loopback port (session 25, wrapb25): the destination of the program's TCP
    connection from that port (getpeername of a socket inherited over exec()); 0 when
    unknown, when nothing answers, or on a bug; a short request waits."""
    import ipaddress

    udpmap, _ = make()
    assert ask(udpmap, b"P" + struct.pack(">H", 40000)) == (b"\x00", True)  # no peer_of

    def peer_of(port: int) -> Any:
        return {
            40000: (ipaddress.ip_address("192.0.2.1"), 80),
            40001: (ipaddress.ip_address("2001:db8::1"), 443),
        }.get(port)

    udpmap.peer_of = peer_of
    v4 = b"\x04" + struct.pack(">H", 80) + bytes([192, 0, 2, 1])
    assert ask(udpmap, b"P" + struct.pack(">H", 40000)) == (v4, True)
    v6 = b"\x06" + struct.pack(">H", 443) + ipaddress.ip_address("2001:db8::1").packed
    assert ask(udpmap, b"P" + struct.pack(">H", 40001)) == (v6, True)
    assert ask(udpmap, b"P" + struct.pack(">H", 40002)) == (b"\x00", True)
    assert ask(udpmap, b"P\x9c") == (b"", False)  # incomplete

    def broken(port: int) -> Any:
        raise RuntimeError("a bug")

    udpmap.peer_of = broken
    assert ask(udpmap, b"P" + struct.pack(">H", 40000)) == (b"\x00", True)


def test_relay_destination_requests() -> None:
    """ "D" + relay port (session 25, wrapb25): the destination a relay port stands for,
    as the program asked it (a UDP socket inherited over exec()); 0 for another port."""
    udpmap, _ = make()
    v6 = bytes([6]) + struct.pack(">H", 53) + bytes(10) + b"\xff\xff" + bytes([192, 0, 2, 53])
    number = struct.unpack(">H", ask(udpmap, v6)[0])[0]
    answer = ask(udpmap, b"D" + struct.pack(">H", number))
    assert answer == (v6, True)  # the v4-mapped address, as asked
    other = (number + 1) % 65536 or 1
    assert ask(udpmap, b"D" + struct.pack(">H", other)) == (b"\x00", True)
    assert ask(udpmap, b"D\x01") == (b"", False)  # incomplete


def test_a_cname_answer_carries_its_chain_to_the_shim() -> None:
    """Session 25: after the addresses, a CNAME's chain (count, then length + name each;
    the canonical name last), for ai_canonname, h_name and h_aliases as glibc's. The
    chain is read from the DNS reply by resolve.chain_in; none without a CNAME."""
    import ipaddress

    from twisted.names import dns

    from packetlab.wrap.resolve import Answer, chain_in

    m = dns.Message(id=7, answer=1)
    m.queries = [dns.Query(b"www.test", dns.A)]
    m.answers = [
        dns.RRHeader(b"WWW.test", dns.CNAME, payload=dns.Record_CNAME(b"mid.test")),
        dns.RRHeader(b"mid.test", dns.CNAME, payload=dns.Record_CNAME(b"v4.test")),
        dns.RRHeader(b"v4.test", payload=dns.Record_A("192.0.2.4")),
    ]
    assert chain_in(m.toStr(), "www.test.") == ("WWW.test", "mid.test", "v4.test")
    m.answers = m.answers[2:]
    assert chain_in(m.toStr(), "v4.test") == ()
    loop = dns.Message(id=8, answer=1)
    loop.answers = [
        dns.RRHeader(b"a.test", dns.CNAME, payload=dns.Record_CNAME(b"b.test")),
        dns.RRHeader(b"b.test", dns.CNAME, payload=dns.Record_CNAME(b"a.test")),
    ]
    assert chain_in(loop.toStr(), "a.test") == ("a.test", "b.test", "a.test")  # ends
    assert chain_in(b"garbage", "a.test") == ()

    class Chained(FakeNames):
        async def lookup(self, name: str, family: int = 0) -> Any:
            return Answer((ipaddress.ip_address("192.0.2.4"),), None, None, ("idn.test", "x.test"))

    udpmap = UdpMap(None, Reactor(), TimingLog(None), None, Chained({}))  # type: ignore[arg-type]
    assert ask(udpmap, b"N\x04\x08idn.test")[0] == (
        bytes([0, 1, 4, 192, 0, 2, 4]) + b"\x02\x08idn.test\x06x.test"
    )


def test_a_burst_from_a_new_socket_waits_for_its_endpoint_socket() -> None:
    """Session 25: while the endpoint opens a program socket's UDP socket (a controller
    round trip), its datagrams wait, as a kernel's socket buffer holds them: 64 did, and
    a burst of 200 (Python's sendto in a loop) lost 136 where natively none. Bounded:
    1024 datagrams, 1 MiB."""
    import ipaddress

    from twisted.internet.defer import Deferred

    from packetlab.wrap.udpmap import MAX_PENDING, MAX_PENDING_BYTES

    class Session:
        def free_sktid(self) -> int:
            return 1

        def nopen_udp(self, *args: Any, **kwargs: Any) -> Deferred[Any]:
            return Deferred()  # still opening

    def burst(sizes: list[int]) -> Any:
        udpmap = UdpMap(Session(), Reactor(), TimingLog(None), None)  # type: ignore[arg-type]
        udpmap.relay_port(bytes([4]) + struct.pack(">H", 53) + bytes([192, 0, 2, 53]))
        relay, _ = udpmap.relays[(ipaddress.ip_address("192.0.2.53"), 53)]
        for n in sizes:
            relay.datagramReceived(b"x" * n, ("127.0.0.1", 5000))
        return udpmap.socks[("127.0.0.1", 5000, 4)]

    assert len(burst([10] * 200).waiting) == 200
    assert len(burst([10] * (MAX_PENDING + 5)).waiting) == MAX_PENDING
    big = burst([65535] * 20)
    assert len(big.waiting) == MAX_PENDING_BYTES // 65535
    assert big.waiting_bytes <= MAX_PENDING_BYTES


def test_the_socket_used_longest_ago_is_reused_past_max_flows() -> None:
    """Session 25: a program socket's close() is not seen here, so a run that made more
    than MAX_FLOWS UDP sockets one after another (a script running dig 200 times) had
    every datagram of the 129th and later dropped. Now the endpoint socket used longest
    ago is closed for the new one (its flows' timings written)."""
    import ipaddress

    from twisted.internet.defer import Deferred, succeed

    from packetlab.wrap.udpmap import MAX_FLOWS

    class Sock:
        def add_callback(self, f: Any) -> None:
            pass

    class Session:
        def __init__(self) -> None:
            self.n = 0
            self.closed: list[int] = []

        def free_sktid(self) -> int:
            self.n += 1
            return self.n

        def nopen_udp(self, *args: Any, **kwargs: Any) -> Deferred[Any]:
            return succeed(Sock())

        def find_socket(self, sktid: int) -> object:
            return object()

        def nclose(self, sktid: int) -> Deferred[Any]:
            self.closed.append(sktid)
            return succeed(None)

        def nsend(self, *args: Any, **kwargs: Any) -> Deferred[Any]:
            return Deferred()

    session, log = Session(), TimingLog(None)
    udpmap = UdpMap(session, Reactor(), log, None)  # type: ignore[arg-type]
    udpmap.relay_port(bytes([4]) + struct.pack(">H", 53) + bytes([192, 0, 2, 53]))
    relay, _ = udpmap.relays[(ipaddress.ip_address("192.0.2.53"), 53)]
    for port in range(5000, 5000 + MAX_FLOWS):
        relay.datagramReceived(b"q", ("127.0.0.1", port))
    relay.datagramReceived(b"again", ("127.0.0.1", 5000))  # 5001 is now the oldest
    relay.datagramReceived(b"new", ("127.0.0.1", 6000))
    assert len(udpmap.socks) == MAX_FLOWS and udpmap.reused == 1
    assert session.closed == [2]  # 5001's endpoint socket
    assert ("127.0.0.1", 5001, 4) not in udpmap.socks and ("127.0.0.1", 5001) not in relay.flows
    assert ("127.0.0.1", 6000, 4) in udpmap.socks and ("127.0.0.1", 5000, 4) in udpmap.socks
    assert len(log.records) == 1 and log.records[0].datagrams_up == 1
    relay.datagramReceived(b"back", ("127.0.0.1", 5001))  # it sends again: a new one
    assert ("127.0.0.1", 5001, 4) in udpmap.socks and session.closed == [2, 3]


def test_past_max_destinations_the_refusal_is_said_once(capsys: Any) -> None:
    """Session 25: the 257th UDP destination of a run made the program's sendto fail
    ENETUNREACH with nothing said why; now one line on stderr."""
    from packetlab.wrap.udpmap import MAX_DESTINATIONS

    udpmap, _ = make()
    for port in range(1, MAX_DESTINATIONS + 3):
        answer, _ = ask(udpmap, bytes([4]) + struct.pack(">H", port) + bytes([192, 0, 2, 1]))
        assert (answer == b"\0\0") == (port > MAX_DESTINATIONS)
    err = capsys.readouterr().err
    assert err.count("pktlab wrap: a run sends UDP to at most 256 destinations") == 1
    assert "192.0.2.1:257 and other new ones are refused (ENETUNREACH" in err


def test_the_relay_ports_are_listed_for_the_shim() -> None:
    """ "L" (session 26, wrap26): every relay port of the run, count(2) then port(2)
    each, so that the shim of a process with a UDP socket from exec() asks "D" only about
    those; a failing handler still answers (none)."""
    udpmap, _ = make()
    assert ask(udpmap, b"L") == (b"\0\0", True)
    v4 = bytes([4]) + struct.pack(">H", 53) + bytes([192, 0, 2, 53])
    v6 = bytes([6]) + struct.pack(">H", 53) + bytes(15) + b"\x01"
    ports = sorted(struct.unpack(">H", ask(udpmap, d)[0])[0] for d in (v4, v6))
    assert ask(udpmap, b"L") == (struct.pack(">3H", 2, *ports), True)

    def broken() -> Any:
        raise RuntimeError("a bug")

    udpmap.relay_ports = broken  # type: ignore[method-assign]
    assert ask(udpmap, b"L") == (b"\0\0", True)
