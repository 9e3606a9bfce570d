"""One certificate's resource limits (PROTOCOL.md §4.3 cert_limit names).

`CertLimits.from_pairs` checks and reads one certificate's cert_limit; how the limits of
a chain combine (§4.5) is `chainlimits`.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from packetlab.wire.nvlist import NVPair, quoted

from .errors import CertificateError, Reason

__all__ = [
    "DEFAULT_SEND_BURST",
    "NS_PER_S",
    "BurstRate",
    "CertLimits",
    "DestList",
    "IPNetwork",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

U64_MAX = 2**64 - 1
NS_PER_S = 1_000_000_000
DIGEST_HEX_LEN = 64
# Caps on what one cert_limit may list. Any stranger can make a CA-type certificate and
# present it next to an agent leaf, and each entry cost ~10-30 us to parse, on every
# handshake. No legitimate certificate needs more (ppksman writes what its operator types;
# the reference endpoint runs at most MAX_PROG_NUM = 100 monitors, PROTOCOL.md §3).
MAX_VALID_DEST = 1024  # valid_dest entries per certificate
MAX_BURST_RATES = 64  # COUNT/WINDOW items per max_burst_rate_* field


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
    return CertificateError(reason, f"{name}={quoted(value)}: {why}", field=name)


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
    if value.count(",") >= MAX_BURST_RATES:  # counted before any is parsed
        n = value.count(",") + 1
        raise CertificateError(
            Reason.TOO_MANY_BURST_RATES,
            f"{name}: {n} windows (at most {MAX_BURST_RATES} per certificate)",
            field=name,
        )
    rates = []
    for item in value.split(","):
        cnt, sep, win = item.partition("/")
        ok = sep and cnt.isascii() and cnt.isdigit() and win.isascii() and win.isdigit()
        if not ok:
            raise _bad(Reason.BAD_BURST_RATE, name, value, f"{quoted(item)} is not COUNT/WINDOW")
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


def _dest_entry(text: str) -> tuple[int, int, int]:
    """(version, address as int, prefixlen) of `addr[/prefixlen]`: inet_pton in C, the
    same forms `ipaddress` takes (dotted quads without leading zeros, RFC 4291 text),
    at a tenth of its cost. ValueError if not an address."""
    addr, sep, plen = text.partition("/")
    family, version, full = (socket.AF_INET6, 6, 128) if ":" in addr else (socket.AF_INET, 4, 32)
    try:
        packed = socket.inet_pton(family, addr)
    except OSError:
        raise ValueError(f"{quoted(addr)} is not an IPv{version} address") from None
    if not sep:
        return version, int.from_bytes(packed, "big"), full
    if not (plen.isascii() and plen.isdigit()) or len(plen) > 3 or int(plen) > full:
        hint = " (a prefix length, not a netmask)" if "." in plen or ":" in plen else ""
        raise ValueError(f"bad prefix length {quoted(plen)}{hint}")
    return version, int.from_bytes(packed, "big"), int(plen)


class DestList(Sequence[IPNetwork]):
    """The valid_dest of one certificate: checked when parsed, kept as integers, and made
    into `ipaddress` networks only when read as a sequence (a handshake parses every
    certificate presented, and only the verified chain's limits are ever used)."""

    __slots__ = ("_entries", "_nets")

    def __init__(self, entries: Sequence[tuple[int, int, int]]) -> None:
        self._entries = tuple(entries)
        self._nets: tuple[IPNetwork, ...] | None = None

    def _networks(self) -> tuple[IPNetwork, ...]:
        if self._nets is None:
            self._nets = tuple(
                ipaddress.IPv4Network((a, p), strict=False)
                if v == 4
                else ipaddress.IPv6Network((a, p), strict=False)
                for v, a, p in self._entries
            )
        return self._nets

    def matches(self, ip: IPAddress) -> bool:
        """True when `ip` is in one of the entries (no `ipaddress` object made)."""
        version, x = ip.version, int(ip)
        full = 32 if version == 4 else 128
        return any(v == version and (x ^ a) >> full - p == 0 for v, a, p in self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, i: int) -> IPNetwork:  # type: ignore[override]
        return self._networks()[i]

    def __iter__(self) -> Iterator[IPNetwork]:
        return iter(self._networks())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DestList):
            return self._entries == other._entries
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    def __hash__(self) -> int:
        return hash(self._entries)

    def __repr__(self) -> str:
        return f"DestList({len(self._entries)} entries)"


def parse_network(text: str) -> IPNetwork:
    """`addr[/prefixlen]`; IPv4 defaults to /32, IPv6 to /128. Host bits may be set."""
    v, a, p = _dest_entry(text)
    if v == 4:
        return ipaddress.IPv4Network((a, p), strict=False)
    return ipaddress.IPv6Network((a, p), strict=False)


def parse_valid_dest(name: str, value: str) -> DestList:
    n = value.count(",") + 1
    if n > MAX_VALID_DEST:  # counted before any is parsed
        raise CertificateError(
            Reason.TOO_MANY_VALID_DEST,
            f"{name}: {n} networks (at most {MAX_VALID_DEST} per certificate)",
            field=name,
        )
    entries = []
    for item in value.split(","):
        try:
            entries.append(_dest_entry(item))
        except ValueError as e:
            raise _bad(Reason.BAD_VALID_DEST, name, value, f"{quoted(item)}: {e}") from None
    return DestList(entries)


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
    valid_dest: Sequence[IPNetwork] | None = None  # a DestList when parsed
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
