"""dig +yaml's IPv6 addresses (session 29, dig29): BIND's inet_totext gives one ending
in `::` a `0` in YAML style (dig 9.18.49 beside ours against the same records)."""

from __future__ import annotations

import pytest

from packetlab.cli.run_dns_yaml import _record, v6_zero

CASES = [
    ("AAAA", "2001:db8::", "2001:db8::0"),
    ("AAAA", "::", "::0"),
    ("AAAA", "2001:db8::1", "2001:db8::1"),
    ("IPSECKEY", "10 2 2 2001:db8:: AwEA", "10 2 2 2001:db8::0 AwEA"),
    ("IPSECKEY", "10 1 2 192.0.2.38 AwEA", "10 1 2 192.0.2.38 AwEA"),
    ("AMTRELAY", "0 0 2 2001:db8::", "0 0 2 2001:db8::0"),
    ("AMTRELAY", "0 0 3 relay.test.", "0 0 3 relay.test."),
    ("APL", "1:192.168.32.0/21 !2:2001:db8::/32 2:::/0",
     "1:192.168.32.0/21 !2:2001:db8::0/32 2:::0/0"),
    ("HTTPS", "1 . ipv6hint=2001:db8::", "1 . ipv6hint=2001:db8::"),  # (its own writer)
]  # fmt: skip


@pytest.mark.parametrize(("rtype", "text", "yaml"), CASES, ids=[str(i) for i in range(len(CASES))])
def test_ipv6_ending_in_two_colons_gets_a_zero_in_yaml(rtype: str, text: str, yaml: str) -> None:
    assert v6_zero(rtype, text) == yaml
    record = {"name": "x.test.", "ttl": 300, "type": rtype, "data": text}
    assert _record(record, lambda a: str(a["data"])) == f"'x.test. 300 IN {rtype} {yaml}'"


def test_qr_yaml_shows_each_query_sent() -> None:
    """dig 9.18.49 +yaml +qr: an item for each query, to its server over its transport
    (a refused server's, the truncated UDP query before TCP's, BADVERS's round); ours
    showed the last alone."""
    from packetlab.cli.run_dns_dig import sent_queries

    r = {"query": "bb", "query_before": ["aa"], "server": "127.0.0.1", "proto": "tcp",
         "notes": ["communications error to ::1#53: connection refused",
                   "BADVERS, retrying with EDNS version 0.",
                   "Truncated, retrying in TCP mode."]}  # fmt: skip
    assert sent_queries(r) == [("aa", "::1", "udp"), ("aa", "127.0.0.1", "udp"),
                               ("bb", "127.0.0.1", "udp"), ("bb", "127.0.0.1", "tcp")]  # fmt: skip
    assert sent_queries({"query": "aa", "server": "::1", "proto": "udp"}) == [("aa", "::1", "udp")]
