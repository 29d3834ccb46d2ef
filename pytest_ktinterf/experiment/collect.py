"""Experiment files become pytest items: one per condition and expected metric.

``experiments/seed_report.toml::cpu_spare[decode]`` reads like the report's matrix cell it
checks. The items of one condition share a single comparison (run by whichever of them runs
first), so asking for prefill and decode costs one set of trials, not two.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from pytest_ktinterf.actors.gpu import gpu_unavailable_reason
from pytest_ktinterf.experiment import outcomes
from pytest_ktinterf.experiment.interfere import run
from pytest_ktinterf.experiment.outcomes import Outcome
from pytest_ktinterf.experiment.schema import (
    ConditionSpec,
    Experiment,
    ExperimentFileError,
    Profile,
    apply_profile,
    find_profile,
    load_experiment,
    load_profile,
)
from pytest_ktinterf.measure.compare import Comparison
from pytest_ktinterf.options import options_key
from pytest_ktinterf.testbed import Testbed

EXPERIMENTS_INI = "kt_experiments"  # ini: files or folders whose TOML files are experiments


@functools.cache
def this_machine() -> dict[str, Any]:
    """What profiles match on: logical CPUs and whether a usable GPU exists."""
    return {"logical_cpus": psutil.cpu_count() or 1, "gpu": gpu_unavailable_reason() is None}


def resolve_profile(setting: str, rootpath: Path, directory: Path) -> Profile | None:
    """``--kt-profile``: auto (match this machine), none, or a file."""
    if setting == "none":
        return None
    if setting == "auto":
        return find_profile(directory, this_machine())
    path = Path(rootpath, setting)
    if not path.is_file():
        raise ExperimentFileError(
            path, "--kt-profile", "does not exist", "auto, none, or the path of a profile file"
        )
    return load_profile(path)


DECLARES_EXPERIMENT = re.compile(r"^\s*\[\s*experiment\s*\]\s*(#.*)?$", re.MULTILINE)


def is_experiment_file(file_path: Path, config: pytest.Config) -> bool:
    """A TOML file with a top-level ``[experiment]`` table, or one under an ini ``kt_experiments`` path.

    Recognised by content, not by folder name: ML projects keep their own TOML configs in
    ``experiments/`` folders, and those must be left alone. The table is found by a line match,
    not by parsing, so a broken experiment file is still ours and gets its error.
    """
    if file_path.suffix != ".toml":
        return False
    declared = [Path(p) for p in config.getini(EXPERIMENTS_INI)]
    if any(file_path == p or p in file_path.parents for p in declared):
        return True
    try:
        return DECLARES_EXPERIMENT.search(file_path.read_text(errors="replace")) is not None
    except OSError:
        return False


class ExperimentFile(pytest.File):
    """One experiment file; its conditions' comparisons are kept here for the metric items."""

    experiment: Experiment
    profile: Profile | None = None

    def collect(self) -> Iterator[pytest.Item]:
        options = self.config.stash[options_key]
        try:
            experiment = load_experiment(self.path)
            self.profile = resolve_profile(options.profile, self.config.rootpath, self.path.parent)
            self.experiment = apply_profile(experiment, self.profile)
        except ExperimentFileError as exc:
            raise self.CollectError(f"{exc}") from None
        self.outcomes: dict[str, Outcome] = {}
        self.errors: dict[str, BaseException] = {}
        for condition in self.experiment.conditions:
            for metric in condition.expect:
                yield ConditionItem.from_parent(
                    self,
                    name=f"{condition.id}[{metric}]",
                    callobj=_item_function(self, condition, metric),
                )


class ConditionItem(pytest.Function):
    """A ``Function`` so that fixtures, markers and ``-k`` work as for any test."""

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, 0, self.name  # a line is required: pytest places skips by it


def _selected_metrics(node: ExperimentFile, condition: ConditionSpec) -> set[str]:
    """Metrics of this condition whose items this session runs (``-k``, node ids, ``-m``)."""
    prefix = f"{condition.id}["
    return {
        item.name[len(prefix) : -1]
        for item in node.session.items
        if item.parent is node and item.name.startswith(prefix)
    }


def _item_function(node: ExperimentFile, condition: ConditionSpec, metric: str) -> Any:
    # Unique in the test run (two files may share a stem), readable in the run folder.
    key = f"{node.path.stem}-{condition.id}-{hashlib.sha1(node.nodeid.encode()).hexdigest()[:8]}"

    def experiment_condition(kt_testbed: Testbed) -> None:
        if condition.id in node.errors:  # this process measured and failed: the same error again
            raise node.errors[condition.id]
        shared = outcomes.run_dir(node.config)
        outcome = node.outcomes.get(condition.id) or outcomes.read(shared, key)
        if outcome is None:
            try:
                result: Comparison | BaseException = run(
                    kt_testbed,
                    condition,
                    metrics=_selected_metrics(node, condition) or None,
                    experiment=str(node.path.relative_to(node.config.rootpath)),
                )
            except BaseException as exc:  # skips too: the condition's other items share the outcome
                result = exc
                node.errors[condition.id] = exc
            outcome = Outcome.of(result, worker=os.environ.get("PYTEST_XDIST_WORKER", ""))
            node.outcomes[condition.id] = outcome
            outcomes.write(shared, key, outcome)
            if isinstance(result, BaseException):
                raise result
        print(outcome.judge(condition.id, metric))

    experiment_condition.pytestmark = [pytest.mark.interference]  # type: ignore[attr-defined]
    return experiment_condition
