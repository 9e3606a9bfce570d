"""iperf3's -F for `throughput_timed`: each stream's file (`DiskFile`)."""

from __future__ import annotations

__all__ = ["DiskFile"]


class DiskFile:
    """iperf3's -F (3.12's diskfile_send/_recv), one stream's: each stream opens the file
    itself. A sender sends it from its start in blocks of -l bytes, the last one short, and
    the test ends at its end (-F alone: at the streams' -n of the file's size, in whole
    blocks); a receiver writes what it read from the file's start (emptied first), over
    what the other streams wrote, each write(2) as it comes, as iperf3's."""

    def __init__(self, path: str, *, sending: bool) -> None:
        # unbuffered for writing: the streams' writes land in the file in the order made
        self.f = open(path, "rb" if sending else "wb", buffering=-1 if sending else 0)  # noqa: SIM115
        self.ahead: bytes | None = None  # the next block, read ahead to know the last
        self.done = False  # the block returned last was the file's last

    def block(self, size: int) -> bytes | None:
        data = self.f.read(size) if self.ahead is None else self.ahead
        if not data:
            self.done = True
            return None
        self.ahead = self.f.read(size)
        self.done = not self.ahead
        return data

    def write(self, data: bytes) -> None:
        self.f.write(data)

    def close(self) -> None:
        self.f.close()
