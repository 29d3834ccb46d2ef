"""Property: any valid condition table round-trips through TOML text and loads as written."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_ktinterf.experiment.schema import GATE_METRICS, load_experiment
from pytest_ktinterf.judge.expectations import DEFAULT_BOUNDS, METRICS, OUTCOMES
from tests.experiment_texts import HEAD

# -- property: any valid condition table round-trips through TOML text ------------------


def toml_value(value: Any) -> str:
    """A tiny TOML serializer for the values experiment files use."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # basic TOML strings share JSON's escapes for these
    if isinstance(value, int | float):
        assert math.isfinite(value)
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


fractions = st.floats(0.05, 0.95).map(lambda x: round(x, 3))
cores = st.one_of(st.sampled_from(["server", "spare"]), st.lists(st.integers(0, 63), max_size=4))

ACTOR_PARAMS = {
    "cpu_stress": st.fixed_dictionaries(
        {"cores": cores},
        optional={"load_percent": st.integers(1, 100), "workers_per_core": st.integers(1, 4)},
    ),
    "memory_bandwidth": st.fixed_dictionaries({}, optional={"cores": cores}),
    "ram_filler": st.one_of(
        st.fixed_dictionaries({"gib": st.sampled_from([0.5, 1, 2.0])}, optional={"active": st.booleans()}),
        st.fixed_dictionaries({"fraction_of_available": fractions}, optional={"mlock": st.booleans()}),
        st.fixed_dictionaries({"leave_available_gib": st.integers(1, 8)}),
    ),
    "ram_overflow": st.fixed_dictionaries(
        {}, optional={"mode": st.sampled_from(["contained", "host"]), "working_set_fraction": fractions}
    ),
    "gpu_memory": st.fixed_dictionaries(
        {"gib": st.sampled_from([1, 4.0])}, optional={"device": st.integers(0, 3)}
    ),
    "gpu_compute": st.fixed_dictionaries({}, optional={"duty_percent": st.integers(1, 100)}),
}


@st.composite
def expectation_values(draw: st.DrawFn) -> Any:
    outcome = draw(st.sampled_from(OUTCOMES))
    if draw(st.booleans()):
        return outcome
    table: dict[str, Any] = {"outcome": outcome}
    size_key = "within" if outcome == "unaffected" else "at_least"
    bound = None
    if draw(st.booleans()):
        bound = draw(st.floats(0.05, 0.45).map(lambda x: round(x, 3)))
        table[size_key] = bound
    if outcome in ("degraded", "improved") and draw(st.booleans()):
        table["at_most"] = round((bound or DEFAULT_BOUNDS[outcome]) + draw(st.floats(0.05, 0.5)), 3)
    return table


@st.composite
def conditions(draw: st.DrawFn) -> dict[str, dict[str, Any]]:
    names = st.from_regex(r"[a-z][a-z0-9_-]{0,11}", fullmatch=True)
    ids = draw(st.lists(names, min_size=1, max_size=5, unique=True))
    found = {}
    for cid in ids:
        actor = draw(st.sampled_from(sorted(ACTOR_PARAMS)))
        metrics = draw(st.lists(st.sampled_from(METRICS), min_size=1, max_size=len(METRICS), unique=True))
        table: dict[str, Any] = {"actor": actor}
        if draw(st.booleans()):
            table["label"] = draw(st.text("abc xyz-()%", max_size=20))
        params = draw(ACTOR_PARAMS[actor])
        if params or draw(st.booleans()):
            table["params"] = params
        kinds = draw(st.sampled_from([("expect",), ("report",), ("expect", "report")]))
        for kind in kinds:
            table[kind] = {m: draw(expectation_values()) for m in metrics}
        if draw(st.booleans()):
            table["gate"] = {m: draw(fractions) for m in metrics if m in GATE_METRICS} or {"decode": 0.1}
        found[cid] = table
    return found


def experiment_text(tables: dict[str, dict[str, Any]]) -> str:
    lines = [HEAD]
    for cid, table in tables.items():
        lines.append(f"[conditions.{cid}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in table.items()]
        lines.append("")
    return "\n".join(lines)


@given(conditions())
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_valid_condition_tables_round_trip(tables: dict[str, dict[str, Any]]):
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory, "exp.toml")
        path.write_text(experiment_text(tables))
        experiment = load_experiment(path)
    assert [c.id for c in experiment.conditions] == list(tables)
    for condition in experiment.conditions:
        table = tables[condition.id]
        assert condition.actor == table["actor"]
        assert condition.params == table.get("params", {})
        assert condition.label == table.get("label", condition.id)
        assert condition.gate == table.get("gate", {})
        assert condition.reference == {m: e.outcome for m, e in condition.report.items()}
        for kind, parsed in (("expect", condition.expect), ("report", condition.report)):
            assert list(parsed) == list(table.get(kind, {}))
            for metric, value in table.get(kind, {}).items():
                got = parsed[metric]
                spec = {"outcome": value} if isinstance(value, str) else value
                assert (got.metric, got.kind) == (metric, kind)
                assert got.outcome == spec["outcome"]
                bound = spec.get("within", spec.get("at_least", DEFAULT_BOUNDS[spec["outcome"]]))
                assert got.bound == bound
                assert got.at_most == spec.get("at_most")
