"""`http_get` against hostile HTTP/2 servers (h2c with prior knowledge over the scripted
endpoint, frames written by hand): floods of SETTINGS, PING, CONTINUATION or other
frames, header lists, bodies and windows past their limits each end the URL with one
line naming the server, in bounded memory, and the URLs after it still go
(docs/security.md "Hostile far ends")."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import hpack
from http_fake import TlsPeer, serve
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    PushPromiseFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from test_hostile_http import OK, Scripted
from twisted.internet.task import deferLater

from packetlab.measure import http as http_mod
from packetlab.measure.http import Connections, http_get
from packetlab.measure.http2 import MAX_CONTROL, SLACK
from packetlab.measure.http_message import MAX_HEADERS

Script = Sequence[tuple[bytes | None, float]]
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frames(*fs: Frame) -> bytes:
    return b"".join(f.serialize() for f in fs)


def head(status: int = 200, end: bool = False, fields: Sequence[tuple[str, str]] = ()) -> bytes:
    block = hpack.Encoder().encode([(":status", str(status)), *fields])
    return HeadersFrame(
        1, block, flags=["END_HEADERS", *(["END_STREAM"] if end else [])]
    ).serialize()


SETTINGS = frames(SettingsFrame(0))
OK_H2 = head(fields=[("content-length", "2")]) + frames(DataFrame(1, b"ok", flags=["END_STREAM"]))


class H2Script(TlsPeer):
    """After the client's preface: SETTINGS; then for each request (a HEADERS frame from
    the client) what `script` says (bytes or None = close, delay); `later` for the
    requests after the first. `script` names stream 1."""

    def __init__(self, script: Script, later: Script = ()) -> None:
        super().__init__()
        self.script, self.later, self.requests = script, later, 0

    def arrived(self) -> None:
        if self.requests == 0:
            if len(self.got) < len(PREFACE):
                return
            del self.got[: len(PREFACE)]
            self.write(SETTINGS)
        while len(self.got) >= 9 and len(self.got) >= 9 + int.from_bytes(self.got[:3]):
            kind = self.got[3]
            del self.got[: 9 + int.from_bytes(self.got[:3])]
            if kind != 1:  # not HEADERS
                continue
            self.requests += 1
            for out, delay in self.script if self.requests == 1 else self.later:
                if out is None:
                    self.close(delay)
                else:
                    self.write(out, delay)


def _one(script: Script, **kw: object) -> http_mod.HttpResult:
    """A URL of a hostile h2c server, then a good server's URL over the same session."""
    rig, _ = serve(lambda _: H2Script(script))
    rig.endpoint.peers[("192.0.2.81", 80)] = lambda: Scripted(lambda t: [(OK, 0.01)])
    r = rig.run(http_get(rig.session, "http://192.0.2.80/", http_version="2-prior", **kw))  # type: ignore[arg-type]
    after = rig.run(http_get(rig.session, "http://192.0.2.81/"))
    assert (after.status, after.error) == (200, None)
    assert not rig.session.paused
    return r


