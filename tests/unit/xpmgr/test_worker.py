"""EndpointWorker (the manager's end of one endpoint) over fake transports: the setup
sequence (cdata by digest, start, HostID), refusals, linfo interception, one write per
message toward the endpoint, EOF handling."""

from __future__ import annotations

import socket
from typing import Any

from testkit.transport import Writes
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from packetlab import wire
from packetlab.controller.mlet import EndpointWorker, FrameSplitter
from packetlab.wire import vmem


def frames(data: bytes) -> list[Any]:
    return [wire.decode_frame(f) for _, f in FrameSplitter().feed(data)]


class Harness:
    def __init__(self, programs: list[bytes]) -> None:
        self.reactor = MemoryReactorClock()
        self.launched: list[socket.socket] = []
        self.done: list[EndpointWorker] = []
        self.worker = EndpointWorker(
            self.reactor,
            setup_for=lambda w: programs,
            launch=lambda w, s: self.launched.append(s),
            done=self.done.append,
        )
        self.ep = Writes()
        self.worker.makeConnection(self.ep)
        self.mlet: Writes | None = None

    def answer(self, *msgs: wire.Message) -> None:
        self.worker.dataReceived(b"".join(wire.encode(m) for m in msgs))
        if self.reactor.adoptedStreamConnections and self.mlet is None:
            _, _, factory = self.reactor.adoptedStreamConnections[0]
            side = factory.buildProtocol(None)
            self.mlet = Writes()
            side.makeConnection(self.mlet)


def started(programs: list[bytes] = ()) -> Harness:  # type: ignore[assignment]
    h = Harness(list(programs))
    h.answer(*[wire.Result()] * (len(programs) + 1), wire.Mdata(vmem.HOSTID.addr, b"ep7\0\0"))
    return h


def test_setup_sends_programs_then_start_then_reads_hostid() -> None:
    h = Harness([b"\x01wasm-a", b"\x00ebpf-b"])
    assert frames(h.ep.value()) == [
        wire.Cdata(b"monitor", b"\x01wasm-a"),
        wire.Cdata(b"monitor", b"\x00ebpf-b"),
        wire.Start(),
        wire.Mread(vmem.HOSTID.addr, vmem.HOSTID.size),
    ]
    assert len(h.ep.writes) == 4  # one message per write
    assert not h.launched
    h.answer(wire.Result(), wire.Result(), wire.Result(), wire.Mdata(vmem.HOSTID.addr, b"ep7\0"))
    assert len(h.launched) == 1 and h.worker.state == "relay"
    assert h.worker.hostid == "ep7"


def test_refused_start_fails_the_endpoint_without_an_mlet() -> None:
    h = Harness([])
    h.answer(wire.Result(int(wire.Status.ECTLMONUKN), monindx=0))
    assert h.worker.error == "endpoint refused start: ECTLMONUKN"
    assert h.ep.disconnecting and not h.launched
    assert h.done == [h.worker] and h.worker.result()["status"] == "failed"


def test_relay_both_ways_with_linfo_intercepted() -> None:
    h = started()
    assert h.mlet is not None
    ndata = wire.encode(wire.Ndata(1, 4, 6, 5, b"payload"))
    linfo = wire.encode(wire.Linfo(b"mon", b"aux", b"something happened"))
    h.worker.dataReceived(ndata[:3])
    h.worker.dataReceived(ndata[3:] + linfo)
    assert h.mlet.value() == ndata  # linfo is not forwarded
    assert h.worker.linfo == [{"name": "mon", "aux": "aux", "info": "something happened"}]
    h.ep.writes.clear()
    two = wire.encode(wire.Mread(0, 8)) + wire.encode(wire.Nclose(1))
    mlet_side = h.worker.mlet  # the protocol on our end of the socketpair
    assert mlet_side is not None
    mlet_side.dataReceived(two[:5])
    mlet_side.dataReceived(two[5:])
    assert h.ep.writes == [wire.encode(wire.Mread(0, 8)), wire.encode(wire.Nclose(1))]
    assert h.worker.result()["linfo"][0]["name"] == "mon"


def test_frames_before_the_mlet_are_held_for_it() -> None:
    h = Harness([])
    nstat = wire.encode(wire.Nstat(1, 4, 6, 9, 3))
    h.worker.dataReceived(wire.encode(wire.Result()))  # start
    h.worker.dataReceived(wire.encode(wire.Mdata(vmem.HOSTID.addr, b"x")) + nstat)
    h.answer()
    assert h.mlet is not None and h.mlet.value() == nstat


def test_mlet_eof_closes_the_endpoint_and_endpoint_eof_closes_the_mlet() -> None:
    h = started()
    assert h.worker.mlet is not None and h.mlet is not None
    h.worker.mlet.connectionLost(None)  # type: ignore[arg-type]
    assert h.ep.disconnecting and h.done == [h.worker]
    assert h.worker.result()["status"] == "done"
    h2 = started()
    h2.worker.connectionLost(Failure(ConnectionDone()))
    assert h2.mlet is not None and h2.mlet.disconnecting


def test_bad_frame_from_the_mlet_ends_the_session() -> None:
    h = started()
    assert h.worker.mlet is not None
    h.worker.mlet.splitter.max_body = 16
    h.worker.mlet.dataReceived(b"\x28\xff\xff\xff")
    assert h.worker.error is not None and "mlet sent a bad frame" in h.worker.error
    assert h.ep.disconnecting


