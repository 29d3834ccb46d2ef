"""Same-session A/B: a candidate server judged against the current one in one session.

An upgrade of KT (its binary, model, flags) is best judged against the server it replaces on
the same machine at the same time: interleaved pairs (current, candidate, current, ...) share
the machine's drift, which separate sessions do not (``baseline/gate.py`` has to allow for the
spread between sessions; on a shared 2-core VM that spread alone hides a 20% loss).

With ``--kt-candidate-cmd`` or ``--kt-candidate-cpu-quota`` an experiment file gets the items
``candidate[prefill]`` and ``candidate[decode]`` (uncontended throughput) and, per condition,
``candidate-<condition>[metric]``: its effect on the candidate against its effect on the current
server (is the upgrade more sensitive to its neighbours? ``measure.sensitivity``). Both servers
are resident on the same cores and measured alternately (or, with
``--kt-candidate-residency alternate``, started in turns: ``server/alternating.py``). Each
metric is judged with the gate's three verdicts (``baseline.gate.same_session_check``) against
the user's ``--kt-baseline-fail`` threshold: *regressed* when the change is past the threshold
and the whole interval lies below no change, *pass* when the whole interval lies above the
threshold's loss, *inconclusive* (more pairs by the design, then reported) otherwise.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest

from pytest_ktinterf.baseline.gate import GateCheck, same_session_check
from pytest_ktinterf.baseline.thresholds import threshold_for
from pytest_ktinterf.experiment.interfere import check_slots, condition_factory, skip_reason
from pytest_ktinterf.experiment.schema import ConditionSpec, Experiment
from pytest_ktinterf.measure.compare import CANDIDATE, METRICS, Comparison, partial_comparison
from pytest_ktinterf.testbed import Testbed

VERSUS = "the current server"
VERSUS_EFFECT = "the current server's effect"


def effect_item(condition_id: str) -> str:
    """The name of a condition's A/B item (before ``[metric]``): ``candidate-cpu_server``."""
    return f"{CANDIDATE}-{condition_id}"


def _checks(testbed: Testbed, figure: str, metrics: set[str], versus: str) -> list[GateCheck]:
    settings = testbed.options.baseline
    return [
        same_session_check(f"{figure} {m}", m, threshold_for(settings.thresholds, m), versus, settings.strict)
        for m in METRICS
        if m in metrics
    ]


def run(testbed: Testbed, experiment: Experiment, metrics: set[str], experiment_name: str) -> Comparison:
    """Interleaved current/candidate pairs at the file's stream count, judged per metric."""
    checks = _checks(testbed, CANDIDATE, metrics, VERSUS)
    with _named(CANDIDATE, experiment_name) as name:
        return name(
            testbed.compare(
                lambda: contextlib.nullcontext(None),
                label=f"the candidate server against {VERSUS}",
                streams=experiment.streams or 1,
                design=experiment.design.capped(testbed.options.max_pairs),
                expectations=checks,
                candidate=True,
            )
        )


@contextlib.contextmanager
def _named(item: str, experiment_name: str) -> Iterator[Callable[[Comparison], Comparison]]:
    """Stamp the item's id and file on its comparison, an aborted one (riding on the error) too."""

    def name(comparison: Comparison) -> Comparison:
        comparison.id, comparison.experiment = item, experiment_name
        return comparison

    try:
        yield name
    except BaseException as exc:
        partial = partial_comparison(exc)
        if partial is not None:
            name(partial)
        raise


def run_condition(
    testbed: Testbed, spec: ConditionSpec, metrics: set[str], experiment_name: str
) -> Comparison:
    """The condition's effect on the candidate against its effect on the current server.

    Interleaved quads (``measure.sensitivity``) with the condition's own design and streams;
    judged with the gate's three verdicts on candidate effect / current effect: *regressed*
    when the candidate loses more to the neighbour by more than the threshold, beyond the noise.
    """
    reason = skip_reason(spec, testbed) or _candidate_skip_reason(spec, testbed)
    if reason is not None:
        pytest.skip(reason)
    check_slots(spec, testbed.options)
    with _named(effect_item(spec.id), experiment_name) as name:
        return name(
            testbed.compare_effects(
                (condition_factory(spec, testbed), condition_factory(spec, testbed, candidate=True)),
                label=f"{spec.label}: effect, candidate vs current",
                design=spec.design.capped(testbed.options.max_pairs),
                expectations=_checks(testbed, effect_item(spec.id), metrics, VERSUS_EFFECT),
                streams=spec.streams or 1,
                baseline_streams=spec.baseline_streams,
            )
        )


def _candidate_skip_reason(spec: ConditionSpec, testbed: Testbed) -> str | None:
    """What the candidate lacks that the condition needs (``skip_reason`` asked the current server).

    Both are pinned to the same cores, so only the contained overflow's memory cgroup can differ.
    """
    if spec.actor == "ram_overflow" and spec.params.get("mode", "contained") == "contained":
        server = testbed.candidate_actors.server()
        if server.cgroup is None:
            why = server.meta.get("memory_cgroup")
            return f"contained RAM overflow: the candidate server has no memory cgroup ({why})"
    return None
