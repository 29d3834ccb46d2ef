"""The report's "Where the time went": each condition's seconds per phase, from its record.

A condition on a KT box can cost an hour (a model's RAM co-runner fills 19 GB per trial, a
collapsed server answers slowly); before anyone makes a design cheaper they should see which
phase the time is in. The phases are ``measure.comparison.PHASES``; only those that took time in
this run get a column (all of them stay in the JSON record).
"""

from __future__ import annotations

from typing import Any

from pytest_ktinterf.measure.comparison import PHASES
from pytest_ktinterf.report.record import truncate
from pytest_ktinterf.report.section import Style

TITLE = "Where the time went (seconds per phase; actor start counts until its pressure is proven)"
SHOWN_FROM_S = 0.05  # a phase below this in every condition (no server switch, no actor) is left out


def _seconds(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


def time_lines(comparisons: list[dict[str, Any]], style: Style) -> list[str]:
    """The table, one row per condition and a total row; nothing when no record has a split."""
    splits = [(c, c.get("time_split") or {}) for c in comparisons]
    if not any(split for _, split in splits):
        return []
    phases = [p for p in PHASES if any(float(split.get(p, 0.0)) >= SHOWN_FROM_S for _, split in splits)]
    header = ["condition", *(p.replace("_", " ") for p in phases), "total"]
    rows, totals = [], dict.fromkeys([*phases, "total"], 0.0)
    for comparison, split in splits:
        values = {p: float(split.get(p, 0.0)) for p in phases}
        values["total"] = sum(float(v) for v in split.values())
        for key, value in values.items():
            totals[key] += value
        name = truncate(str(comparison.get("id") or comparison.get("label") or "?"))
        rows.append([name, *(_seconds(values[k]) for k in [*phases, "total"])])
    rows.append(["all conditions", *(_seconds(totals[k]) for k in [*phases, "total"])])
    return ["", style.title(TITLE), *style.table(header, rows)]
