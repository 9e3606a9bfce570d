"""The Marionette paper's congruence criteria (§3.2) between PacketLab and native results.

* C1: |1 - mean(PL) / mean(NT)| <= c (the paper: 6 % for throughput, 10 % for latency);
* C2: a two-sample Kolmogorov-Smirnov test finds no significant difference (alpha 0.05;
  scipy's `ks_2samp`, two-sided, its exact p up to 10,000 values a side: `exact` in the
  detail says where it was not);
* C3: the Jaccard index of the two result sets >= 0.9.

C1 and C2 refuse a NaN or an infinity (ValueError naming the side): neither is a
measurement. Sans-IO; scipy (the `analysis` extra) is imported only by `c2`, which
raises `packetlab.extras.MissingExtra` without it.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "C1_LATENCY",
    "C1_THROUGHPUT",
    "C3_MIN",
    "Verdict",
    "c1",
    "c2",
    "c3",
    "check_finite",
    "jaccard",
]

C1_THROUGHPUT = 0.06
C1_LATENCY = 0.10
C2_ALPHA = 0.05
C3_MIN = 0.9


@dataclass(frozen=True, slots=True)
class Verdict:
    """One criterion: its value, the bound, and whether it holds."""

    criterion: str
    value: float
    bound: float
    holds: bool
    detail: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "criterion": self.criterion,
            "value": self.value,
            "bound": self.bound,
            "holds": self.holds,
            **self.detail,
        }


def check_finite(criterion: str, packetlab: Sequence[float], native: Sequence[float]) -> None:
    """A NaN or an infinity is no measurement: it would make C1 `nan` or `inf` (FAILS
    with no reason given) and pass the KS test as a rank (an `inf` RTT "holds")."""
    for side, values in (("PacketLab", packetlab), ("native", native)):
        bad = [v for v in values if not math.isfinite(v)]
        if bad:
            raise ValueError(f"{criterion}: {len(bad)} of the {side} values not finite "
                             f"(first: {bad[0]!r})")  # fmt: skip


def c1(
    packetlab: Sequence[float], native: Sequence[float], bound: float = C1_THROUGHPUT
) -> Verdict:
    """|1 - mean(PL) / mean(NT)|, computed as |mean(PL) - mean(NT)| / |mean(NT)|: the same
    number, but one rounding instead of two, so an error exactly at the bound is the
    bound (110 against 100 is 0.1, within 10 %; 1 - 110/100 gave 0.10000000000000009,
    FAILS, printed as 10.000 %)."""
    if not packetlab or not native:
        raise ValueError("C1 needs samples on both sides")
    check_finite("C1", packetlab, native)
    pl, nt = statistics.fmean(packetlab), statistics.fmean(native)
    if nt == 0:
        raise ValueError("C1: the native mean is 0")
    err = abs(pl - nt) / abs(nt)
    return Verdict("C1", err, bound, err <= bound, {"mean_pl": pl, "mean_nt": nt})


def c2(packetlab: Sequence[float], native: Sequence[float], alpha: float = C2_ALPHA) -> Verdict:
    """Holds when the KS test's p-value is at least `alpha` (no significant difference).

    `detail["min_p"]` is the smallest p-value the test can give with these sample sizes
    (two samples that do not overlap at all, D = 1), and `can_reject` whether it is below
    `alpha`: with 2 values a side it is 0.333, so such a C2 "holds" whatever the values
    are, which is no evidence (the paper used 100 a side)."""
    if not packetlab or not native:
        raise ValueError("C2 needs samples on both sides")
    check_finite("C2", packetlab, native)
    from packetlab.extras import ANALYSIS, require

    require(ANALYSIS, "scipy.stats")
    from scipy.stats import ks_2samp

    # scipy falls back to the asymptotic p where its exact recursion fails (5 against 5 at
    # D 1/5, where the exact p is 1) with a RuntimeWarning that reached the user's terminal
    # as a source line of scipy's; the fallback is said in the detail instead
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = ks_2samp(list(packetlab), list(native))
    exact = not any("Exact calculation unsuccessful" in str(w.message) for w in caught)
    p = float(res.pvalue)
    n, m = len(packetlab), len(native)
    min_p = float(ks_2samp(range(n), range(n, n + m)).pvalue)
    detail = {"ks_d": float(res.statistic), "min_p": min_p, "can_reject": min_p < alpha,
              "exact": exact and max(n, m) <= 10_000}  # fmt: skip
    return Verdict("C2", p, alpha, p >= alpha, detail)


def jaccard(a: Iterable[Hashable], b: Iterable[Hashable]) -> float:
    sa, sb = set(a), set(b)
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)


def c3(packetlab: Iterable[Hashable], native: Iterable[Hashable], bound: float = C3_MIN) -> Verdict:
    sa, sb = set(packetlab), set(native)
    j = jaccard(sa, sb)
    return Verdict("C3", j, bound, j >= bound, {"only_pl": len(sa - sb), "only_nt": len(sb - sa)})
