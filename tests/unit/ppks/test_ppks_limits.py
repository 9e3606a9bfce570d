"""Limits: parsing per field, combining over a chain (§4.5), valid_dest, end time."""

from __future__ import annotations

import ipaddress

import pytest
from ppks_factory import NA, cert

from packetlab.ppks import (
    DEFAULT_SEND_BURST,
    BurstRate,
    CertificateError,
    CertLimits,
    combine_limits,
    experiment_end_time,
)
from packetlab.ppks.limits import NS_PER_S
from packetlab.wire.nvlist import parse_nvlist


def lim(text: str) -> CertLimits:
    return CertLimits.from_pairs(parse_nvlist(text, allow_optional=True))


def test_default_send_limit_is_10mbit_per_10s() -> None:
    assert DEFAULT_SEND_BURST == BurstRate(12_500_000, 10 * NS_PER_S)
    assert DEFAULT_SEND_BURST.amount * 8 / 10 == 10_000_000


def test_empty_chain_gets_only_the_default() -> None:
    limits = combine_limits([])
    assert limits.burst_rate_byte == (DEFAULT_SEND_BURST,)
    assert limits.max_send_byte is None and limits.valid_dest == ()
    assert limits.dest_allowed("192.0.2.1") and limits.priority_allowed(10**9)
    assert combine_limits([], default_send_burst=None).burst_rate_byte == ()


def test_counters_take_the_minimum() -> None:
    a = lim("max_send_byte=100;max_recv_pkt=5;max_num_priority=3;max_socket_count=9;")
    b = lim("max_send_byte=50;max_exp_period=7;max_num_priority=4;")
    c = lim("max_recv_byte=1;")
    out = combine_limits([a, b, c])
    assert out.max_send_byte == 50
    assert out.max_recv_pkt == 5
    assert out.max_exp_period == 7
    assert out.max_recv_byte == 1
    assert out.max_send_pkt is None
    assert out.max_num_priority == 3 and out.max_socket_count == 9
    assert out.priority_allowed(3) and not out.priority_allowed(4)


def test_burst_rates_all_apply() -> None:
    a = lim("max_burst_rate_byte=100/10,200/30;max_burst_rate_pkt=5/1;")
    b = lim("max_burst_rate_byte=100/10,50/1;")
    out = combine_limits([a, b])
    assert out.burst_rate_byte == (
        DEFAULT_SEND_BURST,
        BurstRate(100, 10),
        BurstRate(200, 30),
        BurstRate(50, 1),
    )
    assert out.burst_rate_pkt == (BurstRate(5, 1),)


def test_valid_dest_is_an_and_of_lists() -> None:
    a = lim("valid_dest=10.0.0.0/8,2001:db8::/32;")
    b = lim("valid_dest=10.1.0.0/16,192.0.2.7;")
    c = lim("max_send_byte=1;")  # no valid_dest: places no restriction
    out = combine_limits([a, b, c])
    assert out.dest_allowed("10.1.2.3")
    assert not out.dest_allowed("10.2.0.1")  # in a, not in b
    assert not out.dest_allowed("192.0.2.7")  # in b, not in a
    assert not out.dest_allowed("2001:db8::1")  # v6 only in a
    assert out.dest_allowed(ipaddress.ip_address("10.1.255.255"))
    single = combine_limits([lim("valid_dest=192.0.2.7,::1;")])
    assert single.dest_allowed("192.0.2.7") and not single.dest_allowed("192.0.2.8")
    assert single.dest_allowed("::1") and not single.dest_allowed("::2")


def test_monitor_digests_are_the_union_in_order() -> None:
    d1, d2, d3 = "11" * 32, "22" * 32, "33" * 32
    out = combine_limits([lim(f"monitor={d1}{d2};"), lim(f"monitor={d2}{d3};filter={d1};")])
    assert out.monitor_digests == tuple(bytes.fromhex(d) for d in (d1, d2, d3))
    assert out.filter_digests == (bytes.fromhex(d1),)


def test_src_ip_spoofing_needs_every_cert() -> None:
    assert not combine_limits([]).src_ip_spoofing
    assert combine_limits([lim("src_ip_spoofing=1;")]).src_ip_spoofing
    assert not combine_limits(
        [lim("src_ip_spoofing=1;"), lim("src_ip_spoofing=0;")]
    ).src_ip_spoofing
    assert not combine_limits([lim("src_ip_spoofing=1;"), lim("max_send_byte=1;")]).src_ip_spoofing


def test_combine_from_certificates_skips_leaves() -> None:
    chain = [
        cert("pubcmd", "exper1", "xc"),
        cert("delpriv", "exper", "exper1", del_type="exppriv", limits="max_send_byte=10;"),
        cert("exppriv", "eop", "exper", limits="max_send_byte=20;valid_dest=10.0.0.0/8;"),
    ]
    out = combine_limits(chain)
    assert out.max_send_byte == 10
    assert out.valid_dest == ((ipaddress.ip_network("10.0.0.0/8"),),)
    # a CA cert without cert_limit adds nothing but still counts for the spoofing AND
    bare = [cert("exppriv", "eop", "exper")]
    assert combine_limits(bare).max_send_byte is None


