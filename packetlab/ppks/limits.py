"""One certificate's resource limits (PROTOCOL.md §4.3 cert_limit names).

`CertLimits.from_pairs` checks and reads one certificate's cert_limit; how the limits of
a chain combine (§4.5) is `chainlimits`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from packetlab.wire.nvlist import NVPair

from .errors import CertificateError, Reason

__all__ = [
    "DEFAULT_SEND_BURST",
    "NS_PER_S",
    "BurstRate",
    "CertLimits",
    "IPNetwork",
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
    # int() refuses over 4,300 digits (ValueError); no u64 has more than 20 of them
    digits = value.lstrip("0") or "0"
    if len(digits) > 20 or int(digits) > U64_MAX:
        raise _bad(Reason.BAD_DECIMAL, name, value, "does not fit in 64 bits")
    return int(digits)


def parse_burst_rates(name: str, value: str) -> tuple[BurstRate, ...]:
    rates = []
    for item in value.split(","):
        cnt, sep, win = item.partition("/")
        ok = sep and cnt.isascii() and cnt.isdigit() and win.isascii() and win.isdigit()
        if not ok:
            raise _bad(Reason.BAD_BURST_RATE, name, value, f"{item!r} is not COUNT/WINDOW")
        cnt, win = cnt.lstrip("0") or "0", win.lstrip("0") or "0"
        if len(cnt) > 20 or len(win) > 20:  # int() refuses over 4,300 digits
            raise _bad(Reason.BAD_BURST_RATE, name, value, "does not fit in 64 bits")
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


def min_present(values: Iterable[int | None]) -> int | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None
