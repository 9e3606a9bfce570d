"""scamper's tracelb record for an MDA run (`pktlab run traceroute --mda --warts`): a probe
set, probe and reply byte for byte as scamper wrote them, and the nodes and links of our
result read back (scamper's tools reading them: tests/integration/test_warts_scamper.py)."""

from __future__ import annotations

import ipaddress

import pytest

from packetlab.measure.mda import MdaHop, MdaProbe, MdaResult
from packetlab.measure.probes import ProbeKey
from packetlab.measure.replies import Reply, ReplyKind
from packetlab.measure.warts_format import (
    OBJ_CYCLE_START,
    OBJ_CYCLE_STOP,
    OBJ_LIST,
    OBJ_TRACELB,
    WartsError,
)
from packetlab.measure.warts_read import WartsObject, read_warts
from packetlab.measure.warts_tracelb import tracelb_object, tracelb_warts

SRC, R1, RA, RB, R2, TG = (f"10.77.{n}.{h}" for n, h in ((1, 1), (1, 2), (2, 2), (3, 2), (4, 2),
                                                         (6, 2)))  # fmt: skip
# scamper 20211212, `tracelb -P udp-sport -c 99` on the ECMP diamond: the last link's
# (r2 -> tg) probe set: one probe (flowid 0x85ff, TTL 4) and its port unreachable
SCAMPERS_LAST_SET = bytes.fromhex(
    "01000200011f000e6b12f6fa000e7d0985ff040000019f0b00156b12f6fa000e7d6773093d01030301000000000001"
)
T0 = 0x6B12F6FA * 10**9


def _reply(src: str, ttl: int, ip_id: int, unreach: bool = False) -> Reply:
    kind = ReplyKind.DEST_UNREACHABLE if unreach else ReplyKind.TIME_EXCEEDED
    key = ProbeKey(17, ipaddress.ip_address(TG), 0x85FF, 33435)
    icmp = (3, 3) if unreach else (11, 0)
    return Reply(kind, ipaddress.ip_address(src), ipaddress.ip_address(SRC), key, ttl, 56,
                 *icmp, ip_id=ip_id, quoted_ttl=1)  # fmt: skip


def _probe(flow: int, ttl: int, src: str | None, tx_us: int, ip_id: int = 1) -> MdaProbe:
    reply = None if src is None else _reply(src, 65 - ttl, ip_id, src == TG)
    rx = None if src is None else T0 + (tx_us + 94) * 1000
    return MdaProbe(flow, ttl, 0x85FF + flow, T0 + tx_us * 1000, reply, rx)


def _diamond() -> MdaResult:
    """Flows 0 and 2 through ra, 1 through rb; flow 3 lost at TTL 2."""
    probes = (
        _probe(0, 1, R1, 10), _probe(1, 1, R1, 11), _probe(2, 1, R1, 12), _probe(3, 1, R1, 13),
        _probe(0, 2, RA, 20, 7), _probe(1, 2, RB, 21, 8), _probe(2, 2, RA, 22, 9),
        _probe(3, 2, None, 23),
        _probe(0, 3, R2, 30), _probe(1, 3, R2, 31), _probe(3, 3, R2, 33),
        _probe(0, 4, TG, 40),
    )  # fmt: skip
    hops = (
        MdaHop(1, (R1,), 4),
        MdaHop(2, (RA, RB), 4, ((R1, RA), (R1, RB)), 1),
        MdaHop(3, (R2,), 3, ((None, R2), (RA, R2), (RB, R2))),
        MdaHop(4, (TG,), 1, ((R2, TG),)),
    )
    return MdaResult(TG, SRC, "udp-paris", 0.95, hops, len(probes), True, probes,
                     sport=0x85FF, dport=33435, probe_size=44, start_ns=T0 + 10_000)  # fmt: skip


def test_a_probe_set_is_scampers_byte_for_byte() -> None:
    # the last link's probe: the same flowid, TTL, times, reply TTL, IP-ID and ICMP
    last = MdaProbe(0, 4, 0x85FF, T0 + 0x0E7D09 * 1000, _reply(TG, 0x3D, 0x7309, True),
                    T0 + 0x0E7D67 * 1000)  # fmt: skip
    result = MdaResult(TG, SRC, "udp-paris", 0.99, (MdaHop(3, (R2,), 1), MdaHop(4, (TG,), 1, (
        (R2, TG),))), 2, True, (_probe(0, 3, R2, 5), last))  # fmt: skip
    assert tracelb_object(result).endswith(SCAMPERS_LAST_SET)


def _links(lb: WartsObject) -> list[tuple[str, str, int]]:
    return [(lb.probedefs[x[1]][5], lb.probedefs[x[2]][5], x[3]) for x in lb.probes]


