"""A traceroute's probes: the methods (Butskoy's and scamper's), the probe of each index
and TTL, its length and shape (packetlen, -t, -F, -l, -T -O, -g), the key a reply is
matched by, when a reply ends the trace, and the smaller sizes --mtu tries."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from packetlab.measure.packets import TCP_ACK
from packetlab.measure.packets_transport import DCCP_SERVICE_CODE
from packetlab.measure.probes import (
    BARE_ACK,
    LINUX_SYN,
    TRACEROUTE_PAYLOAD,
    Probe,
    ProbeKey,
    TcpFlavor,
    dccp_probe,
    echo_probe,
    icmp_capture,
    paris_echo_probe,
    paris_udp_probe,
    tcp_probe,
    traceroute_payload,
    traceroute_probe,
    udp_probe,
)
from packetlab.measure.records_traceroute import Hop
from packetlab.measure.replies import Reply, ReplyKind

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def ends_trace(reply: Reply) -> bool:
    # The destination answered (port unreachable), or a router says it cannot get there
    # (!H, !N, !X..., or ICMPv6 "packet too big": !F), or any other error but a time
    # exceeded in transit (traceroute's final `!<TYPE-CODE>`, e.g. a parameter
    # problem): further TTLs would only repeat that. A time exceeded in transit ends
    # nothing, even from the target's own address (a host forwarding packets for its
    # address: traceroute 2.1.2 goes on, hop after hop, as it reads only the error).
    if reply.kind is ReplyKind.TIME_EXCEEDED and not reply.icmp_code:
        return False
    return (
        reply.from_destination
        or reply.kind
        in (
            ReplyKind.DEST_UNREACHABLE,
            ReplyKind.PACKET_TOO_BIG,
            ReplyKind.PARAM_PROBLEM,
            ReplyKind.OTHER_ERROR,
        )
        or (reply.kind is ReplyKind.TIME_EXCEEDED and bool(reply.icmp_code))
    )


HopCallback = Callable[[Hop], object]
# scamper's method names. TCP probes are one flow already (fixed ports; the index is in
# the sequence number), so TCP is Paris too, like scamper's and tcptraceroute's.
# "udp-fixed" is Butskoy's -U: UDP to one port (53), the probe index in the source port;
# "udplite" its -UL (the same with UDP-Lite) and "dccp" its -D (DCCP-Requests to one port,
# 33434, the index in the source port too).
METHODS = (
    "udp", "icmp", "tcp", "tcp-ack", "udp-paris", "icmp-paris", "udp-fixed", "udplite", "dccp",
)  # fmt: skip
PARIS = {"udp": "udp-paris", "icmp": "icmp-paris", "tcp": "tcp", "tcp-ack": "tcp-ack"}
TCP_METHODS = ("tcp", "tcp-ack")
MAX_PACKET_LEN = 65000  # Butskoy's largest packetlen
# methods whose probes are their headers whatever packetlen says (as traceroute's)
FIXED_LENGTH = ("tcp", "tcp-ack", "dccp")
DCCP_REQUEST_LEN = 20  # traceroute -D: the generic header, 48-bit sequence, service code


def probe_headers(
    method: str, version: int, tcp: TcpFlavor | None = None, ip_options: int = 0
) -> int:
    """Bytes of IP and transport header of a probe by `method` (TCP: `tcp`'s header, by
    default traceroute's SYN with 20 bytes of options), with `ip_options` bytes of IPv4
    options (-g): the least a packet can be (traceroute's packetlen is raised to it)."""
    if method in TCP_METHODS:
        transport = (tcp or (LINUX_SYN if method == "tcp" else BARE_ACK)).length
    elif method == "dccp":
        transport = DCCP_REQUEST_LEN
    else:
        transport = 8
    return (20 + ip_options if version == 4 else 40) + transport


def probe_length(
    method: str,
    version: int,
    packetlen: int | None,
    tcp: TcpFlavor | None = None,
    ip_options: int = 0,
) -> int:
    """The IP length of the probes for traceroute's `packetlen` (None: Butskoy's default,
    32 bytes of payload): raised to the headers (and 2 payload bytes for the Paris
    methods, which steer their checksums with them); TCP and DCCP probes are always their
    headers, as traceroute -T's and -D's."""
    headers = probe_headers(method, version, tcp, ip_options)
    if method in FIXED_LENGTH:
        return headers
    if packetlen is None:
        return headers + len(TRACEROUTE_PAYLOAD)
    least = headers + (2 if method in ("udp-paris", "icmp-paris") else 0)
    return max(least, packetlen)


@dataclass(frozen=True)
class ProbeShape:
    """What traceroute's packetlen, -t and -F set: the IP length (None: the method's
    default), the TOS byte (IPv6: traffic class), DF (IPv4); and -l's IPv6 flow label."""

    length: int | None = None
    tos: int = 0
    dont_fragment: bool = False
    flow_label: int = 0
    tcp: TcpFlavor | None = None  # -T's flags and options (-O); None: the method's own
    # -g over IPv4: the first gateway (the packets' destination) and the IP options
    route: tuple[Address, bytes] | None = None
    coverage: int = 8  # -UL's checksum coverage (-O coverage=NUM; traceroute's default)
    service: int = DCCP_SERVICE_CODE  # -D's service code (-O service=NUM)
    # the TCP options every probe of a run carries (None: each probe its own): mod-tcp.c's
    # tcp_init draws the timestamp values once, so traceroute -T's probes share a TSval
    tcp_options: bytes | None = None


def run_tcp_options(method: str, tcp: TcpFlavor | None) -> bytes | None:
    """The TCP options of a run's probes, drawn once (`ProbeShape.tcp_options`); None
    for the other methods."""
    if method not in TCP_METHODS:
        return None
    return (tcp or (LINUX_SYN if method == "tcp" else BARE_ACK)).options()


def make_probe(
    method: str,
    src: Address,
    dst: Address,
    ttl: int,
    i: int,
    sport: int,
    port: int,
    shape: ProbeShape = ProbeShape(),
) -> Probe:
    """Probe i (TTL `ttl`) of a traceroute by `method`; each identifies itself by i. With
    `shape.route` (-g) it goes to the first gateway with a loose source route."""
    probe = _plain_probe(method, src, dst, ttl, i, sport, port, shape)
    if shape.route is None or dst.version != 4:
        return probe
    from packetlab.measure.packets_ip_options import with_ip_options  # -g only

    gateway, options = shape.route
    return dataclasses.replace(probe, packet=with_ip_options(probe.packet, options, gateway))


def _plain_probe(
    method: str,
    src: Address,
    dst: Address,
    ttl: int,
    i: int,
    sport: int,
    port: int,
    shape: ProbeShape,
) -> Probe:
    payload = TRACEROUTE_PAYLOAD
    extra = len(shape.route[1]) if shape.route is not None else 0
    if shape.length is not None and method not in FIXED_LENGTH:
        payload = traceroute_payload(
            shape.length - probe_headers(method, dst.version, ip_options=extra)
        )
    kw: dict[str, Any] = {"tos": shape.tos, "dont_fragment": shape.dont_fragment}
    if dst.version == 6:
        kw["flow_label"] = shape.flow_label
    if method == "icmp":
        return echo_probe(src, dst, ident=sport, seq=i + 1, ttl=ttl, payload=payload, **kw)
    if method == "icmp-paris":  # the checksum held at the identifier's value: any constant
        return paris_echo_probe(
            src, dst, ttl, ident=sport, seq=i + 1, checksum=sport, payload=payload, **kw
        )
    if method in TCP_METHODS:
        flavor = shape.tcp or (LINUX_SYN if method == "tcp" else BARE_ACK)
        return tcp_probe(
            src, dst, sport=sport, dport=port, seq=i + 1, ttl=ttl, flavor=flavor,
            options=shape.tcp_options, **kw,
        )  # fmt: skip
    if method == "udp-paris":
        return paris_udp_probe(
            src, dst, ttl, sport=sport, dport=port, index=i, payload=payload, **kw
        )
    if method in ("udp-fixed", "udplite"):  # one destination port; each its own source port
        lite = shape.coverage if method == "udplite" else None
        return udp_probe(
            src, dst, sport=(sport - 1 + i) % 0xFFFF + 1, dport=port, ttl=ttl, payload=payload,
            coverage=lite, **kw,
        )  # fmt: skip
    if method == "dccp":  # as -U: each probe its own source port
        return dccp_probe(
            src, dst, sport=(sport - 1 + i) % 0xFFFF + 1, dport=port, ttl=ttl,
            service=shape.service, **kw,
        )  # fmt: skip
    return traceroute_probe(
        src, dst, ttl, sport=sport, index=i, base_port=port, payload=payload, **kw
    )


def capture_expression(method: str, target: Address, sport: int, base_port: int) -> str:
    """The capture's tcpdump filter: ICMP(v6) but echo requests and other probes' echo
    replies, and the target's TCP (DCCP) answers. `icmp` / `tcp and src host TARGET`
    took in every such packet on the host, on loopback the other pings', the flows' and
    the endpoint's own session's: beside a `ping -f` or a TCP flow the capture's queue
    overflowed and answers were lost (every hop `*` in 10 of 10 runs to 127.0.0.1, where
    traceroute saw all; the CI flake of session 26 with `-M tcp`). A long probe's
    error is never fragmented, but fragments pass (libpcap's `icmp[N]` holds in a first
    fragment only; `icmp6[N]` without extension headers only)."""
    echo = method in ("icmp", "icmp-paris")  # (their identifier is `sport`)
    icmp = icmp_capture(target, sport if echo else None)
    if method in TCP_METHODS:  # the target's SYN-ACK or RST, to the probes' ports
        tcp = f"tcp and src host {target} and src port {base_port} and dst port {sport}"
        return f"({icmp}) or ({tcp})"
    if method == "dccp":  # the target's Reset or Response
        ip = "ip" if target.version == 4 else "ip6"
        return f"({icmp}) or ({ip} proto 33 and src host {target})"
    return icmp


def reply_key(
    method: str, reply: Reply, shape: ProbeShape | None = None, target: Address | None = None
) -> ProbeKey:
    """The key of the probe `reply` answers: a Paris UDP probe is told by its checksum; a
    TCP probe by the ack of the target's SYN-ACK/RST-ACK as its flags count it
    (`TcpFlavor.reply_shift`); with -g (`shape.route`) whatever address a quote names
    (a gateway's, before the route reached it) stands for `target`."""
    key = reply.key
    if method == "udp-paris" and reply.quoted_sum is not None:
        key = dataclasses.replace(key, seq=reply.quoted_sum)
    if shape is None:
        return key
    flags = reply.tcp_flags
    if shape.tcp is not None and flags is not None and flags & TCP_ACK:
        key = dataclasses.replace(key, seq=(key.seq + shape.tcp.reply_shift) & 0xFFFFFFFF)
    if shape.route is not None and target is not None:
        key = dataclasses.replace(key, dst=target)
    return key


# a reply with the key of the probe it answers (`reply_key`), which it is then matched by;
# None for a reply traceroute never sees (`unseen_by_traceroute`)
Adopt = Callable[[Reply], Reply | None]

# traceroute's methods whose probes go out of a datagram socket of the kind (Butskoy's
# udp, -U and -UL modules), whose ICMP errors pass the kernel's udp_err on the way in
DATAGRAM_METHODS = ("udp", "udp-fixed", "udplite")
NR_ICMP_UNREACH = 15  # Linux's last IPv4 destination unreachable code


def unseen_by_traceroute(reply: Reply, method: str, dont_fragment: bool) -> bool:
    """True for an ICMP error that Linux drops before traceroute's socket could read it,
    so that traceroute prints `*` for the probe (checked against traceroute 2.1.2,
    tests/integration/test_traceroute_icmp_notes_like_native.py): over IPv4, a destination
    unreachable code past 15 and a "fragment reassembly time exceeded" (icmp_unreach
    discards them for every socket), and a "fragmentation needed" answering a UDP probe
    sent without DF (udp_err: the socket's IP_PMTUDISC_DONT takes no error for it)."""
    if reply.src.version != 4:
        return False
    if reply.kind is ReplyKind.DEST_UNREACHABLE and (reply.icmp_code or 0) > NR_ICMP_UNREACH:
        return True
    if reply.kind is ReplyKind.TIME_EXCEEDED and reply.icmp_code == 1:
        return True
    return too_big(reply) and method in DATAGRAM_METHODS and not dont_fragment


def end_of_ttl(probes: list[Probe], i: int) -> int:
    """Index just past the probes with the TTL of probe i (they are in TTL order)."""
    j = i
    while j < len(probes) and probes[j].ttl == probes[i].ttl:
        j += 1
    return j


#: The least MTU a link may have (RFC 791, RFC 8200): a "too big" naming less is not
#: believed for fragmenting (a hostile router's 40 would leave no room for a fragment).
MIN_MTU = {4: 68, 6: 1280}
MTU_PLATEAUS = (32000, 17914, 9000, 8166, 4352, 2002, 1500, 1492, 1480, 1280, 1006, 576, 296, 68)


def too_big(reply: Reply) -> bool:
    """IPv4 "fragmentation needed and DF set" or ICMPv6 "packet too big"."""
    return reply.kind is ReplyKind.PACKET_TOO_BIG or (
        reply.kind is ReplyKind.DEST_UNREACHABLE and reply.src.version == 4 and reply.icmp_code == 4
    )


def smaller_mtu(
    size: int, least: int, said: int | None = None, hints: Sequence[int] = ()
) -> int | None:
    """The size to try after `size` was too big: `said` (the MTU a router named) if it is
    smaller, else the next of `hints` (MTUs the caller knows of, e.g. the endpoint's
    interface's and the path's it has cached) and then of the plateaus below them; None
    below `least`."""
    if said is not None and least <= said < size:
        return said
    floor = min(hints, default=MAX_PACKET_LEN + 1)
    sizes = sorted(set(hints), reverse=True) + [m for m in MTU_PLATEAUS if m < floor]
    return next((m for m in sizes if least <= m < size), None)
