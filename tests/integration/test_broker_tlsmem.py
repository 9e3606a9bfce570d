"""`release_bio_buffers`: fresh memory BIOs once both are empty, the TLS session goes on
unchanged (real pyOpenSSL in memory); with bytes pending it does nothing; the memory
the handshake left in the BIOs is given back (pins the pyOpenSSL attributes it uses)."""

from __future__ import annotations

import gc
import socket

import pytest
from broker_fakes import pump, tls_pair
from OpenSSL import SSL

from packetlab.broker.tlsmem import release_bio_buffers


def test_swapped_bios_keep_the_session_going_both_ways() -> None:
    client, server = tls_pair()
    old = (server._into_ssl, server._from_ssl)
    assert release_bio_buffers(server)
    assert (server._into_ssl, server._from_ssl) != old
    client.send(b"xsub")
    pump(client, server)
    assert server.recv(100) == b"xsub"
    server.send(b"xnotify")
    pump(client, server)
    assert client.recv(100) == b"xnotify"
    assert release_bio_buffers(server)  # again: still fine
    server.send(b"more")
    pump(client, server)
    assert client.recv(100) == b"more"


def test_pending_bytes_in_either_bio_mean_no_swap() -> None:
    client, server = tls_pair()
    client.send(b"unread")
    server.bio_write(client.bio_read(1 << 16))  # in the server's input BIO, not yet read
    assert not release_bio_buffers(server)
    assert server.recv(100) == b"unread"
    server.send(b"unsent")  # in the server's output BIO
    assert not release_bio_buffers(server)
    client.bio_write(server.bio_read(1 << 16))
    assert client.recv(100) == b"unsent"
    assert release_bio_buffers(server)


def test_socket_backed_connection_is_left_alone() -> None:
    a, b = socket.socketpair()
    try:
        conn = SSL.Connection(SSL.Context(SSL.TLS_METHOD), a)
        assert not release_bio_buffers(conn)
    finally:
        a.close()
        b.close()


def test_the_handshake_buffers_are_given_back() -> None:
    def used() -> int:
        import ctypes

        class MallInfo2(ctypes.Structure):
            _fields_ = [(n, ctypes.c_size_t) for n in (
                "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                "uordblks", "fordblks", "keepcost")]  # fmt: skip

        libc = ctypes.CDLL(None)
        if not hasattr(libc, "mallinfo2"):
            pytest.skip("needs glibc's mallinfo2 to see the heap")
        libc.mallinfo2.restype = MallInfo2
        gc.collect()
        return int(libc.mallinfo2().uordblks)

    servers = [tls_pair()[1] for _ in range(50)]
    before = used()
    for s in servers:
        assert release_bio_buffers(s)
    freed = (before - used()) / len(servers)
    assert freed > 2000, f"only {freed:.0f} bytes per connection given back"
