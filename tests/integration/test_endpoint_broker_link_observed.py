"""A real `twistd pktendpoint` in broker mode against a plain TLS server holding the
demo broker identity (`agent_bop_brk`, which the demo endpt.conf trusts through
BrokerChainRootPath), checked against BROKER-PROXY-OBSERVED.md §1.2 [sub_basic]: the
subcmd xcert and then `38 LLLLLL 20 keyid(k_eop) 00 <raw k_eop> <EndpointAttr>`; after
the two results, nothing more from the endpoint; on SIGTERM, a TLS close_notify before
the FIN ("On exit")."""

from __future__ import annotations

import ssl
from pathlib import Path

from conftest import RawController, stop_process
from pxworld import EndpointProc
from tls_world import TLSController, pktlab_init

from packetlab import wire
from packetlab.ppks import key_id, raw_public_key


def test_subscription_bytes_silence_and_close_notify_on_sigterm(tmp_path: Path) -> None:
    home = pktlab_init(tmp_path / "home")
    conf = home.root / "endpt.conf"
    conf.write_text(conf.read_text() + "EndpointAttr hostid=pktendpt;endpoint_country=USA;\n")
    broker = TLSController([home.cert_path("agent_bop_brk")], home.key_path("k_brk"), tmp_path)
    ep = EndpointProc(tmp_path, home.root, None, "--broker", broker.address)
    link: RawController | None = None
    try:
        broker.listener.settimeout(60)  # a deadline: twistd may take seconds to start
        sock, _ = broker.listener.accept()
        sock.settimeout(10)
        # a bare FIN then raises SSLEOFError; a close_notify reads as b""
        link = RawController(
            broker.ctx.wrap_socket(sock, server_side=True, suppress_ragged_eofs=False)
        )
        xcert = link.recv(10)
        assert xcert == wire.Xcert(home.certificate("subcmd_eop_ep").der)
        xsub = link.recv(10)
        eop = raw_public_key(home.public_key("k_eop"))
        assert wire.encode(xsub) == (
            bytes.fromhex("38000067") + b"\x20" + key_id(home.public_key("k_eop")) + b"\x00"
            + eop + b"hostid=pktendpt;endpoint_country=USA;"
        )  # fmt: skip
        link.send(wire.Result(), wire.Result())
        ep.wait_log("Broker subscription finished")
        link.sock.settimeout(1.0)  # a deadline: the endpoint says nothing once subscribed
        try:
            extra = link.sock.recv(1 << 16)
        except TimeoutError:
            extra = b""
        assert extra == b""
        stop_process(ep.proc)
        link.sock.settimeout(10)
        try:
            tail = link.sock.recv(1 << 16)  # b"": the close_notify the reference sends
        except ssl.SSLEOFError:  # a FIN without close_notify
            tail = b"<FIN without close_notify>"
        assert tail == b""
    finally:
        ep.stop()
        if link is not None:
            link.sock.close()
        broker.close()
