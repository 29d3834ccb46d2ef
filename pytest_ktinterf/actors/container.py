"""CPU and RAM actors as containers on the server's Docker engine, a remote ``DOCKER_HOST`` too.

Why: a team that tests a GPU box from a CI runner reaches the box only through its Docker engine.
Interference must happen where the server runs, so the actor's load runs in a container on that
engine, and its proof comes from where the load is: the engine's own accounting of the container
(cgroup CPU time per core, memory, tasks), read through the API -- never ``psutil`` on the runner,
which sees nothing of the remote box.

The load is stress-ng from the tools image (``image.py``; ``python -m pytest_ktinterf docker``
imports it): ``--cpu`` and ``--stream`` workers for CPU stress and memory bandwidth, ``--vm``
for the RAM filler (idle: written once with random bytes, then held; active: rewritten for ever).
Each container is pinned with ``cpuset_cpus``, has no network, carries the plugin's labels (so a
killed session's leftovers are reaped by the next one) and is always removed on stop. Memory
safety is the same rule as on this host (``memory.plan_fill``), applied to the engine host's own
``/proc/meminfo``, read in a throwaway container.

What the engine's host has and the actor's container itself are ``system/engine_host.py``;
whether actors run here or there (``--kt-actors-in``) is ``placement.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pytest_ktinterf.actors.bandwidth import MemoryBandwidth
from pytest_ktinterf.actors.base import wait_for
from pytest_ktinterf.actors.cpu import SAFETY_TIMEOUT_S, CpuStress
from pytest_ktinterf.actors.memory import (
    GIB,
    MIB,
    TOLERANCE,
    RamFiller,
    default_reserve_bytes,
    fmt_gib,
    plan_fill,
)
from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.system.cpus import format_cpu_list, parse_cpu_list
from pytest_ktinterf.system.engine_host import (
    ActorContainer,
    check_cores,
    engine_meminfo,
    require_tool,
)
from pytest_ktinterf.system.image import STRESS_NG_IN_IMAGE, default_tag

OFF_CORE_SLACK = 0.02  # CPU time allowed outside the pinned cores (the engine's own bookkeeping)


def _engine(client: Any, actor: str) -> Any:
    if client is None:
        raise KtInterfError(f"{actor}: no Docker engine client", "pass client=docker_engine.connect()")
    return client


@dataclass
class ContainerCpuStress(CpuStress):
    """stress-ng workers in a container on the engine, pinned with ``cpuset_cpus``.

    The pressure is proven as on this host, by each worker's share of a core, but counted by the
    engine: the container's CPU time and tasks. Pinning is proven by the per-core CPU time the
    engine reports (cgroup v1): all but 2% of it must fall on the asked cores.
    """

    client: Any = None
    image: str = field(default_factory=default_tag)
    container: ActorContainer | None = None
    _per_core_at_start: list[float] | None = None

    def _binary(self) -> str:
        require_tool(_engine(self.client, self.name), self.image, "stress-ng")
        check_cores(self.cores, self.client)
        return STRESS_NG_IN_IMAGE

    def _launch(self, argv: list[str]) -> None:
        self.container = ActorContainer.start(
            self.client, image=self.image, argv=argv, name=self.name, cpus=self.cores, log_path=self.log_path
        )
        self._per_core_at_start = None

    def _running(self) -> bool:
        return self.container is not None and self.container.running()

    def _exit_code(self) -> int | None:
        return self.container.exit_code() if self.container is not None else None

    def _log_tail(self) -> str:
        if self.container is None:
            return ""
        return self.container.pump.tail(drain=not self.container.running())

    def _live_workers(self) -> int:
        """Tasks in the container but its first (the stress-ng parent), as the engine counts them."""
        assert self.container is not None
        stats = self.container.stats()
        if self._per_core_at_start is None:
            self._per_core_at_start = self.container.per_core_seconds(stats)
        return max(0, self.container.tasks(stats) - 1)

    def _cpu_clock(self) -> tuple[float, float]:
        assert self.container is not None
        return self.container.cpu_clock()

    def _check_pinning(self) -> None:
        """Measured, not configured: where the container's CPU time went since it started."""
        assert self.container is not None
        per_core = self.container.per_core_seconds()
        if per_core is None:  # a cgroup v2 engine: the cpuset cgroup is the proof we have
            cpuset = self.container.container.attrs.get("HostConfig", {}).get("CpusetCpus", "")
            if sorted(parse_cpu_list(cpuset, "CpusetCpus", check_available=False)) != sorted(self.cores):
                raise KtInterfError(
                    f"{self.name}: the engine pinned the container to {cpuset!r}, not "
                    f"{format_cpu_list(self.cores)}",
                    "the engine ignores cpuset_cpus; check its cgroup setup",
                )
            return
        total = sum(per_core)
        outside = sum(s for core, s in enumerate(per_core) if core not in self.cores)
        if total > 0 and outside > OFF_CORE_SLACK * total:
            raise KtInterfError(
                f"{self.name}: {outside / total:.0%} of the container's CPU time ran outside cores "
                f"{format_cpu_list(self.cores)}",
                "the engine does not enforce cpuset_cpus; check its cgroup setup",
            )

    def _halt(self) -> None:
        if self.container is not None:
            self.container.remove()

    def finished(self) -> bool:
        return self.container is not None and self.container.removed

    def _live_evidence(self) -> dict[str, Any]:
        record = super()._live_evidence()
        record["placement"] = "docker"
        record["container"] = self.container.name if self.container is not None else None
        return record


@dataclass
class ContainerMemoryBandwidth(ContainerCpuStress, MemoryBandwidth):
    """stress-ng ``--stream`` in a container; its MB/s come from the container's log after stop."""

    stressor: str = "stream"
    name: str = "memory-bandwidth"


