"""The xdescr's numbers at and past their sizes (PROTOCOL.md §5.6: exp_priority a u32,
pub_end a pktlab_time_t, u64 ns), sent as pktxpmgr sends an xpub on a public channel
(O §3.3 pub_noeop: no xcerts, a zero eopkey), so any agent can send them."""

from __future__ import annotations

import pytest
from test_broker_protocol import World

from packetlab.broker.session import Role

OK = bytes.fromhex("40000000")


def xpub(pairs: str) -> bytes:
    xd = f"controller_addr=127.0.0.1:20600;sni_key=pubsnikey1;{pairs}".encode()
    body = bytes.fromhex("06" + b"public".hex() + "00") + bytes(32) + xd
    return b"\x31" + len(body).to_bytes(3, "big") + body


@pytest.mark.parametrize(
    ("pairs", "answer"),
    [
        (f"pub_end={2**64 - 1};", OK),
        (f"pub_end={2**64};", "0054"),  # EPUBBADXD
        ("pub_end=" + "9" * 23 + ";", "0054"),
        # 4,000 digits: the expiry timer's int-to-float raised OverflowError inside
        # dataReceived (a traceback, the publisher's link cut, no result)
        ("pub_end=" + "1" * 4000 + ";", "0054"),
        (f"exp_priority={2**32 - 1};", OK),
        (f"exp_priority={2**32};", "0053"),  # EPUBBADPR
        ("exp_priority=" + "1" * 4000 + ";", "0053"),
    ],
)
def test_xdescr_numbers_at_and_past_their_size(pairs: str, answer: bytes | str) -> None:
    w = World()
    p, t = w.connect(Role.PUBLISH)
    p.dataReceived(xpub(pairs))
    w.clock.advance(60)  # an error answer is held back (the throttle)
    want = answer if isinstance(answer, bytes) else bytes.fromhex("40000002" + answer)
    assert t.value() == want
