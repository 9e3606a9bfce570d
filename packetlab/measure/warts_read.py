"""The reader of warts files (`read_warts`): what `packetlab.measure.warts_*` write, and
scamper's traces, for tests and for checking a file without scamper's tools; each record
kind's field sizes."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from typing import Any

from packetlab.measure.warts_dealias import DEALIAS_PREFIXSCAN, DEALIAS_RADARGUN
from packetlab.measure.warts_format import (
    OBJ_CYCLE_START,
    OBJ_CYCLE_STOP,
    OBJ_DEALIAS,
    OBJ_LIST,
    OBJ_PING,
    OBJ_TRACE,
    OBJ_TRACELB,
    WARTS_MAGIC,
    WartsError,
)

# field sizes for reading: bytes, "addr", or "str" (NUL-terminated)
_TRACE_SIZES: dict[int, int | str] = {
    1: 4, 2: 4, 3: 4, 4: 4, 5: 8, 6: 1, 7: 1, 8: 1, 9: 1, 10: 1, 11: 1, 12: 2, 13: 2, 14: 2,
    15: 1, 16: 1, 17: 1, 18: 1, 19: 2, 20: 1, 21: 1, 22: 1, 23: 2, 24: 1, 25: 1, 26: "addr",
    27: "addr", 28: 4, 29: 2, 30: "addr", 31: 1,
}  # fmt: skip
_HOP_SIZES: dict[int, int | str] = {
    1: 4, 2: 1, 3: 1, 4: 1, 5: 1, 6: 4, 7: 2, 8: 2, 9: 2, 10: 2, 11: 1, 12: 2, 13: 2, 14: 1,
    15: 1, 16: 1, 17: "ext", 18: "addr", 19: 8,
}  # fmt: skip
# ping: 24 (timestamp prespecification: a count, the addresses) and the replies' 13, 14
# (record route, timestamp options) read as lists
_PING_SIZES: dict[int, int | str] = {
    1: 4, 2: 4, 3: 4, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: "data", 10: 2, 11: 2, 12: 1, 13: 1,
    14: 2, 15: 2, 16: 1, 17: 2, 18: 2, 19: 4, 20: "addr", 21: "addr", 22: 1, 23: 1,
    24: "v4rr", 25: 2, 26: 2, 27: 1, 28: 4,
}  # fmt: skip
_PING_REPLY_SIZES: dict[int, int | str] = {
    1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 2, 8: 2, 9: 2, 10: 1, 11: 1, 12: "addr",
    13: "v4rr", 14: "v4ts", 15: 4, 16: 8, 17: 12,
}  # fmt: skip
_LIST_SIZES: dict[int, int | str] = {1: "str", 2: "str"}
_CYCLE_SIZES: dict[int, int | str] = {1: 4, 2: "str"}


_DEALIAS_SIZES: dict[int, int | str] = {1: 4, 2: 4, 3: 8, 4: 1, 5: 1, 6: 4, 7: 4}
_RADARGUN_SIZES: dict[int, int | str] = {1: 4, 2: 2, 3: 2, 4: 4, 5: 1, 6: 1}
_PREFIXSCAN_SIZES: dict[int, int | str] = {
    1: "addr", 2: "addr", 3: "addr", 4: "addrs", 5: 1, 6: 1, 7: 2, 8: 2, 9: 1, 10: 2, 11: 1,
    12: 1,
}  # fmt: skip
_PROBEDEF_SIZES: dict[int, int | str] = {
    1: 4, 2: 4, 3: 4, 4: 1, 5: 1, 6: 1, 7: 4, 8: 1, 9: 2, 10: "addr", 11: "addr", 12: 2,
    13: 2, 14: 2,
}  # fmt: skip
_DPROBE_SIZES: dict[int, int | str] = {1: 4, 2: 8, 3: 2, 4: 2, 5: 4}
_DREPLY_SIZES: dict[int, int | str] = {
    1: 4, 2: 8, 3: 2, 4: 1, 5: 2, 6: 1, 7: "ext", 8: 1, 9: 1, 10: "addr", 11: 4, 12: 1, 13: 2,
}  # fmt: skip


_TRACELB_SIZES: dict[int, int | str] = {
    1: 4, 2: 4, 3: 4, 4: 4, 5: 8, 6: 2, 7: 2, 8: 2, 9: 1, 10: 1, 11: 1, 12: 1, 13: 1, 14: 1,
    15: 1, 16: 2, 17: 2, 18: 4, 19: 4, 20: 1, 21: "addr", 22: "addr", 23: 4, 24: 1,
}  # fmt: skip
_LB_NODE_SIZES: dict[int, int | str] = {1: 4, 2: 1, 3: 2, 4: 1, 5: "addr", 6: "str"}
_LB_LINK_SIZES: dict[int, int | str] = {1: 2, 2: 2, 3: 1}
_LB_SET_SIZES: dict[int, int | str] = {1: 2}
_LB_PROBE_SIZES: dict[int, int | str] = {1: 8, 2: 2, 3: 1, 4: 1, 5: 2}
_LB_REPLY_SIZES: dict[int, int | str] = {
    1: 8, 2: 2, 3: 1, 4: 1, 5: 2, 6: 1, 7: "ext", 8: 1, 9: 1, 10: 4, 11: "addr",
}  # fmt: skip


@dataclass
class WartsObject:
    """One object read back: its type, fixed part and optional fields (by flag id; addresses
    as strings), and for a trace its hops' fields."""

    kind: int
    fixed: dict[str, Any] = field(default_factory=dict)
    fields: dict[int, Any] = field(default_factory=dict)
    hops: list[dict[int, Any]] = field(default_factory=list)
    # a dealias record: its method's fields, probe definitions, probes (each with its
    # replies' fields under key "replies"); a tracelb: its nodes (in `probedefs`) and
    # links (in `probes`: each link's probe sets under "sets", their probes under "probes")
    method: dict[int, Any] = field(default_factory=dict)
    probedefs: list[dict[int, Any]] = field(default_factory=list)
    probes: list[dict[Any, Any]] = field(default_factory=list)


