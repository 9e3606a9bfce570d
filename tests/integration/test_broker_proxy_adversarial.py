"""The broker and proxy as an attacker and an odd client use them, against a real
``twistd pktbroker`` and ``twistd pktproxy`` (session 23, bpaudit23).

BROKER-PROXY-OBSERVED.md (O) and PROTOCOL.md §4.4, §5, §6 (P) are binding; the cases are
the ones docs/conformance-broker-proxy.md had pinned only over fakes or not at all:

* chains as a publisher or subscriber may send them (P §4.4: ``cert_ls[0]`` is the leaf,
  the parent of a cert is an unused cert whose SKI is its AKI, every cert inside its
  validity): an xpub before its xcerts, xcerts out of chain order, duplicate xcerts, an
  expired or not-yet-valid cert; each gets its code (O §5: pktxpmgr exits on any
  error, so only what is really invalid is refused), and the link goes on;
* xsub with no channel, with the most channels a chlist may hold (64) and one more;
* how many descriptions an endpoint gets, and in which order, when it subscribes to
  several channels with publications live on them, one on two of its channels and two
  carrying the same bytes (O §2.3: a second copy crashes the reference endpoint);
* two managers registering one snikey at the same moment (the stranger's echo after the
  manager's: it must not take the snikey), one manager registering it from two
  connections (O §4.1: both are backlogs, used oldest first), a manager gone between
  its result and the preamble or between the preamble and its echo;
* ClientHellos naming a 63-character snikey, an IP literal, or with an ECH-like
  extension next to the snikey as its public name.

One broker and one proxy for the module; waits are polls with a deadline.
"""

from __future__ import annotations

import socket
import time

import broker_world
import pytest
from broker_world import BrokerProcess, Identity, RawClient
from pxworld import ProxyProc, client_hello, closed_by_peer, receive_hello, register

from packetlab import wire
from packetlab.ppks import PktlabHome, issue_certificate, key_id, raw_public_key
from packetlab.tls import AuthMode, Credentials, PPKSClientCreator
from packetlab.tls.handoff import TLSHandoff

home, broker, proxy = broker_world.home, broker_world.broker, broker_world.proxy  # fixtures

ALERT_UNRECOGNIZED_NAME = bytes.fromhex("15030300020270")
ZERO = bytes(32)


def xdescr(snikey: str) -> bytes:
    return f"controller_addr=127.0.0.1:20600;sni_key={snikey};".encode()


def publisher(home: PktlabHome, broker: BrokerProcess) -> RawClient:
    return RawClient(broker.pub_port, home.cert_path("agent_xc_xc"), home.key_path("k_xc"))


# ---------------------------------------------------------------- broker: chains


def test_publisher_chains_an_attacker_sends_get_their_code_and_the_link_goes_on(
    home: PktlabHome, broker: BrokerProcess
) -> None:
    """On one publisher link, in lockstep as pktxpmgr: an xpub on the private channel
    before any xcert, the chain root first, a chain with an expired exppriv, one with an
    exppriv valid only in an hour: EPUBBADCHN (0x51) each, with the rule in the refuse
    line. The chain sent twice over (pubcmd, pubcmd, exppriv, exppriv) is taken: P §4.4
    picks each parent among the unused certs by its SKI, so a repeated cert is one left
    over. A subscriber of the channel then gets that one publication, once."""
    eop = home.private_key("k_eop")
    exper = home.private_key("k_exper")
    now = int(time.time())
    pubcmd = home.certificate("pubcmd_exper_xc").der
    exppriv = home.certificate("exppriv_eop_exper").der
    expired = issue_certificate("exppriv", eop, exper, 0, now - 60).der
    future = issue_certificate("exppriv", eop, exper, now + 3600, 2**31 - 1).der
    chan, eopkey = key_id(eop), raw_public_key(eop)
    sub = Identity(home, broker.workdir, "chains-ep").subscribe(broker.sub_port)
    mark = len(broker.output())
    p = publisher(home, broker)
    cases = [
        ([], 0x51, "no xcert chain was sent"),
        ([exppriv, pubcmd], 0x51, "cert #0: exppriv where pubcmd is expected"),
        ([pubcmd, expired], 0x51, "expired: cert #1: expired at"),
        ([pubcmd, future], 0x51, "not_yet_valid: cert #1: valid from"),
        ([pubcmd, pubcmd, exppriv, exppriv], 0, ""),
    ]
    for i, (certs, code, why) in enumerate(cases):
        for der in certs:
            p.send(wire.Xcert(der))
            assert p.recv() == wire.Result(0)
        p.send(wire.Xpub([chan], eopkey, xdescr(f"chain{i}")))
        assert p.recv() == wire.Result(code), (i, why)
        if why:
            broker.wait_log(why, since=mark)
    assert sub.recv() == wire.Xnotify(chan, xdescr("chain4"))
    assert sub.quiet(0.5) == []
    text = broker.output()[mark:]
    assert text.count("refuse xpub") == 4 and "Traceback" not in text
    p.close()
    sub.close()


