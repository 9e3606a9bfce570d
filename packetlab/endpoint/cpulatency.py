"""`CpuLatencyUs`: while a controller session is open, ask the kernel to keep every
CPU's wake-up latency at most N µs (Linux PM QoS, `/dev/cpu_dma_latency`;
docs/endpoint.md).

Why: an idle CPU halts (on a VM the vCPU exits to the hypervisor), and waking it for the
next controller request costs tens of µs; an mread round trip wakes the endpoint and then
the controller, twice per request (docs/performance.md, "Why a do-nothing endpoint takes
148 µs"). With a latency request below the halt state's exit latency (0 asks for polling
idle) the idle loop polls instead of halting and a wake-up costs a few µs. The kernel keeps
the request while the descriptor is open and takes the lowest of all requests, so it acts
for the whole machine: a polling idle loop costs power (bare metal) or host CPU (a VM).
Hence only while a session is open: the descriptor is opened once at start (so a missing
permission stops the daemon with one line, not the first session), holds the default
("no constraint") while no session is open, and N while at least one is.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import Protocol

from packetlab.sessioncount import SessionCount

__all__ = [
    "DEVICE",
    "MAX_CPU_LATENCY_US",
    "NO_CONSTRAINT",
    "CpuLatencyHold",
    "CpuLatencyUnavailable",
    "Device",
    "open_device",
]

DEVICE = "/dev/cpu_dma_latency"
#: The kernel's PM_QOS_CPU_LATENCY_DEFAULT_VALUE: what a request without a constraint holds.
NO_CONSTRAINT = 2_000_000_000
#: Above 1 s no idle state is excluded on any machine: a mistake, not a latency trade.
MAX_CPU_LATENCY_US = 1_000_000


class CpuLatencyUnavailable(OSError):
    """The PM QoS device cannot be opened for writing (not Linux, no permission)."""


class Device(Protocol):
    """What `CpuLatencyHold` needs of the device: write a request, close."""

    def write(self, value: int, /) -> None: ...

    def close(self) -> None: ...


class _FdDevice:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, value: int) -> None:
        os.write(self.fd, struct.pack("=i", value))  # the kernel takes a binary s32 (µs)

    def close(self) -> None:
        os.close(self.fd)


def open_device(path: str = DEVICE) -> Device:
    """Open the PM QoS device for writing (the kernel adds a request without a
    constraint); `CpuLatencyUnavailable` with the reason and the fix otherwise."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise CpuLatencyUnavailable(
            f"CpuLatencyUs needs {path} (Linux PM QoS), which this system does not have; "
            "remove CpuLatencyUs"
        ) from None
    except PermissionError:
        raise CpuLatencyUnavailable(
            f"CpuLatencyUs needs write access to {path} (root, or an operator-granted "
            "permission on the device); remove CpuLatencyUs or run the endpoint as root"
        ) from None
    except OSError as e:
        raise CpuLatencyUnavailable(f"CpuLatencyUs: cannot open {path}: {e.strerror}") from None
    return _FdDevice(fd)


class CpuLatencyHold(SessionCount):
    """Hold a CPU wake-up latency request of `latency_us` while sessions are open:
    `opened()` when a session starts returns its close callback (safe to call twice).
    `log(message)` gets a line when a request cannot be written (the session goes on)."""

    def __init__(
        self,
        latency_us: int,
        device: Device,
        log: Callable[[str], object] = lambda _message: None,
    ) -> None:
        self.latency_us = latency_us
        self.device = device
        self.log = log
        self.held = False
        self.holds = 0  # times the request went from "no constraint" to `latency_us`

    def _opened(self) -> None:
        if self.live == 1:
            self._request(self.latency_us)

    def _closed(self) -> None:
        if self.live == 0:
            self._request(NO_CONSTRAINT)

    def _request(self, value: int) -> None:
        try:
            self.device.write(value)
        except OSError as e:  # a session never fails for want of a latency request
            self.log(f"CpuLatencyUs: could not write {value} to the PM QoS device: {e}")
            return
        self.held = value != NO_CONSTRAINT
        self.holds += self.held

    def close(self) -> None:
        """Drop the request for good (the kernel removes it with the descriptor)."""
        self.device.close()
        self.held = False
