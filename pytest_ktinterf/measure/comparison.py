"""A comparison's trials and verdicts: what ``measure.compare`` measures and every report reads.

Kept apart from the measuring loop (``compare.py``) so that reports, the baseline store and the
outcome files need only the data, not the machinery that produced it.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.judge.stats import Interval, paired_ratio_ci
from pytest_ktinterf.judge.verdict import Check, Verdict, decided, expect_degraded, judge
from pytest_ktinterf.measure.samples import RoundSample

METRICS = ("prefill", "decode")
PHASES = ("warm_up", "server_switch", "baseline", "actor_start", "condition", "actor_stop")
"""Where a comparison's time goes (``Comparison.time_split``): the one-off warm-up round, switching
servers that take turns, measuring each arm, an actor's start until its pressure is proven, and
its stop with its settling. The report's "Where the time went" table shows them per condition."""
ARMS = ("baseline", "condition")
CANDIDATE = "candidate"  # the same-session A/B comparison's id (experiment/candidate.py), its items'
COMPLETE = "complete"
ABORTED = "aborted"


@dataclass
class Trial:
    """One arm's trial: its first round, any further rounds, the actor's evidence, and the short
    settling round measured before them (recorded, never counted)."""

    arm: str
    index: int
    round: RoundSample
    actor: dict[str, Any] | None = None
    more: list[RoundSample] = field(default_factory=list)
    settling: RoundSample | None = None  # the short round before it (``Probe.warm``), not counted

    def metric(self, name: str) -> float:
        """The median over the trial's rounds (the round's own figure with one round)."""
        values = [r.metric(name) for r in (self.round, *self.more)]
        return values[0] if len(values) == 1 else statistics.median(values)


