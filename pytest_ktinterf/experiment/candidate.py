"""Same-session A/B: a candidate server judged against the current one in one session.

An upgrade of KT (its binary, model, flags) is best judged against the server it replaces on
the same machine at the same time: interleaved pairs (current, candidate, current, ...) share
the machine's drift, which separate sessions do not (``baseline/gate.py`` has to allow for the
spread between sessions; on a shared 2-core VM that spread alone hides a 20% loss).

With ``--kt-candidate-cmd`` or ``--kt-candidate-cpu-quota`` an experiment file gets the items
``candidate[prefill]`` and ``candidate[decode]``. Both servers are resident on the same cores and
measured alternately at the file's stream count; each metric is judged with the gate's three
verdicts (``baseline.gate.same_session_check``) against the user's ``--kt-baseline-fail``
threshold: *regressed* when the change is past the threshold and the whole interval lies below
no change, *inconclusive* (more pairs by the file's design, then reported) when past the
threshold within the pairs' noise.
"""

from __future__ import annotations

import contextlib

from pytest_ktinterf.baseline.gate import same_session_check
from pytest_ktinterf.baseline.thresholds import threshold_for
from pytest_ktinterf.experiment.schema import Experiment
from pytest_ktinterf.measure.compare import METRICS, Comparison
from pytest_ktinterf.testbed import Testbed

CANDIDATE = "candidate"  # the items' name and the comparison's id
VERSUS = "the current server"


def run(testbed: Testbed, experiment: Experiment, metrics: set[str], experiment_name: str) -> Comparison:
    """Interleaved current/candidate pairs at the file's stream count, judged per metric."""
    settings = testbed.options.baseline
    checks = [
        same_session_check(
            f"{CANDIDATE} {m}", m, threshold_for(settings.thresholds, m), VERSUS, settings.strict
        )
        for m in METRICS
        if m in metrics
    ]
    comparison = testbed.compare(
        lambda: contextlib.nullcontext(None),
        label=f"the candidate server against {VERSUS}",
        streams=experiment.streams or 1,
        design=experiment.design.capped(testbed.options.max_pairs),
        expectations=checks,
        candidate=True,
    )
    comparison.id = CANDIDATE
    comparison.experiment = experiment_name
    return comparison
