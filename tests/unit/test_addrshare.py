"""The per-address share of a link budget (packetlab.addrshare), sans-IO."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from packetlab.addrshare import AddressShare, parse_share, site_of, source_of


def test_the_share_is_a_fraction_with_a_floor_of_at_most_half() -> None:
    s = AddressShare(Clock().seconds)  # a quarter, at least 64
    assert s.cap(None) is None  # no descriptor limit: no budget to share
    assert s.cap(336) == 84  # the broker's subscribe port under ulimit -n 1024
    assert s.cap(176) == 64  # the proxy's copy relay under 1024: the floor
    assert s.cap(48) == 24  # a low limit: the floor would be all of it, so half
    assert s.cap(1) == 1
    assert AddressShare(Clock().seconds, fraction=1.0).cap(48) == 48  # 1: no share


def test_an_address_past_its_share_is_refused_and_others_are_not() -> None:
    s = AddressShare(Clock().seconds)
    for _ in range(24):
        assert s.refusal("127.0.0.2", 48, "links") is None
        s.add("127.0.0.2")
    why = s.refusal("127.0.0.2", 48, "links")
    assert why == (
        "address 127.0.0.2 holds 24 links, its share (24: per-address share 0.25 of 48, "
        "at least 24)"
    )
    assert s.refusal("127.0.0.1", 48, "links") is None
    assert s.refused == 1
    s.remove("127.0.0.2")
    assert s.refusal("127.0.0.2", 48, "links") is None
    for _ in range(23):
        s.remove("127.0.0.2")
    assert s.held == {}


def test_ipv6_counts_by_its_64() -> None:
    s = AddressShare(Clock().seconds)
    s.add("2001:db8::1")
    s.add("2001:db8::ffff:2")
    s.add("::ffff:192.0.2.7")
    assert s.held == {"2001:db8::/64": 2, "192.0.2.7": 1}
    assert s.sites == {"2001:db8::/48": 2, "192.0.2.7": 1}
    assert source_of("fe80::1%eth0") == "fe80::1%eth0"  # not every LAN's fe80::/64


def test_refusals_are_logged_once_per_address_per_interval() -> None:
    clock = Clock()
    s = AddressShare(clock.seconds, interval=60.0)
    assert s.log_line("10.0.0.2") == " [one line per address a 60 s]"
    assert s.log_line("10.0.0.2") is None
    assert s.log_line("10.0.0.2") is None
    assert s.log_line("10.0.0.3") == " [one line per address a 60 s]"  # another address
    clock.advance(59.9)
    assert s.log_line("10.0.0.2") is None
    clock.advance(0.1)
    assert s.log_line("10.0.0.2") == " [one line per address a 60 s; 3 not logged before this one]"


def test_refusal_lines_of_many_addresses_stay_within_the_port_budget() -> None:
    from packetlab.logbudget import LogBudget

    clock = Clock()
    s = AddressShare(clock.seconds)
    port = LogBudget(clock.seconds, burst=2)
    lines = [s.log_line(f"2001:db8:{i:x}::1", port) for i in range(5)]  # five /48s
    assert [line is not None for line in lines] == [True, True, False, False, False]
    assert s.log_line("2001:db8:2::1", port) is None  # still out of the port's budget
    clock.advance(60)
    line = s.log_line("2001:db8:2::1", port)  # its two refusals before, said now
    assert line is not None and "; 2 not logged before this one]" in line


@pytest.mark.parametrize("text", ["0", "-0.5", "1.5", "nan", "inf", "a quarter", ""])
def test_a_share_must_be_a_fraction(text: str) -> None:
    with pytest.raises(ValueError):
        parse_share(text)


def test_a_share_is_parsed() -> None:
    assert parse_share("0.25") == 0.25 and parse_share("1") == 1.0


def test_the_one_closed_for_a_new_one_is_the_oldest_of_the_busiest_address() -> None:
    from packetlab.addrshare import oldest_of_busiest

    counts = AddressShare(Clock().seconds)
    pending = ["10.0.0.1/a", "10.0.0.2/b", "10.0.0.2/c", "10.0.0.3/d"]  # oldest first
    for p in pending:
        counts.add(p.split("/")[0])

    def host(p: str) -> str:
        return p.split("/")[0]

    assert oldest_of_busiest(pending, counts, host) == "10.0.0.2/b"
    counts.add("10.0.0.3")
    pending.append("10.0.0.3/e")  # a tie: the address counted first
    assert oldest_of_busiest(pending, counts, host) == "10.0.0.2/b"
    assert oldest_of_busiest(pending, AddressShare(Clock().seconds), host) == "10.0.0.1/a"


# The port of `ulimit -n 1024`: 336 subscribed links, an address's share 84 (docs/usability.md,
# Session 32 (dual32): these are its measured cases, before this level).
PORT = 336


def _flood(s: AddressShare, addresses: list[str], taken: int = 0) -> tuple[int, list[str]]:
    """Each address asks for one link, as the broker does: the port's cap first, then the
    share. Links taken (of the port, with `taken` already) and the refusals' reasons."""
    why: list[str] = []
    for a in addresses:
        if taken >= PORT:
            why.append("port")
            continue
        refusal = s.refusal(a, PORT, "subscribed links")
        if refusal is not None:
            why.append(refusal)
            continue
        s.add(a)
        taken += 1
    return taken, why


