"""How each actor is built from its parameters: one function per row of the actor table.

A builder turns an experiment file's ``params`` (or a fixture call's arguments) into an actor
object, ready to be entered. It takes an :class:`ActorContext` -- the options, the log folder,
the running server's cores, where actors are placed -- explicitly, so the same builder serves
the fixtures, experiment files and code-defined tests. Whether an actor may run at all here
(host-only under container placement, GPU present) is decided by the table in ``registry.py``
before a builder is called; builders only build.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from pytest_ktinterf.actors.bandwidth import MemoryBandwidth
from pytest_ktinterf.actors.base import Actor
from pytest_ktinterf.actors.container import ContainerCpuStress, ContainerMemoryBandwidth, ContainerRamFiller
from pytest_ktinterf.actors.corunner import CoRunner
from pytest_ktinterf.actors.cpu import CpuStress, core_set
from pytest_ktinterf.actors.gpu import GpuCompute, GpuMemoryHog
from pytest_ktinterf.actors.memory import RamFiller
from pytest_ktinterf.actors.overflow import ContainedOverflow, HostOverflow
from pytest_ktinterf.actors.placement import resolve_placement
from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.options import Options
from pytest_ktinterf.progress import Say
from pytest_ktinterf.server.base import ServerHandle
from pytest_ktinterf.system import assets, docker_engine
from pytest_ktinterf.system.cpus import format_cpu_list
from pytest_ktinterf.system.engine_host import engine_cores, engine_meminfo

CoreSpec = list[int] | str


@dataclass
class ActorContext:
    """What building an actor needs from the session, passed explicitly.

    ``server`` is a getter: only actors placed relative to the server ("server"/"spare" cores,
    contained overflow) start it, so an actor on explicit cores needs no server at all.
    """

    options: Options
    log_dir: Path
    server: Callable[[], ServerHandle]
    say: Say

    @functools.cached_property
    def engine(self) -> Any:
        """The Docker engine client when actors run as containers there, else None."""
        if resolve_placement(self.options.actors_in, self.options.backend) == "host":
            return None
        return docker_engine.connect()

    def cores(self, spec: CoreSpec, *, on_engine: bool = True) -> list[int]:
        """A core list as given, or "server" / "spare" from the running server's affinity.

        With actors in containers the spare cores are the engine host's, not this machine's.
        """
        if not isinstance(spec, str):
            return list(spec)
        engine = self.engine if on_engine else None
        return core_set(spec, self.server().cpus(), engine_cores(engine) if engine is not None else None)

    @property
    def reserve_bytes(self) -> int | None:
        gib = self.options.memory_reserve_gib
        return None if gib is None else int(gib * 2**30)


def _stress_ng(
    ctx: ActorContext,
    host: type[Actor],
    in_container: type[Actor],
    kind: str,
    cores: CoreSpec,
    **settings: Any,
) -> Actor:
    """A stress-ng actor on ``cores``, on this host or as a container on the engine."""
    chosen = ctx.cores(cores)
    settings.update(
        cores=chosen,
        stress_ng=ctx.options.stress_ng,
        log_dir=ctx.log_dir,
        name=f"{kind}[{format_cpu_list(chosen)}]",
    )
    return host(**settings) if ctx.engine is None else in_container(client=ctx.engine, **settings)


def cpu_stress(
    ctx: ActorContext, cores: CoreSpec, load_percent: int | None = None, workers_per_core: int = 1
) -> Actor:
    """stress-ng CPU workers pinned to ``cores``: a list, "server" (the report's "KT's own CPU
    cores") or "spare" (every other core), optionally capped at ``load_percent``."""
    return _stress_ng(
        ctx, CpuStress, ContainerCpuStress, "cpu-stress", cores,
        load_percent=load_percent, workers_per_core=workers_per_core,
    )  # fmt: skip


def memory_bandwidth(ctx: ActorContext, cores: CoreSpec = "spare", workers_per_core: int = 1) -> Actor:
    """stress-ng ``--stream`` on ``cores``: the report's "RAM bandwidth" row."""
    return _stress_ng(
        ctx,
        MemoryBandwidth,
        ContainerMemoryBandwidth,
        "memory-bandwidth",
        cores,
        workers_per_core=workers_per_core,
    )


def ram_filler(
    ctx: ActorContext,
    gib: float | None = None,
    leave_available_gib: float | None = None,
    active: bool = False,
    mlock: bool = False,
    cores: CoreSpec | None = None,
    fraction_of_available: float | None = None,
) -> Actor:
    """Holds ``gib`` GiB (or all but ``leave_available_gib``, or a fraction of what is available
    when the actor is built, i.e. per trial), every page touched; ``active`` keeps streaming
    through it (the report's "co-runner infers"), else it idles ("holds RAM, idle")."""
    settings: dict[str, Any] = {
        "gib": gib,
        "leave_available_gib": leave_available_gib,
        "active": active,
        "mlock": mlock,
        "cpus": None if cores is None else ctx.cores(cores),
        "reserve_bytes": ctx.reserve_bytes,
        "log_dir": ctx.log_dir,
        "progress": ctx.say,
        "name": "ram-filler-active" if active else "ram-filler-idle",
    }
    if ctx.engine is None:
        if fraction_of_available is not None:
            settings["gib"] = fraction_of_available * psutil.virtual_memory().available / 2**30
        return RamFiller(**settings)
    actor = ContainerRamFiller(client=ctx.engine, **settings)
    if fraction_of_available is not None:  # of the engine host's memory
        actor.gib = fraction_of_available * engine_meminfo(ctx.engine, actor.image)["MemAvailable"] / 2**30
    return actor


def ram_overflow(
    ctx: ActorContext,
    mode: str = "contained",
    working_set_fraction: float = 0.5,
    limit_mib: float | None = None,
    overflow_gib: float = 1.0,
) -> Actor:
    """``contained``: the server's own memory cgroup limited below its working set (root; nothing
    else on the host is touched). ``host``: a filler pushes the host ``overflow_gib`` past its
    RAM, refused without swap unless ``--kt-allow-host-overflow``."""
    if mode == "contained":
        server = ctx.server()
        return ContainedOverflow(
            cgroup=server.cgroup,
            why_no_cgroup=str(server.meta.get("memory_cgroup", f"{server.backend} server")),
            working_set_fraction=working_set_fraction,
            limit_mib=limit_mib,
        )
    if mode == "host":
        return HostOverflow(
            overflow_gib=overflow_gib,
            allow_without_swap=ctx.options.allow_host_overflow,
            reserve_bytes=ctx.reserve_bytes,
            log_dir=ctx.log_dir,
            progress=ctx.say,
        )
    raise KtInterfError(f"RAM overflow mode {mode!r} is unknown", "use 'contained' or 'host'")


def corunner(
    ctx: ActorContext,
    argv: list[str] | None = None,
    cores: CoreSpec = "spare",
    busy: bool = True,
    url: str | None = None,
) -> Actor:
    """A co-running workload: without ``argv`` a second embedded llama-server (the report used a
    second llama.cpp server), inferring in a request loop when ``busy``, else idle holding its
    model; with ``argv`` any command, ``url`` making it wait for readiness (and, when busy, keep
    sending requests there, loopback only)."""
    cpus = ctx.cores(cores, on_engine=False)
    if argv is None:
        found = assets.resolve(ctx.options.llama_server, ctx.options.model)
        return CoRunner.embedded_llama(found, cpus, ctx.log_dir, busy=busy, say=ctx.say)
    return CoRunner(
        argv=list(argv), cpus=cpus, log_dir=ctx.log_dir, url=url, request_loop=busy and bool(url), say=ctx.say
    )


def gpu_memory(ctx: ActorContext, gib: float, device: int = 0) -> Actor:
    """A child holding ``gib`` GiB of device memory (NVML-proven): "co-runner holds VRAM, idle"."""
    return GpuMemoryHog(gib=gib, device=device, log_dir=ctx.log_dir)


def gpu_compute(ctx: ActorContext, duty_percent: int = 100, device: int = 0) -> Actor:
    """Matrix products at a duty cycle (NVML-proven): "co-runner computes on the GPU"."""
    return GpuCompute(duty_percent=duty_percent, device=device, log_dir=ctx.log_dir)
