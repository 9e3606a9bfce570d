"""scamper's dealias record (radargun) for an alias run: scamper's own record rebuilt byte
for byte from the probes it describes, and our runs read back field by field (scamper's
tools reading them: tests/integration/test_warts_scamper.py)."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from packetlab.measure.alias import ProbeLog, ProbeRun
from packetlab.measure.probes import echo_probe, tcp_ack_probe, udp_probe
from packetlab.measure.replies import Reply, ReplyKind
from packetlab.measure.warts_dealias import alias_warts, dealias_object
from packetlab.measure.warts_format import (
    OBJ_CYCLE_START,
    OBJ_CYCLE_STOP,
    OBJ_DEALIAS,
    OBJ_LIST,
    WartsError,
    cycle_start_object,
    list_object,
)
from packetlab.measure.warts_read import read_warts

# scamper 20211212: `scamper -O warts -I 'dealias -m radargun -q 3 -W 100
#   -p "-P icmp-echo -i 127.0.0.1" -p "-P udp -i 127.0.0.2" -p "-P tcp-ack -i 127.0.0.3"'`
# (the TCP ACKs unanswered: scamper did not see loopback's RSTs)
SCAMPERS = bytes.fromhex(
    "120500010000001b000000010000000064656661756c740001000864656661756c740012050002000000"
    "160000000100000001000000006b12f615020003766d0012050009000001a92f00150000000100000001"
    "6b12f615000e8f1603000000091f000d00000003000300640000012c05980e000f01ffeae004017f0000"
    "010000000000dc0c00150000000103ffeae0829b04017f0000020000000000dc0d00160000000202ffea"
    "e0829b1004017f00000300000000000e000c6b12f615000e95620001ffffbe0400136b12f615000e958b"
    "bad44000000000000000000f0010000000016b12f6160000db7e0001fefebe0400136b12f6160000db9b"
    "b42e400303ff00000000010b000e000000026b12f616000263cbfdfd1e00106b12f6160003eca10001fc"
    "fc00000001be0400136b12f6160003ecbabadb4000000000000000001f0014000000016b12f616000575"
    "8f0001fbfb00000001be0400136b12f616000575c4b444400303ff00000000011b0012000000026b12f6"
    "160006fc73fafa000000011e00106b12f616000884640001f9f900000002be0400136b12f61600088494"
    "bb0a4000000000000000001f0014000000016b12f616000a0c7f0001f8f800000002be0400136b12f616"
    "000a0cb2b463400303ff00000000011b0012000000026b12f616000b94bcf7f700000002120500040000"
    "0009000000016b12f61b00"
)
SRC = "127.0.0.1"
TARGETS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
METHODS = ("icmp-echo", "udp", "tcp-ack")


def _ns(tv: bytes) -> int:
    return int.from_bytes(tv[:4], "big") * 10**9 + int.from_bytes(tv[4:], "big") * 1000


def _rebuilt_from_scampers() -> tuple[ProbeRun, int]:
    """The probes and replies scamper's record describes, as our alias run logs them."""
    (obj,) = [o for o in read_warts(SCAMPERS) if o.kind == OBJ_DEALIAS]
    probes = []
    for p in obj.probes:
        which, seq, ip_id = p.get(1, 0), p.get(5, 0), p[4]
        dst = TARGETS[which]
        if which == 0:
            probe = echo_probe(SRC, dst, ident=0xEAE0, seq=seq, ttl=255, ip_id=ip_id)
        elif which == 1:
            probe = udp_probe(SRC, dst, sport=0xEAE0, dport=33435, ttl=255, ip_id=ip_id)
        else:
            probe = tcp_ack_probe(SRC, dst, sport=0xEAE0, dport=33435, seq=1, ttl=255,
                                  ip_id=ip_id)  # fmt: skip
        reply = rx = None
        for r in p["replies"]:
            kind = ReplyKind.ECHO_REPLY if which == 0 else ReplyKind.DEST_UNREACHABLE
            icmp = r[5]
            reply = Reply(
                kind, ipaddress.ip_address(r[10]), ipaddress.ip_address(SRC), probe.key, r[4],
                84, icmp >> 8, icmp & 0xFF, r[3], r[6] if which else None,
            )  # fmt: skip
            rx = _ns(r[2])
        probes.append(ProbeLog(dst, METHODS[which], "vm", SRC, seq, probe, _ns(p[2]), reply, rx))
    return ProbeRun(3, 0.1, 5.0, probes), _ns(obj.fields[3])


