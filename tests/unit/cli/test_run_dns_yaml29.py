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
