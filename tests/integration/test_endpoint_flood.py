"""A controller that floods a real endpoint with requests and does not read the answers.

The endpoint must stop reading requests while its answers cannot go out (§1.4: at most
100 queued, then backpressure), so its memory stays bounded however many requests are
pipelined; once the controller reads again every request is answered, in order, and the
endpoint is still healthy.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from conftest import EndpointProcess

from packetlab import wire
from packetlab.wire import vmem

# 2M pipelined mreads (20 MB of requests, more than loopback's kernel buffers hold);
# their answers would be 144 MB if the endpoint buffered them instead of pausing.
N = 2_000_000
LEN = 64


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_request_flood_is_bounded_and_fully_answered(
    endpoint_factory: Callable[..., EndpointProcess],
) -> None:
    ep = endpoint_factory()
    c = ep.accept()
    c.start()
    before = rss_kib(ep.pid)
    request = wire.encode(wire.Mread(addr=vmem.HOSTID.addr, len=LEN))
    sender_error: list[BaseException] = []

    def flood() -> None:
        try:
            c.sock.settimeout(None)
            c.sock.sendall(request * N)  # blocks once the endpoint stops reading
        except BaseException as e:  # reported by the main thread
            sender_error.append(e)

    t = threading.Thread(target=flood, daemon=True)
    t.start()
    peak = before
    for _ in range(20):  # 2 s without reading a byte
        time.sleep(0.1)
        peak = max(peak, rss_kib(ep.pid))
    assert ep.proc.poll() is None, ep.output()
    # Everything unread sits in kernel buffers and a bounded queue, not in the endpoint.
    assert peak - before < 16 * 1024, f"endpoint grew by {(peak - before) // 1024} MiB"
    assert t.is_alive(), "the flood never met backpressure (sent all requests unread)"

    # Every answer is the same frame, so the stream must be that frame repeated N times.
    frame = wire.encode(
        wire.Mdata(addr=vmem.HOSTID.addr, data=b"pktendpoint-test".ljust(LEN, b"\0"))
    )
    pattern = frame * ((1 << 20) // len(frame) + 2)
    total, want = 0, N * len(frame)
    c.sock.settimeout(10.0)
    while total < want:
        data = c.sock.recv(min(1 << 20, want - total))
        assert data, "endpoint closed the connection"
        at = total % len(frame)
        assert data == pattern[at : at + len(data)], f"stream differs near byte {total}"
        total += len(data)
    t.join(timeout=10.0)
    assert not t.is_alive() and not sender_error, sender_error
    assert c.mread(vmem.IP4NO.addr, 1) == b"\x01"  # still serving
    assert rss_kib(ep.pid) - before < 16 * 1024
