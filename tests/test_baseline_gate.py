"""The regression gate: false alarms at most at the nominal rate, real regressions caught.

The seeded simulations draw whole baseline sessions and a new session from one distribution
(an unchanged server whose sessions vary by a between-session spread) and count how often the
gate calls the new one regressed. The allowed count is fixed before looking: the one-sided
99.9% binomial upper limit around the nominal 5% (the band is a one-sided 95% bound).
"""

from __future__ import annotations

import itertools
import math
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_ktinterf.baseline.fingerprint import Fingerprint
from pytest_ktinterf.baseline.gate import (
    INCONCLUSIVE,
    NOT_IN_BASELINE,
    NOT_MEASURED_NOW,
    PASS,
    REGRESSED,
    GateCheck,
    band,
    compare_sessions,
    effect_check,
    location_interval,
    throughput_check,
)
from pytest_ktinterf.baseline.store import BaselineFile
from pytest_ktinterf.baseline.student_t import t_95, t_975
from pytest_ktinterf.baseline.thresholds import parse_thresholds, threshold_for
from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.judge.expectations import Decision
from pytest_ktinterf.judge.stats import Interval, paired_ratio_ci, walsh_interval

NOMINAL = 0.05


def binomial_limit(n: int, p: float, alpha: float = 0.001) -> int:
    """The smallest count k with P(X >= k) <= alpha for X ~ Binomial(n, p)."""

    def pmf(k: int) -> float:
        log = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
        return math.exp(log + k * math.log(p) + (n - k) * math.log1p(-p))

    tail, k = 0.0, n + 1
    while k > 0 and tail + pmf(k - 1) <= alpha:
        k -= 1
        tail += pmf(k)
    return k


def test_binomial_limit_matches_the_normal_approximation() -> None:
    # 2000 draws at 5%: mean 100, sd 9.75; 3.09 sd above is about 130.
    assert 125 <= binomial_limit(2000, NOMINAL) <= 135
    assert binomial_limit(10, 0.5, 1 / 1024) == 10


# -- Student t ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("df", "value"),
    [(1, 12.706), (2, 4.303), (3, 3.182), (10, 2.228), (30, 2.042), (40, 2.021), (60, 2.000), (120, 1.980)],
)
def test_t_quantile_known_values(df: int, value: float) -> None:
    assert t_975(df) == pytest.approx(value, abs=6e-4)


@pytest.mark.parametrize(
    ("df", "value"), [(1, 6.314), (2, 2.920), (4, 2.132), (10, 1.812), (30, 1.697), (120, 1.658)]
)
def test_one_sided_t_quantile_known_values(df: int, value: float) -> None:
    assert t_95(df) == pytest.approx(value, abs=6e-4)
    assert t_95(10**6) == pytest.approx(1.64485, abs=1e-4)


def test_t_quantile_falls_smoothly_to_the_normal() -> None:
    values = [t_975(df) for df in range(1, 400)]
    assert all(a > b for a, b in itertools.pairwise(values))
    assert abs(t_975(31) - t_975(30)) < 0.004
    assert t_975(10**6) == pytest.approx(1.95996, abs=1e-4)
    with pytest.raises(ValueError):
        t_975(0)


# -- one session's throughput -----------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0.1, 1e4), min_size=1, max_size=14))
def test_location_interval_is_walsh_on_the_logs(values: list[float]) -> None:
    found = location_interval(values)
    logs = walsh_interval([math.log(v) for v in values])
    assert found.point == pytest.approx(math.exp(logs.point))
    assert found.lo <= found.point <= found.hi
    assert (found.lo, found.hi) == ((0.0, math.inf) if len(values) < 6 else (found.lo, found.hi))
    assert min(values) * (1 - 1e-9) <= found.point <= max(values) * (1 + 1e-9)


def test_location_interval_skips_unusable_values() -> None:
    assert location_interval([10.0, float("nan"), -1.0, 0.0, 10.0]).point == pytest.approx(10.0)
    with pytest.raises(ValueError):
        location_interval([float("nan")])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(1, 100), st.floats(1, 100)), min_size=2, max_size=12))
def test_paired_ratio_ci_is_walsh_on_the_log_ratios(pairs: list[tuple[float, float]]) -> None:
    cond, base = [c for c, _ in pairs], [b for _, b in pairs]
    paired = paired_ratio_ci(cond, base)
    logs = walsh_interval([math.log(c / b) for c, b in pairs])
    assert (paired.point, paired.lo, paired.hi) == (
        math.exp(logs.point),
        math.exp(logs.lo),
        math.exp(logs.hi),
    )


