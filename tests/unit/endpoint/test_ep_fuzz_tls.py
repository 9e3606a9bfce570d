"""Hostile request streams through the real TLS link (PPKS TLS 1.3 over iosim, in memory):
the endpoint is the TLS client with ControllerProtocol on top, as in `pktendpoint`; the
controller writes well-formed, malformed, unknown and truncated frames in records cut
anywhere. Checked: nothing is logged as a failure (no exception left the protocol or the
TLS layer), each request handled gets exactly one answer with a status §1.3 allows (the
table of test_ep_fuzz_conn), a malformed frame is answered ECTLBADMSG, last, and the
connection is then closed (close_notify, then the transport), and closing frees every
byte of the budget."""

from __future__ import annotations

from ep_fakes import Rig
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_ep_fuzz_conn import ALLOWED, ODD_NOPEN, SETUP_ONLY, bad_frame, record_handled, request
from test_tls import World, controller_entry, endpoint_creator
from testkit.logs import captured_events
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.test.iosim import connectedServerAndClient

from packetlab import wire
from packetlab.endpoint.protocol import ControllerProtocol
from packetlab.endpoint.session import Phase, is_odd_nopen
from packetlab.tls import PPKSServerOptions, PPKSTLSFactory
from packetlab.wire.constants import Status

WORLD = World()


class Controller(Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.lost = False

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.lost = True


class Conn:
    """An endpoint session over TLS, and the controller on the other side."""

    def __init__(self) -> None:
        self.rig = Rig()
        session = self.rig.session
        self.handled: list[tuple[wire.Item, Phase]] = []
        record_handled(session, self.handled)
        reactor = MemoryReactorClock()
        self.endpoint = ControllerProtocol(lambda: session, reactor)
        self.controller = Controller()
        options = PPKSServerOptions({"exp1": controller_entry(WORLD)})
        sf = PPKSTLSFactory(options, False, Factory.forProtocol(lambda: self.controller))
        cf = PPKSTLSFactory(
            endpoint_creator(WORLD), True, Factory.forProtocol(lambda: self.endpoint)
        )
        self.endpoint_tls, self.controller_tls, self.pump = connectedServerAndClient(
            lambda: sf.buildProtocol(None), lambda: cf.buildProtocol(None), greet=False
        )
        self.pump.flush()
        assert self.controller.transport is not None, "TLS handshake failed"

    def write(self, data: bytes, cuts: list[int]) -> None:
        """`data` in TLS records cut at `cuts`, each delivered before the next is written."""
        prev = 0
        for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
            if cut > prev:
                self.controller.transport.write(data[prev:cut])  # type: ignore[union-attr]
                self.pump.pump()
            prev = cut
        self.pump.flush()


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    start=st.booleans(),
    msgs=st.lists(request(), max_size=12),
    bad=st.none() | bad_frame(),
    cuts=st.lists(st.integers(0, 4000), max_size=8),
)
def test_hostile_stream_over_tls(
    start: bool, msgs: list[wire.Message], bad: bytes | None, cuts: list[int]
) -> None:
    with captured_events() as events:
        c = Conn()
        stream = b"".join(wire.encode(m) for m in ([wire.Start()] if start else []) + msgs)
        c.write(stream + (bad or b""), cuts)
        answers = [
            m
            for m in wire.Framer().feed(c.controller.data)
            if isinstance(m, (wire.Result, wire.Mdata))
        ]
        assert len(answers) == len(c.handled), (answers, c.handled)
        for (item, phase), answer in zip(c.handled, answers, strict=True):
            if isinstance(item, wire.Malformed) and is_odd_nopen(item):
                want = ODD_NOPEN if phase is Phase.IDLE else {Status.ECTLNOTSUP}
                assert isinstance(answer, wire.Result) and answer.errid in want
            elif isinstance(item, wire.Malformed):
                assert answer == wire.Result(Status.ECTLBADMSG)
                assert item is c.handled[-1][0]
                assert c.controller.lost, "the endpoint kept the connection after ECTLBADMSG"
            elif isinstance(item, wire.Mread) and phase is Phase.IDLE:
                assert isinstance(answer, wire.Mdata) and len(answer.data) == item.len
            else:
                assert isinstance(answer, wire.Result)
                table = SETUP_ONLY if phase is Phase.SETUP else ALLOWED
                allowed = table.get(type(item), {Status.ECTLNOTSUP})
                assert answer.errid in allowed, (item, phase, hex(answer.errid))
        c.controller.transport.loseConnection()  # type: ignore[union-attr]
        c.pump.flush()
        assert c.rig.session.ended is not None
        assert c.rig.session.budget.used == 0
    failures = [e for e in events if e.get("log_failure") is not None or e.get("isError")]
    assert failures == [], failures[:1]
