"""Experiment files: a workload, conditions (actors with parameters) and what each should do.

An experiment file is TOML under an ``experiments/`` directory; every condition becomes one
pytest item per metric it speaks of (``seed_report.toml::cpu_spare[prefill]``)::

    [experiment]
    title = "The seed report's association matrix"
    describes = { cpu_model = "Xeon(R) Platinum 8461V", gpu = "RTX 3090" }   # optional

    [workload]                    # optional; prompt and output length are the session's
    streams = 1                   # (--kt-prompt-tokens, --kt-max-tokens; or a condition's max_tokens)

    [design]                      # optional: interleaved pairs, sequential; the looks
    min_pairs = 8                 # (8, 11, 14) share the 95% (measure/design.py)
    max_pairs = 14
    step = 3
    rounds = 2                    # rounds per trial, the trial's figure is their median

    [bounds]                      # optional: default bound per outcome (fractions), for
    unaffected = 0.15             # expect and report alike

    [conditions.cpu_server]
    label = "CPU stress taking the server's cores"
    actor = "cpu_stress"
    params = { cores = "server" }
    expect = { decode = { outcome = "degraded", at_least = 0.25 } }
    report = { prefill = "degraded", decode = "degraded" }
    gate = { decode = 0.15 }      # optional: this condition's baseline-gate threshold

A condition says two kinds of things, and needs at least one of them:

* ``expect`` -- **hard claims** that hold on any machine, by mechanism (a stressor on the
  server's own cores takes half of each core). A claim that is not shown fails the test.
* ``report`` -- the report's matrix cells. The report measured one machine, so on another its
  cells are shown beside this machine's interval, judged with the same bounds, as *agrees*,
  *differs* or *undecided*, and never fail a test; they never buy pairs either. On the machine
  the report describes (``[experiment] describes``: every key given must match, as a
  case-insensitive substring of ``/proc/cpuinfo``'s model name or of a GPU's name) they are
  its truth, and are parsed as hard claims.

``report_effect = { decode = -0.56 }`` is how large the report measured each effect (its
tokens/s over its own uncontended ones): drawn beside this machine's interval in the plot,
judged nowhere.

How large an effect is on *this* machine is the baseline's business (``--kt-baseline-save`` /
``--kt-baseline-compare``), not a bound written here after looking at a run.

Everything is validated on load; a mistake fails collection naming the file, the key, and what
is expected there.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_ktinterf.actors.registry import ACTORS, check_params
from pytest_ktinterf.datafile import DataFileError, read_text
from pytest_ktinterf.experiment.file_error import ExperimentFileError
from pytest_ktinterf.judge.expectations import DEFAULT_BOUNDS, OUTCOMES, Expectation, ExpectationError, parse
from pytest_ktinterf.measure.compare import METRICS as PLOTTED_METRICS
from pytest_ktinterf.measure.compare import Design
from pytest_ktinterf.measure.design import TooFewPairs

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


# What the baseline gate compares per condition: throughput (the resource figures are not gated).
GATE_METRICS = ("prefill", "decode", "prefill_per_stream", "decode_per_stream")
DESCRIBES_KEYS = ("cpu_model", "gpu")
RESERVED_IDS = ("candidate", "uncontended")  # condition ids the plugin's own items use
# This machine, as ``describes`` matches it: the CPU's model name and every GPU's name.
Machine = dict[str, Any]


@dataclass(frozen=True)
class ConditionSpec:
    """One condition of an experiment: an actor (or none) and the checks on its metrics.

    ``expect`` holds the hard claims; ``report`` the report's cells (kind ``report``, or kind
    ``expect`` on the machine the report describes); ``reference`` the report's outcome word per
    metric, for the tables; ``gate`` the baseline gate's threshold per metric for this condition.
    """

    id: str
    label: str
    actor: str
    params: dict[str, Any]
    expect: dict[str, Expectation]
    reference: dict[str, str]
    streams: int | None = None
    baseline_streams: int | None = None
    max_tokens: int | None = None  # the condition's own output length, both arms (None: the session's)
    design: Design = field(default_factory=Design)
    report: dict[str, Expectation] = field(default_factory=dict)
    gate: dict[str, float] = field(default_factory=dict)
    report_effect: dict[str, float] = field(default_factory=dict)  # the report's own sizes, shown only

    @property
    def metrics(self) -> list[str]:
        """Every metric the condition speaks of, hard claims' first: one item each."""
        return list(dict.fromkeys([*self.expect, *self.report]))

    @property
    def checks(self) -> list[Expectation]:
        """Hard claims and report cells alike: the comparison judges all, only claims can fail."""
        return [*self.expect.values(), *self.report.values()]


