"""Resource limits (PROTOCOL.md §4.3 cert_limit names, §4.5 how they combine).

`CertLimits.from_pairs` checks and reads one certificate's cert_limit. `combine_limits`
merges the limits of the exppriv/delpriv certificates of a controller chain into the
`Limits` an endpoint enforces.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from packetlab.wire.nvlist import NVPair

from .errors import CertificateError, Reason

if TYPE_CHECKING:
    from .cert import Certificate

__all__ = [
    "DEFAULT_SEND_BURST",
    "NS_PER_S",
    "BurstRate",
    "CertLimits",
    "IPNetwork",
    "Limits",
    "combine_limits",
    "experiment_end_time",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

U64_MAX = 2**64 - 1
NS_PER_S = 1_000_000_000
DIGEST_HEX_LEN = 64


class BurstRate(NamedTuple):
    """At most `amount` (bytes or packets) in any sliding window of `window_ns` ticks."""

    amount: int
    window_ns: int

    def __str__(self) -> str:
        return f"{self.amount}/{self.window_ns}"


# Built-in send limit of the reference endpoint: 10 Mb/s over a 10 s window [rlim.c].
DEFAULT_SEND_BURST = BurstRate(12_500_000, 10 * NS_PER_S)

# Counter names, in the order of the reference rlim record.
COUNTERS = ("max_send_pkt", "max_recv_pkt", "max_send_byte", "max_recv_byte", "max_exp_period")
_DECIMALS = ("max_num_priority", "max_socket_count", *COUNTERS)


def _bad(reason: Reason, name: str, value: str, why: str) -> CertificateError:
    return CertificateError(reason, f"{name}={value!r}: {why}", field=name)


def parse_digests(name: str, value: str) -> tuple[bytes, ...]:
    reason = Reason.BAD_FILTER_DIGESTS if name == "filter" else Reason.BAD_MONITOR_DIGESTS
    if not value or len(value) % DIGEST_HEX_LEN:
        raise _bad(reason, name, value, "must be whole 64-hex-digit SHA-256 digests")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise _bad(reason, name, value, "not hexadecimal") from None
    return tuple(raw[i : i + 32] for i in range(0, len(raw), 32))


def parse_decimal(name: str, value: str) -> int:
    if not value or not value.isascii() or not value.isdigit():
        raise _bad(Reason.BAD_DECIMAL, name, value, "must be a decimal number")
    n = int(value)
    if n > U64_MAX:
        raise _bad(Reason.BAD_DECIMAL, name, value, "does not fit in 64 bits")
    return n


def parse_burst_rates(name: str, value: str) -> tuple[BurstRate, ...]:
    rates = []
    for item in value.split(","):
        cnt, sep, win = item.partition("/")
        ok = sep and cnt.isascii() and cnt.isdigit() and win.isascii() and win.isdigit()
        if not ok:
            raise _bad(Reason.BAD_BURST_RATE, name, value, f"{item!r} is not COUNT/WINDOW")
        c, w = int(cnt), int(win)
        if w == 0:
            raise _bad(Reason.BAD_BURST_RATE, name, value, "window must be > 0")
        if c > U64_MAX or w > U64_MAX:
            raise _bad(Reason.BAD_BURST_RATE, name, value, "does not fit in 64 bits")
        rates.append(BurstRate(c, w))
    return tuple(rates)


def parse_network(text: str) -> IPNetwork:
    """`addr[/prefixlen]`; IPv4 defaults to /32, IPv6 to /128. Host bits may be set."""
    addr, sep, plen = text.partition("/")
    ip = ipaddress.ip_address(addr)  # ValueError if not an address
    if sep:
        if not (plen.isascii() and plen.isdigit()) or len(plen) > 3:
            raise ValueError(f"bad prefix length {plen!r}")
        return ipaddress.ip_network((ip, int(plen)), strict=False)
    return ipaddress.ip_network(ip)


def parse_valid_dest(name: str, value: str) -> tuple[IPNetwork, ...]:
    nets = []
    for item in value.split(","):
        try:
            nets.append(parse_network(item))
        except ValueError as e:
            raise _bad(Reason.BAD_VALID_DEST, name, value, f"{item!r}: {e}") from None
    return tuple(nets)


@dataclass(frozen=True)
class CertLimits:
    """The cert_limit of one certificate. None means the field is absent (unlimited)."""

    monitor_digests: tuple[bytes, ...] | None = None
    filter_digests: tuple[bytes, ...] | None = None
    max_num_priority: int | None = None
    max_socket_count: int | None = None
    max_exp_period: int | None = None  # ns
    max_send_byte: int | None = None
    max_send_pkt: int | None = None
    max_recv_byte: int | None = None
    max_recv_pkt: int | None = None
    max_burst_rate_byte: tuple[BurstRate, ...] | None = None
    max_burst_rate_pkt: tuple[BurstRate, ...] | None = None
    valid_dest: tuple[IPNetwork, ...] | None = None
    src_ip_spoofing: bool | None = None
    # Reflex programs the experimenter may attach (docs/reflexes.md; not a reference name:
    # the reference keeps it as an aux field, and certificates without it are unchanged).
    reflex_digests: tuple[bytes, ...] | None = None
    optional: frozenset[str] = frozenset()  # names written with the '*' marker
    aux: tuple[NVPair, ...] = ()  # names we do not interpret, kept in order

    @classmethod
    def from_pairs(cls, pairs: Iterable[NVPair]) -> CertLimits:
        """Check every known field's value; unknown names are kept as `aux`."""
        kw: dict[str, object] = {}
        optional = set()
        aux = []
        for p in pairs:
            name, value = p.name, p.value
            if p.optional:
                optional.add(name)
            if name in ("monitor", "filter", "reflex"):
                kw[f"{name}_digests"] = parse_digests(name, value)
            elif name in _DECIMALS:
                kw[name] = parse_decimal(name, value)
            elif name in ("max_burst_rate_byte", "max_burst_rate_pkt"):
                kw[name] = parse_burst_rates(name, value)
            elif name == "valid_dest":
                kw[name] = parse_valid_dest(name, value)
            elif name == "src_ip_spoofing":
                if value not in ("0", "1"):
                    raise _bad(Reason.BAD_SRC_IP_SPOOFING, name, value, "must be 0 or 1")
                kw[name] = value == "1"
            else:
                aux.append(p)
        return cls(optional=frozenset(optional), aux=tuple(aux), **kw)  # type: ignore[arg-type]

    def to_pairs(self) -> list[NVPair]:
        """Encode back in ppksman's field order (then the aux pairs)."""
        out: list[tuple[str, str]] = []
        if self.filter_digests is not None:
            out.append(("filter", "".join(d.hex() for d in self.filter_digests)))
        if self.monitor_digests is not None:
            out.append(("monitor", "".join(d.hex() for d in self.monitor_digests)))
        if self.reflex_digests is not None:
            out.append(("reflex", "".join(d.hex() for d in self.reflex_digests)))
        for name in ("max_num_priority", "max_socket_count", *COUNTERS_PPKSMAN_ORDER):
            v = getattr(self, name)
            if v is not None:
                out.append((name, str(v)))
        for name in ("max_burst_rate_byte", "max_burst_rate_pkt"):
            rates = getattr(self, name)
            if rates is not None:
                out.append((name, ",".join(str(r) for r in rates)))
        if self.valid_dest is not None:
            out.append(("valid_dest", ",".join(_net_text(n) for n in self.valid_dest)))
        if self.src_ip_spoofing is not None:
            out.append(("src_ip_spoofing", "1" if self.src_ip_spoofing else "0"))
        pairs = [NVPair(n, v, n in self.optional) for n, v in out]
        return pairs + list(self.aux)


