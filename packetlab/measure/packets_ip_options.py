"""The IPv4 options ping and traceroute send and read: ping -R's record route
(`record_route_option`, `recorded_route`), ping -T's timestamps (`timestamp_option`,
`stamp_option`: what a Linux host's IP layer adds; `received_timestamps`,
`ip_timestamps`), a loose source route (traceroute -g, ping HOST... TARGET:
`loose_source_route`, `source_route`), and a packet with options put in its header
(`with_ip_options`). Sans-IO, stdlib only; the options are walked by
`packets.option_spans`."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from packetlab.measure.packets import (
    IPOPT_LSRR,
    IPOPT_NOP,
    IPOPT_RR,
    IPOPT_SSRR,
    IPOPT_TS,
    Address,
    AddressLike,
    as_address,
    ipv4_header,
    option_spans,
    parse_ipv4_header,
)

# ping -T's kinds of timestamp option (RFC 791's flags)
TS_TSONLY, TS_TSANDADDR, TS_PRESPEC = 0, 1, 3
TIMESTAMP_KINDS = {"tsonly": TS_TSONLY, "tsandaddr": TS_TSANDADDR, "tsprespec": TS_PRESPEC}
MAX_PRESPEC = 4  # ping -T tsprespec: at most 4 addresses (iputils' limit)
MAX_GATEWAYS = 8  # traceroute -g over IPv4: at most 8 (Butskoy's)
MAX_PING_ROUTE = 9  # ping HOST... TARGET: at most 9 hosts before the target (iputils')


def record_route_option(src: AddressLike | None = None) -> bytes:
    """ping -R's IPv4 options: a NOP and a record route option with room for nine
    addresses (40 bytes, all the header has); with `src` the first holds it, as the
    sender's kernel records its own address when it sends the option (a raw packet
    handed over whole gets no such entry)."""
    if src is None:
        return bytes([IPOPT_NOP, IPOPT_RR, 39, 4]) + bytes(36)
    return bytes([IPOPT_NOP, IPOPT_RR, 39, 8]) + as_address(src).packed + bytes(32)


def ms_of_day(ns: int) -> int:
    """An IP timestamp (RFC 791): milliseconds since midnight UT of a time in ns since the
    epoch, as Linux's inet_current_timestamp."""
    return ns // 1_000_000 % 86_400_000


def _stamps(address: Address, local: Callable[[Address], bool]) -> bool:
    """Whether a host stamps a tsprespec slot naming `address`: Linux stamps it unless it
    is another host's unicast address (inet_addr_type != RTN_UNICAST)."""
    a = ipaddress.IPv4Address(address)
    broadcast = a.packed[0] == 0 or a == ipaddress.IPv4Address("255.255.255.255")
    return local(a) or a.is_loopback or a.is_multicast or broadcast


def timestamp_option(
    kind: int,
    prespec: Sequence[AddressLike] = (),
    *,
    src: AddressLike | None = None,
    sent_ns: int | None = None,
) -> bytes:
    """ping -T's IPv4 timestamp option as iputils asks its kernel for it, with the entry
    that kernel adds when it sends the request (a raw packet handed over whole gets none):
    `sent_ns` (ns since the epoch) as the first timestamp, `src` before it with
    tsandaddr; with tsprespec only when the first address is `src`'s host's own.
    tsonly: room for 9 timestamps (40 bytes); tsandaddr: 4 addresses and times (36, and
    4 bytes of EOL); tsprespec: the given addresses (at most 4), each with a time slot.
    Without `sent_ns` the option is as iputils gives it to setsockopt."""
    if kind == TS_TSONLY:
        option = bytearray([IPOPT_TS, 40, 5, kind]) + bytes(36)
    elif kind == TS_TSANDADDR:
        option = bytearray([IPOPT_TS, 36, 5, kind]) + bytes(32)
    elif kind == TS_PRESPEC:
        if len(prespec) > MAX_PRESPEC:
            raise ValueError(f"tsprespec takes at most {MAX_PRESPEC} addresses, not {len(prespec)}")
        option = bytearray([IPOPT_TS, 4 + 8 * len(prespec), 5, kind])
        for a in prespec:
            option += ipaddress.IPv4Address(str(a)).packed + bytes(4)
    else:
        raise ValueError(f"timestamp option kind must be 0, 1 or 3, not {kind}")
    if sent_ns is not None:
        at = src if src is None else ipaddress.IPv4Address(str(src))
        stamp_option(option, at, sent_ns, lambda a: a == at)
    return bytes(option) + bytes(-len(option) % 4)