def test_scampers_radargun_record_byte_for_byte() -> None:
    run, start = _rebuilt_from_scampers()
    ours = dealias_object(run, start_ns=start)
    assert ours[:2] == b"\x12\x05"
    head = list_object() + cycle_start_object(0x6B12F615, hostname="vm")
    assert SCAMPERS.startswith(head)
    assert SCAMPERS[len(head) :].startswith(ours)  # then scamper's cycle stop
    assert len(SCAMPERS) - len(head) - len(ours) == 17


def test_read_back_probes_and_ip_ids() -> None:
    run, start = _rebuilt_from_scampers()
    objs = read_warts(alias_warts([run], start_s=start // 10**9, stop_s=start // 10**9 + 6))
    assert [o.kind for o in objs] == [OBJ_LIST, OBJ_CYCLE_START, OBJ_DEALIAS, OBJ_CYCLE_STOP]
    d = objs[2]
    assert (d.fields[4], d.fields[6]) == (3, 9)  # radargun, nine probes
    assert (d.method[1], d.method[2], d.method[3], d.method[4], d.method[5]) == (3, 3, 100, 300, 5)
    assert [(pd[4], pd[10], pd[11]) for pd in d.probedefs] == [
        (1, "127.0.0.1", SRC), (3, "127.0.0.2", SRC), (2, "127.0.0.3", SRC)
    ]  # fmt: skip
    assert d.probedefs[1][7] == 0xEAE0829B  # UDP source and destination ports
    assert d.probedefs[2][8] == 0x10  # TCP: ACK
    ids = [r[3] for p in d.probes for r in p["replies"]]
    assert ids == [0xBAD4, 0xB42E, 0xBADB, 0xB444, 0xBB0A, 0xB463]
    assert [p.get(5, 0) for p in d.probes] == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def _probe(seq: int, tx: int | None, reply: bool, method: str = "tcp-ack") -> ProbeLog:
    p = tcp_ack_probe("10.0.0.2", "10.0.0.9", sport=4000, dport=33435, seq=seq, ip_id=7)
    if method == "udp":
        p = udp_probe("10.0.0.2", "10.0.0.9", sport=4000 + seq, dport=33435, ip_id=7)
    r = None
    if reply:
        if method == "tcp-ack":
            r = Reply(ReplyKind.TCP_RST, ipaddress.ip_address("10.0.0.9"),
                      ipaddress.ip_address("10.0.0.2"), p.key, 61, 40, ip_id=100 + seq)  # fmt: skip
        else:
            r = Reply(ReplyKind.DEST_UNREACHABLE, ipaddress.ip_address("10.0.0.9"),
                      ipaddress.ip_address("10.0.0.2"), p.key, 61, 56, 3, 3, 0, 63)  # fmt: skip
    rx = None if tx is None or not reply else tx + 500_000
    return ProbeLog("10.0.0.9", method, "ep", "10.0.0.2", seq, p, tx, r, rx)


def test_tcp_rst_reply_and_unsent_probes() -> None:
    t0 = 1796404757_000000_000
    run = ProbeRun(2, 0.002, 0.4, [_probe(0, t0, True), _probe(1, None, False),
                                    _probe(2, t0 + 2_000_000, False)])  # fmt: skip
    (d,) = read_warts(dealias_object(run))
    assert d.fields[6] == 2  # the unsent probe is not in the record
    assert d.method[3] == 2 and d.method[5] == 1  # 2 ms apart, a 0.4 s wait is 1 s
    first, second = d.probes
    assert first[2] == bytes.fromhex("6b12f61500000000") and first[4] == 7
    (rst,) = first["replies"]
    assert (rst[8], rst[9], rst[3], rst[4], rst[10]) == (6, 0x04, 100, 61, "10.0.0.9")
    assert 5 not in rst and 6 not in rst  # no ICMP type/code or quoted TTL
    assert second.get(5) == 2 and 3 not in second and second["replies"] == []


def test_udp_reply_with_id_zero_leaves_it_out() -> None:
    (d,) = read_warts(dealias_object(ProbeRun(1, 0.002, 1, [_probe(0, 10**18, True, "udp")])))
    (r,) = d.probes[0]["replies"]
    assert 3 not in r  # an IP-ID of 0 is left out, as scamper does
    assert (r[5], r[6]) == (0x0303, 63)


def test_refuses_a_run_without_probes() -> None:
    with pytest.raises(WartsError, match="at least one probe"):
        dealias_object(ProbeRun(1, 0.002, 1, []))


@pytest.mark.parametrize(
    ("path", "error"),
    [("-", "give a file"), ("/no/such/dir/a.warts", "cannot write it: No such file")],
)
def test_cli_warts_file_errors_are_one_line(path: str, error: str) -> None:
    from packetlab.cli import run_alias
    from packetlab.cli.run import RunError, build_parser
    from packetlab.cli.run_command import Progress

    args = build_parser().parse_args(["alias", "--warts", path, "10.0.0.1", "10.0.0.2"])
    with pytest.raises(RunError, match=error):
        run_alias.experiment(args, lambda r: None, Progress())


def test_cli_checks_the_file_without_touching_it(tmp_path: Any) -> None:
    # before any probing run is done (a link that never comes up, an endpoint error), an
    # existing FILE stays as it was and none is created (it was truncated or created empty)
    from packetlab.cli import run_alias
    from packetlab.cli.run import build_parser
    from packetlab.cli.run_command import Progress

    old, new = tmp_path / "old.warts", tmp_path / "new.warts"
    old.write_bytes(b"kept")
    for path in (old, new):
        args = build_parser().parse_args(["alias", "--warts", str(path), "10.0.0.1", "10.0.0.2"])
        run_alias.experiment(args, lambda r: None, Progress())
    assert old.read_bytes() == b"kept" and not new.exists()


@pytest.mark.parametrize(
    ("method", "want"),
    [
        ("udp-paris", {4: 3, 7: (40003 << 16) | 33434}),  # scamper's -P udp -F -d
        ("tcp", {4: 6, 7: (40003 << 16) | 80, 8: 0x02}),  # -P tcp-syn-sport
        ("icmp-paris", {4: 1, 9: 40000, 14: 40003}),  # -P icmp-echo -c CSUM
    ],
)
def test_multilevel_flow_probes_defined_as_sent(method: str, want: dict[int, int]) -> None:
    """--multilevel's indirect probes are Paris probes of the trace's flows: with `flows`
    each definition is its packet's (the protocol, ports, ICMP checksum, TTL), not an
    ICMP echo (what alias.py's own indirect probes are); without, an ICMP one unchanged
    (alias.py's echo requests: no checksum in the definition), a UDP or TCP one as its
    packet too (session 27: `pktlab run alias --indirect-method udp|tcp-ack`; it was
    written as an ICMP echo, a definition false to the probe)."""
    from packetlab.measure.mda import flow_probe

    port = 80 if method == "tcp" else 33434
    p = flow_probe(method, 40000, port, 3)("10.0.0.2", "10.0.0.9", 2, 0)
    log = ProbeLog("10.0.0.7", "indirect", "ep", "10.0.0.2", 0, p, 10**18)
    (d,) = read_warts(dealias_object(ProbeRun(1, 0.005, 1.0, [log]), flows=True))
    (pd,) = d.probedefs
    assert {k: pd[k] for k in want} == want and pd[5] == 2 and pd[10] == "10.0.0.9"
    (plain,) = read_warts(dealias_object(ProbeRun(1, 0.005, 1.0, [log])))
    if method == "icmp-paris":
        assert plain.probedefs[0][4] == 1 and 14 not in plain.probedefs[0]
    else:
        assert plain.probedefs == d.probedefs


def test_tracelb_file_holds_the_alias_rounds_after_the_trace() -> None:
    from packetlab.measure.mda import MdaResult, flow_probe
    from packetlab.measure.warts_format import OBJ_TRACELB
    from packetlab.measure.warts_tracelb import tracelb_warts

    p = flow_probe("udp-paris", 40000, 33434, 3)("10.0.0.2", "10.0.0.9", 2, 0)
    runs = [ProbeRun(1, 0.005, 1.0, [ProbeLog("10.0.0.7", "indirect", "ep", "10.0.0.2", s, p,
                                              10**18 + s)]) for s in (0, 1)]  # fmt: skip
    trace = MdaResult("10.0.0.9", "10.0.0.2", "udp-paris", 0.95, (), 0, True, sport=40000,
                      dport=33434, start_ns=10**18)  # fmt: skip
    kinds = [o.kind for o in read_warts(tracelb_warts(trace, stop_s=10**9, alias_runs=runs))]
    assert kinds == [OBJ_LIST, OBJ_CYCLE_START, OBJ_TRACELB, OBJ_DEALIAS, OBJ_DEALIAS,
                     OBJ_CYCLE_STOP]  # fmt: skip


# scamper 20211212 in the alias testbed (test_alias_scamper_methods.py's): `scamper -O
#   warts -I "dealias -m prefixscan -W 100 -p '-P icmp-echo' 10.77.2.57 10.77.2.56/30"`:
# A .57, B .56/30, the alias found .58 (one counter), after 5 probes
SCAMPERS_PREFIXSCAN = bytes.fromhex(
    "120500010000001b000000010000000064656661756c740001000864656661756c74001205000200"
    "0000160000000100000001000000006b1652d4020003766d0012050009000001333f001600000001"
    "000000016b1652d4000ab79a040100000005f707001b04010a4d023904010a4d023804010a4d023a"
    "1e0200c80064050002980e000f01fffde7000000000004010a4d01019c0e00120000000101fffde7"
    "000000000200000000030e000c6b1652d4000ab85b0001ffffbe0400136b1652d4000ab9ed9c4d3f"
    "00000000000000000f0010000000016b1652d4000c4be00001fefebe0400136b1652d4000c4d4b9c"
    "6c3f00000000000000021e00106b1652d4000dd5480001fdfd00000001be0400136b1652d4000dd6"
    "939c8b3f00000000000000001f0014000000016b1652d500001c710001fcfc00000001be0400136b"
    "1652d500001e579caa3f00000000000000021e00106b1652d50001a6f20001fbfb00000002be0400"
    "136b1652d50001a8b69cc93f00000000000000001205000400000009000000016b1652d500"
)
PS_SRC, PS_A, PS_B, PS_AB = "10.77.1.1", "10.77.2.57", "10.77.2.56", "10.77.2.58"


def _prefixscan_from_scampers() -> tuple[ProbeRun, bytes, int]:
    """The probes and replies of scamper's prefixscan record as our alias run logs
    them, scamper's record itself and its start time."""
    objs = read_warts(SCAMPERS_PREFIXSCAN)
    (obj,) = [o for o in objs if o.kind == OBJ_DEALIAS]
    dst = [d[10] for d in obj.probedefs]
    probes = []
    for p in obj.probes:
        which, seq, ip_id = p.get(1, 0), p.get(5, 0), p[4]
        probe = echo_probe(PS_SRC, dst[which], ident=0xFDE7, seq=seq, ttl=255, ip_id=ip_id)
        (r,) = p["replies"]
        reply = Reply(ReplyKind.ECHO_REPLY, ipaddress.ip_address(r[10]),
                      ipaddress.ip_address(PS_SRC), probe.key, r[4], 84, 0, 0, r[3])  # fmt: skip
        probes.append(ProbeLog(dst[which], "icmp-echo", "vm", PS_SRC, seq, probe, _ns(p[2]),
                               reply, _ns(r[2])))  # fmt: skip
    head = SCAMPERS_PREFIXSCAN.index(b"\x12\x05\x00\x09")  # (list, cycle start before)
    body = SCAMPERS_PREFIXSCAN[head:-17]  # (the cycle stop after)
    return ProbeRun(3, 0.1, 5.0, probes), body, _ns(obj.fields[3])


def test_scampers_prefixscan_record_byte_for_byte() -> None:
    """`--prefixscan B/LEN A --warts FILE` wrote a radargun record per MIDAR stage where
    scamper writes one prefixscan record (A, B, the alias found, the prefix length, its
    probe definitions and probes: session 30's leftover; session 31, odds31)."""
    from packetlab.measure.warts_dealias import PrefixScan, prefixscan_object

    run, scampers, start = _prefixscan_from_scampers()
    scan = PrefixScan(PS_A, PS_B, 30, PS_AB, attempts=2, fudge=200)  # (scamper's -q, -f)
    assert prefixscan_object([run], scan, start_ns=start) == scampers


def test_prefixscan_file_reads_back_with_xs_and_no_alias() -> None:
    from packetlab.measure.warts_dealias import PrefixScan

    run, _, _ = _prefixscan_from_scampers()
    data = alias_warts([run, run], start_s=1, stop_s=2,
                       scan=PrefixScan(PS_A, PS_B, 30, None, xs=("10.77.2.59",)))  # fmt: skip
    objs = read_warts(data)
    assert [o.kind for o in objs] == [OBJ_LIST, OBJ_CYCLE_START, OBJ_DEALIAS, OBJ_CYCLE_STOP]
    d = objs[2]
    assert d.fields[4] == 4 and 5 not in d.fields  # prefixscan; result none (left out)
    assert d.method[1] == PS_A and d.method[2] == PS_B and 3 not in d.method
    assert d.method[4] == ["10.77.2.59"] and (d.method[5], d.method[6], d.method[7]) == (30, 1, 0)
    assert [x[10] for x in d.probedefs] == [PS_A, PS_AB]  # one each, A's first
    assert len(d.probes) == 2 * len(run.probes)  # both runs' probes in one record
