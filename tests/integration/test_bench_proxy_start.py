"""`bench_proxy` with a relay mode the proxy refuses stops at once with the proxy's reason
(it waited 20 s for a port and then said only "did not start")."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from benchmarks.bench_proxy import start_proxy


def test_refused_relay_mode_stops_at_once_with_the_reason(tmp_path: Path) -> None:
    t0 = time.monotonic()
    with pytest.raises(SystemExit) as e:
        start_proxy(tmp_path / "home", tmp_path, "sockmap")
    assert time.monotonic() - t0 < 15  # twistd's start-up and refusal; not the 20 s wait
    assert str(e.value) == (
        "pktproxy --relay sockmap exited at start: twistd pktproxy: --relay: 'sockmap' is not "
        "one of copy, splice, python"
    )
