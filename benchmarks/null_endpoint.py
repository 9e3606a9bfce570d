"""A do-nothing endpoint: the least a Python endpoint can do per request, to show that
the benchmark's controller is not what limits a measure (`bench_endpoint.py --null`).

It connects to the controller (TLS 1.3 client over stdlib `ssl.SSLObject` memory BIOs, or
plain TCP), answers every request of one read at once, in one `send`, one record per
frame: `nsend` with a SUCCESS result and an ntag (the datagram is not sent), `mread` with
8 zero bytes, `nopen` of TCP by relaying the source's bytes as ndata (one recv of up to
64 KiB per ndata) and an nstat PEERCLOSED at the end; anything else with SUCCESS.

    python -m benchmarks.null_endpoint HOST:PORT [--tls]
"""

from __future__ import annotations

import socket
import ssl
import sys
import time

from packetlab import wire
from packetlab.endpoint import frames
from packetlab.wire import Mread, Nopen, Nsend

_OK = frames.result(0)
PEERCLOSED = 3


class Link:
    def __init__(self, sock: socket.socket, tls: bool) -> None:
        self.sock = sock
        self.obj: ssl.SSLObject | None = None
        self.view = memoryview(bytearray(1 << 18))
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
        data = self.sock.recv(1 << 18)
        if not data:
            return False
        self.incoming.write(data)
        return True

    def recv(self) -> bytes:
        if self.obj is None:
            return self.sock.recv(1 << 18)
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
    framer = wire.Framer()
    ntag, mdata = frames.ntag, frames.mdata
    while True:
        data = link.recv()
        if not data:
            return
        out: list[bytes] = []
        relay = None
        for msg in framer.feed(data):
            if isinstance(msg, Nsend):
                out.append(_OK)
                out.append(ntag(msg.sktid, msg.tag, time.time_ns()))
            elif isinstance(msg, Mread):
                out.append(mdata(msg.addr, bytes(8)))
            else:
                out.append(_OK)
                if isinstance(msg, Nopen) and msg.proto == 6:
                    relay = msg
        link.send(out)
        if relay is not None and relay.raddr is not None and relay.rport is not None:
            src = socket.create_connection((socket.inet_ntoa(relay.raddr), relay.rport))
            while chunk := src.recv(1 << 16):
                link.send([frames.ndata_tcp(relay.sktid, 4, 6, time.time_ns(), chunk)])
            src.close()
            link.send([frames.nstat_code(relay.sktid, 4, 6, time.time_ns(), PEERCLOSED)])


if __name__ == "__main__":
    main(sys.argv[1:])
