"""`pktlab run ... --listen --endpoints N` (`run_command._with_pool`, `pktlab run alias`)
on a MemoryReactorClock, its endpoints scripted (iosim): one lost before the start is
said once with its HOSTID and address and another takes its place, as in campaigns."""

from __future__ import annotations

import gc
import sys
from pathlib import Path
from typing import Any

import pytest
from testkit.logs import captured_events
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.test import iosim

sys.path.insert(0, str(Path(__file__).resolve().parent / "controller"))
from ctl_fakes import FakeEndpoint, gone_before_hostid, result_of

from packetlab.cli import build_parser
from packetlab.cli.link import Link
from packetlab.cli.run_command import _with_pool
from packetlab.wire import Start, vmem


class Reactor(MemoryReactorClock):
    """Notes which listening ports stopped listening."""

    def __init__(self) -> None:
        super().__init__()
        self.stopped: list[Any] = []

    def listenTCP(self, *a: Any, **kw: Any) -> Any:
        port = super().listenTCP(*a, **kw)
        port.stopListening = lambda: self.stopped.append(port)
        return port


class Field:
    """`_with_pool` for `pktlab run alias --endpoints N`; the experiment notes the
    sessions it was given. `arrive(hostid)` connects a scripted endpoint."""

    def __init__(self, n: int) -> None:
        self.reactor = Reactor()
        args = build_parser("run", "alias").parse_args(
            ["run", "alias", "--listen", "127.0.0.1:0", "--insecure-plaintext",
             "--endpoints", str(n), "192.0.2.1", "192.0.2.2"]
        )  # fmt: skip
        self.given: list[Any] = []

        async def experiment(sessions: list[Any]) -> None:
            self.given.extend(sessions)

        self.done = Deferred.fromCoroutine(
            _with_pool(self.reactor, Link.from_args(args), args, experiment)
        )
        self.endpoints: list[FakeEndpoint] = []
        self.pumps: list[Any] = []

    def arrive(self, hostid: str) -> Any:
        factory = self.reactor.tcpServers[-1][1]
        peer = IPv4Address("TCP", f"10.0.0.{len(self.endpoints) + 1}", 40000)
        s = factory.buildProtocol(peer)
        ep = FakeEndpoint(self.reactor)
        off = vmem.HOSTID.addr - vmem.SYS_BASE
        ep.memory = bytearray(off + 256)
        ep.memory[off : off + len(hostid)] = hostid.encode()
        server = iosim.FakeTransport(s, isServer=True, peerAddress=peer)
        self.pumps.append(iosim.connect(s, server, ep, iosim.makeFakeClient(ep),
                                        clock=self.reactor))  # fmt: skip
        self.endpoints.append(ep)
        self.step()
        return s

    def step(self, n: int = 20) -> None:
        for _ in range(n):
            for p in self.pumps:
                p.flush()
            self.reactor.advance(0.001)


class StartOnly(FakeEndpoint):
    """Answers the start and nothing else (then closes, the HOSTID read unanswered)."""

    def handle(self, msg: Any) -> None:
        if isinstance(msg, Start):
            self.result()


def test_one_lost_before_the_start_is_said_once_and_another_takes_its_place(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Was: the lost endpoint's dead session kept its place (the experiment ran on it)
    and the listener had stopped after N connections, so no other could come."""
    f = Field(2)
    f.arrive("early")
    f.endpoints[0].transport.loseConnection()  # type: ignore[union-attr]
    f.step()
    err = capsys.readouterr().err
    lost = [line for line in err.splitlines() if "lost" in line]
    assert lost == [
        "pktlab run alias: lost before the start (hostid early, 10.0.0.1:40000): the "
        "endpoint closed the connection; waiting for another endpoint"
    ]
    assert not f.done.called
    second, third = f.arrive("late1"), f.arrive("late2")
    f.step()
    result_of(f.done)
    assert f.given == [second, third]
    assert len(f.reactor.stopped) == 1  # all here: the listener closed
    assert "lost" not in capsys.readouterr().err  # said once


def test_one_gone_before_its_hostid_is_read_is_said_with_its_address(
    capsys: pytest.CaptureFixture[str],
) -> None:
    f = Field(1)
    ep = StartOnly(f.reactor)
    f.endpoints.append(ep)
    pump = gone_before_hostid(f.reactor, ep, IPv4Address("TCP", "10.0.0.9", 40000))
    f.step()
    err = capsys.readouterr().err
    assert ("pktlab run alias: lost before the start (10.0.0.9:40000): the endpoint "
            "closed the connection with 6 requests unanswered (first: mread); waiting "
            "for another endpoint") in err, err  # fmt: skip
    assert err.count("lost before") == 1
    f.arrive("fine")
    f.step()
    result_of(f.done)
    assert len(f.given) == 1
    with captured_events() as seen:
        del f, ep, pump
        gc.collect()  # the HOSTID read's other mreads failed too: were 5 unhandled errors
    assert not seen.where(fmt="Unhandled error")
