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
per-address publication share; a link-local one (fe80::/10) by itself and its zone (the
interface it came in on: fe80::/64 is every LAN's, not one host's).

Above that, a site: an IPv6 /48, or the link-local peers of one interface (one LAN),
holds at most `SITE_MULTIPLE` (two) addresses' shares, all its /64s (addresses)
together. A /48 is what one site is assigned (RFC 6177: /48 to /64; a tunnel broker gives
one away: its 65,536 /64s cost a stranger no more than one /64), and a link-local address
is made at will. A /48 is about as dear as an IPv4 address, so it gets a bounded multiple
of one address's share (a site of several /64s, a LAN of several endpoints, get more than
one address, never the port). No /32 level: a /32 is an ISP's allocation, thousands of
unrelated sites (the descriptor cap of the port is the last bound). IPv4 has no site
level: behind NAT one address already is a site, and a /24 is many unrelated hosts at a
hosting provider.

Refusals are logged once per site (an IPv4 address, an IPv6 /48, a link) per `interval`
(a refused flood retries at once), with the number refused since that site's last line,
and within the port's own `LogBudget` (many /48s would otherwise be a line each).
"""

from __future__ import annotations

import functools
import ipaddress
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import TypeVar

from packetlab.logbudget import LogBudget

__all__ = [
    "DEFAULT_SHARE",
    "SHARE_FLOOR",
    "SITE_MULTIPLE",
    "AddressShare",
    "keys_of",
    "oldest_of_busiest",
    "parse_share",
    "site_of",
    "source_of",
]

DEFAULT_SHARE = 0.25
SHARE_FLOOR = 64  # links: a snikey's default backlog (--backlog-per-snikey)
SITE_MULTIPLE = 2  # a site (IPv6 /48, one link's link-local peers): two addresses' shares
T = TypeVar("T")
_LOGGED_MAX = 4096  # sites whose last refusal line is remembered (oldest forgotten)


@functools.lru_cache(maxsize=4096)
def keys_of(address: str) -> tuple[str, str]:
    """(source, site) of an address, parsed once: a link is counted at its add, remove,
    refusal and log line, and a reconnecting client comes from the same address."""
    ip = None
    if ":" in address:
        try:
            ip = ipaddress.IPv6Address(address)
        except ValueError:
            pass
    if ip is None:
        return address, address
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped), str(ip.ipv4_mapped)
    if ip.is_link_local:  # fe80::/64 is every link's: the host is the whole address
        zone = "" if ip.scope_id is None else f"%{ip.scope_id}"
        return str(ip), f"fe80::{zone}/64"
    n = int(ip)
    return (
        str(ipaddress.IPv6Network((n >> 64 << 64, 64))),
        str(ipaddress.IPv6Network((n >> 80 << 80, 48))),
    )


def source_of(address: str) -> str:
    """The source an address counts under: an IPv6 address's /64 (an IPv4-mapped one is
    its IPv4 address, a link-local one itself with its zone), any other address as it
    is."""
    return keys_of(address)[0]


def site_of(address: str) -> str:
    """The site an address counts under above its source: an IPv6 address's /48, a
    link-local one's link (``fe80::%eth0/64``, RFC 4007's form); an IPv4 address (or
    anything else) is its own site."""
    return keys_of(address)[1]


def oldest_of_busiest(pending: Iterable[T], counts: AddressShare, address: Callable[[T], str]) -> T:
    """The connection to close for a new one when `pending` (oldest first) is full: the
    oldest of the source holding the most within the site holding the most (`counts`:
    pending per source). The oldest of all was a real client's whenever a flood from one
    address had come after it; a flood from many /64s of one /48 holds one each."""
    busiest = counts.busiest()
    first = None
    for conn in pending:
        if busiest is None or keys_of(address(conn))[0] == busiest:
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


def _bump(counts: dict[str, int], key: str, step: int) -> None:
    n = counts.get(key, 0) + step
    if n > 0:
        counts[key] = n
    else:
        counts.pop(key, None)


class AddressShare:
    """Links held per source address and per site, and whether one more fits in their
    shares of a budget."""

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
        self.held: dict[str, int] = {}  # per source (`source_of`)
        self.sites: dict[str, int] = {}  # per site (`site_of`)
        self._site: dict[str, str] = {}  # site of each source in `held`
        self.refused = 0  # since start: links refused for their address's share
        # site -> (when its last refusal line went out, refusals since), oldest first
        self._logged: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def cap(self, budget: int | None) -> int | None:
        """Links one address may hold of `budget` (None: no budget, no share)."""
        if budget is None:
            return None
        # the floor never gives one address more than half (a low descriptor limit)
        return max(1, int(budget * self.fraction), min(self.floor, budget // 2))

    def site_cap(self, budget: int | None) -> int | None:
        """Links one site (an IPv6 /48, one link's link-local peers) may hold of
        `budget`: `SITE_MULTIPLE` addresses' shares, at most all of it."""
        cap = self.cap(budget)
        if budget is None or cap is None:
            return None
        return min(budget, SITE_MULTIPLE * cap)

    def add(self, address: str) -> None:
        source, site = keys_of(address)
        _bump(self.held, source, 1)
        _bump(self.sites, site, 1)
        self._site[source] = site

    def remove(self, address: str) -> None:
        source, site = keys_of(address)
        _bump(self.held, source, -1)
        _bump(self.sites, site, -1)
        if source not in self.held:
            self._site.pop(source, None)

    def busiest(self) -> str | None:
        """The source holding the most within the site holding the most (of equals, the
        one counted first), or None: nothing held."""
        site = max(self.sites, key=self.sites.__getitem__, default=None)
        mine = (s for s in self.held if self._site.get(s) == site)
        return max(mine, key=self.held.__getitem__, default=None)

    def refusal(self, address: str, budget: int | None, what: str) -> str | None:
        """Why one more link from `address` does not fit its share of `budget` (`what`
        names the links in the reason): its source's, or its site's; or None. A refusal
        is counted."""
        cap = self.cap(budget)
        if budget is None or cap is None:
            return None
        source, site = keys_of(address)
        n = self.held.get(source, 0)
        floor = min(self.floor, budget // 2)
        if n >= cap:
            self.refused += 1
            return (
                f"address {source} holds {n} {what}, its share ({cap}: per-address share "
                f"{self.fraction:g} of {budget}, at least {floor})"
            )
        m, site_cap = self.sites.get(site, 0), min(budget, SITE_MULTIPLE * cap)
        # (an IPv4 address is its own site: its share is the smaller)
        if site == source or m < site_cap:
            return None
        self.refused += 1
        return (
            f"address {site} holds {m} {what}, its share ({site_cap}: a site's, "
            f"{SITE_MULTIPLE} addresses' of {cap}; per-address share {self.fraction:g} of "
            f"{budget}, at least {floor})"
        )

    def log_line(self, address: str, budget: LogBudget | None = None) -> str | None:
        """None: a line for `address`'s site went out within `interval`, or `budget` (the
        port's) has no line left (this one is counted). Else log it, with the returned
        text appended: how many refusals of that site were not logged before it."""
        site = site_of(address)
        now = self.clock()
        last = self._logged.get(site)
        hidden = 0 if last is None else last[1]
        if last is not None and now - last[0] < self.interval:
            self._logged[site] = (last[0], hidden + 1)
            return None
        more = "" if budget is None else budget.allow()
        # (refused by the budget: due again at once, its count kept)
        self._logged[site] = (now, 0) if more is not None else (now - self.interval, hidden + 1)
        self._logged.move_to_end(site)
        while len(self._logged) > _LOGGED_MAX:
            self._logged.popitem(last=False)
        if more is None:
            return None
        unit = "address" if site == source_of(address) else "link" if "%" in site else "/48"
        note = f" [one line per {unit} a {self.interval:g} s"
        return note + (f"; {hidden} not logged before this one]" if hidden else "]") + more