@dataclass(frozen=True)
class Experiment:
    path: Path
    title: str
    conditions: list[ConditionSpec]
    streams: int | None = None
    describes: dict[str, str] = field(default_factory=dict)
    described: bool = False  # this machine is the one the report describes: its cells are claims
    design: Design = field(default_factory=Design)  # the file's own (conditions may override it)

    @property
    def name(self) -> str:
        return self.path.stem


def describes_machine(describes: dict[str, str], machine: Machine) -> bool:
    """Whether every given key matches: a case-insensitive substring of the CPU's or a GPU's name.

    An empty ``describes`` describes no machine: the report's cells stay the report's.
    """
    if not describes:
        return False
    names = {
        "cpu_model": [str(machine.get("cpu_model") or "")],
        "gpu": [str(g) for g in machine.get("gpus") or []],
    }
    return all(any(want.lower() in name.lower() for name in names[key]) for key, want in describes.items())


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(read_text(path))
    except tomllib.TOMLDecodeError as exc:
        raise ExperimentFileError(
            path, "(file)", f"is not valid TOML: {exc}", "TOML syntax", "correct the TOML at that line"
        ) from None
    except DataFileError as exc:  # unreadable, or not UTF-8: the reading rule's own words
        raise ExperimentFileError(path, "(file)", exc.problem, exc.expected, exc.fix) from None


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
    try:
        return Design(**merged)
    except TooFewPairs as exc:  # too few pairs for the first look's share of the 95% (measure/design.py)
        raise ExperimentFileError(
            path, f"{key}.min_pairs", exc.problem, f"min_pairs >= {exc.needed}", exc.FIX
        ) from None


def _expectations(
    path: Path, key: str, table: Any, bounds: dict[str, float], kind: str = "expect"
) -> dict[str, Expectation]:
    if not isinstance(table, dict) or not table:
        raise ExperimentFileError(
            path, key, f"got {table!r}", 'a table of metric = outcome, e.g. { prefill = "degraded" }'
        )
    found = {}
    for metric, value in table.items():
        try:
            found[metric] = parse(metric, value, bounds, key=f"{key}.{metric}", kind=kind)
        except ExpectationError as exc:
            raise ExperimentFileError(path, exc.key, exc.problem, exc.expected) from None
    return found


def _gate(path: Path, key: str, table: Any) -> dict[str, float]:
    """``gate = { decode = 0.15 }``: the regression (a fraction) this condition's baseline gate allows."""
    if not isinstance(table, dict) or not table:
        raise ExperimentFileError(
            path, key, f"got {table!r}", "a table of metric = fraction, e.g. { decode = 0.15 }"
        )
    found = {}
    for metric, value in table.items():
        if metric not in GATE_METRICS:
            raise ExperimentFileError(
                path, f"{key}.{metric}", "is not a gated metric", f"one of {', '.join(GATE_METRICS)}"
            )
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
            raise ExperimentFileError(
                path, f"{key}.{metric}", f"got {value!r}", "a fraction in (0, 1), e.g. 0.15 for 15%"
            )
        found[metric] = float(value)
    return found


CONDITION_KEYS = {
    "label", "actor", "params", "expect", "report", "report_effect", "gate", "streams", "baseline_streams",
    "design", "max_tokens",
}  # fmt: skip


def _report_effect(path: Path, key: str, table: Any) -> dict[str, float]:
    """``report_effect = { decode = -0.56 }``: the report's measured change per metric (-0.56 = -56%)."""
    example = "a table of metric = change, e.g. { decode = -0.56 } for -56%"
    if not isinstance(table, dict) or not table:
        raise ExperimentFileError(path, key, f"got {table!r}", example)
    found = {}
    for metric, value in table.items():
        if metric not in PLOTTED_METRICS:
            raise ExperimentFileError(
                path, f"{key}.{metric}", "is not a plotted metric", " or ".join(PLOTTED_METRICS)
            )
        if isinstance(value, bool) or not isinstance(value, int | float) or not -1 < value < 10:
            raise ExperimentFileError(path, f"{key}.{metric}", f"got {value!r}", example)
        found[metric] = float(value)
    return found


