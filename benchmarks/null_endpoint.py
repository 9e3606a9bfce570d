"""A do-nothing endpoint: the least a Python endpoint can do per request, to show that
the benchmark's controller is not what limits a measure (`bench_endpoint.py --null`).

It connects to the controller (TLS 1.3 client over stdlib `ssl.SSLObject` memory BIOs, or
plain TCP), answers every request of one read at once, in one `send`, one record per
frame: `nsend` with a SUCCESS result and an ntag (the datagram is not sent), `mread` with
8 zero bytes, `nopen` of TCP by reading the source to its end and sending one constant
64 KiB ndata per 64 KiB read (`_relay`), then an nstat PEERCLOSED; anything else with
SUCCESS. Frames are found by their headers; nothing is decoded beyond the fields used.

    python -m benchmarks.null_endpoint HOST:PORT [--tls]
"""

from __future__ import annotations

import socket
import ssl
import struct
import sys
import time

from packetlab.endpoint import frames

T_NSEND, T_MREAD, T_NOPEN = 0x2C, 0x28, 0x2A
_OK = frames.result(0)
_NS = struct.Struct(">Q")
PEERCLOSED = 3


class Link:
    def __init__(self, sock: socket.socket, tls: bool) -> None:
        self.sock = sock
        self.obj: ssl.SSLObject | None = None
        self.view = memoryview(bytearray(1 << 18))
        self.raw = memoryview(bytearray(1 << 18))
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
                    self._feed()
            self._push()

    def _push(self) -> None:
        if self.outgoing.pending:
            self.sock.sendall(self.outgoing.read())

    def _feed(self) -> bool:
        n = self.sock.recv_into(self.raw)
        if not n:
            return False
        self.incoming.write(self.raw[:n])
        return True

    def recv(self) -> bytes:
        if self.obj is None:
            return self.sock.recv(1 << 16)
        read, view, total = self.obj.read, self.view, 0
        while True:
            try:
                while total < len(view):
                    total += read(len(view) - total, view[total:])
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:
                return bytes(view[:total])
            if total or not self._feed():
                return bytes(view[:total])

    def send(self, out: list[bytes]) -> None:
        if self.obj is None:
            self.sock.sendall(b"".join(out))
            return
        for frame in out:
            self.obj.write(frame)
        self._push()


def main(argv: list[str]) -> None:
    host, _, port = argv[0].rpartition(":")
    link = Link(socket.create_connection((host, int(port))), "--tls" in argv)
    link.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ntag_head = frames.ntag(0, 0, 0)[:5]  # header + sktid 0: the tag and time follow
    hdr = struct.Struct(">I")
    buf = b""
    while True:
        data = link.recv()
        if not data:
            return
        buf += data
        out: list[bytes] = []
        relay = None
        pos, end = 0, len(buf)
        while end - pos >= 4:  # frames scanned in place: no decoding beyond what is used
            (word,) = hdr.unpack_from(buf, pos)
            stop = pos + 4 + (word & 0xFFFFFF)
            if stop > end:
                break
            kind = word >> 24
            if kind == T_NSEND:  # body: sktid family proto time(8) tag(2) ...
                out.append(_OK)
                tag = buf[pos + 15 : pos + 17]
                out.append(ntag_head[:4] + buf[pos + 4 : pos + 5] + tag + _NS.pack(time.time_ns()))
            elif kind == T_MREAD:  # body: addr(4) len(2)
                out.append(frames.mdata(int.from_bytes(buf[pos + 4 : pos + 8], "big"), bytes(8)))
            else:
                out.append(_OK)
                if kind == T_NOPEN and buf[pos + 6] == 6:  # TCP: relay the source
                    relay = buf[pos + 4 : stop]
            pos = stop
        buf = buf[pos:]
        link.send(out)
        if relay is not None:
            _relay(link, relay)


def _relay(link: Link, nopen: bytes) -> None:
    """Read the source to its end, up to 1 MiB per read; one constant 64 KiB ndata per
    64 KiB read, all those of one read sent together (big socket buffers on both sides,
    so the blocking reads and writes overlap with the peers' work)."""
    raddr, rport = socket.inet_ntoa(nopen[13:17]), int.from_bytes(nopen[17:19], "big")
    sktid = nopen[0]
    src = socket.create_connection((raddr, rport))
    src.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    link.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    chunk = memoryview(bytearray(1 << 20))
    ndata = frames.ndata_tcp(sktid, 4, 6, 0, bytes(1 << 16))
    got = 0
    while n := src.recv_into(chunk):
        got += n
        if got >= 1 << 16:
            link.send([ndata] * (got >> 16))
            got &= 0xFFFF
    if got:
        link.send([frames.ndata_tcp(sktid, 4, 6, 0, bytes(got))])
    src.close()
    link.send([frames.nstat_code(sktid, 4, 6, time.time_ns(), PEERCLOSED)])


if __name__ == "__main__":
    main(sys.argv[1:])
