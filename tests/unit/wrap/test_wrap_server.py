"""The SOCKS5 server bound to a session, over a scripted endpoint (ctl_fakes) and a
StringTransport for the program's side: replies, relaying, timings, errors."""

from __future__ import annotations

import ipaddress
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.names import dns

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "controller"))
from ctl_fakes import BASE_NS, Rig

from packetlab.wrap.server import WrapFactory, reply_for
from packetlab.wrap.socks5 import Rep, encode_address, reply
from packetlab.wrap.timeline import TimingLog

SERVER = ("192.0.2.80", 80)
DNS = ipaddress.IPv4Address("192.0.2.53")
GREETING = b"\x05\x01\x00"


def connect_req(host: Any, port: int) -> bytes:
    return b"\x05\x01\x00" + encode_address(host, port)


class Program(StringTransport):
    """The program's end as the SOCKS protocol sees it."""

    def __init__(self) -> None:
        super().__init__(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        self.aborted = False

    def abortConnection(self) -> None:
        self.aborted = True
        self.loseConnection()


def setup(tmp_path: Path) -> tuple[Rig, WrapFactory, Any, Program]:
    rig = Rig()
    rig.run(rig.session.ready)
    log = TimingLog(str(tmp_path / "t.jsonl"))
    factory = WrapFactory(rig.session, rig.clock, dns_servers=[(DNS, 53)], timings=log)
    proto = factory.buildProtocol(None)
    t = Program()
    proto.makeConnection(t)
    return rig, factory, proto, t


def settle(rig: Rig, rounds: int = 50) -> None:
    for _ in range(rounds):
        rig.pump.flush()
        rig.clock.advance(0.001)


def http_server(request: bytes) -> list[bytes]:
    assert request.startswith(b"GET ")
    return [b"HTTP/1.0 200 OK\r\n\r\n", b"hello"]


def test_connect_relays_both_ways_and_records_endpoint_times(tmp_path: Path) -> None:
    rig, factory, proto, t = setup(tmp_path)
    rig.endpoint.tcp_servers[SERVER] = http_server
    proto.dataReceived(GREETING)
    assert t.value() == b"\x05\x00"
    t.clear()
    proto.dataReceived(connect_req(ipaddress.ip_address(SERVER[0]), SERVER[1]))
    settle(rig)
    assert t.value() == reply(Rep.SUCCEEDED)
    t.clear()
    proto.dataReceived(b"GET / HTTP/1.0\r\n\r\n")
    settle(rig)
    assert t.value() == b"HTTP/1.0 200 OK\r\n\r\nhello"
    assert t.disconnecting  # PEERCLOSED: the server's FIN reaches the program
    proto.connectionLost(None)
    settle(rig)
    (rec,) = factory.timings.records
    assert rec.proto == "tcp" and rec.addr == SERVER[0] and rec.error is None
    assert rec.bytes_up == 18 and rec.bytes_down == 24
    assert BASE_NS <= rec.connect_start <= rec.connected <= rec.request_sent  # type: ignore[operator]
    assert rec.request_sent <= rec.first_byte <= rec.last_byte <= rec.peer_closed  # type: ignore[operator]
    factory.timings.close()
    line = json.loads((tmp_path / "t.jsonl").read_text())
    assert line["connect_ns"] == rec.connected - rec.connect_start  # type: ignore[operator]
    assert line["first_byte_ns"] == rec.first_byte - rec.request_sent  # type: ignore[operator]
    assert "nclose" in rig.endpoint.requests()


def test_early_data_waits_for_the_connect(tmp_path: Path) -> None:
    rig, _factory, proto, t = setup(tmp_path)
    rig.endpoint.tcp_servers[SERVER] = http_server
    proto.dataReceived(GREETING + connect_req(ipaddress.ip_address(SERVER[0]), 80) + b"GET /")
    proto.dataReceived(b" HTTP/1.0\r\n\r\n")
    settle(rig)
    assert t.value().endswith(b"hello")


def test_refused_connect_gets_connection_refused(tmp_path: Path) -> None:
    rig, factory, proto, t = setup(tmp_path)
    proto.dataReceived(GREETING + connect_req(ipaddress.ip_address("192.0.2.9"), 9))
    settle(rig, 200)
    assert t.value() == b"\x05\x00" + reply(Rep.CONNECTION_REFUSED)
    assert t.disconnecting
    (rec,) = factory.timings.records
    assert "REFUSED" in (rec.error or "")


def test_reset_connect_and_silent_connect(tmp_path: Path) -> None:
    rig, factory, proto, t = setup(tmp_path)
    rig.endpoint.tcp_reset.add(("192.0.2.9", 9))
    proto.dataReceived(GREETING + connect_req(ipaddress.ip_address("192.0.2.9"), 9))
    settle(rig, 200)
    assert t.value()[2:4] == bytes([5, Rep.CONNECTION_REFUSED])
    rig, factory, proto, t = setup(tmp_path)
    factory.connect_timeout = 0.05
    rig.endpoint.tcp_silent.add(("192.0.2.9", 9))
    proto.dataReceived(GREETING + connect_req(ipaddress.ip_address("192.0.2.9"), 9))
    settle(rig, 200)
    assert t.value()[2:4] == bytes([5, Rep.TTL_EXPIRED])


def dns_server(answer: str | None) -> Any:
    def serve(query: bytes) -> list[bytes]:
        q = dns.Message()
        q.fromStr(query)
        r = dns.Message(id=q.id, answer=1)
        r.queries = q.queries
        if answer is None:
            r.rCode = dns.ENAME
        elif q.queries[0].type == dns.A:
            r.answers = [dns.RRHeader(q.queries[0].name.name, payload=dns.Record_A(answer))]
        return [r.toStr()]

    return serve


def test_names_resolve_through_the_endpoints_dns_server(tmp_path: Path) -> None:
    rig, factory, proto, t = setup(tmp_path)
    rig.endpoint.udp_servers[(str(DNS), 53)] = dns_server(SERVER[0])
    rig.endpoint.tcp_servers[SERVER] = http_server
    proto.dataReceived(GREETING + connect_req("www.example", 80))
    settle(rig, 100)
    assert t.value() == b"\x05\x00" + reply(Rep.SUCCEEDED)
    proto.connectionLost(None)
    settle(rig)
    (rec,) = factory.timings.records
    assert rec.host == "www.example" and rec.addr == SERVER[0]
    assert rec.dns_sent is not None and rec.dns_answered is not None


def test_unknown_name_is_host_unreachable(tmp_path: Path) -> None:
    rig, factory, proto, t = setup(tmp_path)
    rig.endpoint.udp_servers[(str(DNS), 53)] = dns_server(None)
    proto.dataReceived(GREETING + connect_req("nx.example", 80))
    settle(rig, 100)
    assert t.value() == b"\x05\x00" + reply(Rep.HOST_UNREACHABLE)
    assert "no such name" in (factory.timings.records[0].error or "")


def test_bind_is_not_supported(tmp_path: Path) -> None:
    _rig, _factory, proto, t = setup(tmp_path)
    proto.dataReceived(
        GREETING + b"\x05\x02\x00" + encode_address(ipaddress.ip_address("0.0.0.0"), 0)
    )
    assert t.value() == b"\x05\x00" + reply(Rep.COMMAND_NOT_SUPPORTED)
    assert t.disconnecting


def test_garbage_is_closed_and_counted(tmp_path: Path) -> None:
    _rig, factory, proto, t = setup(tmp_path)
    proto.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
    assert t.value() == b"" and t.disconnecting and factory.refused == 1


def test_session_gone_resets_every_program_connection(tmp_path: Path) -> None:
    rig, factory, proto, t = setup(tmp_path)
    rig.endpoint.tcp_servers[SERVER] = lambda req: []
    proto.dataReceived(GREETING + connect_req(ipaddress.ip_address(SERVER[0]), 80))
    settle(rig)
    factory.abort_all()
    assert t.aborted


def test_reply_for_errors() -> None:
    from packetlab.controller import ConnectFailed, RequestFailed
    from packetlab.wire import Nopen

    assert reply_for(ConnectFailed(1, "UNREACH")) == Rep.HOST_UNREACHABLE
    assert reply_for(ConnectFailed(1, "UNREACH"), at_once=True) == Rep.NETWORK_UNREACHABLE
    assert reply_for(ConnectFailed(1, "REFUSED"), at_once=True) == Rep.CONNECTION_REFUSED
    assert reply_for(ConnectFailed(1, "not established within 5 s")) == Rep.TTL_EXPIRED
    assert reply_for(RequestFailed(Nopen(1, 4, 6, 0, b"\0" * 4, 0), 3)) == Rep.NOT_ALLOWED
    assert reply_for(RuntimeError()) == Rep.GENERAL_FAILURE


def test_a_server_that_speaks_first_is_heard_after_the_reply(tmp_path: Path) -> None:
    from packetlab.wire import Ndata, Nopen

    rig, _factory, proto, t = setup(tmp_path)
    rig.endpoint.tcp_servers[SERVER] = lambda req: [b"250 ok\r\n"]
    plain = rig.endpoint.established

    def banner_first(msg: Nopen) -> None:  # the banner arrives with the ESTABLISHED nstat
        rig.endpoint.send(
            Ndata(msg.sktid, msg.family, msg.proto, rig.endpoint.now(), b"220 hi\r\n")
        )
        plain(msg)

    rig.endpoint.established = banner_first  # type: ignore[method-assign]
    proto.dataReceived(GREETING + connect_req(ipaddress.ip_address(SERVER[0]), 80))
    settle(rig)
    assert t.value() == b"\x05\x00" + reply(Rep.SUCCEEDED) + b"220 hi\r\n"


def test_the_endpoint_side_address_of_a_connection_for_getsockname(tmp_path: Path) -> None:
    """The shim's getsockname asks by the program's loopback port: the endpoint socket's
    LADDR/LPORT (what the server sees), not our SOCKS connection's loopback end."""
    from ctl_fakes import LOCAL4
    from twisted.internet.defer import Deferred

    rig, factory, proto, t = setup(tmp_path)
    rig.endpoint.tcp_servers[SERVER] = http_server

    def local(port: int) -> Any:
        return rig.run(Deferred.fromCoroutine(factory.local_address(port)))

    assert local(40000) is None  # no connection yet
    proto.dataReceived(GREETING + connect_req(ipaddress.ip_address(SERVER[0]), 80))
    settle(rig, 100)
    assert t.value() == b"\x05\x00" + reply(Rep.SUCCEEDED)
    (sktid,) = rig.endpoint.sockets
    assert local(40000) == (LOCAL4, 50000 + sktid)
    assert local(40000) == (LOCAL4, 50000 + sktid)  # asked again: the same
    assert local(40001) is None  # another port: not ours
    proto.connectionLost(None)
    settle(rig)
    assert local(40000) is None


def test_a_lookup_without_a_family_gets_both_in_the_endpoints_order(tmp_path: Path) -> None:
    """A and AAAA both asked (at once); IPv6 first on an endpoint with global IPv6, as
    glibc orders them there. It gave the A addresses only."""
    from twisted.internet.defer import Deferred

    from packetlab.wrap.resolve import Names

    rig = setup(tmp_path)[0]

    def serve(query: bytes) -> list[bytes]:
        q = dns.Message()
        q.fromStr(query)
        r = dns.Message(id=q.id, answer=1)
        r.queries = q.queries
        name = q.queries[0].name.name
        if q.queries[0].type == dns.A:
            r.answers = [dns.RRHeader(name, payload=dns.Record_A("192.0.2.80"))]
        else:
            r.answers = [dns.RRHeader(name, dns.AAAA, payload=dns.Record_AAAA("2001:db8::80"))]
        return [r.toStr()]

    rig.endpoint.udp_servers[(str(DNS), 53)] = serve
    ip = ipaddress.ip_address
    for sources, first in (((ip("192.0.2.9"), ip("2001:db8::9")), "2001:db8::80"),
                           ((ip("192.0.2.9"), ip("::1")), "192.0.2.80")):  # fmt: skip
        names = Names(rig.session, [(DNS, 53)], hosts=frozenset(), sources=sources)
        answer = rig.run(Deferred.fromCoroutine(names.lookup("www.example", 0)))
        assert str(answer.addresses[0]) == first
        assert sorted(map(str, answer.addresses)) == ["192.0.2.80", "2001:db8::80"]
        assert answer.sent is not None and answer.answered is not None
        v4 = rig.run(Deferred.fromCoroutine(names.lookup("www.example", 4)))
        assert [str(a) for a in v4.addresses] == ["192.0.2.80"]


def test_a_failed_connect_is_one_timings_line_and_the_programs_reply(tmp_path: Path) -> None:
    """Session 25 (wrap25). An error nstat while the endpoint connects aborted the
    program's connection (it got a reset, not the SOCKS reply) and wrote the record once
    then (error "RESET") and again with the whole error."""
    dst = ipaddress.ip_address("192.0.2.9")
    rig, factory, proto, t = setup(tmp_path)
    rig.endpoint.tcp_reset.add(("192.0.2.9", 9))
    proto.dataReceived(GREETING + connect_req(dst, 9))
    settle(rig, 200)
    assert t.value() == b"\x05\x00" + reply(Rep.CONNECTION_REFUSED)
    assert not t.aborted
    (rec,) = factory.timings.records
    assert "failed" in (rec.error or "")
    lines = (tmp_path / "t.jsonl").read_text().splitlines()
    assert [json.loads(x)["id"] for x in lines] == [rec.id]


def test_the_reply_of_a_failed_connect_is_kept_for_the_shim(tmp_path: Path) -> None:
    """Session 25 (wrap25). The reply of the latest failed connect to a destination is
    kept for the shim's "E" request (connect()'s errno: proxychains makes every failure
    ECONNREFUSED); a later success clears it."""
    dst = ipaddress.ip_address("192.0.2.9")
    rig, factory, proto, _ = setup(tmp_path)
    rig.endpoint.tcp_reset.add(("192.0.2.9", 9))
    proto.dataReceived(GREETING + connect_req(dst, 9))
    settle(rig, 200)
    assert factory.connect_failure(dst, 9) == Rep.CONNECTION_REFUSED
    assert factory.connect_failure(dst, 10) is None

    rig, factory, proto, _ = setup(tmp_path)
    factory.connect_timeout = 0.05
    rig.endpoint.tcp_silent.add(("192.0.2.9", 9))
    proto.dataReceived(GREETING + connect_req(dst, 9))
    settle(rig, 200)
    assert factory.connect_failure(dst, 9) == Rep.TTL_EXPIRED
    rig.endpoint.tcp_silent.clear()
    rig.endpoint.tcp_servers[("192.0.2.9", 9)] = http_server
    proto = factory.buildProtocol(None)
    proto.makeConnection(Program())
    proto.dataReceived(GREETING + connect_req(dst, 9))
    settle(rig, 200)
    assert factory.connect_failure(dst, 9) is None


def test_a_connect_the_endpoint_refuses_is_not_allowed_and_said_once(
    tmp_path: Path, capsys: Any
) -> None:
    """Session 25 (wrapb25). An nopen the endpoint's rules refuse (ESKTOPNDENY: a
    certificate's valid_dest, a monitor) is SOCKS NOT_ALLOWED (the shim's EPERM), kept
    for "E", and one stderr line a run says whose rule it was (the program only sees
    "Operation not permitted")."""
    from packetlab.wire import Status

    dst = ipaddress.ip_address("2001:db8::9")
    rig, factory, _, _ = setup(tmp_path)
    rig.endpoint.nopen = lambda msg: rig.endpoint.result(Status.ESKTOPNDENY)  # type: ignore[method-assign]
    for port in (9, 10):
        proto = factory.buildProtocol(None)
        t = Program()
        proto.makeConnection(t)
        proto.dataReceived(GREETING + connect_req(dst, port))
        settle(rig, 200)
        assert t.value() == b"\x05\x00" + reply(Rep.NOT_ALLOWED)
        assert factory.connect_failure(dst, port) == Rep.NOT_ALLOWED
    err = capsys.readouterr().err
    assert err.count("pktlab wrap: the endpoint refused a connection") == 1, err
    assert "to [2001:db8::9]:9 (ESKTOPNDENY:" in err and "EPERM" in err


def test_the_destination_of_a_connection_is_known_by_its_loopback_port(
    tmp_path: Path,
) -> None:
    """Session 25 (wrapb25): for the shim's "P" (getpeername of a socket inherited over
    exec()): the address the endpoint connected to and the port asked, by the program's
    loopback port; None before the connect is up and after the connection ends."""
    rig, factory, proto, t = setup(tmp_path)
    rig.endpoint.tcp_servers[SERVER] = http_server
    assert factory.peer_address(40000) is None
    proto.dataReceived(GREETING + connect_req(ipaddress.ip_address(SERVER[0]), SERVER[1]))
    settle(rig)
    assert t.value().endswith(reply(Rep.SUCCEEDED))
    assert factory.peer_address(40000) == (ipaddress.ip_address(SERVER[0]), SERVER[1])
    assert factory.peer_address(40001) is None
    proto.connectionLost(None)
    settle(rig)
    assert factory.peer_address(40000) is None


def test_a_connect_that_fails_at_once_unreachable_is_network_unreachable(
    tmp_path: Path,
) -> None:
    """Session 26 (wrap26). The endpoint's connect() call failed at once (no route: the
    kernel's ENETUNREACH): STAT is UNREACH as the nopen is answered, and the reference
    sends no nstat (ours sends UNKNOWN). SOCKS NETWORK_UNREACHABLE (the shim's
    ENETUNREACH); before: HOST_UNREACHABLE (EHOSTUNREACH), as for an UNREACH that comes
    later (an ICMP unreachable, no ARP answer), which stays so."""
    from packetlab.wire import Nopen, SocketState

    dst = ipaddress.ip_address("192.0.2.9")
    for delay, want in ((None, Rep.NETWORK_UNREACHABLE), (0.02, Rep.HOST_UNREACHABLE)):
        rig, factory, proto, t = setup(tmp_path)
        ep = rig.endpoint

        def nopen(msg: Nopen, delay: float | None = delay, ep: Any = ep) -> None:
            skt = {"family": msg.family, "proto": msg.proto, "msg": msg}
            skt["state"] = SocketState.UNREACH if delay is None else SocketState.OPENING
            ep.sockets[msg.sktid] = skt
            ep.result()
            if delay is not None:
                ep.clock.callLater(delay, skt.__setitem__, "state", SocketState.UNREACH)

        ep.nopen = nopen  # type: ignore[method-assign]
        proto.dataReceived(GREETING + connect_req(dst, 9))
        settle(rig, 200)
        assert t.value() == b"\x05\x00" + reply(want), delay
        assert factory.connect_failure(dst, 9) == want
        (rec,) = factory.timings.records
        assert "UNREACH" in (rec.error or "")
        assert "nclose" in ep.requests()


def test_proxychains_gets_its_method_at_once_and_the_connect_in_one_trip(tmp_path: Path) -> None:
    """proxychains-ng waited for our event loop's method selection before it sent the
    CONNECT: two round trips through the wrapper per connect (session 29). With
    `early_reply` the selection is written as the connection is accepted; greeting and
    request then come together and the reply follows alone."""
    rig = Rig()
    rig.run(rig.session.ready)
    log = TimingLog(str(tmp_path / "t.jsonl"))
    factory = WrapFactory(
        rig.session, rig.clock, dns_servers=[(DNS, 53)], timings=log, early_reply=True
    )
    rig.endpoint.tcp_servers[SERVER] = http_server
    proto = factory.buildProtocol(None)
    t = Program()
    proto.makeConnection(t)
    assert t.value() == b"\x05\x00"  # before any byte from the program
    t.clear()
    proto.dataReceived(GREETING + connect_req(ipaddress.ip_address(SERVER[0]), SERVER[1]))
    settle(rig)
    assert t.value() == reply(Rep.SUCCEEDED)  # no second method selection
    # without it (--socks-env's clients), RFC 1928's order
    _rig, _factory, proto2, t2 = setup(tmp_path)
    assert t2.value() == b""
    proto2.dataReceived(GREETING)
    assert t2.value() == b"\x05\x00"


@pytest.mark.parametrize("stamps", [True, False], ids=["stamps", "no-stamps"])
def test_a_connect_reads_the_endpoints_time_only_when_someone_reads_it(
    tmp_path: Path, stamps: bool
) -> None:
    """Two TIME reads bracketed every nopen, for the timings' connect_start and
    connect_issued; the CLI without --timings (and without --fidelity) reads neither,
    so a connect costs two requests and answers fewer (session 29: ~14 % of the
    wrapper's CPU per connection)."""
    rig = Rig()
    rig.run(rig.session.ready)
    log = TimingLog(str(tmp_path / "t.jsonl"))
    factory = WrapFactory(
        rig.session, rig.clock, dns_servers=[(DNS, 53)], timings=log, stamps=stamps
    )
    rig.endpoint.tcp_servers[SERVER] = http_server
    proto = factory.buildProtocol(None)
    t = Program()
    proto.makeConnection(t)
    before = rig.endpoint.requests().count("mread")
    proto.dataReceived(GREETING + connect_req(ipaddress.ip_address(SERVER[0]), SERVER[1]))
    settle(rig)
    assert t.value().endswith(reply(Rep.SUCCEEDED))
    # STAT after the nopen and the socket's local address: always; TIME twice: stamps
    reads = rig.endpoint.requests().count("mread") - before
    assert reads == (4 if stamps else 2)
    (rec,) = [r for r in [proto.rec] if r is not None]
    assert (rec.connect_start is not None) == stamps
    assert (rec.connect_issued is not None) == stamps and rec.connected is not None
