"""The TLS 1.3 record layer after the handshake, in Python (sans-IO; RFC 8446 §5, §7).

OpenSSL does the handshake (and the PPKS check follows it); then each application record
is sealed and opened here with `cryptography`'s AEADs, keyed from the traffic secrets
with HKDF-Expand-Label (§7.1, §7.3). A record costs ~2 µs each way instead of pyOpenSSL's
~5 µs plus a WantReadError per read (docs/performance.md, "pyOpenSSL or the standard
library").

`RecordLayer.receive` opens whatever whole records arrived and returns their application
data; post-handshake messages are handled here: NewSessionTicket skipped (no resumption),
KeyUpdate answered (§4.6.3), close_notify reported as a clean end. A peer flooding
KeyUpdates gets at most one answer until we next send application data (the RFC's "a
single update" for many; each answer used to be queued for a peer that need not read
them), and more than `MAX_KEY_UPDATES` in a row without application data end the link,
as in OpenSSL and BoringSSL. Anything wrong raises
`RecordError`, whose `alert` (if any) the caller sends before closing (`fatal_alert`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

__all__ = [
    "MAX_CIPHERTEXT",
    "MAX_PLAINTEXT",
    "SUITES",
    "PeerAlert",
    "Received",
    "RecordError",
    "RecordLayer",
    "Suite",
    "TrafficKeys",
    "hkdf_expand_label",
]

MAX_PLAINTEXT = 1 << 14  # TLSInnerPlaintext content per record (§5.1)
MAX_CIPHERTEXT = MAX_PLAINTEXT + 256  # TLSCiphertext.length at most (§5.2)
_TAG = 16  # all three AEADs

# ContentType (§5.1)
ALERT, HANDSHAKE, APPLICATION_DATA = 21, 22, 23
# HandshakeType (§4)
NEW_SESSION_TICKET, KEY_UPDATE = 4, 24
# AlertDescription (§6)
CLOSE_NOTIFY = 0
UNEXPECTED_MESSAGE = 10
BAD_RECORD_MAC = 20
RECORD_OVERFLOW = 22
BAD_CERTIFICATE = 42
UNSUPPORTED_CERTIFICATE = 43
CERTIFICATE_EXPIRED = 45
CERTIFICATE_UNKNOWN = 46
ILLEGAL_PARAMETER = 47
UNKNOWN_CA = 48
DECODE_ERROR = 50
INTERNAL_ERROR = 80
USER_CANCELED = 90
CERTIFICATE_REQUIRED = 116

ALERT_NAMES = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    22: "record_overflow",
    40: "handshake_failure",
    42: "bad_certificate",
    43: "unsupported_certificate",
    44: "certificate_revoked",
    45: "certificate_expired",
    46: "certificate_unknown",
    47: "illegal_parameter",
    48: "unknown_ca",
    49: "access_denied",
    50: "decode_error",
    51: "decrypt_error",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    86: "inappropriate_fallback",
    90: "user_canceled",
    109: "missing_extension",
    110: "unsupported_extension",
    112: "unrecognized_name",
    113: "bad_certificate_status_response",
    115: "unknown_psk_identity",
    116: "certificate_required",
    120: "no_application_protocol",
}

# Handshake bytes held while a post-handshake message is incomplete: a NewSessionTicket is
# a few hundred bytes; more than this is a peer to cut off, not to buffer for.
_MAX_HANDSHAKE = 1 << 16
# KeyUpdates in a row without application data before the peer is cut off (OpenSSL's
# MAX_KEY_UPDATE_MESSAGES, BoringSSL's kMaxKeyUpdates).
MAX_KEY_UPDATES = 32
_SEQ_LIMIT = 1 << 64
_HEADER = struct.Struct(">BHH").pack  # TLSCiphertext header: type, legacy version, length
# Application-data headers by content length, for the small frames of a link (answers,
# ntags, ndata of small packets): a dict hit is cheaper than the pack. At most this many.
_CACHED_HEADERS = 512
_HEADERS: dict[int, bytes] = {}


def alert_name(description: int) -> str:
    return ALERT_NAMES.get(description, f"alert {description}")


class RecordError(Exception):
    """The record stream is broken. `alert` is the fatal alert to send the peer (None when
    the peer itself ended the link with an alert)."""

    def __init__(self, alert: int | None, message: str) -> None:
        self.alert = alert
        super().__init__(message)


class PeerAlert(RecordError):
    """The peer sent a fatal alert (`description`); nothing is sent back."""

    def __init__(self, description: int) -> None:
        self.description = description
        meaning = _REFUSED.get(description)
        why = (
            f" (the peer refused our certificate chain: {meaning}; "
            "its log names the certificate and the rule)"
            if meaning
            else ""
        )
        super().__init__(None, f"the peer sent the TLS alert {alert_name(description)}{why}")


# What the alerts a PPKS peer sends when its check refuses our chain after the handshake
# mean (packetlab.tls.gate.refusal_alert).
_REFUSED = {
    BAD_CERTIFICATE: "a certificate does not decode or breaks an encoding rule",
    UNSUPPORTED_CERTIFICATE: "a certificate of the wrong type for this link (another role's?)",
    CERTIFICATE_EXPIRED: "a certificate has expired or is not valid yet",
    CERTIFICATE_UNKNOWN: "the chain breaks a PPKS rule",
    UNKNOWN_CA: "it does not end at a key the peer trusts",
    CERTIFICATE_REQUIRED: "we sent no certificate and the peer requires one",
}


@dataclass(frozen=True)
class Suite:
    """A TLS 1.3 cipher suite: its AEAD, key length and hash (§B.4)."""

    name: str
    aead: type[AESGCM] | type[ChaCha20Poly1305]
    key_length: int
    hash: type[hashes.SHA256] | type[hashes.SHA384]


SUITES = {
    s.name: s
    for s in (
        Suite("TLS_AES_128_GCM_SHA256", AESGCM, 16, hashes.SHA256),
        Suite("TLS_AES_256_GCM_SHA384", AESGCM, 32, hashes.SHA384),
        Suite("TLS_CHACHA20_POLY1305_SHA256", ChaCha20Poly1305, 32, hashes.SHA256),
    )
}


def hkdf_expand_label(
    hash: type[hashes.SHA256] | type[hashes.SHA384],
    secret: bytes,
    label: bytes,
    context: bytes,
    length: int,
) -> bytes:
    """HKDF-Expand-Label (RFC 8446 §7.1)."""
    full = b"tls13 " + label
    info = struct.pack(">HB", length, len(full)) + full + bytes([len(context)]) + context
    return HKDFExpand(hash(), length, info).derive(secret)


class TrafficKeys:
    """One direction's record protection: AEAD key, IV and sequence number (§5.3),
    derived from a traffic secret (§7.3)."""

    __slots__ = ("_iv", "aead", "secret", "seq", "suite")

    def __init__(self, suite: Suite, secret: bytes, seq: int = 0) -> None:
        self.suite = suite
        self.secret = secret
        h = suite.hash
        self.aead = suite.aead(hkdf_expand_label(h, secret, b"key", b"", suite.key_length))
        self._iv = int.from_bytes(hkdf_expand_label(h, secret, b"iv", b"", 12), "big")
        self.seq = seq

    def updated(self) -> TrafficKeys:
        """The next generation (application_traffic_secret_N+1, §7.2), sequence 0."""
        h = self.suite.hash
        return TrafficKeys(
            self.suite, hkdf_expand_label(h, self.secret, b"traffic upd", b"", h.digest_size)
        )

    def _nonce(self) -> bytes:
        seq = self.seq
        if seq >= _SEQ_LIMIT - 1:  # §5.3: never wrap; rekeying this often is not our case
            raise RecordError(INTERNAL_ERROR, "TLS record sequence number exhausted")
        self.seq = seq + 1
        return (self._iv ^ seq).to_bytes(12, "big")

    def seal(self, content: bytes, inner_type: int = APPLICATION_DATA) -> bytes:
        """One TLSCiphertext record holding `content` (≤ 2^14 bytes), no padding."""
        header = b"\x17\x03\x03" + (len(content) + 1 + _TAG).to_bytes(2, "big")
        return header + self.aead.encrypt(self._nonce(), content + bytes((inner_type,)), header)

    def open(self, header: bytes, body: bytes | memoryview) -> bytes:
        """The TLSInnerPlaintext of one record (content, type, padding), or RecordError."""
        try:
            return self.aead.decrypt(self._nonce(), body, header)
        except InvalidTag:
            raise RecordError(
                BAD_RECORD_MAC,
                f"TLS record {self.seq - 1} does not authenticate (bad_record_mac)",
            ) from None


@dataclass
class Received:
    """What one `RecordLayer.receive` produced."""

    chunks: list[bytes] = field(default_factory=list)  # application data, one per record

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)

    out: bytes = b""  # records to send at once (our KeyUpdate answer)
    closed: bool = False  # the peer's close_notify came: no more data
    records: int = 0  # records opened


class RecordLayer:
    """Both directions of one TLS 1.3 connection after the handshake.

    `read` opens the peer's records, `write` seals ours; `write_seq`/`read_seq` are the
    sequence numbers already used under the first application keys (a TLS 1.3 server
    has sealed its NewSessionTickets with them before we take over)."""

    __slots__ = (
        "_answered",
        "_buf",
        "_hs",
        "_owed",
        "_unsent",
        "_updates",
        "closed",
        "read",
        "sent_close",
        "write",
    )

    def __init__(
        self,
        suite: Suite,
        read_secret: bytes,
        write_secret: bytes,
        *,
        read_seq: int = 0,
        write_seq: int = 0,
    ) -> None:
        self.read = TrafficKeys(suite, read_secret, read_seq)
        self.write = TrafficKeys(suite, write_secret, write_seq)
        self._buf = b""  # the start of a record not yet whole
        self._hs = b""  # a post-handshake message not yet whole
        self.closed = False  # the peer's close_notify was read
        self.sent_close = False
        self._updates = 0  # the peer's KeyUpdates since its last application data
        self._answered = False  # we sent a KeyUpdate and no application data since
        self._owed = False  # a KeyUpdate is due before our next application data
        self._unsent = b""  # our KeyUpdate answer from a receive that then failed

    @property
    def buffered(self) -> int:
        return len(self._buf) + len(self._hs)

    # -- sending --

    def seal(self, frame: bytes) -> bytes:
        """`frame` as one record, or as records of 2^14 bytes and the rest when larger
        (as OpenSSL's SSL_write splits it)."""
        update = self._owed_update()
        self._answered = False
        if len(frame) <= MAX_PLAINTEXT:
            return update + self.write.seal(frame)
        seal = self.write.seal
        return update + b"".join(
            seal(frame[i : i + MAX_PLAINTEXT]) for i in range(0, len(frame), MAX_PLAINTEXT)
        )

    def _owed_update(self) -> bytes:
        """The KeyUpdate owed to the peer (§4.6.3: before our next application data)."""
        if not self._owed:
            return b""
        return self.key_update(request=False)

    def seal_many(self, frames: list[bytes]) -> bytes:
        """One record per frame (split as `seal` does), joined. The hot path of a link:
        `TrafficKeys.seal` inlined."""
        out: list[bytes] = []
        if self._owed:
            out.append(self.key_update(request=False))
        self._answered = False
        keys = self.write
        if keys.seq + len(frames) >= _SEQ_LIMIT - 1:
            return b"".join(out + list(map(self.seal, frames)))
        encrypt, iv, seq, headers = keys.aead.encrypt, keys._iv, keys.seq, _HEADERS
        put = out.append
        for frame in frames:
            n = len(frame)
            if n > MAX_PLAINTEXT:
                keys.seq = seq
                put(self.seal(frame))
                seq = keys.seq
                continue
            header = headers.get(n)
            if header is None:
                header = _HEADER(APPLICATION_DATA, 0x0303, n + 1 + _TAG)
                if n < _CACHED_HEADERS:
                    headers[n] = header
            put(header)
            put(encrypt((iv ^ seq).to_bytes(12, "big"), frame + b"\x17", header))
            seq += 1
        keys.seq = seq
        return b"".join(out)

    def close_notify(self) -> bytes:
        """Our close_notify alert (once; b"" after)."""
        if self.sent_close:
            return b""
        self.sent_close = True
        return self.write.seal(b"\x01\x00", ALERT)

    def fatal_alert(self, description: int) -> bytes:
        """A fatal alert record; nothing is sent after it. A KeyUpdate answered by the
        `receive` that failed goes first: the alert is sealed under the keys it moved to."""
        self.sent_close = True
        unsent, self._unsent = self._unsent, b""
        return unsent + self.write.seal(bytes((2, description)), ALERT)

    def key_update(self, request: bool = False) -> bytes:
        """Our KeyUpdate (update_requested if `request`) sealed under the current keys;
        the keys then move on (§4.6.3)."""
        record = self.write.seal(bytes((KEY_UPDATE, 0, 0, 1, int(request))), HANDSHAKE)
        self.write = self.write.updated()
        self._answered = True  # it answers any request the peer made before
        self._owed = False
        return record

    # -- receiving --

    def receive(self, data: bytes) -> Received:
        """Open every whole record in what has arrived. Raises `RecordError`."""
        got = Received()
        if self.closed:
            return got  # nothing after close_notify counts (§6.1)
        buf = self._buf + data if self._buf else data
        end_all = len(buf)
        pos = 0
        chunks = got.chunks
        out: list[bytes] = []
        # The hot loop: application data records, with TrafficKeys.open inlined; anything
        # else goes through _other (and the keys are reloaded: a KeyUpdate changes them).
        keys = self.read
        decrypt, iv, seq = keys.aead.decrypt, keys._iv, keys.seq
        count = 0
        fresh = False  # application data since the KeyUpdate count was last reset
        split = bool(self._hs)  # a handshake message is open: every record goes to _other
        try:
            while end_all - pos >= 5:
                length = (buf[pos + 3] << 8) | buf[pos + 4]
                if length > MAX_CIPHERTEXT:
                    raise RecordError(
                        RECORD_OVERFLOW,
                        f"TLS record of {length} bytes (at most {MAX_CIPHERTEXT}; record_overflow)",
                    )
                end = pos + 5 + length
                if end > end_all:
                    break
                if buf[pos] != APPLICATION_DATA:
                    raise RecordError(
                        UNEXPECTED_MESSAGE,
                        f"TLS record of outer type {buf[pos]} after the handshake "
                        "(unexpected_message)",
                    )
                if length <= _TAG:
                    raise RecordError(
                        DECODE_ERROR, f"TLS record of {length} bytes is too short (decode_error)"
                    )
                if seq >= _SEQ_LIMIT - 1:
                    raise RecordError(INTERNAL_ERROR, "TLS record sequence number exhausted")
                try:
                    # A bytes slice, not a memoryview: cryptography's buffer path costs
                    # ~0.3 µs more per call than the copy of a small record.
                    plain = decrypt(
                        (iv ^ seq).to_bytes(12, "big"), buf[pos + 5 : end], buf[pos : pos + 5]
                    )
                except InvalidTag:
                    raise RecordError(
                        BAD_RECORD_MAC,
                        f"TLS record {seq} does not authenticate (bad_record_mac)",
                    ) from None
                seq += 1
                count += 1
                pos = end
                if plain[-1] == APPLICATION_DATA and not split:
                    if len(plain) > MAX_PLAINTEXT + 1:
                        raise RecordError(
                            RECORD_OVERFLOW,
                            f"TLS record with {len(plain) - 1} bytes of content (record_overflow)",
                        )
                    if len(plain) > 1:
                        chunks.append(plain[:-1])
                        fresh = True
                    continue
                keys.seq = seq
                if fresh:
                    self._updates = 0
                    fresh = False
                closed = self._other(plain, chunks, out)
                keys = self.read
                decrypt, iv, seq = keys.aead.decrypt, keys._iv, keys.seq
                split = bool(self._hs)
                if closed:
                    self.closed = got.closed = True
                    break
        except RecordError:
            self._unsent = b"".join(out)
            raise
        finally:
            keys.seq = seq
            if fresh:
                self._updates = 0
        got.records = count
        self._buf = b"" if self.closed or pos == end_all else buf[pos:]
        if out:
            got.out = b"".join(out)
        return got

    def _other(self, plain: bytes, chunks: list[bytes], out: list[bytes]) -> bool:
        """A record that is not plain application data; True at close_notify."""
        stripped = plain.rstrip(b"\x00")  # §5.4 padding
        if not stripped:
            raise RecordError(UNEXPECTED_MESSAGE, "TLS record of padding only (unexpected_message)")
        inner = stripped[-1]
        content = stripped[:-1]
        if len(content) > MAX_PLAINTEXT:
            raise RecordError(
                RECORD_OVERFLOW,
                f"TLS record with {len(content)} bytes of content (record_overflow)",
            )
        if inner == APPLICATION_DATA:
            if self._hs:
                raise RecordError(
                    UNEXPECTED_MESSAGE,
                    "application data inside a split handshake message (unexpected_message)",
                )
            if content:
                chunks.append(content)
                self._updates = 0
            return False
        if inner == HANDSHAKE:
            if not content:
                raise RecordError(
                    UNEXPECTED_MESSAGE, "empty TLS handshake record (unexpected_message)"
                )
            self._handshake(content, out)
            return False
        if inner == ALERT:
            return self._alert(content)
        raise RecordError(
            UNEXPECTED_MESSAGE,
            f"TLS record of inner type {inner} after the handshake (unexpected_message)",
        )

    def _alert(self, content: bytes) -> bool:
        """True at close_notify; raises at a fatal alert."""
        if self._hs:
            raise RecordError(
                UNEXPECTED_MESSAGE, "alert inside a split handshake message (unexpected_message)"
            )
        if len(content) != 2:
            raise RecordError(DECODE_ERROR, f"TLS alert of {len(content)} bytes (decode_error)")
        description = content[1]
        if description == CLOSE_NOTIFY:
            return True
        if description == USER_CANCELED:  # a warning; close_notify follows (§6.1)
            return False
        raise PeerAlert(description)

    def _handshake(self, content: bytes, out: list[bytes]) -> None:
        hs = self._hs + content if self._hs else content
        pos = 0
        while len(hs) - pos >= 4:
            kind = hs[pos]
            length = int.from_bytes(hs[pos + 1 : pos + 4], "big")
            if length > _MAX_HANDSHAKE:
                raise RecordError(
                    DECODE_ERROR, f"post-handshake message of {length} bytes (decode_error)"
                )
            end = pos + 4 + length
            if end > len(hs):
                break
            body = hs[pos + 4 : end]
            pos = end
            if kind == NEW_SESSION_TICKET:
                continue  # we never resume a session
            if kind != KEY_UPDATE:
                raise RecordError(
                    UNEXPECTED_MESSAGE,
                    f"post-handshake message of type {kind} (unexpected_message)",
                )
            if len(body) != 1:
                raise RecordError(DECODE_ERROR, "KeyUpdate of the wrong length (decode_error)")
            self._updates += 1
            if self._updates > MAX_KEY_UPDATES:
                raise RecordError(
                    UNEXPECTED_MESSAGE,
                    f"{self._updates} KeyUpdates without application data (at most "
                    f"{MAX_KEY_UPDATES}; unexpected_message)",
                )
            if body[0] > 1:
                raise RecordError(
                    ILLEGAL_PARAMETER, f"KeyUpdate request_update {body[0]} (illegal_parameter)"
                )
            if pos != len(hs):  # §5.1: a key change ends its record
                raise RecordError(
                    UNEXPECTED_MESSAGE,
                    "KeyUpdate not at the end of its record (unexpected_message)",
                )
            self.read = self.read.updated()
            if body[0] and not self.sent_close:
                # One answer until we send application data again; later requests are
                # answered by the update owed before it.
                if self._answered:
                    self._owed = True
                else:
                    out.append(self.key_update(request=False))
        rest = hs[pos:]
        if len(rest) > _MAX_HANDSHAKE:
            raise RecordError(DECODE_ERROR, "post-handshake message too long (decode_error)")
        self._hs = rest
