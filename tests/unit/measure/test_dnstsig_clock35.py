"""TSIG on the signer's clock (session 35, clock35): dig signs a query with its host's
time and checks a reply's against it; the server refuses a time more than its fudge
(300 s) off its own (BADTIME). `run dns` gives the key the endpoint's clock
(`TsigKey.now`); before, dnspython's time.time() was used, so with our clock 600 s off
the endpoint's every signed query was NOTAUTH BADTIME (`Couldn't verify signature:
clocks are unsynchronized`)."""

from __future__ import annotations

import time
from dataclasses import replace

import dns.message
import dns.name
import pytest
from test_dnstsig import DIG_SHA256, KEY, NOW, QMAC, SECRET, reply, signed

from packetlab.cli import run_dns_words
from packetlab.cli.run_dns import clock_first
from packetlab.measure import dnstsig
from packetlab.measure.dnsquery import _make_query


def test_a_query_is_signed_at_the_keys_clock_as_digs_bytes() -> None:
    """dig's query (its ID, cookie and time signed), with the key's clock at dig's time
    and ours now: dig's bytes, the MAC the same (before: signed at time.time())."""
    sent = dns.message.from_wire(DIG_SHA256, keyring=False)
    assert sent.tsig is not None
    query = _make_query(dns.name.from_text("a.test"), "A", 0, 1232, False, True, "IN",
                        False, sent.options[0].to_wire())  # fmt: skip
    query.id = sent.id
    key = dnstsig.key_from_y(f"hmac-sha256:tk.test:{SECRET}").key
    assert key is not None
    at = sent.tsig[0].time_signed
    dnstsig.sign(query, replace(key, now=lambda: at + 0.9))
    assert abs(time.time() - at) > 300  # (dig's: long ago)
    assert dnstsig.render(query) == DIG_SHA256
    assert dnstsig.query_mac(query) == sent.tsig[0].mac
    assert dnstsig.render(query) == DIG_SHA256  # (again: a retry signs anew, the same)


def test_a_reply_is_checked_against_the_keys_clock() -> None:
    wire = signed(reply(), QMAC, when=NOW)
    assert dnstsig.Verifier(replace(KEY, now=lambda: NOW + 299), QMAC).check(wire) is None
    late = dnstsig.Verifier(replace(KEY, now=lambda: NOW + 301), QMAC).check(wire)
    assert late == "clocks are unsynchronized"
    assert dnstsig.Verifier(KEY, QMAC).check(wire) == late  # (time.time(): long after)


@pytest.mark.parametrize(
    ("argv", "first"),
    [(["-y", f"hmac-sha256:tk.test:{SECRET}", "--json", "a.test"], True),
     (["-y", f"hmac-sha256:tk.test:{SECRET}", "--compact", "a.test"], True),
     (["--json", "a.test"], False)],
)  # fmt: skip
def test_run_dns_reads_the_clock_first_for_a_key(argv: list[str], first: bool) -> None:
    import packetlab.cli as cli

    args = cli.parse(["run", "dns", *argv])
    run_dns_words.dig_style(args)
    assert clock_first(args) is first
