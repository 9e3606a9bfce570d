"""The system block in an anonymous mapping (packetlab.endpoint.memory.mapped_system_image):
the same bytes and reads as the bytearray image, with only the written pages resident."""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path

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


def _resident_kib(address: int) -> int:
    """Rss of the mapping that holds `address` (the kernel may have merged it with its
    neighbours: compare differences only)."""
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if "-" in head[0] and not head[0].endswith(":"):
            lo, hi = (int(x, 16) for x in head[0].split("-"))
            inside = lo <= address < hi
        elif inside and head[0] == "Rss:":
            return int(head[1])
    raise AssertionError("no mapping holds the image")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")
def test_only_the_written_pages_are_resident() -> None:
    mapped = mapped_system_image(config())
    start = ctypes.addressof(ctypes.c_char.from_buffer(mapped))
    before = _resident_kib(start)
    for page in range(0, len(mapped), 4096):
        mapped[page] = mapped[page]  # every page written: what a bytearray costs
    # 5 of the 49 pages held fields; the other 44 (176 KiB) became resident only now.
    assert _resident_kib(start) - before >= 40 * 4
