"""What `pktlab run` prints as a measurement goes (packetlab.cli.report) and the progress
line (packetlab.cli.progress), over a task.Clock and string streams."""

from __future__ import annotations

import io
import json

import pytest
from twisted.internet.task import Clock

from packetlab.cli.progress import CLEAR, Progress
from packetlab.cli.report_ping import PingReport
from packetlab.cli.report_traceroute import MdaReport, TracerouteReport, traceroute_stop_reason
from packetlab.measure.mda import MdaHop, MdaResult
from packetlab.measure.records_ping import PingError, PingReply, PingResult, WrongData
from packetlab.measure.records_traceroute import Hop, TracerouteResult

HOPS = (
    Hop(1, "10.0.0.2", 12.5, "time-exceeded", 0),
    Hop(2, None, None),
    Hop(3, "10.0.0.3", 20.0, "dest-unreachable", 3),
)
TRACE = TracerouteResult(dst="10.0.0.3", src="10.0.0.1", max_ttl=30, probe_size=60, hops=HOPS)


def test_traceroute_text_is_printed_hop_by_hop(capsys: pytest.CaptureFixture[str]) -> None:
    r = TracerouteReport(
        Clock(), False, "10.0.0.3", name="tg.example", max_ttl=30, queries=1, size=60
    )
    r.start("10.0.0.1")
    r.hop(HOPS[0])
    assert capsys.readouterr().out == (
        "traceroute to tg.example (10.0.0.3), 30 hops max, 60 byte packets\n"
        " 1  10.0.0.2  0.013 ms\n"
    )  # the first hop is out before the run ends
    r.hop(HOPS[1])
    r.hop(HOPS[2])
    r.finish(TRACE, interrupted=False)
    assert capsys.readouterr().out == " 2  *\n 3  10.0.0.3  0.020 ms\n"


def test_as_path_error_stops_at_the_first_address(capsys: pytest.CaptureFixture[str]) -> None:
    """-A with a whois server that does not resolve: traceroute prints the header and the
    line up to its first address, then its error (exit 2); session 12's ours stopped
    before the header. A silent hop's line is whole, as traceroute's."""
    from packetlab.cli.link import LinkError

    r = TracerouteReport(Clock(), False, "10.0.0.3", name=None, max_ttl=30, queries=3, size=60)
    r.as_error = "nosuch.invalid/nicname: Name or service not known"
    r.start(None)
    for h in (Hop(1, None, None),) * 3:
        r.hop(h)
    r.hop(Hop(2, None, None))
    r.hop(Hop(2, "10.0.0.2", 1.0))
    with pytest.raises(LinkError, match=r"nosuch\.invalid/nicname"):
        r.hop(Hop(2, "10.0.0.2", 1.0))
    assert capsys.readouterr().out.splitlines()[1:] == [" 1  * * *", " 2  * 10.0.0.2"]
    r.names = {"10.0.0.2": "r1.example"}
    for h in (HOPS[0],) * 2:
        r.hop(h)
    with pytest.raises(LinkError):
        r.hop(HOPS[0])
    assert capsys.readouterr().out == " 1  r1.example (10.0.0.2)"


def test_json_summary_names_a_source_route(capsys: pytest.CaptureFixture[str]) -> None:
    """-g / ping HOST... TARGET: the summary's `gateways` (what --warts cannot hold, so
    it is refused there; session 13)."""
    r = TracerouteReport(Clock(), True, "10.0.0.3", name=None, max_ttl=30, queries=1, size=72)
    r.summary_extra["gateways"] = ["10.0.0.2"]
    r.start("10.0.0.1")
    r.finish(TRACE, interrupted=False)
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["gateways"] == ["10.0.0.2"]
    p = PingReport(Clock(), True, "10.0.0.3", name=None, count=1, size=56)
    p.summary_extra["gateways"] = ["10.0.0.2"]
    p.start("10.0.0.1")
    p.finish(PingResult("10.0.0.3", 1, (), "10.0.0.1"), interrupted=False)
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["gateways"] == ["10.0.0.2"]


def test_traceroute_queries_share_a_line(capsys: pytest.CaptureFixture[str]) -> None:
    r = TracerouteReport(Clock(), False, "10.0.0.3", name=None, max_ttl=30, queries=3, size=60)
    r.start(None)
    for h in (HOPS[0], HOPS[0], Hop(1, None, None)):
        r.hop(h)
    assert capsys.readouterr().out.splitlines()[1:] == [" 1  10.0.0.2  0.013 ms  0.013 ms *"]


