"""`--pcap` of iperf3's -t/-P/-u/-b/-i/-k tests (`throughput_timed`): the data streams'
packets as the endpoint sent and received them, kept small while the test runs and made
into packets (`pcap.PcapRecorder`) once it is over.

A timed test moves gigabytes (10 s at 5 Gbit/s), so unlike the fixed-size transfer's
file (every byte of its 25 MiB) each data packet is kept as a capture with a snap length
would keep it: its headers say its whole length, the record holds the first `SNAP`
payload bytes (iperf3's UDP header: its datagram number and send time). While the test runs a
packet costs one small append (`MAX_EVENTS` at most; later ones are counted, not kept), so
recording does not slow the endpoint's notifications down; the packets are built after.

Times: a received packet at its kernel receive stamp (ndata); a TCP block the endpoint
sent unpaced at its ntag (handed to the kernel); a paced send (-b, UDP) at its ntag too
when every send of its stream carries one (`throughput_send.TAGS_PER_S`), else at the time
the endpoint was told to send it (scheduled; only every k-th carries an ntag). A UDP stream's
connect datagram is shown at the time of the server's reply (it carries no ntag).
"""

from __future__ import annotations

import struct
from typing import Any

from packetlab.measure.pcap import PcapRecorder, TcpFlow

__all__ = ["MAX_EVENTS", "SNAP", "TimedCapture"]

SNAP = 64  # payload bytes kept per data packet
MAX_EVENTS = 250_000  # data packets kept per test (at the bound: +105 MB, 5 s to build)
_EVENT = struct.Struct("<qHBIB")  # time, stream index, sent, length, kept bytes


class TimedCapture:
    """The data streams of one timed test: registered as they open (`tcp`, `udp`), their
    packets noted (`sent`, `received`) and built into `recorder` by `write`."""

    def __init__(
        self, recorder: PcapRecorder, *, snap: int = SNAP, limit: int = MAX_EVENTS
    ) -> None:
        self.recorder, self.snap, self.limit = recorder, snap, limit
        self.events = bytearray()
        self.count = 0
        self.dropped = 0  # packets past `limit`, not kept
        self.latest = 0
        self._streams: list[TcpFlow | tuple[Any, int, Any, int]] = []
        self._index: dict[int, int] = {}

    def tcp(self, label: int, local: Any, lport: int, remote: Any, rport: int,
            started: int, established: int) -> None:  # fmt: skip
        flow = self.recorder.tcp(local, lport, remote, rport)
        flow.connected(started, established)
        self._add_stream(label, flow)

    def udp(self, label: int, local: Any, lport: int, remote: Any, rport: int) -> None:
        self._add_stream(label, (local, lport, remote, rport))

    def _add_stream(self, label: int, stream: TcpFlow | tuple[Any, int, Any, int]) -> None:
        self._index[label] = len(self._streams)
        self._streams.append(stream)

    def sent(self, label: int, time: int, length: int, head: bytes = b"") -> None:
        self._note(label, time, True, length, head)

    def received(self, label: int, time: int, data: bytes) -> None:
        self._note(label, time, False, len(data), data)

    def _note(self, label: int, time: int, sent: bool, length: int, data: bytes) -> None:
        i = self._index.get(label)
        if i is None:
            return
        if self.count >= self.limit:
            self.dropped += 1
            return
        head = bytes(data[: self.snap])
        self.events += _EVENT.pack(time, i, sent, length, len(head)) + head
        self.count += 1
        self.latest = max(self.latest, time)

    def write(self) -> None:
        """Build the packets into the recorder (the TCP streams closed at the last
        packet's time) and let the notes go."""
        data, off = self.events, 0
        recorder = self.recorder
        while off < len(data):
            time, i, sent, length, n = _EVENT.unpack_from(data, off)
            off += _EVENT.size
            head = bytes(data[off : off + n])
            off += n
            stream = self._streams[i]
            if isinstance(stream, TcpFlow):
                stream.truncated(time, bool(sent), length, head)
            else:
                local, lport, remote, rport = stream
                if sent:
                    recorder.udp_truncated(time, local, lport, remote, rport, length, head)
                else:
                    recorder.udp_truncated(time, remote, rport, local, lport, length, head)
        for stream in self._streams:
            if isinstance(stream, TcpFlow):
                stream.closed(self.latest, by_peer=False)
        self.events = bytearray()
        self.count = 0
