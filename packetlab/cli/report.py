"""What `pktlab run traceroute|ping` prints while a measurement runs and when it ends: what
their reports share (`Report`: the progress line, the lines written past it, the run's
start time and the --json summary's extra fields). `packetlab.cli.report_traceroute`
and `packetlab.cli.report_ping` are the reports themselves.

Each hop or reply is written the moment it is known, as the native tool would print it
(Butskoy traceroute, iputils ping) or as one JSON line (`"type": "hop"` / `"reply"`), and
the run ends with its summary: ping's statistics, or in JSON a `"type": "summary"` record
in the spirit of scamper's (start and stop times, on the endpoint's clock as every stamp
of the records when it is known: `packetlab.cli.runclock`; stop reason, hop count,
whether the target was reached; sent, received, loss and RTT min/avg/max/mdev in µs).
"""

from __future__ import annotations

import json
import time
from typing import Any

from packetlab.cli.progress import Progress
from packetlab.cli.runclock import RunClock

__all__ = ["Report", "dumps"]


def dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, sort_keys=True)


class Report:
    def __init__(self, reactor: Any, as_json: bool, dst: str, name: str | None) -> None:
        self.as_json = as_json
        self.dst, self.name = dst, name if name and name != dst else None
        # the summary's start and stop, on the endpoint's clock (on_link reads it)
        self.clock = RunClock()
        self.started = self.clock.started_ns / 1e9
        self.progress = Progress(reactor, self.describe)
        self.src: str | None = None
        # more fields of the --json summary (a source route's addresses: "gateways")
        self.summary_extra: dict[str, Any] = {}

    def describe(self) -> str:
        return f"{time.time() - self.started:.1f} s"

    def write(self, line: str, end: str = "\n") -> None:
        self.progress.write(line, end)

    def close(self) -> None:
        self.progress.stop()
