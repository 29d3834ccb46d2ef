"""Experiment and profile files: what loads, what each mistake says, and how pytest collects them.

Every mistake must fail naming the file, the key, and what is expected there; the pytester
tests check that this is what a user sees at collection (one message, no traceback). They only
ever collect (``--collect-only``): nothing here starts a server or measures anything.
"""

from __future__ import annotations

import json
import math
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_ktinterf.actors.registry import ACTORS
from pytest_ktinterf.experiment.schema import (
    CONDITION_KEYS,
    ExperimentFileError,
    apply_profile,
    find_profile,
    load_experiment,
    load_profile,
)
from pytest_ktinterf.judge.expectations import DEFAULT_BOUNDS, METRICS, OUTCOMES, Expectation
from pytest_ktinterf.measure.compare import Design

SEED_REPORT = Path(__file__).resolve().parent.parent / "experiments" / "seed_report.toml"

HEAD = """\
[experiment]
title = "a test experiment"
"""

CPU = """\
[conditions.cpu]
label = "CPU stress on spare cores"
actor = "cpu_stress"
params = { cores = "spare" }
expect = { prefill = "degraded", decode = "unaffected" }
"""

RAM = """\
[conditions.ram]
actor = "ram_filler"
params = { gib = 1 }
expect = { decode = { outcome = "degraded", at_least = 0.2 } }
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


# -- the real file -------------------------------------------------------------------------


def test_the_seed_report_loads():
    experiment = load_experiment(SEED_REPORT)
    ids = [c.id for c in experiment.conditions]
    assert len(ids) == len(set(ids)) >= 10
    assert experiment.name == "seed_report"
    assert experiment.streams == 1
    for condition in experiment.conditions:
        assert condition.expect, condition.id
        assert condition.actor in ACTORS
        assert condition.reference == {m: e.outcome for m, e in condition.expect.items()}
        assert condition.overridden_by is None
        assert 6 <= condition.design.min_pairs <= condition.design.max_pairs
        assert condition.design == experiment.conditions[0].design  # the file's [design] for all
    by_id = {c.id: c for c in experiment.conditions}
    assert by_id["cpu_server"].expect["decode"] == Expectation("decode", "degraded", 0.25)
    concurrency = by_id["concurrency"]
    assert (concurrency.streams, concurrency.baseline_streams) == (4, 1)
    assert concurrency.expect["prefill"].region == pytest.approx((1.3, 1.5))


def test_a_minimal_file_loads_with_defaults(tmp_path: Path):
    experiment = load_experiment(write(tmp_path, "exp.toml", HEAD + CPU + RAM))
    cpu, ram = experiment.conditions
    assert (cpu.id, cpu.label, cpu.actor) == ("cpu", "CPU stress on spare cores", "cpu_stress")
    assert cpu.params == {"cores": "spare"}
    assert cpu.expect["prefill"] == Expectation("prefill", "degraded", DEFAULT_BOUNDS["degraded"])
    assert ram.label == "ram"  # the id when no label is given
    assert ram.expect["decode"].bound == 0.2
    assert experiment.title == "a test experiment"
    assert cpu.design == Design()


def test_bounds_and_designs_cascade(tmp_path: Path):
    text = HEAD + "[bounds]\ndegraded = 0.2\n[design]\nmax_pairs = 10\nrounds = 3\n" + CPU + RAM
    text += "[conditions.ram.design]\nmin_pairs = 8\nrounds = 1\n"
    cpu, ram = load_experiment(write(tmp_path, "exp.toml", text)).conditions
    assert cpu.expect["prefill"].bound == 0.2  # the file's default
    assert ram.expect["decode"].bound == 0.2  # given explicitly
    assert cpu.design == Design(6, 10, 4, rounds=3)
    assert ram.design == Design(8, 10, 4, rounds=1)


# -- each mistake names the file, the key and what is expected ---------------------------

NONE_ACTOR = '[conditions.conc]\nactor = "none"\nexpect = { decode = "improved" }\n'

MISTAKES = {
    "invalid TOML": (HEAD + "[conditions.cpu\nactor = 1\n", "(file)", "TOML syntax"),
    "missing [experiment]": (CPU, "experiment", "a [experiment] table"),
    "unknown top-level table": (
        HEAD + "[extras]\nx = 1\n" + CPU,
        "extras",
        "experiment, workload, design, bounds, conditions",
    ),
    "unknown [experiment] key": (HEAD + 'author = "me"\n' + CPU, "experiment.author", "only source, title"),
    "no conditions": (HEAD, "conditions", "at least one [conditions.<id>] table"),
    "condition is not a table": (HEAD + "[conditions]\ncpu = 3\n", "conditions.cpu", "a table"),
    "unknown condition key": (
        HEAD + CPU + 'colour = "red"\n',
        "conditions.cpu.colour",
        "only " + ", ".join(sorted(CONDITION_KEYS)),
    ),
    "unknown actor": (
        HEAD + CPU.replace('"cpu_stress"', '"cpu_burner"'),
        "conditions.cpu.actor",
        "one of " + ", ".join(ACTORS),
    ),
    "missing actor": (
        HEAD + CPU.replace('actor = "cpu_stress"\n', ""),
        "conditions.cpu.actor",
        "one of none, cpu_stress",
    ),
    "unknown actor param": (
        HEAD + CPU.replace('cores = "spare"', 'cores = "spare", speed = 3'),
        "conditions.cpu.params.speed",
        "cores, load_percent, workers_per_core",
    ),
    "wrong param type": (
        HEAD + CPU.replace('cores = "spare"', "cores = 3"),
        "conditions.cpu.params.cores",
        '"server", "spare" or a list of core numbers',
    ),
    "bad core name": (
        HEAD + CPU.replace('cores = "spare"', 'cores = "all"'),
        "conditions.cpu.params.cores",
        '"server", "spare" or a list of core numbers',
    ),
    "load_percent out of range": (
        HEAD + CPU.replace('cores = "spare"', 'cores = "spare", load_percent = 150'),
        "conditions.cpu.params.load_percent",
        "an integer percentage, 1 to 100",
    ),
    "bool for an integer param": (
        HEAD + CPU.replace('cores = "spare"', 'cores = "spare", load_percent = true'),
        "conditions.cpu.params.load_percent",
        "an integer",
    ),
    "missing required param": (
        HEAD + CPU.replace('params = { cores = "spare" }\n', ""),
        "conditions.cpu.params.cores",
        '"server", "spare" or a list of core numbers',
    ),
    "fraction out of range": (
        HEAD + RAM.replace("gib = 1", "fraction_of_available = 1.5"),
        "conditions.ram.params.fraction_of_available",
        "a fraction in (0, 1)",
    ),
    "negative size": (
        HEAD + RAM.replace("gib = 1", "gib = -2"),
        "conditions.ram.params.gib",
        "a size in GiB",
    ),
    "ram_filler with two sizes": (
        HEAD + RAM.replace("gib = 1", "gib = 1, leave_available_gib = 2"),
        "conditions.ram.params",
        "exactly one of gib, leave_available_gib, fraction_of_available",
    ),
    "ram_filler with no size": (
        HEAD + RAM.replace("gib = 1", "active = true"),
        "conditions.ram.params",
        "exactly one of gib, leave_available_gib, fraction_of_available",
    ),
    "bad overflow mode": (
        HEAD + '[conditions.o]\nactor = "ram_overflow"\nparams = { mode = "swap" }\n'
        'expect = { decode = "collapsed" }\n',
        "conditions.o.params.mode",
        '"contained" or "host"',
    ),
    "params not a table": (
        HEAD + CPU.replace('params = { cores = "spare" }', 'params = "spare"'),
        "conditions.cpu.params",
        "a table of the actor's parameters",
    ),
    "missing expect": (
        HEAD + CPU.replace('expect = { prefill = "degraded", decode = "unaffected" }\n', ""),
        "conditions.cpu.expect",
        'what the condition should do, e.g. { decode = "degraded" }',
    ),
    "empty expect": (
        HEAD + CPU.replace('{ prefill = "degraded", decode = "unaffected" }', "{}"),
        "conditions.cpu.expect",
        "a table of metric = outcome",
    ),
    "unknown metric": (
        HEAD + CPU.replace("decode = ", "latency = "),
        "conditions.cpu.expect.latency",
        "one of " + ", ".join(METRICS),
    ),
    "bad outcome": (
        HEAD + CPU.replace('prefill = "degraded"', 'prefill = "worse"'),
        "conditions.cpu.expect.prefill",
        "one of " + ", ".join(OUTCOMES),
    ),
    "bad bound": (
        HEAD + CPU.replace('prefill = "degraded"', 'prefill = { outcome = "degraded", at_least = "a lot" }'),
        "conditions.cpu.expect.prefill.at_least",
        "a number",
    ),
    "at_most below the bound": (
        HEAD + RAM.replace("at_least = 0.2", "at_least = 0.2, at_most = 0.1"),
        "conditions.ram.expect.decode",
        "a fraction in (0.2, 1)",
    ),
    "bad [bounds] value": (HEAD + "[bounds]\ndegraded = true\n" + CPU, "bounds.degraded", "a fraction"),
    "min_pairs below 6": (HEAD + "[design]\nmin_pairs = 5\n" + CPU, "design.min_pairs", "an integer >= 6"),
    "condition min_pairs below 6": (
        HEAD + CPU + "design = { min_pairs = 4 }\n",
        "conditions.cpu.design.min_pairs",
        "an integer >= 6",
    ),
    "max_pairs below min_pairs": (
        HEAD + "[design]\nmin_pairs = 10\nmax_pairs = 8\n" + CPU,
        "design.max_pairs",
        "max_pairs >= min_pairs",
    ),
    "condition max_pairs below the file's min_pairs": (
        HEAD + "[design]\nmin_pairs = 10\n" + CPU + "design = { max_pairs = 8 }\n",
        "conditions.cpu.design.max_pairs",
        "max_pairs >= min_pairs",
    ),
    "step of zero": (HEAD + "[design]\nstep = 0\n" + CPU, "design.step", "an integer >= 1"),
    "rounds of zero": (HEAD + "[design]\nrounds = 0\n" + CPU, "design.rounds", "an integer >= 1"),
    "unknown design key": (
        HEAD + "[design]\nrepeats = 2\n" + CPU,
        "design.repeats",
        "only max_pairs, min_pairs, rounds, step",
    ),
    "unknown condition design key": (
        HEAD + CPU + "design = { repeats = 2 }\n",
        "conditions.cpu.design.repeats",
        "min_pairs, max_pairs, step, rounds",
    ),
    "condition design not a table": (HEAD + CPU + "design = 8\n", "conditions.cpu.design", "a table"),
    "streams of zero": (HEAD + CPU + "streams = 0\n", "conditions.cpu.streams", "an integer >= 1"),
    "workload streams not an integer": (
        HEAD + '[workload]\nstreams = "4"\n' + CPU,
        "workload.streams",
        "an integer >= 1",
    ),
    "actor none without baseline_streams": (
        HEAD + NONE_ACTOR + "streams = 4\n",
        "conditions.conc.baseline_streams",
        "baseline_streams different from streams",
    ),
    "actor none with equal streams": (
        HEAD + NONE_ACTOR + "streams = 2\nbaseline_streams = 2\n",
        "conditions.conc.baseline_streams",
        "baseline_streams different from streams",
    ),
    "actor none with baseline_streams = the default of 1": (
        HEAD + NONE_ACTOR + "baseline_streams = 1\n",
        "conditions.conc.baseline_streams",
        "baseline_streams different from streams",
    ),
    "actor none with baseline_streams = the workload's streams": (
        HEAD + "[workload]\nstreams = 4\n" + NONE_ACTOR + "baseline_streams = 4\n",
        "conditions.conc.baseline_streams",
        "baseline_streams different from streams",
    ),
    "odd condition id": (
        HEAD + CPU.replace("[conditions.cpu]", '[conditions."cpu spare"]'),
        "conditions.cpu spare",
        "letters, digits, _ and -",
    ),
}


@pytest.mark.parametrize(("text", "key", "expected"), MISTAKES.values(), ids=MISTAKES.keys())
def test_mistakes_name_the_file_the_key_and_what_is_expected(
    tmp_path: Path, text: str, key: str, expected: str
):
    path = write(tmp_path, "exp.toml", text)
    with pytest.raises(ExperimentFileError) as info:
        load_experiment(path)
    exc = info.value
    assert exc.path == path
    assert exc.key == key
    assert expected in exc.expected
    message = str(exc)
    assert message.startswith(f"{path}: [{key}] ")
    assert f"; expected {exc.expected}" in message


def test_an_unknown_actor_lists_every_known_actor(tmp_path: Path):
    path = write(tmp_path, "exp.toml", HEAD + CPU.replace('"cpu_stress"', '"cpu_burner"'))
    with pytest.raises(ExperimentFileError, match="unknown actor 'cpu_burner'") as info:
        load_experiment(path)
    for name in ACTORS:
        assert name in str(info.value)


def test_an_unreadable_file_is_an_experiment_file_error(tmp_path: Path):
    with pytest.raises(ExperimentFileError, match="cannot be read") as info:
        load_experiment(tmp_path / "missing.toml")
    assert info.value.key == "(file)"


def test_workload_streams_are_every_conditions_default(tmp_path: Path):
    text = HEAD + "[workload]\nstreams = 4\n" + CPU + RAM + "streams = 2\n"
    experiment = load_experiment(write(tmp_path, "exp.toml", text))
    assert experiment.streams == 4
    assert [c.streams for c in experiment.conditions] == [4, 2]
    (cpu,) = load_experiment(write(tmp_path, "one.toml", HEAD + CPU)).conditions
    assert cpu.streams is None  # the runner's default, 1


def test_the_real_profiles_load_and_apply_to_the_seed_report():
    experiment = load_experiment(SEED_REPORT)
    profiles = sorted((SEED_REPORT.parent / "profiles").glob("*.toml"))
    for path in profiles:
        profile = load_profile(path)
        applied = apply_profile(experiment, profile)
        for condition in applied.conditions:
            original = next(c for c in experiment.conditions if c.id == condition.id)
            assert condition.reference == original.reference
            assert set(original.expect) <= set(condition.expect)


def test_actor_none_with_different_streams_loads(tmp_path: Path):
    (conc,) = load_experiment(
        write(tmp_path, "e.toml", HEAD + NONE_ACTOR + "streams = 4\nbaseline_streams = 1\n")
    ).conditions
    assert (conc.actor, conc.streams, conc.baseline_streams) == ("none", 4, 1)


# -- profiles ------------------------------------------------------------------------------

PROFILE = """\
[profile]
name = "small-vm"
description = "two cores: decode is CPU-bound here"
match = { logical_cpus_max = 4, gpu = false }

