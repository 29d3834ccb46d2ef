"""Experiment files: what loads, what each mistake says, how pytest collects them, and what the
two kinds of check (hard claims, the report's cells) do to a comparison.

Every mistake must fail naming the file, the key, and what is expected there; the pytester
tests check that this is what a user sees at collection (one message, no traceback). They only
ever collect (``--collect-only``), and the comparisons run on a scripted probe: nothing here
starts a server or measures anything.
"""

from __future__ import annotations

import json
import math
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_ktinterf.actors.registry import ACTORS
from pytest_ktinterf.experiment.interfere import VerdictFailure, run
from pytest_ktinterf.experiment.outcomes import Outcome
from pytest_ktinterf.experiment.schema import (
    CONDITION_KEYS,
    GATE_METRICS,
    ConditionSpec,
    ExperimentFileError,
    describes_machine,
    load_experiment,
)
from pytest_ktinterf.judge.expectations import DEFAULT_BOUNDS, METRICS, OUTCOMES, Expectation
from pytest_ktinterf.measure.compare import Comparison, Design, compare
from pytest_ktinterf.measure.samples import RequestSample, RoundSample
from pytest_ktinterf.options import Options
from tests.scripted import trial_of_call

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
    assert not experiment.described  # no machine given: the report's cells stay the report's
    for condition in experiment.conditions:
        assert {"prefill", "decode"} <= set(condition.report), condition.id  # every matrix row
        assert condition.actor in ACTORS
        assert condition.reference == {m: e.outcome for m, e in condition.report.items()}
        assert all(e.kind == "report" for e in condition.report.values())
        assert all(e.kind == "expect" for e in condition.expect.values())
        assert 6 <= condition.design.min_pairs <= condition.design.max_pairs
        assert condition.design == experiment.conditions[0].design  # the file's [design] for all
    by_id = {c.id: c for c in experiment.conditions}
    # Hard claims only where a mechanism makes them hold on any machine.
    hard = {c.id: {m: e.describe() for m, e in c.expect.items()} for c in experiment.conditions if c.expect}
    assert hard == {
        "cpu_server": {"prefill": "degraded by at least 25%", "decode": "degraded by at least 25%"},
        "overflow_contained": {"decode": "collapsed by at least 60%"},
        "concurrency": {"ram": "unaffected within 15%"},
    }
    # The report's cells are its words at the default bounds; only its concurrency claim has figures.
    for condition in experiment.conditions:
        for metric, cell in condition.report.items():
            if (condition.id, metric) in {("concurrency", "prefill"), ("concurrency", "decode")}:
                assert cell.region == pytest.approx((1.3, 1.5))
            else:
                where = (condition.id, metric)
                assert (cell.bound, cell.at_most) == (DEFAULT_BOUNDS[cell.outcome], None), where
    concurrency = by_id["concurrency"]
    assert (concurrency.streams, concurrency.baseline_streams) == (4, 1)
    # only the collapse row sets its own output length: a collapsed server decodes a few tokens a second
    assert {c.id: c.max_tokens for c in experiment.conditions if c.max_tokens} == {"overflow_contained": 16}
    assert concurrency.metrics == ["ram", "prefill", "decode", "vram"]  # hard claims' first


