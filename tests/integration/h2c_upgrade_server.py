# Run as a child process.
"""An h2c server that takes curl's `Upgrade: h2c` (twisted.web and nghttpd 1.52 do not):
the HTTP/2 unit tests' fake server (`http_fake.H2Server`, the h2 library's server state
machine) behind a real loopback socket, a thread per connection:

    python h2c_upgrade_server.py     # prints "PORT" (127.0.0.1), serves until killed

An Upgrade request gets `101 Switching Protocols` and its response on stream 1, the
next requests on the same connection as HTTP/2; a request without one gets HTTP/1.1,
a client preface (prior knowledge) HTTP/2. Each answer is `ok METHOD TARGET BODYLEN`.
"""

from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path

UNIT = Path(__file__).resolve().parents[1] / "unit"
sys.path[:0] = [str(UNIT / "measure"), str(UNIT / "controller"), str(UNIT), str(UNIT.parent)]

from http_fake import H2Server  # noqa: E402


def serve(conn: socket.socket) -> None:
    peer = H2Server(upgrade=True)

    def link(data: bytes | None, delay: float) -> None:
        if data is None:
            conn.shutdown(socket.SHUT_WR)
        else:
            conn.sendall(data)

    peer.link = link
    with conn:
        while data := conn.recv(65536):
            peer.received(data)


def main() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    print(listener.getsockname()[1], flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
