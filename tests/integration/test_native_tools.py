"""Native traceroute/scamper/ping vs. probes built with packetlab.measure, in a namespace chain.

ep ── r1 ── r2 ── tg (packetlab.testbed.chain(2), ICMP rate limits off). From ep:

* Butskoy traceroute and scamper report the same hops (r1, r2, tg) for IPv4 and IPv6;
* probes built by packetlab.measure.probes, sent from a plain raw socket in ep with TTL 1..3,
  draw ICMP replies that an AF_PACKET capture (what a PacketLab endpoint's ncap uses: IP
  packets, kernel timestamps) parses and matches to the same hops;
* the kernel accepts our checksums: packets sent through AF_PACKET (nothing rewrites them)
  are answered, and the same packets with one checksum broken are dropped.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from packetlab.measure import native
from packetlab.measure.packets import ParseError, inet_checksum
from packetlab.measure.probes import (
    Probe,
    ProbeKey,
    ProbeTable,
    echo_probe,
    probe_key,
    tcp_syn_probe,
    traceroute_probe,
    udp_probe,
)
from packetlab.measure.records_fields import Stamp
from packetlab.measure.records_traceroute import Hop, TracerouteResult, format_traceroute
from packetlab.measure.replies import Reply, ReplyKind, parse_reply
from packetlab.testbed import Testbed

pytest_plugins = ["packetlab.testbed.pytest_fixtures"]
pytestmark = pytest.mark.root

ETH_P_ALL, ETH_P_IP, ETH_P_IPV6 = 0x0003, 0x0800, 0x86DD
PACKET_OUTGOING = 4
SO_TIMESTAMPNS = 35
SPORT = 20556  # the source port the Marionette paper gave Butskoy's traceroute


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: creates network namespaces and raw sockets")
    monkeypatch.setenv("PKTLAB_TESTBED_DIR", str(tmp_path))
    monkeypatch.setenv("PKTLAB_TESTBED_PREFIX", f"plm{os.getpid() % 100000}-")


@pytest.fixture
def chain(testbed_factory: Callable[..., Testbed]) -> Testbed:
    # Testbeds turn veth TX checksum offload off (Testbed(tx_checksum_offload=False)), so
    # (1) routers quote final checksums, which scamper's udp-paris matches IPv6 replies on,
    # and (2) parse_reply(verify_checksums=True) can check every reply the way it would
    # check packets from a real wire.
    return testbed_factory(hops=2)


def expected_path(tb: Testbed, family: int) -> list[tuple[int, str]]:
    """(ttl, address): routers answer from the interface that faces the endpoint."""

    def addr(node: str, peer: str) -> str:
        (iface,) = [i for i in tb.interfaces(node) if i.peer == peer]
        return str(iface.ipv4.ip if family == 4 else iface.ipv6.ip)

    return [(1, addr("r1", "ep")), (2, addr("r2", "r1")), (3, str(tb.addr("tg", family)))]


# -- native tools --------------------------------------------------------------------------------


@pytest.mark.parametrize("family", [4, 6])
def test_native_traceroute_and_scamper_agree(chain: Testbed, family: int) -> None:
    tg = str(chain.addr("tg", family))
    ns = chain.netns_name("ep")
    want = expected_path(chain, family)

    butskoy = native.run_traceroute(tg, netns=ns, max_ttl=8, sport=SPORT, timeout=60)
    classic = native.run_scamper(tg, netns=ns, max_ttl=8, method="udp", sport=SPORT)
    paris = native.run_scamper(tg, netns=ns, max_ttl=8, method="udp-paris", sport=SPORT)

    for result in (butskoy, classic, paris):
        assert result.path() == want, format_traceroute(result)
        assert [h.reply_type for h in result.hops] == [
            ReplyKind.TIME_EXCEEDED,
            ReplyKind.TIME_EXCEEDED,
            ReplyKind.DEST_UNREACHABLE,
        ]
        assert result.hops[-1].code == (3 if family == 4 else 4)  # port unreachable
        assert all(h.rtt_us is not None and h.rtt_us > 0 for h in result.hops)
        assert (result.send_stamp, result.recv_stamp) == (Stamp.USER_BEFORE_SEND, Stamp.KERNEL)
    assert classic.src == str(chain.addr("ep", family))
    assert all(h.probe_send_ns and h.reply_recv_ns for h in classic.hops)


@pytest.mark.parametrize("family", [4, 6])
def test_native_ping(chain: Testbed, family: int) -> None:
    tg = str(chain.addr("tg", family))
    result = native.run_ping(tg, netns=chain.netns_name("ep"), count=3, interval=0.05)
    assert (result.sent, result.received, result.loss) == (3, 3, 0.0)
    assert {r.addr for r in result.replies} == {tg}
    assert all(r.ttl == 62 for r in result.replies)  # 64 minus the two routers


# -- our probes through a raw socket, replies through AF_PACKET -----------------------------------


class Capture:
    """AF_PACKET/SOCK_DGRAM/ETH_P_ALL on one interface: IP packets with kernel timestamps,
    both directions (like a PacketLab endpoint's ncap socket, which also sees IP packets)."""

    def __init__(self, ifname: str) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.bind((ifname, 0))

    def packets(self, timeout: float) -> Iterator[tuple[bytes, int, bool]]:
        """(ip packet, kernel time ns, outgoing) until ``timeout`` seconds have passed."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([self.sock], [], [], left)[0]:
                return
            data, anc, _flags, addr = self.sock.recvmsg(65535, socket.CMSG_SPACE(16))
            stamp = 0
            for level, kind, value in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", value[:16])
                    stamp = sec * 1_000_000_000 + nsec
            yield data, stamp, addr[2] == PACKET_OUTGOING

    def close(self) -> None:
        self.sock.close()


def raw_socket(family: int) -> socket.socket:
    """What a PacketLab endpoint sends raw packets with: the controller writes the IP header."""
    if family == 4:
        return socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    return socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)  # HDRINCL


def run_probes(
    tb: Testbed, probes: list[Probe], *, timeout: float = 3.0
) -> dict[ProbeKey, tuple[Reply, int, int]]:
    """Send ``probes`` from ep; (reply, kernel send ns, kernel receive ns) by probe key."""
    with tb.enter("ep"):
        cap = Capture(tb.iface("ep", "r1"))
        sender = raw_socket(probes[0].version)
    table: ProbeTable[Probe] = ProbeTable()
    for p in probes:
        table.add(p.key, p)
    sent: dict[ProbeKey, int] = {}
    got: dict[ProbeKey, tuple[Reply, int, int]] = {}
    try:
        for p in probes:
            sender.sendto(p.packet, (str(p.dst), 0))
        for data, stamp, outgoing in cap.packets(timeout):
            if outgoing:  # our own probe leaving: its kernel time is the send time
                try:
                    sent.setdefault(probe_key(data), stamp)
                except ParseError:
                    pass  # e.g. neighbour discovery
                continue
            try:
                reply = parse_reply(data, verify_checksums=True)
            except ParseError:
                continue  # not a reply (NDP, ...), which the capture also sees
            if reply.key in table and reply.key not in got:
                got[reply.key] = (reply, sent.get(reply.key, 0), stamp)
            if len(got) == len(probes):
                break
    finally:
        cap.close()
        sender.close()
    return got


@pytest.mark.parametrize("family", [4, 6])
def test_raw_traceroute_probes_match_native_path(chain: Testbed, family: int) -> None:
    src, tg = chain.addr("ep", family), chain.addr("tg", family)
    probes = [traceroute_probe(src, tg, ttl, sport=SPORT) for ttl in (1, 2, 3)]
    got = run_probes(chain, probes)
    assert len(got) == 3, f"replies for {len(got)} of 3 probes"
    hops = []
    for p in probes:
        reply, send_ns, recv_ns = got[p.key]
        assert send_ns and recv_ns > send_ns  # both kernel stamps, reply after probe
        assert reply.quoted_ttl == 1  # every probe arrives with TTL 1 where it is answered
        hops.append(Hop.from_reply(p.ttl, reply, probe_send_ns=send_ns, reply_recv_ns=recv_ns))
    result = TracerouteResult(
        dst=str(tg),
        src=str(src),
        hops=tuple(hops),
        send_stamp=Stamp.KERNEL,
        recv_stamp=Stamp.KERNEL,
        probe_size=len(probes[0]),
    )
    print(format_traceroute(result))  # shown with pytest -s
    assert result.path() == expected_path(chain, family)
    assert [h.reply_type for h in hops] == ["time-exceeded", "time-exceeded", "dest-unreachable"]
    assert hops[-1].code == (3 if family == 4 else 4)
    assert hops[-1].reply_ttl == 62
    butskoy = native.run_traceroute(str(tg), netns=chain.netns_name("ep"), max_ttl=5)
    assert butskoy.path() == result.path()
    assert butskoy.probe_size == result.probe_size  # same 60/80-byte probes


@pytest.mark.parametrize("family", [4, 6])
def test_raw_echo_and_tcp_probes(chain: Testbed, family: int) -> None:
    src, tg = chain.addr("ep", family), chain.addr("tg", family)
    echo = echo_probe(src, tg, ident=0x5E91, seq=7)
    ttl_one = echo_probe(src, tg, ident=0x5E91, seq=8, ttl=1)
    syn = tcp_syn_probe(src, tg, sport=SPORT, dport=80, seq=123456789)  # closed port
    got = run_probes(chain, [echo, ttl_one, syn])
    assert got[echo.key][0].kind is ReplyKind.ECHO_REPLY
    assert got[echo.key][0].src == tg and got[echo.key][0].ttl == 62
    te = got[ttl_one.key][0]
    assert te.kind is ReplyKind.TIME_EXCEEDED and str(te.src) == expected_path(chain, family)[0][1]
    assert got[syn.key][0].kind is ReplyKind.TCP_RST and got[syn.key][0].src == tg


# -- the kernel accepts our checksums --------------------------------------------------------


def _mac(tb: Testbed, node: str, ifname: str) -> bytes:
    text = tb.run(node, ["cat", f"/sys/class/net/{ifname}/address"]).stdout.strip()
    return bytes.fromhex(text.replace(":", ""))


def _broken(packet: bytes, offset: int) -> bytes:
    out = bytearray(packet)
    out[offset] ^= 0x01
    return bytes(out)


@pytest.mark.parametrize("family", [4, 6])
def test_kernel_accepts_our_checksums_and_drops_broken_ones(chain: Testbed, family: int) -> None:
    """AF_PACKET sends change nothing, so r1 and tg see exactly our bytes. Each good packet
    is answered; the same packet with a checksum bit flipped, sent just before it on the same
    path, is not (so the receivers really check)."""
    src, tg = chain.addr("ep", family), chain.addr("tg", family)
    ip_off = 20 if family == 4 else 40
    with chain.enter("tg"):
        sink = socket.socket(socket.AF_INET if family == 4 else socket.AF_INET6, socket.SOCK_DGRAM)
        sink.bind(("0.0.0.0" if family == 4 else "::", 9999))
    with chain.enter("ep"):
        cap = Capture(chain.iface("ep", "r1"))
        link = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM)
    dest = (chain.iface("ep", "r1"), ETH_P_IP if family == 4 else ETH_P_IPV6, 0, 0)
    router_mac = _mac(chain, "r1", chain.iface("r1", "ep"))

    udp_good = udp_probe(src, tg, sport=1111, dport=9999, payload=b"good", ip_id=1)
    udp_bad = udp_probe(src, tg, sport=1111, dport=9999, payload=b"bad!", ip_id=2)
    cases = [
        (_broken(udp_bad.packet, ip_off + 6), udp_good.packet),  # UDP checksum
        (
            _broken(echo_probe(src, tg, ident=9, seq=1).packet, ip_off + 2),  # ICMP(v6)
            echo_probe(src, tg, ident=9, seq=2).packet,
        ),
        (
            _broken(tcp_syn_probe(src, tg, sport=2001, dport=80, seq=5).packet, ip_off + 16),
            tcp_syn_probe(src, tg, sport=2002, dport=80, seq=5).packet,
        ),
    ]
    if family == 4:
        bad_header = udp_probe(src, tg, sport=1111, dport=9999, payload=b"hdr!", ip_id=3)
        cases.append((_broken(bad_header.packet, 10), udp_good.packet))  # IPv4 header checksum
        assert inet_checksum(udp_good.packet[:20]) == 0
    try:
        for bad, good in cases:
            link.sendto(bad, (*dest, router_mac))
            link.sendto(good, (*dest, router_mac))
        good_keys = {probe_key(cases[1][1]), probe_key(cases[2][1])}
        bad_keys = {probe_key(cases[1][0]), probe_key(cases[2][0])}
        answered: set[ProbeKey] = set()
        # Until both good packets are answered, then a little longer: anything the broken
        # ones drew (sent first, same path) would already be here.
        for wait in (2.0, 0.2):
            for data, _stamp, outgoing in cap.packets(wait):
                if outgoing:
                    continue
                try:
                    answered.add(parse_reply(data, verify_checksums=True).key)
                except ParseError:
                    continue
                if wait > 1 and good_keys <= answered:
                    break
        sink.setblocking(False)
        datagrams = []
        while True:
            try:
                datagrams.append(sink.recv(100))
            except BlockingIOError:
                break
    finally:
        cap.close()
        link.close()
        sink.close()
    assert good_keys <= answered, "a correct echo request or SYN was not answered"
    assert not bad_keys & answered, "a packet with a broken checksum was answered"
    assert b"good" in datagrams and b"bad!" not in datagrams and b"hdr!" not in datagrams
