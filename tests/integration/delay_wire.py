"""A fixed-delay wire between two testbed namespaces, since this kernel has no netem (tbf
and htb shape rates: an isolated packet passes at once). A TUN device in each namespace;
a real-time thread writes each packet read from one into the other `delay` seconds later,
plus `extra` for packets from or to `extra_addr` (a path longer for one host only), plus
a uniform random `jitter`. Within ~20 us on the shared 2-CPU machine (sleep to 300 us
before a packet is due, then poll), where Python's timers alone were off by milliseconds.

    with tb.enter("r2"): a = open_tun("dA")
    with tb.enter("tg"): b = open_tun("dB")
    wire = DelayWire(a, b, delay=0.002)   # ... wire.close()
"""

from __future__ import annotations

import fcntl
import heapq
import ipaddress
import os
import random
import select
import struct
import threading
import time

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000


def open_tun(name: str) -> int:
    """A TUN device `name` in the calling thread's namespace (raw IP packets, no header)."""
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


class DelayWire:
    def __init__(self, fd_a: int, fd_b: int, *, delay: float, extra: float = 0.0,
                 extra_addr: str | None = None, jitter: float = 0.0) -> None:  # fmt: skip
        self.peer = {fd_a: fd_b, fd_b: fd_a}
        self.delay, self.extra, self.jitter = delay, extra, jitter
        self.extra_addr = ipaddress.ip_address(extra_addr).packed if extra_addr else None
        self.queue: list[tuple[float, int, int, bytes]] = []
        self.count = 0
        self.closed = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.closed = True
        self.thread.join(5)
        for fd in self.peer:
            os.close(fd)

    def _delay_of(self, packet: bytes) -> float:
        d = self.delay + (random.uniform(0, self.jitter) if self.jitter else 0.0)
        if self.extra_addr is not None and self.extra_addr in (packet[12:16], packet[16:20]):
            d += self.extra
        return d

    def _loop(self) -> None:
        try:  # the machine is shared: the wire must not wait for a CPU
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(50))
        except OSError:
            pass
        while not self.closed:
            now = time.monotonic()
            while self.queue and self.queue[0][0] <= now:
                _, _, out, packet = heapq.heappop(self.queue)
                os.write(out, packet)
            wait = min(0.05, self.queue[0][0] - now) if self.queue else 0.05
            wait = wait - 0.0003 if wait > 0.0006 else 0.0  # then poll up to the time
            for fd in select.select(list(self.peer), [], [], wait)[0]:
                packet = os.read(fd, 65536)
                self.count += 1
                due = time.monotonic() + self._delay_of(packet)
                heapq.heappush(self.queue, (due, self.count, self.peer[fd], packet))
