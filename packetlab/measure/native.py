"""Run native traceroute (Butskoy), scamper and iputils ping; parse them into our records.

These are the baselines that PacketLab measurements are compared with (the Marionette
paper, §5.3). Each runner builds an argv, optionally runs it inside a network namespace
(``ip netns exec NS ...``), and parses the output into the same `TracerouteResult` /
`PingResult` records that PacketLab measurements produce.

Where the tools take their timestamps (checked with strace and their sources, for the
Debian versions: traceroute 2.1.2, scamper 20211212, iputils-ping 20221126):

* traceroute: send = ``gettimeofday()`` just before ``send()`` (user space); receive =
  ``SO_TIMESTAMP`` on the ``IP_RECVERR`` error queue (kernel, µs). RTTs printed in ms with
  3 decimals.
* scamper: send = ``gettimeofday()`` just before ``sendto()``; receive = ``SO_TIMESTAMP`` on
  its raw ICMP socket (kernel, µs). JSON gives ``tx`` (s, µs) and ``rtt`` (ms, 3 decimals).
* ping: send = ``gettimeofday()`` written into the payload just before ``sendmsg()``;
  receive = ``SO_TIMESTAMP`` (kernel, µs).

So all three are "user-space send, kernel receive". A PacketLab endpoint with kernel TX
timestamps measures from a slightly later send instant (the driver handoff), so its RTTs
are expected to be a little smaller, by the send path's cost (a few µs).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

from packetlab.measure.packets import (
    ICMP6_DEST_UNREACH,
    ICMP6_ECHO_REPLY,
    ICMP6_PACKET_TOO_BIG,
    ICMP6_PARAM_PROBLEM,
    ICMP6_TIME_EXCEEDED,
    ICMP_DEST_UNREACH,
    ICMP_ECHO_REPLY,
    ICMP_PARAM_PROBLEM,
    ICMP_TIME_EXCEEDED,
)
from packetlab.measure.probes import TRACEROUTE_BASE_PORT
from packetlab.measure.records_fields import Stamp
from packetlab.measure.records_ping import PingReply, PingResult
from packetlab.measure.records_traceroute import Hop, TracerouteResult
from packetlab.measure.replies import ICMP6_PORT_UNREACH, ICMP_PORT_UNREACH, ReplyKind

__all__ = [
    "NativeToolError",
    "netns_argv",
    "parse_ping",
    "parse_scamper_json",
    "parse_traceroute",
    "ping_argv",
    "run_ping",
    "run_scamper",
    "run_traceroute",
    "scamper_argv",
    "traceroute_argv",
]

SCAMPER_METHODS = ("udp", "udp-paris", "icmp", "icmp-paris", "tcp", "tcp-ack")


class NativeToolError(RuntimeError):
    """A native tool is missing, failed, timed out, or printed something unparsable;
    `returncode` is the tool's exit status when it ran and failed (else None)."""

    returncode: int | None = None


def netns_argv(argv: Sequence[str], netns: str | None) -> list[str]:
    """``argv``, run inside network namespace ``netns`` when given."""
    if netns is None:
        return list(argv)
    ip = shutil.which("ip") or "/usr/sbin/ip"
    return [ip, "netns", "exec", netns, *argv]


def _run(argv: list[str], *, netns: str | None, timeout: float) -> str:
    if shutil.which(argv[0]) is None:
        raise NativeToolError(f"{argv[0]} is not installed (see APT_PACKAGES in scripts/setup.sh)")
    full = netns_argv(argv, netns)
    try:
        proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise NativeToolError(f"{' '.join(full)} timed out after {timeout} s") from exc
    except OSError as exc:
        raise NativeToolError(f"{' '.join(full)}: {exc}") from exc
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        error = NativeToolError(f"{' '.join(full)} failed ({proc.returncode}): {detail}")
        error.returncode = proc.returncode
        raise error
    return proc.stdout


def _address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError as exc:
        raise ValueError(f"not an IP address: {value!r}") from exc


def _check(name: str, value: float, lo: float, hi: float) -> None:
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in {lo}..{hi}, not {value}")