def _condition(
    path: Path, cid: str, table: Any, bounds: dict[str, float], design: Design, default_streams: int | None,
    described: bool = False,
) -> ConditionSpec:  # fmt: skip
    key = f"conditions.{cid}"
    if not cid.replace("_", "").replace("-", "").isalnum():
        raise ExperimentFileError(path, key, f"id {cid!r} has odd characters", "letters, digits, _ and -")
    if cid.split("-")[0] in RESERVED_IDS:
        raise ExperimentFileError(path, key, f"id {cid!r} is reserved", "another id", "rename the condition")
    data = _table(path, {key: table}, key, CONDITION_KEYS)
    actor = data.get("actor")
    if not isinstance(actor, str) or actor not in ACTORS:  # a list or table cannot be looked up
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
    if "expect" not in data and "report" not in data:
        raise ExperimentFileError(
            path, f"{key}.expect", "is missing, and so is report",
            'at least one: expect = { decode = "collapsed" } (claims that hold on any machine) '
            'or report = { decode = "degraded" } (the report\'s matrix cells)',
        )  # fmt: skip
    expect = _expectations(path, f"{key}.expect", data["expect"], bounds) if "expect" in data else {}
    report = (
        _expectations(path, f"{key}.report", data["report"], bounds, "expect" if described else "report")
        if "report" in data
        else {}
    )
    gate = _gate(path, f"{key}.gate", data["gate"]) if "gate" in data else {}
    sizes = (
        _report_effect(path, f"{key}.report_effect", data["report_effect"]) if "report_effect" in data else {}
    )
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
        reference={m: e.outcome for m, e in report.items()},
        streams=streams,
        baseline_streams=baseline,
        max_tokens=_int(path, f"{key}.max_tokens", data["max_tokens"], 4) if "max_tokens" in data else None,
        design=_design(path, f"{key}.design", design_table, design),
        report=report,
        gate=gate,
        report_effect=sizes,
    )


def _describes(path: Path, head: dict[str, Any]) -> dict[str, str]:
    table = head.get("describes", {})
    example = 'a table such as { cpu_model = "Xeon(R) Platinum 8461V", gpu = "RTX 3090" }'
    if not isinstance(table, dict) or ("describes" in head and not table):
        raise ExperimentFileError(path, "experiment.describes", f"got {table!r}", example)
    for name, value in table.items():
        if name not in DESCRIBES_KEYS:
            raise ExperimentFileError(
                path, f"experiment.describes.{name}", "is not a known key",
                f"only {', '.join(DESCRIBES_KEYS)}",
            )  # fmt: skip
        if not isinstance(value, str) or not value.strip():
            raise ExperimentFileError(
                path, f"experiment.describes.{name}", f"got {value!r}", "a non-empty part of the name"
            )
    return {name: value.strip() for name, value in table.items()}


def load_experiment(path: Path, machine: Callable[[], Machine] | None = None) -> Experiment:
    """Read and validate an experiment file; raises :class:`ExperimentFileError`.

    ``machine`` says what this machine is (``cpu_model``, ``gpus``); it is asked only when the
    file ``describes`` a machine (reading GPU names starts NVML), and without it the report's
    cells stay the report's. On the described machine the report's cells are hard claims.
    """
    data = _read(path)
    unknown = sorted(set(data) - {"experiment", "workload", "design", "bounds", "conditions"})
    if unknown:
        raise ExperimentFileError(
            path, unknown[0], "is not a known table", "experiment, workload, design, bounds, conditions"
        )
    head = _table(path, data, "experiment", {"title", "source", "describes"}, required=True)
    describes = _describes(path, head)
    described = bool(describes) and machine is not None and describes_machine(describes, machine())
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
            "at least one [conditions.<id>] table with actor and expect or report",
        )
    conditions = [
        _condition(path, cid, t, bounds, design, streams, described) for cid, t in conditions_table.items()
    ]
    return Experiment(
        path=path,
        title=str(head.get("title", path.stem)),
        conditions=conditions,
        streams=streams,
        describes=describes,
        described=described,
        design=design,
    )
