"""The server's own speed, alone, at each stream count: the first half of the baseline gate.

An experiment file run with a baseline flag gets two more items, ``uncontended[prefill]`` and
``uncontended[decode]``. They measure trials at every stream count the file's conditions use,
interleaved (1, 4, 1, 4, ...) so slow drift touches every count alike, and record each trial's
aggregate tok/s in the session's record (``uncontended``), which ``--kt-baseline-save`` stores.
Comparing (``--kt-baseline-compare``), each figure is judged by the gate's check with the
Hodges-Lehmann location of the trials and its exact interval; an inconclusive figure gets more
trials, by the file's design, like an undecided condition.
"""

from __future__ import annotations

import statistics
from typing import Any

import pytest

from pytest_ktinterf.baseline.gate import GateCheck, location_interval
from pytest_ktinterf.experiment.schema import Experiment
from pytest_ktinterf.judge.verdict import decided, judge
from pytest_ktinterf.measure.compare import Design
from pytest_ktinterf.measure.design import OVERALL
from pytest_ktinterf.testbed import Testbed

METRICS = ("prefill", "decode")


def stream_counts(experiment: Experiment) -> list[int]:
    """Every stream count the file measures at: its workload's and each condition's two arms."""
    counts = {experiment.streams or 1}
    for condition in experiment.conditions:
        counts.add(condition.streams or experiment.streams or 1)
        if condition.baseline_streams:
            counts.add(condition.baseline_streams)
    return sorted(counts)


def _plural(streams: int) -> str:
    return f"{streams} stream{'s' if streams > 1 else ''}"


def run(
    testbed: Testbed, streams: list[int], design: Design, metrics: set[str]
) -> dict[str, list[tuple[bool, str]]]:
    """Measure, record and (comparing) judge; returns per metric its (fails, line) verdicts."""
    gate = testbed.gate
    if gate is None:
        pytest.skip(
            "uncontended figures are measured for the baseline gate: give --kt-baseline-save or -compare"
        )
    missing = gate.require()
    if missing and not (gate.settings.save or gate.settings.update):
        pytest.skip(missing)
    checks: dict[tuple[int, str], GateCheck] = {}
    for count in streams:
        for metric in metrics:
            check = gate.uncontended_check(count, metric)
            if check is not None:
                checks[count, metric] = check
    trials: dict[int, list[dict[str, Any]]] = {count: [] for count in streams}
    probe = testbed.probe()
    for count in streams:
        probe.measure(count)  # warm-up, as a comparison has: first requests after start pay once
    looks = design.looks()
    for look, target in enumerate(looks):
        while len(trials[streams[0]]) < target:
            for count in streams:
                samples = testbed.measure(count, rounds=design.rounds)
                trial: dict[str, Any] = {m: statistics.median(s.metric(m) for s in samples) for m in METRICS}
                trial["t_start"] = samples[0].t_start
                trials[count].append(trial)
                testbed.report.uncontended.setdefault(count, []).append(trial)
        undecided = [
            c.figure
            for (count, metric), c in checks.items()
            if not decided(c, location_interval([t[metric] for t in trials[count]], design.confidence))
        ]
        if not undecided:
            break
        if look + 1 < len(looks):
            testbed.say(f"uncontended: undecided after {target} trials ({', '.join(undecided)}): adding more")
    return _verdicts(testbed, streams, metrics, trials, checks, missing, design.confidence)


def _verdicts(
    testbed: Testbed,
    streams: list[int],
    metrics: set[str],
    trials: dict[int, list[dict[str, Any]]],
    checks: dict[tuple[int, str], GateCheck],
    missing: str | None,
    confidence: float = OVERALL,
) -> dict[str, list[tuple[bool, str]]]:
    found: dict[str, list[tuple[bool, str]]] = {}
    for metric in sorted(metrics):
        for count in streams:
            values = [t[metric] for t in trials[count]]
            interval = location_interval(values, confidence)
            check = checks.get((count, metric))
            if check is None:
                line = (
                    f"RECORDED {metric} at {_plural(count)}: {interval.point:.1f} tok/s "
                    f"[{interval.lo:.1f}, {interval.hi:.1f}] over {len(values)} trials"
                    + (f" ({missing})" if missing else "")
                )
                found.setdefault(metric, []).append((False, line))
                continue
            verdict = judge(check, interval, pairs=len(values))
            testbed.report.baseline.setdefault("verdicts", []).append(
                {
                    "figure": check.figure,
                    "metric": metric,
                    "status": verdict.status,
                    "word": verdict.word,
                    "fails": verdict.fails,
                    "reason": verdict.reason,
                    "trials": len(values),
                    # the numbers behind the words, for plots and tools (tok/s)
                    "streams": count,
                    "center": check.center,
                    "band": [check.band[0], check.band[1]] if check.band_text() != "unknown" else None,
                    "sessions": list(check.sessions),
                }
            )
            found.setdefault(metric, []).append((verdict.fails, f"{check.figure}: {verdict.line()}"))
    return found
