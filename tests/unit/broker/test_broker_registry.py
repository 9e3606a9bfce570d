"""The registry: matching, late subscribers, the per-endpoint delivery record (§5.5,
BROKER-PROXY-OBSERVED.md §2.3)."""

from __future__ import annotations

import pytest
from testkit.logs import captured_events

from packetlab.broker.registry import DELIVERY_LINGER, Publication, Registry, Subscriber
from packetlab.wire.nvlist import parse_nvlist


class Link:
    def __init__(self, registry: Registry, key: bytes) -> None:
        self.registry = registry
        self.key = key
        self.sent: list[tuple[bytes, bytes]] = []

    def offer(self, pub: Publication, channel: bytes) -> None:
        if self.registry.claim(pub, self.key):
            self.sent.append((channel, pub.xdescr))


def sub(
    reg: Registry, key: bytes, channels: list[bytes], dattr: bytes = b""
) -> tuple[Subscriber, Link]:
    link = Link(reg, key)
    s = Subscriber(key, tuple(channels), tuple(parse_nvlist(dattr)), link)
    reg.subscribe(s)
    return s, link


def pub(reg: Registry, channels: list[bytes], xdescr: bytes) -> Publication:
    p, _ = reg.publish(
        tuple(channels), xdescr, tuple(parse_nvlist(xdescr, allow_duplicates=True, allow_glob=True))
    )
    return p


XD = b"controller_addr=127.0.0.1;sni_key=a;"


def test_publication_reaches_matching_subscribers_of_its_channel() -> None:
    reg = Registry()
    _, usa = sub(reg, b"A" * 32, [b"pub"], b"endpoint_country=USA;")
    _, gbr = sub(reg, b"B" * 32, [b"pub"], b"endpoint_country=GBR;")
    _, other = sub(reg, b"C" * 32, [b"other"], b"")
    _, noattr = sub(reg, b"D" * 32, [b"pub"], b"")
    pub(reg, [b"pub"], b"endpoint_country=US?;" + XD)
    assert usa.sent == [(b"pub", b"endpoint_country=US?;" + XD)]
    assert gbr.sent == [] and other.sent == []
    assert len(noattr.sent) == 1


def test_late_subscriber_gets_live_publications_and_not_ended_ones() -> None:
    reg = Registry()
    live = pub(reg, [b"pub"], XD)
    gone = pub(reg, [b"pub"], b"controller_addr=h2;")
    reg.withdraw(gone)
    _, link = sub(reg, b"A" * 32, [b"pub", b"x"])
    assert link.sent == [(b"pub", live.xdescr)]


def test_no_replay_to_the_same_agent_key_across_resubscriptions() -> None:
    reg = Registry()
    s1, l1 = sub(reg, b"A" * 32, [b"pub"])
    p = pub(reg, [b"pub"], XD)
    assert len(l1.sent) == 1
    reg.unsubscribe(s1)  # the endpoint reconnects
    _, l2 = sub(reg, b"A" * 32, [b"pub"])
    assert l2.sent == []
    # a second publication with the same bytes is not sent twice either
    pub(reg, [b"pub"], XD)
    assert l2.sent == []
    reg.withdraw(p)
    assert reg.holds(XD, b"A" * 32)


def test_one_notification_per_subscriber_even_on_two_channels() -> None:
    reg = Registry()
    _, link = sub(reg, b"A" * 32, [b"a", b"b"])
    pub(reg, [b"a", b"b"], XD)
    assert link.sent == [(b"a", XD)]


def test_claim_refuses_withdrawn_publication() -> None:
    reg = Registry()
    p = pub(reg, [b"a"], XD)
    reg.withdraw(p)
    assert not reg.claim(p, b"A" * 32)


