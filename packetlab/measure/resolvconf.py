"""The nameservers of a resolv.conf text: apart from the DNS client (`measure.dns`) so
that reading them, as every in-process `pktlab run` command does, loads no dnspython
(docs/performance.md, pktlab run, Session 10)."""

from __future__ import annotations

from packetlab.controller import parse_address

__all__ = ["resolver_of"]


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
