"""Verdicts: an expectation about a ratio, decided by its whole confidence interval.

A verdict never passes on a point estimate: ``degraded by at least X`` passes only when the
interval's upper end lies below ``1 - X``. The richer vocabulary (unaffected, collapsed,
inconclusive with more trials) grows here in later issues.
"""

from __future__ import annotations

from dataclasses import dataclass

from pytest_ktinterf.stats import Interval


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking one metric against one expectation."""

    metric: str
    expectation: str
    interval: Interval
    passed: bool
    reason: str

    def line(self) -> str:
        status = "PASS" if self.passed else "FAIL"
        return (
            f"{status} {self.metric}: {self.expectation}; measured ratio "
            f"{self.interval} = {self.interval.as_percent_change()} -- {self.reason}"
        )


def expect_degraded(metric: str, interval: Interval, at_least: float) -> Verdict:
    """Pass when the whole interval shows a loss of at least ``at_least`` (0.25 = 25%)."""
    if not 0 < at_least < 1:
        raise ValueError(f"at_least must be in (0, 1), got {at_least}")
    bound = 1 - at_least
    passed = interval.hi < bound
    if passed:
        reason = f"upper bound {interval.hi:.3f} < {bound:.3f}"
    elif interval.lo < bound:
        reason = f"interval straddles {bound:.3f}: undecided, counted as a failure"
    else:
        reason = f"lower bound {interval.lo:.3f} >= {bound:.3f}: not degraded that much"
    return Verdict(metric, f"degraded by at least {at_least:.0%}", interval, passed, reason)
