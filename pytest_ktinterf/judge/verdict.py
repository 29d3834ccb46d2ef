"""Verdicts: a check on a ratio, decided by its whole confidence interval.

A verdict never passes on a point estimate. Its status is ``pass``, ``fail`` (the interval
contradicts the check) or ``inconclusive`` (still straddling a boundary when the trial budget
was spent). Three kinds of check share this machinery and differ only in what a non-pass does:

* ``expect`` -- a hard claim that holds on any machine: anything but pass fails the test;
* ``report`` -- the seed report's matrix cell, shown beside this machine's measurement as
  *agrees* / *differs* / *undecided*; it never fails (the report describes another machine);
* ``gate`` -- this machine's baseline (``baseline/gate.py``): *regressed* fails; *inconclusive*
  fails only when the gate is strict (``--kt-baseline-strict``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pytest_ktinterf.judge.expectations import Decision, Expectation
from pytest_ktinterf.judge.stats import Interval

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
KINDS = ("expect", "report", "gate")
# What each kind calls its three outcomes, for people (the record keeps both).
WORDS = {
    "expect": {PASS: "pass", FAIL: "fail", INCONCLUSIVE: "inconclusive"},
    "report": {PASS: "agrees", FAIL: "differs", INCONCLUSIVE: "undecided"},
    "gate": {PASS: "pass", FAIL: "regressed", INCONCLUSIVE: "inconclusive"},
}


class Check(Protocol):
    """Anything a comparison can judge: an :class:`Expectation` or a baseline gate's check."""

    @property
    def metric(self) -> str: ...

    @property
    def kind(self) -> str: ...

    def describe(self) -> str: ...

    def decide(self, interval: Interval) -> tuple[Decision, str]: ...


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking one metric against one check."""

    metric: str
    expectation: str
    interval: Interval
    status: str
    reason: str
    pairs: int = 0
    kind: str = "expect"
    strict: bool = True  # a gate's inconclusive fails only when strict

    @property
    def passed(self) -> bool:
        return self.status == PASS

    @property
    def word(self) -> str:
        """``agrees``, ``regressed``...: the status in the words of the check's kind."""
        return WORDS.get(self.kind, WORDS["expect"]).get(self.status, self.status)

    @property
    def fails(self) -> bool:
        """Whether this verdict fails the test (see the module docstring)."""
        if self.kind == "report" or self.status == PASS:
            return False
        return not (self.kind == "gate" and self.status == INCONCLUSIVE and not self.strict)

    def line(self) -> str:
        if self.kind == "gate":  # its interval may be tok/s, not a ratio: the reason has the numbers
            return f"GATE {self.word.upper()} {self.metric}: {self.expectation} -- {self.reason}"
        prefix = "REPORT SAYS " if self.kind == "report" else ""
        return (
            f"{prefix}{self.word.upper()} {self.metric}: {self.expectation}; measured ratio "
            f"{self.interval} = {self.interval.as_percent_change()} over {self.pairs} pairs -- {self.reason}"
        )


def judge(check: Check, interval: Interval, *, pairs: int = 0, final: bool = True) -> Verdict:
    """The verdict of one look; an undecided look is ``inconclusive`` when ``final``.

    Not final, an undecided verdict is returned as ``inconclusive`` too: callers that may still
    add trials ask :func:`decided` first.
    """
    decision, reason = check.decide(interval)
    kind = getattr(check, "kind", "expect")
    if decision is Decision.PASS:
        status = PASS
    elif decision is Decision.FAIL:
        status = FAIL
    else:
        status = INCONCLUSIVE
        if final and kind == "expect":
            reason += (
                ": more pairs might decide it (raise max_pairs), or the bound is too tight for this noise"
            )
    strict = bool(getattr(check, "strict", True))
    return Verdict(check.metric, check.describe(), interval, status, reason, pairs, kind, strict)


def decided(check: Check, interval: Interval) -> bool:
    return check.decide(interval)[0] is not Decision.UNDECIDED


def expect_degraded(metric: str, interval: Interval, at_least: float, *, pairs: int = 0) -> Verdict:
    """Pass when the whole interval shows a loss of at least ``at_least`` (0.25 = 25%)."""
    if not 0 < at_least < 1:
        raise ValueError(f"at_least must be in (0, 1), got {at_least}")
    return judge(Expectation(metric, "degraded", at_least), interval, pairs=pairs)
