"""SOCKS5 (RFC 1928) server side, sans-IO: the handshake parser, replies, UDP headers.

`Socks5Handshake.feed(data)` consumes the client's bytes and returns what to do next:
`Send(bytes)` (the method choice), a `Request` (CONNECT / BIND / UDP ASSOCIATE with its
destination), or a `Refuse` carrying the exact reply a malformed or unsupported request
must get before the connection is closed. Nothing here raises on bad input, and nothing
buffers more than one request (at most 262 bytes for the greeting, 262 for the request):
a client cannot make it grow.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from dataclasses import dataclass

VERSION = 5
NO_AUTH = 0x00
NO_ACCEPTABLE = 0xFF
# The method selection that accepts a client offering "no authentication".
METHOD_NO_AUTH = bytes([VERSION, NO_AUTH])


class Cmd(enum.IntEnum):
    CONNECT = 1
    BIND = 2
    UDP_ASSOCIATE = 3


class Atyp(enum.IntEnum):
    IPV4 = 1
    DOMAIN = 3
    IPV6 = 4


class Rep(enum.IntEnum):
    """Reply codes (RFC 1928 §6)."""

    SUCCEEDED = 0
    GENERAL_FAILURE = 1
    NOT_ALLOWED = 2
    NETWORK_UNREACHABLE = 3
    HOST_UNREACHABLE = 4
    CONNECTION_REFUSED = 5
    TTL_EXPIRED = 6
    COMMAND_NOT_SUPPORTED = 7
    ATYP_NOT_SUPPORTED = 8


Host = ipaddress.IPv4Address | ipaddress.IPv6Address | str  # str: a domain name


@dataclass(frozen=True, slots=True)
class Send:
    """Bytes to write to the client; the handshake goes on."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Request:
    cmd: Cmd
    host: Host
    port: int


@dataclass(frozen=True, slots=True)
class Refuse:
    """Write `data` (possibly empty) and close: the client broke the protocol or asked for
    something we do not do. `why` is for the log."""

    data: bytes
    why: str


Event = Send | Request | Refuse


def reply(rep: Rep | int, host: Host | None = None, port: int = 0) -> bytes:
    """A SOCKS5 reply; BND.ADDR defaults to 0.0.0.0:0 (what we bound is nobody's business
    locally: the socket lives on the endpoint)."""
    return bytes([VERSION, int(rep), 0]) + encode_address(
        host if host is not None else ipaddress.IPv4Address(0), port
    )


def encode_address(host: Host, port: int) -> bytes:
    if isinstance(host, ipaddress.IPv4Address):
        head = bytes([Atyp.IPV4]) + host.packed
    elif isinstance(host, ipaddress.IPv6Address):
        head = bytes([Atyp.IPV6]) + host.packed
    else:
        name = host.encode("idna") if not host.isascii() else host.encode()
        if not 0 < len(name) < 256:
            raise ValueError(f"domain name of {len(name)} bytes")
        head = bytes([Atyp.DOMAIN, len(name)]) + name
    return head + struct.pack(">H", port)


class _Short(Exception):
    """More bytes are needed."""


class _Bad(Exception):
    def __init__(self, rep: Rep, why: str) -> None:
        super().__init__(why)
        self.rep = rep


def decode_address(buf: bytes | bytearray, at: int) -> tuple[Host, int, int]:
    """(host, port, end offset) of ATYP ADDR PORT at `at`; _Short if incomplete, _Bad if
    the address type is unknown or the name is not text."""
    if len(buf) <= at:
        raise _Short
    atyp = buf[at]
    if atyp == Atyp.IPV4:
        end = at + 1 + 4
        host: Host = ipaddress.IPv4Address(bytes(buf[at + 1 : end])) if len(buf) >= end else ""
    elif atyp == Atyp.IPV6:
        end = at + 1 + 16
        host = ipaddress.IPv6Address(bytes(buf[at + 1 : end])) if len(buf) >= end else ""
    elif atyp == Atyp.DOMAIN:
        if len(buf) <= at + 1:
            raise _Short
        n = buf[at + 1]
        end = at + 2 + n
        if n == 0:
            raise _Bad(Rep.HOST_UNREACHABLE, "empty domain name")
        host = ""
        if len(buf) >= end:
            host = _domain(bytes(buf[at + 2 : end]))
    else:
        raise _Bad(Rep.ATYP_NOT_SUPPORTED, f"address type {atyp}")
    if len(buf) < end + 2:
        raise _Short
    (port,) = struct.unpack_from(">H", buf, end)
    return host, port, end + 2


