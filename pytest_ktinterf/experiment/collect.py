"""Experiment files become pytest items: one per condition and metric it speaks of.

``experiments/seed_report.toml::cpu_spare[decode]`` reads like the report's matrix cell it
checks. A metric's item fails only on a hard claim (``expect``); one with only the report's
cell prints whether this machine agrees with it and passes. The items of one condition share a
single comparison (run by whichever of them runs first), so asking for prefill and decode costs
one set of trials, not two.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_ktinterf.datafile import peek_text
from pytest_ktinterf.experiment import candidate, outcomes, uncontended
from pytest_ktinterf.experiment.interfere import run
from pytest_ktinterf.experiment.outcomes import Outcome
from pytest_ktinterf.experiment.schema import (
    ConditionSpec,
    Experiment,
    ExperimentFileError,
    Machine,
    load_experiment,
)
from pytest_ktinterf.measure.compare import Comparison
from pytest_ktinterf.measure.monitor import Gpu
from pytest_ktinterf.options import options_key
from pytest_ktinterf.report.record import machine
from pytest_ktinterf.testbed import Testbed

UNCONTENDED = "uncontended"  # the items of the server's own speed (with a baseline flag)
EXPERIMENTS_INI = "kt_experiments"  # ini: files or folders whose TOML files are experiments


@functools.cache
def this_machine() -> Machine:
    """What ``[experiment] describes`` matches: the CPU's model name and the GPUs' names.

    Asked only by a file that describes a machine, once per session (NVML starts here).
    """
    return {"cpu_model": machine()["cpu_model"], "gpus": Gpu().names()}


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
    text = peek_text(file_path)  # a file that is not UTF-8 is still recognised, and gets its error
    return text is not None and DECLARES_EXPERIMENT.search(text) is not None


class ExperimentFile(pytest.File):
    """One experiment file; its conditions' comparisons are kept here for the metric items."""

    experiment: Experiment

    def collect(self) -> Iterator[pytest.Item]:
        try:
            self.experiment = load_experiment(self.path, this_machine)
        except ExperimentFileError as exc:
            raise self.CollectError(f"{exc}") from None
        self.outcomes: dict[str, Outcome] = {}
        self.errors: dict[str, BaseException] = {}
        for condition in self.experiment.conditions:
            for metric in condition.metrics:
                yield ConditionItem.from_parent(
                    self,
                    name=f"{condition.id}[{metric}]",
                    callobj=_item_function(self, condition.id, metric, _condition_runner(self, condition)),
                )
        if self.config.stash[options_key].baseline.active:  # the server's own speed, for the gate
            for metric in uncontended.METRICS:
                yield ConditionItem.from_parent(
                    self,
                    name=f"{UNCONTENDED}[{metric}]",
                    callobj=_item_function(self, UNCONTENDED, metric, _uncontended_runner(self)),
                )
        if self.config.stash[options_key].candidate:  # same-session A/B against a candidate server
            for metric in candidate.METRICS:
                yield ConditionItem.from_parent(
                    self,
                    name=f"{candidate.CANDIDATE}[{metric}]",
                    callobj=_item_function(self, candidate.CANDIDATE, metric, _candidate_runner(self)),
                )
            for condition in self.experiment.conditions:  # and is it more sensitive to neighbours?
                name = candidate.effect_item(condition.id)
                for metric in [m for m in condition.metrics if m in candidate.METRICS]:
                    yield ConditionItem.from_parent(
                        self,
                        name=f"{name}[{metric}]",
                        callobj=_item_function(self, name, metric, _effect_runner(self, condition)),
                    )


class ConditionItem(pytest.Function):
    """A ``Function`` so that fixtures, markers and ``-k`` work as for any test."""

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, 0, self.name  # a line is required: pytest places skips by it


def _selected_metrics(node: ExperimentFile, name: str) -> set[str]:
    """Metrics of this condition whose items this session runs (``-k``, node ids, ``-m``)."""
    prefix = f"{name}["
    return {
        item.name[len(prefix) : -1]
        for item in node.session.items
        if item.parent is node and item.name.startswith(prefix)
    }


Runner = Callable[[Testbed], "Comparison | dict[str, list[tuple[bool, str]]]"]


def _condition_runner(node: ExperimentFile, condition: ConditionSpec) -> Runner:
    def measure(testbed: Testbed) -> Comparison:
        return run(
            testbed,
            condition,
            metrics=_selected_metrics(node, condition.id) or None,
            experiment=str(node.path.relative_to(node.config.rootpath)),
        )

    return measure


def _uncontended_runner(node: ExperimentFile) -> Runner:
    def measure(testbed: Testbed) -> dict[str, list[tuple[bool, str]]]:
        experiment = node.experiment
        return uncontended.run(
            testbed,
            uncontended.stream_counts(experiment),
            experiment.design.capped(testbed.options.max_pairs),
            _selected_metrics(node, UNCONTENDED) or set(uncontended.METRICS),
        )

    return measure


def _candidate_runner(node: ExperimentFile) -> Runner:
    def measure(testbed: Testbed) -> Comparison:
        return candidate.run(
            testbed,
            node.experiment,
            _selected_metrics(node, candidate.CANDIDATE) or set(candidate.METRICS),
            str(node.path.relative_to(node.config.rootpath)),
        )

    return measure


def _effect_runner(node: ExperimentFile, condition: ConditionSpec) -> Runner:
    def measure(testbed: Testbed) -> Comparison:
        name = candidate.effect_item(condition.id)
        return candidate.run_condition(
            testbed,
            condition,
            _selected_metrics(node, name) or set(candidate.METRICS),
            str(node.path.relative_to(node.config.rootpath)),
        )

    return measure


def _item_function(node: ExperimentFile, name: str, metric: str, measure: Runner) -> Any:
    """The item of one metric: the first of its siblings to run measures, the others read the outcome."""
    # Unique in the test run (two files may share a stem), readable in the run folder.
    key = f"{node.path.stem}-{name}-{hashlib.sha1(node.nodeid.encode()).hexdigest()[:8]}"

    def experiment_condition(kt_testbed: Testbed, request: pytest.FixtureRequest) -> None:
        if name in node.errors:  # this process measured and failed: the same error again
            raise node.errors[name]
        shared = outcomes.run_dir(node.config)
        outcome = node.outcomes.get(name) or outcomes.read(shared, key)
        if outcome is None:
            try:
                result: Comparison | dict[str, list[tuple[bool, str]]] | BaseException = measure(kt_testbed)
            except BaseException as exc:  # skips too: the condition's other items share the outcome
                result = exc
                node.errors[name] = exc
            outcome = Outcome.of(result, worker=os.environ.get("PYTEST_XDIST_WORKER", ""))
            node.outcomes[name] = outcome
            outcomes.write(shared, key, outcome)
            if isinstance(result, BaseException):
                raise result
        # --junitxml writes these as the testcase's <property>s, which CI systems show beside the
        # test. Added as record_property would, without its warning: pytest's default xunit2 schema
        # lists no testcase properties, but pytest writes them and Jenkins and GitLab read them.
        request.node.user_properties.extend(outcome.properties.get(metric, []))
        print(outcome.judge(name, metric))

    experiment_condition.pytestmark = [pytest.mark.interference]  # type: ignore[attr-defined]
    return experiment_condition
