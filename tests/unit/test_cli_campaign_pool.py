"""`campaign()` itself on a MemoryReactorClock, its endpoints scripted (iosim): who
arrives, who is lost before the start (told once, with the HOSTID it read), names of
replacements sharing a HOSTID, `--replace 0` refusing later endpoints."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.test import iosim

sys.path.insert(0, str(Path(__file__).resolve().parent / "controller"))
from ctl_fakes import FakeEndpoint, gone_before_hostid, result_of

from packetlab.cli import build_parser
from packetlab.cli.campaign import campaign
from packetlab.cli.campaign_run import Tally
from packetlab.cli.run_command import Progress
from packetlab.wire import Start, vmem


class Reactor(MemoryReactorClock):
    """Keeps its listening ports, and whether each still listens."""

    def __init__(self) -> None:
        super().__init__()
        self.ports: list[Any] = []
        self.stopped: list[Any] = []

    def listenTCP(self, *a: Any, **kw: Any) -> Any:
        port = super().listenTCP(*a, **kw)
        port.stopListening = lambda: self.stopped.append(port)
        self.ports.append(port)
        return port


class Field:
    """The campaign on a memory reactor; `arrive(hostid)` connects a scripted endpoint."""

    def __init__(self, *argv: str) -> None:
        self.reactor = Reactor()
        self.records: list[dict[str, Any]] = []
        self.tally = Tally()
        self.progress = Progress()
        args = build_parser("campaign").parse_args(
            ["campaign", "clocksync", "--listen", "127.0.0.1:0", "--insecure-plaintext",
             "--rounds", "4", "--interval", "0.5", *argv]
        )  # fmt: skip
        self.done = Deferred.fromCoroutine(
            campaign(self.reactor, args, self.records.append, self.progress, self.tally)
        )
        self.endpoints: list[FakeEndpoint] = []
        self.sessions: list[Any] = []
        self.pumps: list[Any] = []

    def arrive(self, hostid: str) -> FakeEndpoint:
        port = self.reactor.tcpServers[-1]
        factory = port[1]
        n = len(self.endpoints)
        peer = IPv4Address("TCP", f"10.0.0.{n + 1}", 40000)
        s = factory.buildProtocol(peer)
        self.sessions.append(s)
        ep = FakeEndpoint(self.reactor)
        off = vmem.HOSTID.addr - vmem.SYS_BASE
        ep.memory = bytearray(off + 256)
        ep.memory[off : off + len(hostid)] = hostid.encode()
        server = iosim.FakeTransport(s, isServer=True, peerAddress=peer)
        client = iosim.makeFakeClient(ep)
        self.pumps.append(iosim.connect(s, server, ep, client, clock=self.reactor))
        self.endpoints.append(ep)
        self.step()
        return ep

    def campaign_hostids(self) -> dict[Any, str]:
        """The HOSTIDs the campaign holds: the one dict keyed by this field's sessions."""
        import gc

        ours = {id(x) for x in self.sessions}
        found = [x for x in gc.get_objects()
                 if type(x) is dict and x and all(id(k) in ours for k in x)]  # fmt: skip
        assert len(found) == 1, found
        return found[0]

    def step(self, n: int = 20) -> None:
        for _ in range(n):
            for p in self.pumps:
                p.flush()
            self.reactor.advance(0.001)

    def until_done(self, limit: float = 60.0) -> Any:
        while not self.done.called and self.reactor.seconds() < limit:
            self.step(1)
        return result_of(self.done)


def test_one_lost_before_the_start_is_told_with_its_hostid_and_replaced() -> None:
    f = Field("--endpoints", "2")
    early = f.arrive("early")
    assert f.progress.text == "1 of 2 endpoints here (latest: early)"
    early.transport.loseConnection()  # type: ignore[union-attr]
    f.step()
    (lost,) = f.records
    assert (lost["type"], lost["when"], lost["hostid"], lost["endpoint"]) == (
        "lost", "before the start", "early", "early",
    )  # fmt: skip
    assert lost["address"] == "10.0.0.1:40000" and "error" not in lost
    assert lost["reason"] == "the endpoint closed the connection"
    assert f.progress.text == "0 of 2 endpoints here (latest: early lost)"
    f.arrive("late1")
    f.arrive("late2")
    assert f.until_done() == 2
    models = {r["endpoint"]: r["rounds"] for r in f.records if r["type"] == "clockmodel"}
    assert models == {"late1": 4, "late2": 4}
    assert (f.tally.asked, f.tally.used, f.tally.lost, f.tally.replaced) == (2, 2, 1, 1)


