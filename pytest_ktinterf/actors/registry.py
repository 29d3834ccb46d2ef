"""Actors by name, as experiment files and markers refer to them, with the parameters each takes.

One table serves the experiment-file validator (unknown actor, unknown or mistyped parameter:
an error naming the key) and the runner (which fixture builds the actor). The fixtures
themselves live in ``plugin.py``; this module only knows their names and signatures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CORES = "cores"


@dataclass(frozen=True)
class ActorSpec:
    """An actor's fixture and its parameters: name -> (accepted types, what to write)."""

    fixture: str | None
    summary: str
    params: dict[str, tuple[tuple[type, ...], str]] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)


_CORES = ((str, list), '"server", "spare" or a list of core numbers')
_GIB = ((int, float), "a size in GiB, e.g. 2 or 0.5")
_INT = ((int,), "an integer")
_BOOL = ((bool,), "true or false")
_FRACTION = ((float, int), "a fraction in (0, 1), e.g. 0.5")

ACTORS: dict[str, ActorSpec] = {
    "none": ActorSpec(None, "no actor: the condition differs from the baseline only by its streams"),
    "cpu_stress": ActorSpec(
        "kt_cpu_stress",
        "stress-ng CPU workers pinned to cores",
        {CORES: _CORES, "load_percent": _INT, "workers_per_core": _INT},
        required=(CORES,),
    ),
    "memory_bandwidth": ActorSpec(
        "kt_memory_bandwidth",
        "stress-ng --stream on cores",
        {CORES: _CORES, "workers_per_core": _INT},
    ),
    "ram_filler": ActorSpec(
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
    ),
    "ram_overflow": ActorSpec(
        "kt_ram_overflow",
        "RAM overflow, contained in the server's memory cgroup or on the host into swap",
        {
            "mode": ((str,), '"contained" or "host"'),
            "working_set_fraction": _FRACTION,
            "limit_mib": ((int, float), "a limit in MiB"),
            "overflow_gib": _GIB,
        },
        choices={"mode": ("contained", "host")},
    ),
    "gpu_memory": ActorSpec(
        "kt_gpu_memory", "a child holding GPU memory", {"gib": _GIB, "device": _INT}, required=("gib",)
    ),
    "gpu_compute": ActorSpec(
        "kt_gpu_compute", "matrix products on the GPU at a duty cycle", {"duty_percent": _INT, "device": _INT}
    ),
    "corunner": ActorSpec(
        "kt_corunner",
        "a co-running workload: a second llama-server (default) or any command",
        {
            "argv": ((list,), "a command as a list of strings"),
            CORES: _CORES,
            "busy": _BOOL,
            "url": ((str,), "a loopback URL, http://127.0.0.1:PORT"),
        },
    ),
}


def check_params(actor: str, params: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Problems with an actor's parameters as (key, problem, expected); empty when fine."""
    spec = ACTORS.get(actor)
    if spec is None:
        return [("actor", f"unknown actor {actor!r}", f"one of {', '.join(ACTORS)}")]
    problems: list[tuple[str, str, str]] = []
    for name, value in params.items():
        if name not in spec.params:
            accepted = ", ".join(spec.params) or "no parameters"
            problems.append((f"params.{name}", f"{actor} takes no parameter {name!r}", accepted))
            continue
        types, what = spec.params[name]
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            problems.append((f"params.{name}", f"got {value!r}", what))
            continue
        if name in spec.choices and value not in spec.choices[name]:
            problems.append((f"params.{name}", f"got {value!r}", what))
        elif spec.params[name] is _FRACTION and not 0 < value < 1:
            problems.append((f"params.{name}", f"{value!r} is outside (0, 1)", what))
        elif types == _GIB[0] and value <= 0:
            problems.append((f"params.{name}", f"{value!r} is not positive", what))
        elif (name == CORES and isinstance(value, str) and value not in ("server", "spare")) or (
            name == CORES
            and isinstance(value, list)
            and not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in value)
        ):
            problems.append((f"params.{name}", f"got {value!r}", what))
    for name in spec.required:
        if name not in params:
            problems.append((f"params.{name}", f"{actor} needs {name!r}", spec.params[name][1]))
    if actor == "ram_filler":
        sizes = [k for k in ("gib", "leave_available_gib", "fraction_of_available") if k in params]
        if len(sizes) != 1:
            problems.append(
                (
                    "params",
                    f"ram_filler got {sizes or 'no size'}",
                    "exactly one of gib, leave_available_gib, fraction_of_available",
                )
            )
    return problems
