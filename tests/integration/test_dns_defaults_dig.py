"""`pktlab run dns`'s tries and time per try by default: dig 9.18's, +tries=3 and +time=5
(ours were 2 of 2 s). Side by side with dig against the zone server's silent name: the
same three `timed out` lines; the wait per try is dig's 5 s (checked in
tests/unit/test_cli_dns.py, not timed here: +time=1 keeps this test ~3 s)."""

from __future__ import annotations

import shutil

import pytest
from test_dns_dig import port, side_by_side  # noqa: F401 (a fixture)

pytestmark = pytest.mark.skipif(shutil.which("dig") is None, reason="dig missing")


def test_a_silent_server_gets_digs_three_tries(port: int) -> None:  # noqa: F811
    out = side_by_side("@127.0.0.1", "-p", str(port), "+time=1", "silent.test")
    assert out.count(f";; communications error to 127.0.0.1#{port}: timed out") == 3, out
    assert out.endswith(";; no servers could be reached\n")
