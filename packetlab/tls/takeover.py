"""Hand a finished TLS 1.3 handshake from OpenSSL to the Python record layer.

The traffic secrets come from OpenSSL's keylog callback (set on every PacketLab context,
`watch_secrets`): the `CLIENT_TRAFFIC_SECRET_0` and `SERVER_TRAFFIC_SECRET_0` lines of a
connection are kept in memory, by connection, until `take_over` collects them once its
handshake is complete. They are never logged or written anywhere.

`take_over` returns None (the caller stays on pyOpenSSL) when a secret is missing or the
cipher is not one `packetlab.tls.records` knows. `PACKETLAB_TLS_RECORDS` forces a path:
`python` (the record layer wherever it can run), `openssl` (pyOpenSSL throughout) or
`auto` (the default, same as `python`), so a benchmark can compare both in one run.
"""

from __future__ import annotations

import os
import weakref

from OpenSSL import SSL

from .records import (
    APPLICATION_DATA,
    MAX_CIPHERTEXT,
    SUITES,
    RecordError,
    RecordLayer,
    TrafficKeys,
)

__all__ = ["MODES", "forget_secrets", "record_mode", "take_over", "watch_secrets"]

MODES = ("auto", "python", "openssl")
ENV = "PACKETLAB_TLS_RECORDS"

_WANTED = (b"CLIENT_TRAFFIC_SECRET_0", b"SERVER_TRAFFIC_SECRET_0")
# connection -> {label: (client_random hex, secret hex)}; gone with the connection.
_SECRETS: weakref.WeakKeyDictionary[SSL.Connection, dict[bytes, tuple[bytes, bytes]]] = (
    weakref.WeakKeyDictionary()
)


def record_mode(override: str | None = None) -> str:
    """The record path to use: `override` if given, else $PACKETLAB_TLS_RECORDS, else auto."""
    mode = (override or os.environ.get(ENV) or "auto").strip().lower()
    if mode not in MODES:
        raise ValueError(f"{ENV}={mode!r}: expected one of {', '.join(MODES)}")
    return mode


def _keylog(conn: SSL.Connection, line: bytes) -> None:
    # Called by OpenSSL in the middle of a handshake: nothing may raise here.
    label, _, rest = line.partition(b" ")
    if label in _WANTED:
        client_random, _, secret = rest.partition(b" ")
        try:
            _SECRETS.setdefault(conn, {})[label] = (client_random, secret.strip())
        except TypeError:  # not weak-referenceable: not a connection we can take over
            pass


def watch_secrets(ctx: SSL.Context) -> None:
    """Keep the application traffic secrets of `ctx`'s connections for `take_over`."""
    ctx.set_keylog_callback(_keylog)


def forget_secrets(conn: SSL.Connection) -> None:
    _SECRETS.pop(conn, None)


def take_over(conn: SSL.Connection, is_client: bool, written: bytes) -> RecordLayer | None:
    """The record layer for `conn`, whose handshake just completed, or None if it cannot
    run (no secrets for this connection, unknown cipher). `written` is what OpenSSL wrote
    since the handshake completed (a server's NewSessionTickets, a client's Finished):
    the records in it sealed under our first application keys set the write sequence."""
    secrets = _SECRETS.pop(conn, None)
    suite = SUITES.get(conn.get_cipher_name() or "")
    if secrets is None or suite is None or len(secrets) != len(_WANTED):
        return None
    client_random = conn.client_random()
    if client_random is None:
        return None
    mine = client_random.hex().encode()
    if any(cr.lower() != mine for cr, _ in secrets.values()):
        return None  # lines of another handshake: never guess
    try:
        client, server = (bytes.fromhex(secrets[label][1].decode()) for label in _WANTED)
    except ValueError:
        return None
    read, write = (server, client) if is_client else (client, server)
    layer = RecordLayer(suite, read, write)
    layer.write.seq = _sealed_by(layer, written)
    return layer


def _sealed_by(layer: RecordLayer, written: bytes) -> int:
    """How many records of `written` open under the layer's write keys, in sequence (the
    rest were sealed under handshake keys)."""
    probe = TrafficKeys(layer.write.suite, layer.write.secret)
    pos = 0
    while len(written) - pos >= 5:
        length = int.from_bytes(written[pos + 3 : pos + 5], "big")
        end = pos + 5 + length
        if end > len(written) or length > MAX_CIPHERTEXT:
            break
        if written[pos] == APPLICATION_DATA:
            seq = probe.seq
            try:
                probe.open(written[pos : pos + 5], written[pos + 5 : end])
            except RecordError:
                probe.seq = seq
        pos = end
    return probe.seq
