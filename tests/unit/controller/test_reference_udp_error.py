"""The reference endpoint's answer to a UDP `sendto` error (docs/endpoint.md
"Differences"): an nstat on the UDP socket, then every queued send drained with
ntag(EPKTNOTSENT). Ours fails only that datagram. `udp_exchange` must end at its timeout
with each send's error named, not hang or count the nstat as a reply (ctlaudit23)."""

from __future__ import annotations

from ctl_fakes import FakeEndpoint, Rig

from packetlab.controller import udp_exchange
from packetlab.wire import Nsend, Nstat, NstatCode, Ntag, Proto, Status


class SendtoFails(FakeEndpoint):
    """UDP sends are queued (result SUCCESS) and then fail the reference way."""

    def nsend(self, msg: Nsend) -> None:
        if msg.proto != Proto.UDP:
            super().nsend(msg)
            return
        self.result()
        self.send(Nstat(msg.sktid, msg.family, msg.proto, self.now(), NstatCode.UNKNOWN))
        if msg.tag:
            self.send(Ntag(msg.sktid, msg.tag, self.now(), Status.EPKTNOTSENT))


def test_udp_exchange_takes_the_reference_s_sendto_failure() -> None:
    rig = Rig(endpoint=SendtoFails)
    rig.session.ready.addErrback(lambda f: None)
    d = udp_exchange(rig.session, "192.0.2.53", 53, [b"a", b"b"], timeout=2.0)
    got = rig.run(d, step=0.01, limit=10)
    assert got.end == "timeout" and got.replies == []
    assert [s.size for s in got.sent] == [1, 1]
    assert all(s.time is None and s.error and "EPKTNOTSENT" in s.error for s in got.sent), got
    assert rig.clock.seconds() < 2.5  # its timeout, no more
    assert rig.endpoint.requests()[-1] == "nclose"  # the socket was closed
