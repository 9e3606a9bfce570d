"""A number an operator wrote, checked against its range: the one reading that the
options of the CLI and the daemons' taps share; each caller says in its own words
(argparse's, twistd's `UsageError`) what it wanted."""

from __future__ import annotations

import sys

__all__ = ["FINITE", "float_in"]

FINITE = sys.float_info.max  # a bound that keeps out the infinities, and nothing else


def float_in(text: str, low: float, high: float) -> float | None:
    """`text` as a float from `low` to `high` (both included); None when it is no number,
    NaN (in no range), or outside (an infinity is outside any finite bound)."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if low <= value <= high else None
