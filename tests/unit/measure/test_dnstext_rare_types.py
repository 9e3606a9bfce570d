"""Rarer types' text as dig 9.18 writes them where dnspython's differs (session 26, dns26;
the lines are dig 9.18.49's for the same records): NID's and L64's locator groups
without leading zeros, GPOS's fields quoted. Compared too and the same already: TXT
with every escape, names with escaped dots, spaces, `@`, `(`, `;`, quotes, backslashes
and binary bytes, CAA, NAPTR, SRV, URI, SPF, HINFO, RP, AFSDB, X25, ISDN, APL, EUI48,
EUI64, L32, LP, MX 0 ., WKS, NSAP, PX, KX, DNAME, AMTRELAY (text, +multiline, +short,
+yaml, +unknownformat)."""

from __future__ import annotations

import dns.rdata
import pytest

from packetlab.measure.dnstext import presentation, restyle

DIG = {
    ("NID", "10 0014:4fff:ff20:ee64"): "10 14:4fff:ff20:ee64",
    ("L64", "10 2001:0DB8:1140:1000"): "10 2001:db8:1140:1000",
    ("L64", "20 0000:0000:0000:0001"): "20 0:0:0:1",
    ("GPOS", "-32.6882 116.8652 10.0"): '"-32.6882" "116.8652" "10.0"',
}


@pytest.mark.parametrize("rtype, text", list(DIG), ids=[f"{t}-{i}" for i, (t, _) in enumerate(DIG)])
def test_as_dig(rtype: str, text: str) -> None:
    rd = dns.rdata.from_text("IN", rtype, text)
    assert presentation(rd) == DIG[rtype, text]
    assert presentation(rd, linebreak="\n\t\t\t\t") == DIG[rtype, text]  # one line, as BIND
    assert restyle(presentation(rd), rtype, split=4) == DIG[rtype, text]
