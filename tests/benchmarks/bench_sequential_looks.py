"""How often a sequential design decides wrongly on the boundary, and how wide its intervals are.

    python -m tests.benchmarks.bench_sequential_looks [RUNS]

On the boundary (no effect) a look decides wrongly when its exact signed-rank interval of the
pairs' log ratios excludes no change. For independent log ratios symmetric about 0 the joint law
of the signed-rank statistics over the looks does not depend on the noise's distribution, so this
simulation gives the exact rate for any such noise (normal draws are used). Printed per design:
the share of runs that stopped wrongly below and above (nominal: 2.5% each for 95% overall), and
the median width of the first look's interval in noise SDs. A benchmark, not a test: it judges
the rule in ``measure/design.py``, whose README section quotes its numbers.
"""

from __future__ import annotations

import random
import statistics
import sys

from pytest_ktinterf.judge.stats import walsh_interval
from pytest_ktinterf.measure.design import Design, look_level

DESIGNS: list[tuple[str, list[int], float]] = [
    ("6/10/14 at 95% each (before)", [6, 10, 14], 0.95),
    ("8/11/14, Bonferroni (default)", Design().looks(), Design().confidence),
    ("8..20 step 3, Bonferroni", Design().capped(20).looks(), Design().capped(20).confidence),
    ("6, one look at 95%", [6], look_level(1)),
]


def wrong_stops(looks: list[int], confidence: float, runs: int, seed: int) -> tuple[float, float, float]:
    """(share stopped below, share stopped above, median first-look width in SDs)."""
    rng = random.Random(seed)
    below = above = 0
    widths = []
    for _ in range(runs):
        logs = [rng.gauss(0.0, 1.0) for _ in range(looks[-1])]
        for k, n in enumerate(looks):
            interval = walsh_interval(logs[:n], confidence)
            if k == 0:
                widths.append(interval.hi - interval.lo)
            if interval.hi < 0:
                below += 1
                break
            if interval.lo > 0:
                above += 1
                break
    return below / runs, above / runs, statistics.median(widths)


def main(argv: list[str]) -> int:
    runs = int(argv[0]) if argv else 20000
    print(f"{runs} simulated A/A comparisons per design (nominal: 2.5% per side)")
    print(f"{'design':34} {'looks':>14} {'level':>7} {'below':>7} {'above':>7} {'width':>6}")
    for name, looks, confidence in DESIGNS:
        low, high, width = wrong_stops(looks, confidence, runs, seed=1)
        shown = "/".join(map(str, looks))
        print(
            f"{name:34} {shown:>14} {100 * confidence:6.2f}% {100 * low:6.2f}% {100 * high:6.2f}% "
            f"{width:5.2f}σ"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
