"""`pktlab run dns +tls-certfile=FILE +tls-keyfile=FILE` (a DoT/DoH client certificate)
and `+https-post`/`+http-plain-post` as dig 9.18 reads them (both were refused by name),
and a TLS connection the server ends after the handshake as dig says it."""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path
from typing import Any

import pytest

from packetlab.cli import run_dns, run_dns_words
from packetlab.cli.run import RunError
from packetlab.cli.run_dns_text import error_lines


def parse(*argv: str) -> argparse.Namespace:
    import packetlab.cli as cli

    a = cli.parse(["run", "dns", "@192.0.2.53", *argv])
    run_dns_words.dig_style(a)
    return a


def make_pair(where: Path) -> tuple[Path, Path]:
    """A self-signed EC certificate and its key, PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))  # fmt: skip
    crt, pem = where / "client.crt", where / "client.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))  # fmt: skip
    return crt, pem


def test_client_certificate_words_as_dig(tmp_path: Path) -> None:
    crt, key = make_pair(tmp_path)
    a = parse(f"+tls-certfile={crt}", f"+tls-keyfile={key}", "a.test")
    assert (a.tls, a.tls_certfile, a.tls_keyfile) == (True, str(crt), str(key))  # TLS on
    assert run_dns._client_cert(a) == (str(crt), str(key)) and run_dns._tls_unmade(a) is None
    client = run_dns._dot_client(a, run_dns._client_cert(a))
    assert client.ctx is not None
    a = parse(f"+tls-certfile={crt}", f"+tls-keyfile={key}", "+notls-keyfile", "+tls", "a.test")
    assert (
        a.tls and a.tls_keyfile is None and run_dns._tls_unmade(a) == run_dns.TLS_HALF
    )  # dig's line
    assert run_dns._tls_unmade(parse(f"+tls-keyfile={key}", "+https", "a.test")) == run_dns.TLS_HALF
    assert run_dns._tls_unmade(parse(f"+tls-keyfile={key}", "+http-plain", "a.test")) is None
    with pytest.raises(RunError, match="TLS certificate file is not specified"):
        parse("+tls-certfile", "a.test")
    with pytest.raises(RunError, match="TLS key file is not specified"):
        parse("+tls-keyfile=", "a.test")
    swapped = parse(f"+tls-certfile={key}", f"+tls-keyfile={crt}", "a.test")
    with pytest.raises(RunError, match=r"cannot be used: PEM lib$"):
        run_dns._client_cert(swapped)
    gone = parse(f"+tls-certfile={tmp_path}/none.crt", f"+tls-keyfile={key}", "a.test")
    with pytest.raises(RunError, match="cannot be used"):
        run_dns._client_cert(gone)


@pytest.mark.parametrize(
    ("words", "doh", "get", "path"),
    [
        (["+https-post"], "https", False, "/dns-query"),
        (["+https-post=/q"], "https", False, "/q"),
        (["+https-p"], "https", False, "/dns-query"),  # dig's abbreviation
        (["+https-get", "+https-post"], "https", True, "/dns-query"),  # as dig 9.18.49
        (["+http-plain-post"], "http", False, "/dns-query"),
        (["+https-post", "+nohttps-post"], None, False, "/dns-query"),
    ],
)  # fmt: skip
def test_post_aliases_as_dig(words: list[str], doh: str | None, get: bool, path: str) -> None:
    a = parse(*words, "a.test")
    assert (a.doh, bool(a.doh_get), a.doh_path) == (doh, get, path)


def test_ht_stays_ambiguous_as_dig() -> None:
    with pytest.raises(RunError, match="ambiguous"):
        parse("+ht", "a.test")


@pytest.mark.parametrize(
    ("error", "said"),
    [
        ("127.0.0.1:853 closed after 0 bytes: TLS alert: tlsv13 alert certificate required",
         "end of file"),
        ("127.0.0.1:853 closed after 0 of 2 bytes", "end of file"),
        ("connection to 127.0.0.1:853: RESET", "connection reset"),
    ],
)  # fmt: skip
def test_a_stream_the_server_ends_is_digs_words(error: str, said: str) -> None:
    r = {"server": "127.0.0.1", "port": 853, "proto": "tls", "error": error,
         "error_kind": "tcp", "tries": 1}  # fmt: skip
    assert error_lines(r) == [f";; communications error to 127.0.0.1#853: {said}"]


def test_a_tls_alert_after_the_handshake_is_a_closed_stream() -> None:
    """A server that wants a client certificate sends its alert after TLS 1.3's
    handshake: the exchange ends as a closed stream (was an internal error, exit 2)."""
    import dns.message
    from OpenSSL import SSL
    from twisted.internet.defer import Deferred

    from packetlab.measure.dnsresult import DnsResult
    from packetlab.measure.dnstransport import _tls_exchange
    from packetlab.measure.stream import StreamError

    class Chunk:
        data, time = b"\x15\x03\x03", 0

    class Stream:
        async def recv(self, timeout: float) -> Chunk:
            return Chunk()

    class Tls:
        def send(self, data: bytes) -> None:
            return None

        def feed(self, chunk: object) -> tuple[bytes, bool]:
            raise SSL.Error([("SSL routines", "", "tlsv13 alert certificate required")])

    query = dns.message.make_query("a.test", "A")
    result = DnsResult("a.test.", "A", "127.0.0.1", 853, "tls")
    d = Deferred.fromCoroutine(_tls_exchange(Stream(), Tls(), query, query.to_wire(),  # type: ignore[arg-type]
                                             result, 2.0))  # fmt: skip
    failures: list[BaseException] = []

    def failed(f: Any) -> None:
        failures.append(f.value)

    d.addErrback(failed)
    assert len(failures) == 1 and isinstance(failures[0], StreamError)
    assert str(failures[0]) == ("127.0.0.1:853 closed after 0 bytes: TLS alert: tlsv13 alert "
                                "certificate required")  # fmt: skip
