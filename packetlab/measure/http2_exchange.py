"""An HTTP/2 exchange over one connection for `packetlab.measure.http` (the framing is
`http2`'s, loaded when a connection speaks HTTP/2): a stream's request, its response,
its upload under the flow-control window."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import h11
from twisted.internet.defer import Deferred

from packetlab.clockstep import steady
from packetlab.controller import (
    ControllerError,
    EndpointSession,
    RequestFailed,
)
from packetlab.measure.http_conn import _Conn, _read, _Ready, _refused, _send
from packetlab.measure.http_message import (
    MAX_HEADERS,
    UPLOAD_WINDOW,
    _Fields,
    _Hop,
    _request,
    _request_headers,
    _Response,
    _Sink,
    _stamp_sent,
    _TooMuch,
    wire_target,
)
from packetlab.measure.http_rate import StreamPace
from packetlab.measure.http_speed import TooSlow
from packetlab.measure.http_trace import DATA_OUT, auth, h2_head, h2_request, info
from packetlab.measure.stream import (
    StreamError,
    StreamTimeout,
)
from packetlab.measure.upload_body import CHUNK, Upload
from packetlab.wire import Ntag

if TYPE_CHECKING:  # HTTP/2 (h2, hpack) is loaded when a connection speaks it
    from packetlab.measure.http2 import H2Framing


def _h2_framing(server: str, rate: int = 0) -> H2Framing:
    """A connection's HTTP/2 framing; `rate`: --limit-rate, each stream held to it."""
    from packetlab.measure.http2 import H2Framing

    return H2Framing(server, MAX_HEADERS, rate)


async def _exchange_h2(
    session: EndpointSession,
    hop: _Hop,
    conn: _Conn,
    data: Upload | None,
    headers: _Fields,
    deadline: float,
    sink: _Sink,
    follows: bool,
) -> bool:
    """The request and its response as HTTP/2 (one stream); whether the connection can
    carry another. The request's fields are HTTP/1.1's; `request_size` is curl's (the
    HTTP/1.1 form of the request's head, `HTTP/2` in its request line; the body, sent as
    DATA frames, is not counted)."""
    assert conn.h2 is not None
    u = hop.url
    fields = _request_headers(u, data, headers)
    try:
        _request(u, hop.method, None, _trimmed(headers))  # h11's checks of the method, fields
    except h11.LocalProtocolError as e:
        raise StreamError(f"bad request: {e}") from None
    target = wire_target(u.target) if headers.target is None else headers.target
    path = target.encode("utf-8", "surrogateescape").decode("latin-1")  # (bytes)
    head = f"{hop.method} {path} HTTP/2\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields)
    hop.request_size = len(head.encode("latin-1", "replace")) + 2  # the head only, as curl's
    ready = _Ready(session.reactor)
    framing = conn.h2
    ready.on_ready = lambda: _h2_kick(conn, framing)  # a pipe's chunk: frame it now
    # :authority is the Host field's (-H 'Host: h' names h; -H 'Host:', none), as curl's
    authority = next((v for k, v in fields if k.lower() == "host"), None)
    frames = conn.h2.request(hop.method, u.scheme, authority, path, fields,
                             None if data is None else data.chunks(ready.notify),
                             None if data is None else data.length)  # fmt: skip
    sid = conn.h2.stream_id
    if framing.paced and data is not None:  # --limit-rate: this stream's body at its rate
        conn.uploads[sid] = StreamPace(session.reactor, framing.rate)
    if sink.trace is not None:
        auth(sink.trace, headers.own, headers.auth_user, headers.auth_scheme)
        h2_request(sink.trace, hop.method, u.scheme, authority, u.target, fields, sid, hop)
    _stamp_sent(hop, _send(conn, frames, ntag=True))
    if sid in conn.uploads:  # its first chunk now (paced: not framed with the head)
        _h2_kick(conn, framing)
    if sink.trace is not None:  # (curl: the head and body once sent)
        h2_head(sink.trace, hop.method, authority, u.target, fields)
        small = None if data is None else data.small()
        if small:  # (a body read as it goes: not told)
            sink.trace(DATA_OUT, small)
            info(sink.trace, "We are completely uploaded and fine")
    return await _h2_response(session, hop, conn, deadline, sink, follows, b"", b"", sid)


