"""`pktlab compare`: options, the criteria summary (c1, c2_p, c3 and verdicts), the
table and the plot. End to end: tests/integration/test_measure_dns_http.py."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import pytest

from packetlab.cli import build_parser
from packetlab.cli.compare import SPECS, criteria, plot, run_failures, table


def parse(*argv: str) -> argparse.Namespace:
    return build_parser("compare").parse_args(["compare", *argv])


def test_options() -> None:
    a = parse("throughput", "--server", "10.0.0.2:5202", "--runs", "4", "--json")
    assert (a.measurement, a.server, a.runs, a.json, a.listen) == (
        "throughput",
        "10.0.0.2:5202",
        4,
        True,
        None,
    )
    assert SPECS["throughput"].target(a) == "10.0.0.2"
    b = parse("dns", "--server", "127.0.0.1:53", "a.test", "-t", "AAAA")
    assert (b.names, b.types, b.runs) == (["a.test"], ["AAAA"], 10)
    c = parse("http", "--cacert", "ca.pem", "https://x.test/", "--plot", "x.svg")
    assert (c.urls, c.cacert, c.plot) == (["https://x.test/"], "ca.pem", "x.svg")
    assert parse("ping", "10.0.0.3", "-c", "3").count == 3
    assert parse("traceroute", "10.0.0.3", "-m", "5").max_ttl == 5
    with pytest.raises(SystemExit):
        parse("nothing")


def samples(values: list[list[float]], items: list[list[object]] | None = None) -> list[dict]:
    items = items or [[] for _ in values]
    return [{"values": v, "items": i, "record": {}} for v, i in zip(values, items, strict=True)]


def test_criteria_for_values() -> None:
    pl = samples([[95.0], [96.0], [97.0], [95.5]])
    nt = samples([[96.0], [96.5], [95.0], [96.2]])
    got = criteria(SPECS["throughput"], pl, nt)
    assert got["c1"] == pytest.approx(abs(1 - 95.875 / 95.925))
    assert got["c1_holds"] is True and got["c2_holds"] is True and 0 <= got["c2_p"] <= 1
    assert got["c3"] is None and got["c3_holds"] is None
    far = criteria(SPECS["throughput"], samples([[50.0]] * 5), samples([[100.0]] * 5))
    assert far["c1"] == pytest.approx(0.5) and far["c1_holds"] is False and far["c2_holds"] is False
    text = table("throughput", SPECS["throughput"], {"runs": 5, **far})
    assert "FAILS" in text and "C1 |1-PL/NT|   50.000 %" in text


def test_criteria_for_sets() -> None:
    same = criteria(
        SPECS["dns"], samples([[]], [[("a", 1), ("b", 2)]]), samples([[]], [[("b", 2), ("a", 1)]])
    )
    assert (same["c3"], same["c3_holds"], same["c1"]) == (1.0, True, None)
    diff = criteria(SPECS["http"], samples([[]], [[1, 2, 3, 4, 5, 6, 7, 8, 9]]),
                    samples([[]], [[1, 2, 3, 4, 5, 6, 7, 8, 10]]))  # fmt: skip
    assert diff["c3"] == pytest.approx(0.8) and diff["c3_holds"] is False
    assert (diff["only_pl"], diff["only_nt"]) == (1, 1)
    assert "C3 Jaccard      0.800" in table("http", SPECS["http"], {"runs": 1, **diff})


def test_plot_writes_a_file(tmp_path: Path) -> None:
    out = tmp_path / "cdf.svg"
    plot(str(out), SPECS["ping"], "ping", samples([[40.0, 41.0, 45.0]]), samples([[58.0, 60.0]]))
    assert out.read_text().lstrip().startswith(("<?xml", "<svg"))


def test_plot_draws_each_cdf_from_0_to_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`pktlab compare throughput --runs 3 --plot tput.png`: each side's CDF began at 1/3
    (the first step, 0 to 1/3, was not drawn) on an axis that began at 0.3, and the side
    with the smaller largest value stopped short of the other. Now each side's line starts
    at 0 on its first value and runs at 1 to the largest value of both; a NaN is left out,
    as from C1 and C2."""
    from matplotlib.axes import Axes

    drawn: dict[str, tuple[list[float], list[float]]] = {}
    step = Axes.step

    def spy(self: Axes, x: Any, y: Any, *args: Any, **kw: Any) -> Any:
        drawn[kw["label"]] = (list(x), list(y))
        return step(self, x, y, *args, **kw)

    monkeypatch.setattr(Axes, "step", spy)
    pl, nt = samples([[3650.0, 5360.0, 5670.0]]), samples([[4550.0, 5590.0, math.nan]])
    plot(str(tmp_path / "cdf.png"), SPECS["throughput"], "throughput", pl, nt)
    x, y = drawn["PacketLab"]
    assert (x[0], y[0]) == (3650.0, 0.0) and y[1:] == pytest.approx([1 / 3, 2 / 3, 1, 1])
    x, y = drawn["native"]
    assert x == [4550.0, 4550.0, 5590.0, 5670.0] and y == [0.0, 0.5, 1.0, 1.0]


