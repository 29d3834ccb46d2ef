"""The report people read: the seed report's tables, measured, plus a JSON record of everything.

Collected during the session (fixtures add rounds and comparisons), printed in pytest's terminal
summary and written to ``--kt-report-json``. Rendering is kept apart from measuring so the same
record can be re-rendered, compared against a baseline, or plotted later.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from pytest_ktinterf.compare import METRICS, Comparison
from pytest_ktinterf.samples import RoundSample


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

    # -- rendering -------------------------------------------------------------------------

    def lines(self) -> list[str]:
        out: list[str] = []
        if self.server:
            out.append(
                f"server: {self.server.get('description')} at {self.server.get('url')}"
                f"; cores {self.server.get('cpus') or 'unknown'}"
                + (f"; {self.server['threads']} threads" if self.server.get("threads") else "")
                + (f"; {self.server['parallel']} slots" if self.server.get("parallel") else "")
            )
        if self.workload:
            w = self.workload
            out.append(
                f"workload: {w.get('prompt_tokens')} prompt tokens, {w.get('max_tokens')} generated "
                f"(ignore_eos), /v1/{'chat/completions' if w.get('api') == 'chat' else 'completions'}"
            )
        if self.rounds:
            out += ["", "Throughput (tokens/s; median round of each concurrency)"]
            rows = []
            for streams in sorted(self.rounds):
                median_round = _median_round(self.rounds[streams])
                rows.append(
                    [
                        str(streams),
                        str(len(self.rounds[streams])),
                        median_round.summation("prefill"),
                        median_round.summation("decode"),
                    ]
                )
            out += _table(["streams", "rounds", "prefill", "decode"], rows)
            out += ["", "Memory while measuring (peak)"]
            mem_rows = []
            for streams in sorted(self.rounds):
                res = [r.resources for r in self.rounds[streams] if r.resources]
                if not res:
                    continue

                def peak(key: str, rows: list[dict[str, Any]] = res) -> float | None:
                    vals = [r[key] for r in rows if r.get(key) is not None]
                    return max(vals) if vals else None

                gpu = res[-1].get("gpu", "")
                mem_rows.append(
                    [
                        str(streams),
                        _mib(peak("ram_used_peak_mib")),
                        _mib(peak("server_rss_peak_mib")),
                        _mib(peak("swap_used_peak_mib")),
                        _mib(peak("vram_used_peak_mib")) if gpu == "present" else gpu,
                    ]
                )
            out += _table(["streams", "host RAM used", "server RSS", "swap used", "VRAM"], mem_rows)
        if self.comparisons:
            out += [
                "",
                "Interference (condition / baseline: change of the median, [95% CI], trials interleaved)",
            ]
            rows = []
            for cmp in self.comparisons:
                n = sum(1 for t in cmp.trials if t.arm == "condition")
                verdicts = "; ".join(
                    f"{'PASS' if v.passed else 'FAIL'} {v.metric} {v.expectation}" for v in cmp.verdicts
                )
                rows.append(
                    [
                        cmp.label,
                        f"{cmp.streams}",
                        str(n),
                        *(cmp.ratio(m).as_percent_change() for m in METRICS),
                        verdicts or "(no expectation)",
                    ]
                )
            out += _table(["condition", "streams", "pairs", "prefill", "decode", "verdict"], rows)
        return out

    def to_record(self) -> dict[str, Any]:
        return {
            "format": "pytest-ktinterf report v1",
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
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.to_record(), indent=1, default=str))
        tmp.replace(path)


def _median_round(rounds: list[RoundSample]) -> RoundSample:
    """The round whose decode aggregate is the median: a real round, not a synthetic one."""
    ordered = sorted(rounds, key=lambda r: r.metric("decode"))
    target = statistics.median_low([r.metric("decode") for r in ordered])
    return next(r for r in ordered if r.metric("decode") == target)
