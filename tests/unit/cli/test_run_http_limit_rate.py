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


def test_each_http2_stream_held_to_the_rate_as_curl() -> None:
    # -Z over one HTTP/2 connection: each transfer (stream) at --limit-rate, as curl's
    # (7.88.1 beside us: two 1 MiB streams at 500K ended after 1.4-1.95 s each); it was
    # the connection's reads held to it: the two together, the second at 2 N/RATE
    made: list[H2Server] = []

    def server() -> H2Server:
        made.append(H2Server(_big))
        return made[-1]

    urls = ["http://192.0.2.80/a", "http://192.0.2.80/b"]
    code, _, raw, _, records = run("-Z", "--http2-prior-knowledge", "--limit-rate", "64K",
                                   "-w", "%{num_connects} %{time_total}\\n", "-o", "/dev/null",
                                   "-o", "/dev/null", *urls, server=server)  # fmt: skip
    assert code == 0, records
    lines = raw.decode().splitlines()
    assert len(made) == 1 and sorted(x.split()[0] for x in lines) == ["0", "1"]
    for line in raw.decode().splitlines():  # the last 16 KiB frame goes at (N - 16K)/RATE
        assert 0.9 * N / RATE <= float(line.split()[1]) <= 1.2 * N / RATE


def test_a_paced_stream_window_opens_as_its_body_is_taken() -> None:
    # the stream's window is half a second of the rate (our SETTINGS), and what came is
    # acknowledged (WINDOW_UPDATE) only when the exchange took it (`grant`)
    import h2.config
    import h2.connection
    import h2.events

    from packetlab.measure.http2 import H2Framing, paced_window

    assert (paced_window(64 << 10), paced_window(1 << 10), paced_window(1 << 30)) == (
        32 << 10, 16 << 10, 1 << 20)  # fmt: skip
    client = H2Framing("s", 1 << 20, rate=64 << 10)
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    server.initiate_connection()
    events = server.receive_data(client.request("GET", "http", "h", "/", [("Host", "h")], None))
    assert next(e for e in events if isinstance(e, h2.events.RemoteSettingsChanged))
    assert server.remote_settings.initial_window_size == 32 << 10
    server.send_headers(1, [(":status", "200")])
    server.send_data(1, b"x" * (16 << 10))
    server.send_data(1, b"x" * (16 << 10))
    assert server.local_flow_control_window(1) == 0  # the stream's window is used up
    client.receive(server.data_to_send())
    server.receive_data(client.data_to_send())
    assert server.local_flow_control_window(1) == 0  # nothing granted yet: still closed
    client.grant(1)
    server.receive_data(client.data_to_send())
    assert server.local_flow_control_window(1) == 32 << 10  # open again


@pytest.mark.parametrize("how", ["-T", "--data-binary"])
def test_each_http2_upload_held_to_the_rate_as_curl(tmp_path: Path, how: str) -> None:
    # -Z, two uploads multiplexed on one HTTP/2 connection: each stream's body at
    # --limit-rate (curl 7.88.1 paces each transfer: the two together at 2x the rate); it
    # was the connection's sends held to it: the two bodies together, each near 2 N/RATE
    f = tmp_path / "up"
    f.write_bytes(b"u" * N)
    made: list[H2Server] = []

    def server() -> H2Server:
        made.append(H2Server(_big))
        return made[-1]

    urls = ["http://192.0.2.80/a", "http://192.0.2.80/b"]
    body = ("-T", str(f), "-T", str(f)) if how == "-T" else ("--data-binary", f"@{f}")
    code, _, raw, _, records = run("-Z", "--http2-prior-knowledge", "--limit-rate", "64K",
                                   *body, "-w", "%{num_connects} %{size_upload} "
                                   "%{time_total}\\n", "-o", "/dev/null", "-o", "/dev/null",
                                   *urls, server=server)  # fmt: skip
    assert code == 0, records
    lines = [x.split() for x in raw.decode().splitlines()]
    assert len(made) == 1 and sorted(c for c, _, _ in lines) == ["0", "1"]  # one connection
    assert [len(b) for _, b in made[0].requests] == [N, N]
    for _, up, total in lines:  # the last 64 KiB chunk goes at (N - 64K)/RATE: 3 s
        assert int(up) == N and 0.7 * N / RATE <= float(total) <= 1.2 * N / RATE
