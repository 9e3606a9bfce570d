"""`pktlab compare`: options, the criteria summary (c1, c2_p, c3 and verdicts), the
table and the plot. End to end: tests/integration/test_measure_dns_http.py."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from packetlab.cli import build_parser
from packetlab.cli.compare import SPECS, criteria, plot, table


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
