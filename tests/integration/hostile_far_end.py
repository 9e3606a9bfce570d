# Run as a child process (inside a testbed namespace): the standard library only.
"""Hostile TCP servers that write in small pieces, for the small-segment tests
(test_hostile_small_segments.py):

    python hostile_far_end.py MODE ADDR [PIECE GAP]     # prints "PORT"

Every write is `PIECE` bytes (default 100) with TCP_NODELAY, then a sleep of `GAP` s
(default 0.0005; 0: none), so the endpoint reads many small segments: one ndata
notification each at the controller. A flood stops when the client goes (reset, EPIPE)
or after `LIMIT` bytes / `SECONDS` s, whichever is first (bounded).

* `dns-flood`: DNS over TCP: a correct answer (a.test. A 192.0.2.1), then a flood;
* `dns-trickle`: the length prefix 65535, then one byte every 100 ms;
* `http-flood-after`: `HTTP/1.1 200` with a body of 2 bytes on a kept connection, then
  (50 ms later, the connection idle) a flood; later connections get the plain answer;
* `http-ok`: the plain answer, 50 ms after each request of every connection;
* `http-flood-header`: a header line that never ends;
* `http-chunked`: a chunked body that never ends (chunks of PIECE bytes; up to 1 GiB);
* `iperf3-ctl-flood`: iperf3's control protocol for one upload test up to TEST_RUNNING,
  then state bytes (TEST_RUNNING) on the control connection, PIECE at a time;
* `iperf3-silent`: accepts, reads the cookie, never answers.
"""

from __future__ import annotations

import socket
import struct
import sys
import threading
import time

# the sibling script (this directory is sys.path[0] when run as a script, as it is)
from hostile_iperf3_server import COOKIE, read_exactly

LIMIT = 64 << 20
SECONDS = 60.0
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def read_request(conn: socket.socket) -> bytes:
    out = b""
    while b"\r\n\r\n" not in out:
        got = conn.recv(4096)
        if not got:
            raise EOFError
        out += got
    return out


def flood(conn: socket.socket, piece: bytes, gap: float, limit: int = LIMIT) -> None:
    """`piece` again and again until the client goes, `limit` bytes or SECONDS s."""
    sent, end = 0, time.monotonic() + SECONDS
    while sent < limit and time.monotonic() < end:
        conn.sendall(piece)
        sent += len(piece)
        if gap:
            time.sleep(gap)


def dns_answer(query: bytes) -> bytes:
    qid, qdcount = query[:2], struct.unpack(">H", query[4:6])[0]
    end = 12
    for _ in range(qdcount):  # the question, copied
        while query[end]:
            end += 1 + query[end]
        end += 5
    flags = struct.pack(">HHHHH", 0x8180, qdcount, 1, 0, 0)
    record = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 300, 4) + bytes([192, 0, 2, 1])
    return qid + flags + query[12:end] + record


def serve_one(conn: socket.socket, mode: str, listener: socket.socket, first: bool,
              piece: int, gap: float) -> None:  # fmt: skip
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if mode == "dns-flood":
        (n,) = struct.unpack(">H", read_exactly(conn, 2))
        reply = dns_answer(read_exactly(conn, n))
        conn.sendall(struct.pack(">H", len(reply)) + reply)
        flood(conn, b"f" * piece, gap)
    elif mode == "dns-trickle":
        (n,) = struct.unpack(">H", read_exactly(conn, 2))
        read_exactly(conn, n)
        conn.sendall(b"\xff\xff")
        flood(conn, b"t", 0.1)
    elif mode == "http-flood-after":
        read_request(conn)
        conn.sendall(OK)
        if first:
            time.sleep(0.05)  # the client has put the connection in its pool (idle)
            flood(conn, b"z" * piece, gap)
        else:
            read_request(conn)
    elif mode == "http-ok":
        while True:
            read_request(conn)
            time.sleep(0.05)  # slow: a flood elsewhere has the time to pile up
            conn.sendall(OK)
    elif mode == "http-flood-header":
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Flood: ")
        flood(conn, b"a" * piece, gap)
    elif mode == "http-chunked":
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        flood(conn, b"%x\r\n" % piece + b"c" * piece + b"\r\n", gap, 1 << 30)
    elif mode == "iperf3-ctl-flood":
        read_exactly(conn, COOKIE)
        conn.sendall(struct.pack("b", 9))  # PARAM_EXCHANGE
        (n,) = struct.unpack(">I", read_exactly(conn, 4))
        read_exactly(conn, n)
        conn.sendall(struct.pack("b", 10))  # CREATE_STREAMS
        data, _ = listener.accept()
        read_exactly(data, COOKIE)
        threading.Thread(target=drain, args=(data,), daemon=True).start()
        conn.sendall(struct.pack("bb", 1, 2))  # TEST_START, TEST_RUNNING
        flood(conn, struct.pack("b", 2) * piece, gap)  # TEST_RUNNING for ever
    elif mode == "iperf3-silent":
        read_exactly(conn, COOKIE)
        time.sleep(SECONDS)
    else:
        raise SystemExit(f"unknown mode {mode}")


def drain(conn: socket.socket) -> None:
    with conn:
        while conn.recv(1 << 16):
            pass


def handle(conn: socket.socket, *args: object) -> None:
    with conn:
        try:
            serve_one(conn, *args)  # type: ignore[arg-type]
        except (OSError, EOFError):
            pass  # the client went: what a flood ends on


def main(argv: list[str]) -> None:
    mode, addr = argv[0], argv[1]
    piece = int(argv[2]) if len(argv) > 2 else 100
    gap = float(argv[3]) if len(argv) > 3 else 0.0005
    listener = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((addr, 0))
    listener.listen(8)
    print(listener.getsockname()[1], flush=True)
    first = True
    while True:
        conn, _ = listener.accept()
        args = (conn, mode, listener, first, piece, gap)
        threading.Thread(target=handle, args=args, daemon=True).start()
        first = False
        if mode.startswith("iperf3"):  # one test: the data connection is accepted inside
            time.sleep(SECONDS)


if __name__ == "__main__":
    main(sys.argv[1:])