def test_traceroute_json_lines_and_summary(capsys: pytest.CaptureFixture[str]) -> None:
    r = TracerouteReport(Clock(), True, "10.0.0.3", name=None, max_ttl=30, queries=1, size=60)
    r.start("10.0.0.1")
    for h in HOPS:
        r.hop(h)
    r.finish(TRACE, interrupted=False)
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(x["type"], x.get("ttl"), x.get("addr")) for x in lines[:3]] == [
        ("hop", 1, "10.0.0.2"), ("hop", 2, None), ("hop", 3, "10.0.0.3"),
    ]  # fmt: skip
    assert lines[0]["src"] == "10.0.0.1" and lines[0]["dst"] == "10.0.0.3"
    s = lines[3]
    assert (s["type"], s["measurement"], s["stop_reason"], s["hop_count"], s["reached"]) == (
        "summary", "traceroute", "COMPLETED", 3, True,
    )  # fmt: skip
    assert s["start_time"] <= s["stop_time"]


@pytest.mark.parametrize(
    ("hops", "interrupted", "reason"),
    [
        (HOPS, False, "COMPLETED"),
        (HOPS, True, "INTERRUPTED"),
        (HOPS[:2], False, "HOPLIMIT"),
        ((HOPS[0], Hop(2, "10.0.0.9", 1.0, "dest-unreachable", 1)), False, "UNREACH"),
    ],
)
def test_stop_reasons(hops: tuple[Hop, ...], interrupted: bool, reason: str) -> None:
    result = TracerouteResult(dst="10.0.0.3", hops=hops)
    assert traceroute_stop_reason(result, interrupted) == reason


PING = PingResult(
    dst="10.0.0.3",
    sent=3,
    src="10.0.0.1",
    replies=(
        PingReply(1, "10.0.0.3", 20.0, 64, 64),
        PingReply(2, None, None),
        PingReply(3, "10.0.0.3", 40.0, 64, 64),
    ),
)


def test_ping_text_like_iputils(capsys: pytest.CaptureFixture[str]) -> None:
    r = PingReport(Clock(), False, "10.0.0.3", name="tg", count=3, size=56)
    r.start("10.0.0.1")
    r.reply(PING.replies[0])
    assert capsys.readouterr().out == (
        "PING tg (10.0.0.3) 56(84) bytes of data.\n"
        "64 bytes from 10.0.0.3: icmp_seq=1 ttl=64 time=0.020 ms\n"
    )
    r.reply(PING.replies[2])
    r.finish(PING, interrupted=True)
    out = capsys.readouterr().out.splitlines()
    assert out[1] == ""
    assert out[2] == "--- tg ping statistics ---"  # the target as given, as iputils
    # iputils: the loss with %g; the time from the first request to the last (none here)
    assert out[3] == "3 packets transmitted, 2 received, 33.3333% packet loss, time 0ms"
    assert out[4] == "rtt min/avg/max/mdev = 0.020/0.030/0.040/0.010 ms"