COUNTERS_PPKSMAN_ORDER = (
    "max_exp_period",
    "max_send_byte",
    "max_send_pkt",
    "max_recv_byte",
    "max_recv_pkt",
)


def _net_text(net: IPNetwork) -> str:
    full = 32 if net.version == 4 else 128
    return str(net.network_address) if net.prefixlen == full else str(net)


def _min(values: Iterable[int | None]) -> int | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


@dataclass(frozen=True)
class Limits:
    """Limits in force for one experiment session (§4.5). None means unlimited."""

    monitor_digests: tuple[bytes, ...] = ()
    max_num_priority: int | None = None
    max_socket_count: int | None = None
    max_exp_period: int | None = None
    max_send_byte: int | None = None
    max_send_pkt: int | None = None
    max_recv_byte: int | None = None
    max_recv_pkt: int | None = None
    burst_rate_byte: tuple[BurstRate, ...] = ()
    burst_rate_pkt: tuple[BurstRate, ...] = ()
    # One tuple per certificate that has valid_dest: a destination must match every one.
    valid_dest: tuple[tuple[IPNetwork, ...], ...] = ()
    src_ip_spoofing: bool = False
    filter_digests: tuple[bytes, ...] = field(default=())

    def dest_allowed(self, addr: str | IPAddress) -> bool:
        """True when `addr` matches at least one entry of every cert's valid_dest."""
        ip = ipaddress.ip_address(addr) if isinstance(addr, str) else addr
        return all(any(ip in net for net in nets) for nets in self.valid_dest)

    def priority_allowed(self, priority: int) -> bool:
        return self.max_num_priority is None or priority <= self.max_num_priority


