"""examples/_common.py: the options every example shares."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from _common import add_link_args


@pytest.mark.parametrize("bad", ["-1", "0", "nan", "inf", "soon"])
def test_a_bad_timeout_is_a_one_line_usage_error(
    bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # --timeout -1 was "internal error: AssertionError: -1.0 is not greater than or equal
    # to 0 seconds" after the link had started; nan and inf were taken.
    p = argparse.ArgumentParser(prog="dns_query.py")
    add_link_args(p)
    with pytest.raises(SystemExit) as e:
        p.parse_args(["--timeout", bad])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("dns_query.py: error: argument --timeout: ")
    assert p.parse_args(["--timeout", "2.5"]).timeout == 2.5