@dataclass
class ContainerRamFiller(RamFiller):
    """Holds ``gib`` GiB (or all but ``leave_available_gib``) in a container: stress-ng ``--vm``.

    Idle: every page written once with random bytes (``rand-set``: zero pages would be no real
    pressure), then held (``--vm-hang 0``). Active: rewritten for ever (``--vm-keep``), the
    "co-runner infers on CPU/RAM" row. Proof, through the engine: the container's anonymous
    memory within 10% of the target; active, also its CPU time (at least 30% of a core). The
    container's memory limit is the target plus 256 MiB, so a runaway filler is the only thing
    the kernel kills. Sizes, safety rule and evidence are the host filler's.
    """

    client: Any = None
    image: str = field(default_factory=default_tag)
    min_share: float = 0.3
    container: ActorContainer | None = None
    _cpu_at_start: float = 0.0
    _wall_at_start: float = 0.0

    def plan(self) -> int:
        """The bytes to hold, checked against the reserve on the engine host's own memory."""
        info = engine_meminfo(self.client, self.image)
        reserve = self.reserve_bytes
        if reserve is None:
            reserve = default_reserve_bytes(info["MemTotal"])
        return plan_fill(
            available=info["MemAvailable"],
            reserve=reserve,
            hold=None if self.gib is None else int(self.gib * GIB),
            leave_available=None if self.leave_available_gib is None else int(self.leave_available_gib * GIB),
        )

    def argv(self) -> list[str]:
        argv = [
            STRESS_NG_IN_IMAGE,
            "--vm", "1",
            "--vm-bytes", str(self.target_bytes),
            "--vm-keep",
            "--vm-method", "rand-set",
            "--timeout", f"{SAFETY_TIMEOUT_S}s",
            "--metrics-brief",
        ]  # fmt: skip
        return argv if self.active else [*argv, "--vm-hang", "0"]

    def _share(self) -> float:
        """Share of a core used since the last mark (engine clock), for the active filler."""
        assert self.container is not None
        used, now = self.container.cpu_clock()
        wall = now - self._wall_at_start
        return (used - self._cpu_at_start) / wall if wall > 0 else 0.0

    def _established(self) -> tuple[bool, str]:
        assert self.container is not None
        if not self.container.running():
            raise KtInterfError(
                f"{self.name} container exited with code {self.container.exit_code()} while filling "
                f"{fmt_gib(self.target_bytes)}",
                "the engine host may be short of memory; ask for less",
                detail=self.container.pump.tail(drain=True),
            )
        held = self.container.anon_bytes()
        measured = f"holds {fmt_gib(held)}"
        if held < (1 - TOLERANCE) * self.target_bytes:
            return False, measured
        if self.active:
            if not self._wall_at_start:
                self._cpu_at_start, self._wall_at_start = self.container.cpu_clock()
                return False, measured + ", measuring its CPU"
            share = self._share()
            measured += f", {share:.0%} of a core"
            if share < self.min_share:
                return False, measured
        return True, measured

    def _start(self) -> None:
        if self.mlock:
            raise KtInterfError(
                f"{self.name}: mlock cannot be used in a container on the Docker engine",
                "drop mlock, or run the filler on this host with --kt-actors-in host",
            )
        require_tool(_engine(self.client, self.name), self.image, "stress-ng")
        if self.cpus:
            check_cores(self.cpus, self.client)
        self.target_bytes = self.plan()
        self.container = ActorContainer.start(
            self.client,
            image=self.image,
            argv=self.argv(),
            name=self.name,
            cpus=self.cpus,
            log_path=self.log_dir / f"actor-{self.name}.log",
            mem_limit=self.target_bytes + 256 * MIB,
        )
        wait_for(
            self._established,
            timeout_s=self.start_timeout_s or 30.0 + 5.0 * self.target_bytes / GIB,
            asked=f"{self.name} container asked to hold {fmt_gib(self.target_bytes)}"
            + (" and rewrite it" if self.active else ""),
            fix="the engine host may be short of memory or swapping heavily; ask for less",
            detail=self.container.pump.tail,
            progress=self.progress,
            interval_s=0.2,
        )
        self._cpu_at_start, self._wall_at_start = self.container.cpu_clock()
        self._achieved = self._measure()

    def _measure(self) -> dict[str, Any]:
        assert self.container is not None
        return {
            "held_mib": self.container.anon_bytes() / MIB,
            "core_share": self._share() if self.active else None,
            "container": self.container.name,
            "placement": "docker",
        }

    def check(self) -> None:
        if self.container is None or not self.container.running():
            raise KtInterfError(
                f"{self.name} container died during the measurement window",
                "the engine host's kernel may have killed it for memory; the verdict is refused",
                detail=self.container.pump.tail(drain=True) if self.container else "",
            )
        achieved = self._measure()
        if achieved["held_mib"] * MIB < (1 - TOLERANCE) * self.target_bytes:
            raise KtInterfError(
                f"{self.name} holds {achieved['held_mib']:.0f} MiB of {self.target_bytes / MIB:.0f} MiB",
                "the measurement is refused: the memory pressure was not there",
            )
        if self.active and achieved["core_share"] < self.min_share:
            raise KtInterfError(
                f"{self.name} rewrote its memory at only {achieved['core_share']:.0%} of a core",
                "the measurement is refused: the filler was not active; check what else runs there",
            )
        self._achieved = achieved

    def _pressure_alive(self) -> bool:
        return self.container is not None and self.container.running()

    def _stop(self) -> None:
        if self.container is not None:
            self.container.remove()
