"""The broker frees a subscriber's OpenSSL connection once its link idles (the Python
record layer carries it from then on), and the xnotify still reaches the subscriber;
on the pyOpenSSL path it keeps the connection (and swaps its BIOs instead). Real TLS in
memory (iosim), the real BrokerProtocol."""

from __future__ import annotations

import gc
import weakref

import pytest
from broker_fakes import agent
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.test.iosim import IOPump, connectedServerAndClient

from packetlab.broker.protocol import BrokerFactory
from packetlab.broker.registry import Registry
from packetlab.broker.session import Role
from packetlab.broker.throttle import Throttle
from packetlab.tls import (
    AuthMode,
    PPKSClientCreator,
    PPKSServerOptions,
    PPKSTLSFactory,
    ServerEntry,
    takeover,
)
from packetlab.tls.protocol import PPKSTLSProtocol
from packetlab.wire import Framer, Result, Xnotify, Xpub, Xsub, encode

XD = b"controller_addr=127.0.0.1:20600;sni_key=abc;"
ZERO = bytes(32)


class Client(Protocol):
    def __init__(self) -> None:
        self.data = b""

    def dataReceived(self, data: bytes) -> None:
        self.data += data


def test_idle_subscriber_link_frees_openssl_and_still_gets_xnotify(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    check_release(monkeypatch, "auto", freed=True)


def test_pyopenssl_path_keeps_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    check_release(monkeypatch, "openssl", freed=False)


def check_release(monkeypatch: pytest.MonkeyPatch, mode: str, *, freed: bool) -> None:
    monkeypatch.setenv(takeover.ENV, mode)
    clock, registry, throttle = Clock(), Registry(), Throttle(base=1.0, cap=8.0)
    factories = {r: BrokerFactory(r, registry, throttle, clock) for r in Role}
    options = PPKSServerOptions(
        default=ServerEntry(agent(), AuthMode.AGENT, (), require_client_cert=True)
    )

    def connect(role: Role) -> tuple[PPKSTLSProtocol, PPKSTLSProtocol, Client, IOPump]:
        sf = PPKSTLSFactory(options, False, factories[role])
        client = Client()
        cf = PPKSTLSFactory(
            PPKSClientCreator(agent(), AuthMode.AGENT), True, Factory.forProtocol(lambda: client)
        )
        ctls, stls, pump = connectedServerAndClient(
            lambda: sf.buildProtocol(None), lambda: cf.buildProtocol(None), greet=False
        )
        pump.flush()
        assert isinstance(ctls, PPKSTLSProtocol) and isinstance(stls, PPKSTLSProtocol)
        return stls, ctls, client, pump

    sub_tls, sub_client_tls, sub, sub_pump = connect(Role.SUBSCRIBE)
    sub_client_tls.write(encode(Xsub([b"public"], ZERO, b"")))
    sub_pump.flush()
    assert list(Framer().feed(sub.data)) == [Result(0)]
    handle = weakref.ref(sub_tls.getHandle())
    clock.advance(0)  # the idle link gives its TLS memory back after this turn
    gc.collect()
    assert (handle() is None) is freed
    assert (sub_tls.getHandle() is None) is freed

    _, pub_client_tls, pub, pub_pump = connect(Role.PUBLISH)
    pub_client_tls.write(encode(Xpub([b"public"], ZERO, XD)))
    pub_pump.flush()
    sub_pump.flush()
    assert list(Framer().feed(pub.data)) == [Result(0)]
    assert list(Framer().feed(sub.data)) == [Result(0), Xnotify(b"public", XD)]
