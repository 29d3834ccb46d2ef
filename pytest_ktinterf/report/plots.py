"""Plots of a report record as self-contained SVG text, written by hand (no plotting library).

Drawn from the JSON record only (like ``report.render_lines``), so a record from any run, or
merged from xdist workers, plots the same way. SVG is written by hand because a pytest plugin
should not pull matplotlib into every test environment, and two chart shapes do not need it:

* ``effects_svg``: a forest plot, one row per comparison, a panel each for prefill and decode:
  the condition/baseline ratio as percent change, a dot at the point estimate and a bar over
  its confidence interval, coloured by the verdict on that metric (grey, and the row marked
  ``[aborted]``, for a comparison an error stopped part-way: its finished pairs, not judged);
  only hard claims and gates colour a dot. What a hard claim accepts is shaded, and the
  report's own effect (``report_effect`` in the experiment file) is a hollow diamond;
* ``throughput_svg`` (``throughput_plot.py``): aggregate prefill and decode tokens/s per
  stream count, grouped bars of each series the record holds: this run (median round, with
  the sum of per-stream rates marked beside it), the stored baseline (with its unchanged band)
  and the same-session A/B's current and candidate servers (with their paired change).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_ktinterf.datafile import write_atomic
from pytest_ktinterf.report.record import (
    TABLE_METRICS,
    comparison_status,
    condition_pairs,
    is_finite,
    percent_change,
    truncate,
    verdict_status,
)
from pytest_ktinterf.report.svg import document, escape, heading, nice_ticks, server_name, text
from pytest_ktinterf.report.throughput_plot import has_throughput, throughput_svg

CLAIMED = 'fill="#2a9d4b" fill-opacity="0.14"'  # the shading of what a hard claim accepts
REPORTED = 'fill="none" stroke="#222" stroke-width="1.5"'  # the report's own effect: a hollow diamond
COLOURS = {
    "pass": "#2a9d4b",
    "fail": "#d1495b",
    "inconclusive": "#e09f3e",
    "aborted": "#8d99ae",
    None: "#3d5a80",
}
LABEL_CHARS = 56
STATUS_WORDS = {
    "pass": "PASS",
    "fail": "FAIL",
    "inconclusive": "INCONCLUSIVE",
    "aborted": "ABORTED",
    None: "no verdict",
}


# -- forest plot of effects ----------------------------------------------------------------------


def _aborted(comparison: dict[str, Any]) -> bool:
    return comparison_status(comparison) != "complete"


def _metric_status(comparison: dict[str, Any], metric: str) -> str | None:
    """The worst verdict on ``metric`` (fail > inconclusive > pass), None without one;
    ``aborted`` for a comparison stopped part-way (its finished pairs were not judged).

    Only claims and gates colour a dot: the report's cells (kind ``report``) describe another
    machine and never fail, so a "differs" must not look like a failure here.
    """
    if _aborted(comparison):
        return "aborted"
    found = {
        verdict_status(v)
        for v in comparison.get("verdicts") or []
        if v.get("metric") == metric and v.get("kind", "expect") != "report"
    }
    return next((s for s in ("fail", "inconclusive", "pass") if s in found), None)


def _ratio(comparison: dict[str, Any], metric: str) -> dict[str, float] | None:
    ratio = (comparison.get("ratios") or {}).get(metric)
    if ratio and all(is_finite(ratio.get(k)) for k in ("point", "lo", "hi")):
        return ratio
    return None


CHAR_W = 7.0  # average width of a 12 px sans-serif character: labels are sized without a font


def _diamond(cx: float, cy: float, tip: str | None = None) -> str:
    """The report's own effect: a hollow diamond at (cx, cy), with a tooltip on the plot."""
    shape = f"M{cx:.1f},{cy - 6:.1f} L{cx + 6:.1f},{cy:.1f} L{cx:.1f},{cy + 6:.1f} L{cx - 6:.1f},{cy:.1f} Z"
    if tip is None:
        return f'<path d="{shape}" {REPORTED}/>'
    return f'<path class="report-effect" d="{shape}" {REPORTED}><title>{escape(tip)}</title></path>'


def _row_label(comparison: dict[str, Any]) -> str:
    """The label, cut to fit the label column, with the stream count when it is not 1."""
    streams = comparison.get("streams")
    suffix = "" if streams in (None, 1) else f" ({streams} streams)"
    suffix += " [aborted]" if _aborted(comparison) else ""
    return truncate(str(comparison.get("label", "?")), LABEL_CHARS - len(suffix)) + suffix


