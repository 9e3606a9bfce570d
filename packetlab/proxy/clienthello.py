"""Peek a TLS ClientHello without terminating TLS (sans-IO; PROTOCOL.md §6.4).

Feed the first bytes an endpoint sends; once the whole ClientHello is in (it may span
several TLS records and many TCP segments), `feed` returns a `Hello` with the SNI and
every byte read so far, to be forwarded unchanged. Anything that is not a well-formed
ClientHello raises `HelloError` with a short `reason` (for counters) and a clear text.
At most `cap` bytes are ever buffered.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["DEFAULT_HELLO_CAP", "ClientHelloReader", "Hello", "HelloError", "parse_sni"]

DEFAULT_HELLO_CAP = 16384
_HANDSHAKE = 22
_CLIENT_HELLO = 1
_EXT_SERVER_NAME = 0
_RECORD_MAX = 1 << 14
_HOST_NAME_MAX = 255  # OpenSSL's TLSEXT_MAXLEN_host_name


class HelloError(ValueError):
    def __init__(self, reason: str, text: str) -> None:
        super().__init__(text)
        self.reason = reason


@dataclass(frozen=True)
class Hello:
    sni: str | None  # None: the client sent no server_name
    raw: bytes  # every byte received, unchanged (the ClientHello records and anything after)


class ClientHelloReader:
    def __init__(self, cap: int = DEFAULT_HELLO_CAP) -> None:
        self.cap = cap
        self._buf = bytearray()
        self._pos = 0  # start of the next record header in _buf
        self._hs = bytearray()  # handshake bytes gathered from the records so far

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> Hello | None:
        """Add bytes; the `Hello` once complete, None while more is needed."""
        self._buf += data
        while len(self._buf) - self._pos >= 5:
            ctype, major, length = struct.unpack_from(">BBxH", self._buf, self._pos)
            if ctype != _HANDSHAKE:
                raise HelloError(
                    "not_tls", f"not a TLS handshake record (first byte 0x{ctype:02x})"
                )
            if major != 3:
                raise HelloError("not_tls", f"not a TLS record (version major {major})")
            if not 0 < length <= _RECORD_MAX:
                raise HelloError("bad_record", f"TLS record length {length} out of range")
            if 5 + length > self.cap or self._pos + 5 + length > self.cap:
                raise HelloError("too_large", f"ClientHello larger than {self.cap} bytes")
            end = self._pos + 5 + length
            if len(self._buf) < end:
                break
            self._hs += self._buf[self._pos + 5 : end]
            self._pos = end
            hello = self._hello()
            if hello is not None:
                return Hello(parse_sni(hello), bytes(self._buf))
        if len(self._buf) > self.cap:
            raise HelloError("too_large", f"ClientHello larger than {self.cap} bytes")
        return None

    def _hello(self) -> bytes | None:
        if len(self._hs) < 4:
            return None
        (word,) = struct.unpack_from(">I", self._hs)
        mtype, length = word >> 24, word & 0xFFFFFF
        if mtype != _CLIENT_HELLO:
            raise HelloError("not_client_hello", f"handshake message type {mtype}, not ClientHello")
        if length + 4 > self.cap:
            raise HelloError("too_large", f"ClientHello of {length} bytes (cap {self.cap})")
        if len(self._hs) < 4 + length:
            return None
        return bytes(self._hs[4 : 4 + length])


def parse_sni(body: bytes) -> str | None:
    """The host_name of the server_name extension of a ClientHello body, or None."""
    try:
        pos = 2 + 32  # legacy_version, random
        pos += 1 + body[pos]  # session id
        (n,) = struct.unpack_from(">H", body, pos)
        pos += 2 + n  # cipher suites
        pos += 1 + body[pos]  # compression methods
        if pos == len(body):
            return None  # no extensions at all
        (n,) = struct.unpack_from(">H", body, pos)
        pos += 2
        end = pos + n
        if end > len(body):
            raise IndexError
        sni: str | None = None
        seen = False
        while pos < end:
            etype, elen = struct.unpack_from(">HH", body, pos)
            pos += 4
            if pos + elen > end:
                raise IndexError
            if etype == _EXT_SERVER_NAME:
                if seen:  # OpenSSL, the manager's TLS, refuses the hello (bad extension)
                    raise HelloError("bad_sni", "two server_name extensions")
                seen = True
                sni = _host_name(body[pos : pos + elen])
            pos += elen
        return sni
    except (IndexError, struct.error):
        raise HelloError(
            "malformed", "malformed ClientHello (a length runs past its end)"
        ) from None


def _host_name(ext: bytes) -> str | None:
    """The one host_name of a server_name extension, checked as OpenSSL (the manager's TLS
    server) checks it: RFC 6066 allows one name per type and OpenSSL knows only host_name,
    so the list must be exactly one host_name, at most 255 bytes, with no NUL. The proxy
    used to route by the first host_name of any list, and the manager then refused the
    hello: a backlog spent on an endpoint no manager could serve."""
    (n,) = struct.unpack_from(">H", ext)
    if n == 0:
        return None  # an empty list: no name (OpenSSL: decode error; refused here as no_sni)
    if 2 + n > len(ext):
        raise IndexError
    if 2 + n < len(ext):
        raise HelloError("bad_sni", f"server_name list of {n} bytes in an extension of {len(ext)}")
    ntype, nlen = struct.unpack_from(">BH", ext, 2)
    if 5 + nlen > len(ext):
        raise IndexError
    if ntype != 0:
        raise HelloError("bad_sni", f"server_name of type {ntype}, not host_name (0)")
    if 5 + nlen < len(ext):
        raise HelloError("bad_sni", "server_name list with more than one name")
    name = ext[5:]
    if not name or not name.isascii():
        raise HelloError("bad_sni", "server_name is empty or not ASCII")
    if len(name) > _HOST_NAME_MAX or 0 in name:
        what = f"{len(name)} bytes (at most {_HOST_NAME_MAX})" if 0 not in name else "a NUL byte"
        raise HelloError("bad_sni", f"server_name with {what}")
    return name.decode("ascii")
