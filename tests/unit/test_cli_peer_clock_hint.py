"""An endpoint that refuses our chain as expired or not valid yet (TLS alert
certificate_expired) while it is valid by our clock: the run's error names the
endpoint's clock as the likely cause and by how much it must be off (session 33,
skew33: it said only "a certificate has expired or is not valid yet")."""

from __future__ import annotations

from types import SimpleNamespace

from packetlab.cli.link_tls import peer_clock_hint
from packetlab.controller.errors import SessionClosed
from packetlab.tls.records import BAD_CERTIFICATE, CERTIFICATE_EXPIRED, PeerAlert

NOW = 1_796_649_900.0
CHAIN = [
    SimpleNamespace(not_before=0, not_after=2_147_483_647),  # pubcmd, pktlab init's
    SimpleNamespace(not_before=int(NOW) - 80, not_after=int(NOW) + 3600),  # exppriv, fresh
]


def test_a_validity_refusal_of_a_chain_valid_here_names_the_endpoints_clock() -> None:
    error = SessionClosed("connection lost", PeerAlert(CERTIFICATE_EXPIRED))
    hint = peer_clock_hint(error, CHAIN, NOW)
    assert hint is not None
    assert "our chain is valid by this host's clock, from 2026-12-07T13:23:40Z to " in hint
    assert "2026-12-07T14:25:00Z: the endpoint's clock and ours differ" in hint
    assert '"Not valid yet" there means it is more than 80 s behind ours' in hint
    assert '"expired" more than 60 min ahead' in hint


def test_the_alert_is_found_where_the_experiment_raised_it_from() -> None:
    try:
        try:
            raise SessionClosed("connection lost", PeerAlert(CERTIFICATE_EXPIRED))
        except SessionClosed as e:
            raise ValueError("the experiment's own words") from e
    except ValueError as outer:
        assert peer_clock_hint(outer, CHAIN, NOW) is not None


def test_no_hint_for_another_refusal_or_a_chain_not_valid_here() -> None:
    other = SessionClosed("connection lost", PeerAlert(BAD_CERTIFICATE))
    assert peer_clock_hint(other, CHAIN, NOW) is None
    refused = SessionClosed("connection lost", PeerAlert(CERTIFICATE_EXPIRED))
    assert peer_clock_hint(refused, CHAIN, NOW + 7200) is None  # expired here too: ours
    assert peer_clock_hint(refused, [], NOW) is None


def test_the_hint_does_not_blame_the_endpoint_when_ours_may_be_wrong() -> None:
    # Our clock 10 min ahead, the endpoint's right: a chain issued here a minute ago (by
    # our clock) is "not valid yet" there, and valid here. From here the two cases are
    # the same refusal: the hint said "the endpoint's clock is likely off" (review33B).
    error = SessionClosed("connection lost", PeerAlert(CERTIFICATE_EXPIRED))
    hint = peer_clock_hint(error, CHAIN, NOW)
    assert hint is not None
    assert "either may be wrong" in hint
    assert "the endpoint's clock is likely off" not in hint
