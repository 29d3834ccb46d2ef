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
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
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
from pytest_ktinterf.options import format_cpu_list, parse_cpu_list
from pytest_ktinterf.system import docker_engine
from pytest_ktinterf.system.image import CAT_IN_IMAGE, STRESS_NG_IN_IMAGE, default_tag, image_tools

OFF_CORE_SLACK = 0.02  # CPU time allowed outside the pinned cores (the engine's own bookkeeping)


def require_tool(client: Any, image: str, tool: str) -> None:
    """The image exists on the engine and holds ``tool``; else an error naming the command to run."""
    tools = image_tools(client, image)
    if tools is None:
        raise KtInterfError(
            f"actor image {image!r} is not on the Docker engine at {docker_engine.engine_address()}",
            "import it there: python -m pytest_ktinterf docker (with DOCKER_HOST pointing at it)",
        )
    if tool not in tools:
        raise KtInterfError(
            f"actor image {image!r} has no {tool} (it holds {', '.join(tools) or 'nothing we know'})",
            f"install {tool} on the machine that builds the image, then python -m pytest_ktinterf docker",
        )


def engine_meminfo(client: Any, image: str) -> dict[str, int]:
    """The engine host's ``/proc/meminfo`` in bytes, read by ``cat`` in a throwaway container.

    Without lxcfs a container's ``/proc/meminfo`` is the host's: this is what the engine host's
    kernel says is available, which is what the memory-safety rule needs.
    """
    require_tool(client, image, "cat")
    raw = client.containers.run(
        image,
        [CAT_IN_IMAGE, "/proc/meminfo"],
        remove=True,
        network_mode="none",
        labels=docker_engine.labels("meminfo"),
    )
    info: dict[str, int] = {}
    for row in raw.decode(errors="replace").splitlines():
        key, _, rest = row.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            info[key.strip()] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    if "MemAvailable" not in info or "MemTotal" not in info:
        raise KtInterfError(
            "the engine host's /proc/meminfo has no MemAvailable", "the engine's kernel is too old (< 3.14)"
        )
    return info


def engine_cores(client: Any) -> list[int]:
    """The engine host's cores: all of them, as the engine reports (``NCPU``)."""
    return list(range(int(client.info().get("NCPU") or 1)))


def check_cores(cores: list[int], client: Any) -> list[int]:
    """``cores`` exist on the engine host; else an error listing the ones that do."""
    have = engine_cores(client)
    missing = sorted(set(cores) - set(have))
    if missing:
        raise KtInterfError(
            f"cores {format_cpu_list(missing)} do not exist on the Docker engine's host "
            f"(it has {format_cpu_list(have)})",
            f"choose cores from {format_cpu_list(have)}",
        )
    return cores


