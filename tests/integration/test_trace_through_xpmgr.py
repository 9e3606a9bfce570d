"""The reference sessions (../shared/spec/traces) through our manager's relay
(`EndpointWorker`, PROTOCOL.md §7.3 step 5), each direction's byte stream split in two at
every byte boundary: the mlet gets the endpoint's frames byte for byte with the `linfo`
taken out (step 5: intercepted, not forwarded), and the endpoint gets the mlet's frames
byte for byte, one write each (INTEROP.md: one TLS record per message).

Synchronous over fakes; here, not under tests/unit, because it reads ../shared."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from spec_traces import TRACES
from testkit.transport import Writes
from twisted.internet.testing import MemoryReactorClock

from packetlab import wire
from packetlab.controller.mlet import EndpointWorker

SESSIONS = sorted(TRACES.glob("*.session.json"))
# what a monitor's initialize() sends after the start result (§8.4; aux index host order)
LINFO = wire.encode(wire.Linfo(b"monitor", b"\x00\x00", b"loaded"))


def relay() -> tuple[EndpointWorker, Writes, Writes, list[socket.socket]]:
    """A worker past `start` (its result answered), with its mlet connected."""
    reactor = MemoryReactorClock()
    launched: list[socket.socket] = []
    worker = EndpointWorker(
        reactor,
        setup_for=lambda w: [],
        launch=lambda w, s: launched.append(s),
        done=lambda w: None,
        read_hostid=False,
    )
    ep = Writes()
    worker.makeConnection(ep)
    assert ep.value() == bytes.fromhex("21000000")  # start, as the trace's first frame
    worker.dataReceived(bytes.fromhex("40000000"))
    _, _, factory = reactor.adoptedStreamConnections[0]
    mlet = Writes()
    factory.buildProtocol(None).makeConnection(mlet)
    ep.writes.clear()
    ep.clear()
    return worker, ep, mlet, launched


def sides(path: Path) -> tuple[list[bytes], list[bytes]]:
    frames = json.loads(path.read_text())[2:]  # after start and its result
    to_ep = [bytes.fromhex(f["hex"]) for f in frames if f["dir"] == "xpmgr->endpt"]
    to_mgr = [bytes.fromhex(f["hex"]) for f in frames if f["dir"] == "endpt->xpmgr"]
    return to_ep, to_mgr


def test_traces_found() -> None:
    assert len(SESSIONS) >= 2, f"reference traces missing under {TRACES}"


@pytest.mark.parametrize("path", SESSIONS, ids=lambda p: p.stem)
def test_endpoint_side_split_anywhere_reaches_the_mlet_byte_for_byte(path: Path) -> None:
    _, to_mgr = sides(path)
    stream = LINFO + b"".join(to_mgr)
    for cut in range(len(stream) + 1):
        worker, _, mlet, launched = relay()
        worker.dataReceived(stream[:cut])
        worker.dataReceived(stream[cut:])
        assert mlet.value() == b"".join(to_mgr), cut
        assert [i["name"] for i in worker.linfo] == ["monitor"], cut
        for s in launched:
            s.close()


@pytest.mark.parametrize("path", SESSIONS, ids=lambda p: p.stem)
def test_mlet_side_split_anywhere_reaches_the_endpoint_one_write_per_frame(path: Path) -> None:
    to_ep, _ = sides(path)
    stream = b"".join(to_ep)
    for cut in range(len(stream) + 1):
        worker, ep, _, launched = relay()
        assert worker.mlet is not None
        worker.mlet.dataReceived(stream[:cut])
        worker.mlet.dataReceived(stream[cut:])
        assert ep.writes == to_ep, cut
        for s in launched:
            s.close()


def test_setup_answers_split_anywhere_start_the_mlet() -> None:
    """The answers to a monitor's cdata, to `start` (the trace's `40000000`) and to the
    HostID mread, with the monitor's linfo between (§1.4 step 3, INTEROP: linfo follows
    the start result), cut in two at every byte: the mlet starts, the HostID is read."""
    hostid = wire.encode(wire.Mdata(0x10030000, b"pktendpt" + bytes(248)))
    stream = bytes.fromhex("40000000") * 2 + LINFO + hostid
    launched: list[socket.socket] = []
    for cut in range(1, len(stream)):
        reactor = MemoryReactorClock()
        worker = EndpointWorker(
            reactor,
            setup_for=lambda w: [b"\x01\x00asm"],  # one program: one cdata before start
            launch=lambda w, s: launched.append(s),
            done=lambda w: None,
        )
        worker.makeConnection(Writes())
        worker.dataReceived(stream[:cut])
        worker.dataReceived(stream[cut:])
        assert worker.state == "relay" and worker.hostid == "pktendpt", (cut, worker.error)
        assert [i["name"] for i in worker.linfo] == ["monitor"], cut
        assert len(reactor.adoptedStreamConnections) == 1
        while launched:
            launched.pop().close()
