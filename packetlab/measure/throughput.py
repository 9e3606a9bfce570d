"""TCP pipe saturation (the Marionette paper's §5.2) through an endpoint, against a stock
iperf3 server.

Download: the data socket's ndata are masked (NOTIFMASK NDATA) before any data flows, so
the endpoint holds what it receives (with each recv()'s timestamp) instead of sending it
to the controller during the transfer; its receive budget is sized for the whole transfer.
Once RBUFUSED has passed N and stays put for a poll, the controller clears the mask; the
held ndata arrive, and TEST_END goes once they hold all N bytes. Throughput =
8 * (N - b) / (t1 - t0), with t0 and b the stamp and byte count of the first ndata past
1 MiB and t1 the stamp of the one that completed N.

Upload: ntags are masked on the data socket; every block is queued with one nsend
scheduled `lead` seconds ahead, so all nsends have reached the endpoint before the first
byte leaves and no controller traffic competes with the transfer. The iperf3 server
starts its clock when it sends TEST_START, once it has set the stream up after the
cookie; native iperf3 writes its first block only then. So where the endpoint runs
reflexes, the first 352 KiB are sent by one (`upload_start`) on the control socket when
TEST_START arrives and the rest is scheduled `bulk_after` after the cookie; elsewhere
all goes with the cookie, and the server counts what arrives during its set-up. The
endpoint's BUFUSED falling back (to within what its held ntags keep) says the blocks
are nearly out; then the held ntags are released, the last block's ntag says it was
handed to the kernel, and the test ends. The receiver's figure (`mbit_s`) is the iperf3
server's own (bytes over its stream's duration, as native `iperf3` prints for the
receiver); `sender_mbit_s` is the endpoint's, from the ntag stamps with the first 1 MiB
ignored.

The paper waited a fixed 10 s instead of polling; one 4-byte mread every `poll` seconds
is the only controller traffic during the transfer here (an upload polls faster as its
last bytes near the kernel, `end_poll`, so TEST_END leaves when native iperf3's would).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, TypeVar

from twisted.internet import defer
from twisted.internet.defer import Deferred

from packetlab.controller import (
    AddressLike,
    ConnectFailed,
    ControllerError,
    EndpointSession,
    RequestFailed,
    deferred_api,
    parse_address,
    read_socket_info,
    read_system_info,
    read_time,
    set_notifmask,
    wait_connected,
)
from packetlab.measure import iperf3, upload_start
from packetlab.measure.iperf3 import DEFAULT_PORT, Iperf3Error, State
from packetlab.measure.pcap import PcapRecorder, TcpFlow
from packetlab.measure.stream import StreamError, StreamTimeout, TcpStream, connect_failure
from packetlab.measure.throughput_reads import Reads, server_total
from packetlab.wire import Ndata, NotifMask, Nstat, NstatCode, Ntag, vmem

__all__ = [
    "DEFAULT_BYTES",
    "SKIP",
    "ThroughputError",
    "ThroughputResult",
    "rate_after",
    "stalls",
    "throughput",
]

MIB = 1 << 20
DEFAULT_BYTES = 25 * MIB  # the paper's transfer
SKIP = MIB  # ignored at the start (slow start), as in the paper
#: Upload with a reflex: its sends when TEST_START arrives (a small first one, so it goes
#: at once; the reflex's sends are copied out of its memory), and how long after the
#: cookie the scheduled rest begins: the server's set-up took 0.4-1.0 ms here, and the
#: head lasts 2.9 ms at 1 Gbit/s, so the link does not idle in between.
HEAD_FIRST, HEAD_COUNT, HEAD_SIZE = 16 * 1024, 7, upload_start.MAX_SEND
HEAD_BYTES = HEAD_FIRST + HEAD_COUNT * HEAD_SIZE
BULK_AFTER = 0.003
_U32 = struct.Struct(">I")
T = TypeVar("T")
Progress = Callable[[int, int], None]  # (bytes so far, bytes in all)


class ThroughputError(ControllerError):
    """The measurement cannot run as asked (too large for the endpoint, server refused)."""


@dataclass(slots=True)
class ThroughputResult:
    direction: str  # "download" or "upload"
    server: str
    port: int
    bytes: int  # transferred: whole blocks, as iperf3 (upload: sent; download: read)
    seconds: float | None = None  # the measured span (after the first `skip` bytes)
    mbit_s: float | None = None  # 10^6 bit/s
    skip: int = SKIP
    measured_bytes: int | None = None  # N - b
    method: str = ""  # where mbit_s comes from
    sender_mbit_s: float | None = None  # upload: endpoint ntag stamps
    whole_mbit_s: float | None = None  # native download: iperf3's figure, nothing skipped
    server_bytes: int | None = None  # what the iperf3 server counted
    server_seconds: float | None = None
    server_mbit_s: float | None = None
    start_ns: int | None = None  # endpoint time of the first data byte
    data_start: str | None = None  # upload: "test-start" (a reflex) or "cookie"
    setup_us: float | None = None  # upload: the cookie's time to TEST_START's arrival
    chunks: int = 0  # ndata (download) or nsends (upload)
    stalls: list[dict[str, float]] | None = None  # download: where the data stopped
    stall_ms: float | None = None  # the stalls' excess in all
    error: str | None = None
    bytes_limit: int | None = None  # -n as asked

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "throughput",
            "direction": self.direction,
            "server": self.server,
            "port": self.port,
            "bytes": self.bytes,
        }
        if self.bytes_limit is not None:
            out["bytes_limit"] = self.bytes_limit
        if self.error is not None:
            out["error"] = self.error
            return out
        out.update(
            seconds=self.seconds,
            mbit_s=self.mbit_s,
            skip=self.skip,
            measured_bytes=self.measured_bytes,
            method=self.method,
            server_bytes=self.server_bytes,
            server_seconds=self.server_seconds,
            server_mbit_s=self.server_mbit_s,
            start_ns=self.start_ns,
            chunks=self.chunks,
        )
        if self.data_start is not None:
            out["data_start"] = self.data_start
        if self.setup_us is not None:
            out["setup_us"] = self.setup_us
        if self.sender_mbit_s is not None:
            out["sender_mbit_s"] = self.sender_mbit_s
        if self.whole_mbit_s is not None:
            out["whole_mbit_s"] = self.whole_mbit_s
        if self.stalls is not None:
            out.update(stalls=self.stalls, stall_ms=self.stall_ms)
        return out


#: Stamps closer than this share of the transfer's mean gap between stamps came in one
#: burst (a run of packets at the interface's speed, not the link's).
BURST_SHARE = 0.25


def rate_after(stamps: list[tuple[int, int]], total: int, skip: int) -> tuple[int, int, int]:
    """From (cumulative bytes, endpoint ns) in arrival order: (b, t0, t1) where t0 is the
    stamp at which `skip` bytes were in, moved to the end of the burst that brought them
    (b bytes in by then), and t1 the one completing `total`. Packets come in bursts (a
    router or tbf passing several at once); timed from a burst's first packet, the rest
    of that burst counts as sent in no time and the rate comes out high by about a burst
    over the transfer (measured: captures 0.1-0.2 % above the link's payload ceiling
    whenever 1 MiB fell early in a burst). Raises ValueError when there is nothing left
    to measure."""
    first = next((i for i, (cum, _) in enumerate(stamps) if cum >= skip), None)
    end = next((i for i, (cum, _) in enumerate(stamps) if cum >= total), None)
    if first is None or end is None or first >= end:
        raise ValueError("no data past the skipped part to measure")
    gap = BURST_SHARE * (stamps[-1][1] - stamps[0][1]) / max(len(stamps) - 1, 1)
    while first + 1 < end and stamps[first + 1][1] - stamps[first][1] <= gap:
        first += 1
    (b, t0), t1 = stamps[first], stamps[end][1]
    if t1 <= t0:
        raise ValueError("no data past the skipped part to measure")
    return b, t0, t1


#: A gap between two stamps counts as a stall when it is this much longer than its bytes
#: take at the transfer's own rate.
STALL_MIN_NS = 1_000_000
#: Stamps closer than this are one burst (a capture stamps every packet of a tbf bucket's
#: burst; the gap after it is what the bucket's bytes take, not a stall).
BURST_NS = 200_000


def stalls(
    stamps: list[tuple[int, int]],
    mbit_s: float,
    *,
    min_ns: int = STALL_MIN_NS,
    burst_ns: int = BURST_NS,
    keep: int = 10,
) -> tuple[list[dict[str, float]], float]:
    """Where a transfer stopped, from (cumulative bytes, ns) stamps in arrival order.

    Stamps less than `burst_ns` apart are merged into one burst (its last stamp); a gap
    from one burst to the next is a stall when it exceeds by at least `min_ns` what the
    next burst's bytes take at `mbit_s` (a receiver that falls behind reads in larger
    pieces: a long gap its bytes explain is none). Returns each as {"at_ms" (since the
    first stamp), "at_bytes" (in before the gap), "gap_ms", "excess_ms"}, the `keep`
    largest excesses in time order, and the sum of all excesses (ms)."""
    if not stamps or mbit_s <= 0:
        return [], 0.0
    ns_per_byte = 8e3 / mbit_s
    first = stamps[0][1]
    bursts = [stamps[0]]
    for cum, t in stamps[1:]:
        if t - bursts[-1][1] < burst_ns:
            bursts[-1] = (cum, t)
        else:
            bursts.append((cum, t))
    found: list[tuple[float, int, int, int]] = []  # (excess ns, at ns, at bytes, gap ns)
    for (cum0, t0), (cum1, t1) in pairwise(bursts):
        excess = (t1 - t0) - (cum1 - cum0) * ns_per_byte
        if excess >= min_ns:
            found.append((excess, t0 - first, cum0, t1 - t0))
    total = sum(f[0] for f in found) / 1e6
    kept = sorted(sorted(found, reverse=True)[:keep], key=lambda f: f[1])
    out = [
        {"at_ms": round(at / 1e6, 3), "at_bytes": cum, "gap_ms": round(gap / 1e6, 3),
         "excess_ms": round(ex / 1e6, 3)}
        for ex, at, cum, gap in kept
    ]  # fmt: skip
    return out, round(total, 3)


def mbit(nbytes: int, ns: int) -> float:
    return nbytes * 8 / ns * 1e3  # bits per ns * 1e9 / 1e6


#: Unread notes the control connection may hold. An iperf3 server sends a state byte or
#: two between our reads; one that floods the connection while the test runs (and we do
#: not read it) would fill the socket's queue, which pauses the whole session's reads
#: (the transfer's own polls too: the test would hang). Past this, the rest is dropped
#: and the next read fails.
CTL_MAX_UNREAD = 32


class _Control:
    """The iperf3 control channel over an endpoint TCP stream."""

    def __init__(self, stream: TcpStream, timeout: float) -> None:
        self.stream = stream
        self.timeout = timeout
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
        got = await self.stream.read_exactly(1, self.timeout if timeout is None else timeout)
        self.time = got.time
        try:
            state = iperf3.parse_state(got.data)
        except Iperf3Error as e:
            raise Iperf3Error(f"the iperf3 server {self.peer}: {e}") from None
        if state in (State.ACCESS_DENIED, State.SERVER_ERROR):
            detail = ""
            if state == State.SERVER_ERROR:
                try:
                    codes = await self.stream.read_exactly(8, 1.0)
                    i_errno, errno = struct.unpack(">ii", codes.data)
                    detail = f" (i_errno {i_errno}, errno {errno})"
                except StreamError:
                    pass
            what = "is busy (access denied)" if state == State.ACCESS_DENIED else "failed"
            raise Iperf3Error(f"the iperf3 server {what}{detail}")
        if state == State.SERVER_TERMINATE:
            raise Iperf3Error("the iperf3 server terminated the test")
        return state

    async def expect(self, *states: State, timeout: float | None = None) -> State:
        state = await self.state(timeout)
        if state not in states:
            names = "/".join(s.name for s in states)
            raise Iperf3Error(f"iperf3 server said {state.name}, expected {names}")
        return state

    def send_state(self, state: State) -> None:
        self.stream.send(iperf3.state_byte(state))

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
            return parse(iperf3.decode_json(body.data))
        except Iperf3Error as e:
            raise Iperf3Error(f"the iperf3 server {self.peer}: {e}") from None


async def _bufused(session: EndpointSession) -> int:
    return int(_U32.unpack((await session.mread(vmem.BUFUSED.addr, 4)).ljust(4, b"\0"))[0])


async def _rbufused(session: EndpointSession, sktid: int) -> int:
    raw = await session.mread(vmem.skt_addr(sktid, vmem.SKT_RBUFUSED), 4)
    return int(_U32.unpack(raw.ljust(4, b"\0"))[0])


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


async def _admitted(
    session: EndpointSession,
    addr: Any,
    port: int,
    recorder: PcapRecorder | None,
    *,
    laddr: str | None = None,
    timeout: float | None = None,
) -> tuple[_Control, bytes]:
    """The control connection of a new test (from `laddr`, established within `timeout`
    s: iperf3's -B, --connect-timeout), its cookie sent and PARAM_EXCHANGE read; the
    cookie. Raises the last attempt's error (ControllerError, Iperf3Error)."""
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
            await _sleep(session, ADMIT_RETRY_S)
            continue
        key = iperf3.cookie()
        try:
            stream.send(key)
            ctl = _Control(stream, timeout=10.0)
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
        await _sleep(session, ADMIT_RETRY_S)


async def _closed_by_server(stream: TcpStream, timeout: float = 5.0) -> None:
    """Waits (at most `timeout` s in all: a server may trickle bytes for ever) for the
    server to close the control connection, as iperf3 does after IPERF_DONE."""
    clock = stream.session.reactor
    deadline = clock.seconds() + timeout
    try:
        while (left := deadline - clock.seconds()) > 0 and await stream.recv(left) is not None:
            pass
    except StreamError:
        pass


def end_poll(poll: float, last: tuple[float, int] | None, now: float, left: int) -> float:
    """The wait before the next BUFUSED poll of an upload: `poll`, but no more than half
    the time the last `left` bytes take at the pace seen since the `last` poll (at least
    poll / 10). The server's clock stops when TEST_END arrives, as native iperf3 sends it
    the moment its last write returns: a fixed 5 ms poll made that up to 5 ms late, 2.4 %
    of a 25 MiB upload at 1 Gbit/s."""
    if last is None or last[1] <= left or now <= last[0]:
        return poll
    pace = (last[1] - left) / (now - last[0])  # bytes/s handed to the kernel
    return min(poll, max(poll / 10, left / pace / 2))


async def _sleep(session: EndpointSession, seconds: float) -> None:
    d: Deferred[None] = Deferred()
    session.reactor.callLater(seconds, d.callback, None)
    await d


@deferred_api
async def throughput(
    session: EndpointSession,
    server: AddressLike,
    port: int = DEFAULT_PORT,
    *,
    direction: str = "download",
    nbytes: int = DEFAULT_BYTES,
    skip: int = SKIP,
    lead: float | None = None,
    bulk_after: float = BULK_AFTER,
    reflex: bool = True,
    timeout: float = 60.0,
    poll: float = 0.005,
    progress: Progress | None = None,
    recorder: PcapRecorder | None = None,
) -> ThroughputResult:
    """One iperf3 test of `nbytes` from (download) or to (upload) `server:port`, timed by
    the endpoint. `lead` (upload) is how far ahead the sends are scheduled (default: 0.5 s
    plus the time to ship the data at 20 MB/s); with a reflex (`reflex`, when the
    endpoint allows one) the data past its head is `bulk_after` after the cookie.
    `timeout` bounds the transfer. Failures
    after the start come back in `error`; arguments the endpoint cannot satisfy raise
    ThroughputError. `recorder` collects both connections' packets for a pcap file (the
    data connection as the endpoint's recv()s and nsends, at their endpoint times)."""
    if direction not in ("download", "upload"):
        raise ValueError(f"direction must be download or upload, got {direction!r}")
    if not 0 <= skip < nbytes:
        raise ValueError(f"need 0 <= skip < bytes, got skip={skip} bytes={nbytes}")
    addr = parse_address(server)
    info = await read_system_info(session)
    # iperf3 3.12 sends whole blocks until N bytes went (the client uploading, the server
    # for -R): -n 3000000 moves 3,014,656 bytes
    whole = server_total(nbytes, None, iperf3.BLOCK) or nbytes
    need = whole + 2 * MIB
    if need > info.bufmax - info.bufused:
        raise ThroughputError(
            f"{nbytes} bytes do not fit the endpoint's buffer budget (BufMax {info.bufmax}, "
            f"{info.bufused} in use): the method holds the whole transfer at the endpoint; "
            "ask for fewer bytes or raise BufMax"
        )
    upload_total = whole if direction == "upload" else nbytes
    result = ThroughputResult(direction, str(addr), port, upload_total, skip=skip,
                              bytes_limit=nbytes)  # fmt: skip
    try:
        ctl, key = await _admitted(session, addr, port, recorder)
    except Iperf3Error as e:
        result.error = str(e)
        return result
    except ControllerError as e:
        result.error = connect_failure(e, addr, port)
        return result
    ctl_stream = ctl.stream
    data_sktid: int | None = None
    ntags: list[Deferred[Ntag]] = []  # upload: consumed here if the test fails
    upload: _Upload | None = None
    try:
        params = iperf3.parameters(nbytes, reverse=direction == "download")
        ctl_stream.send(iperf3.encode_json(params))
        await ctl.expect(State.CREATE_STREAMS)
        data_sktid = session.free_sktid()
        mask = NotifMask.NDATA if direction == "download" else NotifMask.NTAG
        transfer = _Download(session, result, whole) if direction == "download" else None
        opened = session.nopen_tcp_connect(
            data_sktid, addr, port, rbufsz=need if transfer else 64 * 1024, buffer=False
        )
        masked = set_notifmask(session, data_sktid, mask)  # before any data can arrive
        sock = await opened
        await masked
        if transfer is not None:
            sock.add_callback(transfer.note)
        est = await wait_connected(session, data_sktid, timeout=10.0)
        flow: TcpFlow | None = None
        if recorder is not None:
            sinfo = await read_socket_info(session, data_sktid)
            flow = recorder.tcp(sinfo.laddr or addr, sinfo.lport, addr, port)
            flow.connected(est.time, est.time)
        if transfer is None:
            upload = _Upload(session, result, data_sktid)
            upload.flow = flow
            ntags = upload.ntags
            if reflex:
                await upload.arm(ctl_stream.sktid)
            await upload.queue(key, lead, bulk_after)
        else:
            transfer.flow = flow
            session.nsend(data_sktid, key).addErrback(lambda _: None)
            if flow is not None:
                flow.sent(est.time, key)
        await ctl.expect(State.TEST_START, timeout=10.0 + (lead or 0.5 + whole / 20e6))
        if upload is not None:
            upload.test_start = ctl.time
        await ctl.expect(State.TEST_RUNNING)
        if transfer is not None:
            await transfer.run(data_sktid, ctl, timeout, poll, progress)
        else:
            assert upload is not None
            await upload.run(ctl, timeout, poll, progress)
        await ctl.expect(State.EXCHANGE_RESULTS)
        seconds = (result.seconds or 0.0) + 0.0
        ctl_stream.send(iperf3.encode_json(iperf3.client_results(result.bytes, seconds)))
        server_bytes, server_seconds = await ctl.read_json(iperf3.stream_result)
        if direction == "upload" and server_bytes > result.bytes:
            raise Iperf3Error(
                f"the iperf3 server {ctl.peer} reports {server_bytes} bytes received of the "
                f"{result.bytes} sent"
            )
        result.server_bytes, result.server_seconds = server_bytes, server_seconds
        if server_seconds > 0:
            result.server_mbit_s = server_bytes * 8 / server_seconds / 1e6
        if direction == "upload":
            result.mbit_s, result.method = result.server_mbit_s, "iperf3-server"
            result.seconds, result.measured_bytes = server_seconds, server_bytes
        await ctl.expect(State.DISPLAY_RESULTS)
        ctl.send_state(State.IPERF_DONE)
        if flow is not None and result.start_ns is not None:
            flow.closed(result.start_ns + int((result.seconds or 0) * 1e9), by_peer=False)
        await _closed_by_server(ctl_stream)  # the server is free for the next test
    except (Iperf3Error, StreamError, RequestFailed, ThroughputError) as e:
        result.error = str(e)
    except ValueError as e:  # nothing past the skipped part
        result.error = str(e)
    except defer.TimeoutError:
        result.error = f"the endpoint's notifications did not come within {timeout:g} s"
    finally:
        for d in ntags:
            d.addErrback(lambda _: None)
        if data_sktid is not None and session.find_socket(data_sktid) is not None:
            try:
                await session.nclose(data_sktid)
            except ControllerError:
                pass
        await ctl_stream.close()
    if result.error is not None:
        result.mbit_s = None
    return result


#: Buffer space an endpoint may keep per held ntag (the reference's per-message overhead,
#: 72 + 44 bytes, rounded up): BUFUSED settles that far above its start on an upload.
HELD_NTAG_ROOM = 128
#: A download's N is in but not the server's whole last block: how long the rest may take
#: (an iperf3 3.12 server sends it right after; one that stops at N sends none)
WHOLE_GRACE = 0.5


class _Download:
    """Counts the data socket's ndata (held, then released) with their stamps. The server
    sends `whole` bytes (whole blocks); the test's bytes are iperf3's client's: its reads
    up to the one that brought `result.bytes` (-n), modelled from the recv()s."""

    def __init__(self, session: EndpointSession, result: ThroughputResult, whole: int) -> None:
        self.session = session
        self.result = result
        self.whole = whole
        self.received = 0
        self.stamps: list[tuple[int, int]] = []
        self.closed = False
        self.flow: TcpFlow | None = None
        self._waiter: Deferred[None] | None = None
        self._grace: Any = None

    def note(self, note: object) -> None:
        if isinstance(note, Ndata):
            self.received += len(note.data)
            self.stamps.append((self.received, note.time))
            if self.flow is not None:
                self.flow.received(note.time, note.data)
        elif isinstance(note, Nstat) and note.code != NstatCode.ESTABLISHED:
            self.closed = True
        else:
            return
        if self._waiter is None:
            return
        if self.received >= self.whole or self.closed:
            self._release()
        elif self.received >= self.result.bytes and self._grace is None:
            # N is in; a server that does not round up to whole blocks (not 3.12's) sends
            # no more: what came within WHOLE_GRACE is all
            self._grace = self.session.reactor.callLater(WHOLE_GRACE, self._release)

    def _release(self) -> None:
        if self._grace is not None and self._grace.active():
            self._grace.cancel()
        if self._waiter is not None:
            w, self._waiter = self._waiter, None
            w.callback(None)

    def counted(self) -> int:
        """iperf3's bytes: its reads of up to -l bytes (throughput_reads) until the one
        that brought N; all that came if none did (the last read ends at the socket's
        end)."""
        limit, reads, prev = self.result.bytes, Reads(iperf3.BLOCK), 0
        for cum, _t in self.stamps:
            taken = reads.take(cum - prev, lambda: reads.done_bytes >= limit)
            if reads.done_bytes >= limit:
                return prev + taken
            prev = cum
        return self.received

    async def run(
        self, sktid: int, ctl: _Control, timeout: float, poll: float, progress: Progress | None
    ) -> None:
        session, total = self.session, self.result.bytes
        clock = session.reactor
        deadline = clock.seconds() + timeout
        last = -1
        while True:  # the transfer: the only controller traffic is this poll
            used = await _rbufused(session, sktid)
            if progress is not None:
                progress(min(used, total), total)
            # RBUFUSED is a budget, not a byte count: each held ndata is charged its bytes
            # plus the endpoint's per-recv overhead (116 bytes here, 4 000 recvs in a
            # 25 MiB transfer), so it passes N while up to ~0.5 MB are still on the way. A
            # TEST_END then stopped the server short ("no data past the skipped part").
            # So: past N and still for a whole poll, the transfer is (nearly) over.
            if used >= total and used == last:
                break
            if clock.seconds() > deadline:
                raise StreamError(f"only {used} of {total} bytes arrived within {timeout:g} s")
            last = used
            await _sleep(session, poll)
        # Release the held ndata and count the bytes themselves; TEST_END once the server's
        # whole blocks are in (iperf3 sends it after the read that brought N: all of them
        # when they came together, as on a fast path).
        self._waiter = Deferred()
        await set_notifmask(session, sktid, 0)
        waiter = self._waiter
        if waiter is not None:  # not all in yet
            waiter.addTimeout(timeout, clock)
            await waiter
        ctl.send_state(State.TEST_END)
        if self.received < total:
            raise StreamError(f"the data connection closed after {self.received} of {total} bytes")
        r = self.result
        r.bytes = got = self.counted()
        b, t0, t1 = rate_after(self.stamps, got, r.skip)
        r.seconds = (t1 - t0) / 1e9
        r.measured_bytes = got - b
        r.mbit_s = mbit(got - b, t1 - t0)
        r.method = "ndata-stamps"
        r.start_ns = self.stamps[0][1]
        r.chunks = len(self.stamps)
        r.stalls, r.stall_ms = stalls(self.stamps, r.mbit_s)


class _Upload:
    """Queues the cookie at one endpoint time `lead` s ahead and the blocks with it, or,
    with the head reflex armed on the control socket, `bulk_after` later (the reflex
    sends the first HEAD_BYTES when TEST_START comes, as native iperf3 starts writing
    then); waits for BUFUSED to fall back and ends the test."""

    def __init__(self, session: EndpointSession, result: ThroughputResult, sktid: int) -> None:
        self.session = session
        self.result = result
        self.sktid = sktid
        self.ntags: list[Deferred[Ntag]] = []  # consumed by the caller if the test fails
        self.sizes: list[int] = []
        self.cums: list[int] = []  # bytes sent (the head too) once each tagged block went
        self.base = 0
        self.start = 0
        self.head = 0  # bytes the reflex sends on TEST_START (0: no reflex)
        self.ctl_sktid = -1
        self.test_start = 0  # endpoint receive stamp of TEST_START
        self.flow: TcpFlow | None = None
        self.key = b""

    async def arm(self, ctl_sktid: int) -> None:
        """The head reflex on the control socket, where the endpoint allows it."""
        if self.result.bytes < HEAD_BYTES + iperf3.BLOCK:
            return
        params = upload_start.head_params(self.sktid, HEAD_FIRST, HEAD_COUNT, HEAD_SIZE)
        try:
            await self.session.attach_reflex(ctl_sktid, upload_start.head_reflex(), params)
        except ControllerError:  # ReflexUnsupported, or refused (not in the chain)
            return  # a reference endpoint, reflexes forbidden, or not in the chain
        self.head, self.ctl_sktid = HEAD_BYTES, ctl_sktid

    async def queue(self, key: bytes, lead: float | None, bulk_after: float) -> None:
        session, total = self.session, self.result.bytes
        self.key = key
        if lead is None:
            lead = 0.5 + total / 20e6
        self.base = await _bufused(session)
        self.start = start = await read_time(session) + int(lead * 1e9)
        bulk = start + int(bulk_after * 1e9) if self.head else start
        block = b"\0" * iperf3.BLOCK
        self.sizes = [
            min(iperf3.BLOCK, total - off) for off in range(self.head, total, iperf3.BLOCK)
        ]
        queued = [session.nsend(self.sktid, key, time=start)]
        cum, skip, every = self.head, self.result.skip, self.flow is not None
        for i, size in enumerate(self.sizes):
            data = block if size == len(block) else block[:size]
            cum += size
            # ntags only where the figures need them (the first block, the one past the
            # skip, the last; every one for a pcap): all are released at TEST_END, and 200
            # of them keep the endpoint and the controller busy on the CPUs the server
            # needs then
            tag = every or i == 0 or cum >= total or cum - size < skip <= cum
            if tag:
                self.cums.append(cum)
            queued.append(session.nsend(self.sktid, data, time=bulk, ntag=tag))
            if i % 16 == 15:
                await session.wait_writable()
        refused: RequestFailed | None = None
        for q in queued:  # every answer is taken, so none is left unhandled
            try:
                got = await q
            except RequestFailed as e:
                refused = refused or e
                continue
            if got.ntag is not None:
                self.ntags.append(got.ntag)
        if refused is not None:
            if refused.name == "ESKTPKTDENY":
                raise ThroughputError(
                    f"the endpoint refused the sends (ESKTPKTDENY): its send window does not "
                    f"allow {total} bytes now. Without a max_burst_rate_byte limit in the "
                    "operator's exppriv certificate an endpoint allows 12,500,000 bytes per "
                    "10 s (the reference's built-in 10 Mb/s); ask for less, or have the "
                    "operator grant more: pktlab init --max-burst-rate-byte "
                    "1250000000/10000000000 for the in-process endpoint, pktlab ppks sign "
                    "... --max-burst-rate-byte for others (this project's endpoint; the "
                    "reference applies 10 Mb/s always). See docs/throughput.md"
                )
            raise refused
        if await read_time(session) > start:
            raise StreamError(
                f"queueing took longer than the lead ({lead:g} s): the sends would compete "
                "with the transfer; give a longer lead"
            )

    async def run(
        self, ctl: _Control, timeout: float, poll: float, progress: Progress | None
    ) -> None:
        session, total, result = self.session, self.result.bytes, self.result
        clock = session.reactor
        deadline = clock.seconds() + timeout
        last: tuple[float, int] | None = None
        # What BUFUSED may keep once every block is with the kernel: an endpoint may keep
        # buffer space for each held ntag (§2.4; this project's keeps 116 bytes).
        settled = 4096 + HELD_NTAG_ROOM * len(self.ntags)
        while True:  # BUFUSED falls back once the last block went to the kernel
            used = await _bufused(session)
            left = max(0, used - self.base)
            if progress is not None:
                progress(max(0, total - left), total)
            if left <= settled:
                break
            now = clock.seconds()
            if now > deadline:
                raise StreamError(f"the endpoint had not sent {left} of {total} bytes in time")
            await _sleep(session, end_poll(poll, last, now, left))
            last = (now, left)
        # So BUFUSED alone cannot say the last block left: release the held ntags (before
        # TEST_END, after which the server closes the data stream and the endpoint drops
        # what it holds for the socket); the last block's ntag comes once it was sent.
        await set_notifmask(session, self.sktid, 0)
        times: list[int] = []
        for d in self.ntags:
            d.addTimeout(10.0, clock)
            times.append((await d).time)
        self.ntags.clear()
        ctl.send_state(State.TEST_END)
        result.data_start = "test-start" if self.head else "cookie"
        if self.test_start:
            result.setup_us = (self.test_start - self.start) / 1e3
        if self.head:  # the reflex sent its head once, all of it
            status = await session.reflex_status(self.ctl_sktid)
            if status.sent != HEAD_COUNT + 1 or status.denied:
                raise StreamError(
                    f"the upload's start reflex sent {status.sent} of {HEAD_COUNT + 1} "
                    f"sends ({status.denied} refused, stat {status.stat})"
                )
        stamps = list(zip(self.cums, times, strict=True))
        if self.flow is not None:  # the cookie at the scheduled start, each block at its ntag
            self.flow.sent(self.start, self.key)
            if self.head:  # the reflex's head (no ntags): when TEST_START came
                self.flow.sent(self.test_start, bytes(self.head))
            for size, t in zip(self.sizes, times, strict=True):  # every block is tagged
                self.flow.sent(t, bytes(size))
        result.chunks = len(self.sizes) + (HEAD_COUNT + 1 if self.head else 0)
        result.start_ns = self.test_start if self.head else times[0]
        try:
            b, t0, t1 = rate_after(stamps, total, result.skip)
        except ValueError:
            return  # too few blocks past the skip: the server's figure stands alone
        result.sender_mbit_s = mbit(total - b, t1 - t0)
