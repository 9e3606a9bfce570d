"""What one broker port has done since the broker started: the counters an operator reads
on the status page (`pktlab broker status`) and in the broker's last log line. The log
lines of share refusals and cut frames are budgeted (20 a minute), so only these say how
many there were over a day of churn; the gauges beside them (connections, subscribers) say only
what is there now."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

__all__ = ["PortCounters"]


@dataclass
class PortCounters:
    links: int = 0  # connections past TLS (their agent certificate taken)
    taken: Counter[str] = field(default_factory=Counter)  # xcert/xsub/xpub answered SUCCESS
    refused: Counter[str] = field(default_factory=Counter)  # error answers, by status name
    # links the broker closed, by why: idle (no xsub/xpub in time), for_newer (the cap of
    # links without one), unread (a subscriber that does not read), subscription_expired,
    # aborted (no close_notify or FIN after our close), stalled_frame (a frame begun after
    # the xsub/xpub and not finished within IdleTimeout)
    closed: Counter[str] = field(default_factory=Counter)
    cut_frames: int = 0  # peers gone in the middle of a frame
    # first xsubs/xpubs refused for their address's share of the links (AddressShare),
    # also counted in `refused` by status
    refused_share: int = 0
    ended: Counter[str] = field(default_factory=Counter)  # publications ended, by reason

    def as_dict(self) -> dict[str, object]:
        return {
            "links": self.links,
            "taken": dict(sorted(self.taken.items())),
            "refused": dict(sorted(self.refused.items())),
            "closed": dict(sorted(self.closed.items())),
            "cut_frames": self.cut_frames,
            "refused_share": self.refused_share,
            "publications_ended": dict(sorted(self.ended.items())),
        }

    def line(self) -> str:
        """One `key=value` line: `links=3 xsub=2 refused=ESUBBADCHN:1 ...`."""
        parts = [f"links={self.links}"]
        parts += [f"{k}={n}" for k, n in sorted(self.taken.items())]
        for name, counts in (("refused", self.refused), ("closed", self.closed),
                             ("ended", self.ended)):  # fmt: skip
            if counts:
                parts.append(f"{name}=" + ",".join(f"{k}:{n}" for k, n in sorted(counts.items())))
        if self.cut_frames:
            parts.append(f"cut_frames={self.cut_frames}")
        if self.refused_share:
            parts.append(f"refused_share={self.refused_share}")
        return " ".join(parts)
