"""Give back the memory a TLS link's handshake left in its memory BIOs (the fallback).

With the Python record layer the broker frees the whole OpenSSL connection instead
(`PPKSTLSProtocol.release_openssl`); this serves links that stay on pyOpenSSL.

pyOpenSSL connects each `SSL.Connection` without a socket to two OpenSSL memory BIOs
(Twisted's TLS protocol feeds one, drains the other). A memory BIO's buffer never
shrinks: after the handshake both keep the size of the largest flight they carried
(~4.4 KB per connection with a client certificate and the hybrid ML-KEM key share,
measured with heaptrack). The broker holds thousands of links that then carry a few
small records, so once both BIOs are empty it swaps in a fresh, empty pair; OpenSSL
frees the old pair (`SSL_set_bio`). No byte on the wire changes.

This reaches into pyOpenSSL (`_ssl`, `_into_ssl`, `_from_ssl`, the same attributes its
`bio_read`/`bio_write` use); tests/unit/broker/test_tlsmem.py pins the behaviour, so a
release that changes them fails there, and this then does nothing (returns False).
"""

from __future__ import annotations

from typing import Any

__all__ = ["release_bio_buffers"]


def release_bio_buffers(conn: Any) -> bool:
    """Swap fresh memory BIOs into `conn` (an `OpenSSL.SSL.Connection`) if both of its
    BIOs are empty; True if swapped. Safe at any time: with bytes pending it does nothing."""
    try:
        from OpenSSL._util import ffi, lib

        ssl, into, out = conn._ssl, conn._into_ssl, conn._from_ssl
    except (ImportError, AttributeError):
        return False
    if into is None or out is None:  # a socket-backed connection
        return False
    data = ffi.new("char **")
    if lib.BIO_get_mem_data(into, data) or lib.BIO_get_mem_data(out, data):
        return False  # bytes OpenSSL has not read, or we have not sent
    new_into = lib.BIO_new(lib.BIO_s_mem())
    new_out = lib.BIO_new(lib.BIO_s_mem())
    if new_into == ffi.NULL or new_out == ffi.NULL:
        for bio in (new_into, new_out):
            if bio != ffi.NULL:
                lib.BIO_free(bio)
        return False
    lib.SSL_set_bio(ssl, new_into, new_out)  # frees the old pair
    conn._into_ssl, conn._from_ssl = new_into, new_out
    return True
