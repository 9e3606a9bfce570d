"""Delegated chains with one certificate out of its validity (or of the wrong kind) at
each position, against a real ``twistd pktbroker`` and ``pktlab xpmgr`` (session 36,
spec36).

PROTOCOL.md §4.4 checks ``notBefore <= now <= notAfter`` for every certificate of a
chain; §5.5 has the broker parse the xsub's representation chain and the xpub's
experiment chain (ESUB*/EPUB*); §4.6/§7.3 have the manager check an endpoint's chain in
CONTROLLER_AUTH_ENDPOINT mode against its TRUSTEDEOP keys. Session 23 pinned a
one-certificate subcmd and the exppriv of a two-certificate experiment chain; here the
chains are delegated (subcmd + delpriv(reppriv), the endpoint's chain of
BROKER-PROXY-OBSERVED.md §1.3; pubcmd + delpriv(exppriv) + exppriv), so each of two or
three positions gets its turn. Each bad chain gets its code (broker) or is refused in
the handshake (manager) with the rule and the position in one line; the link or daemon
then serves the good chain.
"""

from __future__ import annotations

import socket
import ssl
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import broker_world
import pytest
from broker_world import BrokerProcess, RawClient
from pxworld import XpmgrProc

from packetlab import wire
from packetlab.ppks import (
    Certificate,
    PktlabHome,
    generate_private_key,
    issue_certificate,
    key_id,
    raw_public_key,
    write_key_pair,
)
from packetlab.wire import vmem

home, broker = broker_world.home, broker_world.broker  # fixtures

FOREVER = 2**31 - 1


def _times(kind: str) -> tuple[int, int]:
    now = int(time.time())
    return {"ok": (0, FOREVER), "expired": (0, now - 60), "future": (now + 3600, FOREVER)}[kind]


class RepWorld:
    """The endpoint's delegated representation chain of OBSERVED §1.3:
    subcmd (k_eop2 -> ep), delpriv reppriv (k_eop -> k_eop2); eopkey = k_eop."""

    def __init__(self, home: PktlabHome, workdir: Path, name: str) -> None:
        self.eop = home.private_key("k_eop")
        self.eop2 = generate_private_key()
        self.ep = generate_private_key()
        self.key_path = workdir / f"{name}.key"
        write_key_pair(self.key_path, self.ep)
        self.agent_path = workdir / f"{name}.agent.cert"
        agent = issue_certificate("agent", self.ep, self.ep, 0, FOREVER)
        self.agent_path.write_bytes(agent.to_pem())
        self.workdir = workdir
        self.name = name

    def chain(
        self, subcmd: str = "ok", delpriv: str = "ok", del_type: str = "reppriv"
    ) -> list[Certificate]:
        """Leaf first, as the endpoint sends it (listed order, root-signed cert last)."""
        return [
            issue_certificate("subcmd", self.eop2, self.ep, *_times(subcmd)),
            issue_certificate("delpriv", self.eop, self.eop2, *_times(delpriv), del_type=del_type),
        ]

    @property
    def channels(self) -> list[bytes]:
        return [key_id(self.eop), key_id(self.eop2)]


# ---------------------------------------------------------------- broker: xsub


REP_CASES = [
    # (subcmd, delpriv, del_type, status, rule in the refuse line)
    ("expired", "ok", "reppriv", 0x61, "expired: cert #0"),
    ("future", "ok", "reppriv", 0x61, "not_yet_valid: cert #0"),
    ("ok", "expired", "reppriv", 0x61, "expired: cert #1"),
    ("ok", "future", "reppriv", 0x61, "not_yet_valid: cert #1"),
    # a delegation of the other privilege
    ("ok", "ok", "exppriv", 0x61, "del_type_not_reppriv: cert #1"),
]


