"""scamper's warts dealias record (radargun, prefixscan), for `pktlab run alias --warts`
and --multilevel's probing rounds (`alias_warts`: a whole file, list, cycle start, a
record per probing run, or one prefixscan record, cycle stop): its fields, the method's,
each probe definition's, then each probe's followed by its replies'."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from packetlab.measure.replies import ReplyKind
from packetlab.measure.warts_format import (
    OBJ_DEALIAS,
    AddressTable,
    WartsError,
    cycle_start_object,
    cycle_stop_object,
    list_object,
    params,
    record,
    timeval,
    u8,
    u16,
    u32,
    whole_seconds,
)

if TYPE_CHECKING:
    from packetlab.measure.alias import ProbeRun


# dealias (radargun): the record's fields, the radargun's, a probe definition's, a probe's,
# a reply's (flag ids)
DEALIAS_RADARGUN, DEALIAS_PREFIXSCAN = 3, 4
RESULT_ALIASES = 1  # (scamper leaves a result of 0, none, out)
PROBEDEF_TCP_SYN_SPORT = 6  # scamper's tcp-syn-sport (an MDA tcp flow's SYN, with a TTL)
# (scamper_dealias.h's probedef methods; the port-changing ones as scamper 20211212 writes
# them for `-P udp-dport|tcp-ack-sport|tcp-syn-sport`, its base ports in the definition)
PROBEDEF_METHODS = {"icmp-echo": 1, "tcp-ack": 2, "udp": 3, "indirect": 1,  # (echo, TTL)
                    "tcp-ack-sport": 4, "udp-dport": 5,
                    "tcp-syn-sport": PROBEDEF_TCP_SYN_SPORT}  # fmt: skip
TCP_SYN = 0x02
_D_LIST, _D_CYCLE, _D_START, _D_METHOD, _D_RESULT, _D_PROBEC, _D_USERID = 1, 2, 3, 4, 5, 6, 7
_RG_DEFC, _RG_ROUNDS, _RG_WAIT_PROBE, _RG_WAIT_ROUND, _RG_WAIT_TIMEOUT = 1, 2, 3, 4, 5
_RG_FLAGS, RADARGUN_SHUFFLE = 6, 0x01  # (-O shuffle: sc_wartsdump's "flags: shuffle")
# prefixscan's fields (scamper_dealias_warts.c); FLAGS (0) and REPLYC (5) left out as
# scamper leaves its defaults out
_PS_A, _PS_B, _PS_AB, _PS_XS, _PS_PREFIX, _PS_ATTEMPTS, _PS_FUDGE = 1, 2, 3, 4, 5, 6, 7
_PS_WAIT_PROBE, _PS_WAIT_TIMEOUT, _PS_PROBEDEFC = 8, 9, 10
_PD_ID, _PD_METHOD, _PD_TTL, _PD_PORTS, _PD_TCP_FLAGS, _PD_ICMP_ID, _PD_DST, _PD_SRC = (
    3, 4, 5, 7, 8, 9, 10, 11,
)  # fmt: skip
_PD_ICMP_CSUM = 14
_DP_DEF, _DP_TX, _DP_REPLYC, _DP_IPID, _DP_SEQ = 1, 2, 3, 4, 5
_DR_RX, _DR_IPID, _DR_TTL, _DR_ICMP_TC, _DR_Q_TTL, _DR_PROTO, _DR_TCP_FLAGS, _DR_SRC = (
    2, 3, 4, 5, 6, 8, 9, 10,
)  # fmt: skip
TCP_ACK, TCP_RST = 0x10, 0x04


def _flow_definition(p: Any) -> tuple[int, dict[int, bytes]]:
    """The method and fields of an indirect probe that is a Paris probe of a trace's flow
    (`--multilevel`'s) or an alias run's `--indirect-method` udp or tcp-ack: as its packet
    is, scamper's ``-P udp -F SPORT -d DPORT -t TTL``, ``-P tcp-syn-sport`` (a SYN),
    ``-P tcp-ack`` (an ACK), or ``-P icmp-echo -c CSUM`` (the flow in the ICMP checksum)."""
    packet = p.probe.packet
    proto, at = packet[9], (packet[0] & 0x0F) * 4
    key = p.probe.key
    if proto == 17:
        return PROBEDEF_METHODS["udp"], {_PD_PORTS: u16(key.sport) + u16(key.dport)}
    if proto == 6 and not packet[at + 13] & TCP_SYN:  # an ACK: scamper's -P tcp-ack -t TTL
        return PROBEDEF_METHODS["tcp-ack"], {
            _PD_PORTS: u16(key.sport) + u16(key.dport), _PD_TCP_FLAGS: u8(TCP_ACK),
        }  # fmt: skip
    if proto == 6:
        return PROBEDEF_TCP_SYN_SPORT, {
            _PD_PORTS: u16(key.sport) + u16(key.dport), _PD_TCP_FLAGS: u8(TCP_SYN),
        }  # fmt: skip
    return PROBEDEF_METHODS["icmp-echo"], {
        _PD_ICMP_ID: u16(key.sport), _PD_ICMP_CSUM: packet[at + 2 : at + 4],
    }  # fmt: skip


def dealias_object(
    run: ProbeRun,
    *,
    list_id: int = 1,
    cycle_id: int = 1,
    start_ns: int | None = None,
    flows: bool = False,
    userid: int = 0,
) -> bytes:
    """scamper's dealias record (method radargun) of one probing run: the run's fields,
    one probe definition per (endpoint's source, target, method) in order of first use,
    then every probe sent, in send order, each with the reply that answered it (the
    reply's IP-ID, TTL, ICMP type and code or TCP flags). ``seq`` is the round; a UDP
    definition's source port is its first probe's (ours change per probe, as the key
    that matches replies). An indirect probe's definition is scamper's for ``-P icmp-echo
    -i DST -t TTL``: method icmp-echo, the destination beyond the router and the TTL;
    its replies are the router's time exceeded messages; with `flows` (IPv4) each is a
    Paris probe of a trace's flow (`--multilevel`'s), defined as its packet is
    (`_flow_definition`). `userid`: scamper's `-U`, written when not 0 (as scamper)."""
    table = AddressTable()
    defs, first, sent = _definitions(run.probes)
    if start_ns is None:
        start_ns = min((p.tx_ns for p in sent if p.tx_ns is not None), default=0)
    fields = _fields(list_id, cycle_id, start_ns, DEALIAS_RADARGUN, len(sent), userid)
    wait_probe = min(0xFFFF, max(1, round(run.spacing * 1000)))
    per_round = len(defs)
    rg = {
        _RG_DEFC: u32(len(defs)),
        _RG_ROUNDS: u16(min(0xFFFF, run.rounds)),
        _RG_WAIT_PROBE: u16(wait_probe),
        # (the time from one round's start to the next: scamper's -r, or back to back)
        _RG_WAIT_ROUND: u32(max(wait_probe * per_round, round(run.round_wait * 1000))),
        _RG_WAIT_TIMEOUT: u8(whole_seconds(run.wait)),
    }
    if run.shuffle:
        rg[_RG_FLAGS] = u8(RADARGUN_SHUFFLE)
    out = [params(fields), params(rg)]
    out += _defs_and_probes(first, sent, defs, table, flows)
    return record(OBJ_DEALIAS, b"".join(out))


def _fields(
    list_id: int, cycle_id: int, start_ns: int, method: int, probec: int, userid: int,
    result: int = 0,
) -> dict[int, bytes]:  # fmt: skip
    """The dealias record's own fields; a count, user id or result of 0 left out."""
    fields = {_D_LIST: u32(list_id), _D_CYCLE: u32(cycle_id), _D_START: timeval(start_ns),
              _D_METHOD: u8(method)}  # fmt: skip
    if result:
        fields[_D_RESULT] = u8(result)
    if probec:
        fields[_D_PROBEC] = u32(probec)
    if userid:
        fields[_D_USERID] = u32(userid)
    return fields


def _definitions(
    probes: Sequence[Any],
) -> tuple[dict[tuple[str, str, str], int], list[Any], list[Any]]:
    """One probe definition per (endpoint's source, target, method), in order of first
    use (its first probe), and the probes sent."""
    defs: dict[tuple[str, str, str], int] = {}
    first: list[Any] = []
    for p in probes:
        key = (p.src, p.addr, p.method)
        if key not in defs:
            if p.method not in PROBEDEF_METHODS:
                raise WartsError(f"no warts dealias probe method for {p.method!r}")
            defs[key] = len(defs)
            first.append(p)
    if not defs:
        raise WartsError("a dealias record needs at least one probe")
    return defs, first, [p for p in probes if p.tx_ns is not None]


def _defs_and_probes(
    first: list[Any],
    sent: list[Any],
    defs: dict[tuple[str, str, str], int],
    table: AddressTable,
    flows: bool,
) -> list[bytes]:
    """The probe definitions (each from its first probe), then every probe sent, in
    send order, each followed by its replies."""
    out: list[bytes] = []
    for i, p in enumerate(first):
        pd: dict[int, bytes] = {
            _PD_METHOD: u8(PROBEDEF_METHODS[p.method]),
            _PD_TTL: u8(p.probe.ttl),
        }
        if i:
            pd[_PD_ID] = u32(i)
        key = p.probe.key
        # (an indirect UDP or TCP probe, `--indirect-method`'s, is defined as its packet
        # is, as a Paris flow's: scamper's -P udp|tcp-ack -i DST -t TTL)
        packet = p.probe.packet
        flow = flows or (packet[0] >> 4 == 4 and packet[9] != 1)
        if flow and p.method == "indirect" and packet[0] >> 4 == 4:
            method, more = _flow_definition(p)
            pd[_PD_METHOD] = u8(method)
            pd.update(more)
        elif p.method in ("icmp-echo", "indirect"):
            pd[_PD_ICMP_ID] = u16(key.sport)
        else:
            pd[_PD_PORTS] = u16(key.sport) + u16(key.dport)
        if p.method in ("tcp-ack", "tcp-ack-sport"):
            pd[_PD_TCP_FLAGS] = u8(TCP_ACK)
        elif p.method == "tcp-syn-sport":
            pd[_PD_TCP_FLAGS] = u8(TCP_SYN)
        pd[_PD_DST] = table.encode(str(p.probe.dst))  # (indirect: beyond p.addr)
        pd[_PD_SRC] = table.encode(p.src)
        out.append(params(pd))
    for p in sent:
        assert p.tx_ns is not None
        which = defs[(p.src, p.addr, p.method)]
        pf: dict[int, bytes] = {_DP_TX: timeval(p.tx_ns)}
        if which:
            pf[_DP_DEF] = u32(which)
        if p.reply is not None:  # (and its copies: a duplicating link's, as scamper's)
            pf[_DP_REPLYC] = u16(min(0xFFFF, 1 + len(p.more)))
        if ipaddress.ip_address(p.addr).version == 4:
            pf[_DP_IPID] = u16(p.probe.ip_id or 0)
        if p.seq:
            pf[_DP_SEQ] = u32(p.seq)
        out.append(params(pf))
        if p.reply is not None:
            for r, rx_ns in ((p.reply, p.rx_ns), *p.more[:0xFFFE]):
                out.append(params(_dealias_reply(r, rx_ns, table)))
    return out


@dataclass(frozen=True)
class PrefixScan:
    """scamper's ``dealias -m prefixscan [-x X] A B/LEN`` as asked and answered: `ab` the
    alias of A found (the first in scamper's order), None when none was. scamper's
    ``attempts`` (-q) and ``fudge`` (-f) are not ours: 1 (each address probed in one
    run) and 0 (MIDAR's tests, not a fudge on the IP-IDs' distance)."""

    a: str
    b: str
    prefix: int
    ab: str | None = None
    xs: tuple[str, ...] = ()
    attempts: int = 1
    fudge: int = 0


def prefixscan_object(
    runs: Sequence[ProbeRun], scan: PrefixScan, *, userid: int = 0, list_id: int = 1,
    cycle_id: int = 1, start_ns: int | None = None,
) -> bytes:  # fmt: skip
    """scamper's prefixscan record of the whole scan: A, B, the alias found (``ab``, the
    result ``aliases``; else no result: none), the excluded (``xs``), the prefix length,
    one probe definition per address probed (A's first) and every probe of every run
    (MIDAR's stages, or the one run of --single-stage); `list_id`, `cycle_id`, `start_ns`
    (default: the first probe's time) as `dealias_object`'s."""
    probes = [p for run in runs for p in run.probes]
    table = AddressTable()
    defs, first, sent = _definitions(probes)
    if start_ns is None:
        start_ns = min((p.tx_ns for p in sent if p.tx_ns is not None), default=0)
    result = RESULT_ALIASES if scan.ab is not None else 0
    fields = _fields(list_id, cycle_id, start_ns, DEALIAS_PREFIXSCAN, len(sent), userid, result)
    ps: dict[int, bytes] = {_PS_A: table.encode(scan.a), _PS_B: table.encode(scan.b)}
    if scan.ab is not None:
        ps[_PS_AB] = table.encode(scan.ab)
    if scan.xs:
        ps[_PS_XS] = u16(len(scan.xs)) + b"".join(table.encode(x) for x in scan.xs)
    run = runs[0]
    ps.update({
        _PS_PREFIX: u8(scan.prefix),
        _PS_ATTEMPTS: u8(scan.attempts),
        _PS_FUDGE: u16(scan.fudge),
        _PS_WAIT_PROBE: u16(min(0xFFFF, max(1, round(run.spacing * 1000)))),
        _PS_WAIT_TIMEOUT: u8(whole_seconds(run.wait)),
        _PS_PROBEDEFC: u16(min(0xFFFF, len(defs))),
    })  # fmt: skip
    out = [params(fields), params(ps), *_defs_and_probes(first, sent, defs, table, False)]
    return record(OBJ_DEALIAS, b"".join(out))


def _dealias_reply(r: Any, rx_ns: int | None, table: AddressTable) -> dict[int, bytes]:
    fields: dict[int, bytes] = {_DR_TTL: u8(r.ttl)}
    if rx_ns is not None:
        fields[_DR_RX] = timeval(rx_ns)
    if r.ip_id:  # scamper leaves an ID of 0 out
        fields[_DR_IPID] = u16(r.ip_id)
    if r.icmp_type is not None:
        fields[_DR_ICMP_TC] = u8(r.icmp_type) + u8(r.icmp_code or 0)
        fields[_DR_Q_TTL] = u8(r.quoted_ttl or 0)
    else:  # TCP: the RST to a bare ACK (flags R), to a SYN (R and A), or a SYN-ACK
        fields[_DR_PROTO] = u8(6)
        flags = r.tcp_flags
        if flags is None:  # (a Reply built without them)
            flags = TCP_RST if r.kind == ReplyKind.TCP_RST else 0x12
        fields[_DR_TCP_FLAGS] = u8(flags & 0xFF)
    fields[_DR_SRC] = table.encode(str(r.src))
    return fields


def alias_warts(
    runs: Iterable[ProbeRun],
    *,
    start_s: int,
    stop_s: int,
    hostname: str = "",
    userid: int = 0,
    scan: PrefixScan | None = None,
) -> bytes:
    """A whole warts file for an alias run: list, cycle start, one dealias record per
    probing run (a MIDAR stage's, or each discovery window's), or with `scan` one
    prefixscan record of them all (scamper's), cycle stop."""
    done = [run for run in runs if run.probes]
    if scan is not None:
        body = prefixscan_object(done, scan, userid=userid) if done else b""
    else:
        body = b"".join(dealias_object(run, userid=userid) for run in done)
    return (
        list_object()
        + cycle_start_object(start_s, hostname=hostname)
        + body
        + cycle_stop_object(stop_s)
    )