def test_ping_text_names_errors_and_time_like_iputils(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A named target's replies as `NAME (ADDR)`, a router's error as iputils' `From` line
    counted as `+N errors`, the statistics' time from the first request to the last (not
    the program's start-up), and the empty line iputils ends with when nothing came."""
    clock = Clock()
    r = PingReport(clock, False, "10.0.0.3", name="localhost", count=3, size=56)
    r.names = {"10.0.0.3": "localhost", "10.0.0.1": None}
    r.start("10.0.0.9")
    r.reply(PingReply(1, "10.0.0.3", 20.0, 64, 64))
    r.error(PingError(2, "10.0.0.1", "time-exceeded", 11, 0))
    clock.advance(30)  # a slow start-up or a long wait is not the statistics' time
    sent = (1_000_000_000, 1_999_600_000, 3_000_400_000)
    result = PingResult(
        dst="10.0.0.3", sent=3, start_ns=sent[0],
        replies=(
            PingReply(1, "10.0.0.3", 20.0, 64, 64, probe_send_ns=sent[0]),
            PingReply(2, None, None, probe_send_ns=sent[1]),
            PingReply(3, None, None, probe_send_ns=sent[2]),
        ),
        errors=(PingError(2, "10.0.0.1", "time-exceeded", 11, 0, probe_send_ns=sent[1]),),
    )  # fmt: skip
    r.finish(result, interrupted=False)
    assert capsys.readouterr().out.splitlines() == [
        "PING localhost (10.0.0.3) 56(84) bytes of data.",
        "64 bytes from localhost (10.0.0.3): icmp_seq=1 ttl=64 time=0.020 ms",
        "From 10.0.0.1 icmp_seq=2 Time to live exceeded",
        "",
        "--- localhost ping statistics ---",
        "3 packets transmitted, 1 received, +1 errors, 66.6667% packet loss, time 2000ms",
        "rtt min/avg/max/mdev = 0.020/0.020/0.020/0.000 ms",
    ]
    nothing = PingResult(dst="10.0.0.3", sent=2, replies=(PingReply(1, None, None),))
    r2 = PingReport(clock, False, "10.0.0.3", name=None, count=2, size=56)
    r2.finish(nothing, interrupted=False)
    assert capsys.readouterr().out == (
        "\n--- 10.0.0.3 ping statistics ---\n"
        "2 packets transmitted, 0 received, 100% packet loss, time 0ms\n\n"
    )


@pytest.mark.parametrize(
    ("src", "words"), [("10.0.0.9", "mtu=1500"), ("fd00::9", "mtu: 1500")], ids=["ipv4", "ipv6"]
)
def test_ping_local_error_in_pings_and_ping6s_words(
    capsys: pytest.CaptureFixture[str], src: str, words: str
) -> None:
    """-M do over the MTU: iputils' `ping: local error: message too long, mtu=1500`,
    ping6's `... mtu: 1500` (its own words; ours said `mtu=` for both; session 28)."""
    dst = "fd00::3" if ":" in src else "10.0.0.3"
    r = PingReport(Clock(), False, dst, name=None, count=1, size=1500)
    r.error(PingError(1, src, "local-error", 0, 0, mtu=1500))
    assert capsys.readouterr().err == f"pktlab run ping: local error: message too long, {words}\n"


def test_ping_local_error_of_an_unknown_mtu_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    """-M do over a --listen endpoint's MTU, which the controller does not know (session
    29): not `mtu=None`."""
    r = PingReport(Clock(), False, "10.0.0.3", name=None, count=1, size=1500)
    r.error(PingError(1, "10.0.0.1", "local-error", 0, 0, mtu=None))
    assert capsys.readouterr().err == (
        "pktlab run ping: local error: message too long (the endpoint's MTU is not known here)\n"
    )


def test_ping_v6_header(capsys: pytest.CaptureFixture[str]) -> None:
    PingReport(Clock(), False, "::1", name=None, count=1, size=56).start("::1")
    assert capsys.readouterr().out == "PING ::1(::1) 56 data bytes\n"


def test_ping_json_lines_and_summary(capsys: pytest.CaptureFixture[str]) -> None:
    r = PingReport(Clock(), True, "10.0.0.3", name=None, count=3, size=56)
    r.start("10.0.0.1")
    r.reply(PING.replies[0])
    r.reply(PING.replies[2])
    r.finish(PING, interrupted=False)
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(x["type"], x.get("seq"), x.get("addr")) for x in lines[:3]] == [
        ("reply", 1, "10.0.0.3"), ("reply", 3, "10.0.0.3"), ("reply", 2, None),
    ]  # fmt: skip
    s = lines[3]
    assert (s["sent"], s["received"], s["loss"], s["stop_reason"]) == (3, 2, 0.333333, "COMPLETED")
    assert (s["rtt_min_us"], s["rtt_avg_us"], s["rtt_max_us"], s["rtt_mdev_us"]) == (
        20.0, 30.0, 40.0, 10.0,
    )  # fmt: skip


def test_progress_appears_after_a_second_and_never_mixes_with_results() -> None:
    clock, out, err = Clock(), io.StringIO(), io.StringIO()
    state = ["1 of 10"]
    p = Progress(clock, lambda: state[0], out=out, err=err, enabled=True)
    p.write("early result")
    clock.advance(0.5)
    assert err.getvalue() == ""  # short runs show no progress
    clock.advance(0.6)
    assert err.getvalue() == CLEAR + "1 of 10"
    state[0] = "2 of 10"
    p.write("late result")  # clears the line first
    clock.advance(0.25)
    assert err.getvalue() == CLEAR + "1 of 10" + CLEAR + CLEAR + "2 of 10"
    p.stop()
    assert err.getvalue().endswith(CLEAR) and not clock.getDelayedCalls()
    assert out.getvalue() == "early result\nlate result\n"


def test_a_note_on_stderr_clears_the_progress_line_and_stays() -> None:
    clock, err = Clock(), io.StringIO()
    p = Progress(clock, lambda: "train 1/5", out=io.StringIO(), err=err, enabled=True)
    clock.advance(1.1)
    p.note("first packet in 7.3 s")  # (a long wait for a train's lead)
    clock.advance(0.25)
    assert err.getvalue() == CLEAR + "train 1/5" + CLEAR + "first packet in 7.3 s\n" + (
        CLEAR + "train 1/5"
    )
    p.stop()


