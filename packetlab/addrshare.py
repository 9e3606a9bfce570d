"""One source address's share of a server's link budget (sans-IO).

The broker's subscribed and publishing links and the proxy's backlogs and splices are
capped by the descriptor limit (`packetlab.fdcap.link_budget`). Without a share, one
stranger (anyone may subscribe to a public channel, or register backlogs without a
certificate) took the whole budget from one address, and every real endpoint or manager
was refused. Endpoints and managers behind one NAT share an address, so the share is a
fraction of the budget (`DEFAULT_SHARE`, a quarter: one address never takes more, and it
takes a NAT of that many clients), never below a floor (`SHARE_FLOOR`: a manager can
always fill one snikey's default backlog, and a small NAT works under a low limit) unless
the floor is more than half the budget (then half: a low descriptor limit).
An IPv6 address counts by its /64 (one host gets a whole /64), as the broker's
per-address publication share.

Refusals are logged once per address per `interval` (a refused flood retries at once),
with the number refused since that address's last line, and within the port's own
`LogBudget` (many addresses, a /48 of /64s, would otherwise be a line each).
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import TypeVar

from packetlab.logbudget import LogBudget

__all__ = [
    "DEFAULT_SHARE",
    "SHARE_FLOOR",
    "AddressShare",
    "oldest_of_busiest",
    "parse_share",
    "source_of",
]

DEFAULT_SHARE = 0.25
SHARE_FLOOR = 64  # links: a snikey's default backlog (--backlog-per-snikey)
T = TypeVar("T")
_LOGGED_MAX = 4096  # addresses whose last refusal line is remembered (oldest forgotten)


def source_of(address: str) -> str:
    """The source an address counts under: an IPv6 address's /64 (an IPv4-mapped one is
    its IPv4 address), any other address as it is."""
    if ":" not in address:
        return address
    try:
        ip = ipaddress.IPv6Address(address.split("%", 1)[0])
    except ValueError:
        return address
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))


def oldest_of_busiest(pending: Iterable[T], counts: AddressShare, address: Callable[[T], str]) -> T:
    """The connection to close for a new one when `pending` (oldest first) is full: the
    oldest of the source holding the most (`counts`: pending per source). The oldest of
    all was a real client's whenever a flood from one address had come after it."""
    busiest = max(counts.held, key=counts.held.__getitem__, default=None)
    first = None
    for conn in pending:
        if busiest is None or source_of(address(conn)) == busiest:
            return conn
        first = conn if first is None else first
    if first is None:
        raise ValueError("nothing pending")
    return first  # (counts out of step with pending: the oldest of all)


def parse_share(text: str) -> float:
    """A share as given by an option or config key: a fraction in (0, 1] (1: no share
    but the whole budget). ValueError with the reason otherwise."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected a fraction of the link budget, got {text!r}") from None
    if not 0 < value <= 1:  # (nan fails both)
        raise ValueError(f"{text} is out of range (0, 1]: a fraction of the link budget")
    return value


class AddressShare:
    """Links held per source address, and whether one more fits in its share of a budget."""

    def __init__(
        self,
        clock: Callable[[], float],
        fraction: float = DEFAULT_SHARE,
        floor: int = SHARE_FLOOR,
        interval: float = 60.0,
    ) -> None:
        self.clock = clock
        self.fraction = fraction
        self.floor = floor
        self.interval = interval
        self.held: dict[str, int] = {}
        self.refused = 0  # since start: links refused for their address's share
        # source -> (when its last refusal line went out, refusals since), oldest first
        self._logged: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def cap(self, budget: int | None) -> int | None:
        """Links one address may hold of `budget` (None: no budget, no share)."""
        if budget is None:
            return None
        # the floor never gives one address more than half (a low descriptor limit)
        return max(1, int(budget * self.fraction), min(self.floor, budget // 2))

    def add(self, address: str) -> None:
        source = source_of(address)
        self.held[source] = self.held.get(source, 0) + 1

    def remove(self, address: str) -> None:
        source = source_of(address)
        n = self.held.get(source, 0) - 1
        if n > 0:
            self.held[source] = n
        else:
            self.held.pop(source, None)

    def refusal(self, address: str, budget: int | None, what: str) -> str | None:
        """Why one more link from `address` does not fit its share of `budget` (`what`
        names the links in the reason), or None. A refusal is counted."""
        if budget is None:
            return None
        cap = self.cap(budget)
        assert cap is not None
        source = source_of(address)
        n = self.held.get(source, 0)
        if n < cap:
            return None
        self.refused += 1
        return (
            f"address {source} holds {n} {what}, its share ({cap}: per-address share "
            f"{self.fraction:g} of {budget}, at least {min(self.floor, budget // 2)})"
        )

    def log_line(self, address: str, budget: LogBudget | None = None) -> str | None:
        """None: a line for `address` went out within `interval`, or `budget` (the
        port's) has no line left (this one is counted). Else log it, with the returned
        text appended: how many refusals of that address were not logged before it."""
        source = source_of(address)
        now = self.clock()
        last = self._logged.get(source)
        hidden = 0 if last is None else last[1]
        if last is not None and now - last[0] < self.interval:
            self._logged[source] = (last[0], hidden + 1)
            return None
        more = "" if budget is None else budget.allow()
        # (refused by the budget: due again at once, its count kept)
        self._logged[source] = (now, 0) if more is not None else (now - self.interval, hidden + 1)
        self._logged.move_to_end(source)
        while len(self._logged) > _LOGGED_MAX:
            self._logged.popitem(last=False)
        if more is None:
            return None
        note = f" [one line per address a {self.interval:g} s"
        return note + (f"; {hidden} not logged before this one]" if hidden else "]") + more
