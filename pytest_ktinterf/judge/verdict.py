"""Verdicts: an expectation about a ratio, decided by its whole confidence interval.

A verdict never passes on a point estimate. Its status is ``pass``, ``fail`` (the interval
contradicts the expectation) or ``inconclusive`` (still straddling a boundary when the trial
budget was spent), and only ``pass`` passes.
"""

from __future__ import annotations

from dataclasses import dataclass

from pytest_ktinterf.judge.expectations import Decision, Expectation
from pytest_ktinterf.judge.stats import Interval

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking one metric against one expectation."""

    metric: str
    expectation: str
    interval: Interval
    status: str
    reason: str
    pairs: int = 0

    @property
    def passed(self) -> bool:
        return self.status == PASS

    def line(self) -> str:
        return (
            f"{self.status.upper()} {self.metric}: {self.expectation}; measured ratio "
            f"{self.interval} = {self.interval.as_percent_change()} over {self.pairs} pairs -- {self.reason}"
        )


def judge(expectation: Expectation, interval: Interval, *, pairs: int = 0, final: bool = True) -> Verdict:
    """The verdict of one look; an undecided look is ``inconclusive`` when ``final``.

    Not final, an undecided verdict is returned as ``inconclusive`` too: callers that may still
    add trials ask :func:`decided` first.
    """
    decision, reason = expectation.decide(interval)
    if decision is Decision.PASS:
        status = PASS
    elif decision is Decision.FAIL:
        status = FAIL
    else:
        status = INCONCLUSIVE
        if final:
            reason += (
                ": more pairs might decide it (raise max_pairs), or the bound is too tight for this noise"
            )
    return Verdict(expectation.metric, expectation.describe(), interval, status, reason, pairs)


def decided(expectation: Expectation, interval: Interval) -> bool:
    return expectation.decide(interval)[0] is not Decision.UNDECIDED


def expect_degraded(metric: str, interval: Interval, at_least: float, *, pairs: int = 0) -> Verdict:
    """Pass when the whole interval shows a loss of at least ``at_least`` (0.25 = 25%)."""
    if not 0 < at_least < 1:
        raise ValueError(f"at_least must be in (0, 1), got {at_least}")
    return judge(Expectation(metric, "degraded", at_least), interval, pairs=pairs)
