"""Statistics and verdicts: properties that must hold for any data."""

from __future__ import annotations

import json
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_ktinterf.experiment.outcomes import Outcome, properties
from pytest_ktinterf.judge.expectations import Expectation
from pytest_ktinterf.judge.stats import Interval, median_ratio_ci, signed_rank_depth
from pytest_ktinterf.judge.verdict import FAIL, INCONCLUSIVE, PASS, decided, expect_degraded, judge
from pytest_ktinterf.measure.compare import Comparison, Design, Trial
from pytest_ktinterf.measure.design import TooFewPairs

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
    clear = expect_degraded("decode", Interval(0.5, 0.45, 0.6, 0.95), 0.25, pairs=8)
    assert clear.status == PASS and clear.passed
    assert (clear.metric, clear.expectation, clear.pairs) == ("decode", "degraded by at least 25%", 8)
    straddles = expect_degraded("decode", Interval(0.7, 0.6, 0.8, 0.95), 0.25)
    assert straddles.status == INCONCLUSIVE and not straddles.passed
    assert "raise max_pairs" in straddles.reason  # an inconclusive verdict says how to decide it
    mild = expect_degraded("decode", Interval(0.9, 0.85, 0.95, 0.95), 0.25)
    assert mild.status == FAIL and not mild.passed
    unbounded = expect_degraded("decode", Interval(0.5, 0.0, math.inf, 0.95), 0.25)
    assert unbounded.status == INCONCLUSIVE  # too few pairs never pass


def test_verdict_line_names_status_metric_and_interval():
    line = expect_degraded("prefill", Interval(0.5, 0.45, 0.6, 0.95), 0.25, pairs=6).line()
    assert line.startswith("PASS prefill: degraded by at least 25%; measured ratio 0.500 [0.450, 0.600]")
    assert "-50% [-55%, -40%] over 6 pairs" in line


@pytest.mark.parametrize("at_least", [0, 1, -0.2, 1.5])
def test_expect_degraded_rejects_bounds_outside_zero_to_one(at_least: float):
    with pytest.raises(ValueError, match="at_least must be in"):
        expect_degraded("decode", Interval(0.5, 0.45, 0.6, 0.95), at_least)


def test_judge_explains_inconclusive_only_when_final():
    expectation = Expectation("decode", "unaffected", 0.15)
    straddling = Interval(0.9, 0.8, 1.0, 0.95)
    final = judge(expectation, straddling)
    early = judge(expectation, straddling, final=False)
    assert final.status == early.status == INCONCLUSIVE
    assert "more pairs" in final.reason and "more pairs" not in early.reason
    assert not decided(expectation, straddling)
    assert decided(expectation, Interval(1.0, 0.95, 1.05, 0.95))
    assert decided(expectation, Interval(0.5, 0.4, 0.6, 0.95))


# -- the sequential design and a comparison's verdicts -----------------------------------


@pytest.mark.parametrize(
    ("design", "looks"),
    [
        (Design(), [8, 11, 14]),
        (Design(6, 6, 4), [6]),
        (Design(7, 12, 4), [7, 11, 12]),
        (Design(8, 20, 3), [8, 11, 14, 17, 20]),
    ],
)
def test_design_looks(design: Design, looks: list[int]):
    assert design.looks() == looks


@pytest.mark.parametrize(
    ("design", "level"),
    [(Design(6, 6), 0.95), (Design(7, 10, 3), 0.975), (Design(), 1 - 0.05 / 3), (Design(8, 20, 3), 0.99)],
)
def test_each_look_is_judged_at_its_share_of_the_95_percent(design: Design, level: float):
    """Bonferroni over the looks: K looks at 1 - 0.05/K each keep the overall false alarms at 5%."""
    assert design.confidence == pytest.approx(level)
    assert len(design.looks()) * (1 - design.confidence) == pytest.approx(0.05)