# -- the band -----------------------------------------------------------------------------------


def test_band_is_the_one_sided_prediction_bound_of_the_next_session() -> None:
    points = [math.log(0.95), math.log(1.0), math.log(1.05)]
    m, lo, hi = band(points, [0.001, 0.001, 0.001])
    s = math.sqrt(sum((p - m) ** 2 for p in points) / 2)
    assert m == pytest.approx(sum(points) / 3)
    assert hi - m == pytest.approx(m - lo) == pytest.approx(2.9200 * s * math.sqrt(1 + 1 / 3))


def test_agreeing_sessions_do_not_shrink_the_band_below_their_own_noise() -> None:
    m, lo, _ = band([0.0, 0.0, 0.0], [0.02, 0.02, 0.02])
    assert m - lo == pytest.approx(2.9200 * 0.02 * math.sqrt(1 + 1 / 3))


def test_one_session_uses_its_own_noise_and_the_widest_t() -> None:
    m, lo, _ = band([0.0], [0.01])
    assert m - lo == pytest.approx(6.3138 * 0.01 * math.sqrt(2))
    assert band([0.0], []) == (0.0, -math.inf, math.inf)


# -- decisions ----------------------------------------------------------------------------------


def effect(point: float, half_width: float = 0.01) -> dict[str, Any]:
    """A stored effect with a 95% interval of +-``half_width`` (on the log scale)."""
    return {"point": point, "lo": point * math.exp(-half_width), "hi": point * math.exp(half_width)}


def ratio(point: float, half_width: float = 0.01) -> Interval:
    return Interval(point, point * math.exp(-half_width), point * math.exp(half_width), 0.95)


STEADY = [effect(math.exp(-0.02)), effect(1.0), effect(math.exp(0.02))]  # between-session sd 2%


def test_a_20_percent_drop_beyond_a_2_percent_spread_is_regressed() -> None:
    check = effect_check("cpu_spare decode", "decode", STEADY, 0.10)
    decision, reason = check.decide(ratio(0.8))
    assert decision is Decision.FAIL
    assert check.statuses[decision.value] == REGRESSED
    assert reason.startswith("then +0% (sessions -2%, +0%, +2%) -> now -20% [-21%, -19%]; lower by 20%")
    assert "past the 10% threshold and below the unchanged band" in reason


@settings(max_examples=100, deadline=None)
@given(drop=st.floats(0.2, 0.95), width=st.floats(0.0, 0.02))
def test_any_large_tight_drop_below_a_steady_baseline_is_regressed(drop: float, width: float) -> None:
    check = effect_check("f", "decode", STEADY, 0.10)
    assert check.decide(ratio(1 - drop, width))[0] is Decision.FAIL


def test_past_the_threshold_within_a_wide_band_is_inconclusive() -> None:
    wide = [effect(0.85), effect(1.0), effect(1.15)]
    check = effect_check("f", "decode", wide, 0.10)
    decision, reason = check.decide(ratio(0.85, 0.05))
    assert decision is Decision.UNDECIDED and check.statuses[decision.value] == INCONCLUSIVE
    assert "past the 10% threshold but within what the sessions vary by" in reason
    assert not check.failing(decision)
    strict = effect_check("f", "decode", wide, 0.10, strict=True)
    assert strict.failing(strict.decide(ratio(0.85, 0.05))[0])


def test_a_tiny_significant_drop_within_the_threshold_passes_with_a_note() -> None:
    still = [effect(1.0, 0.005), effect(1.001, 0.005), effect(0.999, 0.005)]
    check = throughput_check("uncontended decode at 1 stream", "decode", [[31.0] * 8], 0.10)
    assert check.decide(location_interval([29.4] * 8))[0] is Decision.PASS
    check = effect_check("f", "decode", still, 0.10)
    decision, reason = check.decide(ratio(0.95, 0.01))
    assert decision is Decision.PASS
    assert reason.endswith("lower by 5%, beyond the sessions' spread, within the 10% threshold")


def test_a_whole_interval_above_the_band_is_improved() -> None:
    decision, reason = effect_check("f", "decode", STEADY, 0.10).decide(ratio(1.3))
    assert decision is Decision.PASS and "improved: higher by 30%" in reason


