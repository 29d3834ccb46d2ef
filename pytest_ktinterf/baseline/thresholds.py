"""Regression thresholds: how much worse a figure may get before the gate calls it regressed.

Kept apart from the statistics (``gate.py``): this is what a user writes
(``--kt-baseline-fail decode:10%,prefill:15%``, an experiment condition's ``gate`` table), parsed
once into ``{metric: fraction}``.
"""

from __future__ import annotations

import math

from pytest_ktinterf.baseline.store import EFFECT_METRICS
from pytest_ktinterf.errors import KtInterfError

DEFAULT_THRESHOLD = 0.10


def parse_thresholds(text: str | None, option: str = "--kt-baseline-fail") -> dict[str, float]:
    """``"10%"``, ``"decode:10%,prefill:15%"`` or ``"decode:0.1"`` as ``{metric: fraction}``.

    The key ``"*"`` is the default for metrics not named; it is 10% when not given.
    """
    found: dict[str, float] = {}
    fix = "give METRIC:PERCENT, e.g. decode:10%, or one PERCENT for all metrics, e.g. 10%"
    for part in (text or "").split(","):
        if not part.strip():
            if (text or "").strip():
                raise KtInterfError(f"{option}: empty entry in {text!r}", fix)
            continue
        metric, _, value = part.rpartition(":")
        metric = metric.strip() or "*"
        if metric != "*" and metric not in EFFECT_METRICS:
            raise KtInterfError(
                f"{option}: unknown metric {metric!r} in {part.strip()!r} "
                f"(known: {', '.join(EFFECT_METRICS)})",
                fix,
            )
        if metric in found:
            raise KtInterfError(f"{option}: {metric!r} given twice in {text!r}", fix)
        fraction = _fraction(value)
        if fraction is None:
            raise KtInterfError(
                f"{option}: {part.strip()!r} is not a percent (10%) or a fraction below 1 (0.1)", fix
            )
        found[metric] = fraction
    found.setdefault("*", DEFAULT_THRESHOLD)
    return found


def _fraction(text: str) -> float | None:
    text = text.strip()
    percent = text.endswith("%")
    try:
        value = float(text[:-1] if percent else text)
    except ValueError:
        return None
    value = value / 100 if percent else value
    return value if math.isfinite(value) and 0 <= value < 1 else None


def threshold_for(thresholds: dict[str, float], metric: str) -> float:
    """The metric's own threshold, else the default (``"*"``), else 10%."""
    return thresholds.get(metric, thresholds.get("*", DEFAULT_THRESHOLD))
