"""Each ICMP error as Butskoy traceroute 2.1.2 shows it: its `!` note, or `*` for the
errors Linux drops before traceroute's socket sees them. The expected notes were read
from traceroute itself, a router answering every probe with one type and code
(`tests/integration/icmp_responder.py`; the integration test
`test_traceroute_icmp_notes_like_native.py` compares them live).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest
from test_traceroute_fakes import R14, R24, R26, TG4, TG6, RawRig, icmp_packet

from packetlab.measure.records_traceroute import Hop, TracerouteResult, hop_annotation
from packetlab.measure.replies import ReplyKind
from packetlab.measure.traceroute import traceroute


@pytest.mark.parametrize(
    ("addr", "kind", "code", "next_mtu", "note"),
    [
        ("10.0.0.1", ReplyKind.DEST_UNREACHABLE, 8, None, "!N"),  # source host isolated
        ("10.0.0.1", ReplyKind.DEST_UNREACHABLE, 5, None, "!S"),
        ("10.0.0.1", ReplyKind.DEST_UNREACHABLE, 14, None, "!V"),
        ("10.0.0.1", ReplyKind.DEST_UNREACHABLE, 15, None, "!C"),
        ("10.0.0.1", ReplyKind.DEST_UNREACHABLE, 4, 0, "!F-0"),  # a router's MTU of 0
        ("10.0.0.1", ReplyKind.DEST_UNREACHABLE, 4, 1400, "!F-1400"),
        ("10.0.0.1", ReplyKind.DEST_UNREACHABLE, 4, None, "!F"),  # (not known)
        ("fd00::1", ReplyKind.DEST_UNREACHABLE, 2, None, "!H"),  # beyond scope
        ("fd00::1", ReplyKind.DEST_UNREACHABLE, 5, None, "!<5>"),  # source policy
        ("fd00::1", ReplyKind.DEST_UNREACHABLE, 6, None, "!<6>"),  # reject route
        ("fd00::1", ReplyKind.DEST_UNREACHABLE, 7, None, "!<7>"),
        ("fd00::1", ReplyKind.PACKET_TOO_BIG, 0, 0, "!F-0"),
    ],
)
def test_notes_as_traceroute_prints_them(
    addr: str, kind: ReplyKind, code: int, next_mtu: int | None, note: str
) -> None:
    hop = Hop(1, addr, 1.0, kind, code, next_mtu=next_mtu)
    assert hop_annotation(hop) == note


Answer = Callable[[bytes], list[tuple[float, bytes]]]


def _r2_says(rig: RawRig, icmp_type: int, code: int, rest: bytes) -> None:
    """The router at TTL 2 answers every probe with this ICMP error."""
    original: Answer = rig.endpoint.answers

    def answers(probe: bytes) -> list[tuple[float, bytes]]:
        v6 = probe[0] >> 4 == 6
        if (probe[7] if v6 else probe[8]) != 2:
            return original(probe)
        src = "fd00:77:1::1" if v6 else "10.77.1.1"
        return [(0.002, icmp_packet(R26 if v6 else R24, src, icmp_type, code, rest, probe))]

    rig.endpoint.answers = answers  # type: ignore[method-assign]


def _trace(
    icmp_type: int,
    code: int,
    rest: bytes = bytes(4),
    *,
    v6: bool = False,
    method: str = "udp",
    dont_fragment: bool = False,
) -> TracerouteResult:
    rig = RawRig([R14, R24, TG4] if not v6 else ["fd00:77:1::2", R26, TG6])
    _r2_says(rig, icmp_type, code, rest)
    target = TG6 if v6 else TG4
    return rig.run(
        traceroute(
            rig.session, target, pace=0.0, max_ttl=4, wait=1.0, method=method,
            dont_fragment=dont_fragment,
        )
    )  # fmt: skip


def _hop2(result: TracerouteResult) -> tuple[str | None, str]:
    (hop,) = [h for h in result.hops if h.ttl == 2]
    return hop.addr, hop_annotation(hop)


FRAG_1400 = struct.pack("!HH", 0, 1400)


@pytest.mark.parametrize(
    ("method", "df"),
    [("udp", False), ("udp-fixed", False), ("udplite", False)],
)
def test_fragmentation_needed_to_a_udp_probe_without_df_is_not_seen(method: str, df: bool) -> None:
    """traceroute's UDP socket (IP_PMTUDISC_DONT) takes no error for it: `2  *`, and the
    trace goes on to the target."""
    result = _trace(3, 4, FRAG_1400, method=method, dont_fragment=df)
    assert _hop2(result) == (None, "")
    assert result.reached and result.hops[-1].addr == TG4


@pytest.mark.parametrize(
    ("method", "df", "note"),
    [("udp", True, "!F-1400"), ("icmp", False, "!F-1400"), ("tcp", False, "!F-1400")],
)
def test_fragmentation_needed_with_df_or_a_raw_socket_is_shown(
    method: str, df: bool, note: str
) -> None:
    result = _trace(3, 4, FRAG_1400, method=method, dont_fragment=df)
    assert _hop2(result) == (R24, note)
    assert not result.reached


def test_a_router_mtu_of_zero_is_printed() -> None:
    assert _hop2(_trace(3, 4, bytes(4), method="icmp")) == (R24, "!F-0")
    assert _hop2(_trace(2, 0, bytes(4), method="icmp", v6=True)) == (R26, "!F-0")


@pytest.mark.parametrize("method", ["udp", "icmp", "tcp"])
@pytest.mark.parametrize(("icmp_type", "code"), [(3, 16), (3, 255), (11, 1)])
def test_errors_linux_drops_are_a_star(method: str, icmp_type: int, code: int) -> None:
    """An IPv4 unreachable code past 15, a fragment reassembly time exceeded: Linux's
    icmp_unreach discards them for every socket."""
    result = _trace(icmp_type, code, method=method)
    assert _hop2(result) == (None, "")


def test_ipv6_reassembly_time_exceeded_and_codes_past_6_are_shown() -> None:
    assert _hop2(_trace(3, 1, v6=True)) == (R26, "!<3-1>")
    assert _hop2(_trace(1, 8, v6=True)) == (R26, "!<8>")


@pytest.mark.parametrize(("icmp_type", "code"), [(100, 0), (127, 3), (0, 0), (5, 1)])
@pytest.mark.parametrize("method", ["udp", "icmp", "tcp"])
def test_an_unassigned_icmpv6_error_is_its_type_and_code(
    method: str, icmp_type: int, code: int
) -> None:
    """An ICMPv6 error of a type no one assigned (below 128): Linux's icmpv6_rcv hands it to
    the socket it quotes as an error, and traceroute 2.1.2 prints `!<100-0>` and stops
    there (session 25, icmp25b: ours printed `2  *` and went on to the target)."""
    result = _trace(icmp_type, code, v6=True, method=method)
    assert _hop2(result) == (R26, f"!<{icmp_type}-{code}>")
    assert not result.reached and max(h.ttl for h in result.hops) == 2
    (hop,) = [h for h in result.hops if h.ttl == 2]
    assert hop.to_dict()["icmp_type"] == icmp_type and hop.reply_type == "other-error"
    assert Hop.from_dict(hop.to_dict()) == hop


def test_an_unassigned_ipv4_type_is_a_star() -> None:
    """IPv4: Linux's icmp_rcv drops a type it does not know before any socket (as
    traceroute shows, `2  *`)."""
    assert _hop2(_trace(100, 0)) == (None, "")


@pytest.mark.parametrize("method", ["udp", "icmp", "tcp"])
@pytest.mark.parametrize("v6", [False, True])
def test_a_time_exceeded_from_the_target_itself_ends_nothing(method: str, v6: bool) -> None:
    """Session 25 (icmp25b), beside traceroute 2.1.2 (a responder sending "time exceeded"
    from the target's address for every probe past hop 1): traceroute prints the target's
    address at hops 2, 3 and 4 and stops at -m; ours stopped at hop 2."""
    rig = RawRig([R14, R24, TG4] if not v6 else ["fd00:77:1::2", R26, TG6])
    target, original = (TG6 if v6 else TG4), rig.endpoint.answers

    def answers(probe: bytes) -> list[tuple[float, bytes]]:
        if (probe[7] if v6 else probe[8]) < 2:
            return original(probe)
        ep = "fd00:77:1::1" if v6 else "10.77.1.1"
        return [(0.002, icmp_packet(target, ep, 3 if v6 else 11, 0, bytes(4), probe))]

    rig.endpoint.answers = answers  # type: ignore[method-assign]
    result = rig.run(traceroute(rig.session, target, pace=0.0, max_ttl=4, wait=1.0, method=method))
    assert [(h.ttl, h.addr) for h in result.hops if h.ttl > 1] == [(t, target) for t in (2, 3, 4)]


@pytest.mark.parametrize(("v6", "said"), [(False, 300), (True, 1000)])
@pytest.mark.parametrize("queries", [1, 3])
def test_mtu_discovery_takes_the_named_mtu_once_then_ends_at_its_note(
    v6: bool, said: int, queries: int
) -> None:
    """traceroute 2.1.2 --mtu, a router answering every probe with "fragmentation needed"
    naming 300 / "packet too big" naming 1000 (below Linux's 552 / 1280): on the wire
    1500, then one probe of the size named, then nothing smaller; the line `!F-300` /
    `!F-1000` alone (its error note overwrites the `F=300` --mtu left on the probe), each
    later probe of the hop at that size and `!F-300` too. Session 25 had it that Linux
    ignores the IPv6 1000 (ours sent no 1000 byte probe) and ours went down the IPv4
    plateaus to `F=68 !F-300` (session 26, icmp26; tcpdump beside traceroute)."""
    from packetlab.measure.records_traceroute import traceroute_line

    rig = RawRig(["fd00:77:1::2", R26, TG6] if v6 else [R14, R24, TG4])
    _r2_says(rig, 2, 0, struct.pack("!I", said)) if v6 else _r2_says(
        rig, 3, 4, struct.pack("!HH", 0, said)
    )
    result = rig.run(
        traceroute(rig.session, TG6 if v6 else TG4, pace=0.0, max_ttl=4, wait=1.0,
                   queries=queries, mtu_discovery=True, mtu_hints=(1500,), packetlen=1500)
    )  # fmt: skip
    hop2 = [h for h in result.hops if h.ttl == 2]
    assert [(h.addr, hop_annotation(h)) for h in hop2] == [(R26 if v6 else R24, f"!F-{said}")] * (
        queries
    )
    assert [len(m.data) for m in rig.endpoint.raw_sends] == [1500] * (queries + 1) + [said] * (
        queries
    )
    line = traceroute_line(2, hop2)
    assert "F=" not in line and line.count(f" ms !F-{said}") == queries, line
    assert max(h.ttl for h in result.hops) == 2
