"""A TLS certificate measurement (RIPE Atlas `sslcert`, `openssl s_client -showcerts`):
connect from the endpoint, run the TLS handshake at the controller with `run http`'s TLS
(`http_tls.TlsLink` over the endpoint's `TcpStream`) and report the chain as the server
sent it, the version and cipher, the times (endpoint clock) and the server's alert.

Validation is not the point: the handshake never checks the chain; `verify` checks it
afterwards against the system store (and the name asked for), beside the chain."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any

from packetlab.clockstep import steady
from packetlab.controller import ControllerError, EndpointSession, IPAddress
from packetlab.hostport import is_address

__all__ = ["ALERTS", "Verdict", "alert_of", "cert_info", "not_tls", "sslcert"]

DEFAULT_PORT = 443

# RFC 8446 6 (and RFC 5246 7.2) alert descriptions, by number
ALERTS = {
    0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac",
    22: "record_overflow", 40: "handshake_failure", 42: "bad_certificate",
    43: "unsupported_certificate", 44: "certificate_revoked", 45: "certificate_expired",
    46: "certificate_unknown", 47: "illegal_parameter", 48: "unknown_ca",
    49: "access_denied", 50: "decode_error", 51: "decrypt_error", 70: "protocol_version",
    71: "insufficient_security", 80: "internal_error", 86: "inappropriate_fallback",
    90: "user_canceled", 109: "missing_extension", 110: "unsupported_extension",
    112: "unrecognized_name", 113: "bad_certificate_status_response",
    115: "unknown_psk_identity", 116: "certificate_required", 120: "no_application_protocol",
}  # fmt: skip
_BY_NAME = {name: code for code, name in ALERTS.items()}
# OpenSSL's reason texts for a received alert: "sslv3 alert handshake failure",
# "tlsv13 alert certificate required", "tlsv1 unrecognized name"
_OPENSSL_PREFIXES = ("sslv3 alert ", "tlsv13 alert ", "tlsv1 alert ", "tlsv1 ")
_RECORD_TYPES = (20, 21, 22, 23, 24)  # change_cipher_spec .. heartbeat


def alert_of(received: bytes, reasons: list[str]) -> dict[str, Any] | None:
    """The alert the server sent: a plaintext alert record in `received` (the bytes of
    the handshake, as they came), else one OpenSSL's error `reasons` name (an encrypted
    TLS 1.3 alert: OpenSSL says which). Atlas' fields (`level`, `decription` as Atlas
    spells it) and `description`, `name`."""
    at = 0
    while at + 5 <= len(received):
        kind, size = received[at], int.from_bytes(received[at + 3 : at + 5], "big")
        if kind == 21 and size == 2 and at + 7 <= len(received):
            level, code = received[at + 5], received[at + 6]
            return _alert(level, code)
        at += 5 + size
    for reason in reasons:
        for prefix in _OPENSSL_PREFIXES:
            if reason.startswith(prefix):
                named = _BY_NAME.get(reason[len(prefix) :].replace(" ", "_"))
                if named is not None:
                    return _alert(2, named)
    return None


def _alert(level: int, code: int) -> dict[str, Any]:
    name = ALERTS.get(code, f"alert {code}")
    return {"level": level, "decription": code, "description": code, "name": name}


def not_tls(received: bytes) -> str | None:
    """Why the server's first bytes are not a TLS record (None: they may be one)."""
    if not received:
        return None
    head = received[:3]
    if head[0] in _RECORD_TYPES and (len(head) < 2 or head[1] == 3):
        return None
    shown = received[:24].decode("ascii", "backslashreplace")  # (repr: \r\n escaped)
    return f"not a TLS server: its first bytes are not a TLS record: {shown!r}"


def cert_info(der: bytes) -> dict[str, Any]:
    """One certificate as `openssl x509 -subject -issuer -dates -fingerprint -sha256`
    tells it: subject and issuer (OpenSSL's one-line form), validity (UTC, ISO 8601),
    the SHA-256 fingerprint of the DER bytes (colon-separated, upper case)."""
    from cryptography import x509

    c = x509.load_der_x509_certificate(der)
    digest = hashlib.sha256(der).hexdigest().upper()
    return {
        "subject": _oneline(c.subject),
        "issuer": _oneline(c.issuer),
        "not_before": c.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "not_after": c.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "sha256": ":".join(digest[i : i + 2] for i in range(0, len(digest), 2)),
    }


