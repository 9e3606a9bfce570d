"""The ClientHello a real `twistd pktendpoint` sends its controller, against
BROKER-PROXY-OBSERVED.md §2.1 byte for byte: the server_name extension
`00 00 00 0e 00 0c 00 00 09 "snitesta1"` (type 0, length 14, list length 12, host_name,
length 9), supported_versions `02 03 04` (TLS 1.3 only, §1.1), and no server_name at all
without a snikey ([xn_default_port]). A proxy routes on exactly these bytes."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import pytest
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


def first_hello(home_dir: Path, workdir: Path, snikey: str | None) -> bytes:
    home = pktlab_init(home_dir)
    if snikey is not None:
        conf = home.root / "endpt.conf"
        conf.write_text(conf.read_text() + f"NoSubModeSNIKey {snikey}\n")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(60)  # a deadline: twistd may take seconds to start here
        port = listener.getsockname()[1]
        ep = TLSEndpoint(home, f"127.0.0.1:{port}", workdir)
        try:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(30)
                reader = ClientHelloReader()
                while True:
                    data = conn.recv(4096)
                    assert data, "the endpoint closed before its ClientHello was whole"
                    hello = reader.feed(data)
                    if hello is not None:
                        return hello.raw
        finally:
            ep.stop()


@pytest.mark.parametrize("snikey", ["snitesta1", None])
def test_the_endpoints_clienthello_as_observed(tmp_path: Path, snikey: str | None) -> None:
    raw = first_hello(tmp_path / "home", tmp_path, snikey)
    assert raw[:3] == bytes.fromhex("160301") and raw[5] == 1  # a ClientHello record
    exts = dict(extensions(raw))
    assert exts[43] == bytes.fromhex("020304")  # supported_versions: TLS 1.3 only
    if snikey is None:
        assert 0 not in exts  # [xn_default_port]: no server_name
    else:
        assert bytes.fromhex("0000000e000c000009") + b"snitesta1" in raw
        assert exts[0] == bytes.fromhex("000c000009") + b"snitesta1"
