"""`yield` and `cont` against a real `twistd pktendpoint` (PROTOCOL.md §1.2, §1.4 step 5).

yield(rhint): the endpoint answers SUCCESS, closes the connection, and connects again for
the same experiment only once its clock has passed rhint. cont is defined but unused by
the reference: it is answered ECTLNOTSUP and the session carries on.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from conftest import EndpointProcess

from packetlab import wire
from packetlab.wire import vmem
from packetlab.wire.constants import Status


def test_yield_answers_then_reconnects_after_the_resume_hint(
    endpoint_factory: Callable[..., EndpointProcess],
) -> None:
    ep = endpoint_factory(args=["--reconnect-delay", "0.05"])
    c = ep.accept()
    c.start()
    now = int.from_bytes(c.mread(vmem.TIME.addr, 8), "big")
    rhint = now + 1_500_000_000  # 1.5 s on the endpoint's clock
    assert c.request(wire.Yield(rhint=rhint)) == wire.Result()
    assert c.closed_by_peer()
    c2 = ep.accept(timeout=15.0)
    c2.start()
    again = int.from_bytes(c2.mread(vmem.TIME.addr, 8), "big")
    # The next session starts only after rhint, not after the 0.05 s reconnect delay.
    assert again > rhint, (again - rhint) / 1e9
    c2.close()


def test_yield_with_a_past_hint_reconnects_promptly(
    endpoint_factory: Callable[..., EndpointProcess],
) -> None:
    ep = endpoint_factory(args=["--reconnect-delay", "0.05"])
    c = ep.accept()
    c.start()
    assert c.request(wire.Yield(rhint=0)) == wire.Result()
    assert c.closed_by_peer()
    t0 = time.monotonic()
    ep.accept(timeout=15.0).close()
    assert time.monotonic() - t0 < 10.0


def test_cont_is_not_supported_and_the_session_carries_on(
    endpoint_factory: Callable[..., EndpointProcess],
) -> None:
    c = endpoint_factory().accept()
    c.start()
    assert c.status(wire.Cont()) == Status.ECTLNOTSUP
    assert c.mread(vmem.IP4NO.addr, 1) == b"\x01"
    c.close()
