"""A real `twistd pktbroker` (after `pktlab init`, no other setup) with subscribers and
publishers speaking raw frames over TLS, and our `publish()` API (PROTOCOL.md §5,
BROKER-PROXY-OBSERVED.md §1-§3, §5)."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import pytest_twisted
from broker_world import BrokerProcess, Identity, RawClient, publish_raw
from testkit.poll import poll_until
from tls_world import home_fixture
from twisted.internet import reactor, threads

from packetlab import wire
from packetlab.controller import PublishCredentials, PublishRefused, make_xdescr, publish
from packetlab.ppks import PktlabHome, key_id

XD = b"controller_addr=127.0.0.1:20600;sni_key=exp1;"


home = home_fixture()


@pytest.fixture(scope="module")
def broker(home: PktlabHome, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    b = BrokerProcess(home, tmp_path_factory.mktemp("broker"))
    yield b
    b.stop()


@pytest.fixture
def ident(home: PktlabHome, tmp_path: Path) -> Iterator[object]:
    def make(name: str) -> Identity:
        return Identity(home, tmp_path, name)

    yield make


def raw_publisher(home: PktlabHome, broker: BrokerProcess) -> RawClient:
    return RawClient(broker.pub_port, home.cert_path("agent_xc_xc"), home.key_path("k_xc"))


def test_subscribe_then_publish_notifies_and_late_subscriber_gets_it(
    home: PktlabHome, broker: BrokerProcess, ident: object
) -> None:
    a = ident("a")  # type: ignore[operator]
    sa = a.subscribe(broker.sub_port, b"hostid=pktendpt;endpoint_country=USA;")
    pub = publish_raw(home, broker, b"endpoint_country=USA;" + XD)
    assert sa.recv() == wire.Xnotify(a.channel, b"endpoint_country=USA;" + XD)
    late = ident("late")  # type: ignore[operator]
    sl = late.subscribe(broker.sub_port)
    assert sl.recv() == wire.Xnotify(a.channel, b"endpoint_country=USA;" + XD)
    # the publisher goes: a new subscriber gets nothing
    pub.close()
    broker.wait_log("publisher closed the connection")
    after = ident("after")  # type: ignore[operator]
    sa2 = after.subscribe(broker.sub_port)
    assert sa2.quiet(0.5) == []
    for c in (sa, sl, sa2):
        c.close()


def test_non_matching_dattr_is_not_notified(
    home: PktlabHome, broker: BrokerProcess, ident: object
) -> None:
    gbr = ident("gbr")  # type: ignore[operator]
    s = gbr.subscribe(broker.sub_port, b"endpoint_country=GBR;")
    pub = publish_raw(home, broker, b"endpoint_country=USA;controller_addr=127.0.0.1:1;")
    assert s.quiet(0.7) == []
    pub.close()
    s.close()


def test_reconnected_endpoint_is_not_sent_the_same_xdescr_again(
    home: PktlabHome, broker: BrokerProcess, ident: object
) -> None:
    e = ident("re")  # type: ignore[operator]
    s = e.subscribe(broker.sub_port)
    pub = publish_raw(home, broker, b"controller_addr=127.0.0.1:2;")
    assert isinstance(s.recv(), wire.Xnotify)
    s.close()
    s = e.subscribe(broker.sub_port)  # same agent key: the reference would crash on a replay
    assert s.quiet(0.7) == []
    s.close()
    pub.close()


@pytest.mark.parametrize(
    "case", ["forged chain", "wrong channel", "malformed frame", "oversized xdescr"]
)
def test_bad_input_gets_its_code_and_the_broker_stays_up(
    home: PktlabHome, broker: BrokerProcess, ident: object, case: str
) -> None:
    e = ident("bad")  # type: ignore[operator]
    mark = len(broker.output())
    if case == "forged chain":
        from packetlab.ppks import generate_private_key, issue_certificate, read_private_key

        ep_key = read_private_key(e.key_path)
        forged = issue_certificate("subcmd", generate_private_key(), ep_key, 0, 2**31 - 1)
        c = RawClient(broker.sub_port, e.cert_path, e.key_path)
        c.send(wire.Xcert(forged.der), wire.Xsub([e.channel], e.eopkey, b""))
        assert c.recv() == wire.Result(0)
        assert c.recv() == wire.Result(int(wire.Status.ESUBBADCHN))
        text = "code=0x0061 (ESUBBADCHN)"
    elif case == "wrong channel":
        c = RawClient(broker.sub_port, e.cert_path, e.key_path)
        c.send(wire.Xcert(e.subcmd.der), wire.Xsub([b"\x01" * 32], e.eopkey, b""))
        assert c.recv() == wire.Result(0)
        assert c.recv() == wire.Result(int(wire.Status.ESUBBADCHN))
        text = "is not proven by the chain"
    elif case == "malformed frame":
        c = RawClient(broker.sub_port, e.cert_path, e.key_path)
        c.send(bytes([0x38, 0, 0, 3, 9, 1, 2]), split=False)  # chlist runs past the body
        assert c.recv() == wire.Result(int(wire.Status.ESUBBADCHL))
        text = "malformed xsub"
    else:
        c = raw_publisher(home, broker)
        big = b"controller_addr=127.0.0.1:3;x=" + b"y" * 5000 + b";"
        c.send(wire.Xpub([b"public"], bytes(32), big))
        assert c.recv() == wire.Result(int(wire.Status.EPUBBADXD))
        text = "code=0x0054 (EPUBBADXD) reason=xdescr is"
    c.close()
    assert text in broker.wait_log(text, since=mark)[mark:]
    assert broker.running
    ok = ident("ok")  # type: ignore[operator]
    ok.subscribe(broker.sub_port).close()


@pytest_twisted.ensureDeferred
async def test_publish_api_reaches_a_subscriber_and_close_ends_it(
    home: PktlabHome, broker: BrokerProcess, ident: object
) -> None:
    e = ident("api")  # type: ignore[operator]
    s = e.subscribe(broker.sub_port)
    creds = PublishCredentials.from_home(home)
    xd = make_xdescr("127.0.0.1:20601", sni_key="apitest", exp_priority=1)
    pub = await publish(reactor, f"127.0.0.1:{broker.pub_port}", xd, creds)
    got = await threads.deferToThread(s.recv)
    assert got == wire.Xnotify(key_id(home.public_key("k_eop")), xd)
    assert pub.live
    # OBSERVED §3.1: pktxpmgr's broker socket has SO_KEEPALIVE (the link idles for the
    # whole publication, through NATs that forget a silent connection)
    import socket

    from packetlab.tls.directwrite import socket_connection

    sock = socket_connection(pub._link.transport).getHandle()
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    await pub.close()
    assert not pub.live
    s.close()


@pytest_twisted.ensureDeferred
async def test_publish_api_raises_the_broker_code(home: PktlabHome, broker: BrokerProcess) -> None:
    creds = PublishCredentials.from_home(home)
    with pytest.raises(PublishRefused) as info:
        await publish(reactor, f"127.0.0.1:{broker.pub_port}", b"sni_key=nocontroller;", creds)
    assert info.value.status is wire.Status.EPUBBADADDR


def test_pktlab_broker_status_lists_channels_and_publications(
    home: PktlabHome, broker: BrokerProcess, ident: object
) -> None:
    import json
    import subprocess
    import sys

    e = ident("st")  # type: ignore[operator]
    s = e.subscribe(broker.sub_port)
    pub = publish_raw(home, broker, b"controller_addr=127.0.0.1:4;sni_key=status;")
    assert isinstance(s.recv(), wire.Xnotify)
    url = f"http://127.0.0.1:{broker.status_port}/"
    out = subprocess.run(
        [sys.executable, "-m", "packetlab", "broker", "status", "--url", url, "--json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    st = json.loads(out)
    chan = next(c for c in st["channels"] if c["channel"] == e.channel.hex())
    assert chan["private"] and chan["subscribers"] >= 1 and chan["publications"] >= 1
    mine = [p for p in st["publications"] if p["xdescr"].endswith("sni_key=status;")]
    assert mine and mine[0]["delivered"] >= 1
    text = subprocess.run(
        [sys.executable, "-m", "packetlab", "broker", "status", "--url", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "live publication(s)" in text and e.channel.hex() in text
    pub.close()
    s.close()


def test_the_broker_side_of_every_link_has_tcp_keepalive(
    home: PktlabHome, broker: BrokerProcess, ident: object
) -> None:
    """A subscriber whose host vanishes (power, NAT) sends no FIN; the reference sends
    nothing after subscribing, and the broker writes only when a publication comes. Without
    keepalive on the broker's side such a link (and its descriptor) stayed for good."""
    import subprocess

    sub = ident("keepalive").subscribe(broker.sub_port)  # type: ignore[operator]
    pub = publish_raw(home, broker, b"controller_addr=127.0.0.1:9;sni_key=ka;")
    try:
        assert isinstance(sub.recv(), wire.Xnotify)

        def links(port: int) -> list[str]:
            out = subprocess.run(
                ["ss", "-tnoH", "state", "established", f"( sport = :{port} )"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            return out.strip().splitlines()

        def links_text(port: int) -> str:
            return f"keepalive timers on port {port}: {links(port)}"

        def idle(port: int) -> bool:
            got = links(port)
            return bool(got) and all(
                "timer:(keepalive,10min" in x or "timer:(keepalive,9min" in x for x in got
            )

        for port in (broker.sub_port, broker.pub_port):
            # once everything is acknowledged the idle timer is the keepalive one (until
            # then it is the retransmit timer, "on": a fixed 0.5 s was short under load)
            poll_until(partial(idle, port), timeout=10, what=partial(links_text, port))
    finally:
        sub.close()
        pub.close()


def test_a_client_whose_agent_certificate_is_refused_is_held_before_the_close(
    home: PktlabHome, broker: BrokerProcess, tmp_path: Path
) -> None:
    """A refused client certificate (here a subcmd where an agent cert belongs) is cut off
    only after the error delay (0.5 s, doubling), like an error result: the reference
    endpoint reconnects at once after any close, ~470 times a second."""
    import ssl

    bad_cert = tmp_path / "subcmd-as-agent.cert"
    bad_cert.write_bytes(home.certificate("subcmd_eop_ep").to_pem())
    mark = len(broker.output())
    for _ in range(2):
        c = RawClient(broker.sub_port, bad_cert, home.key_path("k_ep"))
        c.sock.settimeout(0.3)
        try:
            got = c.sock.recv(1)
        except TimeoutError:
            got = None  # still open after 0.3 s: held
        except (ssl.SSLError, OSError):
            got = b"closed"
        assert got is None, "refused at once"
        assert c.closed_by_peer(timeout=35)  # the delay doubles per refusal, up to 30 s
        assert "UNSUPPORTED_CERTIFICATE" in c.alert  # the rule's alert (session 20)
        c.close()
    out = broker.output()[mark:]
    assert out.count("refused TLS peer") == 2, out[-2000:]
    # the rule, what the peer is (an endpoint's certificate at the broker), then the hold
    said = (
        "wrong_cert_type: cert #0: subcmd where agent is expected (the peer presents a subcmd"
        " certificate: it is an endpoint, not a broker or an agent) (closing in"
    )
    assert out.count(said) == 2, out[-2000:]
