"""The limits in force for a session: a controller chain's certificates combined (§4.5).

`combine_limits` merges the limits of the exppriv/delpriv certificates of a controller
chain into the `Limits` an endpoint enforces; `experiment_end_time` is when it must end.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .cert import Certificate, CertType
from .limits import (
    DEFAULT_SEND_BURST,
    NS_PER_S,
    BurstRate,
    CertLimits,
    DestList,
    IPAddress,
    IPNetwork,
    min_present,
)

__all__ = ["Limits", "allowed_reflexes", "combine_limits", "experiment_end_time"]


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
    valid_dest: tuple[Sequence[IPNetwork], ...] = ()
    src_ip_spoofing: bool = False
    filter_digests: tuple[bytes, ...] = field(default=())

    def dest_allowed(self, addr: str | IPAddress) -> bool:
        """True when `addr` matches at least one entry of every cert's valid_dest."""
        ip = ipaddress.ip_address(addr) if isinstance(addr, str) else addr
        return all(
            nets.matches(ip) if isinstance(nets, DestList) else any(ip in n for n in nets)
            for nets in self.valid_dest
        )

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
        max_num_priority=min_present(p.max_num_priority for p in parts),
        max_socket_count=min_present(p.max_socket_count for p in parts),
        max_exp_period=min_present(p.max_exp_period for p in parts),
        max_send_byte=min_present(p.max_send_byte for p in parts),
        max_send_pkt=min_present(p.max_send_pkt for p in parts),
        max_recv_byte=min_present(p.max_recv_byte for p in parts),
        max_recv_pkt=min_present(p.max_recv_pkt for p in parts),
        burst_rate_byte=tuple(byte_rates),
        burst_rate_pkt=tuple(pkt_rates),
        valid_dest=tuple(dests),
        src_ip_spoofing=bool(parts) and all(p.src_ip_spoofing for p in parts),
    )


def _operator_sets_byte_rate(c: Certificate | CertLimits) -> bool:
    if isinstance(c, CertLimits) or c.cert_type is not CertType.EXPPRIV or c.limits is None:
        return False
    return bool(c.limits.max_burst_rate_byte)


def allowed_reflexes(certs: Iterable[Certificate]) -> frozenset[bytes]:
    """The reflex digests a controller chain allows (docs/reflexes.md): the exppriv
    certificate's `reflex=` list (the operator's grant; none without it), narrowed by
    every delpriv that has one.

    A reflex is a permission, not a limit to add up: the union of every certificate's
    list (as it was) let an experimenter's own delpriv allow reflexes the operator never
    listed, as it could not with any other field (session 20)."""
    grants: list[frozenset[bytes]] = []
    top: frozenset[bytes] | None = None
    for c in certs:
        digests = c.limits.reflex_digests if c.limits is not None else None
        if c.cert_type is CertType.EXPPRIV:
            top = frozenset(digests or ())
        elif c.cert_type is CertType.DELPRIV and digests is not None:
            grants.append(frozenset(digests))
    if top is None:  # no operator grant in the chain
        return frozenset()
    for g in grants:
        top &= g
    return top


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
