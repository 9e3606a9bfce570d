"""An iperf3 test's control connection through an endpoint (`Control`: its states and
JSON messages, a flood of unread ones refused), opened and admitted (`admitted`: the
cookie sent, PARAM_EXCHANGE read, a refused or reset connect tried again) and closed by
the server (`closed_by_server`); what every iperf3 test here shares with it: its error
(`ThroughputError`), a wait on the reactor (`sleep`) and a 32-bit read of endpoint memory
(`read_u32`). Both `throughput` (the paper's fixed-size transfer) and `throughput_timed`
(iperf3's -t/-P/-u tests) run over it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet.defer import Deferred

from packetlab.clockstep import steady
from packetlab.controller import ConnectFailed, ControllerError, EndpointSession
from packetlab.measure import iperf3
from packetlab.measure.iperf3 import BUSY, TERMINATED, Iperf3Error, State
from packetlab.measure.pcap import PcapRecorder
from packetlab.measure.stream import StreamError, StreamTimeout, TcpStream
from packetlab.wire import Ndata

__all__ = [
    "ADMIT_ATTEMPTS",
    "ADMIT_RETRY_S",
    "CONNECT_TIMEOUT_S",
    "CTL_MAX_UNREAD",
    "Control",
    "ThroughputError",
    "admitted",
    "closed_by_server",
    "native_error",
    "read_u32",
    "sleep",
]

T = TypeVar("T")
_U32 = struct.Struct(">I")


class ThroughputError(ControllerError):
    """The measurement cannot run as asked (too large for the endpoint, server refused)."""


#: iperf3 3.12's client of a refused or unanswered connect: "unable to connect to
#: server: " and strerror(errno)
_STRERROR = {
    "REFUSED": "Connection refused",
    "RESET": "Connection refused",  # our endpoint's nstat for an RST answering the SYN
    "TIMEDOUT": "Connection timed out",
    "TIMEOUT": "Connection timed out",
    "UNREACH": "No route to host",
}


def native_error(e: BaseException, ours: str) -> str:
    """What iperf3 3.12's client says of the failure `e` (without its `error - `); `ours`
    where it has no words of its own for it (the endpoint's refusals, -B, -F, ...)."""
    if isinstance(e, ConnectFailed):
        why = _STRERROR.get(e.state)
        if why is None and e.state.startswith("not established within"):  # --connect-timeout
            why = _STRERROR["TIMEDOUT"]
        if why is not None:
            return f"unable to connect to server: {why}"
    if isinstance(e, Iperf3Error) and e.native is not None:
        return e.native
    return ours


#: iperf3 3.12's words (iperf_error.c, IECTRLCLOSE) for a control connection closed
#: under a state read
CTRL_CLOSED = "control socket has closed unexpectedly"


class ControlLost(Iperf3Error, StreamError):
    """The control connection closed or reset under a state read: a StreamError still
    (a new test's connection a server drops is tried again), with iperf3's words."""


#: Unread notes the control connection may hold. An iperf3 server sends a state byte or
#: two between our reads; one that floods the connection while the test runs (and we do
#: not read it) would fill the socket's queue, which pauses the whole session's reads
#: (the transfer's own polls too: the test would hang). Past this, the rest is dropped
#: and the next read fails.
CTL_MAX_UNREAD = 32


class Control:
    """The iperf3 control channel over an endpoint TCP stream. `debug` (iperf3's -d
    here) is told each state and JSON message as it goes either way, one line each."""

    def __init__(
        self, stream: TcpStream, timeout: float, debug: Callable[[str], None] | None = None
    ) -> None:
        self.stream = stream
        self.timeout = timeout
        self.debug = debug
        self.time = 0  # endpoint receive stamp of the last state read
        self.flooded = False
        stream.sock.add_callback(self._watch)

    def _watch(self, note: object) -> None:
        sock = self.stream.sock
        if isinstance(note, Ndata) and sock.buffering and sock.queued >= CTL_MAX_UNREAD:
            self.flooded = True
            sock.buffering = False  # what is queued stays (bounded); the rest is dropped

    def _check(self) -> None:
        if self.flooded:
            raise Iperf3Error(
                f"the iperf3 server {self.peer} flooded the control connection (over "
                f"{CTL_MAX_UNREAD} unread messages during the test)"
            )

    async def state(self, timeout: float | None = None) -> State:
        self._check()
        try:
            got = await self.stream.read_exactly(1, self.timeout if timeout is None else timeout)
        except StreamTimeout:
            raise
        except StreamError as e:  # iperf3 3.12's client: read() of its state byte failed
            raise self._lost(e) from None
        self.time = got.time
        try:
            state = iperf3.parse_state(got.data)
        except Iperf3Error as e:
            raise Iperf3Error(f"the iperf3 server {self.peer}: {e}") from None
        self._say(f"state {state.name} ({int(state)}) received, endpoint time {got.time / 1e9:.6f}")
        if state in (State.ACCESS_DENIED, State.SERVER_ERROR):
            detail = ""
            if state == State.SERVER_ERROR:
                try:
                    codes = await self.stream.read_exactly(8, 1.0)
                    i_errno, errno = struct.unpack(">ii", codes.data)
                    detail = f" (i_errno {i_errno}, errno {errno})"
                except StreamError:
                    pass
            if state == State.ACCESS_DENIED:
                raise Iperf3Error("the iperf3 server is busy (access denied)", native=BUSY)
            raise Iperf3Error(f"the iperf3 server failed{detail}")
        if state == State.SERVER_TERMINATE:
            raise Iperf3Error("the iperf3 server terminated the test", native=TERMINATED)
        return state

    def _lost(self, e: StreamError) -> ControlLost:
        """The control connection lost under a state read (a server killed mid-test); a
        close in iperf3's words (its IECTRLCLOSE: read() returned 0)."""
        if self.stream.eof:
            return ControlLost(f"the iperf3 server {self.peer} closed the control connection",
                               native=CTRL_CLOSED)  # fmt: skip
        return ControlLost(f"the iperf3 server {self.peer}: {e}")

    async def expect(self, *states: State, timeout: float | None = None) -> State:
        state = await self.state(timeout)
        if state not in states:
            names = "/".join(s.name for s in states)
            raise Iperf3Error(f"iperf3 server said {state.name}, expected {names}")
        return state

    def send_state(self, state: State, time: int | None = None) -> None:
        """`state` now, or queued at the endpoint for its time `time` (ns)."""
        when = "sent" if time is None else f"queued for endpoint time {time / 1e9:.6f}"
        self._say(f"state {state.name} ({int(state)}) {when}")
        if time is None:
            self.stream.send(iperf3.state_byte(state))
        else:
            self.stream.send(iperf3.state_byte(state), time=time)

    def send_json(self, obj: dict[str, Any]) -> None:
        """One JSON message (its u32 length first), as iperf3's JSON_write."""
        data = iperf3.encode_json(obj)
        self._say(f"JSON sent ({len(data) - 4} bytes): {data[4:].decode('utf-8', 'replace')}")
        self.stream.send(data)

    def _say(self, line: str) -> None:
        if self.debug is not None:
            self.debug(line)

    @property
    def peer(self) -> str:
        return f"{self.stream.raddr}:{self.stream.rport}"

    async def read_json(self, parse: Callable[[dict[str, Any]], T]) -> T:
        """The server's next JSON message, as `parse` makes it; an Iperf3Error (its length
        over MAX_JSON, bad JSON, `parse` refusing it) names the server."""
        self._check()
        head = await self.stream.read_exactly(4, self.timeout)
        try:
            body = await self.stream.read_exactly(iperf3.json_length(head.data), self.timeout)
            if self.debug is not None:  # the server's text as it came (not a terminal's)
                text = body.data.decode("utf-8", "replace").encode("unicode_escape")
                self._say(f"JSON received ({len(body.data)} bytes): {text.decode('ascii')}")
            return parse(iperf3.decode_json(body.data))
        except Iperf3Error as e:
            raise Iperf3Error(f"the iperf3 server {self.peer}: {e}") from None


#: A new test's control connection that the server refuses, or resets or closes before
#: it asks for the parameters, is tried again, this many times in all, this long apart.
#: Between two tests an iperf3 server closes the last test's control connection, then
#: its listener (resetting a connection the listener took meanwhile: seen 1 in ~16
#: back-to-back tests), then listens anew: a connect in between is refused, for longer
#: when the machine is loaded (an iperf3 -s whose listen() strace held 300 ms: `--runs 3`
#: failed its second and third tests "connection refused").
ADMIT_ATTEMPTS, ADMIT_RETRY_S = 3, 0.2
#: The control connection's connect, unless --connect-timeout says (TcpStream's default).
CONNECT_TIMEOUT_S = 5.0


async def admitted(
    session: EndpointSession,
    addr: Any,
    port: int,
    recorder: PcapRecorder | None,
    *,
    laddr: str | None = None,
    timeout: float | None = None,
    debug: Callable[[str], None] | None = None,
) -> tuple[Control, bytes]:
    """The control connection of a new test (from `laddr`, established within `timeout`
    s: iperf3's -B, --connect-timeout), its cookie sent and PARAM_EXCHANGE read; the
    cookie (and the states, `debug`, Control's). Raises the last attempt's error
    (ControllerError, Iperf3Error)."""
    attempt = 1
    wait = CONNECT_TIMEOUT_S if timeout is None else timeout
    while True:
        try:
            stream = await TcpStream.connect(session, addr, port, recorder=recorder,
                                             laddr=laddr, timeout=wait)  # fmt: skip
        except ConnectFailed as e:
            if e.state not in ("REFUSED", "RESET") or attempt >= ADMIT_ATTEMPTS:
                raise
            attempt += 1
            await sleep(session, ADMIT_RETRY_S)
            continue
        key = iperf3.cookie()
        try:
            if debug is not None:
                debug(f"cookie sent: {key[:-1].decode('ascii', 'replace')}")
            stream.send(key)
            ctl = Control(stream, timeout=10.0, debug=debug)
            await ctl.expect(State.PARAM_EXCHANGE)
            return ctl, key
        except StreamError as e:
            await stream.close()
            if isinstance(e, StreamTimeout) or attempt >= ADMIT_ATTEMPTS:
                raise
        except BaseException:
            await stream.close()
            raise
        attempt += 1
        await sleep(session, ADMIT_RETRY_S)


async def closed_by_server(stream: TcpStream, timeout: float = 5.0) -> None:
    """Waits (at most `timeout` s in all: a server may trickle bytes for ever) for the
    server to close the control connection, as iperf3 does after IPERF_DONE."""
    clock = stream.session.reactor
    deadline = steady(clock) + timeout
    try:
        while (left := deadline - steady(clock)) > 0 and await stream.recv(left) is not None:
            pass
    except StreamError:
        pass


async def sleep(session: EndpointSession, seconds: float) -> None:
    d: Deferred[None] = Deferred()
    session.reactor.callLater(seconds, d.callback, None)
    await d


async def read_u32(session: EndpointSession, addr: int) -> int:
    """The big-endian 32-bit word at `addr` of the endpoint's memory (BUFUSED, a socket's
    RBUFUSED), read with one mread."""
    return int(_U32.unpack((await session.mread(addr, 4)).ljust(4, b"\0"))[0])
