"""Native tool argv and output parsing, on output captured from the real tools."""

from __future__ import annotations

import pytest

from packetlab.measure import native
from packetlab.measure.native import NativeToolError
from packetlab.measure.records_fields import Stamp
from packetlab.measure.records_traceroute import Hop, format_traceroute
from packetlab.measure.replies import ReplyKind

# traceroute 2.1.2 in the chain testbed (ep -> r1 -> r2 -> tg).
BUTSKOY_V4 = """\
traceroute to 10.77.3.2 (10.77.3.2), 8 hops max, 60 byte packets
 1  10.77.1.2  0.056 ms
 2  10.77.2.2  0.025 ms
 3  10.77.3.2  0.021 ms
"""
BUTSKOY_V6 = """\
traceroute to fd00:77:3::2 (fd00:77:3::2), 8 hops max, 80 byte packets
 1  fd00:77:1::2  0.076 ms
 2  fd00:77:2::2  0.047 ms
 3  fd00:77:3::2  0.046 ms
"""
BUTSKOY_UNREACH = """\
traceroute to 10.77.9.9 (10.77.9.9), 3 hops max, 60 byte packets
 1  10.77.1.2  0.203 ms !N  0.008 ms !N
"""
BUTSKOY_NAMES = """\
traceroute to example.net (192.0.2.7), 30 hops max, 60 byte packets
 1  _gateway (192.168.1.1)  0.512 ms  0.401 ms  0.390 ms
 2  * * *
 3  a.example (198.51.100.1)  5.1 ms * b.example (198.51.100.2)  6.2 ms
 4  192.0.2.7  9.000 ms !X  9.100 ms !<7>  9.2 ms !F-1400
"""

SCAMPER_V4 = (
    '{"type":"cycle-start", "list_name":"default", "id":0, "hostname":"vm", '
    '"start_time":1795316175}\n'
    '{"type":"trace","version":"0.1", "userid":0, "method":"udp-paris", "src":"10.77.1.1", '
    '"dst":"10.77.3.2", "sport":52937, "dport":33435, "stop_reason":"COMPLETED", '
    '"stop_data":0, "start":{"sec":1795316175, "usec":407217, "ftime":"2026-11-22 02:56:15"}, '
    '"hop_count":3, "attempts":1, "hoplimit":0, "firsthop":1, "wait":2, "wait_probe":0, '
    '"tos":0, "probe_size":44, "probe_count":3, "hops":['
    '{"addr":"10.77.1.2", "probe_ttl":1, "probe_id":1, "probe_size":44, '
    '"tx":{"sec":1795316175, "usec":407485}, "rtt":0.044, "reply_ttl":64, "reply_tos":192, '
    '"reply_ipid":50543, "reply_size":72, "icmp_type":11, "icmp_code":0, "icmp_q_ttl":1, '
    '"icmp_q_ipl":44, "icmp_q_tos":0},'
    '{"addr":"10.77.3.2", "probe_ttl":3, "probe_id":1, "probe_size":44, '
    '"tx":{"sec":1795316175, "usec":507220}, "rtt":0.088, "reply_ttl":62, "reply_tos":192, '
    '"reply_ipid":59009, "reply_size":72, "icmp_type":3, "icmp_code":3, "icmp_q_ttl":1, '
    '"icmp_q_ipl":44, "icmp_q_tos":0}]}\n'
    '{"type":"cycle-stop", "list_name":"default", "id":0, "hostname":"vm", '
    '"stop_time":1795316175}\n'
)
SCAMPER_V6_NO_REPLIES = (
    '{"type":"trace","version":"0.1", "userid":0, "method":"udp-paris", '
    '"src":"fd00:77:1::1", "dst":"fd00:77:3::2", "sport":52943, "dport":33435, '
    '"stop_reason":"GAPLIMIT", "stop_data":0, "start":{"sec":1795316175, "usec":933451}, '
    '"hop_count":5, "attempts":1, "hoplimit":0, "firsthop":1, "wait":2, "wait_probe":0, '
    '"tos":0, "probe_size":60, "probe_count":5}\n'
)
SCAMPER_V6_PORT = (
    '{"type":"trace", "method":"udp", "src":"fd00:77:1::1", "dst":"fd00:77:3::2", '
    '"start":{"sec":1, "usec":0}, "hop_count":1, "firsthop":1, "hops":['
    '{"addr":"fd00:77:3::2", "probe_ttl":1, "tx":{"sec":1, "usec":5}, "rtt":0.084, '
    '"reply_ttl":62, "reply_ipid":0, "icmp_type":1, "icmp_code":4}]}\n'
)

