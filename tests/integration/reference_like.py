"""A reference-like endpoint for our controllers (session 23, ctlaudit23).

`ReferenceLike` sits between a listening controller (our API, `pktlab run --listen`,
`pktlab xpmgr`) and a real `twistd pktendpoint --insecure-plaintext` child, and makes the
pair behave toward the controller as the reference `pktendpt` 1.1.0 does where the two
differ (INTEROP.md, PROTOCOL.md [QUIRK]s, docs/endpoint.md "Differences"):

* **one message per wake-up**: after each readable wake-up of the TCP socket it reads one
  TLS record and handles at most one message; a second message already decrypted waits
  for the next bytes to arrive (the reference does not look inside OpenSSL's buffer);
* **header and body in two TLS records**, the body held back `body_delay` seconds (the
  reference's missing TCP_NODELAY meets the controller's delayed ACK: ~40 ms); with
  `nagle=True` the kernel's own Nagle does it instead;
* **no nstat after a failed TCP connect** (only STAT changes), **no ndrop**;
* **memory map**: a read that starts in a gap returns all zeros; LADDR/LPORT hold the
  nopen's values; the SKT_TCPINFO region (ours) reads zeros;
* **ncap on a TCP or UDP socket** kills the reference's worker: the session ends.

Everything else is our endpoint's behaviour. The shim records what the controller wrote
(`records`: frames per TLS record) so a test can check one record per request.
"""

from __future__ import annotations

import heapq
import itertools
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from packetlab import wire
from packetlab.wire import vmem

HEADER = 4

# The reference maps these fields and nothing else (PROTOCOL.md §2.2): LATLONG, OSINFO and
# everything past CTFL in a socket block are gaps.
_SYS_FIELDS = (
    vmem.IP4NO, vmem.IP6NO, vmem.TRANSSUP, vmem.BUFMAXDUP, vmem.IP4LS, vmem.IP6LS,
    vmem.TIME, vmem.BUFMAX, vmem.BUFUSED, vmem.IP4DNSNO, vmem.IP6DNSNO, vmem.IP4DNSLS,
    vmem.IP6DNSLS, vmem.IP4HDRMOD, vmem.IP6HDRMOD, vmem.HOSTID, vmem.NSENDTSTP,
)  # fmt: skip
_SKT_FIELDS = (
    vmem.SKT_FAMILY, vmem.SKT_PROTO, vmem.SKT_STAT, vmem.SKT_LADDR, vmem.SKT_RADDR,
    vmem.SKT_LPORT, vmem.SKT_RPORT, vmem.SKT_RBUFSZ, vmem.SKT_RBUFUSED, vmem.SKT_DROPSTAT,
    vmem.SKT_NSENDERR, vmem.SKT_NSENDERRTAG, vmem.SKT_NOTIFMASK, vmem.SKT_CTFL,
)  # fmt: skip


@contextmanager
def udp_responder(
    answer: Callable[[bytes], bytes | None], addr: tuple[str, int] = ("127.0.0.1", 0)
) -> Iterator[int]:
    """A UDP server on a thread for the tests' far ends: each datagram gets `answer(data)`
    back (None: no answer); yields its port, stopped and closed after."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(addr)
    except OSError:
        s.close()
        raise
    s.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = s.recvfrom(65536)
            except TimeoutError:
                continue
            reply = answer(data)
            if reply is not None:
                s.sendto(reply, peer)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield s.getsockname()[1]
    finally:
        stop.set()
        t.join(5)
        s.close()


def mapped_by_reference(addr: int) -> bool:
    if any(r.addr <= addr < r.addr + r.size for r in _SYS_FIELDS):
        return True
    if vmem.SKT_BASE <= addr < vmem.SKT_BASE + vmem.SKT_SPAN:
        off = (addr - vmem.SKT_BASE) % vmem.SKT_STRIDE
        return any(r.addr <= off < r.addr + r.size for r in _SKT_FIELDS)
    return False


def split_frame(buf: bytearray) -> bytes | None:
    if len(buf) < HEADER:
        return None
    n = HEADER + int.from_bytes(buf[1:4], "big")
    if len(buf) < n:
        return None
    frame = bytes(buf[:n])
    del buf[:n]
    return frame


def label(msg: wire.Message) -> str:
    """A message's name, with the address of an mread or mdata (`Mread@0x10010000`)."""
    name = type(msg).__name__
    return f"{name}@{msg.addr:#x}" if isinstance(msg, wire.Mread | wire.Mdata) else name


