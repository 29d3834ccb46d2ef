"""The JSON record of a session: everything measured, the one source every rendering reads.

Collected during the session (fixtures add rounds and comparisons) and written to
``--kt-report-json``. The text tables (``text.py``) and the plots (``plots.py``) are drawn from
the record, never from live objects, so a record written yesterday, or merged from xdist
workers (``merge_records``), renders exactly as it was recorded.
"""

from __future__ import annotations

import json
import math
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from pytest_ktinterf.datafile import write_atomic
from pytest_ktinterf.measure.compare import Comparison
from pytest_ktinterf.measure.samples import RoundSample

RECORD_FORMAT = "pytest-ktinterf report v1"
LABEL_MAX = 60
TABLE_METRICS = ("prefill", "decode")


def machine() -> dict[str, Any]:
    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as handle:
            for row in handle:
                if row.startswith("model name"):
                    model = row.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "hostname": platform.node(),
        "cpu_model": model,
        "logical_cpus": psutil.cpu_count(),
        "ram_mib": psutil.virtual_memory().total / 2**20,
        "kernel": platform.release(),
    }


# -- record helpers (shared with plots.py) -------------------------------------------------------


def is_finite(value: Any) -> bool:
    """A number that can be drawn or compared (JSON records may carry NaN, None or strings)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def truncate(text: str, limit: int = LABEL_MAX) -> str:
    """Long labels would stretch every row of the table; cut them, visibly."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def concurrency_rounds(record: dict[str, Any]) -> list[tuple[int, list[dict[str, Any]]]]:
    """The record's rounds per stream count, in ascending order (JSON keys are strings)."""
    found = record.get("concurrency") or {}
    return sorted((int(k), list(v)) for k, v in found.items() if v)


def median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round whose decode aggregate is the median: a real round, not a synthetic one.

    Rounds without a finite decode figure cannot be ordered; they are chosen only when there is
    nothing else.
    """
    usable = [r for r in rounds if is_finite(r.get("decode_aggregate_tps"))]
    if not usable:
        return rounds[-1]
    target = statistics.median_low([r["decode_aggregate_tps"] for r in usable])
    return next(r for r in usable if r["decode_aggregate_tps"] == target)


def percent_change(ratio: dict[str, Any] | None) -> str:
    """``-52% [-60%, -45%]`` from a record's ratio: the form people read effect sizes in."""
    if not ratio or not all(is_finite(ratio.get(k)) for k in ("point", "lo", "hi")):
        return "-"
    point, lo, hi = (100 * (ratio[k] - 1) for k in ("point", "lo", "hi"))
    return f"{point:+.0f}% [{lo:+.0f}%, {hi:+.0f}%]"


def verdict_status(verdict: dict[str, Any]) -> str:
    """``pass``, ``fail`` or ``inconclusive``; older records only say ``passed``."""
    status = verdict.get("status")
    if isinstance(status, str) and status:
        return status.lower()
    return "pass" if verdict.get("passed") else "fail"


def comparison_status(comparison: dict[str, Any]) -> str:
    """``complete`` or ``aborted`` (stopped part-way by an error); older records have no status:
    only completed comparisons reached them."""
    status = comparison.get("status")
    return status.lower() if isinstance(status, str) and status else "complete"


def condition_pairs(comparison: dict[str, Any]) -> int:
    """How many baseline/condition pairs the comparison ran: its own count, else its condition trials."""
    if isinstance(comparison.get("pairs"), int):
        return int(comparison["pairs"])
    return sum(1 for t in comparison.get("trials") or [] if t.get("arm") == "condition")


# -- rendering -----------------------------------------------------------------------------------


# -- records: merge and write --------------------------------------------------------------------


def merge_records(records: list[dict[str, Any]]) -> dict[str, Any]:
    """One record from several (one per xdist worker), so the session gets one report.

    Rounds are concatenated per stream count and comparisons in the order given; server,
    workload and machine come from the first record that has them (workers share one server
    configuration, and only the worker that ran a measurement knows it).
    """

    def first(key: str) -> Any:
        return next((r[key] for r in records if r.get(key)), {})

    concurrency: dict[int, list[dict[str, Any]]] = {}
    uncontended: dict[int, list[dict[str, Any]]] = {}
    for record in records:
        for streams, rounds in concurrency_rounds(record):
            concurrency.setdefault(streams, []).extend(rounds)
        for key, trials in (record.get("uncontended") or {}).items():
            uncontended.setdefault(int(key), []).extend(trials)
    gates = [r["baseline"] for r in records if r.get("baseline")]
    return {
        "format": first("format") or RECORD_FORMAT,
        "created": first("created") or time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": first("machine"),
        "server": first("server"),
        "workload": first("workload"),
        **({"candidate": first("candidate")} if first("candidate") else {}),
        "concurrency": {str(s): concurrency[s] for s in sorted(concurrency)},
        "comparisons": [c for r in records for c in r.get("comparisons") or []],
        "uncontended": {str(s): uncontended[s] for s in sorted(uncontended)},
        "baseline": _merge_baseline(gates),
        "merged_from": len(records),
    }


def _merge_baseline(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The workers' baseline sections: one file and fingerprint, every worker's gate verdicts."""
    if not parts:
        return {}
    merged = dict(parts[0])
    merged["verdicts"] = [v for p in parts for v in p.get("verdicts") or []]
    return merged


def json_safe(record: dict[str, Any]) -> dict[str, Any]:
    """The record as plain JSON types (actor evidence may hold paths and the like).

    What xdist sends from a worker to the controller must be plain data, and it should be the
    same data the JSON file holds.
    """
    return json.loads(json.dumps(record, default=str))


def write_record(record: dict[str, Any], path: Path) -> None:
    """Write atomically: a reader never sees half a record, even with several writers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(record, indent=1, default=str))


@dataclass
class Report:
    """Everything measured in one session."""

    server: dict[str, Any] = field(default_factory=dict)
    workload: dict[str, Any] = field(default_factory=dict)
    rounds: dict[int, list[RoundSample]] = field(default_factory=dict)
    comparisons: list[Comparison] = field(default_factory=list)
    # Uncontended trials per stream count ({"prefill": tok/s, "decode": tok/s, "t_start": ...}):
    # the designed measurement the baseline gate compares a server's own speed on.
    uncontended: dict[int, list[dict[str, float]]] = field(default_factory=dict)
    baseline: dict[str, Any] = field(default_factory=dict)  # which file, the gate's verdicts
    candidate: dict[str, Any] = field(default_factory=dict)  # the same-session A/B candidate server

    def add_round(self, sample: RoundSample) -> None:
        self.rounds.setdefault(sample.streams, []).append(sample)

    def add_comparison(self, comparison: Comparison) -> None:
        self.comparisons.append(comparison)

    @property
    def empty(self) -> bool:
        return not self.rounds and not self.comparisons and not self.uncontended

    def to_record(self) -> dict[str, Any]:
        return {
            "format": RECORD_FORMAT,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": machine(),
            "server": self.server,
            "workload": self.workload,
            "concurrency": {
                str(streams): [r.to_record() for r in rounds]
                for streams, rounds in sorted(self.rounds.items())
            },
            "comparisons": [c.to_record() for c in self.comparisons],
            "uncontended": {str(s): list(trials) for s, trials in sorted(self.uncontended.items())},
            "baseline": self.baseline,
            **({"candidate": self.candidate} if self.candidate else {}),
        }
