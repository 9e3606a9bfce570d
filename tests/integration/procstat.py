"""What a process holds, read from /proc: resident memory, descriptors, CPU time.

Shared by the hostile-controller tests (tests/integration/test_hostile_*.py) and the long
runs under stress/, which import it from here.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

_TICK = os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    """Resident set size (VmRSS) in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        # The command name may hold spaces: the fields we want follow its closing paren.
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


@dataclass(frozen=True)
class Sample:
    at: float  # time.monotonic()
    rss_kib: int
    fds: int
    cpu_s: float


def sample(pid: int) -> Sample:
    return Sample(time.monotonic(), rss_kib(pid), open_fds(pid), cpu_seconds(pid))


def settle(pid: int, *, fds: int, seconds: float = 5.0, step: float = 0.1) -> Sample:
    """Wait (bounded) until the process holds at most `fds` descriptors, then sample it:
    closing sockets and freeing sessions take a few reactor turns."""
    deadline = time.monotonic() + seconds
    s = sample(pid)
    while s.fds > fds and time.monotonic() < deadline:
        time.sleep(step)
        s = sample(pid)
    return s
