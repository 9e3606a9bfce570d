"""Operator policy keys (packetlab.endpoint.policy) over fakes."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from packetlab.endpoint.checks import OpenGate
from packetlab.endpoint.config import ConfigError, parse_anon_mask, parse_config, parse_rate
from packetlab.endpoint.policy import CaptureFilter, CapturePolicy, PolicyGate
from packetlab.measure.packets import ip_packet
from packetlab.measure.packets_transport import udp_segment
from packetlab.ppks import BurstRate
from packetlab.wire.constants import Status
from packetlab.wire.messages import Nclose, Nsend, Result

NS = 1_000_000_000
LO = ipaddress.IPv4Address("127.0.0.1").packed


def udp4(src: str = "192.0.2.77", dst: str = "198.51.100.9", dport: int = 53) -> bytes:
    seg = udp_segment(src, dst, 4000, dport, b"payload")
    return ip_packet(src, dst, 17, seg)


def test_config_keys() -> None:
    cfg = parse_config([
        "CaptureFilter udp port 53", "CaptureSnaplen 96", "CaptureAnonMask4 255.255.255.0",
        "CaptureAnonMask6 48", "ExpSendRatePkt 100/0.5", "ExpSendRateByte 1000000/1",
    ])  # fmt: skip
    assert cfg.capture_filter == "udp port 53" and cfg.capture_snaplen == 96
    assert cfg.capture_anon_mask4 == bytes([255, 255, 255, 0])
    assert cfg.capture_anon_mask6 == bytes([255] * 6 + [0] * 10)
    assert cfg.exp_send_rate_pkt == BurstRate(100, NS // 2)
    assert cfg.exp_send_rate_byte == BurstRate(1_000_000, NS)


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("CaptureSnaplen 0", "out of range"),
        ("CaptureAnonMask4 ffff::", "not an IPv4 mask"),
        ("CaptureAnonMask6 banana", "neither an IPv6 mask"),
        ("ExpSendRatePkt 10", "COUNT/SECONDS"),
        ("ExpSendRateByte 10/0", "COUNT/SECONDS"),
        ("ExpSendRatePkt 1/1e-12", "COUNT/SECONDS"),  # a window under 1 ns: no limit at all
        ("ExpSendRatePkt 1/nan", "COUNT/SECONDS"),
    ],
)
def test_bad_values_name_the_key(line: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as e:
        parse_config([line], "endpt.conf")
    assert str(e.value).startswith(f"endpt.conf:1: {line.split()[0]}")


def test_capture_filter() -> None:
    f = CaptureFilter("udp port 53")
    assert f.matches(udp4(dport=53)) and not f.matches(udp4(dport=54))
    with pytest.raises(ConfigError, match="bad capture filter"):
        CaptureFilter("udp and and")


def test_anonymise_snaplen_and_checksum() -> None:
    pol = CapturePolicy(snaplen=24, mask4=parse_anon_mask("24", 4))
    out = pol.apply(udp4())
    assert out is not None and len(out) == 24
    assert out[12:16] == bytes([192, 0, 2, 0]) and out[16:20] == bytes([198, 51, 100, 0])
    s = sum(struct.unpack(">10H", out[:20]))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    assert s == 0xFFFF


def test_anonymise_ipv6() -> None:
    src, dst = "2001:db8:1:2::5", "2001:db8:9:9::7"
    pkt = ip_packet(src, dst, 17, udp_segment(src, dst, 1, 2, b"x"))
    out = CapturePolicy(mask6=parse_anon_mask("32", 6)).apply(pkt)
    assert out is not None
    assert ipaddress.IPv6Address(out[8:24]) == ipaddress.IPv6Address("2001:db8::")
    assert ipaddress.IPv6Address(out[24:40]) == ipaddress.IPv6Address("2001:db8::")
    assert out[40:] == pkt[40:]


def test_filter_drops_before_anything_else() -> None:
    pol = CapturePolicy(filter=CaptureFilter("tcp"), snaplen=10)
    assert pol.apply(udp4()) is None


def test_rate_caps_refuse_over_the_window() -> None:
    now = [100 * NS]
    gate = PolicyGate(OpenGate(), lambda: now[0], parse_rate("2/1"), parse_rate("10/1"))

    def send(n: int = 1) -> Result | None:
        return gate.check(Nsend(1, 4, 17, 0, 0, b"x" * n, LO, 9))

    deny = Result(errid=int(Status.ESKTPKTDENY))
    assert [send(), send(), send()] == [None, None, deny]
    assert gate.check(Nclose(1)) is None  # other requests pass
    now[0] += NS + 1
    assert send(11) == deny  # bytes: 11 > 10
    assert send(5) is None and send(5) is None and send(1) == deny
    assert gate.denied == 3


def test_a_bad_capture_filter_names_the_file_line_and_key() -> None:
    """A CaptureFilter is compiled at startup, after parsing: the daemon stopped with
    `bad capture filter 'udp and and': syntax error`, naming neither the file, nor the
    line, nor the key (every value refused while parsing names them: fuzz27's config
    target). Now as those: `FILE:LINE: CaptureFilter: ...`."""
    from packetlab.endpoint.policy import from_config

    cfg = parse_config(["BufMax 65536", "CaptureFilter udp and and"], "/etc/endpt.conf")
    with pytest.raises(ConfigError) as e:
        from_config(cfg)
    assert str(e.value).startswith("/etc/endpt.conf:2: CaptureFilter: bad capture filter")
    cfg = parse_config([], "endpt.conf")
    cfg.set("CaptureFilter", "udp and and", "--set CaptureFilter")  # (not from a file)
    with pytest.raises(ConfigError, match=r"^--set CaptureFilter: CaptureFilter: bad capture"):
        from_config(cfg)
