"""SVG written by hand: the few primitives the report's two charts need, and round axis ticks.

A pytest plugin should not pull a plotting library into every test environment; two chart
shapes do not need one. Everything user-given (labels from experiment files) passes through
:func:`escape`, so a label never breaks the file.
"""

from __future__ import annotations

import math
from typing import Any

FONT = "font-family:DejaVu Sans,Helvetica,Arial,sans-serif"


def escape(text: Any) -> str:
    """Text safe inside an element or a double-quoted attribute.

    Labels come from users and experiment files; characters XML 1.0 forbids (most control
    characters) are dropped rather than producing a file no viewer opens.
    """
    kept = "".join(c for c in str(text) if c in "\t\n\r" or ord(c) >= 0x20)
    return kept.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def nice_ticks(lo: float, hi: float, target: int = 6) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 x 10^k steps) covering [lo, hi] with about ``target`` ticks."""
    scale = max(abs(lo), abs(hi), 1.0)
    if not hi - lo > 1e-9 * scale:  # one value (or none apart): centre it in a visible range
        lo, hi = lo - scale / 2, hi + scale / 2
    raw = (hi - lo) / max(1, target - 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start, end = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    return [round(start + i * step, 10) for i in range(round((end - start) / step) + 1)]


def fit(text: str, width: float, size: int, bold: bool = False) -> str:
    """``text`` cut with an ellipsis to fit ``width`` px at ``size`` px (no font metrics: a
    conservative average glyph width), so a long server name never runs off the picture."""
    glyph = size * (0.66 if bold else 0.6)
    most = max(4, int(width / glyph))
    return text if len(text) <= most else text[: most - 1] + "…"


def number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 or value == int(value) else f"{value:.3g}"


def document(width: float, height: float, body: list[str], title: str) -> str:
    return "\n".join(
        [
            '<?xml version="1.0" encoding="UTF-8"?>',
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" style="{FONT}">',
            f"<title>{escape(title)}</title>",
            f'<rect width="{width:.0f}" height="{height:.0f}" fill="white"/>',
            *body,
            "</svg>",
            "",
        ]
    )


def text(x: float, y: float, text: Any, size: int = 12, anchor: str = "start", extra: str = "") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}"{extra}>'
        f"{escape(text)}</text>"
    )


def subtitle(record: dict[str, Any]) -> str:
    w = record.get("workload") or {}
    server = record.get("server") or {}
    host = (record.get("machine") or {}).get("cpu_model")
    parts = []
    if w:
        parts.append(f"{w.get('prompt_tokens')} prompt tokens, {w.get('max_tokens')} generated")
    if server.get("cpus"):
        parts.append(f"server cores {server['cpus']}")
    if host:
        parts.append(str(host))
    return "; ".join(parts)


def server_name(record: dict[str, Any]) -> str:
    return str((record.get("server") or {}).get("description") or "server not recorded")


def heading(record: dict[str, Any], title: str, width: float) -> list[str]:
    """A plot's title and subtitle (workload, cores, CPU), each cut to the picture's width."""
    return [
        text(14, 24, fit(title, width - 28, 16, bold=True), 16, extra=' font-weight="bold"'),
        text(14, 44, fit(subtitle(record), width - 28, 11), 11, extra=' fill="#555"'),
    ]