def _trimmed(fields: _Fields) -> _Fields:
    """The fields for h11's checks only: their values' trailing blanks cut (h11 refuses
    them; curl 7.88 sends them over HTTP/2 as given, `-A 'ua  '`, and so do we)."""

    def cut(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return [(k, v.rstrip(" \t")) for k, v in pairs]

    return replace(fields, own=cut(fields.own), cookie=cut(fields.cookie),
                   custom=cut(fields.custom))  # fmt: skip


async def _h2_response(
    session: EndpointSession,
    hop: _Hop,
    conn: _Conn,
    deadline: float,
    sink: _Sink,
    follows: bool,
    informational: bytes,
    leftover: bytes,
    sid: int,
    told: int = 0,
) -> bool:
    """The response on the request's stream `sid`: `informational` the header blocks
    before it (an h2c Upgrade's 101), `leftover` bytes already received after them.
    With other streams in flight on the connection (--parallel) one exchange reads for
    all at a time and the others wait until it woke them (what came for them queued).
    `told`: the bytes of `informational` the trace was told already (the 101)."""
    from packetlab.measure.http2 import Body, End, Head

    framing = conn.h2
    assert framing is not None
    resp = _Response(hop, sink, follows)
    resp.told = told
    done = False
    clock = session.reactor
    pace = StreamPace(clock, framing.rate) if framing.paced else None
    excess = 0  # body bytes of a -I request's answer (not read, as curl's)
    try:
        if leftover:
            framing.receive(leftover, hop.last)
        while not done:
            for when, ev in framing.take(sid):
                when = hop.last if when is None else when
                hop.first = when if hop.first is None else hop.first
                hop.last = when
                if isinstance(ev, Head) and not ev.final:
                    informational += ev.raw
                    if len(informational) > MAX_HEADERS:
                        raise _TooMuch(f"response headers from {hop.server} over {MAX_HEADERS} "
                                       "bytes (1xx responses included)")  # fmt: skip
                elif isinstance(ev, Head):
                    hop.version = "2"
                    resp.head(ev.status, "", ev.headers, informational + ev.raw)
                elif isinstance(ev, Body) and hop.nobody:  # -I -X GET: curl reads none
                    excess += len(ev.data)
                elif isinstance(ev, Body):
                    if pace is not None:  # --limit-rate: this stream's bytes at its rate
                        await pace.wait(len(ev.data), deadline)
                    resp.wire(ev.data)
                    resp.data(ev.data)
                elif isinstance(ev, End):
                    done = True
            if done:
                _ended_short(hop, resp, sink, excess)
                break
            if pace is not None:  # what it took in: the server may send as much again
                framing.grant(sid)
                out = framing.data_to_send()
                if out:
                    _send(conn, out)
                if framing.queued(sid):  # came while it waited (another stream's read)
                    continue
            if conn.failed is not None:
                raise conn.failed
            if conn.closed:
                what = "without a response" if hop.first is None else "before a complete response"
                raise StreamError(f"the server {hop.server} closed the connection {what}")
            if hop.slow is not None:  # -Y/-y: this transfer's own check (raises TooSlow)
                hop.slow.check(steady(clock))
            if conn.reading:  # another stream's exchange reads: wait for it to wake us
                left = deadline - steady(clock)
                if left <= 0:
                    raise StreamTimeout(f"nothing from {conn.server} within the time")
                if hop.slow is not None:  # (and look again a second after the check)
                    left = min(left, hop.slow.next_check(steady(clock)) - steady(clock))
                await _woken(conn, clock, left)
                continue
            conn.reading = True
            try:
                chunk, plain, closed = await _read(session, conn, deadline, hop.slow)
                if plain:
                    framing.receive(plain, chunk.time if chunk is not None else hop.last)
            except (StreamTimeout, TooSlow):
                raise  # this stream's time (or speed): the others have theirs
            except Exception as e:  # the connection's end: every stream's
                conn.failed = e
                raise
            finally:
                conn.reading = False
                conn.wake()
            conn.closed = conn.closed or closed
            out = framing.data_to_send()
            if out:
                _send(conn, out)
            await _h2_upload(conn, framing)
            hop.uploaded = framing.uploaded(sid)
        hop.uploaded = framing.uploaded(sid)
    finally:
        framing.finish(sid, answered=done)
        conn.uploads.pop(sid, None)
        if not conn.uploads and conn.h2_timer is not None and conn.h2_timer.active():
            conn.h2_timer.cancel()
    resp.end()
    return framing.reusable and not conn.closed and not conn.stream.eof


def _ended_short(hop: _Hop, resp: _Response, sink: _Sink, excess: int) -> None:
    """The stream's end as curl 7.88 ends a transfer: -I's answer with DATA (`-I -X
    GET`), its -v `Excess found` line; a body shorter than its Content-Length where h2
    checks none (`-X HEAD`: h2 and nghttp2 expect none, curl wants the GET's), curl's
    (18), the connection kept (measured, session 30)."""
    if excess:
        info(sink.trace, f"Excess found: excess = {excess} url = "
                         f"{hop.url.target.partition('?')[0]} (zero-length body)")  # fmt: skip
    if hop.nobody or hop.method != "HEAD" or hop.status in (204, 304):
        return
    size = next((v.strip() for k, v in hop.headers if k.lower() == "content-length"), "")
    if size.isdigit() and int(size) > hop.body_len:
        resp.closed()  # (its `{ [0 bytes data]`)
        hop.error = f"transfer closed with {int(size) - hop.body_len} bytes remaining to read"
        hop.exitcode = 18


def _h2_later(conn: _Conn, framing: H2Framing, wait: float) -> None:
    """The paced pump again in `wait` s (one timer a connection, the earliest)."""
    clock = conn.stream.session.reactor
    timer = conn.h2_timer
    if timer is not None and timer.active():
        if timer.getTime() <= clock.seconds() + wait:  # (a timer's time: wall scale)
            return
        timer.cancel()
    conn.h2_timer = clock.callLater(wait, _h2_kick, conn, framing)


async def _woken(conn: _Conn, clock: Any, left: float) -> None:
    """Until the exchange reading the connection woke the waiters, or `left` s."""
    woken: Deferred[None] = Deferred()
    conn.waiters.append(woken)

    def late() -> None:
        if not woken.called:
            woken.callback(None)

    timer = clock.callLater(left, late)
    await woken
    if timer.active():
        timer.cancel()


def _h2_kick(conn: _Conn, framing: H2Framing) -> None:
    """A request body's pipe has a chunk ready: frame it now (one `_h2_upload` at a
    time on the connection: the running one goes on). A refused send is the
    connection's failure (the response's loop raises it)."""
    if conn.h2_pumping:
        conn.h2_again = True
        return

    def failed(f: Any) -> None:
        conn.failed = conn.failed or f.value
        conn.wake()

    Deferred.fromCoroutine(_h2_upload(conn, framing)).addErrback(failed)


async def _h2_upload(conn: _Conn, framing: H2Framing) -> None:
    """The request body's DATA frames the server's windows let go now, `UPLOAD_WINDOW`
    chunks at a time, each batch after the previous one's ntag (bounded memory); one at a
    time on a connection (frames in order): a call while one runs asks it to go on."""
    if conn.h2_pumping:
        conn.h2_again = True
        return
    conn.h2_pumping = True
    try:
        while True:
            conn.h2_again = False
            await _h2_frames(conn, framing)
            if not conn.h2_again:
                break
    finally:
        conn.h2_pumping = False


async def _h2_frames(conn: _Conn, framing: H2Framing) -> None:
    sent: Deferred[Ntag] | None = None
    while True:
        if framing.paced:  # --limit-rate: each stream a chunk at a time at its own rate
            framed, wait = _h2_paced(conn, framing)
        else:  # a window's batch at once
            framed, wait = framing.pump(UPLOAD_WINDOW * CHUNK), 0.0
        out = framing.data_to_send()
        if out:
            if sent is not None:
                try:
                    await sent
                except RequestFailed as e:
                    raise _refused(e, framing.uploaded(framing.stream_id), None) from None
                except ControllerError:  # the connection is gone: the read says so
                    return
            sent = _send(conn, out, ntag=True)
        if not framed:
            if wait > 0:  # a stream ahead of its rate: its next chunk then (the reads go
                _h2_later(conn, framing, wait)  # on meanwhile: the windows' updates)
            break
    if sent is not None:
        sent.addErrback(lambda _: None)


def _h2_paced(conn: _Conn, framing: H2Framing) -> tuple[int, float]:
    """Under --limit-rate: a chunk of each stream whose bytes so far are within its rate
    (as curl sends a transfer's next chunk); the bytes framed, and the seconds until the
    first of the others may go (0: none waits)."""
    framed, wait = 0, float("inf")
    aheads = {sid: 0.0 if sid not in conn.uploads else conn.uploads[sid].ahead()
              for sid in framing.uploading()}  # fmt: skip
    # the most behind first: the connection's window, which they share, goes to it
    for sid, ahead in sorted(aheads.items(), key=lambda x: x[1]):
        pace = conn.uploads.get(sid)
        if ahead > 0:
            wait = min(wait, ahead)
            continue
        n = framing.pump(CHUNK, only=sid)
        if pace is not None:
            pace.count += n
        framed += n
    return framed, 0.0 if wait == float("inf") else wait