def test_one_session_says_its_spread_is_unknown() -> None:
    check = effect_check("f", "decode", [effect(1.0)], 0.10)
    assert check.describe().startswith("at most 10% below the baseline's +0% (1 session: between-session")
    assert check.decide(ratio(0.99))[1].endswith("; 1 session: between-session spread unknown")
    unbounded = effect_check("f", "decode", [{"point": 1.0, "lo": 0.0, "hi": math.inf}], 0.10)
    assert unbounded.band == (0.0, math.inf)
    assert unbounded.decide(ratio(0.5))[0] is Decision.UNDECIDED  # a drop, but no spread to judge it by


def test_describe_and_throughput_reasons_read_in_tok_s() -> None:
    sessions = [[31.0, 31.2, 30.9, 31.4, 31.1, 31.3], [30.6, 30.8, 31.0, 30.7, 30.9, 30.5]]
    check = throughput_check("uncontended decode at 1 stream", "decode", sessions, 0.10)
    assert check.unit == "tok/s" and check.kind == "gate"
    assert check.describe().startswith(
        "at most 10% below the baseline's 30.9 tok/s (2 sessions; unchanged band"
    )
    decision, reason = check.decide(Interval(24.9, 24.1, 25.6, 0.95))
    assert decision is Decision.FAIL
    assert reason.startswith("then 30.9 tok/s (sessions 31.1, 30.7) -> now 24.9 tok/s [24.1, 25.6], -20%")
    assert check.statuses == {"pass": "pass", "fail": "regressed", "undecided": "inconclusive"}


@settings(max_examples=200, deadline=None)
@given(
    points=st.lists(st.floats(0.2, 2.0), min_size=1, max_size=5),
    width=st.floats(0.001, 0.2),
    now=st.floats(0.1, 3.0),
    now_width=st.floats(0.0, 0.3),
    lower=st.floats(0.0, 1.0),
    threshold=st.sampled_from([0.0, 0.05, 0.10, 0.25]),
)
def test_decisions_are_monotone_and_never_fail_an_unslowed_session(
    points: list[float], width: float, now: float, now_width: float, lower: float, threshold: float
) -> None:
    check = effect_check("f", "decode", [effect(p, width) for p in points], threshold)
    rank = {Decision.PASS: 0, Decision.UNDECIDED: 1, Decision.FAIL: 2}
    here = check.decide(ratio(now, now_width))[0]
    assert rank[check.decide(ratio(now * (1 - lower), now_width))[0]] >= rank[here]  # lower is never better
    if now >= check.center * (1 - threshold):
        assert here is Decision.PASS


# -- the false-alarm rate -------------------------------------------------------------------


def draw_session(rng: random.Random, level: float, between: float, within: float, trials: int) -> list[float]:
    """One session of an unchanged server: its own level, then trials around it."""
    session_level = level + rng.gauss(0, between)
    return [math.exp(session_level + rng.gauss(0, within)) for _ in range(trials)]


def regressed_count(
    draws: int, sessions: int, between: float, within: float, threshold: float, seed: int
) -> int:
    rng = random.Random(seed)
    count = 0
    for _ in range(draws):
        baseline = [draw_session(rng, 3.4, between, within, 8) for _ in range(sessions)]
        check = throughput_check("f", "decode", baseline, threshold)
        now = location_interval(draw_session(rng, 3.4, between, within, 8))
        count += check.decide(now)[0] is Decision.FAIL
    return count


def test_an_unchanged_server_is_regressed_at_most_at_the_nominal_rate() -> None:
    draws = 2000
    found = regressed_count(draws, sessions=3, between=0.03, within=0.02, threshold=0.10, seed=1)
    assert found < binomial_limit(draws, NOMINAL)


def test_the_band_alone_keeps_the_nominal_rate() -> None:
    """With no threshold the spread test decides alone: still at most 5% false alarms."""
    draws = 2000
    found = regressed_count(draws, sessions=3, between=0.03, within=0.02, threshold=0.0, seed=2)
    assert found < binomial_limit(draws, NOMINAL)


