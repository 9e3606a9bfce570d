"""The link options shared by every controller-side command (`packetlab.cli.link`):
parsing, credentials from a home (pktlab init names and the reference xpmgr.conf), the
in-process endpoint's options, refusal messages. Links run for real in
tests/integration/test_link.py."""

from __future__ import annotations

import argparse
import ipaddress
import socket
from pathlib import Path

import pytest

from packetlab.cli.init import init_home
from packetlab.cli.link import (
    ControllerCredentials,
    Link,
    LinkError,
    add_link_arguments,
    listen_description,
    route_source,
)
from packetlab.cli.link_endpoint import endpoint_options
from packetlab.cli.link_tls import Refusals
from packetlab.ppks import PktlabHome


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_link_arguments(p)
    return p.parse_args(list(argv))


def test_defaults_are_in_process_tls_from_the_default_home() -> None:
    link = Link.from_args(parse())
    assert link == Link(None, None, False) and link.in_process
    assert link.describe().startswith(("TLS 1.3, PPKS certificates from ", "TLS 1.3, demo PPKS"))


def test_options() -> None:
    link = Link.from_args(parse("--listen", "127.0.0.1:0", "--home", "/x", "--insecure-plaintext"))
    assert link == Link("tcp:0:interface=127.0.0.1", Path("/x"), True)
    assert not link.in_process and "plain TCP" in link.describe()


def test_route_source() -> None:
    assert route_source(ipaddress.IPv4Address("127.0.0.1")) == ipaddress.IPv4Address("127.0.0.1")
    assert route_source(ipaddress.IPv4Address("127.0.0.9")) == ipaddress.IPv4Address("127.0.0.1")
    if socket.has_ipv6:
        try:
            assert route_source(ipaddress.IPv6Address("::1")) == ipaddress.IPv6Address("::1")
        except LinkError:
            pytest.skip("no IPv6 loopback here")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20556", "tcp:20556"),
        ("127.0.0.1:20556", "tcp:20556:interface=127.0.0.1"),
        ("[::1]:20556", "tcp6:20556:interface=\\:\\:1"),
        ("::1:20556", "tcp6:20556:interface=\\:\\:1"),  # as the endpoint reads it
        ("tcp:20556:interface=127.0.0.1", "tcp:20556:interface=127.0.0.1"),
    ],
)
def test_listen_description(text: str, expected: str) -> None:
    assert listen_description(text) == expected
    # session 30 (eyes30): Link(listen="127.0.0.1:20556") in code failed with Twisted's
    # "Unknown endpoint type: '127.0.0.1'" once run_on_link listened
    assert Link(listen=text).listen == expected
    assert Link(text, None, True) == Link(expected, None, True)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nowhere", "expected PORT, HOST:PORT"),
        ("127.0.0.1:http", "bad port 'http'"),
        ("127.0.0.1:70000", "bad port"),
        ("[::1]20556", "expected \\[IPv6\\]:PORT"),
        ("example.com:20556", "is not an IP address"),
        # session 32 (dual32): `--listen ::1` said `':' is not an IP address`, and a
        # link-local address without its zone `[Errno 22] Invalid argument` on listening
        ("::1", "expected \\[IPv6\\]:PORT"),
        ("2001:db8::1", "expected \\[IPv6\\]:PORT"),
        ("[fe80::1]:20556", "the link-local address fe80::1 needs its interface"),
    ],
)
def test_bad_listen(text: str, message: str) -> None:
    with pytest.raises(LinkError, match=message):
        listen_description(text)


@pytest.mark.parametrize("tls", [False, True])
def test_endpoint_options_configure_the_link_and_the_addresses(tls: bool, tmp_path: Path) -> None:
    from packetlab.endpoint.tap import Options

    home = PktlabHome.at(tmp_path)
    if tls:
        init_home(home)
    o = Options()
    addrs = [ipaddress.ip_address("10.77.1.1"), ipaddress.ip_address("fd00:77:1::1")]
    link = (home, "ab1", home.accounting_db) if tls else None
    o.parseOptions(endpoint_options(40000, addrs, "raw,tcp,udp", link))
    cfg = o["endpoint_config"]
    assert "raw" in cfg.transproto_sup
    exported = [str(i.ip) for i in cfg.ipv4] + [str(a) for a in cfg.ipv6]
    assert exported == ["10.77.1.1", "fd00:77:1::1"]
    assert str(o["address"]) == "127.0.0.1:40000"
    assert o["insecure-plaintext"] is not tls
    if tls:
        assert cfg.nosub_snikey == "ab1"


