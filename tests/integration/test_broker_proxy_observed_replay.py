"""The reference clients' observed sessions with a broker and a proxy, replayed against a
real ``twistd pktbroker`` and ``twistd pktproxy`` over real TLS (session 21, bp21).

BROKER-PROXY-OBSERVED.md gives the bytes and orders the reference ``pktendpt`` and
``pktxpmgr`` send (§1.2 [sub_basic], §3.2 [pub_basic], §4.1 [px_basic]); its byte
sequences are binding. Each is sent here as the reference sent it, every encoder piece in
a TLS record of its own (the endpoint's xcert+xsub pipelined in one TCP segment, the
manager's lockstep), once in one segment and once one byte per segment, and every answer
is compared byte for byte with the observed one: the results, the xnotify, the raw
``PKTLAB`` after the manager's close_notify and the forwarded ClientHello. The TLS
clients check the broker's and the proxy's agent certificates against the BOp key as
the reference clients do (BrokerChainRootPath, ProxyCertRootPath). Then the defects
this session found, on the same two daemons: a publisher gone in the middle of an xpub
(it left no line) and ClientHellos whose server_name the manager's OpenSSL refuses (the
proxy routed them by their first name, spending a backlog).

One broker and one proxy for the module; waits are polls with a deadline.
"""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

import broker_world
import pytest
from broker_world import BrokerProcess, Identity
from procstat import rss_kib
from pxworld import ProxyProc, client_hello, closed_by_peer, receive_hello, register

from packetlab.ppks import PktlabHome, key_id, raw_public_key
from packetlab.tls import AuthMode, Credentials, PPKSClientCreator
from packetlab.tls.handoff import TLSHandoff

home, broker, proxy = broker_world.home, broker_world.broker, broker_world.proxy  # fixtures

RESULT_OK = bytes.fromhex("40000000")
ALERT_DECODE_ERROR = bytes.fromhex("15030300020232")
RSS_BOUND_KIB = 16 * 1024


class Link:
    """A TLS client over memory BIOs on a real socket: each `send` piece is one TLS record
    (as the reference's encoder writes them), the segments go out whole or a byte each."""

    def __init__(self, port: int, tls: TLSHandoff, *, bytewise: bool) -> None:
        self.tls = tls
        self.bytewise = bytewise
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.plain = b""
        self.closed = False
        self.rest = b""  # raw bytes after the peer's close_notify
        self.write(tls.start())
        while not tls.handshake_done:
            self._read()

    def write(self, data: bytes) -> None:
        if not self.bytewise:
            self.sock.sendall(data)
            return
        for i in range(len(data)):
            self.sock.sendall(data[i : i + 1])

    def send(self, *pieces: bytes) -> None:
        self.write(b"".join(self.tls.send(p) for p in pieces))

    def _read(self) -> None:
        data = self.sock.recv(65536)
        assert data, "the daemon closed the connection"
        if self.closed:
            self.rest += data
            return
        step = self.tls.receive(data)
        if step.out:
            self.write(step.out)
        self.plain += step.data
        if step.closed:
            self.closed = True
            self.rest += step.rest

    def expect(self, want: bytes) -> None:
        """Exactly `want` comes next (decrypted), and nothing else with it."""
        while len(self.plain) < len(want):
            self._read()
        got, self.plain = self.plain, b""
        assert got == want, f"{got.hex()} != {want.hex()}"

    def close(self) -> None:
        self.sock.close()


def agent_tls(home: PktlabHome, cert: Path, key: Path, root: str) -> TLSHandoff:
    creds = Credentials.load([cert], key)
    creator = PPKSClientCreator(creds, AuthMode.AGENT, [home.public_key(root)])
    return TLSHandoff(creator.clientConnectionForTLS(None), is_client=True)  # type: ignore[arg-type]


def frame(code: int, *body: bytes) -> list[bytes]:
    """The reference's pieces of one message: the 4-byte header, then each field."""
    return [bytes([code]) + sum(map(len, body)).to_bytes(3, "big"), *body]