def count_frames(data: bytes) -> int:
    buf, n = bytearray(data), 0
    while split_frame(buf) is not None:
        n += 1
    return n


@dataclass
class Opened:
    nopen: wire.Nopen
    connecting: bool  # a TCP connect not yet ESTABLISHED


@dataclass
class ReferenceLike:
    """Connect to the controller at `port` (TLS with `home`'s endpoint chain, or plain)."""

    port: int
    backend: socket.socket  # our endpoint's plain connection
    home: Path | None = None
    body_delay: float = 0.0
    nagle: bool = False
    records: list[int] = field(default_factory=list)  # frames in each record we read
    requests: list[wire.Message] = field(default_factory=list)
    dropped: list[wire.Message] = field(default_factory=list)  # hidden from the controller
    crashed: str = ""  # why the "worker" died, if it did
    error: BaseException | None = None
    stalls: int = 0  # wake-ups that left a whole message unread behind the one handled
    # (monotonic, what, message): "C>E" a request handled, "E>C" an answer from our endpoint,
    # "body" its body written to the controller (after `body_delay`)
    trace: list[tuple[float, str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sockets: dict[int, Opened] = {}
        self._in = bytearray()  # controller bytes read, not yet handled
        self._back = bytearray()  # endpoint bytes read, not yet framed
        self._out: list[tuple[float, int, bytes, str]] = []  # (due, order, record, what) heap
        self._order = itertools.count()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    # -- the loop (one thread: an SSL object must not be used from two) --

    def _connect(self) -> None:
        # In the thread: the controller's side of the handshake needs its reactor running.
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=15)
        if not self.nagle:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.raw = raw
        if self.home is None:
            self.front: socket.socket = raw
        else:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE  # the PPKS chain is checked by the controller
            home = self.home
            ctx.load_cert_chain(str(home / "certs/subcmd_eop_ep.cert"), str(home / "keys/k_ep"))
            self.front = ctx.wrap_socket(raw)
            self.raw = self.front  # wrap_socket detached `raw`; select on the TLS socket's fd
        self.front.setblocking(False)
        self.backend.setblocking(False)

    def _run(self) -> None:
        try:
            self._connect()
            while not self._stop.is_set() and not self.crashed:
                now = time.monotonic()
                self._flush(now)
                wait = 0.05 if not self._out else max(0.0, min(0.05, self._out[0][0] - now))
                ready, _, _ = select.select([self.raw, self.backend], [], [], wait)
                if self.raw in ready and not self._from_controller():
                    break
                if self.backend in ready and not self._from_endpoint():
                    break
            try:
                self._flush(float("inf"))  # what the endpoint said before it went
            except OSError:
                pass
        except BaseException as e:  # reported by the test
            self.error = e
        finally:
            for s in (getattr(self, "front", None), self.backend):
                try:
                    if s is not None:
                        s.close()
                except OSError:
                    pass

    def _from_controller(self) -> bool:
        """One wake-up: one record read, at most one message handled."""
        try:
            data = self.front.recv(1 << 16)
        except (ssl.SSLWantReadError, BlockingIOError):
            return True  # a record that was no application data (a session ticket)
        except (ssl.SSLError, OSError):
            return False
        if not data:
            return False
        self.records.append(count_frames(data))
        self._in += data
        frame = split_frame(self._in)
        if frame is not None:
            if count_frames(bytes(self._in)):
                self.stalls += 1
            return self._request(frame)
        return True

    def _request(self, frame: bytes) -> bool:
        msg = wire.decode_frame(frame)
        self.requests.append(msg)
        self.trace.append((time.monotonic(), "C>E", label(msg)))
        if isinstance(msg, wire.Nopen):
            connecting = msg.proto == 6 and msg.raddr is not None
            self.sockets[msg.sktid] = Opened(msg, connecting)
        elif isinstance(msg, wire.Nclose):
            self.sockets.pop(msg.sktid, None)
        elif isinstance(msg, wire.Ncap):
            known = self.sockets.get(msg.sktid)
            if known is not None and known.nopen.proto in (6, 17):
                self.crashed = f"ncap on a proto {known.nopen.proto} socket (NULL raw object)"
                return False
        self.backend.sendall(frame)
        return True

    def _from_endpoint(self) -> bool:
        try:
            data = self.backend.recv(1 << 20)
        except BlockingIOError:
            return True
        if not data:
            return False
        self._back += data
        while (frame := split_frame(self._back)) is not None:
            self._answer(frame)
        return True

    def _answer(self, frame: bytes) -> None:
        msg = wire.decode_frame(frame)
        self.trace.append((time.monotonic(), "E>C", label(msg)))
        if isinstance(msg, wire.Ndrop):
            self.dropped.append(msg)  # never sent by 1.1.0
            return
        if isinstance(msg, wire.Nstat):
            known = self.sockets.get(msg.sktid)
            if known is not None and known.connecting:
                if msg.code != wire.NstatCode.ESTABLISHED:
                    self.dropped.append(msg)  # a failed connect only changes STAT
                    return
                known.connecting = False
        if isinstance(msg, wire.Mdata):
            frame = wire.encode(wire.Mdata(msg.addr, self._as_reference(msg.addr, msg.data)))
        now = time.monotonic()
        self._queue(now, frame[:HEADER], "")
        if len(frame) > HEADER:
            self._queue(now + self.body_delay, frame[HEADER:], label(msg))

    def _as_reference(self, addr: int, data: bytes) -> bytes:
        if not mapped_by_reference(addr):
            return bytes(len(data))
        out = bytearray(data)
        for i in range(len(out)):
            a = addr + i
            if not vmem.SKT_BASE <= a < vmem.SKT_BASE + vmem.SKT_SPAN:
                continue
            sktid, off = divmod(a - vmem.SKT_BASE, vmem.SKT_STRIDE)
            if not mapped_by_reference(a):
                out[i] = 0  # SKT_TCPINFO and the rest past CTFL
                continue
            known = self.sockets.get(sktid)
            if known is None:
                continue
            n = known.nopen
            if vmem.SKT_LADDR.addr <= off < vmem.SKT_LADDR.addr + vmem.SKT_LADDR.size:
                laddr = (n.laddr or b"").ljust(16, b"\0")
                out[i] = laddr[off - vmem.SKT_LADDR.addr]
            elif vmem.SKT_LPORT.addr <= off < vmem.SKT_LPORT.addr + 2:
                out[i] = (n.lport or 0).to_bytes(2, "big")[off - vmem.SKT_LPORT.addr]
        return bytes(out)

    def _queue(self, due: float, record: bytes, what: str) -> None:
        # Records leave in order: a later one never overtakes a held body.
        if self._out:
            due = max(due, max(d for d, _, _, _ in self._out))
        heapq.heappush(self._out, (due, next(self._order), record, what))

    def _flush(self, now: float) -> None:
        while self._out and self._out[0][0] <= now:
            _, _, record, what = heapq.heappop(self._out)
            self._write(record)
            if what:
                self.trace.append((time.monotonic(), "body", what))

    def _write(self, record: bytes) -> None:
        """One TLS record (the whole of `record`), waiting for room when the socket is full."""
        sent = 0
        while sent < len(record):
            try:
                sent += self.front.send(record[sent:])
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                select.select([], [self.raw], [], 1.0)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.thread.join(timeout)