def test_a_verbose_log_line_erases_the_progress_line_first() -> None:
    # `pktlab run -v` / `campaign -v`: the log observer wrote over the drawn line.
    from packetlab.cli.interrupt import _erasing

    clock, err = Clock(), io.StringIO()
    p = Progress(clock, lambda: "hop 3", out=io.StringIO(), err=err, enabled=True)
    clock.advance(1.1)
    log = _erasing(lambda event: err.write(f"{event['text']}\n"))
    log({"text": "probe sent"})
    clock.advance(0.25)
    assert err.getvalue() == CLEAR + "hop 3" + CLEAR + "probe sent\n" + CLEAR + "hop 3"
    p.stop()


def test_no_progress_off_a_terminal() -> None:
    clock, err = Clock(), io.StringIO()  # StringIO is not a tty
    p = Progress(clock, lambda: "x", out=io.StringIO(), err=err)
    clock.advance(5)
    p.stop()
    assert err.getvalue() == "" and not clock.getDelayedCalls()


MDA_HOPS = (
    MdaHop(1, ("10.0.0.1",), 11),
    MdaHop(2, ("10.0.1.2", "10.0.2.2"), 15, (("10.0.0.1", "10.0.1.2"), ("10.0.0.1", "10.0.2.2"))),
    MdaHop(3, ("10.0.0.3",), 12, (("10.0.1.2", "10.0.0.3"), ("10.0.2.2", "10.0.0.3"))),
)
MDA = MdaResult("10.0.0.3", "10.0.0.9", "udp-paris", 0.95, MDA_HOPS, 38, True)


def test_mda_text_one_line_per_hop_with_every_interface(
    capsys: pytest.CaptureFixture[str],
) -> None:
    r = MdaReport(
        Clock(), False, "10.0.0.3", name=None, max_ttl=30, method="udp-paris", confidence=0.95
    )
    r.start("10.0.0.9")
    r.names = {"10.0.1.2": "ra.example"}
    for h in MDA_HOPS:
        r.hop(h)
    r.finish(MDA, interrupted=False)
    assert capsys.readouterr().out.splitlines() == [
        "tracelb to 10.0.0.3 (10.0.0.3), 30 hops max, udp-paris, confidence 95%",
        " 1  10.0.0.1 (10.0.0.1)",
        " 2  ra.example (10.0.1.2)  10.0.2.2 (10.0.2.2)",
        " 3  10.0.0.3 (10.0.0.3)",
    ]


def test_mda_json_lines_and_summary(capsys: pytest.CaptureFixture[str]) -> None:
    r = MdaReport(Clock(), True, "10.0.0.3", name=None, max_ttl=30, method="tcp", confidence=0.99)
    r.start("10.0.0.9")
    for h in MDA_HOPS:
        r.hop(h)
    r.finish(MDA, interrupted=True)
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(x["type"], x.get("ttl")) for x in lines] == [
        ("mda-hop", 1), ("mda-hop", 2), ("mda-hop", 3), ("summary", None),
    ]  # fmt: skip
    assert lines[1]["addrs"] == ["10.0.1.2", "10.0.2.2"] and lines[1]["probes"] == 15
    assert lines[2]["links"] == [["10.0.1.2", "10.0.0.3"], ["10.0.2.2", "10.0.0.3"]]
    s = lines[3]
    assert (s["measurement"], s["stop_reason"], s["node_count"], s["link_count"]) == (
        "tracelb", "INTERRUPTED", 4, 4,
    )  # fmt: skip
    assert (s["probe_count"], s["reached"], s["confidence"]) == (38, True, 0.95)


def test_mda_summary_has_the_limits_and_maxprobec(capsys: pytest.CaptureFixture[str]) -> None:
    import dataclasses

    r = MdaReport(Clock(), True, "10.0.0.3", name=None, max_ttl=30, method="udp-paris",
                  confidence=0.95, lite=True)  # fmt: skip
    r.start("10.0.0.9")
    hops = (MDA_HOPS[0], dataclasses.replace(MDA_HOPS[1], meshed=True))
    out = dataclasses.replace(
        MDA, hops=hops, reached=False, stop_reason="MAXPROBEC", algorithm="mda-lite",
        max_probes=50, gaplimit=2, attempts=3, wait_probe_cs=15,
    )  # fmt: skip
    r.finish(out, interrupted=False)
    s = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert s["stop_reason"] == "MAXPROBEC" and s["algorithm"] == "mda-lite"
    assert (s["probec_max"], s["gaplimit"], s["attempts"], s["wait_probe"]) == (50, 2, 3, 15)
    assert s["meshed"] == [2]
    assert MDA_HOPS[0].to_dict().get("meshed") is None and hops[1].to_dict()["meshed"]


