"""Statistics for comparing a condition with its baseline: medians and a bootstrap interval.

Throughput samples are noisy and skewed (measurement note 7: single-request prefill varied
91-131 tok/s on an idle machine), so we compare medians, and report the condition/baseline
ratio with a percentile-bootstrap confidence interval rather than a single number. The
resampling is seeded so a report can be reproduced from its JSON record.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided confidence interval."""

    point: float
    lo: float
    hi: float
    confidence: float

    def __str__(self) -> str:
        return f"{self.point:.3f} [{self.lo:.3f}, {self.hi:.3f}]"

    def as_percent_change(self) -> str:
        """``-52% [-60%, -45%]``: the form people read effect sizes in."""
        return f"{100 * (self.point - 1):+.0f}% [{100 * (self.lo - 1):+.0f}%, {100 * (self.hi - 1):+.0f}%]"


def _clean(values: Sequence[float], name: str) -> list[float]:
    kept = [float(v) for v in values if math.isfinite(v)]
    if len(kept) < 2:
        raise ValueError(f"{name}: need at least 2 finite samples, got {len(kept)}")
    return kept


def median_ratio_ci(
    condition: Sequence[float],
    baseline: Sequence[float],
    *,
    confidence: float = 0.95,
    resamples: int = 4000,
    seed: int = 0,
) -> Interval:
    """Ratio of medians (condition / baseline) with a percentile bootstrap interval.

    Each group is resampled independently; with few trials the interval is wide, which is
    the honest answer and what the verdict then has to live with.
    """
    cond = _clean(condition, "condition")
    base = _clean(baseline, "baseline")
    if min(base) <= 0:
        raise ValueError("baseline: throughput samples must be positive")
    rng = random.Random(seed)
    point = statistics.median(cond) / statistics.median(base)
    ratios = sorted(
        statistics.median(rng.choices(cond, k=len(cond))) / statistics.median(rng.choices(base, k=len(base)))
        for _ in range(resamples)
    )
    alpha = (1 - confidence) / 2
    lo = ratios[math.floor(alpha * (resamples - 1))]
    hi = ratios[math.ceil((1 - alpha) * (resamples - 1))]
    return Interval(point=point, lo=min(lo, point), hi=max(hi, point), confidence=confidence)