def effects_svg(record: dict[str, Any]) -> str:
    """Forest plot of every comparison's prefill and decode change, with its interval.

    Both panels share one x scale so a prefill effect and a decode effect can be compared by
    eye; the dashed line at 0% is "no change". Each dot and bar carries a tooltip with the
    numbers and the verdict.
    """
    comparisons = list(record.get("comparisons") or [])
    labels = [_row_label(c) for c in comparisons]
    label_w = min(max([len(x) for x in labels] + [20]) * CHAR_W + 24, LABEL_CHARS * CHAR_W + 24)
    right, gap, row_h, top, bottom = 34.0, 56.0, 26.0, 78.0, 92.0
    width = label_w + 2 * 320.0 + gap + right
    panel_w = (width - label_w - right - gap) / 2
    height = top + max(1, len(comparisons)) * row_h + bottom
    title = f"Interference effects: {server_name(record)}"
    body = heading(record, title, width)
    values = [0.0] + [
        100 * (r[k] - 1)
        for c in comparisons
        for m in TABLE_METRICS
        for r in [_ratio(c, m)]
        if r is not None
        for k in ("lo", "hi", "point")
    ]
    ticks = nice_ticks(min(values), max(values))
    lo, hi = ticks[0], ticks[-1]
    plot_top, plot_bottom = top, top + max(1, len(comparisons)) * row_h

    for i, label in enumerate(labels):
        y = top + i * row_h + row_h / 2
        if i % 2 == 0:
            body.append(
                f'<rect x="6" y="{y - row_h / 2:.1f}" width="{width - 12:.0f}" height="{row_h:.0f}" '
                'fill="#f3f4f6"/>'
            )
        body.append(text(label_w - 10, y + 4, label, 12, "end"))
    if not comparisons:
        body.append(text(label_w - 10, top + row_h / 2 + 4, "(no comparisons recorded)", 12, "end"))

    for p, metric in enumerate(TABLE_METRICS):
        x0 = label_w + p * (panel_w + gap)

        def x(percent: float, x0: float = x0) -> float:
            return x0 + (percent - lo) / (hi - lo) * panel_w

        body.append(
            text(x0 + panel_w / 2, top - 10, f"{metric} tokens/s", 13, "middle", ' font-weight="bold"')
        )
        body.append(
            f'<rect x="{x0:.1f}" y="{plot_top:.1f}" width="{panel_w:.1f}" '
            f'height="{plot_bottom - plot_top:.1f}" fill="none" stroke="#999"/>'
        )
        for tick in ticks:
            tx = x(tick)
            body.append(
                f'<line x1="{tx:.1f}" y1="{plot_top:.1f}" x2="{tx:.1f}" y2="{plot_bottom:.1f}" '
                'stroke="#e0e0e0"/>'
            )
            body.append(
                f'<line x1="{tx:.1f}" y1="{plot_bottom:.1f}" x2="{tx:.1f}" y2="{plot_bottom + 5:.1f}" '
                'stroke="#666"/>'
            )
            body.append(text(tx, plot_bottom + 18, "0%" if tick == 0 else f"{tick:+g}%", 11, "middle"))
        body.append(
            f'<line class="no-change" x1="{x(0):.1f}" y1="{plot_top:.1f}" x2="{x(0):.1f}" '
            f'y2="{plot_bottom:.1f}" stroke="#333" stroke-dasharray="4 3"/>'
        )
        for i, cmp in enumerate(comparisons):  # each hard claim's accepted region, shaded first
            region = (cmp.get("claimed") or {}).get(metric)
            if not region:
                continue
            lo_pct = max(lo, 100 * (float(region[0]) - 1))
            hi_pct = min(hi, 100 * (float(region[1]) - 1)) if is_finite(region[1]) else hi
            if hi_pct > lo_pct:
                claim = escape((cmp.get("expected") or {}).get(metric, ""))
                body.append(
                    f'<rect class="claimed" x="{x(lo_pct):.1f}" y="{top + i * row_h + 3:.1f}" '
                    f'width="{x(hi_pct) - x(lo_pct):.1f}" height="{row_h - 6:.0f}" {CLAIMED}>'
                    f"<title>{claim}</title></rect>"
                )
        for i, cmp in enumerate(comparisons):  # the report's own effect, a hollow diamond
            size = (cmp.get("reference_effect") or {}).get(metric)
            if is_finite(size) and lo <= 100 * size <= hi:
                tip = f"the report measured {100 * size:+.0f}% ({metric})"
                body.append(_diamond(x(100 * size), top + i * row_h + row_h / 2, tip))
        for i, cmp in enumerate(comparisons):
            ratio = _ratio(cmp, metric)
            if ratio is None:
                continue
            y = top + i * row_h + row_h / 2
            status = _metric_status(cmp, metric)
            colour = COLOURS[status]
            confidence = ratio.get("confidence") if is_finite(ratio.get("confidence")) else 0.95
            words = STATUS_WORDS[status]
            if status == "aborted":
                words += f" after {condition_pairs(cmp)} pairs: {cmp.get('reason') or 'no reason recorded'}"
            tip = (
                f"{cmp.get('label', '?')}: {metric} {percent_change(ratio)} "
                f"({100 * confidence:.3g}% CI); {words}"
            )
            x_lo, x_hi = x(100 * (ratio["lo"] - 1)), x(100 * (ratio["hi"] - 1))
            body.append(f'<g class="effect" data-metric="{metric}"><title>{escape(tip)}</title>')
            body.append(
                f'<line class="ci" x1="{x_lo:.1f}" y1="{y:.1f}" x2="{x_hi:.1f}" y2="{y:.1f}" '
                f'stroke="{colour}" stroke-width="2.5"/>'
            )
            for end in (x_lo, x_hi):
                body.append(
                    f'<line x1="{end:.1f}" y1="{y - 5:.1f}" x2="{end:.1f}" y2="{y + 5:.1f}" '
                    f'stroke="{colour}" stroke-width="1.5"/>'
                )
            body.append(
                f'<circle class="dot" data-metric="{metric}" cx="{x(100 * (ratio["point"] - 1)):.1f}" '
                f'cy="{y:.1f}" r="4.5" fill="{colour}"/>'
            )
            body.append("</g>")

    axis_y = plot_bottom + 38
    body.append(
        text(
            label_w + panel_w + gap / 2,
            axis_y,
            "change (Hodges-Lehmann over interleaved pairs) vs baseline, exact CI (95% over the looks)",
            11,
            "middle",
            ' fill="#555"',
        )
    )
    lx = label_w
    shown: tuple[str | None, ...] = ("pass", "fail", "inconclusive", None)
    if any(_aborted(c) for c in comparisons):
        shown = (*shown, "aborted")
    for status in shown:
        body.append(f'<circle cx="{lx:.1f}" cy="{axis_y + 18:.1f}" r="4.5" fill="{COLOURS[status]}"/>')
        body.append(text(lx + 9, axis_y + 22, STATUS_WORDS[status], 11))
        lx += 110
    lx, second = label_w, axis_y + 20  # a second legend row: the first is full at the narrowest width
    body.append(f'<rect x="{lx - 4:.1f}" y="{second + 12:.1f}" width="18" height="12" {CLAIMED}/>')
    body.append(text(lx + 20, second + 22, "what a hard claim accepts", 11))
    if any(c.get("reference_effect") for c in comparisons):
        lx += 220
        body.append(_diamond(lx + 6, second + 18))
        body.append(text(lx + 18, second + 22, "the report's own effect (its machine)", 11))
    return document(width, height, body, title)


# -- files ---------------------------------------------------------------------------------------


def has_effects(record: dict[str, Any]) -> bool:
    return any(_ratio(c, m) is not None for c in record.get("comparisons") or [] for m in TABLE_METRICS)


PLOTS: tuple[tuple[str, Callable[[dict[str, Any]], bool], Callable[[dict[str, Any]], str]], ...] = (
    ("effects.svg", has_effects, effects_svg),
    ("throughput.svg", has_throughput, throughput_svg),
)


def write_plots(record: dict[str, Any], directory: Path) -> list[Path]:
    """Write each plot that has data to ``directory``; returns the paths written.

    Written atomically (temporary file, then rename) like the JSON record, so a viewer that
    reloads on change never reads half a file.
    """
    written = []
    for name, has_data, render in PLOTS:
        if not has_data(record):
            continue
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / name
        write_atomic(path, render(record))
        written.append(path)
    return written
