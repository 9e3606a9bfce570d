"""Session 32 (hostp32): every address of the system written in the reference's form,
`V6:PORT` without brackets (PROTOCOL.md §1.4), as a reference xpmgr.conf and command line
write them: `BrokerAddr ::1:P`, `pktlab xpmgr -a ::1:P`, the endpoint's `--broker ::1:P`.
`-a ::1:P` was refused (`an IPv6 address with a port is written [ADDR]:PORT`, exit 2)
while `BrokerAddr`, `-p` and the endpoint read the same text as host ::1, port P."""

from __future__ import annotations

from pathlib import Path

from broker_world import BrokerProcess, Identity
from pxworld import EndpointProc, XpmgrProc, compile_c_mlet, http_server
from test_dual32_ipv6 import broker6, free_v6_ports, home, pub_conf, published, pytestmark

from packetlab.ppks import PktlabHome

__all__ = ["broker6", "home", "pytestmark"]  # fixtures and the ::1 skip, shared


def test_every_address_in_the_reference_form(
    home: PktlabHome, tmp_path: Path, broker6: BrokerProcess
) -> None:
    conf = pub_conf(home, tmp_path / "pub.conf", broker6)
    text = conf.read_text().replace(f"[::1]:{broker6.pub_port}", f"::1:{broker6.pub_port}")
    conf.write_text(text)
    assert f"BrokerAddr ::1:{broker6.pub_port}\n" in text
    c_mlet = compile_c_mlet(tmp_path)
    ident = Identity(home, tmp_path, "ep")
    ep = EndpointProc(tmp_path, home.root, None, "--broker", f"::1:{broker6.sub_port}",
                      "--ipv4", "127.0.0.1/8", *ident.endpoint_args())  # fmt: skip
    [port] = free_v6_ports(1)
    with http_server() as web:
        xp = XpmgrProc(tmp_path, conf, [str(c_mlet), "127.0.0.1", str(web)], "-n", "1",
                       addr=f"::1:{port}")  # fmt: skip
        try:
            xp.wait_log(rf"listening on \[::1\]:{port}\b")
            assert f";controller_addr=::1:{port};sni_key=" in published(broker6)
            assert xp.wait_exit(60) == 0, xp.text()
            [r] = xp.result_lines()
            assert r["status"] == "done" and "HTTP/1.0 200 OK" in r["output"], r
            assert r["address"] == "::1"
        finally:
            xp.stop()
            ep.stop()
    assert f"Broker subscription finished: [::1]:{broker6.sub_port}" in ep.text()
