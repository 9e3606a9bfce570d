"""`bench_throughput`'s wire-like link (docs/congruence.md, "The link"): every veth of the
chain steers its receive processing to CPU 0 (no cross-CPU reordering), and ep and tg get
the same TCP buffer ceilings for both tools; the testbed's own defaults stay untouched."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable

import pytest

from benchmarks.bench_throughput import capture, make_wire
from packetlab.measure.baselines import run_iperf3
from packetlab.testbed import Shape, Testbed, chain

pytest_plugins = ["packetlab.testbed.pytest_fixtures"]
pytestmark = [pytest.mark.root]


def rps(tb: Testbed, node: str, ifname: str) -> int:
    path = f"/sys/class/net/{ifname}/queues/rx-0/rps_cpus"
    return int(tb.run(node, ["cat", path]).stdout.strip().replace(",", ""), 16)


def sysctl(tb: Testbed, node: str, key: str) -> list[int]:
    return [int(v) for v in tb.run(node, ["sysctl", "-n", key]).stdout.split()]


def test_make_wire_steers_every_veth_and_sets_buffer_ceilings(
    testbed_factory: Callable[..., Testbed],
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: network namespaces")
    tb = testbed_factory(chain(1, shape={2: Shape.parse("100mbit")}))
    ifaces = [(n, i.name) for n in tb.topology.nodes for i in tb.interfaces(n)]
    before = sysctl(tb, "ep", "net.ipv4.tcp_wmem")
    assert all(rps(tb, n, name) == 0 for n, name in ifaces)  # the testbed's default: off
    make_wire(tb, sndbuf=512 * 1024, rcvbuf=1 << 20)
    assert all(rps(tb, n, name) == 1 for n, name in ifaces)
    assert sysctl(tb, "ep", "net.ipv4.tcp_wmem") == [*before[:2], 512 * 1024]
    assert sysctl(tb, "ep", "net.ipv4.tcp_rmem")[2] == 8 << 20
    assert sysctl(tb, "tg", "net.ipv4.tcp_wmem")[2] == 512 * 1024
    assert sysctl(tb, "tg", "net.ipv4.tcp_rmem")[2] == 1 << 20
    assert sysctl(tb, "r1", "net.ipv4.tcp_rmem")[2] != 1 << 20  # routers untouched


@pytest.mark.skipif(shutil.which("tcpdump") is None or shutil.which("iperf3") is None,
                    reason="tcpdump or iperf3 missing (scripts/setup.sh)")  # fmt: skip
def test_capture_gives_native_downloads_the_papers_figure(
    testbed_factory: Callable[..., Testbed],
) -> None:
    """tcpdump in ep around a native iperf3 download: the capture holds the whole transfer,
    and its figure (1 MiB skipped, kernel receive times) lies under the 100 Mbit/s link."""
    if os.geteuid() != 0:
        pytest.skip("needs root: network namespaces")
    tb = testbed_factory(chain(1, shape={2: Shape.parse("100mbit")}))
    make_wire(tb, sndbuf=512 * 1024, rcvbuf=1 << 20)
    tb.popen("tg", ["iperf3", "-s"], stdout=subprocess.DEVNULL)
    tb.wait_listening("tg", 5201)
    server, nbytes = str(tb.addr("tg")), 4 << 20
    with capture(tb, True, nbytes) as cap:
        got = run_iperf3(server, direction="download", nbytes=nbytes, netns=tb.netns_name("ep"))
    out = cap.result(server)
    assert "error" not in out, out
    assert 30 < out["mbit_s"] < 100 and got.whole_mbit_s is not None
    assert isinstance(out["stalls"], list) and out["stall_ms"] >= 0
    with capture(tb, False, nbytes) as off:  # off: no tcpdump, no figure
        pass
    assert off.data == b""
