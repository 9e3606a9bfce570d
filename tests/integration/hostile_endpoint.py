"""A scripted hostile endpoint for attacks on our controllers (session 21, ctl21).

`HostileEndpoint` connects to a listening controller (`pktlab campaign`, `pktlab run
--listen`, `pktlab xpmgr`) over plain TCP, or over TLS 1.3 with the demo endpoint's chain
of a `pktlab init` home, and speaks raw frames: it answers what the test tells it to and
sends whatever bytes it is given (lying lengths, unknown types, floods, half frames).
"""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path

from packetlab import wire
from packetlab.wire import vmem


class HostileEndpoint:
    def __init__(self, port: int, home: Path | None = None, timeout: float = 10.0) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if home is None:
            self.sock: socket.socket = raw
        else:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE  # the controller's chain is PPKS, checked elsewhere
            ctx.load_cert_chain(str(home / "certs/subcmd_eop_ep.cert"), str(home / "keys/k_ep"))
            self.sock = ctx.wrap_socket(raw)
        self.framer = wire.Framer()
        self.got: list[wire.Item] = []

    def read(self, n: int) -> list[wire.Item]:
        """The next `n` messages from the controller."""
        while len(self.got) < n:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(f"controller closed after {self.got}")
            self.got += self.framer.feed(data)
        out, self.got = self.got[:n], self.got[n:]
        return out

    def send(self, *msgs: wire.Message) -> None:
        self.sock.sendall(b"".join(wire.encode(m) for m in msgs))

    def raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def answer_start(self) -> None:
        assert self.read(1) == [wire.Start()]
        self.send(wire.Result())

    def system_reads(self, n: int = 6) -> list[wire.Mread]:
        """The controller's reads of the system block (`read_system_info`: 6 mreads, the
        last the HOSTID)."""
        reads = self.read(n)
        assert all(isinstance(r, wire.Mread) for r in reads), reads
        return reads  # type: ignore[return-value]

    def answer(self, reads: list[wire.Mread], hostid: bytes = b"") -> None:
        """Right answers: zeros, the HOSTID at its address."""
        for r in reads:
            data = hostid.ljust(r.len, b"\0")[: r.len] if r.addr == vmem.HOSTID.addr else b""
            self.send(wire.Mdata(r.addr, data.ljust(r.len, b"\0")))

    def closed_by_peer(self, seconds: float = 10.0) -> bool:
        """True once the controller closed the connection (what it sent is dropped), or
        at once if we did."""
        if self.sock.fileno() < 0:
            return True
        deadline = time.monotonic() + seconds
        self.sock.settimeout(0.2)
        while time.monotonic() < deadline:
            try:
                if not self.sock.recv(65536):
                    return True
            except TimeoutError:
                continue
            except OSError:  # reset
                return True
        return False

    def close(self) -> None:
        self.sock.close()