def combine_limits(
    certs: Sequence[Certificate] | Sequence[CertLimits],
    *,
    default_send_burst: BurstRate | None = DEFAULT_SEND_BURST,
) -> Limits:
    """Merge the limits of a chain's exppriv/delpriv certificates (§4.5).

    Counters, priority and socket count take the minimum; valid_dest is an AND of the
    per-cert lists; every burst window applies (plus the built-in default send window
    unless `default_send_burst` is None, or an exppriv certificate of the chain sets
    max_burst_rate_byte); monitor digests are the union, in order.

    The built-in window stands in for an operator who said nothing. An exppriv certificate
    is the endpoint operator's own grant (signed by the EOp key), so byte windows it sets
    replace the built-in one: the way to allow more than 10 Mb/s (beyond the reference,
    which always adds it; docs/security.md). A delpriv (signed by the experimenter) cannot
    lift it, and every window of every certificate still applies.
    src_ip_spoofing is granted only when every limit-bearing cert says 1 (the reference
    never grants it, §4.5 QUIRK; we apply the intended AND, absent meaning no).
    Certificates of leaf types carry no cert_limit and are skipped.
    """
    parts: list[CertLimits] = []
    for c in certs:
        if isinstance(c, CertLimits):
            parts.append(c)
        elif c.limits is not None:
            parts.append(c.limits)
        elif c.cert_type.is_ca:
            parts.append(CertLimits())
    monitors: list[bytes] = []
    filters: list[bytes] = []
    if any(_operator_sets_byte_rate(c) for c in certs):
        default_send_burst = None
    byte_rates: list[BurstRate] = [default_send_burst] if default_send_burst else []
    pkt_rates: list[BurstRate] = []
    dests = []
    for p in parts:
        for d in p.monitor_digests or ():
            if d not in monitors:
                monitors.append(d)
        for d in p.filter_digests or ():
            if d not in filters:
                filters.append(d)
        byte_rates += [r for r in p.max_burst_rate_byte or () if r not in byte_rates]
        pkt_rates += [r for r in p.max_burst_rate_pkt or () if r not in pkt_rates]
        if p.valid_dest is not None:
            dests.append(p.valid_dest)
    return Limits(
        monitor_digests=tuple(monitors),
        filter_digests=tuple(filters),
        max_num_priority=_min(p.max_num_priority for p in parts),
        max_socket_count=_min(p.max_socket_count for p in parts),
        max_exp_period=_min(p.max_exp_period for p in parts),
        max_send_byte=_min(p.max_send_byte for p in parts),
        max_send_pkt=_min(p.max_send_pkt for p in parts),
        max_recv_byte=_min(p.max_recv_byte for p in parts),
        max_recv_pkt=_min(p.max_recv_pkt for p in parts),
        burst_rate_byte=tuple(byte_rates),
        burst_rate_pkt=tuple(pkt_rates),
        valid_dest=tuple(dests),
        src_ip_spoofing=bool(parts) and all(p.src_ip_spoofing for p in parts),
    )


def _operator_sets_byte_rate(c: Certificate | CertLimits) -> bool:
    from .cert import CertType

    if isinstance(c, CertLimits) or c.cert_type is not CertType.EXPPRIV or c.limits is None:
        return False
    return bool(c.limits.max_burst_rate_byte)


def experiment_end_time(
    certs: Iterable[Certificate], now_ns: int, remaining_runtime_ns: int | None
) -> int:
    """When the endpoint must end the experiment (ns since the epoch, §4.5):
    min(notAfter of the certs, now + remaining runtime)."""
    ends = [c.not_after * NS_PER_S for c in certs]
    if remaining_runtime_ns is not None:
        ends.append(now_ns + max(0, remaining_runtime_ns))
    if not ends:
        raise ValueError("no certificate and no runtime limit: no end time")
    return min(ends)
