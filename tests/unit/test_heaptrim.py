"""packetlab.heaptrim: free C-heap pages go back to the kernel once, after start-up."""

from __future__ import annotations

import platform

import pytest
from twisted.internet.testing import MemoryReactorClock

from packetlab import heaptrim


def test_trims_once_after_the_reactor_runs() -> None:
    reactor = MemoryReactorClock()
    heaptrim.trim_after_startup(reactor, delay=0.5)
    assert not reactor.getDelayedCalls()  # nothing before the reactor runs
    reactor.run()
    (call,) = reactor.getDelayedCalls()
    assert call.getTime() == 0.5 and call.func is heaptrim.trim_heap  # type: ignore[attr-defined]
    reactor.advance(0.5)
    assert not reactor.getDelayedCalls()  # ran once, not rescheduled


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_trim_heap_releases_freed_blocks() -> None:
    # ~24 MB in blocks too large for pymalloc but under the mmap threshold: they come
    # from (and, freed, stay in) the C heap until trimmed.
    blocks = [bytes(2048) + i.to_bytes(4, "big") for i in range(12_000)]
    del blocks
    assert heaptrim.trim_heap() is True
