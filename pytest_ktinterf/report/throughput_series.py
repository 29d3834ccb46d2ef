"""The throughput plot's series, read from the record: this run, the stored baseline, the A/B arms.

Split from the drawing (``throughput_plot.py``) because each series lives in another part of the
record, and reading them is where the record's shape matters:

* **now**: this run's rounds per stream count (``concurrency``), the median round, as the
  throughput table shows them, with the sum of per-stream rates beside the true aggregate;
* **baseline**: the machine's stored uncontended throughput, from the gate's verdicts in
  ``baseline.verdicts`` (a session run with ``--kt-baseline-compare``): each carries its
  figure's centre, unchanged band and sessions as numbers (``experiment.uncontended``); a
  verdict without them (an older record) is left out rather than drawn wrong;
* **current** and **candidate**: the same-session A/B (the comparison whose id is
  ``candidate``): its ``baseline`` arm is the current server, its ``condition`` arm the
  candidate, each the median of its trials (a trial's figure as ``Trial.metric`` computes it),
  and the paired change with its interval from the comparison's ``ratios``.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from pytest_ktinterf.baseline.store import trial_value
from pytest_ktinterf.measure.comparison import CANDIDATE
from pytest_ktinterf.report.record import (
    TABLE_METRICS,
    comparison_status,
    concurrency_rounds,
    condition_pairs,
    is_finite,
    median_round,
    percent_change,
)

# One colour per series, in drawing order within a group; the legend names each one present.
SERIES: dict[str, tuple[str, str]] = {
    "now": ("this run (median round)", "#3d5a80"),
    "baseline": ("baseline: the stored sessions' centre (uncontended)", "#a3acb9"),
    "current": ("current server, same-session A/B (median trial)", "#2a9d8f"),
    "candidate": ("candidate server, same-session A/B (median trial)", "#e09f3e"),
}


@dataclass(frozen=True)
class Bar:
    """One bar: a series' figure for one metric at one stream count, with its tooltip.

    ``band`` is an error bar (the baseline's unchanged band), ``summed`` the dashed mark of the
    sum of per-stream rates (this run's rounds with several streams).
    """

    series: str
    metric: str
    streams: int
    value: float
    tip: str
    band: tuple[float, float] | None = None
    summed: float | None = None


@dataclass(frozen=True)
class Note:
    """The A/B's paired change for one metric, written under its panel: ``candidate -11% [-14%, -8%]``."""

    metric: str
    streams: int
    text: str


def _plural(streams: int) -> str:
    return f"{streams} stream{'s' if streams != 1 else ''}"


def now_bars(record: dict[str, Any]) -> list[Bar]:
    """This run's aggregate per stream count, the median round (the throughput table's figures)."""
    bars = []
    for streams, rounds in concurrency_rounds(record):
        middle = median_round(rounds)
        for metric in TABLE_METRICS:
            aggregate = middle.get(f"{metric}_aggregate_tps")
            if not is_finite(aggregate):
                continue
            rates = [v for v in middle.get(f"{metric}_per_stream_tps") or [] if is_finite(v)]
            tip = f"{_plural(streams)}: {metric} aggregate {aggregate:.4g} tok/s (median of {len(rounds)})"
            summed = sum(rates) if len(rates) > 1 else None
            bars.append(Bar("now", metric, streams, float(aggregate), tip, summed=summed))
    return bars


def _baseline_bar(verdict: dict[str, Any]) -> Bar | None:
    """The stored figure a gate verdict of the server's own speed names; None if it names none."""
    metric, streams, center = verdict.get("metric"), verdict.get("streams"), verdict.get("center")
    if metric not in TABLE_METRICS or not isinstance(streams, int) or not is_finite(center):
        return None
    sessions = [v for v in verdict.get("sessions") or [] if is_finite(v)]
    raw = verdict.get("band")
    band = (float(raw[0]), float(raw[1])) if isinstance(raw, list) and all(map(is_finite, raw)) else None
    listed = ", ".join(f"{v:.4g}" for v in sessions)
    tip = (
        f"{_plural(streams)}: baseline {metric} {center:.4g} tok/s ({len(sessions)} sessions: {listed} tok/s)"
    )
    if band is not None:
        tip += f"; unchanged band {band[0]:.4g}..{band[1]:.4g} tok/s"
    word = str(verdict.get("word") or verdict.get("status") or "").upper()
    tip += f"; gate {word}" if word else ""
    return Bar("baseline", str(metric), streams, float(center), tip, band=band)


def baseline_bars(record: dict[str, Any]) -> list[Bar]:
    """The baseline's uncontended throughput per stream count, from the gate's verdicts.

    Merged records may repeat a figure (one per worker that judged it): the last one is kept.
    """
    section = record.get("baseline") or {}
    found: dict[tuple[str, int], Bar] = {}
    for verdict in section.get("verdicts") or []:
        bar = _baseline_bar(verdict)
        if bar is not None:
            found[bar.metric, bar.streams] = bar
    return list(found.values())


def candidate_comparisons(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The same-session A/B comparisons, one per stream count (the first at each count)."""
    found: dict[int, dict[str, Any]] = {}
    for comparison in record.get("comparisons") or []:
        if comparison.get("id") == CANDIDATE and isinstance(comparison.get("streams"), int):
            found.setdefault(comparison["streams"], comparison)
    return [found[s] for s in sorted(found)]


def _arm_median(comparison: dict[str, Any], arm: str, metric: str) -> tuple[float, int] | None:
    values = [
        v
        for t in comparison.get("trials") or []
        if t.get("arm") == arm and math.isfinite(v := trial_value(t, metric))
    ]
    return (float(statistics.median(values)), len(values)) if values else None


def change_text(comparison: dict[str, Any], metric: str) -> str | None:
    """``candidate -11% [-14%, -8%]``: the paired candidate/current change, None without a ratio."""
    ratio = (comparison.get("ratios") or {}).get(metric)
    change = percent_change(ratio)
    if change == "-":
        return None
    aborted = comparison_status(comparison) != "complete"
    return f"candidate {change}" + (
        f" (aborted after {condition_pairs(comparison)} pairs)" if aborted else ""
    )


def candidate_bars(record: dict[str, Any]) -> tuple[list[Bar], list[Note]]:
    """The A/B arms' median aggregate rates and, per metric, the paired change with its interval."""
    bars, notes = [], []
    who = str((record.get("candidate") or {}).get("description") or "")
    for comparison in candidate_comparisons(record):
        streams = int(comparison["streams"])
        for metric in TABLE_METRICS:
            change = change_text(comparison, metric)
            confidence = ((comparison.get("ratios") or {}).get(metric) or {}).get("confidence")
            level = f"{100 * confidence:.3g}%" if is_finite(confidence) else "95%"
            for series, arm in (("current", "baseline"), ("candidate", "condition")):
                found = _arm_median(comparison, arm, metric)
                if found is None:
                    continue
                value, trials = found
                name = f"candidate server ({who})" if series == "candidate" and who else f"{series} server"
                tip = f"{_plural(streams)}: {name} {metric} {value:.4g} tok/s (median of {trials} trials)"
                if series == "candidate" and change:
                    tip += f"; {change} vs current (paired, {level} CI)"
                bars.append(Bar(series, metric, streams, value, tip))
            if change is not None:
                notes.append(Note(metric, streams, f"{change} at {_plural(streams)}"))
    return bars, notes


def throughput_series(record: dict[str, Any]) -> tuple[list[Bar], list[Note]]:
    """Every series' bars (now, baseline, current, candidate) and the A/B notes."""
    ab_bars, notes = candidate_bars(record)
    return [*now_bars(record), *baseline_bars(record), *ab_bars], notes
