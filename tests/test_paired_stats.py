"""The paired interval: exact signed-rank tables, Hodges-Lehmann ratios, and exact coverage.

The verdicts' false-alarm rate is what the interval's confidence says only if the interval is
exact; the seeded simulations below check that on A/A data (no effect) at the design's pair
counts, deterministically and in well under a second.
"""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_ktinterf.judge.stats import paired_ratio_ci, signed_rank_depth, signed_rank_null

# -- the exact null distribution -----------------------------------------------------------


@pytest.mark.parametrize("n", range(0, 16))
def test_signed_rank_null_sums_to_all_sign_patterns(n: int):
    counts = signed_rank_null(n)
    assert sum(counts) == 2**n
    assert len(counts) == n * (n + 1) // 2 + 1  # T+ runs from 0 to 1 + 2 + ... + n
    assert counts == counts[::-1]  # symmetric about n(n+1)/4


@pytest.mark.parametrize(
    ("n", "counts"),
    [
        (0, [1]),
        (1, [1, 1]),
        (2, [1, 1, 1, 1]),
        (3, [1, 1, 1, 2, 1, 1, 1]),
        (4, [1, 1, 1, 2, 2, 2, 2, 2, 1, 1, 1]),
    ],
)
def test_signed_rank_null_small_tables(n: int, counts: list[int]):
    assert signed_rank_null(n) == counts


