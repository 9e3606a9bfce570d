"""A pub_end already past by the broker's clock (a publisher's clock behind the broker's
by more than its PubPeriod): the broker's log and the publisher's error say which clocks
to compare (session 33, skew33: "pub_end is already past" and "bad experiment
description", nothing more)."""

from __future__ import annotations

from packetlab.broker.auth import Refusal, check_publication
from packetlab.controller.publish import PublishRefused, pub_end_hint
from packetlab.wire import Status

NOW = 1_796_649_900 * 10**9
XD = b"controller_addr=127.0.0.1:20600;sni_key=abc;"


def test_the_broker_says_by_how_much_pub_end_is_past_on_its_clock() -> None:
    end = NOW - 5 * 10**9  # the publisher's clock 10 min behind, PubPeriod 595 s
    r = check_publication(
        [], b"k" * 32, [b"p"], bytes(32), b"pub_end=%d;" % end + XD, now=NOW / 1e9
    )
    assert isinstance(r, Refusal) and r.status is Status.EPUBBADXD
    assert r.reason == (
        f"pub_end {end} is already past: 5.000 s before this broker's clock ({NOW}); "
        "is the publisher's clock behind?"
    )


def test_the_publisher_hears_its_pub_end_by_its_own_clock() -> None:
    xdescr = b"pub_end=%d;" % (NOW + 595 * 10**9) + XD
    hint = pub_end_hint(xdescr, NOW)
    assert hint.startswith(" (one cause: its pub_end is 595.000 s ahead by our clock; a broker")
    assert "whose clock is ahead of ours by more refuses it as already past" in hint
    assert pub_end_hint(b"pub_end=%d;" % (NOW - 10**9) + XD, NOW) == (
        " (its pub_end is 1.000 s past by our clock)"
    )
    assert pub_end_hint(XD, NOW) == ""
    e = PublishRefused("xpub", Status.EPUBBADXD, hint)
    assert str(e).startswith("broker refused the xpub: EPUBBADXD (0x54, error 84) (one cause")