def _sets(lb: WartsObject) -> list[list[list[tuple[int, int, int]]]]:
    """Per link, per probe set: (flow, TTL, replies) of its probes."""
    return [[[(p[2] - 0x85FF, p[3], p[5]) for p in ps["probes"]] for ps in x["sets"]]
            for x in lb.probes]  # fmt: skip


def test_nodes_links_and_probe_sets_are_the_results() -> None:
    # the diamond as scamper writes it: r1's flows go on to ra and rb (and one is silent),
    # so r1 -> r2 is one link of hopc 2 (a clump): ra and rb only in its first probe set
    objs = read_warts(tracelb_warts(_diamond(), hostname="vm", wait_s=2))
    assert [o.kind for o in objs] == [OBJ_LIST, OBJ_CYCLE_START, OBJ_TRACELB, OBJ_CYCLE_STOP]
    lb = objs[2]
    f = lb.fields
    assert (f[6], f[7], f[8], f[9], f[11], f[14]) == (0x85FF, 33435, 44, 3, 2, 95)
    assert (f[16], f[17], f[18], f[21], f[22]) == (3, 2, 12, SRC, TG)
    assert [n[5] for n in lb.probedefs] == [R1, R2, TG]
    assert [n[3] for n in lb.probedefs] == [1, 1, 0]  # links from each node
    assert [(n[2], n[4]) for n in lb.probedefs] == [(1, 1)] * 3  # q-ttl 1, as scamper's
    assert _links(lb) == [(R1, R2, 2), (R2, TG, 1)]
    assert _sets(lb) == [
        [[(0, 2, 1), (1, 2, 1), (2, 2, 1), (3, 2, 0)], [(0, 3, 1), (1, 3, 1), (3, 3, 1)]],
        [[(0, 4, 1)]],
    ]
    silent = lb.probes[0]["sets"][0]["probes"][3]
    assert silent["replies"] == []
    (reply,) = lb.probes[0]["sets"][0]["probes"][0]["replies"]
    assert (reply[2], reply[3], reply[4], reply[5], reply[8], reply[11]) == (
        7, 63, 0x01, 0x0B00, 1, RA,
    )  # fmt: skip
    assert objs[3].fixed["stop"] == (T0 + 134_000) // 10**9


def test_the_runs_limits_and_every_attempt_of_a_probe() -> None:
    # flow 1's TTL 2 probe went twice (--attempts 2): its lost first try stays in the set
    # with attempt 0, the answered one with attempt 1; the tracelb's limits are the run's
    import dataclasses

    base = _diamond()
    lost = dataclasses.replace(base.probes[5], reply=None, rx_ns=None, tx_ns=T0 + 19_000)
    again = dataclasses.replace(base.probes[5], attempt=1)
    probes = (*base.probes[:5], lost, again, *base.probes[6:])
    result = dataclasses.replace(
        base, probes=probes, probe_count=len(probes), attempts=2, gaplimit=4, max_probes=60,
        wait_probe_cs=15,
    )  # fmt: skip
    (lb,) = [o for o in read_warts(tracelb_warts(result)) if o.kind == OBJ_TRACELB]
    f = lb.fields
    assert (f[12], f[13], f[18], f[19], f[20]) == (15, 2, 13, 60, 4)
    first = lb.probes[0]["sets"][0]["probes"]
    assert [(p[2] - 0x85FF, p[4], len(p["replies"])) for p in first] == [
        (0, 0, 1), (1, 0, 0), (1, 1, 1), (2, 0, 1), (3, 0, 0),
    ]  # fmt: skip
    # the defaults: scamper's -Q 3000, -g 3, one attempt, no gap between probes
    (lb,) = [o for o in read_warts(tracelb_warts(base)) if o.kind == OBJ_TRACELB]
    assert (lb.fields[12], lb.fields[13], lb.fields[19], lb.fields[20]) == (0, 1, 3000, 3)


def test_one_next_hop_keeps_a_link_per_hop() -> None:
    # r1 -> ra -> r2 -> tg: every flow goes on to one next interface: hopc 1 links, every
    # interface a node (the silent hop: test_warts_scamper.py)
    probes = (
        _probe(0, 1, R1, 10), _probe(1, 1, R1, 11), _probe(0, 2, RA, 20), _probe(1, 2, RA, 21),
        _probe(0, 3, R2, 30), _probe(1, 3, R2, 31), _probe(0, 4, TG, 40),
    )  # fmt: skip
    hops = (MdaHop(1, (R1,), 2), MdaHop(2, (RA,), 2, ((R1, RA),)),
            MdaHop(3, (R2,), 2, ((RA, R2),)), MdaHop(4, (TG,), 1, ((R2, TG),)))  # fmt: skip
    (lb,) = read_warts(tracelb_object(MdaResult(TG, SRC, "udp-paris", 0.95, hops, 7, True,
                                                probes)))  # fmt: skip
    assert [n[5] for n in lb.probedefs] == [R1, RA, R2, TG]
    assert _links(lb) == [(R1, RA, 1), (RA, R2, 1), (R2, TG, 1)]


