"""Testbed plans: nodes, links, addresses, routes and shaping, computed without I/O.

Addressing: link number L (1, 2, ...) gets ``10.<base>.L.0/24`` and ``fd00:<base>:L::/64``
(base 77 by default; the IPv6 prefix repeats the decimal digits as hex groups, so link 12
of base 77 is ``fd00:77:12::/64``). The link's first node is ``.1``/``::1``, its second
``.2``/``::2``. The interface of node X toward node Y is named ``to-Y``. A node with a
single link gets default routes through its neighbour; every other node gets a route to
each subnet it is not on, through the neighbour on a shortest path.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

IPv4 = ipaddress.IPv4Address
IPv6 = ipaddress.IPv6Address
Address = IPv4 | IPv6
_NODE_NAME = re.compile(r"[a-z][a-z0-9]{0,9}")
_RATE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmg]?)(bit|bps)?", re.IGNORECASE)
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}


class TopologyError(ValueError):
    """An impossible testbed plan (bad name, unknown node, duplicate link, ...)."""


@dataclass(frozen=True, slots=True)
class Shape:
    """Token-bucket (``tc tbf``) shaping on both ends of a link: ``rate_bit`` bits/s.

    ``burst_bytes`` defaults to 10 ms of traffic (at least 3000 bytes); packets waiting
    longer than ``latency_ms`` in the bucket are dropped.
    """

    rate_bit: int
    burst_bytes: int | None = None
    latency_ms: float = 50.0

    def __post_init__(self) -> None:
        if self.rate_bit < 8_000:
            raise TopologyError(f"shaping rate {self.rate_bit} bit/s is below 8 kbit/s")
        if self.burst_bytes is not None and self.burst_bytes < 1600:
            raise TopologyError(f"burst {self.burst_bytes} bytes is below one packet (1600)")
        if self.latency_ms <= 0:
            raise TopologyError(f"latency {self.latency_ms} ms must be positive")

    @property
    def burst(self) -> int:
        return self.burst_bytes or max(3000, self.rate_bit // 8 // 100)

    @classmethod
    def parse(cls, text: str) -> Shape:
        """``"10mbit"``, ``"500kbit"``, ``"2000000"`` (bits per second)."""
        m = _RATE.fullmatch(text.strip())
        if m is None or (m.group(3) or "bit").lower() != "bit":
            raise TopologyError(f"bad rate {text!r}: use e.g. 500kbit, 10mbit, 1gbit")
        return cls(int(float(m.group(1)) * _UNITS[m.group(2).lower()]))

    def tbf_args(self) -> list[str]:
        return [
            "tbf",
            "rate",
            f"{self.rate_bit}bit",
            "burst",
            str(self.burst),
            "latency",
            f"{self.latency_ms:g}ms",
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rate_bit": self.rate_bit,
            "burst_bytes": self.burst_bytes,
            "latency_ms": self.latency_ms,
        }


@dataclass(frozen=True, slots=True)
class Interface:
    node: str
    name: str
    peer: str
    link: int
    ipv4: ipaddress.IPv4Interface
    ipv6: ipaddress.IPv6Interface


@dataclass(frozen=True, slots=True)
class Link:
    number: int  # 1-based
    a: str
    b: str
    shape: Shape | None = None


@dataclass(frozen=True, slots=True)
class Route:
    dest: ipaddress.IPv4Network | ipaddress.IPv6Network
    via: Address
    dev: str

    def ip_command(self) -> str:
        return f"route replace {self.dest} via {self.via} dev {self.dev}"


@dataclass(slots=True)
class Node:
    name: str
    router: bool = False


@dataclass
class Topology:
    """A plan: nodes (hosts or routers) joined by point-to-point links."""

    kind: str = "custom"
    base: int = 77
    nodes: dict[str, Node] = field(default_factory=dict)
    links: list[Link] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 0 <= self.base <= 255:
            raise TopologyError(f"address base {self.base} outside 0..255")

    def add_node(self, name: str, *, router: bool = False) -> Node:
        if not _NODE_NAME.fullmatch(name):
            raise TopologyError(
                f"node name {name!r}: 1-10 lowercase letters/digits starting with a letter"
            )
        if name in self.nodes:
            raise TopologyError(f"node {name!r} exists already")
        node = self.nodes[name] = Node(name, router)
        return node

    def add_link(self, a: str, b: str, *, shape: Shape | None = None) -> Link:
        for n in (a, b):
            if n not in self.nodes:
                raise TopologyError(f"link {a}-{b}: unknown node {n!r}")
        if a == b:
            raise TopologyError(f"link {a}-{b}: a node cannot link to itself")
        if any({lk.a, lk.b} == {a, b} for lk in self.links):
            raise TopologyError(f"link {a}-{b} exists already")
        if len(self.links) >= 255:
            raise TopologyError("at most 255 links")
        link = Link(len(self.links) + 1, a, b, shape)
        self.links.append(link)
        return link

    def set_shape(self, number: int, shape: Shape | None) -> None:
        link = self.link(number)
        self.links[number - 1] = Link(link.number, link.a, link.b, shape)

    def link(self, number: int) -> Link:
        if not 1 <= number <= len(self.links):
            raise TopologyError(f"no link {number} (links are 1..{len(self.links)})")
        return self.links[number - 1]

    def link_between(self, a: str, b: str) -> Link:
        for lk in self.links:
            if {lk.a, lk.b} == {a, b}:
                return lk
        raise TopologyError(f"no link between {a!r} and {b!r}")

    # -- derived plan -----------------------------------------------------------------------

    def _node(self, name: str) -> Node:
        try:
            return self.nodes[name]
        except KeyError:
            raise TopologyError(f"unknown node {name!r}") from None

    def link_interfaces(self, link: Link) -> tuple[Interface, Interface]:
        n = link.number
        v4 = ipaddress.IPv4Network(f"10.{self.base}.{n}.0/24")
        v6 = ipaddress.IPv6Network(f"fd00:{self.base}:{n}::/64")  # digits read as in 10.B.L
        ends = []
        for host, (me, peer) in enumerate(((link.a, link.b), (link.b, link.a)), start=1):
            ends.append(
                Interface(
                    node=me,
                    name=f"to-{peer}",
                    peer=peer,
                    link=n,
                    ipv4=ipaddress.IPv4Interface(f"{v4.network_address + host}/24"),
                    ipv6=ipaddress.IPv6Interface(f"{v6.network_address + host}/64"),
                )
            )
        return ends[0], ends[1]

    def interfaces(self, node: str) -> list[Interface]:
        self._node(node)
        out = []
        for lk in self.links:
            for iface in self.link_interfaces(lk):
                if iface.node == node:
                    out.append(iface)
        return out

    def neighbours(self, node: str) -> list[str]:
        return [i.peer for i in self.interfaces(node)]

    def address(self, node: str, family: int = 4) -> Address:
        """The node's first address of the family (4 or 6)."""
        ifaces = self.interfaces(node)
        if not ifaces:
            raise TopologyError(f"node {node!r} has no links, so no address")
        if family not in (4, 6):
            raise TopologyError(f"family must be 4 or 6, not {family!r}")
        return ifaces[0].ipv4.ip if family == 4 else ifaces[0].ipv6.ip

    def routes(self, node: str) -> list[Route]:
        ifaces = self.interfaces(node)
        if not ifaces:
            return []
        if len(ifaces) == 1:
            out = self._peer_side(ifaces[0])
            return [
                Route(ipaddress.IPv4Network("0.0.0.0/0"), out[0], ifaces[0].name),
                Route(ipaddress.IPv6Network("::/0"), out[1], ifaces[0].name),
            ]
        # First hop and distance toward every other node, by breadth-first search.
        first: dict[str, Interface] = {}
        dist: dict[str, int] = {}
        queue: deque[str] = deque()
        for iface in ifaces:
            if iface.peer not in first:
                first[iface.peer], dist[iface.peer] = iface, 1
                queue.append(iface.peer)
        while queue:
            cur = queue.popleft()
            for nxt in self.neighbours(cur):
                if nxt != node and nxt not in first:
                    first[nxt], dist[nxt] = first[cur], dist[cur] + 1
                    queue.append(nxt)
        attached = {i.link for i in ifaces}
        routes = []
        for lk in self.links:
            if lk.number in attached:
                continue
            near = sorted((dist[n], n) for n in (lk.a, lk.b) if n in first)
            if not near:
                continue  # unreachable island
            out_iface = first[near[0][1]]
            gw4, gw6 = self._peer_side(out_iface)
            a, _ = self.link_interfaces(lk)
            routes.append(Route(a.ipv4.network, gw4, out_iface.name))
            routes.append(Route(a.ipv6.network, gw6, out_iface.name))
        return routes

    def _peer_side(self, iface: Interface) -> tuple[IPv4, IPv6]:
        a, b = self.link_interfaces(self.link(iface.link))
        peer = b if a.node == iface.node else a
        return peer.ipv4.ip, peer.ipv6.ip

    # -- persistence ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "base": self.base,
            "nodes": [{"name": n.name, "router": n.router} for n in self.nodes.values()],
            "links": [
                {"a": lk.a, "b": lk.b, "shape": lk.shape.to_dict() if lk.shape else None}
                for lk in self.links
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Topology:
        topo = cls(kind=data.get("kind", "custom"), base=int(data.get("base", 77)))
        for n in data["nodes"]:
            topo.add_node(n["name"], router=bool(n["router"]))
        for lk in data["links"]:
            shape = Shape(**lk["shape"]) if lk.get("shape") else None
            topo.add_link(lk["a"], lk["b"], shape=shape)
        return topo


def chain(
    hops: int = 2, *, shape: Shape | dict[int, Shape] | None = None, base: int = 77
) -> Topology:
    """``ep — r1 — … — rN — tg``: an endpoint, ``hops`` routers, a target.

    ``shape`` applies to every link, or to the links numbered in a dict (link 1 is ep-r1).
    """
    if not 0 <= hops <= 20:
        raise TopologyError(f"hops {hops} outside 0..20")
    topo = Topology(kind="chain", base=base)
    names = ["ep", *(f"r{i}" for i in range(1, hops + 1)), "tg"]
    for name in names:
        topo.add_node(name, router=name.startswith("r"))
    shapes = shape if isinstance(shape, dict) else {}
    for i, (a, b) in enumerate(itertools.pairwise(names), start=1):
        topo.add_link(a, b, shape=shape if isinstance(shape, Shape) else shapes.get(i))
    for number in shapes:
        topo.link(number)  # raises for a link that does not exist
    return topo
