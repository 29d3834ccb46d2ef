"""The expectation vocabulary: regions, wording, decisions at the edges, and parse errors.

A verdict is only as trustworthy as ``decide``: these tests pin each outcome's region, the
three decisions at its boundaries, and properties that hold for any interval (an interval
inside the region passes, one outside fails, and more uncertainty never turns into a pass).
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_ktinterf.judge.expectations import (
    DEFAULT_BOUNDS,
    METRICS,
    OUTCOMES,
    Decision,
    Expectation,
    ExpectationError,
    parse,
)
from pytest_ktinterf.judge.stats import Interval


def iv(lo: float, hi: float) -> Interval:
    point = lo if math.isinf(hi) else (lo + hi) / 2
    return Interval(point=point, lo=lo, hi=hi, confidence=0.95)


# -- regions and wording -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expectation", "region"),
    [
        (Expectation("decode", "unaffected", 0.15), (0.85, 1.15)),
        (Expectation("decode", "degraded", 0.10), (0.0, 0.90)),
        (Expectation("decode", "degraded", 0.25, at_most=0.5), (0.5, 0.75)),
        (Expectation("decode", "collapsed", 0.60), (0.0, 0.40)),
        (Expectation("decode", "improved", 0.10), (1.10, math.inf)),
        (Expectation("decode", "improved", 0.30, at_most=0.50), (1.30, 1.50)),
        (Expectation("decode", "improved", 2.0), (3.0, math.inf)),
    ],
)
def test_region(expectation: Expectation, region: tuple[float, float]):
    assert expectation.region == pytest.approx(region)


@pytest.mark.parametrize(
    ("expectation", "words"),
    [
        (Expectation("decode", "unaffected", 0.15), "unaffected within 15%"),
        (Expectation("decode", "degraded", 0.25), "degraded by at least 25%"),
        (Expectation("decode", "degraded", 0.10, at_most=0.30), "degraded by at least 10% and at most 30%"),
        (Expectation("decode", "collapsed", 0.60), "collapsed by at least 60%"),
        (Expectation("decode", "improved", 0.30, at_most=0.50), "improved by at least 30% and at most 50%"),
    ],
)
def test_describe(expectation: Expectation, words: str):
    assert expectation.describe() == words


def test_vocabulary_constants_agree():
    assert set(DEFAULT_BOUNDS) == set(OUTCOMES)
    for outcome, bound in DEFAULT_BOUNDS.items():
        assert Expectation("prefill", outcome, bound).bound == bound


# -- decide at the edges -------------------------------------------------------------------

UNAFFECTED = Expectation("decode", "unaffected", 0.15)  # [0.85, 1.15]
DEGRADED = Expectation("decode", "degraded", 0.25)  # [0, 0.75]
IMPROVED_RANGE = Expectation("decode", "improved", 0.30, at_most=0.50)  # [1.3, 1.5]


@pytest.mark.parametrize(
    ("expectation", "lo", "hi", "decision"),
    [
        # unaffected: inside, touching both edges, straddling each edge, outside each side
        (UNAFFECTED, 0.95, 1.05, Decision.PASS),
        (UNAFFECTED, 0.85, 1.15, Decision.PASS),  # the edges belong to the region
        (UNAFFECTED, 0.84, 1.0, Decision.UNDECIDED),
        (UNAFFECTED, 1.0, 1.16, Decision.UNDECIDED),
        (UNAFFECTED, 0.5, 2.0, Decision.UNDECIDED),  # covers the whole region
        (UNAFFECTED, 0.5, 0.8, Decision.FAIL),
        (UNAFFECTED, 1.2, 1.4, Decision.FAIL),
        (UNAFFECTED, 0.5, 0.85, Decision.UNDECIDED),  # touching from outside is not a contradiction
        (UNAFFECTED, 0.0, math.inf, Decision.UNDECIDED),  # too few pairs: decides nothing
        # degraded by 25%
        (DEGRADED, 0.4, 0.75, Decision.PASS),
        (DEGRADED, 0.0, 0.5, Decision.PASS),
        (DEGRADED, 0.7, 0.8, Decision.UNDECIDED),
        (DEGRADED, 0.76, 0.95, Decision.FAIL),
        (DEGRADED, 0.9, 1.1, Decision.FAIL),
        (DEGRADED, 0.0, math.inf, Decision.UNDECIDED),
        # improved by 30-50%: a bounded region on both sides
        (IMPROVED_RANGE, 1.35, 1.45, Decision.PASS),
        (IMPROVED_RANGE, 1.4, 1.6, Decision.UNDECIDED),
        (IMPROVED_RANGE, 1.2, 1.4, Decision.UNDECIDED),
        (IMPROVED_RANGE, 1.6, 1.8, Decision.FAIL),
        (IMPROVED_RANGE, 0.9, 1.1, Decision.FAIL),
    ],
)
def test_decide_at_edges(expectation: Expectation, lo: float, hi: float, decision: Decision):
    got, reason = expectation.decide(iv(lo, hi))
    assert got is decision
    word = {Decision.PASS: "inside", Decision.FAIL: "outside", Decision.UNDECIDED: "straddles"}[decision]
    assert word in reason


def test_decide_reason_gives_the_numbers():
    _, reason = DEGRADED.decide(iv(0.4, 0.6))
    assert reason == "interval [0.400, 0.600] inside [0.000, 0.75]"
    _, reason = UNAFFECTED.decide(iv(0.0, math.inf))
    assert "inf" in reason and "straddles" in reason


# -- parse ---------------------------------------------------------------------------------


def test_degraded_by_any_amount_is_the_direction_alone():
    """``at_least = 0``: the whole interval below no change, however close to it."""
    any_amount = parse("decode", {"outcome": "degraded", "at_least": 0})
    assert any_amount.describe() == "degraded (any amount)"
    assert any_amount.region == (0.0, 1.0)
    assert any_amount.decide(iv(0.94, 0.96))[0] is Decision.PASS
    assert any_amount.decide(iv(0.97, 1.01))[0] is Decision.UNDECIDED
    assert any_amount.decide(iv(1.01, 1.05))[0] is Decision.FAIL


def test_parse_a_word_uses_the_default_bound():
    assert parse("decode", "degraded") == Expectation("decode", "degraded", DEFAULT_BOUNDS["degraded"])
    assert parse("ram", "unaffected") == Expectation("ram", "unaffected", DEFAULT_BOUNDS["unaffected"])


def test_parse_defaults_override_the_default_bounds():
    assert parse("decode", "degraded", {"degraded": 0.2}).bound == 0.2
    assert parse("decode", "unaffected", {"degraded": 0.2}).bound == DEFAULT_BOUNDS["unaffected"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"outcome": "unaffected", "within": 0.05}, Expectation("decode", "unaffected", 0.05)),
        ({"outcome": "degraded", "at_least": 0.25}, Expectation("decode", "degraded", 0.25)),
        (
            {"outcome": "degraded", "at_least": 0.1, "at_most": 0.3},
            Expectation("decode", "degraded", 0.1, at_most=0.3),
        ),
        ({"outcome": "collapsed"}, Expectation("decode", "collapsed", DEFAULT_BOUNDS["collapsed"])),
        ({"outcome": "improved", "at_least": 1}, Expectation("decode", "improved", 1.0)),
        (
            {"outcome": "improved", "at_least": 0.3, "at_most": 0.5},
            Expectation("decode", "improved", 0.3, at_most=0.5),
        ),
    ],
)
def test_parse_a_table(value, expected):
    got = parse("decode", value)
    assert got == expected
    assert isinstance(got.bound, float)


@pytest.mark.parametrize(
    ("metric", "value", "key", "problem", "expected"),
    [
        ("decode", "worse", "expect.decode", "unknown outcome 'worse'", "one of " + ", ".join(OUTCOMES)),
        ("decode", {"at_least": 0.2}, "expect.decode", "unknown outcome None", "one of unaffected"),
        (
            "decode",
            {"outcome": "degraded", "by": 0.2},
            "expect.decode",
            "unknown key(s) by",
            "only at_least, at_most, outcome, within",
        ),
        (
            "decode",
            {"outcome": "degraded", "within": 0.2},
            "expect.decode",
            "'within' does not go with 'degraded'",
            "at_least = a fraction",
        ),
        (
            "decode",
            {"outcome": "unaffected", "at_least": 0.2},
            "expect.decode",
            "'at_least' does not go with 'unaffected'",
            "within = a fraction",
        ),
        (
            "decode",
            {"outcome": "degraded", "at_least": "25%"},
            "expect.decode.at_least",
            "got '25%'",
            "a number, a fraction such as 0.25",
        ),
        (
            "decode",
            {"outcome": "unaffected", "within": True},
            "expect.decode.within",
            "got True",
            "a number, a fraction such as 0.25",
        ),
        (
            "decode",
            {"outcome": "degraded", "at_least": 0.1, "at_most": False},
            "expect.decode.at_most",
            "got False",
            "a number",
        ),
        (
            "decode",
            {"outcome": "degraded", "at_least": 0.3, "at_most": 0.2},
            "expect.decode",
            "at_most 0.2 is not above the bound 0.3",
            "a fraction in (0.3, 1)",
        ),
        (
            "decode",
            {"outcome": "degraded", "at_least": 0.3, "at_most": 1.0},
            "expect.decode",
            "at_most 1.0 is not above the bound 0.3",
            "a fraction in (0.3, 1)",
        ),
        (
            "decode",
            {"outcome": "unaffected", "at_most": 0.3},
            "expect.decode",
            "at_most given for 'unaffected'",
            "at_most only with degraded or improved",
        ),
        (
            "decode",
            {"outcome": "collapsed", "at_most": 0.9},
            "expect.decode",
            "at_most given for 'collapsed'",
            "at_most only with degraded or improved",
        ),
        (
            "decode",
            {"outcome": "degraded", "at_least": 1.5},
            "expect.decode",
            "bound 1.5 is out of range",
            "a fraction in [0, 1)",
        ),
        (
            "decode",
            {"outcome": "improved", "at_least": -0.1},
            "expect.decode",
            "bound -0.1 is out of range",
            "a fraction in [0, inf)",
        ),
        (
            "decode",
            {"outcome": "unaffected", "within": 0},
            "expect.decode",
            "bound 0.0 is out of range",
            "a fraction in (0, 1)",
        ),
        ("latency", "degraded", "expect.latency", "unknown metric 'latency'", "one of " + ", ".join(METRICS)),
        ("decode", 3, "expect.decode", "got int 3", 'an outcome word ("degraded")'),
    ],
)
def test_parse_errors_name_the_key_and_what_is_expected(metric, value, key, problem, expected):
    with pytest.raises(ExpectationError) as info:
        parse(metric, value)
    exc = info.value
    assert exc.key == key
    assert problem in exc.problem
    assert expected in exc.expected
    assert str(exc).startswith(f"{key}: ")
    assert f"; expected {exc.expected}" in str(exc)


def test_parse_error_uses_the_callers_key():
    with pytest.raises(ExpectationError) as info:
        parse(
            "decode",
            {"outcome": "degraded", "at_least": 0.3, "at_most": 0.2},
            key="conditions.x.expect.decode",
        )
    assert info.value.key == "conditions.x.expect.decode"
    with pytest.raises(ExpectationError) as info:
        parse("decode", {"outcome": "degraded", "at_least": "lots"}, key="conditions.x.expect.decode")
    assert info.value.key == "conditions.x.expect.decode.at_least"


# -- properties ----------------------------------------------------------------------------


@st.composite
def expectations(draw: st.DrawFn) -> Expectation:
    outcome = draw(st.sampled_from(OUTCOMES))
    upper = 5.0 if outcome == "improved" else 0.95
    bound = draw(st.floats(0.01, upper))
    at_most = None
    if outcome in ("degraded", "improved") and draw(st.booleans()):
        at_most = draw(st.floats(bound, upper + 0.04).filter(lambda x: x > bound * 1.001 + 1e-6))
    return Expectation(draw(st.sampled_from(METRICS)), outcome, bound, at_most)


ratios = st.floats(0.0, 8.0, allow_nan=False)


def ordered(a: float, b: float) -> tuple[float, float]:
    return (a, b) if a <= b else (b, a)


@given(expectations(), st.data())
@settings(max_examples=150, deadline=None)
def test_an_interval_inside_the_region_passes(expectation: Expectation, data: st.DataObject):
    lo, hi = expectation.region
    top = min(hi, lo + 10.0)
    inside = st.floats(lo, top, exclude_min=True, exclude_max=True)
    a, b = ordered(data.draw(inside), data.draw(inside))
    assert expectation.decide(iv(a, b))[0] is Decision.PASS


@given(expectations(), st.data())
@settings(max_examples=150, deadline=None)
def test_an_interval_outside_the_region_fails(expectation: Expectation, data: st.DataObject):
    lo, hi = expectation.region
    sides = []
    if lo > 0:
        sides.append(st.floats(0.0, lo, exclude_max=True))
    if math.isfinite(hi):
        sides.append(st.floats(hi, hi + 10.0, exclude_min=True))
    if not sides:  # degraded/collapsed from 0 and improved to infinity always have a side
        raise AssertionError(f"{expectation} has no outside")
    side = data.draw(st.sampled_from(sides))
    a, b = ordered(data.draw(side), data.draw(side))
    assert expectation.decide(iv(a, b))[0] is Decision.FAIL


@given(expectations(), ratios, ratios, st.floats(0.0, 2.0), st.floats(0.0, 2.0), st.booleans())
@settings(max_examples=200, deadline=None)
def test_widening_never_turns_a_non_pass_into_a_pass(
    expectation: Expectation, a: float, b: float, grow_lo: float, grow_hi: float, unbounded: bool
):
    lo, hi = ordered(a, b)
    narrow = iv(lo, hi)
    wide = iv(max(0.0, lo - grow_lo), math.inf if unbounded else hi + grow_hi)
    narrow_decision = expectation.decide(narrow)[0]
    wide_decision = expectation.decide(wide)[0]
    if narrow_decision is not Decision.PASS:  # undecided or fail
        assert wide_decision is not Decision.PASS
    if wide_decision is Decision.PASS:
        assert narrow_decision is Decision.PASS
    if wide_decision is Decision.FAIL:  # what contradicts with more doubt contradicts with less
        assert narrow_decision is Decision.FAIL


@given(expectations(), ratios)
@settings(max_examples=100, deadline=None)
def test_a_point_interval_is_never_undecided(expectation: Expectation, a: float):
    lo, hi = expectation.region
    decision = expectation.decide(iv(a, a))[0]
    assert decision is (Decision.PASS if lo <= a <= hi else Decision.FAIL)