def test_a_clump_that_never_converges_is_a_link_without_a_far_end() -> None:
    # r1's flows reach ra and rb, and the run ends there (its budget, -Q: both answer at
    # TTL 3 as ra, rb again, no single interface): scamper's half-converged clump, one
    # link from r1 with no `to`, a probe set per TTL probed; ra and rb are no nodes
    probes: tuple[MdaProbe, ...] = (
        _probe(0, 1, R1, 10), _probe(1, 1, R1, 11), _probe(0, 2, RA, 20), _probe(1, 2, RB, 21),
        _probe(0, 3, RA, 30), _probe(1, 3, RB, 31),
    )  # fmt: skip
    hops: tuple[MdaHop, ...] = (MdaHop(1, (R1,), 2), MdaHop(2, (RA, RB), 2, ((R1, RA), (R1, RB))),
            MdaHop(3, (RA, RB), 2, ((RA, RA), (RB, RB))))  # fmt: skip
    (lb,) = read_warts(tracelb_object(MdaResult(TG, SRC, "udp-paris", 0.95, hops, 6, False,
                                                probes)))  # fmt: skip
    assert [n[5] for n in lb.probedefs] == [R1]
    assert [n[3] for n in lb.probedefs] == [1]  # r1's one link
    assert [(x[1], x.get(2), x[3]) for x in lb.probes] == [(0, None, 2)]
    assert _sets(lb) == [[[(0, 2, 1), (1, 2, 1)], [(0, 3, 1), (1, 3, 1)]]]
    assert (lb.fields[16], lb.fields[17]) == (1, 1)  # nodec, linkc
    # ra's flows reach tg at TTL 3 while rb's go on to r2: a reply other than time
    # exceeded before they converge, scamper halts the clump there: r1 -> * over TTLs 2
    # and 3, and nothing after it
    probes = (
        _probe(0, 1, R1, 10), _probe(1, 1, R1, 11), _probe(0, 2, RA, 20), _probe(1, 2, RB, 21),
        _probe(0, 3, TG, 30), _probe(1, 3, R2, 31), _probe(1, 4, TG, 40),
    )  # fmt: skip
    hops = (
        MdaHop(1, (R1,), 2),
        MdaHop(2, (RA, RB), 2, ((R1, RA), (R1, RB))),
        MdaHop(3, (TG, R2), 2, ((RA, TG), (RB, R2))),
        MdaHop(4, (TG,), 1, ((R2, TG),)),
    )
    (lb,) = read_warts(tracelb_object(MdaResult(TG, SRC, "udp-paris", 0.95, hops, 7, True,
                                                probes)))  # fmt: skip
    assert [n[5] for n in lb.probedefs] == [R1]
    assert [(x[1], x.get(2), x[3]) for x in lb.probes] == [(0, None, 2)]
    assert _sets(lb) == [[[(0, 2, 1), (1, 2, 1)], [(0, 3, 1), (1, 3, 1)]]]


def test_a_tcp_reply_has_tcp_flags_not_icmp() -> None:
    r = Reply(ReplyKind.TCP_RST, ipaddress.ip_address(TG), ipaddress.ip_address(SRC),
              ProbeKey(6, ipaddress.ip_address(TG), 4000, 80), 60, 40, ip_id=5)  # fmt: skip
    probes = (_probe(0, 1, R1, 1), MdaProbe(0, 2, 4000, T0, r, T0 + 1000))
    hops = (MdaHop(1, (R1,), 1), MdaHop(2, (TG,), 1, ((R1, TG),)))
    (lb,) = read_warts(tracelb_object(MdaResult(TG, SRC, "tcp", 0.95, hops, 2, True, probes)))
    assert lb.fields[9] == 4  # tcp-sport
    (reply,) = lb.probes[0]["sets"][0]["probes"][0]["replies"]
    assert (reply[4], reply[6], reply[11]) == (0x03, 0x14, TG)
    assert 5 not in reply and 8 not in reply


def test_refuses_an_unknown_method() -> None:
    with pytest.raises(WartsError, match="no warts tracelb type"):
        tracelb_object(MdaResult(TG, SRC, "udp", 0.95, (), 0, False))
