"""The registry: matching, late subscribers, the per-endpoint delivery record (§5.5,
BROKER-PROXY-OBSERVED.md §2.3)."""

from __future__ import annotations

from packetlab.broker.registry import Publication, Registry, Subscriber
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
    # once every publication with those bytes ended, the record goes
    reg.withdraw(p)
    assert reg.holds(XD, b"A" * 32)
    for q in list(reg.publications.values()):
        reg.withdraw(q)
    assert not reg.holds(XD, b"A" * 32)
    pub(reg, [b"pub"], XD)
    assert l2.sent == [(b"pub", XD)]


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


def test_state_is_released_when_everything_ends() -> None:
    reg = Registry()
    subs = [sub(reg, bytes([i]) * 32, [b"a"])[0] for i in range(10)]
    p = pub(reg, [b"a"], XD)
    for s in subs:
        reg.unsubscribe(s)
    reg.withdraw(p)
    assert not reg.publications and not reg.subscribers
    assert not reg._delivered and not reg._xdescr_refs
    assert not reg._subs_by_channel and not reg._pubs_by_channel