class _Reader:
    def __init__(self, data: bytes, end: int, off: int) -> None:
        self.data, self.end, self.off = data, end, off
        self.addrs: list[str] = []

    def take(self, n: int) -> bytes:
        if self.off + n > self.end:
            raise WartsError(f"warts object truncated at byte {self.off}")
        out = self.data[self.off : self.off + n]
        self.off += n
        return out

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def string(self) -> str:
        nul = self.data.find(b"\x00", self.off, self.end)
        if nul < 0:
            raise WartsError("unterminated warts string")
        text = self.data[self.off : nul].decode(errors="replace")
        self.off = nul + 1
        return text

    def addr(self) -> str:
        size = self.uint(1)
        if size == 0:
            index = self.uint(4)
            if index >= len(self.addrs):
                raise WartsError(f"warts address index {index} before its address")
            return self.addrs[index]
        kind = self.uint(1)
        raw = self.take(size)
        if (kind, size) not in ((1, 4), (2, 16)):
            raise WartsError(f"warts address type {kind} of {size} bytes")
        text = str(ipaddress.ip_address(raw))
        self.addrs.append(text)
        return text

    def params(self, sizes: dict[int, int | str]) -> dict[int, Any]:
        flags = []
        while True:
            b = self.uint(1)
            flags.append(b & 0x7F)
            if not b & 0x80:
                break
        ids = [k * 7 + j + 1 for k, b in enumerate(flags) for j in range(7) if b >> j & 1]
        if not ids:
            return {}
        length = self.uint(2)
        stop = self.off + length
        out: dict[int, Any] = {}
        for i in ids:
            size = sizes.get(i)
            if size is None:  # a field this reader does not know: skip the rest
                break
            if size == "addr":
                out[i] = self.addr()
            elif size == "str":
                out[i] = self.string()
            elif size == "data":  # probe data: its length is field 8's
                out[i] = self.take(out.get(8, 0))
            elif size == "ext":
                out[i] = self.take(self.uint(2))
            elif size == "addrs":  # a count (2 bytes), the addresses: prefixscan's xs
                out[i] = [self.addr() for _ in range(self.uint(2))]
            elif size == "v4rr":  # a count, the addresses
                out[i] = [self.addr() for _ in range(self.uint(1))]
            elif size == "v4ts":  # counts of times and addresses, the times, the addresses
                tsc, ipc = self.uint(1), self.uint(1)
                times = [self.uint(4) for _ in range(tsc)]
                out[i] = (times, [self.addr() for _ in range(ipc)])
            else:
                assert isinstance(size, int)
                out[i] = self.uint(size) if size <= 4 else self.take(size)
        if self.off > stop:
            raise WartsError("warts fields longer than their length")
        self.off = stop
        return out


