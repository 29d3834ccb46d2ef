"""CPU pressure: stress-ng workers pinned to an explicit core list.

Pinning is what makes the report's two CPU rows distinct experiments: stress on the server's own
cores versus on the spare ones (:func:`core_set` derives both from the server's real affinity).
Workers on the server's cores share them with the server, so the proof of pressure is a *share*
of each core (default at least 30%), not a full core. The stressor is a parameter so the memory
bandwidth actor (``--stream``) reuses the same pinning, proof and cleanup.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from pytest_ktinterf.actors.base import Actor
from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.system.cpus import format_cpu_list
from pytest_ktinterf.system.processes import Child, spawn, terminate

SAFETY_TIMEOUT_S = 3600  # a leftover that escaped every reaper still ends on its own
CORE_SETS = ("server", "spare")


def core_set(which: str, server_cpus: list[int] | None, available: list[int] | None = None) -> list[int]:
    """The server's cores, or the spare ones (every core we may use minus the server's).

    Raises with the reason when the set is unknown (external server) or empty (the server has
    every core: there are no spare ones to stress).
    """
    if which not in CORE_SETS:
        raise KtInterfError(f"core set {which!r} is unknown", "use 'server', 'spare' or a core list")
    if not server_cpus:
        raise KtInterfError(
            f"the server's cores are unknown, so its '{which}' cores are too (its process was not "
            "found from its port: another host, or not root)",
            "give --kt-server-cpus LIST (the cores it is pinned to), or run pytest as root on the "
            "server's host so its port's owner can be seen, or let the plugin start it (--kt-server-cmd)",
        )
    if which == "server":
        return sorted(server_cpus)
    pool = sorted(os.sched_getaffinity(0)) if available is None else sorted(available)
    spare = sorted(set(pool) - set(server_cpus))
    if not spare:
        raise KtInterfError(
            f"no spare cores: the server is pinned to {format_cpu_list(server_cpus)}, every core "
            f"available ({format_cpu_list(pool)})",
            "pin the server to fewer cores with --kt-server-cpus",
        )
    return spare


@dataclass
class CpuStress(Actor):
    """``len(cores) * workers_per_core`` stress-ng workers restricted to ``cores``."""

    cores: list[int] = field(default_factory=list)
    stressor: str = "cpu"
    workers_per_core: int = 1
    load_percent: int | None = None
    stress_ng: str = "stress-ng"
    log_dir: Path = Path(".ktinterf/logs")
    min_share: float = 0.3
    start_timeout_s: float = 15.0
    name: str = "cpu-stress"
    child: Child | None = None
    _cpu_at_start: float = 0.0
    _wall_at_start: float = 0.0
    _final_share: float | None = None

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"actor-{self.name}.log"

    @property
    def workers(self) -> int:
        return len(self.cores) * self.workers_per_core

    def argv(self, binary: str) -> list[str]:
        argv = [
            binary,
            f"--{self.stressor}", str(self.workers),
            "--taskset", format_cpu_list(self.cores),
            "--timeout", f"{SAFETY_TIMEOUT_S}s",
            "--metrics-brief",
        ]  # fmt: skip
        if self.load_percent is not None:
            argv += [f"--{self.stressor}-load", str(self.load_percent)]
        return argv

    def _expected_share(self) -> float:
        share = self.min_share
        if self.load_percent is not None:
            share = min(share, 0.8 * self.load_percent / 100)
        return share

    # -- where the workers run: here as a process group (overridden for containers) ---------

    def _binary(self) -> str:
        binary = shutil.which(self.stress_ng)
        if binary is None:
            raise KtInterfError(
                f"stress-ng not found (--kt-stress-ng={self.stress_ng})",
                "install it (apt-get install stress-ng) or pass --kt-stress-ng /path/to/stress-ng",
            )
        return binary

    def _launch(self, argv: list[str]) -> None:
        self.child = spawn(argv, name=self.name, log_path=self.log_path, cpus=self.cores)

    def _running(self) -> bool:
        return self.child is not None and self.child.alive()

    def _exit_code(self) -> int | None:
        return self.child.popen.returncode if self.child is not None else None

    def _log_tail(self) -> str:
        return self.child.log_tail() if self.child is not None else ""

    def _workers_procs(self) -> list[psutil.Process]:
        assert self.child is not None
        return [p for p in self.child.tree()[1:] if p.status() != psutil.STATUS_ZOMBIE]

    def _live_workers(self) -> int:
        return len(self._workers_procs())

    def _cpu_clock(self) -> tuple[float, float]:
        """(CPU seconds the workers have used so far, when that was read), for shares of a core.

        The time is the reader's: a container's engine samples on its own clock and schedule.
        """
        return self._cpu_seconds(), time.monotonic()

    def _cpu_seconds(self) -> float:
        total = 0.0
        for proc in self._workers_procs():
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                continue
        return total

    def _check_pinning(self) -> None:
        for proc in self._workers_procs():
            allowed = set(proc.cpu_affinity() or [])
            if not allowed <= set(self.cores):
                raise KtInterfError(
                    f"stress-ng worker {proc.pid} may run on cores {sorted(allowed)}, "
                    f"outside the requested {format_cpu_list(self.cores)}",
                    "this stress-ng ignores --taskset; use a newer stress-ng",
                )

    def _halt(self) -> None:
        if self.child is not None:
            terminate(self.child)

    def finished(self) -> bool:
        """True once stress-ng has exited and its log (with its final metrics) is complete."""
        return self.child is not None and not self.child.alive()

    # -- the pressure, proven the same way wherever it runs ------------------------------------

    def _start(self) -> None:
        if not self.cores:
            raise KtInterfError("CPU stress actor asked for no cores", "pass a non-empty core list")
        self._launch(self.argv(self._binary()))
        deadline = time.monotonic() + self.start_timeout_s
        measured = "no workers yet"
        while time.monotonic() < deadline:
            if not self._running():
                raise KtInterfError(
                    f"stress-ng exited with code {self._exit_code()} at start",
                    "check the stress-ng arguments in the log tail below",
                    detail=self._log_tail(),
                )
            workers = self._live_workers()
            if workers >= self.workers:
                cpu0, t0 = self._cpu_clock()
                time.sleep(0.5)
                cpu1, t1 = self._cpu_clock()
                share = (cpu1 - cpu0) / (t1 - t0) / self.workers if t1 > t0 else 0.0
                measured = f"{workers} workers at {share:.0%} of a core each"
                if share >= self._expected_share():
                    self._check_pinning()
                    self._cpu_at_start, self._wall_at_start = cpu1, t1
                    return
            else:
                time.sleep(0.1)
        raise KtInterfError(
            f"{self.name} on cores {format_cpu_list(self.cores)} asked for {self.workers} workers at "
            f">= {self._expected_share():.0%} of a core each; measured {measured} after "
            f"{self.start_timeout_s:.0f} s",
            "the cores may be busy with higher-priority work or the machine is throttled",
            detail=self._log_tail(),
        )

    def achieved_share(self) -> float:
        """Mean share of a core each worker got since pressure was established (until stop)."""
        if self._final_share is not None:
            return self._final_share
        if not self._wall_at_start or not self._running():
            return 0.0
        used, now = self._cpu_clock()
        wall = now - self._wall_at_start
        return (used - self._cpu_at_start) / wall / self.workers if wall > 0 else 0.0

    def check(self) -> None:
        if not self._running():
            raise KtInterfError(
                f"{self.name} (stress-ng) died during the measurement window",
                "see its log; a verdict without the pressure would be meaningless",
                detail=self._log_tail(),
            )
        alive = self._live_workers()
        share = self.achieved_share()
        if alive < self.workers or share < self._expected_share():
            raise KtInterfError(
                f"{self.name} weakened during the window: {alive}/{self.workers} workers alive, "
                f"{share:.0%} of a core each (need >= {self._expected_share():.0%})",
                "the measurement is refused; check what else runs on these cores",
            )

    def _live_evidence(self) -> dict[str, Any]:
        share = self.achieved_share()
        return {
            "name": self.name,
            "kind": f"stress-ng-{self.stressor}",
            "cores": self.cores,
            "workers": self.workers,
            "load_percent": self.load_percent,
            "target": (self.load_percent or 100) / 100,
            "achieved": share,
            "unit": "core share per worker",
            "achieved_core_share": share,
        }

    def _stop(self) -> None:
        if self._final_share is None and self._running():
            self._final_share = self.achieved_share()
        self._halt()
