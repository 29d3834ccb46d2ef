"""The throughput plot: aggregate prefill and decode tokens/s per stream count, now vs baseline vs candidate.

Drawn from the record only, like ``plots.effects_svg``; the series are read in
``throughput_series.py``. Prefill and decode differ by an order of magnitude, so each gets its
own panel and scale. Within a panel, each stream count is a group of bars, one colour per
series: this run's median round (with the dashed sum of per-stream rates), the stored baseline
(its unchanged band as a whisker, where it has one) and the same-session A/B's
current and candidate servers (their paired change written under the panel). A series the
record lacks is not drawn and not named in the legend, so a plain run plots as it always did.
"""

from __future__ import annotations

from typing import Any

from pytest_ktinterf.report.record import TABLE_METRICS
from pytest_ktinterf.report.svg import document, escape, fit, heading, nice_ticks, number, server_name, text
from pytest_ktinterf.report.throughput_series import SERIES, Bar, Note, throughput_series

GLYPH_11 = 11 * 0.6  # average width of an 11 px character: legend items are laid out without a font
SUM_COLOUR = "#d1495b"
NOTE_COLOUR = "#9a6418"  # the candidate's orange, darkened: readable as 11 px text on white
SUM_WORDS = "sum of per-stream rates (overstates when streams take turns on the same cores)"
LEFT, RIGHT, GAP, TOP, PANEL_H = 70.0, 20.0, 80.0, 78.0, 260.0
BAR_W, GROUPED_BAR_W, SPACING = 50.0, 38.0, 4.0  # a lone bar as before; grouped ones fit a 10 px label


def has_throughput(record: dict[str, Any]) -> bool:
    """Whether any series (this run's rounds, the baseline's figures, the A/B arms) has a figure."""
    return bool(throughput_series(record)[0])


def _groups(bars: list[Bar]) -> list[tuple[int, list[str]]]:
    """Each stream count with the series drawn there, in ``SERIES`` order.

    The same series in both panels, so a group's bars line up between prefill and decode even
    where one metric lacks a figure.
    """
    counts = sorted({b.streams for b in bars})
    return [
        (s, [name for name in SERIES if any(b.streams == s and b.series == name for b in bars)])
        for s in counts
    ]


def _legend(bars: list[Bar], width: float, y: float) -> tuple[list[str], float]:
    """The legend, flowed into rows that fit the picture: one item per series present (and the
    dashed sum mark when drawn); returns the elements and the baseline of its last row.

    The baseline's item mentions its whisker only when one is drawn: a baseline of one session
    has no band (its spread is unknown), and a legend must not promise what the picture lacks.
    """
    present = [name for name in SERIES if any(b.series == name for b in bars)]
    items = [(name, SERIES[name][0]) for name in present]
    if any(b.band is not None for b in bars):
        items = [(n, f"{w}; whisker: its unchanged band" if n == "baseline" else w) for n, w in items]
    if any(b.summed is not None for b in bars):
        items.append(("sum", SUM_WORDS))
    out, x = [], LEFT
    for name, words in items:
        words = fit(words, width - LEFT - RIGHT - 24, 11)
        item_w = 24 + len(words) * GLYPH_11 + 22
        if x > LEFT and x + item_w > width - RIGHT:
            x, y = LEFT, y + 20
        if name == "sum":
            out.append(
                f'<line x1="{x:.1f}" y1="{y - 4:.1f}" x2="{x + 18:.1f}" y2="{y - 4:.1f}" '
                f'stroke="{SUM_COLOUR}" stroke-width="2" stroke-dasharray="5 3"/>'
            )
        else:
            out.append(
                f'<rect class="legend" data-series="{name}" x="{x:.1f}" y="{y - 10:.1f}" width="18" '
                f'height="11" fill="{SERIES[name][1]}"/>'
            )
        out.append(text(x + 24, y, words, 11))
        x += item_w
    return out, y


def _line(x1: float, y1: float, x2: float, y2: float, attrs: str, tip: str | None = None) -> str:
    """A line with its attributes (and a tooltip): the plot draws many, the markup is noise."""
    head = f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" {attrs}'
    return f"{head}/>" if tip is None else f"{head}><title>{escape(tip)}</title></line>"


