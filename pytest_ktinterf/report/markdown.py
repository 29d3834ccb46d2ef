"""The report as one Markdown file, plots beside it: what a person opens after a CI run.

The same tables as the terminal (``text.py``, rendered with the Markdown style), the baseline
gate's section verbatim, and the plots as images by their file names, so the folder
(``report.md``, ``effects.svg``, ``throughput.svg``, ``report.json``) can be kept as a CI
artifact and read anywhere. Drawn from the record only, like every other view of the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_ktinterf.datafile import write_atomic
from pytest_ktinterf.judge.expectations import DEFAULT_BOUNDS
from pytest_ktinterf.report.baseline_text import baseline_lines
from pytest_ktinterf.report.record import TABLE_METRICS, comparison_status, percent_change
from pytest_ktinterf.report.text import MARKDOWN, header_lines, render_lines

SAFE, HARMFUL, OPEN = "may share this machine with KT", "keep away from KT's cores and memory", "not decided"


def _is_job(comparison: dict[str, Any]) -> bool:
    """A co-located job (an actor ran in its condition trials), not concurrency or an A/B candidate."""
    return any(t.get("actor") for t in comparison.get("trials") or [] if t.get("arm") == "condition")


def advice_class(comparison: dict[str, Any]) -> str:
    """Where a measured job belongs, by the vocabulary's own bounds (never by this run's numbers).

    Harmful when a metric's whole interval shows a loss of at least the "degraded" bound
    (10%); safe when every metric's interval lies within the "unaffected" bound (15%); else
    not decided (more pairs would tell).
    """
    ratios = [(comparison.get("ratios") or {}).get(m) for m in TABLE_METRICS]
    found = [r for r in ratios if r]
    if any(r["hi"] <= 1 - DEFAULT_BOUNDS["degraded"] for r in found):
        return HARMFUL
    width = DEFAULT_BOUNDS["unaffected"]
    if len(found) == len(TABLE_METRICS) and all(1 - width <= r["lo"] and r["hi"] <= 1 + width for r in found):
        return SAFE
    return OPEN


def advice_lines(record: dict[str, Any]) -> list[str]:
    """Co-location advice the way the seed report ends, derived from this machine's matrix."""
    jobs = [c for c in record.get("comparisons") or [] if _is_job(c) and comparison_status(c) == "complete"]
    if not jobs:
        return []
    out = [
        "",
        "### Co-location advice (derived from this machine's measurements, not the seed report's)",
        "",
    ]
    for verdict in (HARMFUL, SAFE, OPEN):
        chosen = [c for c in jobs if advice_class(c) == verdict]
        if not chosen:
            continue
        out.append(f"**{verdict[0].upper() + verdict[1:]}:**")
        out.append("")
        for c in chosen:
            ratios = c.get("ratios") or {}
            changes = ", ".join(f"{m} {percent_change(ratios.get(m))}" for m in TABLE_METRICS)
            out.append(f"- {c.get('id') or '?'}: {c.get('label', '')} ({changes})")
        out.append("")
    out.append(
        f"Harmful: a metric's whole interval at least {DEFAULT_BOUNDS['degraded']:.0%} below no "
        f"change; may share: every interval within {DEFAULT_BOUNDS['unaffected']:.0%} of it (the "
        "experiment vocabulary's default bounds). A cap in a job's label is the cap it ran under."
    )
    return out


def render_markdown(record: dict[str, Any], plots: Sequence[Path] = (), json_name: str | None = None) -> str:
    """The whole report as Markdown; ``plots`` and ``json_name`` are linked by name (beside it)."""
    header = header_lines(record)
    machine = record.get("machine") or {}
    out = [f"# pytest-ktinterf report ({record.get('created', '?')})", ""]
    if machine:
        out.append(f"- machine: {machine.get('cpu_model', '?')}, {machine.get('hostname', '?')}")
    out += [f"- {line}" for line in header]
    out += render_lines(record, MARKDOWN)[len(header) :]
    out += advice_lines(record)
    gate = baseline_lines(record)
    if gate:
        out += ["", "### Baseline gate", "", "```", *(line for line in gate if line), "```"]
    if plots:
        out += ["", "### Plots", ""]
        out += [f"![{plot.stem}]({plot.name})" for plot in plots]
    if json_name:
        out += ["", f"Every trial, sample and verdict: [{json_name}]({json_name})."]
    return "\n".join(out) + "\n"


def write_markdown(record: dict[str, Any], path: Path, plots: Sequence[Path] = ()) -> Path:
    """Write :func:`render_markdown` to ``path`` (atomically: a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, render_markdown(record, plots, json_name=path.with_suffix(".json").name))
    return path