def read_warts(data: bytes) -> list[WartsObject]:
    """The objects of a warts file (list, cycle start/stop, trace, ping: a ping's reply
    records in `WartsObject.hops`; a radargun or prefixscan dealias; others' bodies
    skipped)."""
    out = []
    off = 0
    while off < len(data):
        if len(data) - off < 8:
            raise WartsError(f"{len(data) - off} stray bytes at the end")
        magic, kind, length = struct.unpack_from("!HHI", data, off)
        if magic != WARTS_MAGIC:
            raise WartsError(f"bad warts magic {magic:#06x} at byte {off}")
        end = off + 8 + length
        if end > len(data):
            raise WartsError(f"warts object at byte {off} runs past the end")
        r = _Reader(data, end, off + 8)
        obj = WartsObject(kind)
        if kind == OBJ_LIST:
            obj.fixed = {"id": r.uint(4), "human_id": r.uint(4), "name": r.string()}
            obj.fields = r.params(_LIST_SIZES)
        elif kind == OBJ_CYCLE_START:
            obj.fixed = {"id": r.uint(4), "list_id": r.uint(4), "human_id": r.uint(4)}
            obj.fixed["start"] = r.uint(4)
            obj.fields = r.params(_CYCLE_SIZES)
        elif kind == OBJ_CYCLE_STOP:
            obj.fixed = {"id": r.uint(4), "stop": r.uint(4)}
            obj.fields = r.params({})
        elif kind == OBJ_TRACE:
            obj.fields = r.params(_TRACE_SIZES)
            obj.hops = [r.params(_HOP_SIZES) for _ in range(r.uint(2))]
            obj.fixed = {"end": r.uint(2)}
        elif kind == OBJ_PING:
            obj.fields = r.params(_PING_SIZES)
            obj.hops = [r.params(_PING_REPLY_SIZES) for _ in range(r.uint(2))]
        elif kind == OBJ_TRACELB:
            obj.fields = r.params(_TRACELB_SIZES)
            obj.probedefs = [r.params(_LB_NODE_SIZES) for _ in range(obj.fields.get(16, 0))]
            for _ in range(obj.fields.get(17, 0)):
                link: dict[Any, Any] = r.params(_LB_LINK_SIZES)
                link["sets"] = []
                for _ in range(link.get(3, 0)):
                    ps: dict[Any, Any] = r.params(_LB_SET_SIZES)
                    ps["probes"] = []
                    for _ in range(ps.get(1, 0)):
                        lbp: dict[Any, Any] = r.params(_LB_PROBE_SIZES)
                        lbp["replies"] = [r.params(_LB_REPLY_SIZES) for _ in range(lbp.get(5, 0))]
                        ps["probes"].append(lbp)
                    link["sets"].append(ps)
                obj.probes.append(link)
        elif kind == OBJ_DEALIAS:
            obj.fields = r.params(_DEALIAS_SIZES)
            method = obj.fields.get(4)
            if method in (DEALIAS_RADARGUN, DEALIAS_PREFIXSCAN):
                radargun = method == DEALIAS_RADARGUN
                obj.method = r.params(_RADARGUN_SIZES if radargun else _PREFIXSCAN_SIZES)
                defc = obj.method.get(1 if radargun else 10, 0)
                obj.probedefs = [r.params(_PROBEDEF_SIZES) for _ in range(defc)]
                for _ in range(obj.fields.get(6, 0)):
                    probe: dict[Any, Any] = r.params(_DPROBE_SIZES)
                    probe["replies"] = [r.params(_DREPLY_SIZES) for _ in range(probe.get(3, 0))]
                    obj.probes.append(probe)
        out.append(obj)
        off = end
    return out
