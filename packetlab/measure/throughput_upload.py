"""The upload of the paper's fixed-size transfer (`ScheduledUpload`): every block queued
with nsends scheduled `lead` seconds ahead (the first HEAD_BYTES sent by the
`upload_start` reflex when TEST_START comes, where the endpoint runs reflexes), BUFUSED
polled until it falls back (`end_poll`: faster as the last bytes near the kernel), the
held ntags released, TEST_END; the sender's figure from the ntag stamps."""

from __future__ import annotations

from twisted.internet.defer import Deferred

from packetlab.clockstep import steady
from packetlab.controller import (
    ControllerError,
    EndpointSession,
    RequestFailed,
    read_time,
    set_notifmask,
)
from packetlab.measure import iperf3, upload_start
from packetlab.measure.iperf3 import State
from packetlab.measure.pcap import TcpFlow
from packetlab.measure.stream import StreamError
from packetlab.measure.throughput_control import Control, ThroughputError, read_u32, sleep
from packetlab.measure.throughput_download import Progress
from packetlab.measure.throughput_figures import ThroughputResult, mbit, rate_after
from packetlab.wire import Ntag, vmem

__all__ = [
    "BULK_AFTER",
    "HEAD_BYTES",
    "HEAD_COUNT",
    "HEAD_FIRST",
    "HEAD_SIZE",
    "HELD_NTAG_ROOM",
    "ScheduledUpload",
    "end_poll",
]

#: Upload with a reflex: its sends when TEST_START arrives (a small first one, so it goes
#: at once; the reflex's sends are copied out of its memory), and how long after the
#: cookie the scheduled rest begins: the server's set-up took 0.4-1.0 ms here, and the
#: head lasts 2.9 ms at 1 Gbit/s, so the link does not idle in between.
HEAD_FIRST, HEAD_COUNT, HEAD_SIZE = 16 * 1024, 7, upload_start.MAX_SEND
HEAD_BYTES = HEAD_FIRST + HEAD_COUNT * HEAD_SIZE
BULK_AFTER = 0.003
#: Buffer space an endpoint may keep per held ntag (the reference's per-message overhead,
#: 72 + 44 bytes, rounded up): BUFUSED settles that far above its start on an upload.
HELD_NTAG_ROOM = 128


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


class ScheduledUpload:
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
        self.base = await read_u32(session, vmem.BUFUSED.addr)
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
        self, ctl: Control, timeout: float, poll: float, progress: Progress | None
    ) -> None:
        session, total, result = self.session, self.result.bytes, self.result
        clock = session.reactor
        deadline = steady(clock) + timeout
        last: tuple[float, int] | None = None
        # What BUFUSED may keep once every block is with the kernel: an endpoint may keep
        # buffer space for each held ntag (§2.4; this project's keeps 116 bytes).
        settled = 4096 + HELD_NTAG_ROOM * len(self.ntags)
        while True:  # BUFUSED falls back once the last block went to the kernel
            used = await read_u32(session, vmem.BUFUSED.addr)
            left = max(0, used - self.base)
            if progress is not None:
                progress(max(0, total - left), total)
            if left <= settled:
                break
            now = steady(clock)
            if now > deadline:
                raise StreamError(f"the endpoint had not sent {left} of {total} bytes in time")
            await sleep(session, end_poll(poll, last, now, left))
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
