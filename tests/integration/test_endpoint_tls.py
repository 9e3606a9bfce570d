"""A real `twistd pktendpoint` over TLS 1.3 with PPKS chains from `pktlab init` (§4.6):
sessions with our controller, refusals both ways, and certificate limits end to end (§4.5)."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from conftest import RawController
from testkit.logs import captured_events
from testkit.net import port_of
from testkit.poll import poll_until_async
from tls_world import TLSController, TLSEndpoint, controller_chain, pktlab_init, udp_sink
from twisted.internet import reactor

from packetlab import wire
from packetlab.controller import Controller, EndpointSession, read_system_info
from packetlab.controller.local import LocalEndpoint, run_with_local_endpoint, tls_server
from packetlab.ppks import BurstRate, CertLimits, CertType, parse_controller_exp_chain
from packetlab.ppks.limits import parse_valid_dest
from packetlab.tls import peer_of
from packetlab.wire import vmem
from packetlab.wire.constants import Proto, Status

S = Status
TIMEOUT = 30.0
LO = ipaddress.IPv4Address("127.0.0.1").packed
LO2 = ipaddress.IPv4Address("127.0.0.2").packed


# --------------------------------------------------------------------- our controller


@pytest_twisted.ensureDeferred
async def test_session_over_tls_with_pktlab_init_certificates(tmp_path: Path) -> None:
    home = pktlab_init(tmp_path / "home")

    async def experiment(session: EndpointSession) -> Any:
        info = await read_system_info(session)
        peer = peer_of(session)
        return info, peer

    info, peer = await run_with_local_endpoint(reactor, experiment, home=home, timeout=TIMEOUT)
    assert info.ip4  # the endpoint answered over TLS
    # The controller verified the endpoint's subcmd chain against the trusted k_eop.
    assert peer is not None and peer.chain is not None
    assert peer.chain.leaf.cert_type is CertType.SUBCMD
    assert peer.chain.top.authority_key_id == home.certificate("subcmd_eop_ep").authority_key_id


@pytest_twisted.ensureDeferred
async def test_controller_refuses_endpoint_with_untrusted_chain(tmp_path: Path) -> None:
    a = pktlab_init(tmp_path / "a")
    b = pktlab_init(tmp_path / "b")  # another EOp: its subcmd chain is not trusted by a

    async def experiment(session: EndpointSession) -> None:
        raise AssertionError("no experiment may run on a refused endpoint")

    ctl: Controller[None] = Controller(experiment, reactor=reactor)
    args = ["-c", str(b.root / "endpt.conf"), "--eop-pubkey", str(a.pubkey_path("k_eop"))]
    ep: LocalEndpoint | None = None
    try:
        with captured_events() as events:
            port = await ctl.listen(tls_server(reactor, "tcp:0:interface=127.0.0.1", a, "exp"))
            # The endpoint of b trusts a's EOp key, so it accepts the controller; not vice versa.
            ep = LocalEndpoint.spawn(
                reactor, f"127.0.0.1:{port_of(port)}", args=args, plaintext=False
            )
            await poll_until_async(
                lambda: any(e.get("rule") == "untrusted_root" for e in events),
                what="the endpoint's refusal of the untrusted root",
            )
    finally:
        await ctl.stop()
        if ep is not None:
            await ep.stop(reactor)
    refusals = [e for e in events if e.get("rule") == "untrusted_root"]
    assert refusals and refusals[0]["side"] == "client"
    assert ctl.outcomes == []  # no session ran


# ------------------------------------------------------- the endpoint refuses controllers


@pytest.fixture
def world(tmp_path: Path) -> Any:
    """(home, start(chain, *args) -> (TLSController, TLSEndpoint)); all stopped after."""
    home = pktlab_init(tmp_path / "home")
    started: list[Any] = []

    def start(chain: list[Path], *args: str, key: Path | None = None) -> Any:
        ctl = TLSController(chain, key or home.key_path("k_xc"), tmp_path)
        ep = TLSEndpoint(home, ctl.address, tmp_path, *args)
        started.append((ctl, ep))
        return ctl, ep

    yield home, start
    for ctl, ep in started:
        ep.stop()
        ctl.close()


def _refused(ctl: TLSController) -> bool:
    """True when the endpoint closed the TLS link right after the handshake."""
    try:
        c = ctl.accept()
    except (OSError, ssl_error()):
        return True
    try:
        c.send(wire.Start())
        c.recv(5.0)
    except (EOFError, OSError, ssl_error()):
        return True
    return False


def ssl_error() -> type[Exception]:
    import ssl

    return ssl.SSLError


def test_endpoint_refuses_chain_of_another_eop(world: Any, tmp_path: Path) -> None:
    _home, start = world
    other = pktlab_init(tmp_path / "other")
    ctl, ep = start(controller_chain(other, tmp_path / "c"), key=other.key_path("k_xc"))
    assert _refused(ctl)
    out = ep.wait_log("refused TLS peer")
    assert "untrusted_root" in out
    assert "controller session started" not in out


def test_endpoint_refuses_expired_chain(world: Any, tmp_path: Path) -> None:
    home, start = world
    chain = controller_chain(home, tmp_path / "c", not_after=int(time.time()) - 60)
    ctl, ep = start(chain)
    assert _refused(ctl)
    out = ep.wait_log("refused TLS peer")
    assert "expired" in out
    assert "controller session started" not in out


def test_a_refused_controller_hears_why_in_a_tls_alert(world: Any, tmp_path: Path) -> None:
    """The endpoint refused after the handshake and only closed: a controller (the stdlib
    ssl one here, as any TLS peer) learnt nothing. Now it gets the fatal alert of the rule
    (session 20), as from the reference's in-handshake check."""
    import ssl

    home, start = world
    ctl, ep = start(controller_chain(home, tmp_path / "c", not_after=int(time.time()) - 60))
    with pytest.raises(ssl.SSLError, match=r"ALERT_CERTIFICATE_EXPIRED|certificate expired"):
        c = ctl.accept()
        c.send(wire.Start())
        c.recv(5.0)
    assert "expired: cert #0: expired at" in ep.wait_log("refused TLS peer")


