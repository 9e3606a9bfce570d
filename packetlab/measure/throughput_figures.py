"""The fixed-size transfer's record (`ThroughputResult`) and the paper's figures from
(cumulative bytes, ns) stamps: the rate past the skipped first MiB (`rate_after`), where
the data stopped (`stalls`), Mbit/s (`mbit`). Shared by the endpoint's measurement
(`throughput`), the capture at a native client's receiver (`throughput_capture`) and the
native baseline (`baselines`); no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

__all__ = [
    "BURST_NS",
    "BURST_SHARE",
    "DEFAULT_BYTES",
    "MIB",
    "SKIP",
    "STALL_MIN_NS",
    "ThroughputResult",
    "mbit",
    "rate_after",
    "stalls",
]

MIB = 1 << 20
DEFAULT_BYTES = 25 * MIB  # the paper's transfer
SKIP = MIB  # ignored at the start (slow start), as in the paper


@dataclass(slots=True)
class ThroughputResult:
    direction: str  # "download" or "upload"
    server: str
    port: int
    bytes: int  # transferred: whole blocks, as iperf3 (upload: sent; download: read)
    seconds: float | None = None  # the measured span (after the first `skip` bytes)
    mbit_s: float | None = None  # 10^6 bit/s
    skip: int = SKIP
    measured_bytes: int | None = None  # N - b
    method: str = ""  # where mbit_s comes from
    sender_mbit_s: float | None = None  # upload: endpoint ntag stamps
    whole_mbit_s: float | None = None  # native download: iperf3's figure, nothing skipped
    server_bytes: int | None = None  # what the iperf3 server counted
    server_seconds: float | None = None
    server_mbit_s: float | None = None
    start_ns: int | None = None  # endpoint time of the first data byte
    data_start: str | None = None  # upload: "test-start" (a reflex) or "cookie"
    setup_us: float | None = None  # upload: the cookie's time to TEST_START's arrival
    chunks: int = 0  # ndata (download) or nsends (upload)
    stalls: list[dict[str, float]] | None = None  # download: where the data stopped
    stall_ms: float | None = None  # the stalls' excess in all
    error: str | None = None
    bytes_limit: int | None = None  # -n as asked

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "throughput",
            "direction": self.direction,
            "server": self.server,
            "port": self.port,
            "bytes": self.bytes,
        }
        if self.bytes_limit is not None:
            out["bytes_limit"] = self.bytes_limit
        if self.error is not None:
            out["error"] = self.error
            return out
        out.update(
            seconds=self.seconds,
            mbit_s=self.mbit_s,
            skip=self.skip,
            measured_bytes=self.measured_bytes,
            method=self.method,
            server_bytes=self.server_bytes,
            server_seconds=self.server_seconds,
            server_mbit_s=self.server_mbit_s,
            start_ns=self.start_ns,
            chunks=self.chunks,
        )
        if self.data_start is not None:
            out["data_start"] = self.data_start
        if self.setup_us is not None:
            out["setup_us"] = self.setup_us
        if self.sender_mbit_s is not None:
            out["sender_mbit_s"] = self.sender_mbit_s
        if self.whole_mbit_s is not None:
            out["whole_mbit_s"] = self.whole_mbit_s
        if self.stalls is not None:
            out.update(stalls=self.stalls, stall_ms=self.stall_ms)
        return out


#: Stamps closer than this share of the transfer's mean gap between stamps came in one
#: burst (a run of packets at the interface's speed, not the link's).
BURST_SHARE = 0.25


def rate_after(stamps: list[tuple[int, int]], total: int, skip: int) -> tuple[int, int, int]:
    """From (cumulative bytes, endpoint ns) in arrival order: (b, t0, t1) where t0 is the
    stamp at which `skip` bytes were in, moved to the end of the burst that brought them
    (b bytes in by then), and t1 the one completing `total`. Packets come in bursts (a
    router or tbf passing several at once); timed from a burst's first packet, the rest
    of that burst counts as sent in no time and the rate comes out high by about a burst
    over the transfer (measured: captures 0.1-0.2 % above the link's payload ceiling
    whenever 1 MiB fell early in a burst). Raises ValueError when there is nothing left
    to measure."""
    first = next((i for i, (cum, _) in enumerate(stamps) if cum >= skip), None)
    end = next((i for i, (cum, _) in enumerate(stamps) if cum >= total), None)
    if first is None or end is None or first >= end:
        raise ValueError("no data past the skipped part to measure")
    gap = BURST_SHARE * (stamps[-1][1] - stamps[0][1]) / max(len(stamps) - 1, 1)
    while first + 1 < end and stamps[first + 1][1] - stamps[first][1] <= gap:
        first += 1
    (b, t0), t1 = stamps[first], stamps[end][1]
    if t1 <= t0:
        raise ValueError("no data past the skipped part to measure")
    return b, t0, t1


#: A gap between two stamps counts as a stall when it is this much longer than its bytes
#: take at the transfer's own rate.
STALL_MIN_NS = 1_000_000
#: Stamps closer than this are one burst (a capture stamps every packet of a tbf bucket's
#: burst; the gap after it is what the bucket's bytes take, not a stall).
BURST_NS = 200_000


def stalls(
    stamps: list[tuple[int, int]],
    mbit_s: float,
    *,
    min_ns: int = STALL_MIN_NS,
    burst_ns: int = BURST_NS,
    keep: int = 10,
) -> tuple[list[dict[str, float]], float]:
    """Where a transfer stopped, from (cumulative bytes, ns) stamps in arrival order.

    Stamps less than `burst_ns` apart are merged into one burst (its last stamp); a gap
    from one burst to the next is a stall when it exceeds by at least `min_ns` what the
    next burst's bytes take at `mbit_s` (a receiver that falls behind reads in larger
    pieces: a long gap its bytes explain is none). Returns each as {"at_ms" (since the
    first stamp), "at_bytes" (in before the gap), "gap_ms", "excess_ms"}, the `keep`
    largest excesses in time order, and the sum of all excesses (ms)."""
    if not stamps or mbit_s <= 0:
        return [], 0.0
    ns_per_byte = 8e3 / mbit_s
    first = stamps[0][1]
    bursts = [stamps[0]]
    for cum, t in stamps[1:]:
        if t - bursts[-1][1] < burst_ns:
            bursts[-1] = (cum, t)
        else:
            bursts.append((cum, t))
    found: list[tuple[float, int, int, int]] = []  # (excess ns, at ns, at bytes, gap ns)
    for (cum0, t0), (cum1, t1) in pairwise(bursts):
        excess = (t1 - t0) - (cum1 - cum0) * ns_per_byte
        if excess >= min_ns:
            found.append((excess, t0 - first, cum0, t1 - t0))
    total = sum(f[0] for f in found) / 1e6
    kept = sorted(sorted(found, reverse=True)[:keep], key=lambda f: f[1])
    out = [
        {"at_ms": round(at / 1e6, 3), "at_bytes": cum, "gap_ms": round(gap / 1e6, 3),
         "excess_ms": round(ex / 1e6, 3)}
        for ex, at, cum, gap in kept
    ]  # fmt: skip
    return out, round(total, 3)


def mbit(nbytes: int, ns: int) -> float:
    return nbytes * 8 / ns * 1e3  # bits per ns * 1e9 / 1e6
