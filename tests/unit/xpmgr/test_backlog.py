# mypy: disable-error-code="union-attr"
"""The manager's backlog connections to a proxy (active mode) over fake transports,
against a proxy side driven by hand with real TLS in memory (TLSHandoff)."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from packetlab import wire
from packetlab.controller.backlog import PREAMBLE, BacklogConnection, BacklogPool, backoff
from packetlab.ppks import generate_private_key, issue_certificate
from packetlab.tls import (
    AuthMode,
    Credentials,
    PPKSClientCreator,
    PPKSServerOptions,
    PPKSTLSFactory,
    ServerEntry,
)
from packetlab.tls.handoff import TLSHandoff


@pytest.fixture(scope="module")
def options() -> PPKSServerOptions:
    key = generate_private_key()
    cert = issue_certificate("agent", key, key, 0, 2**31 - 1)
    return PPKSServerOptions({}, default=ServerEntry(Credentials([cert], key), AuthMode.AGENT,
                                                      require_client_cert=False))  # fmt: skip


class Pool:
    """What a BacklogConnection needs of its BacklogPool, recording the calls."""

    def __init__(self, options: PPKSServerOptions) -> None:
        self.creator = PPKSClientCreator(None, AuthMode.AGENT)
        self.reactor = Clock()
        self.step_timeout = 2.0
        self.where = "proxy:20557"
        self.snikey = "snikey1"
        self.hard_failure: str | None = None
        self.server_factory = PPKSTLSFactory(options, False, Factory.forProtocol(Protocol))
        self.calls: list[str] = []

    def established(self, conn: Any) -> None:
        self.calls.append("established")

    def tls_failed(self, why: str) -> None:
        self.hard_failure = why
        self.calls.append("tls_failed")

    def claimed(self, conn: Any) -> None:
        self.calls.append("claimed")

    def unclaim(self) -> None:
        self.calls.append("unclaim")

    def lost(self, conn: Any, state: str) -> None:
        self.calls.append(f"lost {state}")


def registered_up_to_result(
    options: PPKSServerOptions,
) -> tuple[BacklogConnection, StringTransport, TLSHandoff, Pool]:
    """A backlog connection that has sent its xreg; the proxy side has read it."""
    pool = Pool(options)
    conn = BacklogConnection(pool)  # type: ignore[arg-type]
    t = StringTransport()
    conn.makeConnection(t)
    proxy = TLSHandoff(options.serverConnectionForTLS(None), is_client=False)  # type: ignore[arg-type]

    def to_proxy() -> wire.Message | None:
        data = t.value()
        t.clear()
        step = proxy.receive(data)
        if step.out:
            conn.dataReceived(step.out)
        items = list(wire.Framer().feed(step.data))
        return items[0] if items else None  # type: ignore[return-value]

    to_proxy()  # ClientHello -> server flight
    assert to_proxy() == wire.Xreg(b"snikey1")  # client Finished + xreg
    return conn, t, proxy, pool


def test_preamble_in_the_same_segment_as_the_result(options: PPKSServerOptions) -> None:
    """OBSERVED §4.1: a proxy that writes PKTLAB right behind the result, before our
    close_notify, works with the reference pktxpmgr; the raw bytes are not TLS."""
    conn, t, proxy, pool = registered_up_to_result(options)
    conn.dataReceived(proxy.send(wire.encode(wire.Result())) + PREAMBLE)
    assert conn.state == "idle" and pool.calls == ["established"]
    assert t.value().endswith(PREAMBLE)  # close_notify, then the echo


def test_preamble_after_the_proxy_close_notify_in_one_segment(
    options: PPKSServerOptions,
) -> None:
    conn, t, proxy, _pool = registered_up_to_result(options)
    conn.dataReceived(proxy.send(wire.encode(wire.Result())) + proxy.close() + PREAMBLE)
    assert conn.state == "idle" and t.value().endswith(PREAMBLE)


def test_result_split_over_two_records_then_preamble(options: PPKSServerOptions) -> None:
    conn, t, proxy, _pool = registered_up_to_result(options)
    res = wire.encode(wire.Result())
    conn.dataReceived(proxy.send(res[:2]) + proxy.send(res[2:]) + PREAMBLE[:3])
    assert conn.state == "preamble"
    conn.dataReceived(PREAMBLE[3:])
    assert conn.state == "idle" and t.value().endswith(PREAMBLE)


def test_an_endpoint_whose_tls_fails_gives_its_claim_back(options: PPKSServerOptions) -> None:
    """-n counts endpoints that completed TLS setup (§7.1): a claimed backlog whose
    endpoint never finished the handshake must not use up an attempt, or with -n the
    manager would be left with no backlog and wait forever."""
    conn, _t, proxy, pool = registered_up_to_result(options)
    conn.dataReceived(proxy.send(wire.encode(wire.Result())) + PREAMBLE)
    conn.dataReceived(b"GET / HTTP/1.0\r\n\r\n")  # not a ClientHello
    assert pool.calls == ["established", "claimed"]
    conn.connectionLost(Failure(ConnectionDone()))
    assert pool.calls[-1] == "unclaim"


class CountingPool(BacklogPool):
    def __init__(self) -> None:
        super().__init__(Clock(), "127.0.0.1", 20557, "k", None, None, target=2,  # type: ignore[arg-type]
                         max_claims=1)  # fmt: skip
        self.connects = 0

    def _connect(self) -> None:
        self.pending += 1
        self.connects += 1


def test_pool_replenishes_after_an_unclaim() -> None:
    pool = CountingPool()
    pool.start()
    assert pool.connects == 1  # -n 1: one backlog is enough
    conn: Any = object()
    pool.pending, pool.idle = 0, {conn}
    pool.claimed(conn)
    assert pool.wanted == 0 and pool.connects == 1
    pool.unclaim()
    assert pool.wanted == 1 and pool.connects == 2


def test_the_manager_side_of_a_registration_byte_for_byte(options: PPKSServerOptions) -> None:
    """OBSERVED §4.1 from the manager's side: a ClientHello without SNI; after the xreg
    (`80 LLLLLL snikey`) and its result, our close_notify at once (one alert record,
    `17 03 03 00 13`), before any preamble; then exactly the 6 bytes `PKTLAB` back."""
    from packetlab.proxy.clienthello import ClientHelloReader

    pool = Pool(options)
    conn = BacklogConnection(pool)  # type: ignore[arg-type]
    t = StringTransport()
    conn.makeConnection(t)
    hello = ClientHelloReader().feed(t.value())
    assert hello is not None and hello.sni is None
    proxy = TLSHandoff(options.serverConnectionForTLS(None), is_client=False)  # type: ignore[arg-type]
    step = proxy.receive(t.value())
    t.clear()
    conn.dataReceived(step.out)
    step = proxy.receive(t.value())
    t.clear()
    assert step.data == bytes.fromhex("80000007") + b"snikey1"
    conn.dataReceived(step.out + proxy.send(wire.encode(wire.Result())))
    close_notify = t.value()
    t.clear()
    assert close_notify[:5] == bytes.fromhex("1703030013") and len(close_notify) == 24
    assert proxy.receive(close_notify).closed
    assert conn.state == "preamble" and pool.calls == []  # not counted before the echo
    conn.dataReceived(PREAMBLE)
    assert t.value() == b"PKTLAB" and pool.calls == ["established"]


class _Conn:
    """A backlog connection as the pool sees it (no transport)."""

    established = False
    since = 0.0
    transport = None


def test_a_proxy_closing_each_backlog_as_it_registers_is_retried_with_backoff() -> None:
    """Session 18: a proxy that takes each registration and closes the idle backlog at
    once (full, restarting, hostile) made the manager register again at once, for ever:
    a TLS handshake and two log lines per turn, as fast as the proxy answers. A backlog
    closed within the step timeout of its registration is now a failure: the next one
    waits, doubling up to 30 s; one that lived longer is replaced at once, as before."""
    pool = CountingPool()
    pool.target, pool.max_claims = 1, None
    clock: Clock = pool.reactor

    def register_and_close(lived: float = 0.0) -> None:
        assert pool.pending == 1  # the pool connected; the proxy takes the registration
        conn: Any = _Conn()
        pool.established(conn)
        clock.advance(lived)
        pool.lost(conn, "idle")  # and closes the idle backlog

    pool.start()
    turns = 0
    while pool.pending and turns < 50:  # at clock time 0
        register_and_close()
        turns += 1
    assert turns == 1 and pool.connects == 1, (turns, pool.connects)  # was 50 and 51
    waits = []
    for _ in range(8):
        call = pool._retry
        assert call is not None
        waits.append(call.getTime() - clock.seconds())
        clock.advance(waits[-1])
        register_and_close()
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0], waits
    retry: Any = pool._retry
    clock.advance(retry.getTime() - clock.seconds())
    register_and_close(lived=pool.step_timeout)  # one that lived: replaced at once
    assert pool.pending == 1 and pool._retry is None
    register_and_close()  # and the count starts again
    retry = pool._retry
    assert retry.getTime() - clock.seconds() == 0.5


class FailingPool(CountingPool):
    """A pool whose every connect fails at once (the proxy's setup port refuses)."""

    refuse = False

    def _connect(self) -> None:
        super()._connect()
        if self.refuse:  # the errback comes in a later turn, as a real connect's
            why = Failure(ConnectionRefusedError("Connection refused"))
            self.reactor.callLater(0, self._connect_failed, why)


def _retry_waits(pool: FailingPool, n: int) -> list[float]:
    clock: Clock = pool.reactor
    clock.advance(0)  # a connect already made fails
    waits = []
    for _ in range(n):
        call = pool._retry
        assert call is not None
        waits.append(call.getTime() - clock.seconds())
        clock.advance(waits[-1])
    return waits


def test_a_proxy_that_worked_and_went_away_is_tried_every_second_for_a_minute() -> None:
    """ops26 (session 26): a proxy restarted forgets its snikeys and refuses the
    endpoints (`unknown_snikey`) until the manager registers again; on the back-off a
    proxy back after 10 s waited 5.5 s more for its backlogs (up to 30 s). After a
    backlog worked, a proxy that refuses is tried every second for 60 s, then backs off
    as before; a proxy that never worked backs off from the start."""
    pool = FailingPool()
    pool.target, pool.max_claims = 1, None
    clock: Clock = pool.reactor
    pool.start()
    conn: Any = _Conn()
    pool.established(conn)  # it worked
    clock.advance(100)
    pool.lost(conn, "idle")  # the proxy stops: its idle backlog closed after 100 s
    assert pool.pending == 1  # replaced at once ...
    pool.pending -= 1
    pool.refuse = True
    pool._again()  # ... and that connect was refused, as every next one
    waits = _retry_waits(pool, 70)
    quick = [w for w in waits if w <= 1.0]
    assert quick == [0.5] + [1.0] * 60, waits  # the back-off's first, then every second
    assert waits[len(quick) :] == [30.0] * (70 - len(quick)), waits  # then its cap
    never = FailingPool()
    never.target, never.max_claims = 1, None
    never.refuse = True
    never.start()
    assert _retry_waits(never, 4) == [0.5, 1.0, 2.0, 4.0]


def test_refused_connects_are_logged_at_1_2_4_8_in_a_row() -> None:

    from testkit.logs import captured_events
    from twisted.logger import LogLevel

    with captured_events() as events:
        pool = FailingPool()
        pool.target, pool.max_claims = 1, None
        pool.refuse = True
        pool.start()
        _retry_waits(pool, 19)  # 20 refused connects in all
    seen = events.lines(level=LogLevel.warn, fmt="cannot connect")
    assert len(seen) == 5, seen  # the 1st, 2nd, 4th, 8th and 16th
    assert seen[0] == (
        "backlog to 127.0.0.1:20557: cannot connect: Connection refused "
        "(1 in a row; the next try in 0.5 s)"
    ), seen[0]
    assert "(16 in a row; the next try in 30 s)" in seen[-1], seen[-1]


def test_backoff_doubles_from_half_a_second_to_thirty() -> None:
    assert [backoff(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert backoff(1000) == 30
