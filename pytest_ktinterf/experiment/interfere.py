"""Running one condition against its baseline and judging it: shared by experiment files and code.

An experiment file's item and a code-defined test (``kt_interfere``) both end here, so the
same skips, the same sequential design and the same verdicts apply to both. The actor is built
through its fixture (``plugin.py``), which also guarantees it is stopped at teardown.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import psutil
import pytest

from pytest_ktinterf.actors.container import engine_cores, host_only_refusal, resolve_placement
from pytest_ktinterf.actors.cpu import core_set
from pytest_ktinterf.actors.registry import ACTORS, CORES, check_params
from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.experiment.schema import ConditionSpec
from pytest_ktinterf.judge.expectations import ExpectationError, parse
from pytest_ktinterf.measure.compare import Comparison, Condition, Design
from pytest_ktinterf.options import Options
from pytest_ktinterf.server import ServerHandle
from pytest_ktinterf.system import docker_engine


class VerdictFailure(AssertionError):
    """An expectation failed or stayed inconclusive; the message is the verdict lines."""


def skip_reason(spec: ConditionSpec, request: pytest.FixtureRequest) -> str | None:
    """Why this machine or server cannot run the condition (GPU actors skip in their fixtures)."""
    options: Options = request.getfixturevalue("kt_options")
    params = spec.params
    mode = params.get("mode", "contained")
    no_swap = psutil.swap_memory().total == 0
    if spec.actor == "ram_overflow" and mode == "host" and no_swap and not options.allow_host_overflow:
        return (
            "host RAM overflow needs swap to overflow into (add a swap file: fallocate, mkswap, "
            "swapon) or --kt-allow-host-overflow=yes; the contained overflow runs without it"
        )
    if spec.actor == "ram_overflow" and mode == "contained":
        server: ServerHandle = request.getfixturevalue("kt_server")
        if server.cgroup is None:
            why = server.meta.get("memory_cgroup")
            return f"contained RAM overflow: the server has no memory cgroup ({why})"
    in_containers = resolve_placement(options.actors_in, options.backend) == "docker"
    host_only = spec.actor in ("corunner", "gpu_memory", "gpu_compute") or (
        spec.actor == "ram_overflow" and mode == "host"
    )
    refusal = host_only_refusal(options.actors_in, options.backend, spec.actor) if host_only else None
    if refusal is not None:
        return refusal.line()
    cores = params.get(CORES)
    if isinstance(cores, str):
        try:  # the same rule the actor fixtures apply: unknown or empty core sets cannot run here
            available = engine_cores(docker_engine.connect()) if in_containers else None
            core_set(cores, request.getfixturevalue("kt_server").cpus(), available)
        except KtInterfError as exc:
            return f"cores = {cores!r}: {exc.line()}"
    return None


def condition_factory(spec: ConditionSpec, request: pytest.FixtureRequest) -> Condition:
    """A zero-argument callable building a fresh actor per condition trial (or none)."""
    fixture = ACTORS[spec.actor].fixture
    if fixture is None:
        return contextlib.nullcontext
    make = request.getfixturevalue(fixture)
    params = dict(spec.params)
    return lambda: make(**params)


def run(request: pytest.FixtureRequest, spec: ConditionSpec, *, metrics: set[str] | None = None,
        experiment: str | None = None) -> Comparison:  # fmt: skip
    """Skip, or run the condition's interleaved pairs until its expectations are decided.

    ``metrics`` restricts the judged expectations (the items the user selected).
    """
    options: Options = request.getfixturevalue("kt_options")
    reason = skip_reason(spec, request)
    if reason is not None:
        pytest.skip(reason)
    condition = condition_factory(spec, request)
    design = spec.design
    if options.max_pairs is not None:
        design = dataclasses.replace(
            design, min_pairs=min(design.min_pairs, options.max_pairs), max_pairs=options.max_pairs
        )
    streams = spec.streams or 1
    llama_default = options.backend == "embedded" or (
        options.backend == "docker" and not options.docker_cmd and not options.preset
    )
    if max(streams, spec.baseline_streams or 1) > options.parallel and llama_default:
        raise KtInterfError(
            f"{spec.id}: {streams} streams asked, but the embedded server has {options.parallel} slots",
            "raise --kt-parallel or lower the condition's streams",
        )
    expectations = [e for m, e in spec.expect.items() if metrics is None or m in metrics]
    comparison: Comparison = request.getfixturevalue("kt_compare")(
        condition,
        label=spec.label,
        streams=streams,
        baseline_streams=spec.baseline_streams,
        design=design,
        expectations=expectations,
    )
    comparison.id = spec.id
    comparison.experiment = experiment
    comparison.reference = dict(spec.reference)
    comparison.profile = spec.overridden_by
    return comparison


def raise_for_verdicts(comparison: Comparison) -> None:
    failures = comparison.failures()
    if failures:
        raise VerdictFailure("\n".join(v.line() for v in failures))


def spec_from_call(
    request: pytest.FixtureRequest,
    actor: str,
    *,
    expect: dict[str, Any] | None,
    label: str | None,
    streams: int | None,
    baseline_streams: int | None,
    design: Design | dict[str, int] | None,
    params: dict[str, Any],
) -> ConditionSpec:
    """A condition for a code-defined test, validated like a file's (errors name the argument)."""
    marker = request.node.get_closest_marker("interference")
    if expect is None and marker is not None:
        expect = marker.kwargs.get("expect")
    if not expect:
        raise KtInterfError(
            f"kt_interfere({actor!r}) has no expectations",
            "pass expect={'decode': 'degraded'} or mark the test "
            "@pytest.mark.interference(expect={'decode': 'degraded'})",
        )
    for key, problem, expected in check_params(actor, params):
        raise KtInterfError(f"kt_interfere({actor!r}): {key}: {problem}", f"expected {expected}")
    try:
        parsed = {metric: parse(metric, value) for metric, value in expect.items()}
    except ExpectationError as exc:
        raise KtInterfError(f"kt_interfere: {exc.key}: {exc.problem}", f"expected {exc.expected}") from None
    if isinstance(design, dict):
        design = Design(**design)
    spec = ConditionSpec(
        id=request.node.name,
        label=label or (f"{actor} {params}" if params else actor),
        actor=actor,
        params=params,
        expect=parsed,
        reference={},
        streams=streams,
        baseline_streams=baseline_streams,
    )
    return dataclasses.replace(spec, design=design) if design is not None else spec