def test_no_values_on_a_side_fails_c1_and_c2_and_says_so() -> None:
    # a target that answers nobody (echo ignored): C1 and C2 were once left out of the
    # table and the exit status 0, "every criterion holds" over nothing
    got = criteria(SPECS["ping"], samples([[], []]), samples([[], []]))
    assert (got["c1"], got["c1_holds"], got["c2_holds"]) == (None, False, False)
    assert (got["n_pl"], got["n_nt"], got["runs_pl"], got["runs_nt"]) == (0, 0, 2, 2)
    text = table("ping", SPECS["ping"], {"runs": 2, **got})
    assert "no values to compare (PacketLab 0, native 0: nothing answered)   FAILS" in text
    one_side = criteria(SPECS["ping"], samples([[40.0, 41.0]]), samples([[]]))
    assert one_side["c1_holds"] is False and one_side["n_pl"] == 2


def test_c2_with_too_few_values_to_reject_gives_no_verdict() -> None:
    # 2 values a side: the KS test's smallest p is 1/3, so "holds" would be said of any
    # two samples, even ones that never overlap (D = 1)
    got = criteria(SPECS["traceroute"], samples([[10.0], [11.0]]), samples([[90.0], [95.0]]))
    assert got["ks_d"] == 1.0 and got["c2_p"] == pytest.approx(1 / 3)
    assert got["c2_holds"] is None and got["c2_min_p"] == pytest.approx(1 / 3)
    text = table("traceroute", SPECS["traceroute"], {"runs": 2, **got})
    assert "C2 KS p         0.333     >= 0.05   - (D 1.000; too few values" in text
    enough = criteria(SPECS["traceroute"], samples([[10.0]] * 4), samples([[90.0]] * 4))
    assert enough["c2_holds"] is False and enough["c2_min_p"] < 0.05


def test_ctrl_c_keeps_the_runs_done() -> None:
    from twisted.internet.defer import Deferred, succeed

    from packetlab.cli.compare import alternate
    from packetlab.controller.stop import StopSignal

    stop = StopSignal()
    pl: list[dict] = []
    nt: list[dict] = []
    order: list[str] = []

    def side(who: str) -> Deferred[dict]:
        order.append(who)
        return succeed({"values": [float(len(order))], "items": [], "record": {}})

    def failing() -> Deferred[dict]:  # Ctrl-C while run 2's native side is in flight
        order.append("native")
        stop.request("interrupted")
        raise RuntimeError("ping: killed by SIGINT")

    natives = iter([lambda: side("native"), failing])
    d = Deferred.fromCoroutine(alternate("ping", 10, lambda: side("packetlab"),
                                         lambda: next(natives)(), stop, lambda t: None,
                                         lambda r: None, pl, nt))  # fmt: skip
    assert d.called and d.result is None  # no error: the run cut by Ctrl-C is dropped
    assert order == ["packetlab", "native", "native"] and (len(pl), len(nt)) == (1, 1)
    got = criteria(SPECS["ping"], samples([[1.0]]), samples([[2.0]]))
    text = table("ping", SPECS["ping"], {"runs": 10, "stop_reason": "INTERRUPTED", **got})
    assert text.splitlines()[0] == "ping: 1 run per side, alternating (interrupted; 10 planned)"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_help_documents_every_option(name: str) -> None:
    parser = build_parser("compare")
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    p = sub.choices["compare"]
    inner = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    bare = [a.dest for a in inner.choices[name]._actions if not a.help]
    assert bare == [], f"compare {name}: no help for {bare}"


