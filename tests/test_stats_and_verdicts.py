"""Statistics and verdicts: properties that must hold for any data."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_ktinterf.stats import Interval, median_ratio_ci
from pytest_ktinterf.verdict import expect_degraded

samples = st.lists(st.floats(1.0, 1000.0), min_size=2, max_size=12)


@given(samples, samples)
@settings(max_examples=60, deadline=None)
def test_interval_contains_point_and_is_ordered(cond, base):
    ci = median_ratio_ci(cond, base, resamples=300)
    assert 0 < ci.lo <= ci.point <= ci.hi


@given(samples, samples, st.floats(0.1, 10.0))
@settings(max_examples=40, deadline=None)
def test_ratio_scales_with_the_condition(cond, base, k):
    a = median_ratio_ci(cond, base, resamples=300, seed=3)
    b = median_ratio_ci([k * x for x in cond], base, resamples=300, seed=3)
    assert b.point == pytest.approx(k * a.point, rel=1e-9)
    assert b.lo == pytest.approx(k * a.lo, rel=1e-9)
    assert b.hi == pytest.approx(k * a.hi, rel=1e-9)


def test_clear_effect_excludes_one_and_null_effect_includes_it():
    rng = random.Random(1)
    base = [rng.gauss(100, 5) for _ in range(8)]
    halved = [rng.gauss(50, 3) for _ in range(8)]
    same = [rng.gauss(100, 5) for _ in range(8)]
    assert median_ratio_ci(halved, base).hi < 0.75
    null = median_ratio_ci(same, base)
    assert null.lo < 1 < null.hi


def test_too_few_samples_is_an_error():
    with pytest.raises(ValueError, match="at least 2"):
        median_ratio_ci([1.0], [1.0, 2.0])


def test_degraded_passes_only_when_the_whole_interval_is_below():
    assert expect_degraded("decode", Interval(0.5, 0.45, 0.6, 0.95), 0.25).passed
    straddles = expect_degraded("decode", Interval(0.7, 0.6, 0.8, 0.95), 0.25)
    assert not straddles.passed and "undecided" in straddles.reason
    mild = expect_degraded("decode", Interval(0.9, 0.85, 0.95, 0.95), 0.25)
    assert not mild.passed and "not degraded that much" in mild.reason
