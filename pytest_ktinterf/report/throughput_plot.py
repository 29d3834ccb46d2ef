"""The throughput plot: aggregate prefill and decode tokens/s per concurrency, the median round.

Drawn from the record only, like ``plots.effects_svg``; prefill and decode differ by an order of
magnitude, so each gets its own panel and scale.
"""

from __future__ import annotations

from typing import Any

from pytest_ktinterf.report.record import TABLE_METRICS, concurrency_rounds, is_finite, median_round
from pytest_ktinterf.report.svg import document, heading, nice_ticks, number, server_name, text


def has_throughput(record: dict[str, Any]) -> bool:
    return bool(concurrency_rounds(record))


def _throughput_levels(record: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    return [(streams, median_round(rounds)) for streams, rounds in concurrency_rounds(record)]


def throughput_svg(record: dict[str, Any]) -> str:
    """Aggregate prefill and decode tokens/s per concurrency, the median round of each.

    Prefill and decode differ by an order of magnitude, so each gets its own panel and scale.
    Where several streams ran, a dashed mark shows the sum of their per-stream rates: the
    report's "30+17+27+17" figure, which overstates throughput when streams share cores.
    """
    levels = _throughput_levels(record)
    left, right, gap, top, bottom = 70.0, 20.0, 80.0, 78.0, 70.0
    group_w = 90.0
    panel_w = max(240.0, group_w * max(1, len(levels)))
    width = left + 2 * panel_w + gap + right
    panel_h = 260.0
    height = top + panel_h + bottom
    title = f"Throughput: {server_name(record)}"
    body = heading(record, title, width)
    base = top + panel_h
    colours = {"prefill": "#3d5a80", "decode": "#98c1d9"}
    for p, metric in enumerate(TABLE_METRICS):
        x0 = left + p * (panel_w + gap)
        figures = []
        for streams, middle in levels:
            aggregate = middle.get(f"{metric}_aggregate_tps")
            rates = [v for v in middle.get(f"{metric}_per_stream_tps") or [] if is_finite(v)]
            figures.append(
                (
                    streams,
                    aggregate if is_finite(aggregate) else None,
                    sum(rates) if len(rates) > 1 else None,
                )
            )
        tallest = max([0.0] + [v for _, a, s in figures for v in (a, s) if v is not None])
        ticks = nice_ticks(0.0, 1.1 * tallest or 1.0, 5)  # headroom for the value labels
        top_value = ticks[-1]

        def y(value: float, top_value: float = top_value) -> float:
            return base - value / top_value * panel_h

        body.append(
            text(
                x0 + panel_w / 2,
                top - 12,
                f"{metric}, aggregate tokens/s",
                13,
                "middle",
                ' font-weight="bold"',
            )
        )
        for tick in ticks:
            body.append(
                f'<line x1="{x0:.1f}" y1="{y(tick):.1f}" x2="{x0 + panel_w:.1f}" y2="{y(tick):.1f}" '
                'stroke="#e0e0e0"/>'
            )
            body.append(text(x0 - 6, y(tick) + 4, number(tick), 11, "end"))
        body.append(
            f'<line x1="{x0:.1f}" y1="{base:.1f}" x2="{x0 + panel_w:.1f}" y2="{base:.1f}" stroke="#333"/>'
        )
        slot = panel_w / max(1, len(figures))
        for i, (streams, aggregate, summed) in enumerate(figures):
            cx = x0 + slot * (i + 0.5)
            bar_w = min(50.0, slot * 0.6)
            if aggregate is not None:
                body.append(
                    f'<rect class="bar" data-metric="{metric}" x="{cx - bar_w / 2:.1f}" '
                    f'y="{y(aggregate):.1f}" width="{bar_w:.1f}" height="{base - y(aggregate):.1f}" '
                    f'fill="{colours[metric]}"><title>{streams} streams: {metric} aggregate '
                    f"{aggregate:.4g} tok/s</title></rect>"
                )
                body.append(text(cx, y(aggregate) - 5, number(aggregate), 11, "middle"))
            if summed is not None:
                body.append(
                    f'<line class="sum" x1="{cx - bar_w / 2 - 6:.1f}" y1="{y(summed):.1f}" '
                    f'x2="{cx + bar_w / 2 + 6:.1f}" y2="{y(summed):.1f}" stroke="#d1495b" '
                    f'stroke-width="2" stroke-dasharray="5 3"><title>sum of {streams} per-stream rates: '
                    f"{summed:.4g} tok/s (overstates when streams share cores)</title></line>"
                )
            body.append(text(cx, base + 18, f"{streams} stream{'s' if streams != 1 else ''}", 11, "middle"))
    legend_y = base + 48
    if any(streams > 1 for streams, _ in levels):
        body.append(
            f'<line x1="{left:.1f}" y1="{legend_y - 4:.1f}" x2="{left + 24:.1f}" y2="{legend_y - 4:.1f}" '
            'stroke="#d1495b" stroke-width="2" stroke-dasharray="5 3"/>'
        )
        body.append(
            text(
                left + 30,
                legend_y,
                "sum of per-stream rates (overstates when streams take turns on the same cores)",
                11,
            )
        )
    return document(width, height, body, title)
