"""Broker mode's reconnects to a broker that stays down: logged while the backoff grows,
then once every `OUTAGE_REMINDER` seconds, not at every attempt."""

from __future__ import annotations

from typing import Any, cast

import pytest
from testkit.logs import captured_events
from twisted.internet import defer
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock

from packetlab.endpoint.outage import OUTAGE_REMINDER
from packetlab.endpoint.subscriber import BrokerSubscriber


class Refusing:
    def __init__(self) -> None:
        self.attempts = 0

    def connect(self, factory: Any) -> defer.Deferred[Any]:
        self.attempts += 1
        return defer.fail(ConnectionRefusedError())


def test_a_broker_down_for_an_hour_is_not_logged_every_five_seconds() -> None:
    reactor = MemoryReactorClock()
    ep = Refusing()
    sub = BrokerSubscriber(reactor, "127.0.0.1:20557", lambda: ep, cast(Any, None), print)
    try:
        with captured_events() as seen:
            sub.startService()
            while reactor.seconds() < 3600:
                reactor.advance(reactor.getDelayedCalls()[0].getTime() - reactor.seconds())
    finally:
        sub.stopService()
    lines = seen.where(namespace="Subscriber").formats()
    assert ep.attempts > 700  # it keeps trying every ~5 s
    # the first failure, then one reminder per OUTAGE_REMINDER (session 33: was 8 first)
    assert 3600 // OUTAGE_REMINDER <= len(lines) <= 1 + 3600 // OUTAGE_REMINDER, lines
    assert sum("still unreachable" in ln for ln in lines) >= 5


def test_broker_mode_with_an_expired_chain_of_ours_does_not_start(tmp_path: Any) -> None:
    """Broker mode with an expired SubPrivCertChainPath: the endpoint started, the broker
    refused its subscription at every reconnect, and nothing at our end said why."""
    import pytest

    from packetlab.cli.init import init_home
    from packetlab.endpoint.config import ConfigError, load_config
    from packetlab.endpoint.subscriber import BrokerSettings
    from packetlab.ppks import PktlabHome, issue_certificate

    home = PktlabHome.at(tmp_path / "home")
    init_home(home)
    old = tmp_path / "sub_old.cert"
    cert = issue_certificate("subcmd", home.private_key("k_eop"), home.private_key("k_ep"), 0, 100)
    old.write_bytes(cert.to_pem())
    conf = tmp_path / "endpt.conf"
    text = (home.root / "endpt.conf").read_text()
    conf.write_text(text + f"SubPrivCertChainPath {old}\n")
    line = len(text.splitlines()) + 1
    with pytest.raises(ConfigError) as e:
        BrokerSettings.from_config(load_config(conf))
    assert str(e.value).startswith(
        f"broker mode: {conf}:{line}: SubPrivCertChainPath: certificate #0 (subcmd) expired at "
        "1970-01-01T00:01:40Z"
    ), str(e.value)
    assert BrokerSettings.from_config(load_config(home.root / "endpt.conf")) is not None


def test_a_bad_broker_address_is_called_one() -> None:
    """`--broker 127.0.0.1:99999` said `BrokerAddr: bad controller address ...`."""
    import pytest

    from packetlab.endpoint.config import ConfigError, EndpointConfig
    from packetlab.endpoint.subscriber import BrokerSettings

    cfg = EndpointConfig(broker_addr="127.0.0.1:99999")
    with pytest.raises(ConfigError) as e:
        BrokerSettings.from_config(cfg)
    assert str(e.value) == (
        "BrokerAddr: bad broker address '127.0.0.1:99999': port must be 1..65535, got '99999'"
    )


def test_a_broker_flooding_empty_xnotify_costs_a_few_log_lines() -> None:
    """20,000 xnotify without an xdescr (6 bytes each) from a broker were 20,000 warnings
    in the endpoint's log; now 20 a minute, the rest counted (as refused xdescrs)."""
    from types import SimpleNamespace

    from twisted.internet.testing import StringTransport

    from packetlab.endpoint.subscriber import _BrokerLink
    from packetlab.wire import Result, encode

    reactor = MemoryReactorClock()
    plan = SimpleNamespace(results_expected=1, frames=lambda: [], chlist=[b"a"], dattr=b"")
    sub = BrokerSubscriber(reactor, "127.0.0.1:20557", lambda: None, cast(Any, plan), print)
    link = _BrokerLink(sub)
    link.makeConnection(StringTransport())
    with captured_events() as seen:
        link.dataReceived(encode(Result(0)) + b"\x70\x00\x00\x02\x01a" * 20000)
        reactor.advance(61)
        link.dataReceived(b"\x70\x00\x00\x02\x01a")
    lines = [e["log_format"] for e in seen if "xnotify" in e.get("why", "")]
    assert len(lines) == 21, len(lines)
    assert "19980" in str([e.get("more") for e in seen][-1])