def test_mda_lite_header(capsys: pytest.CaptureFixture[str]) -> None:
    r = MdaReport(Clock(), False, "10.0.0.3", name=None, max_ttl=30, method="udp-paris",
                  confidence=0.95, lite=True)  # fmt: skip
    r.start("10.0.0.9")
    assert capsys.readouterr().out.splitlines()[0].endswith("confidence 95%, MDA-Lite")


def test_multilevel_without_a_hop_to_resolve_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    """--multilevel on a path without load balancing: one line saying there was nothing to
    resolve (was a header, `0 probes`, over no lines; session 12 fresh-eyes pass)."""
    from packetlab.measure.multilevel import MultilevelResult

    r = MdaReport(Clock(), False, "10.0.0.3", name=None, max_ttl=30, method="udp-paris",
                  confidence=0.95, lite=True)  # fmt: skip
    r.routers(MultilevelResult(hops=(), rounds=0, probes=0))
    assert capsys.readouterr().out.splitlines() == [
        "routers (Multilevel MDA-Lite): no hop has several interfaces, none to resolve"
    ]


def test_multilevel_says_its_rounds_and_label_stacks(capsys: pytest.CaptureFixture[str]) -> None:
    """The rounds the monotonic bounds test took (until the sets settled, or the bound,
    said), the label stacks when some interface quoted one; `--json`: `mpls` per
    interface, `mpls_pairs`, the summary's `alias_rounds` and `alias_sets_stable`."""
    from packetlab.measure.multilevel import MultilevelResult, RouterHop

    hop = RouterHop(2, (("A", "B"), ("C",)), (), (("A", "B"),), (("A", "B"),))
    ml = MultilevelResult((hop,), 3, 110, mpls={"A": ((16,),), "B": ((16,),)})
    r = MdaReport(Clock(), False, "10.0.0.3", name=None, max_ttl=30, method="udp-paris",
                  confidence=0.95, lite=True)  # fmt: skip
    r.routers(ml)
    assert capsys.readouterr().out.splitlines() == [
        "routers (Multilevel MDA-Lite: alias resolution by the monotonic bounds test on "
        "IP-IDs, MPLS label stacks, 3 rounds, 110 probes)",
        " 2  {A B}  C",
    ]
    r.routers(MultilevelResult((hop,), 2, 80, max_rounds=2, stable=False))
    assert (
        capsys.readouterr()
        .out.splitlines()[0]
        .endswith("on IP-IDs, 2 rounds, the sets still changing at --mbt-rounds 2, 80 probes)")
    )
    j = MdaReport(Clock(), True, "10.0.0.3", name=None, max_ttl=30, method="udp-paris",
                  confidence=0.95, lite=True)  # fmt: skip
    j.start("10.0.0.1")
    j.routers(ml)
    line = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert line["mpls"] == {"A": [[16]], "B": [[16]]} and line["mpls_pairs"] == [["A", "B"]]
    trace = MdaResult("10.0.0.3", "10.0.0.1", "udp-paris", 0.95, (), 0, True)
    j.finish(trace, interrupted=False)
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert (summary["alias_rounds"], summary["alias_sets_stable"]) == (3, True)


class _ClosedPipe(io.StringIO):
    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_closed_stdout_stops_the_run_instead_of_breaking_it() -> None:
    """`pktlab run ... | head`: the write that meets the closed pipe (in a reply callback,
    where an exception would cut the endpoint session) tells `on_closed` once and
    nothing more is written."""
    closed: list[int] = []
    p = Progress(Clock(), lambda: "", out=_ClosedPipe(), err=io.StringIO(), enabled=False,
                 on_closed=lambda: closed.append(1))  # fmt: skip
    p.write("PING 127.0.0.1 (127.0.0.1) 56(84) bytes of data.")
    p.write("64 bytes from 127.0.0.1: icmp_seq=1 ttl=64 time=0.020 ms")
    assert closed == [1] and p.closed