def test_the_seed_report_is_hard_on_the_machine_it_describes():
    report_machine = {"cpu_model": "Intel(R) Xeon(R) Platinum 8461V", "gpus": ["NVIDIA GeForce RTX 3090"]}
    experiment = load_experiment(SEED_REPORT, lambda: report_machine)
    assert experiment.described
    for condition in experiment.conditions:
        assert all(e.kind == "expect" for e in condition.checks), condition.id


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
    text += "[conditions.ram.design]\nmin_pairs = 9\nrounds = 1\n"
    cpu, ram = load_experiment(write(tmp_path, "exp.toml", text)).conditions
    assert cpu.expect["prefill"].bound == 0.2  # the file's default
    assert ram.expect["decode"].bound == 0.2  # given explicitly
    assert cpu.design == Design(8, 10, 3, rounds=3)
    assert ram.design == Design(9, 10, 3, rounds=1)


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
    "unknown [experiment] key": (
        HEAD + 'author = "me"\n' + CPU,
        "experiment.author",
        "only describes, source, title",
    ),
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
    "infinite size": (
        HEAD + '[conditions.ram]\nactor = "ram_filler"\nparams = { gib = inf }\n',
        "conditions.ram.params.gib",
        "a size in GiB above 0",
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
    "neither expect nor report": (
        HEAD + CPU.replace('expect = { prefill = "degraded", decode = "unaffected" }\n', ""),
        "conditions.cpu.expect",
        "at least one: expect = ",
    ),
    "empty report": (HEAD + CPU + "report = {}\n", "conditions.cpu.report", "a table of metric = outcome"),
    "bad report outcome": (
        HEAD + CPU + 'report = { decode = "slower" }\n',
        "conditions.cpu.report.decode",
        "one of " + ", ".join(OUTCOMES),
    ),
    "report bound out of range": (
        HEAD + CPU + 'report = { decode = { outcome = "unaffected", within = 1.5 } }\n',
        "conditions.cpu.report.decode",
        "a fraction in (0, 1)",
    ),
    "gate not a table": (HEAD + CPU + "gate = 0.15\n", "conditions.cpu.gate", "a table of metric = fraction"),
    "empty gate": (HEAD + CPU + "gate = {}\n", "conditions.cpu.gate", "a table of metric = fraction"),
    "gate on a resource": (
        HEAD + CPU + "gate = { ram = 0.1 }\n",
        "conditions.cpu.gate.ram",
        "one of prefill, decode, prefill_per_stream, decode_per_stream",
    ),
    "gate of a whole": (HEAD + CPU + "gate = { decode = 1.0 }\n", "conditions.cpu.gate.decode", "(0, 1)"),
    "gate of zero": (HEAD + CPU + "gate = { decode = 0 }\n", "conditions.cpu.gate.decode", "(0, 1)"),
    "gate as a percentage": (HEAD + CPU + "gate = { decode = 15 }\n", "conditions.cpu.gate.decode", "(0, 1)"),
    "gate as a word": (HEAD + CPU + 'gate = { decode = "15%" }\n', "conditions.cpu.gate.decode", "(0, 1)"),
    "gate as a bool": (HEAD + CPU + "gate = { decode = true }\n", "conditions.cpu.gate.decode", "(0, 1)"),
    "report_effect not a table": (
        HEAD + CPU + "report_effect = -0.5\n",
        "conditions.cpu.report_effect",
        "{ decode = -0.56 } for -56%",
    ),
    "report_effect of vram": (
        HEAD + CPU + "report_effect = { vram = 0.1 }\n",
        "conditions.cpu.report_effect.vram",
        "prefill or decode",
    ),
    "report_effect of a whole loss": (
        HEAD + CPU + "report_effect = { decode = -1 }\n",
        "conditions.cpu.report_effect.decode",
        "for -56%",
    ),
    "describes not a table": (
        HEAD + 'describes = "Xeon"\n' + CPU,
        "experiment.describes",
        "a table such as { cpu_model",
    ),
    "empty describes": (HEAD + "describes = {}\n" + CPU, "experiment.describes", "a table such as"),
    "unknown describes key": (
        HEAD + 'describes = { ram = "384 GB" }\n' + CPU,
        "experiment.describes.ram",
        "only cpu_model, gpu",
    ),
    "empty describes value": (
        HEAD + 'describes = { gpu = " " }\n' + CPU,
        "experiment.describes.gpu",
        "a non-empty part of the name",
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
    "too few pairs for the looks": (
        HEAD + "[design]\nmin_pairs = 6\n" + CPU,
        "design.min_pairs",
        "min_pairs >= 8",
    ),
    "condition with too few pairs for its looks": (
        HEAD + CPU + "design = { min_pairs = 6, step = 2 }\n",
        "conditions.cpu.design.min_pairs",
        "min_pairs >= 8",
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
    "max_tokens too few": (HEAD + CPU + "max_tokens = 2\n", "conditions.cpu.max_tokens", "an integer >= 4"),
    "max_tokens not an integer": (
        HEAD + CPU + 'max_tokens = "16"\n',
        "conditions.cpu.max_tokens",
        "an integer >= 4",
    ),
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
    "condition id of the plugin's own items": (  # candidate-cpu is the A/B item of condition cpu
        HEAD + CPU + CPU.replace("[conditions.cpu]", "[conditions.candidate-cpu]"),
        "conditions.candidate-cpu",
        "another id",
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


def test_a_file_that_is_not_utf8_names_the_byte_offset_and_the_fix(tmp_path: Path):
    """A Latin-1 'café': the error says where the bad byte is, so it can be found in an editor."""
    latin1 = (HEAD.replace("a test experiment", "caf\xe9") + CPU).encode("latin-1")
    path = tmp_path / "exp.toml"
    path.write_bytes(latin1)
    with pytest.raises(ExperimentFileError) as info:
        load_experiment(path)
    offset = latin1.index(b"\xe9")
    assert info.value.key == "(file)"
    assert f"is not UTF-8: byte 0xe9 at offset {offset} " in str(info.value)
    assert str(info.value).endswith("-- fix: save it as UTF-8")


def test_a_utf8_file_with_a_bom_loads(tmp_path: Path):
    path = tmp_path / "exp.toml"
    path.write_bytes(b"\xef\xbb\xbf" + (HEAD + CPU).encode())
    assert [c.id for c in load_experiment(path).conditions] == ["cpu"]


def test_workload_streams_are_every_conditions_default(tmp_path: Path):
    text = HEAD + "[workload]\nstreams = 4\n" + CPU + RAM + "streams = 2\n"
    experiment = load_experiment(write(tmp_path, "exp.toml", text))
    assert experiment.streams == 4
    assert [c.streams for c in experiment.conditions] == [4, 2]
    (cpu,) = load_experiment(write(tmp_path, "one.toml", HEAD + CPU)).conditions
    assert cpu.streams is None  # the runner's default, 1


def test_actor_none_with_different_streams_loads(tmp_path: Path):
    (conc,) = load_experiment(
        write(tmp_path, "e.toml", HEAD + NONE_ACTOR + "streams = 4\nbaseline_streams = 1\n")
    ).conditions
    assert (conc.actor, conc.streams, conc.baseline_streams) == ("none", 4, 1)


# -- the two kinds of check: hard claims fail, the report's cells are shown -----------------

TWO_KINDS = """\
[experiment]
title = "two kinds"
describes = { cpu_model = "Platinum 8461V", gpu = "RTX 3090" }

[design]
min_pairs = 8
max_pairs = 14
step = 3

[conditions.conc]
actor = "none"
streams = 2
baseline_streams = 1
expect = { prefill = { outcome = "degraded", at_least = 0.25 } }
report = { prefill = "unaffected", decode = "unaffected" }
gate = { decode = 0.15, prefill_per_stream = 0.2 }
report_effect = { prefill = -0.2, decode = 0.05 }
"""
THE_REPORTS_MACHINE = {"cpu_model": "Intel(R) Xeon(R) Platinum 8461V", "gpus": ["NVIDIA GeForce RTX 3090"]}


def test_report_cells_and_gate_load_beside_the_hard_claims(tmp_path: Path):
    asked = []
    experiment = load_experiment(write(tmp_path, "e.toml", TWO_KINDS), lambda: asked.append(1) or {})
    (conc,) = experiment.conditions
    assert asked == [1] and not experiment.described  # this machine is not the report's
    assert conc.expect == {"prefill": Expectation("prefill", "degraded", 0.25)}
    assert conc.report == {
        "prefill": Expectation("prefill", "unaffected", 0.15, kind="report"),
        "decode": Expectation("decode", "unaffected", 0.15, kind="report"),
    }
    assert conc.reference == {"prefill": "unaffected", "decode": "unaffected"}
    assert conc.gate == {"decode": 0.15, "prefill_per_stream": 0.2}
    assert conc.report_effect == {"prefill": -0.2, "decode": 0.05}
    assert conc.metrics == ["prefill", "decode"]
    assert [(e.metric, e.kind) for e in conc.checks] == [
        ("prefill", "expect"), ("prefill", "report"), ("decode", "report"),
    ]  # fmt: skip


def test_a_report_only_condition_loads_and_a_file_without_describes_never_asks(tmp_path: Path):
    text = HEAD + CPU.replace("expect = ", "report = ")
    experiment = load_experiment(write(tmp_path, "e.toml", text), lambda: pytest.fail("not asked"))
    (cpu,) = experiment.conditions
    assert cpu.expect == {} and set(cpu.report) == {"prefill", "decode"} and cpu.gate == {}


@pytest.mark.parametrize(
    ("machine", "described"),
    [
        (THE_REPORTS_MACHINE, True),
        ({"cpu_model": "INTEL(R) XEON(R) PLATINUM 8461V", "gpus": ["a", "nvidia geforce rtx 3090"]}, True),
        ({"cpu_model": "Intel(R) Xeon(R) Platinum 8461V", "gpus": []}, False),  # every key must match
        ({"cpu_model": "AMD EPYC 7763", "gpus": ["NVIDIA GeForce RTX 3090"]}, False),
        ({"cpu_model": "Intel(R) Xeon(R) Platinum 8461V", "gpus": ["NVIDIA RTX 4090"]}, False),
        ({}, False),
    ],
)
def test_describes_matches_substrings_of_every_given_key(machine: dict[str, Any], described: bool):
    describes = {"cpu_model": "Platinum 8461V", "gpu": "RTX 3090"}
    assert describes_machine(describes, machine) is described
    assert describes_machine({"gpu": "RTX 3090"}, {"gpus": ["NVIDIA GeForce RTX 3090"]})
    assert not describes_machine({}, THE_REPORTS_MACHINE)  # describing nothing describes no machine


def test_on_the_described_machine_the_report_cells_are_hard_claims(tmp_path: Path):
    experiment = load_experiment(write(tmp_path, "e.toml", TWO_KINDS), lambda: THE_REPORTS_MACHINE)
    (conc,) = experiment.conditions
    assert experiment.described
    assert {m: e.kind for m, e in conc.report.items()} == {"prefill": "expect", "decode": "expect"}
    assert conc.reference == {"prefill": "unaffected", "decode": "unaffected"}


class ScriptedProbe:
    """Rounds of one request: the condition halves prefill, and its decode ratio swings between
    0.80 and 0.95, an interval that straddles the edge of "unaffected within 15%" at any count."""

    server_view = None  # no server behind it: nothing of its own to watch

    def __init__(self) -> None:
        self.calls = 0

    def measure(self, streams: int = 1) -> RoundSample:
        self.calls += 1
        pair, condition = trial_of_call(self.calls)
        ttft = 0.5 * (2.0 + 0.01 * (pair % 3) if condition else 1.0)
        decode_s = 0.5 / ((0.80, 0.95)[pair % 2] if condition else 1.0)
        request = RequestSample(0, 0.0, ttft, ttft + decode_s, [ttft, ttft + decode_s], 128, 2)
        now = time.perf_counter()
        return RoundSample(1, [request], now, now)

    def warm(self, streams: int = 1) -> RoundSample:
        """The settling round before each trial: not counted, so not a call of the script."""
        request = RequestSample(0, 0.0, 0.1, 0.2, [0.1, 0.2], 8, 2)
        return RoundSample(1, [request], 0.0, 0.2)


class ScriptedTestbed:
    """What ``interfere.run`` asks of a testbed for actor ``none``: options and ``compare``."""

    def __init__(self) -> None:
        self.options = Options()
        self.probe = ScriptedProbe()
        self.gate = None  # no --kt-baseline-* flag

    def compare(self, condition: Any, **kwargs: Any) -> Comparison:
        return compare(self.probe, condition, **kwargs)  # type: ignore[arg-type]


def _run(condition: ConditionSpec) -> tuple[Comparison, Outcome]:
    result = run(ScriptedTestbed(), condition)  # type: ignore[arg-type]
    return result, Outcome.of(result, worker="")


def test_report_cells_never_fail_and_never_buy_pairs(tmp_path: Path):
    (conc,) = load_experiment(write(tmp_path, "e.toml", TWO_KINDS)).conditions
    result, outcome = _run(conc)
    # The hard claim is decided at 8 pairs; the undecided decode cell asks for no more.
    assert result.pairs == 8
    seen = {(v.metric, v.kind): v.word for v in result.verdicts}
    assert seen == {
        ("prefill", "expect"): "pass",
        ("prefill", "report"): "differs",
        ("decode", "report"): "undecided",
    }
    assert result.failures() == []
    prefill = outcome.judge("conc", "prefill")  # an item whose report cell differs still passes
    assert "PASS prefill: degraded by at least 25%" in prefill and "REPORT SAYS DIFFERS prefill" in prefill
    assert outcome.judge("conc", "decode").startswith("REPORT SAYS UNDECIDED decode: unaffected within 15%")
    record = result.to_record()
    assert record["reference"] == {"prefill": "unaffected", "decode": "unaffected"}
    assert record["expected"] == {"prefill": "degraded by at least 25%"}  # the claims only


def test_a_report_only_condition_runs_min_pairs(tmp_path: Path):
    text = TWO_KINDS.replace('expect = { prefill = { outcome = "degraded", at_least = 0.25 } }\n', "")
    (conc,) = load_experiment(write(tmp_path, "e.toml", text)).conditions
    result, outcome = _run(conc)
    assert result.pairs == 8
    assert [v.fails for v in result.verdicts] == [False, False]
    outcome.judge("conc", "prefill")
    outcome.judge("conc", "decode")


def test_on_the_described_machine_the_report_cells_fail_and_buy_pairs(tmp_path: Path):
    (conc,) = load_experiment(write(tmp_path, "e.toml", TWO_KINDS), lambda: THE_REPORTS_MACHINE).conditions
    result, outcome = _run(conc)
    assert result.pairs == 14  # the undecided decode cell, a claim here, spends the budget
    failing = {(v.metric, v.status) for v in result.failures()}
    assert failing == {("prefill", "fail"), ("decode", "inconclusive")}
    with pytest.raises(VerdictFailure, match="FAIL prefill: unaffected within 15%"):
        outcome.judge("conc", "prefill")
    with pytest.raises(VerdictFailure, match="INCONCLUSIVE decode"):
        outcome.judge("conc", "decode")


def test_run_judges_only_the_selected_metrics_checks(tmp_path: Path):
    (conc,) = load_experiment(write(tmp_path, "e.toml", TWO_KINDS)).conditions
    result = run(ScriptedTestbed(), conc, metrics={"decode"})  # type: ignore[arg-type]
    assert [(e.metric, e.kind) for e in result.expectations] == [("decode", "report")]
    assert result.reference == {"prefill": "unaffected", "decode": "unaffected"}


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


# -- what a user sees at collection -------------------------------------------------------

VALID = HEAD + CPU + NONE_ACTOR + "streams = 4\nbaseline_streams = 1\n"
ITEMS = [
    "experiments/x.toml::cpu[prefill]",
    "experiments/x.toml::cpu[decode]",
    "experiments/x.toml::conc[decode]",
]


def test_a_valid_file_collects_one_item_per_condition_and_metric(pytester: pytest.Pytester):
    pytester.makefile(".toml", **{"experiments/x": VALID})
    result = pytester.runpytest("--collect-only", "-q")
    assert result.ret == 0, result.stdout.str()
    items = [line for line in result.stdout.lines if "::" in line]
    assert items == ITEMS


def test_items_cover_claims_then_report_cells_once_each(pytester: pytest.Pytester):
    text = (
        HEAD
        + CPU.replace("expect = ", "report = ")
        + 'expect = { ram = "unaffected", decode = "degraded" }\n'
    )
    pytester.makefile(".toml", **{"experiments/x": text})
    result = pytester.runpytest("--collect-only", "-q")
    assert result.ret == 0, result.stdout.str()
    assert [line for line in result.stdout.lines if "::" in line] == [
        "experiments/x.toml::cpu[ram]",
        "experiments/x.toml::cpu[decode]",
        "experiments/x.toml::cpu[prefill]",
    ]


def test_items_are_interference_items(pytester: pytest.Pytester):
    pytester.makefile(".toml", **{"experiments/x": VALID})
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    selected = pytester.runpytest("--collect-only", "-q", "-m", "interference")
    lines = [line for line in selected.stdout.lines if "::" in line]
    assert lines == ITEMS
    others = pytester.runpytest("--collect-only", "-q", "-m", "not interference")
    assert [line for line in others.stdout.lines if "::" in line] == ["test_plain.py::test_plain"]
    by_name = pytester.runpytest("--collect-only", "-q", "-k", "cpu and decode")
    assert [line for line in by_name.stdout.lines if "::" in line] == ["experiments/x.toml::cpu[decode]"]


def test_toml_files_elsewhere_are_not_collected(pytester: pytest.Pytester):
    pytester.makefile(".toml", **{"data/x": "not an experiment = ["})
    pytester.makefile(".toml", **{"experiments/settings": '[tool]\nexpect = "not an experiment"\n'})
    pytester.makefile(".toml", **{"experiments/x": VALID})
    result = pytester.runpytest("--collect-only", "-q")
    assert result.ret == 0, result.stdout.str()
    assert "settings" not in result.stdout.str()
    assert "data/x.toml" not in result.stdout.str()


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (MISTAKES["unknown actor param"][0], "conditions.cpu.params.speed"),
        (MISTAKES["invalid TOML"][0], "(file)"),
        (MISTAKES["max_pairs below min_pairs"][0], "design.max_pairs"),
        (MISTAKES["neither expect nor report"][0], "conditions.cpu.expect"),
        (MISTAKES["gate on a resource"][0], "conditions.cpu.gate.ram"),
    ],
    ids=["unknown param", "invalid TOML", "max_pairs", "no expect or report", "gate"],
)
def test_a_broken_file_is_a_collection_error_without_a_traceback(
    pytester: pytest.Pytester, text: str, key: str
):
    pytester.makefile(".toml", **{"experiments/x": VALID})
    pytester.makefile(".toml", **{"experiments/broken": text})
    result = pytester.runpytest("--collect-only", "-q")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    out = result.stdout.str()
    assert "ERROR collecting experiments/broken.toml" in out
    line = next(row for row in out.splitlines() if f"[{key}]" in row)
    assert "broken.toml" in line and "expected" in line
    assert "Traceback" not in out
    assert out.count("expected") <= 3  # one message (and the short summary), not a wall


def test_a_file_that_is_not_utf8_is_one_collection_line_without_a_traceback(pytester: pytest.Pytester):
    """It used to escape as tomllib's UnicodeDecodeError traceback (issue 13)."""
    pytester.makefile(".toml", **{"experiments/x": VALID})
    broken = pytester.path / "experiments" / "broken.toml"
    broken.write_bytes(b"\xff\xfe title\n" + VALID.encode())  # a UTF-16 BOM, then text
    result = pytester.runpytest("--collect-only", "-q")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    out = result.stdout.str()
    assert "Traceback" not in out and "UnicodeDecodeError" not in out
    lines = [row for row in out.splitlines() if "is not UTF-8" in row]
    assert len(lines) == 1, out
    assert "broken.toml: [(file)] is not UTF-8: byte 0xff at offset 0 " in lines[0]
    assert lines[0].endswith("-- fix: save it as UTF-8")


def test_a_toml_file_that_is_not_ours_may_be_any_encoding(pytester: pytest.Pytester):
    """Recognising a file never decodes strictly: an ML project's Latin-1 config is left alone."""
    pytester.makefile(".toml", **{"experiments/x": VALID})
    (pytester.path / "experiments" / "settings.toml").write_bytes(b'name = "caf\xe9"\n')
    result = pytester.runpytest("--collect-only", "-q")
    assert result.ret == 0, result.stdout.str()
    assert [line for line in result.stdout.lines if "::" in line] == ITEMS
