"""`packetlab.numtext.float_in`, the range check four option parsers share (cli/reflex's
--timers-ms, the endpoint tap's --reconnect-delay, run http's --connect-timeout, ppks
verify --now): each keeps its own words and the range it had."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable

import pytest
from twisted.python import usage

from packetlab.cli.ppks import _unix_time
from packetlab.cli.reflex import _millis
from packetlab.cli.run_http_args import _seconds as connect_timeout
from packetlab.endpoint.tap import _seconds as tap_seconds
from packetlab.numtext import FINITE, float_in


@pytest.mark.parametrize(
    ("text", "low", "high", "want"),
    [
        ("0", 0, 1, 0.0),
        ("1", 0, 1, 1.0),  # both ends included
        ("-0", 0, 1, 0.0),
        (" 0.5\n", 0, 1, 0.5),  # float()'s reading: white space around
        ("1e3", 0, 1000, 1000.0),
        ("1.0000001", 0, 1, None),
        ("-1", 0, 1, None),
        ("nan", -FINITE, FINITE, None),  # NaN is in no range
        ("inf", 0, FINITE, None),
        ("-inf", -FINITE, FINITE, None),
        ("inf", 0, math.inf, math.inf),  # only an infinite bound lets it in
        ("", 0, 1, None),
        ("soon", 0, 1, None),
        ("0x10", 0, 100, None),  # not C's strtod
    ],
)
def test_float_in(text: str, low: float, high: float, want: float | None) -> None:
    assert float_in(text, low, high) == want


def _tap(text: str) -> float:
    return tap_seconds("retry-delay", text)


@pytest.mark.parametrize(
    ("parse", "error", "good", "bad"),
    [
        (_millis, argparse.ArgumentTypeError, ["0", "86400000"], ["86400001", "-1", "nan"]),
        (_tap, usage.UsageError, ["0", "86400", "0.05"], ["86400.5", "-0.1", "inf", "soon"]),
        (connect_timeout, argparse.ArgumentTypeError, ["0", "1e300"], ["-1", "inf", "nan"]),
        (_unix_time, argparse.ArgumentTypeError, ["-5", "1.9e9"], ["inf", "-inf", "nan", "x"]),
    ],
)
def test_each_parser_keeps_its_range(
    parse: Callable[[str], float], error: type[Exception], good: list[str], bad: list[str]
) -> None:
    for text in good:
        assert parse(text) == float(text)
    for text in bad:
        with pytest.raises(error, match=re.escape(text)):
            parse(text)
