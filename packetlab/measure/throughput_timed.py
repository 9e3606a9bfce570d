"""iperf3's time-limited, parallel and UDP tests through an endpoint, with interval
reports (`pktlab run throughput -t/-P/-u/-b/-i`), against a stock iperf3 server.

The control connection is `throughput_control`'s, as `throughput.py`'s is (the protocol:
packetlab.measure.iperf3), with native `iperf3 -c`'s parameters for -t/-n, -P, -u, -b,
-l and -R. Every figure is timed by the endpoint:

* The test's clock starts at the endpoint's receive stamp of TEST_START, as iperf3's
  client starts its own when TEST_START arrives.
* Download (-R): the data sockets' ndata flow to the controller as they come (nothing is
  held: a time-limited test has no size to budget for); each counts at its receive
  stamp. TEST_END is an nsend on the control connection scheduled at TEST_START + T, so
  the endpoint ends the test at the nanosecond; what was received by then counts. With
  -n/-k instead, TEST_END goes once iperf3's reads brought N bytes, or were N (all streams
  together; `throughput_reads`).
  UDP: each datagram's number and send time (iperf3's header) give loss and jitter as
  iperf3's receiver computes them, with the endpoint's receive stamp as the arrival.
* Upload: TCP blocks (128 KiB) go unscheduled, a window of them queued per stream, each
  with an ntag; the ntag's time (the block handed to the kernel) counts it, as iperf3's
  sender counts a write. TEST_END is scheduled at the endpoint for TEST_START + T, as
  iperf3's timer sends it (the blocks still queued are not waited for). With -b (and
  always for UDP) the sends are scheduled instead: block k of a stream at
  `first + k * len * 8 / rate`, computed here and sent by the endpoint at that time (the
  PacketLab way: no timer at the controller), queued up to 0.5 s ahead as the test goes
  (that horizon reached gradually from the first send's 20 ms lead). A paced test's T
  seconds run from its first send (TEST_END scheduled for its end); a send whose ntag
  came over 1 ms after its time is counted as late (`late_sends`: the sends did not
  reach the endpoint in time).
  Each UDP datagram carries iperf3's header with its scheduled time and number; the
  server's jitter, loss and total come back in the results exchange.
* `-i`: an interval is reported once a stamp past its end arrived (or at the end).
* TCP upload: iperf3's sender columns, `Retr` and `Cwnd`, from the endpoint's TCP_INFO
  sample (SKT_TCPINFO, ours): read for every stream as each interval closes and once at
  the end (the sender's total). An endpoint without it (the reference) has no columns.

The receiver's figure is the test's `mbit_s`: ours (endpoint stamps) for a download, the
iperf3 server's for an upload, as in `throughput.py`; both sides' figures are kept.

This module opens the streams and runs the control exchange; the parts: `throughput_spec`
(the options), `throughput_streams` (the state both directions share: counts, interval
reports, TCP_INFO samples), `throughput_receive` and `throughput_send` (each direction's
half), `throughput_reads` (iperf3's reads, for -R -n/-k), `throughput_file` (-F),
`throughput_result` (the record).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred

from packetlab.clockstep import steady
from packetlab.controller import (
    AddressLike,
    ControllerError,
    EndpointSession,
    RequestFailed,
    SendFailed,
    deferred_api,
    parse_address,
    read_socket_info,
    read_system_info,
    read_tcp_info,
    wait_connected,
)
from packetlab.measure import iperf3
from packetlab.measure.iperf3 import DEFAULT_PORT, Iperf3Error, State
from packetlab.measure.pcap import PcapRecorder
from packetlab.measure.stream import StreamError, connect_failure
from packetlab.measure.throughput_control import (
    ThroughputError,
    admitted,
    closed_by_server,
    native_error,
)
from packetlab.measure.throughput_file import DiskFile
from packetlab.measure.throughput_pcap import TimedCapture
from packetlab.measure.throughput_reads import Reads
from packetlab.measure.throughput_receive import Receiving
from packetlab.measure.throughput_result import TimedResult, side
from packetlab.measure.throughput_send import Sending
from packetlab.measure.throughput_spec import TimedSpec
from packetlab.measure.throughput_streams import Flow, OnInterval, OnProgress, fork
from packetlab.wire import Family
from packetlab.wire.constants import MAX_MSGQ_LEN, NDATA_MAX

__all__ = ["TimedResult", "TimedSpec", "timed_test"]

RBUF = 4 << 20  # download: each data socket's receive budget at the endpoint
#: TCP download (and --bidir's receiving half): the receiving sockets' budgets together.
#: An endpoint stops reading requests while 100 frames wait for the controller (PROTOCOL.md
#: §1.4 step 4, MAX_MSGQ_LEN), and it keeps reading data as long as the budgets allow:
#: budgets worth more than 100 ndata of NDATA_MAX bytes let a download faster than the
#: controller keep it there, every request unread (--bidir -P 2 with 4 MiB each: the
#: sends, TEST_END and the nclose stuck behind 128 queued ndata while the server sent on,
#: until it gave up 40 s later). Half of it leaves room for the ntags and answers.
RX_TOTAL = MAX_MSGQ_LEN // 2 * NDATA_MAX
CONNECT_WAIT = 10.0
#: -B with an address the endpoint does not have: iperf3's bind() fails so (strerror)
EADDRNOTAVAIL = "Cannot assign requested address"


class _Test(Receiving, Sending):
    """One test's data streams once the server asked for them: both halves, opened, and
    the results."""

    #: UDP's -l taken from the control connection (none given): iperf3 -V says so
    udp_block_chosen = False

    async def open(self, key: bytes) -> None:
        spec, session = self.spec, self.session
        family = Family.IP6 if self.addr.version == 6 else Family.IP4
        info = await read_system_info(session)
        n = spec.sockets
        rbuf = max(256 << 10, min(RBUF, (info.bufmax - info.bufused) // (n + 1)))
        if not spec.udp:  # see RX_TOTAL (a sending stream receives nothing)
            rbuf = max(NDATA_MAX, min(rbuf, RX_TOTAL // spec.streams))
        for i, (sid, label) in enumerate(
            zip(iperf3.stream_ids(n), iperf3.display_ids(n, spec.fd_offset), strict=True)
        ):
            lport = spec.cport + i if spec.cport is not None else 0
            try:
                sktid = session.free_sktid()
                if spec.udp:
                    sock = await session.nopen_udp(sktid, family=family, rbufsz=rbuf,
                                                   laddr=spec.bind, lport=lport,
                                                   buffer=False)  # fmt: skip
                else:
                    sock = await session.nopen_tcp_connect(
                        sktid,
                        self.addr,
                        self.port,
                        laddr=spec.bind,
                        rbufsz=rbuf,
                        lport=lport,
                        buffer=False,
                    )
            except RequestFailed as e:
                if lport and e.name != "ENORES":
                    raise ThroughputError(
                        f"--cport {spec.cport}: the endpoint could not open stream {i + 1} "
                        f"from its port {lport}: {e} (the port in use?)"
                    ) from None
                if e.name == "ENORES":
                    raise ThroughputError(
                        f"-P {spec.streams}: the endpoint refused stream {i + 1} (ENORES: its "
                        f"max_socket_count, the certificate's socket quota, is used up with "
                        f"{i + 1} sockets open); ask for fewer streams"
                    ) from None
                raise
            except ControllerError as e:
                raise ThroughputError(
                    f"-P {spec.streams}: stream {i + 1} cannot be opened: {e} (the endpoint's "
                    "socket ids, 256 a session, are shared with the control connection)"
                ) from None
            flow = Flow(sid, label, sktid, spec.direction_of(i))
            flow.disk = self.disks[i] if self.disks else None
            if self.rx_total is not None and flow.direction == "download":
                flow.reads = Reads(spec.block)
            self.flows.append(flow)
            sock.add_callback(partial(self._note, flow))
            if spec.udp and self.capture is not None:
                sinfo = await read_socket_info(session, sktid)
                local = sinfo.laddr
                if local is None or local.is_unspecified:  # unbound: the endpoint's address
                    mine = [a for a in info.addresses if a.version == self.addr.version]
                    local = self.addr if self.addr.is_loopback or not mine else mine[0]
                self.capture.udp(label, local, sinfo.lport, self.addr, self.port)
            if spec.udp:
                flow.reply = Deferred()
                try:
                    await session.nsend(sktid, iperf3.UDP_CONNECT_MSG, to=(self.addr, self.port))
                except BaseException:
                    flow.reply.addErrback(lambda _: None)
                    flow.reply.cancel()
                    raise
                flow.reply.addTimeout(CONNECT_WAIT, session.reactor)
                try:
                    await flow.reply
                except defer.TimeoutError:
                    raise StreamError(
                        f"the iperf3 server did not answer UDP stream {i + 1}'s connect "
                        f"datagram within {CONNECT_WAIT:g} s (UDP to {self.addr}:{self.port} "
                        "blocked?)"
                    ) from None
            else:
                asked = steady(session.reactor)
                est = await wait_connected(session, sktid, timeout=CONNECT_WAIT)
                session.nsend(sktid, key).addErrback(lambda _: None)
                if self.capture is not None:
                    sinfo = await read_socket_info(session, sktid)
                    started = est.time - int((steady(session.reactor) - asked) * 1e9)
                    self.capture.tcp(label, sinfo.laddr or self.addr, sinfo.lport, self.addr,
                                     self.port, min(started, est.time), est.time)  # fmt: skip
                    self.capture.sent(label, est.time, len(key), key)

    def figures(self, tcp: dict[int, Any] | None = None) -> list[dict[str, Any]]:
        """Our results for the server, each stream as iperf3 3.12's client sends them
        (recorded beside it: test_throughput_control_as_iperf3): a TCP stream's packets
        0, a TCP sender's retransmits (`tcp`: its TCP_INFO, when the endpoint gave it), a
        UDP receiver's jitter and lost datagrams."""
        seconds, udp, out = self.seconds(), self.spec.udp, []
        for f in self.flows:
            if f.direction == "upload":
                retr = -1
                if not udp and tcp is not None and f.label in tcp:
                    retr = int(tcp[f.label].total_retrans)
                out.append(iperf3.result_stream(
                    f.sid, f.queued - f.omitted_bytes, seconds, retransmits=retr,
                    packets=f.sent_packets - f.omitted_packets if udp else 0))  # fmt: skip
            elif udp:
                lost, packets, _ooo = self._udp_counts(f)
                out.append(iperf3.result_stream(f.sid, f.bytes, seconds, packets=packets,
                                                jitter=f.udp.jitter, errors=lost))  # fmt: skip
            else:
                out.append(iperf3.result_stream(f.sid, f.bytes, seconds))
        return out

    def has_retransmits(self, tcp: dict[int, Any] | None) -> int:
        """Our "sender_has_retransmits", as iperf3 3.12's: -1 not sending (-R), 0 sending
        UDP (or TCP without the endpoint's TCP_INFO), 1 sending TCP with it."""
        if all(f.direction != "upload" for f in self.flows):
            return -1
        return 0 if self.spec.udp or not tcp else 1

    def seconds(self) -> float:
        """The counted test's span (after -O's pre-test)."""
        begin = max(self.t0, self.counted_from)
        end = self.end if self.end is not None else max(self.latest, begin)
        return max(0, end - begin) / 1e9

    def _udp_counts(self, f: Flow) -> tuple[int, int, int]:
        """A UDP download stream's (lost, packets, out of order) after -O's pre-test."""
        mark = f.omit_mark if self.omit_ns else (0, 0, 0)
        if mark is None:  # nothing came after the pre-test
            mark = (f.udp.lost, f.udp.packets, f.udp.out_of_order)
        return (f.udp.lost - mark[0], f.udp.packets - mark[1], f.udp.out_of_order - mark[2])

    def finish(self) -> None:
        self.counted = True
        self._close_omitted(self.end if self.end is not None else self.latest)
        if self.intervals is not None and (self.end or self.latest) >= self.counted_from:
            end = self.end if self.end is not None else self.latest
            for rec in self.intervals.finish(end):
                self._emit(rec)

    def streams(
        self, server: dict[int, dict[str, float]], tcp: dict[int, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Both sides' figures per stream; `tcp`: TCP upload, the streams' TCP_INFO at the
        end (the sender's retransmits, iperf3's Retr)."""
        spec, seconds = self.spec, self.seconds()
        out = []
        for f in self.flows:
            theirs = server.get(f.sid)
            if theirs is None:
                raise Iperf3Error(
                    f"the iperf3 server {self.ctl.peer}: its results lack stream {f.sid}"
                )
            mine: dict[str, Any]
            if f.direction == "download":
                extra: dict[str, Any] = {}
                theirs_extra: dict[str, Any] = {}
                if spec.udp:
                    lost, packets, ooo = self._udp_counts(f)
                    extra = {"packets": packets, "lost": lost,
                             "jitter_ms": round(f.udp.jitter * 1e3, 6),
                             "out_of_order": ooo}  # fmt: skip
                    # the server's total less what we saw in -O's pre-test, as iperf3's
                    # client (3.12: the server's results count the pre-test in)
                    pre = f.udp.packets - packets
                    theirs_extra = {"packets": max(0, int(theirs["packets"]) - pre)}
                mine = side(f.bytes, seconds, **extra)
                if not spec.udp and theirs.get("retransmits", -1) >= 0:
                    theirs_extra["retransmits"] = int(theirs["retransmits"])  # the server's count
                if spec.bidir and f.label in self.rtts:  # iperf3 --bidir: its receiving
                    theirs_extra.update(self.rtts[f.label].fields())  # socket's, as native
                other = side(int(theirs["bytes"]), theirs["seconds"], **theirs_extra)
                out.append({"id": f.label, "sender": other, "receiver": mine})
                if spec.bidir:
                    out[-1]["role"] = "RX-C"
            else:
                extra = {"packets": f.packets} if spec.udp else {}
                if tcp is not None and f.label in tcp:
                    extra["retransmits"] = tcp[f.label].total_retrans
                    if f.label in self.rtts:
                        extra.update(self.rtts[f.label].fields())
                mine = side(f.bytes, seconds, **extra)
                extra = {}
                if spec.udp:  # the server's total less our pre-test's sends, as iperf3's
                    pre = f.omitted_packets
                    extra = {"packets": max(0, int(theirs["packets"]) - pre),
                             "lost": int(theirs["errors"]),
                             "jitter_ms": round(theirs["jitter"] * 1e3, 6)}  # fmt: skip
                other = side(int(theirs["bytes"]), theirs["seconds"], **extra)
                out.append({"id": f.label, "sender": mine, "receiver": other})
                if spec.bidir:
                    out[-1]["role"] = "TX-C"
        return out

    async def _udp_local(self) -> Any:
        """The address an unbound UDP socket sends from (iperf3 connects its UDP sockets and
        shows that one): -B's, the server's on loopback, else the endpoint's first of its
        family."""
        if self.spec.bind is not None:
            return parse_address(self.spec.bind)
        if self.addr.is_loopback:
            return self.addr
        mine = [a for a in (await read_system_info(self.session)).addresses
                if a.version == self.addr.version]  # fmt: skip
        return mine[0] if mine else None

    async def connected(self, key: bytes = b"") -> dict[str, Any]:
        """iperf3's `connected` list: each stream's local and remote address and port (the
        endpoint's side; an unbound UDP socket the address it sends from), and the test's
        cookie (iperf3 -V and -J show it)."""
        infos = [read_socket_info(self.session, f.sktid) for f in self.flows]
        try:  # iperf3 -V's "TCP MSS" and -J's tcp_mss_default: the control connection's
            ctl_info = await read_tcp_info(self.session, self.ctl.stream.sktid)
        except ControllerError:
            ctl_info = None
        streams = []
        for f, d in zip(self.flows, infos, strict=True):
            info = await d
            local = info.laddr
            if self.spec.udp and (local is None or local.is_unspecified):
                local = await self._udp_local()
            streams.append({"id": f.label, "local_host": str(local or ""),
                            "local_port": info.lport, "remote_host": str(self.addr),
                            "remote_port": self.port})  # fmt: skip
        return {
            "type": "connected",
            "server": str(self.addr),
            "port": self.port,
            "direction": "bidir" if self.spec.bidir else self.spec.direction,
            "protocol": "udp" if self.spec.udp else "tcp",
            "streams": streams,
            "cookie": key.rstrip(b"\0").decode(errors="replace"),
            # 0: an endpoint without SKT_TCPINFO (the reference)
            "tcp_mss": ctl_info.snd_mss if ctl_info is not None else 0,
            # the test as the server was told (iperf3 -V's "Starting Test" line)
            "parallel": self.spec.streams, "length": self.spec.block, "omit": self.spec.omit,
            "time": self.spec.told_seconds, "bytes_limit": self.spec.nbytes,
            "blocks": self.spec.blocks, "bitrate": self.spec.rate,
            **({"udp_block_chosen": True} if self.udp_block_chosen else {}),
        }  # fmt: skip

    async def close(self) -> None:
        for disk in self.disks:
            disk.close()
        for d in self.ntags:
            d.addErrback(lambda _: None)
        for e in (self.emitting, self.final):  # a test that failed: samples not awaited
            if e is not None:
                e.addErrback(lambda _: None)
        for f in self.flows:
            if self.session.find_socket(f.sktid) is not None:
                try:
                    await self.session.nclose(f.sktid)
                except ControllerError:
                    pass


def _server_results(
    results: dict[str, Any],
) -> tuple[dict[int, dict[str, float]], str | dict[str, Any] | None, dict[str, Any]]:
    """The server's figures per stream, its own report (--get-server-output), and what it
    says of itself (-J's remote CPU figures and congestion control)."""
    return iperf3.server_streams(results), iperf3.server_output(results), iperf3.remote(results)


async def _bind_refused(session: EndpointSession, bind: str, server: Any) -> str | None:
    """-B: None when `bind` is one of the endpoint's addresses, of the server's family;
    else the one line saying why, naming the endpoint's addresses (iperf3 would fail its
    bind(): "Cannot assign requested address")."""
    import ipaddress

    try:
        want = ipaddress.ip_address(bind)
    except ValueError:
        return f"-B {bind}: not an IP address (the endpoint's local address is wanted)"
    mine = (await read_system_info(session)).addresses
    if want not in mine:
        listed = ", ".join(str(a) for a in mine) or "none"
        return (
            f"-B {bind}: not an address of the endpoint (its addresses: {listed}); iperf3 "
            f"would fail to bind it ({EADDRNOTAVAIL})"
        )
    if want.version != server.version:
        return (
            f"-B {bind}: an IPv{want.version} address, but the server {server} is "
            f"IPv{server.version}"
        )
    return None


async def _udp_block(session: EndpointSession, ctl_sktid: int) -> int:
    """UDP's -l when none is given: iperf3 3.12 takes its control connection's MSS (32768
    on loopback, 1448 over Ethernet with timestamps), else 1460; ours is the endpoint's
    control connection's (its TCP_INFO; 1460 from an endpoint without SKT_TCPINFO)."""
    try:
        info = await read_tcp_info(session, ctl_sktid)
    except ControllerError:
        info = None
    if info is None or not 16 <= info.snd_mss <= iperf3.MAX_UDP_BLOCK:
        return iperf3.DEFAULT_UDP_BLOCK
    return int(info.snd_mss)


async def _both(*steps: Any) -> None:
    """Run coroutines at once; the first failure is raised, the others cancelled (a
    refused upload half must not leave the receiving half to send TEST_END, or poll the
    endpoint's clock, after the test ended)."""
    ds = [Deferred.fromCoroutine(step) for step in steps]
    try:
        await defer.gatherResults(ds, consumeErrors=True)
    except defer.FirstError as e:
        for d in ds:
            d.cancel()  # a no-op on those done
        e.subFailure.raiseException()


@deferred_api
async def timed_test(
    session: EndpointSession,
    server: AddressLike,
    port: int = DEFAULT_PORT,
    *,
    spec: TimedSpec,
    timeout: float | None = None,
    on_interval: OnInterval | None = None,
    progress: OnProgress | None = None,
    stopping: Callable[[], bool] | None = None,
    on_connected: OnInterval | None = None,
    recorder: PcapRecorder | None = None,
) -> TimedResult:
    """One iperf3 test as `spec` says, timed by the endpoint. `on_interval` gets each -i
    interval as it completes ({"start", "end", "seconds", "streams": [{"id", "bytes",
    "packets", "bits_per_second"}], "sum"}). `stopping` is polled: once true the test
    ends early with what was measured, as iperf3 on Ctrl-C. `on_connected` gets the
    streams' addresses once they are open (iperf3's `connected`, type "connected").
    `timeout` bounds the transfer
    (default: the test's time + 30 s). `recorder` gets the control connection's packets and
    the data streams' (`throughput_pcap`: payloads cut to 64 bytes, built after the test;
    `pcap_dropped` in the record counts those past its bound). Failures after the start
    come back in `error`; a spec iperf3
    would refuse raises ValueError, one the endpoint cannot serve ThroughputError."""
    spec.check()
    addr = parse_address(server)
    if timeout is None:
        timeout = (spec.seconds or 0) + 30.0
    result = TimedResult(spec, str(addr), port)
    if spec.bind is not None:
        result.error = await _bind_refused(session, spec.bind, addr)
        if result.error is not None:
            if "not an address of the endpoint" in result.error:  # iperf3's bind() fails
                result.native_error = f"unable to connect to server: {EADDRNOTAVAIL}"
            return result
    try:
        ctl, key = await admitted(session, addr, port, recorder, laddr=spec.bind,
                                   timeout=spec.connect_timeout, debug=spec.debug)  # fmt: skip
    except Iperf3Error as e:
        result.error = str(e)
        result.native_error = native_error(e, result.error)
        return result
    except ControllerError as e:
        result.error = connect_failure(e, addr, port)
        result.native_error = native_error(e, result.error)
        return result
    test = _Test(session, spec, addr, port, ctl, on_interval, progress)
    test.should_stop = stopping
    if spec.file is not None:
        try:
            for _ in range(spec.streams):
                test.disks.append(DiskFile(spec.file, sending=spec.direction == "upload"))
        except OSError as e:
            result.error = f"-F {spec.file}: {e.strerror or e}"
            for disk in test.disks:
                disk.close()
            await ctl.stream.close()
            return result
    if recorder is not None:
        test.capture = TimedCapture(recorder)
    try:
        if spec.udp and spec.length is None:
            spec.length = await _udp_block(session, ctl.stream.sktid)
            test.udp_block_chosen = True
        params = iperf3.timed_parameters(
            udp=spec.udp, seconds=spec.told_seconds, nbytes=spec.nbytes, blocks=spec.blocks,
            streams=spec.streams,
            reverse=spec.direction == "download" and not spec.bidir, length=spec.block,
            bitrate=spec.rate, wide_counters=spec.wide, omit=spec.omit, bidir=spec.bidir,
            extra_data=spec.extra_data, get_server_output=spec.server_output,
            repeating_payload=spec.repeating_payload, authtoken=spec.authtoken,
            title=spec.title, pacing_timer=spec.pacing_timer, burst=spec.burst,
            server_sockopts=spec.server_sockopts,
        )  # fmt: skip
        ctl.send_json(params)
        try:
            await ctl.expect(State.CREATE_STREAMS)
        except Iperf3Error as e:  # iperf3 3.12's server fails the test, saying nothing more
            if spec.authtoken is None or "failed" not in str(e):
                raise
            raise Iperf3Error(
                f"{e}: test authorization failed (iperf3's words): a user, password or key "
                "the server does not take, or clocks further apart than its skew threshold",
                native="test authorization failed",
            ) from None
        await test.open(key)
        if on_connected is not None:
            on_connected(await test.connected(key))
        await ctl.expect(State.TEST_START, timeout=CONNECT_WAIT)
        test.started(ctl.time)
        await ctl.expect(State.TEST_RUNNING)
        test.watch_control()  # a server gone mid-test fails it at once, as iperf3's
        if spec.bidir:  # both at once; the receiving half's TEST_END ends the test
            await _both(test.upload(timeout), test.download(timeout))
        elif spec.direction == "download":
            await test.download(timeout)
        else:
            await test.upload(timeout)
        await ctl.expect(State.EXCHANGE_RESULTS, timeout=timeout)
        await test.drained()
        test.finish()
        tcp: dict[int, Any] | None = None  # the sender's Retr (the last interval's too)
        if test.final is not None:
            tcp = await fork(test.final)
        if tcp is not None:
            test.note_sample(tcp)
        if test.emitting is not None:
            await test.emitting  # the intervals shown before the totals
        ours = iperf3.timed_client_results(
            test.figures(tcp), has_retransmits=test.has_retransmits(tcp)
        )
        ctl.send_json(ours)
        theirs, output, result.remote = await ctl.read_json(_server_results)
        test.show_held(result.remote.pop("sender_has_retransmits", None))
        if spec.server_output:  # an iperf3 3.12 server keeps sending it after one asked
            result.server_output = output
        result.streams = test.streams(theirs, tcp)
        result.seconds = round(test.seconds(), 6)
        result.stopped = test.stopped
        if test.tagged:
            result.late = (test.late, test.tagged, round(test.late_max / 1e6, 3))
        await ctl.expect(State.DISPLAY_RESULTS)
        ctl.send_state(State.IPERF_DONE)
        await closed_by_server(ctl.stream)
    except (Iperf3Error, StreamError, RequestFailed, SendFailed, ThroughputError) as e:
        result.error = str(e)
        result.native_error = native_error(e, result.error)
    except defer.TimeoutError:
        result.error = f"the endpoint's notifications did not come within {timeout:g} s"
    finally:
        test.show_held()  # a test that failed after its end: its last interval all the same
        await test.close()
        await ctl.stream.close()
        if test.capture is not None:  # the packets built now, after the test
            result.pcap_dropped = test.capture.dropped
            test.capture.write()
    return result
