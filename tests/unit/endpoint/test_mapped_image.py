"""The system block in an anonymous mapping (packetlab.endpoint.memory.mapped_system_image):
the same bytes and reads as the bytearray image, with only the written pages resident."""

from __future__ import annotations

import ctypes
import sys

import pytest
from test_ep_memory import NOW, config

from packetlab.endpoint.budget import Budget
from packetlab.endpoint.memory import VirtualMemory, mapped_system_image, system_image
from packetlab.wire import vmem


def test_the_mapped_image_holds_the_same_bytes() -> None:
    mapped = mapped_system_image(config())
    assert len(mapped) == vmem.SYS_SPAN
    assert mapped[:] == bytes(system_image(config()))


def test_reads_through_the_mapped_image_match() -> None:
    def vm(image: bytearray | object) -> VirtualMemory:
        budget = Budget(123456)
        budget.used = 4321
        return VirtualMemory(image, [None] * 256, budget, lambda: NOW, print, print)  # type: ignore[arg-type]

    plain, mapped = vm(system_image(config())), vm(mapped_system_image(config()))
    for addr, length in [
        (vmem.HOSTID.addr, vmem.HOSTID.size),
        (vmem.TIME.addr, 8),
        (vmem.BUFUSED.addr, 4),
        (vmem.SYS_BASE, 64),
        (vmem.SYS_BASE + vmem.SYS_SPAN - 16, 64),  # across the block's end
    ]:
        assert mapped.read(addr, length) == plain.read(addr, length)


def _resident_pages(start: int, length: int) -> int:
    """Pages of [start, start + length) in memory (mincore(2)): exactly the image's pages.
    (The Rss of its mapping in /proc/self/smaps counted neighbours the kernel merged it
    with; Python's own arenas came and went beside it between two reads: CI, session 33,
    a difference of 76 KiB where 176 were written.)"""
    libc = ctypes.CDLL(None, use_errno=True)
    pages = (length + 4095) // 4096
    vec = (ctypes.c_ubyte * pages)()
    rc = libc.mincore(ctypes.c_void_p(start), ctypes.c_size_t(length), vec)
    assert rc == 0, ctypes.get_errno()
    return sum(b & 1 for b in vec)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mincore(2) on Linux")
def test_only_the_written_pages_are_resident() -> None:
    mapped = mapped_system_image(config())
    start = ctypes.addressof(ctypes.c_char.from_buffer(mapped))
    before = _resident_pages(start, len(mapped))
    for page in range(0, len(mapped), 4096):
        mapped[page] = mapped[page]  # every page written: what a bytearray costs
    # 5 of the 49 pages held fields; the other 44 (176 KiB) became resident only now.
    assert before <= 8 and _resident_pages(start, len(mapped)) == (len(mapped) + 4095) // 4096