def test_signed_rank_null_matches_brute_force():
    n = 7
    brute = [0] * (n * (n + 1) // 2 + 1)
    for pattern in range(2**n):
        brute[sum(rank for rank in range(1, n + 1) if pattern >> (rank - 1) & 1)] += 1
    assert signed_rank_null(n) == brute


@pytest.mark.parametrize(
    ("n", "confidence", "depth"),
    [
        (5, 0.95, 0),  # 2/32 > 5%: no exact 95% interval from 5 pairs
        (6, 0.95, 1),  # P(T+ = 0) = 1/64 <= 2.5%
        (8, 0.95, 4),
        (10, 0.95, 9),  # the textbook critical value 8, plus one
        (20, 0.95, 53),  # critical value 52
        (6, 0.90, 3),
        (2, 0.5, 1),
    ],
)
def test_signed_rank_depth(n: int, confidence: float, depth: int):
    assert signed_rank_depth(n, confidence) == depth


@pytest.mark.parametrize("n", range(1, 25))
def test_signed_rank_depth_is_the_largest_cut_within_alpha(n: int):
    counts, total = signed_rank_null(n), 2**n
    k = signed_rank_depth(n, 0.95)
    assert sum(counts[:k]) / total <= 0.025
    assert sum(counts[: k + 1]) / total > 0.025


# -- paired_ratio_ci ------------------------------------------------------------------------

positive = st.floats(1.0, 1000.0, allow_nan=False, allow_infinity=False)


@st.composite
def pairs(draw: st.DrawFn, min_size: int = 2, max_size: int = 14) -> tuple[list[float], list[float]]:
    n = draw(st.integers(min_size, max_size))
    return draw(st.lists(positive, min_size=n, max_size=n)), draw(st.lists(positive, min_size=n, max_size=n))


@given(pairs(), st.floats(0.05, 20.0))
@settings(max_examples=80, deadline=None)
def test_scale_invariance(data: tuple[list[float], list[float]], k: float):
    condition, baseline = data
    a = paired_ratio_ci(condition, baseline)
    b = paired_ratio_ci([k * c for c in condition], baseline)
    assert b.point == pytest.approx(k * a.point, rel=1e-9)
    assert b.lo == pytest.approx(k * a.lo, rel=1e-9)
    assert b.hi == pytest.approx(k * a.hi, rel=1e-9)
    # and scaling both arms changes nothing
    c = paired_ratio_ci([k * x for x in condition], [k * x for x in baseline])
    assert c.point == pytest.approx(a.point, rel=1e-9)
    assert (c.lo, c.hi) == pytest.approx((a.lo, a.hi), rel=1e-9)


@given(pairs())
@settings(max_examples=80, deadline=None)
def test_interval_contains_the_point(data: tuple[list[float], list[float]]):
    ci = paired_ratio_ci(*data)
    assert 0 <= ci.lo <= ci.point <= ci.hi
    assert ci.confidence == 0.95


@given(pairs(min_size=2, max_size=5))
@settings(max_examples=40, deadline=None)
def test_below_six_pairs_the_interval_decides_nothing(data: tuple[list[float], list[float]]):
    ci = paired_ratio_ci(*data)
    assert ci.lo == 0.0 and ci.hi == math.inf
    assert 0 < ci.point < math.inf


def test_six_pairs_give_the_extreme_walsh_averages():
    # log ratios are log(2) * [1..6]: Walsh averages run from log 2 to 6 log 2
    baseline = [10.0] * 6
    condition = [10.0 * 2**i for i in range(1, 7)]
    ci = paired_ratio_ci(condition, baseline)
    assert ci.lo == pytest.approx(2.0)
    assert ci.hi == pytest.approx(64.0)
    assert ci.point == pytest.approx(2**3.5)


def test_pairs_with_a_missing_value_are_dropped():
    ci = paired_ratio_ci([2.0, math.nan, 4.0, 0.0], [1.0, 1.0, 2.0, 1.0])
    assert ci.point == pytest.approx(2.0)


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in length: 3 vs 2"):
        paired_ratio_ci([1.0, 2.0, 3.0], [1.0, 2.0])


def test_too_few_complete_pairs_is_an_error():
    with pytest.raises(ValueError, match="at least 2 complete pairs"):
        paired_ratio_ci([1.0, math.nan, -1.0], [1.0, 1.0, 1.0])


# -- behaviour on simulated measurements (seeded, not hypothesis: fast and deterministic) ---


def _exact_coverage(n: int, confidence: float = 0.95) -> float:
    k = signed_rank_depth(n, confidence)
    return 1 - 2 * sum(signed_rank_null(n)[:k]) / 2**n


def _aa_coverage(n: int, repetitions: int, seed: int) -> float:
    """Share of A/A experiments (no effect) whose 95% interval contains 1."""
    rng = random.Random(seed)
    covered = 0
    for _ in range(repetitions):
        baseline, condition = [], []
        for _ in range(n):
            level = rng.uniform(50, 150)  # slow drift: each pair at its own level
            baseline.append(level * math.exp(rng.gauss(0, 0.1)))
            # symmetric but heavy-tailed noise on the other arm of the pair
            condition.append(level * math.exp(rng.gauss(0, 0.1) + (rng.random() < 0.1) * rng.uniform(-1, 1)))
        ci = paired_ratio_ci(condition, baseline)
        covered += ci.lo <= 1.0 <= ci.hi
    return covered / repetitions


@pytest.mark.parametrize("n", [6, 10])
def test_coverage_of_no_effect_is_exact(n: int):
    repetitions = 2000
    coverage = _aa_coverage(n, repetitions, seed=n)
    exact = _exact_coverage(n)  # 0.969 at 6 pairs, 0.951 at 10
    assert exact >= 0.95
    assert coverage >= 0.94
    # and not merely conservative: within 4 standard errors of the exact value
    assert abs(coverage - exact) < 4 * math.sqrt(exact * (1 - exact) / repetitions)


def test_a_clear_effect_is_bounded_well_below_one():
    rng = random.Random(7)
    baseline = [rng.uniform(80, 120) for _ in range(8)]
    condition = [0.5 * b * (1 + rng.uniform(-0.05, 0.05)) for b in baseline]
    ci = paired_ratio_ci(condition, baseline)
    assert ci.hi < 0.6
    assert ci.lo > 0.4
    assert ci.point == pytest.approx(0.5, abs=0.03)
