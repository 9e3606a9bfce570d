"""scamper's ``dealias -m prefixscan A B/LEN``: an alias of A among the addresses of B's
prefix (A and B the two ends of a point-to-point link, B's router the neighbour of A's:
the address of A's router on B's subnet is the link's other end, next to B).

`candidates` lists the addresses to test against A in scamper's order (its
``dealias_prefixscan_array``, scamper 20211212): the rest of B's /30 in a fixed order for
B's place in it (the /31 partner first), then each larger block up to /LEN the half that
does not hold B; never A nor B itself (B's router is the neighbour). scamper probes them
one by one against A and stops at the first alias; `pktlab run alias --prefixscan B/LEN
A` probes A and all of them in one run (MIDAR's stages or `--single-stage`) and reports
every alias of A, in this order.
"""

from __future__ import annotations

import ipaddress

__all__ = ["MAX_PREFIXSCAN", "MIN_PREFIX", "candidates", "parse_prefix"]

MIN_PREFIX = 24  # scamper refuses a larger block (its table of block sizes ends at /24)
MAX_PREFIXSCAN = 31
# the other three addresses of a /30 by B's place in it (scamper's order)
_SLASH30 = ((1, 2, 3), (2, 0, 3), (1, 0, 3), (2, 1, 0))


def parse_prefix(text: str) -> tuple[str, int]:
    """``B/LEN`` (IPv4, LEN 24..31) -> (B, LEN); ValueError naming what is wrong. B keeps
    its host bits (which address of the prefix is the neighbour)."""
    addr, slash, length = text.partition("/")
    if not slash or not length.isdigit():
        raise ValueError(f"{text!r}: expected B/LEN (an IPv4 address and a prefix length)")
    try:
        b = ipaddress.ip_address(addr)
    except ValueError:
        raise ValueError(f"{text!r}: {addr!r} is not an IP address") from None
    if b.version != 4:
        raise ValueError(f"{text}: IPv6 has no IP-ID to compare; IPv4 only")
    if not MIN_PREFIX <= int(length) <= MAX_PREFIXSCAN:
        raise ValueError(f"{text}: the prefix length must be {MIN_PREFIX}..{MAX_PREFIXSCAN} "
                         "(scamper's prefixscan too)")  # fmt: skip
    return str(b), int(length)


def candidates(a: str, b: str, prefix: int) -> list[str]:
    """The addresses of B/`prefix` to test against A, in scamper's order, without A and
    B (and each once)."""
    if not MIN_PREFIX <= prefix <= MAX_PREFIXSCAN:
        raise ValueError(f"prefix length {prefix}: must be {MIN_PREFIX}..{MAX_PREFIXSCAN}")
    bb = int(ipaddress.IPv4Address(b))
    out: list[int] = []
    if prefix == 31:
        out.append(bb ^ 1)
    else:
        net = bb & ~3
        out += [net | h for h in _SLASH30[bb & 3]]
        mask = 3
        for pre in range(29, prefix - 1, -1):
            bit = 1 << (31 - pre)
            mask |= bit
            base = bb & ~mask
            half = 0 if bb & bit else bit  # the half of the block without B
            out += [base | half | h for h in range(bit)]
    skip = {int(ipaddress.IPv4Address(a)), bb}
    seen: dict[int, None] = {}
    for x in out:
        if x not in skip:
            seen.setdefault(x & 0xFFFFFFFF, None)
    return [str(ipaddress.IPv4Address(x)) for x in seen]
