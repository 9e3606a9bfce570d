"""`pktlab run http --limit-rate` over the scripted endpoint (its clock simulated): the
argument as curl 7.88 reads it, a download and an upload taking the time the rate says
(the endpoint stamps), the endpoint holding what it read until granted."""

from __future__ import annotations

from pathlib import Path

import pytest
from http_fake import Answer, H2Server, serve
from stream_fakes import StreamFakeEndpoint
from test_http_redirects import response
from test_run_http_curl import parse, run

from packetlab.measure.http import Asked, http_get
from packetlab.measure.upload_body import file_upload
from packetlab.wire.constants import NotifMask

N = 256 << 10  # body bytes
RATE = 64 << 10  # --limit-rate 64K: N takes 4 s


def _body(method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
    return response(200, b"x" * N if method == "GET" else f"{len(body)}".encode())


def test_rate_argument_as_curl() -> None:
    assert parse("--limit-rate", "64K", "u").limit_rate == RATE
    assert parse("--limit-rate", "2m", "u").limit_rate == 2 << 20
    assert parse("--limit-rate", "1G", "u").limit_rate == 1 << 30
    assert parse("--limit-rate", "1000", "u").limit_rate == 1000
    assert parse("u").limit_rate == 0
    with pytest.raises(SystemExit):
        parse("--limit-rate", "5x", "u")  # curl: unsupported rate unit. Use G, M, K or B!


def _seconds(*argv: str) -> float:
    code, _, raw, _, records = run(*argv, "-w", "%{time_total}", "-o", "/dev/null",
                                     "http://192.0.2.80/f", handler=_body)  # fmt: skip
    assert code == 0, records
    return float(raw)


def test_a_download_takes_what_the_rate_says() -> None:
    unpaced = _seconds()
    paced = _seconds("--limit-rate", "64K")
    assert unpaced < 0.5
    # the body and its header block at 64 KiB/s: 4 s and a little (curl: the same)
    assert 0.95 * N / RATE <= paced <= 1.2 * N / RATE


def test_an_upload_takes_what_the_rate_says(tmp_path: Path) -> None:
    # 1 MiB at 256 KiB/s: each 64 KiB read goes when the bytes before it are within the
    # rate (as curl's), so the last leaves at 15/16 of 4 s
    f = tmp_path / "up"
    f.write_bytes(b"u" * (1 << 20))
    code, _, raw, _, _ = run("-T", str(f), "--limit-rate", "256k", "-w", "%{time_total}",
                             "-o", "/dev/null", "http://192.0.2.80/up", handler=_body)  # fmt: skip
    assert code == 0
    assert 0.9 * 4 <= float(raw) <= 1.2 * 4


def test_the_endpoint_holds_what_it_reads_until_granted(monkeypatch: pytest.MonkeyPatch) -> None:
    # NDATA and NSTAT masked before the request goes (nothing of the answer unheld), each
    # grant a clear and a set back to back, the last mwrite a clear (a reused connection
    # is not held); without --limit-rate no mask at all
    masks: list[tuple[int, int]] = []
    mask = StreamFakeEndpoint._mask

    def record(self: StreamFakeEndpoint, sktid: int, value: int) -> None:
        masks.append((value, self.rbufused[sktid]))
        mask(self, sktid, value)

    monkeypatch.setattr(StreamFakeEndpoint, "_mask", record)
    _seconds()
    assert masks == []
    _seconds("--limit-rate", "64K")
    held = int(NotifMask.NDATA | NotifMask.NSTAT)
    values = [v for v, _ in masks]
    assert values[0] == held and masks[0][1] == 0  # set before anything came
    assert values[-1] == 0 and values[1:-1] == [0, held] * ((len(values) - 2) // 2)
    # the answer waited at the endpoint for a grant (the fake endpoint holds all of it,
    # the real one stops reading at the socket's rbufsz)
    assert any(used >= N for v, used in masks[1:-1] if v == 0)


def _big(method: str, target: str, headers: dict[str, str], body: bytes) -> Answer:
    text = b"x" * N if method == "GET" else f"{len(body)}".encode()
    return 200, [("content-length", str(len(text)))], text


def test_http2_download_and_upload_take_what_the_rate_says(tmp_path: Path) -> None:
    # h2c with prior knowledge: one connection's reads (the body's DATA frames) and the
    # upload's DATA frames, 64 KiB at a time, held to the rate
    f = tmp_path / "up"
    f.write_bytes(b"u" * (1 << 20))
    for data, rate, seconds in ((None, RATE, N / RATE), (file_upload(str(f)), 256 << 10, 4.0)):
        rig, _ = serve(lambda _: H2Server(_big), (80,))
        r = rig.run(http_get(rig.session, "http://192.0.2.80/f", http_version="2-prior",
                             asked=Asked(limit_rate=rate), data=data))  # fmt: skip
        assert (r.error, r.status, r.http_version) == (None, 200, "2")
        assert r.total_us is not None and 0.9 * seconds <= r.total_us / 1e6 <= 1.2 * seconds
