"""An HTTP/1.1 exchange over one connection for `packetlab.measure.http`: h11's framing,
`Expect: 100-continue`, the upload's window of sends, and the h2c Upgrade handed to
`http2_exchange`."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import h11
from twisted.internet.defer import Deferred

from packetlab.clockstep import steady
from packetlab.controller import (
    ControllerError,
    EndpointSession,
    RequestFailed,
)
from packetlab.measure.http2_exchange import _h2_framing, _h2_response
from packetlab.measure.http_conn import _Conn, _read, _Ready, _refused, _send, _sent
from packetlab.measure.http_head import HeadLimits, HeadTooLarge
from packetlab.measure.http_lenient import LenientHeads, UnsupportedVersion, supported
from packetlab.measure.http_message import (
    UPLOAD_WINDOW,
    _expects,
    _Fields,
    _Hop,
    _request,
    _Response,
    _Sink,
    _stamp_sent,
)
from packetlab.measure.http_trace import DATA_OUT, Trace, auth, info, sent_out
from packetlab.measure.stream import (
    StreamError,
    StreamTimeout,
)
from packetlab.measure.upload_body import Upload, UploadError
from packetlab.measure.writeerror import WriteError
from packetlab.wire import Ntag


async def _exchange(
    session: EndpointSession,
    hop: _Hop,
    conn: _Conn,
    data: Upload | None,
    headers: _Fields,
    deadline: float,
    sink: _Sink,
    follows: bool,
) -> bool:
    """The request and its response over HTTP/1.1; whether the connection can carry
    another (both sides DONE in h11: no `Connection: close`, a delimited body). With
    --http2 on a new http:// connection the request asks for an h2c Upgrade (curl's):
    a 101 continues in HTTP/2 (`_h2_response`). A body not sent with the head goes in
    chunks after it; with `Expect: 100-continue` (curl's rules, `_expects`) only after
    a 100 Continue or `sink.expect_wait` s without an answer, never after a final response
    (curl: "HTTP error before end of send, stop sending"; the connection is closed)."""
    stream = conn.stream
    u = hop.url
    upgrade = None
    if sink.http == "2" and u.scheme == "http" and not hop.reused:
        upgrade = _h2_framing(conn.server, 0 if conn.pace is None else conn.pace.rate)
        headers = replace(headers, custom=[
            *headers.custom, ("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c"),
            ("HTTP2-Settings", upgrade.upgrade_settings())])  # fmt: skip
    expect = _expects(data, headers) and sink.http != "1.0"  # (curl: HTTP/1.1's alone)
    try:
        h, request, complete = _request(u, hop.method, data, headers, expect, sink.http,
                                       hop.nobody)  # fmt: skip
    except h11.LocalProtocolError as e:
        raise StreamError(f"bad request: {e}") from None
    hop.request_size = len(request)
    auth(sink.trace, headers.own, headers.auth_user, headers.auth_scheme)
    _stamp_sent(hop, _send(conn, request, ntag=True))
    sent_out(sink.trace, request)  # (curl: after the send, as its debug callback)
    if complete and data is not None:
        hop.uploaded = data.length or 0
    fed = bytearray()  # response bytes up to the end of the headers
    limits = HeadLimits(hop.server)  # curl's, line by line as the bytes come
    resp = _Response(hop, sink, follows)
    ended = False  # the server ended the connection (TCP EOF, or TLS close_notify)
    heads = LenientHeads()  # what curl reads and h11 refuses, made h11's
    counted = [0]  # the body's bytes before the last read

    async def next_event(until: float) -> Any:
        nonlocal ended
        while True:
            try:
                event = h.next_event()
            except h11.RemoteProtocolError as e:
                low = re.match(rb"(?i)HTTP/\d(?:\.\d)? +(\d{1,3})(?!\d)", bytes(fed))
                if hop.status is None and low is not None and int(low[1]) < 100:
                    # curl: (1), nothing written (`HTTP/1.1 20 OK`, `099`: h11 refuses them)
                    raise UnsupportedVersion("Unsupported response code in HTTP response") from None
                if hop.status is None:  # curl: the lines before the bad one are the head
                    _bad_head(hop, sink, bytes(fed), e)
                raise
            if event is not h11.NEED_DATA:
                return event
            try:
                chunk, plain, closed = await _read(session, conn, until, hop.slow)
            except StreamTimeout:  # curl: the status line's code, the lines read, kept
                if hop.status is None and until >= deadline and limits.status is not None:
                    hop.status = limits.status
                    _partial_head(hop, sink, bytes(fed[: limits.scanned]))
                raise
            given = heads.take(plain) if plain else b""
            if given:  # (b"" would tell h11 of the end)
                counted[0] = hop.body_len  # (curl's bytecount before this read)
                h.receive_data(given)
            if plain and hop.status is not None:  # curl's DATA_IN: the body's bytes as read
                resp.wire(plain)
            if closed:
                held = heads.flush()
                if held:
                    h.receive_data(held)
                h.receive_data(b"")
                ended = True
                if hop.status is not None:  # curl: its EOF read, traced; the transfer's end
                    resp.closed()
                    hop.last = chunk.time if chunk is not None else stream.eof_time
            if hop.status is None:
                fed.extend(plain)
                try:
                    limits.feed(fed)
                except HeadTooLarge as e:  # curl: the lines it took are the headers
                    _partial_head(hop, sink, bytes(fed[: e.size]))
                    raise
            if chunk is not None and plain:
                hop.first = chunk.time if hop.first is None else hop.first
                hop.last = chunk.time
            if hop.first is None and (chunk is None or stream.eof):
                raise StreamError(
                    f"the server {hop.server} closed the connection without a response"
                )

    early = None  # a response that came before the body went
    if not complete and data is not None:
        send = True
        if expect:  # curl: wait for the 100 (1 s), or the final answer that stops it
            send = False
            wait = min(steady(session.reactor) + sink.expect_wait, deadline)
            while True:
                try:
                    event = await next_event(wait)
                except StreamTimeout:
                    if wait >= deadline:
                        raise
                    send = True  # no answer: the body goes anyway
                    break
                if isinstance(event, h11.InformationalResponse):
                    resp.inform(bytes(fed[: len(fed) - len(h.trailing_data[0])]))
                if isinstance(event, h11.InformationalResponse) and event.status_code == 100:
                    send = True
                    break
                if not isinstance(event, h11.InformationalResponse):
                    early = event
                    break
        if send:
            await _upload(hop, conn, data, h, deadline, sink.trace)
    while True:
        event, early = (early, None) if early is not None else (await next_event(deadline), None)
        if isinstance(event, h11.InformationalResponse) and event.status_code != 101:
            resp.inform(bytes(fed[: len(fed) - len(h.trailing_data[0])]))
        if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
            if upgrade is None or h.their_state is not h11.SWITCHED_PROTOCOL:
                raise StreamError(f"the server {hop.server} switched protocols unasked")
            leftover, _ = h.trailing_data
            conn.h2 = upgrade
            upgrade.upgraded()
            _send(conn, upgrade.data_to_send())
            raw = bytes(fed[: len(fed) - len(leftover)])
            resp.inform(raw)  # curl's lines for it
            info(sink.trace, "Received 101, Switching to HTTP/2")
            if leftover:  # (what came with the 101, as curl's read took it)
                info(sink.trace, "Copying HTTP/2 data in stream buffer to connection buffer "
                                 f"after upgrade: len={len(leftover)}")  # fmt: skip
            return await _h2_response(session, hop, conn, deadline, sink, follows, raw,
                                      bytes(leftover), 1, resp.told)  # fmt: skip
        if isinstance(event, h11.Response):
            version = supported(event.http_version)  # curl's %{http_version}, or its 1
            if version != "1.1":  # ("1.1" the default; "2": an `HTTP/2 200` over 1.1)
                resp.hop.version = version
            resp.head(
                event.status_code,
                event.reason.decode("latin-1"),
                [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers.raw_items()],
                bytes(fed[: len(fed) - len(h.trailing_data[0])]),
            )
            if not (hop.nobody or hop.status in (204, 304)):  # (else excess: curl tells none)
                resp.wire(bytes(h.trailing_data[0]))  # the body's first bytes, with the head
        elif isinstance(event, h11.Data):
            resp.data(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            if event.headers and resp.sink.on_headers is not None:  # curl's -i and -D
                # write a chunked body's trailer fields after it (not in size_header)
                resp.sink.on_headers(b"".join(k + b": " + v + b"\r\n"
                                              for k, v in event.headers.raw_items()))  # fmt: skip
            break
        elif isinstance(event, h11.ConnectionClosed):
            raise StreamError(
                f"the server {hop.server} closed the connection before a complete response"
            )
    resp.end()
    excess = len(h.trailing_data[0])
    zero = hop.nobody or hop.status in (204, 304)  # (no body, whatever came)
    if excess and zero and not ended:  # curl: dropped, the connection kept (7.88's)
        info(sink.trace, f"Excess found: excess = {excess} url = "
                         f"{hop.url.target.partition('?')[0]} (zero-length body)")  # fmt: skip
    elif excess and not ended:  # curl: the connection closed, as ours
        size = next((v.strip() for k, v in hop.headers if k.lower() == "content-length"), "")
        if size.isdigit():
            info(sink.trace, f"Excess found in a read: excess = {excess}, size = {size}, "
                             f"maxdownload = {size}, bytecount = {counted[0]}")  # fmt: skip
    clean = (not excess or zero) and not ended and not stream.eof  # a close-delimited
    clean = clean and sink.http != "1.0"  # body, or an HTTP/1.0 request (-0): not kept
    return h.our_state is h11.DONE and h.their_state is h11.DONE and clean


def _bad_head(hop: _Hop, sink: _Sink, raw: bytes, e: Exception) -> None:
    """A head h11 refused, as curl 7.88 reads it line by line: no HTTP status line is its
    (1) (HTTP/0.9, not allowed), nothing written; else the status and the lines before
    the first it refuses (a NUL, no colon, a Content-Length that is no number) are the
    head (-i, -D, %{http_code}), its (8). `e.curl_exit` tells the caller which."""
    lines = raw.split(b"\n")
    status = re.match(rb"(?i)HTTP/\d(?:\.\d)? +(\d{3})(?:[ \r]|$)", lines[0])
    if status is None:
        e.curl_exit = 1  # type: ignore[attr-defined]
        return
    e.curl_exit = 8  # type: ignore[attr-defined]
    kept = len(lines[0]) + 1
    for line in lines[1:]:
        text = line.rstrip(b"\r")
        if not text:
            break
        length = re.match(rb"(?i)content-length[ \t]*:[ \t]*(.*)", text)
        if (b"\0" in text or (b":" not in text and text[:1] not in b" \t")
                or (length is not None and not re.match(rb"\d", length[1]))):  # fmt: skip
            break
        kept += len(line) + 1
    hop.status = int(status[1])
    _partial_head(hop, sink, raw[:kept])


def _partial_head(hop: _Hop, sink: _Sink, raw: bytes) -> None:
    """A head that will not end (a limit, the time): its lines so far are the hop's
    header bytes, and -i's and -D's, as curl writes each line as it reads it."""
    hop.raw_headers = raw
    if sink.on_headers is not None and raw:
        try:
            sink.on_headers(raw)
        except (WriteError, OSError):
            pass  # (the error that ended the head is the one told)


async def _upload(hop: _Hop, conn: _Conn, data: Upload, h: h11.Connection, deadline: float,
                  trace: Trace | None = None) -> None:  # fmt: skip
    """The body after the head, in chunks read now, at most `UPLOAD_WINDOW` of them on
    their way to the endpoint (each waits for an earlier one's ntag): a file of any size
    goes through bounded memory. A pipe (stdin, a FIFO) is read by a thread, never on
    the reactor: while it gives nothing the upload awaits its next chunk (the reactor
    runs on: Ctrl-C, SIGTERM and the time limit act). A send the endpoint refuses (the
    server closed) stops it: the response, if one came, is read next."""
    inflight: list[Deferred[Ntag]] = []
    clock = conn.stream.session.reactor
    ready = _Ready(clock)
    if hop.slow is not None:  # -Y/-y: from the request's send, at each send the body made
        hop.slow.check(steady(clock))
    try:
        for piece in data.chunks(ready.notify):
            if not piece:  # the pipe has nothing yet
                await ready.wait(deadline)
                continue
            try:
                out = h.send(h11.Data(data=piece))
            except h11.LocalProtocolError as e:  # more than Content-Length
                raise UploadError(f"the body: {e}") from None
            if conn.pace is not None:
                await conn.pace.send(len(out or b""), deadline)
            sent = _send(conn, out or b"", ntag=True)
            if out and trace is not None:
                trace(DATA_OUT, out)
            hop.uploaded += len(piece) if data.length is not None else len(out or b"")
            if sent is not None:
                inflight.append(sent)
            if len(inflight) > UPLOAD_WINDOW:
                await _sent(clock, inflight.pop(0), deadline, hop.slow)
        out = h.send(h11.EndOfMessage())
        if out:  # chunked: its last chunk (counted in size_upload, as curl's)
            _send(conn, out)
            if trace is not None:
                trace(DATA_OUT, out)
            hop.uploaded += len(out)
        info(trace, "We are completely uploaded and fine")
        for sent in inflight:
            sent.addErrback(lambda _: None)
    except RequestFailed as e:  # the endpoint refused an nsend: its policy, not the server
        for sent in inflight:
            sent.addErrback(lambda _: None)
        raise _refused(e, hop.uploaded, data.length) from None
    except ControllerError:  # a send failed (the connection is gone): read the answer
        for sent in inflight:
            sent.addErrback(lambda _: None)