@pytest.mark.parametrize("bytewise", [False, True], ids=["segments", "byte-by-byte"])
def test_sub_basic_and_pub_basic_get_the_observed_bytes(
    home: PktlabHome, broker: BrokerProcess, tmp_path: Path, bytewise: bool
) -> None:
    """O §1.2: xcert then xsub pipelined (records 4 | DER | 4 | chlist | eopkey | dattr)
    -> `40 000000` twice. O §3.2: pubcmd, exppriv, xpub in lockstep (4 | body each) ->
    `40 000000` each; the subscriber then gets `70 LLLLLL 20 keyid(k_eop) xdescr`."""
    ep = Identity(home, tmp_path, "replay")
    sub = Link(
        broker.sub_port, agent_tls(home, ep.cert_path, ep.key_path, "k_bop"), bytewise=bytewise
    )
    chlist = b"\x20" + ep.channel + b"\x00"
    dattr = b"hostid=pktendpt;endpoint_country=USA;"
    sub.send(*frame(0x30, ep.subcmd.der), *frame(0x38, chlist, ep.eopkey, dattr))
    sub.expect(RESULT_OK + RESULT_OK)

    pub = Link(
        broker.pub_port,
        agent_tls(home, home.cert_path("agent_xc_xc"), home.key_path("k_xc"), "k_bop"),
        bytewise=bytewise,
    )
    for name in ("pubcmd_exper_xc", "exppriv_eop_exper"):  # leaf first
        pub.send(*frame(0x30, home.certificate(name).der))
        pub.expect(RESULT_OK)
    eop = home.private_key("k_eop")
    xdescr = (
        "hostid=pktendpt;endpoint_country=USA;exp_priority=7;"
        f"pub_end={time.time_ns() + 60 * 10**9};"
        f"controller_addr=127.0.0.1:20600;sni_key=replay{int(bytewise)};"
    ).encode()
    pub.send(*frame(0x31, b"\x20" + key_id(eop) + b"\x00", raw_public_key(eop), xdescr))
    pub.expect(RESULT_OK)
    sub.expect(b"\x70" + (33 + len(xdescr)).to_bytes(3, "big") + b"\x20" + key_id(eop) + xdescr)
    pub.close()
    sub.close()


def test_a_publisher_gone_in_the_middle_of_an_xpub_is_one_line(
    home: PktlabHome, broker: BrokerProcess
) -> None:
    """A publisher that disconnects 54 bytes into a 245-byte xpub: the broker said nothing
    of the frame it dropped. Now one line names it; the broker serves on, no traceback."""
    mark = len(broker.output())
    pub = Link(
        broker.pub_port,
        agent_tls(home, home.cert_path("agent_xc_xc"), home.key_path("k_xc"), "k_bop"),
        bytewise=False,
    )
    pub.send(bytes.fromhex("310000f1"), bytes(50))
    pub.close()
    out = broker.wait_log("closed in the middle of a frame", since=mark)
    assert "(xpub, 54 of 245 bytes): dropped unanswered" in out[mark:], out[mark:]
    assert broker.running and "Traceback" not in out


@pytest.mark.parametrize("bytewise", [False, True], ids=["segments", "byte-by-byte"])
def test_px_basic_registration_and_splice_get_the_observed_bytes(
    home: PktlabHome, proxy: ProxyProc, bytewise: bool
) -> None:
    """O §4.1: xreg as two records (`80 000009` | snikey) -> the result record
    `40 000000`; the manager's close_notify -> raw `50 4b 54 4c 41 42` and nothing else;
    the echo registers the backlog. O §4.3: the endpoint's ClientHello (one segment, or a
    byte per segment) reaches the backlog unchanged, the relay carries both ways, and
    the counters say so."""
    before = proxy.counters()
    snikey = f"proxysni{int(bytewise)}"
    tls = agent_tls(home, home.cert_path("agent_xc_xc"), home.key_path("k_xc"), "k_prx")
    mgr = Link(proxy.setup, tls, bytewise=bytewise)
    mgr.send(bytes.fromhex("80000009")[:1] + len(snikey).to_bytes(3, "big"), snikey.encode())
    mgr.expect(RESULT_OK)
    mgr.write(tls.close())  # pktxpmgr does not wait for ours: what follows is raw
    mgr.closed, mgr.rest = True, tls.detach()
    while len(mgr.rest) < 6:
        mgr._read()
    assert mgr.rest == b"PKTLAB"
    mgr.write(b"PKTLAB")
    proxy.counters(f"registrations == {before['registrations'] + 1} and backlog == 1")

    hello = client_hello(snikey)
    ep = socket.create_connection(("127.0.0.1", proxy.endpoints), timeout=10)
    ep.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i in range(len(hello) if bytewise else 1):
        ep.sendall(hello[i : i + 1] if bytewise else hello)
    receive_hello(mgr.sock, hello)
    mgr.sock.sendall(b"server bytes")
    assert ep.recv(64) == b"server bytes"
    ep.close()
    assert closed_by_peer(mgr.sock) == b""
    mgr.close()
    proxy.counters(
        f"splices == {before['splices'] + 1} and active_splices == 0 and backlog == 0"
        f" and bytes_to_manager >= {before['bytes_to_manager'] + len(hello)}"
    )