def test_credentials_from_a_pktlab_init_home(tmp_path: Path) -> None:
    home = PktlabHome.at(tmp_path)
    init_home(home)
    (tmp_path / "xpmgr.conf").unlink()  # the bare pktlab_init layout
    c = ControllerCredentials.from_home(home)
    assert [p.name for p in c.chain] == ["pubcmd_exper_xc.cert", "exppriv_eop_exper.cert"]
    assert c.key.name == "k_xc" and [p.name for p in c.trusted] == ["k_eop.pub"]
    c.server_options()  # loads
    assert "ends at EOp key id" in c.describe() and "k_eop.pub (id " in c.describe()


def test_credentials_from_a_reference_xpmgr_conf(tmp_path: Path) -> None:
    home = PktlabHome.at(tmp_path)
    init_home(home)
    # relative paths, chain in the other order, a non-default entry first
    (tmp_path / "xpmgr.conf").write_text(
        "EnableExpPublication 0\nControllerPrivkeyPath keys/k_xc\n"
        "ExpExec 0:abc:certs/pubcmd_exper_xc.cert:::\n"
        "ExpExec 1:mykey:certs/exppriv_eop_exper.cert,certs/pubcmd_exper_xc.cert:keys/k_eop.pub::\n"
    )
    c = ControllerCredentials.from_home(home)
    assert c.snikey == "mykey" and c.key == tmp_path / "keys/k_xc"
    assert [p.name for p in c.chain] == ["exppriv_eop_exper.cert", "pubcmd_exper_xc.cert"]
    assert c.server_options().snikeys == frozenset({"mykey"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("EnableExpPublication 0\n", "no ControllerPrivkeyPath"),
        ("ControllerPrivkeyPath keys/k_xc\n", "no ExpExec entry"),
        ("ControllerPrivkeyPath keys/k_xc\nExpExec 1:x\n", "xpmgr.conf:2: ExpExec: expected"),
        ("ControllerPrivkeyPath keys/nope\nExpExec 1::certs/a.cert:::\n", "does not exist"),
    ],
)
def test_bad_xpmgr_conf(text: str, message: str, tmp_path: Path) -> None:
    home = PktlabHome.at(tmp_path)
    init_home(home)
    (tmp_path / "xpmgr.conf").write_text(text)
    with pytest.raises(LinkError, match=message):
        ControllerCredentials.from_home(home)


def test_an_empty_home_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(LinkError, match=r"no controller credentials in .*run `pktlab init --home"):
        ControllerCredentials.from_home(PktlabHome.at(tmp_path))


def _event(side: str, rule: str, error: str) -> dict[str, object]:
    peer = "IPv4Address(type='TCP', host='127.0.0.1', port=4321)"
    fmt = "refused TLS peer {peer} ({side}): {rule}: {error}"
    return {"log_format": fmt, "peer": peer, "side": side, "rule": rule, "error": error}


def test_refusal_messages_name_the_cause_once_per_kind() -> None:
    told: list[str] = []
    box = Refusals(None, told.append)
    box.observe({"log_format": "something else"})
    box.observe(_event("client", "connection_lost", "before the peer was verified"))
    box.observe(_event("client", "connection_lost", "before the peer was verified"))
    box.observe(_event("client", "handshake_failed", "wrong version number"))
    box.observe(_event("server", "untrusted_root", "bad_chain: untrusted_root: cert #1"))
    assert len(box.seen) == 4 and len(told) == 3
    assert "endpoint 127.0.0.1:4321 closed the TLS link before its chain was checked" in told[0]
    assert "EndpointOpPubKeyPath" in told[0]
    # A plaintext endpoint closes the TLS link the same way (after its 10 s start wait).
    assert "endpoint run with --insecure-plaintext also closes it" in told[0]
    assert "--insecure-plaintext" in told[1]
    assert told[2].startswith("the endpoint refused our certificate chain: untrusted_root")


def test_an_endpoint_that_sent_nothing_is_told_as_a_plaintext_one_first() -> None:
    """A TLS controller and an --insecure-plaintext endpoint: the endpoint speaks no TLS
    and closes after 10 s; the message blamed our chain first (the key ids matching) and
    the plaintext cause second (session 30, eyes30)."""
    from packetlab.tls.gate import SILENT_PEER

    told: list[str] = []
    box = Refusals(None, told.append)
    box.observe(
        _event("client", "connection_lost", "before the peer was verified: x" + SILENT_PEER)
    )
    assert told == [
        "endpoint 127.0.0.1:4321 sent nothing and closed the link: an endpoint run with "
        "--insecure-plaintext waits 10 s for a plaintext controller, then closes: give "
        "--insecure-plaintext here too (or run the endpoint without it)"
    ]


