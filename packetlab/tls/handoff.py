"""A TLS session that hands the TCP stream back after close_notify (sans-IO).

The proxy registration (PROTOCOL.md §6.2, BROKER-PROXY-OBSERVED.md §4.1) runs TLS 1.3 for
one `xreg`/`result` exchange, then the manager sends close_notify and both sides go on
with raw bytes (`PKTLAB` and its echo, then the spliced endpoint stream) on the same TCP
connection. Twisted's TLS protocol closes the transport at close_notify, so both ends of
that link (the proxy's setup port and the manager's backlog connections) drive pyOpenSSL
through this object instead.

Incoming bytes are given to OpenSSL one whole TLS record at a time, so when the peer's
close_notify has been read, every byte after it is still ours: `Step.rest` holds them,
untouched by TLS.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from OpenSSL import SSL

from .peer import VerifiedPeer, _ssl_error_text, verify_peer
from .takeover import forget_secrets

__all__ = ["HandoffError", "Step", "TLSHandoff", "drain_bio"]

_RECORD_HEADER = 5
_RECORD_MAX = (1 << 14) + 256  # TLSCiphertext may exceed 2^14 by up to 256 bytes
# change_cipher_spec, alert, handshake, application_data: the record types TLS 1.3 sends
_RECORD_TYPES = frozenset((20, 21, 22, 23))


class HandoffError(Exception):
    """The TLS part of a handoff link failed (handshake, bad record, closed early)."""


@dataclass
class Step:
    """What one `receive` produced: bytes to send, application data, events."""

    out: bytes = b""
    data: bytes = b""
    handshake_done: bool = False
    closed: bool = False  # the peer's close_notify was read; TLS is over
    rest: bytes = b""  # raw bytes that followed the close_notify
    peer: VerifiedPeer | None = field(default=None)


class TLSHandoff:
    """One TLS connection over memory BIOs. `conn` comes from a `PPKSClientCreator` or
    `PPKSServerOptions` (so the PPKS policy of its context applies); the peer is checked
    with `verify_peer` as soon as the handshake completes (`Step.peer`)."""

    def __init__(self, conn: SSL.Connection, *, is_client: bool) -> None:
        self.conn = conn
        self.is_client = is_client
        self.handshake_done = False
        self.closed = False
        self.peer: VerifiedPeer | None = None
        self._buf = bytearray()
        if is_client:
            conn.set_connect_state()
        else:
            conn.set_accept_state()

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete record held back."""
        return len(self._buf)

    def start(self) -> bytes:
        """The first flight (the ClientHello for a client; nothing for a server)."""
        if self.is_client:
            self._handshake()
        return self._pending_out()

    def receive(self, data: bytes, *, until_data: bool = False) -> Step:
        """Feed bytes from the peer. Raises `HandoffError` (TLS failure or a refused peer:
        `__cause__` is the pyOpenSSL error or `PeerVerificationError`).

        `until_data`: stop after the first record that gave application data and keep
        the bytes after it unread (`receive(b"", until_data=True)` goes on, `detach()`
        takes them raw), for a peer that may follow its last record with raw bytes
        without a close_notify of its own (a proxy's eager `PKTLAB`)."""
        step = Step()
        if self.closed:
            step.rest = bytes(data)
            return step
        self._buf += data
        while not self.closed:
            if len(self._buf) < _RECORD_HEADER:
                break
            ctype, major, minor, length = struct.unpack_from(">BBBH", self._buf)
            if ctype not in _RECORD_TYPES or major != 3:
                # (an HTTP request or SSH banner: as a header it announces a record of
                # ~8 KB, which would be waited for until a deadline named nothing useful)
                raise HandoffError(
                    f"not TLS (record type 0x{ctype:02x}, version {major}.{minor}: "
                    f"first bytes {bytes(self._buf[:8])!r})"
                )
            if length > _RECORD_MAX:
                raise HandoffError(f"TLS record of {length} bytes (at most {_RECORD_MAX})")
            end = _RECORD_HEADER + length
            if len(self._buf) < end:
                break
            self.conn.bio_write(bytes(self._buf[:end]))
            del self._buf[:end]
            self._advance(step)
            if until_data and step.data:
                break
        if self.closed:
            step.rest, self._buf = bytes(self._buf), bytearray()
        step.out = self._pending_out()
        return step

    def detach(self) -> bytes:
        """End TLS on our side without reading more of it: the bytes received but not
        yet given to OpenSSL, raw; later `receive` calls return their bytes as `rest`."""
        self.closed = True
        rest, self._buf = bytes(self._buf), bytearray()
        return rest

    def send(self, data: bytes) -> bytes:
        """Encrypt application data (one record); returns the bytes to write."""
        if not self.handshake_done or self.closed:
            raise HandoffError("cannot send: the TLS session is not open")
        self.conn.send(data)
        return self._pending_out()

    def close(self) -> bytes:
        """Our close_notify (the bytes to write). Reading goes on until the peer's."""
        try:
            self.conn.shutdown()
        except SSL.Error:
            pass  # nothing more to say on a broken session
        return self._pending_out()

    # ------------------------------------------------------------------ internals

    def _handshake(self) -> bool:
        try:
            self.conn.do_handshake()
        except SSL.WantReadError:
            return False
        except SSL.Error as e:
            raise HandoffError(f"TLS handshake failed: {_ssl_error_text(e)}") from e
        return True

    def _advance(self, step: Step) -> None:
        if not self.handshake_done:
            if not self._handshake():
                return
            self.handshake_done = True
            step.handshake_done = True
            forget_secrets(self.conn)  # this link stays on pyOpenSSL: drop the keylog lines
            try:
                self.peer = step.peer = verify_peer(self.conn, self.is_client)
            except Exception as e:  # PeerVerificationError: the refused peer's rule
                raise HandoffError(f"peer refused: {e}") from e
        while True:
            try:
                chunk = self.conn.recv(65536)
            except SSL.WantReadError:
                return
            except SSL.ZeroReturnError:
                self.closed = step.closed = True
                return
            except SSL.Error as e:
                raise HandoffError(f"TLS failed: {_ssl_error_text(e)}") from e
            step.data += chunk

    def _pending_out(self) -> bytes:
        return drain_bio(self.conn)


def drain_bio(conn: SSL.Connection) -> bytes:
    """Everything OpenSSL has written to `conn`'s outgoing memory BIO."""
    out = bytearray()
    while True:
        try:
            chunk = conn.bio_read(65536)
        except SSL.WantReadError:
            break
        if not chunk:
            break
        out += chunk
    return bytes(out)
