"""DNSSEC records as dig 9.18 writes them where dnspython's text differs (session 26,
dns26; each line below is dig 9.18.49's for the same record, captured against a
dnspython server): RSAMD5's key tag (BIND 9.18 sums the key as for every algorithm),
RRSIG and SIG times by serial arithmetic around now (an expiration more than 68 years
ahead is written in the past), SIG's multi-line form and its signature with +nocrypto."""

from __future__ import annotations

import base64
import calendar
import datetime
import hashlib
import time

import dns.dnssec
import dns.rdata
import pytest

from packetlab.measure import dnstext
from packetlab.measure.dnstext import presentation, restyle

LB = "\n\t\t\t\t"  # +multiline's line break and indent at the rdata column


def b64(seed: str, n: int) -> str:
    out = b""
    while len(out) < n:
        out += hashlib.sha256((seed + str(len(out))).encode()).digest()
    return base64.b64encode(out[:n]).decode()


def utc(text: str) -> int:
    return calendar.timegm(datetime.datetime.strptime(text, "%Y%m%d%H%M%S").timetuple())


NOW = utc("20261206150000")  # when dig printed the lines below


@pytest.fixture
def now(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time", lambda: float(NOW))  # (dig's lines: that day's)


def test_rsamd5_s_key_tag_is_bind_9_18_s_sum() -> None:
    rd = dns.rdata.from_text("IN", "DNSKEY", f"257 3 1 {b64('md5', 132)}")
    # dnspython's key_id: RFC 4034 B.1's 61226 (the modulus' bits), which BIND 9.18 dropped
    assert dnstext.key_tag(rd) == 29485 != dns.dnssec.key_id(rd)  # type: ignore[arg-type]
    assert presentation(rd, linebreak=LB).endswith(") ; KSK; alg = RSAMD5 ; key id = 29485")
    assert presentation(rd, crypto=False) == "257 3 1 [key id = 29485]"
    for alg, size in ((8, 260), (13, 64), (15, 32)):  # the others: dnspython's, the same
        rd = dns.rdata.from_text("IN", "DNSKEY", f"256 3 {alg} {b64(str(alg), size)}")
        assert dnstext.key_tag(rd) == dns.dnssec.key_id(rd)  # type: ignore[arg-type]


def test_sig_times_are_read_within_68_years_of_now_as_bind() -> None:
    assert dnstext.sig_time(utc("20991231235959"), now=NOW) == "19631125173143"
    assert dnstext.sig_time(utc("20270101000000"), now=NOW) == "20270101000000"
    assert dnstext.sig_time(0, now=NOW) == "19700101000000"
    assert dnstext.sig_time(2**31, now=NOW) == "20380119031408"
    # after 2106 the 32 bits wrap: seen from 2100, a small value is ahead
    assert dnstext.sig_time(100, now=utc("21000101000000")) == "21060207062956"  # 2**32 s + 100 s


def test_rrsig_far_ahead_as_dig(now: None) -> None:
    sig = b64("y", 100)
    rd = dns.rdata.from_text(
        "IN", "RRSIG", f"NSEC3 13 1 0 20991231235959 20000101000000 65535 z. {sig}"
    )
    head = "NSEC3 13 1 0 19631125173143 20000101000000 65535 z."
    assert presentation(rd).startswith(f"{head} 6imv9Pdjodu+RrxRT8sbMKMkKwekdxF/x54uR2yU5ElV")
    assert presentation(rd, crypto=False) == f"{head} [omitted]"
    multi = presentation(rd, linebreak=LB)
    assert multi.startswith(f"NSEC3 13 1 0 ({LB}19631125173143 20000101000000 65535 z.{LB}")
    # the text kept in a record (written in 1963) is written again as dig would
    assert restyle(presentation(rd), "RRSIG", linebreak=LB) == multi
    assert restyle(presentation(rd), "RRSIG", split=0) == f"{head} {sig}"


def test_sig_as_dig(now: None) -> None:
    sig = b64("sig", 128)
    rd = dns.rdata.from_text("IN", "SIG", f"A 8 2 300 20270101000000 20261201000000 4242 z. {sig}")
    words = [sig[i : i + 44] for i in range(0, len(sig), 44)]
    assert presentation(rd, linebreak=LB) == (
        f"A 8 2 300 20270101000000 ({LB}20261201000000 4242 z.{LB}{LB.join(words)} )"
    )  # BIND: SIG's parenthesis after its expiration (RRSIG's before it)
    assert presentation(rd, crypto=False).endswith(
        " z. " + " ".join(sig[i : i + 56] for i in range(0, len(sig), 56))
    )  # fmt: skip  (+nocrypto: BIND omits an RRSIG's signature, not a SIG's)
    assert "[omitted]" not in presentation(rd, linebreak=LB, crypto=False)