def test_the_alert_waits_for_a_controller_slow_to_read_it(world: Any, tmp_path: Path) -> None:
    """The endpoint aborted (RST) right after its alert: a controller that wrote before
    reading had its write or read fail with ECONNRESET/EOF, the alert unread (it failed
    here 1 run in 2 with no pause at all). Now the endpoint shuts its side (FIN) and
    drops what comes until the controller closes, or for tls.protocol.LINGER_S."""
    import ssl

    home, start = world
    ctl, ep = start(controller_chain(home, tmp_path / "c", not_after=int(time.time()) - 60))
    c = ctl.accept()
    ep.wait_log("refused TLS peer")  # the alert has been sent, the close begun
    time.sleep(0.3)  # an RST would have come by now
    with pytest.raises(ssl.SSLError, match=r"ALERT_CERTIFICATE_EXPIRED|certificate expired"):
        c.send(wire.Start())
        c.recv(5.0)


def test_a_refused_controller_that_never_closes_is_cut(world: Any, tmp_path: Path) -> None:
    """The close after the alert waits for the controller's FIN only so long: one that
    keeps writing and never closes is cut (an abort) after LINGER_S, its bytes dropped."""
    from packetlab.tls.protocol import LINGER_S

    home, start = world
    ctl, ep = start(controller_chain(home, tmp_path / "c", not_after=int(time.time()) - 60))
    c = ctl.accept()
    ep.wait_log("refused TLS peer")
    tcp = socket.socket(fileno=c.sock.detach())  # the TCP below the TLS socket
    deadline = time.monotonic() + LINGER_S + 10.0
    cut = False
    while time.monotonic() < deadline:
        try:
            tcp.send(b"\x17\x03\x03\x00\x10" + bytes(16))  # records the endpoint drops
        except OSError:  # ECONNRESET/EPIPE: the endpoint cut the link
            cut = True
            break
        time.sleep(0.05)
    tcp.close()
    assert cut, "the endpoint kept a refused controller's link open"
    assert "controller session started" not in ep.output()


# --------------------------------------------------------------------------- limits


def _session(world: Any, tmp_path: Path, limits: CertLimits, *args: str) -> RawController:
    home, start = world
    ctl, _ = start(controller_chain(home, tmp_path / "c", limits=limits), *args)
    c = ctl.accept()
    c.start()
    return c


def _udp_open(c: RawController, sktid: int) -> None:
    c.ok(wire.Nopen(sktid=sktid, family=4, proto=int(Proto.UDP), rbufsz=65536, laddr=LO, lport=0))


def _udp_send(c: RawController, sktid: int, raddr: bytes, port: int, data: bytes) -> int:
    msg = wire.Nsend(sktid, 4, int(Proto.UDP), 0, 0, data, raddr, port)
    return c.status(msg)


