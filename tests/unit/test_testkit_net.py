"""testkit.poll.accept_queue reads a listener's queue from /proc; testkit.net.paced opens
a flood no faster than the listener accepts it."""

from __future__ import annotations

from pathlib import Path

import pytest
from testkit.net import paced
from testkit.poll import PollTimeout, accept_queue, tcp_listening

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt\n"


def _table(tmp_path: Path, *rows: tuple[int, str, int]) -> tuple[str, ...]:
    """A /proc/net/tcp with one row per (port, state, rx_queue)."""
    text = HEADER + "".join(
        f"   {i}: 0100007F:{port:04X} 00000000:0000 {st} 00000000:{q:08X} 00:00000000 0\n"
        for i, (port, st, q) in enumerate(rows)
    )
    path = tmp_path / "tcp"
    path.write_text(text)
    return (str(path), str(tmp_path / "absent6"))


def test_the_accept_queue_is_the_rx_queue_of_the_listening_row(tmp_path: Path) -> None:
    tables = _table(tmp_path, (40000, "0A", 0x33), (40000, "01", 7), (40001, "0A", 0))
    assert accept_queue(40000, tables) == 0x33  # the established row's queue is not it
    assert accept_queue(40001, tables) == 0
    assert accept_queue(40002, tables) == 0 and not tcp_listening(40002, tables)
    assert tcp_listening(40000, tables) and tcp_listening(40001, tables)


def test_paced_waits_for_the_queue_before_each_batch() -> None:
    queue = [0]
    seen: list[tuple[int, int]] = []
    reads: list[int] = []

    def make(i: int) -> int:
        seen.append((i, queue[0]))
        queue[0] += 1  # one more waiting to be accepted
        return i * 10

    def read(port: int) -> int:
        assert port == 7
        reads.append(queue[0])
        queue[0] = 0  # the server accepts what waits (so no read has to wait again)
        return reads[-1]

    assert paced(make, 7, 30, backlog=20, queue=read) == [i * 10 for i in range(30)]
    assert reads == [0, 5, 5, 5, 5, 5]  # once before every batch of 20 // 4
    assert [w for _, w in seen] == [0, 1, 2, 3, 4] * 6


def test_paced_fails_when_the_listener_stops_accepting() -> None:
    with pytest.raises(PollTimeout, match="accept queue of port 7 at most 12"):
        paced(lambda i: i, 7, 20, timeout=0, queue=lambda port: 13)