PING_V4 = """\
PING 10.77.3.2 (10.77.3.2) 56(84) bytes of data.
64 bytes from 10.77.3.2: icmp_seq=1 ttl=62 time=0.047 ms
64 bytes from 10.77.3.2: icmp_seq=2 ttl=62 time=0.067 ms
64 bytes from 10.77.3.2: icmp_seq=2 ttl=62 time=0.090 ms (DUP!)

--- 10.77.3.2 ping statistics ---
3 packets transmitted, 2 received, +1 duplicates, 33.3333% packet loss, time 204ms
rtt min/avg/max/mdev = 0.047/0.057/0.067/0.010 ms
"""
PING_V6 = """\
PING fd00:77:3::2(fd00:77:3::2) 56 data bytes
64 bytes from fd00:77:3::2: icmp_seq=1 ttl=62 time=0.043 ms
From fd00:77:1::2 icmp_seq=2 Destination unreachable: No route

--- fd00:77:3::2 ping statistics ---
2 packets transmitted, 1 received, +1 errors, 50% packet loss, time 203ms
"""


# -- Butskoy traceroute --------------------------------------------------------------------------


def test_parse_butskoy_v4_and_v6() -> None:
    r4 = native.parse_traceroute(BUTSKOY_V4)
    assert r4.path() == [(1, "10.77.1.2"), (2, "10.77.2.2"), (3, "10.77.3.2")]
    assert [h.rtt_us for h in r4.hops] == [56.0, 25.0, 21.0]
    assert [h.reply_type for h in r4.hops] == ["time-exceeded"] * 2 + ["dest-unreachable"]
    assert (r4.hops[2].code, r4.max_ttl, r4.probe_size, r4.tool) == (3, 8, 60, "traceroute")
    assert (r4.send_stamp, r4.recv_stamp) == (Stamp.USER_BEFORE_SEND, Stamp.KERNEL)
    assert r4.reached
    r6 = native.parse_traceroute(BUTSKOY_V6)
    assert r6.path()[-1] == (3, "fd00:77:3::2") and r6.hops[-1].code == 4


def test_parse_butskoy_notes_stars_and_names() -> None:
    r = native.parse_traceroute(BUTSKOY_UNREACH)
    assert r.hops == (
        Hop(1, "10.77.1.2", 203.0, ReplyKind.DEST_UNREACHABLE, 0),
        Hop(1, "10.77.1.2", 8.0, ReplyKind.DEST_UNREACHABLE, 0),
    )
    n = native.parse_traceroute(BUTSKOY_NAMES)
    assert n.dst == "192.0.2.7"
    assert n.path() == [
        (1, "192.168.1.1"),
        (1, "192.168.1.1"),
        (1, "192.168.1.1"),
        (2, None),
        (2, None),
        (2, None),
        (3, "198.51.100.1"),
        (3, None),
        (3, "198.51.100.2"),
        (4, "192.0.2.7"),
        (4, "192.0.2.7"),
        (4, "192.0.2.7"),
    ]
    assert [(h.reply_type, h.code) for h in n.hops[-3:]] == [
        ("dest-unreachable", 13),
        ("dest-unreachable", 7),
        ("dest-unreachable", 4),
    ]


def test_butskoy_text_round_trips_through_our_formatter() -> None:
    for text in (BUTSKOY_V4, BUTSKOY_V6, BUTSKOY_UNREACH):
        assert format_traceroute(native.parse_traceroute(text)) == text


def test_parse_butskoy_icmp_method() -> None:
    r = native.parse_traceroute(BUTSKOY_V4, method="icmp")
    assert r.hops[-1].reply_type == "echo-reply" and r.method == "icmp"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no 'traceroute to"),
        ("traceroute to x (not-an-ip), 3 hops max\n", "bad address"),
        ("traceroute to x (1.2.3.4)\nfoo\n", "unexpected traceroute line"),
        ("traceroute to x (1.2.3.4)\n 1  0.5 ms\n", "RTT without an address"),
        ("traceroute to x (1.2.3.4)\n 1  !H\n", "without a reply"),
        ("traceroute to x (1.2.3.4)\n 1  host (999.1.1.1)  1 ms\n", "bad address"),
        ("traceroute to x (1.2.3.4)\n 1  junk 1 ms\n", "unexpected token"),
    ],
)
def test_parse_butskoy_errors(text: str, message: str) -> None:
    with pytest.raises(NativeToolError, match=message):
        native.parse_traceroute(text)


def test_traceroute_argv() -> None:
    assert native.traceroute_argv("10.77.3.2", max_ttl=8, sport=20556, sim_queries=1) == [
        "traceroute",
        "-n",
        "-f",
        "1",
        "-m",
        "8",
        "-q",
        "1",
        "-w",
        "2",
        "-p",
        "33434",
        "-4",
        "--sport=20556",
        "-N",
        "1",
        "10.77.3.2",
    ]
    argv = native.traceroute_argv("fd00::1", wait=0.5, packet_len=80)
    assert argv[-3:] == ["-6", "fd00::1", "80"] and "0.5" in argv
    with pytest.raises(ValueError, match="not an IP address"):
        native.traceroute_argv("example.net")
    with pytest.raises(ValueError, match="max_ttl"):
        native.traceroute_argv("10.0.0.1", first_ttl=5, max_ttl=4)


