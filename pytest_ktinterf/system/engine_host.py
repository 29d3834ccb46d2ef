"""The Docker engine's host, reached through the engine alone: what it has, and our containers on it.

Actors placed on a remote engine (``DOCKER_HOST``) must size, pin and prove their load on *that*
host, never on the runner (whose ``psutil`` sees nothing of it), so everything here asks the
engine: its core count (``NCPU``), its kernel's ``/proc/meminfo`` (read by ``cat`` in a throwaway
container of the tools image), whether that image holds the tool an actor runs, and, through
:class:`ActorContainer`, an actor's container: started pinned and labelled, measured by the
engine's own accounting (CPU time, tasks, memory, on the engine's clock), always removed.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.system import docker_engine
from pytest_ktinterf.system.cpus import format_cpu_list
from pytest_ktinterf.system.image import CAT_IN_IMAGE, image_tools


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


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in name).strip("-.") or "actor"
