"""curl 7.88.1's header limits and its words for a body cut short (`http_head`), at the
edges measured with curl 7.88.1 (Debian 12) against a raw loopback server: a header line
of 102,399 bytes (CRLF included) taken, 102,400 refused (27); 307,200 header bytes taken,
one more refused (56) with the count curl printed; the same however the bytes are split."""

from __future__ import annotations

import pytest

from packetlab.measure.http_head import HeadLimits, HeadTooLarge, cut_short

STATUS = b"HTTP/1.1 200 OK\r\n"


def feed(data: bytes, piece: int) -> HeadLimits:
    limits, buf = HeadLimits("192.0.2.80:80"), bytearray()
    for i in range(0, len(data), piece):
        buf += data[i : i + piece]
        limits.feed(buf)
    return limits


@pytest.mark.parametrize("piece", [1 << 20, 1000, 7])
def test_a_line_of_100_kib_is_curls_27(piece: int) -> None:
    ok = STATUS + b"X: " + b"a" * (102399 - 5) + b"\r\n\r\n"
    assert feed(ok, piece).done
    with pytest.raises(HeadTooLarge) as e:
        feed(STATUS + b"X: " + b"a" * (102400 - 5) + b"\r\n\r\n", piece)
    assert (e.value.exitcode, e.value.status, e.value.size) == (27, 200, len(STATUS))


@pytest.mark.parametrize("piece", [1 << 20, 4096, 13])
def test_over_300_kib_of_lines_is_curls_56_with_its_count(piece: int) -> None:
    # curl 7.88.1 for 3,600 lines "X-Hn: " + 80 bytes: "Too large response headers: 307215 > 307200"
    lines = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 80) for i in range(3600))
    with pytest.raises(HeadTooLarge) as e:
        feed(STATUS + lines + b"\r\n", piece)
    assert (e.value.exitcode, e.value.status, e.value.size) == (56, 200, 307215)
    assert str(e.value) == "Too large response headers: 307215 > 307200"
    fits = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 80) for i in range(3387))  # 307,133 in all
    assert feed(STATUS + fits + b"\r\n", piece).done


def test_1xx_blocks_count_and_the_body_does_not() -> None:
    limits = feed(b"HTTP/1.1 100 Continue\r\n\r\n" * 3 + STATUS + b"\r\n" + b"b" * 500_000, 64)
    assert (limits.done, limits.total, limits.status) == (True, 3 * 25 + 19, 200)
    with pytest.raises(HeadTooLarge) as e:  # curl 7.88.1: "307223 > 307200", http_code 100
        feed(b"HTTP/1.1 100 Continue\r\n\r\n" * 13000, 4096)
    assert (e.value.size, e.value.status) == (307223, 100)


def test_a_101_ends_the_head() -> None:  # HTTP/2 frames follow it, no lines
    assert feed(b"HTTP/1.1 101 Switching\r\n\r\n" + b"\0" * 200_000, 999).done


def test_cut_short_in_curls_words() -> None:
    h11 = "peer closed connection without sending complete message body: "
    assert cut_short(h11 + "received 10 bytes, expected 100") == (
        "transfer closed with 90 bytes remaining to read"
    )
    assert cut_short(h11 + "incomplete chunked read") == (
        "transfer closed with outstanding read data remaining"
    )
    assert cut_short("Receive buffer too long") is None