@given(min_pairs=st.integers(1, 40), span=st.integers(0, 40), step=st.integers(1, 10), cap=st.integers(6, 80))
def test_every_design_and_cap_can_bound_its_first_look(min_pairs: int, span: int, step: int, cap: int):
    """A design either bounds an interval at its first look's level or is refused with the count it needs;
    a cap (``--kt-max-pairs``) always gives a design that can."""
    try:
        design = Design(min_pairs, min_pairs + span, step)
    except TooFewPairs as refused:
        assert refused.needed > min_pairs and "raise min_pairs" in str(refused)
        design = Design()
    for chosen in (design, design.capped(cap)):
        assert signed_rank_depth(chosen.min_pairs, chosen.confidence) > 0
        assert chosen.looks()[-1] == chosen.max_pairs
    assert design.capped(cap).max_pairs == cap


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_pairs": 5, "max_pairs": 5}, "1 looks are each judged at 95%, which needs at least 6 pairs"),
        ({"min_pairs": 6}, "4 looks are each judged at 98.8%, which needs at least 8 pairs"),
        ({"min_pairs": 8, "max_pairs": 7}, "below min_pairs"),
        ({"step": 0}, "must be at least 1"),
        ({"rounds": 0}, "rounds=0 must be at least 1"),
    ],
)
def test_design_rejects_impossible_plans(kwargs: dict[str, int], message: str):
    with pytest.raises(ValueError, match=message):
        Design(**kwargs)


def test_max_pairs_caps_a_design_and_min_pairs_follows_it_down():
    design = Design(min_pairs=7, max_pairs=10, step=4)
    assert design.capped(None) is design
    # 7 looks at 99.3% each need 9 pairs at the first: the first look moves up
    assert design.capped(30).looks() == [9, 13, 17, 21, 25, 29, 30]
    assert Design(min_pairs=8, max_pairs=14).capped(6) == Design(min_pairs=6, max_pairs=6)


class _Round:
    """Stands in for a RoundSample: only ``metric`` is read by a comparison's statistics."""

    def __init__(self, **figures: float) -> None:
        self.figures = figures

    def metric(self, name: str) -> float:
        return self.figures.get(name, math.nan)


def _comparison(ratio: float, pairs: int, expectations: list[Expectation]) -> Comparison:
    rng = random.Random(pairs)
    result = Comparison(label="test", streams=1, expectations=expectations)
    for i in range(pairs):
        level = rng.uniform(80, 120)
        noise = 1 + rng.uniform(-0.02, 0.02)
        result.trials.append(Trial("baseline", i, _Round(prefill=level, decode=level / 4)))  # type: ignore[arg-type]
        condition = _Round(prefill=level * ratio * noise, decode=level / 4 * noise)
        result.trials.append(Trial("condition", i, condition))  # type: ignore[arg-type]
    return result


def test_comparison_decides_and_judges_each_measured_expectation():
    expectations = [
        Expectation("prefill", "degraded", 0.25),
        Expectation("decode", "unaffected", 0.15),
        Expectation("vram", "unaffected", 0.15),  # not measured (no GPU): no verdict
    ]
    early = _comparison(0.5, 5, expectations)
    assert early.pairs == 5
    assert not early.decided()  # 5 pairs: the interval is unbounded
    result = _comparison(0.5, 6, expectations)
    assert result.decided()
    verdicts = result.judge()
    assert [(v.metric, v.status) for v in verdicts] == [("prefill", PASS), ("decode", PASS)]
    assert all(v.pairs == 6 for v in verdicts)
    assert result.failures() == []
    wrong = _comparison(1.0, 6, [Expectation("prefill", "degraded", 0.25)])
    assert [v.status for v in wrong.judge()] == [FAIL]
    assert wrong.failures() == wrong.verdicts


def test_a_trial_of_several_rounds_is_their_median():
    trial = Trial("baseline", 0, _Round(prefill=100.0), more=[_Round(prefill=50.0), _Round(prefill=90.0)])  # type: ignore[arg-type, list-item]
    assert trial.metric("prefill") == 90.0
    assert Trial("baseline", 0, _Round(prefill=100.0)).metric("prefill") == 100.0  # type: ignore[arg-type]


def test_each_metric_item_carries_its_effect_interval_and_verdicts_as_junit_properties():
    result = _comparison(0.5, 6, [Expectation("prefill", "degraded", 0.25)])
    result.id = "cpu_server"
    result.judge()
    found = properties(result)
    assert set(found) == {"prefill", "decode"}  # decode measured without a claim: its effect still
    prefill = dict(found["prefill"])
    assert prefill["ktinterf_condition"] == "cpu_server" and prefill["ktinterf_pairs"] == "6"
    assert prefill["ktinterf_effect"] == result.ratio("prefill").as_percent_change()
    assert (
        float(prefill["ktinterf_ratio_lo"])
        <= float(prefill["ktinterf_ratio"])
        <= float(prefill["ktinterf_ratio_hi"])
    )
    assert prefill["ktinterf_expect"] == "pass" and "ktinterf_expect" not in dict(found["decode"])
    outcome = Outcome.of(result, worker="")
    assert Outcome.from_json(json.loads(json.dumps(outcome.to_json()))).properties == outcome.properties