def _domain(raw: bytes) -> str:
    try:
        name = raw.decode("ascii")
    except UnicodeDecodeError:
        raise _Bad(Rep.HOST_UNREACHABLE, "domain name is not ASCII") from None
    if any(c in name for c in "\0 /\\") or not name.strip("."):
        raise _Bad(Rep.HOST_UNREACHABLE, f"bad domain name {name!r}")
    return name


class Socks5Handshake:
    """The server's view of one SOCKS5 handshake (no authentication: the proxy listens on
    loopback for one wrapped program tree).

    States: greeting → request → done. After a `Request` the caller answers with
    `reply(...)` itself; bytes fed after the request (the client may pipeline its first
    data) are kept in `rest`.
    """

    MAX_GREETING = 2 + 255
    MAX_REQUEST = 4 + 1 + 255 + 2

    def __init__(self, answered: bool = False) -> None:
        self._buf = bytearray()
        self._state = "greeting"
        self.rest = b""
        # The server sent "no authentication" before the greeting came (`early_reply`):
        # the greeting is then only checked, not answered.
        self._answered = answered

    @property
    def done(self) -> bool:
        return self._state in ("done", "failed")

    def feed(self, data: bytes) -> list[Event]:
        if self.done:
            if self._state == "done":
                self.rest += data
            return []
        self._buf += data
        out: list[Event] = []
        while not self.done:
            event = self._step()
            if event is None:
                break
            out.append(event)
        return out

    def _step(self) -> Event | None:
        buf = self._buf
        if self._state == "greeting":
            if not buf:
                return None
            if buf[0] != VERSION:
                return self._fail(b"", f"not SOCKS5 (version byte {buf[0]})")
            if len(buf) < 2:
                return None
            n = buf[1]
            if len(buf) < 2 + n:
                return None
            methods = bytes(buf[2 : 2 + n])
            del buf[: 2 + n]
            if NO_AUTH not in methods:
                return self._fail(
                    b"" if self._answered else bytes([VERSION, NO_ACCEPTABLE]),
                    "client offers no 'no authentication'",
                )
            self._state = "request"
            if self._answered:
                return self._step()
            return Send(bytes([VERSION, NO_AUTH]))
        # request: VER CMD RSV ATYP DST.ADDR DST.PORT
        if not buf:
            return None
        if buf[0] != VERSION:
            return self._fail(reply(Rep.GENERAL_FAILURE), f"request version byte {buf[0]}")
        if len(buf) < 4:
            return None
        cmd, rsv = buf[1], buf[2]
        try:
            host, port, end = decode_address(buf, 3)
        except _Short:
            if len(buf) > self.MAX_REQUEST:  # cannot happen: the longest request fits
                return self._fail(reply(Rep.GENERAL_FAILURE), "request too long")
            return None
        except _Bad as e:
            return self._fail(reply(e.rep), str(e))
        if rsv != 0:
            return self._fail(reply(Rep.GENERAL_FAILURE), f"reserved byte {rsv}")
        try:
            command = Cmd(cmd)
        except ValueError:
            return self._fail(reply(Rep.COMMAND_NOT_SUPPORTED), f"command {cmd}")
        self.rest = bytes(buf[end:])
        buf.clear()
        self._state = "done"
        return Request(command, host, port)

    def _fail(self, data: bytes, why: str) -> Refuse:
        self._state = "failed"
        self._buf.clear()
        return Refuse(data, why)


# ---------------------------------------------------------------------------- UDP relay


@dataclass(frozen=True, slots=True)
class UdpPacket:
    host: Host
    port: int
    data: bytes


class BadDatagram(ValueError):
    """A datagram to the UDP relay without a valid SOCKS5 header (it is dropped)."""


def parse_udp(datagram: bytes) -> UdpPacket:
    """RSV(2) FRAG ATYP DST.ADDR DST.PORT DATA. Fragments are not supported (RFC 1928
    allows dropping them)."""
    if len(datagram) < 4:
        raise BadDatagram(f"{len(datagram)} bytes: shorter than a SOCKS5 UDP header")
    if datagram[0] or datagram[1]:
        raise BadDatagram("reserved bytes are not zero")
    if datagram[2] != 0:
        raise BadDatagram(f"fragment {datagram[2]}: fragments are not supported")
    try:
        host, port, end = decode_address(datagram, 3)
    except _Short:
        raise BadDatagram("truncated SOCKS5 UDP header") from None
    except _Bad as e:
        raise BadDatagram(str(e)) from None
    return UdpPacket(host, port, datagram[end:])


def encode_udp(host: Host, port: int, data: bytes) -> bytes:
    return b"\0\0\0" + encode_address(host, port) + data