def flood(frame: bytes, times: int = 200) -> Script:
    """64 KiB of `frame`s every 10 ms, `times` times."""
    return [(frame * (65536 // len(frame)), 0.01)] * times


def test_a_well_behaved_script_is_fetched() -> None:  # the scripts below can be told apart
    r = _one([(OK_H2, 0.01)], keep_body=True)
    assert (r.error, r.status, r.body, r.http_version) == (None, 200, b"ok", "2")


def test_a_settings_flood() -> None:
    r = _one(flood(SETTINGS))
    assert (r.status, r.exitcode) == (None, 16)
    assert r.error == (
        f"HTTP/2: over {MAX_CONTROL} SETTINGS and PING frames from 192.0.2.80:80 in one "
        "exchange (a SETTINGS flood)"
    )


def test_a_ping_flood_after_the_headers() -> None:
    r = _one([(head(), 0.01), *flood(frames(PingFrame(0, b"12345678")))])
    assert (r.status, r.exitcode) == (200, 16)  # curl keeps the status line's code
    assert r.error is not None and r.error.endswith("(a PING flood)")


def test_endless_continuation_frames() -> None:
    block = HeadersFrame(1, hpack.Encoder().encode([(":status", "200")])).serialize()
    more = frames(ContinuationFrame(1, b"\x00" * 16000))
    r = _one([(block, 0.01), *flood(more)])
    assert (r.status, r.exitcode) == (None, 56)
    assert r.error == (
        f"HTTP/2: over {MAX_HEADERS + SLACK} bytes from 192.0.2.80:80 that are not "
        "response body (header blocks, control frames or padding)"
    )


def test_a_header_list_over_the_cap() -> None:
    fields = [(":status", "200"), *((f"x-{i}", "v" * 1000) for i in range(320))]
    block = hpack.Encoder().encode(fields)
    pieces = [block[i : i + 16000] for i in range(0, len(block), 16000)]
    out = HeadersFrame(1, pieces[0]).serialize()
    out += frames(*(ContinuationFrame(1, p) for p in pieces[1:-1]))
    out += ContinuationFrame(1, pieces[-1], flags=["END_HEADERS"]).serialize()
    r = _one([(out, 0.01)])
    assert (r.status, r.exitcode) == (None, 16)
    assert r.error == (
        "HTTP/2: bad framing from 192.0.2.80:80: Oversized header block: A header list larger "
        f"than {MAX_HEADERS} has been received"
    )


def test_a_body_over_the_limit_that_keeps_coming() -> None:
    r = _one([(head(), 0.01), *flood(frames(DataFrame(1, b"a" * 16000)))], max_body=100_000)
    assert (r.status, r.exitcode) == (200, 56)  # curl keeps the status line's code
    assert r.error == "body from 192.0.2.80:80 larger than 100000 bytes"


def test_a_frame_over_our_max_frame_size() -> None:
    """(A server that ignores our window is no harm here: each chunk is taken in, and
    acknowledged, as it comes; the body cap and the timeout bound it.)"""
    r = _one([(head(), 0.01), (frames(DataFrame(1, b"a" * 70000)), 0.01)])
    assert (r.status, r.exitcode) == (200, 16)  # curl keeps the status line's code
    assert r.error is not None and r.error.startswith(
        "HTTP/2: bad framing from 192.0.2.80:80: Received overlong frame"
    ), r.error


def test_a_window_opened_past_2_to_the_31() -> None:
    r = _one([(frames(WindowUpdateFrame(0, 2**31 - 1)), 0.01), (OK_H2, 0.02)], data=b"x")
    assert (r.status, r.exitcode) == (None, 16)
    assert r.error is not None and "flow control" in r.error


def test_a_reset_stream_a_goaway_and_a_push() -> None:
    r = _one([(frames(RstStreamFrame(1, error_code=2)), 0.01)])
    assert (r.error, r.exitcode) == ("HTTP/2: stream 1 reset by 192.0.2.80:80 (INTERNAL_ERROR)", 92)
    r = _one([(frames(GoAwayFrame(0, last_stream_id=0, error_code=0)), 0.01)])
    assert r.exitcode == 16
    assert r.error == "HTTP/2: 192.0.2.80:80 went away (GOAWAY NO_ERROR) before the request"
    push = PushPromiseFrame(1, promised_stream_id=2, flags=["END_HEADERS"])
    push.data = hpack.Encoder().encode([(":method", "GET"), (":path", "/"),
                                        (":scheme", "http"), (":authority", "x")])  # fmt: skip
    r = _one([(push.serialize(), 0.01)])
    assert r.exitcode == 16 and (r.error or "").startswith("HTTP/2: bad framing from ")
    # streams of the server's own (HEADERS on 2, 4, ...): refused, none is kept
    theirs = b"".join(head()[:5] + (n).to_bytes(4, "big") + head()[9:] for n in range(2, 2000, 2))
    r = _one([(theirs, 0.01)])
    assert r.exitcode == 16 and (r.error or "").startswith("HTTP/2: bad framing from "), r.error


def test_a_flood_of_other_frames_is_cut_by_the_non_body_cap() -> None:
    r = _one([(head(), 0.01), *flood(frames(PriorityFrame(3, depends_on=0)))])
    assert (r.status, r.exitcode) == (200, 56)  # curl keeps the status line's code
    assert r.error is not None and "not response body" in r.error


def test_a_close_in_the_middle_and_a_silent_server() -> None:
    r = _one([(head(), 0.01), (frames(DataFrame(1, b"abc")), 0.01), (None, 0.02)])
    closed = "the server 192.0.2.80:80 closed the connection before a complete response"
    assert (r.error, r.exitcode) == (closed, 56)
    r = _one([], timeout=2.0)
    assert r.exitcode == 28 and (r.error or "").startswith("timed out: no response")


def test_a_ping_while_idle_is_answered_and_the_connection_reused() -> None:
    ping = frames(PingFrame(0, b"idle...."))
    again = head(204) + frames(DataFrame(3, b"", flags=["END_STREAM"]))
    again = again[:5] + b"\x00\x00\x00\x03" + again[9:]  # stream 3's HEADERS
    for idle, reused in ((ping, True), (ping * 2000, False), (b"\x00" * 9, False)):
        script: Script = [(OK_H2, 0.01), (idle, 0.05)]
        rig, made = serve(partial(lambda s, _: H2Script(s, [(again, 0.01)]), script))
        pool = Connections()
        kw = dict(http_version="2-prior", connections=pool)
        rig.run(http_get(rig.session, "http://192.0.2.80/", **kw))  # type: ignore[arg-type]
        rig.run(deferLater(rig.clock, 0.2, lambda: None))  # it comes while the connection idles
        r = rig.run(http_get(rig.session, "http://192.0.2.80/", **kw))  # type: ignore[arg-type]
        rig.run(pool.close())
        assert (r.error, r.status, r.reused, len(made)) == (None, 204 if reused else 200,
                                                            reused, 1 if reused else 2)  # fmt: skip
