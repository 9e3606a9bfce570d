"""Operator policy without WebAssembly (docs/endpoint.md) on real ``twistd pktendpoint``
processes: the capture filter ANDed with ncap, the snaplen cap and address masks on
captured packets (in a namespace testbed, root), and per-experiment send rate caps."""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import DEFAULT_CONFIG
from test_endpoint_raw import RawEndpoint, ep_addr, ep_config, ncap, raw_open, raw_send

from packetlab import wire
from packetlab.measure.probes import echo_probe
from packetlab.testbed import Testbed
from packetlab.wire.constants import Status

pytest_plugins = ["packetlab.testbed.pytest_fixtures"]
SEC = 1_000_000_000
LO = ipaddress.IPv4Address("127.0.0.1").packed


@pytest.fixture
def raw_endpoint(
    testbed_factory: Callable[..., Testbed], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str], tuple[Testbed, Any]]]:
    if os.geteuid() != 0:
        pytest.skip("needs root: creates network namespaces and raw sockets")
    monkeypatch.setenv("PKTLAB_TESTBED_DIR", str(tmp_path))
    monkeypatch.setenv("PKTLAB_TESTBED_PREFIX", f"ppo{os.getpid() % 100000}-")
    tb = testbed_factory(hops=2)
    made: list[RawEndpoint] = []

    def start(policy: str) -> tuple[Testbed, Any]:
        ep = RawEndpoint(tb, tmp_path, ep_config(tb) + policy, [])
        made.append(ep)
        return tb, ep.accept()

    yield start
    for ep in made:
        ep.stop()


def _ipv4_checksum_ok(header: bytes) -> bool:
    s = sum(struct.unpack(f">{len(header) // 2}H", header))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s == 0xFFFF


@pytest.mark.root
def test_snaplen_and_address_mask_on_captures(raw_endpoint: Any) -> None:
    tb, c = raw_endpoint("CaptureFilter icmp\nCaptureSnaplen 32\nCaptureAnonMask4 16\n")
    c.ok(raw_open(1, 4))
    c.ok(ncap(1, 4, "icmp", time.time_ns() + 10 * SEC))
    probe = echo_probe(ep_addr(tb, 4), tb.addr("tg", 4), ident=0x4242, seq=1)
    c.ok(raw_send(1, 4, probe.packet))
    nd = c.notification(wire.Ndata, timeout=5)
    assert len(nd.data) == 32  # snaplen, though the reply is longer
    src = ipaddress.IPv4Address(nd.data[12:16])
    dst = ipaddress.IPv4Address(nd.data[16:20])
    tg, ep = tb.addr("tg", 4), tb.addr("ep", 4)
    assert src == ipaddress.IPv4Address(int(tg) & 0xFFFF0000)  # /16 kept, rest zeroed
    assert dst == ipaddress.IPv4Address(int(ep) & 0xFFFF0000)
    assert _ipv4_checksum_ok(nd.data[:20])  # the IPv4 header checksum was recomputed
    assert nd.data[20] == 0  # still the echo reply


@pytest.mark.root
def test_capture_filter_is_anded_with_ncap(raw_endpoint: Any) -> None:
    tb, c = raw_endpoint("CaptureFilter udp\n")  # the operator allows captures of UDP only
    c.ok(raw_open(1, 4))
    c.ok(ncap(1, 4, "icmp", time.time_ns() + 10 * SEC))  # the experiment asks for ICMP
    probe = echo_probe(ep_addr(tb, 4), tb.addr("tg", 4), ident=0x4343, seq=1)
    c.ok(raw_send(1, 4, probe.packet))
    assert [m for m in c.quiet(1.0) if isinstance(m, wire.Ndata)] == []
    assert c.mread(0x10010000, 8)  # the endpoint is fine


def test_bad_capture_filter_stops_the_daemon(endpoint_factory: Any) -> None:
    ep = endpoint_factory(DEFAULT_CONFIG + "CaptureFilter icmp and and\n")
    assert ep.proc.wait(60) != 0
    out = ep.proc.stdout.read().decode() if ep.proc.stdout else ""
    assert "bad capture filter" in out + ep.output()


def test_send_rate_cap_per_experiment(endpoint_factory: Any) -> None:
    ep = endpoint_factory(DEFAULT_CONFIG + "ExpSendRatePkt 3/60\n")
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    port = sink.getsockname()[1]
    try:
        for _ in range(2):  # each experiment (session) has its own window
            c = ep.accept()
            c.start()
            c.ok(wire.Nopen(sktid=1, family=4, proto=17, rbufsz=4096, laddr=LO, lport=0))
            send = wire.Nsend(sktid=1, family=4, proto=17, time=0, tag=0, data=b"x", raddr=LO,
                              rport=port)  # fmt: skip
            got = [c.status(send) for _ in range(5)]
            assert got == [0, 0, 0, Status.ESKTPKTDENY, Status.ESKTPKTDENY]
            c.close()
    finally:
        sink.close()
