"""A TCP relay that delays every chunk by a fixed time in both directions: a slow
controller link for benchmarks, since this kernel has no netem.

    python -m benchmarks.delay_relay LISTEN_PORT TARGET_PORT DELAY_MS [HOST [TARGET_HOST]]

Accepts on HOST:LISTEN_PORT (default 127.0.0.1), connects to TARGET_HOST:TARGET_PORT
(default: HOST) for each connection, and forwards each chunk DELAY_MS after it arrived,
in order (a constant one-way delay, like a long path; bandwidth is not limited).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from twisted.internet import protocol
from twisted.internet import reactor as _reactor

from benchmarks.common import help_requested

reactor: Any = _reactor  # the global reactor, untyped (IReactorTCP + IReactorTime)


class _Half(protocol.Protocol):
    peer: _Half | None = None
    delay = 0.0

    def __init__(self) -> None:
        self.early: list[bytes] = []
        self.closing = False

    def dataReceived(self, data: bytes) -> None:
        reactor.callLater(self.delay, self._forward, data)

    def _forward(self, data: bytes) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)
        else:
            self.early.append(data)

    def connectionLost(self, reason: Any = None) -> None:
        reactor.callLater(self.delay, self._close_peer)

    def _close_peer(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.loseConnection()


class _Outbound(_Half):
    def attach(self, inbound: _Half) -> None:
        # No Nagle on either leg: a delayed small write must not wait for a delayed ACK
        # (40 ms), or every request/answer exchange gains it on top of the set delay.
        self.transport.setTcpNoDelay(True)  # type: ignore[union-attr]
        inbound.transport.setTcpNoDelay(True)  # type: ignore[union-attr]
        self.peer = inbound
        inbound.peer = self
        for chunk in inbound.early:
            self.transport.write(chunk)  # type: ignore[union-attr]
        inbound.early.clear()
        inbound.transport.resumeProducing()  # type: ignore[union-attr]


class _Inbound(_Half):
    target: tuple[str, int] = ("127.0.0.1", 0)

    def connectionMade(self) -> None:
        self.transport.pauseProducing()  # type: ignore[union-attr]
        out = protocol.ClientCreator(reactor, _Outbound)
        d = out.connectTCP(*self.target)

        def connected(p: _Outbound) -> None:
            p.attach(self)

        d.addCallbacks(connected, lambda f: self.transport.loseConnection())  # type: ignore[union-attr]


def spawn(target_port: int, delay_ms: float) -> tuple[subprocess.Popen[bytes], int]:
    """Start a relay on an ephemeral loopback port in front of `target_port`: the process
    (terminate it when done) and the port it listens on."""
    relay = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.delay_relay", "0", str(target_port), str(delay_ms)],
        stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    assert relay.stdout is not None
    return relay, int(relay.stdout.readline())


def main() -> None:
    if help_requested(sys.argv[1:], __doc__):
        return
    listen_port, target_port, delay_ms = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    host = sys.argv[4] if len(sys.argv) > 4 else "127.0.0.1"
    target_host = sys.argv[5] if len(sys.argv) > 5 else host
    _Half.delay = delay_ms / 1000
    _Inbound.target = (target_host, target_port)
    f = protocol.ServerFactory()
    f.protocol = _Inbound
    port = reactor.listenTCP(listen_port, f, interface=host)
    print(port.getHost().port, flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