# -- scamper -------------------------------------------------------------------------------------


def test_parse_scamper_json() -> None:
    (r,) = native.parse_scamper_json(SCAMPER_V4)
    assert (r.tool, r.method, r.src, r.dst, r.probe_size) == (
        "scamper",
        "udp-paris",
        "10.77.1.1",
        "10.77.3.2",
        44,
    )
    assert r.start_ns == 1795316175_407217000
    assert r.path() == [(1, "10.77.1.2"), (2, None), (3, "10.77.3.2")]  # TTL 2 unanswered
    first = r.hops[0]
    assert first == Hop(
        ttl=1,
        addr="10.77.1.2",
        rtt_us=44.0,
        reply_type="time-exceeded",
        code=0,
        probe_send_ns=1795316175_407485000,
        reply_recv_ns=1795316175_407529000,
        reply_ttl=64,
        reply_ip_id=50543,
    )
    assert (r.hops[2].reply_type, r.hops[2].code) == ("dest-unreachable", 3)


SCAMPER_FIRSTHOP_3 = (
    '{"type":"trace", "method":"udp", "src":"10.77.1.1", "dst":"10.77.3.2", '
    '"start":{"sec":1795317023, "usec":186995}, "hop_count":3, "attempts":1, "hoplimit":3, '
    '"firsthop":3, "probe_size":44, "probe_count":1, "hops":[{"addr":"10.77.3.2", '
    '"probe_ttl":3, "probe_id":1, "tx":{"sec":1795317023, "usec":187140}, "rtt":0.063, '
    '"reply_ttl":62, "reply_ipid":10146, "icmp_type":3, "icmp_code":3}]}\n'
)


def test_parse_scamper_first_hop_and_hop_limit() -> None:
    # `trace -f 3 -m 3`: hop_count is the last TTL probed, not a count from firsthop.
    (r,) = native.parse_scamper_json(SCAMPER_FIRSTHOP_3)
    assert r.path() == [(3, "10.77.3.2")] and r.max_ttl == 3


def test_parse_scamper_v6() -> None:
    (gap,) = native.parse_scamper_json(SCAMPER_V6_NO_REPLIES)
    assert gap.path() == [(ttl, None) for ttl in range(1, 6)] and not gap.reached
    (port,) = native.parse_scamper_json(SCAMPER_V6_PORT)
    hop = port.hops[0]
    assert (hop.reply_type, hop.code, hop.reply_ip_id) == ("dest-unreachable", 4, None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{nope\n", "not JSON"),
        ('{"type":"trace"}\n', "malformed"),
        ('{"type":"trace", "dst":"1.2.3.4", "hops":[{"addr":"x"}]}\n', "malformed"),
    ],
)
def test_parse_scamper_errors(text: str, message: str) -> None:
    with pytest.raises(NativeToolError, match=message):
        native.parse_scamper_json(text)


def test_scamper_argv() -> None:
    argv = native.scamper_argv("10.77.3.2", max_ttl=8, sport=20556)
    assert argv == [
        "scamper",
        "-O",
        "json",
        "-p",
        "100",
        "-c",
        "trace -P udp -q 1 -w 2 -f 1 -m 8 -d 33434 -s 20556",
        "-i",
        "10.77.3.2",
    ]
    with pytest.raises(ValueError, match="method"):
        native.scamper_argv("10.0.0.1", method="carrier-pigeon")
    with pytest.raises(ValueError, match="wait"):
        native.scamper_argv("10.0.0.1", wait=0)


# -- ping ----------------------------------------------------------------------------------------


def test_parse_ping() -> None:
    r = native.parse_ping(PING_V4)
    assert (r.dst, r.sent, r.received, r.tool) == ("10.77.3.2", 3, 2, "ping")
    assert [(p.seq, p.rtt_us, p.ttl, p.size) for p in r.replies] == [
        (1, 47.0, 62, 64),
        (2, 67.0, 62, 64),
    ]  # the duplicate is dropped
    r6 = native.parse_ping(PING_V6)
    assert (r6.dst, r6.sent, r6.received, r6.replies[0].addr) == (
        "fd00:77:3::2",
        2,
        1,
        "fd00:77:3::2",
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no 'PING"),
        ("PING x (10.0.0.1) 56 bytes\n", "packets transmitted"),
        ("PING x (nope)\n", "bad address"),
        ("PING x (10.0.0.1)\n64 bytes from nope: icmp_seq=1 time=1 ms\n", "bad address"),
    ],
)
def test_parse_ping_errors(text: str, message: str) -> None:
    with pytest.raises(NativeToolError, match=message):
        native.parse_ping(text)


