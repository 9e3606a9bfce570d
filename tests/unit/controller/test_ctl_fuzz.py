"""Hostile endpoints against the controller session's decoding, with Hypothesis.

The endpoint's byte stream is made of well-formed endpoint messages with random fields
(results of every length, mdata of any address and length, every notification form, for
open and unknown sockets), frames of random type and body, headers whose length lies,
plain noise, cut at random points; between the pieces the experiment issues requests,
drains sockets, and time passes. After every step:

* no exception left the protocol (Hypothesis reports any);
* every Deferred the experiment holds has either not fired, succeeded, or failed with a
  `ControllerError` (never a bare decoding error);
* memory is bounded: socket queues stay within `max_notes`, `linfo` within MAX_LINFO;
* once the session is over, nothing waits: every request, ntag and `get()` has fired.
"""

from __future__ import annotations

import struct
from typing import Any

from ctl_fakes import WriteLog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from packetlab import wire
from packetlab.controller import ControllerError, EndpointSession
from packetlab.controller.session import ANSWER_TIMEOUT, MAX_LINFO
from packetlab.wire import vmem

U8, U16, U32, U64 = (st.integers(0, (1 << n) - 1) for n in (8, 16, 32, 64))
SKTID = st.integers(0, 4)
FAMILY = st.sampled_from([4, 6, 4, 5])
PROTO = st.sampled_from([0, 6, 17, 17, 9])
DATA = st.binary(max_size=40)
ERRID = st.sampled_from([0, 0x10, 0x11, 0x12, 0x13, 0x33, 0x48, 0xFFFF]) | U16


def _addr(fam: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=4 if fam == 4 else 16, max_size=4 if fam == 4 else 16)


@st.composite
def messages(draw: Any) -> bytes:
    """One endpoint frame: mostly well formed, sometimes not (encode refuses it: raw)."""
    kind = draw(st.integers(0, 11))
    fam, proto, sktid, time = draw(FAMILY), draw(PROTO), draw(SKTID), draw(U64)
    udp = proto == 17 and fam in (4, 6)
    raddr = draw(_addr(fam)) if udp else None
    rport = draw(U16) if udp else None
    msg: wire.Message
    if kind == 0:
        errid = draw(ERRID)
        msg = wire.Result(
            errid,
            draw(U16) if errid in (0x12, 0x13) else None,
            draw(U16) if errid == 0x12 else None,
        )
    elif kind == 1:
        msg = wire.Mdata(draw(st.sampled_from([vmem.TIME.addr, vmem.SKT_BASE]) | U32), draw(DATA))
    elif kind == 2:
        msg = wire.Ntag(sktid, draw(st.integers(0, 3)), time, draw(st.sampled_from([0, 0x41])))
    elif kind == 3:
        if draw(st.booleans()) and fam in (4, 6):
            msg = wire.Nstat(sktid, fam, 6, time, 0, draw(_addr(fam)), draw(U16))
        else:
            msg = wire.Nstat(sktid, fam, proto, time, draw(st.sampled_from([0, 1, 2, 3, 255])))
    elif kind == 4:
        msg = wire.Ndata(sktid, fam, proto, time, draw(DATA), raddr, rport)
    elif kind == 5:
        msg = wire.Ndrop(sktid, fam, proto, time, time, draw(U32), draw(U32))
    elif kind == 6:
        msg = wire.Nblock(sktid, fam, proto, draw(U16), time)
    elif kind == 7:
        msg = wire.Linfo(b"monitor", draw(st.binary(max_size=2)), draw(DATA))
    elif kind == 8:
        msg = draw(st.sampled_from([wire.Suspd(), wire.Resumd(), wire.Start()]))
    elif kind == 9:  # any type, any body
        body = draw(DATA)
        return struct.pack(">I", draw(U8) << 24 | len(body)) + body
    elif kind == 10:  # a header whose length lies (the rest never comes, or other frames)
        return struct.pack(">I", draw(U8) << 24 | draw(st.integers(0, 0xFFFFFF)))
    else:
        return bytes(draw(st.binary(min_size=1, max_size=6)))
    try:
        return wire.encode(msg)
    except wire.EncodeError:
        return b""


STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("feed"), st.lists(messages(), max_size=6), st.integers(1, 64)),
        st.tuples(st.just("request"), st.integers(0, 5), SKTID),
        st.tuples(st.just("drain"), SKTID, st.just(0)),
        st.tuples(st.just("time"), st.sampled_from([0.5, ANSWER_TIMEOUT / 3]), st.just(0)),
    ),
    max_size=25,
)


class Run:
    def __init__(self) -> None:
        self.clock = Clock()
        self.s = EndpointSession(reactor=self.clock, max_notes=4, max_bytes=64)
        self.t = WriteLog()
        self.s.makeConnection(self.t)
        self.s.dataReceived(wire.encode(wire.Result()))
        self.held: list[Deferred[Any]] = []
        self.outcomes: list[Any] = []

    def hold(self, d: Deferred[Any] | None) -> None:
        if d is None:
            return
        i = len(self.outcomes)
        self.outcomes.append(None)
        self.held.append(d)

        def settled(r: Any) -> None:
            self.outcomes[i] = r  # consumed here

        d.addBoth(settled)

    def request(self, kind: int, sktid: int) -> None:
        s = self.s
        if kind == 0:
            self.hold(s.mread(vmem.TIME.addr, 8))
        elif kind == 1:
            self.hold(s.nclose(sktid))
        elif kind == 2:
            self.hold(s.nopen_udp(sktid))
        elif kind == 3:
            if s.find_socket(sktid) is None:
                return
            d = s.nsend(sktid, b"x", to=("127.0.0.1", 9), ntag=True, family=4, proto=17)
            self.hold(d.addCallback(lambda q: self.hold(q.ntag)))
        elif kind == 4:
            self.hold(s.socket(sktid).get())
        else:
            self.hold(s.mread(vmem.SKT_BASE, 3))

    def check(self) -> None:
        s = self.s
        for r in self.outcomes:
            if isinstance(r, Failure):
                assert isinstance(r.value, ControllerError), r.getTraceback()
        assert s.close_reason is None or isinstance(s.close_reason, ControllerError)
        assert len(s.linfo) <= MAX_LINFO
        for sktid in range(5):
            sock = s.find_socket(sktid)
            if sock is not None:
                assert sock.queued <= sock.max_notes


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(STEPS)
def test_hostile_endpoint_streams(steps: list[tuple[Any, Any, Any]]) -> None:
    run = Run()
    s = run.s
    for what, a, b in steps:
        if what == "feed":
            stream = b"".join(a)
            for i in range(0, len(stream), b):
                s.dataReceived(stream[i : i + b])
        elif what == "request":
            run.request(a, b)
        elif what == "drain":
            sock = s.find_socket(a)
            if sock is not None:
                sock.drain()
        else:
            run.clock.advance(a)
        run.check()
    s.connectionLost(Failure(ConnectionDone()))
    run.check()
    assert all(d.called for d in run.held), "something still waits after the session ended"
    assert s.pending == 0


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(st.integers(0, vmem.SYS_SPAN - 1), U8, max_size=64),
    st.binary(min_size=0x80, max_size=0x80),
)
def test_any_memory_contents_give_system_and_socket_info(
    pokes: dict[int, int], block: bytes
) -> None:
    """Whatever bytes the endpoint's memory holds (counts beyond the lists, odd flags,
    states no enum names), the info helpers return values, never a decoding error."""
    from ctl_fakes import Rig

    from packetlab.controller import read_socket_info, read_system_info

    rig = Rig()
    rig.endpoint.memory = bytearray(vmem.SYS_SPAN)
    for off, value in pokes.items():
        rig.endpoint.memory[off] = value
    rig.endpoint.memory[:2] = bytes([pokes.get(0, 255), pokes.get(1, 255)])  # max counts
    info = rig.run(read_system_info(rig.session))
    assert len(info.ip4) == rig.endpoint.memory[0] and len(info.dns4) <= 16
    rig.endpoint.read = lambda addr, n: block[:n].ljust(n, b"\0")  # type: ignore[method-assign]
    sock = rig.run(read_socket_info(rig.session, 3))
    assert sock.sktid == 3
