"""The report people read: the seed report's tables, measured, plus a JSON record of everything.

Collected during the session (fixtures add rounds and comparisons), printed in pytest's terminal
summary and written to ``--kt-report-json``. Rendering works on the JSON record only
(``render_lines(record)``), never on live objects, so that what is printed is exactly what was
recorded, a record written yesterday (or merged from xdist workers, ``merge_records``) renders
the same way, and plots (plots.py) are drawn from the same data.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from pytest_ktinterf.compare import Comparison
from pytest_ktinterf.samples import RoundSample

RECORD_FORMAT = "pytest-ktinterf report v1"
LABEL_MAX = 60
TABLE_METRICS = ("prefill", "decode")

# The seed report's matrix in its own words, as the interference table shows them.
REFERENCE_WORDS = {
    "degraded": "yes",
    "collapsed": "yes (collapse)",
    "unaffected": "no",
    "improved": "better",
}


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} MiB"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]

    def line(cells: list[str]) -> str:
        return " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=False)).rstrip()

    return [line(header), "-+-".join("-" * w for w in widths), *(line(r) for r in rows)]


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


def summation(per_stream: list[float], aggregate: float) -> str:
    """The report's form, e.g. ``30+17+27+17 ≈ 91 (sum of streams); true aggregate 25``.

    The sum is only ever shown beside the true aggregate: it overstates throughput when the
    streams take turns on the same cores.
    """
    if len(per_stream) == 1:
        return f"{per_stream[0]:.3g}"
    if not per_stream:
        return f"{aggregate:.3g}" if is_finite(aggregate) else "-"
    parts = "+".join(f"{x:.3g}" for x in per_stream)
    return f"{parts} ≈ {sum(per_stream):.3g} (sum of streams); true aggregate {aggregate:.3g}"


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


def condition_pairs(comparison: dict[str, Any]) -> int:
    """How many baseline/condition pairs the comparison ran: its own count, else its condition trials."""
    if isinstance(comparison.get("pairs"), int):
        return int(comparison["pairs"])
    return sum(1 for t in comparison.get("trials") or [] if t.get("arm") == "condition")


def streams_cell(comparison: dict[str, Any]) -> str:
    """``4``, or ``4 vs 1`` when the baseline arm ran at another concurrency."""
    streams, baseline = comparison.get("streams", "?"), comparison.get("baseline_streams")
    return f"{streams}" if baseline in (None, streams) else f"{streams} vs {baseline}"


# -- rendering -----------------------------------------------------------------------------------


def _header_lines(record: dict[str, Any]) -> list[str]:
    out: list[str] = []
    server = record.get("server") or {}
    if server:
        out.append(
            f"server: {server.get('description')} at {server.get('url')}"
            f"; cores {server.get('cpus') or 'unknown'}"
            + (f"; {server['threads']} threads" if server.get("threads") else "")
            + (f"; {server['parallel']} slots" if server.get("parallel") else "")
        )
    w = record.get("workload") or {}
    if w:
        out.append(
            f"workload: {w.get('prompt_tokens')} prompt tokens, {w.get('max_tokens')} generated "
            f"(ignore_eos), /v1/{'chat/completions' if w.get('api') == 'chat' else 'completions'}"
        )
    return out


def _throughput_lines(levels: list[tuple[int, list[dict[str, Any]]]]) -> list[str]:
    rows = []
    for streams, rounds in levels:
        middle = median_round(rounds)
        rows.append(
            [
                str(streams),
                str(len(rounds)),
                *(
                    summation(list(middle.get(f"{m}_per_stream_tps") or []), middle.get(f"{m}_aggregate_tps"))
                    for m in TABLE_METRICS
                ),
            ]
        )
    return [
        "",
        "Throughput (tokens/s; median round of each concurrency)",
        *_table(["streams", "rounds", "prefill", "decode"], rows),
    ]


def _memory_lines(levels: list[tuple[int, list[dict[str, Any]]]]) -> list[str]:
    rows = []
    for streams, rounds in levels:
        res = [r["resources"] for r in rounds if r.get("resources")]
        if not res:
            continue

        def peak(key: str, found: list[dict[str, Any]] = res) -> float | None:
            vals = [r[key] for r in found if r.get(key) is not None]
            return max(vals) if vals else None

        gpu = res[-1].get("gpu", "")
        rows.append(
            [
                str(streams),
                _mib(peak("ram_used_peak_mib")),
                _mib(peak("server_rss_peak_mib")),
                _mib(peak("swap_used_peak_mib")),
                _mib(peak("vram_used_peak_mib")) if gpu == "present" else gpu,
            ]
        )
    return [
        "",
        "Memory while measuring (peak)",
        *_table(["streams", "host RAM used", "server RSS", "swap used", "VRAM"], rows),
    ]


def _metric_order(keys: Iterable[str]) -> list[str]:
    """prefill and decode first (the table's columns), then the rest alphabetically."""
    keys = list(keys)
    return [m for m in TABLE_METRICS if m in keys] + sorted(k for k in keys if k not in TABLE_METRICS)


def report_says(reference: dict[str, Any] | None) -> str:
    """``prefill yes / decode no``: the seed report's matrix row in the table's short words."""
    reference = reference or {}
    metrics = _metric_order(set(TABLE_METRICS) | set(reference))
    words = []
    for metric in metrics:
        said = reference.get(metric)
        words.append(f"{metric} {REFERENCE_WORDS.get(str(said), str(said)) if said else '-'}")
    return " / ".join(words)


def _verdict_cell(comparison: dict[str, Any]) -> str:
    """Every verdict as ``STATUS metric expectation``; ratios of off-table metrics ride along."""
    ratios = comparison.get("ratios") or {}
    parts = []
    for v in comparison.get("verdicts") or []:
        metric = str(v.get("metric", "?"))
        text = f"{verdict_status(v).upper()} {metric} {v.get('expectation', '')}".rstrip()
        if metric not in TABLE_METRICS and metric in ratios:
            text += f" ({percent_change(ratios[metric])})"
        parts.append(text)
    if parts:
        return "; ".join(parts)
    expected = comparison.get("expected") or {}
    if expected:
        asked = "; ".join(f"{m} {expected[m]}" for m in _metric_order(expected))
        return f"(not checked: expected {asked})"
    return "(no expectation)"


def _first_word(text: Any) -> str | None:
    return str(text).split(maxsplit=1)[0].lower() if text else None


def _override_notes(comparison: dict[str, Any], name: str) -> list[str]:
    """Where this machine's expectation contradicts the seed report's matrix (a hardware profile
    overrode it), say so: otherwise a PASS would read as confirming the report.

    Metrics the matrix says nothing about (ram, vram, ...) are not contradictions.
    """
    reference = comparison.get("reference") or {}
    expected = comparison.get("expected") or {}
    notes = []
    for metric in _metric_order(expected):
        said = reference.get(metric)
        if said and _first_word(expected[metric]) != _first_word(said):
            notes.append(
                f"{name}: expected here: {metric} {expected[metric]} (the report says {said} for {metric})"
            )
    return notes


def _interference_lines(comparisons: list[dict[str, Any]]) -> list[str]:
    with_reference = any(c.get("reference") for c in comparisons)
    header = ["condition", "streams", "pairs", *TABLE_METRICS]
    header += ["report says"] if with_reference else []
    header += ["verdict"]
    rows, notes, experiments, profiles = [], [], [], []
    for cmp in comparisons:
        label = truncate(str(cmp.get("label", "?")))
        name = f"{cmp['id']}: {label}" if cmp.get("id") else label
        ratios = cmp.get("ratios") or {}
        row = [name, streams_cell(cmp), str(condition_pairs(cmp))]
        row += [percent_change(ratios.get(m)) for m in TABLE_METRICS]
        row += [report_says(cmp.get("reference")) if cmp.get("reference") else "-"] if with_reference else []
        row += [_verdict_cell(cmp)]
        rows.append(row)
        notes += _override_notes(cmp, str(cmp.get("id") or label))
        if cmp.get("experiment") and cmp["experiment"] not in experiments:
            experiments.append(cmp["experiment"])
        if cmp.get("profile") and cmp["profile"] not in profiles:
            profiles.append(cmp["profile"])
    out = [
        "",
        "Interference (condition / baseline: Hodges-Lehmann change over interleaved pairs, [exact 95% CI])",
        *_table(header, rows),
    ]
    if experiments:
        out.append(f"conditions from: {', '.join(str(e) for e in experiments)}")
    if profiles:
        out.append(f"expectations overridden for this machine by profile: {', '.join(map(str, profiles))}")
    out += notes
    return out


def render_lines(record: dict[str, Any]) -> list[str]:
    """The report's text (server, throughput, memory and interference tables) from a record.

    Pure: the record (``Report.to_record()``, a JSON file read back, or ``merge_records``) is
    all it reads. Optional keys that older records lack (reference, expected, id, status, ...)
    only add columns and notes when present.
    """
    out = _header_lines(record)
    levels = concurrency_rounds(record)
    if levels:
        out += _throughput_lines(levels)
        out += _memory_lines(levels)
    comparisons = record.get("comparisons") or []
    if comparisons:
        out += _interference_lines(comparisons)
    return out


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
    for record in records:
        for streams, rounds in concurrency_rounds(record):
            concurrency.setdefault(streams, []).extend(rounds)
    return {
        "format": first("format") or RECORD_FORMAT,
        "created": first("created") or time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": first("machine"),
        "server": first("server"),
        "workload": first("workload"),
        "concurrency": {str(s): concurrency[s] for s in sorted(concurrency)},
        "comparisons": [c for r in records for c in r.get("comparisons") or []],
        "merged_from": len(records),
    }


def json_safe(record: dict[str, Any]) -> dict[str, Any]:
    """The record as plain JSON types (actor evidence may hold paths and the like).

    What xdist sends from a worker to the controller must be plain data, and it should be the
    same data the JSON file holds.
    """
    return json.loads(json.dumps(record, default=str))


def write_record(record: dict[str, Any], path: Path) -> None:
    """Write atomically: a reader never sees half a record, even with several writers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=1, default=str))
    tmp.replace(path)


@dataclass
class Report:
    """Everything measured in one session."""

    server: dict[str, Any] = field(default_factory=dict)
    workload: dict[str, Any] = field(default_factory=dict)
    rounds: dict[int, list[RoundSample]] = field(default_factory=dict)
    comparisons: list[Comparison] = field(default_factory=list)

    def add_round(self, sample: RoundSample) -> None:
        self.rounds.setdefault(sample.streams, []).append(sample)

    def add_comparison(self, comparison: Comparison) -> None:
        self.comparisons.append(comparison)

    @property
    def empty(self) -> bool:
        return not self.rounds and not self.comparisons

    def lines(self) -> list[str]:
        """The printed report: rendered from the record, so text and JSON cannot disagree."""
        return render_lines(self.to_record())

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
        }

    def write_json(self, path: Path) -> None:
        write_record(self.to_record(), path)

    def write_plots(self, directory: Path) -> list[Path]:
        """``effects.svg`` / ``throughput.svg`` in ``directory``, those that have data."""
        # Imported here: plots.py reads records with this module's helpers.
        from pytest_ktinterf.plots import write_plots

        return write_plots(self.to_record(), directory)
