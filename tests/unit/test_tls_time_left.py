"""The expiry warning of a daemon's own chain names the time left in a unit a reader
wants: it said "in 0.0 h" with a minute to go."""

from __future__ import annotations

import pytest

from packetlab.ppks import generate_private_key, issue_certificate
from packetlab.tls import chain_validity
from packetlab.tls.credentials import time_left

NOW = 1_800_000_000


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (0, "0 s"),
        (42, "42 s"),
        (89, "89 s"),
        (90, "2 min"),
        (12 * 60 + 10, "12 min"),
        (89 * 60, "89 min"),
        (90 * 60, "1.5 h"),
        (3.5 * 3600, "3.5 h"),
        (7199, "2 h"),
        (47 * 3600, "47 h"),
        (2 * 86400, "2 d"),
        (3 * 86400 - 1, "3 d"),
        (6.5 * 86400, "6.5 d"),
    ],
)
def test_time_left_units(seconds: float, said: str) -> None:
    assert time_left(seconds) == said


def test_chain_expiring_in_seconds_says_seconds() -> None:
    key = generate_private_key()
    cert = issue_certificate("subcmd", generate_private_key(), key, 0, NOW + 42)
    error, warning, not_after = chain_validity([cert], "--cert", NOW)
    assert error is None and not_after == NOW + 42
    assert warning == (
        "--cert: certificate #0 (subcmd) expires at 2027-01-15T08:00:42Z, in 42 s: renew it "
        "before then (every peer refuses an expired chain) and restart"
    )
