"""`Corked.write`: the one-append hot path of a link's writer and the batches it keeps."""

from __future__ import annotations

from twisted.internet.task import Clock

from packetlab.tls.directwrite import CORK_LIMIT, Corked


class Recorder(Corked):
    def __init__(self) -> None:
        self.now: list[bytes] = []
        self.batches: list[list[bytes]] = []

    def _write_now(self, frame: bytes) -> None:
        self.now.append(frame)

    def _emit(self, frames: list[bytes]) -> None:
        self.batches.append(frames)


def test_uncorked_without_turns_writes_each_frame_now() -> None:
    w = Recorder()
    w.write(b"a")
    w.write(b"b")
    assert w.now == [b"a", b"b"]
    assert w.batches == []


def test_a_cork_keeps_the_frames_in_order_for_one_emit() -> None:
    w = Recorder()
    w.cork()
    w.cork()
    for f in (b"1", b"22", b"333"):
        w.write(f)
    w.uncork()
    assert w.batches == []  # still corked once
    w.uncork()
    assert w.batches == [[b"1", b"22", b"333"]]
    assert w.now == []
    w.write(b"later")  # uncorked again: straight out
    assert w.now == [b"later"]


def test_cork_limit_emits_early_and_starts_a_new_batch() -> None:
    w = Recorder()
    w.cork()
    big = bytes(CORK_LIMIT - 1)
    w.write(big)
    assert w.batches == []
    w.write(b"xx")  # crosses the limit
    assert w.batches == [[big, b"xx"]]
    w.write(b"next")
    w.uncork()
    assert w.batches == [[big, b"xx"], [b"next"]]


def test_a_turn_batches_uncorked_writes_until_it_ends() -> None:
    clock = Clock()
    w = Recorder()
    w.batch_turns(clock)
    w.write(b"a")
    w.write(b"b")
    assert w.batches == [] and w.now == []
    assert len(clock.getDelayedCalls()) == 1  # one end-of-turn for the batch
    clock.advance(0)
    assert w.batches == [[b"a", b"b"]]
    assert clock.getDelayedCalls() == []


def test_a_turn_ending_inside_a_cork_leaves_the_batch_to_the_uncork() -> None:
    clock = Clock()
    w = Recorder()
    w.batch_turns(clock)
    w.write(b"a")
    w.cork()
    w.write(b"b")
    clock.advance(0)
    assert w.batches == []
    w.uncork()
    assert w.batches == [[b"a", b"b"]]


def test_discard_forgets_the_batch_and_its_turn() -> None:
    clock = Clock()
    w = Recorder()
    w.batch_turns(clock)
    w.write(b"gone")
    w.discard()
    assert clock.getDelayedCalls() == []
    w.cork()
    w.write(b"kept")
    w.uncork()
    assert w.batches == [[b"kept"]]
