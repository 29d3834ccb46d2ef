"""Under ``pytest -n 2`` (default ``--dist load``), a condition with two metrics is measured once.

Its two items land on two workers; the first to take the machine lock measures, the other
reads the outcome (``experiment/outcomes.py``). A real embedded server, a real comparison.
"""

from __future__ import annotations

import json
import os
import sys

from pytest_ktinterf.system.assets import cache_dir
from tests.child_sessions import child_process

CACHE = str(cache_dir())  # resolved now: pytester points HOME elsewhere

EXPERIMENT = """
[experiment]
title = "xdist once"

[design]
min_pairs = 6
max_pairs = 6
step = 4

[conditions.aa]
label = "two streams against one"
actor = "none"
streams = 2
baseline_streams = 1
expect.prefill = { outcome = "unaffected", within = 0.5 }
expect.decode = { outcome = "unaffected", within = 0.5 }
"""


def test_two_metric_condition_is_measured_once_under_default_dist(pytester, tmp_path):
    (pytester.path / "aa.toml").write_text(EXPERIMENT)
    env = {**os.environ, "KTINTERF_STATE_DIR": str(tmp_path / "state"), "KTINTERF_CACHE": CACHE}
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "2", "-v",
            "--kt-report-json=r.json", "aa.toml"]  # fmt: skip
    with child_process(argv, cwd=pytester.path, env=env, log_path=tmp_path / "child.log") as child:
        child.popen.wait(timeout=600)
        output = child.output()
    assert "aa[prefill]" in output and "aa[decode]" in output, output
    results = [line for line in output.splitlines() if line.startswith("[gw") and "aa[" in line]
    assert len(results) == 2 and not [r for r in results if "ERROR" in r], output  # judged, not broken
    merged = json.loads((pytester.path / "r.json").read_text())
    assert len(merged["comparisons"]) == 1, merged["comparisons"]
    per_worker = [json.loads(p.read_text()) for p in pytester.path.glob("r-gw*.json")]
    assert sum(len(r["comparisons"]) for r in per_worker) == 1
    assert merged["comparisons"][0]["pairs"] == 6
    rows = [line for line in output.splitlines() if line.startswith("aa: ")]
    assert len(rows) == 1, output
