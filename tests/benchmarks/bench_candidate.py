"""Benchmark: same-session A/B's detection and false-regression rates, on this machine.

Run: ``python -m tests.benchmarks.bench_candidate [repetitions] [threshold] [max pairs] [quota]
[backend] [residency]`` (default 10, 5%, 30, 0.9, process, both; residency ``alternate``: the two
servers are started in turns, never resident together, and each switch's cost is printed).
Each repetition is one real child session of the
small experiment of ``tests/gate_sessions.py`` (llama-server on the last core, started by the
process backend from its command, or by the embedded backend) running only its ``candidate``
items, alternately:

* identical -- the same server started again as the candidate (``--kt-candidate-cpu-quota=1``):
  any *regressed* metric is a false regression;
* capped -- the candidate's cgroup held to ``quota`` of its core (0.9: the calibration cap of
  issue 12, "about 10% slower"): its decode called *regressed* is a detection.

Printed per session: each metric's verdict with the candidate/current change and its interval;
then both rates with their 95% Wilson intervals, the capped sessions' median change (what the
cap did on this machine) and the run time. Numbers, not assertions.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pytest_ktinterf.report.baseline_text import gate_verdicts
from tests.benchmarks.bench_false_alarms import wilson
from tests.gate_sessions import new_project, session, usable


def main(argv: list[str]) -> int:
    repetitions = int(argv[1]) if len(argv) > 1 else 10
    threshold = argv[2] if len(argv) > 2 else "5%"
    max_pairs = argv[3] if len(argv) > 3 else "30"
    quota = argv[4] if len(argv) > 4 else "0.9"
    embedded = (argv[5] if len(argv) > 5 else "process") == "embedded"
    residency = argv[6] if len(argv) > 6 else "both"
    if not usable():
        print("needs llama-server (python -m pytest_ktinterf fetch), 2 cores and root")
        return 2
    started = time.monotonic()
    false_regressions = identical = identical_passed = detected = capped = 0
    changes: list[float] = []
    switches: list[float] = []  # seconds per server switch (start until ready, plus warm-up)
    with tempfile.TemporaryDirectory(prefix="bench-candidate-") as tmp:
        project = new_project(Path(tmp))
        for r in range(repetitions):
            slower = r % 2 == 1
            cap = quota if slower else "1"
            t0 = time.monotonic()
            code, output = session(
                project,
                project / f"s{r}.log",
                "-k",
                "candidate and not candidate-",  # the throughput items only
                f"--kt-candidate-cpu-quota={cap}",
                f"--kt-max-pairs={max_pairs}",
                f"--kt-candidate-residency={residency}",
                threshold=threshold,
                embedded=embedded,
            )
            if code not in (0, 1):  # not a verdict: an error, shown whole
                print(output[-3000:])
                return 1
            record = json.loads((project / "report.json").read_text())
            verdicts = {v["metric"]: v for v in gate_verdicts(record)}
            (comparison,) = [c for c in record["comparisons"] if c.get("id") == "candidate"]
            pairs = sum(1 for t in comparison["trials"] if t["arm"] == "condition")
            decode = verdicts["decode"]
            if slower:
                capped += 1
                detected += decode["word"] == "regressed"
                changes.append(comparison["ratios"]["decode"]["point"] - 1)
            else:
                identical += 1
                false_regressions += any(v["word"] == "regressed" for v in verdicts.values())
                identical_passed += all(v["word"] == "pass" for v in verdicts.values())
            starts = comparison.get("server_starts", [])
            switches += [s["start_s"] + s["warm_up_s"] for s in starts]
            print(
                f"session {r + 1} ({'capped ' + cap if slower else 'identical'}): exit {code}, "
                f"{pairs} pairs, {len(starts)} server switches, {time.monotonic() - t0:.0f} s",
                flush=True,
            )
            for metric in ("prefill", "decode"):
                v = verdicts.get(metric)
                if v is not None:
                    print(f"    {metric}: {v['word']} -- {v['reason'][:150]}", flush=True)
    backend = "embedded" if embedded else "process"
    print(
        f"threshold {threshold}; max pairs {max_pairs}; cap {quota}; {repetitions} sessions; {backend}; "
        f"residency {residency}"
    )
    print(f"false regressions (identical candidate, either metric): {wilson(false_regressions, identical)}")
    print(f"identical candidate passed (both metrics pass): {wilson(identical_passed, identical)}")
    print(f"detection (candidate capped at {quota}, decode regressed): {wilson(detected, capped)}")
    if changes:
        print(f"capped decode change, median of {len(changes)}: {100 * statistics.median(changes):+.1f}%")
    if switches:
        print(
            f"server switches: {len(switches)}, median {statistics.median(switches):.1f} s each "
            f"(start until ready, plus one warm-up round), {sum(switches):.0f} s in all"
        )
    print(f"run time {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
