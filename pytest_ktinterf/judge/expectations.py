"""The expectation vocabulary: what a condition should do to a metric, and how an interval decides it.

Four outcomes, each a region of the condition/baseline ratio:

=============  ==========================  =============================================
outcome        passes when the interval    default bound (from the seed report)
=============  ==========================  =============================================
unaffected     lies inside [1-t, 1+t]      t = 15%: its "no" cells moved under 10%
                                           (decode 13 -> 12.4 or 12.5)
degraded       lies below 1-x              x = 10%: its mildest "yes" is prefill
                                           55 -> 46 (-16%)
collapsed      lies below 1-y              y = 60%: overflow took decode 13 -> 4 (-69%)
                                           and prefill 55 -> 5 (-91%)
improved       lies above 1+x              x = 10%
=============  ==========================  =============================================

``degraded`` and ``improved`` take an optional ``at_most`` (the report's "4 streams raise
aggregate throughput by 30-50%" is ``improved``, at least 30%, at most 50%).

Each look at the data gives one of three decisions: *pass* (the whole interval inside the
region), *fail* (the whole interval outside it: the data contradict the expectation), or
*undecided* (the interval straddles a boundary). Undecided asks for more trials; when the
budget is spent it becomes *inconclusive*, which fails the test: a verdict never passes by
default.

Metrics are ``prefill`` and ``decode`` (aggregate tokens/s of a round), their
``_per_stream`` medians, and the resource figures ``ram`` (host RAM used, peak) and ``vram``.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any

from pytest_ktinterf.judge.stats import Interval

OUTCOMES = ("unaffected", "degraded", "collapsed", "improved")
METRICS = ("prefill", "decode", "prefill_per_stream", "decode_per_stream", "ram", "vram")
DEFAULT_BOUNDS = {"unaffected": 0.15, "degraded": 0.10, "collapsed": 0.60, "improved": 0.10}
# The report's matrix words, for the table printed beside the measurement.
REPORT_WORDS = {"unaffected": "no", "degraded": "yes", "collapsed": "yes (collapse)", "improved": "better"}


class ExpectationError(ValueError):
    """An expectation that cannot be understood; ``key`` names where, ``expected`` what is allowed."""

    def __init__(self, key: str, problem: str, expected: str) -> None:
        super().__init__(f"{key}: {problem}; expected {expected}")
        self.key = key
        self.problem = problem
        self.expected = expected


class Decision(enum.Enum):
    PASS = "pass"
    FAIL = "fail"
    UNDECIDED = "undecided"


@dataclass(frozen=True)
class Expectation:
    """One metric's expected outcome with its bound (a fraction: 0.25 = 25%)."""

    metric: str
    outcome: str
    bound: float
    at_most: float | None = None
    kind: str = "expect"  # "expect": a hard claim; "report": the report's cell, shown, never failing

    def __post_init__(self) -> None:
        key = f"expect.{self.metric}"
        if self.metric not in METRICS:
            raise ExpectationError(key, f"unknown metric {self.metric!r}", f"one of {', '.join(METRICS)}")
        if self.outcome not in OUTCOMES:
            raise ExpectationError(key, f"unknown outcome {self.outcome!r}", f"one of {', '.join(OUTCOMES)}")
        upper = math.inf if self.outcome == "improved" else 1.0
        # degraded/improved by at least 0: the direction alone (the whole interval on one side of
        # no change), the report's own claim where a magnitude would be a guess.
        directional = self.outcome in ("degraded", "improved")
        in_range = isinstance(self.bound, int | float) and self.bound < upper
        if not (in_range and (self.bound >= 0 if directional else self.bound > 0)):
            opening = "[0" if directional else "(0"
            raise ExpectationError(
                key,
                f"bound {self.bound!r} is out of range",
                f"a fraction in {opening}, {upper:g}), e.g. 0.25 for 25%",
            )
        if self.at_most is not None:
            if self.outcome not in ("degraded", "improved"):
                raise ExpectationError(
                    key, f"at_most given for {self.outcome!r}", "at_most only with degraded or improved"
                )
            if not self.bound < self.at_most < upper:
                raise ExpectationError(
                    key,
                    f"at_most {self.at_most!r} is not above the bound {self.bound!r}",
                    f"a fraction in ({self.bound:g}, {upper:g})",
                )

    @property
    def region(self) -> tuple[float, float]:
        """The ratios (condition / baseline) this expectation accepts."""
        b = self.bound
        if self.outcome == "unaffected":
            return 1 - b, 1 + b
        if self.outcome in ("degraded", "collapsed"):
            return (0.0 if self.at_most is None else 1 - self.at_most), 1 - b
        return 1 + b, (math.inf if self.at_most is None else 1 + self.at_most)

    def describe(self) -> str:
        """``degraded by at least 25%``: the words used in reports and verdicts."""
        if self.outcome == "unaffected":
            return f"unaffected within {self.bound:.0%}"
        text = (
            f"{self.outcome} by at least {self.bound:.0%}" if self.bound else f"{self.outcome} (any amount)"
        )
        return text if self.at_most is None else f"{text} and at most {self.at_most:.0%}"

    def decide(self, interval: Interval) -> tuple[Decision, str]:
        """Pass, fail or undecided from the whole interval, with the reason in numbers."""
        lo, hi = self.region
        if lo <= interval.lo and interval.hi <= hi:
            return (
                Decision.PASS,
                f"interval [{interval.lo:.3f}, {interval.hi:.3f}] inside [{lo:.3f}, {hi:.3g}]",
            )
        if interval.hi < lo or interval.lo > hi:
            return (
                Decision.FAIL,
                f"interval [{interval.lo:.3f}, {interval.hi:.3f}] outside [{lo:.3f}, {hi:.3g}]",
            )
        return (
            Decision.UNDECIDED,
            f"interval [{interval.lo:.3f}, {interval.hi:.3g}] straddles the edge of [{lo:.3f}, {hi:.3g}]",
        )


