"""The table of actors: per name, its builder, its parameters and their checks, and where it may run.

One table serves every path to an actor: the experiment-file validator (unknown actor, unknown,
mistyped or out-of-range parameter: an error naming the key, at collection), code-defined tests
(``kt_interfere``), the fixtures (``kt_cpu_stress`` ...), and the runner's skips (host-only
actors under container placement, GPU actors without a GPU). :func:`build` is the one way an
actor is made from a name.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_ktinterf.actors import builders
from pytest_ktinterf.actors.base import Actor
from pytest_ktinterf.actors.builders import ActorContext
from pytest_ktinterf.actors.gpu import gpu_unavailable_reason
from pytest_ktinterf.actors.placement import host_only_refusal
from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.options import Options

CORES = "cores"


@dataclass(frozen=True)
class Param:
    """A parameter's accepted types, what to write instead, and an optional static check."""

    types: tuple[type, ...]
    expected: str
    valid: Callable[[Any], bool] = lambda _: True


def _cores_ok(value: Any) -> bool:
    if isinstance(value, str):
        return value in ("server", "spare")
    return all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in value)


_CORES = Param((str, list), '"server", "spare" or a list of core numbers', _cores_ok)
_MAX_GIB = 1 << 20  # a PiB: past any machine's memory, so a typo (1e400 = inf) is refused here
_GIB = Param((int, float), "a size in GiB above 0, e.g. 2 or 0.5", lambda v: 0 < v <= _MAX_GIB)
_INT = Param((int,), "an integer")
_PERCENT = Param((int,), "an integer percentage, 1 to 100", lambda v: 1 <= v <= 100)
_WORKERS = Param((int,), "a positive integer", lambda v: v >= 1)
_DEVICE = Param((int,), "a GPU index, 0 or more", lambda v: v >= 0)
_BOOL = Param((bool,), "true or false")
_FRACTION = Param((float, int), "a fraction in (0, 1), e.g. 0.5", lambda v: 0 < v < 1)


@dataclass(frozen=True)
class ActorSpec:
    """One row of the table.

    ``host_only(params)`` says whether this configuration can only load the machine pytest runs
    on (it refuses, or its rows skip, when actors are placed in containers); ``unavailable()``
    says why it cannot run on this machine at all (no GPU), or None.
    """

    build: Callable[..., Actor] | None
    fixture: str | None
    summary: str
    params: dict[str, Param] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    host_only: Callable[[Mapping[str, Any]], bool] = lambda _: False
    unavailable: Callable[[], str | None] = lambda: None
    one_of: tuple[str, ...] = ()


def _gpu_unavailable() -> str | None:
    reason = gpu_unavailable_reason()
    return None if reason is None else f"needs a usable NVIDIA GPU: {reason}"


