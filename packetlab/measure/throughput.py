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

from twisted.internet import defer
from twisted.internet.defer import Deferred

from packetlab.controller import (
    AddressLike,
    ControllerError,
    EndpointSession,
    RequestFailed,
    deferred_api,
    parse_address,
    read_socket_info,
    read_system_info,
    set_notifmask,
    wait_connected,
)
from packetlab.measure import iperf3
from packetlab.measure.iperf3 import DEFAULT_PORT, Iperf3Error, State
from packetlab.measure.pcap import PcapRecorder, TcpFlow
from packetlab.measure.stream import StreamError, connect_failure
from packetlab.measure.throughput_control import (
    ThroughputError,
    admitted,
    closed_by_server,
)
from packetlab.measure.throughput_download import HeldDownload, Progress
from packetlab.measure.throughput_figures import DEFAULT_BYTES, MIB, SKIP, ThroughputResult
from packetlab.measure.throughput_reads import server_total
from packetlab.measure.throughput_upload import BULK_AFTER, ScheduledUpload
from packetlab.wire import NotifMask, Ntag

__all__ = ["throughput"]


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
        ctl, key = await admitted(session, addr, port, recorder)
    except Iperf3Error as e:
        result.error = str(e)
        return result
    except ControllerError as e:
        result.error = connect_failure(e, addr, port)
        return result
    ctl_stream = ctl.stream
    data_sktid: int | None = None
    ntags: list[Deferred[Ntag]] = []  # upload: consumed here if the test fails
    upload: ScheduledUpload | None = None
    try:
        params = iperf3.parameters(nbytes, reverse=direction == "download")
        ctl_stream.send(iperf3.encode_json(params))
        await ctl.expect(State.CREATE_STREAMS)
        data_sktid = session.free_sktid()
        mask = NotifMask.NDATA if direction == "download" else NotifMask.NTAG
        transfer = HeldDownload(session, result, whole) if direction == "download" else None
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
            upload = ScheduledUpload(session, result, data_sktid)
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
        ours = iperf3.client_results(result.bytes, seconds, sending=direction == "upload")
        ctl_stream.send(iperf3.encode_json(ours))
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
        await closed_by_server(ctl_stream)  # the server is free for the next test
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
