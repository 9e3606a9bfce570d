"""Rarer types' text as dig 9.18 writes them where dnspython's differs (session 26, dns26;
the lines are dig 9.18.49's for the same records): NID's and L64's locator groups
without leading zeros, GPOS's fields quoted, SVCB's ech unquoted and the keys BIND 9.18
does not name (dohpath, ohttp, docpath) as keyN with their wire bytes. Compared too and
the same already: TXT with every escape, names with escaped dots, spaces, `@`, `(`,
`;`, quotes, backslashes and binary bytes, CAA, NAPTR, SRV, URI, SPF, HINFO, RP, AFSDB,
X25, ISDN, APL, EUI48, EUI64, L32, LP, MX 0 ., WKS, NSAP, PX, KX, DNAME, AMTRELAY, SVCB's
mandatory, alpn with an escaped comma, no-default-alpn, port 0 (text, +multiline,
+short, +yaml, +unknownformat)."""

from __future__ import annotations

import dns.rdata
import pytest

from packetlab.measure.dnstext import presentation, restyle

ECH = "ADj+DQA0AQAgAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
ECH += "AAAAAAAAAAAAAAAABAABAAEAB2V4YW1wbGUAAA=="  # an ECHConfigList (dnspython checks it)
DIG = {
    ("NID", "10 0014:4fff:ff20:ee64"): "10 14:4fff:ff20:ee64",
    ("L64", "10 2001:0DB8:1140:1000"): "10 2001:db8:1140:1000",
    ("L64", "20 0000:0000:0000:0001"): "20 0:0:0:1",
    ("GPOS", "-32.6882 116.8652 10.0"): '"-32.6882" "116.8652" "10.0"',
    # SVCB/HTTPS: BIND 9.18 names keys 0..6 (ech unquoted), the later ones are keyN
    ("HTTPS", "1 . dohpath=/dns-query{?dns} alpn=h2"): '1 . alpn="h2" key7="/dns-query{?dns}"',
    ("HTTPS", "1 . ohttp alpn=h2"): '1 . alpn="h2" key8',
    ("HTTPS", "1 . docpath=/a/b alpn=h2"): '1 . alpn="h2" key10="\\004/a/b"',
    ("SVCB", f"2 svc.z. ech={ECH} ipv6hint=::1"): f"2 svc.z. ech={ECH} ipv6hint=::1",
}


@pytest.mark.parametrize("rtype, text", list(DIG), ids=[f"{t}-{i}" for i, (t, _) in enumerate(DIG)])
def test_as_dig(rtype: str, text: str) -> None:
    rd = dns.rdata.from_text("IN", rtype, text)
    assert presentation(rd) == DIG[rtype, text]
    assert presentation(rd, linebreak="\n\t\t\t\t") == DIG[rtype, text]  # one line, as BIND
    assert restyle(presentation(rd), rtype, split=4) == DIG[rtype, text]