def test_subscriber_chains_and_channel_counts(home: PktlabHome, broker: BrokerProcess) -> None:
    """On one subscriber link: an xsub on the private channel with no xcert, with an
    expired subcmd, with one valid only in an hour: ESUBBADCHN (0x61); an xsub with no
    channel, or 65: ESUBBADCHL (0x60); none ends the link (O §1.4: the reference endpoint
    would reconnect at once anyway). The subcmd sent twice is taken, with 63 public
    channels beside the private one (64, the most a chlist may hold): a publication on
    the last public channel then reaches it."""
    ident = Identity(home, broker.workdir, "counts-ep")
    eop = home.private_key("k_eop")
    now = int(time.time())
    key = ident.subcmd.public_key  # the endpoint's agent key, raw
    expired = issue_certificate("subcmd", eop, key, 0, now - 60).der
    future = issue_certificate("subcmd", eop, key, now + 3600, 2**31 - 1).der
    c = RawClient(broker.sub_port, ident.cert_path, ident.key_path)
    mark = len(broker.output())
    publics = [f"pub{i:02d}".encode() for i in range(63)]
    cases: list[tuple[list[bytes], list[bytes], int, str]] = [
        ([], [ident.channel], 0x61, "private channel requested but no xcert chain was sent"),
        ([expired], [ident.channel], 0x61, "expired: cert #0"),
        ([future], [ident.channel], 0x61, "not_yet_valid: cert #0"),
        ([], [], 0x60, "empty channel list"),
        ([ident.subcmd.der], [ident.channel, *publics, b"one-more"], 0x60, "65 channels"),
        ([ident.subcmd.der, ident.subcmd.der], [ident.channel, *publics], 0, ""),
    ]
    for certs, chans, code, why in cases:
        c.send(*(wire.Xcert(d) for d in certs), wire.Xsub(chans, ident.eopkey, b""))
        for _ in certs:
            assert c.recv() == wire.Result(0)
        assert c.recv() == wire.Result(code), why
        if why:
            broker.wait_log(why, since=mark)
    p = publisher(home, broker)
    p.send(wire.Xpub([b"pub62"], ZERO, xdescr("lastpublic")))
    assert p.recv() == wire.Result(0)
    assert c.recv() == wire.Xnotify(b"pub62", xdescr("lastpublic"))
    assert "Traceback" not in broker.output()[mark:]
    p.close()
    c.close()


def test_descriptions_an_endpoint_gets_on_subscribing_each_once_in_order(
    home: PktlabHome, broker: BrokerProcess
) -> None:
    """Live before the xsub [a, b]: p1 on a, p2 on b, p3 on a and b, p4 on c, p5 on a
    with p1's bytes (another link). The endpoint gets three xnotify: p1 and p3 on a (its
    first channel, publications oldest first), then p2 on b; p3 once, p5 not at all (its
    bytes already went: O §2.3), p4 not (its channel). A later publication on [b, a]
    comes once, on b (the publication's first channel it subscribed)."""
    links = []

    def pub(chans: list[bytes], snikey: str) -> None:
        p = publisher(home, broker)
        p.send(wire.Xpub(chans, ZERO, xdescr(snikey)))
        assert p.recv() == wire.Result(0)
        links.append(p)

    a, b, c = b"order-a", b"order-b", b"order-c"
    pub([a], "op1")
    pub([b], "op2")
    pub([a, b], "op3")
    pub([c], "op4")
    pub([a], "op1")
    ident = Identity(home, broker.workdir, "order-ep")
    s = RawClient(broker.sub_port, ident.cert_path, ident.key_path)
    s.send(wire.Xsub([a, b], ZERO, b""))
    assert s.recv() == wire.Result(0)
    got = [s.recv() for _ in range(3)]
    assert got == [
        wire.Xnotify(a, xdescr("op1")),
        wire.Xnotify(a, xdescr("op3")),
        wire.Xnotify(b, xdescr("op2")),
    ]
    assert s.quiet(0.5) == []
    pub([b, a], "op6")
    assert s.recv() == wire.Xnotify(b, xdescr("op6"))
    assert s.quiet(0.5) == []
    for p in links:
        p.close()
    s.close()