@dataclass
class Comparison:
    """All trials of one condition against its baseline, and the verdicts drawn from them."""

    label: str
    streams: int
    trials: list[Trial] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    baseline_streams: int | None = None
    expectations: list[Check] = field(default_factory=list)  # expect, report and gate checks
    reference: dict[str, str] = field(default_factory=dict)
    reference_effect: dict[str, float] = field(default_factory=dict)  # the report's own sizes
    id: str | None = None
    experiment: str | None = None
    status: str = COMPLETE
    reason: str | None = None  # why it was aborted: the error's one line
    error: str | None = None  # the error's type
    log_tail: str | None = None  # the server's state and log tail when it was aborted
    unpaired: list[Trial] = field(default_factory=list)  # trials of the pair the error cut short
    server_starts: list[dict[str, Any]] = field(default_factory=list)  # switches of servers taking turns
    confidence: float = 0.95  # each look's level: the design's share of the 95% (measure/design.py)
    time_split: dict[str, float] = field(default_factory=dict)  # seconds per phase (PHASES)
    max_tokens: int | None = None  # the condition's own output length (None: the session's workload)

    @contextlib.contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        """Add the time the block takes to ``phase``, also when it raises (its time was spent)."""
        started = time.monotonic()
        try:
            yield
        finally:
            self.add_time(phase, time.monotonic() - started)

    def add_time(self, phase: str, seconds: float) -> None:
        self.time_split[phase] = self.time_split.get(phase, 0.0) + seconds

    @property
    def aborted(self) -> bool:
        return self.status == ABORTED

    def abort(self, exc: BaseException, log_tail: str | None = None) -> None:
        """Mark the comparison stopped by ``exc``: finished pairs stay, a half pair moves aside."""
        self.status = ABORTED
        self.reason = error_line(exc)
        self.error = type(exc).__name__
        self.log_tail = log_tail
        paired, kept, seen = self.pairs, [], {"baseline": 0, "condition": 0}
        for trial in self.trials:
            seen[trial.arm] = seen.get(trial.arm, 0) + 1
            (kept if seen[trial.arm] <= paired else self.unpaired).append(trial)
        self.trials = kept

    def values(self, arm: str, metric: str) -> list[float]:
        return [t.metric(metric) for t in self.trials if t.arm == arm]

    @property
    def pairs(self) -> int:
        return min(len(self.values("baseline", "prefill")), len(self.values("condition", "prefill")))

    def measured(self, metric: str) -> bool:
        """Whether the metric was measured in every trial (``vram`` is not without a GPU)."""
        return all(math.isfinite(v) for arm in ("baseline", "condition") for v in self.values(arm, metric))

    def ratio(self, metric: str) -> Interval:
        """condition / baseline from the interleaved pairs, with its exact interval at ``confidence``."""
        n = self.pairs
        return paired_ratio_ci(
            self.values("condition", metric)[:n],
            self.values("baseline", metric)[:n],
            confidence=self.confidence,
        )

    def _recorded_ratio(self, metric: str) -> Interval | None:
        """The ratio where it exists (two usable pairs at least; an aborted comparison may have fewer)."""
        if not self.measured(metric):
            return None
        try:
            return self.ratio(metric)
        except ValueError:
            return None

    def decided(self) -> bool:
        """Whether every check that can fail is decided at the pairs measured so far.

        The report's cells never fail, so they never buy pairs: they are judged at whatever
        count the claims and the gate needed.
        """
        return all(
            decided(e, self.ratio(e.metric))
            for e in self.expectations
            if e.kind != "report" and self.measured(e.metric)
        )

    def judge(self) -> list[Verdict]:
        """Final verdicts for every expectation whose metric was measured."""
        self.verdicts = [
            judge(e, self.ratio(e.metric), pairs=self.pairs)
            for e in self.expectations
            if self.measured(e.metric)
        ]
        return self.verdicts

    def expect_degraded(self, metric: str, at_least: float) -> Verdict:
        verdict = expect_degraded(metric, self.ratio(metric), at_least, pairs=self.pairs)
        self.verdicts.append(verdict)
        return verdict

    def progress_figures(self) -> str:
        """The running effect per metric with its interval so far, for the live progress line.

        Before the design's first look there is no exact interval at its level yet, and the line
        says so rather than showing an unbounded one.
        """
        figures = []
        for metric in METRICS:
            if not self.measured(metric):
                continue
            try:
                r = self.ratio(metric)
            except ValueError:  # one pair: its own change, no interval
                b, c = (self.values(arm, metric)[-1] for arm in ARMS)
                figures.append(f"{metric} {100 * (c / b - 1):+.0f}%" if b > 0 else f"{metric} -")
                continue
            if r.bounded:
                figures.append(f"{metric} {r.as_percent_change()}")
            else:
                level = f"{100 * r.confidence:.3g}%"
                figures.append(f"{metric} {100 * (r.point - 1):+.0f}% (no {level} interval yet)")
        return ", ".join(figures)

    def failures(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.fails]

    def to_record(self) -> dict[str, Any]:
        metrics = list(dict.fromkeys([*METRICS, *(e.metric for e in self.expectations)]))
        aborted = (
            {
                "reason": self.reason,
                "error": self.error,
                "log_tail": self.log_tail,
                "unpaired_trials": [_trial_record(t) for t in self.unpaired],
            }
            if self.aborted
            else {}
        )
        return {
            "label": self.label,
            "id": self.id,
            "experiment": self.experiment,
            "streams": self.streams,
            "baseline_streams": self.baseline_streams or self.streams,
            **({"max_tokens": self.max_tokens} if self.max_tokens is not None else {}),
            "pairs": self.pairs,
            "status": self.status,
            **aborted,
            "reference": self.reference,
            **({"reference_effect": self.reference_effect} if self.reference_effect else {}),
            "expected": {e.metric: e.describe() for e in self.expectations if e.kind == "expect"},
            # the ratios each hard claim accepts [lo, hi] (hi None: no upper end), for the plots
            "claimed": {
                e.metric: [r[0], r[1] if math.isfinite(r[1]) else None]
                for e in self.expectations
                if e.kind == "expect" and (r := getattr(e, "region", None)) is not None
            },
            "ratios": {
                m: {"point": r.point, "lo": r.lo, "hi": r.hi, "confidence": r.confidence}
                for m in metrics
                for r in [self._recorded_ratio(m)]
                if r is not None
            },
            "verdicts": [
                {
                    "metric": v.metric,
                    "expectation": v.expectation,
                    "status": v.status,
                    "kind": v.kind,
                    "word": v.word,
                    "fails": v.fails,
                    "passed": v.passed,
                    "reason": v.reason,
                    "pairs": v.pairs,
                }
                for v in self.verdicts
            ],
            "trials": [_trial_record(t) for t in self.trials],
            "time_split": {phase: round(s, 3) for phase, s in self.time_split.items()},
            **({"server_starts": self.server_starts} if self.server_starts else {}),
        }


def _trial_record(t: Trial) -> dict[str, Any]:
    return {
        "arm": t.arm,
        "index": t.index,
        "actor": t.actor,
        **t.round.to_record(),
        **({"more_rounds": [r.to_record() for r in t.more]} if t.more else {}),
        **({"settling_round": t.settling.to_record()} if t.settling is not None else {}),
    }


def error_line(exc: BaseException) -> str:
    """The error in one line: a plugin error's cause and fix, else its type and first line."""
    if isinstance(exc, KtInterfError):
        return exc.line()
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def partial_comparison(exc: BaseException) -> Comparison | None:
    """The aborted comparison an error carries (set by :func:`compare`), or None."""
    found = getattr(exc, "comparison", None)
    return found if isinstance(found, Comparison) else None
