"""One wrapped TCP connection: the program's local socket ⇄ an endpoint TCP socket.

Program → endpoint: each chunk becomes an nsend with an ntag; at most `WINDOW` bytes
may be sent and not yet reported sent (ntag) before the program's socket is paused.
Endpoint → program: ndata is written to the program's socket in order (through the
`Timeline`); when that socket's buffer is full, the endpoint socket's NDATA
notifications are held back (NOTIFMASK), so the endpoint stops reading once its
receive budget is used and TCP flow control reaches the server.
FIN from the program → nctl FIN; PEERCLOSED → half-close towards the program; RESET or
TIMEOUT → the program's socket is reset. Both sides done → nclose.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from packetlab.controller import (
    ConnectFailed,
    ControllerError,
    EndpointSession,
    IPAddress,
    Socket,
    SocketInfo,
    read_socket_info,
    set_notifmask,
    wait_connected,
)
from packetlab.wire import Ndata, NotifMask, Nstat, NstatCode, Ntag, SocketState, vmem
from packetlab.wrap.timeline import ConnTiming, Notices, Timeline, send_now
from packetlab.wrap.vclock import SEND

WINDOW = 512 * 1024
# Why an endpoint refuses a TCP nsend (ESKTPKTDENY): the destination was allowed at
# nopen, so it is a send limit, almost always the send window (docs/wrap.md).
SEND_WINDOW_HINT = (
    "ESKTPKTDENY: over its send window, 12,500,000 bytes per 10 s without a "
    "max_burst_rate_byte grant in the operator's exppriv certificate; `pktlab init "
    "--max-burst-rate-byte 1250000000/10000000000` grants the in-process endpoint 1 Gb/s"
)
# Failed states a socket can be in as the nopen is answered: the endpoint's own connect()
# call failed, before any packet left (PROTOCOL.md §3.1: the reference only sets STAT).
_FAILED_AT_ONCE = {
    SocketState.REFUSED: "REFUSED",
    SocketState.RESET: "RESET",
    SocketState.TIMEDOUT: "TIMEDOUT",
    SocketState.UNREACH: "UNREACH",
}


class TcpRelay:
    """Bytes of one connection, after the SOCKS CONNECT succeeded."""

    log = Logger()

    def __init__(
        self,
        session: EndpointSession,
        client: Any,  # ITCPTransport of the program's connection
        rec: ConnTiming,
        timeline: Timeline,
        on_done: Any,
        notices: Notices | None = None,
    ) -> None:
        self.session = session
        self._notices = notices
        self.client = client
        self.rec = rec
        self.timeline = timeline
        self._on_done = on_done
        self.sktid: int | None = None
        self.sock: Socket | None = None
        self._local: Deferred[SocketInfo] | None = None
        self._unacked = 0
        self._client_paused = False
        self._held = False
        # NDATA was masked at some time: ndata the endpoint held can reach us after its
        # PEERCLOSED (a masked type is held, an nstat is not: §2.4), so the FIN waits.
        self._masked_once = False
        self._peer_eof = False  # PEERCLOSED seen: nothing more to hold back
        self._fin_sent = False  # program's FIN forwarded
        self._peer_closed = False  # server's FIN forwarded to the program
        self._done = False
        self._send_v: list[int] = []  # virtual times of chunks awaiting their ntag
        self._started = False  # SOCKS reply sent: endpoint data may go to the program
        self._early: list[bytes | None] = []  # data (None: FIN) from before that
        self._connecting = False  # an error nstat now is the connect's: connect() raises
        # The endpoint's connect() call itself failed (STAT failed as the nopen was
        # answered): UNREACH then is a network without a route, the kernel's ENETUNREACH.
        self.failed_at_once = False
        # Called once the nopen and the STAT after it say the endpoint is connecting (its
        # connect() call did not fail): a parked connect's shim waits for that (session 32)
        self.on_open: Callable[[], None] | None = None

    # ------------------------------------------------------------------ connecting

    async def connect(
        self, addr: IPAddress, port: int, timeout: float, stamps: bool = True
    ) -> None:
        """Open the endpoint socket; raises ControllerError (ConnectFailed, ...).
        `stamps`: read the endpoint's TIME around the nopen (`connect_start`,
        `connect_issued`); without them (nobody reads those: no --timings, no timing
        fidelity) a connect costs two requests and answers fewer (session 29)."""
        s = self.session
        sktid = s.free_sktid()
        # Pipelined TIME reads bracket the nopen: the endpoint handles them in order, so
        # the first is sampled just before its connect() call and the second just after.
        t0 = s.mread(vmem.TIME.addr, vmem.TIME.size) if stamps else None
        opened = s.nopen_tcp_connect(sktid, addr, port, buffer=False)
        # STAT right after the nopen: failed already if the endpoint's connect() call
        # failed at once (no route: the kernel's ENETUNREACH); a failure that comes later
        # (an ICMP unreachable, no ARP answer) is EHOSTUNREACH natively. Both are STAT
        # UNREACH, and the in-process endpoint's nstat says UNKNOWN (docs/wrap.md).
        stat = s.mread(vmem.skt_addr(sktid, vmem.SKT_STAT), vmem.SKT_STAT.size)
        t1 = s.mread(vmem.TIME.addr, vmem.TIME.size) if stamps else None
        if t0 is not None:
            self.rec.connect_start = int.from_bytes((await t0)[:8], "big")
        try:
            self.sock = await opened
        except BaseException:
            stat.addErrback(lambda f: None)  # answered for a socket that was not opened
            raise
        self.sktid = sktid
        self.sock.add_callback(self._note)  # before anything can arrive (buffer=False)
        self._connecting = True
        try:
            state = int.from_bytes((await stat)[:1], "big", signed=True)
            if t1 is not None:
                self.rec.connect_issued = int.from_bytes((await t1)[:8], "big")
            if state in _FAILED_AT_ONCE:
                self.failed_at_once = True
                raise ConnectFailed(sktid, _FAILED_AT_ONCE[SocketState(state)], self.sock.remote)
            if self.on_open is not None:
                self.on_open()
            est = await wait_connected(s, sktid, timeout=timeout)
        except BaseException:
            self._close_endpoint()
            raise
        finally:
            self._connecting = False
        self.rec.connected = est.time
        # Its local address and port, for the program's getsockname (asked when it asks).
        self._local = read_socket_info(s, sktid)
        self._local.addErrback(lambda f: f.trap(ControllerError))

    def local_info(self) -> Deferred[SocketInfo | None]:
        """The endpoint socket's info (its local address and port); None if unknown."""
        d: Deferred[SocketInfo | None] = Deferred()

        def chain(result: Any) -> Any:
            d.callback(result if isinstance(result, SocketInfo) else None)
            return result

        if self._local is None:
            d.callback(None)
        else:
            self._local.addBoth(chain)
        return d

    def start(self) -> None:
        """The program has its SOCKS reply: what the server already sent may follow."""
        self._started = True
        early, self._early = self._early, []
        for item in early:
            if item is None:
                self._peer_fin()
            else:
                self._write(item)

    # ------------------------------------------------------------------ program side

    def from_client(self, data: bytes) -> None:
        if self.sktid is None or self._done or not data:
            return
        n = len(data)
        self.rec.bytes_up += n
        self._unacked += n
        self._send_v.append(self.timeline.acted(SEND))
        d = self.session.nsend(self.sktid, data, ntag=True)
        d.addCallbacks(self._queued(n), self._send_failed)
        if self._unacked > WINDOW and not self._client_paused:
            self._client_paused = True
            self.client.pauseProducing()

    def _queued(self, n: int) -> Any:
        def queued(q: Any) -> None:
            if q.ntag is not None:
                q.ntag.addCallbacks(self._sent(n), self._send_failed)

        return queued

    def _sent(self, n: int) -> Any:
        def sent(note: Ntag) -> None:
            v = self._send_v.pop(0) if self._send_v else self.timeline.now()
            if self.rec.request_sent is None:
                self.rec.request_sent = note.time
            self.timeline.anchor(v, note.time)
            self._unacked -= n
            if self._client_paused and self._unacked <= WINDOW // 2 and not self._done:
                self._client_paused = False
                self.client.resumeProducing()

        return sent

    def _send_failed(self, failure: Any) -> None:
        if not self._done:
            self.rec.error = self.rec.error or f"send failed: {failure.value}"
            if getattr(failure.value, "name", None) == "ESKTPKTDENY" and self._notices:
                self._notices.say(
                    "tcp-send",
                    f"the endpoint refused to send on the connection to {self.rec.host}:"
                    f"{self.rec.port} after {self.rec.bytes_up} bytes ({SEND_WINDOW_HINT}); "
                    "the program's connection was reset"
                )  # fmt: skip
            self.abort()

    def client_fin(self) -> None:
        """The program shut down its sending side."""
        if self.sktid is None or self._fin_sent or self._done:
            return
        self._fin_sent = True
        self.session.nctl_fin(self.sktid).addErrback(self._send_failed)
        self._maybe_done()

    def client_gone(self) -> None:
        """The program's socket is closed (both ways, or reset)."""
        self._finish()

    # producer for the program's transport: hold ndata back while its buffer is full
    def pauseProducing(self) -> None:
        self._set_held(True)

    def resumeProducing(self) -> None:
        self._set_held(False)

    def stopProducing(self) -> None:
        self._finish()

    def _set_held(self, held: bool) -> None:
        if held == self._held or self.sktid is None or self._done or self._peer_eof:
            return
        self._held = held
        self._masked_once = True
        mask = NotifMask.NDATA if held else NotifMask.NONE
        set_notifmask(self.session, self.sktid, mask).addErrback(lambda f: None)

    # ------------------------------------------------------------------ endpoint side

    def _note(self, note: Any) -> None:
        if isinstance(note, Ndata):
            data = note.data
            self.rec.bytes_down += len(data)
            if self.rec.first_byte is None:
                self.rec.first_byte = note.time
            self.rec.last_byte = note.time
            self.timeline.at(note.time, lambda: self._write(data))
        elif isinstance(note, Nstat) and note.code != NstatCode.ESTABLISHED:
            if note.code == NstatCode.PEERCLOSED:
                self.rec.peer_closed = note.time
                self._peer_closed_note(note.time)
            elif not self._connecting:
                self.rec.error = self.rec.error or _code_name(note.code)
                self.timeline.at(note.time, self.abort)
            # While connecting, wait_connected reports it: the program gets the SOCKS
            # failure reply. Aborting here reset the program's connection before that
            # reply and wrote the --timings line twice (session 25).

    def _peer_closed_note(self, time: int) -> None:
        """The server's FIN, after every byte it sent. While NDATA is masked the endpoint
        holds ndata but not this nstat, so it can come before data still held: unmask, and
        half-close the program's side once the mwrite is answered (the held ndata are
        released ahead of that answer). Before (session 27), the FIN went first and
        Twisted sent it only if its write buffer drained with our producer unpaused: an
        `ftp` get of 300 kB, a client reading to EOF, waited for good."""
        self._peer_eof = True
        if not self._masked_once or self.sktid is None:
            self.timeline.at(time, self._peer_fin)
            return
        self._held = False
        d = set_notifmask(self.session, self.sktid, NotifMask.NONE)
        d.addBoth(lambda _: self.timeline.at(time, self._peer_fin))

    def _write(self, data: bytes) -> None:
        if not self._started:
            self._early.append(data)  # a server that speaks first; bounded by its rbufsz
        elif self._done:
            return
        elif self.timeline.clock is not None:
            send_now(self.client, data)
        else:
            self.client.write(data)

    def _peer_fin(self) -> None:
        if not self._started:
            self._early.append(None)
            return
        if self._done or self._peer_closed:
            return
        self._peer_closed = True
        # Nothing more comes from the endpoint: stop being the program transport's
        # producer first. Twisted half-closes only when its buffer drains while its
        # producer is not paused; with it paused it resumes the producer instead, and the
        # FIN was never sent when no more data followed.
        if getattr(self.client, "producer", None) is self:
            self.client.unregisterProducer()
        try:
            self.client.loseWriteConnection()
        except AttributeError:  # not half-closeable: close entirely
            self.client.loseConnection()
        self._maybe_done()

    def _maybe_done(self) -> None:
        if self._fin_sent and self._peer_closed:
            self.client.loseConnection()

    # ------------------------------------------------------------------ ending

    def abort(self) -> None:
        """Reset the program's connection (endpoint error, session gone)."""
        if self._done:
            return
        self.timeline.cancel()
        self.client.abortConnection()
        self._finish()

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        self.timeline.cancel()
        self._close_endpoint()
        self._on_done(self.rec)

    def _close_endpoint(self) -> None:
        if self.sktid is None or self.session.find_socket(self.sktid) is None:
            return
        d: Deferred[Any] = self.session.nclose(self.sktid)
        d.addErrback(lambda f: f.trap(ControllerError))


def _code_name(code: int) -> str:
    try:
        return NstatCode(code).name
    except ValueError:
        return f"nstat code {code}"
