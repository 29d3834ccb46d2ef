"""Experiment files: what loads, what each mistake says, and what the two kinds of check (hard
claims, the report's cells) do to a comparison.

Every mistake (``experiment_texts.MISTAKES``) must fail naming the file, the key, and what is
expected there; ``test_experiment_collection.py`` checks that this is what a user sees at
collection. The comparisons run on a scripted probe: nothing here starts a server or measures
anything.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from pytest_ktinterf.actors.registry import ACTORS
from pytest_ktinterf.experiment.interfere import VerdictFailure, run
from pytest_ktinterf.experiment.outcomes import Outcome
from pytest_ktinterf.experiment.schema import (
    ConditionSpec,
    ExperimentFileError,
    describes_machine,
    load_experiment,
)
from pytest_ktinterf.judge.expectations import DEFAULT_BOUNDS, Expectation
from pytest_ktinterf.measure.compare import Comparison, Design, compare
from pytest_ktinterf.measure.samples import RequestSample, RoundSample
from pytest_ktinterf.options import Options
from tests.experiment_texts import CPU, HEAD, MISTAKES, NONE_ACTOR, RAM, write
from tests.scripted import trial_of_call

SEED_REPORT = Path(__file__).resolve().parent.parent / "experiments" / "seed_report.toml"


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