@dataclass
class ActorContainer:
    """One actor's container: pinned, labelled, measured through the engine's API, always removed."""

    container: Any
    pump: docker_engine.LogPump
    removed: bool = False

    @classmethod
    def start(
        cls,
        client: Any,
        *,
        image: str,
        argv: list[str],
        name: str,
        cpus: list[int] | None,
        log_path: Path,
        mem_limit: int | None = None,
    ) -> ActorContainer:
        container = client.containers.create(
            image,
            command=argv,
            cpuset_cpus=format_cpu_list(cpus) if cpus else None,
            mem_limit=mem_limit,
            memswap_limit=mem_limit,
            oom_score_adj=1000 if mem_limit else None,  # if the kernel must kill, it kills the actor
            network_mode="none",
            labels=docker_engine.labels("actor", actor=name),
            name=f"ktinterf-actor-{_safe(name)}-{time.monotonic_ns() % 10**9}",
            detach=True,
        )
        try:
            container.start()
        except Exception as exc:
            docker_engine.remove(container, grace_s=1)
            raise KtInterfError(
                f"the engine could not start the {name} container ({exc})",
                "check the actor's cores and memory against the engine host",
            ) from exc
        return cls(container, docker_engine.LogPump(container, log_path))

    @property
    def name(self) -> str:
        return str(self.container.name)

    def _state(self) -> dict[str, Any]:
        import docker.errors

        if self.removed:
            return {}
        try:
            self.container.reload()
        except docker.errors.NotFound:
            return {}
        return dict(self.container.attrs.get("State") or {})

    def running(self) -> bool:
        return bool(self._state().get("Running"))

    def exit_code(self) -> int | None:
        code = self._state().get("ExitCode")
        return None if code is None else int(code)

    def stats(self) -> dict[str, Any]:
        """One reading of the engine's accounting (no 1 s wait: ``one_shot``)."""
        return dict(self.container.stats(stream=False, one_shot=True) or {})

    def cpu_clock(self) -> tuple[float, float]:
        """(CPU seconds used, the engine's time of that reading in epoch seconds).

        The engine collects stats about once a second and a one-shot call waits for the next
        collection, so shares of a core are computed on the engine's timestamps, never on ours.
        """
        stats = self.stats()
        usage = stats.get("cpu_stats", {}).get("cpu_usage", {})
        return float(usage.get("total_usage") or 0) / 1e9, engine_time(str(stats.get("read", "")))

    def per_core_seconds(self, stats: dict[str, Any] | None = None) -> list[float] | None:
        """CPU seconds per host core (cgroup v1 engines report them; v2 engines do not)."""
        usage = (stats or self.stats()).get("cpu_stats", {}).get("cpu_usage", {})
        per_core = usage.get("percpu_usage")
        return [float(ns) / 1e9 for ns in per_core] if per_core else None

    def tasks(self, stats: dict[str, Any] | None = None) -> int:
        return int((stats or self.stats()).get("pids_stats", {}).get("current") or 0)

    def anon_bytes(self, stats: dict[str, Any] | None = None) -> int:
        """Anonymous memory charged to the container (v1 ``rss``, v2 ``anon``)."""
        memory = (stats or self.stats()).get("memory_stats", {}).get("stats") or {}
        return int(memory.get("rss", memory.get("anon", 0)))

    def remove(self) -> None:
        """Stop (SIGTERM, so stress-ng prints its metrics), keep the log, remove. Idempotent."""
        if self.removed:
            return
        import docker.errors

        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            self.container.stop(timeout=5)
        self.pump.join()
        docker_engine.remove(self.container, grace_s=1)
        self.removed = True


def engine_time(stamp: str) -> float:
    """An engine timestamp (RFC 3339 with nanoseconds, ``2026-11-25T10:57:00.229991905Z``) in
    epoch seconds; ``time.time()`` where the engine gave none."""
    whole, _, rest = stamp.rstrip("Z").partition(".")
    try:
        moment = datetime.fromisoformat(whole).replace(tzinfo=timezone.utc)
    except ValueError:
        return time.time()
    digits = "".join(ch for ch in rest if ch.isdigit())
    return moment.timestamp() + (int(digits) / 10 ** len(digits) if digits else 0.0)


def _engine(client: Any, actor: str) -> Any:
    if client is None:
        raise KtInterfError(f"{actor}: no Docker engine client", "pass client=docker_engine.connect()")
    return client


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in name).strip("-.") or "actor"


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

    def evidence(self) -> dict[str, Any]:
        record = super().evidence()
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

    def _stop(self) -> None:
        if self.container is None:
            return
        if self._frozen is None and self.container.running():
            with contextlib.suppress(KtInterfError):
                self.check()
            self._frozen = self.evidence()
        self.container.remove()


def resolve_placement(actors_in: str, backend: str) -> str:
    """``host`` or ``docker`` for ``--kt-actors-in``: auto is docker beside a remote engine's server."""
    if actors_in in ("host", "docker"):
        return actors_in
    return "docker" if backend == "docker" and not docker_engine.engine_is_local() else "host"


def host_only_refusal(actors_in: str, backend: str, what: str) -> KtInterfError | None:
    """Why an actor that cannot run in a container must not run here, or None where it may.

    One rule for both the fixtures (which raise it) and the experiment rows (which skip with it):
    under docker placement such an actor would load the runner, not the engine's host.
    """
    if resolve_placement(actors_in, backend) != "docker":
        return None
    return KtInterfError(
        f"the {what} actor runs only on this host, and actors are placed in containers on the "
        f"Docker engine (--kt-actors-in={actors_in}, engine {docker_engine.engine_address()})",
        "run pytest on the engine's host, or pass --kt-actors-in host to load this host anyway",
    )