# ---------------------------------------------------------------- proxy: registrations


class Setup:
    """A manager's setup connection driven step by step (TLS in memory on a real socket)."""

    def __init__(self, port: int, creds: Credentials | None) -> None:
        self.tls = TLSHandoff(
            PPKSClientCreator(creds, AuthMode.AGENT).clientConnectionForTLS(None),  # type: ignore[arg-type]
            is_client=True,
        )
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.framer = wire.Framer()
        self.sock.sendall(self.tls.start())
        while not self.tls.handshake_done:
            self._step()

    def _step(self) -> list[wire.Item]:
        data = self.sock.recv(65536)
        assert data, "the proxy closed the setup connection"
        step = self.tls.receive(data)
        if step.out:
            self.sock.sendall(step.out)
        return list(self.framer.feed(step.data))

    def xreg(self, snikey: str) -> wire.Item:
        self.sock.sendall(self.tls.send(wire.encode(wire.Xreg(snikey.encode()))))
        got: list[wire.Item] = []
        while not got:
            got = self._step()
        return got[0]

    def close_notify(self) -> bytes:
        """The manager's close_notify; returns the raw preamble that must follow."""
        self.sock.sendall(self.tls.close())
        rest = self.tls.detach()
        while len(rest) < 6:
            chunk = self.sock.recv(64)
            assert chunk, "the proxy closed before the preamble"
            rest += chunk
        return rest


def agent_creds(home: PktlabHome) -> Credentials:
    return Credentials.load([home.cert_path("agent_xc_xc")], home.key_path("k_xc"))


def test_a_stranger_racing_a_first_registration_does_not_take_the_snikey(
    home: PktlabHome, proxy: ProxyProc
) -> None:
    """The manager (agent cert) and a stranger (none) both get SUCCESS for xreg
    `racesni` before either echoes (nobody holds it yet); the manager echoes first.
    The stranger's echo must not make it a backlog of the snikey, nor its owner: it is
    closed with a line, the endpoint reaches the manager, and the manager's next
    registration (its replenishment) is taken. Before the fix the stranger became
    the owner and that replenishment got ENORES."""
    before = proxy.counters()
    mgr = Setup(proxy.setup, agent_creds(home))
    stranger = Setup(proxy.setup, None)
    assert mgr.xreg("racesni") == wire.Result(0)
    assert stranger.xreg("racesni") == wire.Result(0)
    assert mgr.close_notify() == b"PKTLAB"
    assert stranger.close_notify() == b"PKTLAB"
    mgr.sock.sendall(b"PKTLAB")
    proxy.counters(f"registrations == {before['registrations'] + 1}")
    stranger.sock.sendall(b"PKTLAB")
    assert closed_by_peer(stranger.sock) == b""
    proxy.counters(
        f"registration_failures == {before['registration_failures'] + 1} and backlog == 1"
    )
    again = Setup(proxy.setup, agent_creds(home))
    assert again.xreg("racesni") == wire.Result(0)
    assert again.close_notify() == b"PKTLAB"
    again.sock.sendall(b"PKTLAB")
    proxy.counters(f"registrations == {before['registrations'] + 2} and backlog == 2")
    hello = client_hello("racesni")
    ep = socket.create_connection(("127.0.0.1", proxy.endpoints), timeout=10)
    ep.sendall(hello)
    receive_hello(mgr.sock, hello)  # the oldest backlog: the manager's first
    ep.close()
    assert "snikey racesni was taken by another manager" in proxy.text()
    for s in (mgr, again, stranger):
        s.sock.close()


def test_one_manager_registering_a_snikey_from_two_connections_gets_two_backlogs(
    home: PktlabHome, proxy: ProxyProc
) -> None:
    """O §4.1: TargetBacklogConn 2 opens two setup connections within 1 ms, both for the
    same snikey. Their steps interleaved: both are backlogs, and two endpoints are spliced
    to them oldest first (the one whose echo came first)."""
    one, two = Setup(proxy.setup, agent_creds(home)), Setup(proxy.setup, agent_creds(home))
    assert two.xreg("twosni") == wire.Result(0)
    assert one.xreg("twosni") == wire.Result(0)
    assert one.close_notify() == b"PKTLAB"
    assert two.close_notify() == b"PKTLAB"
    two.sock.sendall(b"PKTLAB")
    one.sock.sendall(b"PKTLAB")
    proxy.counters("backlog >= 2")
    for backlog in (two, one):
        hello = client_hello("twosni")
        ep = socket.create_connection(("127.0.0.1", proxy.endpoints), timeout=10)
        ep.sendall(hello)
        receive_hello(backlog.sock, hello)
        ep.close()
        backlog.sock.close()