def stamp_option(
    option: bytearray,
    host: Address | None,
    ns: int,
    local: Callable[[Address], bool],
) -> None:
    """What a Linux host's IP layer does to the timestamp option `option` (in place) of a
    packet it sends or receives as `host` at `ns`: its time in the next free slot (its
    address too with tsandaddr; tsprespec: when the next slot names a local address), or,
    the option being full, one more unrecorded hop in the flags (not with tsprespec)."""
    olen, ptr, flags = option[1], option[2], option[3]
    kind = flags & 0x0F
    if ptr > olen:
        if kind != TS_PRESPEC and flags >> 4 < 15:
            option[3] = (flags + 0x10) & 0xFF
        return
    if kind == TS_TSONLY and ptr + 3 <= olen:
        option[ptr - 1 : ptr + 3] = ms_of_day(ns).to_bytes(4, "big")
        option[2] += 4
    elif kind == TS_TSANDADDR and ptr + 7 <= olen and host is not None:
        option[ptr - 1 : ptr + 3] = host.packed
        option[ptr + 3 : ptr + 7] = ms_of_day(ns).to_bytes(4, "big")
        option[2] += 8
    elif kind == TS_PRESPEC and ptr + 7 <= olen:
        named = ipaddress.IPv4Address(bytes(option[ptr - 1 : ptr + 3]))
        if _stamps(named, local):
            option[ptr + 3 : ptr + 7] = ms_of_day(ns).to_bytes(4, "big")
            option[2] += 8


@dataclass(frozen=True, slots=True)
class IpTimestamps:
    """A reply's IPv4 timestamp option as iputils ping reads it: the entries up to its
    pointer, each (address or None with tsonly, ms since midnight UT or None for an
    address whose time did not fit), the option's kind and its unrecorded hops."""

    kind: int
    entries: tuple[tuple[str | None, int | None], ...]
    unrecorded: int = 0


def _find_option(options: bytes, want: int) -> bytes | None:
    """The option of kind `want` among IPv4 `options` (None without one)."""
    for at, olen in option_spans(options):
        if options[at] == want:
            return options[at : at + olen]
    return None


def received_timestamps(
    options: bytes,
    received_by: AddressLike,
    recv_ns: int,
    local: Callable[[Address], bool] | None = None,
) -> bytes:
    """IPv4 `options` as the receiving host's IP layer leaves them (a capture taken before
    it has their raw form): a timestamp option gets its time (`stamp_option`; `local`:
    whether an address is that host's, default: it is `received_by`)."""
    out = bytearray(options)
    host = ipaddress.IPv4Address(str(received_by))
    for at, olen in option_spans(options):
        if out[at] == IPOPT_TS and olen >= 4:
            option = out[at : at + olen]
            stamp_option(option, host, recv_ns, local or (lambda a: a == host))
            out[at : at + olen] = option
    return bytes(out)


def ip_timestamps(options: bytes) -> IpTimestamps | None:
    """The timestamp option among IPv4 `options` as iputils' pr_options reads it (None
    without one, or when it holds nothing: ping prints no `TS:` line then)."""
    option = _find_option(options, IPOPT_TS)
    if option is None or len(option) < 4:
        return None
    olen, ptr, flags = option[1], option[2], option[3]
    left = min(ptr, olen) - 5
    if left <= 0:
        return None
    entries: list[tuple[str | None, int | None]] = []
    at = 4
    while left > 0:
        addr = None
        if flags & 0x0F != TS_TSONLY:
            addr = str(ipaddress.IPv4Address(option[at : at + 4].ljust(4, b"\0")))
            at += 4
            left -= 4
            if left <= 0:
                entries.append((addr, None))
                break
        entries.append((addr, int.from_bytes(option[at : at + 4].ljust(4, b"\0"), "big")))
        at += 4
        left -= 4
    return IpTimestamps(flags & 0x0F, tuple(entries), flags >> 4)


