"""A TLS 1.3 controller whose records the test writes itself, for attacks below the frame
layer: a message cut into a record per byte, many messages in one record, KeyUpdate
floods, bytes after close_notify, a half-close.

OpenSSL (pyOpenSSL over memory BIOs, the demo controller's PPKS chain from `pktlab init`)
does the handshake; then `packetlab.tls.takeover` hands the keys to a
`packetlab.tls.records.RecordLayer`, which seals exactly the records asked for.
`RecordSocket` looks like a blocking socket to `conftest.RawController` (its `sendall`
seals one record per call, 16 KiB at most), so the frame-level helpers work unchanged.
"""

from __future__ import annotations

import socket
import time

from conftest import RawController
from OpenSSL import SSL

from packetlab.controller.local import demo_server_entry
from packetlab.ppks import PktlabHome
from packetlab.tls import PPKSServerOptions
from packetlab.tls.handoff import drain_bio
from packetlab.tls.records import MAX_PLAINTEXT, RecordLayer
from packetlab.tls.takeover import take_over


def server_options(home: PktlabHome) -> PPKSServerOptions:
    """The demo controller's TLS server side (as `packetlab.controller.local.tls_server`)."""
    return PPKSServerOptions(default=demo_server_entry(home))


class RecordSocket:
    """One accepted endpoint connection after the handshake, with our own record layer."""

    def __init__(self, sock: socket.socket, records: RecordLayer, early: bytes) -> None:
        self.sock = sock
        self.records = records
        self._plain = bytearray(early)  # application data opened but not yet returned
        self.peer_closed = False  # the endpoint's close_notify came
        self.raw_out = 0  # bytes we wrote to the TCP stream
        self.other_records = 0  # records from the endpoint that were not data (KeyUpdates)

    # -- writing --

    def write_raw(self, data: bytes) -> None:
        self.sock.sendall(data)
        self.raw_out += len(data)

    def sendall(self, data: bytes) -> None:
        """`data` as one record (records of 16 KiB when longer)."""
        self.write_raw(self.records.seal(data))

    def send_records(self, data: bytes, size: int) -> None:
        """`data` cut into records of `size` bytes, written in one go."""
        seal = self.records.write.seal
        self.write_raw(b"".join(seal(data[i : i + size]) for i in range(0, len(data), size)))

    def key_updates(self, count: int, request: bool = True) -> None:
        """`count` KeyUpdate records in one write (each moves our write keys on)."""
        self.write_raw(b"".join(self.records.key_update(request) for _ in range(count)))

    def close_notify(self) -> None:
        self.write_raw(self.records.close_notify())

    # -- reading --

    def settimeout(self, t: float | None) -> None:
        self.sock.settimeout(t)

    def recv(self, n: int) -> bytes:
        """Application data (b"" at the endpoint's close_notify or TCP end)."""
        while not self._plain:
            if self.peer_closed:
                return b""
            raw = self.sock.recv(1 << 20)
            if not raw:
                return b""
            got = self.records.receive(raw)
            self.other_records += got.records - len(got.chunks)
            if got.out:  # our answer to the endpoint's KeyUpdate
                self.write_raw(got.out)
            self._plain += got.data
            self.peer_closed = got.closed
        out = bytes(self._plain[:n])
        del self._plain[:n]
        return out

    def close(self) -> None:
        self.sock.close()


class RecordController:
    """A loopback TLS listener that hands out `RawController`s over `RecordSocket`s."""

    def __init__(self, home: PktlabHome) -> None:
        self.options = server_options(home)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.controllers: list[RawController] = []

    def accept(self, timeout: float = 20.0) -> RawController:
        self.listener.settimeout(timeout)
        sock, _ = self.listener.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(timeout)
        conn = self.options.serverConnectionForTLS(None)  # type: ignore[arg-type]
        conn.set_accept_state()
        deadline = time.monotonic() + timeout
        buf = b""
        done = False
        while not done:
            # Whole records one at a time, so OpenSSL never takes a byte past its Finished.
            while not done and len(buf) >= 5:
                end = 5 + int.from_bytes(buf[3:5], "big")
                if len(buf) < end:
                    break
                conn.bio_write(buf[:end])
                buf = buf[end:]
                try:
                    conn.do_handshake()
                    done = True
                except SSL.WantReadError:
                    pass
            if done:
                break
            self._flush(conn, sock)
            if time.monotonic() > deadline:
                raise TimeoutError("the endpoint did not finish the TLS handshake")
            data = sock.recv(1 << 16)
            if not data:
                raise EOFError("the endpoint closed during the TLS handshake")
            buf += data
        written = drain_bio(conn)  # a server's tickets, sealed under the first keys
        records = take_over(conn, is_client=False, written=written)
        assert records is not None, "no traffic secrets for the record layer"
        sock.sendall(written)
        early = records.receive(buf).data if buf else b""
        ctl = RawController(RecordSocket(sock, records, early))  # type: ignore[arg-type]
        self.controllers.append(ctl)
        return ctl

    def _flush(self, conn: SSL.Connection, sock: socket.socket) -> None:
        data = drain_bio(conn)
        if data:
            sock.sendall(data)

    def close(self) -> None:
        for c in self.controllers:
            c.close()
        self.listener.close()


__all__ = ["MAX_PLAINTEXT", "RecordController", "RecordSocket", "server_options"]
