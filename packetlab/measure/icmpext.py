"""ICMP extensions (RFC 4884), e.g. the MPLS label stack of RFC 4950, as traceroute -e reads them.

A router that extends an ICMP time exceeded, destination unreachable or parameter problem
pads its quote of the probe to 128 bytes and appends an extension structure: a 4-byte
header (version 2, a checksum over the structure or 0) and objects, each a 4-byte header
(length, class, C-type) and whole 32-bit words of data. An MPLS label stack entry
(class 1, C-type 1) is one word: label (20 bits), experimental bits (3), bottom of stack
(1), TTL (8).

`decode` finds the structure where Butskoy's traceroute 2.1 looks for it and returns its
objects as scamper's JSON has them (``ie_cn``, ``ie_ct``, ``ie_dl``, ``mpls_labels``;
other objects keep their words in ``ie_data``, hex); `text` renders them as
``traceroute -e`` prints them between ``<`` and ``>``:
``MPLS:L=16,E=0,S=1,T=1`` (labels joined by ``/``), ``CLASS/CTYPE:WORD,...`` for other
objects, objects joined by ``;``.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

from packetlab.measure.packets import inet_checksum

__all__ = ["EXTENSION_OFFSET", "IcmpExt", "decode", "text"]

EXTENSION_OFFSET = 128  # RFC 4884: the quote is padded to 128 bytes before the structure
MPLS_CLASS, MPLS_CTYPE = 1, 1
TEXT_MAX = 1023  # traceroute renders into a 1024-byte buffer

IcmpExt = tuple[dict[str, Any], ...]


def _objects(data: bytes) -> IcmpExt | None:
    """The objects of an extension structure starting at data[0], or None when it is not
    one (traceroute's checks: version 2, a checksum that holds when not 0, objects of whole
    words that fill the rest exactly)."""
    if len(data) < 4 or data[0] >> 4 != 2:
        return None
    if struct.unpack_from("!H", data, 2)[0] and inet_checksum(data) != 0:
        return None
    at, out = 4, []
    while len(data) - at >= 4:
        length, cn, ct = struct.unpack_from("!HBB", data, at)
        if length < 4 or length > len(data) - at or (length - 4) % 4:
            return None
        words = data[at + 4 : at + length]
        obj: dict[str, Any] = {"ie_cn": cn, "ie_ct": ct, "ie_dl": len(words)}
        if cn == MPLS_CLASS and ct == MPLS_CTYPE and words:
            obj["mpls_labels"] = [
                {
                    "mpls_label": w >> 12,
                    "mpls_exp": (w >> 9) & 0x7,
                    "mpls_s": (w >> 8) & 0x1,
                    "mpls_ttl": w & 0xFF,
                }
                for (w,) in struct.iter_unpack("!I", words)
            ]
        else:
            obj["ie_data"] = words.hex()
        out.append(obj)
        at += length
    if at != len(data):
        return None
    return tuple(out)


def decode(extension: bytes, *, step: int = 0) -> IcmpExt | None:
    """The objects of the extension structure in `extension` (an ICMP error's bytes from
    `EXTENSION_OFFSET` into its quote), or None when there is none. `step` 0: the
    structure must start right there (traceroute: when the quote is longer than the probe,
    which puts it at 128); else traceroute looks for one every `step` bytes (4 for IPv4, 8
    for IPv6) while at least 8 bytes are left, the first that holds winning."""
    if step <= 0:
        return _objects(extension)
    for at in range(0, len(extension) - 7, step):
        got = _objects(extension[at:])
        if got is not None:
            return got
    return None


def text(objects: Sequence[Mapping[str, Any]]) -> str:
    """As traceroute -e prints the objects (without its ``<`` ``>``)."""
    parts = []
    for obj in objects:
        labels = obj.get("mpls_labels")
        if labels:
            parts.append(
                "MPLS:"
                + "/".join(
                    f"L={m['mpls_label']},E={m['mpls_exp']},S={m['mpls_s']},T={m['mpls_ttl']}"
                    for m in labels
                )
            )
        else:
            data = str(obj.get("ie_data", ""))
            words = ",".join(data[i : i + 8] for i in range(0, len(data), 8))
            parts.append(f"{obj['ie_cn']}/{obj['ie_ct']}:{words}")
    return ";".join(parts)[:TEXT_MAX]
