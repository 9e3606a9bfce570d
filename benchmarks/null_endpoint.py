"""A do-nothing endpoint: the least an endpoint can do per request, to show that the
benchmark's controller is not what limits a measure (`bench_endpoint.py`: the "controller
ceiling" column).

It connects to the controller (TLS 1.3 client over stdlib `ssl.SSLObject` memory BIOs,
one record per frame both ways, or plain TCP) and answers every request of one read at
once, in one `send`: `mread` with 8 zero bytes, anything else with SUCCESS. The measured
flows are answered from answers sealed before they start, so that this endpoint costs
next to nothing per request:

* nsend: the controller announces a flow on this process's stdin (`nsend COUNT`, written
  before its nopen; `Endpoint.plan`). The answers (a SUCCESS and an ntag with the
  flow's tags 1, 2, ... per nsend) are sealed before the nopen's own answer goes out;
  during the flow the requests' records are only counted by their headers, each answered
  with the next pre-sealed pair; after the flow every request is opened and checked to be
  the nsend it was taken for (socket, tag): if not, this process says so and exits 1.
  Without a plan, nsends are answered live (the datagram is never sent).
* TCP nopen: the source is read to its end first, then its byte count goes out as
  sealed 64 KiB ndata frames in one `sendall`, then an nstat PEERCLOSED.

    python -m benchmarks.null_endpoint HOST[:PORT] [--tls]   (as the endpoint reads it)
"""

from __future__ import annotations

import select
import socket
import ssl
import sys
import time
from typing import cast

from benchmarks.common import help_requested
from benchmarks.raw_flow import FrameSplitter, RecordOpener, nsend_tags, seal_frames, walk_units
from packetlab.endpoint import frames
from packetlab.hostport import split_host_port

T_NSEND, T_MREAD, T_NOPEN = 0x2C, 0x28, 0x2A
_OK = frames.result(0)
PEERCLOSED = 3


class Link:
    """The endpoint's end of the link: `raw` holds what was received and not yet handled;
    whole records only go into OpenSSL (`RecordOpener`), so the raw stream can be counted
    without opening it and opened later."""

    def __init__(self, sock: socket.socket, tls: bool) -> None:
        self.sock = sock
        self.tls = tls
        self.raw = bytearray()
        self.chunk = memoryview(bytearray(1 << 20))
        self.view = memoryview(bytearray(1 << 21))  # plaintext of one read's records
        self.splitter = FrameSplitter()
        self.opener: RecordOpener | None = None
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_side=False)
            while True:
                try:
                    self.obj.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    self._push()
                    if not self.fill():
                        raise ConnectionError("closed during the handshake") from None
                    self.incoming.write(bytes(self.raw))
                    self.raw.clear()
            self._push()
            self.raw += self.incoming.read()  # records after the handshake: opened later
            self.opener = RecordOpener(self.obj, self.incoming)

    def _push(self) -> None:
        if self.outgoing.pending:
            self.sock.sendall(self.outgoing.read())

    def fill(self) -> bool:
        """One read into `raw`; False at the end of the stream."""
        n = self.sock.recv_into(self.chunk)
        self.raw += self.chunk[:n]
        return n > 0

    def take_one(self) -> bytes:
        """The one whole unit `raw` holds, if that is all it holds (a round trip), else b""."""
        raw, size = self.raw, len(self.raw)
        if self.tls:
            whole = size >= 5 and 5 + (raw[3] << 8 | raw[4]) == size
        else:
            whole = size >= 4 and 4 + (raw[1] << 16 | raw[2] << 8 | raw[3]) == size
        if not whole:
            return b""
        data = bytes(raw)
        raw.clear()
        return data

    def take(self, limit: int = -1) -> tuple[bytes, int]:
        """The whole units (records, or frames on plain TCP) at the front of `raw`, at most
        `limit` of them: their bytes, unopened, and their count."""
        w = walk_units(self.raw, 0, len(self.raw), self.tls, limit=limit)
        data = bytes(self.raw[: w.pos])
        del self.raw[: w.pos]
        return data, w.count

    def frames(self, data: bytes) -> list[tuple[int, bytes, int]]:
        """The frames of the whole units `data` (opened, on TLS)."""
        if self.opener is None:
            return list(self.splitter.feed(data, 0))
        self.incoming.write(data)  # whole records: OpenSSL is left at a record boundary
        read, view = self.obj.read, self.view
        out: list[tuple[int, bytes, int]] = []
        total, room = 0, len(self.view) - (1 << 14)
        while True:
            try:
                while total < room:
                    total += cast(int, read(len(view) - total, view[total:]))
            except ssl.SSLWantReadError:
                return out + list(self.splitter.feed(bytes(view[:total]), 0))
            out += self.splitter.feed(bytes(view[:total]), 0)  # a big flow's requests
            total = 0

    def seal(self, out: list[bytes]) -> bytes:
        """One record per frame (plain TCP: the frames as they are)."""
        if self.opener is None:
            return b"".join(out)
        return seal_frames(self.obj, self.outgoing, out)

    def send(self, out: list[bytes]) -> None:
        self.sock.sendall(self.seal(out))


