"""The hand-over from OpenSSL's handshake to the Python record layer, in memory (iosim):
which path each side takes (and the fallback to pyOpenSSL when the secrets or the cipher
are missing), forcing a path, the write sequence after a server's tickets, and how the
link ends: close_notify both ways, a bad record (fatal bad_record_mac sent, a log line),
a peer's alert, a truncated stream."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import pytest
from testkit.logs import Events, captured_events
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import LogLevel
from twisted.python.failure import Failure
from twisted.test.iosim import IOPump, connectedServerAndClient

from packetlab.ppks import generate_private_key, issue_certificate
from packetlab.tls import (
    AuthMode,
    Credentials,
    PPKSClientCreator,
    PPKSServerOptions,
    PPKSTLSFactory,
    ServerEntry,
    peer_of,
    takeover,
)
from packetlab.tls.protocol import PPKSTLSProtocol
from packetlab.tls.records import BAD_RECORD_MAC, PeerAlert, RecordError

NB, NA = 0, 2**31 - 1
eop, exper, xc, ep = (generate_private_key() for _ in range(4))
EXPPRIV = issue_certificate("exppriv", eop, exper, NB, NA)
PUBCMD = issue_certificate("pubcmd", exper, xc, NB, NA)
SUBCMD = issue_certificate("subcmd", eop, ep, NB, NA)


class App(Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.lost: Failure | None = None

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:
        self.lost = reason


@dataclass
class Link:
    client: PPKSTLSProtocol
    server: PPKSTLSProtocol
    client_app: App
    server_app: App
    pump: IOPump


def creator() -> PPKSClientCreator:
    return PPKSClientCreator(
        Credentials([SUBCMD], ep), AuthMode.ENDPOINT_AUTH_CONTROLLER, [eop], snikey="e"
    )


def options() -> PPKSServerOptions:
    entry = ServerEntry(
        Credentials([PUBCMD, EXPPRIV], xc), AuthMode.CONTROLLER_AUTH_ENDPOINT, [eop]
    )
    return PPKSServerOptions({"e": entry})


def link(
    client_creator: PPKSClientCreator | None = None,
    record_layers: tuple[str | None, str | None] = (None, None),
) -> Link:
    """A handshaken pair; `record_layers`: the (client, server) `record_layer`."""
    apps: dict[str, App] = {}

    def app(side: str) -> Factory:
        def build() -> App:
            apps[side] = App()
            return apps[side]

        return Factory.forProtocol(build)

    sf = PPKSTLSFactory(options(), False, app("server"))
    cf = PPKSTLSFactory(client_creator or creator(), True, app("client"))

    def build(factory: PPKSTLSFactory, layer: str | None) -> Any:
        p: Any = factory.buildProtocol(None)
        if layer is not None:
            p.record_layer = layer
        return p

    client, server, pump = connectedServerAndClient(
        lambda: build(sf, record_layers[1]), lambda: build(cf, record_layers[0]), greet=False
    )
    pump.flush()
    assert isinstance(client, PPKSTLSProtocol) and isinstance(server, PPKSTLSProtocol)
    return Link(client, server, apps["client"], apps["server"], pump)


@pytest.fixture
def warnings() -> Iterator[Events]:
    with captured_events(level=LogLevel.warn) as seen:
        yield seen


def exchange(lk: Link) -> None:
    lk.client.write(b"from the client")
    lk.server.write(b"from the server")
    lk.pump.flush()
    assert lk.server_app.data.endswith(b"from the client")
    assert lk.client_app.data.endswith(b"from the server")


def test_both_sides_take_over_after_the_handshake() -> None:
    lk = link()
    assert lk.client.record_path == lk.server.record_path == "python"
    exchange(lk)
    # the server sealed its two NewSessionTickets under its application keys first
    s = lk.server._records
    c = lk.client._records
    assert s is not None and c is not None
    assert s.write.seq == c.read.seq == 3
    assert s.read.seq == c.write.seq == 1


def test_no_secrets_falls_back_to_pyopenssl(warnings: Events) -> None:
    blind = creator()
    blind._ctx.set_keylog_callback(lambda conn, line: None)  # the lines never come
    lk = link(blind)
    assert lk.client.record_path == "openssl"
    assert lk.server.record_path == "python"
    exchange(lk)
    assert warnings == []  # auto mode: no complaint


def test_unknown_cipher_falls_back_to_pyopenssl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(takeover, "SUITES", {})
    lk = link()
    assert lk.client.record_path == lk.server.record_path == "openssl"
    exchange(lk)


def test_forced_python_warns_when_it_cannot(
    monkeypatch: pytest.MonkeyPatch, warnings: Events
) -> None:
    monkeypatch.setenv(takeover.ENV, "python")
    monkeypatch.setattr(takeover, "SUITES", {})
    lk = link()
    assert lk.client.record_path == "openssl"
    assert any("staying on pyOpenSSL" in w for w in warnings.lines())


def test_forced_openssl_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(takeover.ENV, "openssl")
    lk = link()
    assert lk.client.record_path == lk.server.record_path == "openssl"
    exchange(lk)


def test_class_attribute_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(takeover.ENV, "openssl")
    assert takeover.record_mode("python") == "python"
    assert takeover.record_mode() == "openssl"
    monkeypatch.setenv(takeover.ENV, "gnutls")
    with pytest.raises(ValueError, match="PACKETLAB_TLS_RECORDS"):
        takeover.record_mode()


def test_secrets_are_not_kept_after_the_handover() -> None:
    lk = link()
    for tls in (lk.client, lk.server):
        assert tls.getHandle() not in takeover._SECRETS


def test_lose_connection_is_close_notify_both_ways() -> None:
    lk = link()
    exchange(lk)
    lk.client.loseConnection()
    lk.pump.flush()
    assert lk.client_app.lost is not None and lk.client_app.lost.check(ConnectionDone)
    assert lk.server_app.lost is not None and lk.server_app.lost.check(ConnectionDone)
    assert lk.server._records is not None and lk.server._records.closed


def test_tampered_record_sends_bad_record_mac_and_closes(warnings: Events) -> None:
    lk = link()
    exchange(lk)
    records = lk.client._records
    assert records is not None
    rec = bytearray(records.seal(b"x" * 40))
    rec[-3] ^= 0x40
    lk.server.dataReceived(bytes(rec))
    lk.pump.flush()
    lost = lk.server_app.lost
    assert lost is not None and lost.check(RecordError)
    assert cast(RecordError, lost.value).alert == BAD_RECORD_MAC
    assert any("bad_record_mac" in w and "sent the fatal alert" in w for w in warnings.lines())
    # the client opened our alert and reports it
    peer = lk.client_app.lost
    assert peer is not None and peer.check(PeerAlert)
    assert cast(PeerAlert, peer.value).description == BAD_RECORD_MAC


def test_truncated_stream_is_connection_lost() -> None:
    lk = link()
    exchange(lk)
    lk.server.transport.abortConnection()  # type: ignore[union-attr]  # no close_notify
    lk.pump.flush()
    lost = lk.client_app.lost
    assert lost is not None and lost.check(ConnectionLost)


def test_key_update_over_the_protocols() -> None:
    lk = link()
    exchange(lk)
    c, s = lk.client._records, lk.server._records
    assert c is not None and s is not None
    before = (c.write.secret, s.write.secret)
    lk.client.key_update(request=True)
    lk.pump.flush()
    exchange(lk)
    assert c.write.secret != before[0] and s.write.secret != before[1]
    assert c.read.secret == s.write.secret and s.read.secret == c.write.secret


def test_key_update_needs_the_python_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(takeover.ENV, "openssl")
    lk = link()
    with pytest.raises(RuntimeError):
        lk.client.key_update()


def test_release_openssl_frees_the_connection_and_the_link_goes_on() -> None:
    lk = link()
    exchange(lk)
    conn = weakref.ref(lk.server.getHandle())
    assert lk.server.release_openssl()
    gc.collect()
    assert conn() is None  # the SSL object, its BIOs and buffers are gone
    assert lk.server.getHandle() is None and lk.server.getPeerCertificate() is None
    assert peer_of(lk.server_app) is not None  # the checked peer stays known
    assert not lk.server.release_openssl()  # once
    exchange(lk)
    lk.client.key_update(request=True)
    lk.pump.flush()
    exchange(lk)
    lk.server.loseConnection()
    lk.pump.flush()
    assert lk.server_app.lost is not None and lk.server_app.lost.check(ConnectionDone)
    assert lk.client_app.lost is not None and lk.client_app.lost.check(ConnectionDone)


def test_release_openssl_only_on_the_python_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(takeover.ENV, "openssl")
    lk = link()
    assert not lk.server.release_openssl()
    assert lk.server.getHandle() is not None
    exchange(lk)


def record_lengths(stream: bytes) -> list[int]:
    out, pos = [], 0
    while pos < len(stream):
        n = int.from_bytes(stream[pos + 3 : pos + 5], "big")
        assert stream[pos : pos + 3] == b"\x17\x03\x03"
        out.append(n)
        pos += 5 + n
    assert pos == len(stream)
    return out


@pytest.mark.parametrize("size", [1, 87, 16383, 16384, 16385, 40_000, 3 * 16384])
def test_records_are_cut_as_openssl_cuts_them(monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    def written(mode: str) -> list[int]:
        monkeypatch.setenv(takeover.ENV, mode)
        lk = link()
        assert lk.client.record_path == mode
        sent: list[bytes] = []
        transport: Any = lk.client.transport
        real = transport.write

        def spy(data: bytes) -> None:
            sent.append(data)
            real(data)

        transport.write = spy
        lk.client.write(bytes(size))
        lk.client.write(b"next")
        lk.pump.flush()
        assert lk.server_app.data == bytes(size) + b"next"
        return record_lengths(b"".join(sent))

    assert written("python") == written("openssl")


def test_a_bad_mode_in_the_environment_is_logged_and_auto_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(takeover.ENV, "gnutls")
    with captured_events() as events:
        lk = link()
    assert lk.client.record_path == lk.server.record_path == "python"
    assert any(
        "PACKETLAB_TLS_RECORDS='gnutls'" in line for line in events.lines(level=LogLevel.error)
    )
    exchange(lk)
