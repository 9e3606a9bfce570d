"""A DNS server over a stream on 127.0.0.1 for the side-by-side tests (`+keepopen` over
TCP, `+tls` over TLS): every A question answered with `answer`, connections counted, a
connection kept until the client closes it. `wrap` is the hook a TLS server overrides."""

from __future__ import annotations

import socket
import ssl
import struct
import threading

import dns.message
import dns.rrset


class StreamServer:
    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def wrap(self, raw: socket.socket) -> socket.socket | None:
        """The connection to serve (None: drop it); plain TCP as it came."""
        return raw

    def serve(self, raw: socket.socket) -> None:
        conn = self.wrap(raw)
        if conn is None:
            return
        with conn:
            try:
                while head := self.read(conn, 2):
                    query = dns.message.from_wire(self.read(conn, struct.unpack(">H", head)[0]))
                    reply = dns.message.make_response(query)
                    name = query.question[0].name
                    reply.answer.append(dns.rrset.from_text(name, 60, "IN", "A", self.answer))
                    out = reply.to_wire()
                    conn.sendall(struct.pack(">H", len(out)) + out)
            except (OSError, ssl.SSLError):
                return

    @staticmethod
    def read(conn: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                return b""
            data += chunk
        return data
