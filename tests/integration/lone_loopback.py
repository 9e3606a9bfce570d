"""A network namespace with only `lo` up, so that a test's loopback traffic is its own
(and what it puts beside a tool: a TCP flow, ping floods), for the like-native traceroute
and ping tests."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def lone_loopback(prefix: str) -> Iterator[str]:
    """The namespace `PREFIX<pid>-lo`, removed after."""
    name = f"{prefix}{os.getpid() % 10000}-lo"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@contextmanager
def ping_floods(netns: str, target: str) -> Iterator[None]:
    """Two `ping -f` (56 and 1400 bytes) to `target` in `netns` while the block runs."""
    flood = ["ip", "netns", "exec", netns, "ping", "-f", "-q"]
    quiet = subprocess.DEVNULL
    floods = [
        subprocess.Popen([*flood, *size, target], stdout=quiet, stderr=quiet)
        for size in ([], ["-s", "1400"])
    ]
    try:
        time.sleep(0.5)
        yield
    finally:
        for f in floods:
            f.terminate()
            f.wait(timeout=10)
