"""The ClientHellos our real daemons send, against BROKER-PROXY-OBSERVED.md byte for
byte. `twistd pktendpoint` to its controller (§2.1): the server_name extension
`00 00 00 0e 00 0c 00 00 09 "snitesta1"` (type 0, length 14, list length 12, host_name,
length 9) and none without a snikey ([xn_default_port]); a proxy routes on exactly these
bytes. The agent links (§1.1 endpoint -> broker, §4.1 pktxpmgr -> proxy setup): no
server_name. Every one: supported_versions `02 03 04` (TLS 1.3 only)."""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pxworld import EndpointProc, XpmgrProc, active_conf
from tls_world import TLSEndpoint, pktlab_init

from packetlab.proxy.clienthello import ClientHelloReader


def extensions(raw: bytes) -> list[tuple[int, bytes]]:
    """(type, data) of each extension of the ClientHello in the first record of `raw`."""
    body = raw[5 + 4 :]  # record header, handshake header
    pos = 2 + 32  # legacy_version, random
    pos += 1 + body[pos]  # session id
    pos += 2 + struct.unpack_from(">H", body, pos)[0]  # cipher suites
    pos += 1 + body[pos]  # compression methods
    end = pos + 2 + struct.unpack_from(">H", body, pos)[0]
    pos += 2
    out = []
    while pos < end:
        kind, length = struct.unpack_from(">HH", body, pos)
        out.append((kind, body[pos + 4 : pos + 4 + length]))
        pos += 4 + length
    return out


def first_hello(start: Callable[[int], Any]) -> bytes:
    """The first ClientHello the process `start(port)` sends to a plain listener."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        listener.settimeout(60)  # a deadline: twistd may take seconds to start here
        proc = start(listener.getsockname()[1])
        try:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(30)
                reader = ClientHelloReader()
                while True:
                    data = conn.recv(4096)
                    assert data, "the peer closed before its ClientHello was whole"
                    hello = reader.feed(data)
                    if hello is not None:
                        return hello.raw
        finally:
            proc.stop()


def endpoint_hello(tmp_path: Path, snikey: str | None) -> bytes:
    home = pktlab_init(tmp_path / "home")
    if snikey is not None:
        conf = home.root / "endpt.conf"
        conf.write_text(conf.read_text() + f"NoSubModeSNIKey {snikey}\n")
    return first_hello(lambda port: TLSEndpoint(home, f"127.0.0.1:{port}", tmp_path))


def check_tls13_only(raw: bytes) -> dict[int, bytes]:
    assert raw[:3] == bytes.fromhex("160301") and raw[5] == 1  # a ClientHello record
    exts = dict(extensions(raw))
    assert exts[43] == bytes.fromhex("020304")  # supported_versions: TLS 1.3 only
    return exts


RANDOM63 = "8jvud5ze" + "0123456789abcdefghijklmnopqrstuvwxyz" + "0123456789abcdefghi"


@pytest.mark.parametrize(
    ("snikey", "head"),
    [
        ("snitesta1", "0000000e000c000009"),  # O §2.1 [xn_basic]
        (RANDOM63, "00000044004200003f"),  # O §2.1 [px_full]: a 63-character snikey
        (None, None),  # [xn_default_port]: no server_name
    ],
)
def test_the_endpoints_clienthello_as_observed(
    tmp_path: Path, snikey: str | None, head: str | None
) -> None:
    raw = endpoint_hello(tmp_path, snikey)
    exts = check_tls13_only(raw)
    if snikey is None or head is None:
        assert 0 not in exts
    else:
        assert bytes.fromhex(head) + snikey.encode() in raw
        assert exts[0] == bytes.fromhex(head)[4:] + snikey.encode()


def test_the_endpoints_hello_to_its_broker_has_no_sni(tmp_path: Path) -> None:
    home = pktlab_init(tmp_path / "home")
    raw = first_hello(
        lambda port: EndpointProc(tmp_path, home.root, None, "--broker", f"127.0.0.1:{port}")
    )
    assert 0 not in check_tls13_only(raw)


def test_the_managers_hello_to_a_proxy_has_no_sni(tmp_path: Path) -> None:
    home = pktlab_init(tmp_path / "home")
    conf = active_conf(home.root, tmp_path / "active.conf", "snikey1")
    raw = first_hello(
        lambda port: XpmgrProc(tmp_path, conf, ["/bin/true"], addr=f"127.0.0.1:{port}")
    )
    assert 0 not in check_tls13_only(raw)


def test_the_managers_hello_to_a_broker_has_no_sni(tmp_path: Path) -> None:
    home = pktlab_init(tmp_path / "home")

    def start(port: int) -> XpmgrProc:
        conf = tmp_path / "publish.conf"
        text = (home.root / "xpmgr.conf").read_text().replace("EnableExpPublication 0", "")
        conf.write_text(
            text + "EnableExpPublication 1\n" + f"BrokerAddr 127.0.0.1:{port}\n"
            f"PubAgentCertPath {home.cert_path('agent_xc_xc')}\nPubPeriod 30000000000\n"
        )
        return XpmgrProc(tmp_path, conf, ["/bin/true"])

    assert 0 not in check_tls13_only(first_hello(start))  # O §3.1
