"""The endpoint clock: read it, and estimate its offset from ours NTP-style.

The endpoint samples `CLOCK_REALTIME` when it answers an mread of TIME (§2.2). With our
clock read just before the request (t0) and just after the answer (t3), the endpoint time
`te` fell somewhere in [t0, t3]; assuming the middle gives offset = te - (t0 + t3) / 2 with
an error of at most rtt / 2. Over several samples the one with the smallest rtt has the
tightest bound, so that is the estimate (as NTP's clock filter does).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from packetlab.controller._deferred import deferred_api
from packetlab.wire import vmem

if TYPE_CHECKING:
    from packetlab.controller.session import EndpointSession

_U64 = struct.Struct(">Q")


@dataclass(frozen=True, slots=True)
class ClockSample:
    sent: int  # local ns, before the request
    endpoint: int  # endpoint ns, from TIME
    received: int  # local ns, after the answer

    @property
    def rtt(self) -> int:
        return self.received - self.sent

    @property
    def offset(self) -> int:
        """Endpoint clock minus local clock, in ns."""
        return self.endpoint - (self.sent + self.received) // 2


@dataclass(frozen=True, slots=True)
class ClockEstimate:
    """`offset` = endpoint clock - local clock (ns), within ± `error` (= rtt / 2) of the
    truth; `rtt` is the smallest round trip seen (ns)."""

    offset: int
    rtt: int
    samples: tuple[ClockSample, ...] = field(repr=False)

    @property
    def error(self) -> int:
        return self.rtt // 2

    def to_endpoint(self, local_ns: int) -> int:
        """A local time expressed on the endpoint's clock."""
        return local_ns + self.offset

    def to_local(self, endpoint_ns: int) -> int:
        """An endpoint time (ntag, ndata, nstat) expressed on the local clock."""
        return endpoint_ns - self.offset


def estimate_from(samples: list[ClockSample]) -> ClockEstimate:
    if not samples:
        raise ValueError("no clock samples")
    best = min(samples, key=lambda s: s.rtt)
    return ClockEstimate(best.offset, best.rtt, tuple(samples))


@deferred_api
async def read_time(session: EndpointSession) -> int:
    """The endpoint's clock now (ns since the epoch)."""
    data = await session.mread(vmem.TIME.addr, vmem.TIME.size)
    return int(_U64.unpack(data)[0])


@deferred_api
async def sample_clock(session: EndpointSession) -> ClockSample:
    t0 = session.clock_ns()
    te = await read_time(session)
    t3 = session.clock_ns()
    return ClockSample(t0, te, t3)


@deferred_api
async def estimate_clock(session: EndpointSession, samples: int = 8) -> ClockEstimate:
    """Offset and RTT from `samples` mread TIME round trips, one at a time (pipelined
    reads would wait behind each other and inflate the rtt)."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    got = [await sample_clock(session) for _ in range(samples)]
    return estimate_from(got)