# -- Butskoy traceroute -----------------------------------------------------------------------


def traceroute_argv(
    dst: str,
    *,
    first_ttl: int = 1,
    max_ttl: int = 30,
    queries: int = 1,
    wait: float = 2.0,
    port: int = TRACEROUTE_BASE_PORT,
    sport: int | None = None,
    sim_queries: int | None = None,
    packet_len: int | None = None,
) -> list[str]:
    """argv for a UDP traceroute with numeric output (``-n``), ``queries`` probes per hop.

    The default method sends UDP to ``port + probe number``. ``sport`` fixes the source
    port (``--sport``; the paper used 20556, and it implies ``-N 1``), otherwise the kernel
    picks one per probe. ``sim_queries`` is ``-N`` (probes in flight, default 16). A single
    ``-w`` value also turns off traceroute's adaptive wait, which can print ``*`` early.
    """
    dst = _address(dst)
    _check("first_ttl", first_ttl, 1, 255)
    _check("max_ttl", max_ttl, first_ttl, 255)
    _check("queries", queries, 1, 10)
    _check("wait", wait, 0.0, 60.0)
    _check("port", port, 1, 65535)
    argv = ["traceroute", "-n", "-f", str(first_ttl), "-m", str(max_ttl)]
    argv += ["-q", str(queries), "-w", f"{wait:g}", "-p", str(port)]
    argv.append("-6" if ":" in dst else "-4")
    if sport is not None:
        _check("sport", sport, 1, 65535)
        argv.append(f"--sport={sport}")
    if sim_queries is not None:
        _check("sim_queries", sim_queries, 1, 64)
        argv += ["-N", str(sim_queries)]
    argv.append(dst)
    if packet_len is not None:
        _check("packet_len", packet_len, 0, 65000)
        argv.append(str(packet_len))
    return argv


_TR_HEADER = re.compile(
    r"^traceroute to (?P<name>\S+) \((?P<dst>[^)]+)\)"
    r"(?:, (?P<max>\d+) hops max)?(?:, (?P<size>\d+) byte packets)?"
)
_TR_HOP = re.compile(r"^\s*(?P<ttl>\d+)\s+(?P<rest>.*)$")
_TR_RTT = re.compile(r"^\d+(?:\.\d+)?$")

# The inverse of records.hop_annotation: "!X" -> (reply type, ICMP code per IP version).
_NOTE_CODES: dict[str, tuple[ReplyKind, int | None, int | None]] = {
    "!N": (ReplyKind.DEST_UNREACHABLE, 0, 0),
    "!H": (ReplyKind.DEST_UNREACHABLE, 1, 3),
    "!P": (ReplyKind.DEST_UNREACHABLE, 2, None),
    "!S": (ReplyKind.DEST_UNREACHABLE, 5, None),  # (IPv6 code 2, beyond scope, is !H)
    "!X": (ReplyKind.DEST_UNREACHABLE, 13, 1),
    "!V": (ReplyKind.DEST_UNREACHABLE, 14, None),
    "!C": (ReplyKind.DEST_UNREACHABLE, 15, None),
}


def _note_reply(note: str, v6: bool) -> tuple[str, int | None, int | None]:
    """A note's reply kind, ICMP code and, for an error of a type no kind names (the
    ``!<TYPE-CODE>`` of an unassigned ICMPv6 type), its ICMP type."""
    if note.startswith("!F"):
        return (ReplyKind.PACKET_TOO_BIG, 0, None) if v6 else (ReplyKind.DEST_UNREACHABLE, 4, None)
    m = re.fullmatch(r"!<(\d+)>", note)
    if m:
        return ReplyKind.DEST_UNREACHABLE, int(m.group(1)), None
    m = re.fullmatch(r"!<(\d+)-(\d+)>", note)  # an error traceroute has no name for
    if m:
        kinds = {3: ReplyKind.TIME_EXCEEDED, 4: ReplyKind.PARAM_PROBLEM} if v6 else {
            11: ReplyKind.TIME_EXCEEDED, 12: ReplyKind.PARAM_PROBLEM}  # fmt: skip
        icmp_type, code = int(m.group(1)), int(m.group(2))
        if icmp_type in kinds:
            return kinds[icmp_type], code, None
        # (`!<100-0>`: an ICMPv6 type no one assigned, which session 25 read back as a
        # destination unreachable; what ours records it as, with its type)
        return ReplyKind.OTHER_ERROR, code, icmp_type
    if note in _NOTE_CODES:
        kind, c4, c6 = _NOTE_CODES[note]
        return kind, c6 if v6 else c4, None
    return ReplyKind.DEST_UNREACHABLE, None, None