def test_a_delegated_subscription_chain_out_of_time_at_each_position(
    home: PktlabHome, broker: BrokerProcess
) -> None:
    """xcert subcmd, xcert delpriv, xsub [keyid(k_eop), keyid(k_eop2)] pipelined as the
    reference endpoint sends them: each bad chain ESUBBADCHN (0x61) naming the position;
    on the same link, the good chain then subscribes and a publication on k_eop's
    channel (proven through the delegation) reaches it."""
    w = RepWorld(home, broker.workdir, "rep36")
    c = RawClient(broker.sub_port, w.agent_path, w.key_path)
    mark = len(broker.output())
    eopkey = raw_public_key(w.eop)
    for sub, dp, dt, code, why in REP_CASES:
        certs = w.chain(sub, dp, dt)
        c.send(*(wire.Xcert(x.der) for x in certs), wire.Xsub(w.channels, eopkey, b""))
        assert [c.recv(), c.recv()] == [wire.Result(0)] * 2  # each xcert is a certificate
        assert c.recv() == wire.Result(code), (sub, dp, dt)
        text = broker.wait_log(why, since=mark)
        line = [x for x in text[mark:].splitlines() if "refuse xsub" in x][-1]
        assert why in line, line
        mark = len(text)
    certs = w.chain()
    c.send(*(wire.Xcert(x.der) for x in certs), wire.Xsub(w.channels, eopkey, b""))
    assert [c.recv() for _ in range(3)] == [wire.Result(0)] * 3
    xd = b"controller_addr=127.0.0.1:9;sni_key=rep36;"
    pub = broker_world.publish_raw(home, broker, xd)
    assert c.recv() == wire.Xnotify(key_id(w.eop), xd)
    assert "Traceback" not in broker.output()
    pub.close()
    c.close()


# ---------------------------------------------------------------- broker: xpub


def _exp_chain(
    home: PktlabHome, pub: str, dp: str, ep: str, del_type: str = "exppriv"
) -> list[Certificate]:
    """pubcmd (exper2 -> xc), delpriv exppriv (exper -> exper2), exppriv (eop -> exper),
    leaf first as pktxpmgr sends it (OBSERVED §3.2)."""
    xc = home.private_key("k_xc")
    exper = home.private_key("k_exper")
    eop = home.private_key("k_eop")
    exper2 = _EXPER2
    return [
        issue_certificate("pubcmd", exper2, xc, *_times(pub)),
        issue_certificate("delpriv", exper, exper2, *_times(dp), del_type=del_type),
        issue_certificate("exppriv", eop, exper, *_times(ep)),
    ]


_EXPER2 = generate_private_key()

EXP_CASES = [
    # (pubcmd, delpriv, exppriv, del_type, rule)
    ("expired", "ok", "ok", "exppriv", "expired: cert #0"),
    ("future", "ok", "ok", "exppriv", "not_yet_valid: cert #0"),
    ("ok", "expired", "ok", "exppriv", "expired: cert #1"),
    ("ok", "future", "ok", "exppriv", "not_yet_valid: cert #1"),
    ("ok", "ok", "expired", "exppriv", "expired: cert #2"),
    ("ok", "ok", "future", "exppriv", "not_yet_valid: cert #2"),
    ("ok", "ok", "ok", "reppriv", "del_type_not_exppriv: cert #1"),
]


def test_a_delegated_experiment_chain_out_of_time_at_each_position(
    home: PktlabHome, broker: BrokerProcess
) -> None:
    """In lockstep as pktxpmgr: each bad three-certificate chain gets EPUBBADCHN (0x51)
    naming the position, the link goes on, and the good chain then publishes: a
    subscriber of k_eop's channel gets that one publication."""
    eop = home.private_key("k_eop")
    chan, eopkey = key_id(eop), raw_public_key(eop)
    sub = broker_world.Identity(home, broker.workdir, "exp36-ep").subscribe(broker.sub_port)
    p = RawClient(broker.pub_port, home.cert_path("agent_xc_xc"), home.key_path("k_xc"))
    mark = len(broker.output())
    for i, (pub, dp, ep, dt, why) in enumerate(EXP_CASES):
        for cert in _exp_chain(home, pub, dp, ep, dt):
            p.send(wire.Xcert(cert.der))
            assert p.recv() == wire.Result(0)
        p.send(wire.Xpub([chan], eopkey, f"controller_addr=127.0.0.1:9;sni_key=bad{i};".encode()))
        assert p.recv() == wire.Result(0x51), (pub, dp, ep, dt)
        text = broker.wait_log(why, since=mark)
        line = [x for x in text[mark:].splitlines() if "refuse xpub" in x][-1]
        assert why in line, line
        mark = len(text)
    good = b"controller_addr=127.0.0.1:9;sni_key=good36;"
    for cert in _exp_chain(home, "ok", "ok", "ok"):
        p.send(wire.Xcert(cert.der))
        assert p.recv() == wire.Result(0)
    p.send(wire.Xpub([chan], eopkey, good))
    assert p.recv() == wire.Result(0)
    assert sub.recv() == wire.Xnotify(chan, good)
    assert sub.quiet(0.3) == []
    assert "Traceback" not in broker.output()
    p.close()
    sub.close()


