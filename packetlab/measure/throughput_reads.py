"""iperf3 3.12's receiver reads, as a controller can see them (`-R -k N`, `-R -n N`).

iperf3's client counts its reads: `-k N` ends the test after N of them (blocks_received),
`-n N` after the read that brought the bytes to N. Each read is one wake of its select()
loop: Nread() reads the non-blocking socket until it holds `-l` bytes or the socket is
empty (EAGAIN). What it reads depends on what was in the socket when it woke: `-R -k 20
-l 1M` on loopback read 17.4-21.0 MB in its 20 reads, while its server sent 20 MiB (the
server stops after N blocks of `-l` bytes, all streams together, and the client drains
the rest uncounted after TEST_END).

A controller sees the endpoint's reads of the socket instead: each ndata is one recv() of
at most NDATA_MAX bytes, and the endpoint reads in a loop until one comes back short (the
socket was empty). So a read here is what iperf3's would be had it woken when the
endpoint did: the bytes of the recv()s up to one that came back short, cut into pieces of
`-l` bytes. The endpoint wakes at its own moments, not iperf3's, so the counts agree
where the data comes in whole blocks (a fast link, a slow reader) and differ otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from packetlab.wire.constants import NDATA_MAX

__all__ = ["Reads", "end_all", "server_total"]


@dataclass(slots=True)
class Reads:
    """One TCP stream's reads of up to `size` (-l) bytes."""

    size: int
    done: int = 0  # reads complete
    done_bytes: int = 0  # their bytes
    pending: int = 0  # bytes of the read in progress

    def end(self) -> bool:
        """The read in progress ends (its socket is empty); True if there was one."""
        if not self.pending:
            return False
        self.done += 1
        self.done_bytes += self.pending
        self.pending = 0
        return True

    def take(self, nbytes: int, reached: Callable[[], bool]) -> int:
        """One recv() of `nbytes`: the reads it completes, `reached` checked after each (as
        iperf3 checks its count after every read). Returns the bytes iperf3's reads took:
        all, or those up to the read that reached the count (it reads the rest after
        TEST_END, uncounted)."""
        off = 0
        while off < nbytes:
            step = min(nbytes - off, self.size - self.pending)
            off += step
            self.pending += step
            if self.pending == self.size:
                self.end()
                if reached():
                    return off
        if nbytes < NDATA_MAX:  # short: the socket is empty, the read ends
            self.end()
        return nbytes


def server_total(nbytes: int | None, blocks: int | None, size: int) -> int | None:
    """What an iperf3 3.12 server sends for `-n`/`-k` (all streams together): whole blocks
    of `size` until it has sent N bytes, or N blocks; then it waits for TEST_END."""
    if blocks is not None:
        return blocks * size
    if nbytes is not None:
        return -(-nbytes // size) * size
    return None


def end_all(reads: Iterable[Reads]) -> None:
    """Everything the server sends is in: every read in progress ends (iperf3's next read
    would find the socket empty)."""
    for r in reads:
        r.end()