def _hosts(net: str, n: int) -> list[str]:
    return [f"{net}{i + 1:x}" for i in range(n)]


def test_one_64_keeps_its_share_of_84() -> None:
    s = AddressShare(Clock().seconds)
    taken, why = _flood(s, _hosts("2001:db8:0:1::", 1000))
    assert taken == 84 and len(why) == 916
    assert why[0].startswith("address 2001:db8:0:1::/64 holds 84 subscribed links, its share")


def test_five_64s_of_one_48_hold_two_addresses_shares() -> None:
    """Before: 336 (the whole port, four /64s of 84); now the /48 holds 168."""
    s = AddressShare(Clock().seconds)
    flood = [a for i in range(5) for a in _hosts(f"2001:db8:0:{i + 1:x}::", 200)]
    taken, why = _flood(s, flood)
    assert taken == 168 == s.site_cap(PORT)
    assert s.sites == {"2001:db8::/48": 168}
    assert "port" not in why
    assert why[-1] == (
        "address 2001:db8::/48 holds 168 subscribed links, its share (168: a site's, 2 "
        "addresses' of 84; per-address share 0.25 of 336, at least 64)"
    )
    # hosts of other /48s are independent, and an IPv4 address still gets its 84
    taken, _ = _flood(s, _hosts("2001:db8:1:1::", 100), taken)
    assert taken == 168 + 84
    taken, _ = _flood(s, ["192.0.2.1"] * 100, taken)
    assert taken == PORT  # (the port's cap: 84 left)


def test_a_site_of_one_address_is_the_address() -> None:
    s = AddressShare(Clock().seconds, fraction=1.0)  # 1: no share, at either level
    assert _flood(s, _hosts("2001:db8:0:1::", 400))[0] == PORT
    assert s.site_cap(PORT) == PORT and s.site_cap(None) is None
    assert site_of("192.0.2.7") == "192.0.2.7" == site_of("::ffff:192.0.2.7")
    assert site_of("2001:db8:aa:bb::1") == "2001:db8:aa::/48"


def test_link_local_peers_count_by_address_and_zone_and_a_link_by_two_shares() -> None:
    """Before: 200 link-local peers on three interfaces took 84 (one fe80::/64)."""
    s = AddressShare(Clock().seconds)
    peers = [f"fe80::{i + 1:x}%eth{i % 3}" for i in range(200)]
    taken, why = _flood(s, peers)
    assert taken == 200 and why == []  # each its own address, each link under 168
    assert site_of("fe80::1%eth0") == "fe80::%eth0/64" != site_of("fe80::1%eth1")
    # one host making link-local addresses at will: its link holds two shares
    taken, why = _flood(AddressShare(Clock().seconds), _hosts("fe80::1:", 300))
    assert taken == 168 and why[0].startswith("address fe80::/64 holds 168")
    taken, why = _flood(AddressShare(Clock().seconds), ["fe80::7%eth0"] * 100)
    assert taken == 84 and why[0].startswith("address fe80::7%eth0 holds 84")


def test_refusal_lines_are_one_per_48_a_minute() -> None:
    s = AddressShare(Clock().seconds)
    assert s.log_line("2001:db8:0:1::1") == " [one line per /48 a 60 s]"
    assert s.log_line("2001:db8:0:2::1") is None  # another /64, the same /48
    assert s.log_line("2001:db8:1:1::1") == " [one line per /48 a 60 s]"
    assert s.log_line("fe80::1%eth0") == " [one line per link a 60 s]"
    assert s.log_line("fe80::2%eth0") is None
    assert s.log_line("fe80::2%eth1") is not None


def test_the_one_closed_for_a_new_one_is_of_the_busiest_48() -> None:
    """A real client's /64 holds two pending; a flood from ten /64s of one /48 one each.
    Before: the busiest /64 was the client's, its oldest closed for each new one."""
    from packetlab.addrshare import oldest_of_busiest

    counts = AddressShare(Clock().seconds)
    pending = ["2001:db8:1:1::1", "2001:db8:1:1::2"]
    pending += [f"2001:db8:2:{i + 1:x}::1" for i in range(10)]
    for p in pending:
        counts.add(p)
    assert oldest_of_busiest(pending, counts, str) == "2001:db8:2:1::1"
    counts.add("2001:db8:2:5::9")
    pending.append("2001:db8:2:5::9")  # within the /48, the /64 holding the most
    assert oldest_of_busiest(pending, counts, str) == "2001:db8:2:5::1"