@pytest.mark.parametrize(
    ("step", "line"),
    [
        ("after_result", "after its xreg, before its close_notify"),
        ("after_preamble", "before it echoed the preamble"),
        ("half_echo", "before it echoed the preamble"),
    ],
)
def test_a_manager_gone_between_result_and_echo_leaves_no_backlog(
    home: PktlabHome, proxy: ProxyProc, step: str, line: str
) -> None:
    """A setup connection closed after its result, after the preamble came, or with half
    the echo sent: one line naming the step, counted, no backlog left, and the snikey
    still serves its own manager's next registration."""
    snikey = f"gone{step.replace('_', '')}"
    before = proxy.counters("backlog == 0")  # the tests before leave none idle
    s = Setup(proxy.setup, None)
    assert s.xreg(snikey) == wire.Result(0)
    if step != "after_result":
        assert s.close_notify() == b"PKTLAB"
    if step == "half_echo":
        s.sock.sendall(b"PKT")
    s.sock.close()
    stats = proxy.counters(f"registration_failures == {before['registration_failures'] + 1}")
    assert stats["backlog"] == 0
    backlog = register(proxy.setup, snikey)
    hello = client_hello(snikey)
    ep = socket.create_connection(("127.0.0.1", proxy.endpoints), timeout=10)
    ep.sendall(hello)
    receive_hello(backlog, hello)
    ep.close()
    backlog.close()
    assert f"closed by the manager {line}" in proxy.text()


# ---------------------------------------------------------------- proxy: ClientHellos


def ech_hello(public_name: str) -> bytes:
    """A ClientHello with an encrypted_client_hello extension (0xfe0d) beside its SNI,
    as an ECH client sends the outer hello: the public name is in server_name."""
    from test_broker_proxy_observed_replay import server_name, sni_hello

    ech = b"\xfe\x0d" + (201).to_bytes(2, "big") + b"\x00" + bytes(200)
    return sni_hello(server_name((0, public_name.encode())), ech)


def test_snikey_of_the_longest_length_an_ip_literal_and_ech_alongside(
    proxy: ProxyProc,
) -> None:
    """A 63-character snikey routes; an SNI of 127.0.0.1 (no snikey, OpenSSL sends what
    it is given) is refused unrecognized_name and counted, the daemon unchanged; a hello
    carrying an ECH extension whose outer SNI is the snikey is routed to it unchanged
    (the proxy does not terminate TLS: the manager's OpenSSL ignores what it does not
    know)."""
    longest = "k" * 63
    before = proxy.counters()
    for hello in (client_hello(longest), ech_hello(longest)):
        backlog = register(proxy.setup, longest)
        ep = socket.create_connection(("127.0.0.1", proxy.endpoints), timeout=10)
        ep.sendall(hello)
        receive_hello(backlog, hello)
        ep.close()
        backlog.close()
    ep = socket.create_connection(("127.0.0.1", proxy.endpoints), timeout=10)
    ep.sendall(client_hello("127.0.0.1"))
    assert closed_by_peer(ep) == ALERT_UNRECOGNIZED_NAME
    ep.close()
    # (no other test here sends an unknown snikey: `before` cannot be short of one)
    proxy.counters(
        f"refusals.get('unknown_snikey', 0) == {before['refusals'].get('unknown_snikey', 0) + 1}"
    )
    assert "no backlog connection for snikey '127.0.0.1'" in proxy.text()
    assert proxy.proc.poll() is None and "Traceback" not in proxy.text()


def test_a_client_naming_an_sni_at_the_broker_is_refused_in_the_handshake(
    home: PktlabHome, broker: BrokerProcess
) -> None:
    """O §1.1, §3.1: the reference clients send no SNI to the broker. One that does is
    refused in the handshake, as P §4.6's server map refuses a snikey it lacks (the
    broker has only the default entry); one without, on the same port, is served."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(str(home.cert_path("agent_xc_xc")), str(home.key_path("k_xc")))
    raw = socket.create_connection(("127.0.0.1", broker.sub_port), timeout=10)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        tls = ctx.wrap_socket(raw, server_hostname="brokersni")
        tls.recv(1)  # TLS 1.3: a refused client certificate shows at the first read
    raw.close()
    broker.wait_log("unknown_snikey: unknown snikey 'brokersni'")
    ident = Identity(home, broker.workdir, "nosni-ep")
    ident.subscribe(broker.sub_port).close()
    assert broker.running
