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

    @property
    def bounded(self) -> bool:
        """Whether a ratio's interval has both ends: too few pairs for its level give [0, inf)."""
        return self.lo > 0 and math.isfinite(self.hi)

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


def signed_rank_null(n: int) -> list[int]:
    """Counts of the Wilcoxon signed-rank statistic T+ over all 2**n sign patterns (exact)."""
    counts = [1]
    for rank in range(1, n + 1):
        grown = [0] * (len(counts) + rank)
        for t, c in enumerate(counts):
            grown[t] += c  # this rank negative
            grown[t + rank] += c  # this rank positive
        counts = grown
    return counts


def signed_rank_depth(n: int, confidence: float) -> int:
    """How many Walsh averages to cut from each end for an exact ``confidence`` interval.

    The largest ``k`` with P(T+ < k) <= alpha / 2 under the null; 0 when ``n`` pairs are too few
    for that confidence (n < 6 at 95%): the interval is then unbounded and decides nothing.
    """
    alpha = 1 - confidence
    counts = signed_rank_null(n)
    total = 2**n
    k, below = 0, 0
    while k < len(counts) and (below + counts[k]) / total <= alpha / 2:
        below += counts[k]
        k += 1
    return k


def paired_ratio_ci(
    condition: Sequence[float], baseline: Sequence[float], *, confidence: float = 0.95
) -> Interval:
    """condition / baseline as a ratio, from interleaved pairs: Hodges-Lehmann with an exact interval.

    Each pair ``i`` (baseline trial i, condition trial i, measured back to back) gives a log
    ratio; the estimate is the median of their pairwise (Walsh) averages and the interval is the
    exact one from the Wilcoxon signed-rank distribution. Why this and not the bootstrap: with
    no effect, baseline and condition are exchangeable within a pair, so the log ratios are
    symmetric about 0 and the interval's coverage is exact at any number of pairs -- the
    false-alarm rate of a verdict is then what its confidence says, not an asymptotic hope.
    Pairing also cancels slow drift shared by the two trials of a pair.
    """
    if len(condition) != len(baseline):
        raise ValueError(f"paired samples differ in length: {len(condition)} vs {len(baseline)}")
    logs = [
        math.log(c / b)
        for c, b in zip(condition, baseline, strict=True)
        if math.isfinite(c) and math.isfinite(b) and c > 0 and b > 0
    ]
    if len(logs) < 2:
        raise ValueError(f"need at least 2 complete pairs with positive throughput, got {len(logs)}")
    on_logs = walsh_interval(logs, confidence)
    return Interval(
        point=math.exp(on_logs.point),
        lo=math.exp(on_logs.lo),  # exp(-inf) == 0.0: no bound from too few pairs
        hi=math.exp(on_logs.hi),
        confidence=confidence,
    )


def walsh_interval(logs: Sequence[float], confidence: float = 0.95) -> Interval:
    """Hodges-Lehmann location of ``logs`` with its exact Wilcoxon signed-rank interval, on the log scale.

    The one-sample form behind :func:`paired_ratio_ci` (there the values are a pair's log ratios),
    shared with the baseline gate, which locates one session's throughput from its trials. The
    interval is exact when the values are symmetric about their centre; too few values for
    ``confidence`` give ``(-inf, inf)``, which decides nothing.
    """
    values = [float(v) for v in logs]
    if not values:
        raise ValueError("need at least 1 value")
    walsh = sorted((a + b) / 2 for i, a in enumerate(values) for b in values[i:])
    point = statistics.median(walsh)
    k = signed_rank_depth(len(values), confidence)
    if k == 0:
        return Interval(point=point, lo=-math.inf, hi=math.inf, confidence=confidence)
    return Interval(point=point, lo=walsh[k - 1], hi=walsh[len(walsh) - k], confidence=confidence)
