"""A TCP flow over this namespace's loopback, as fast as it goes, until SIGTERM: the
traffic a parallel test pass puts on `lo` (throughput and HTTP tests), for a capture on
`lo` to be tried under. Prints `listening` once bytes flow. Used by
test_traceroute_sweep25_like_native.py."""

from __future__ import annotations

import signal
import socket
import sys
import threading


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = socket.create_server(("127.0.0.1", 0))
    sender = socket.create_connection(server.getsockname())
    receiver, _ = server.accept()

    def sink() -> None:
        while receiver.recv(1 << 20):
            pass

    threading.Thread(target=sink, daemon=True).start()
    chunk = bytes(1 << 16)
    sender.sendall(chunk)
    print("listening", flush=True)
    while True:
        sender.sendall(chunk)


if __name__ == "__main__":
    main()