def _oneline(name: Any) -> str:
    """OpenSSL 3's `-nameopt oneline` ... as s_client prints it: `C = US, O = X, CN = y`
    (RFC 4514's order reversed: the most significant first)."""
    parts = []
    for rdn in name.rdns:
        for a in rdn:
            short = a.rfc4514_attribute_name
            parts.append(f"{short} = {a.value}")
    return ", ".join(parts)


def pem(der: bytes) -> str:
    b64 = base64.b64encode(der).decode()
    lines = "\n".join(b64[i : i + 64] for i in range(0, len(b64), 64))
    return f"-----BEGIN CERTIFICATE-----\n{lines}\n-----END CERTIFICATE-----\n"


@dataclass
class _Seen:
    """What the handshake took in: the raw bytes and when the certificates came."""

    link: Any
    received: bytearray = field(default_factory=bytearray)
    certs_at: int | None = None

    def __call__(self, chunk: Any) -> None:
        self.received += chunk.data
        if self.certs_at is None and self.link.conn.get_peer_cert_chain():
            self.certs_at = chunk.time


async def sslcert(
    session: EndpointSession,
    addr: IPAddress,
    port: int = DEFAULT_PORT,
    *,
    sni: str | None = None,
    timeout: float = 10.0,
    verify: bool = False,
    cafile: str | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """The `sslcert` record of one handshake with ADDR:PORT from the endpoint; a failure
    is its `error` (and `alert`), never an exception but the session's own. `verify`
    (or a `cafile`): whether the chain verifies against the system store (`cafile`),
    noted by OpenSSL in the handshake, which it never fails (`Verdict`)."""
    from OpenSSL import SSL

    from packetlab.measure.http_tls import (
        HandshakeClosed,
        TlsLink,
        ca_file,
        client_context,
        tls_error,
    )
    from packetlab.measure.http_url import Url
    from packetlab.measure.stream import StreamError, StreamTimeout, TcpStream, connect_failure

    rec: dict[str, Any] = {
        "type": "sslcert", "method": "TLS", "dst_name": name or str(addr),
        "dst_addr": str(addr), "dst_port": port, "af": addr.version,
    }  # fmt: skip
    if sni:
        rec["sni"] = sni
    clock = session.reactor
    deadline = steady(clock) + timeout
    try:
        stream = await TcpStream.connect(session, addr, port, timeout=timeout)
    except StreamError as e:
        rec["error"] = str(e)
        return rec
    except ControllerError as e:
        rec["error"] = connect_failure(e, addr, port)
        return rec
    rec["ttc"] = _ms(stream.established_at - stream.started_at)
    ctx = client_context(insecure=True)
    ctx.set_min_proto_version(0)  # what the server has (TLS 1.0 too, as Atlas asks)
    verdict = None
    if verify or cafile:
        verdict = Verdict()
        trusted = cafile or ca_file()
        if trusted is not None:  # (none: no root, "unable to get local issuer ...")
            ctx.load_verify_locations(trusted)
        ctx.set_verify(SSL.VERIFY_PEER, verdict)
    # (no --sni: the address, which TlsLink sends no SNI for, as s_client -noservername)
    link = TlsLink(ctx, Url("https", sni or str(addr), port, "/"), stream)
    seen = _Seen(link)
    link.on_chunk = seen
    hello = None
    try:
        try:  # the ClientHello sent here, for its send time (ntag): `rt` counts from the
            link.conn.do_handshake()  # connect's start, a controller round trip in it
        except SSL.WantReadError:
            hello = link.flush(ntag=True)
            if hello is not None:  # (an nsend refused: no time, and no unhandled error)
                hello.addErrback(lambda _: None)
        await link.handshake(deadline, check_name=False)
    except SSL.Error as e:
        reasons = [str(a[2]) for a in (e.args[0] if e.args and isinstance(e.args[0], list) else [])]
        _failed(rec, seen, tls_error(e), reasons)
    except HandshakeClosed as e:
        _failed(rec, seen, str(e), [])
    except StreamTimeout:
        what = "answer to the ClientHello" if not seen.received else "end of the handshake"
        _failed(rec, seen, f"timeout: no {what} within {timeout:g} s", [])
    except StreamError as e:  # a reset
        _failed(rec, seen, str(e), [])
    else:
        conn = link.conn
        rec["ver"] = version_number(conn.get_protocol_version_name())
        rec["cipher"] = conn.get_cipher_name()
        if verdict is not None:
            rec.update(verdict.fields(conn.get_peer_certificate(), sni or name or str(addr)))
    finally:
        await _source(rec, stream)  # (after the handshake: its mread delays no time)
        await stream.close()
    chain = link.conn.get_peer_cert_chain(as_cryptography=True) or []
    if chain:
        from cryptography.hazmat.primitives.serialization import Encoding

        ders = [c.public_bytes(Encoding.DER) for c in chain]
        rec["cert"] = [pem(d) for d in ders]
        rec["certs"] = [cert_info(d) for d in ders]
    if seen.certs_at is not None:
        rec["rt"] = _ms(seen.certs_at - stream.started_at)
        sent = await _sent_at(hello)
        if sent is not None:
            rec["hello_rt"] = _ms(seen.certs_at - sent)
    return rec


def version_number(name: str | None) -> str:
    """OpenSSL's TLSv1, TLSv1.2, TLSv1.3 as Atlas' `ver`: 1.0, 1.2, 1.3."""
    number = (name or "").removeprefix("TLSv")
    return f"{number}.0" if number.isdigit() else number


async def _sent_at(hello: Any) -> int | None:
    """The ClientHello's send time (its ntag's), None when the endpoint did not say."""
    if hello is None:
        return None
    tag = await hello
    return None if tag is None or tag.errid else int(tag.time)


async def _source(rec: dict[str, Any], stream: Any) -> None:
    """Atlas' `src_addr`: the endpoint's address of the connection (left out when the
    endpoint cannot say)."""
    from packetlab.controller import read_socket_info

    try:
        info = await read_socket_info(stream.session, stream.sktid)
    except ControllerError:
        return
    if info.laddr is not None:
        rec["src_addr"] = str(info.laddr)


def _failed(rec: dict[str, Any], seen: _Seen, text: str, reasons: list[str]) -> None:
    bad = not_tls(bytes(seen.received))
    alert = None if bad else alert_of(bytes(seen.received), reasons)
    if alert is not None:
        rec["alert"] = alert
        level = {1: "warning", 2: "fatal"}.get(alert["level"], f"level {alert['level']}")
        text = f"the server sent the TLS alert {alert['name']} ({alert['description']}, {level})"
    rec["error"] = bad or text


class Verdict:
    """OpenSSL's chain check during the handshake, as s_client runs it: each error
    noted, none refusing the chain; the last one is the result (s_client's `Verify
    return code`, SSL_get_verify_result)."""

    def __init__(self) -> None:
        self.error: int | None = None

    def __call__(self, conn: Any, cert: Any, errno: int, depth: int, ok: int) -> bool:
        if not ok:
            self.error = errno
        return True

    def fields(self, leaf: Any, host: str) -> dict[str, Any]:
        """`verified`, and `verify_error` in OpenSSL's words (s_client's `Verification
        error:`) when the chain did not verify or `leaf` does not name `host` (curl's
        rules)."""
        from packetlab.measure.certname import name_check
        from packetlab.measure.http_tls import VERIFY_ERRORS

        if self.error is not None:
            why = VERIFY_ERRORS.get(self.error, f"X509 verify error {self.error}")
            return {"verified": False, "verify_error": why, "verify_result": self.error}
        if leaf is None:
            return {"verified": False, "verify_error": "no certificate"}
        matched, lines = name_check(leaf, host, is_address(host))
        if not matched:
            return {"verified": False, "verify_error": lines[-1].strip()}
        return {"verified": True}


def _ms(ns: int) -> float:
    return round(max(ns, 0) / 1e6, 3)