_F_NOTE = re.compile(r"!F-(\d+)")  # a router's MTU (`next_mtu`)
_F_SIZE = re.compile(r"F=(\d+)")  # --mtu: the probe's new size (`mtu`)


def parse_traceroute(text: str, *, method: str = "udp") -> TracerouteResult:
    """Parse Butskoy traceroute output (``-n`` or not) into a TracerouteResult.

    The text shows no ICMP type, so it is inferred as traceroute itself decides: a ``!X``
    note is a destination unreachable of that kind, an answer from the destination without
    a note is port unreachable (UDP) or echo reply (``method="icmp"``), anything else is
    time exceeded. Raises NativeToolError on text that is not traceroute output.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    header = None
    start = 0
    for i, line in enumerate(lines):
        header = _TR_HEADER.match(line)
        if header:
            start = i + 1
            break
    if header is None:
        raise NativeToolError("no 'traceroute to ...' header in traceroute output")
    try:
        dst = _address(header.group("dst"))
    except ValueError as exc:
        raise NativeToolError(f"traceroute header names a bad address: {exc}") from exc
    v6 = ":" in dst
    hops: list[Hop] = []
    for line in lines[start:]:
        m = _TR_HOP.match(line)
        if not m:
            raise NativeToolError(f"unexpected traceroute line: {line!r}")
        hops.extend(_parse_hop_line(int(m.group("ttl")), m.group("rest"), dst, v6, method))
    size = header.group("size")
    return TracerouteResult(
        dst=dst,
        hops=tuple(hops),
        tool="traceroute",
        method=method,
        max_ttl=int(header.group("max")) if header.group("max") else None,
        probe_size=int(size) if size else None,
        send_stamp=Stamp.USER_BEFORE_SEND,
        recv_stamp=Stamp.KERNEL,
    )


def _parse_hop_line(ttl: int, rest: str, dst: str, v6: bool, method: str) -> list[Hop]:
    tokens = rest.split()
    hops: list[Hop] = []
    addr: str | None = None
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "*":
            hops.append(Hop.timeout(ttl))
        elif tok.startswith("!"):
            if not hops or (hops[-1].addr is None and hops[-1].rtt_us is None):
                raise NativeToolError(f"traceroute note {tok!r} without a reply at hop {ttl}")
            kind, code, icmp_type = _note_reply(tok, v6)
            said = _F_NOTE.fullmatch(tok)
            hops[-1] = dataclasses.replace(
                hops[-1], reply_type=kind, code=code, icmp_type=icmp_type,
                next_mtu=int(said.group(1)) if said else None,
            )  # fmt: skip
        elif (size := _F_SIZE.fullmatch(tok)) is not None and hops and hops[-1].addr:
            hops[-1] = dataclasses.replace(hops[-1], mtu=int(size.group(1)))
        elif _TR_RTT.match(tok) and i + 1 < len(tokens) and tokens[i + 1] == "ms":
            if i > 0 and tokens[i - 1] == "*" and hops and hops[-1].addr is None:
                # `*  0.183 ms !F-1500`: no address, an RTT: the local error of a probe its
                # kernel refused (-F over the MTU), the note after it (`Hop.refused`)
                hops[-1] = dataclasses.replace(hops[-1], rtt_us=float(tok) * 1000.0)
                i += 2
                continue
            if addr is None:
                raise NativeToolError(f"traceroute RTT without an address at hop {ttl}")
            kind_s, code_v = _implied_reply(addr, dst, v6, method)
            hops.append(Hop(ttl, addr, float(tok) * 1000.0, kind_s, code_v))
            i += 1  # the "ms"
        elif tok.startswith("(") and tok.endswith(")"):
            addr = _hop_address(tok[1:-1], ttl)  # "name (addr)" without -n
        elif tok.startswith("[") and tok.endswith("]"):
            pass  # -A's AS path
        else:
            try:
                addr = str(ipaddress.ip_address(tok))
            except ValueError:
                addr = None  # a host name; its address follows in parentheses
                if i + 1 >= len(tokens) or not tokens[i + 1].startswith("("):
                    raise NativeToolError(
                        f"unexpected token {tok!r} in traceroute hop {ttl}"
                    ) from None
        i += 1
    return hops


def _hop_address(text: str, ttl: int) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise NativeToolError(f"bad address {text!r} in traceroute hop {ttl}") from None


def _implied_reply(addr: str, dst: str, v6: bool, method: str) -> tuple[str, int | None]:
    if addr != dst:
        return ReplyKind.TIME_EXCEEDED, 0
    if method == "icmp":
        return ReplyKind.ECHO_REPLY, 0
    if method == "udp":
        return ReplyKind.DEST_UNREACHABLE, ICMP6_PORT_UNREACH if v6 else ICMP_PORT_UNREACH
    return ReplyKind.DEST_UNREACHABLE, None


def run_traceroute(
    dst: str, *, netns: str | None = None, timeout: float = 120.0, **options: Any
) -> TracerouteResult:
    """Run Butskoy traceroute (options as for `traceroute_argv`) and parse its output."""
    text = _run(traceroute_argv(dst, **options), netns=netns, timeout=timeout)
    return parse_traceroute(text)


# -- scamper -----------------------------------------------------------------------------------


def scamper_argv(
    dst: str,
    *,
    method: str = "udp",
    first_ttl: int = 1,
    max_ttl: int = 30,
    attempts: int = 1,
    wait: int = 2,
    dport: int = TRACEROUTE_BASE_PORT,
    sport: int | None = None,
    pps: int = 100,
) -> list[str]:
    """argv for one scamper trace with JSON output.

    ``method="udp"`` is classic traceroute (destination port ``dport + probe number``, as
    Butskoy's); ``"udp-paris"`` keeps the ports fixed and numbers probes in the UDP checksum.
    ``pps`` is scamper's global probe rate (its default, 20, spaces probes 50 ms apart).
    """
    dst = _address(dst)
    if method not in SCAMPER_METHODS:
        raise ValueError(f"scamper method must be one of {', '.join(SCAMPER_METHODS)}")
    _check("first_ttl", first_ttl, 1, 255)
    _check("max_ttl", max_ttl, first_ttl, 255)
    _check("attempts", attempts, 1, 20)
    _check("wait", wait, 1, 10)  # scamper's own bounds, whole seconds
    _check("dport", dport, 1, 65535)
    _check("pps", pps, 1, 10000)
    trace = f"trace -P {method} -q {attempts} -w {wait} -f {first_ttl} -m {max_ttl} -d {dport}"
    if sport is not None:
        _check("sport", sport, 1, 65535)
        trace += f" -s {sport}"
    return ["scamper", "-O", "json", "-p", str(pps), "-c", trace, "-i", dst]


_SCAMPER_KIND = {
    (4, ICMP_TIME_EXCEEDED): ReplyKind.TIME_EXCEEDED,
    (4, ICMP_DEST_UNREACH): ReplyKind.DEST_UNREACHABLE,
    (4, ICMP_PARAM_PROBLEM): ReplyKind.PARAM_PROBLEM,
    (4, ICMP_ECHO_REPLY): ReplyKind.ECHO_REPLY,
    (6, ICMP6_TIME_EXCEEDED): ReplyKind.TIME_EXCEEDED,
    (6, ICMP6_DEST_UNREACH): ReplyKind.DEST_UNREACHABLE,
    (6, ICMP6_PACKET_TOO_BIG): ReplyKind.PACKET_TOO_BIG,
    (6, ICMP6_PARAM_PROBLEM): ReplyKind.PARAM_PROBLEM,
    (6, ICMP6_ECHO_REPLY): ReplyKind.ECHO_REPLY,
}


def parse_scamper_json(text: str) -> list[TracerouteResult]:
    """Every ``"type": "trace"`` object in scamper ``-O json`` output (one per line).

    TTLs that scamper probed without an answer (``firsthop`` to ``hop_count``, the last TTL
    probed) become timeout hops, so paths line up with traceroute's ``*``.
    """
    results = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise NativeToolError(f"scamper output line {n} is not JSON: {exc}") from exc
        if isinstance(obj, dict) and obj.get("type") == "trace":
            try:
                results.append(_scamper_trace(obj))
            except (KeyError, TypeError, ValueError) as exc:
                raise NativeToolError(f"scamper trace on line {n} is malformed: {exc!r}") from exc
    return results


def _scamper_trace(obj: dict[str, Any]) -> TracerouteResult:
    dst = _address(obj["dst"])
    version = 6 if ":" in dst else 4
    hops: list[Hop] = []
    answered: set[int] = set()
    for h in obj.get("hops", []):
        ttl = int(h["probe_ttl"])
        send_ns = _tv_ns(h["tx"]) if "tx" in h else None
        rtt_us = round(float(h["rtt"]) * 1000.0, 3)
        recv_ns = send_ns + round(rtt_us * 1000) if send_ns is not None else None
        icmp_type = h.get("icmp_type")
        kind: str | None = (
            _SCAMPER_KIND.get((version, icmp_type)) if icmp_type is not None else None
        )
        other = None  # an ICMPv6 error type no one assigned (ours' --warts writes them)
        if kind is None and version == 6 and icmp_type is not None and icmp_type < 128:
            kind, other = ReplyKind.OTHER_ERROR, int(icmp_type)
        if kind is None and "tcp_flags" in h:
            kind = ReplyKind.TCP_RST if int(h["tcp_flags"]) & 0x04 else ReplyKind.TCP_SYNACK
        hops.append(
            Hop(
                ttl=ttl,
                addr=_address(h["addr"]),
                rtt_us=rtt_us,
                reply_type=kind,
                code=h.get("icmp_code"),
                probe_send_ns=send_ns,
                reply_recv_ns=recv_ns,
                reply_ttl=h.get("reply_ttl"),
                reply_ip_id=h.get("reply_ipid") if version == 4 else None,
                icmp_type=other,
            )
        )
        answered.add(ttl)
    # hop_count is the last TTL probed (not a count from firsthop).
    first, last = int(obj.get("firsthop", 1)), int(obj.get("hop_count", 0))
    hops += [Hop.timeout(ttl) for ttl in range(first, last + 1) if ttl not in answered]
    hops.sort(key=lambda hop: hop.ttl)  # stable: probes of one TTL keep their order
    return TracerouteResult(
        dst=dst,
        hops=tuple(hops),
        src=_address(obj["src"]) if "src" in obj else None,
        tool="scamper",
        method=str(obj.get("method", "")),
        max_ttl=int(obj["hoplimit"]) if obj.get("hoplimit") else None,
        probe_size=obj.get("probe_size"),
        start_ns=_tv_ns(obj["start"]) if "start" in obj else None,
        send_stamp=Stamp.USER_BEFORE_SEND,
        recv_stamp=Stamp.KERNEL,
    )


def _tv_ns(tv: dict[str, Any]) -> int:
    return int(tv["sec"]) * 1_000_000_000 + int(tv["usec"]) * 1000


def run_scamper(
    dst: str, *, netns: str | None = None, timeout: float = 120.0, **options: Any
) -> TracerouteResult:
    """Run one scamper trace (options as for `scamper_argv`) and parse its JSON."""
    text = _run(scamper_argv(dst, **options), netns=netns, timeout=timeout)
    results = parse_scamper_json(text)
    if len(results) != 1:
        raise NativeToolError(f"expected one scamper trace, got {len(results)}")
    return results[0]


# -- iputils ping ------------------------------------------------------------------------------


def ping_argv(
    dst: str,
    *,
    count: int = 5,
    interval: float = 0.2,
    deadline: float | None = None,
    ttl: int | None = None,
    size: int | None = None,
) -> list[str]:
    """argv for iputils ping with numeric output and ``count`` echo requests.

    ``interval`` below 0.2 s needs root (as do the raw sockets here anyway).
    """
    dst = _address(dst)
    _check("count", count, 1, 100000)
    _check("interval", interval, 0.0, 3600.0)
    argv = ["ping", "-n", "-c", str(count), "-i", f"{interval:g}"]
    if deadline is not None:
        _check("deadline", deadline, 1, 3600)
        argv += ["-w", f"{deadline:g}"]
    if ttl is not None:
        _check("ttl", ttl, 1, 255)
        argv += ["-t", str(ttl)]
    if size is not None:
        _check("size", size, 0, 65000)
        argv += ["-s", str(size)]
    argv.append(dst)
    return argv


_PING_HEADER = re.compile(r"^PING (?P<name>\S+) ?\((?P<dst>[^)]+)\)")
_PING_REPLY = re.compile(
    r"^(?P<size>\d+) bytes from (?:\S+ \()?(?P<addr>[^\s()]+?)\)?:?\s+icmp_seq=(?P<seq>\d+)"
    r"(?:\s+ttl=(?P<ttl>\d+))?(?:\s+time=(?P<time>[\d.]+) ms)?"
)
_PING_STATS = re.compile(r"^(?P<sent>\d+) packets transmitted, (?P<recv>\d+) received")


def parse_ping(text: str) -> PingResult:
    """Parse iputils ``ping -n`` output into a PingResult (duplicates and errors ignored)."""
    dst: str | None = None
    sent: int | None = None
    replies: list[PingReply] = []
    seen: set[int] = set()
    for line in text.splitlines():
        if dst is None and (m := _PING_HEADER.match(line)):
            try:
                dst = _address(m.group("dst"))
            except ValueError as exc:
                raise NativeToolError(f"ping header names a bad address: {exc}") from exc
        elif m := _PING_REPLY.match(line):
            seq = int(m.group("seq"))
            if seq in seen or "DUP!" in line:
                continue
            seen.add(seq)
            try:
                addr = _address(m.group("addr"))
            except ValueError as exc:
                raise NativeToolError(f"ping reply from a bad address: {exc}") from exc
            replies.append(
                PingReply(
                    seq=seq,
                    addr=addr,
                    rtt_us=float(m.group("time")) * 1000.0 if m.group("time") else None,
                    ttl=int(m.group("ttl")) if m.group("ttl") else None,
                    size=int(m.group("size")),
                )
            )
        elif m := _PING_STATS.match(line):
            sent = int(m.group("sent"))
    if dst is None:
        raise NativeToolError("no 'PING ...' header in ping output")
    if sent is None:
        raise NativeToolError("no 'packets transmitted' summary in ping output")
    return PingResult(
        dst=dst,
        sent=sent,
        replies=tuple(replies),
        tool="ping",
        send_stamp=Stamp.USER_BEFORE_SEND,
        recv_stamp=Stamp.KERNEL,
    )


def run_ping(
    dst: str, *, netns: str | None = None, timeout: float = 120.0, **options: Any
) -> PingResult:
    """Run iputils ping (options as for `ping_argv`) and parse its output.

    ping exits 1 when some replies are missing; that is a result, not an error.
    """
    argv = ping_argv(dst, **options)
    if shutil.which(argv[0]) is None:
        raise NativeToolError("ping is not installed (Debian package iputils-ping)")
    full = netns_argv(argv, netns)
    try:
        proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise NativeToolError(f"{' '.join(full)} timed out after {timeout} s") from exc
    if proc.returncode not in (0, 1):
        raise NativeToolError(f"{' '.join(full)} failed ({proc.returncode}): {proc.stderr}")
    return parse_ping(proc.stdout)
