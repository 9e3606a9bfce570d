"""The benchmark controller's raw-flow helpers (benchmarks/raw_flow.py): counting records
and frames by their headers, sealing one record per frame, opening records one by one
with their raw offsets, and the checks that void a run whose answers are wrong. Over a
real TLS 1.3 pair on memory BIOs (stdlib ssl), no sockets."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.bench_tls_records import Stdlib, self_signed_cert
from benchmarks.raw_flow import (
    NTAG_BODY,
    Arrivals,
    DownloadCheck,
    FlowMismatch,
    FrameSplitter,
    RecordOpener,
    check_nsend_answers,
    ends_with_unit,
    last_unit,
    nsend_tags,
    record_size,
    seal_frames,
    walk_units,
)
from packetlab.endpoint import frames


class Pair(Stdlib):
    """The benchmark's in-memory TLS 1.3 pair: `server` is the controller, `client` the
    endpoint; BIOs named by side."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(*self_signed_cert(workdir))
        assert self.server.version() == "TLSv1.3" and not self.sin.pending
        self.s_in, self.s_out, self.c_in, self.c_out = self.sin, self.sout, self.cin, self.cout


@pytest.fixture
def pair(tmp_path: Path) -> Pair:
    return Pair(tmp_path)


def answers(tags: list[int], sktid: int = 1) -> list[bytes]:
    return [f for tag in tags for f in (frames.result(0), frames.ntag(sktid, tag, 5))]


def test_one_record_per_frame_counted_by_size(pair: Pair) -> None:
    tags = [1, 2, 3]
    raw = seal_frames(pair.client, pair.c_out, answers(tags))
    assert len(raw) == 3 * (record_size(4) + record_size(4 + NTAG_BODY))
    w = walk_units(raw, 0, len(raw), True, record_size(4 + NTAG_BODY))
    assert (w.pos, w.count, w.matched) == (len(raw), 6, 3)
    assert w.plain == 3 * (4 + 4 + NTAG_BODY)
    assert w.last == record_size(4 + NTAG_BODY)


def test_walk_stops_at_a_partial_unit_and_at_the_limit(pair: Pair) -> None:
    raw = seal_frames(pair.client, pair.c_out, answers([1, 2]))
    cut = len(raw) - 3
    w = walk_units(raw, 0, cut, True)
    assert w.count == 3 and w.pos == len(raw) - record_size(4 + NTAG_BODY)
    assert walk_units(raw, 0, 4, True).count == 0  # not even a whole header
    limited = walk_units(raw, 0, len(raw), True, limit=1)
    assert (limited.count, limited.pos) == (1, record_size(4))


def test_walk_frames_on_plain_tcp_matches_types() -> None:
    raw = b"".join(answers([7, 8])) + frames.result(0)[:2]
    w = walk_units(raw, 0, len(raw), False, 0x60)
    assert (w.count, w.matched, w.last) == (4, 2, 0x60)
    assert w.pos == len(raw) - 2 and w.plain == w.pos


def test_opener_gives_each_record_with_its_raw_end_and_keeps_the_tail(pair: Pair) -> None:
    out = answers([1, 2])
    raw = seal_frames(pair.client, pair.c_out, out)
    opener = RecordOpener(pair.server, pair.s_in)
    got = list(opener.open(raw[:50], base=1000))
    assert got == [(out[0], 1000 + record_size(4))]
    assert opener.tail == raw[record_size(4) : 50]
    rest = list(opener.open(raw[50:], base=1050))
    assert [p for p, _ in rest] == out[1:]
    assert rest[-1][1] == 1000 + len(raw)
    assert opener.tail == b"" and not pair.s_in.pending and not pair.server.pending()


def test_frames_split_across_records_carry_the_offset_that_completed_them(pair: Pair) -> None:
    big = frames.ndata_tcp(2, 4, 6, 0, bytes(40000))  # three records
    raw = seal_frames(pair.client, pair.c_out, [big, frames.result(0)])
    assert walk_units(raw, 0, len(raw), True).count == 4
    splitter = FrameSplitter()
    got = list(splitter.feed_all(RecordOpener(pair.server, pair.s_in).open(raw)))
    assert [(k, len(b)) for k, b, _ in got] == [(0x62, 40011), (0x40, 0)]
    assert got[0][2] == len(raw) - record_size(4) and got[1][2] == len(raw)


def test_plain_frames_get_their_own_ends() -> None:
    raw = b"".join(answers([3]))
    got = list(FrameSplitter().feed(raw, 100, own_ends=True))
    assert [at for _, _, at in got] == [104, 100 + len(raw)]