def test_valid_dest_tcp_nopen_and_udp_nsend(world: Any, tmp_path: Path) -> None:
    c = _session(world, tmp_path, CertLimits(valid_dest=parse_valid_dest("v", "127.0.0.1/32")))
    sink, port = udp_sink()
    tcp = socket.socket()
    tcp.bind(("127.0.0.2", 0))
    tcp.listen(1)
    try:
        nopen = wire.Nopen(1, 4, int(Proto.TCP), 65536, LO, 0, LO2, tcp.getsockname()[1])
        assert c.status(nopen) == S.ESKTOPNDENY
        _udp_open(c, 2)
        assert _udp_send(c, 2, LO2, port, b"x") == S.ESKTPKTDENY
        assert _udp_send(c, 2, LO, port, b"ok") == 0
        assert sink.recv(100) == b"ok"
    finally:
        sink.close()
        tcp.close()
        c.close()


def test_max_socket_count(world: Any, tmp_path: Path) -> None:
    c = _session(world, tmp_path, CertLimits(max_socket_count=2))
    try:
        _udp_open(c, 1)
        c.ok(wire.Nclose(sktid=1))
        _udp_open(c, 2)  # the count is of nopens in the session, not of open sockets
        nopen = wire.Nopen(sktid=3, family=4, proto=int(Proto.UDP), rbufsz=65536, laddr=LO, lport=0)
        assert c.status(nopen) == S.ENORES
    finally:
        c.close()


def test_socket_checks_come_before_the_chains_limits(world: Any, tmp_path: Path) -> None:
    """§1.3: an nopen on a sktid in use is ESKTINUSE whatever valid_dest or
    max_socket_count would say (they answered first before session 16)."""
    limits = CertLimits(valid_dest=parse_valid_dest("v", "127.0.0.1/32"), max_socket_count=1)
    c = _session(world, tmp_path, limits)
    try:
        _udp_open(c, 1)  # the one socket the chain allows
        denied_dst = wire.Nopen(1, 4, int(Proto.TCP), 65536, LO, 0, LO2, 9)
        assert c.status(denied_dst) == S.ESKTINUSE
        again = wire.Nopen(sktid=1, family=4, proto=int(Proto.UDP), rbufsz=1, laddr=LO, lport=0)
        assert c.status(again) == S.ESKTINUSE
        fresh = wire.Nopen(sktid=2, family=4, proto=int(Proto.UDP), rbufsz=1, laddr=LO, lport=0)
        assert c.status(fresh) == S.ENORES
    finally:
        c.close()


def test_send_byte_quota(world: Any, tmp_path: Path) -> None:
    c = _session(world, tmp_path, CertLimits(max_send_byte=1000, max_send_pkt=3))
    sink, port = udp_sink()
    try:
        _udp_open(c, 1)
        assert _udp_send(c, 1, LO, port, b"a" * 600) == 0
        assert _udp_send(c, 1, LO, port, b"b" * 600) == S.ESKTPKTDENY  # 400 bytes left
        assert _udp_send(c, 1, LO, port, b"c" * 400) == 0
        assert _udp_send(c, 1, LO, port, b"") == 0  # the 3rd packet: 0 bytes still fit
        assert _udp_send(c, 1, LO, port, b"") == S.ESKTPKTDENY  # 3 packets is the cap
    finally:
        sink.close()
        c.close()


def test_burst_window(world: Any, tmp_path: Path) -> None:
    limits = CertLimits(max_burst_rate_pkt=(BurstRate(2, 3_600_000_000_000),))  # 2 per hour
    c = _session(world, tmp_path, limits)
    sink, port = udp_sink()
    try:
        _udp_open(c, 1)
        assert _udp_send(c, 1, LO, port, b"1") == 0
        assert _udp_send(c, 1, LO, port, b"2") == 0
        assert _udp_send(c, 1, LO, port, b"3") == S.ESKTPKTDENY
    finally:
        sink.close()
        c.close()


def test_receive_quota_drops_and_counts(world: Any, tmp_path: Path) -> None:
    c = _session(world, tmp_path, CertLimits(max_recv_pkt=2))
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    try:
        c.ok(wire.Nopen(sktid=1, family=4, proto=int(Proto.UDP), rbufsz=65536, laddr=LO, lport=0))
        # The socket's local port, from its memory block (LPORT, §2.2).
        base = vmem.SKT_BASE + 1 * vmem.SKT_STRIDE
        lport = int.from_bytes(c.mread(base + vmem.SKT_LPORT.addr, 2))
        for i in range(4):
            peer.sendto(b"d%d" % i, ("127.0.0.1", lport))
        got = [c.notification(wire.Ndata).data for _ in range(2)]
        assert got == [b"d0", b"d1"]
        assert not [m for m in c.quiet(0.5) if isinstance(m, wire.Ndata)]
        # The two dropped datagrams are counted in DROPSTAT (§3.5).
        assert int.from_bytes(c.mread(base + vmem.SKT_DROPPKTS.addr, 4)) == 2
    finally:
        peer.close()
        c.close()


