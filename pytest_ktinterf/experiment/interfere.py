"""Running one condition against its baseline and judging it: shared by experiment files and code.

An experiment file's item and a code-defined test (``kt_interfere``) both end here, so the
same skips, the same sequential design and the same verdicts apply to both. Its dependencies
come in explicitly: the testbed (server, probe, report, actor context) and the condition; the
actor is built from the table in ``actors/registry.py`` for every condition trial and entered
as a context manager, so it is stopped whatever happens.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import psutil
import pytest

from pytest_ktinterf.actors.registry import ACTORS, CORES, build, check_params, refusal
from pytest_ktinterf.baseline.store import figure_key
from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.experiment.schema import ConditionSpec
from pytest_ktinterf.judge.expectations import ExpectationError, parse
from pytest_ktinterf.judge.verdict import Check
from pytest_ktinterf.measure.compare import Comparison, Condition, Design, partial_comparison
from pytest_ktinterf.options import Options
from pytest_ktinterf.testbed import Testbed


class VerdictFailure(AssertionError):
    """An expectation failed or stayed inconclusive; the message is the verdict lines."""


def skip_reason(spec: ConditionSpec, testbed: Testbed) -> str | None:
    """Why this machine or server cannot run the condition, or None when it can."""
    options = testbed.options
    params = spec.params
    mode = params.get("mode", "contained")
    no_swap = psutil.swap_memory().total == 0
    if spec.actor == "ram_overflow" and mode == "host" and no_swap and not options.allow_host_overflow:
        return (
            "host RAM overflow needs swap to overflow into (add a swap file: fallocate, mkswap, "
            "swapon) or --kt-allow-host-overflow=yes; the contained overflow runs without it"
        )
    refused = refusal(spec.actor, params, options)
    if refused is not None:
        return refused.line()
    unavailable = ACTORS[spec.actor].unavailable()
    if unavailable is not None:
        return unavailable
    if spec.actor == "ram_overflow" and mode == "contained":
        server = testbed.server()
        if server.cgroup is None:
            why = server.meta.get("memory_cgroup")
            return f"contained RAM overflow: the server has no memory cgroup ({why})"
    cores = params.get(CORES)
    if isinstance(cores, str):
        try:  # the same rule the actor builders apply: unknown or empty core sets cannot run here
            testbed.actors.cores(cores, on_engine=spec.actor != "corunner")
        except KtInterfError as exc:
            return f"cores = {cores!r}: {exc.line()}"
    return None


def check_slots(spec: ConditionSpec, options: Options) -> None:
    """The embedded llama-server has ``--kt-parallel`` slots: more streams would queue, unmeasured."""
    streams = max(spec.streams or 1, spec.baseline_streams or 1)
    llama_default = options.backend == "embedded" or (
        options.backend == "docker" and not options.docker_cmd and not options.preset
    )
    if streams > options.parallel and llama_default:
        raise KtInterfError(
            f"{spec.id}: {streams} streams asked, but the embedded server has {options.parallel} slots",
            "raise --kt-parallel or lower the condition's streams",
        )


def condition_factory(spec: ConditionSpec, testbed: Testbed, *, candidate: bool = False) -> Condition:
    """A zero-argument callable building a fresh actor per condition trial (or none).

    The actor is placed relative to the server it is measured with: "server" cores and a
    contained overflow's cgroup are the current server's (``Testbed.actors``), or the A/B
    candidate's (``Testbed.candidate_actors``) with ``candidate``. Both are read at build time.
    """
    if ACTORS[spec.actor].build is None:
        return contextlib.nullcontext
    params = dict(spec.params)
    if candidate:
        return lambda: build(spec.actor, testbed.candidate_actors, **params)
    return lambda: build(spec.actor, testbed.actors, **params)


def run(testbed: Testbed, spec: ConditionSpec, *, metrics: set[str] | None = None,
        experiment: str | None = None) -> Comparison:  # fmt: skip
    """Skip, or run the condition's interleaved pairs until its hard claims are decided.

    Every check goes to the comparison, the report's cells too: they are judged on the same
    interval and recorded, but never fail and never ask for more pairs (``Comparison.decided``),
    so a condition with only the report's cells runs ``min_pairs``. ``metrics`` restricts the
    judged checks (the items the user selected).
    """
    options = testbed.options
    reason = skip_reason(spec, testbed)
    if reason is not None:
        pytest.skip(reason)
    design = spec.design.capped(options.max_pairs)
    streams = spec.streams or 1
    check_slots(spec, options)
    expectations: list[Check] = [e for e in spec.checks if metrics is None or e.metric in metrics]
    if testbed.gate is not None:  # the baseline's checks, judged on the same pairs
        missing = testbed.gate.require()
        if missing:
            testbed.say(f"{spec.id}: {missing}")
        figure = figure_key(experiment, spec.id, spec.max_tokens)
        expectations += testbed.gate.condition_checks(figure, metrics or spec.metrics, spec.gate)
    try:
        comparison = testbed.compare(
            condition_factory(spec, testbed),
            label=spec.label,
            streams=streams,
            baseline_streams=spec.baseline_streams,
            design=design,
            expectations=expectations,
            max_tokens=spec.max_tokens,
        )
    except BaseException as exc:  # an aborted comparison is recorded under its condition's name too
        partial = partial_comparison(exc)
        if partial is not None:
            _name(partial, spec, experiment)
        raise
    return _name(comparison, spec, experiment)


def _name(comparison: Comparison, spec: ConditionSpec, experiment: str | None) -> Comparison:
    """Stamp the condition's identity and the report's words on its comparison, for the record."""
    comparison.id = spec.id
    comparison.experiment = experiment
    comparison.reference = dict(spec.reference)
    comparison.reference_effect = dict(spec.report_effect)
    return comparison


def raise_for_verdicts(comparison: Comparison) -> None:
    failures = comparison.failures()
    if failures:
        raise VerdictFailure("\n".join(v.line() for v in failures))


def spec_from_call(
    node: pytest.Item,
    actor: str,
    *,
    expect: dict[str, Any] | None,
    label: str | None,
    report: dict[str, Any] | None = None,
    streams: int | None,
    baseline_streams: int | None,
    design: Design | dict[str, int] | None,
    params: dict[str, Any],
    max_tokens: int | None = None,
) -> ConditionSpec:
    """A condition for a code-defined test, validated like a file's (errors name the argument).

    ``expect`` holds hard claims; ``report`` cells to compare with (shown, never failing), e.g.
    another machine's figures. Either may come from ``@pytest.mark.interference(...)``.
    ``max_tokens``: the condition's own output length, both arms, as in a file (None: the session's).
    """
    marker = node.get_closest_marker("interference")
    if expect is None and marker is not None:
        expect = marker.kwargs.get("expect")
    if report is None and marker is not None:
        report = marker.kwargs.get("report")
    if not expect and not report:
        raise KtInterfError(
            f"kt_interfere({actor!r}) has no expectations",
            "pass expect={'decode': 'degraded'} (hard claims) and/or report={...} (cells to compare "
            "with), or mark the test @pytest.mark.interference(expect={'decode': 'degraded'})",
        )
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 4
    ):
        raise KtInterfError(f"kt_interfere({actor!r}): max_tokens={max_tokens!r}", "expected an integer >= 4")
    for key, problem, expected in check_params(actor, params):
        raise KtInterfError(f"kt_interfere({actor!r}): {key}: {problem}", f"expected {expected}")
    try:
        parsed = {metric: parse(metric, value) for metric, value in (expect or {}).items()}
        cells = {
            metric: parse(metric, value, key=f"report.{metric}", kind="report")
            for metric, value in (report or {}).items()
        }
    except ExpectationError as exc:
        raise KtInterfError(f"kt_interfere: {exc.key}: {exc.problem}", f"expected {exc.expected}") from None
    if isinstance(design, dict):
        try:
            design = Design(**design)
        except (TypeError, ValueError) as exc:
            raise KtInterfError(
                f"kt_interfere({actor!r}): design={design!r}: {exc}",
                "give min_pairs, max_pairs, step and rounds as integers, with enough pairs at the first look",
            ) from None
    spec = ConditionSpec(
        id=node.name,
        label=label or (f"{actor} {params}" if params else actor),
        actor=actor,
        params=params,
        expect=parsed,
        reference={metric: cell.outcome for metric, cell in cells.items()},
        streams=streams,
        baseline_streams=baseline_streams,
        max_tokens=max_tokens,
        report=cells,
    )
    return dataclasses.replace(spec, design=design) if design is not None else spec
