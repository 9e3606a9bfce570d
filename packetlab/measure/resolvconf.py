"""The nameservers of a resolv.conf text: apart from the DNS client (`measure.dns`) so
that reading them, as every in-process `pktlab run` command does, loads no dnspython
(docs/performance.md, pktlab run, Session 10)."""

from __future__ import annotations

from packetlab.controller import parse_address

__all__ = ["resolver_of", "search_of"]


def resolver_of(text: str) -> list[str]:
    """The nameserver addresses of a resolv.conf text (scoped IPv6 ones left out)."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver" and "%" not in parts[1]:
            try:
                out.append(str(parse_address(parts[1])))
            except ValueError:
                continue
    return out


def search_of(text: str) -> tuple[list[str], int | None]:
    """A resolv.conf text's search list (its last `search` or `domain` line, as the C
    library and BIND read it: `domain` a list of one) and `options ndots:N` (None when
    not given)."""
    domains: list[str] = []
    ndots: int | None = None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("search", "domain"):
            domains = parts[1:] if parts[0] == "search" else parts[1:2]
        elif parts[:1] == ["options"]:
            for opt in parts[1:]:
                key, _, value = opt.partition(":")
                if key == "ndots" and value.isdigit():
                    ndots = min(int(value), 15)
    return domains, ndots