@settings(max_examples=8, deadline=None, derandomize=True)
@given(
    sessions=st.integers(2, 5),
    between=st.floats(0.0, 0.08),
    within=st.floats(0.005, 0.05),
    threshold=st.sampled_from([0.0, 0.05, 0.10]),
)
def test_the_false_alarm_rate_holds_across_spreads(
    sessions: int, between: float, within: float, threshold: float
) -> None:
    draws = 300
    seed = hash((sessions, round(between, 6), round(within, 6), threshold)) & 0xFFFF
    found = regressed_count(draws, sessions, between, within, threshold, seed)
    assert found < binomial_limit(draws, NOMINAL)


# -- thresholds ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, {"*": 0.10}),
        ("", {"*": 0.10}),
        ("10%", {"*": 0.10}),
        ("5%", {"*": 0.05}),
        ("decode:10%,prefill:15%", {"decode": 0.10, "prefill": 0.15, "*": 0.10}),
        ("decode:0.1", {"decode": 0.1, "*": 0.10}),
        ("20%, decode_per_stream : 0%", {"*": 0.20, "decode_per_stream": 0.0}),
    ],
)
def test_parse_thresholds(text: str | None, expected: dict[str, float]) -> None:
    assert parse_thresholds(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "part"),
    [
        ("ten", "'ten'"),
        ("decode:10", "'decode:10'"),
        ("decode:-5%", "'decode:-5%'"),
        ("decode:100%", "'decode:100%'"),
        ("speed:10%", "unknown metric 'speed'"),
        ("decode:10%,decode:5%", "'decode' given twice"),
        ("decode:10%,", "empty entry"),
    ],
)
def test_bad_thresholds_name_the_option_the_part_and_the_fix(text: str, part: str) -> None:
    with pytest.raises(KtInterfError) as caught:
        parse_thresholds(text, option="--kt-baseline-fail")
    assert caught.value.cause.startswith("--kt-baseline-fail: ") and part in caught.value.cause
    assert "decode:10%" in caught.value.fix


def test_threshold_for_falls_back_to_the_default() -> None:
    thresholds = parse_thresholds("decode:5%,20%")
    assert threshold_for(thresholds, "decode") == 0.05
    assert threshold_for(thresholds, "prefill") == 0.20
    assert threshold_for({}, "prefill") == 0.10


# -- comparing whole sessions -------------------------------------------------------------------


def session(effects: dict[str, Any], uncontended: dict[str, Any]) -> dict[str, Any]:
    return {"recorded_at": "t", "server": {}, "unstable": {}, "effects": effects, "uncontended": uncontended}


def test_compare_sessions_judges_shared_figures_and_lists_the_rest() -> None:
    old = [
        session(
            {
                "code::cpu_spare": {"decode": effect(p), "prefill": effect(p)},
                "x.toml::gone": {"decode": effect(1)},
            },
            {"1": {"decode": [31.0 * p + i * 0.1 for i in range(8)]}},
        )
        for p in (0.98, 1.0, 1.02)
    ]
    baseline = BaselineFile(path=Path("b.json"), fingerprint=Fingerprint({}), sessions=old)
    now = session(
        {
            "code::cpu_spare": {"decode": effect(0.7), "prefill": effect(1.0)},
            "x.toml::new": {"decode": effect(1)},
        },
        {"1": {"decode": [31.0 + i * 0.1 for i in range(8)]}, "4": {"decode": [80.0] * 8}},
    )
    results = compare_sessions(baseline, now, parse_thresholds("10%"))
    by_figure = {r.figure: r for r in results}
    assert [r.figure for r in results] == [
        "cpu_spare prefill",
        "cpu_spare decode",
        "x.toml::gone decode",
        "x.toml::new decode",
        "uncontended decode at 1 stream",
        "uncontended decode at 4 streams",
    ]
    assert by_figure["cpu_spare decode"].status == REGRESSED and by_figure["cpu_spare decode"].failed
    assert by_figure["cpu_spare prefill"].status == PASS and not by_figure["cpu_spare prefill"].failed
    assert by_figure["x.toml::gone decode"].status == NOT_MEASURED_NOW
    assert by_figure["x.toml::new decode"].status == NOT_IN_BASELINE
    assert by_figure["x.toml::new decode"].check is None and not by_figure["x.toml::new decode"].failed
    assert by_figure["uncontended decode at 1 stream"].status == PASS
    assert by_figure["uncontended decode at 4 streams"].status == NOT_IN_BASELINE
    assert isinstance(by_figure["cpu_spare decode"].check, GateCheck)