def test_a_replacement_sharing_the_default_hostid_gets_a_name_of_its_own() -> None:
    f = Field("--endpoints", "2")
    a, _b, _spare = (f.arrive("pktendpt") for _ in range(3))
    while f.reactor.seconds() < 0.7:
        f.step(1)
    a.transport.loseConnection()  # type: ignore[union-attr]
    f.until_done()
    (took,) = [r for r in f.records if r["type"] == "replaced"]
    assert took["replaces"] == "pktendpt@10.0.0.1:40000"
    assert took["endpoint"] == "pktendpt@10.0.0.3:40000"
    names = {r["endpoint"] for r in f.records if r["type"] == "clockmodel"}
    assert names == {"pktendpt@10.0.0.1:40000", "pktendpt@10.0.0.2:40000", took["endpoint"]}


def test_replace_0_stops_listening_once_the_campaign_starts() -> None:
    # (its port's stopListening may return None, as IListeningPort allows: it was
    # awaited, a TypeError)
    f = Field("--endpoints", "1", "--replace", "0")
    f.arrive("solo")
    f.step()
    assert f.reactor.stopped == f.reactor.ports  # no spare wanted: nobody more let in
    f.until_done()
    assert (f.tally.used, f.tally.lost) == (1, 0)


def test_spares_keep_the_port_open() -> None:
    f = Field("--endpoints", "1")
    f.arrive("solo")
    f.step()
    assert not f.reactor.stopped  # a spare may still come
    f.until_done()
    assert f.reactor.stopped == f.reactor.ports  # (the end: Controller.stop)


def test_endpoints_turned_away_are_not_remembered() -> None:
    # Endpoints beyond N and the spares come back after each session they are refused:
    # their HOSTIDs once piled up for as long as the campaign ran.
    f = Field("--endpoints", "1", "--replace", "1")
    f.arrive("solo")
    f.arrive("spare")
    for i in range(5):
        f.arrive(f"extra{i}")  # nothing for them: their sessions end at once
    f.step()
    assert set(f.campaign_hostids().values()) == {"solo", "spare"}
    f.until_done()


class StartOnly(FakeEndpoint):
    """Answers the start and nothing else (then closes, the HOSTID read unanswered)."""

    def handle(self, msg: Any) -> None:
        if isinstance(msg, Start):
            self.result()


def test_one_gone_before_its_hostid_is_told_and_on_the_progress_line() -> None:
    """The progress line kept the last arrival's name for one gone before its HOSTID
    (for one lost while waiting it said "X lost"), as `pktlab run --endpoints N` says
    both: cli.lost.Arrivals is now the one piece behind both."""
    f = Field("--endpoints", "2")
    f.arrive("first")
    ep = StartOnly(f.reactor)
    gone_before_hostid(f.reactor, ep, IPv4Address("TCP", "10.0.0.9", 40000))
    f.step()
    (lost,) = f.records
    assert (lost["endpoint"], lost["hostid"], lost["address"]) == ("10.0.0.9:40000", "",
                                                                    "10.0.0.9:40000")  # fmt: skip
    assert lost["reason"].startswith("the endpoint closed the connection")
    assert f.progress.text == "1 of 2 endpoints here (latest: 10.0.0.9:40000 lost)"
    f.arrive("second")
    assert f.until_done() == 2
    assert (f.tally.used, f.tally.lost, f.tally.replaced) == (2, 1, 1)


def test_every_record_says_the_endpoints_hostid_and_address() -> None:
    # The measurements' records carried only "endpoint" (the name): an endpoint named by
    # its HOSTID had its address nowhere in the output unless it was lost
    f = Field("--endpoints", "2", "--replace", "0")
    f.arrive("lab-1")
    f.arrive("lab-2")
    assert f.until_done() == 2
    assert len(f.records) == 10  # 4 rounds and a model each
    where = {"lab-1": "10.0.0.1:40000", "lab-2": "10.0.0.2:40000"}
    for r in f.records:
        assert (r["hostid"], r["address"]) == (r["endpoint"], where[r["endpoint"]]), r


def test_endpoints_cut_by_our_own_shutdown_are_not_told_lost() -> None:
    # Ctrl-C (or SIGTERM) while waiting stops the reactor, whose shutdown cuts every
    # connection before the campaign's own teardown runs: each endpoint waiting was a
    # `lost before the start` record ("connection lost: ... non-clean fashion"), as if
    # it had gone, though the campaign had quit (measured with 2 of 3 endpoints here)
    f = Field("--endpoints", "3")
    f.arrive("lab-1")
    f.arrive("lab-2")
    for call, a, kw in f.reactor.triggers.get("before", {}).get("shutdown", []):
        call(*a, **kw)  # reactor.stop(): the "before" phase, then the connections cut
    for ep in f.endpoints:
        ep.transport.loseConnection()  # type: ignore[union-attr]
    f.step()
    assert f.records == []
    assert f.progress.text == "2 of 3 endpoints here (latest: lab-2)"
    f.done.cancel()
    f.done.addErrback(lambda failure: failure.trap(CancelledError))
