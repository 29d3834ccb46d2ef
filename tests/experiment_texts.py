"""Experiment file texts for the experiment-file tests: a head, two conditions, and every mistake
with the key it must name and what it must say is expected there.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from pytest_ktinterf.actors.registry import ACTORS
from pytest_ktinterf.experiment.schema import CONDITION_KEYS
from pytest_ktinterf.judge.expectations import METRICS, OUTCOMES

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


# -- mistakes: the text, the key it must name, what it must say is expected ----------------

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
