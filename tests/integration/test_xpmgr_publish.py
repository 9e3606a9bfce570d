"""`pktlab xpmgr` publishing to a real `twistd pktbroker` (PROTOCOL.md §5.4;
BROKER-PROXY-OBSERVED.md §3): the xdescr a subscriber receives, an endpoint in broker
mode that connects to the published controller_addr and runs the C mlet, the publication
closed at -n, a refused publication ends the manager with exit 1."""

from __future__ import annotations

from pathlib import Path

import broker_world
from broker_world import BrokerProcess, Identity
from pxworld import EndpointProc, XpmgrProc, compile_c_mlet, http_server
from tls_world import home_fixture

from packetlab import wire
from packetlab.ppks import PktlabHome

home = home_fixture()


broker = broker_world.broker_per_test


def pub_conf(home: PktlabHome, out: Path, broker: BrokerProcess, *extra: str) -> Path:
    text = (home.root / "xpmgr.conf").read_text().replace("EnableExpPublication 0", "")
    text = text.replace("ExpExec 1::", "ExpExec 1:pubsni:")
    out.write_text(
        text
        + "EnableExpPublication 1\n"
        + f"BrokerAddr 127.0.0.1:{broker.pub_port}\n"
        + f"PubAgentCertPath {home.cert_path('agent_xc_xc')}\n"
        + "".join(line + "\n" for line in extra)
    )
    return out


def test_publication_reaches_a_subscriber_and_an_endpoint_runs_the_mlet(
    home: PktlabHome, tmp_path: Path, broker: BrokerProcess
) -> None:
    sub = Identity(home, tmp_path, "sub").subscribe(broker.sub_port)
    conf = pub_conf(home, tmp_path / "pub.conf", broker, "PubPeriod 60000000000",
                    "PubExpPriority 3", "PubCountry USA,GBR")  # fmt: skip
    c_mlet = compile_c_mlet(tmp_path)
    with http_server() as web:
        xp = XpmgrProc(tmp_path, conf, [str(c_mlet), "127.0.0.1", str(web)], "-n", "1",
                       "-i", "ep*")  # fmt: skip
        try:
            port = xp.port()
            note = sub.recv(timeout=15)
            assert isinstance(note, wire.Xnotify), note
            xdescr = note.xdescr.decode()
            assert xdescr.startswith("hostid=ep*;endpoint_country=GBR;endpoint_country=USA;"
                                     "exp_priority=3;pub_end="), xdescr  # fmt: skip
            assert xdescr.endswith(f";controller_addr=127.0.0.1:{port};sni_key=pubsni;")
            ident = Identity(home, tmp_path, "ep")
            ep = EndpointProc(tmp_path, home.root, None, "--broker", f"127.0.0.1:{broker.sub_port}",
                              "--ipv4", "127.0.0.1/8", *ident.endpoint_args())  # fmt: skip
            try:
                assert xp.wait_exit(60) == 0, xp.text()
            finally:
                ep.stop()
            [r] = xp.result_lines()
            assert r["status"] == "done" and "HTTP/1.0 200 OK" in r["output"]
            # -n reached: the manager closed its broker link, which ends the publication
            broker.wait_log("reason=publisher closed the connection", timeout=10)
        finally:
            xp.stop()
            sub.close()


def test_refused_publication_ends_the_manager(
    home: PktlabHome, tmp_path: Path, broker: BrokerProcess
) -> None:
    # TRUSTEDEOP names a key that did not sign the chain: the broker refuses the xpub
    conf = pub_conf(home, tmp_path / "pub.conf", broker, "PubPeriod 60000000000")
    text = conf.read_text().replace(str(home.pubkey_path("k_eop")), str(home.pubkey_path("k_ep")))
    conf.write_text(text)
    xp = XpmgrProc(tmp_path, conf, ["true"])
    try:
        code = xp.wait_exit(30)
        assert code == 1, xp.text()
        assert "publication to" in xp.text() and "broker refused the" in xp.text()
    finally:
        xp.stop()


def test_proxy_mode_publication_brings_a_broker_endpoint_through_the_proxy(
    home: PktlabHome, tmp_path: Path, broker: BrokerProcess
) -> None:
    from pxworld import ProxyProc

    proxy = ProxyProc(tmp_path, home.root)
    conf = pub_conf(home, tmp_path / "pub.conf", broker, "PubPeriod 60000000000",
                    "EnableProxyMode 1")  # fmt: skip
    c_mlet = compile_c_mlet(tmp_path)
    with http_server() as web:
        # -p: the proxy's endpoints port is not the default 20556 in a test
        xp = XpmgrProc(tmp_path, conf, [str(c_mlet), "127.0.0.1", str(web)], "-n", "1",
                       "-p", f"127.0.0.1:{proxy.endpoints}",
                       addr=f"127.0.0.1:{proxy.setup}")  # fmt: skip
        ident = Identity(home, tmp_path, "ep")
        ep = EndpointProc(tmp_path, home.root, None, "--broker", f"127.0.0.1:{broker.sub_port}",
                          "--ipv4", "127.0.0.1/8", *ident.endpoint_args())  # fmt: skip
        try:
            assert xp.wait_exit(60) == 0, xp.text()
            text = xp.text()
            # published only once a backlog was registered at the proxy
            assert text.index("ready for snikey pubsni") < text.index("published to")
            [r] = xp.result_lines()
            assert r["status"] == "done" and "HTTP/1.0 200 OK" in r["output"]
            proxy.counters("splices == 1")
        finally:
            ep.stop()
            xp.stop()
            proxy.stop()
