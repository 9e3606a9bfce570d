"""The broker's counters since start (status page, `pktlab broker status`, its last log
line): before session 26 the status page had only gauges (connections, subscribers now),
and the refusal lines are budgeted (20 a minute), so a day of churn and refusals left
the operator no number of them."""

from __future__ import annotations

from typing import Any

from testkit.logs import captured_events
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import connectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport

from packetlab.broker.protocol import BrokerFactory, BrokerProtocol
from packetlab.broker.registry import Registry
from packetlab.broker.session import Role
from packetlab.broker.throttle import Throttle
from packetlab.cli.broker import render
from packetlab.wire import Xpub, Xsub, encode

XD = b"controller_addr=127.0.0.1:20600;sni_key=abc;"
ZERO = bytes(32)


def factories(clock: Clock) -> dict[Role, BrokerFactory]:
    registry, throttle = Registry(), Throttle(base=1.0, cap=8.0)
    return {r: BrokerFactory(r, registry, throttle, clock, idle_timeout=30) for r in Role}


def connect(f: BrokerFactory, host: str = "10.0.0.1") -> tuple[BrokerProtocol, StringTransport]:
    p = f.buildProtocol(None)
    t = StringTransport(peerAddress=IPv4Address("TCP", host, 1234))
    p.makeConnection(t)
    return p, t


def test_a_day_of_churn_adds_up_on_each_port() -> None:
    clock = Clock()
    fs = factories(clock)
    pub, _ = connect(fs[Role.PUBLISH])
    pub.dataReceived(encode(Xpub([b"public"], ZERO, XD)))
    for i in range(3):  # subscribers that come and go
        sub, _ = connect(fs[Role.SUBSCRIBE], f"10.0.1.{i}")
        sub.dataReceived(encode(Xsub([b"public"], ZERO, b"")))
        sub.connectionLost(connectionDone)
    for i in range(25):  # private channel without a chain: ESUBBADCHN (budgeted lines)
        bad, _ = connect(fs[Role.SUBSCRIBE], f"10.0.2.{i}")
        bad.dataReceived(encode(Xsub([b"x" * 32], ZERO, b"")))
    connect(fs[Role.SUBSCRIBE], "10.0.3.1")  # says nothing: closed at the idle timeout
    clock.advance(31)
    pub.connectionLost(connectionDone)
    sub_c = fs[Role.SUBSCRIBE].counters.as_dict()
    assert sub_c == {
        "links": 29,
        "taken": {"xsub": 3},
        "refused": {"ESUBBADCHN": 25},
        "closed": {"idle": 26},  # the refused ones never subscribed either
        "cut_frames": 0,
        "refused_share": 0,
        "publications_ended": {},
    }
    pub_c = fs[Role.PUBLISH].counters
    assert pub_c.as_dict()["taken"] == {"xpub": 1}
    assert pub_c.as_dict()["publications_ended"] == {"publisher_closed": 1}
    assert pub_c.line() == "links=1 xpub=1 ended=publisher_closed:1"
    assert fs[Role.SUBSCRIBE].counters.line() == (
        "links=29 xsub=3 refused=ESUBBADCHN:25 closed=idle:26"
    )


def test_the_status_page_and_the_last_log_line_carry_them() -> None:
    from broker_fakes import agent

    from packetlab.broker.service import BrokerService

    reactor = MemoryReactorClock()
    svc = BrokerService(reactor, agent(), publish="tcp:20556", subscribe="tcp:20557")
    svc.startService()
    connect(svc.factories[Role.SUBSCRIBE])[0].dataReceived(encode(Xsub([b"p"], ZERO, b"")))
    st: dict[str, Any] = svc.status()
    assert st["counters"]["subscribe"]["taken"] == {"xsub": 1}
    assert st["counters"]["publish"]["links"] == 0 and st["since"].endswith("Z")
    text = render(st)
    assert f"since {st['since']}:" in text
    assert "  subscribe port: links 1, xsub 1" in text and "  publish port: links 0" in text
    assert "since" not in render({k: v for k, v in st.items() if k != "counters"})
    assert st["link_max"] == {r.value: svc.factories[r].link_max for r in Role}
    assert st["address_share"] == {
        r.value: svc.factories[r].share.cap(svc.factories[r].link_max) for r in Role
    }
    capped = render({**st, "link_max": {"publish": 8, "subscribe": 24}, "address_share": {}})
    assert "publisher(s) (at most 8 past the handshake), " in capped
    assert "subscriber(s) (at most 24 past the handshake);" in capped
    st["counters"]["subscribe"]["refused_share"] = 5
    assert "  subscribe port: links 1, xsub 1, refused for the address share 5" in render(st)
    shared = render({**st, "link_max": {"publish": 8, "subscribe": 24},
                     "address_share": {"publish": 4, "subscribe": 12}})  # fmt: skip
    assert "publisher(s) (at most 8 past the handshake, 4 from one address), " in shared
    assert (
        "subscriber(s) (at most 24 past the handshake, 12 from one address, 5 refused for "
        "it);" in shared
    )
    with captured_events() as events:
        svc.stopService()
    [line] = events.lines("pktbroker stopping;")
    assert line == (
        f"pktbroker stopping; since {st['since']}: publish: links=0; subscribe: links=1 xsub=1"
    )


