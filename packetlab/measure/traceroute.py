"""UDP traceroute through a PacketLab endpoint, as in the Marionette paper (§5.3).

The controller opens a raw socket on the endpoint, captures ICMP(v6) there with an ncap
filter, and sends one TTL-limited UDP probe per hop (Butskoy's ports and payload) with
`nsend(..., ntag=True)`. A hop's RTT is the reply's ndata time minus the probe's ntag time:
both are taken by the endpoint (this project's endpoint stamps both in the kernel), so the
controller's distance to the endpoint is not in them.

The probes are built and matched in `traceroute_probes`, sent one at a time in
`traceroute_sequential` (also --mtu) or paced in `traceroute_parallel`.

The raw capture it probes through is `packetlab.measure.capture`'s (shared with ping,
MDA, alias resolution and DNS); its names stay importable from here.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence

from packetlab.controller import EndpointSession, SendFailed, StopSignal, deferred_api
from packetlab.measure.capture import (
    CAPTURE_FILTERS,
    MeasureError,
    RawCapture,
    as_target,
    close_capture,
    open_capture,
    pick_source,
)
from packetlab.measure.packets_transport import DCCP_SERVICE_CODE
from packetlab.measure.probes import TRACEROUTE_BASE_PORT, Probe, TcpFlavor, fragmented
from packetlab.measure.records_fields import Stamp
from packetlab.measure.records_traceroute import TracerouteResult
from packetlab.measure.replies import Reply
from packetlab.measure.traceroute_parallel import HERE, NEAR, PACED_LEAD_S, ParallelRun
from packetlab.measure.traceroute_probes import (
    MAX_PACKET_LEN,
    METHODS,
    PARIS,
    TCP_METHODS,
    Address,
    HopCallback,
    ProbeShape,
    capture_expression,
    make_probe,
    probe_length,
    reply_key,
    run_tcp_options,
    unseen_by_traceroute,
)
from packetlab.measure.traceroute_sequential import Refusals, run_mtu_sequential, run_sequential

__all__ = [
    "CAPTURE_FILTERS",
    "HERE",
    "MAX_PACKET_LEN",
    "METHODS",
    "NEAR",
    "PARIS",
    "TCP_METHODS",
    "HopCallback",
    "MeasureError",
    "ProbeShape",
    "RawCapture",
    "close_capture",
    "open_capture",
    "pick_source",
    "probe_length",
    "reply_key",
    "traceroute",
]


@deferred_api
async def traceroute(
    session: EndpointSession,
    dst: str | Address,
    *,
    first_ttl: int = 1,
    max_ttl: int = 30,
    wait: float = 2.0,
    sport: int | None = None,
    base_port: int = TRACEROUTE_BASE_PORT,
    src: str | Address | None = None,
    pace: float | None = None,
    queries: int = 1,
    squeries: int | None = None,
    method: str = "udp",
    send_stamp: str = Stamp.KERNEL,
    recv_stamp: str = Stamp.KERNEL,
    on_hop: HopCallback | None = None,
    stop: StopSignal | None = None,
    here: float = HERE,
    near: float = NEAR,
    packetlen: int | None = None,
    tos: int = 0,
    dont_fragment: bool = False,
    mtu_discovery: bool = False,
    mtu_hints: Sequence[int] = (),
    fragment_mtu: int | None = None,
    flow_label: int = 0,
    tcp: TcpFlavor | None = None,
    gateways: Sequence[str | Address] = (),
    coverage: int = 8,
    service: int = DCCP_SERVICE_CODE,
) -> TracerouteResult:
    """Trace the path to `dst` from the endpoint: one UDP probe per TTL, each answered
    within `wait` seconds or recorded as `Hop.timeout`. Stops at the destination (or a
    destination unreachable) or after `max_ttl`.

    Probes go one at a time (the paper's method; a controller round trip per hop) unless
    `pace` (seconds) is given: then all TTLs are queued at once with endpoint send times
    `pace` apart, and a silent hop is waited for `wait` s, or only 10 times the RTT of a
    later hop that answered (at least 50 ms), like native traceroute. `queries` probes go
    to each TTL (traceroute -q). With `pace`, `squeries` (traceroute -N) keeps at most that
    many probes in flight, sending the next as one is answered or `wait` s old, and not
    sooner than `pace` s after the one before (traceroute -N with -z; None: all at
    once). `here` and
    `near` are traceroute -w's HERE and NEAR factors (3, 10; 0: no shortening).

    `on_hop(hop)` is called for each probe in TTL order as soon as it is settled (answered
    or given up on). When `stop` is requested no further probe is sent (sequential) or
    waited for beyond `GRACE_S`, and the result holds the hops settled so far.

    `method` is the probe: "udp" (Butskoy's default), "icmp" (echo requests, like
    traceroute -I: identifier `sport`, sequence number = probe index) or "tcp" (SYNs to
    port `base_port`, like traceroute -T: source port `sport`, sequence number = probe
    index; the target answers SYN-ACK or RST) or "tcp-ack" (bare ACKs, like scamper's
    tcp-ack: the index in the sequence and acknowledgment numbers; the target answers
    RST). "udp-paris" and "icmp-paris" are Paris
    traceroute's (scamper's names): every probe of the trace is one flow for a per-flow
    load balancer. UDP to the fixed port `base_port`, the probe index in the UDP checksum;
    ICMP with a constant checksum (= `sport`), the index in the sequence number ("tcp" is
    one flow already). `sport` is the source port (ICMP: the
    identifier) of every probe (default: random, 32768..60999); UDP probe n goes to
    `base_port + n` like Butskoy's traceroute. `src` defaults to the endpoint's
    exported address of dst's family. `send_stamp`/`recv_stamp` only label the result: the
    defaults describe this project's endpoint (kernel TX and RX timestamps).
    "udp-fixed" is traceroute -U: UDP to the one port `base_port` (traceroute's 53), probe
    n from source port `sport + n`.

    `packetlen` is traceroute's: the IP length of each probe (`probe_length`: at least
    the headers; TCP probes keep theirs); at most 65000. `tos` is the TOS byte (IPv6:
    traffic class; traceroute -t), `dont_fragment` sets DF (traceroute -F). With
    `mtu_discovery` (traceroute --mtu) probes go one at a time with DF, starting at
    `packetlen` (default 65000) and shrinking to the MTU a "fragmentation needed" /
    "packet too big" names, or, when the endpoint cannot send one, to the next of
    `mtu_hints` (its interface's MTU and the path MTU its kernel cached, if the caller
    knows them) or of the common MTUs; the first hop answered at a new size has it in
    `Hop.mtu`. Without it, a probe longer than the endpoint can send raises MeasureError;
    `fragment_mtu` (the MTU the endpoint can send, when the caller knows it) has probes
    longer than that without DF sent in fragments, as traceroute's kernel sends them;
    with DF, a probe the endpoint refuses is then a hop `Hop.refused` at that MTU (or a
    smaller one a "too big" named), no address, and the trace ends there, as traceroute
    -F shows its kernel's local error (`*  0.2 ms !F-1500`); with `fragment_mtu` None (an
    endpoint reached with --listen) and no "too big" yet, at an MTU not known (`!F`), for
    a probe over 1280 bytes. Without DF, once a "too big" named an MTU, the probes it
    finds still whole go (again) in fragments of it, as traceroute's kernel sends the
    ones after that answer (session 29).
    `flow_label` is the IPv6 probes' flow label (traceroute -l; ignored over IPv4, as
    traceroute ignores it). `tcp`: the TCP probes' flags, options and window (traceroute
    -T -O, `TcpFlavor`; default Linux's SYN as traceroute -T sends it, or a bare ACK for
    "tcp-ack"). `gateways` (traceroute -g, IPv4, at most 8): the probes go to the first
    with a loose source route through the others to `dst`, as Butskoy's.

    "udplite" is traceroute -UL: "udp-fixed" with UDP-Lite datagrams whose checksum covers
    `coverage` bytes (-O coverage=NUM: less than 8 is 8, past the end the whole datagram,
    as Linux sends them). "dccp" is traceroute -D: DCCP-Requests (service code `service`,
    -O service=NUM) to the one port `base_port` (traceroute's 33434), probe n from source
    port `sport + n`; 40 (IPv6: 60) bytes whatever `packetlen`; the target's Reset (closed
    port) or Response (open) is its answer, as the ICMP errors of the routers on the way.
    """
    target = as_target(dst)
    if not 1 <= first_ttl <= max_ttl <= 255:
        raise ValueError(f"need 1 <= first_ttl <= max_ttl <= 255, got {first_ttl}, {max_ttl}")
    if not 0 <= wait <= 60:
        raise ValueError(f"wait must be in [0, 60] seconds, got {wait}")
    if pace is not None and not 0 <= pace <= 10:
        raise ValueError(f"pace must be 0..10 seconds, got {pace}")
    if sport is None:
        sport = random.randrange(32768, 61000)
    elif not 0 < sport <= 0xFFFF:
        raise ValueError(f"sport must be 1..65535, got {sport}")
    if not 1 <= base_port <= 0xFFFF:
        raise ValueError(f"base_port must be 1..65535, got {base_port}")
    if not 1 <= queries <= 10:
        raise ValueError(f"queries must be 1..10 probes per hop, got {queries}")
    if squeries is not None and not 1 <= squeries <= 1000:
        raise ValueError(f"squeries must be 1..1000 probes in flight, got {squeries}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if packetlen is not None and not 0 <= packetlen <= MAX_PACKET_LEN:
        raise ValueError(f"too big packetlen {packetlen} specified (at most {MAX_PACKET_LEN})")
    if not 0 <= tos <= 255:
        raise ValueError(f"tos must be 0..255, got {tos}")
    if not 0 <= flow_label <= 0xFFFFF:
        raise ValueError(f"flow_label must be 0..1048575 (20 bits), got {flow_label}")
    if fragment_mtu is not None and not 68 <= fragment_mtu <= 0xFFFF:
        raise ValueError(f"fragment_mtu must be 68..65535, got {fragment_mtu}")
    if any(not 68 <= m <= 0xFFFF for m in mtu_hints):
        raise ValueError(f"mtu_hints must be 68..65535, got {tuple(mtu_hints)}")
    if not 0 <= coverage <= 0xFFFF:
        raise ValueError(f"coverage must be 0..65535, got {coverage}")
    if not 0 <= service <= 0xFFFFFFFF:
        raise ValueError(f"service must be 0..4294967295, got {service}")
    if tcp is not None and method not in TCP_METHODS:
        raise ValueError(f"tcp flags and options are for tcp probes, not {method}")
    route = None
    if gateways:
        if target.version != 4:
            raise ValueError("gateways (loose source routing) are built over IPv4 only")
        from packetlab.measure.packets_ip_options import loose_source_route  # -g only

        route = loose_source_route(gateways, target)
    source = as_target(src) if src is not None else None
    n = (max_ttl - first_ttl + 1) * queries
    if method == "udp-paris" and n > 0xFFFE:
        raise ValueError(f"{n} Paris probes: at most 65534 (the index is the UDP checksum)")
    if method == "udp" and base_port + n - 1 > 0xFFFF:
        raise ValueError(f"base_port {base_port} + {n} probes does not fit in 1..65535")
    if mtu_discovery:
        pace = None  # one probe at a time (traceroute --mtu implies -N 1)
        if packetlen is None:
            packetlen = MAX_PACKET_LEN
    extra = len(route[1]) if route is not None else 0
    length = probe_length(method, target.version, packetlen, tcp, extra)
    shape = ProbeShape(
        None if packetlen is None else length, tos, dont_fragment or mtu_discovery, flow_label,
        tcp, route, coverage, service, run_tcp_options(method, tcp),
    )  # fmt: skip

    def adopt(reply: Reply) -> Reply | None:
        if unseen_by_traceroute(reply, method, shape.dont_fragment):
            return None
        key = reply_key(method, reply, shape, target)
        return reply if key == reply.key else dataclasses.replace(reply, key=key)

    if pace is None:
        budget = n * (wait + 1.0)
    elif squeries:  # each place in the window held at most `wait` s per probe
        budget = -(-n // squeries) * wait + wait + n * pace
    else:
        budget = PACED_LEAD_S + n * pace + wait
    expression = capture_expression(method, target, sport, base_port)
    cap = await open_capture(session, target, src=source, duration_s=budget, expression=expression)
    try:
        ttls = [ttl for ttl in range(first_ttl, max_ttl + 1) for _ in range(queries)]
        least = probe_length(method, target.version, 0, tcp, extra)

        def build(i: int, size: int) -> Probe:
            at = dataclasses.replace(shape, length=max(size, least))
            probe = make_probe(method, cap.src, target, ttls[i], i, sport, base_port, at)
            if fragment_mtu is not None and not shape.dont_fragment:
                probe = fragmented(probe, fragment_mtu)
            return probe

        def rebuild(i: int, mtu: int) -> Probe:  # probe i in fragments of `mtu`
            at = dataclasses.replace(shape, length=max(length, least))
            whole = make_probe(method, cap.src, target, ttls[i], i, sport, base_port, at)
            return fragmented(whole, mtu)

        probes = [] if mtu_discovery else [build(i, length) for i in range(len(ttls))]
        if mtu_discovery:
            hops = await run_mtu_sequential(
                session, cap, build, adopt, ttls, length, least, mtu_hints, wait, on_hop, stop
            )
        elif pace is None:
            df = shape.dont_fragment
            how = Refusals(df, fragment_mtu, None if df else rebuild)
            hops = await run_sequential(session, cap, probes, adopt, wait, on_hop, stop, how)
        else:
            run = ParallelRun(session, cap, probes, adopt, on_hop)
            run.here, run.near = here, near
            if not shape.dont_fragment:  # (fragments of the MTU a "too big" names, too)
                run.rebuild, run.frag_mtu = rebuild, fragment_mtu
            else:  # (-F: one the endpoint refuses is `* !F-MTU`)
                run.df, run.df_mtu = True, fragment_mtu
            hops = await run.run(wait, pace, stop, squeries)
    except SendFailed:
        if length <= 1280:
            raise
        raise MeasureError(
            f"the endpoint could not send a {length} byte probe (over its interface's MTU "
            "or a path MTU its kernel learnt?): give a smaller packetlen, or --mtu"
        ) from None
    finally:
        await close_capture(cap)
    return TracerouteResult(
        dst=str(target),
        hops=tuple(hops),
        src=str(cap.src),
        method=method,
        max_ttl=max_ttl,
        probe_size=length,
        start_ns=next((h.probe_send_ns for h in hops if h.probe_send_ns is not None), None),
        send_stamp=send_stamp,
        recv_stamp=recv_stamp,
    )
