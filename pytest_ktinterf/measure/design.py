"""The sequential trial design: how many interleaved pairs a comparison takes (``measure.compare``).

**Looks share the 95%.** A design judges its checks at each of its looks (8, 11, 14 pairs by
default) and stops at the first that decides them. Judging every look at 95% would give a check
K chances to be wrongly decided, and the false-alarm rate would grow with K (simulated with
``tests/benchmarks/bench_sequential_looks.py``: 6/10/14 pairs at 95% each stops wrongly on one
side 4.7-4.9% of the time, not 2.5%). So each look is judged at ``1 - 0.05 / K`` (Bonferroni): the
chance that any look errs is then at most 5%, whatever schedule a user writes, with no table or
simulation behind it. The signed-rank intervals are discrete, so a calibrated constant level
(Pocock) would not be exact either; Bonferroni is conservative, and the default looks start at
8 pairs, where its interval (98.3% with 3 looks) is already narrower than one look at 6 pairs
and 95% (median width 2.24 against 2.47 noise SDs, as the benchmark prints).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pytest_ktinterf.judge.stats import signed_rank_depth

OVERALL = 0.95
"""The confidence a design's verdicts have over all its looks together."""


def look_level(looks: int) -> float:
    """The confidence each of ``looks`` looks is judged at so that all together keep ``OVERALL``."""
    return 1 - (1 - OVERALL) / max(1, looks)


def fewest_pairs(confidence: float) -> int:
    """The fewest pairs for which an exact signed-rank interval at ``confidence`` exists."""
    n = 1
    while signed_rank_depth(n, confidence) == 0:
        n += 1
    return n


def looks_of(min_pairs: int, max_pairs: int, step: int) -> list[int]:
    """The pair counts a design judges at: from ``min_pairs`` every ``step``, and ``max_pairs``."""
    return [*range(min_pairs, max_pairs, step), max_pairs]


def first_look_needs(min_pairs: int, max_pairs: int, step: int) -> int:
    """The pairs the first look needs for an interval at its share of the 95% (the one rule)."""
    return fewest_pairs(look_level(len(looks_of(min_pairs, max_pairs, step))))


class TooFewPairs(ValueError):
    """A design whose first look cannot bound an interval at its share of the 95%."""

    FIX = "raise min_pairs, or take fewer looks (a larger step, or a lower max_pairs)"

    def __init__(self, design: Design, needed: int) -> None:
        self.needed = needed
        self.problem = (
            f"min_pairs={design.min_pairs}: {len(design.looks())} looks are each judged at "
            f"{100 * design.confidence:.3g}%, which needs at least {needed} pairs at the first look"
        )
        super().__init__(f"{self.problem}; {self.FIX}")


@dataclass(frozen=True)
class Design:
    """How many interleaved pairs: ``min_pairs``, then ``step`` more while undecided, up to ``max_pairs``.

    The first look must be able to bound an interval at the per-look level (``confidence``):
    6 pairs for one look at 95%, 7 for three looks at 98.3%. Each trial is the median of
    ``rounds`` back-to-back rounds; a trial that follows the other arm's begins with a short
    settling round, recorded and never counted (``Probe.warm``): the first round after an actor
    starts or stops is the one that runs slow (measurement note 7's +-20%). The seed file counts
    two rounds a trial: five of its main-job runs at one round gave width sums of 263-440 points
    (mean 361), three runs at two rounds 265, 212 and 66 (``tests/benchmarks/bench_widths.py``,
    README "Settling rounds").
    """

    min_pairs: int = 8
    max_pairs: int = 14
    step: int = 3
    rounds: int = 1

    def __post_init__(self) -> None:
        if self.max_pairs < self.min_pairs:
            raise ValueError(f"max_pairs={self.max_pairs} is below min_pairs={self.min_pairs}")
        if self.step < 1:
            raise ValueError(f"step={self.step} must be at least 1")
        if self.rounds < 1:
            raise ValueError(f"rounds={self.rounds} must be at least 1")
        needed = first_look_needs(self.min_pairs, self.max_pairs, self.step)
        if self.min_pairs < needed:
            raise TooFewPairs(self, needed)

    @property
    def confidence(self) -> float:
        """The level each look is judged at (see the module's docstring)."""
        return look_level(len(self.looks()))

    def capped(self, max_pairs: int | None) -> Design:
        """This design with ``--kt-max-pairs`` applied (None: unchanged).

        min_pairs follows a lower cap down; a higher cap adds looks, so the first look moves up
        as far as the stricter per-look level needs.
        """
        if max_pairs is None:
            return self
        first = min(self.min_pairs, max_pairs)
        while first < max_pairs and first < first_look_needs(first, max_pairs, self.step):
            first += 1
        return dataclasses.replace(self, min_pairs=first, max_pairs=max_pairs)

    def looks(self) -> list[int]:
        """The pair counts at which expectations are judged."""
        return looks_of(self.min_pairs, self.max_pairs, self.step)
