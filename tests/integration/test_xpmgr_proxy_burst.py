"""Many endpoints arriving at once at `pktlab xpmgr` through `twistd pktproxy` (active
mode, `-n`; session 32): the progress lines and the per-endpoint results lose nothing.

Seven `twistd pktendpoint`s (one session each, each its own HostID) are started together
at a proxy where the manager keeps its default two backlogs; the mlet takes a second, so
several run at once while the proxy holds the others for the next backlogs.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from pxworld import EndpointProc, ProxyProc, XpmgrProc, active_conf
from tls_world import home_fixture

home = home_fixture(root=True)

COUNTS = re.compile(r"^xpmgr: endpoints seen (\d+), running (\d+), done (\d+), failed (\d+)$")


def test_seven_endpoints_at_once_through_the_proxy_counts_and_results(
    tmp_path: Path, home: Path, procs: list[object]
) -> None:
    n = 7
    proxy = ProxyProc(tmp_path, home)
    procs.append(proxy)
    mlet = tmp_path / "mlet.sh"
    mlet.write_text('#!/bin/sh\nsleep 1\necho "ok $EPADDR"\n')
    mlet.chmod(0o755)
    conf = active_conf(home, tmp_path / "active.conf", "xpburst")  # TargetBacklogConn 2
    xp = XpmgrProc(tmp_path, conf, [str(mlet)], "-n", str(n),
                   addr=f"127.0.0.1:{proxy.setup}")  # fmt: skip
    procs.append(xp)
    proxy.counters("backlog == 2")
    eps = [EndpointProc(tmp_path, home, f"127.0.0.1:{proxy.endpoints}", "--snikey", "xpburst",
                        "--sessions", "1", "--host-id", f"ep{i}") for i in range(n)]  # fmt: skip
    procs.extend(eps)
    assert xp.wait_exit(120) == 0, xp.text()[-3000:]

    counts = [tuple(map(int, m.groups())) for x in xp.text().splitlines()
              if (m := COUNTS.match(x))]  # fmt: skip
    # not a terminal: one line per change, two per endpoint (it came, it ended)
    assert len(counts) == 2 * n, counts
    assert all(s == r + d + f for s, r, d, f in counts), counts
    assert [s for s, *_ in counts] == sorted(s for s, *_ in counts)  # seen only grows
    assert [d + f for *_, d, f in counts] == sorted(d + f for *_, d, f in counts)
    assert counts[-1] == (n, 0, n, 0), counts

    results = xp.result_lines()
    assert sorted(r["hostid"] for r in results) == [f"ep{i}" for i in range(n)], results
    assert all(r["status"] == "done" and r["exit_code"] == 0 for r in results), results
    assert all(r["output"] == "ok 127.0.0.1\n" and r["snikey"] == "xpburst" for r in results)
    assert xp.text().count("ok 127.0.0.1") == n
    stats = proxy.counters(f"splices == {n}")
    assert stats["refusals"] == {}, stats
    # every endpoint had its one session and ended: none was left waiting at the proxy
    deadline = time.monotonic() + 30
    while any(ep.proc.poll() is None for ep in eps) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [ep.proc.poll() for ep in eps] == [0] * n, [ep.text()[-500:] for ep in eps]