[expect.exp.cpu]
decode = { outcome = "degraded", at_least = 0.05 }
"""


def test_load_profile(tmp_path: Path):
    profile = load_profile(write(tmp_path, "profiles/small.toml", PROFILE))
    assert profile.name == "small-vm"
    assert profile.description.startswith("two cores")
    assert profile.match == {"logical_cpus_max": 4, "gpu": False}
    assert profile.expect == {"exp": {"cpu": {"decode": Expectation("decode", "degraded", 0.05)}}}


def test_apply_profile_replaces_only_the_named_metrics(tmp_path: Path):
    experiment = load_experiment(write(tmp_path, "exp.toml", HEAD + CPU + RAM))
    profile = load_profile(write(tmp_path, "profiles/small.toml", PROFILE))
    applied = apply_profile(experiment, profile)
    cpu, ram = applied.conditions
    assert cpu.expect["decode"] == Expectation("decode", "degraded", 0.05)  # overridden
    assert cpu.expect["prefill"] == experiment.conditions[0].expect["prefill"]  # kept
    assert cpu.reference == {"prefill": "degraded", "decode": "unaffected"}  # still the file's
    assert cpu.overridden_by == "small-vm"
    assert ram == experiment.conditions[1]  # untouched
    assert ram.overridden_by is None
    assert (applied.path, applied.title) == (experiment.path, experiment.title)
    # the experiment itself is not modified
    assert experiment.conditions[0].expect["decode"].outcome == "unaffected"


def test_apply_profile_may_add_a_metric(tmp_path: Path):
    experiment = load_experiment(write(tmp_path, "exp.toml", HEAD + CPU))
    profile = load_profile(write(tmp_path, "p.toml", PROFILE + 'ram = "unaffected"\n'))
    (cpu,) = apply_profile(experiment, profile).conditions
    assert set(cpu.expect) == {"prefill", "decode", "ram"}
    assert "ram" not in cpu.reference


def test_apply_profile_for_another_experiment_or_none_changes_nothing(tmp_path: Path):
    experiment = load_experiment(write(tmp_path, "other.toml", HEAD + CPU))
    profile = load_profile(write(tmp_path, "p.toml", PROFILE))
    assert apply_profile(experiment, profile) is experiment
    assert apply_profile(experiment, None) is experiment


def test_an_override_of_a_missing_condition_names_the_profile(tmp_path: Path):
    experiment = load_experiment(write(tmp_path, "exp.toml", HEAD + RAM))
    profile_path = write(tmp_path, "profiles/small.toml", PROFILE)
    with pytest.raises(ExperimentFileError) as info:
        apply_profile(experiment, load_profile(profile_path))
    exc = info.value
    assert exc.path == profile_path
    assert exc.key == "expect.exp.cpu"
    assert "one of ram" in exc.expected
    assert str(exc).startswith(f"{profile_path}: [expect.exp.cpu] names no condition of")


PROFILE_MISTAKES = {
    "missing [profile]": ('[expect.exp.cpu]\ndecode = "degraded"\n', "profile", "a [profile] table"),
    "unknown table": ('[profile]\nname = "p"\n[extra]\n', "extra", "profile, expect"),
    "unknown [profile] key": ('[profile]\nname = "p"\nowner = "me"\n', "profile.owner", "only description"),
    "unknown match key": (
        "[profile]\nmatch = { cpus = 4 }\n",
        "profile.match",
        "gpu, logical_cpus_max, logical_cpus_min",
    ),
    "match not a table": ('[profile]\nmatch = "small"\n', "profile.match", "a table with"),
    "match with a string count": (
        '[profile]\nmatch = { logical_cpus_max = "4" }\n',
        "profile.match.logical_cpus_max",
        "an integer",
    ),
    "match with a non-bool gpu": (
        '[profile]\nmatch = { gpu = "no" }\n',
        "profile.match.gpu",
        "true or false",
    ),
    "expect not a table": ('expect = 3\n[profile]\nname = "p"\n', "expect", "a table"),
    "experiment not a table": (
        '[profile]\nname = "p"\n[expect]\nexp = 3\n',
        "expect.exp",
        "[expect.<experiment>.<condition>]",
    ),
    "bad outcome": (
        '[profile]\nname = "p"\n[expect.exp.cpu]\ndecode = "slower"\n',
        "expect.exp.cpu.decode",
        "one of",
    ),
    "empty override": (
        '[profile]\nname = "p"\n[expect.exp]\ncpu = {}\n',
        "expect.exp.cpu",
        "a table of metric",
    ),
}


@pytest.mark.parametrize(("text", "key", "expected"), PROFILE_MISTAKES.values(), ids=PROFILE_MISTAKES.keys())
def test_profile_mistakes_name_the_file_and_the_key(tmp_path: Path, text: str, key: str, expected: str):
    path = write(tmp_path, "profiles/p.toml", text)
    with pytest.raises(ExperimentFileError) as info:
        load_profile(path)
    assert info.value.path == path
    assert info.value.key == key
    assert expected in info.value.expected
    assert str(info.value).startswith(f"{path}: [{key}] ")


def _profile(name: str, match: str) -> str:
    return f'[profile]\nname = "{name}"\nmatch = {match}\n'


@pytest.mark.parametrize(
    ("match", "machine", "matches"),
    [
        ("{}", {"logical_cpus": 2, "gpu": False}, True),
        ("{ logical_cpus_max = 4 }", {"logical_cpus": 4, "gpu": True}, True),
        ("{ logical_cpus_max = 4 }", {"logical_cpus": 5, "gpu": False}, False),
        ("{ logical_cpus_min = 16 }", {"logical_cpus": 16, "gpu": False}, True),
        ("{ logical_cpus_min = 16 }", {"logical_cpus": 8, "gpu": False}, False),
        ("{ logical_cpus_min = 4, logical_cpus_max = 8 }", {"logical_cpus": 6, "gpu": False}, True),
        ("{ logical_cpus_min = 4, logical_cpus_max = 8 }", {"logical_cpus": 9, "gpu": False}, False),
        ("{ gpu = true }", {"logical_cpus": 2, "gpu": True}, True),
        ("{ gpu = true }", {"logical_cpus": 2, "gpu": False}, False),
        ("{ gpu = false, logical_cpus_max = 4 }", {"logical_cpus": 2, "gpu": True}, False),
    ],
)
def test_profile_match(tmp_path: Path, match: str, machine: dict[str, Any], matches: bool):
    write(tmp_path, "profiles/p.toml", _profile("p", match))
    assert load_profile(tmp_path / "profiles/p.toml").matches(machine) is matches
    found = find_profile(tmp_path, machine)
    assert (found is not None and found.name == "p") is matches


def test_find_profile_picks_the_one_that_matches(tmp_path: Path):
    write(tmp_path, "profiles/small.toml", _profile("small", "{ logical_cpus_max = 4 }"))
    write(tmp_path, "profiles/big.toml", _profile("big", "{ logical_cpus_min = 32 }"))
    write(
        tmp_path,
        "profiles/gpu.toml",
        _profile("gpu", "{ logical_cpus_min = 5, logical_cpus_max = 31, gpu = true }"),
    )
    assert find_profile(tmp_path, {"logical_cpus": 2, "gpu": True}).name == "small"
    assert find_profile(tmp_path, {"logical_cpus": 64, "gpu": True}).name == "big"
    assert find_profile(tmp_path, {"logical_cpus": 16, "gpu": True}).name == "gpu"
    assert find_profile(tmp_path, {"logical_cpus": 16, "gpu": False}) is None


def test_find_profile_without_a_profiles_directory(tmp_path: Path):
    assert find_profile(tmp_path, {"logical_cpus": 2, "gpu": False}) is None


def test_two_matching_profiles_are_an_error(tmp_path: Path):
    write(tmp_path, "profiles/a.toml", _profile("a", "{ logical_cpus_max = 4 }"))
    write(tmp_path, "profiles/b.toml", _profile("b", "{ gpu = false }"))
    with pytest.raises(ExperimentFileError) as info:
        find_profile(tmp_path, {"logical_cpus": 2, "gpu": False})
    exc = info.value
    assert exc.path == tmp_path / "profiles"
    assert exc.key == "profile.match"
    assert "a.toml" in exc.problem and "b.toml" in exc.problem
    assert "--kt-profile" in exc.expected
    assert find_profile(tmp_path, {"logical_cpus": 2, "gpu": True}).name == "a"  # only one matches


def test_a_broken_profile_fails_find_profile(tmp_path: Path):
    write(tmp_path, "profiles/a.toml", "[profile\n")
    with pytest.raises(ExperimentFileError, match="is not valid TOML"):
        find_profile(tmp_path, {"logical_cpus": 2, "gpu": False})


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
        table["expect"] = {m: draw(expectation_values()) for m in metrics}
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
        assert list(condition.expect) == list(table["expect"])
        for metric, value in table["expect"].items():
            got = condition.expect[metric]
            spec = {"outcome": value} if isinstance(value, str) else value
            assert got.metric == metric
            assert got.outcome == condition.reference[metric] == spec["outcome"]
            bound = spec.get("within", spec.get("at_least", DEFAULT_BOUNDS[spec["outcome"]]))
            assert got.bound == bound
            assert got.at_most == spec.get("at_most")


# -- what a user sees at collection -------------------------------------------------------

VALID = HEAD + CPU + NONE_ACTOR + "streams = 4\nbaseline_streams = 1\n"
ITEMS = [
    "experiments/x.toml::cpu[prefill]",
    "experiments/x.toml::cpu[decode]",
    "experiments/x.toml::conc[decode]",
]


def test_a_valid_file_collects_one_item_per_condition_and_metric(pytester: pytest.Pytester):
    pytester.makefile(".toml", **{"experiments/x": VALID})
    result = pytester.runpytest("--collect-only", "-q", "--kt-profile=none")
    assert result.ret == 0, result.stdout.str()
    items = [line for line in result.stdout.lines if "::" in line]
    assert items == ITEMS


def test_items_are_interference_items(pytester: pytest.Pytester):
    pytester.makefile(".toml", **{"experiments/x": VALID})
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    selected = pytester.runpytest("--collect-only", "-q", "--kt-profile=none", "-m", "interference")
    lines = [line for line in selected.stdout.lines if "::" in line]
    assert lines == ITEMS
    others = pytester.runpytest("--collect-only", "-q", "--kt-profile=none", "-m", "not interference")
    assert [line for line in others.stdout.lines if "::" in line] == ["test_plain.py::test_plain"]
    by_name = pytester.runpytest("--collect-only", "-q", "--kt-profile=none", "-k", "cpu and decode")
    assert [line for line in by_name.stdout.lines if "::" in line] == ["experiments/x.toml::cpu[decode]"]


def test_toml_files_elsewhere_are_not_collected(pytester: pytest.Pytester):
    pytester.makefile(".toml", **{"data/x": "not an experiment = ["})
    pytester.makefile(
        ".toml", **{"experiments/profiles/p": PROFILE.replace("[expect.exp.cpu]", "[expect.x.cpu]")}
    )
    pytester.makefile(".toml", **{"experiments/x": VALID})
    result = pytester.runpytest("--collect-only", "-q")
    assert result.ret == 0, result.stdout.str()
    assert "profiles" not in result.stdout.str()
    assert "data/x.toml" not in result.stdout.str()


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (MISTAKES["unknown actor param"][0], "conditions.cpu.params.speed"),
        (MISTAKES["invalid TOML"][0], "(file)"),
        (MISTAKES["max_pairs below min_pairs"][0], "design.max_pairs"),
    ],
    ids=["unknown param", "invalid TOML", "max_pairs"],
)
def test_a_broken_file_is_a_collection_error_without_a_traceback(
    pytester: pytest.Pytester, text: str, key: str
):
    pytester.makefile(".toml", **{"experiments/x": VALID})
    pytester.makefile(".toml", **{"experiments/broken": text})
    result = pytester.runpytest("--collect-only", "-q", "--kt-profile=none")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    out = result.stdout.str()
    assert "ERROR collecting experiments/broken.toml" in out
    line = next(row for row in out.splitlines() if f"[{key}]" in row)
    assert "broken.toml" in line and "expected" in line
    assert "Traceback" not in out
    assert out.count("expected") <= 3  # one message (and the short summary), not a wall


def test_a_matching_profile_applies_at_collection(pytester: pytest.Pytester):
    pytester.makefile(".toml", **{"experiments/x": VALID})
    profile = '[profile]\nname = "any"\n[expect.x.cpu]\nram = "unaffected"\n'  # no match: every machine
    pytester.makefile(".toml", **{"experiments/profiles/any": profile})
    auto = pytester.runpytest("--collect-only", "-q")
    assert "experiments/x.toml::cpu[ram]" in auto.stdout.lines
    none = pytester.runpytest("--collect-only", "-q", "--kt-profile=none")
    assert "experiments/x.toml::cpu[ram]" not in none.stdout.lines
    chosen = pytester.runpytest("--collect-only", "-q", "--kt-profile=experiments/profiles/any.toml")
    assert "experiments/x.toml::cpu[ram]" in chosen.stdout.lines


def test_a_profile_naming_a_missing_condition_is_a_collection_error(pytester: pytest.Pytester):
    pytester.makefile(".toml", **{"experiments/x": VALID})
    profile = '[profile]\nname = "any"\n[expect.x.cpu_typo]\ndecode = "degraded"\n'
    pytester.makefile(".toml", **{"experiments/profiles/any": profile})
    result = pytester.runpytest("--collect-only", "-q")
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.INTERRUPTED, out
    assert "any.toml: [expect.x.cpu_typo] names no condition" in out
    assert "expected one of conc, cpu" in out
    assert "Traceback" not in out


def test_a_missing_profile_file_is_a_collection_error(pytester: pytest.Pytester):
    pytester.makefile(".toml", **{"experiments/x": VALID})
    result = pytester.runpytest("--collect-only", "-q", "--kt-profile=nowhere.toml")
    out = result.stdout.str()
    assert "nowhere.toml: [--kt-profile] does not exist; expected auto, none" in out
    assert "Traceback" not in out
