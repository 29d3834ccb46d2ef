"""Experiment files: a workload, conditions (actors with parameters) and what each should do.

An experiment file is TOML under an ``experiments/`` directory; every condition becomes one
pytest item per expected metric (``seed_report.toml::cpu_spare[prefill]``)::

    [experiment]
    title = "The seed report's association matrix"

    [workload]                    # optional; prompt and output length are the session's
    streams = 1                   # (--kt-prompt-tokens, --kt-max-tokens)

    [design]                      # optional: interleaved pairs, sequential
    min_pairs = 6
    max_pairs = 14
    step = 4
    rounds = 2                    # rounds per trial, the trial's figure is their median

    [bounds]                      # optional: default bound per outcome (fractions)
    unaffected = 0.15

    [conditions.cpu_spare]
    label = "CPU stress on spare cores"
    actor = "cpu_stress"
    params = { cores = "spare" }
    expect = { prefill = "degraded", decode = "unaffected" }

A **profile** (``experiments/profiles/*.toml``) overrides expectations for a kind of machine,
because the report's matrix is one machine's truth (measurement note 4)::

    [profile]
    name = "small-vm"
    description = "why this machine differs"
    match = { logical_cpus_max = 4, gpu = false }

    [expect.seed_report.cpu_spare]   # <experiment file stem>.<condition id>
    decode = { outcome = "degraded", at_least = 0.05 }

Everything is validated on load; a mistake fails collection naming the file, the key, and what
is expected there.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_ktinterf.actors.registry import ACTORS, check_params
from pytest_ktinterf.judge.expectations import DEFAULT_BOUNDS, OUTCOMES, Expectation, ExpectationError, parse
from pytest_ktinterf.measure.compare import Design

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


class ExperimentFileError(Exception):
    """A mistake in an experiment or profile file: which file, which key, what is expected."""

    def __init__(self, path: Path | str, key: str, problem: str, expected: str) -> None:
        self.path, self.key, self.problem, self.expected = Path(path), key, problem, expected
        super().__init__(f"{path}: [{key}] {problem}; expected {expected}")


@dataclass(frozen=True)
class ConditionSpec:
    """One condition of an experiment: an actor (or none) and the expectations on its metrics."""

    id: str
    label: str
    actor: str
    params: dict[str, Any]
    expect: dict[str, Expectation]
    reference: dict[str, str]
    streams: int | None = None
    baseline_streams: int | None = None
    design: Design = field(default_factory=Design)
    overridden_by: str | None = None


@dataclass(frozen=True)
class Experiment:
    path: Path
    title: str
    conditions: list[ConditionSpec]
    streams: int | None = None

    @property
    def name(self) -> str:
        return self.path.stem


@dataclass(frozen=True)
class Profile:
    """Per-machine overrides: experiment stem -> condition id -> metric -> expectation."""

    path: Path
    name: str
    description: str
    match: dict[str, Any]
    expect: dict[str, dict[str, dict[str, Expectation]]]

    def matches(self, machine: dict[str, Any]) -> bool:
        m = self.match
        cpus = machine["logical_cpus"]
        return (
            cpus >= m.get("logical_cpus_min", 0)
            and cpus <= m.get("logical_cpus_max", cpus)
            and ("gpu" not in m or m["gpu"] == machine["gpu"])
        )


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ExperimentFileError(path, "(file)", f"is not valid TOML: {exc}", "TOML syntax") from None
    except OSError as exc:
        raise ExperimentFileError(path, "(file)", f"cannot be read: {exc}", "a readable file") from None


def _table(
    path: Path, data: dict[str, Any], key: str, allowed: set[str], required: bool = False
) -> dict[str, Any]:
    """A sub-table, checked to be a table with only the allowed keys."""
    if key not in data:
        if required:
            raise ExperimentFileError(path, key, "is missing", f"a [{key}] table")
        return {}
    table = data[key]
    if not isinstance(table, dict):
        raise ExperimentFileError(path, key, f"is {type(table).__name__} {table!r}", "a table")
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ExperimentFileError(
            path, f"{key}.{unknown[0]}", "is not a known key", f"only {', '.join(sorted(allowed))}"
        )
    return table


def _int(path: Path, key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ExperimentFileError(path, key, f"got {value!r}", f"an integer >= {minimum}")
    return value


DESIGN_KEYS = ("min_pairs", "max_pairs", "step", "rounds")


def _design(path: Path, key: str, table: dict[str, Any], base: Design) -> Design:
    values = {
        name: _int(path, f"{key}.{name}", table[name], 1 if name in ("step", "rounds") else 6)
        for name in DESIGN_KEYS
        if name in table
    }
    unknown = sorted(set(table) - set(DESIGN_KEYS))
    if unknown:
        raise ExperimentFileError(path, f"{key}.{unknown[0]}", "is not a known key", ", ".join(DESIGN_KEYS))
    merged = {
        "min_pairs": base.min_pairs, "max_pairs": base.max_pairs, "step": base.step, "rounds": base.rounds,
        **values,
    }  # fmt: skip
    if merged["max_pairs"] < merged["min_pairs"]:
        raise ExperimentFileError(
            path, f"{key}.max_pairs", f"{merged['max_pairs']} is below min_pairs {merged['min_pairs']}",
            "max_pairs >= min_pairs",
        )  # fmt: skip
    return Design(**merged)


def _expectations(path: Path, key: str, table: Any, bounds: dict[str, float]) -> dict[str, Expectation]:
    if not isinstance(table, dict) or not table:
        raise ExperimentFileError(
            path, key, f"got {table!r}", 'a table of metric = outcome, e.g. { prefill = "degraded" }'
        )
    found = {}
    for metric, value in table.items():
        try:
            found[metric] = parse(metric, value, bounds, key=f"{key}.{metric}")
        except ExpectationError as exc:
            raise ExperimentFileError(path, exc.key, exc.problem, exc.expected) from None
    return found


CONDITION_KEYS = {"label", "actor", "params", "expect", "streams", "baseline_streams", "design"}


def _condition(
    path: Path, cid: str, table: Any, bounds: dict[str, float], design: Design, default_streams: int | None
) -> ConditionSpec:
    key = f"conditions.{cid}"
    if not cid.replace("_", "").replace("-", "").isalnum():
        raise ExperimentFileError(path, key, f"id {cid!r} has odd characters", "letters, digits, _ and -")
    data = _table(path, {key: table}, key, CONDITION_KEYS)
    actor = data.get("actor")
    if actor not in ACTORS:
        raise ExperimentFileError(
            path, f"{key}.actor", f"unknown actor {actor!r}", f"one of {', '.join(ACTORS)}"
        )
    params = data.get("params", {})
    if not isinstance(params, dict):
        raise ExperimentFileError(
            path, f"{key}.params", f"got {params!r}", "a table of the actor's parameters"
        )
    for sub, problem, expected in check_params(actor, params):
        raise ExperimentFileError(path, f"{key}.{sub}", problem, expected)
    if "expect" not in data:
        raise ExperimentFileError(
            path, f"{key}.expect", "is missing", 'what the condition should do, e.g. { decode = "degraded" }'
        )
    expect = _expectations(path, f"{key}.expect", data["expect"], bounds)
    streams = _int(path, f"{key}.streams", data["streams"], 1) if "streams" in data else default_streams
    baseline = (
        _int(path, f"{key}.baseline_streams", data["baseline_streams"], 1)
        if "baseline_streams" in data
        else None
    )
    if actor == "none" and (baseline is None or baseline == (streams or 1)):  # the runner's default: 1
        raise ExperimentFileError(
            path, f"{key}.baseline_streams", "actor 'none' with equal streams in both arms compares nothing",
            "baseline_streams different from streams (e.g. streams = 4, baseline_streams = 1)",
        )  # fmt: skip
    design_table = data.get("design", {})
    if not isinstance(design_table, dict):
        raise ExperimentFileError(path, f"{key}.design", f"got {design_table!r}", "a table")
    return ConditionSpec(
        id=cid,
        label=str(data.get("label", cid)),
        actor=actor,
        params=params,
        expect=expect,
        reference={m: e.outcome for m, e in expect.items()},
        streams=streams,
        baseline_streams=baseline,
        design=_design(path, f"{key}.design", design_table, design),
    )


def load_experiment(path: Path) -> Experiment:
    """Read and validate an experiment file; raises :class:`ExperimentFileError`."""
    data = _read(path)
    unknown = sorted(set(data) - {"experiment", "workload", "design", "bounds", "conditions"})
    if unknown:
        raise ExperimentFileError(
            path, unknown[0], "is not a known table", "experiment, workload, design, bounds, conditions"
        )
    head = _table(path, data, "experiment", {"title", "source"}, required=True)
    workload = _table(path, data, "workload", {"streams"})
    streams = _int(path, "workload.streams", workload["streams"], 1) if "streams" in workload else None
    bounds_table = _table(path, data, "bounds", set(OUTCOMES))
    bounds = dict(DEFAULT_BOUNDS)
    for outcome, value in bounds_table.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 10:
            raise ExperimentFileError(path, f"bounds.{outcome}", f"got {value!r}", "a fraction, e.g. 0.15")
        bounds[outcome] = float(value)
    design = _design(path, "design", _table(path, data, "design", set(DESIGN_KEYS)), Design())
    conditions_table = data.get("conditions")
    if not isinstance(conditions_table, dict) or not conditions_table:
        raise ExperimentFileError(
            path,
            "conditions",
            "has no conditions",
            "at least one [conditions.<id>] table with actor and expect",
        )
    conditions = [_condition(path, cid, t, bounds, design, streams) for cid, t in conditions_table.items()]
    return Experiment(
        path=path,
        title=str(head.get("title", path.stem)),
        conditions=conditions,
        streams=streams,
    )


def load_profile(path: Path) -> Profile:
    """Read and validate a profile file; raises :class:`ExperimentFileError`."""
    data = _read(path)
    unknown = sorted(set(data) - {"profile", "expect"})
    if unknown:
        raise ExperimentFileError(path, unknown[0], "is not a known table", "profile, expect")
    head = _table(path, data, "profile", {"name", "description", "match"}, required=True)
    match = head.get("match", {})
    allowed = {"logical_cpus_min", "logical_cpus_max", "gpu"}
    if not isinstance(match, dict) or set(match) - allowed:
        raise ExperimentFileError(
            path, "profile.match", f"got {match!r}", f"a table with {', '.join(sorted(allowed))}"
        )
    expect: dict[str, dict[str, dict[str, Expectation]]] = {}
    for name, value in match.items():
        if name == "gpu" and not isinstance(value, bool):
            raise ExperimentFileError(path, "profile.match.gpu", f"got {value!r}", "true or false")
        if name != "gpu":
            _int(path, f"profile.match.{name}", value, 1)
    expect_table = data.get("expect", {})
    stems = set(expect_table) if isinstance(expect_table, dict) else set()  # not a table: _table says so
    for stem, conditions in _table(path, data, "expect", stems).items():
        if not isinstance(conditions, dict):
            raise ExperimentFileError(
                path, f"expect.{stem}", f"got {conditions!r}", "[expect.<experiment>.<condition>]"
            )
        expect[stem] = {
            cid: _expectations(path, f"expect.{stem}.{cid}", table, DEFAULT_BOUNDS)
            for cid, table in conditions.items()
        }
    return Profile(
        path=path,
        name=str(head.get("name", path.stem)),
        description=str(head.get("description", "")),
        match=match,
        expect=expect,
    )


def apply_profile(experiment: Experiment, profile: Profile | None) -> Experiment:
    """The experiment with the profile's expectations replacing the file's, metric by metric.

    The file's own expectations stay as ``reference`` (what the report says), so reports show
    both. Overrides naming a condition the experiment lacks are an error (a typo would
    otherwise silently keep the report's expectation).
    """
    if profile is None or experiment.name not in profile.expect:
        return experiment
    overrides = profile.expect[experiment.name]
    ids = {c.id for c in experiment.conditions}
    for cid in overrides:
        if cid not in ids:
            raise ExperimentFileError(
                profile.path, f"expect.{experiment.name}.{cid}", f"names no condition of {experiment.path}",
                f"one of {', '.join(sorted(ids))}",
            )  # fmt: skip
    conditions = []
    for cond in experiment.conditions:
        if cond.id in overrides:
            expect = {**cond.expect, **overrides[cond.id]}
            cond = ConditionSpec(**{**cond.__dict__, "expect": expect, "overridden_by": profile.name})
        conditions.append(cond)
    return Experiment(**{**experiment.__dict__, "conditions": conditions})


def find_profile(directory: Path, machine: dict[str, Any]) -> Profile | None:
    """The one profile in ``directory/profiles`` that matches this machine (None if none does)."""
    folder = directory / "profiles"
    profiles = [load_profile(p) for p in sorted(folder.glob("*.toml"))] if folder.is_dir() else []
    matching = [p for p in profiles if p.matches(machine)]
    if len(matching) > 1:
        names = ", ".join(str(p.path) for p in matching)
        raise ExperimentFileError(
            folder, "profile.match", f"several profiles match this machine: {names}",
            "narrower match tables, or choose one with --kt-profile PATH",
        )  # fmt: skip
    return matching[0] if matching else None
