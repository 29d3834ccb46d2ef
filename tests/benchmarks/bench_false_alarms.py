"""Benchmark: how often do verdicts raise false alarms on A/A comparisons (no actor at all)?

Run: ``python -m tests.benchmarks.bench_false_alarms [repetitions] [rounds per trial]``
(embedded server, default options; 20 repetitions and 1 round per trial by default, as
``experiments/seed_report.toml``, each trial after its settling round). Every repetition is a
real sequential comparison through ``compare()`` -- interleaved pairs, 8 to 14 of them, looks
every 3, each look at 98.3% (the looks share the 95%: ``measure/design.py``) -- whose condition
arm is identical to its baseline. Two rates are printed, per metric:

* ``unaffected`` (within the default 15%) FAILS or is INCONCLUSIVE: a false alarm, since nothing
  changed;
* ``degraded`` (by at least the default 10%) PASSES: a false pass.

Both target <= 5%. All four expectations are judged in the same run, so the run continues while
any is undecided: the degraded verdict gets at least as many looks as it would alone, which can
only raise its false-pass rate (the benchmark errs against us). Numbers, not assertions.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
import time
from pathlib import Path

from pytest_ktinterf.judge.expectations import Expectation, parse
from pytest_ktinterf.measure.compare import Design, compare
from pytest_ktinterf.measure.probe import Probe
from pytest_ktinterf.options import Options
from pytest_ktinterf.server import open_server
from pytest_ktinterf.system.lock import measuring

METRICS = ("prefill", "decode")


def wilson(k: int, n: int) -> str:
    """``k/n = p% [lo%, hi%]`` with a 95% Wilson interval: 20 repetitions bound a rate loosely."""
    if n == 0:
        return "0/0"
    z, p = 1.96, k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (
        f"{k}/{n} = {100 * p:.0f}% [{100 * max(0, centre - half):.0f}%, {100 * min(1, centre + half):.0f}%]"
    )


def main(repetitions: int = 20, rounds: int = 1) -> None:
    options = Options(server_cpus=[max(os.sched_getaffinity(0))])
    expectations: list[Expectation] = [parse(m, o) for m in METRICS for o in ("unaffected", "degraded")]
    false_alarm = dict.fromkeys(METRICS, 0)
    false_pass = dict.fromkeys(METRICS, 0)
    pairs_used: list[int] = []
    with tempfile.TemporaryDirectory() as logs, open_server(options, Path(logs)) as server, measuring():
        probe = Probe(server.url, prompt_tokens=options.prompt_tokens, max_tokens=options.max_tokens)
        probe.calibrate()
        started = time.monotonic()
        for rep in range(repetitions):
            result = compare(
                probe,
                contextlib.nullcontext,
                label=f"A/A {rep + 1}",
                design=Design(rounds=rounds),
                expectations=expectations,
                processes=server.processes,
            )
            pairs_used.append(result.pairs)
            line = []
            for verdict in result.verdicts:
                word = verdict.expectation.split()[0]
                if word == "unaffected" and not verdict.passed:
                    false_alarm[verdict.metric] += 1
                if word == "degraded" and verdict.passed:
                    false_pass[verdict.metric] += 1
                line.append(f"{verdict.metric} {word} {verdict.status}")
            ratios = ", ".join(f"{m} {result.ratio(m).as_percent_change()}" for m in METRICS)
            print(
                f"A/A {rep + 1:2d}/{repetitions}: {result.pairs} pairs; {ratios}; {'; '.join(line)}",
                flush=True,
            )
        elapsed = time.monotonic() - started
    print(f"== {repetitions} A/A comparisons ({rounds} rounds per trial) in {elapsed / 60:.1f} min; "
          f"pairs used: median {sorted(pairs_used)[len(pairs_used) // 2]}, max {max(pairs_used)}",
          )  # fmt: skip
    for metric in METRICS:
        alarms, passes = wilson(false_alarm[metric], repetitions), wilson(false_pass[metric], repetitions)
        print(f"{metric}: 'unaffected within 15%' failed or inconclusive: {alarms}")
        print(f"{metric}: 'degraded by at least 10%' passed:            {passes}")


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:3]))
