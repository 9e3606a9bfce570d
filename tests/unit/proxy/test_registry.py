from __future__ import annotations

import pytest

from packetlab.proxy.registry import BacklogRegistry, ProxyStats, RegistryFull


def test_oldest_backlog_first_and_removed() -> None:
    r: BacklogRegistry[str] = BacklogRegistry()
    r.add("k", "a")
    r.add("k", "b")
    r.add("j", "c")
    assert (r.count("k"), r.total, r.snikeys) == (2, 3, 2)
    assert r.take("k") == "a"
    assert r.take("k") == "b"
    assert r.take("k") is None
    assert (r.total, r.snikeys) == (1, 1)


def test_discard() -> None:
    r: BacklogRegistry[str] = BacklogRegistry()
    r.add("k", "a")
    assert r.discard("k", "a")
    assert not r.discard("k", "a")
    assert r.total == 0 and r.take("k") is None


def test_caps() -> None:
    r: BacklogRegistry[object] = BacklogRegistry(per_snikey=2, total=3)
    r.add("k", object())
    r.add("k", object())
    assert r.full("k") is not None and r.full("j") is None
    with pytest.raises(RegistryFull, match="snikey"):
        r.add("k", object())
    r.add("j", object())
    with pytest.raises(RegistryFull, match="cap 3"):
        r.add("i", object())


def test_stats_line() -> None:
    s = ProxyStats(registrations=2)
    s.refusals["no_sni"] += 1
    line = s.line(BacklogRegistry())
    assert "registrations=2" in line and "refusals=no_sni:1" in line and "backlog=0" in line
