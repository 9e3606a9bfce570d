"""Each publisher's share of the live-publication table (docs/broker.md "Bounds"): public
channels need no proof and agent keys are free, so one key (157 links of 64) filled the
broker's 10,000 and every real publisher got EPUBBADXD. Now one key may hold
MaxPublicationsPerKey, one address MaxPublicationsPerAddress; the excess is refused with
the full table's code (EPUBBADXD), logged within a budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_broker_protocol import ZERO, World, frames
from testkit.logs import captured_events

from packetlab.broker.config import ConfigError, parse_config
from packetlab.broker.registry import (
    MAX_LIVE_PUBLICATIONS,
    MAX_PER_ADDRESS,
    MAX_PER_KEY,
    Registry,
    source_of,
)
from packetlab.broker.session import Role
from packetlab.wire import Result, Xpub, encode

EPUBBADXD = 0x54


def _link(w: World, key: bytes, host: str) -> Any:
    p, t = w.connect(Role.PUBLISH, host)
    p.session.agent_key = key  # type: ignore[union-attr]
    return p, t


def _xpub(p: Any, i: int) -> None:
    p.dataReceived(encode(Xpub([b"public"], ZERO, b"controller_addr=h%d;" % i)))


def test_one_key_holds_its_share_and_leaves_room_for_another() -> None:
    w = World()
    w.registry.max_per_key = 3
    flood = [_link(w, b"F" * 32, f"10.0.1.{i}") for i in range(2)]
    for i in range(4):  # 2 links x 2: the fourth is past the key's share
        _xpub(flood[i % 2][0], i)
    w.clock.advance(1.01)
    assert frames(flood[0][1]) == [Result(0), Result(0)]
    assert frames(flood[1][1]) == [Result(0), Result(EPUBBADXD)]
    real, rt = _link(w, b"R" * 32, "10.0.1.0")  # same address as the flood, another key
    _xpub(real, 9)
    assert frames(rt) == [Result(0)]
    flood[0][0].connectionLost(None)  # its two end: the key has room again
    _xpub(flood[1][0], 5)
    w.clock.advance(8.01)
    assert frames(flood[1][1]) == [Result(0)]


def test_one_address_holds_its_share_whatever_its_keys() -> None:
    w = World()
    w.registry.max_per_address = 3
    links = [_link(w, bytes([i]) * 32, "10.0.2.1") for i in range(4)]
    for i, (p, _) in enumerate(links):
        _xpub(p, i)
    w.clock.advance(1.01)
    assert [frames(t) for _, t in links] == [[Result(0)]] * 3 + [[Result(EPUBBADXD)]]
    other, ot = _link(w, b"O" * 32, "10.0.2.2")
    _xpub(other, 7)
    assert frames(ot) == [Result(0)]


def test_share_refusals_by_the_hundred_log_a_few_lines() -> None:
    w = World()
    w.registry.max_per_key = 1
    with captured_events() as events:
        links = [_link(w, b"F" * 32, f"10.0.3.{i}") for i in range(101)]
        for i, (p, _) in enumerate(links):
            _xpub(p, i)
        w.clock.advance(30)
    answers = [frames(t) for _, t in links]
    assert answers.count([Result(EPUBBADXD)]) == 100
    lines = events.lines("refuse xpub")
    assert len(lines) == 20, lines[:3]
    assert "its share (MaxPublicationsPerKey 1)" in lines[0]
    assert "the next ones are counted, not logged" in lines[-1]


def test_the_counts_follow_publications_and_skip_other_brokers() -> None:
    r = Registry(max_per_key=2, max_per_address=10)
    a = [r.publish((b"p",), b"x=%d;" % i, (), publisher=b"K", address="h")[0] for i in range(2)]
    assert r.refusal(b"K", "h") is not None and r.refusal(b"L", "h") is None
    r.publish((b"p",), b"y=1;", (), publisher=b"K", address="h", origin="redis:1")
    r.publish((b"p",), b"y=2;", (), publisher=b"K", address="h", origin="redis:1")
    assert "holds 2 live publications" in (r.refusal(b"K", "h") or "")
    r.withdraw(a[0])
    assert r.refusal(b"K", "h") is None
    r.withdraw(a[1])
    assert r._per_key == {} and r._per_address == {}


def test_defaults_and_config_keys(tmp_path: Path) -> None:
    cfg = parse_config([], "x")
    assert (cfg.max_publications, cfg.max_per_key, cfg.max_per_address) == (
        MAX_LIVE_PUBLICATIONS, MAX_PER_KEY, MAX_PER_ADDRESS,
    ) == (10_000, 1_000, 5_000)  # fmt: skip
    lines = ["MaxPublications 50", "MaxPublicationsPerKey 5", "MaxPublicationsPerAddress 20"]
    cfg = parse_config(lines, "b.conf")
    assert (cfg.max_publications, cfg.max_per_key, cfg.max_per_address) == (50, 5, 20)
    for bad in ("0", "x", "1000001", "-1"):
        with pytest.raises(
            ConfigError, match=r"b\.conf:1: MaxPublicationsPerKey: expected a count"
        ):
            parse_config([f"MaxPublicationsPerKey {bad}"], "b.conf")


def _fill(r: Registry, address: str, n: int, tag: bytes) -> int:
    """Publish up to `n` from `address`, a fresh agent key each (keys are free); returns
    how many were taken."""
    taken = 0
    for i in range(n):
        key = tag + i.to_bytes(4, "big")
        if r.refusal(key, address) is None:
            r.publish((b"public",), tag + b"=%d;" % i, (), publisher=key, address=address)
            taken += 1
    return taken


def test_two_addresses_with_many_keys_leave_room_for_small_publishers() -> None:
    """Session 20: with 5,000 per address, two addresses of many free keys filled the
    10,000 places and every other publisher got EPUBBADXD. The last tenth is now kept for
    sources holding fewer than 16, so a flood from a few addresses leaves it open."""
    r = Registry()  # the defaults: 10,000 / 1,000 per key / 5,000 per address
    taken = sum(_fill(r, f"192.0.2.{i}", MAX_PER_ADDRESS, b"f%d" % i) for i in (1, 2))
    assert taken == MAX_LIVE_PUBLICATIONS - r.reserve == 9_000
    why = r.refusal(b"F" * 32, "192.0.2.2") or ""  # it holds 4,000
    assert "its last 1000 places are kept for addresses holding fewer than 16" in why
    # the reserve: up to 16 each for the next sources, however many keys they use
    small = [_fill(r, f"198.51.100.{i}", 100, b"s%d" % i) for i in range(3)]
    assert small == [16, 16, 16]
    # filling the table now takes 2 + 63 sources instead of 2
    more = sum(_fill(r, f"203.0.113.{i}", 100, b"m%d" % i) for i in range(1, 100))
    assert len(r.publications) == MAX_LIVE_PUBLICATIONS
    assert more == r.reserve - sum(small)


def test_an_ipv6_source_is_its_slash_64() -> None:
    """One host holds a whole /64: 5,000 per address would be 5,000 per address of it."""
    r = Registry(max_publications=100, max_per_key=100, max_per_address=3)
    hosts = [f"2001:db8:0:1::{i:x}" for i in range(1, 5)]
    assert [_fill(r, h, 1, b"h%d" % i) for i, h in enumerate(hosts)] == [1, 1, 1, 0]
    assert "address 2001:db8:0:1::/64 holds 3" in (r.refusal(b"K" * 32, hosts[0]) or "")
    assert r.refusal(b"K" * 32, "2001:db8:0:2::1") is None  # another /64
    assert source_of("::ffff:192.0.2.7") == "192.0.2.7" == source_of("192.0.2.7")
    assert source_of("fe80::1%eth0") == "fe80::1%eth0"  # a link-local peer: itself, its zone
    assert source_of("not an address") == "not an address"


def test_the_64s_of_one_48_hold_two_addresses_shares() -> None:
    """Before: each /64 of a /48 had its own 3, so a /48 had 3 x 65,536."""
    r = Registry(max_publications=100, max_per_key=100, max_per_address=3)
    nets = [f"2001:db8:0:{i:x}::1" for i in range(1, 5)]
    assert [_fill(r, h, 3, b"n%d" % i) for i, h in enumerate(nets)] == [3, 3, 0, 0]
    assert (r.refusal(b"K" * 32, nets[2]) or "").startswith(
        "address 2001:db8::/48 holds 6 live publications, its share (a site's: 2 addresses'"
    )
    assert _fill(r, "2001:db8:1::1", 3, b"o") == 3  # another /48
    lan = [f"fe80::{i:x}%eth0" for i in range(1, 5)]  # one link: two shares too
    assert [_fill(r, h, 3, b"l%d" % i) for i, h in enumerate(lan)] == [3, 3, 0, 0]
    assert _fill(r, "fe80::1%eth1", 3, b"e1") == 3  # another interface's peer


def test_the_64s_of_one_48_do_not_fill_the_reserve() -> None:
    """Before: after two /64s took 9,000, 63 more /64s of the same /48 took the last
    1,000 (16 each: each /64 was small) and a real publisher got EPUBBADXD."""
    r = Registry()
    taken = sum(_fill(r, f"2001:db8:0:{i}::1", MAX_PER_ADDRESS, b"f%d" % i) for i in (1, 2))
    assert taken == 9_000
    more = sum(_fill(r, f"2001:db8:0:{i:x}::1", 100, b"m%d" % i) for i in range(3, 70))
    assert more == 0
    why = r.refusal(b"F" * 32, "2001:db8:0:99::1") or ""
    assert why.startswith("address 2001:db8::/48 holds 9000 live publications and the")
    assert _fill(r, "198.51.100.1", 100, b"s") == 16  # a small publisher elsewhere
