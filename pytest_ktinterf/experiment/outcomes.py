"""A condition's outcome, measured once per test run and shared by all its items, on any xdist worker.

A condition with prefill and decode expectations is two items but one comparison. Without xdist
the first item to run measures and its sibling reads the outcome from memory. Under ``-n N``
with any ``--dist`` mode the siblings may land on other workers (``load`` splits them, ``each``
runs every item on every worker), so the outcome is also written to a file in a folder of this
test run, shared by its workers. Interference items hold the machine lock exclusively from setup
to teardown, so "look for an outcome, else measure and write it" cannot race between workers:
whoever gets the lock first measures, the others read. The measuring worker alone adds the
comparison to its record, so the merged report has it once.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from pytest_ktinterf.datafile import write_atomic
from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.experiment.interfere import VerdictFailure
from pytest_ktinterf.measure.compare import METRICS, Comparison
from pytest_ktinterf.system.registry import registry_dir


@dataclass(frozen=True)
class Outcome:
    """What the items of one condition need to report: per-metric verdicts, a skip or an error."""

    status: str  # "measured", "skipped" or "error"
    verdicts: dict[str, list[tuple[bool, str]]]  # metric -> (fails the test, verdict line) per check
    message: str = ""
    worker: str = ""
    # metric -> JUnit properties (name, value) of its item: the effect, its interval, the verdicts
    properties: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    @classmethod
    def of(
        cls, result: Comparison | dict[str, list[tuple[bool, str]]] | BaseException, worker: str
    ) -> Outcome:
        if isinstance(result, dict):  # verdict lines per metric, made by the measurement itself
            return cls("measured", result, worker=worker)
        if isinstance(result, Comparison):
            verdicts: dict[str, list[tuple[bool, str]]] = {}
            for v in result.verdicts:
                verdicts.setdefault(v.metric, []).append((v.fails, v.line()))
            return cls("measured", verdicts, worker=worker, properties=properties(result))
        if isinstance(result, pytest.skip.Exception):
            return cls("skipped", {}, str(result.msg), worker)
        line = result.line() if isinstance(result, KtInterfError) else f"{type(result).__name__}: {result}"
        return cls("error", {}, line, worker)

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "verdicts": self.verdicts,
            "message": self.message,
            "worker": self.worker,
            "properties": self.properties,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Outcome:
        verdicts = {m: [(bool(f), str(line)) for f, line in found] for m, found in data["verdicts"].items()}
        found = data.get("properties") or {}
        properties = {m: [(str(k), str(v)) for k, v in pairs] for m, pairs in found.items()}
        return cls(str(data["status"]), verdicts, str(data["message"]), str(data["worker"]), properties)

    def judge(self, condition: str, metric: str) -> str:
        """The verdict lines for ``metric``, or raise the skip, failure or error this item reports.

        Only failing verdicts fail the item (hard claims, a regressed baseline); the report's
        cells and a lenient gate's inconclusive are lines the item prints and records.
        """
        if self.status == "skipped":
            pytest.skip(self.message)
        if self.status == "error":
            raise KtInterfError(
                f"{condition} failed when xdist worker {self.worker} ran it: {self.message}",
                "see that worker's item of this condition above",
            )
        if metric not in self.verdicts:
            pytest.skip(f"{metric} was not measured in every trial (vram needs a GPU)")
        found = self.verdicts[metric]
        failing = [line for fails, line in found if fails]
        if failing:
            raise VerdictFailure("\n".join(failing))
        return "\n".join(line for _, line in found)


def properties(comparison: Comparison) -> dict[str, list[tuple[str, str]]]:
    """Per metric, what a CI system shows beside the item (``--junitxml``'s ``<property>``s).

    The effect as people read it and as numbers, the pairs, and each verdict's word by kind
    (``expect``, ``report``, ``gate``), so a dashboard can chart the figure without the JSON record.
    """
    found: dict[str, list[tuple[str, str]]] = {}
    for metric in sorted({v.metric for v in comparison.verdicts} | set(METRICS)):
        if comparison.pairs < 2 or not comparison.measured(metric):
            continue
        ratio = comparison.ratio(metric)
        pairs = [
            ("ktinterf_condition", comparison.id or comparison.label),
            ("ktinterf_effect", ratio.as_percent_change()),
            ("ktinterf_ratio", f"{ratio.point:.4f}"),
            ("ktinterf_ratio_lo", f"{ratio.lo:.4f}"),
            ("ktinterf_ratio_hi", f"{ratio.hi:.4f}"),
            ("ktinterf_pairs", str(comparison.pairs)),
        ]
        pairs += [(f"ktinterf_{v.kind}", v.word) for v in comparison.verdicts if v.metric == metric]
        found[metric] = pairs
    return found


def runs_dir() -> Path:
    return registry_dir().parent / "runs"


def run_dir(config: pytest.Config) -> Path | None:
    """This xdist run's shared folder (named by the controller's pid and the run id), or None."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        return None
    return runs_dir() / f"{os.getppid()}-{workerinput['testrunuid']}"


def read(directory: Path | None, key: str) -> Outcome | None:
    if directory is None:
        return None
    try:
        return Outcome.from_json(json.loads((directory / f"{key}.json").read_text()))
    except FileNotFoundError:
        return None


def write(directory: Path | None, key: str, outcome: Outcome) -> None:
    """Atomically, so a reader never sees half an outcome."""
    if directory is None:
        return
    directory.mkdir(parents=True, exist_ok=True)
    write_atomic(directory / f"{key}.json", json.dumps(outcome.to_json()))


def remove_runs(owner_pid: int | None = None) -> None:
    """Remove the run folders of ``owner_pid`` (the controller at its end), or of dead controllers."""
    root = runs_dir()
    if not root.is_dir():
        return
    for folder in root.iterdir():
        pid = int(folder.name.split("-", 1)[0]) if folder.name.split("-", 1)[0].isdigit() else -1
        if pid == owner_pid or (owner_pid is None and not psutil.pid_exists(pid)):
            shutil.rmtree(folder, ignore_errors=True)