def test_required_monitor_digest_refuses_start(world: Any, tmp_path: Path) -> None:
    home, start = world
    limits = CertLimits(monitor_digests=(b"\x11" * 32,))
    ctl, ep = start(controller_chain(home, tmp_path / "c", limits=limits))
    c = ctl.accept()
    assert c.status(wire.Start()) == S.ECRTNOHDAT
    assert c.closed_by_peer()
    assert "ECRTNOHDAT" in ep.wait_log("start refused")


def test_exp_period_ends_the_session(world: Any, tmp_path: Path) -> None:
    c = _session(world, tmp_path, CertLimits(max_exp_period=1_500_000_000))
    t0 = time.monotonic()
    assert c.closed_by_peer(timeout=10.0)
    assert 1.0 < time.monotonic() - t0 < 6.0
    c.close()


def test_the_end_time_sends_what_is_queued_then_closes_cleanly(world: Any, tmp_path: Path) -> None:
    """At the experiment's end time the endpoint aborted the session: a reset, the
    answers it had queued lost, and the controller saw the connection lost. Now the
    session ends as at the controller's EOF: every answer already queued goes out, then
    close_notify and FIN (session 30, ep30)."""
    home, start = world
    ctl, ep = start(
        controller_chain(home, tmp_path / "c", limits=CertLimits(max_exp_period=2_000_000_000))
    )
    ctl.ctx.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF  # a bare FIN is an error, not an EOF
    c = ctl.accept()
    c.sock.suppress_ragged_eofs = False
    c.start()
    # 64 KiB answers, unread until the end time passed: the endpoint's outbox is full
    c.send(*[wire.Mread(addr=0, len=0xFFFF) for _ in range(300)])
    out = ep.wait_log("experiment end time reached")
    answers, end = 0, ""
    try:
        while True:
            assert isinstance(c.recv(10.0), wire.Mdata)
            answers += 1
    except EOFError:
        end = "close_notify"
    except (ssl.SSLError, OSError) as e:  # an abort: SSLEOFError, a reset
        end = repr(e)
    assert (end, answers >= 100) == ("close_notify", True), (end, answers)  # MAX_QUEUED
    out = ep.wait_log("session over: closed by the endpoint: experiment end time reached")
    assert "controller did not take the last frames" not in out
    c.close()


def test_a_refused_session_closes_cleanly_as_the_reference_does(world: Any, tmp_path: Path) -> None:
    """A session refused after the handshake (here: a chain asking for 101 monitors;
    disk-full accounting and a used-up max_exp_period take the same branch) ends with
    close_notify and FIN, as the reference's check_exp_priority refusal beside rlim_begin
    (BROKER-PROXY-OBSERVED.md §2.2). It was an abort: a reset, which a manager saw as
    `lost in a non-clean fashion`; the controller's first request, unread by the
    refusing endpoint, must not turn the close into a reset either."""
    home, start = world
    digests = tuple(bytes([i]) * 32 for i in range(101))
    ctl, ep = start(
        controller_chain(home, tmp_path / "c", limits=CertLimits(monitor_digests=digests))
    )
    # A bare FIN (no close_notify) is an error here, not an EOF like a clean close.
    ctl.ctx.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF
    c = ctl.accept()
    c.send(wire.Start())
    c.sock.settimeout(10.0)
    c.sock.suppress_ragged_eofs = False
    assert c.sock.recv(100) == b""  # close_notify (an abort: SSLEOFError or a reset)
    out = ep.wait_log("refusing controller")
    # the peer as host:port (was IPv4Address(type='TCP', ...)), the rule and the reason
    assert f"refusing controller {ctl.address}: monitor: 101 digests (at most 100)" in out
    c.close()


def test_chain_is_what_the_endpoint_checks(world: Any, tmp_path: Path) -> None:
    # The chain our tests build is the one the endpoint's admission parses (§4.4 helper).
    home, _ = world
    from packetlab.ppks import load_certificates

    paths = controller_chain(home, tmp_path / "c")
    certs = [load_certificates(p.read_bytes())[0] for p in paths]
    info = parse_controller_exp_chain(
        certs, home.public_key("k_xc"), roots=[home.public_key("k_eop")]
    )
    assert info.channel == certs[1].authority_key_id
