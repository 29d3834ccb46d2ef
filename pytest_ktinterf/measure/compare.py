"""The trial design: baseline and condition measured alternately (A B A B ...), then compared.

Interleaving spreads slow drift (thermal state, page cache, background jobs) over both arms
instead of letting it masquerade as an effect, and each pair (baseline i, condition i) is
compared as a pair. Each condition trial runs inside the actor's established-pressure window,
and the actor must still be at full strength when the trial ends; otherwise the trial is
refused rather than silently diluting the result.

The design is sequential: after ``min_pairs`` pairs the expectations are judged; any that is
still undecided (its interval straddles a boundary) earns ``step`` more pairs, up to
``max_pairs``, after which it is *inconclusive*. An interference test therefore costs little
when the effect is clear and more only when it has to.

Nothing measured is lost: a comparison stopped part-way (the server died, an actor refused, a
request failed) is marked ``aborted`` with the error's line and the server's log tail, keeps its
finished pairs, and rides on the error (``partial_comparison``) so the report records it while
the error still fails the test.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_ktinterf.actors.base import Actor
from pytest_ktinterf.errors import KtInterfError, ServerError
from pytest_ktinterf.judge.stats import Interval, paired_ratio_ci
from pytest_ktinterf.judge.verdict import Check, Verdict, decided, expect_degraded, judge
from pytest_ktinterf.measure.monitor import ProcessSource, ResourceMonitor
from pytest_ktinterf.measure.probe import Probe
from pytest_ktinterf.measure.samples import RoundSample

Condition = Callable[[], contextlib.AbstractContextManager[Actor | None]]
METRICS = ("prefill", "decode")
COMPLETE = "complete"
ABORTED = "aborted"


@dataclass(frozen=True)
class Design:
    """How many interleaved pairs: ``min_pairs``, then ``step`` more while undecided, up to ``max_pairs``.

    6 pairs is the fewest for which an exact 95% interval exists (see ``stats.paired_ratio_ci``).
    Each trial is the median of ``rounds`` back-to-back rounds: single prefills of a short prompt
    vary by +-20% on a small VM (measurement note 7), and a few rounds per trial cost less than
    the many more pairs (each with an actor start and stop) that the same precision would need.
    """

    min_pairs: int = 6
    max_pairs: int = 14
    step: int = 4
    rounds: int = 1

    def __post_init__(self) -> None:
        if self.min_pairs < 6:
            raise ValueError(f"min_pairs={self.min_pairs}: at least 6 pairs are needed for a 95% interval")
        if self.max_pairs < self.min_pairs:
            raise ValueError(f"max_pairs={self.max_pairs} is below min_pairs={self.min_pairs}")
        if self.step < 1:
            raise ValueError(f"step={self.step} must be at least 1")
        if self.rounds < 1:
            raise ValueError(f"rounds={self.rounds} must be at least 1")

    def capped(self, max_pairs: int | None) -> Design:
        """This design with ``--kt-max-pairs`` applied (None: unchanged); min_pairs follows it down."""
        if max_pairs is None:
            return self
        return dataclasses.replace(self, min_pairs=min(self.min_pairs, max_pairs), max_pairs=max_pairs)

    def looks(self) -> list[int]:
        """The pair counts at which expectations are judged."""
        counts = list(range(self.min_pairs, self.max_pairs, self.step))
        return [*counts, self.max_pairs]


@dataclass
class Trial:
    """One arm's trial: its first round, any further rounds, and the actor's evidence."""

    arm: str
    index: int
    round: RoundSample
    actor: dict[str, Any] | None = None
    more: list[RoundSample] = field(default_factory=list)

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
        """condition / baseline from the interleaved pairs, with its exact 95% interval."""
        n = self.pairs
        return paired_ratio_ci(self.values("condition", metric)[:n], self.values("baseline", metric)[:n])

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
        }


def _trial_record(t: Trial) -> dict[str, Any]:
    return {
        "arm": t.arm,
        "index": t.index,
        "actor": t.actor,
        **t.round.to_record(),
        **({"more_rounds": [r.to_record() for r in t.more]} if t.more else {}),
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


def _carry(exc: BaseException, result: Comparison, log_tail: Callable[[], str] | None) -> None:
    """Mark ``result`` aborted by ``exc`` and hang it (and, for server errors, the log tail) on ``exc``."""
    tail = None
    if log_tail is not None:
        try:
            tail = log_tail()
        except Exception as read_error:  # evidence must never replace the error it explains
            tail = f"(the server's log tail could not be read: {error_line(read_error)})"
    result.abort(exc, tail)
    if isinstance(exc, ServerError) and tail and tail not in exc.detail:
        exc.add_detail(tail)
    with contextlib.suppress(AttributeError, TypeError):  # a few built-in exceptions take no attributes
        exc.comparison = result  # type: ignore[attr-defined]


def measure_monitored(probe: Probe, streams: int, processes: ProcessSource) -> RoundSample:
    """One round with the resource monitor running; its summary rides on the sample."""
    with ResourceMonitor(processes=processes) as monitor:
        sample = probe.measure(streams)
    sample.resources = monitor.summary()
    return sample


def _rounds(probe: Probe, streams: int, processes: ProcessSource, rounds: int) -> list[RoundSample]:
    return [measure_monitored(probe, streams, processes) for _ in range(rounds)]


@dataclass(frozen=True)
class Arm:
    """The server an arm measures: its probe and its processes (for the resource monitor)."""

    probe: Probe
    processes: ProcessSource = lambda: []


def _pair(
    result: Comparison, baseline: Arm, condition: Condition, other: Arm, index: int, rounds: int
) -> None:
    baseline_streams = result.baseline_streams or result.streams
    first, *more = _rounds(baseline.probe, baseline_streams, baseline.processes, rounds)
    result.trials.append(Trial("baseline", index, first, more=more))
    with condition() as actor:
        samples = _rounds(other.probe, result.streams, other.processes, rounds)
        if actor is not None:
            actor.check()
            if not actor.window.covers(samples[0].t_start, samples[-1].t_end):
                raise KtInterfError(
                    f"{result.label}: trial {index} ran outside the actor's pressure window",
                    "this is a plugin bug; the actor must be started before measuring",
                )
    # Taken after stop: evidence is frozen then, with what only a stopped actor can report.
    evidence = actor.evidence() if actor is not None else None
    result.trials.append(Trial("condition", index, samples[0], evidence, more=samples[1:]))


def compare(
    probe: Probe,
    condition: Condition,
    *,
    label: str,
    trials: int | None = None,
    design: Design | None = None,
    expectations: Sequence[Check] = (),
    streams: int = 1,
    baseline_streams: int | None = None,
    processes: ProcessSource = lambda: [],
    progress: Callable[[str], None] | None = None,
    log_tail: Callable[[], str] | None = None,
    candidate: Arm | None = None,
) -> Comparison:
    """Interleaved baseline/condition pairs after one warm-up round, judged sequentially.

    ``trials`` runs exactly that many pairs (no expectations judged here); a ``design`` runs
    pairs until every expectation is decided or ``max_pairs`` is reached, then judges them.
    ``baseline_streams`` lets the baseline arm run at another concurrency (1 vs N streams).
    ``candidate``: the condition arm measures another server (same-session A/B,
    ``experiment/candidate.py``); by default both arms measure ``probe``'s server.

    An error part-way re-raises as it came, carrying the comparison marked aborted with its
    finished pairs (:func:`partial_comparison`); ``log_tail`` (the server's, e.g.
    ``ServerHandle.error_detail``) is read then, recorded, and attached to server errors.
    """
    result = Comparison(
        label=label, streams=streams, baseline_streams=baseline_streams, expectations=list(expectations)
    )
    try:
        current = Arm(probe, processes)
        _run(result, current, condition, candidate or current, trials, design, progress)
    except (Exception, KeyboardInterrupt) as exc:
        _carry(exc, result, log_tail)
        raise
    return result


def _run(
    result: Comparison,
    baseline: Arm,
    condition: Condition,
    other: Arm,
    trials: int | None,
    design: Design | None,
    progress: Callable[[str], None] | None,
) -> None:
    label, streams = result.label, result.streams
    chosen = design or Design()
    looks = [trials] if trials is not None else chosen.looks()
    for arm in {id(baseline): baseline, id(other): other}.values():
        arm.probe.measure(streams)  # warm-up: first requests after start pay one-off costs
    for look, target in enumerate(looks):
        for index in range(result.pairs, target):
            _pair(result, baseline, condition, other, index, chosen.rounds)
            if progress is not None:
                b, c = result.trials[-2], result.trials[-1]
                progress(
                    f"{label}: pair {index + 1}/{target}: prefill {b.metric('prefill'):.1f} -> "
                    f"{c.metric('prefill'):.1f}, decode {b.metric('decode'):.1f} -> "
                    f"{c.metric('decode'):.1f} tok/s"
                )
        if not result.expectations or result.decided():
            break
        if progress is not None and look + 1 < len(looks):
            undecided = [
                e.metric
                for e in result.expectations
                if e.kind != "report" and result.measured(e.metric) and not decided(e, result.ratio(e.metric))
            ]
            progress(f"{label}: undecided after {result.pairs} pairs ({', '.join(undecided)}): adding more")
    if result.expectations:
        result.judge()
