"""The proxy's table of snikey owners: bounded, and trimmed from the biggest holder first."""

from __future__ import annotations

import pytest

from packetlab.proxy.owners import SnikeyOwners, _level


def _none(_key: str) -> int:
    return 0


def test_a_flood_from_one_manager_ages_out_its_own_entries_not_the_owner() -> None:
    owners = SnikeyOwners(100, _none)
    owners.seen("mine", 1.0, "agent key aa")  # oldest entry, no idle backlog (all spliced)
    for i in range(10_000):
        owners.seen(f"flood{i}", 2.0 + i, "agent key bb")
        assert len(owners) <= 100
    assert owners.owner("mine") == "agent key aa"
    assert owners.last_seen("mine") == 1.0
    assert owners.owner("flood9999") == "agent key bb"
    assert owners.owner("flood0") is None  # the flooder's oldest went


def test_a_flood_from_many_managers_still_spares_the_small_holders_first() -> None:
    owners = SnikeyOwners(40, _none)
    for m in range(5):
        owners.seen(f"real{m}", float(m), f"address 10.0.0.{m}")
    for i in range(1_000):  # three flooders in turn
        owners.seen(f"f{i}", 10.0 + i, f"address 192.0.2.{i % 3}")
    assert all(owners.owner(f"real{m}") == f"address 10.0.0.{m}" for m in range(5))
    assert len(owners) <= 40


def test_a_snikey_with_idle_backlogs_is_never_trimmed() -> None:
    idle = {"held"}
    owners = SnikeyOwners(10, lambda key: int(key in idle))
    owners.seen("held", 0.0, "agent key aa")
    for i in range(100):
        owners.seen(f"x{i}", 1.0 + i, "agent key aa")  # the same owner floods itself
    assert owners.owner("held") == "agent key aa"
    assert len(owners) <= 10


def test_refreshing_an_entry_moves_it_to_the_newest() -> None:
    owners = SnikeyOwners(4, _none)
    for i in range(4):
        owners.seen(f"k{i}", float(i), "m")
    owners.seen("k0", 9.0)  # an endpoint used it: seen again, owner kept
    owners.seen("k4", 10.0, "m")  # over the bound: half go, oldest first within "m"
    assert owners.owner("k0") == "m" and owners.last_seen("k0") == 9.0
    assert owners.owner("k1") is None and owners.owner("k2") is None


@pytest.mark.parametrize(
    ("sizes", "drop", "level"),
    [
        ([10, 3, 1], 5, 5),
        ([10, 3, 1], 7, 3),
        ([10, 3, 1], 9, 2),  # 8 from the first, 1 from the second
        ([10, 3, 1], 14, 0),
        ([10, 3, 1], 99, 0),
        ([4, 4, 4], 3, 3),
        ([4, 4, 4], 4, 2),  # ceil: lowering all three by 2 removes 6 >= 4
        ([1] * 8, 8, 0),
    ],
)
def test_the_water_level(sizes: list[int], drop: int, level: int) -> None:
    assert _level(sizes, drop) == level
    assert sum(max(0, s - level) for s in sizes) >= min(drop, sum(sizes))