def parse(
    metric: str, value: Any, defaults: dict[str, float] | None = None, *, key: str = "", kind: str = "expect"
) -> Expectation:
    """An expectation from a file or a marker: ``"degraded"`` or ``{outcome = "degraded", at_least = 0.25}``.

    Bounds are fractions; ``within`` goes with ``unaffected`` and ``at_least`` with the others.
    """
    key = key or f"expect.{metric}"
    bounds = {**DEFAULT_BOUNDS, **(defaults or {})}
    if isinstance(value, str):
        value = {"outcome": value}
    if not isinstance(value, dict):
        raise ExpectationError(
            key,
            f"got {type(value).__name__} {value!r}",
            'an outcome word ("degraded") or a table {outcome = "degraded", at_least = 0.25}',
        )
    allowed = {"outcome", "within", "at_least", "at_most"}
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ExpectationError(
            key, f"unknown key(s) {', '.join(unknown)}", f"only {', '.join(sorted(allowed))}"
        )
    outcome = value.get("outcome")
    if outcome not in OUTCOMES:
        raise ExpectationError(key, f"unknown outcome {outcome!r}", f"one of {', '.join(OUTCOMES)}")
    size_key = "within" if outcome == "unaffected" else "at_least"
    wrong = "at_least" if outcome == "unaffected" else "within"
    if wrong in value:
        raise ExpectationError(key, f"{wrong!r} does not go with {outcome!r}", f"{size_key} = a fraction")
    bound = value.get(size_key, bounds[outcome])
    at_most = value.get("at_most")
    for name, number in ((size_key, bound), ("at_most", at_most)):
        if number is not None and (isinstance(number, bool) or not isinstance(number, int | float)):
            raise ExpectationError(f"{key}.{name}", f"got {number!r}", "a number, a fraction such as 0.25")
    try:
        return Expectation(metric, outcome, float(bound), None if at_most is None else float(at_most), kind)
    except ExpectationError as exc:
        raise ExpectationError(key, exc.problem, exc.expected) from None
