"""Ping records (`PingReply`, `PingError`, `PingResult`) and their text as iputils ping
prints it (`ping_line`, `ping_statistics`, `format_ping`)."""

from __future__ import annotations

import bisect
import json
import math
import struct
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from packetlab.measure.packets_ip_options import IpTimestamps, SourceRoute
from packetlab.measure.records_fields import RESULT_NON_NULL, RecordError, Stamp, record_from_dict

__all__ = [
    "PING_TIMING_MIN_SIZE",
    "PingError",
    "PingReply",
    "PingResult",
    "RttStats",
    "WrongData",
    "format_ping",
    "ping_line",
    "ping_pipe",
    "ping_statistics",
    "ping_time",
    "wrong_data_lines",
]


@dataclass(frozen=True, slots=True)
class WrongData:
    """A reply whose data differ from its request's past the timestamp area (bytes 16 on,
    as iputils checks them): ping's ``wrong data byte #N should be 0xE but was 0xG``."""

    offset: int  # the first byte of the ICMP data that differs
    expected: int  # the request's byte there
    got: int  # the reply's
    data: str  # hex: the reply's data from byte 16 up to the request's length


@dataclass(frozen=True, slots=True)
class PingReply:
    """One echo request and its reply (``addr`` None: lost)."""

    seq: int
    addr: str | None
    rtt_us: float | None
    ttl: int | None = None  # TTL/hop limit of the reply
    size: int | None = None  # bytes of ICMP message in the reply
    probe_send_ns: int | None = None
    reply_recv_ns: int | None = None
    dup: bool = False  # a second reply to the same request (ping's "(DUP!)")
    # ping -R: the addresses the reply's record route option holds (None: no option)
    route: tuple[str, ...] | None = None
    # ping -T: the reply's timestamp option as iputils reads it (None: no option)
    ip_timestamps: IpTimestamps | None = None
    # ping HOST... TARGET: the reply's source route option (None: none, or not asked)
    source_route: SourceRoute | None = None
    # data bytes that differ from the request's (None: as sent, or not checked)
    wrong_data: WrongData | None = None
    # from an address other than the target's (ping: "(DIFFERENT ADDRESS!)")
    different_address: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The fields; `route` only when the reply had a record route (ping -R),
        `ip_timestamps` (kind, entries [address or null, ms since midnight UT or null],
        unrecorded hops) only when it had a timestamp option (ping -T), `source_route`
        (strict, pointer, addresses) only when it had a source route (ping HOST...
        TARGET), `wrong_data` only when the reply's data differed from the request's,
        `different_address` only when true."""
        out = asdict(self)
        for key in ("route", "ip_timestamps", "source_route", "wrong_data"):
            if out[key] is None:
                del out[key]
        if not self.different_address:
            del out["different_address"]
        if "route" in out:
            out["route"] = list(out["route"])
        if "ip_timestamps" in out:
            ts = out["ip_timestamps"]
            ts["entries"] = [list(e) for e in ts["entries"]]
        if "source_route" in out:
            out["source_route"]["addresses"] = list(out["source_route"]["addresses"])
        return out

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> PingReply:
        route = obj.get("route") if isinstance(obj, Mapping) else None
        if route is not None:
            if not isinstance(route, list) or not all(isinstance(a, str) for a in route):
                raise RecordError(f"PingReply.route must be a list of addresses: {route!r}")
            obj = {**obj, "route": tuple(route)}
        ts = obj.get("ip_timestamps") if isinstance(obj, Mapping) else None
        if ts is not None:
            obj = {**obj, "ip_timestamps": _ip_timestamps(ts)}
        sr = obj.get("source_route") if isinstance(obj, Mapping) else None
        if sr is not None:
            obj = {**obj, "source_route": _source_route(sr)}
        moved = obj.get("different_address", False) if isinstance(obj, Mapping) else False
        if type(moved) is not bool:
            raise RecordError(f"PingReply.different_address must be a boolean: {moved!r}")
        wrong = obj.get("wrong_data") if isinstance(obj, Mapping) else None
        if wrong is not None:
            obj = {**obj, "wrong_data": _wrong_data(wrong)}
        return record_from_dict(cls, obj, required=("seq", "addr", "rtt_us"), non_null=("seq",))


def _ip_timestamps(obj: Any) -> IpTimestamps:
    """PingReply.ip_timestamps from its JSON form; RecordError when malformed."""
    try:
        kind, entries, unrecorded = obj["kind"], obj["entries"], obj.get("unrecorded", 0)
        got = tuple((e[0], e[1]) for e in entries if len(e) == 2)
    except (TypeError, KeyError, IndexError):
        raise RecordError(f"PingReply.ip_timestamps is malformed: {obj!r}") from None
    ok = all((a is None or isinstance(a, str)) and (t is None or type(t) is int) for a, t in got)
    if type(kind) is not int or type(unrecorded) is not int or not ok or len(got) != len(entries):
        raise RecordError(f"PingReply.ip_timestamps is malformed: {obj!r}")
    return IpTimestamps(kind, got, unrecorded)


def _wrong_data(obj: Any) -> WrongData:
    """PingReply.wrong_data from its JSON form; RecordError when malformed."""
    try:
        w = WrongData(obj["offset"], obj["expected"], obj["got"], obj["data"])
        bytes.fromhex(w.data)
    except (TypeError, KeyError, ValueError):
        raise RecordError(f"PingReply.wrong_data is malformed: {obj!r}") from None
    if not all(type(x) is int for x in (w.offset, w.expected, w.got)):
        raise RecordError(f"PingReply.wrong_data is malformed: {obj!r}")
    return w


def _source_route(obj: Any) -> SourceRoute:
    try:
        strict, pointer, addresses = obj["strict"], obj["pointer"], obj["addresses"]
    except (TypeError, KeyError):
        raise RecordError(f"PingReply.source_route is malformed: {obj!r}") from None
    ok = isinstance(addresses, list) and all(isinstance(a, str) for a in addresses)
    if type(strict) is not bool or type(pointer) is not int or not ok:
        raise RecordError(f"PingReply.source_route is malformed: {obj!r}")
    return SourceRoute(strict, pointer, tuple(addresses))


@dataclass(frozen=True, slots=True)
class PingError:
    """An ICMP error for an echo request (a router's time exceeded or unreachable), which
    iputils ping prints as ``From ADDR icmp_seq=N Time to live exceeded`` and counts as
    ``+N errors``. ``mtu``: of a "fragmentation needed" / "packet too big"."""

    seq: int
    addr: str
    reply_type: str  # a ReplyKind value
    icmp_type: int
    code: int
    mtu: int | None = None
    probe_send_ns: int | None = None
    reply_recv_ns: int | None = None
    pointer: int | None = None  # a parameter problem's (ping: ``pointer = N``)

    def to_dict(self) -> dict[str, Any]:
        """The fields; `pointer` only for a parameter problem."""
        out = asdict(self)
        if out["pointer"] is None:
            del out["pointer"]
        return out

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> PingError:
        pointer = obj.get("pointer") if isinstance(obj, Mapping) else None
        if pointer is not None and type(pointer) is not int:
            raise RecordError(f"PingError.pointer has the wrong type: {pointer!r}")
        return record_from_dict(
            cls,
            obj,
            required=("seq", "addr", "reply_type", "icmp_type", "code"),
            non_null=("seq", "addr", "reply_type", "icmp_type", "code"),
        )

    def describe(self) -> str:
        """iputils ping's words for it (ping_common/ping6_common pr_icmph)."""
        v6 = ":" in self.addr
        c = self.code
        if not v6:
            if self.icmp_type == 11:
                return {0: "Time to live exceeded", 1: "Frag reassembly time exceeded"}.get(
                    c, f"Time exceeded, Bad Code: {c}"
                )
            if self.icmp_type == 3:
                if c == 4:
                    return f"Frag needed and DF set (mtu = {self.mtu or 0})"
                return _V4_UNREACH_WORDS.get(c, f"Dest Unreachable, Bad Code: {c}")
            if self.icmp_type == 12:
                return f"Parameter problem: pointer = {self.pointer or 0}"
            return f"Bad ICMP type: {self.icmp_type}"
        if self.icmp_type == 3:
            words = {0: "Hop limit", 1: "Defragmentation failure"}.get(c, f"code {c}")
            return f"Time exceeded: {words}"
        if self.icmp_type == 1:
            words = _V6_UNREACH_WORDS.get(c, f"Unknown code {c}")
            return f"Destination unreachable: {words}"
        if self.icmp_type == 2:
            return f"Packet too big: mtu={self.mtu or 0}" + (f", code={c}" if c else "")
        if self.icmp_type == 4:  # ping6's words, then the pointer ("at N")
            what = {0: "Wrong header field", 1: "Unknown header", 2: "Unknown option"}
            return f"Parameter problem: {what.get(c, f'code {c}')} at {self.pointer or 0}"
        return f"unknown icmp type: {self.icmp_type}"  # ping6's print_icmp, an unassigned type


_V4_UNREACH_WORDS = {
    0: "Destination Net Unreachable",
    1: "Destination Host Unreachable",
    2: "Destination Protocol Unreachable",
    3: "Destination Port Unreachable",
    5: "Source Route Failed",
    6: "Destination Net Unknown",
    7: "Destination Host Unknown",
    8: "Source Host Isolated",
    9: "Destination Net Prohibited",
    10: "Destination Host Prohibited",
    11: "Destination Net Unreachable for Type of Service",
    12: "Destination Host Unreachable for Type of Service",
    13: "Packet filtered",
    14: "Precedence Violation",
    15: "Precedence Cutoff",
}
_V6_UNREACH_WORDS = {
    0: "No route",
    1: "Administratively prohibited",
    2: "Beyond scope of source address",
    3: "Address unreachable",
    4: "Port unreachable",
}


@dataclass(frozen=True, slots=True)
class RttStats:
    min_us: float
    avg_us: float
    max_us: float
    mdev_us: float  # ping's "mdev": the population standard deviation


@dataclass(frozen=True, slots=True)
class PingResult:
    dst: str
    sent: int
    replies: tuple[PingReply, ...]  # answered probes; lost ones may be listed with addr None
    src: str | None = None
    tool: str = "packetlab"  # "packetlab" or "ping" (iputils)
    start_ns: int | None = None
    send_stamp: str = Stamp.UNKNOWN
    recv_stamp: str = Stamp.UNKNOWN
    errors: tuple[PingError, ...] = ()  # ICMP errors for the requests (not received)

    @property
    def received(self) -> int:
        return len({r.seq for r in self.replies if r.addr is not None})

    @property
    def loss(self) -> float:
        """Fraction of probes without a reply (0.0 when nothing was sent)."""
        return 0.0 if self.sent == 0 else max(0.0, 1.0 - self.received / self.sent)

    def rtts_us(self, *, duplicates: bool = False) -> list[float]:
        """The replies' RTTs, one per answered request (with `duplicates`, those of second
        replies too, as ping's text summary counts them)."""
        return [
            r.rtt_us
            for r in self.replies
            if r.addr is not None and r.rtt_us is not None and (duplicates or not r.dup)
        ]

    def stats(self) -> RttStats | None:
        rtts = self.rtts_us()
        if not rtts:
            return None
        avg = sum(rtts) / len(rtts)
        mdev = math.sqrt(sum((x - avg) ** 2 for x in rtts) / len(rtts))
        return RttStats(min(rtts), avg, max(rtts), mdev)

    def to_dict(self) -> dict[str, Any]:
        skip = ("replies", "errors")
        obj = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
        obj["replies"] = [r.to_dict() for r in self.replies]
        obj["errors"] = [e.to_dict() for e in self.errors]
        return obj

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> PingResult:
        replies = obj.get("replies")
        if not isinstance(replies, list):
            raise RecordError("ping result needs a list of replies")
        errors = obj.get("errors", [])
        if not isinstance(errors, list):
            raise RecordError("ping result's errors must be a list")
        rest = {k: v for k, v in obj.items() if k not in ("replies", "errors")}
        parsed = tuple(PingReply.from_dict(r) for r in replies)
        errs = tuple(PingError.from_dict(e) for e in errors)
        return record_from_dict(
            cls,
            {**rest, "replies": parsed, "errors": errs},
            required=("dst", "sent"),
            non_null=RESULT_NON_NULL,
        )


def ping_time(rtt_us: float) -> str:
    """An RTT as iputils ping prints it after ``time=``: 3 decimals below 1 ms, 2 below
    10 ms, 1 below 100 ms, none above (``0.214 ms``, ``1.23 ms``, ``12.3 ms``, ``123 ms``),
    from whole microseconds as ping has them."""
    t = int(rtt_us)  # iputils: timeval difference, whole us
    if t >= 100000 - 50:
        return f"{(t + 500) // 1000} ms"
    if t >= 10000 - 5:
        return f"{(t + 50) // 1000}.{(t + 50) % 1000 // 100} ms"
    if t >= 1000:
        return f"{(t + 5) // 1000}.{(t + 5) % 1000 // 10:02d} ms"
    return f"{t // 1000}.{t % 1000:03d} ms"


#: iputils times a reply only when the payload holds its send time (a struct timeval)
PING_TIMING_MIN_SIZE = 16


def ping_line(
    r: PingReply,
    shown: str | None = None,
    *,
    timing: bool = True,
    ident: int | None = None,
    truncated: bool = False,
) -> str:
    """``64 bytes from ADDR: icmp_seq=N ttl=T time=X ms`` (no newline; r answered), with
    `shown` in place of ADDR if given (iputils: ``NAME (ADDR)`` when the target was a name);
    without `timing` no ``time=`` (iputils with a payload under 16 bytes); with `ident`
    ``ident=N`` after the sequence number (iputils -v); `truncated` (a reply shorter than
    its request) ends it at ``ttl=T (truncated)``, as iputils' gather_statistics; else a
    reply's `wrong_data` follows in ping's lines."""
    size = f"{r.size} bytes" if r.size is not None else "reply"
    ttl = f" ttl={r.ttl}" if r.ttl is not None else ""
    if truncated:
        idn = f" ident={ident}" if ident is not None else ""
        return f"{size} from {shown or r.addr}: icmp_seq={r.seq}{idn}{ttl} (truncated)"
    rtt = f" time={ping_time(r.rtt_us)}" if r.rtt_us is not None and timing else ""
    dup = " (DUP!)" if r.dup else ""
    dup += " (DIFFERENT ADDRESS!)" if r.different_address else ""
    idn = f" ident={ident}" if ident is not None else ""
    wrong = "" if r.wrong_data is None else wrong_data_lines(r.wrong_data)
    return f"{size} from {shown or r.addr}: icmp_seq={r.seq}{idn}{ttl}{rtt}{dup}{wrong}"


def wrong_data_lines(w: WrongData) -> str:
    """iputils' report of a reply whose data differ from the request's: a newline, the
    first wrong byte, then the reply's bytes from 16 on, 32 a line (``#16\t10 11 ...``,
    each byte ``%x`` and a blank, the line's end left open as ping leaves it)."""
    out = f"\nwrong data byte #{w.offset} should be 0x{w.expected:x} but was 0x{w.got:x}"
    for i, byte in enumerate(bytes.fromhex(w.data), start=PING_TIMING_MIN_SIZE):
        if i % 32 == PING_TIMING_MIN_SIZE:
            out += f"\n#{i}\t"
        out += f"{byte:x} "
    return out


def _float32(x: float) -> float:
    """x as a C float (iputils prints the loss percentage of a float with %g)."""
    return float(struct.unpack("f", struct.pack("f", x))[0])


def _isqrt_like_ping(a: int) -> int:
    """iputils' llsqrt: Newton's integer square root (0 for a <= 0)."""
    if a <= 0:
        return 0
    prev, x = None, a
    while prev is None or x < prev:
        prev, x = x, (x + a // x) // 2
    return prev


def ping_statistics(
    result: PingResult,
    elapsed_ms: float | None = None,
    *,
    name: str | None = None,
    errors: int = 0,
    interval: float | None = None,
    timing: bool = True,
    preload: int = 1,
) -> list[str]:
    """iputils ping's closing lines: the title (`name`: the target as given), the counts
    (``+N duplicates``, ``+N errors``: ICMP errors for the requests; the loss with %g,
    ``33.3333%``), the RTT
    summary in whole microseconds as ping computes it, or an empty line when nothing was
    received (ping's closing newline); with `interval` 0 (flood-like) ping's ``ipg/ewma``.
    Without `timing` (a payload too small for ping's timestamp) no RTT summary, as ping."""
    counts = f"{result.sent} packets transmitted, {result.received} received"
    dups = sum(1 for r in result.replies if r.dup and r.addr is not None)
    if dups:
        counts += f", +{dups} duplicates"
    if errors:
        counts += f", +{errors} errors"
    if result.sent:
        loss = (result.sent - result.received) * 100.0 / result.sent
        counts += f", {_float32(loss):g}% packet loss"
        if elapsed_ms is not None:
            counts += f", time {elapsed_ms:.0f}ms"
    lines = [f"--- {name or result.dst} ping statistics ---", counts]
    rtts = [int(x) for x in result.rtts_us(duplicates=True)] if timing else []  # whole us
    parts = []
    if rtts:
        n, tsum = len(rtts), sum(rtts)
        tsum2 = sum(x * x for x in rtts)
        tmavg = tsum // n
        tmvar = (tsum2 - tsum * tsum // n) // n
        tmdev = _isqrt_like_ping(tmvar)
        parts.append(
            "rtt min/avg/max/mdev = "
            + "/".join(f"{v // 1000}.{v % 1000:03d}" for v in (min(rtts), tmavg, max(rtts), tmdev))
            + " ms"
        )
    pipe = ping_pipe(result, preload)
    if pipe > 1:
        parts.append(f"pipe {pipe}")
    if result.received and interval == 0 and result.sent > 1 and elapsed_ms is not None:
        ipg = int(elapsed_ms * 1000) // (result.sent - 1)
        ewma = 0  # ping's smoothed RTT, x8, in arrival (here: sequence) order
        for x in rtts:
            ewma = x * 8 if ewma == 0 else ewma + x - ewma // 8
        parts.append(
            f"ipg/ewma {ipg // 1000}.{ipg % 1000:03d}/{ewma // 8000}.{ewma // 8 % 1000:03d} ms"
        )
    lines.append(", ".join(parts))  # (empty: the closing newline ping prints anyway)
    return lines


def ping_pipe(result: PingResult, preload: int = 1) -> int:
    """iputils' ``pipe``: the most requests outstanding when an answer (reply or ICMP
    error) came, i.e. requests sent by its arrival minus its sequence number plus one
    (0 without the send and arrival times); a duplicate is an answer too, as ping's
    acknowledge(). Over IPv6 only replies count: ping6 reads
    ICMPv6 errors from its error queue, which does not acknowledge the request (an
    IPv4 error comes in on ping's raw socket and does). With `preload` (-l) an answer
    counts as come once the first `preload` requests were sent: ping sends them all
    before it reads any (`-c 3 -l 3` to 127.0.0.1: `pipe 3`, where the kernel's times
    have each reply back before the next request left)."""
    # One send a request: a (DUP!) record carries its request's send time again (it
    # counted twice: `pipe 2` after a duplicate that came before the next request left)
    sends = sorted(
        r.probe_send_ns for r in result.replies if r.probe_send_ns is not None and not r.dup
    )
    arrivals = [(r.seq, r.reply_recv_ns) for r in result.replies if r.addr is not None]
    if ":" not in result.dst:
        arrivals += [(e.seq, e.reply_recv_ns) for e in result.errors]
    pipe = 0
    burst = sends[min(preload, len(sends)) - 1] if sends else 0
    for seq, recv_ns in arrivals:
        if recv_ns is not None and sends:
            pipe = max(pipe, bisect.bisect_right(sends, max(recv_ns, burst)) - seq + 1)
    return pipe


def format_ping(result: PingResult) -> str:
    """Text like iputils ``ping -n``: one line per reply, then the summary."""
    lines = [f"PING {result.dst} ({result.dst})"]
    lines += [ping_line(r) for r in result.replies if r.addr is not None]
    lines.append("")
    lines += ping_statistics(result)
    return "\n".join(lines) + "\n"