def test_to_pairs_round_trip() -> None:
    text = (
        "filter=" + "aa" * 32 + ";monitor=" + "bb" * 32 + ";max_num_priority=1;max_socket_count=2;"
        "max_exp_period=3;max_send_byte=4;max_send_pkt=5;max_recv_byte=6;max_recv_pkt=7;"
        "max_burst_rate_byte=1/2,3/4;max_burst_rate_pkt=5/6;valid_dest=10.0.0.0/8,::1;"
        "src_ip_spoofing=0;*other=x;"
    )
    a = lim(text)
    assert "".join(f"{'*' if p.optional else ''}{p.name}={p.value};" for p in a.to_pairs()) == text


def test_experiment_end_time() -> None:
    chain = [cert("pubcmd", "exper", "xc", na=NA - 10), cert("exppriv", "eop", "exper")]
    now = (NA - 100) * NS_PER_S
    assert experiment_end_time(chain, now, None) == (NA - 10) * NS_PER_S
    assert experiment_end_time(chain, now, 5 * NS_PER_S) == now + 5 * NS_PER_S
    assert experiment_end_time(chain, now, -5) == now  # exhausted budget: end now
    assert experiment_end_time([], now, 1) == now + 1
    with pytest.raises(ValueError):
        experiment_end_time([], now, None)


def test_the_operators_exppriv_window_replaces_the_built_in_one() -> None:
    """An exppriv certificate (the EOp's grant) that sets max_burst_rate_byte lifts the
    built-in 10 Mb/s window; a delpriv (the experimenter's) cannot, and every window of
    every certificate still applies."""
    from packetlab.ppks import generate_private_key, issue_certificate

    eop, exper, dele = (generate_private_key() for _ in range(3))
    fast = CertLimits(max_burst_rate_byte=(BurstRate(1_250_000_000, 10 * NS_PER_S),))
    exppriv = issue_certificate("exppriv", eop, exper, 0, 2**31 - 1, limits=fast)
    assert combine_limits([exppriv]).burst_rate_byte == fast.max_burst_rate_byte
    plain = issue_certificate("exppriv", eop, exper, 0, 2**31 - 1)
    delpriv = issue_certificate(
        "delpriv", exper, dele, 0, 2**31 - 1, del_type="exppriv", limits=fast
    )
    assert combine_limits([plain, delpriv]).burst_rate_byte == (
        DEFAULT_SEND_BURST,
        *fast.max_burst_rate_byte,
    )
    slow = CertLimits(max_burst_rate_byte=(BurstRate(1000, NS_PER_S),))
    del_slow = issue_certificate(
        "delpriv", exper, dele, 0, 2**31 - 1, del_type="exppriv", limits=slow
    )
    assert fast.max_burst_rate_byte is not None and slow.max_burst_rate_byte is not None
    assert combine_limits([exppriv, del_slow]).burst_rate_byte == (
        *fast.max_burst_rate_byte,
        *slow.max_burst_rate_byte,
    )


def test_reflex_limit_round_trips_and_is_absent_by_default() -> None:
    text = "monitor=" + "bb" * 32 + ";reflex=" + "cc" * 32 + "dd" * 32 + ";max_send_pkt=5;"
    a = lim(text)
    assert a.reflex_digests == (b"\xcc" * 32, b"\xdd" * 32)
    assert "".join(f"{p.name}={p.value};" for p in a.to_pairs()) == text
    plain = lim("monitor=" + "bb" * 32 + ";max_send_pkt=5;")
    assert plain.reflex_digests is None  # and no reflex pair is written back
    assert [p.name for p in plain.to_pairs()] == ["monitor", "max_send_pkt"]
    with pytest.raises(CertificateError):
        lim("reflex=abc;")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("max_send_byte=" + "9" * 5000 + ";", "bad_decimal"),
        ("max_num_priority=1" + "0" * 4400 + ";", "bad_decimal"),
        ("max_burst_rate_byte=1/" + "9" * 5000 + ";", "bad_burst_rate"),
        ("max_burst_rate_pkt=" + "9" * 5000 + "/1;", "bad_burst_rate"),
    ],
)
def test_a_number_too_long_for_int_is_a_limit_error(text: str, reason: str) -> None:
    # Python refuses int() of over 4,300 digits with ValueError; a cert_limit value that
    # long (a 64 KiB xcert holds it) escaped parse_certificate and the broker's handler.
    with pytest.raises(CertificateError) as e:
        lim(text)
    assert e.value.reason.value == reason


def test_leading_zeros_do_not_count_as_digits() -> None:
    out = lim("max_num_priority=" + "0" * 4400 + "3;max_burst_rate_pkt=" + "0" * 5000 + "5/07;")
    assert out.max_num_priority == 3 and out.max_burst_rate_pkt == (BurstRate(5, 7),)