def test_the_counters_are_logged_every_stats_interval() -> None:
    """StatusListen is off unless set: without it the counters showed only at the stop. A
    line every StatsInterval (an hour by default) keeps their history in the log."""
    from broker_fakes import agent

    from packetlab.broker.config import ConfigError, parse_config
    from packetlab.broker.service import BrokerService

    assert parse_config([], "b.conf").stats_interval == 3600
    assert parse_config(["StatsInterval 0"], "b.conf").stats_interval == 0
    for bad in ("nan", "-1", "86401", "often"):
        try:
            parse_config([f"StatsInterval {bad}"], "b.conf")
        except ConfigError as e:
            assert str(e).startswith("b.conf:1: StatsInterval: ")
        else:
            raise AssertionError(bad)
    reactor = MemoryReactorClock()
    svc = BrokerService(reactor, agent(), publish="tcp:20556", subscribe="tcp:20557",
                        stats_interval=600)  # fmt: skip
    with captured_events() as events:
        svc.startService()
        connect(svc.factories[Role.SUBSCRIBE])[0].dataReceived(encode(Xsub([b"p"], ZERO, b"")))
        reactor.advance(599)
        assert not [t for t in events.lines() if t.startswith("counters since")]
        reactor.advance(1)
        reactor.advance(600)
        svc.stopService()
        reactor.advance(600)
    assert [t for t in events.lines() if t.startswith("counters since")] == [
        f"counters since {svc.started}: publish: links=0; subscribe: links=1 xsub=1"
    ] * 2


def test_a_stopping_broker_says_so_once_and_does_not_blame_its_peers() -> None:
    """At SIGTERM the broker closes every link itself: it logged `unsubscribe ...
    reason=Connection to the other side was lost in a non-clean fashion` for each
    subscriber (10,000 lines for 10,000) and `publication end ... reason=publisher closed
    the connection` for publications that the broker ended."""
    from broker_fakes import agent

    from packetlab.broker.service import BrokerService

    reactor = MemoryReactorClock()
    svc = BrokerService(reactor, agent(), publish="tcp:20556", subscribe="tcp:20557")
    svc.startService()
    pub, _ = connect(svc.factories[Role.PUBLISH])
    pub.dataReceived(encode(Xpub([b"public"], ZERO, XD)))
    subs = [connect(svc.factories[Role.SUBSCRIBE], f"10.0.0.{i}")[0] for i in range(3)]
    for s in subs:
        s.dataReceived(encode(Xsub([b"public"], ZERO, b"")))
    with captured_events() as events:
        svc.stopService()
        for link in (pub, *subs):  # the transports' ends, as the reactor reports them
            link.connectionLost(connectionDone)
    seen = events.lines()
    assert "pktbroker stopping: closing 3 subscribe and 1 publish link(s)" in seen
    assert not [t for t in seen if t.startswith("unsubscribe")], seen
    [end] = [t for t in seen if t.startswith("publication end")]
    assert end.endswith(" reason=broker stopping")
    counts = svc.factories[Role.PUBLISH].counters.as_dict()
    assert counts["publications_ended"] == {"broker_stopping": 1}


def test_the_ports_are_bound_before_twistd_drops_privileges() -> None:
    """twistd calls privilegedStartService, then drops to `-u USER`, then startService:
    listening in startService made a port below 1024 fail with `Permission denied`. With a
    Redis store the ports open once Redis answers (after the drop)."""
    from broker_fakes import agent

    from packetlab.broker.service import BrokerService

    reactor = MemoryReactorClock()
    svc = BrokerService(reactor, agent(), publish="tcp:556", subscribe="tcp:557")
    svc.privilegedStartService()
    assert sorted(p[0] for p in reactor.tcpServers) == [556, 557]
    svc.startService()  # not twice
    assert len(reactor.tcpServers) == 2 and set(svc.ports) == {"publish", "subscribe"}
    redis = MemoryReactorClock()
    later = BrokerService(redis, agent(), publish="tcp:556", subscribe="tcp:557",
                          store="redis://127.0.0.1:6399/0")  # fmt: skip
    later.privilegedStartService()
    assert redis.tcpServers == []


def test_the_status_page_and_its_text_carry_a_sites_share() -> None:
    """Session 33: a /48 (one interface's link-local peers) holds two addresses' shares;
    the page says it per port as `site_share`, `pktlab broker status` beside the
    address's when it bounds anything (not when it is the address's or the port's)."""
    from broker_fakes import agent

    from packetlab.broker.service import BrokerService
    from packetlab.cli.broker import render

    svc = BrokerService(MemoryReactorClock(), agent(), publish="tcp:1", subscribe="tcp:2")
    f = svc.factories
    assert svc.status()["site_share"] == {r.value: f[r].share.site_cap(f[r].link_max) for r in Role}
    st: dict[str, Any] = {
        "link_max": {"publish": 112, "subscribe": 336},
        "address_share": {"publish": 56, "subscribe": 84},
        "site_share": {"publish": 112, "subscribe": 168},
    }
    text = render(st)
    assert "(at most 336 past the handshake, 84 from one address, 168 from one IPv6 /48)" in text
    assert "(at most 112 past the handshake, 56 from one address)" in text  # the port's
    low = render({**st, "site_share": {"publish": 56, "subscribe": 84}})
    assert "84 from one address)" in low and "/48" not in low