def test_ping_argv_and_netns() -> None:
    assert native.ping_argv("10.0.0.1", count=3, ttl=5) == [
        "ping",
        "-n",
        "-c",
        "3",
        "-i",
        "0.2",
        "-t",
        "5",
        "10.0.0.1",
    ]
    wrapped = native.netns_argv(["ping", "x"], "plab-1-ep")
    assert wrapped[1:] == ["netns", "exec", "plab-1-ep", "ping", "x"]
    assert native.netns_argv(["ping"], None) == ["ping"]


def test_missing_tool_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native.shutil, "which", lambda name: None)
    with pytest.raises(NativeToolError, match="not installed"):
        native.run_traceroute("10.0.0.1")
    with pytest.raises(NativeToolError, match="not installed"):
        native.run_ping("10.0.0.1")


# -- session 26 (icmp26): traceroute 2.1.2's lines beside a responder -------------------------

BUTSKOY_UNASSIGNED = """\
traceroute to fd00:99::1 (fd00:99::1), 3 hops max, 80 byte packets
 1  fd00:77:1::2  0.051 ms
 2  fd00:77:2::2  0.300 ms !<100-0>
"""
BUTSKOY_MTU = """\
traceroute to 10.99.0.1 (10.99.0.1), 3 hops max, 65000 byte packets
 1  10.77.1.2  0.031 ms F=1500  0.007 ms  0.005 ms
 2  10.77.2.2  0.054 ms !F-300  0.034 ms !F-300  0.048 ms !F-300
"""


def test_an_unassigned_icmpv6_error_reads_back_as_what_it_is() -> None:
    """`!<100-0>` is an ICMPv6 error of type 100 (`other-error`, `icmp_type` 100), as
    ours records it; session 25 read it as a destination unreachable, code 0."""
    r = native.parse_traceroute(BUTSKOY_UNASSIGNED)
    hop = r.hops[-1]
    assert (hop.reply_type, hop.icmp_type, hop.code) == ("other-error", 100, 0)
    assert format_traceroute(r) == BUTSKOY_UNASSIGNED


def test_mtu_discovery_lines_read_back() -> None:
    """traceroute --mtu's `F=1500` (the probe's new size) and `!F-300` (the router's
    MTU): session 25's parser refused `F=1500` (`unexpected token`)."""
    r = native.parse_traceroute(BUTSKOY_MTU)
    assert [(h.ttl, h.mtu, h.next_mtu) for h in r.hops] == [
        (1, 1500, None), (1, None, None), (1, None, None),
        (2, None, 300), (2, None, 300), (2, None, 300),
    ]  # fmt: skip
    assert format_traceroute(r) == BUTSKOY_MTU


def test_an_unassigned_icmpv6_type_in_scampers_json_is_an_other_error() -> None:
    """sc_warts2json of ours' --warts: the hop's `icmp_type` 100 is read back as it was
    written (scamper's own JSON never has one: it drops such a reply)."""
    text = (
        '{"type":"trace", "method":"udp-paris", "src":"fd00:77:1::1", "dst":"fd00:99::1",'
        ' "hop_count":2, "firsthop":1, "hops":[{"addr":"fd00:77:2::2", "probe_ttl":2,'
        ' "probe_id":1, "rtt":0.3, "icmp_type":100, "icmp_code":0}]}\n'
    )
    (r,) = native.parse_scamper_json(text)
    hop = r.hops[-1]
    assert (hop.ttl, hop.reply_type, hop.icmp_type, hop.code) == (2, "other-error", 100, 0)


def test_a_probe_its_kernel_refused_reads_back_as_the_line_says() -> None:
    """traceroute -F over the endpoint's MTU: `*  0.132 ms !F-1500`, no address, an RTT
    and the note (its kernel's local EMSGSIZE), as ours prints a `Hop.refused`; was
    `traceroute RTT without an address at hop 1` (session 28, icmp28)."""
    from packetlab.measure.records_traceroute import traceroute_line

    line = " 1  *  0.132 ms !F-1500 *  0.129 ms !F-1500 *"
    text = "traceroute to 10.0.0.9 (10.0.0.9), 30 hops max, 2000 byte packets\n" + line + "\n"
    hops = native.parse_traceroute(text).hops
    assert [(h.addr, h.rtt_us, h.next_mtu) for h in hops] == [
        (None, 132.0, 1500), (None, 129.0, 1500), (None, None, None),
    ]  # fmt: skip
    assert traceroute_line(1, hops) == line
