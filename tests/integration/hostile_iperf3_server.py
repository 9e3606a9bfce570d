# Run as a child process: the standard library only.
"""An iperf3 server that misbehaves on purpose, for `pktlab run throughput` tests:

    python hostile_iperf3_server.py MODE     # prints "PORT" (TCP on 127.0.0.1)

It follows iperf3's control protocol for one upload test (cookie, PARAM_EXCHANGE,
CREATE_STREAMS, the data connection drained, TEST_START, TEST_RUNNING; TEST_END from the
client, EXCHANGE_RESULTS, the client's results read), then misbehaves by MODE:

* `state99`: answers the cookie with the state byte 99 (no such state);
* `bigjson`: announces results of 2 GiB;
* `deepjson`: results of "[" * 200,000 and "]" * 200,000 (within iperf3's 1 MiB, deeper
  than a JSON parser recurses);
* `infinity`: results whose stream has `"bytes": Infinity`.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import threading

COOKIE = 37


def read_exactly(conn: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        got = conn.recv(n - len(out))
        if not got:
            raise EOFError
        out += got
    return out


def drain(conn: socket.socket) -> None:
    with conn:
        while conn.recv(1 << 16):
            pass


def serve(listener: socket.socket, mode: str) -> None:
    conn, _ = listener.accept()
    with conn:
        read_exactly(conn, COOKIE)
        if mode == "state99":
            conn.sendall(struct.pack("b", 99))
            conn.recv(1)
            return
        conn.sendall(struct.pack("b", 9))  # PARAM_EXCHANGE
        (n,) = struct.unpack(">I", read_exactly(conn, 4))
        read_exactly(conn, n)
        conn.sendall(struct.pack("b", 10))  # CREATE_STREAMS
        data, _ = listener.accept()
        read_exactly(data, COOKIE)  # as iperf3: the stream is set up, then the clock starts
        threading.Thread(target=drain, args=(data,), daemon=True).start()
        conn.sendall(struct.pack("bb", 1, 2))  # TEST_START, TEST_RUNNING
        while read_exactly(conn, 1) != struct.pack("b", 4):  # TEST_END
            pass
        conn.sendall(struct.pack("b", 13))  # EXCHANGE_RESULTS
        (n,) = struct.unpack(">I", read_exactly(conn, 4))
        theirs = json.loads(read_exactly(conn, n))
        if mode == "bigjson":
            body = struct.pack(">I", 2 << 30) + b"{" * 1000
        elif mode == "deepjson":
            deep = b"[" * 200_000 + b"]" * 200_000
            body = struct.pack(">I", len(deep)) + deep
        else:  # infinity
            theirs["streams"][0]["bytes"] = float("inf")
            text = json.dumps(theirs).encode()
            body = struct.pack(">I", len(text)) + text
        conn.sendall(body)
        conn.recv(1)


def main(argv: list[str]) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    print(listener.getsockname()[1], flush=True)
    serve(listener, argv[0])


if __name__ == "__main__":
    main(sys.argv[1:])