def _bar(bar: Bar, x: float, bar_w: float, y: Any, base: float, size: int, reach: float) -> list[str]:
    """One bar with its value label, its whisker (baseline band) or its dashed sum mark (now).

    The label sits above whatever is drawn over the bar (a whisker, or a sum mark close enough
    to cross the label), so no number is struck through.
    """
    cx = x + bar_w / 2
    top = y(bar.value)
    out = [
        f'<rect class="bar" data-metric="{bar.metric}" data-series="{bar.series}" '
        f'data-streams="{bar.streams}" data-value="{bar.value:.6g}" x="{x:.1f}" y="{top:.1f}" '
        f'width="{bar_w:.1f}" height="{base - top:.1f}" fill="{SERIES[bar.series][1]}">'
        f"<title>{escape(bar.tip)}</title></rect>"
    ]
    label_at = top
    if bar.band is not None:
        lo, hi = y(bar.band[0]), y(bar.band[1])
        cap = bar_w / 4
        out.append(
            f'<g class="band" data-metric="{bar.metric}" data-streams="{bar.streams}">'
            f"<title>{escape(bar.tip)}</title>"
        )
        out.append(_line(cx, lo, cx, hi, 'stroke="#333" stroke-width="1.5"'))
        out += [_line(cx - cap, end, cx + cap, end, 'stroke="#333" stroke-width="1.5"') for end in (lo, hi)]
        out.append("</g>")
        label_at = min(label_at, hi)
    if bar.summed is not None:
        at = y(bar.summed)
        tip = f"sum of {bar.streams} per-stream rates: {bar.summed:.4g} tok/s (overstates on shared cores)"
        dashed = f'class="sum" stroke="{SUM_COLOUR}" stroke-width="2" stroke-dasharray="5 3"'
        out.append(_line(x - reach, at, x + bar_w + reach, at, dashed, tip))
        if top - size - 8 < at < top + 2:  # the dashed mark would cross the label: go above it
            label_at = min(label_at, at)
    out.append(text(cx, label_at - 5, number(bar.value), size, "middle"))
    return out


def _panel(
    metric: str,
    bars: list[Bar],
    groups: list[tuple[int, list[str]]],
    x0: float,
    panel_w: float,
    notes: list[Note],
) -> list[str]:
    """One metric's panel: grid, bars per stream count, stream labels and the A/B notes below."""
    base = TOP + PANEL_H
    mine = [b for b in bars if b.metric == metric]
    heights = [v for b in mine for v in (b.value, b.summed, *(b.band or ())) if v is not None]
    ticks = nice_ticks(0.0, 1.1 * max([0.0, *heights]) or 1.0, 5)  # headroom for the value labels

    def y(value: float) -> float:
        return base - value / ticks[-1] * PANEL_H

    out = [
        text(x0 + panel_w / 2, TOP - 12, f"{metric}, aggregate tokens/s", 13, "middle", ' font-weight="bold"')
    ]
    for tick in ticks:
        out.append(_line(x0, y(tick), x0 + panel_w, y(tick), 'stroke="#e0e0e0"'))
        out.append(text(x0 - 6, y(tick) + 4, number(tick), 11, "end"))
    out.append(f'<line x1="{x0:.1f}" y1="{base:.1f}" x2="{x0 + panel_w:.1f}" y2="{base:.1f}" stroke="#333"/>')
    widest = max(len(names) for _, names in groups)
    bar_w = BAR_W if widest == 1 else GROUPED_BAR_W
    pitch = bar_w + SPACING
    reach = 6.0 if widest == 1 else 2.0  # the sum mark's overhang: never over a neighbouring bar
    size = 11 if widest == 1 else 10
    slot = panel_w / len(groups)
    for i, (streams, names) in enumerate(groups):
        cx = x0 + slot * (i + 0.5)
        start = cx - len(names) * pitch / 2 + (pitch - bar_w) / 2
        for j, name in enumerate(names):
            bar = next((b for b in mine if b.streams == streams and b.series == name), None)
            if bar is not None:
                out += _bar(bar, start + j * pitch, bar_w, y, base, size, reach)
        out.append(text(cx, base + 18, f"{streams} stream{'s' if streams != 1 else ''}", 11, "middle"))
    for row, note in enumerate(n for n in notes if n.metric == metric):
        colour = f' fill="{NOTE_COLOUR}" class="ab-change"'
        out.append(
            text(x0 + panel_w / 2, base + 38 + 18 * row, fit(note.text, panel_w, 11), 11, "middle", colour)
        )
    return out


def throughput_svg(record: dict[str, Any]) -> str:
    """Aggregate prefill and decode tokens/s per stream count: now, baseline and candidate.

    Prefill and decode differ by an order of magnitude, so each gets its own panel and scale.
    Where several streams ran, a dashed mark shows the sum of their per-stream rates: the
    report's "30+17+27+17" figure, which overstates throughput when streams share cores. The
    baseline's whisker is its unchanged band (what an unchanged server produces); the A/B's
    change is paired, so its interval is written out rather than read off two bars.
    """
    bars, notes = throughput_series(record)
    groups = _groups(bars) or [(1, ["now"])]
    widest = max(len(names) for _, names in groups)
    slot = 90.0 if widest == 1 else max(90.0, widest * (GROUPED_BAR_W + SPACING) + 28)
    longest = max([len(n.text) for n in notes] + [0]) * GLYPH_11 + 10
    panel_w = max(240.0 if widest == 1 else 260.0, slot * len(groups), min(longest, 420.0))
    width = LEFT + 2 * panel_w + GAP + RIGHT
    title = f"Throughput: {server_name(record)}"
    body = heading(record, title, width)
    for p, metric in enumerate(TABLE_METRICS):
        body += _panel(metric, bars, groups, LEFT + p * (panel_w + GAP), panel_w, notes)
    rows = max([sum(1 for n in notes if n.metric == m) for m in TABLE_METRICS] + [0])
    legend, last = _legend(bars, width, TOP + PANEL_H + 48 + 18 * rows)
    return document(width, last + 22, body + legend, title)