def sni_hello(*exts: bytes) -> bytes:
    body = b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
    blob = b"".join(exts)
    body += struct.pack(">H", len(blob)) + blob
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack(">H", len(hs)) + hs


def server_name(*names: tuple[int, bytes]) -> bytes:
    lst = b"".join(struct.pack(">BH", t, len(n)) + n for t, n in names)
    return struct.pack(">HH", 0, len(lst) + 2) + struct.pack(">H", len(lst)) + lst


def test_server_names_openssl_refuses_are_refused_and_leave_the_backlog(
    proxy: ProxyProc,
) -> None:
    """Two names (the registered one first), a NameType 1 before it, two server_name
    extensions, a NUL in it, 300 bytes, an empty name: the manager's OpenSSL refuses each
    (bad extension), and the proxy routed the first four to the backlog. Now each is
    refused with decode_error and counted as bad_sni; the backlog then serves a real
    hello; memory and the daemon stay as they were."""
    key = b"snicheck"
    backlog = register(proxy.setup, key.decode())
    before = proxy.counters()
    rss = rss_kib(proxy.proc.pid)
    cases = [
        server_name((0, key), (0, b"other")),
        server_name((1, b"x"), (0, key)),
        server_name((0, key)) + server_name((0, b"zzz")),
        server_name((0, key + b"\x00x")),
        server_name((0, b"a" * 300)),
        server_name((0, b"")),
    ]
    for ext in cases * 20:
        ep = socket.create_connection(("127.0.0.1", proxy.endpoints), timeout=10)
        ep.sendall(sni_hello(ext))
        assert closed_by_peer(ep) == ALERT_DECODE_ERROR
        ep.close()
    n = len(cases) * 20
    stats = proxy.counters(
        f"refusals.get('bad_sni', 0) >= {before['refusals'].get('bad_sni', 0) + n}"
    )
    assert stats["backlog"] == 1 and stats["splices"] == before["splices"]
    hello = client_hello(key.decode())
    ep = socket.create_connection(("127.0.0.1", proxy.endpoints), timeout=10)
    ep.sendall(hello)
    backlog.settimeout(10)
    receive_hello(backlog, hello)
    ep.close()
    backlog.close()
    text = proxy.text()
    assert "refused (bad_sni): server_name list with more than one name" in text
    assert "Traceback" not in text and proxy.proc.poll() is None
    assert rss_kib(proxy.proc.pid) - rss < RSS_BOUND_KIB


def test_a_snikey_in_use_is_refused_to_another_manager(home: PktlabHome, proxy: ProxyProc) -> None:
    """A manager with its agent certificate registers `ownedsni`; a stranger (no
    certificate) then tries to take its endpoints by registering backlogs of the same
    snikey: it gets ENORES (after the 1 s hold) and a line saying why, and the endpoint
    still reaches the manager."""
    tls = agent_tls(home, home.cert_path("agent_xc_xc"), home.key_path("k_xc"), "k_prx")
    mgr = Link(proxy.setup, tls, bytewise=False)
    mgr.send(b"\x80\x00\x00\x08", b"ownedsni")
    mgr.expect(RESULT_OK)
    mgr.write(tls.close())
    mgr.closed, mgr.rest = True, tls.detach()
    while len(mgr.rest) < 6:
        mgr._read()
    mgr.write(b"PKTLAB")
    creator = PPKSClientCreator(None, AuthMode.AGENT, [home.public_key("k_prx")])
    stranger_tls = TLSHandoff(creator.clientConnectionForTLS(None), is_client=True)  # type: ignore[arg-type]
    stranger = Link(proxy.setup, stranger_tls, bytewise=False)
    stranger.send(b"\x80\x00\x00\x08", b"ownedsni")
    stranger.expect(bytes.fromhex("400000020044"))  # result(ENORES)
    stranger.close()
    hello = client_hello("ownedsni")
    ep = socket.create_connection(("127.0.0.1", proxy.endpoints), timeout=10)
    ep.sendall(hello)
    receive_hello(mgr.sock, hello)
    ep.close()
    mgr.close()
    assert "refusing xreg: snikey ownedsni is held by another manager (agent key" in proxy.text()