def test_ping_text_without_timing_below_16_payload_bytes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """iputils times replies only when the payload holds its timestamp (16 bytes): with
    `-s 8` no `time=` and no rtt line (JSON keeps the endpoint's RTTs)."""
    r = PingReport(Clock(), False, "127.0.0.1", name=None, count=1, size=8)
    r.start("127.0.0.1")
    reply = PingReply(1, "127.0.0.1", 20.0, 64, 16, probe_send_ns=0, reply_recv_ns=20_000)
    r.reply(reply)
    r.finish(PingResult("127.0.0.1", 1, (reply,), start_ns=0), interrupted=False)
    assert capsys.readouterr().out.splitlines() == [
        "PING 127.0.0.1 (127.0.0.1) 8(36) bytes of data.",
        "16 bytes from 127.0.0.1: icmp_seq=1 ttl=64",
        "",
        "--- 127.0.0.1 ping statistics ---",
        "1 packets transmitted, 1 received, 0% packet loss, time 0ms",
        "",
    ]


def test_ping_flood_display_like_iputils(capsys: pytest.CaptureFixture[str]) -> None:
    """-f: a dot per request, `\\b \\b` per reply, `\\bE` per error; the statistics after
    the line of dots (no empty line in between); nothing of it with -q."""
    r = PingReport(Clock(), False, "10.0.0.3", name=None, count=2, size=56, flood=True)
    r.start("10.0.0.1")
    r.sent(1, 1)
    r.reply(PING.replies[0])
    r.sent(2, 2)
    r.error(PingError(2, "10.0.0.1", "time-exceeded", 11, 0))
    r.finish(PING, interrupted=False)
    out = capsys.readouterr().out
    assert out.startswith("PING 10.0.0.3 (10.0.0.3) 56(84) bytes of data.\n.\b \b.\bE\n---")
    assert ", ipg/ewma " in out  # as ping -f, whatever -i
    q = PingReport(Clock(), False, "10.0.0.3", name=None, count=2, size=56, flood=True, quiet=True)
    q.start("10.0.0.1")
    q.sent(1, 1)
    q.reply(PING.replies[0])
    q.outstanding(2, 1_000_000_000)  # -O's line even with -q, as ping
    assert capsys.readouterr().out == (
        "PING 10.0.0.3 (10.0.0.3) 56(84) bytes of data.\nno answer yet for icmp_seq=2\n"
    )