ACTORS: dict[str, ActorSpec] = {
    "none": ActorSpec(None, None, "no actor: the condition differs from the baseline only by its streams"),
    "cpu_stress": ActorSpec(
        builders.cpu_stress,
        "kt_cpu_stress",
        "stress-ng CPU workers pinned to cores",
        {CORES: _CORES, "load_percent": _PERCENT, "workers_per_core": _WORKERS},
        required=(CORES,),
    ),
    "memory_bandwidth": ActorSpec(
        builders.memory_bandwidth,
        "kt_memory_bandwidth",
        "stress-ng --stream on cores",
        {CORES: _CORES, "workers_per_core": _WORKERS},
    ),
    "ram_filler": ActorSpec(
        builders.ram_filler,
        "kt_ram_filler",
        "holds RAM, idle or streaming through it",
        {
            "gib": _GIB,
            "leave_available_gib": _GIB,
            "fraction_of_available": _FRACTION,
            "active": _BOOL,
            "mlock": _BOOL,
            CORES: _CORES,
        },
        one_of=("gib", "leave_available_gib", "fraction_of_available"),
    ),
    "ram_overflow": ActorSpec(
        builders.ram_overflow,
        "kt_ram_overflow",
        "RAM overflow, contained in the server's memory cgroup or on the host into swap",
        {
            "mode": Param((str,), '"contained" or "host"', lambda v: v in ("contained", "host")),
            "working_set_fraction": _FRACTION,
            "limit_mib": Param((int, float), "a positive limit in MiB", lambda v: 0 < v <= _MAX_GIB * 1024),
            "overflow_gib": _GIB,
        },
        host_only=lambda params: params.get("mode", "contained") == "host",
    ),
    "gpu_memory": ActorSpec(
        builders.gpu_memory,
        "kt_gpu_memory",
        "a child holding GPU memory",
        {"gib": _GIB, "device": _DEVICE},
        required=("gib",),
        host_only=lambda _: True,
        unavailable=_gpu_unavailable,
    ),
    "gpu_compute": ActorSpec(
        builders.gpu_compute,
        "kt_gpu_compute",
        "matrix products on the GPU at a duty cycle",
        {"duty_percent": _PERCENT, "device": _DEVICE},
        host_only=lambda _: True,
        unavailable=_gpu_unavailable,
    ),
    "corunner": ActorSpec(
        builders.corunner,
        "kt_corunner",
        "a co-running workload: a second llama-server (default) or any command",
        {
            "argv": Param(
                (list,), "a command as a list of strings", lambda v: all(isinstance(a, str) for a in v)
            ),
            CORES: _CORES,
            "busy": _BOOL,
            "url": Param((str,), "a loopback URL, http://127.0.0.1:PORT"),
        },
        host_only=lambda _: True,
    ),
}


def _accepts(param: Param, value: Any) -> bool:
    """Of an accepted type (a bool is not an integer here) and within the parameter's range."""
    if isinstance(value, bool) and bool not in param.types:
        return False
    return isinstance(value, param.types) and param.valid(value)


def check_params(actor: str, params: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """Problems with an actor's parameters as (key, problem, expected); empty when fine."""
    spec = ACTORS.get(actor)
    if spec is None:
        return [("actor", f"unknown actor {actor!r}", f"one of {', '.join(ACTORS)}")]
    problems: list[tuple[str, str, str]] = []
    for name, value in params.items():
        param = spec.params.get(name)
        if param is None:
            accepted = ", ".join(spec.params) or "no parameters"
            problems.append((f"params.{name}", f"{actor} takes no parameter {name!r}", accepted))
        elif not _accepts(param, value):
            problems.append((f"params.{name}", f"got {value!r}", param.expected))
    for name in spec.required:
        if name not in params:
            problems.append((f"params.{name}", f"{actor} needs {name!r}", spec.params[name].expected))
    if spec.one_of:
        given = [k for k in spec.one_of if k in params]
        if len(given) != 1:
            problems.append(
                ("params", f"{actor} got {given or 'no size'}", f"exactly one of {', '.join(spec.one_of)}")
            )
    return problems


def refusal(actor: str, params: Mapping[str, Any], options: Options) -> KtInterfError | None:
    """Why this actor, so configured, must not run where actors are placed now; None when it may.

    The one rule for skips (experiment rows, code-defined tests) and refusals (fixtures): a
    host-only actor under container placement would load the runner, not the engine's host.
    """
    spec = ACTORS[actor]
    if not spec.host_only(params):
        return None
    return host_only_refusal(options.actors_in, options.backend, spec.fixture or actor)


def bind(actor: str, args: tuple[Any, ...], params: Mapping[str, Any]) -> dict[str, Any]:
    """A fixture call's positional and keyword arguments as the actor's named parameters."""
    builder = ACTORS[actor].build
    assert builder is not None
    bound = inspect.signature(builder).bind(None, *args, **params)
    return {k: v for k, v in list(bound.arguments.items())[1:]}


def build(actor: str, ctx: ActorContext, *args: Any, **params: Any) -> Actor:
    """Make the named actor from its parameters (not started: enter it to start it)."""
    builder = ACTORS[actor].build
    if builder is None:
        raise ValueError(f"actor {actor!r} has nothing to build")
    return builder(ctx, *args, **params)