# ---------------------------------------------------------------- manager: the endpoint's chain


@pytest.fixture(scope="module")
def manager(home: PktlabHome, tmp_path_factory: pytest.TempPathFactory) -> Iterator[XpmgrProc]:
    """`pktlab xpmgr` passive, the demo xpmgr.conf (TRUSTEDEOP = k_eop.pub)."""
    tmp = tmp_path_factory.mktemp("xp36")
    mlet = tmp / "mlet.py"
    mlet.write_text("import sys\nsys.stdin.buffer.read()\n")
    xp = XpmgrProc(tmp, home.root / "xpmgr.conf", [sys.executable, str(mlet)])
    yield xp
    xp.stop()


def _endpoint_tls(port: int, certs: list[Certificate], key_path: Path) -> str:
    """A TLS client presenting `certs` (leaf first); what it met: 'setup' when the
    manager sent its first setup frame, else the error or close."""
    chain = key_path.with_suffix(".chain")
    chain.write_bytes(b"".join(c.to_pem() for c in certs))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the manager's chain is PPKS, checked elsewhere
    ctx.load_cert_chain(str(chain), str(key_path))
    raw = socket.create_connection(("127.0.0.1", port), timeout=15)
    try:
        tls = ctx.wrap_socket(raw)
        framer = wire.Framer()
        data = tls.recv(65536)  # TLS 1.3: a refused client certificate shows here
        if not data:
            return "closed"
        got = list(framer.feed(data))
        setup = (wire.Start(), wire.Mread(vmem.HOSTID.addr, vmem.HOSTID.size))
        return "setup" if got and got[0] in setup else repr(got)
    except (ssl.SSLError, OSError) as e:
        return str(e)
    finally:
        raw.close()


def test_the_manager_refuses_an_endpoint_chain_out_of_time_at_each_position(
    home: PktlabHome, manager: XpmgrProc, tmp_path: Path
) -> None:
    """The endpoint's delegated chain presented to the manager (§7.3: CONTROLLER_AUTH_
    ENDPOINT, TRUSTEDEOP k_eop): each bad one is refused in the handshake with one line
    naming the rule and position; then the good chain reaches the setup (start)."""
    w = RepWorld(home, tmp_path, "xp36")
    port = manager.port()
    for sub, dp, dt, _code, why in REP_CASES:
        before = len(manager.text())
        met = _endpoint_tls(port, w.chain(sub, dp, dt), w.key_path)
        assert met != "setup", (sub, dp, dt)
        deadline = time.monotonic() + 10
        while why not in manager.text()[before:] and time.monotonic() < deadline:
            time.sleep(0.05)
        new = manager.text()[before:]
        assert why in new and "refused" in new, (sub, dp, dt, new)
    assert _endpoint_tls(port, w.chain(), w.key_path) == "setup"
    assert "Traceback" not in manager.text()


def test_certificates_past_an_agent_leaf_are_not_its_chain_whatever_their_dates(
    home: PktlabHome, broker: BrokerProcess, tmp_path: Path
) -> None:
    """P §4.4: AGENT mode is `agent x1 (must end)`, so a TLS client's agent leaf has no
    parent: an expired or not-yet-valid certificate sent after it (even its signer's)
    is not looked at, as in the reference. Checked on both ports (the leaf's own dates
    are: test_ppks_hostile_daemons, and by hand here: `expired: cert #0`)."""
    now = int(time.time())
    signer, me = generate_private_key(), generate_private_key()
    key_path = tmp_path / "agent36.key"
    write_key_pair(key_path, me)
    for i, (nb, na) in enumerate(((0, now - 60), (now + 3600, FOREVER))):
        chain = tmp_path / f"agent36-{i}.chain"
        leaf = issue_certificate("agent", signer, me, 0, FOREVER)
        extra = issue_certificate("agent", signer, signer, nb, na)
        chain.write_bytes(leaf.to_pem() + extra.to_pem())
        c = RawClient(broker.sub_port, chain, key_path)
        c.send(wire.Xsub([b"public36"], bytes(32), b""), split=False)
        assert c.recv() == wire.Result(0), i
        c.close()
        p = RawClient(broker.pub_port, chain, key_path)
        p.send(wire.Xpub([b"public36"], bytes(32), f"controller_addr=h;sni_key=ag{i};".encode()))
        assert p.recv() == wire.Result(0), i
        p.close()