def test_the_demo_link_home_is_made_once_and_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from packetlab.cli.link_tls import demo_link_cache, in_process_home

    monkeypatch.setenv("PKTLAB_HOME", str(tmp_path / "no-home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    home, cached = in_process_home(None)
    assert cached and home.root == demo_link_cache() == tmp_path / "cache/pktlab/demo-link"
    key = home.root / "keys/k_xc"
    made = key.stat().st_mtime_ns
    again, cached = in_process_home(None)
    assert cached and again.root == home.root and key.stat().st_mtime_ns == made
    assert ControllerCredentials.from_home(home).key == key  # usable where it is
    names = {p.name for p in (tmp_path / "cache/pktlab").iterdir()}
    assert names == {"demo-link", "demo-link.lock"}
    key.unlink()  # an incomplete cache is made again
    third, _ = in_process_home(None)
    assert third.root == home.root and key.is_file()


def test_the_in_process_link_names_the_demo_certificates_it_will_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without a complete `pktlab init` home the in-process link uses the demo home cached
    # in ~/.cache/pktlab/demo-link, but said "PPKS certificates from ~/.pktlab" (which did
    # not exist): every example's first line.
    monkeypatch.setenv("PKTLAB_HOME", str(tmp_path / "nohome"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    link = Link.from_args(parse())
    demo = tmp_path / "cache" / "pktlab" / "demo-link"
    assert link.describe() == f"TLS 1.3, demo PPKS certificates from {demo}"
    listening = Link.from_args(parse("--listen", "0"))  # the default home, as it reads it
    assert listening.describe() == f"TLS 1.3, PPKS certificates from {tmp_path / 'nohome'}"
    init_home(PktlabHome.at(tmp_path / "nohome"))
    assert link.describe() == f"TLS 1.3, PPKS certificates from {tmp_path / 'nohome'}"


def test_a_port_in_use_is_one_line_for_every_listener() -> None:
    """Session 23 (doctour23): `pktlab campaign ... --listen` and `run X --listen
    --endpoints N` on a port in use said `internal error: CannotListenError: ...`; `run
    X --listen` said `cannot listen on ...`. All three go through `listen_on` now."""
    from twisted.internet import defer
    from twisted.internet.error import CannotListenError
    from twisted.python.failure import Failure

    from packetlab.cli.link import LinkError, listen_on

    class Busy:
        async def listen(self, where: object) -> object:
            raise CannotListenError("127.0.0.1", 20556, OSError(98, "Address already in use"))

    failures: list[BaseException | None] = []

    def failed(f: Failure) -> None:
        failures.append(f.value)

    d = defer.Deferred.fromCoroutine(listen_on(Busy(), "tcp:20556"))
    d.addErrback(failed)
    (e,) = failures
    assert isinstance(e, LinkError)
    assert str(e) == "cannot listen on 127.0.0.1:20556: [Errno 98] Address already in use"


class _RefusedSocket:
    """A UDP socket whose connect the kernel refuses as for a broadcast route (EACCES)."""

    def __init__(self, *args: object) -> None:
        pass

    def __enter__(self) -> _RefusedSocket:
        return self

    def __exit__(self, *args: object) -> None:
        pass

    def connect(self, addr: object) -> None:
        raise PermissionError(13, "Permission denied")


def test_a_broadcast_target_is_named_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """`run ping|traceroute|sendgap 255.255.255.255`: `no route to 255.255.255.255:
    Permission denied` (session 32): the route lookup's EACCES is the kernel's answer for
    a broadcast route without SO_BROADCAST, and nothing else."""
    from packetlab.cli import link
    from packetlab.cli.linkargs import BroadcastTarget

    monkeypatch.setattr(link.socket, "socket", _RefusedSocket)
    with pytest.raises(BroadcastTarget) as e:
        route_source(ipaddress.IPv4Address("255.255.255.255"))
    assert str(e.value) == (
        "255.255.255.255 is a broadcast address (sending there takes SO_BROADCAST, which is "
        "not a PacketLab socket option)"
    )
    assert e.value.exit_status == 2


@pytest.mark.parametrize(
    ("measurement", "said", "status"),
    [
        (
            "ping",  # iputils: `ping: Do you want to ping broadcast? Then -b. ...`, 2
            "Do you want to ping broadcast? 192.0.2.255 is one, and ping -b's SO_BROADCAST "
            "is not a PacketLab socket option",
            2,
        ),
        # traceroute 2.1: `connect: Permission denied`, 1
        ("traceroute", "connect: Permission denied (192.0.2.255 is a broadcast address)", 1),
    ],
)
def test_ping_and_traceroute_refuse_broadcast_in_their_words(
    monkeypatch: pytest.MonkeyPatch, measurement: str, said: str, status: int
) -> None:
    from packetlab.cli import link, run_measure
    from packetlab.cli.linkargs import BroadcastTarget

    monkeypatch.setattr(link.socket, "socket", _RefusedSocket)
    with pytest.raises(BroadcastTarget) as e:
        run_measure.broadcast_in_words(measurement, ipaddress.IPv4Address("192.0.2.255"))
    assert (str(e.value), e.value.exit_status) == (said, status)
