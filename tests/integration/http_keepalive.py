"""A loopback HTTP/1.1 server loop for the side-by-side curl tests: each connection in a
thread of its own, its requests' heads read in turn (keep-alive) and handed to an
answer function, which sends the reply and says whether the connection goes on."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

Answer = Callable[[socket.socket, bytes], bool]  # (conn, head without its CRLFCRLF) -> go on


def serve_keepalive(sock: socket.socket, answer: Answer) -> None:
    """Accept on `sock` until it is closed; run in a thread of its own."""
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        threading.Thread(target=_connection, args=(conn, answer), daemon=True).start()


def _connection(conn: socket.socket, answer: Answer) -> None:
    with conn:
        conn.settimeout(10)
        data = b""
        while True:
            while b"\r\n\r\n" not in data:
                try:
                    got = conn.recv(65536)
                except OSError:
                    return
                if not got:
                    return
                data += got
            head, _, data = data.partition(b"\r\n\r\n")
            if not answer(conn, head):
                return


class Recorder:
    """A keep-alive server on a loopback port that keeps every request head; subclasses
    answer in `answer(conn, head, path)`. The `server` fixture of a test module closes it."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        threading.Thread(
            target=serve_keepalive, args=(self.sock, self._answer), daemon=True
        ).start()

    def _answer(self, conn: socket.socket, head: bytes) -> bool:
        self.heads.append(head)
        path = head.split(b" ", 2)[1] if head.count(b" ") > 1 else b""
        return self.answer(conn, head, path)

    def answer(self, conn: socket.socket, head: bytes, path: bytes) -> bool:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"


def recorder_fixture(cls: type[Recorder]) -> Any:
    """A module-scoped `server` fixture serving a `cls` (a Recorder subclass), closed
    after the module: `server = recorder_fixture(Recorder)` (the curl27-29 files)."""

    @pytest.fixture(scope="module", name="server")
    def server() -> Iterator[Recorder]:
        s = cls()
        yield s
        s.sock.close()

    return server