def test_ping_flood_errors_with_several_requests_out_end_as_pings_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Three requests out before their errors (ping -f sends one at a time): each error
    turns the first dot left into an E, so the line reads `EEE` as ping's `.\bE.\bE.\bE`
    (session 20: `...\bE\bE\bE`, read as `..E`); a reply still takes back a dot."""
    r = PingReport(Clock(), False, "10.0.0.3", name=None, count=4, size=56, flood=True)
    r.start("10.0.0.1")
    for seq in (1, 2, 3, 4):
        r.sent(seq, seq)
    for seq in (1, 2, 3):
        r.error(PingError(seq, "10.0.0.2", "time-exceeded", 11, 0))
    r.reply(PING.replies[0])
    out = capsys.readouterr().out.split("\n")[1]
    assert out == "....\b\b\b\bE...\b\b\bE..\b\bE.\b \b"
    screen: list[str] = []  # a terminal's line: each backspace moves back one column
    at = 0
    for c in out:
        at = max(0, at - 1) if c == "\b" else at + 1
        if c != "\b":
            screen[at - 1 : at] = [c]
    assert "".join(screen).rstrip() == "EEE"
    r.sent(5, 5)
    r.error(PingError(5, "10.0.0.2", "time-exceeded", 11, 0))  # one out: ping's own bytes
    assert capsys.readouterr().out == ".\bE"


def test_ping_timestamps_outstanding_pattern_and_source(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """-D: `[SECONDS.MICROS] ` (the endpoint's time) before each line; -O's line; -p's
    `PATTERN:` line before the header; -I's `from ADDR IFNAME:` in it."""
    r = PingReport(
        Clock(), False, "10.0.0.3", name=None, count=3, size=56, timestamps=True,
        pattern=b"\xab\x12", source=("10.0.0.1", "eth0"),
    )  # fmt: skip
    r.start("10.0.0.1")
    r.reply(PingReply(1, "10.0.0.3", 20.0, 64, 64, reply_recv_ns=1_796_400_000_000_123_456))
    r.outstanding(2, 1_796_400_001_000_000_999)
    r.error(PingError(3, "10.0.0.2", "time-exceeded", 11, 0, reply_recv_ns=5_000_001_000))
    assert capsys.readouterr().out.splitlines() == [
        "PATTERN: 0xab12",
        "PING 10.0.0.3 (10.0.0.3) from 10.0.0.1 eth0: 56(84) bytes of data.",
        "[1796400000.000123] 64 bytes from 10.0.0.3: icmp_seq=1 ttl=64 time=0.020 ms",
        "[1796400001.000000] no answer yet for icmp_seq=2",
        "[5.000001] From 10.0.0.2 icmp_seq=3 Time to live exceeded",
    ]
    PingReport(
        Clock(), False, "::1", name=None, count=1, size=56, source=("::1", ""), quiet=True,
        pattern=b"\x01",
    ).start("::1")  # fmt: skip
    assert capsys.readouterr().out == "PING ::1(::1) from ::1 : 56 data bytes\n"


def test_ping_sticky_source_says_where_from_as_iputils(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """-B: iputils' header says `from SRC :` (its opt_strictsource, as -I ADDR); -B was
    refused here (`not needed: the source address never changes here`)."""
    r = PingReport(Clock(), False, "10.0.0.3", name="h", count=1, size=56, sticky=True)
    r.start("10.0.0.1")
    PingReport(Clock(), False, "::1", name=None, count=1, size=56, sticky=True).start("::1")
    assert capsys.readouterr().out.splitlines() == [
        "PING h (10.0.0.3) from 10.0.0.1 : 56(84) bytes of data.",
        "PING ::1(::1) from ::1 : 56 data bytes",
    ]


def test_ping_truncated_and_wrong_data_replies_as_iputils(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Session 25 (ping25): a reply shorter than its request is iputils' `(truncated)`
    line (no time, no BEL, no DUP mark: ping's gather_statistics returns there); one whose
    data differ is the reply line, then ping's `wrong data byte` lines, then -a's BEL.
    Ours printed both as good replies. (Lines as iputils 20221126 printed them beside a
    raw responder, tests/integration/test_ping_replies_like_native.py.)"""
    r = PingReport(Clock(), False, "10.225.0.2", name=None, count=2, size=56, audible=True)
    r.start("10.225.0.1")
    capsys.readouterr()
    r.reply(PingReply(1, "10.225.0.2", 190.0, 64, 38))
    r.reply(PingReply(1, "10.225.0.2", 200.0, 64, 38, dup=True))
    data = bytes([16, 17, 18, 19, 0xEB, *range(21, 56)]).hex()
    r.reply(PingReply(2, "10.225.0.2", 157.0, 64, 64, wrong_data=WrongData(20, 0x14, 0xEB, data)))
    assert capsys.readouterr().out == (
        "38 bytes from 10.225.0.2: icmp_seq=1 ttl=64 (truncated)\n"
        "38 bytes from 10.225.0.2: icmp_seq=1 ttl=64 (truncated)\n"
        "64 bytes from 10.225.0.2: icmp_seq=2 ttl=64 time=0.157 ms\n"
        "wrong data byte #20 should be 0x14 but was 0xeb\n"
        "#16\t10 11 12 13 eb 15 16 17 18 19 1a 1b 1c 1d 1e 1f 20 21 22 23 24 25 26 27 28 29 2a"
        " 2b 2c 2d 2e 2f \n"
        "#48\t30 31 32 33 34 35 36 37 \a\n"
    )


def test_ping_notices_as_iputils_prints_them(capsys: pytest.CaptureFixture[str]) -> None:
    """Session 25 (ping25): a redirect or source quench about a request, as iputils
    20221126 printed them beside a raw responder (a colon after the address; counted
    nowhere; nothing with -q)."""
    from packetlab.measure.ping_notice import PingNotice

    r = PingReport(Clock(), False, "10.225.0.2", name=None, count=2, size=56)
    r.start("10.225.0.1")
    capsys.readouterr()
    for n in (
        PingNotice(1, "10.225.0.2", 4, 0),
        PingNotice(1, "10.225.0.2", 5, 1, "10.0.0.1"),
        PingNotice(2, "10.225.0.2", 5, 7, "10.0.0.1"),
        PingNotice(2, "10.225.0.2", 5, 2, "10.0.0.1"),
    ):
        r.notice(n)
    assert capsys.readouterr().out.splitlines() == [
        "From 10.225.0.2: icmp_seq=1 Source Quench",
        "From 10.225.0.2: icmp_seq=1 Redirect Host(New nexthop: 10.0.0.1)",
        "From 10.225.0.2: icmp_seq=2 Redirect, Bad Code: 7(New nexthop: 10.0.0.1)",
        "From 10.225.0.2: icmp_seq=2 Redirect Type of Service and Network(New nexthop: 10.0.0.1)",
    ]
    q = PingReport(Clock(), False, "10.225.0.2", name=None, count=2, size=56, quiet=True)
    q.notice(PingNotice(1, "10.225.0.2", 4, 0))
    assert capsys.readouterr().out == ""


def test_ping_v_dumps_a_notices_quoted_header(capsys: pytest.CaptureFixture[str]) -> None:
    from packetlab.measure.ping_notice import PingNotice

    r = PingReport(Clock(), False, "10.225.0.2", name=None, count=1, size=56, verbose=True)
    quoted = "45000054f8834000400" + "12c610ae100010ae10002"
    r.notice(PingNotice(1, "10.225.0.2", 5, 1, "10.0.0.1", None, quoted))
    assert capsys.readouterr().out == (
        "From 10.225.0.2: icmp_seq=1 Redirect Host(New nexthop: 10.0.0.1)\n"
        "Vr HL TOS  Len   ID Flg  off TTL Pro  cks      Src      Dst Data\n"
        " 4  5  00 5400 83f8   0 0040  40  01 612c 10.225.0.1  10.225.0.2 \n"
    )


def test_ping_v_prints_an_icmp_type_past_31_as_iputils(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Session 25 (icmp25b): iputils -v's `From ADDR: Bad ICMP type: 40` (with -q too, not
    with -f); nothing without -v, nothing in --json."""
    from packetlab.measure.ping_notice import PingNotice

    n = PingNotice(None, "10.225.0.2", 40, 0)
    line = "From 10.225.0.2: Bad ICMP type: 40\n"
    for verbose, quiet, flood, want in (
        (True, False, False, line),
        (True, True, False, line),
        (True, False, True, ""),
        (False, False, False, ""),
    ):
        r = PingReport(
            Clock(), False, "10.225.0.2", name=None, count=1, size=56, verbose=verbose,
            quiet=quiet, flood=flood,
        )  # fmt: skip
        r.notice(n)
        assert capsys.readouterr().out == want, (verbose, quiet, flood)
    j = PingReport(Clock(), True, "10.225.0.2", name=None, count=1, size=56, verbose=True)
    j.notice(n)
    assert capsys.readouterr().out == ""


def test_ping_v_prints_a_quoted_headers_options_as_iputils(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Session 25 (icmp25b): -v's dump of a quoted header with options goes on with
    iputils' pr_options lines (read beside a raw responder: `-R`, `-T tsonly`, a second
    request's `(same route)`, which runs into the next line as in iputils); ours printed
    the options' bytes in hex."""
    from packetlab.measure.ping_notice import PingNotice

    head = "4f00007c9af7400040010000" + "0ae100010ae10002"
    rr = "0107270c0ae100010ae10002" + "00" * 28
    ts = "44280d0002a7c6fb02a7c6fb" + "00" * 28
    r = PingReport(Clock(), False, "10.225.0.2", name=None, count=3, size=56, verbose=True)
    for seq, options in ((1, rr), (2, rr), (3, ts), (4, "0101" + "00" * 2), (5, "9e040000")):
        r.notice(PingNotice(seq, "10.225.0.2", 5, 1, "10.0.0.1", None, head + options))
    dump = (
        "Vr HL TOS  Len   ID Flg  off TTL Pro  cks      Src      Dst Data\n"
        " 4  f  00 7c00 f79a   0 0040  40  01 0000 10.225.0.1  10.225.0.2 \n"
    )
    told = "From 10.225.0.2: icmp_seq={} Redirect Host(New nexthop: 10.0.0.1)\n"
    assert capsys.readouterr().out == (
        told.format(1) + dump + "\nNOP\nRR: \t10.225.0.1\n\t10.225.0.2\n"
        + told.format(2) + dump + "\nNOP\t(same route)"
        + told.format(3) + dump + "\nTS: \t44549883 absolute\n\t0\n"
        + told.format(4) + dump + "\nNOP\nNOP"
        + told.format(5) + dump + "\nunknown option 9e"
    )  # fmt: skip


def test_bytes_that_are_no_utf8_are_written_as_they_came_on_a_strict_stream() -> None:
    """A dig banner cut in a character keeps its first byte (`\\udcc3`, a lone surrogate):
    written as the byte 0xc3 where stdout's encoding is strict (a UTF-8 locale), as dig
    writes it; `PYTHONIOENCODING=utf-8:strict` raised before (session 31, odds31)."""
    from packetlab.cli.progress import write_text

    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8", errors="strict")
    write_text(out, "\u00e9\udcc3;; no servers could be reached\n")
    out.flush()
    assert raw.getvalue() == b"\xc3\xa9\xc3;; no servers could be reached\n"