def test_nsend_answers_all_checked() -> None:
    tags = nsend_tags(3)
    ok = [(k, b, 0) for k, b, _ in FrameSplitter().feed(b"".join(answers(tags)), 0)]
    check_nsend_answers(ok, 1, tags)
    with pytest.raises(FlowMismatch, match="expected socket 1 tag 2"):
        bad = b"".join(answers([1, 9, 3]))
        check_nsend_answers(FrameSplitter().feed(bad, 0), 1, tags)
    with pytest.raises(FlowMismatch, match="error result"):
        err = frames.result(5) + b"".join(answers(tags))[4:]
        check_nsend_answers(FrameSplitter().feed(err, 0), 1, tags)
    with pytest.raises(FlowMismatch, match="2 results and 2 ntags for 3"):
        check_nsend_answers(FrameSplitter().feed(b"".join(answers(tags[:2])), 0), 1, tags)
    with pytest.raises(FlowMismatch, match="body"):
        ntag_err = frames.result(0) + frames.ntag_error(1, 1, 5, 3)
        check_nsend_answers(FrameSplitter().feed(ntag_err, 0), 1, tags[:1])


def test_nsend_tags_skip_zero() -> None:
    assert nsend_tags(65537)[-3:] == [65535, 1, 2]


def download(size: int) -> list[bytes]:
    out = [frames.result(0), frames.nstat_established(2, 4, 6, 1, b"\x7f\0\0\1", 80)]
    out += [frames.ndata_tcp(2, 4, 6, 0, bytes(n)) for n in (size // 2, size - size // 2)]
    return [*out, frames.nstat_code(2, 4, 6, 9, 3)]


def test_download_check_counts_every_byte_and_the_end() -> None:
    parts = download(1000)
    raw = b"".join(parts)
    check = DownloadCheck(2, 1000)
    check.feed(FrameSplitter().feed(raw[:-16], 0, own_ends=True))
    assert check.done_at is None and check.got == 1000 and check.frames == 2
    assert check.first_at == sum(map(len, parts[:3]))  # where the first ndata ends
    check.feed(FrameSplitter().feed(raw[-16:], len(raw) - 16, own_ends=True))
    assert check.done_at == len(raw)


@pytest.mark.parametrize("tls", [True, False])
def test_a_download_end_is_seen_at_its_last_unit_only(pair: Pair, tls: bool) -> None:
    """The download loop walks headers only when `ends_with_unit` says the PEERCLOSED may
    be there: it must say so at the end, and not at any other unit boundary of the same
    stream (where it would cost a walk) nor in the middle of the last unit."""
    parts = download(40_000)  # ndata of 20,000 bytes: two records each on TLS
    raw = seal_frames(pair.client, pair.c_out, parts) if tls else b"".join(parts)
    unit = last_unit(tls)
    assert walk_units(raw, 0, len(raw), tls).last == (unit[1] if tls else 0x61)  # the nstat
    assert ends_with_unit(raw, 0, len(raw), unit)
    bounds, pos = [], 0
    while (w := walk_units(raw, pos, len(raw), tls, limit=1)).count:
        bounds.append(pos := w.pos)
    assert len(bounds) == (7 if tls else 5)
    assert not any(ends_with_unit(raw, 0, end, unit) for end in bounds[:-1])
    assert not any(ends_with_unit(raw, 0, len(raw) - cut, unit) for cut in (1, 5, 20))
    assert not ends_with_unit(raw, len(raw) - 3, len(raw), unit)  # fewer bytes than a unit
    other = seal_frames(pair.client, pair.c_out, [frames.result(0)]) if tls else frames.result(0)
    assert not ends_with_unit(raw + other, 0, len(raw) + len(other), unit)  # not last


@pytest.mark.parametrize(
    ("frames_", "size", "error"),
    [
        (download(999), 1000, "PEERCLOSED after 999 of 1000"),
        ([frames.result(1), *download(10)[1:]], 10, "nopen answered"),
        ([*download(10), frames.result(0)], 10, "after the download's PEERCLOSED"),
        ([*download(10)[:3], frames.mdata(0, b"x"), *download(10)[3:]], 10, "type 0x41"),
    ],
)
def test_download_check_voids_wrong_answers(frames_: list[bytes], size: int, error: str) -> None:
    check = DownloadCheck(2, size)
    with pytest.raises(FlowMismatch, match=error):
        check.feed(FrameSplitter().feed(b"".join(frames_), 0, own_ends=True))


def test_arrivals_map_offsets_to_the_read_that_brought_them() -> None:
    a = Arrivals()
    for end, t in ((0, 0.0), (100, 1.0), (250, 2.0)):
        a.add(end, t)
    assert (a.at(1), a.at(100), a.at(101), a.at(250)) == (1.0, 1.0, 2.0, 2.0)
    with pytest.raises(ValueError, match="past the last read"):
        a.at(251)
    assert a.at(101, before=True) == 1.0 and a.at(0, before=True) == 0.0
    assert a.span(50, 200) == 1.0
    assert a.span(150, 200) == 1.0  # one read brought both: from the read before
