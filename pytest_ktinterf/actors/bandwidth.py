"""Memory-bandwidth pressure: stress-ng ``--stream`` workers pinned to chosen cores.

The report's "RAM bandwidth" row is a co-runner that streams through memory. STREAM-like
kernels (copy, scale, add, triad over arrays larger than the last-level cache) are the purest
form of it. While it runs, the proof is the workers' share of their cores (as for CPU stress);
after it stops, stress-ng's own figure of the read and write rates it achieved is added to the
evidence, so a result says how much bandwidth was really taken.

Measurement note 5: a server whose decode is not bandwidth-bound (a 98 MB model at ~4 GB/s)
will not notice; that is a property of the model, not proof that bandwidth never matters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pytest_ktinterf.actors.cpu import CpuStress

_RATE = re.compile(r"stream: memory rate: ([\d.]+) MB read/sec, ([\d.]+) MB write/sec")


def parse_stream_rates(log: str) -> tuple[float, float] | None:
    """(read, write) MB/s summed over the instances of the last stress-ng run in ``log``."""
    runs = log.split("dispatching hogs")
    found = _RATE.findall(runs[-1])
    if not found:
        return None
    return sum(float(r) for r, _ in found), sum(float(w) for _, w in found)


@dataclass
class MemoryBandwidth(CpuStress):
    """``len(cores) * workers_per_core`` stress-ng stream workers on ``cores``."""

    stressor: str = "stream"
    name: str = "memory-bandwidth"

    def _live_evidence(self) -> dict[str, Any]:
        record = super()._live_evidence()
        record["kind"] = "memory-bandwidth"
        rates = None
        if self.finished():
            try:
                rates = parse_stream_rates(self.log_path.read_text(errors="replace"))
            except OSError:
                rates = None
        record["read_mb_per_s"], record["write_mb_per_s"] = rates or (None, None)
        return record
