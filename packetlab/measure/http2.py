"""HTTP/2 framing for `http_get`, as curl 7.88 (nghttp2) speaks it: one request at a time
on a connection, reused for the next one to the same origin, or several at once on their
own streams (curl --parallel multiplexes).

`H2Framing` wraps the h2 library's sans-IO state machine (python-hyper) with what a
measurement needs from it and nothing of I/O: the request's header list from the same
header pairs the HTTP/1.1 request is built from, the response's events reduced to
`Head` (a header block, 1xx ones included, rendered as curl prints an HTTP/2 header
block: `HTTP/2 200 ` and the fields lowercase), `Body` and `End`, and the limits a hostile
server meets. The caller moves the bytes (`data_to_send`, `receive`) over its TCP or TLS.

Our SETTINGS are curl 7.88's (`_CurlSettings`). Limits (docs/security.md, "Hostile far
ends"): a header list at most `max_headers` bytes (HPACK-decoded; not announced, as
curl), at most 64 CONTINUATION frames a block (h2's), bytes that are not response body
(frame headers, SETTINGS, PING, WINDOW_UPDATE, PRIORITY, RST_STREAM, trailers, padding)
at most `max_headers` + 64 KiB an exchange, `MAX_CONTROL` SETTINGS or PING frames an
exchange (each wants an ACK: a flood is stopped, as nghttp2's max_outbound_ack), no server
push (SETTINGS_ENABLE_PUSH 0: a PUSH_PROMISE is a protocol error), our receive window
replenished only by what the caller consumed, a window the server opens past 2^31-1 a
FLOW_CONTROL_ERROR (h2's).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from packetlab.measure.http_fields import field_bytes
from packetlab.measure.stream import StreamError

__all__ = ["MAX_CONTROL", "Body", "End", "H2Error", "H2Framing", "Head"]

MAX_CONTROL = 1000  # SETTINGS or PING frames an exchange (nghttp2's max_outbound_ack)
WINDOW = 32 << 20  # curl's stream and connection windows (HTTP2_HUGE_WINDOW_SIZE)
PACED_WINDOW = (16 << 10, 1 << 20)  # a paced stream's window: at least, at most


def paced_window(rate: int) -> int:
    """A stream's window under --limit-rate `rate`: half a second of it (what the server
    may send ahead of the pace), 16 KiB to 1 MiB."""
    return max(PACED_WINDOW[0], min(PACED_WINDOW[1], rate // 2))


# A DATA frame's most: nghttp2's (NGHTTP2_DATA_PAYLOADLEN; curl sets no callback to go
# past it), whatever SETTINGS_MAX_FRAME_SIZE the server announced.
FRAME = 16384
SLACK = 64 << 10  # non-body bytes beyond the header cap: frame headers and control frames
# Headers HTTP/2 forbids (RFC 9113 8.2.2): dropped from the request as curl drops them.
_CONNECTION = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host"}
)


class H2Error(StreamError):
    """The server broke HTTP/2 or a limit: why in one line; curl's exit code (16 the
    framing layer, 92 a stream reset, 56 too much)."""

    def __init__(self, why: str, exitcode: int = 16) -> None:
        super().__init__(why)
        self.exitcode = exitcode


@dataclass(frozen=True, slots=True)
class Head:
    """A response header block: its status, fields (lowercase names) and the block as
    curl prints it with -i (also what curl counts in size_header)."""

    status: int
    headers: list[tuple[str, str]]
    raw: bytes

    @property
    def final(self) -> bool:
        return self.status >= 200


@dataclass(frozen=True, slots=True)
class Body:
    data: bytes


@dataclass(frozen=True, slots=True)
class End:
    pass


Event = Head | Body | End


def render(status: int, headers: list[tuple[str, str]]) -> bytes:
    """A header block as curl 7.88 prints an HTTP/2 one."""
    lines = [f"HTTP/2 {status} \r\n"] + [f"{k}: {v}\r\n" for k, v in headers]
    return ("".join(lines) + "\r\n").encode("latin-1", "replace")


class _Connection(h2.connection.H2Connection):
    """h2's, but a GOAWAY does not throw away the frames owed before it: the ACK of a
    SETTINGS that came in the same read (nghttp2, curl's, sends it; h2 dropped it)."""

    def clear_outbound_data_buffer(self) -> None:
        pass


class _CurlSettings(h2.settings.Settings):
    """Our settings; the SETTINGS frame (and an Upgrade's HTTP2-Settings) lists curl
    7.88's three, in its order: MAX_CONCURRENT_STREAMS 100, INITIAL_WINDOW_SIZE 32 MiB,
    ENABLE_PUSH 0 (h2 would send its defaults too)."""

    SENT = (
        h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS,
        h2.settings.SettingCodes.INITIAL_WINDOW_SIZE,
        h2.settings.SettingCodes.ENABLE_PUSH,
    )

    def __iter__(self) -> Iterator[h2.settings.SettingCodes | int]:
        return iter(self.SENT)


@dataclass(slots=True)
class _Stream:
    """A request's stream: its body still to frame, and what came for it not yet taken."""

    body: Iterator[bytes] | None = None
    length: int | None = None  # the body's bytes when known (its Content-Length)
    pending: bytes = b""  # body bytes the server's windows have not taken yet
    eof: bool = False  # the body has no more chunks (its END_STREAM may not be sent yet)
    uploaded: int = 0  # body bytes framed (curl's size_upload)
    unacked: int = 0  # --limit-rate: flow-controlled bytes received, not yet granted
    events: list[tuple[int | None, Event | H2Error]] = field(default_factory=list)


class H2Framing:
    """One HTTP/2 client connection (a TLS one where ALPN chose h2, or h2c): one request
    at a time, or several at once on their own streams (curl --parallel multiplexes).
    `request` opens a stream (`stream_id` is the last one's), `receive` queues what the
    server's bytes brought for each, `take(sid)` hands a stream's events (with the time
    given to `receive`), `finish(sid)` forgets it. `server` names the far end in errors."""

    def __init__(self, server: str, max_headers: int, rate: int = 0) -> None:
        self.server = server
        self.max_headers = max_headers
        # --limit-rate (bytes/s per stream): each stream's window a fraction of a second
        # of it, opened again only as its exchange takes the body in (`grant`)
        self.rate, self.paced = rate, rate > 0
        window = paced_window(rate) if rate else WINDOW
        # not h2's normalising: it strips a value's trailing whitespace, curl sends it (we
        # lower-case the names and drop the connection fields ourselves, as curl)
        config = h2.config.H2Configuration(
            client_side=True, header_encoding=None, normalize_outbound_headers=False
        )
        self.h2 = _Connection(config=config)
        self.h2.local_settings = _CurlSettings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window,
            },
        )
        self.h2.decoder.max_header_list_size = max_headers  # enforced, not announced (curl)
        self.started = False
        self.stream_id = 0
        self.terminated: str | None = None  # the GOAWAY that ended it (not reusable)
        self.broken: H2Error | None = None  # the server broke the protocol (not reusable)
        self.partial = b""  # a frame's first bytes (`receive` gives h2 whole frames)
        self.streams: dict[int, _Stream] = {}
        self.overhead = 0
        self.controls = 0

    def upgrade_settings(self) -> str:
        """The HTTP2-Settings header of an h2c Upgrade request (curl --http2 on http://);
        stream 1 is then the request's (`upgraded` after the 101)."""
        value = self.h2.initiate_upgrade_connection()
        assert value is not None
        self.started = True
        self.stream_id = 1
        self.streams[1] = _Stream()
        return value.decode("ascii")

    def upgraded(self) -> None:
        """The 101 came: the client preface goes out next (`data_to_send`)."""
        self.h2.increment_flow_control_window(WINDOW - 65535)
        self._new_exchange()

    def preface(self) -> bytes:
        """The connection preface and SETTINGS, sent before the first request (curl's
        order, with -v); else they go with it."""
        if not self.started:
            self.h2.initiate_connection()
            self.h2.increment_flow_control_window(WINDOW - 65535)  # the connection's, too
            self.started = True
        return self.data_to_send()

    def request(
        self, method: str, scheme: str, authority: str | None, target: str,
        headers: list[tuple[str, str]], body: Iterator[bytes] | None,
        length: int | None = None,
    ) -> bytes:  # fmt: skip
        """The request's frames (the connection preface first on a new connection) on a
        new stream (`stream_id`): `headers` as for HTTP/1.1 (a Host header becomes
        :authority, as curl's; `authority` None, the Host removed with `-H 'Host:'`: no
        :authority, as curl's). `body`'s chunks are taken as DATA frames by `pump` when
        the server's windows let them go (`pump` is called here for the first ones; not
        under --limit-rate: the caller paces each stream's, the first chunk too).
        `length`: the body's size when known (its Content-Length): its last DATA frame
        then carries END_STREAM, as curl's."""
        preface = self.preface()
        fields: list[tuple[str, str]] = []
        for k, v in headers:
            name = k.lower()
            if name == "host":
                authority = v
            elif name not in _CONNECTION and not (name == "te" and v.lower() != "trailers"):
                fields.append((name, v.lstrip(" \t")))  # curl: blanks before a value go
        pseudo = [(":method", method), (":path", target), (":scheme", scheme)]
        if authority is not None:
            pseudo.append((":authority", authority))
        sid = self.h2.get_next_available_stream_id()
        # h2 wants an :authority or a Host; curl sends neither when the Host is removed
        self.h2.config.validate_outbound_headers = authority is not None
        try:
            self.h2.send_headers(
                sid,
                # :path is str of its bytes (http2_exchange); the fields as given
                [(k.encode("latin-1"), v.encode("latin-1")) for k, v in pseudo]
                + [(field_bytes(k), field_bytes(v)) for k, v in fields],
                end_stream=body is None,
            )
        except h2.exceptions.H2Error as e:
            raise H2Error(f"bad request: {e}") from None
        finally:
            self.h2.config.validate_outbound_headers = True
        self.stream_id = sid
        if not self.streams:
            self._new_exchange()
        self.streams[sid] = _Stream(body, length)
        if not self.paced:
            self.pump()
        return preface + self.data_to_send()

    def _new_exchange(self) -> None:
        self.overhead = self.controls = 0

    def pump(self, limit: int = 1 << 20, only: int | None = None) -> int:
        """DATA frames of the request bodies (`only`: that stream's), as far as the
        streams' and the connection's windows allow and at most about `limit` bytes (the
        rest for the next call, after the server's WINDOW_UPDATE or the caller's pacing);
        the bytes framed. A body of a known length ends with END_STREAM on its last DATA
        frame (curl 7.88: nghttp2's EOF flag once its upload_left is 0); one of an
        unknown length (a pipe) with an empty DATA frame carrying it, as curl's. An empty
        chunk from a body (its pipe has nothing yet) ends its turn."""
        framed = 0
        for sid, st in list(self.streams.items()):
            if only is not None and sid != only:
                continue
            while st.body is not None and framed < limit:
                room = min(self.h2.local_flow_control_window(sid), FRAME)
                self._fill(st, max(room, 1))
                if st.pending and room > 0:
                    piece, st.pending = st.pending[:room], st.pending[room:]
                    # a known length: END_STREAM on the last bytes' frame (curl's)
                    end = st.eof and not st.pending and st.length is not None
                    self.h2.send_data(sid, piece, end_stream=end)
                    st.uploaded += len(piece)
                    framed += len(piece)
                    if end:
                        st.body = None
                    continue
                if st.eof and not st.pending:  # (a pipe's end: an empty frame, as curl's)
                    self.h2.end_stream(sid)
                    st.body = None
                break  # no window, or a pipe with nothing yet: pumped again when it has
        return framed

    @staticmethod
    def _fill(st: _Stream, want: int) -> None:
        """The body's chunks taken into `pending` until it holds `want` bytes (a frame's
        worth: curl fills each DATA frame from its upload buffer, not a frame a chunk),
        the body ended (`eof`) or its pipe has nothing yet. UploadError from the body's
        reads (a file that changed size) goes up."""
        assert st.body is not None
        while not st.eof and len(st.pending) < want:
            try:
                chunk = next(st.body)
            except StopIteration:
                st.eof = True
                return
            if not chunk:
                return
            st.pending += chunk

    def uploading(self) -> list[int]:
        """The streams with a request body still to frame (or its END_STREAM)."""
        return [sid for sid, st in self.streams.items() if st.body is not None]

    def uploaded(self, sid: int) -> int:
        st = self.streams.get(sid)
        return 0 if st is None else st.uploaded

    def data_to_send(self) -> bytes:
        return self.h2.data_to_send()

    def receive(self, data: bytes, when: int | None = None) -> int:
        """Take in `data` (the server's bytes, received at `when`): each open stream's
        events queued for `take`; how many. H2Error on a flood (the connection's end); a
        stream's reset, or a GOAWAY before it, is that stream's error (raised by its
        `take`), and so is a broken protocol (the connection's end, `broken`) after what
        the frames before it brought: a response complete before it is not lost (curl's
        is not). The answers it wants (ACKs, window updates, the GOAWAY of a broken
        protocol) are in `data_to_send()` after it."""
        if self.broken is not None:  # (h2 is closed: what comes after is not read)
            return 0
        frames, broken = self._frames(data)
        self.overhead += len(data)
        queued = 0
        events: list[h2.events.Event | H2Error] = [*frames]
        if broken is not None:
            self.broken = broken
            events.append(broken)
        for ev in events:
            if isinstance(ev, H2Error):  # every stream's end, after what came before
                for each in self.streams.values():
                    each.events.append((when, ev))
                    queued += 1
                continue
            for sid, out in self._event(ev):
                st = self.streams.get(sid)
                if st is not None:
                    st.events.append((when, out))
                    queued += 1
        budget = (self.max_headers + SLACK) * max(1, len(self.streams))
        if self.overhead > budget:
            raise H2Error(
                f"HTTP/2: over {budget} bytes from {self.server} that are "
                "not response body (header blocks, control frames or padding)",
                56,
            )
        return queued

    def _frames(self, data: bytes) -> tuple[list[h2.events.Event], H2Error | None]:
        """h2's events for `data`, given to it a frame at a time (h2 drops the events of
        a read's earlier frames when a later one breaks the protocol); the error, if one
        did. A frame not complete waits in `partial` (at most a frame: one longer than
        h2 takes is given at once, refused by its header)."""
        events: list[h2.events.Event] = []
        buf = self.partial + data
        self.partial = b""
        try:
            while len(buf) >= 9:
                n = 9 + int.from_bytes(buf[:3], "big")
                if n - 9 > self.h2.max_inbound_frame_size:
                    n = len(buf)
                elif len(buf) < n:
                    break
                frame, buf = buf[:n], buf[n:]
                events += self.h2.receive_data(frame)
            self.partial = buf
        except h2.exceptions.ProtocolError as e:
            why = str(e) or type(e).__name__
            if isinstance(e, h2.exceptions.FlowControlError):
                why = f"flow control: {why}"
            return events, H2Error(f"HTTP/2: bad framing from {self.server}: {why}")
        except Exception as e:  # hpack's header list limit and decoding errors
            return events, H2Error(f"HTTP/2: bad header block from {self.server}: {e}")
        return events, None

    def take(self, sid: int) -> list[tuple[int | None, Event]]:
        """What came for stream `sid` since the last call, with the times given to
        `receive`; its error (a reset, a GOAWAY before it) raised after what came first."""
        st = self.streams.get(sid)
        if st is None:
            return []
        out: list[tuple[int | None, Event]] = []
        while st.events:
            when, ev = st.events[0]
            if isinstance(ev, H2Error):
                if out:
                    break
                st.events.clear()
                raise ev
            out.append((when, ev))
            del st.events[0]
        return out

    def queued(self, sid: int) -> bool:
        """Something came for stream `sid` that `take` has not handed yet."""
        st = self.streams.get(sid)
        return st is not None and bool(st.events)

    def grant(self, sid: int) -> None:
        """--limit-rate: stream `sid`'s exchange took in what came for it and is within
        its rate: that much acknowledged (the WINDOW_UPDATE frames, for the stream and
        the connection, in `data_to_send()` when h2 sends them: half a window taken)."""
        st = self.streams.get(sid)
        if st is not None and st.unacked:
            self.h2.acknowledge_received_data(st.unacked, sid)
            st.unacked = 0

    def finish(self, sid: int, answered: bool = False) -> None:
        """Stream `sid`'s exchange is over (done or failed): forgotten (what it did not
        acknowledge too: the connection's window given back). `answered`: its response
        is complete; a body not all sent then is cut there with RST_STREAM
        (STREAM_CLOSED), sent with the connection's next frames, as curl 7.88's
        http2_data_done ("not closed cleanly"); before, the stream stayed open on our
        side and counted against the server's MAX_CONCURRENT_STREAMS for ever."""
        st = self.streams.pop(sid, None)
        if st is not None and st.unacked:
            self.h2.acknowledge_received_data(st.unacked, sid)
        if st is not None and st.body is not None and answered:
            try:
                self.h2.reset_stream(sid, h2.errors.ErrorCodes.STREAM_CLOSED)
            except h2.exceptions.H2Error:  # (the server reset it meanwhile)
                pass

    def _event(self, ev: h2.events.Event) -> list[tuple[int, Event | H2Error]]:
        sid = getattr(ev, "stream_id", None) or 0
        if isinstance(ev, h2.events.DataReceived):
            st = self.streams.get(sid)
            if self.paced and st is not None:  # acknowledged as its exchange takes it
                st.unacked += ev.flow_controlled_length
            else:
                self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            if st is None:
                return []
            self.overhead -= len(ev.data) + 9  # its frame header counted as body
            return [(sid, Body(bytes(ev.data)))] if ev.data else []
        if isinstance(ev, h2.events.ResponseReceived | h2.events.InformationalResponseReceived):
            if sid not in self.streams:
                return []
            fields = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in ev.headers]
            status = next((v for k, v in fields if k == ":status"), "")
            # three ASCII digits, as nghttp2 wants: str.isdigit() takes "²²²", int() not
            if not (len(status) == 3 and status.isascii() and status.isdigit()):
                raise H2Error(f"HTTP/2: bad :status {status!r} from {self.server}")
            fields = [(k, v) for k, v in fields if not k.startswith(":")]
            return [(sid, Head(int(status), fields, render(int(status), fields)))]
        if isinstance(ev, h2.events.StreamEnded):
            return [(sid, End())]
        if isinstance(ev, h2.events.StreamReset):
            code = _code(ev.error_code)
            return [(sid, H2Error(f"HTTP/2: stream {sid} reset by {self.server} ({code})", 92))]
        if isinstance(ev, h2.events.ConnectionTerminated):
            self.terminated = _code(ev.error_code)
            last = ev.last_stream_id if ev.last_stream_id is not None else 1 << 31
            why = f"HTTP/2: {self.server} went away (GOAWAY {self.terminated}) before the request"
            return [(s, H2Error(why, 16)) for s in self.streams if s > last]
        if isinstance(ev, h2.events.PingReceived | h2.events.RemoteSettingsChanged):
            self.controls += 1
            if self.controls > MAX_CONTROL:
                kind = "PING" if isinstance(ev, h2.events.PingReceived) else "SETTINGS"
                raise H2Error(f"HTTP/2: over {MAX_CONTROL} SETTINGS and PING frames from "
                              f"{self.server} in one exchange (a {kind} flood)")  # fmt: skip
        return []

    @property
    def reusable(self) -> bool:
        return (self.terminated is None and self.broken is None
                and self.stream_id < (1 << 31) - 2)  # fmt: skip

    @property
    def room(self) -> bool:
        """Another stream may open now (the server's MAX_CONCURRENT_STREAMS allows it)."""
        limit = self.h2.remote_settings.max_concurrent_streams
        return self.reusable and len(self.streams) < min(limit, 100)


def _code(code: object) -> str:
    try:
        return h2.errors.ErrorCodes(int(code)).name  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return f"error code {code}"
