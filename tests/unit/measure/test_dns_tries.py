"""`run dns`'s UDP tries as dig 9.18 sends them: each from a new socket (a new source
port, the same query id), the one before closed, so a late answer to it is not taken
(measured: tests/integration/test_dns_tries_dig.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import dns.message

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "controller"))

from ctl_fakes import FakeEndpoint, Rig
from test_dns import SERVER, answer, udp_server
from test_pcap import _bytes, decode
from twisted.internet.task import Clock

from packetlab.measure.dns import dns_query
from packetlab.measure.pcap import PcapRecorder, read_pcap
from packetlab.wire import Nclose, Ndata, Nopen, Nsend, Proto


def udp_requests(received: list[Any]) -> list[Any]:
    return [m for m in received if isinstance(m, (Nopen, Nsend, Nclose))
            and getattr(m, "proto", Proto.UDP) == Proto.UDP]  # fmt: skip


def test_each_try_goes_from_a_new_socket_the_last_one_closed() -> None:
    rig = Rig()
    r = rig.run(dns_query(rig.session, "a.test", server="192.0.2.53", timeout=0.5, attempts=3))
    assert r.error_kind == "timeout" and r.tries == 3
    seen = udp_requests(rig.endpoint.received)
    kinds = [type(m).__name__ for m in seen]
    assert kinds == ["Nopen", "Nsend", "Nclose", "Nopen", "Nsend", "Nclose", "Nopen", "Nsend",
                     "Nclose"], kinds  # fmt: skip
    opens, sends, closes = seen[0::3], seen[1::3], seen[2::3]
    assert [s.sktid for s in sends] == [o.sktid for o in opens] == [c.sktid for c in closes]
    assert all(o.lport for o in opens)  # a port we choose, each its own (random) one
    ids = {dns.message.from_wire(s.data).id for s in sends}
    assert len(ids) == 1  # dig's query id stays: only the socket is new
    assert rig.endpoint.sockets == {}


class LateEndpoint(FakeEndpoint):
    """A server that answers the first try when the second one comes, to the first try's
    socket (delivered only while that socket is open, as a kernel would)."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.first: Nsend | None = None
        self.its_socket: object = None  # the first try's socket (a sktid is reused)

    def nsend(self, msg: Nsend) -> None:
        super().nsend(msg)
        if self.first is None:
            self.first, self.its_socket = msg, self.sockets[msg.sktid]
        elif self.sockets.get(self.first.sktid) is self.its_socket:
            first = self.first
            self.send(Ndata(first.sktid, first.family, first.proto, self.now(),
                            answer(first.data, "a.test. 1 A 192.0.2.1"), first.raddr,
                            first.rport))  # fmt: skip


def test_a_late_answer_to_an_earlier_try_is_not_taken() -> None:
    rig = Rig(endpoint=LateEndpoint)
    r = rig.run(dns_query(rig.session, "a.test", server="192.0.2.53", timeout=0.5, attempts=3))
    assert (r.error_kind, r.tries, r.answers) == ("timeout", 3, [])  # as dig: 3 timed out
    assert r.notes == ["communications error to 192.0.2.53#53: timed out"] * 2


def test_the_pcap_shows_each_try_from_its_own_port() -> None:
    rig = Rig()
    asked: list[bytes] = []

    def second_only(query: bytes) -> list[bytes]:  # the first try is lost
        asked.append(query)
        return udp_server("a.test. 1 A 192.0.2.1")(query) if len(asked) == 2 else []

    rig.endpoint.udp_servers[SERVER] = second_only
    rec = PcapRecorder()
    r = rig.run(dns_query(rig.session, "a.test", server="192.0.2.53", timeout=0.5, recorder=rec))
    assert r.error is None and r.tries == 2
    ports = [m.lport for m in rig.endpoint.received if isinstance(m, Nopen)]
    q1, q2, a = [decode(p) for _, p in read_pcap(_bytes(rec))]
    assert [q1["sport"], q2["sport"], a["dport"]] == [ports[0], ports[1], ports[1]]