def test_a_failed_mlet_says_why_in_its_result() -> None:
    """An mlet that exits non-zero or is killed: `"status": "failed"` with an `error`, as
    xpmgr.md's results say (it had only `exit_code`)."""
    from twisted.internet.error import ProcessTerminated

    from packetlab.controller.mlet import MletProcess

    for reason, want in (
        (ProcessTerminated(exitCode=3), "the mlet exited with status 3"),
        (ProcessTerminated(signal=9), "the mlet was killed by signal 9 (SIGKILL)"),
    ):
        h = started()
        proc = MletProcess("m", on_exit=lambda p: None)
        proc.processEnded(Failure(reason))
        h.worker.process = proc
        h.worker.mlet_gone()
        r = h.worker.result()
        assert (r["status"], r["error"]) == ("failed", want), r


def test_the_mlet_may_send_the_largest_frame_and_the_endpoint_gets_it_whole() -> None:
    # §1.1: bodies up to 0xFFFFFF, no other global cap (PKTLAB_NSEND_MAX is not enforced):
    # an nsend of 16 MiB - 1 from the mlet, fed in 64 KiB reads, is one write
    h = started()
    side = h.worker.mlet
    assert side is not None
    body = bytes([1, 4, 6]) + bytes(8) + bytes(2) + bytes(0xFFFFFF - 13)
    frame = b"\x2c\xff\xff\xff" + body
    h.ep.writes.clear()
    for i in range(0, len(frame), 1 << 16):
        side.dataReceived(frame[i : i + (1 << 16)])
    assert len(h.ep.writes) == 1 and h.ep.writes[0] == frame


def test_an_ipv4_endpoint_on_a_dual_stack_listener_is_its_ipv4_address() -> None:
    """`-a [::]:PORT` listens dual-stack: an IPv4 endpoint's EPADDR and result address
    were `::ffff:127.0.0.1`."""
    from twisted.internet.address import IPv6Address

    for peer, want in (("::ffff:192.0.2.7", "192.0.2.7"), ("2001:db8::7", "2001:db8::7"),
                       ("::1", "::1")):  # fmt: skip
        worker = EndpointWorker(MemoryReactorClock(), setup_for=lambda w: [],
                                launch=lambda w, s: None, done=lambda w: None)  # fmt: skip
        t = Writes()
        t.peerAddr = IPv6Address("TCP", peer, 20556)
        worker.makeConnection(t)
        assert worker.address == want
        assert worker.result()["address"] == want


def test_a_clean_close_before_the_setup_answers_says_what_it_means() -> None:
    """An endpoint refusing the session after the handshake (limits used up, accounting
    database full) closes cleanly, as the reference does: the result said only
    `endpoint closed during setup: Connection ...` (session 29, ep29)."""
    h = Harness([])
    h.worker.connectionLost(Failure(ConnectionDone()))
    assert h.worker.error is not None
    assert h.worker.error.startswith(
        "endpoint closed during setup: Connection was closed cleanly. (before answering start: "
        "an endpoint that refuses the session closes so, e.g. the chain's limits used up, "
    )
    assert h.worker.error.endswith("its accounting database unable to record; its log says which)")


def test_the_endpoint_ending_the_session_after_ectlbadmsg_fails_it() -> None:
    """fuzz32: a hostile mlet's frame made the endpoint answer ECTLBADMSG and close; the
    mlet exited 0 and the run was `done` (session 32, odds32)."""
    h = started()
    h.worker.dataReceived(wire.encode(wire.Result(int(wire.Status.ECTLBADMSG))))
    h.worker.connectionLost(Failure(ConnectionDone()))
    assert h.done == [h.worker]
    result = h.worker.result()
    assert result["status"] == "failed"
    assert result["error"].startswith("the endpoint ended the session after answering ECTLBADMSG")
    assert (result["endpoint_closed"], result["endpoint_last_result"]) == ("closed", "ECTLBADMSG")


def test_another_close_by_the_endpoint_is_said_not_failed() -> None:
    """Its last frame an ntag or a success (the experiment's end time closes it so): the
    mlet's status stands, the result says the endpoint closed first and how."""
    from twisted.internet.error import ConnectionLost

    for last, closed, how, code in (
        (wire.Result(), Failure(ConnectionDone()), "closed", "SUCCESS"),
        (wire.Ntag(1, 2, 3), Failure(ConnectionLost("reset")), "lost: ", None),
    ):
        h = started()
        h.worker.dataReceived(wire.encode(last))
        h.worker.connectionLost(closed)
        result = h.worker.result()
        assert result["status"] == "done" and "error" not in result, result
        assert result["endpoint_closed"].startswith(how), result
        assert result.get("endpoint_last_result") == code, result


def test_the_mlet_ending_first_is_no_endpoint_close() -> None:
    h = started()
    h.worker.dataReceived(wire.encode(wire.Result(int(wire.Status.ECTLBADMSG))))
    h.worker.mlet_gone()  # the mlet closed its fd 0 first
    h.worker.connectionLost(Failure(ConnectionDone()))
    result = h.worker.result()
    assert "endpoint_closed" not in result and result["status"] == "done", result