def loose_source_route(
    gateways: Sequence[AddressLike],
    dst: AddressLike,
    *,
    target_listed: bool = True,
    most: int = MAX_GATEWAYS,
) -> tuple[Address, bytes]:
    """A loose source route through `gateways` to `dst` as the sender's kernel sends it:
    the first gateway (the packet's destination address) and the options (a NOP and a
    loose source route option). The tool gives its kernel a route (IP_OPTIONS): Butskoy's
    traceroute -g the gateways then `dst` (`target_listed`), iputils ping's HOST...
    TARGET the hosts only; the kernel moves the route's first address into the header,
    the others up one slot, and writes the final destination in the last slot. So
    traceroute's option holds the other gateways and `dst` twice, ping's the other hosts
    and `dst` once. At most `most` gateways (traceroute's 8, ping's 9: `MAX_PING_ROUTE`)."""
    if not 1 <= len(gateways) <= most:
        raise ValueError(f"1..{most} gateways over IPv4, not {len(gateways)}")
    hops = [ipaddress.IPv4Address(str(g)) for g in gateways]
    final = ipaddress.IPv4Address(str(dst))
    given = [*hops, final] if target_listed else hops  # what the tool hands its kernel
    route = [*given[1:], final]
    option = bytes([IPOPT_NOP, IPOPT_LSRR, 3 + 4 * len(route), 4])
    return hops[0], option + b"".join(a.packed for a in route)


@dataclass(frozen=True, slots=True)
class SourceRoute:
    """A reply's loose (or strict) source route option: its pointer and the addresses
    it holds (a Linux host answering a source-routed echo request sends its reply back
    along the route reversed, the option's pointer past the end)."""

    strict: bool
    pointer: int
    addresses: tuple[str, ...]

    def as_iputils_prints(self) -> tuple[str, ...]:
        """The words iputils ping (20221126) prints on its `LSRR:` lines: its pr_options
        reads them from the option's pointer byte on, two bytes before the addresses
        (`10.77.3.2` after a pointer of 12 reads `12.10.77.3`), one word for every four
        bytes of the option past its first four, rounded up."""
        body = bytes([self.pointer]) + b"".join(
            ipaddress.IPv4Address(a).packed for a in self.addresses
        )
        olen = 3 + 4 * len(self.addresses)
        words = range(0, 4 * -(-(olen - 4) // 4), 4) if olen > 4 else range(0)
        return tuple(str(ipaddress.IPv4Address(body[w : w + 4].ljust(4, b"\0"))) for w in words)


def source_route(options: bytes) -> SourceRoute | None:
    """The loose or strict source route option among IPv4 `options` (None without one):
    its pointer and its whole words of addresses."""
    for at, olen in option_spans(options):
        if options[at] in (IPOPT_LSRR, IPOPT_SSRR) and olen >= 3:
            words = options[at + 3 : at + olen]
            return SourceRoute(
                options[at] == IPOPT_SSRR,
                options[at + 2],
                tuple(
                    str(ipaddress.IPv4Address(words[w : w + 4]))
                    for w in range(0, len(words) - 3, 4)
                ),
            )
    return None


def with_ip_options(packet: bytes, options: bytes, dst: AddressLike | None = None) -> bytes:
    """The IPv4 `packet` with `options` (padded with EOL to whole words) in its header,
    and `dst` as its destination address if given: what a kernel sends for a socket with
    IP_OPTIONS (a source route's first gateway in the header: `loose_source_route`)."""
    h = parse_ipv4_header(packet)
    body = packet[h.header_length : h.total_length]
    head = ipv4_header(
        h.src, h.dst if dst is None else dst, h.proto, len(body), ttl=h.ttl, tos=h.tos,
        ident=h.ident, flags=h.flags, frag_offset=h.frag_offset,
        options=options + bytes(-len(options) % 4),
    )  # fmt: skip
    return head + body


def recorded_route(
    options: bytes, received_by: AddressLike | None = None
) -> tuple[str, ...] | None:
    """The addresses a record route option among IPv4 `options` holds, as iputils ping
    reads them (up to its pointer; 0.0.0.0 for an empty slot), or None without one. With
    `received_by`, that address is added when the option has room, as the receiving
    host's kernel records it (a capture taken before the IP layer has no such entry)."""
    found = _find_option(options, IPOPT_RR)
    if found is None or len(found) < 3:
        return None
    option, olen = bytearray(found), len(found)
    if received_by is not None and option[2] + 3 <= olen:
        option[option[2] - 1 : option[2] + 3] = as_address(received_by).packed
        option[2] += 4
    used = min(option[2], olen) - 4
    if used <= 0:
        return None
    words = (bytes(option[off : off + 4]).ljust(4, b"\0") for off in range(3, 3 + used, 4))
    return tuple(str(ipaddress.IPv4Address(w)) for w in words)
