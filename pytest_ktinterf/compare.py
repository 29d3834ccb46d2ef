"""The trial design: baseline and condition measured alternately (A B A B ...), then compared.

Interleaving spreads slow drift (thermal state, page cache, background jobs) over both arms
instead of letting it masquerade as an effect. Each condition trial runs inside the actor's
established-pressure window, and the actor must still be at full strength when the trial ends;
otherwise the trial is refused rather than silently diluting the result.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pytest_ktinterf.actors.base import Actor
from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.monitor import ProcessSource, ResourceMonitor
from pytest_ktinterf.probe import Probe
from pytest_ktinterf.samples import RoundSample
from pytest_ktinterf.stats import Interval, median_ratio_ci
from pytest_ktinterf.verdict import Verdict, expect_degraded

Condition = Callable[[], contextlib.AbstractContextManager[Actor | None]]
METRICS = ("prefill", "decode")


@dataclass
class Trial:
    arm: str
    index: int
    round: RoundSample
    actor: dict[str, Any] | None = None


@dataclass
class Comparison:
    """All trials of one condition against its baseline, and the verdicts drawn from them."""

    label: str
    streams: int
    trials: list[Trial] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)

    def values(self, arm: str, metric: str) -> list[float]:
        return [t.round.metric(metric) for t in self.trials if t.arm == arm]

    def ratio(self, metric: str) -> Interval:
        """condition / baseline median ratio with its 95% bootstrap interval."""
        return median_ratio_ci(self.values("condition", metric), self.values("baseline", metric))

    def expect_degraded(self, metric: str, at_least: float) -> Verdict:
        verdict = expect_degraded(metric, self.ratio(metric), at_least)
        self.verdicts.append(verdict)
        return verdict

    def to_record(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "streams": self.streams,
            "ratios": {
                m: {"point": r.point, "lo": r.lo, "hi": r.hi, "confidence": r.confidence}
                for m in METRICS
                for r in [self.ratio(m)]
            },
            "verdicts": [
                {"metric": v.metric, "expectation": v.expectation, "passed": v.passed, "reason": v.reason}
                for v in self.verdicts
            ],
            "trials": [
                {"arm": t.arm, "index": t.index, "actor": t.actor, **t.round.to_record()} for t in self.trials
            ],
        }


def measure_monitored(probe: Probe, streams: int, processes: ProcessSource) -> RoundSample:
    """One round with the resource monitor running; its summary rides on the sample."""
    with ResourceMonitor(processes=processes) as monitor:
        sample = probe.measure(streams)
    sample.resources = monitor.summary()
    return sample


def compare(
    probe: Probe,
    condition: Condition,
    *,
    label: str,
    trials: int,
    streams: int = 1,
    processes: ProcessSource = lambda: [],
    progress: Callable[[str], None] | None = None,
) -> Comparison:
    """Run ``trials`` baseline/condition pairs after one warm-up round."""
    result = Comparison(label=label, streams=streams)
    probe.measure(streams)  # warm-up: first requests after start pay one-off costs
    for index in range(trials):
        result.trials.append(Trial("baseline", index, measure_monitored(probe, streams, processes)))
        with condition() as actor:
            sample = measure_monitored(probe, streams, processes)
            if actor is not None:
                actor.check()
                if not actor.window.covers(sample.t_start, sample.t_end):
                    raise KtInterfError(
                        f"{label}: trial {index} ran outside the actor's pressure window",
                        "this is a plugin bug; the actor must be started before measuring",
                    )
        # Taken after stop: evidence is frozen then, with what only a stopped actor can report.
        evidence = actor.evidence() if actor is not None else None
        result.trials.append(Trial("condition", index, sample, evidence))
        if progress is not None:
            b, c = result.trials[-2].round, sample
            progress(
                f"{label}: trial {index + 1}/{trials}: prefill {b.metric('prefill'):.1f} -> "
                f"{c.metric('prefill'):.1f}, decode {b.metric('decode'):.1f} -> "
                f"{c.metric('decode'):.1f} tok/s"
            )
    return result
