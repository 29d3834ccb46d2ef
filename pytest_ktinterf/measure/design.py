"""The sequential trial design: how many interleaved pairs a comparison takes (``measure.compare``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Design:
    """How many interleaved pairs: ``min_pairs``, then ``step`` more while undecided, up to ``max_pairs``.

    6 pairs is the fewest for which an exact 95% interval exists (see ``stats.paired_ratio_ci``).
    Each trial is the median of ``rounds`` back-to-back rounds: single prefills of a short prompt
    vary by +-20% on a small VM (measurement note 7), and a few rounds per trial cost less than
    the many more pairs (each with an actor start and stop) that the same precision would need.
    """

    min_pairs: int = 6
    max_pairs: int = 14
    step: int = 4
    rounds: int = 1

    def __post_init__(self) -> None:
        if self.min_pairs < 6:
            raise ValueError(f"min_pairs={self.min_pairs}: at least 6 pairs are needed for a 95% interval")
        if self.max_pairs < self.min_pairs:
            raise ValueError(f"max_pairs={self.max_pairs} is below min_pairs={self.min_pairs}")
        if self.step < 1:
            raise ValueError(f"step={self.step} must be at least 1")
        if self.rounds < 1:
            raise ValueError(f"rounds={self.rounds} must be at least 1")

    def capped(self, max_pairs: int | None) -> Design:
        """This design with ``--kt-max-pairs`` applied (None: unchanged); min_pairs follows it down."""
        if max_pairs is None:
            return self
        return dataclasses.replace(self, min_pairs=min(self.min_pairs, max_pairs), max_pairs=max_pairs)

    def looks(self) -> list[int]:
        """The pair counts at which expectations are judged."""
        counts = list(range(self.min_pairs, self.max_pairs, self.step))
        return [*counts, self.max_pairs]
