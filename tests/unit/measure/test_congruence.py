"""The congruence criteria (`packetlab.measure.congruence`) against numbers worked out by
hand: C1 as |mean(PL) - mean(NT)| / mean(NT), C2's exact two-sided KS p-values as lattice
path counts (the fraction of the C(n+m, n) orderings of the two samples whose ECDF gap
reaches D), C3 as |A & B| / |A | B|."""

from __future__ import annotations

import math
import warnings

import pytest

from packetlab.measure.congruence import c1, c2, c3, jaccard


def test_c1_exactly_at_the_bound_holds() -> None:
    # 1 - 110/100 is 0.10000000000000009 in floating point: "10.000 % <= 10 % FAILS"
    at = c1([110.0], [100.0], 0.10)
    assert (at.value, at.holds) == (0.1, True)
    six = c1([106.0, 106.0, 106.0], [100.0, 100.0, 100.0], 0.06)
    assert (six.value, six.holds) == (0.06, True)
    below = c1([94.0], [100.0], 0.06)  # 1 - 94/100 = 0.06000000000000005 before
    assert (below.value, below.holds) == (0.06, True)
    assert c1([110.5], [100.0], 0.10).holds is False


def test_c1_means_and_signs() -> None:
    v = c1([95.0, 96.0, 97.0, 95.5], [96.0, 96.5, 95.0, 96.2], 0.06)
    assert (v.detail["mean_pl"], v.detail["mean_nt"]) == (95.875, 95.925)
    assert v.value == pytest.approx(0.05 / 95.925, rel=1e-15)
    neg = c1([-5.0, -6.0, -7.0, -8.0], [5.0, 6.0, 7.0, 8.0], 0.10)  # -6.5 against 6.5
    assert (neg.value, neg.holds) == (2.0, False)
    with pytest.raises(ValueError, match="native mean is 0"):
        c1([1.0], [-1.0, 1.0])
    with pytest.raises(ValueError, match="samples on both sides"):
        c1([], [1.0])


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_value_that_is_not_finite_is_refused_by_name(bad: float) -> None:
    # NaN made C1 `nan` (FAILS, no reason) and C2 `nan`; an inf "held" C2 as a rank
    with pytest.raises(ValueError, match=r"C1: 1 of the PacketLab values not finite"):
        c1([1.0, bad, 3.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"C2: 1 of the native values not finite"):
        c2([1.0, 2.0, 3.0, 4.0], [1.0, bad, 3.0, 4.0])


@pytest.mark.parametrize(
    ("pl", "nt", "d", "p"),
    [
        # equal samples: D 0, p 1
        ([1.0, 2.0, 3.0, 4.0, 5.0], [1.0, 2.0, 3.0, 4.0, 5.0], 0.0, 1.0),
        # shifted by 2.5: D 3/5; 90 of the 252 orderings reach it (two-sided): 5/14
        ([1.0, 2.0, 3.0, 4.0, 5.0], [3.5, 4.5, 5.5, 6.5, 7.5], 0.6, 5 / 14),
        # n = 1: D 1, but both orderings reach it
        ([10.0], [11.0], 1.0, 1.0),
        # n = 2, interleaved: D 1/2, p 1
        ([10.0, 12.0], [11.0, 13.0], 0.5, 1.0),
        # n = 3, apart: 2 of C(6, 3) = 20 orderings
        ([10.0, 12.0, 14.0], [20.0, 21.0, 22.0], 1.0, 0.1),
        # all equal on each side, different: 2 of C(12, 6) = 924
        ([5.0] * 6, [6.0] * 6, 1.0, 2 / 924),
        # all equal, the same value on both sides
        ([5.0] * 6, [5.0] * 6, 0.0, 1.0),
        # ties across the samples: the ECDFs at 1, 2, 3 differ by 1/6 at most
        ([1.0, 1.0, 2.0, 2.0, 3.0, 3.0], [1.0, 2.0, 2.0, 3.0, 3.0, 3.0], 1 / 6, 1.0),
        # 8 against 3: D 1/3; 153 of C(11, 3) = 165 orderings reach it
        ([1.0, 2, 3, 4, 5, 6, 7, 8], [2.5, 3.5, 9.5], 1 / 3, 153 / 165),
    ],
)
def test_c2_statistic_and_exact_p(pl: list[float], nt: list[float], d: float, p: float) -> None:
    v = c2(pl, nt)
    assert v.detail["ks_d"] == pytest.approx(d, abs=1e-12)
    assert v.value == pytest.approx(p, abs=1e-9)
    assert v.holds is (p >= 0.05)


@pytest.mark.parametrize(
    ("n", "m", "min_p"),
    [(1, 1, 1.0), (1, 5, 2 / 6), (2, 2, 1 / 3), (3, 3, 0.1), (4, 4, 2 / 70), (5, 5, 2 / 252),
     (3, 7, 2 / 120), (100, 100, 0.0)],
)  # fmt: skip
def test_c2_smallest_p_is_two_orderings_of_all(n: int, m: int, min_p: float) -> None:
    # the samples apart (D = 1): only the two orderings "all of one, then all of the other"
    v = c2([float(i) for i in range(n)], [float(100 + i) for i in range(m)])
    assert v.detail["min_p"] == pytest.approx(min_p, abs=1e-12)
    assert v.detail["can_reject"] is (min_p < 0.05)


def test_c2_is_two_sided() -> None:
    below, above = (
        c2([1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]),
        c2([5.0, 6, 7, 8], [1.0, 2, 3, 4]),
    )
    assert below.value == above.value == pytest.approx(2 / 70)


def test_c3_jaccard() -> None:
    v = c3({("a", 1), ("b", 2), ("c", 3)}, [("b", 2), ("c", 3), ("d", 4), ("c", 3)])
    assert (v.value, v.holds, v.detail) == (0.5, False, {"only_pl": 1, "only_nt": 1})
    assert jaccard([], []) == 1.0 and jaccard([1], []) == 0.0
    nine = c3(range(9), range(10))  # 9 / 10: exactly the bound
    assert (nine.value, nine.holds) == (0.9, True)


def test_c2_says_where_scipy_left_the_exact_p_and_prints_no_warning() -> None:
    # 5 against 5 interleaved (D 1/5, exact p 1): scipy's exact recursion gives up and
    # warns; its RuntimeWarning reached `pktlab compare ping --runs 1`'s terminal
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        v = c2([0.0, 2.0, 4.0, 6.0, 8.0], [1.0, 3.0, 5.0, 7.0, 9.0])
    assert (v.detail["ks_d"], v.value, v.detail["exact"]) == (0.2, 1.0, False)
    assert c2([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]).detail["exact"] is True
    big = c2([float(i) for i in range(10_001)], [i + 0.5 for i in range(10_001)])
    assert big.detail["exact"] is False and big.value == pytest.approx(1.0)
