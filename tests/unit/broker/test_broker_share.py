"""Each publisher's share of the live-publication table (docs/broker.md "Bounds"): public
channels need no proof and agent keys are free, so one key (157 links of 64) filled the
broker's 10,000 and every real publisher got EPUBBADXD. Now one key may hold
MaxPublicationsPerKey, one address MaxPublicationsPerAddress; the excess is refused with
the full table's code (EPUBBADXD), logged within a budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_broker_protocol import ZERO, World, _events, frames
from twisted.logger import formatEvent

from packetlab.broker.config import ConfigError, parse_config
from packetlab.broker.registry import (
    MAX_LIVE_PUBLICATIONS,
    MAX_PER_ADDRESS,
    MAX_PER_KEY,
    Registry,
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
    events, stop = _events()
    try:
        links = [_link(w, b"F" * 32, f"10.0.3.{i}") for i in range(101)]
        for i, (p, _) in enumerate(links):
            _xpub(p, i)
        w.clock.advance(30)
    finally:
        stop()
    answers = [frames(t) for _, t in links]
    assert answers.count([Result(EPUBBADXD)]) == 100
    lines = [formatEvent(e) for e in events if "refuse xpub" in formatEvent(e)]
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