def test_broker_addr_without_a_port_means_the_subscription_port_20557(tmp_path: Any) -> None:
    # §5.1 PKTLAB_DEFAULT_SUB_PORT_STR; the demo home's endpt.conf says `BrokerAddr 127.0.0.1`
    from packetlab.cli.init import init_home
    from packetlab.endpoint.config import load_config
    from packetlab.endpoint.service import ControllerAddress
    from packetlab.endpoint.subscriber import BrokerSettings
    from packetlab.ppks import PktlabHome

    home = PktlabHome.at(tmp_path / "home")
    init_home(home)
    cfg = load_config(home.root / "endpt.conf")
    assert cfg.broker_addr == "127.0.0.1"
    assert BrokerSettings.from_config(cfg).address == ControllerAddress("127.0.0.1", 20557)


def test_the_broker_link_pipelines_its_messages_one_write_each_with_tcp_keepalive() -> None:
    """O §1.2 [sub_basic]: the xcert(s) and the xsub leave before any result (pipelined),
    each message its own write (its own TLS record), and the socket has SO_KEEPALIVE,
    the reference's only liveness check (no application keepalive)."""
    from twisted.internet.testing import StringTransport

    from packetlab.endpoint.subscriber import _BrokerLink
    from packetlab.endpoint.subscription import SubscriptionPlan

    class TCP(StringTransport):
        keepalive = False

        def setTcpKeepAlive(self, on: bool) -> None:
            self.keepalive = on

    class TLS(StringTransport):  # what TLSMemoryBIOProtocol's transport looks like here
        def __init__(self) -> None:
            super().__init__()
            self.transport = TCP()
            self.writes: list[bytes] = []

        def write(self, data: bytes) -> None:
            self.writes.append(bytes(data))

    plan = SubscriptionPlan((b"\x30\x03\x02\x01\x00",), (b"public",), bytes(32), b"a=b;")
    reactor = MemoryReactorClock()
    sub = BrokerSubscriber(reactor, "127.0.0.1:20557", lambda: Refusing(), plan, print)
    link = _BrokerLink(sub)
    tls = TLS()
    link.makeConnection(tls)
    assert tls.writes == plan.frames() and len(tls.writes) == 2
    assert (
        tls.writes[1]
        == bytes.fromhex("3800002c" + "06" + b"public".hex() + "00") + bytes(32) + b"a=b;"
    )
    assert tls.transport.keepalive


def _broker_conf(tmp_path: Any, extra: str) -> tuple[Any, Any, int]:
    from packetlab.cli.init import init_home
    from packetlab.ppks import PktlabHome

    home = PktlabHome.at(tmp_path / "home")
    init_home(home)
    conf = tmp_path / "endpt.conf"
    text = (home.root / "endpt.conf").read_text()
    conf.write_text(text + extra)
    return home, conf, len(text.splitlines()) + 1


@pytest.mark.parametrize(
    "key", ["EndpointOpPubKeyPath", "BrokerChainRootPath", "SubPrivCertChainPath"]
)
def test_a_missing_file_in_broker_mode_names_its_key(tmp_path: Any, key: str) -> None:
    """Was `broker mode: [Errno 2] No such file or directory: '...'`: the file, not which
    key named it (session 28, fresh28)."""
    from packetlab.endpoint.config import ConfigError, load_config
    from packetlab.endpoint.subscriber import BrokerSettings

    _, conf, line = _broker_conf(tmp_path, f"{key} {tmp_path}/nosuch\n")
    with pytest.raises(ConfigError) as e:
        BrokerSettings.from_config(load_config(conf))
    assert str(e.value) == (
        f"broker mode: {conf}:{line}: {key}: {tmp_path}/nosuch: No such file or directory"
    )


def test_broker_mode_with_a_certificate_other_than_an_agent_one_does_not_start(
    tmp_path: Any,
) -> None:
    """Was: the endpoint started and the broker refused its link at every reconnect."""
    from packetlab.endpoint.config import ConfigError, load_config
    from packetlab.endpoint.subscriber import BrokerSettings
    from packetlab.ppks import issue_certificate

    sub = tmp_path / "sub.cert"
    home, conf, line = _broker_conf(tmp_path, f"EndpointAgentCertPath {sub}\n")
    key = home.private_key("k_ep")
    sub.write_bytes(issue_certificate("subcmd", key, key, 0, 2**31 - 1).to_pem())
    with pytest.raises(ConfigError) as e:
        BrokerSettings.from_config(load_config(conf))
    assert str(e.value) == (
        f"broker mode: {conf}:{line}: EndpointAgentCertPath is a subcmd certificate, not an "
        "agent certificate: every broker checks the endpoint's link in agent mode and "
        "refuses it"
    )
