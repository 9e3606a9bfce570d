"""The per-address share of a link budget (packetlab.addrshare), sans-IO."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from packetlab.addrshare import AddressShare, parse_share, source_of


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
    assert source_of("fe80::1%eth0") == "fe80::/64"


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
    lines = [s.log_line(f"2001:db8:0:{i:x}::1", port) for i in range(5)]  # five /64s
    assert [line is not None for line in lines] == [True, True, False, False, False]
    assert s.log_line("2001:db8:0:2::1", port) is None  # still out of the port's budget
    clock.advance(60)
    line = s.log_line("2001:db8:0:2::1", port)  # its two refusals before, said now
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