def test_expired_and_status() -> None:
    reg = Registry()
    p, _ = reg.publish((b"a",), XD, (), pub_end_ns=100)
    reg.publish((b"a",), b"controller_addr=x;", ())
    sub(reg, b"A" * 32, [b"a"])
    assert reg.expired(99) == [] and reg.expired(100) == [p]
    st = reg.status()
    assert st["subscribers"] == 1 and len(st["publications"]) == 2  # type: ignore[arg-type]
    assert st["channels"] == [
        {"channel": "a", "private": False, "subscribers": 1, "publications": 2}
    ]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_state_is_released_when_everything_ends() -> None:
    clock = FakeClock()
    reg = Registry(clock=clock)
    subs = [sub(reg, bytes([i]) * 32, [b"a"])[0] for i in range(10)]
    p = pub(reg, [b"a"], XD)
    for s in subs:
        reg.unsubscribe(s)
    reg.withdraw(p)
    assert not reg.publications and not reg.subscribers
    assert not reg._delivered and not reg._xdescr_refs
    assert not reg._subs_by_channel and not reg._pubs_by_channel
    assert len(reg._ended) == 1 and reg._lingering == 256 + 10 * 32  # by digest, `linger`
    clock.now += DELIVERY_LINGER
    reg.withdraw(pub(reg, [b"a"], b"controller_addr=other;"))  # any end trims
    assert not reg._ended and reg._lingering == 0


def test_bytes_published_again_soon_after_they_ended_skip_endpoints_that_got_them() -> None:
    # The endpoint may still run them (pktxpmgr ends its publication at -n, as the
    # endpoints start) or hold them pending: a second copy crashes the reference
    # (OBSERVED §2.3). A publisher that reconnects and publishes the same bytes again
    # reaches only the endpoints that did not get them; after `linger`, everyone again.
    clock = FakeClock()
    reg = Registry(clock=clock)
    _, got = sub(reg, b"A" * 32, [b"pub"])
    first = pub(reg, [b"pub"], XD)
    reg.withdraw(first)  # the publisher's link closed
    _, new = sub(reg, b"B" * 32, [b"pub"])
    clock.now += DELIVERY_LINGER - 1
    again = pub(reg, [b"pub"], XD)
    assert got.sent == [(b"pub", XD)] and new.sent == [(b"pub", XD)]
    assert reg.holds(XD, b"A" * 32) and reg.holds(XD, b"B" * 32)
    reg.withdraw(again)
    clock.now += DELIVERY_LINGER - 1  # the record lingers from the last end
    assert reg.holds(XD, b"A" * 32)
    clock.now += 1
    assert not reg.holds(XD, b"A" * 32)
    pub(reg, [b"pub"], XD)  # an hour after: a new run everywhere
    assert got.sent == [(b"pub", XD)] * 2 and new.sent == [(b"pub", XD)] * 2


def test_records_of_ended_xdescrs_are_bounded_oldest_first_with_one_log_line() -> None:

    clock = FakeClock()
    reg = Registry(clock=clock, max_lingering=2 * (256 + 10 * 32))
    for i in range(10):
        sub(reg, bytes([i]) * 32, [b"pub"])
    with captured_events() as events:
        for n in range(5):  # 10 endpoints each: 5 records, room for 2
            clock.now += 1
            reg.withdraw(pub(reg, [b"pub"], b"controller_addr=h%d;" % n))
    assert reg._lingering <= reg.max_lingering and len(reg._ended) == 2
    assert not reg.holds(b"controller_addr=h2;", b"\0" * 32)
    assert reg.holds(b"controller_addr=h3;", b"\0" * 32)
    lines = events.lines("delivery record")
    assert len(lines) == 1 and "take more than 1 KiB; dropping the oldest" in lines[0]


@pytest.mark.parametrize("linger", [0.0])
def test_linger_0_forgets_at_the_end_as_before(linger: float) -> None:
    reg = Registry(linger=linger)
    _, link = sub(reg, b"A" * 32, [b"pub"])
    reg.withdraw(pub(reg, [b"pub"], XD))
    assert not reg._ended and not reg.holds(XD, b"A" * 32)
    pub(reg, [b"pub"], XD)
    assert link.sent == [(b"pub", XD)] * 2