def plan() -> int:
    """The nsend count announced on stdin for the next flow, 0 if none."""
    if select.select([sys.stdin], [], [], 0)[0]:
        line = sys.stdin.readline().split()
        if len(line) == 2 and line[0] == "nsend":
            return int(line[1])
    return 0


def main(argv: list[str]) -> None:
    if help_requested(argv, __doc__):
        return
    host, port = split_host_port(argv[0], reference=True)  # as the endpoint: `[::1]:P` too
    link = Link(socket.create_connection((host, int(port or 20556))), "--tls" in argv)
    link.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        data = link.take_one()
        count = 1 if data else 0
        if not data:
            data, count = link.take()
        if not count:
            if not link.fill():
                return
            continue
        out: list[bytes] = []
        tcp: bytes | None = None
        flow: tuple[int, int] | None = None
        for kind, body, _ in link.frames(data):
            if kind == T_NSEND:  # body: sktid family proto time(8) tag(2) ...
                out += [_OK, frames.ntag(body[0], body[11] << 8 | body[12], time.time_ns())]
            elif kind == T_MREAD:  # body: addr(4) len(2)
                out.append(frames.mdata(int.from_bytes(body[:4], "big"), bytes(8)))
            else:
                out.append(_OK)
                if kind == T_NOPEN and body[2] == 6:  # TCP: the download
                    tcp = body
                elif kind == T_NOPEN and body[2] == 17 and (n := plan()):
                    flow = (body[0], n)
        if flow is not None:
            nsend_flow(link, out, *flow)
            continue
        link.send(out)
        if tcp is not None:
            download(link, tcp)


def nsend_flow(link: Link, out: list[bytes], sktid: int, count: int) -> None:
    """`out` (the nopen's answer) sent after the flow's `count` answer pairs are sealed;
    then every request record answered with the next pair, unopened; then every request
    opened and checked."""
    first = link.seal(out)
    tags = nsend_tags(count)
    now = time.time_ns()
    answers = link.seal([f for tag in tags for f in (_OK, frames.ntag(sktid, tag, now))])
    pair = len(answers) // count
    view = memoryview(answers)
    link.sock.sendall(first)
    requests: list[bytes] = []
    done = 0
    while done < count:
        data, n = link.take(count - done)
        if not n:
            if not link.fill():
                sys.exit("null endpoint: the controller closed during an nsend flow")
            continue
        link.sock.sendall(view[done * pair : (done + n) * pair])
        requests.append(data)
        done += n
    checked = 0
    for kind, body, _ in link.frames(b"".join(requests)):
        tag = body[11] << 8 | body[12] if kind == T_NSEND else -1
        if kind != T_NSEND or body[0] != sktid or tag != tags[checked]:
            sys.exit(
                f"null endpoint: request {checked} of the nsend flow was type {kind:#x} "
                f"socket {body[:1].hex()} tag {tag}, answered as nsend tag {tags[checked]}"
            )
        checked += 1
    if checked != count:
        sys.exit(f"null endpoint: {checked} frames in the {count} records of an nsend flow")


def download(link: Link, nopen: bytes) -> None:
    """Read the source to its end (1 MiB reads), then send that many bytes as 64 KiB ndata
    frames, sealed before the first goes out, with one `sendall`; then an nstat
    PEERCLOSED."""
    raddr, rport = socket.inet_ntoa(nopen[13:17]), int.from_bytes(nopen[17:19], "big")
    sktid = nopen[0]
    src = socket.create_connection((raddr, rport))
    src.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    link.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    chunk = memoryview(bytearray(1 << 20))
    got = 0
    while n := src.recv_into(chunk):
        got += n
    src.close()
    full = frames.ndata_tcp(sktid, 4, 6, 0, bytes(1 << 16))
    out = [full] * (got >> 16)
    if got & 0xFFFF:
        out.append(frames.ndata_tcp(sktid, 4, 6, 0, bytes(got & 0xFFFF)))
    out.append(frames.nstat_code(sktid, 4, 6, time.time_ns(), PEERCLOSED))
    link.sock.sendall(link.seal(out))


if __name__ == "__main__":
    main(sys.argv[1:])