def test_a_dig_that_reaches_no_server_is_a_failed_answer_not_an_abort(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # dig exits 9 when no server answers: the paper counts a failure on both sides as a
    # match, ours records one, but dig's ended the whole compare ("internal error:
    # NativeToolError: ..." over four lines, exit 2)
    from packetlab.measure import baselines
    from packetlab.measure.native import NativeToolError

    def dig_fails(argv: list[str], **kw: object) -> str:
        e = NativeToolError("dig ... failed (9): ;; no servers could be reached")
        e.returncode = 9
        raise e

    monkeypatch.setattr(baselines, "_run", dig_fails)
    r = baselines.run_dig("a.test", "A", server="127.0.0.1", port=1)
    assert r.error is not None and (r.qname, r.qtype) == ("a.test.", "A")
    run = SPECS["dns"].native(parse("dns", "--server", "127.0.0.1:1", "a.test"))
    from packetlab.cli.compare import Failed

    assert run()["items"] == [Failed(("a.test.", "A"), "(not compared)")]

    def dig_missing(argv: list[str], **kw: object) -> str:
        raise NativeToolError("dig is not installed (see APT_PACKAGES in scripts/setup.sh)")

    monkeypatch.setattr(baselines, "_run", dig_missing)
    with pytest.raises(NativeToolError):  # not a result: the tool did not run
        baselines.run_dig("a.test", "A", server="127.0.0.1")


def test_a_native_tools_error_is_one_line_and_a_missing_cacert_is_early() -> None:
    from packetlab.cli.compare import one_line
    from packetlab.cli.run import RunError

    text = ("dig +noall +answer -p 1 @127.0.0.1 a.test A failed (9): ;; communications error\n"
            ";; communications error to 127.0.0.1#1: connection refused\n"
            ";; no servers could be reached\n")  # fmt: skip
    assert one_line(text) == (
        "dig +noall +answer -p 1 @127.0.0.1 a.test A failed (9): ;; communications error ... "
        ";; no servers could be reached"
    )
    assert one_line("iperf3 is not installed") == "iperf3 is not installed"
    args = parse("http", "--cacert", "/nonexistent/ca.pem", "https://x.test/")
    with pytest.raises(RunError, match=r"^--cacert /nonexistent/ca.pem: No such file"):
        SPECS["http"].packetlab(args)


def test_plot_is_checked_before_the_runs(tmp_path: Path) -> None:
    # a --plot FILE that could not be written failed after every run, and took the
    # table with it; with dns or http it was silently not drawn
    from packetlab.cli.compare import check_plot
    from packetlab.cli.run import RunError

    with pytest.raises(RunError, match=r"cannot write it: No such file or directory"):
        check_plot(str(tmp_path / "no" / "cdf.png"), SPECS["ping"], "ping")
    with pytest.raises(RunError, match=r"give a \.png, \.svg or \.pdf file"):
        check_plot(str(tmp_path / "cdf.jpgx"), SPECS["ping"], "ping")
    with pytest.raises(RunError, match=r"^--plot: dns compares sets \(C3\)"):
        check_plot(str(tmp_path / "cdf.png"), SPECS["dns"], "dns")
    check_plot(str(tmp_path / "cdf.svg"), SPECS["traceroute"], "traceroute")
    assert (tmp_path / "cdf.svg").exists()


def test_a_later_failed_run_is_left_out_and_the_runs_go_on() -> None:
    # one iperf3 transfer reset at run 3 of 4 ended the whole comparison (exit 2, no
    # table): the runs done were lost
    from twisted.internet.defer import Deferred, fail, succeed

    from packetlab.cli.compare import alternate
    from packetlab.controller.stop import StopSignal

    def sample(v: float) -> Deferred[dict]:
        return succeed({"values": [v], "items": [], "record": {}})

    calls = {"packetlab": 0}

    def packetlab() -> Deferred[dict]:
        calls["packetlab"] += 1
        if calls["packetlab"] == 3:
            return fail(RuntimeError("connection to 10.0.0.2:5201: RESET\nsecond line"))
        return sample(95.0)

    pl: list[dict] = []
    nt: list[dict] = []
    failed: dict[str, list[str]] = {"packetlab": [], "native": []}
    records: list[dict] = []
    d = Deferred.fromCoroutine(alternate("throughput", 4, packetlab, lambda: sample(96.0),
                                         StopSignal(), lambda t: None, records.append,
                                         pl, nt, failed))  # fmt: skip
    assert d.called and d.result is None
    assert (len(pl), len(nt), failed["packetlab"]) == (3, 4, [
        "connection to 10.0.0.2:5201: RESET ... second line"])  # fmt: skip
    (bad,) = [r for r in records if "error" in r]
    assert (bad["impl"], bad["run"]) == ("packetlab", 3)
    got = criteria(SPECS["throughput"], pl, nt)
    text = table("throughput", SPECS["throughput"], {"runs": 4, **got, **run_failures(failed)})
    assert "  failed runs  PacketLab 1, native 0 (left out" in text
    # why, in the text too (session 31: an upload refused by the send window was only in
    # the --json records)
    assert "    the first PacketLab one: connection to 10.0.0.2:5201: RESET ... second line" in (
        text.splitlines()
    )
    assert run_failures(failed)["failure_run_nt"] is None
    # a side's first run failing is the comparison's error (the tool or server is wrong)
    first = Deferred.fromCoroutine(alternate("throughput", 4,
                                             lambda: fail(RuntimeError("refused")),
                                             lambda: sample(1.0), StopSignal(), lambda t: None,
                                             lambda r: None, [], []))  # fmt: skip
    errors: list[Any] = []
    first.addErrback(errors.append)
    assert errors and str(errors[0].value) == "refused"


def test_printed_numbers_agree_with_their_verdicts() -> None:
    # p = 1091/21879 = 0.04987 (D 3/5, 8 against 10) was printed "0.050  >= 0.05  FAILS"
    pl = [1.0, 11, 17, 18, 21, 30, 32, 37]
    nt = [-32.0, -26, -24, -27, -19, -15, 4, 72, 75, 76]
    got = criteria(SPECS["ping"], samples([pl]), samples([nt]))
    assert got["c2_p"] == pytest.approx(1091 / 21879, abs=1e-12) and got["c2_holds"] is False
    assert "  C2 KS p        0.0499     >= 0.05   FAILS (D 0.600)" in table(
        "ping", SPECS["ping"], {"runs": 1, **got}
    )
    # C1 exactly at the bound holds (1 - 110/100 = 0.10000000000000009 FAILED)
    edge = criteria(SPECS["ping"], samples([[110.0]]), samples([[100.0]]))
    assert (edge["c1"], edge["c1_holds"]) == (0.1, True)
    assert "  C1 |1-PL/NT|   10.000 %   <= 10 %   holds" in table(
        "ping", SPECS["ping"], {"runs": 1, **edge}
    )
    over = {**edge, "c1": 0.1000001, "c1_holds": False}
    assert "C1 |1-PL/NT| 10.00001 %   <= 10 %   FAILS" in table("ping", SPECS["ping"], over | {
        "runs": 1})  # fmt: skip
    # a Jaccard of 8996/10000 was "0.900  >= 0.9  FAILS"
    sets = criteria(SPECS["dns"], samples([[]], [list(range(9998))]),
                    samples([[]], [list(range(2, 10000))]))  # fmt: skip
    assert (sets["c3"], sets["c3_holds"]) == (0.9996, True)
    near = criteria(SPECS["dns"], samples([[]], [list(range(9498))]),
                    samples([[]], [list(range(502, 10000))]))  # fmt: skip
    assert (near["c3"], near["c3_holds"]) == (8996 / 10000, False)
    assert "  C3 Jaccard     0.8996     >= 0.9    FAILS" in table("dns", SPECS["dns"], {
        "runs": 1, **near})  # fmt: skip


def test_values_that_are_not_finite_are_left_out_and_counted() -> None:
    # a NaN made C1 `nan` (FAILS, no reason given) and the KS p `nan`
    got = criteria(SPECS["ping"], samples([[40.0, math.nan, 41.0, 42.0, 43.0]]),
                   samples([[40.5, 41.5, math.inf, 42.5, 43.5]]))  # fmt: skip
    assert (got["n_pl"], got["n_nt"], got["nonfinite_pl"], got["nonfinite_nt"]) == (4, 4, 1, 1)
    assert got["c1"] == pytest.approx(0.5 / 42) and got["c1_holds"] is True
    assert got["ks_d"] == 0.25 and got["c2_p"] == pytest.approx(1.0)
    text = table("ping", SPECS["ping"], {"runs": 1, **got})
    assert "  left out     PacketLab 1, native 1 values not finite (NaN, inf)" in text


def test_a_native_mean_of_zero_is_c1_failing_not_an_internal_error() -> None:
    # ValueError from c1() ended the command ("internal error", exit 2) and the runs'
    # figures were never printed
    got = criteria(SPECS["ping"], samples([[1.0, 2.0, 3.0, 4.0]]), samples([[0.0] * 4]))
    assert (got["c1"], got["c1_holds"], got["c1_error"]) == (None, False,
                                                          "C1: the native mean is 0")  # fmt: skip
    assert got["c2_p"] == pytest.approx(2 / 70) and got["c2_holds"] is False
    text = table("ping", SPECS["ping"], {"runs": 1, **got})
    assert "  C1 |1-PL/NT|   cannot be computed (C1: the native mean is 0)   FAILS" in text
    assert "  means        PacketLab 2.500 us, native 0.000 us (4 and 4 values)" in text


TRACE = """traceroute to 10.77.9.2 (10.77.9.2), 30 hops max, 60 byte packets
 1  10.77.1.2  0.050 ms
 2  *
 3  *
 4  *
 5  10.77.5.2  0.090 ms
 6  10.77.9.2  0.120 ms
"""


def test_traceroute_paths_compare_the_hops_that_answered(monkeypatch: pytest.MonkeyPatch) -> None:
    # (ttl, None) of the silent hops went into C3's sets: silent hops on both sides
    # counted as agreement, one silent on one side only twice against
    from packetlab.measure import native

    monkeypatch.setattr(native, "run_traceroute",
                        lambda *a, **kw: native.parse_traceroute(TRACE))  # fmt: skip
    got = SPECS["traceroute"].native(parse("traceroute", "10.77.9.2"))()
    assert got["items"] == [(1, "10.77.1.2"), (5, "10.77.5.2"), (6, "10.77.9.2")]
    assert got["values"] == [120.0]
    # the paper's example: 15 hops, one silent on one side: 14/15 = 0.933 (was 14/16)
    hops: list[object] = [(t, f"10.0.{t}.1") for t in range(1, 16)]
    c3 = criteria(SPECS["traceroute"], samples([[]], [hops[:7] + hops[8:]]),
                  samples([[]], [hops]))["c3"]  # fmt: skip
    assert c3 == pytest.approx(14 / 15)


def test_every_fetch_failed_on_both_sides_fails_c3_and_says_why() -> None:
    # a URL on a closed port: both sides' fetches fail alike, Jaccard 1.0 over the failure
    # markers, and it said "C3 holds", exit 0, with no word of the failures
    from packetlab.cli.compare import Failed

    pl = samples([[]], [[Failed(("http://h:1/",), "connection refused")]])
    nt = samples([[]], [[Failed(("http://h:1/",), "curl: (7) Failed to connect")]])
    got = criteria(SPECS["http"], pl, nt)
    assert (got["c3"], got["c3_holds"], got["c3_nothing"]) == (None, False, True)
    assert (got["failed_items_pl"], got["items_pl"], got["failure_nt"]) == (
        1,
        1,
        "curl: (7) Failed to connect",
    )
    text = table("http", SPECS["http"], {"runs": 1, **got})
    assert "  failed fetches PacketLab: 1 of 1 (connection refused)" in text
    assert "  failed fetches native: 1 of 1 (curl: (7) Failed to connect)" in text
    assert "nothing to compare: every one of the fetches failed on both sides   FAILS" in text


def test_a_failure_on_both_sides_still_matches_beside_answers() -> None:
    # a server down for one URL of two, on both sides: congruent, and the failures shown
    from packetlab.cli.compare import Failed

    def side(reason: str) -> list[dict]:
        return samples([[]], [[("http://a/", 200, "x"), Failed(("http://b/",), reason)]])

    got = criteria(SPECS["http"], side("refused"), side("curl: (7) refused"))
    assert (got["c3"], got["c3_holds"], got.get("c3_nothing")) == (1.0, True, None)
    text = table("http", SPECS["http"], {"runs": 1, **got})
    assert "failed fetches PacketLab: 1 of 2 (refused)" in text and "C3 Jaccard      1.000" in text


def test_dns_failures_are_failed_items_that_match_by_name_and_type() -> None:
    from types import SimpleNamespace

    from packetlab.cli.compare import Failed, _dns_items

    a = _dns_items(SimpleNamespace(error="no answer", qname="a.test", qtype=1))
    b = _dns_items(SimpleNamespace(error="dig: no reply", qname="a.test", qtype=1))
    assert a == b and isinstance(a[0], Failed) and hash(a[0]) == hash(b[0])
    assert _dns_items(SimpleNamespace(error="x", qname="a.test", qtype=28)) != a


def test_failed_dns_queries_are_counted_of_the_queries_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`pktlab compare dns a.test silent.test nx.test --runs 2` (a.test has two A records):
    `failed queries native: 2 of 8` for 6 queries a side, the denominator being C3's items
    (one per answer record), and each run's `answers` 4 with one answer-less NXDOMAIN and
    one failure among them. Now `2 of 6`, and the run's record says queries, answers and
    failures apart (session 31)."""
    from packetlab.measure import baselines

    class Result:
        def __init__(self, qname: str, rcode: str, data: list[str], error: str | None) -> None:
            self.qname, self.qtype, self.rcode, self.error = qname, 1, rcode, error
            self.data = data

        def answer_set(self) -> set[tuple[str, str, str]]:
            return {(self.qname, "A", d) for d in self.data}

    answers = {"a.test": Result("a.test", "NOERROR", ["192.0.2.1", "192.0.2.2"], None),
               "silent.test": Result("silent.test", "", [], "no reply from the server"),
               "nx.test": Result("nx.test", "NXDOMAIN", [], None)}  # fmt: skip
    monkeypatch.setattr(baselines, "run_dig", lambda name, *a, **kw: answers[name])
    args = parse("dns", "--server", "127.0.0.1:5353", "a.test", "silent.test", "nx.test")
    runs = [SPECS["dns"].native(args)() for _ in range(2)]
    assert runs[0]["record"] == {"queries": 3, "answers": 2, "failed": 1}
    got = criteria(SPECS["dns"], runs, runs)
    assert (got["items_pl"], got["asked_pl"], got["failed_items_nt"]) == (8, 6, 2)
    text = table("dns", SPECS["dns"], {"runs": 2, **got})
    assert "  failed queries native: 2 of 6 (no reply from the server)" in text


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["ping", "127.0.0.1", "-c", "0"], "-c must be 1..10000, got 0"),
        (["ping", "127.0.0.1", "-i", "-1"], "-i must be 0..60, got -1"),
        (["traceroute", "127.0.0.1", "-m", "0"], "-m must be 1..255, got 0"),
        (["traceroute", "127.0.0.1", "-m", "300"], "-m must be 1..255, got 300"),
        (["ping", "127.0.0.1", "--runs", "0"], "--runs must be 1..10000, got 0"),
    ],
)
def test_a_value_out_of_range_names_its_option(
    argv: list[str], said: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`pktlab compare ping 127.0.0.1 -c 0` said the library's `count must be 1..10000, got
    0` (`-i -1`: `interval must be 0..60 seconds, got -1.0`; traceroute `-m 0`: `need 1 <=
    first_ttl <= max_ttl <= 255, got 1, 0`; `--runs 0`: no value): now each names its
    option and value, as `pktlab run` does, before the endpoint starts (session 31)."""
    from twisted.internet.defer import Deferred
    from twisted.internet.task import Clock

    from packetlab.cli import compare, interrupt
    from packetlab.cli.run import RunError
    from packetlab.controller.stop import StopSignal

    def run_reactor(main: Any, prog: str, verbose: bool) -> int:
        got: list[Any] = []
        Deferred.fromCoroutine(main(Clock(), StopSignal())).addBoth(got.append)
        raise got[0].value

    monkeypatch.setattr(interrupt, "run_reactor", run_reactor)
    with pytest.raises(RunError) as e:
        compare.run(parse(*argv))
    assert str(e.value) == said


def test_compare_help_is_filled_and_says_every_exit_status(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`pktlab compare --help` began `Congruence built in. Runs the PacketLab` alone on
    its line (the docstring's first line, cut where the module name stood), and its exit
    statuses left out Ctrl-C's 130, which docs/congruence.md gives (session 31)."""
    with pytest.raises(SystemExit):
        parse("--help")
    lines = capsys.readouterr().out.splitlines()
    first = lines[lines.index("") + 1]
    assert first.startswith("Congruence built in. Runs the PacketLab measurement (through")
    assert "2 on errors, 130 after" in " ".join(lines)


def test_a_failure_by_the_native_send_stamp_says_so() -> None:
    # `pktlab compare ping 127.0.0.1` printed a bare FAILS for means of 16.2 and 28.9 us:
    # ping's RTT starts at its clock read before sendmsg(), ours at the kernel's TX stamp
    pl = samples([[16.0, 16.5, 15.8, 16.2, 16.3]] * 2)
    nt = samples([[28.0, 29.0, 30.0, 28.5, 29.5]] * 2)
    got = criteria(SPECS["ping"], pl, nt)
    assert got["c1_holds"] is False and got["c2_holds"] is False
    assert got["stamp_offset"] is True and got["native_above_us"] == pytest.approx(12.84)
    text = table("ping", SPECS["ping"], {"runs": 2, **got})
    assert "  note         native 12.8 us above PacketLab: ping reads the clock before" in text
    assert "under C1's 10 % only at RTTs of 128 us or more" in " ".join(text.split())
    # C1 holding, C2 failing by the offset alone (a jitter-free 4 ms path)
    far = criteria(SPECS["traceroute"], samples([[4127.0 + i / 10 for i in range(20)]]),
                   samples([[4143.0 + i / 10 for i in range(20)]]))  # fmt: skip
    assert far["c1_holds"] is True and far["c2_holds"] is False and far["stamp_offset"]
    text = table("traceroute", SPECS["traceroute"], {"runs": 1, **far})
    assert "traceroute reads the clock before send()" in text and "KS test" in text
    # no note: PacketLab above native, a gap no send path makes, criteria that hold,
    # a measurement without a user-space send stamp
    for a, b in ((29.0, 16.0), (16.0, 160.0)):
        other = criteria(SPECS["ping"], samples([[a, a + 1, a + 2]] * 3),
                         samples([[b, b + 1, b + 2]] * 3))  # fmt: skip
        assert other["stamp_offset"] is False
        assert "note" not in table("ping", SPECS["ping"], {"runs": 3, **other})
    same = criteria(SPECS["ping"], samples([[16.0, 17.0, 18.0]] * 3),
                    samples([[16.5, 17.5, 17.0]] * 3))  # fmt: skip
    assert same["stamp_offset"] is False
    tput = criteria(SPECS["throughput"], samples([[50.0]] * 5), samples([[60.0]] * 5))
    assert "stamp_offset" not in tput
