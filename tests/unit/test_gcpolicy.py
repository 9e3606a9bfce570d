"""packetlab.gcpolicy: a higher gen-0 threshold while a train's packets are pending."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from packetlab.gcpolicy import TRAIN_GEN0, fewer_collections


@pytest.fixture(autouse=True)
def thresholds() -> Iterator[tuple[int, int, int]]:
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield gc.get_threshold()
    gc.set_threshold(*saved)


def test_raised_inside_and_restored_after() -> None:
    with fewer_collections():
        assert gc.get_threshold() == (TRAIN_GEN0, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)


def test_interleaved_blocks_restore_when_the_last_one_ends() -> None:
    """Two trains on one reactor end in any order: the first to end leaves it raised."""
    a, b = fewer_collections(), fewer_collections()
    a.__enter__()
    b.__enter__()
    a.__exit__(None, None, None)  # a ends first
    assert gc.get_threshold()[0] == TRAIN_GEN0
    b.__exit__(None, None, None)
    assert gc.get_threshold() == (700, 10, 10)


def test_restored_after_an_error() -> None:
    with pytest.raises(ValueError), fewer_collections():
        raise ValueError
    assert gc.get_threshold() == (700, 10, 10)


def test_a_higher_or_zero_threshold_is_left_alone() -> None:
    gc.set_threshold(50_000, 10, 10)
    with fewer_collections():
        assert gc.get_threshold() == (50_000, 10, 10)
    gc.set_threshold(0, 10, 10)  # collection off by threshold: not turned on
    with fewer_collections():
        assert gc.get_threshold() == (0, 10, 10)
    assert gc.get_threshold() == (0, 10, 10)


def test_a_change_made_meanwhile_is_kept() -> None:
    with fewer_collections():
        gc.set_threshold(2_000, 5, 5)
    assert gc.get_threshold() == (2_000, 5, 5)
