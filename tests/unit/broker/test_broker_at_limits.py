"""xpub and xsub at and one past each of the broker's limits (the frame cap, xdescr and
dattr sizes, channels per chlist, a channel's length, controller_addr's 255 characters of
§5.6, the xdescr's numbers: exp_priority a u32, pub_end a pktlab_time_t, u64 ns), sent
as pktxpmgr sends an xpub on a public channel (O §3.3 pub_noeop: no xcerts, a zero
eopkey), so any agent can send them. The answer is checked as bytes (§1.3 codes)."""

from __future__ import annotations

import pytest
from test_broker_protocol import World
from testkit.brokerframes import BASE, channels, padded, pub, sub

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


@pytest.mark.parametrize(
    ("role", "data", "answer"),
    [
        (Role.PUBLISH, pub(padded(4096, BASE)), OK),  # MAX_XDESCR
        (Role.PUBLISH, pub(padded(4097, BASE)), "0054"),  # EPUBBADXD
        (Role.SUBSCRIBE, sub(padded(4096)), OK),  # MAX_DATTR
        (Role.SUBSCRIBE, sub(padded(4097)), "0062"),  # ESUBBADDA
        (Role.SUBSCRIBE, sub(chlist=channels(64)), OK),  # MAX_CHANNELS
        (Role.SUBSCRIBE, sub(chlist=channels(65)), "0060"),  # ESUBBADCHL
        (Role.PUBLISH, pub(BASE, channels(64)), OK),
        (Role.PUBLISH, pub(BASE, channels(65)), "0050"),  # EPUBBADCHL
        (Role.PUBLISH, pub(BASE, b"\x20" + b"a" * 32), "0051"),  # private, unproven: EPUBBADCHN
        (Role.PUBLISH, pub(BASE, b"\x21" + b"a" * 33), "0050"),  # §5.2: 1..32 bytes
        (Role.PUBLISH, pub(b"controller_addr=" + b"a" * 249 + b":20600;"), OK),  # 255 chars
        (Role.PUBLISH, pub(b"controller_addr=" + b"a" * 250 + b":20600;"), "0052"),  # EPUBBADADDR
        # MAX_FRAME: a body of 65536 bytes is read (and its xdescr refused); one more byte
        # and the link closes before reading it, with no answer
        (Role.PUBLISH, pub(b"x" * (65536 - 40)), "0054"),
        (Role.PUBLISH, pub(b"x" * (65537 - 40)), b""),
    ],
)
def test_at_and_one_past_each_limit(role: Role, data: bytes, answer: bytes | str) -> None:
    w = World()
    p, t = w.connect(role)
    p.dataReceived(data)
    w.clock.advance(60)
    want = answer if isinstance(answer, bytes) else bytes.fromhex("40000002" + answer)
    assert t.value() == want
    if answer == b"":
        assert t.disconnecting
