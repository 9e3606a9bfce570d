"""A real `twistd -n pktbroker` (defaults): one self-made agent key floods public
publications (what filled the 10,000-publication table before: 157 links of 64), and a
real publisher (the pktlab init experimenter's chain, on the EOp's private channel) is
still taken and reaches a subscribed endpoint (docs/broker.md "Bounds")."""

from __future__ import annotations

from pathlib import Path

import broker_world
from broker_world import BrokerProcess, Identity, RawClient
from tls_world import home_fixture

from packetlab import wire
from packetlab.ppks import PktlabHome, key_id, raw_public_key

ZERO = bytes(32)
TABLE = 10_000  # MaxPublications (default)
PER_LINK = 64  # publications per link


home = home_fixture()


broker = broker_world.broker_per_test


def _flood(broker: BrokerProcess, flood: Identity) -> tuple[int, list[RawClient]]:
    """Publish up to the whole table from one key; stop at its first refusal. Returns how
    many were taken, and the links (kept open: closing them would end their publications)."""
    taken, links = 0, []
    for i in range((TABLE + PER_LINK - 1) // PER_LINK):
        n = min(PER_LINK, TABLE - i * PER_LINK)
        c = RawClient(broker.pub_port, flood.cert_path, flood.key_path)
        links.append(c)
        xd = [b"controller_addr=10.9.%d.%d:1;" % (i, k) for k in range(n)]
        c.send(*(wire.Xpub([b"public"], ZERO, x) for x in xd), split=False)
        for _ in range(n):
            if c.recv(timeout=15) != wire.Result(0):
                return taken, links
            taken += 1
    return taken, links


def test_a_flood_from_one_key_leaves_room_for_a_real_publisher(
    home: PktlabHome, broker: BrokerProcess, tmp_path: Path
) -> None:
    endpoint = Identity(home, tmp_path, "endpoint")
    sub = endpoint.subscribe(broker.sub_port)
    taken, links = _flood(broker, Identity(home, tmp_path, "flood"))
    try:
        assert taken == 1_000  # MaxPublicationsPerKey (default); before: all 10,000
        broker.wait_log("its share (MaxPublicationsPerKey 1000)")
        # the real publisher: pktxpmgr's sequence on the EOp's private channel
        p = RawClient(broker.pub_port, home.cert_path("agent_xc_xc"), home.key_path("k_xc"))
        for name in ("pubcmd_exper_xc", "exppriv_eop_exper"):
            p.send(wire.Xcert(home.certificate(name).der))
            assert p.recv() == wire.Result(0)
        eop = home.public_key("k_eop")
        xd = b"controller_addr=127.0.0.1:20600;sni_key=real;"
        p.send(wire.Xpub([key_id(eop)], raw_public_key(eop), xd))
        assert p.recv() == wire.Result(0)  # before: EPUBBADXD (0x54), the table full
        assert sub.recv() == wire.Xnotify(key_id(eop), xd)
        p.close()
    finally:
        for c in links:
            c.close()
        sub.close()
    refusals = broker.output().count("refuse xpub")
    assert 1 <= refusals <= 20, refusals  # budgeted: 20 a minute
